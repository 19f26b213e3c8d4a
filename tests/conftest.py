"""Shared fixtures: tiny models so the suite stays fast on 2 cores."""

import pytest
import torch

from edgesr.models.ecbsr import ECBSR, ECBSRConfig
from edgesr.pipeline import PreparedModel
from edgesr.registry import get_model


def _trained_like(config: ECBSRConfig, seed: int = 0) -> ECBSR:
    """A tiny ECBSR whose edge branches, biases and slopes are far from their init."""
    torch.manual_seed(seed)
    model = ECBSR(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith((".scale", ".bias", "act.weight")):
                p.copy_(torch.randn(p.shape) * 0.2)
    return model.eval()


def prepared_ecbsr(config: ECBSRConfig) -> PreparedModel:
    train = _trained_like(config)
    return PreparedModel(get_model("ecbsr"), config, train, train.reparameterize(), "test weights", True)


@pytest.fixture(scope="session")
def tiny_y() -> PreparedModel:
    return prepared_ecbsr(ECBSRConfig(2, 8, 3))


@pytest.fixture(scope="session")
def tiny_rgb() -> PreparedModel:
    return prepared_ecbsr(ECBSRConfig(1, 8, 2, colors=3, pixel_range=1.0))
