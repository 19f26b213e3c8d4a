"""The rounding-error model of ClassSR's routed image (edgesr/error_model.py): hard routing tile
by tile, a tile whose top two logits are within noise of a tie flipped and allowed, the tiles'
outputs stitched exactly in float64."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch.nn as nn

from edgesr.check import cached
from edgesr.deployable import Deployable
from edgesr.error_model import FP32_U, PRECISIONS, Modelled, at_precision, modelled
from edgesr.families.classsr.model import route_hard
from edgesr.tiling import Tiling, extract_tiles, pad_to_tile, stitch


class _Parts(nn.Module):
    """A classifier and branches as one module (so they share one float64 copy)."""

    def __init__(self, classifier: nn.Module, branches: list[nn.Module]):
        super().__init__()
        self.classifier, self.branches = classifier, nn.ModuleList(branches)


def _tiled(parts: _Parts, scale: int, tiling: Tiling, x: np.ndarray, precision: str = "fp32") -> Modelled:
    height, width = x.shape[2], x.shape[3]
    padded = pad_to_tile(np.asarray(x, dtype=np.float64), tiling.tile)
    tiles, _ = extract_tiles(padded, tiling)
    m = modelled(parts, tiles, precision, prepared=parts,
                 call=lambda module, t: route_hard(module.classifier, tuple(module.branches), scale, t)[0])
    h, w = padded.shape[2], padded.shape[3]
    value = stitch(m.value, tiling, h, w, scale)
    # the float32 blend (a product and up to four additions per pixel) rounds as well
    sigma = stitch(m.sigma, tiling, h, w, scale) + FP32_U * np.sqrt(5 / 3) * np.abs(value)
    exempt = stitch(m.exempt.astype(np.float64), tiling, h, w, scale) > 0
    allowance = stitch(np.broadcast_to(m.allowance, m.value.shape), tiling, h, w, scale)
    crop = (..., slice(0, height * scale), slice(0, width * scale))
    return Modelled(value[crop], sigma[crop], exempt[crop], m.unstable_decisions, allowance[crop])


def _parts(classifier: nn.Module, branches, precision: str) -> _Parts:
    """Float64 copies; the branches stored at `precision` (the classifier is exported in fp32,
    but a runtime computing in fp16 stores every weight in fp16)."""
    if PRECISIONS[precision].activations == "fp16":
        return at_precision(_Parts(classifier, list(branches)), PRECISIONS[precision])
    exact = at_precision(_Parts(classifier, list(branches)), PRECISIONS["fp32"])
    if precision != "fp32":
        stored = at_precision(nn.ModuleList(branches), PRECISIONS[precision])
        exact.branches.load_state_dict(stored.state_dict())
    return exact


def routed_model(train: nn.Module, tiling: Tiling) -> Callable[[np.ndarray], Modelled]:
    """The error model of the hard-routed training graph on whole images."""
    parts = _parts(train.classifier, train.branches, "fp32")
    return cached(lambda x: _tiled(parts, train.config.scale, tiling, x))


def routed_expectation(reference: Callable[[np.ndarray], Modelled], deployable: Deployable, tiling: Tiling,
                       precision: str) -> Callable[[np.ndarray], Modelled]:
    """The routed image of a bundle at `precision`: the reference's exact value plus the exact
    effect of its branches' storage, with the noise of both."""
    if precision == "fp32":
        return reference
    graphs = deployable.graphs
    branches = [graphs[f"net{k}"].module for k in range(1, len(deployable.params["classes"]) + 1)]
    exact = _parts(graphs["classifier"].module, branches, "fp32")
    stored = _parts(graphs["classifier"].module, branches, precision)
    scale = deployable.config.scale

    def model(x: np.ndarray) -> Modelled:
        ref, base, own = reference(x), _tiled(exact, scale, tiling, x), _tiled(stored, scale, tiling, x, precision)
        return Modelled(ref.value + own.value - base.value, np.hypot(own.sigma, base.sigma), own.exempt | base.exempt,
                        own.unstable_decisions, own.allowance + base.allowance)

    return cached(model)
