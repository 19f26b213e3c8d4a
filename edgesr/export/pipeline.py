"""Export a prepared model to a file, prove parity with the reference graph, then publish it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgesr.atomic import atomic_output, check_output_path
from edgesr.errors import ParityError, UserError
from edgesr.images import calibration_crops, verification_inputs
from edgesr.pipeline import PreparedModel
from edgesr.profile import count_params, macs_per_lr_pixel
from edgesr.runtimes import TorchGraph, open_model_file
from edgesr.verify import Check, Pair, Subject, check_pairs, collect, expectation, graph_model

FORMATS = {"onnx": (".onnx", ("fp32",)), "tflite": (".tflite", ("fp32", "fp16", "int8"))}
PARITY_SIZES = [(40, 40), (33, 51)]


@dataclass(frozen=True)
class ExportReport:
    """What was written and how it was checked."""

    path: Path
    fmt: str
    precision: str
    size_bytes: int
    ops: Counter
    params: int
    train_params: int | None
    macs_per_pixel: float
    parity: Check


def check_format(fmt: str, precision: str) -> str:
    """Validate format/precision; returns the file suffix."""
    if fmt not in FORMATS:
        raise UserError(f"unknown format '{fmt}': choose one of {', '.join(FORMATS)}")
    suffix, precisions = FORMATS[fmt]
    if precision not in ("fp32", "fp16", "int8"):
        raise UserError(f"unknown precision '{precision}': choose one of fp32, fp16, int8")
    if precision not in precisions:
        raise UserError(f"{fmt} export supports {', '.join(precisions)} only: "
                        f"use --format tflite for {precision}")
    return suffix


def default_output(prepared: PreparedModel, fmt: str, precision: str) -> Path:
    """exports/<model>_<variant>_x<scale>_<precision>.<ext> under the current folder."""
    cfg = prepared.config
    return Path("exports") / f"{prepared.spec.name}_{cfg.variant.lower()}_x{cfg.scale}_{precision}{FORMATS[fmt][0]}"


def resolve_output(prepared: PreparedModel, fmt: str, precision: str, out: Path | None, force: bool) -> Path:
    """The output path (default or given), checked for suffix, existence and writability."""
    suffix = check_format(fmt, precision)
    out = Path(out) if out is not None else default_output(prepared, fmt, precision)
    if out.is_dir():
        raise UserError(f"output path {out} is a directory: pass a file name ending in {suffix}")
    if out.suffix != suffix:
        raise UserError(f"output {out} should end in {suffix} for --format {fmt}")
    check_output_path(out, force)
    return out


def write_model_file(prepared: PreparedModel, fmt: str, precision: str, path: Path) -> None:
    """Convert the deploy graph to `path` (no checks beyond the converters' own)."""
    cfg = prepared.config
    if fmt == "onnx":
        from edgesr.export.onnx import export_onnx

        export_onnx(prepared.deploy, path, cfg.colors)
        return
    from edgesr.export.tflite import convert_keras

    calibration = None
    if precision == "int8":
        calibration = [c.transpose(0, 2, 3, 1) for c in calibration_crops(cfg.colors, cfg.pixel_range)]
    path.write_bytes(convert_keras(prepared.spec.keras_graph(prepared.deploy), precision, calibration))


def op_counts(path: Path, fmt: str) -> Counter:
    """Operator histogram of an exported file."""
    if fmt == "onnx":
        from edgesr.export.onnx import onnx_op_counts

        return onnx_op_counts(path)
    from edgesr.export.tflite import tflite_op_counts

    return tflite_op_counts(path)


def parity_check(prepared: PreparedModel, path: Path, precision: str, name: str) -> Check:
    """Run the exported file and the reference graph on random and real inputs of odd sizes and
    check the file against its precision's error model."""
    cfg = prepared.config
    inputs = verification_inputs(PARITY_SIZES, cfg.colors, cfg.pixel_range, seed=1)
    ref_name, ref_module = prepared.reference
    ref_model = graph_model(ref_module)
    runs = collect({ref_name: Subject(lambda: TorchGraph(ref_module), ref_model),
                    name: Subject(lambda: open_model_file(path),
                                  expectation(ref_model, prepared.deploy, precision, path, cfg.colors,
                                              cfg.pixel_range))},
                   inputs)
    return check_pairs(runs, [Pair(ref_name, name, precision)], cfg.pixel_range)[0]


def export_verified(prepared: PreparedModel, fmt: str, precision: str, out: Path | None = None,
                    force: bool = False, progress: Callable[[str], None] = lambda _: None) -> ExportReport:
    """Export, check parity on the temporary file, and only then rename it into place."""
    out = resolve_output(prepared, fmt, precision, out, force)
    with atomic_output(out, force) as tmp:
        progress(f"converting {prepared.label} to {fmt} {precision}")
        write_model_file(prepared, fmt, precision, tmp)
        progress("checking parity against the " + prepared.reference[0] + " graph")
        parity = parity_check(prepared, tmp, precision, f"{fmt}-{precision}")
        if not parity.passed:
            raise ParityError(f"{fmt} {precision} export failed its parity check: {parity.problem()}; "
                              "no file written")
        ops, size = op_counts(tmp, fmt), tmp.stat().st_size
    cfg = prepared.config
    return ExportReport(out, fmt, precision, size, ops, count_params(prepared.deploy),
                        count_params(prepared.train) if prepared.train is not None else None,
                        macs_per_lr_pixel(prepared.deploy, cfg.colors), parity)
