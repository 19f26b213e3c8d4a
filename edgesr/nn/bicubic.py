"""A global bicubic residual (SMSR's, and SplitSR's -BIC variants): PyTorch's bicubic upsampling
(cubic convolution, a = -0.75, align_corners=False, edges clamped) at an integer scale s, written
as a fixed 5x5 conv whose 3*s*s output channels are the s*s phases of each colour in PixelShuffle
order. Output phase p of a row reads the input offsets -2..2 around its source pixel with the
cubic weights of t = frac((p + 0.5)/s - 0.5); replicate padding by 2 reproduces the clamping, so
PixelShuffle(conv(pad(x))) equals F.interpolate(x, scale_factor=s, mode="bicubic") exactly. The
weights of each phase sum to 1, so an affine colour map A x + c commutes with it: an exporter folds
A into the kernel (`colour_mix`) and c into a bias."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

BICUBIC_A = -0.75  # PyTorch's cubic convolution coefficient


def cubic_taps(scale: int) -> torch.Tensor:
    """(s, 5) float64: PyTorch's bicubic (align_corners=False) weights of output phase p over the
    input offsets -2..2 (4 of the 5 are non-zero), at integer scale s."""
    taps = torch.zeros(scale, 5, dtype=torch.float64)
    a = BICUBIC_A
    for p in range(scale):
        src = (p + 0.5) / scale - 0.5
        base = math.floor(src)
        t = src - base
        w = [((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a,
             ((a + 2) * t - (a + 3)) * t * t + 1,
             ((a + 2) * (1 - t) - (a + 3)) * (1 - t) * (1 - t) + 1]
        w.append(1 - sum(w))
        for k in range(4):
            taps[p, base - 1 + k + 2] = w[k]
    return taps


def bicubic_kernel(scale: int, colour_mix: torch.Tensor | None = None) -> torch.Tensor:
    """(3*s*s, 3, 5, 5) float64 conv kernel: on a 2-pixel replicate-padded image it outputs the
    bicubic upsampling's s*s phases in PixelShuffle order (channel c*s*s + i*s + j), optionally
    mixing colours by the 3x3 matrix `colour_mix` (identity by default)."""
    taps = cubic_taps(scale)
    phases = torch.einsum("iy,jx->ijyx", taps, taps).reshape(scale * scale, 5, 5)
    mix = torch.eye(3, dtype=torch.float64) if colour_mix is None else colour_mix.double()
    return torch.einsum("oc,pyx->opcyx", mix, phases).reshape(3 * scale * scale, 3, 5, 5)


def bicubic_upsample(x: torch.Tensor, scale: int) -> torch.Tensor:
    """PyTorch's bicubic upsampling (the authors' global residual), computed in float64: in
    float32 PyTorch derives the tap weights from a source coordinate that drifts with the output
    index (x3 at 360x640 LR: up to 0.016 on 0..255, beyond the fp32 verification bound)."""
    return F.interpolate(x.double(), scale_factor=scale, mode="bicubic", align_corners=False).to(x.dtype)


def bicubic_phases(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """The pre-shuffle bicubic phases of x (replicate padding = PyTorch's edge clamping)."""
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="replicate"), kernel)
