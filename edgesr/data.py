"""Images on disk -> LR/HR pairs: robust loading, MATLAB bicubic degradation, aligned crops."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgesr.errors import UserError
from edgesr.images import rgb_to_y
from edgesr.resize import imresize

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


def load_rgb(path: Path) -> np.ndarray:
    """Any image file -> RGB float64 HxWx3 in [0, 1]: EXIF rotation applied, grayscale
    replicated, alpha composited on white, 16-bit grayscale kept at full precision."""
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)
        if im.mode.startswith("I"):  # 16/32-bit grayscale
            arr = np.asarray(im, dtype=np.float64)
            peak = 65535.0 if im.mode.startswith("I;16") or arr.max() > 255 else 255.0
            return np.repeat(np.clip(arr / peak, 0, 1)[..., None], 3, axis=2)
        if im.mode in ("RGBA", "LA", "P", "PA"):
            rgba = np.asarray(im.convert("RGBA"), dtype=np.float64) / 255.0
            return rgba[..., :3] * rgba[..., 3:] + (1.0 - rgba[..., 3:])
        return np.asarray(im.convert("RGB"), dtype=np.float64) / 255.0


def list_images(folder: Path) -> list[Path]:
    """Image files under `folder` (recursively), sorted; a clear error if there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"data folder {folder} not found")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise UserError(f"data folder {folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


def modcrop(image: np.ndarray, scale: int) -> np.ndarray:
    """Crop HR so both sides are multiples of the scale (the papers' protocol)."""
    h, w = image.shape[:2]
    return image[: h - h % scale, : w - w % scale]


def degrade(hr: np.ndarray, scale: int) -> np.ndarray:
    """LR = MATLAB bicubic downscale of HR, quantized to 8 bits like the stored LR PNGs."""
    return np.clip(np.round(imresize(hr, 1.0 / scale) * 255.0), 0, 255) / 255.0


def to_channels(rgb: np.ndarray, colors: int) -> np.ndarray:
    """HxWx3 RGB -> CxHxW with 1 (Y, rounded to 8 bits like MATLAB's rgb2ycbcr on uint8) or 3
    channels, in [0, 1]."""
    return (np.round(rgb_to_y(rgb) * 255.0) / 255.0)[None] if colors == 1 else rgb.transpose(2, 0, 1)


@dataclass
class PairSet:
    """Whole-image LR/HR pairs held in memory (channels-first float32 in [0, 1])."""

    names: list[str]
    lr: list[np.ndarray]
    hr: list[np.ndarray]
    skipped: list[str]


def load_pairs(folder: Path, scale: int, colors: int, min_lr_side: int = 1) -> PairSet:
    """Load every readable image, build its LR by bicubic degradation; corrupt files and images
    smaller than `min_lr_side` LR pixels are skipped with a warning and counted."""
    names, lrs, hrs, skipped = [], [], [], []
    for path in list_images(folder):
        try:
            rgb = modcrop(load_rgb(path), scale)
        except (OSError, ValueError, SyntaxError) as exc:
            print(f"warning: skipping unreadable image {path.name}: {exc}", file=sys.stderr)
            skipped.append(path.name)
            continue
        if min(rgb.shape[:2]) // scale < min_lr_side:
            print(f"warning: skipping {path.name}: {rgb.shape[1]}x{rgb.shape[0]} is smaller than the "
                  f"{min_lr_side * scale}-pixel patch", file=sys.stderr)
            skipped.append(path.name)
            continue
        names.append(path.name)
        hrs.append(to_channels(rgb, colors).astype(np.float32))
        lrs.append(to_channels(degrade(rgb, scale), colors).astype(np.float32))
    if not names:
        raise UserError(f"no usable image in {folder}: {len(skipped)} skipped (unreadable or smaller than "
                        f"{min_lr_side * scale} pixels)")
    return PairSet(names, lrs, hrs, skipped)


def random_batch(pairs: PairSet, batch: int, lr_patch: int, scale: int,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Aligned random LR/HR crops with random flips and 90-degree rotations."""
    lr_out = np.empty((batch, pairs.lr[0].shape[0], lr_patch, lr_patch), np.float32)
    hr_out = np.empty((batch, pairs.hr[0].shape[0], lr_patch * scale, lr_patch * scale), np.float32)
    for b in range(batch):
        i = rng.integers(len(pairs.lr))
        lr, hr = pairs.lr[i], pairs.hr[i]
        top = rng.integers(lr.shape[1] - lr_patch + 1)
        left = rng.integers(lr.shape[2] - lr_patch + 1)
        lr_crop = lr[:, top:top + lr_patch, left:left + lr_patch]
        hr_crop = hr[:, top * scale:(top + lr_patch) * scale, left * scale:(left + lr_patch) * scale]
        k, flip = rng.integers(4), rng.integers(2)
        lr_crop, hr_crop = np.rot90(lr_crop, k, axes=(1, 2)), np.rot90(hr_crop, k, axes=(1, 2))
        if flip:
            lr_crop, hr_crop = lr_crop[:, :, ::-1], hr_crop[:, :, ::-1]
        lr_out[b], hr_out[b] = lr_crop, hr_crop
    return lr_out, hr_out
