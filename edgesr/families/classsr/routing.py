"""ClassSR's host-side glue: routed whole-image inference over any runtime.

route_image: pad, tile, classify the tiles and send each class's tiles through its subnet, both in
batches of at most TILE_BATCH (what an exported tile graph takes), stitch with overlap blending, crop.
Works with any Graph (PyTorch, ONNX Runtime, LiteRT, ExecuTorch); RoutedRunner wraps it as the
deployable's runner and tallies the classes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from edgesr.deployable import TILE_BATCH
from edgesr.runners import Graph
from edgesr.tiling import Tiling, extract_tiles, pad_to_tile, stitch

TileRunner = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class TileMacs:
    """MACs of one tile through the classifier and through each subnet."""

    classifier: int
    subnets: tuple[int, ...]


@dataclass(frozen=True)
class RoutedResult:
    """A routed upscale: the SR image, each tile's class, and what it cost."""

    sr: np.ndarray
    classes: np.ndarray
    macs: TileMacs | None = None

    @property
    def histogram(self) -> list[int]:
        n = len(self.macs.subnets) if self.macs else int(self.classes.max(initial=0)) + 1
        return np.bincount(self.classes, minlength=n).tolist()

    @property
    def macs_spent(self) -> int:
        """Classifier on every tile + each tile's own subnet."""
        return len(self.classes) * self.macs.classifier + sum(
            n * m for n, m in zip(self.histogram, self.macs.subnets, strict=True))

    @property
    def macs_largest(self) -> int:
        """The largest subnet on every tile (no classifier): what ClassSR saves against."""
        return len(self.classes) * max(self.macs.subnets)

    def summary(self, names: Sequence[str]) -> str:
        """'30 tiles: simple 40% (12), ...; MACs 1.2 G spent (classifier 0.1 G) = 60% of the 2.0 G ...'."""
        total = max(1, len(self.classes))
        shares = ", ".join(f"{name} {100 * n / total:.0f}% ({n})" for name, n in zip(names, self.histogram,
                                                                                       strict=True))
        text = f"{len(self.classes)} tiles: {shares}"
        if self.macs:
            text += (f"; MACs {self.macs_spent / 1e9:.3f} G spent (classifier "
                     f"{len(self.classes) * self.macs.classifier / 1e9:.3f} G) = "
                     f"{100 * self.macs_spent / self.macs_largest:.0f}% of the {self.macs_largest / 1e9:.3f} G the "
                     "largest branch spends on every tile")
        return text


def upscale_tiled(x: np.ndarray, tiling: Tiling, scale: int, run: TileRunner) -> tuple[np.ndarray, np.ndarray]:
    """(1, C, H, W) -> ((1, C, sH, sW), classes): pad to a tile, tile, run, stitch, crop."""
    height, width = x.shape[2], x.shape[3]
    padded = pad_to_tile(np.asarray(x, dtype=np.float32), tiling.tile)
    tiles, _ = extract_tiles(padded, tiling)
    sr_tiles, classes = run(tiles)
    sr = stitch(sr_tiles, tiling, padded.shape[2], padded.shape[3], scale)
    return np.ascontiguousarray(sr[:, :, :height * scale, :width * scale]), classes


def in_batches(graph: Graph, tiles: np.ndarray, batch: int) -> np.ndarray:
    """`graph` over `tiles`, `batch` at a time (an exported tile graph takes at most TILE_BATCH)."""
    return np.concatenate([np.asarray(graph(tiles[start:start + batch])) for start in range(0, len(tiles), batch)])


def routed_runner(classifier: Graph, subnets: Sequence[Graph], batch: int = TILE_BATCH) -> TileRunner:
    """Classify the tiles, then each class's tiles through its subnet, `batch` at a time."""

    def run(tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        classes = in_batches(classifier, tiles, batch).argmax(axis=1)
        out: np.ndarray | None = None
        for k, net in enumerate(subnets):
            chosen = np.flatnonzero(classes == k)
            if len(chosen):
                sr = in_batches(net, tiles[chosen], batch)
                if out is None:
                    out = np.empty((len(tiles), *sr.shape[1:]), dtype=np.float32)
                out[chosen] = sr
        return out, classes

    return run


def route_image(x: np.ndarray, classifier: Graph, subnets: Sequence[Graph], tiling: Tiling, scale: int,
                macs: TileMacs | None = None, batch: int = TILE_BATCH) -> RoutedResult:
    """The routed whole-image inference (see the module docstring)."""
    sr, classes = upscale_tiled(x, tiling, scale, routed_runner(classifier, subnets, batch))
    return RoutedResult(sr, classes, macs)


class RoutedRunner:
    """The deployable's runner: routed inference through a classifier and subnets of any runtime,
    with the classes and MACs of every call tallied (`summary`). Implements the Graph protocol."""

    def __init__(self, classifier: Graph, subnets: Sequence[Graph], class_names: Sequence[str], tiling: Tiling,
                 scale: int, macs: TileMacs, batch: int = TILE_BATCH):
        self.classifier, self.subnets, self.class_names = classifier, list(subnets), list(class_names)
        self.tiling, self.scale, self.macs, self.batch = tiling, scale, macs, batch
        self.classes: list[np.ndarray] = []

    def route(self, x: np.ndarray) -> RoutedResult:
        result = route_image(x, self.classifier, self.subnets, self.tiling, self.scale, self.macs, self.batch)
        self.classes.append(result.classes)
        return result

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.route(x).sr

    def bind(self, x: np.ndarray) -> Callable[[], np.ndarray]:
        staged = np.ascontiguousarray(x, dtype=np.float32)
        return lambda: route_image(staged, self.classifier, self.subnets, self.tiling, self.scale, self.macs,
                                   self.batch).sr

    def largest_only(self, x: np.ndarray) -> np.ndarray:
        """The baseline: every tile through the largest subnet, same tiling and stitching."""
        k = int(np.argmax(self.macs.subnets))
        largest = self.subnets[k]
        return upscale_tiled(x, self.tiling, self.scale, lambda tiles: (
            in_batches(largest, tiles, self.batch), np.full(len(tiles), k)))[0]

    def total(self) -> RoutedResult:
        """Every call's tiles as one result (no image)."""
        return RoutedResult(np.empty(0), np.concatenate(self.classes) if self.classes else np.empty(0, int),
                            self.macs)

    def summary(self) -> str | None:
        """Class shares and MACs over every call so far."""
        return f"routed {self.total().summary(self.class_names)}" if self.classes else None
