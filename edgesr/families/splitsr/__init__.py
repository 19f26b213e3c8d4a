"""SplitSR: an RCAN-based hybrid whose first groups use channel-split residual blocks."""

from __future__ import annotations

from typing import Any

from edgesr.checkpoints import load_strict
from edgesr.deployable import Deployable, GraphSpec, single_graph
from edgesr.families.splitsr import model as splitsr
from edgesr.family import Family, Recipe, register
from edgesr.resources import Footprint


@register
class SplitSRFamily(Family):
    name = "splitsr"
    summary = "RCAN-based hybrid with channel-split residual blocks (RGB, 0..255)"
    presets = splitsr.PRESETS
    scales = splitsr.SCALES
    # the variant with a built-in checkpoint (x4); the paper's: A0.25-G6B6-H3-C64
    default_variant = "A0.25-G8B2-H1-C16-BIC"
    default_pixel_range = 255.0
    recipe = Recipe(lr=1e-4, batch=16, hr_patch={2: 96, 3: 96, 4: 96})

    def parse_variant(self, variant: str, scale: int, pixel_range: float) -> splitsr.SplitSRConfig:
        return splitsr.parse_variant(variant, scale, pixel_range)

    def config_from_state_dict(self, state_dict: dict, pixel_range: float) -> splitsr.SplitSRConfig:
        return splitsr.config_from_state_dict(state_dict, pixel_range)

    def footprint(self, config: splitsr.SplitSRConfig) -> Footprint:
        return splitsr.footprint(config)

    def is_deploy_state_dict(self, state_dict: dict) -> bool:
        return splitsr.is_deploy_state_dict(state_dict)

    def training_graph(self, config: splitsr.SplitSRConfig) -> splitsr.SplitSR:
        return splitsr.SplitSR(config)

    def deployable(self, train: splitsr.SplitSR) -> Deployable:
        return single_graph(self, train.config, train.reparameterize())

    def deployable_from_state_dict(self, config: splitsr.SplitSRConfig, state_dict: dict) -> Deployable:
        plain = splitsr.SplitSRPlain(config)
        load_strict(plain, state_dict, f"splitsr {config.variant} x{config.scale} (deploy graph)")
        return single_graph(self, config, plain)

    def keras_twin(self, graph: str, spec: GraphSpec, config: splitsr.SplitSRConfig) -> Any:
        from edgesr.families.splitsr.keras import build_keras_splitsr

        return build_keras_splitsr(spec.module)
