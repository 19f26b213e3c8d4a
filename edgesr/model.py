"""From a family name, variant, scale and weights to a model ready to export: its config, its
training graph (when known) and its deployable form."""

from __future__ import annotations

import dataclasses
import hashlib
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

import edgesr.families  # noqa: F401  (registers the built-in families)
from edgesr.checkpoints import builtin_checkpoint, load_strict, read_checkpoint
from edgesr.deployable import Deployable
from edgesr.errors import UserError
from edgesr.family import Config, Family, IOSpec, get_family


class RandomWeightsWarning(UserWarning):
    """No checkpoint ships for this variant and none was given: the weights are seeded random."""


@dataclass
class Prepared:
    """A model ready for export: family, config, training graph (None for a deploy-layout
    checkpoint), deployable, and where its weights came from."""

    family: Family
    config: Config
    train: nn.Module | None
    deployable: Deployable
    weights: str  # the checkpoint path, or "random init (seed N)"
    pretrained: bool
    checkpoint_sha256: str | None = None

    @property
    def label(self) -> str:
        return f"{self.family.name} {self.config.variant} x{self.config.scale}"

    @property
    def io(self) -> IOSpec:
        return IOSpec.of(self.config)

    @property
    def notice(self) -> str | None:
        """What a user must be told about these weights (None for real checkpoints)."""
        if self.pretrained:
            return None
        return (f"no built-in checkpoint ships for {self.label} and no weights were given: using freshly "
                f"initialised weights ({self.weights}). Everything is verified, but this model does not super-resolve.")

    @property
    def deploy(self) -> nn.Module:
        """The deploy graph of a one-graph deployable."""
        if not self.deployable.single:
            raise ValueError(f"{self.label} deploys as several graphs: see .deployable.graphs")
        return self.deployable.graphs["deploy"].module

    @classmethod
    def of(cls, train: nn.Module, family: str | Family, weights: str = "given weights",
           pretrained: bool = True) -> Prepared:
        """A training graph you hold (trained in a notebook, say), ready to export."""
        family = get_family(family) if isinstance(family, str) else family
        train.eval()
        return cls(family, train.config, train, family.deployable(train), weights, pretrained)

    @property
    def reference_name(self) -> str:
        """What exported files are checked against: the training graph when we have it."""
        return "train" if self.train is not None else "deploy"

    def metadata(self) -> dict:
        """What an exported file says about the model it holds (see edgesr/metadata.py)."""
        return {"family": self.family.name, "variant": self.config.variant, "config": self.config.to_dict(),
                "io": self.io.to_dict(), "weights": Path(self.weights).name if self.pretrained else self.weights,
                "checkpoint_sha256": self.checkpoint_sha256}


def _config_for_checkpoint(family: Family, state_dict: dict, variant: str | None, scale: int | None,
                           pixel_range: float, path: Path, saved_scale: int | None = None) -> Config:
    """The checkpoint's own architecture; an explicit variant/scale must agree with it. An edgesr
    checkpoint's recorded scale wins where the weights cannot tell (ClassSR-FSRCNN's
    transposed-conv stride is not stored); the strict load then checks every shape."""
    found = family.config_from_state_dict(state_dict, pixel_range)
    if saved_scale and saved_scale != found.scale:
        found = dataclasses.replace(found, scale=saved_scale)
    if scale is not None:
        family.check_scale(scale)
        if scale != found.scale:
            raise UserError(f"checkpoint {path} is a x{found.scale} {family.name} model but scale {scale} was asked "
                            f"for: drop the scale or pass a x{scale} checkpoint")
    if variant is not None:
        wanted = family.config(variant, found.scale, pixel_range)
        if wanted.variant.lower() != found.variant.lower():
            raise UserError(f"checkpoint {path} is {family.name} {found.variant} but variant {variant} was asked "
                            "for: drop the variant to use the checkpoint's architecture")
    return found


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def prepare(model: str, variant: str | None = None, scale: int | None = None, weights: Path | None = None,
            pixel_range: float | None = None, seed: int = 0) -> Prepared:
    """Build the training graph with weights (checkpoint, built-in, or seeded random init, which
    warns with RandomWeightsWarning) and re-parameterize it; a deploy-layout checkpoint gives
    the deployable directly."""
    family = get_family(model)
    if weights is None:
        config = family.config(variant, scale, pixel_range)
        family.check_fits(config)
        weights = builtin_checkpoint(family.name, config.variant, config.scale)
        if weights is None:
            torch.manual_seed(seed)
            train = family.training_graph(config).eval()
            prepared = Prepared(family, config, train, family.deployable(train), f"random init (seed {seed})", False)
            warnings.warn(prepared.notice, RandomWeightsWarning, stacklevel=2)
            return prepared
    checkpoint = read_checkpoint(weights)
    if pixel_range is None:
        saved = checkpoint.metadata.get("config", {}).get("pixel_range")
        pixel_range = saved or (1.0 if checkpoint.source_format == "basicsr" else family.default_pixel_range)
    config = _config_for_checkpoint(family, checkpoint.state_dict, variant, scale, pixel_range, weights,
                                    checkpoint.metadata.get("config", {}).get("scale"))
    family.check_fits(config)
    digest = _sha256(weights)
    label = f"{family.name} {config.variant} x{config.scale}"
    if family.is_deploy_state_dict(checkpoint.state_dict):
        deployable = family.deployable_from_state_dict(config, checkpoint.state_dict)
        return Prepared(family, config, None, deployable, str(weights), True, digest)
    train = family.training_graph(config)
    load_strict(train, checkpoint.state_dict, f"{label} (training graph)")
    train.eval()
    return Prepared(family, config, train, family.deployable(train), str(weights), True, digest)
