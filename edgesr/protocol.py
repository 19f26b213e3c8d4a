"""PSNR-Y protocols of the SR literature: the same images, three published formulas.

Every protocol scores 8-bit RGB images (SR clamped to [0, 1] and rounded, HR as stored) with
`scale` pixels cropped from every border; they differ in how Y is formed:

- ``edsr`` (default): EDSR's `calc_psnr`, used unchanged by SMSR (and ECBSR's PyTorch code):
  d = (SR - HR) / 255 per RGB channel, Y-diff = (65.738 d_R + 129.057 d_G + 25.064 d_B) / 256,
  PSNR = -10 log10(mean(Y-diff^2)). SR is rounded half to even (`torch.round`).
- ``matlab``: MATLAB's `rgb2ycbcr` on the uint8 images, so Y itself is rounded to 8 bits:
  Y = round(16 + (65.481 R + 128.553 G + 24.966 B) / 255), PSNR = 10 log10(255^2 / MSE)
  (RCAN's and ClassSR's `Evaluate_PSNR_SSIM.m`; edgesr's only protocol until `edsr`).
- ``basicsr``: BasicSR's `calculate_psnr(..., test_y_channel=True)`: the same Y in float, not
  rounded.

SSIM (Gaussian window, sigma 1.5, on 0..255) is computed on each protocol's Y image; ``edsr``
defines no Y image, so it uses MATLAB's rounded Y there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edgesr.errors import UserError
from edgesr.metrics import psnr
from edgesr.resize import matlab_uint8

EDSR_Y_DIFF = np.array([65.738, 129.057, 25.064]) / 256.0
BT601_Y = np.array([65.481, 128.553, 24.966]) / 255.0


def quantize(rgb: np.ndarray) -> np.ndarray:
    """[0, 1] float -> 8-bit values 0..255 (float64), rounded half to even like EDSR's `quantize`."""
    return np.round(np.clip(rgb, 0.0, 1.0) * 255.0)


def crop(image: np.ndarray, border: int) -> np.ndarray:
    return image[border:-border, border:-border] if border else image


def y_float(rgb8: np.ndarray) -> np.ndarray:
    """BT.601 luma of 8-bit RGB, 16..235, not rounded (BasicSR's `to_y_channel`)."""
    return 16.0 + rgb8 @ BT601_Y


def y_matlab(rgb8: np.ndarray) -> np.ndarray:
    """MATLAB's `rgb2ycbcr` luma of uint8 RGB: rounded to uint8 (half away from zero)."""
    return matlab_uint8(y_float(rgb8))


def _edsr_psnr(sr8: np.ndarray, hr8: np.ndarray, scale: int) -> float:
    y_diff = crop((sr8 - hr8) / 255.0, scale) @ EDSR_Y_DIFF
    return psnr(np.zeros_like(y_diff), y_diff, 1.0)


def _y_psnr(luma: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray, np.ndarray, int], float]:
    def psnr_y(sr8: np.ndarray, hr8: np.ndarray, scale: int) -> float:
        return psnr(crop(luma(hr8), scale), crop(luma(sr8), scale), 255.0)

    return psnr_y


@dataclass(frozen=True)
class Protocol:
    """One way to score SR output: PSNR-Y of 8-bit RGB images, and the Y image SSIM is taken on."""

    name: str
    summary: str
    psnr_y: Callable[[np.ndarray, np.ndarray, int], float]  # (SR 8-bit RGB, HR 8-bit RGB, scale) -> dB
    ssim_luma: Callable[[np.ndarray], np.ndarray]  # 8-bit RGB -> the Y image SSIM is computed on


PROTOCOLS = {p.name: p for p in (
    Protocol("edsr", "EDSR/SMSR calc_psnr: Y of the float RGB difference, (65.738, 129.057, 25.064)/256",
             _edsr_psnr, y_matlab),
    Protocol("matlab", "MATLAB rgb2ycbcr on uint8: Y rounded to 8 bits", _y_psnr(y_matlab), y_matlab),
    Protocol("basicsr", "BasicSR calculate_psnr(test_y_channel=True): float Y, not rounded", _y_psnr(y_float), y_float),
)}
DEFAULT_PROTOCOL = "edsr"


def get_protocol(name: str) -> Protocol:
    protocol = PROTOCOLS.get(name)
    if protocol is None:
        raise UserError(f"unknown evaluation protocol '{name}': choose one of {', '.join(PROTOCOLS)}")
    return protocol
