"""MATLAB-compatible bicubic `imresize` (antialiased when shrinking), as the SR papers use it.

Each axis is resized by a dense (out x in) weight matrix built like MATLAB's `contributions`:
cubic kernel with a = -0.5, kernel widened by 1/scale when downscaling, symmetric (mirror)
boundary handling folded into the matrix, rows normalised to sum to one.
"""

from __future__ import annotations

import math

import numpy as np


def _cubic(x: np.ndarray) -> np.ndarray:
    ax = np.abs(x)
    ax2, ax3 = ax ** 2, ax ** 3
    return ((1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1)
            + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2)))


def resize_matrix(in_len: int, out_len: int, scale: float) -> np.ndarray:
    """(out_len, in_len) float64 matrix M so that resized = M @ signal along one axis."""
    kernel_width = 4.0 / scale if scale < 1 else 4.0
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - kernel_width / 2)
    taps = int(math.ceil(kernel_width)) + 2
    indices = left[:, None] + np.arange(taps)[None, :]
    distance = u[:, None] - indices
    weights = scale * _cubic(distance * scale) if scale < 1 else _cubic(distance)
    weights /= weights.sum(axis=1, keepdims=True)
    # symmetric boundary: index i (1-based) outside [1, in_len] mirrors back inside
    zero_based = indices.astype(np.int64) - 1
    period = 2 * in_len
    mirrored = np.mod(zero_based, period)
    mirrored = np.where(mirrored >= in_len, period - 1 - mirrored, mirrored)
    matrix = np.zeros((out_len, in_len))
    np.add.at(matrix, (np.repeat(np.arange(out_len), taps), mirrored.ravel()), weights.ravel())
    return matrix


def matlab_uint8(values: np.ndarray) -> np.ndarray:
    """MATLAB's conversion of doubles to uint8: saturate to 0..255, round half away from zero
    (as float64 values)."""
    return np.clip(np.floor(np.asarray(values, dtype=np.float64) + 0.5), 0.0, 255.0)


def imresize_uint8(image8: np.ndarray, scale: float) -> np.ndarray:
    """MATLAB's `imresize(uint8_image, scale, 'bicubic')`: the vertical pass first (equal scales keep
    MATLAB's dimension order), its result stored as uint8, then the horizontal pass, stored as uint8
    again. `image8` holds 0..255 integer values (any float or integer dtype); returns float64 0..255
    integer values. The SR papers' stored LR images are these bytes exactly."""
    h, w = image8.shape[:2]
    out_h, out_w = int(math.ceil(h * scale)), int(math.ceil(w * scale))
    rows, cols = resize_matrix(h, out_h, scale), resize_matrix(w, out_w, scale)
    vertical = matlab_uint8(np.tensordot(rows, np.asarray(image8, dtype=np.float64), axes=(1, 0)))
    return matlab_uint8(np.moveaxis(np.tensordot(cols, vertical, axes=(1, 1)), 0, 1))


def imresize(image: np.ndarray, scale: float) -> np.ndarray:
    """Resize an HxW or HxWxC float image by `scale` (output size = ceil(size * scale)),
    MATLAB-style. Returns float64; the caller clips/rounds as needed."""
    h, w = image.shape[:2]
    out_h, out_w = int(math.ceil(h * scale)), int(math.ceil(w * scale))
    rows, cols = resize_matrix(h, out_h, scale), resize_matrix(w, out_w, scale)
    img = image.astype(np.float64)
    if img.ndim == 2:
        return rows @ img @ cols.T
    return np.einsum("oh,hwc,pw->opc", rows, img, cols, optimize=True)
