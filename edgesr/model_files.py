"""Open an exported model: a single .onnx/.tflite file or a bundle folder, with its runtime,
its metadata (what it is, how it takes its input) and, for a bundle, its family's glue."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import edgesr.families  # noqa: F401  (the families a bundle may name)
from edgesr import bundle, metadata
from edgesr.errors import UserError
from edgesr.family import Family, IOSpec, get_family
from edgesr.runners import Graph, open_runtime_file


@dataclass
class LoadedModel:
    """An exported model ready to run (the Graph protocol: NCHW float32 in, out)."""

    path: Path
    metadata: dict | None  # None: a file another tool wrote; its I/O must then be given
    runner: Graph
    graphs: dict[str, Graph]
    family: Family | None = None  # a bundle's family, whose glue joins its graphs
    assumed_io: IOSpec | None = None  # for a file without metadata: what its user says it takes

    @property
    def io(self) -> IOSpec | None:
        if not self.metadata:
            return None
        io = self.metadata["io"]
        return IOSpec(int(io["colors"]), float(io["pixel_range"]), int(io["scale"]), io.get("input", "lr"),
                      io.get("output", "sr"))

    @property
    def label(self) -> str:
        m = self.metadata
        return f"{m['family']} {m['variant']} x{m['io']['scale']}" if m else self.path.name

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.runner(x)

    def bind(self, x: np.ndarray) -> Callable[[], object]:
        return self.runner.bind(x)

    def rewired(self, graphs: dict[str, Graph]) -> Graph:
        """The same model's whole-image inference over other graphs (e.g. wrapped to record calls)."""
        if self.family is None:
            return graphs["deploy"]
        return self.family.glue(self.metadata["params"], self.io, graphs)

    def summary(self) -> str | None:
        """What the glue tallied over the calls so far (ClassSR: class shares and MACs), if anything."""
        summary = getattr(self.runner, "summary", None)
        return summary() if summary else None


def _valid_metadata(meta: dict | None, path: Path) -> dict | None:
    if meta is None:
        return None
    if not isinstance(meta.get("io"), dict) or not {"colors", "pixel_range", "scale"} <= set(meta["io"]):
        raise UserError(f"{path}: its edgesr metadata lacks the input/output description; export it again")
    return meta


def _probe(graph: Graph, name: str, entry: dict, io: IOSpec, path: Path) -> None:
    """One inference of a bundle graph on a blank tile: a graph built for another tile or scale fails here."""
    tile = int(entry.get("tile") or 32)
    try:
        out = np.asarray(graph(np.zeros((1, io.colors, tile, tile), dtype=np.float32)))
    except Exception as exc:  # noqa: BLE001  (any runtime's error)
        raise UserError(f"bundle {path}: the {name} graph does not run on a {tile}x{tile} tile "
                        f"({' '.join(str(exc).split())[:160]}); export it again") from None
    if entry.get("output", "sr") == "sr" and out.shape[1:] != (io.colors, tile * io.scale, tile * io.scale):
        raise UserError(f"bundle {path}: the {name} graph turns a {tile}x{tile} tile into {out.shape[2:]}, but the "
                        f"manifest says x{io.scale}; export it again")


def open_model(path: Path, threads: int | None = None, spin: bool = True) -> LoadedModel:
    """An exported file (.onnx, .tflite) or bundle folder, opened with its runtime. A file without
    edgesr metadata opens too (its I/O is then the caller's to give); a bundle needs its manifest.
    `spin`: ONNX Runtime's busy-waiting of idle threads (off for a bundle's graphs, which take turns)."""
    path = Path(path)
    if not path.is_dir():
        runner = open_runtime_file(path, threads, spin)
        meta = _valid_metadata(metadata.read(path), path)
        return LoadedModel(path, meta, runner, {"deploy": runner})
    manifest = bundle.read_manifest(path)
    family = get_family(manifest["family"])
    io = IOSpec(int(manifest["io"]["colors"]), float(manifest["io"]["pixel_range"]), int(manifest["io"]["scale"]))
    # the graphs take turns: idle sessions must not spin (measured on 2 cores, ClassSR-FSRCNN x4 360x640,
    # 2 threads: routed 272 -> 215 ms)
    graphs = {entry["name"]: open_runtime_file(path / entry["file"], threads, spin=False)
              for entry in manifest["graphs"]}
    for entry in manifest["graphs"]:
        _probe(graphs[entry["name"]], entry["name"], entry, io, path)
    try:
        family.check_bundle(manifest["params"], io, graphs)
        runner = family.glue(manifest["params"], io, graphs)
    except UserError as exc:
        raise UserError(f"bundle {path}: {exc.template}") from None
    return LoadedModel(path, manifest, runner, graphs, family)
