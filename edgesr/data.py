"""Images on disk -> LR/HR pairs: robust loading, MATLAB bicubic degradation, aligned crops."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgesr.errors import UserError
from edgesr.images import rgb_to_y
from edgesr.resize import imresize_uint8, matlab_uint8

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


class UnreadableImage(UserError):
    """An image file that cannot be decoded (corrupt, truncated, not an image)."""


def _checked_file(path: Path, what: str = "image") -> Path:
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{what} {path} is a directory, not a file: pass an image file")
    if not path.is_file():
        raise UserError(f"{what} {path} not found")
    return path


def _pil():
    """PIL's Image module without its decompression-bomb limit: edgesr checks an image's memory
    need against what is available (see image_size), which is the limit that matters."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None
    return Image


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())[:160]
    return text or type(exc).__name__


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) of an image file as it will be decoded (EXIF rotation applied), read from its
    header: memory is checked against this before any pixel is decoded."""
    path = _checked_file(path)
    try:
        with _pil().open(path) as im:
            width, height = im.size
            if im.getexif().get(0x0112) in (5, 6, 7, 8):  # EXIF orientations that swap the axes
                width, height = height, width
    except Exception as exc:  # noqa: BLE001  (PIL raises many types for bad files: OSError, SyntaxError, zlib.error...)
        raise UnreadableImage(f"cannot read image {path}: {_reason(exc)}") from None
    return height, width


def load_rgb(path: Path, dtype=np.float64) -> np.ndarray:
    """Any image file -> RGB HxWx3 in [0, 1] of `dtype`: EXIF rotation applied, grayscale
    replicated, alpha composited on white, 16-bit grayscale kept at full precision. Check its
    size (image_size) against memory first: decoding is not limited here."""
    from PIL import ImageOps

    path = _checked_file(path)
    try:
        with _pil().open(path) as im:
            im = ImageOps.exif_transpose(im)
            if im.mode.startswith("I"):  # 16/32-bit grayscale
                arr = np.asarray(im, dtype=dtype)
                peak = 65535.0 if im.mode.startswith("I;16") or arr.max() > 255 else 255.0
                return np.repeat(np.clip(arr / peak, 0, 1)[..., None], 3, axis=2).astype(dtype)
            if im.mode in ("RGBA", "LA", "P", "PA"):
                rgba = np.asarray(im.convert("RGBA"), dtype=dtype) / 255.0
                return rgba[..., :3] * rgba[..., 3:] + (1.0 - rgba[..., 3:])
            return np.asarray(im.convert("RGB"), dtype=dtype) / dtype(255.0)
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001  (see image_size)
        raise UnreadableImage(f"cannot read image {path}: {_reason(exc)}") from None


def list_images(folder: Path) -> list[Path]:
    """Image files under `folder` (recursively), sorted; a clear error if there are none."""
    folder = Path(folder)
    if folder.is_file():
        raise UserError(f"data folder {folder} is a file: pass a folder of images")
    if not folder.is_dir():
        raise UserError(f"data folder {folder} not found")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise UserError(f"data folder {folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


def readable_images(folder: Path, scale: int, min_hr_side: int, bytes_per_pixel: float,
                    warn=lambda message: print(f"warning: {message}", file=sys.stderr)) -> tuple[list, list[str]]:
    """(path, HR image cropped to a multiple of the scale) for every usable image in a folder, and the
    names skipped with a warning: unreadable, smaller than `min_hr_side`, or needing more than the
    available memory at `bytes_per_pixel` of HR image (checked before decoding)."""
    from edgesr.resources import SHARE, available_memory_bytes, gib

    usable, skipped = [], []
    budget = available_memory_bytes() * SHARE
    for path in list_images(folder):
        try:
            height, width = image_size(path)
            if min(height, width) // scale * scale < min_hr_side:
                raise UserError(f"{width}x{height} is smaller than {min_hr_side} pixels")
            if height * width * bytes_per_pixel > budget:
                raise UserError(f"{width}x{height} needs about {gib(height * width * bytes_per_pixel)} of memory, "
                                f"{gib(budget)} is available")
            usable.append((path, modcrop(load_rgb(path), scale)))
        except UserError as exc:
            warn(f"skipping {path.name}: {str(exc).replace(f'cannot read image {path}: ', 'unreadable: ')}")
            skipped.append(path.name)
    if not usable:
        raise UserError(f"no usable image in {folder}: {len(skipped)} skipped (unreadable, smaller than "
                        f"{min_hr_side} pixels or too large for memory)")
    return usable, skipped


def modcrop(image: np.ndarray, scale: int) -> np.ndarray:
    """Crop HR so both sides are multiples of the scale (the papers' protocol)."""
    h, w = image.shape[:2]
    return image[: h - h % scale, : w - w % scale]


def resize_8bit(image: np.ndarray, factor: float) -> np.ndarray:
    """An image in [0, 1] as MATLAB resizes its 8-bit form (`imresize_uint8`), back in [0, 1]:
    the papers' LR images (factor 1/scale) and bicubic baseline (factor scale)."""
    return imresize_uint8(matlab_uint8(image * 255.0), factor) / 255.0


def degrade(hr: np.ndarray, scale: int) -> np.ndarray:
    """LR = MATLAB bicubic downscale of the 8-bit HR, exactly the bytes of the papers' stored LR PNGs."""
    return resize_8bit(hr, 1.0 / scale)


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


def load_pairs(folder: Path, scale: int, colors: int, min_lr_side: int = 1,
               hr_scales: tuple[float, ...] = (1.0,)) -> PairSet:
    """Load every readable image, build its LR by bicubic degradation; corrupt files, images
    smaller than `min_lr_side` LR pixels and images too large for memory are skipped with a
    warning and counted. Each factor f < 1 of `hr_scales` adds the photo downscaled by f (8-bit,
    as a smaller photo would be stored) as one more HR image: more detail per pixel."""
    names, lrs, hrs = [], [], []
    # decoding (float64 RGB), the float32 HR/LR copies and the resize's float64 passes
    usable, skipped = readable_images(folder, scale, min_lr_side * scale, bytes_per_pixel=3 * 8 * 4)
    for path, rgb in usable:
        for factor in hr_scales:
            hr = rgb if factor == 1 else modcrop(resize_8bit(rgb, factor), scale)
            if min(hr.shape[:2]) < min_lr_side * scale:
                continue
            names.append(path.name if factor == 1 else f"{path.name}@{factor:g}")
            hrs.append(to_channels(hr, colors).astype(np.float32))
            lrs.append(to_channels(degrade(hr, scale), colors).astype(np.float32))
    return PairSet(names, lrs, hrs, skipped)


def random_batch(pairs: PairSet, batch: int, lr_patch: int, scale: int, rng: np.random.Generator,
                 keep: slice = slice(None)) -> tuple[np.ndarray, np.ndarray]:
    """Aligned random LR/HR crops with random flips and 90-degree rotations: `batch` of them are
    drawn from `rng`, the `keep` share of them is cut (one rank's part of a global batch)."""
    kept = range(batch)[keep]
    lr_out = np.empty((len(kept), pairs.lr[0].shape[0], lr_patch, lr_patch), np.float32)
    hr_out = np.empty((len(kept), pairs.hr[0].shape[0], lr_patch * scale, lr_patch * scale), np.float32)
    for b in range(batch):
        i = rng.integers(len(pairs.lr))
        lr, hr = pairs.lr[i], pairs.hr[i]
        top = rng.integers(lr.shape[1] - lr_patch + 1)
        left = rng.integers(lr.shape[2] - lr_patch + 1)
        lr_crop = lr[:, top:top + lr_patch, left:left + lr_patch]
        hr_crop = hr[:, top * scale:(top + lr_patch) * scale, left * scale:(left + lr_patch) * scale]
        k, flip = rng.integers(4), rng.integers(2)
        if b not in kept:
            continue
        lr_crop, hr_crop = np.rot90(lr_crop, k, axes=(1, 2)), np.rot90(hr_crop, k, axes=(1, 2))
        if flip:
            lr_crop, hr_crop = lr_crop[:, :, ::-1], hr_crop[:, :, ::-1]
        lr_out[b - kept.start], hr_out[b - kept.start] = lr_crop, hr_crop
    return lr_out, hr_out
