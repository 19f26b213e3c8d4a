"""Tensor layout conversions between PyTorch (NCHW, OIHW) and TensorFlow (NHWC, HWIO)."""

from __future__ import annotations

import numpy as np


def depth_to_space_order(colors: int, scale: int) -> list[int]:
    """Channel permutation so that TF depth_to_space reproduces torch PixelShuffle.

    PixelShuffle reads channel c*s*s + i*s + j for colour c at sub-pixel (i, j);
    depth_to_space reads channel (i*s + j)*C + c. Entry t of the result is the PyTorch
    channel that must feed TensorFlow channel t.
    """
    s2 = scale * scale
    return [(t % colors) * s2 + t // colors for t in range(colors * s2)]


def oihw_to_hwio(kernel: np.ndarray) -> np.ndarray:
    """PyTorch conv kernel (out, in, kh, kw) -> TensorFlow (kh, kw, in, out)."""
    return np.ascontiguousarray(kernel.transpose(2, 3, 1, 0))
