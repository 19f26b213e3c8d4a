"""The models edgesr serves, behind one small interface each new model plugs into."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch.nn as nn

from edgesr.errors import UserError
from edgesr.resources import Footprint, check_model_fits
from edgesr.families.classsr import model as classsr
from edgesr.families.ecbsr import model as ecbsr
from edgesr.families.smsr import model as smsr
from edgesr.families.splitsr import model as splitsr


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
    footprint: Callable[[Any], Footprint]  # training-graph size from the config, nothing built
    # Multi-graph models (ClassSR): a module exporting resolve_output, export_bundle and
    # verify_bundle; the CLI dispatches export/verify to it instead of the single-graph path.
    bundle: str | None = None
    # Extra PyTorch graphs built from the deploy graph that `verify` also compares with the
    # reference at fp32 (SMSR: its sparse gather/GEMM/scatter path), by name.
    extra_graphs: Callable[[nn.Module], dict[str, nn.Module]] | None = None
    # Extra cost lines `export` and `bench` print for a deploy graph (SMSR: MACs at measured sparsity).
    cost_notes: Callable[[nn.Module], list[str]] | None = None
    # TFLite precisions `verify` checks when --precision is not given (None: all), and why not all.
    verify_precisions: tuple[str, ...] | None = None
    verify_note: str | None = None

    def bundle_ops(self) -> Any:
        """The bundle module (imported on first use), or None for single-graph models."""
        return importlib.import_module(self.bundle) if self.bundle else None

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

    def check_fits(self, config: SRConfig) -> None:
        """Refuse a config too big for this machine's memory, before anything is built."""
        check_model_fits(f"{self.name} {config.variant} x{config.scale}", self.footprint(config))


def _ecbsr_keras(deploy: nn.Module) -> Any:
    from edgesr.families.ecbsr.keras import build_keras_ecbsr  # TensorFlow loads only when converting

    return build_keras_ecbsr(deploy)


def _splitsr_keras(deploy: nn.Module) -> Any:
    from edgesr.families.splitsr.keras import build_keras_splitsr

    return build_keras_splitsr(deploy)


def _smsr_keras(deploy: nn.Module) -> Any:
    from edgesr.families.smsr.keras import build_keras_smsr

    return build_keras_smsr(deploy)


def _smsr_sparse(deploy: nn.Module) -> dict[str, nn.Module]:
    from edgesr.families.smsr.sparse import SMSRSparse

    return {"sparse": SMSRSparse(deploy)}


def _smsr_costs(deploy: nn.Module) -> list[str]:
    from edgesr.families.smsr.sparse import cost_notes

    return cost_notes(deploy)


def _classsr_keras(deploy: nn.Module) -> Any:
    raise UserError("classsr is a bundle of four graphs: export it with 'edgesr export --model classsr', which "
                    "writes a directory (export/classsr_bundle.py)")


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
        footprint=ecbsr.footprint,
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
        footprint=splitsr.footprint,
    ),
    "classsr": ModelSpec(
        name="classsr",
        summary="classifier routes 32x32 LR tiles to one of three branches (FSRCNN or SRResNet; RGB, 0..1)",
        presets=classsr.PRESETS,
        default_variant="FSRCNN-16-36-56",
        scales=classsr.SCALES,
        default_scale=4,
        default_pixel_range=1.0,
        parse_variant=classsr.parse_variant,
        config_from_state_dict=classsr.config_from_state_dict,
        is_deploy_state_dict=classsr.is_deploy_state_dict,
        train_graph=classsr.ClassSR,
        deploy_graph=classsr.ClassSRDeploy,
        keras_graph=_classsr_keras,
        footprint=classsr.footprint,
        bundle="edgesr.families.classsr.bundle",
    ),
    "smsr": ModelSpec(
        name="smsr",
        summary="sparse mask SR: learned spatial/channel masks, dense-masked deploy graph + sparse path (RGB, 0..255)",
        presets=smsr.PRESETS,
        default_variant="C64-K5",
        scales=smsr.SCALES,
        default_scale=4,
        default_pixel_range=255.0,
        parse_variant=smsr.parse_variant,
        config_from_state_dict=smsr.config_from_state_dict,
        is_deploy_state_dict=smsr.is_deploy_state_dict,
        train_graph=smsr.SMSR,
        deploy_graph=smsr.deploy_graph_from_config,
        keras_graph=_smsr_keras,
        footprint=smsr.footprint,
        extra_graphs=_smsr_sparse,
        cost_notes=_smsr_costs,
        verify_precisions=("fp32", "fp16"),
        verify_note="smsr checks fp32 and fp16 unless --precision is given: an int8 file decides most mask "
                    "pixels within int8 noise of a tie, and the error model cannot bound what depends on "
                    "such decisions (measured: benchmarks/results/smsr-masks.md)",
    ),
}


def get_model(name: str) -> ModelSpec:
    """Look a model up by name, with a one-line error listing the known ones."""
    spec = MODELS.get(name.lower())
    if spec is None:
        raise UserError(f"unknown model '{name}': choose one of {', '.join(MODELS)} (see 'edgesr models')")
    return spec
