"""Upscale whole images of any size: overlapping LR tiles, stitched by their centres, into an
8-bit output filled tile by tile (the whole output is never held in floating point)."""

from __future__ import annotations

import numpy as np

from edgesr.evaluate import super_resolve_rgb
from edgesr.runners import Graph
from edgesr.tiling import tile_starts


def memory_needed(height: int, width: int, scale: int, tile: int, activation_bytes_per_pixel: float) -> int:
    """Bytes an upscale holds at once: the float32 input, the 8-bit output twice (array and PNG
    encoder), and one tile's activations and float64 copies."""
    out = height * scale * width * scale * 3
    tile_pixels = min(tile, height) * min(tile, width)
    return height * width * 3 * 4 + 2 * out + int(tile_pixels * (activation_bytes_per_pixel + 3 * 8 * 4 * scale ** 2))


def upscale_rgb(graph: Graph, lr_rgb: np.ndarray, scale: int, colors: int, pixel_range: float,
                tile: int = 256, overlap: int = 16) -> np.ndarray:
    """SR of an RGB image in [0, 1] as 8-bit RGB, tiled so memory stays bounded; each output pixel
    comes from the tile where it lies farthest from a tile edge (no seams from border effects)."""
    h, w = lr_rgb.shape[:2]
    out = np.empty((h * scale, w * scale, 3), dtype=np.uint8)
    ys, xs = tile_starts(h, tile, overlap), tile_starts(w, tile, overlap)
    for i, top in enumerate(ys):
        for j, left in enumerate(xs):
            patch = np.asarray(lr_rgb[top:top + tile, left:left + tile], dtype=np.float64)
            sr = super_resolve_rgb(graph, patch, scale, colors, pixel_range)
            # keep the part of this tile up to the middle of each overlap with its neighbours
            y0 = 0 if i == 0 else (ys[i - 1] + tile + top) // 2 - top
            x0 = 0 if j == 0 else (xs[j - 1] + tile + left) // 2 - left
            y1 = patch.shape[0] if i == len(ys) - 1 else (top + tile + ys[i + 1]) // 2 - top
            x1 = patch.shape[1] if j == len(xs) - 1 else (left + tile + xs[j + 1]) // 2 - left
            part = sr[y0 * scale:y1 * scale, x0 * scale:x1 * scale]
            out[(top + y0) * scale:(top + y1) * scale, (left + x0) * scale:(left + x1) * scale] = \
                np.round(np.clip(part, 0.0, 1.0) * 255.0).astype(np.uint8)
    return out
