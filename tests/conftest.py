"""Shared fixtures: tiny models so the suite stays fast on 2 cores."""

import numpy as np
import pytest
import torch
from PIL import Image

from edgesr.families.ecbsr.model import ECBSR, ECBSRConfig
from edgesr.model import Prepared


def _trained_like(config: ECBSRConfig, seed: int = 0) -> ECBSR:
    """A tiny ECBSR whose edge branches, biases and slopes are far from their init."""
    torch.manual_seed(seed)
    model = ECBSR(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith((".scale", ".bias", "act.weight")):
                p.copy_(torch.randn(p.shape) * 0.2)
    return model.eval()


def prepared_ecbsr(config: ECBSRConfig) -> Prepared:
    train = _trained_like(config)
    return Prepared.of(train, "ecbsr", "test weights")


@pytest.fixture(scope="session")
def tiny_y() -> Prepared:
    return prepared_ecbsr(ECBSRConfig(2, 8, 3))


@pytest.fixture(scope="session")
def tiny_rgb() -> Prepared:
    return prepared_ecbsr(ECBSRConfig(1, 8, 2, colors=3, pixel_range=1.0))


@pytest.fixture
def hr_folder(tmp_path):
    """Two small HR training 'photos' (gradient + noise, 64x48 and 50x70) in tmp_path/d."""
    folder = tmp_path / "d"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate(((64, 48), (50, 70))):
        base = np.linspace(0, 255, w)[None, :, None] * np.ones((h, 1, 3))
        noise = rng.normal(0, 12, (h, w, 3))
        Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8)).save(folder / f"img{i}.png")
    return folder


@pytest.fixture
def interrupt_training(monkeypatch):
    """arm(n): the training loop's n-th batch raises KeyboardInterrupt, as Ctrl-C would; the
    batches after it are real, so a --resume in the same test runs normally."""
    from edgesr import train

    real = train.random_batch

    def arm(n: int) -> None:
        calls = {"n": 0}

        def batch(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == n:
                raise KeyboardInterrupt
            return real(*args, **kwargs)

        monkeypatch.setattr(train, "random_batch", batch)

    return arm
