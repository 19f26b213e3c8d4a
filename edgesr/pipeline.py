"""From CLI-level choices (model, variant, scale, weights) to a training and a deploy graph."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from edgesr.checkpoints import builtin_checkpoint, load_strict, read_checkpoint
from edgesr.errors import UserError
from edgesr.registry import ModelSpec, SRConfig, get_model


@dataclass
class PreparedModel:
    """A model ready for export: its config, training graph (if known) and deploy graph."""

    spec: ModelSpec
    config: SRConfig
    train: nn.Module | None
    deploy: nn.Module
    weights: str
    pretrained: bool

    @property
    def notice(self) -> str | None:
        """What a user must be told about these weights (None for real checkpoints)."""
        if self.pretrained:
            return None
        return (f"NOTICE: no built-in checkpoint ships for {self.label} and no --weights was given: using "
                f"freshly initialised weights ({self.weights}). Everything is verified, but this model "
                "does not super-resolve.")

    @property
    def label(self) -> str:
        return f"{self.spec.name} {self.config.variant} x{self.config.scale}"

    @property
    def reference(self) -> tuple[str, nn.Module]:
        """The graph everything is checked against: the training graph when we have it."""
        return ("train", self.train) if self.train is not None else ("deploy", self.deploy)


def _config_for_checkpoint(spec: ModelSpec, state_dict: dict, variant: str | None, scale: int | None,
                           pixel_range: float, path: Path, saved_scale: int | None = None) -> SRConfig:
    """The checkpoint's own architecture; explicit --variant/--scale must agree with it. An
    edgesr checkpoint's recorded scale wins where the weights cannot tell (ClassSR-FSRCNN's
    transposed-conv stride is not stored); the strict load then checks every shape."""
    found = spec.config_from_state_dict(state_dict, pixel_range)
    if saved_scale and saved_scale != found.scale:
        found = dataclasses.replace(found, scale=saved_scale)
    if scale is not None:
        spec.check_scale(scale)
        if scale != found.scale:
            raise UserError(f"checkpoint {path} is a x{found.scale} {spec.name} model but --scale {scale} "
                            f"was given: drop --scale or pass a x{scale} checkpoint")
    if variant is not None:
        wanted = spec.config(variant, found.scale, pixel_range)
        if wanted.variant.lower() != found.variant.lower():
            raise UserError(f"checkpoint {path} is {spec.name} {found.variant} but --variant {variant} "
                            "was given: drop --variant to use the checkpoint's architecture")
    return found


def prepare(model: str, variant: str | None = None, scale: int | None = None, weights: Path | None = None,
            pixel_range: float | None = None, seed: int = 0) -> PreparedModel:
    """Build the training graph with weights (checkpoint, built-in, or seeded random init)
    and re-parameterize it; a deploy-layout checkpoint gives the deploy graph directly."""
    spec = get_model(model)
    if weights is None:
        config = spec.config(variant, scale, pixel_range)
        spec.check_fits(config)
        weights = builtin_checkpoint(spec.name, config.variant, config.scale)
        if weights is None:
            torch.manual_seed(seed)
            train = spec.train_graph(config).eval()
            return PreparedModel(spec, config, train, train.reparameterize(), f"random init (seed {seed})", False)
    checkpoint = read_checkpoint(weights)
    if pixel_range is None:
        saved = checkpoint.metadata.get("config", {}).get("pixel_range")
        pixel_range = saved or (1.0 if checkpoint.source_format == "basicsr" else spec.default_pixel_range)
    config = _config_for_checkpoint(spec, checkpoint.state_dict, variant, scale, pixel_range, weights,
                                    checkpoint.metadata.get("config", {}).get("scale"))
    spec.check_fits(config)
    if spec.is_deploy_state_dict(checkpoint.state_dict):
        deploy = spec.deploy_graph(config)
        load_strict(deploy, checkpoint.state_dict, f"{spec.name} {config.variant} x{config.scale} (deploy graph)")
        return PreparedModel(spec, config, None, deploy.eval(), str(weights), True)
    train = spec.train_graph(config)
    load_strict(train, checkpoint.state_dict, f"{spec.name} {config.variant} x{config.scale} (training graph)")
    train.eval()
    return PreparedModel(spec, config, train, train.reparameterize(), str(weights), True)
