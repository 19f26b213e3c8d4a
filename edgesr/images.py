"""Real and random test images, in the colour space and pixel range a model expects."""

from __future__ import annotations

import numpy as np

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """BT.601 YCbCr as MATLAB's rgb2ycbcr (scikit-image's: Y in [16, 235]/255 for RGB in [0, 1]),
    all channels in [0, 1], computed in float64. HWC -> HWC."""
    from skimage.color import rgb2ycbcr

    return rgb2ycbcr(np.asarray(rgb, dtype=np.float64)) / 255.0


def rgb_to_y(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma as the SR papers use it (see rgb_to_ycbcr). HWC -> HW."""
    return rgb_to_ycbcr(rgb)[..., 0]


def ycbcr_to_rgb(ycbcr: np.ndarray) -> np.ndarray:
    """Inverse of rgb_to_ycbcr (values not clipped). HWC -> HWC."""
    from skimage.color import ycbcr2rgb

    return ycbcr2rgb(np.asarray(ycbcr, dtype=np.float64) * 255.0)


def photo(name: str) -> np.ndarray:
    """A photo bundled with scikit-image, RGB float64 in [0, 1], HWC."""
    from skimage import data

    return getattr(data, name)().astype(np.float64) / 255.0


def to_model_input(rgb: np.ndarray, colors: int, pixel_range: float) -> np.ndarray:
    """HWC RGB [0,1] -> NCHW float32 with `colors` channels (1 = Y) in [0, pixel_range]."""
    img = rgb_to_y(rgb)[..., None] if colors == 1 else rgb
    return (img.transpose(2, 0, 1)[None] * pixel_range).astype(np.float32)


def photo_crop(name: str, height: int, width: int, colors: int, pixel_range: float,
               rng: np.random.Generator) -> np.ndarray:
    """A random crop of a bundled photo as a model input (NCHW); a crop larger than the photo
    comes from the photo mirrored at its borders."""
    rgb = photo(name)
    if height > rgb.shape[0] or width > rgb.shape[1]:
        reps = (-(-height // rgb.shape[0]), -(-width // rgb.shape[1]))
        rgb = np.pad(rgb, ((0, (reps[0] - 1) * rgb.shape[0]), (0, (reps[1] - 1) * rgb.shape[1]), (0, 0)),
                     mode="symmetric")
    top = rng.integers(0, rgb.shape[0] - height + 1)
    left = rng.integers(0, rgb.shape[1] - width + 1)
    return to_model_input(rgb[top:top + height, left:left + width], colors, pixel_range)


def verification_inputs(sizes: list[tuple[int, int]], colors: int, pixel_range: float,
                        seed: int = 0) -> list[tuple[str, np.ndarray]]:
    """For every size, a uniform-random image and a real photo crop: (label, NCHW array)."""
    rng = np.random.default_rng(seed)
    inputs = []
    for i, (h, w) in enumerate(sizes):
        noise = (rng.random((1, colors, h, w)) * pixel_range).astype(np.float32)
        inputs.append((f"random {h}x{w}", noise))
        name = PHOTOS[i % len(PHOTOS)]
        inputs.append((f"{name} {h}x{w}", photo_crop(name, h, w, colors, pixel_range, rng)))
    return inputs


# int8 calibration images: scikit-image's other bundled photographs (the held-out PHOTOS are
# never used to fit anything): grey ones serve RGB models as grey RGB
CALIBRATION_IMAGES = ("camera", "brick", "grass", "gravel", "coins", "moon", "clock", "hubble_deep_field",
                      "immunohistochemistry", "retina")
FULL_CROP = (270, 480)  # the largest calibration crop: a phone-sized LR frame


def calibration_image(name: str) -> np.ndarray:
    """A calibration image, RGB float64 in [0, 1], HWC."""
    from skimage import data

    image = getattr(data, name)().astype(np.float64) / 255.0
    return np.repeat(image[..., None], 3, axis=-1) if image.ndim == 2 else image


def calibration_crops(colors: int, pixel_range: float, count: int = 32, size: int = 64, seed: int = 0,
                      full: int = 0) -> list[np.ndarray]:
    """The int8 representative dataset: `count` random size x size crops (with flips) of the
    calibration images, then `full` crops of up to FULL_CROP pixels (even sides) of them: ranges
    fitted to small patches alone clip the extremes of whole images."""
    rng = np.random.default_rng(seed)
    crops = []
    for i in range(count + full):
        rgb = calibration_image(CALIBRATION_IMAGES[i % len(CALIBRATION_IMAGES)])
        if i < count:
            height = width = size
        else:
            height, width = (min(side, have) // 2 * 2 for side, have in zip(FULL_CROP, rgb.shape[:2], strict=True))
        top, left = rng.integers(0, rgb.shape[0] - height + 1), rng.integers(0, rgb.shape[1] - width + 1)
        crop = to_model_input(rgb[top:top + height, left:left + width], colors, pixel_range)
        if rng.random() < 0.5:
            crop = crop[..., ::-1]
        crops.append(np.ascontiguousarray(crop))
    return crops


def write_heldout_photos(folder) -> list:
    """Write scikit-image's bundled photos (never used for training) as PNGs: the held-out set."""
    from pathlib import Path

    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in PHOTOS:
        path = folder / f"{name}.png"
        Image.fromarray((photo(name) * 255).round().astype(np.uint8)).save(path)
        paths.append(path)
    return paths
