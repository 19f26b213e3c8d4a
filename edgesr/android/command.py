"""From `edgesr bench --device adb` options to a report: device, files, cases, run."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from edgesr.android.adb import Adb
from edgesr.android.bench import (DELEGATES, DeviceCase, DeviceSettings, check_binary, device_case_record,
                                        run_device_bench)
from edgesr.bench import report as reports
from edgesr.bench.host import parse_shape
from edgesr.errors import ToolError, UserError
from edgesr.pipeline import PreparedModel
from edgesr.profile import count_params, macs_per_lr_pixel


def tflite_file_facts(path: Path) -> tuple[str, int]:
    """(precision, colours) of a given .tflite file, read from its tensors."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    from edgesr.export.tflite import tflite_weight_dtypes

    if not path.is_file() or path.suffix != ".tflite":
        raise UserError(f"--tflite {path}: no such .tflite file")
    try:
        detail = Interpreter(model_path=str(path)).get_input_details()[0]
    except Exception as exc:  # noqa: BLE001  (LiteRT's own exception types)
        raise ToolError(f"LiteRT cannot load {path}: {' '.join(str(exc).split())[:160]}: is it a complete file "
                        "written by 'edgesr export'?") from None
    if detail["dtype"] == np.int8:
        return "int8", int(detail["shape_signature"][-1])
    return ("fp16" if "float16" in tflite_weight_dtypes(path) else "fp32"), int(detail["shape_signature"][-1])


def check_device_options(delegates: list[str], precisions: list[str], threads: list[int], warmup: int,
                         runs: int, cooldown: int) -> None:
    """Refuse bad device-bench options before touching the device."""
    for delegate in delegates:
        if delegate not in DELEGATES:
            raise UserError(f"unknown delegate '{delegate}': choose from {', '.join(DELEGATES)}")
    for precision in precisions:
        if precision not in ("fp32", "fp16", "int8"):
            raise UserError(f"unknown precision '{precision}': choose from fp32, fp16, int8")
    if any(t < 1 for t in threads) or warmup < 0 or runs < 1 or cooldown < 0:
        raise UserError("--threads and --runs must be >= 1, --warmup and --cooldown >= 0")


def bench_on_device(adb: Adb, serial: str, prepare_model: Callable[[], PreparedModel] | None, tflite: Path | None,
                    precisions: list[str], delegates: list[str], threads: list[int], inputs: list[str],
                    settings: DeviceSettings, progress: Callable[[str], None]) -> dict:
    """Export (or take --tflite), run every case through adb, and build the report."""
    check_binary(settings.binary)
    with tempfile.TemporaryDirectory(prefix="edgesr-adb-") as tmp:
        if tflite is not None:
            precision, colors = tflite_file_facts(tflite)
            files = {precision: tflite}
            model = {"model": tflite.stem, "variant": None, "scale": None, "weights": str(tflite)}
            macs_per_pixel, precisions = None, [precision]
        else:
            from edgesr.export.pipeline import export_verified

            prepared = prepare_model()
            colors = prepared.config.colors
            files = {}
            for precision in precisions:
                progress(f"exporting and verifying {prepared.label} tflite {precision}")
                path = Path(tmp) / f"{prepared.spec.name}_{prepared.config.variant.lower()}_x{prepared.config.scale}" \
                                   f"_{precision}.tflite"
                export_verified(prepared, "tflite", precision, path)
                files[precision] = path
            model = {"model": prepared.spec.name, "variant": prepared.config.variant, "scale": prepared.config.scale,
                     "weights": prepared.weights, "params": count_params(prepared.deploy)}
            macs_per_pixel = macs_per_lr_pixel(prepared.deploy, colors)
        shapes = [parse_shape(text, colors) for text in inputs]
        cases = [DeviceCase(p, d, t, s) for s in shapes for t in threads for d in delegates for p in precisions]
        facts, results = run_device_bench(adb, serial, files, cases, settings, progress)
    report = reports.new_report(facts, {"warmup": settings.warmup, "runs": settings.runs, "cores": settings.cores,
                                        "cooldown_s": settings.cooldown_s, "max_temp_c": settings.max_temp_c,
                                        "benchmark_binary": settings.binary.name, "weights": model["weights"]})
    record_model = {k: model[k] for k in ("model", "variant", "scale", "params") if k in model}
    report["cases"] = [device_case_record(r, serial, record_model, macs_per_pixel) for r in results]
    return report
