"""Quality of any graph (PyTorch, ONNX, TFLite) on HR photos with an SR paper's protocol
(edgesr.protocol): LR and the bicubic baseline as MATLAB's imresize makes them from 8-bit images."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edgesr.data import degrade, readable_images, resize_8bit, to_channels
from edgesr.images import rgb_to_ycbcr, ycbcr_to_rgb
from edgesr.metrics import psnr
from edgesr.protocol import DEFAULT_PROTOCOL, Protocol, crop, get_protocol, quantize
from edgesr.resize import imresize
from edgesr.runners import Graph


def ssim_y(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM as the papers' MATLAB code computes it (Gaussian window, sigma 1.5, 8-bit range)."""
    from skimage.metrics import structural_similarity

    return float(structural_similarity(a, b, data_range=255.0, gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False))


@dataclass(frozen=True)
class ImageScores:
    """Scores of one image: the model and bicubic upscaling of the same LR."""

    name: str
    psnr_y: float
    ssim_y: float
    psnr_rgb: float
    bicubic_psnr_y: float
    bicubic_ssim_y: float
    bicubic_psnr_rgb: float

    def to_dict(self) -> dict:
        return asdict(self)


def super_resolve_rgb(graph: Graph, lr_rgb: np.ndarray, scale: int, colors: int, pixel_range: float,
                      upscaled_rgb: np.ndarray | None = None) -> np.ndarray:
    """Run a model on an RGB LR image; Y-only models take CbCr from `upscaled_rgb` (default: the
    float bicubic upscale of the LR). Returns RGB in [0, 1]."""
    x = to_channels(lr_rgb, colors)[None].astype(np.float32) * pixel_range
    out = graph(x)[0] / pixel_range
    if colors == 3:
        return out.transpose(1, 2, 0)
    ycbcr = rgb_to_ycbcr(imresize(lr_rgb, scale) if upscaled_rgb is None else upscaled_rgb)
    ycbcr[..., 0] = out[0]
    return ycbcr_to_rgb(ycbcr)


def score_image(name: str, sr_rgb: np.ndarray, bicubic_rgb: np.ndarray, hr_rgb: np.ndarray, scale: int,
                protocol: Protocol) -> ImageScores:
    """PSNR-Y and SSIM-Y by `protocol` of the 8-bit SR and bicubic images against the 8-bit HR,
    `scale` pixels cropped from every border; RGB PSNR alongside."""
    hr8 = quantize(hr_rgb)
    hr_luma = crop(protocol.ssim_luma(hr8), scale)
    metrics = []
    for rgb in (sr_rgb, bicubic_rgb):
        rgb8 = quantize(rgb)
        metrics += [protocol.psnr_y(rgb8, hr8, scale), ssim_y(crop(protocol.ssim_luma(rgb8), scale), hr_luma),
                    psnr(crop(hr8, scale), crop(rgb8, scale), 255.0)]
    return ImageScores(name, *metrics)


SSIM_WINDOW = 11  # the Gaussian window (sigma 1.5) needs 11 pixels after the border crop
HR_BYTES_PER_PIXEL = 6 * 3 * 8  # decoded HR, SR, bicubic and their 8-bit and Y copies, float64


@dataclass(frozen=True)
class FolderScores:
    """Scores of every usable image of a folder, and the names of those skipped."""

    images: list[ImageScores]
    skipped: list[str]
    protocol: str = DEFAULT_PROTOCOL


def evaluate_folder(graph: Graph, folder: Path, scale: int, colors: int, pixel_range: float,
                    progress=lambda _: None, activation_bytes_per_lr_pixel: float = 0.0,
                    protocol: str = DEFAULT_PROTOCOL) -> FolderScores:
    """Every usable image: HR cropped to a multiple of scale, LR and the bicubic baseline by
    MATLAB's imresize of 8-bit images, then scored by `protocol`. Unreadable images, images too
    small for the border crop and SSIM window, and images too large for memory are skipped with a
    warning and listed."""
    scoring = get_protocol(protocol)
    per_pixel = HR_BYTES_PER_PIXEL + activation_bytes_per_lr_pixel / scale ** 2
    usable, skipped = readable_images(folder, scale, 2 * scale + SSIM_WINDOW, per_pixel)
    scores = []
    for path, hr in usable:
        lr = degrade(hr, scale)
        progress(f"evaluating {path.name} ({lr.shape[1]}x{lr.shape[0]} LR)")
        bicubic = resize_8bit(lr, scale)
        sr = super_resolve_rgb(graph, lr, scale, colors, pixel_range, bicubic)
        scores.append(score_image(path.name, sr, bicubic, hr, scale, scoring))
    return FolderScores(scores, skipped, protocol)


def mean_scores(scores: list[ImageScores]) -> dict[str, float]:
    """Mean of every metric over the images."""
    fields = [f for f in ImageScores.__dataclass_fields__ if f != "name"]
    return {f: float(np.mean([getattr(s, f) for s in scores])) for f in fields}
