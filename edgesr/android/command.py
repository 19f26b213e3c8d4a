"""From `bench --device adb` choices to a report: files, the work each graph does, device runs.

A model of several graphs (a bundle) is timed graph by graph: its glue runs once on the host on
a photo of each input size, recording which graph it calls at which batch shape, and the phone's
per-call times add up to an estimate of the whole image."""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgesr import metadata
from edgesr.android.bench import (
    DELEGATES,
    TOOLS,
    DeviceCase,
    DeviceSettings,
    DeviceTool,
    check_binary,
    device_case_record,
    run_device_bench,
)
from edgesr.android.fleet import Phone, on_each
from edgesr.bench import report as reports
from edgesr.bench.host import parse_shape
from edgesr.errors import ToolError, UserError
from edgesr.family import IOSpec
from edgesr.images import PHOTOS, photo_crop
from edgesr.model import Prepared
from edgesr.model_files import LoadedModel, open_model
from edgesr.profile import count_params

Workload = dict[str, Counter]  # graph name -> Counter of input shapes it is called with


def device_tool(runtimes: list[str] | None) -> DeviceTool:
    """The one runtime a device bench runs (default: tflite)."""
    chosen = runtimes or ["tflite"]
    if len(chosen) != 1 or chosen[0] not in TOOLS:
        raise UserError(f"the phone bench runs one runtime at a time, one of {', '.join(TOOLS)}: not "
                        f"{' '.join(chosen)}")
    return TOOLS[chosen[0]]


def check_device_options(delegates: list[str], precisions: list[str], threads: list[int], warmup: int,
                         runs: int, cooldown: int, tool: DeviceTool = TOOLS["tflite"]) -> None:
    """Refuse bad device-bench options before touching the device."""
    check_delegates(delegates)
    for delegate in delegates:
        if delegate not in tool.delegates:
            raise UserError(f"{tool.runtime} runs {tool.fmt} files with their own XNNPACK delegate: use «delegate» "
                            f"{' '.join(tool.delegates)}, not {delegate}")
    for precision in precisions:
        if precision not in ("fp32", "fp16", "int8"):
            raise UserError(f"unknown precision '{precision}': choose from fp32, fp16, int8")
    if any(t < 1 for t in threads) or warmup < 0 or runs < 1 or cooldown < 0:
        raise UserError("«threads» and «runs» must be >= 1, «warmup» and «cooldown» >= 0")


def check_delegates(delegates: list[str]) -> None:
    """Refuse a delegate name benchmark_model has no flag for."""
    for delegate in delegates:
        if delegate not in DELEGATES:
            raise UserError(f"unknown delegate '{delegate}': choose from {', '.join(DELEGATES)}")


class _Recorder:
    """A Graph that notes the shape of every input it runs."""

    def __init__(self, graph, calls: Counter):
        self.graph, self.calls = graph, calls

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.calls[tuple(x.shape)] += 1
        return self.graph(x)


def workload(model: LoadedModel, shape: tuple[int, int, int, int]) -> Workload:
    """Which graph runs at which input shape, how often, for a photo of `shape` (NCHW)."""
    if model.family is None:
        described = model.metadata or {}
        if int(described.get("size_multiple") or 1) > 1:  # a graph on 2x2 blocks: odd sides run as even windows
            from edgesr.tiling import even_pieces

            n, c = shape[:2]
            pieces = even_pieces(shape[2], shape[3], int(described.get("receptive_radius") or 0))
            return {"deploy": Counter((n, c, p.rows[1] - p.rows[0], p.cols[1] - p.cols[0]) for p in pieces)}
        return {"deploy": Counter({shape: 1})}
    calls = {name: Counter() for name in model.graphs}
    runner = model.rewired({name: _Recorder(graph, calls[name]) for name, graph in model.graphs.items()})
    io = model.io or model.assumed_io
    photo = photo_crop(PHOTOS[3], shape[2], shape[3], io.colors, io.pixel_range, np.random.default_rng(0))
    runner(photo)
    return calls


def _files(model: LoadedModel) -> dict[str, Path]:
    if model.family is None:
        return {"deploy": model.path}
    return {entry["name"]: model.path / entry["file"] for entry in model.metadata["graphs"]}


def _models(prepare_model: Callable[[], Prepared] | None, given: Path | None, precisions: list[str], tmp: Path,
            progress: Callable[[str], None], tool: DeviceTool) -> tuple[dict[str, LoadedModel], dict]:
    """The models to time, by precision, and what the report says about them."""
    fmt = tool.fmt
    if given is not None:
        if given.is_file() and given.suffix != f".{fmt}":
            raise UserError(f"«model_file» {given}: the phone's {tool.binary} runs .{fmt} files or {fmt} bundle "
                            "folders")
        model = open_model(given)
        if model.family is not None and model.metadata["runtime"] != fmt:
            raise UserError(f"bundle {given} holds {model.metadata['runtime']} graphs: {tool.binary} needs a {fmt} "
                            f"bundle (export it with «format» {fmt})")
        meta = model.metadata
        if meta is None and fmt == "tflite":  # another tool's file: what LiteRT can tell
            from edgesr.export.tflite import tflite_file_facts

            precision, colors = tflite_file_facts(given)
            model.assumed_io = IOSpec(colors, 1.0, 1)
            return {precision: model}, {"model": given.stem, "variant": None, "scale": None, "weights": str(given)}
        if meta is None:
            raise UserError(f"{given} carries no edgesr metadata, so its input is unknown: bench .{fmt} files written "
                            "by 'edgesr export'")
        return ({meta["precision"]: model},
                {"model": meta["family"], "variant": meta["variant"], "scale": meta["io"]["scale"],
                 "weights": str(given)})
    from edgesr.export.exporter import default_output, export

    prepared = prepare_model()
    models = {}
    for precision in precisions:
        progress(f"exporting and verifying {prepared.label} {fmt} {precision}")
        out = tmp / default_output(prepared, fmt, precision).name
        models[precision] = open_model(export(prepared, fmt, precision, out).path)
    params = sum(count_params(g.module) for g in prepared.deployable.graphs.values())
    return models, {"model": prepared.family.name, "variant": prepared.config.variant, "scale": prepared.config.scale,
                    "weights": prepared.weights, "params": params}


def estimates(records: list[dict], loads: dict[tuple[str, tuple], Workload], device: str) -> list[dict]:
    """Whole-image times of multi-graph models: every recorded call at its graph's measured time."""
    rows = []
    for (precision, shape), load in loads.items():
        if list(load) == ["deploy"]:
            continue
        settings = {(r["delegate"], r["threads"]) for r in records if r["precision"] == precision}
        for delegate, threads in sorted(settings):
            times = {(r["graph"], tuple(r["input"])): r["latency"]["mean_ms"] for r in records
                     if r["precision"] == precision and r["delegate"] == delegate and r["threads"] == threads}
            total = sum(count * times[(graph, s)] for graph, calls in load.items() for s, count in calls.items())
            rows.append({"device": device, "precision": precision, "input": list(shape), "delegate": delegate,
                         "threads": threads, "calls": {graph: sum(calls.values()) for graph, calls in load.items()},
                         "estimate_ms": total})
    return rows


def format_estimates(rows: list[dict]) -> str:
    lines = [f"{'device':<28} {'input':<12} {'prec':<5} {'delegate':<8} {'thr':>3} {'estimate ms':>11}  "
             "calls per graph"]
    for r in rows:
        calls = ", ".join(f"{g} x{n}" for g, n in r["calls"].items())
        lines.append(f"{r['device']:<28} {'x'.join(map(str, r['input'][2:])):<12} {r['precision']:<5} "
                     f"{r['delegate']:<8} {r['threads']:>3} {r['estimate_ms']:>11.1f}  {calls}")
    return "\n".join(lines)


def bench_on_phones(phones: list[Phone], prepare_model: Callable[[], Prepared] | None, given: Path | None,
                    precisions: list[str], delegates: list[str], threads: list[int], inputs: list[str],
                    settings: DeviceSettings, progress: Callable[[str], None],
                    tool: DeviceTool = TOOLS["tflite"]) -> dict:
    """Export (or take a given file or bundle of the tool's format) once, time every graph at the
    shapes it runs on every phone in parallel, and build one report (whole-image estimates for
    multi-graph models). A phone that fails loses only its own rows: the report lists it under
    "failed" with the reason; if every phone fails, the first reason is raised."""
    check_binary(settings.binary, tool.binary)
    with tempfile.TemporaryDirectory(prefix="edgesr-adb-") as tmp:
        models, model_facts = _models(prepare_model, given, precisions, Path(tmp), progress, tool)
        files, loads = {}, {}
        shapes = []
        for precision, model in models.items():
            for name, path in _files(model).items():
                files[(precision, name)] = path
            io = model.io or model.assumed_io
            for text in inputs:
                shape = parse_shape(text, io.colors)
                shapes.append(shape)
                loads[(precision, shape)] = workload(model, shape)
        cases = [DeviceCase(precision, d, t, s, graph, tool.runtime) for shape in dict.fromkeys(shapes) for t in threads
                 for d in delegates for precision in models for graph, calls in loads[(precision, shape)].items()
                 for s in calls]
        cases = list(dict.fromkeys(cases))
        macs = {key: (metadata.read(path) or {}).get("macs_per_pixel") for key, path in files.items()}

        def on(phone: Phone):
            say = progress if len(phones) == 1 else (lambda text: progress(f"{phone.label}: {text}"))
            return run_device_bench(phone.adb, phone.serial, files, cases, settings, say)

        outcomes = on_each(phones, on)
    done = [o for o in outcomes if o.result is not None]
    if not done:
        raise ToolError("; ".join(f"{o.phone.label}: {o.error}" for o in outcomes))
    members = []
    for outcome in done:
        facts = outcome.result[0]
        members.append({**facts, "label": outcome.phone.label})
    device = members[0] if len(phones) == 1 else fleet_facts(members)
    report = reports.new_report(device, {"warmup": settings.warmup, "runs": settings.runs, "cores": settings.cores,
                                         "cooldown_s": settings.cooldown_s, "max_temp_c": settings.max_temp_c,
                                         "cv_target": settings.cv_target, "max_repeats": settings.max_repeats,
                                         "benchmark_binary": settings.binary.name,
                                         "weights": model_facts["weights"]})
    record_model = {k: model_facts[k] for k in ("model", "variant", "scale", "params") if k in model_facts}
    report["cases"] = [device_case_record(r, o.phone.label, record_model, macs.get(r.case.key), settings.cv_target)
                       for o in done for r in o.result[1]]
    report["failed"] = [{"device": o.phone.label, "reason": o.error} for o in outcomes if o.error]
    report["estimates"] = [row for o in done for row in estimates(
        [c for c in report["cases"] if c["device"] == o.phone.label], loads, o.phone.label)]
    return report


def fleet_facts(members: list[dict]) -> dict:
    """A report's device entry for several phones: each one's facts under "members"."""
    return {"kind": "fleet", "name": f"{len(members)} devices", "members": members}
