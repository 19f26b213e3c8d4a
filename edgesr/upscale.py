"""Upscale whole images of any size: overlapping LR tiles, stitched by their centres."""

from __future__ import annotations

import numpy as np

from edgesr.evaluate import super_resolve_rgb
from edgesr.runtimes import Graph


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Tile origins along one axis: step tile - overlap, last tile aligned to the border."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, tile - overlap))
    return starts + [length - tile]


def upscale_rgb(graph: Graph, lr_rgb: np.ndarray, scale: int, colors: int, pixel_range: float,
                tile: int = 256, overlap: int = 16) -> np.ndarray:
    """SR of an RGB image in [0, 1], tiled so memory stays bounded; each output pixel comes from
    the tile where it lies farthest from a tile edge (no seams from border effects)."""
    h, w = lr_rgb.shape[:2]
    out = np.zeros((h * scale, w * scale, 3))
    ys, xs = tile_starts(h, tile, overlap), tile_starts(w, tile, overlap)
    for i, top in enumerate(ys):
        for j, left in enumerate(xs):
            patch = lr_rgb[top:top + tile, left:left + tile]
            sr = super_resolve_rgb(graph, patch, scale, colors, pixel_range)
            # keep the part of this tile up to the middle of each overlap with its neighbours
            y0 = 0 if i == 0 else (ys[i - 1] + tile + top) // 2 - top
            x0 = 0 if j == 0 else (xs[j - 1] + tile + left) // 2 - left
            y1 = patch.shape[0] if i == len(ys) - 1 else (top + tile + ys[i + 1]) // 2 - top
            x1 = patch.shape[1] if j == len(xs) - 1 else (left + tile + xs[j + 1]) // 2 - left
            out[(top + y0) * scale:(top + y1) * scale, (left + x0) * scale:(left + x1) * scale] = \
                sr[y0 * scale:y1 * scale, x0 * scale:x1 * scale]
    return np.clip(out, 0.0, 1.0)
