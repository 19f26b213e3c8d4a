"""The numbers `edgesr models` shows, measured without allocating weights where possible: a preset
is built on PyTorch's meta device, where a forward pass computes shapes (and MAC counts) only; a
family whose re-parameterization reads weight values (SMSR's masks) is built for real."""

from __future__ import annotations

import torch

from edgesr.family import Family
from edgesr.profile import count_macs, count_params


def family_rows(family: Family, size: int = 32) -> list[dict]:
    """Parameters and MACs per LR pixel of every preset at every scale of a family."""
    rows = []
    for variant in family.presets:
        for scale in family.scales:
            config = family.config(variant, scale)
            try:
                with torch.device("meta"):
                    train = family.training_graph(config).eval()
                    deployable = family.deployable(train)
            except (RuntimeError, NotImplementedError):  # the fold needs values, not just shapes
                train = family.training_graph(config).eval()
                deployable = family.deployable(train)
            macs = {}
            for name, spec in deployable.graphs.items():
                side = spec.tile or size
                macs[name] = count_macs(spec.module, (1, config.colors, side, side)) / (side * side)
            train.train()  # the training graph's cost: every branch (ClassSR's soft routing), no hard decision
            rows.append({"variant": config.variant, "scale": scale, "params_train": count_params(train),
                         "params_deploy": sum(count_params(s.module) for s in deployable.graphs.values()),
                         "train_macs_per_pixel": count_macs(train, (1, config.colors, size, size)) / size ** 2,
                         "deploy_macs_per_pixel": macs,
                         "gmac_360x640": macs["deploy"] * 360 * 640 / 1e9 if deployable.single else None})
    return rows
