"""SMSR: spatial and channel masks learned with Gumbel-softmax, argmax masks at inference."""

from __future__ import annotations

from typing import Any

import torch.nn as nn

from edgesr.deployable import Deployable, GraphSpec, single_graph
from edgesr.families.smsr import model as smsr
from edgesr.family import Family, Recipe, register
from edgesr.resources import Footprint


@register
class SMSRFamily(Family):
    name = "smsr"
    summary = "sparse mask SR: learned spatial/channel masks, dense-masked deploy graph + sparse path (RGB, 0..255)"
    presets = smsr.PRESETS
    scales = smsr.SCALES
    default_variant = "C16-K2"  # the variant with a built-in checkpoint (x4); the paper's is C64-K5
    default_pixel_range = 255.0
    # LR patch 96; lr halved every 200 of the paper's 1000 epochs. The model's training_loss adds
    # the sparsity term (weight: the paper's 0.1 unless «regularization» says) and anneals tau (model.py).
    recipe = Recipe(lr=2e-4, batch=16, hr_patch={2: 192, 3: 288, 4: 384}, milestones=(0.2, 0.4, 0.6, 0.8),
                    regularization=smsr.SPARSITY_WEIGHT)
    verify_precisions = ("fp32", "fp16")
    verify_note = ("smsr checks fp32 and fp16 unless «precision» is given: an int8 file decides most mask pixels "
                   "within int8 noise of a tie, and the error model cannot bound what depends on such decisions "
                   "(measured: benchmarks/results/smsr-masks.md)")

    def parse_variant(self, variant: str, scale: int, pixel_range: float) -> smsr.SMSRConfig:
        return smsr.parse_variant(variant, scale, pixel_range)

    def config_from_state_dict(self, state_dict: dict, pixel_range: float) -> smsr.SMSRConfig:
        return smsr.config_from_state_dict(state_dict, pixel_range)

    def footprint(self, config: smsr.SMSRConfig) -> Footprint:
        return smsr.footprint(config)

    def training_graph(self, config: smsr.SMSRConfig) -> smsr.SMSR:
        return smsr.SMSR(config)

    def deployable(self, train: smsr.SMSR) -> Deployable:
        return single_graph(self, train.config, train.reparameterize())

    def keras_twin(self, graph: str, spec: GraphSpec, config: smsr.SMSRConfig) -> Any:
        from edgesr.families.smsr.keras import build_keras_smsr

        return build_keras_smsr(spec.module)

    def extra_graphs(self, deployable: Deployable) -> dict[str, nn.Module]:
        from edgesr.families.smsr.sparse import SMSRSparse

        return {"sparse": SMSRSparse(deployable.graphs["deploy"].module)}

    def cost_notes(self, deployable: Deployable) -> list[str]:
        from edgesr.families.smsr.sparse import cost_notes

        return cost_notes(deployable.graphs["deploy"].module)
