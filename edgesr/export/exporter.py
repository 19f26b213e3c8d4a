"""Export any deployable: convert each graph, embed what the file is, prove parity with the
reference graph, and only then publish. One graph becomes one file; several become a bundle
folder (edgesr/bundle.py) that the family's glue runs."""

from __future__ import annotations

import dataclasses
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgesr import bundle, metadata
from edgesr.atomic import atomic_directory, atomic_output, check_output_path, ensure_writable_parent
from edgesr.check import Check, Pair, Subject, check_pairs, collect, expectation, graph_model
from edgesr.deployable import TILE_BATCH, Deployable, GraphSpec
from edgesr.errors import ParityError, UserError
from edgesr.family import IOSpec
from edgesr.images import FULL_CROP, calibration_crops, verification_inputs
from edgesr.model import Prepared
from edgesr.model_files import LoadedModel, open_model
from edgesr.profile import count_params, macs_per_lr_pixel
from edgesr.runners import TorchGraph

if TYPE_CHECKING:
    from edgesr.export.pte import PteDelegation
    from edgesr.export.tflite import Delegation

FORMATS = {"onnx": ("fp32",), "tflite": ("fp32", "fp16", "int8"), "pte": ("fp32", "int8")}
FORMAT_EXTRAS = {"onnx": ("onnx", "onnx"), "tflite": ("tensorflow", "tflite"), "pte": ("executorch", "executorch")}
PRECISIONS = ("fp32", "fp16", "int8")
PARITY_SIZES = [(20, 26), (45, 61)]  # odd, one smaller than a ClassSR tile
# int8 .tflite: "auto" stores the family's int8 form where it has one (ECBSR: 2x2 blocks, PReLU as a
# ReLU pair: every op in XNNPACK), else the deploy graph; "native" always the deploy graph (PRELU
# ops, for NPU drivers that run int8 PRELU)
INT8_FORMS = ("auto", "native")
CALIBRATION_MACS = 150e9  # of whole-frame calibration per int8 graph: blocked ECBSR-M4C16 gets 10 crops, SplitSR-C64 2


@dataclass(frozen=True)
class GraphFile:
    """One written graph file."""

    name: str
    file: str
    precision: str
    size_bytes: int
    ops: Counter
    params: int
    macs_per_pixel: float  # per input pixel (per tile pixel for a tile graph)
    delegation: Delegation | PteDelegation | None = None  # .tflite/.pte: what XNNPACK runs
    form: str | None = None  # int8 .tflite: the stored form (INT8_FORMS)


@dataclass
class ExportReport:
    """What an export wrote and how it was checked."""

    path: Path
    label: str
    fmt: str
    precision: str
    io: IOSpec
    weights: str
    files: list[GraphFile]
    checks: list[Check]
    train_params: int | None
    notes: list[str] = field(default_factory=list)

    @property
    def parity(self) -> Check:
        """The whole-model check: the reference graph vs the exported model."""
        return self.checks[-1]

    @property
    def size_bytes(self) -> int:
        return sum(f.size_bytes for f in self.files)

    @property
    def ops(self) -> Counter:
        return sum((f.ops for f in self.files), Counter())

    def to_dict(self) -> dict:
        return {"path": str(self.path), "model": self.label, "format": self.fmt, "precision": self.precision,
                "io": self.io.to_dict(), "weights": self.weights, "train_params": self.train_params,
                "files": [{"graph": f.name, "file": f.file, "precision": f.precision, "bytes": f.size_bytes,
                           "ops": dict(f.ops), "params": f.params, "macs_per_pixel": f.macs_per_pixel,
                           "xnnpack": f.delegation.to_dict() if f.delegation else None, "int8_form": f.form}
                          for f in self.files],
                "checks": [c.to_dict() for c in self.checks], "notes": self.notes}

    def format(self) -> str:
        single = len(self.files) == 1 and self.files[0].name == "deploy"
        where = str(self.path) + ("" if single else "/")
        io = self.io
        lines = [f"exported {self.label} ({io.color_space}, 0..{io.pixel_range:g}) {self.fmt} {self.precision} "
                 f"-> {where}", f"  weights  {self.weights}"]
        train = f" (training graph {self.train_params:,})" if self.train_params else ""
        if single:
            f = self.files[0]
            lines += [f"  size     {f.size_bytes / 1024:.1f} KiB",
                      f"  params   {f.params:,} deploy graph{train}",
                      f"  MACs     {f.macs_per_pixel:,.0f} per LR pixel = "
                      f"{f.macs_per_pixel * 360 * 640 / 1e9:.2f} GMAC at 360x640 LR"]
        else:
            lines.append(f"  {'graph':<12} {'file':<18} {'KiB':>7} {'params':>9} {'MACs/px':>9}  ops")
            for f in self.files:
                ops = ", ".join(f"{k} x{v}" for k, v in f.ops.most_common())
                lines.append(f"  {f.name:<12} {f.file:<18} {f.size_bytes / 1024:>7.1f} {f.params:>9,} "
                             f"{f.macs_per_pixel:>9,.0f}  {ops}")
        lines += [f"  {line}" for line in self.notes]
        transpose = "TRANSPOSE present!" if {"TRANSPOSE", "Transpose"} & set(self.ops) else "no TRANSPOSE"
        if single:
            lines.append(f"  ops      {', '.join(f'{k} x{v}' for k, v in self.ops.most_common())} ({transpose})")
        else:
            lines.append(f"  ops      {transpose} in any graph")
        for f in self.files:
            where = "" if single else f"{f.name}: "
            if f.form:
                lines.append(f"  int8     {where}{INT8_FORM_NOTES[f.form]}")
            if f.delegation:
                lines.append(f"  xnnpack  {where}{f.delegation.format()}")
        for c in self.checks:
            lines.append(f"  parity   {c.reference} vs {c.candidate} over {c.inputs} inputs: "
                         f"max-abs {c.stats.max_abs:.3g}, PSNR {c.stats.psnr_db:.1f} dB; deviation from the "
                         f"{c.precision} error model {c.deviation:.3g} (bound {c.bound:.3g}, "
                         f"{100 * c.used:.0f}% used): {c.result}")
        return "\n".join(lines)


INT8_FORM_NOTES = {"blocked": "form 'blocked': convs on 2x2 pixel blocks, each PReLU a ReLU pair recombined by "
                              "a 1x1 conv (exact; --int8-form native keeps PRELU ops)",
                   "native": "form 'native': the deploy graph's own ops"}


def stored_form(prepared: Prepared, fmt: str, precision: str, int8_form: str = "auto") -> Prepared:
    """The model whose graphs a file stores: for an int8 .tflite and `int8_form` 'auto', each graph
    the family rebuilds for int8 (Family.int8_form), else the deploy graphs as they are."""
    if int8_form not in INT8_FORMS:
        raise UserError(f"unknown int8 form '{int8_form}': choose one of {', '.join(INT8_FORMS)}")
    if fmt != "tflite" or precision != "int8" or int8_form == "native":
        return prepared
    deployable = prepared.deployable
    graphs = {name: (spec if spec.precision(precision) != "int8" else
                     prepared.family.int8_form(name, spec, prepared.config) or spec)
              for name, spec in deployable.graphs.items()}
    if all(graphs[name] is spec for name, spec in deployable.graphs.items()):
        return prepared
    return dataclasses.replace(prepared, deployable=dataclasses.replace(deployable, graphs=graphs))


def graph_form(spec: GraphSpec, precision: str) -> str | None:
    """The int8 form name of a stored graph (None unless int8)."""
    if precision != "int8":
        return None
    return getattr(spec.module, "int8_form", "native")


def check_format(prepared: Prepared, fmt: str, precision: str) -> None:
    """Refuse a format or precision the format or the family cannot store."""
    if fmt not in FORMATS:
        raise UserError(f"unknown format '{fmt}': choose one of {', '.join(FORMATS)}")
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision '{precision}': choose one of {', '.join(PRECISIONS)}")
    if precision not in FORMATS[fmt]:
        raise UserError(f"{fmt} export supports {', '.join(FORMATS[fmt])} only: use format tflite for {precision}")
    allowed = prepared.family.export_precisions
    if precision not in allowed:
        raise UserError(f"{prepared.family.name} exports {', '.join(allowed)} only, not {precision}: "
                        f"{prepared.family.precision_note}")


def suffix(fmt: str) -> str:
    return bundle.SUFFIXES[fmt]


def default_output(prepared: Prepared, fmt: str, precision: str) -> Path:
    """exports/<family>_<variant>_x<scale>_<precision>.<ext>, or a folder ..._<fmt>_<precision> for a bundle."""
    cfg = prepared.config
    stem = f"{prepared.family.name}_{cfg.variant.lower()}_x{cfg.scale}"
    if prepared.deployable.single:
        return Path("exports") / f"{stem}_{precision}{suffix(fmt)}"
    return Path("exports") / f"{stem}_{fmt}_{precision}"


def resolve_output(prepared: Prepared, fmt: str, precision: str, out: Path | None, force: bool) -> Path:
    """The output path (default or given), checked for kind, existence and writability."""
    check_format(prepared, fmt, precision)
    out = Path(out) if out is not None else default_output(prepared, fmt, precision)
    if prepared.deployable.single:
        if out.is_dir():
            raise UserError(f"output path {out} is a directory: pass a file name ending in {suffix(fmt)}")
        if out.suffix != suffix(fmt):
            raise UserError(f"output {out} should end in {suffix(fmt)} for format {fmt}")
        check_output_path(out, force)
        return out
    if out.suffix in bundle.SUFFIXES.values():
        raise UserError(f"output {out} names a file, but {prepared.family.name} exports a bundle folder (one file per "
                        f"graph + {bundle.MANIFEST}): pass a folder name")
    if out.exists():
        if not out.is_dir():
            raise UserError(f"output {out} exists and is not a directory: choose another path")
        if not force:
            raise UserError(f"output directory {out} already exists: pass «force» to replace it")
        if any(out.iterdir()) and not (out / bundle.MANIFEST).is_file():
            raise UserError(f"output directory {out} is not an edgesr bundle (no {bundle.MANIFEST}): refusing to "
                            "replace it; choose another path")
    ensure_writable_parent(out)
    return out


def _calibration(spec: GraphSpec, io: IOSpec) -> list[np.ndarray]:
    """int8 representative data (NCHW): photo crops at the graph's input size (tile graphs), or
    64x64 patches and up to 10 whole-frame crops, as many as CALIBRATION_MACS allow (graphs on
    whole images: the converter runs each crop through the float graph)."""
    full = 0
    if not spec.tile:
        frame = FULL_CROP[0] * FULL_CROP[1] * macs_per_lr_pixel(spec.module, io.colors)
        full = int(max(1, min(10, CALIBRATION_MACS // max(frame, 1))))
    return calibration_crops(io.colors, io.pixel_range, size=spec.tile or 64, full=full)


def write_graph(prepared: Prepared, name: str, fmt: str, precision: str, path: Path) -> None:
    """Convert one graph of the deployable to `path`, with its metadata (no checks beyond the converters')."""
    deployable = prepared.deployable
    spec, io = deployable.graphs[name], deployable.io
    added = {}  # what the writer adds to the file's metadata
    if fmt == "onnx":
        from edgesr.export.onnx import export_onnx

        shape = (2, io.colors, spec.tile, spec.tile) if spec.tile else None
        export_onnx(spec.module, path, io.colors, example_shape=shape,
                    dynamic_dims={0: "batch"} if spec.tile else None, output_name=spec.output)
    elif fmt == "pte":
        from edgesr.export.pte import export_pte

        calibration = _calibration(spec, io) if precision == "int8" else None
        added = export_pte(spec.module, path, io.colors, spec.tile, calibration, io.pixel_range)
    else:
        from edgesr.export.tflite import convert_keras

        calibration = _calibration(spec, io) if precision == "int8" else None
        own = getattr(spec.module, "to_keras", None)  # a shared form (edgesr/nn) builds its own twin
        if own is None:
            twin = prepared.family.keras_twin(name, spec, prepared.config)
        elif precision == "int8":  # its int8 ranges are its own (see BlockedChain.int8_ranges)
            twin = own(spec.module.int8_ranges(calibration, io.pixel_range))
        else:
            twin = own()
        nhwc = [c.transpose(0, 2, 3, 1) for c in calibration] if calibration is not None else None
        path.write_bytes(convert_keras(twin, precision, nhwc))
    metadata.embed(path, {**_file_metadata(prepared, name, precision, path=path), **added})


def installed_formats() -> list[str]:
    """The formats whose extra is installed (verify checks these)."""
    import importlib.util

    return [fmt for fmt, (module, _) in FORMAT_EXTRAS.items() if importlib.util.find_spec(module) is not None]


def file_delegation(path: Path):
    """What XNNPACK runs of a .tflite (Delegation) or .pte (PteDelegation) file; None for others."""
    if path.suffix == ".tflite":
        from edgesr.export.tflite import xnnpack_delegation

        return xnnpack_delegation(path)
    if path.suffix == ".pte":
        from edgesr.export.pte import pte_delegation

        return pte_delegation(path)
    return None


def _file_metadata(prepared: Prepared, name: str, precision: str, parity: list[dict] | None = None,
                   path: Path | None = None) -> dict:
    spec = prepared.deployable.graphs[name]
    colors = prepared.config.colors
    macs = macs_per_lr_pixel(spec.module, colors, spec.tile) if spec.tile else macs_per_lr_pixel(spec.module, colors)
    document = metadata.document(prepared.metadata(), name, precision, parity)
    extra = {"int8_form": graph_form(spec, precision)} if precision == "int8" else {}
    if getattr(spec.module, "size_multiple", 1) > 1:
        extra.update(size_multiple=spec.module.size_multiple, receptive_radius=spec.module.radius)
    if path is not None and path.suffix == ".pte":
        from edgesr.export.pte import MAX_SIDE, MIN_SIDE, pads_to_multiple

        extra.update({"max_batch": TILE_BATCH} if spec.tile else
                     {"min_side": MIN_SIDE, "max_side": MAX_SIDE, "pads_to_multiple": pads_to_multiple(spec.module)})
    return {**document, "tile": spec.tile, "output_tensor": spec.output, "macs_per_pixel": macs, **extra}


def graph_inputs(spec: GraphSpec, io: IOSpec, sizes: list[tuple[int, int]], seed: int) -> list[tuple[str, np.ndarray]]:
    """Check inputs of one graph: random + photo images at `sizes`, or for a tile graph four single
    tiles and the largest batch it declares (TILE_BATCH: the four, repeated)."""
    if spec.tile is None:
        return verification_inputs(sizes, io.colors, io.pixel_range, seed=seed)
    tiles = verification_inputs([(spec.tile, spec.tile)] * 2, io.colors, io.pixel_range, seed=seed)
    batch = np.concatenate([x for _, x in tiles])
    return tiles + [(f"batch of {TILE_BATCH}", np.resize(batch, (TILE_BATCH, *batch.shape[1:])))]


def graph_checks(deployable: Deployable, files: dict[str, Path], fmt: str, precision: str,
                 sizes: list[tuple[int, int]], skip_fixed: bool = False) -> list[Check]:
    """Each exported graph against its PyTorch module, within its precision's error model."""
    io, checks = deployable.io, []
    for name, spec in deployable.graphs.items():
        if skip_fixed and spec.fixed_precision and spec.fixed_precision != precision:
            continue  # stored as in the fp32 export, which is checked there
        stored = spec.precision(precision)
        candidate, reference = f"{fmt}-{stored}", graph_model(spec.module)
        runs = collect({name: Subject(lambda m=spec.module: TorchGraph(m), reference),
                        candidate: Subject(lambda f=files[name]: open_model(f).runner,
                                           expectation(reference, spec.module, stored, files[name], io.colors,
                                                       io.pixel_range))},
                       graph_inputs(spec, io, sizes, seed=1))
        peak = max(io.pixel_range, max(float(np.abs(y).max()) for y in runs[name].outputs))  # logits: PSNR peak
        checks += check_pairs(runs, [Pair(name, candidate, stored)], peak)
    return checks


def reference_subject(prepared: Prepared) -> tuple[str, Subject]:
    """What files are checked against: the family's reference on the training graph, else the deploy graph."""
    deployable = prepared.deployable
    if prepared.train is None:
        module = deployable.graphs["deploy"].module
        return "deploy", Subject(lambda: TorchGraph(module), graph_model(module))
    family = prepared.family
    return "train", Subject(lambda: family.reference(prepared.train, deployable),
                            family.reference_model(prepared.train, deployable))


def model_checks(prepared: Prepared, loaded: LoadedModel, files: dict[str, Path], fmt: str, precision: str,
                 sizes: list[tuple[int, int]]) -> list[Check]:
    """The whole exported model (its glue included) against the reference, within the error model."""
    io = prepared.io
    ref_name, ref = reference_subject(prepared)
    name = f"{fmt}-{precision}"
    candidate = Subject(lambda: loaded, prepared.family.expectation(ref.model, prepared.deployable, precision, files))
    runs = collect({ref_name: ref, name: candidate}, verification_inputs(sizes, io.colors, io.pixel_range, seed=2))
    return check_pairs(runs, [Pair(ref_name, name, precision)], io.pixel_range)


def parity(prepared: Prepared, path: Path, precision: str, sizes: list[tuple[int, int]] = PARITY_SIZES) -> Check:
    """The whole-model check of an exported file or bundle already on disk."""
    path = Path(path)
    loaded = open_model(path)
    stored = [loaded.metadata] + list((loaded.metadata or {}).get("graphs") or [])
    if any((m or {}).get("int8_form") not in (None, "native") for m in stored):
        prepared = stored_form(prepared, path.suffix[1:] or loaded.metadata.get("runtime"), precision)
    if path.is_dir():
        files = {entry["name"]: path / entry["file"] for entry in loaded.metadata["graphs"]}
        fmt = loaded.metadata["runtime"]
    else:
        files, fmt = {"deploy": path}, path.suffix[1:]
    return model_checks(prepared, loaded, files, fmt, precision, sizes)[0]


def _entries(prepared: Prepared, files: dict[str, Path], precision: str) -> list[dict]:
    entries = []
    for name, spec in prepared.deployable.graphs.items():
        entries.append({"name": name, "file": files[name].name, "sha256": bundle.file_sha256(files[name]),
                        "precision": spec.precision(precision), "tile": spec.tile, "output": spec.output,
                        "params": count_params(spec.module)})
    return entries


def _manifest(prepared: Prepared, fmt: str, precision: str, files: dict[str, Path]) -> dict:
    return {"format": bundle.FORMAT, "version": bundle.VERSION, **metadata.document(prepared.metadata(), "bundle",
                                                                                     precision),
            "runtime": fmt, "params": prepared.deployable.params, "graphs": _entries(prepared, files, precision)}


@contextmanager
def written(prepared: Prepared, fmt: str, precision: str, out: Path, force: bool,
            progress: Callable[[str], None] = lambda _: None) -> Iterator[tuple[Path, dict[str, Path]]]:
    """Write every graph under a temporary name beside `out` (one file, or a bundle folder with its
    manifest); yields (the temporary path, files by graph name); published when the block succeeds."""
    deployable = prepared.deployable
    if deployable.single:
        with atomic_output(out, force) as tmp:
            progress(f"converting {prepared.label} to {fmt} {precision}")
            write_graph(prepared, "deploy", fmt, precision, tmp)
            yield tmp, {"deploy": tmp}
        return
    with atomic_directory(out, force) as tmp:
        files = {}
        for name, spec in deployable.graphs.items():
            progress(f"converting {name} to {fmt} {spec.precision(precision)}")
            files[name] = tmp / f"{name}{suffix(fmt)}"
            write_graph(prepared, name, fmt, spec.precision(precision), files[name])
        bundle.write_manifest(tmp, _manifest(prepared, fmt, precision, files))
        yield tmp, files


def _graph_file(prepared: Prepared, name: str, path: Path, fmt: str, precision: str) -> GraphFile:
    from edgesr.export.inspect import op_counts

    spec = prepared.deployable.graphs[name]
    colors = prepared.config.colors
    macs = (macs_per_lr_pixel(spec.module, colors, spec.tile) if spec.tile else macs_per_lr_pixel(spec.module, colors))
    delegation = file_delegation(path)
    stored = spec.precision(precision)
    return GraphFile(name, path.name, stored, path.stat().st_size, op_counts(path), count_params(spec.module), macs,
                     delegation, graph_form(spec, stored))


def export(prepared: Prepared, fmt: str, precision: str, out: Path | None = None, force: bool = False,
           progress: Callable[[str], None] = lambda _: None, int8_form: str = "auto") -> ExportReport:
    """Export, check parity on the temporary files, embed the figures, then publish."""
    out = resolve_output(prepared, fmt, precision, out, force)
    prepared = stored_form(prepared, fmt, precision, int8_form)
    deployable = prepared.deployable
    with written(prepared, fmt, precision, out, force, progress) as (tmp, files):
        checks = [] if deployable.single else graph_checks(deployable, files, fmt, precision, PARITY_SIZES)
        progress(f"checking parity against the {prepared.reference_name} graph")
        loaded = open_model(tmp)
        checks += model_checks(prepared, loaded, files, fmt, precision, PARITY_SIZES)
        failed = [c for c in checks if not c.passed]
        if failed:
            raise ParityError(f"{fmt} {precision} export failed its parity check: {failed[0].problem()}; "
                              "no file written")
        parity = [c.to_dict() for c in checks]
        notes = prepared.family.cost_notes(deployable) + ([loaded.summary()] if loaded.summary() else [])
        for name, path in files.items():  # the parity results join what the writer recorded
            metadata.embed(path, {**metadata.read(path), **_file_metadata(
                prepared, name, deployable.graphs[name].precision(precision), parity, path)})
        if not deployable.single:
            manifest = _manifest(prepared, fmt, precision, files)
            manifest["parity"] = parity
            bundle.write_manifest(tmp, manifest)
        graph_files = [_graph_file(prepared, name, path, fmt, precision) for name, path in files.items()]
    return ExportReport(out, prepared.label, fmt, precision, prepared.io, prepared.weights, graph_files, checks,
                        count_params(prepared.train) if prepared.train is not None else None, notes)


def export_to_scratch(prepared: Prepared, fmt: str, precision: str, folder: Path,
                      progress: Callable[[str], None] = lambda _: None) -> tuple[Path, dict[str, Path]]:
    """Write (unchecked) into a scratch folder: for `verify`, which checks everything itself (with
    `stored_form(prepared, ...)` as the model, as here)."""
    out = folder / (f"model-{precision}{suffix(fmt)}" if prepared.deployable.single else f"{fmt}-{precision}")
    with written(prepared, fmt, precision, out, False, progress) as (_, files):
        pass
    if prepared.deployable.single:
        return out, {"deploy": out}
    return out, {name: out / path.name for name, path in files.items()}


def scratch_folder():
    return tempfile.TemporaryDirectory(prefix="edgesr-verify-")
