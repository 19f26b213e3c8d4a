"""ClassSR: a classifier routes each LR tile to one of three branches. Its deployable is four
graphs (classifier, net1-3, fixed tile size, any batch) joined by routing on the host."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch.nn as nn

from edgesr.deployable import Deployable, GraphSpec
from edgesr.errors import UserError
from edgesr.families.classsr import model as classsr
from edgesr.families.classsr.routing import RoutedRunner, TileMacs, upscale_tiled
from edgesr.family import Family, IOSpec, Recipe, register
from edgesr.resources import Footprint
from edgesr.runners import Graph
from edgesr.tiling import Tiling


def _tiling(params: dict) -> Tiling:
    return Tiling(int(params["tile"]), int(params["stride"]), params["blend"])


class HardRouted:
    """The reference: the training graph with hard argmax routing, tile by tile (a Graph)."""

    def __init__(self, train: classsr.ClassSR, tiling: Tiling):
        self.train, self.tiling = train, tiling

    def __call__(self, x: np.ndarray) -> np.ndarray:
        import torch

        def run(tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            with torch.inference_mode():
                sr, classes = self.train.eval().route_hard(torch.from_numpy(tiles))
            return sr.numpy(), classes.numpy()

        return upscale_tiled(x, self.tiling, self.train.config.scale, run)[0]

    def bind(self, x: np.ndarray) -> Callable[[], np.ndarray]:
        return lambda: self(x)


@register
class ClassSRFamily(Family):
    name = "classsr"
    summary = "classifier routes 32x32 LR tiles to one of three branches (FSRCNN, SRResNet or ECB; RGB, 0..1)"
    presets = classsr.PRESETS
    scales = classsr.SCALES
    default_variant = "ECB-8-16-24"
    default_pixel_range = 1.0
    # 32x32 LR sub-images (the classifier's tile); the authors' batch is 96. Stages (model.py,
    # set_stage): branches and classifier at 1e-3, joint fine-tune at 1e-4.
    recipe = Recipe(lr=1e-3, batch=16, hr_patch={2: 64, 3: 96, 4: 128}, stages=classsr.STAGES,
                    stage_lr=(("joint", 1e-4),))
    export_precisions = ("fp32", "fp16")
    precision_note = "int8 would quantize the routing logits (an fp16 bundle keeps its classifier in fp32)"

    def parse_variant(self, variant: str, scale: int, pixel_range: float) -> classsr.ClassSRConfig:
        return classsr.parse_variant(variant, scale, pixel_range)

    def config_from_state_dict(self, state_dict: dict, pixel_range: float) -> classsr.ClassSRConfig:
        return classsr.config_from_state_dict(state_dict, pixel_range)

    def footprint(self, config: classsr.ClassSRConfig) -> Footprint:
        return classsr.footprint(config)

    def training_graph(self, config: classsr.ClassSRConfig) -> classsr.ClassSR:
        return classsr.ClassSR(config)

    def deployable(self, train: classsr.ClassSR) -> Deployable:
        bundle = train.reparameterize()
        cfg, tile = train.config, bundle.tiling.tile
        graphs = {"classifier": GraphSpec(bundle.classifier, tile, fixed_precision="fp32", output="logits")}
        graphs.update({f"net{k}": GraphSpec(net, tile) for k, net in enumerate(bundle.branches, start=1)})
        macs = {name: classsr.tile_macs(spec.module, cfg.colors, tile) for name, spec in graphs.items()}
        params = {"tile": tile, "stride": bundle.tiling.stride, "blend": bundle.tiling.blend,
                  "classes": list(classsr.CLASSES), "macs_per_tile": macs}
        return Deployable(self, cfg, graphs, params)

    def keras_twin(self, graph: str, spec: GraphSpec, config: classsr.ClassSRConfig) -> Any:
        from edgesr.families.classsr.keras import build_keras_branch, build_keras_classifier

        if graph == "classifier":
            return build_keras_classifier(spec.module, config.colors, spec.tile)
        return build_keras_branch(spec.module, config.colors, spec.tile, f"classsr_{graph}")

    def glue(self, params: dict, io: IOSpec, graphs: Mapping[str, Graph]) -> RoutedRunner:
        names = [f"net{k}" for k in range(1, len(params["classes"]) + 1)]
        macs = TileMacs(int(params["macs_per_tile"]["classifier"]),
                        tuple(int(params["macs_per_tile"][n]) for n in names))
        return RoutedRunner(graphs["classifier"], [graphs[n] for n in names], params["classes"], _tiling(params),
                            io.scale, macs)

    def check_bundle(self, params: dict, io: IOSpec, graphs: Mapping[str, Graph]) -> None:
        """The tiling parses and every graph runs on its tile."""
        try:
            tiling = _tiling(params)
            names = [f"net{k}" for k in range(1, len(params["classes"]) + 1)]
            [int(params["macs_per_tile"][name]) for name in ("classifier", *names)]
        except (KeyError, TypeError, ValueError, UserError) as exc:
            raise UserError(f"its routing parameters are unreadable ({exc}); export it again") from None
        tile = np.zeros((1, io.colors, tiling.tile, tiling.tile), dtype=np.float32)
        try:
            for name in ("classifier", *names):
                graphs[name](tile)
        except Exception:  # noqa: BLE001  (any runtime's error, a missing graph)
            raise UserError(f"its graphs do not run on its {tiling.tile}x{tiling.tile} tile; export it again") from None

    def reference(self, train: nn.Module, deployable: Deployable) -> Graph:
        return HardRouted(train, _tiling(deployable.params))

    def reference_model(self, train: nn.Module, deployable: Deployable):
        from edgesr.families.classsr.checks import routed_model

        return routed_model(train, _tiling(deployable.params))

    def expectation(self, reference_model, deployable: Deployable, precision: str, files):
        from edgesr.families.classsr.checks import routed_expectation

        return routed_expectation(reference_model, deployable, _tiling(deployable.params), precision)
