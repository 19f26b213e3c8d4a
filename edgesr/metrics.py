"""Error statistics between two images or model outputs; PSNR."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ErrorStats:
    """max/mean absolute error and PSNR of `candidate` against `reference`."""

    max_abs: float
    mean_abs: float
    psnr_db: float

    def worst(self, other: ErrorStats) -> ErrorStats:
        return ErrorStats(max(self.max_abs, other.max_abs), max(self.mean_abs, other.mean_abs),
                          min(self.psnr_db, other.psnr_db))


def psnr(reference: np.ndarray, candidate: np.ndarray, peak: float) -> float:
    """PSNR in dB with `peak` as the peak value (scikit-image's; inf for identical arrays)."""
    from skimage.metrics import peak_signal_noise_ratio

    if np.array_equal(reference, candidate):
        return math.inf
    return float(peak_signal_noise_ratio(reference.astype(np.float64), candidate.astype(np.float64),
                                         data_range=peak))


def compare(reference: np.ndarray, candidate: np.ndarray, pixel_range: float) -> ErrorStats:
    """Raw (unclamped) errors; PSNR uses `pixel_range` as the peak value."""
    if reference.shape != candidate.shape:
        raise ValueError(f"output shapes differ: {reference.shape} vs {candidate.shape}")
    diff = np.abs(reference.astype(np.float64) - candidate.astype(np.float64))
    return ErrorStats(float(diff.max()), float(diff.mean()), psnr(reference, candidate, pixel_range))
