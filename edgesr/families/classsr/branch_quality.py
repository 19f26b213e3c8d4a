"""Does each ClassSR branch beat bicubic on the sub-images the classifier sends it?

Each HR photo is cut into the LR tiles the classifier sees (tile 32, a grid without overlap);
every tile is routed (argmax) and super-resolved by its branch alone. A tile's output is scored
on its interior, `margin` LR pixels in from every side, where the branch sees all the context
it uses, so the score is the branch's and not that of the tile border. Per class, the squared
Y errors (the default protocol's Y-diff of 8-bit RGB, edgesr.protocol) of all its tiles are
pooled, for the branch and for MATLAB's bicubic upscale of the whole LR image:
gain = 10 log10(MSE_bicubic / MSE_branch) dB.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from edgesr.data import degrade, modcrop, resize_8bit
from edgesr.families.classsr.model import CLASSES, ClassSR
from edgesr.protocol import EDSR_Y_DIFF, quantize


@dataclass(frozen=True)
class BranchGain:
    """One class over every photo: how many tiles it got, and its branch's gain over bicubic."""

    name: str
    tiles: int
    gain_db: float  # nan when no tile was routed to it

    def to_dict(self) -> dict:
        return asdict(self)


def _y_sq_error(candidate8: np.ndarray, hr8: np.ndarray) -> float:
    return float(np.sum((((candidate8 - hr8) / 255.0) @ EDSR_Y_DIFF) ** 2))


def branch_gains(model: ClassSR, photos: list[np.ndarray], tile: int = 32, margin: int = 8) -> list[BranchGain]:
    """Per class (simple, medium, hard): tiles routed there and the branch's PSNR-Y gain over
    bicubic on their interiors, over `photos` (HR RGB in [0, 1])."""
    scale = model.config.scale
    inner = slice(margin * scale, (tile - margin) * scale)
    errors = np.zeros((len(CLASSES), 2))  # per class: branch, bicubic
    counts = np.zeros(len(CLASSES), dtype=int)
    model.eval()
    for photo in photos:
        hr = modcrop(photo, scale)
        lr = degrade(hr, scale)
        hr8, bicubic8 = quantize(hr), quantize(resize_8bit(lr, scale))
        rows, cols = lr.shape[0] // tile, lr.shape[1] // tile
        tiles = np.stack([lr[r * tile:(r + 1) * tile, c * tile:(c + 1) * tile]
                          for r in range(rows) for c in range(cols)]).transpose(0, 3, 1, 2)
        with torch.no_grad():
            sr, classes = model.route_hard(torch.from_numpy(tiles.astype(np.float32)) * model.config.pixel_range)
        sr8 = quantize(sr.numpy().transpose(0, 2, 3, 1) / model.config.pixel_range)
        for index, k in enumerate(classes.tolist()):
            r, c = divmod(index, cols)
            area = (slice(r * tile * scale, (r + 1) * tile * scale), slice(c * tile * scale, (c + 1) * tile * scale))
            truth, bicubic = hr8[area][inner, inner], bicubic8[area][inner, inner]
            errors[k] += (_y_sq_error(sr8[index][inner, inner], truth), _y_sq_error(bicubic, truth))
            counts[k] += 1
    return [BranchGain(name, int(n), 10 * math.log10(e[1] / e[0]) if n else math.nan)
            for name, n, e in zip(CLASSES, counts, errors, strict=True)]
