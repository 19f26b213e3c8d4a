"""The Python API: everything the `edgesr` command does, for notebooks and scripts.

    import edgesr

    model = edgesr.load("ecbsr")                          # built-in ECBSR-M4C16 x4 checkpoint
    report = model.export("tflite", out="sr.tflite")      # converted, proven, then written
    print(report.parity.used, report.files[0].ops)
    exported = edgesr.open_model("sr.tflite")             # carries its own metadata
    sr = exported.upscale(photo)                          # uint8 HxWx3 in, uint8 out

Errors are edgesr.errors classes (UserError: your input; ToolError: a tool or the environment),
worded without command-line flags. Seeded random weights (no checkpoint) warn with
RandomWeightsWarning.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import edgesr.families  # noqa: F401  (registers the built-in families)
from edgesr import table
from edgesr.check import DEFAULT_SIZES, Check, explain_bounds, format_table
from edgesr.data import image_size, load_rgb
from edgesr.errors import UserError
from edgesr.evaluate import FolderScores, evaluate_folder, mean_scores
from edgesr.export.exporter import ExportReport, export
from edgesr.family import Family, IOSpec
from edgesr.family import families as available_families
from edgesr.images import write_heldout_photos
from edgesr.model import Prepared, RandomWeightsWarning, prepare
from edgesr.model_files import LoadedModel
from edgesr.model_files import open_model as _open_model
from edgesr.profile import count_params, peak_activation_per_pixel
from edgesr.protocol import DEFAULT_PROTOCOL
from edgesr.resources import check_fits
from edgesr.runners import Graph, check_io
from edgesr.upscale import memory_needed, upscale_rgb
from edgesr.verify import precisions_to_check, verify

__all__ = ["Model", "ExportedModel", "load", "open_model", "available_families", "RandomWeightsWarning", "ExportReport",
           "VerifyReport", "EvalReport", "BenchReport", "MissingMetadata", "SKIMAGE"]

SKIMAGE = "skimage"  # the held-out photos bundled with scikit-image


class MissingMetadata(UserError):
    """A model file without edgesr metadata was opened without saying what it takes."""
Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


@dataclass
class VerifyReport:
    """Every compared pair of `verify`."""

    label: str
    weights: str
    sizes: list[tuple[int, int]]
    checks: list[Check]
    xnnpack: dict[str, str] = field(default_factory=dict)  # each .tflite checked: what XNNPACK runs

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def table(self) -> str:
        delegated = [f"xnnpack  {name}: {summary}" for name, summary in self.xnnpack.items()]
        return "\n".join([format_table(self.checks), *delegated, explain_bounds()])

    def to_dict(self) -> dict:
        return {"model": self.label, "weights": self.weights, "sizes": self.sizes,
                "checks": [c.to_dict() for c in self.checks], "xnnpack": self.xnnpack, "passed": self.passed}


@dataclass
class EvalReport:
    """Scores of a model (or an exported file) on a folder of HR photos, next to bicubic."""

    label: str
    graph: str
    data: str
    io: IOSpec
    scores: FolderScores

    @property
    def mean(self) -> dict[str, float]:
        return mean_scores(self.scores.images)

    @property
    def gain_db(self) -> float:
        return self.mean["psnr_y"] - self.mean["bicubic_psnr_y"]

    def table(self) -> str:
        rows = [[s.name, round(s.psnr_y, 3), round(s.ssim_y, 4), round(s.psnr_rgb, 3), round(s.bicubic_psnr_y, 3),
                 round(s.bicubic_ssim_y, 4), round(s.bicubic_psnr_rgb, 3)] for s in self.scores.images]
        m = self.mean
        rows.append(["mean", round(m["psnr_y"], 3), round(m["ssim_y"], 4), round(m["psnr_rgb"], 3),
                     round(m["bicubic_psnr_y"], 3), round(m["bicubic_ssim_y"], 4), round(m["bicubic_psnr_rgb"], 3)])
        return table.render(["image", "PSNR-Y", "SSIM-Y", "PSNR-RGB", "bicubic PSNR-Y", "bicubic SSIM-Y",
                             "bicubic PSNR-RGB"], rows)

    def to_dict(self) -> dict:
        return {"model": self.label, "graph": self.graph, "data": self.data, "io": self.io.to_dict(),
                "protocol": self.scores.protocol, "images": [s.to_dict() for s in self.scores.images],
                "skipped": self.scores.skipped,
                "mean": self.mean, "gain_over_bicubic_db": self.gain_db}


HOST_RUNTIMES = ("torch-train", "torch", "onnxruntime", "tflite")


@dataclass
class BenchReport:
    """Host latencies, one case per runtime x precision x input x threads (each case in its own
    process, timed in interleaved rounds); `report` follows edgesr/bench/report.py's schema."""

    label: str
    report: dict
    notes: list[str]

    @property
    def cases(self) -> list[dict]:
        return self.report["cases"]

    def table(self) -> str:
        from edgesr.bench.report import ceiling_line
        from edgesr.bench.report import format_table as bench_table

        device = self.report["device"]
        lines = [f"bench {self.label} on {device['name']} ({device['cpu']['simd']}), "
                 f"{self.report['settings']['input_data']} input", bench_table(self.report),
                 ceiling_line(device), *self.notes]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return self.report

    def write(self, json: str | Path | None = None, csv: str | Path | None = None, plot: str | Path | None = None,
              force: bool = False) -> list[Path]:
        """Write the report as JSON, CSV and/or a PNG plot (atomically); the paths written."""
        from edgesr.bench.report import write_outputs

        return write_outputs(self.report, *(Path(p) if p else None for p in (json, csv, plot)), force)


def _bench(target, weights: str, notes: list[str], runtimes, precisions, inputs, threads, warmup: int, runs: int,
           rounds: int, progress: Progress, input_data: str) -> BenchReport:
    from edgesr.bench.host import bench

    report = bench(target, list(runtimes), list(precisions), list(inputs), list(threads), warmup, runs, rounds,
                   weights, progress, input_data)
    return BenchReport(target.label, report, notes)


def _evaluate(graph: Graph, io: IOSpec, label: str, what: str, data: str | Path, activations: float,
              progress: Progress, protocol: str) -> EvalReport:
    with tempfile.TemporaryDirectory(prefix="edgesr-eval-") as scratch:
        folder = Path(scratch) if str(data) == SKIMAGE else Path(data)
        if str(data) == SKIMAGE:
            write_heldout_photos(folder)
        scores = evaluate_folder(graph, folder, io.scale, io.colors, io.pixel_range, progress, activations, protocol)
    name = "scikit-image photos (held out)" if str(data) == SKIMAGE else str(data)
    return EvalReport(label, what, name, io, scores)


def _upscale(graph: Graph, io: IOSpec, label: str, image: np.ndarray | str | Path, tile: int, overlap: int,
             activations: float) -> np.ndarray:
    if tile < 16 or not 0 <= overlap < tile // 2:
        raise UserError("the tile must be at least 16 LR pixels and the overlap between 0 and half a tile")
    if isinstance(image, (str, Path)):
        height, width = image_size(Path(image))
    else:
        height, width = np.asarray(image).shape[:2]
    check_fits(f"upscaling a {width}x{height} image x{io.scale} to {width * io.scale}x{height * io.scale}",
               memory_needed(height, width, io.scale, tile, activations),
               "downscale or crop the image first, or use a smaller tile")
    if isinstance(image, (str, Path)):
        rgb = load_rgb(Path(image), np.float32)
    else:
        array = np.asarray(image)
        if array.ndim == 2:
            array = np.repeat(array[..., None], 3, axis=2)
        if array.ndim != 3 or array.shape[2] != 3:
            raise UserError(f"an image array must be HxW or HxWx3, not {array.shape}")
        rgb = array.astype(np.float32) / (255.0 if array.dtype == np.uint8 else 1.0)
    return upscale_rgb(graph, rgb, io.scale, io.colors, io.pixel_range, tile, overlap)


class Model:
    """A model loaded with `load`: its training graph (when known), its deployable form, and what
    can be done with them."""

    def __init__(self, prepared: Prepared):
        self.prepared = prepared
        self._runner_used: Graph | None = None

    @property
    def family(self) -> Family:
        return self.prepared.family

    @property
    def config(self):
        return self.prepared.config

    @property
    def io(self) -> IOSpec:
        return self.prepared.io

    @property
    def label(self) -> str:
        return self.prepared.label

    @property
    def weights(self) -> str:
        return self.prepared.weights

    @property
    def train(self):
        """The training graph (None for a deploy-layout checkpoint)."""
        return self.prepared.train

    @property
    def deployable(self):
        """The re-parameterized form exporters take."""
        return self.prepared.deployable

    def __repr__(self) -> str:
        io = self.io
        return f"<edgesr.Model {self.label} ({io.color_space}, 0..{io.pixel_range:g}), weights {self.weights}>"

    def export(self, format: str = "tflite", precision: str = "fp32", out: str | Path | None = None,
               force: bool = False, progress: Progress = _quiet, int8_form: str = "auto") -> ExportReport:
        """Convert, prove parity with the training graph, then write (a file, or a bundle folder).
        int8_form: 'auto' (the family's all-XNNPACK int8 form where it has one) or 'native'."""
        return export(self.prepared, format, precision, Path(out) if out else None, force, progress, int8_form)

    def verify(self, precisions: list[str] | None = None, sizes: list[tuple[int, int]] | None = None,
               progress: Progress = _quiet, int8_form: str = "auto") -> VerifyReport:
        """Every graph and exported format on the same inputs, within the rounding-error model."""
        sizes = sizes or DEFAULT_SIZES
        delegation: dict[str, str] = {}
        checks = verify(self.prepared, precisions_to_check(self.prepared, precisions), sizes, progress, int8_form,
                        delegation)
        return VerifyReport(self.label, self.weights, sizes, checks, delegation)

    def evaluate(self, data: str | Path = SKIMAGE, graph: str = "deploy", progress: Progress = _quiet,
                 protocol: str = DEFAULT_PROTOCOL) -> EvalReport:
        """PSNR/SSIM-Y by `protocol` (edgesr.protocol: border crop = scale, 8-bit output) against
        bicubic on a folder of HR photos ('skimage': scikit-image's bundled photos, which training
        never sees)."""
        runner, module = self._runner(graph)
        return _evaluate(runner, self.io, self.label, f"{graph} graph", data,
                         4 * 3 * peak_activation_per_pixel(module, self.io.colors), progress, protocol)

    def upscale(self, image: np.ndarray | str | Path, tile: int = 256, overlap: int = 16,
                graph: str = "deploy") -> np.ndarray:
        """Super-resolve an image (an array, or a file), tile by tile: uint8 HxWx3 out."""
        runner, module = self._runner(graph)
        return _upscale(runner, self.io, self.label, image, tile, overlap,
                        4 * 3 * peak_activation_per_pixel(module, self.io.colors))

    def bench(self, inputs: Sequence[str] = ("360x640",), runtimes: Sequence[str] = HOST_RUNTIMES,
              precisions: Sequence[str] = ("fp32",), threads: Sequence[int] = (1,), warmup: int = 5, runs: int = 30,
              rounds: int = 3, progress: Progress = _quiet, input_data: str = "photo") -> BenchReport:
        """Latency on this CPU of the training graph (torch-train), the deploy form (torch) and each
        runtime's exported file (made and verified on the way); inputs 'HxW' or 'NxCxHxW' of photo
        content (input_data 'photo') or uniform noise ('noise')."""
        from edgesr.bench.host import model_target

        notes = self.family.cost_notes(self.deployable)
        return _bench(model_target(self.prepared), self.weights, notes, runtimes, precisions, inputs, threads,
                      warmup, runs, rounds, progress, input_data)

    def _runner(self, graph: str):
        prepared = self.prepared
        if graph == "train" and prepared.train is not None:
            return prepared.family.reference(prepared.train, prepared.deployable), prepared.train
        if graph not in ("train", "deploy"):
            raise UserError(f"unknown graph '{graph}': choose train or deploy")
        first = next(iter(prepared.deployable.graphs.values())).module
        module = prepared.train if prepared.train is not None else first
        self._runner_used = prepared.deployable.torch_runner()
        return self._runner_used, module

    def summary(self) -> str | None:
        """What the deploy form's glue tallied in the last evaluate/upscale (ClassSR: class shares, MACs)."""
        summary = getattr(self._runner_used, "summary", None)
        return summary() if summary else None

    def params(self) -> dict[str, int]:
        """Parameters of the training graph and of each deploy graph."""
        counts = {f"deploy:{name}": count_params(spec.module) for name, spec in self.deployable.graphs.items()}
        return ({"train": count_params(self.train)} if self.train is not None else {}) | counts


class ExportedModel:
    """An exported file or bundle opened with `open_model`: runs with its own runtime, described by
    its embedded metadata."""

    def __init__(self, loaded: LoadedModel, io: IOSpec):
        self.loaded, self.io = loaded, io

    @property
    def metadata(self) -> dict | None:
        return self.loaded.metadata

    @property
    def label(self) -> str:
        return self.loaded.label

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.loaded(x)

    def evaluate(self, data: str | Path = SKIMAGE, progress: Progress = _quiet,
                 protocol: str = DEFAULT_PROTOCOL) -> EvalReport:
        return _evaluate(self.loaded, self.io, self.label, str(self.loaded.path), data, 0.0, progress, protocol)

    def upscale(self, image: np.ndarray | str | Path, tile: int = 256, overlap: int = 16) -> np.ndarray:
        return _upscale(self.loaded, self.io, self.label, image, tile, overlap, 0.0)

    def summary(self) -> str | None:
        """What the model's glue tallied so far (ClassSR: class shares and MACs)."""
        return self.loaded.summary()

    def bench(self, inputs: Sequence[str] = ("360x640",), threads: Sequence[int] = (1,), warmup: int = 5,
              runs: int = 30, rounds: int = 3, progress: Progress = _quiet, input_data: str = "photo") -> BenchReport:
        """Latency of this file (or bundle) on its own runtime, on this CPU (input_data: see Model.bench)."""
        from edgesr.bench.host import file_target

        target = file_target(self.loaded.path)
        runtimes = list(target.runtimes)
        precisions = [p for ps in target.runtimes.values() for p in ps]
        return _bench(target, str(self.loaded.path), [], runtimes, precisions, inputs, threads, warmup, runs, rounds,
                      progress, input_data)


def load(name: str = "ecbsr", variant: str | None = None, scale: int | None = None,
         weights: str | Path | None = None, pixel_range: float | None = None, seed: int = 0) -> Model:
    """A model family by name ('ecbsr', 'splitsr', 'smsr', 'classsr' or a plugin's), with weights from
    `weights` (the authors', BasicSR's or edgesr's checkpoints), else the built-in checkpoint, else
    seeded random weights (RandomWeightsWarning)."""
    return Model(prepare(name, variant, scale, Path(weights) if weights else None, pixel_range, seed))


def open_model(path: str | Path, io: IOSpec | None = None, threads: int | None = None) -> ExportedModel:
    """An exported .onnx/.tflite/.pte file or bundle folder. Files from edgesr describe themselves; a file
    without metadata needs `io` (its colours, pixel range and scale), which is checked by one run."""
    loaded = _open_model(Path(path), threads)
    if loaded.io is not None:
        if io is not None and (io.colors, io.scale, io.pixel_range) != (loaded.io.colors, loaded.io.scale,
                                                                         loaded.io.pixel_range):
            raise UserError(f"{path} is {loaded.label} ({loaded.io.color_space}, 0..{loaded.io.pixel_range:g}), not "
                            f"x{io.scale} {io.color_space} 0..{io.pixel_range:g}")
        return ExportedModel(loaded, loaded.io)
    if io is None:
        raise MissingMetadata(f"{path} carries no edgesr metadata: say what it takes (colours, pixel range, scale)")
    check_io(loaded, Path(path), io.colors, io.scale, f"x{io.scale} {io.color_space}")
    return ExportedModel(loaded, io)
