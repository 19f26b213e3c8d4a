"""ECBSR: Edge-oriented Convolution Blocks, each re-parameterized into one conv3x3."""

from __future__ import annotations

from typing import Any

from edgesr.checkpoints import load_strict
from edgesr.deployable import Deployable, GraphSpec, single_graph
from edgesr.families.ecbsr import model as ecbsr
from edgesr.family import Family, Recipe, register
from edgesr.resources import Footprint


@register
class ECBSRFamily(Family):
    name = "ecbsr"
    summary = "Edge-oriented Convolution Blocks, re-parameterized into plain conv3x3 (Y, 0..255)"
    presets = ecbsr.PRESETS
    scales = ecbsr.SCALES
    default_variant = "M4C16"
    default_pixel_range = 255.0
    recipe = Recipe(lr=5e-4, batch=32, hr_patch={2: 128, 3: 192, 4: 256})

    def parse_variant(self, variant: str, scale: int, pixel_range: float) -> ecbsr.ECBSRConfig:
        return ecbsr.parse_variant(variant, scale, pixel_range)

    def config_from_state_dict(self, state_dict: dict, pixel_range: float) -> ecbsr.ECBSRConfig:
        return ecbsr.config_from_state_dict(state_dict, pixel_range)

    def footprint(self, config: ecbsr.ECBSRConfig) -> Footprint:
        return ecbsr.footprint(config)

    def is_deploy_state_dict(self, state_dict: dict) -> bool:
        return ecbsr.is_deploy_state_dict(state_dict)

    def training_graph(self, config: ecbsr.ECBSRConfig) -> ecbsr.ECBSR:
        return ecbsr.ECBSR(config)

    def training_step_graph(self, train: ecbsr.ECBSR) -> ecbsr.OnlineFolded:
        return ecbsr.OnlineFolded(train)

    def deployable(self, train: ecbsr.ECBSR) -> Deployable:
        return single_graph(self, train.config, train.reparameterize())

    def deployable_from_state_dict(self, config: ecbsr.ECBSRConfig, state_dict: dict) -> Deployable:
        plain = ecbsr.ECBSRPlain(config)
        load_strict(plain, state_dict, f"ecbsr {config.variant} x{config.scale} (deploy graph)")
        return single_graph(self, config, plain)

    def keras_twin(self, graph: str, spec: GraphSpec, config: ecbsr.ECBSRConfig) -> Any:
        from edgesr.families.ecbsr.keras import build_keras_ecbsr

        return build_keras_ecbsr(spec.module)

    def int8_form(self, graph: str, spec: GraphSpec, config: ecbsr.ECBSRConfig) -> GraphSpec:
        from edgesr.nn.blocked import blocked_chain

        layers = [(b.conv3x3.weight, b.conv3x3.bias, None if b.act is None else b.act.weight)
                  for b in spec.module.backbone]
        return GraphSpec(blocked_chain(layers, config.colors, config.scale))
