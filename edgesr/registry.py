"""The models edgesr serves, behind one small interface each new model plugs into."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch.nn as nn

from edgesr.errors import UserError
from edgesr.models import ecbsr, splitsr


class SRConfig(Protocol):
    """What every model's architecture config exposes to the toolchain."""

    scale: int
    colors: int
    pixel_range: float

    @property
    def variant(self) -> str: ...

    def to_dict(self) -> dict: ...


@dataclass(frozen=True)
class ModelSpec:
    """How to build, load, re-parameterize and convert one SR model family."""

    name: str
    summary: str
    presets: tuple[str, ...]
    default_variant: str
    scales: tuple[int, ...]
    default_scale: int
    default_pixel_range: float
    parse_variant: Callable[[str, int, float], SRConfig]
    config_from_state_dict: Callable[[dict, float], SRConfig]
    is_deploy_state_dict: Callable[[dict], bool]
    train_graph: Callable[[Any], nn.Module]
    deploy_graph: Callable[[Any], nn.Module]
    keras_graph: Callable[[nn.Module], Any]

    def check_scale(self, scale: int) -> None:
        """Refuse an upscale factor this model family does not support."""
        if scale not in self.scales:
            raise UserError(f"{self.name} does not support scale {scale}: choose one of "
                            f"{', '.join(map(str, self.scales))}")

    def config(self, variant: str | None, scale: int | None, pixel_range: float | None = None) -> SRConfig:
        """Config for a variant name and scale, defaults filled in."""
        scale = self.default_scale if scale is None else scale
        self.check_scale(scale)
        return self.parse_variant(self.default_variant if variant is None else variant, scale,
                                  self.default_pixel_range if pixel_range is None else pixel_range)


def _ecbsr_keras(deploy: nn.Module) -> Any:
    from export.keras_ecbsr import build_keras_ecbsr  # TensorFlow loads only when converting

    return build_keras_ecbsr(deploy)


def _splitsr_keras(deploy: nn.Module) -> Any:
    from export.keras_splitsr import build_keras_splitsr

    return build_keras_splitsr(deploy)


MODELS: dict[str, ModelSpec] = {
    "ecbsr": ModelSpec(
        name="ecbsr",
        summary="Edge-oriented Convolution Blocks, re-parameterized into plain conv3x3 (Y, 0..255)",
        presets=ecbsr.PRESETS,
        default_variant="M4C16",
        scales=ecbsr.SCALES,
        default_scale=4,
        default_pixel_range=255.0,
        parse_variant=ecbsr.parse_variant,
        config_from_state_dict=ecbsr.config_from_state_dict,
        is_deploy_state_dict=ecbsr.is_deploy_state_dict,
        train_graph=ecbsr.ECBSR,
        deploy_graph=ecbsr.ECBSRPlain,
        keras_graph=_ecbsr_keras,
    ),
    "splitsr": ModelSpec(
        name="splitsr",
        summary="RCAN-based hybrid with channel-split residual blocks (RGB, 0..255)",
        presets=splitsr.PRESETS,
        default_variant="A0.25-G6B6-H3-C64",
        scales=splitsr.SCALES,
        default_scale=4,
        default_pixel_range=255.0,
        parse_variant=splitsr.parse_variant,
        config_from_state_dict=splitsr.config_from_state_dict,
        is_deploy_state_dict=splitsr.is_deploy_state_dict,
        train_graph=splitsr.SplitSR,
        deploy_graph=splitsr.SplitSRPlain,
        keras_graph=_splitsr_keras,
    ),
}


def get_model(name: str) -> ModelSpec:
    """Look a model up by name, with a one-line error listing the known ones."""
    spec = MODELS.get(name.lower())
    if spec is None:
        raise UserError(f"unknown model '{name}': choose one of {', '.join(MODELS)} (see 'edgesr models')")
    return spec
