"""Routed ClassSR inference over any runtime, and the exported bundle's host runtime.

route_image: pad, tile, classify every tile in one batch, send each class's tiles through its
subnet in batches, stitch with overlap averaging, crop. Works with any Graph (PyTorch, ONNX
Runtime, LiteRT). RoutedBundle opens an exported bundle directory (manifest.json + the four
graph files), checks the manifest against the files, and runs it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgesr.errors import UserError
from edgesr.runtimes import Graph, open_model_file
from edgesr.tiling import Tiling, extract_tiles, pad_to_tile, stitch

MANIFEST = "manifest.json"
BUNDLE_FORMAT = "edgesr-classsr-bundle"
BUNDLE_VERSION = 1
DEFAULT_BATCH = 64
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


class RouteTally:
    """A Graph that routes every call through `route` (a RoutedBundle's or a ClassSRDeploy's)
    and adds up the tiles' classes, for a summary over a whole tiled upscale."""

    def __init__(self, route: Callable[[np.ndarray], RoutedResult]):
        self.route = route
        self.results: list[RoutedResult] = []

    def __call__(self, x: np.ndarray) -> np.ndarray:
        result = self.route(x)
        self.results.append(result)
        return result.sr

    def total(self) -> RoutedResult:
        """Every call's tiles as one result (no image)."""
        classes = np.concatenate([r.classes for r in self.results])
        return RoutedResult(np.empty(0), classes, self.results[0].macs)


def upscale_tiled(x: np.ndarray, tiling: Tiling, scale: int, run: TileRunner) -> tuple[np.ndarray, np.ndarray]:
    """(1, C, H, W) -> ((1, C, sH, sW), classes): pad to a tile, tile, run, stitch, crop."""
    height, width = x.shape[2], x.shape[3]
    padded = pad_to_tile(np.asarray(x, dtype=np.float32), tiling.tile)
    tiles, _ = extract_tiles(padded, tiling)
    sr_tiles, classes = run(tiles)
    sr = stitch(sr_tiles, tiling, padded.shape[2], padded.shape[3], scale)
    return np.ascontiguousarray(sr[:, :, :height * scale, :width * scale]), classes


def routed_runner(classifier: Graph, subnets: Sequence[Graph], batch: int = DEFAULT_BATCH) -> TileRunner:
    """Classify all tiles in one batch, then each class's tiles through its subnet, `batch` at a time."""

    def run(tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        classes = np.asarray(classifier(tiles)).argmax(axis=1)
        out: np.ndarray | None = None
        for k, net in enumerate(subnets):
            chosen = np.flatnonzero(classes == k)
            for start in range(0, len(chosen), batch):
                part = chosen[start:start + batch]
                sr = net(tiles[part])
                if out is None:
                    out = np.empty((len(tiles), *sr.shape[1:]), dtype=np.float32)
                out[part] = sr
        return out, classes

    return run


def route_image(x: np.ndarray, classifier: Graph, subnets: Sequence[Graph], tiling: Tiling, scale: int,
                macs: TileMacs | None = None, batch: int = DEFAULT_BATCH) -> RoutedResult:
    """The routed whole-image inference (see the module docstring)."""
    sr, classes = upscale_tiled(x, tiling, scale, routed_runner(classifier, subnets, batch))
    return RoutedResult(sr, classes, macs)


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _bad(path: Path, problem: str) -> UserError:
    return UserError(f"bundle {path}: {problem}; re-export it with 'edgesr export --model classsr'")


_FIELDS = {"tile": int, "stride": int, "scale": int, "colors": int, "pixel_range": (int, float), "blend": str}
_ENTRY_FIELDS = {"file": str, "sha256": str, "macs_per_tile": int, "precision": str}
_CLASS_FIELDS = {**_ENTRY_FIELDS, "name": str, "graph": str}


def _check_fields(path: Path, record: object, fields: dict, where: str) -> None:
    for key, kind in fields.items():
        value = record.get(key) if isinstance(record, dict) else None
        if not isinstance(value, kind) or isinstance(value, bool):
            raise _bad(path, f"{MANIFEST}: {where}field '{key}' is missing or has the wrong type")


def read_manifest(path: Path) -> dict:
    """manifest.json of a bundle directory, checked for format, fields and the files it names."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"bundle {path} not found: pass the directory written by 'edgesr export --model classsr'")
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise _bad(path, f"no {MANIFEST}, so it is not an edgesr ClassSR bundle")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _bad(path, f"{MANIFEST} is not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        raise _bad(path, f"{MANIFEST} is not an {BUNDLE_FORMAT} manifest")
    if manifest.get("version") != BUNDLE_VERSION:
        raise _bad(path, f"manifest version {manifest.get('version')} is not {BUNDLE_VERSION}")
    _check_fields(path, manifest, _FIELDS, "")
    classes = manifest.get("classes")
    if not isinstance(classes, list) or not classes:
        raise _bad(path, f"{MANIFEST} lists no classes")
    entries = [manifest.get("classifier"), *classes]
    for i, entry in enumerate(entries):
        _check_fields(path, entry, _CLASS_FIELDS if i else _ENTRY_FIELDS, f"class {i} " if i else "classifier ")
    if manifest["scale"] not in (2, 3, 4):
        raise _bad(path, f"manifest scale {manifest['scale']} is not 2, 3 or 4")
    Tiling(manifest["tile"], manifest["stride"], manifest["blend"])
    files = [Path(e["file"]) for e in entries]
    for entry, name in zip(entries, files, strict=True):
        file = path / name
        if name.name != str(name) or not file.is_file():
            raise _bad(path, f"{MANIFEST} names {name}, which is not a file in the bundle")
        if file.suffix != files[0].suffix:
            raise _bad(path, f"mixed runtimes ({files[0].name} and {name})")
        if file_sha256(file) != entry["sha256"]:
            raise _bad(path, f"{name} does not match the checksum in {MANIFEST} (the file was changed)")
    return manifest


class RoutedBundle:
    """An exported ClassSR bundle on ONNX Runtime or LiteRT, checked on open: every subnet must
    output tile * scale, the classifier one logit per class. Implements the Graph protocol
    (whole image in, SR image out)."""

    def __init__(self, path: Path, threads: int | None = None, batch: int = DEFAULT_BATCH):
        self.path = Path(path)
        self.manifest = read_manifest(self.path)
        m = self.manifest
        self.tiling = Tiling(int(m["tile"]), int(m["stride"]), m["blend"])
        self.scale, self.colors, self.batch = int(m["scale"]), int(m["colors"]), batch
        self.class_names = [c["name"] for c in m["classes"]]
        self.macs = TileMacs(int(m["classifier"]["macs_per_tile"]),
                             tuple(int(c["macs_per_tile"]) for c in m["classes"]))
        # four sessions take turns: idle ones must not spin (measured on 2 cores, FSRCNN x4 360x640,
        # 2 threads: routed 272 -> 215 ms, largest branch 269 -> 209 ms)
        self.classifier = open_model_file(self.path / m["classifier"]["file"], threads, spin=False)
        self.subnets = [open_model_file(self.path / c["file"], threads, spin=False) for c in m["classes"]]
        self._check_shapes()

    def _check_shapes(self) -> None:
        t, s = self.tiling.tile, self.scale
        probe = np.zeros((1, self.colors, t, t), dtype=np.float32)
        logits = self._probe("classifier", self.classifier, probe).shape
        if logits != (1, len(self.subnets)):
            raise _bad(self.path, f"the classifier outputs shape {logits}, expected (1, {len(self.subnets)}) "
                                  f"logits for a {t}x{t} tile")
        for name, net in zip(self.class_names, self.subnets, strict=True):
            out = self._probe(name, net, probe).shape
            if out[1:] != (self.colors, t * s, t * s):
                found = f"x{out[2] / t:g}" if len(out) == 4 else f"shape {out}"
                raise _bad(self.path, f"the {name} subnet turns a {t}x{t} tile into {out[2:]} ({found}) but the "
                                      f"manifest says x{s}")

    def _probe(self, name: str, graph: Graph, probe: np.ndarray) -> np.ndarray:
        """One inference on a blank tile; a graph built for another tile size fails here."""
        try:
            return np.asarray(graph(probe))
        except Exception as exc:  # ONNX Runtime and LiteRT raise their own exception types
            first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
            raise _bad(self.path, f"the {name} graph does not run on the manifest's {probe.shape[2]}x"
                                  f"{probe.shape[3]} tile ({first})") from None

    def route(self, x: np.ndarray) -> RoutedResult:
        return route_image(x, self.classifier, self.subnets, self.tiling, self.scale, self.macs, self.batch)

    def largest_only(self, x: np.ndarray) -> np.ndarray:
        """The baseline: every tile through the largest subnet, same tiling and stitching."""
        largest = self.subnets[int(np.argmax(self.macs.subnets))]
        return upscale_tiled(x, self.tiling, self.scale, lambda tiles: (
            np.concatenate([largest(tiles[i:i + self.batch]) for i in range(0, len(tiles), self.batch)]),
            np.full(len(tiles), int(np.argmax(self.macs.subnets)))))[0]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.route(x).sr

    def bind(self, x: np.ndarray) -> Callable[[], np.ndarray]:
        staged = np.ascontiguousarray(x, dtype=np.float32)
        return lambda: self.route(staged).sr
