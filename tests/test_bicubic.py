"""The shared bicubic residual (edgesr.nn.bicubic): the phase conv is PyTorch's bicubic exactly."""

import pytest
import torch
import torch.nn.functional as F

from edgesr.nn.bicubic import bicubic_kernel, bicubic_phases, bicubic_upsample


def _rgb(h: int, w: int, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    return (torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(seed)) * 255).to(dtype)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_bicubic_phase_conv_is_torch_bicubic(scale):
    x = _rgb(7, 10, dtype=torch.float64)
    ref = F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)
    ours = F.pixel_shuffle(bicubic_phases(x, bicubic_kernel(scale)), scale)
    assert (ours - ref).abs().max().item() <= 1e-9
    assert torch.allclose(bicubic_kernel(scale).sum((1, 2, 3)), torch.ones(3 * scale ** 2, dtype=torch.float64))


def test_training_graph_bicubic_does_not_drift_with_the_image_size():
    """PyTorch's float32 bicubic drifts with the output index (x3: > 1e-3 on 0..255 at 300 px
    wide); SMSR's training graph computes its residual in float64 and SplitSR's -BIC one with the
    fixed float32 phase kernel (the same taps at every index), so both stay exact."""
    x = _rgb(4, 300, dtype=torch.float64)
    exact = F.interpolate(x, scale_factor=3, mode="bicubic", align_corners=False)
    torch32 = F.interpolate(x.float(), scale_factor=3, mode="bicubic", align_corners=False)
    assert (torch32.double() - exact).abs().max().item() > 1e-3
    assert (bicubic_upsample(x.float(), 3).double() - exact).abs().max().item() <= 1e-4
    # fp32 rounding bound of a 16-tap sum over |terms| <= 1.3 x 255: 7 sigma = 7 x 2^-24 / sqrt(3) x
    # sqrt(17) x 332 = 3.3e-4 on any correct CPU; a drifting or wrong tap errs by > 1e-3
    phase32 = F.pixel_shuffle(bicubic_phases(x.float(), bicubic_kernel(3).float()), 3)
    assert (phase32.double() - exact).abs().max().item() <= 3.3e-4
