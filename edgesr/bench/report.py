"""Benchmark reports: one JSON schema for host and device runs, rendered as table, CSV and PNG."""

from __future__ import annotations

import csv
import io
import json
import platform
import textwrap
import time
from importlib import metadata
from pathlib import Path

from edgesr.atomic import atomic_output, write_bytes_atomic
from edgesr.errors import UserError

SCHEMA = "edgesr-bench/1"
PACKAGES = ("edgesr", "torch", "onnxruntime", "ai-edge-litert", "tensorflow", "numpy")
CASE_KEY = ("model", "variant", "scale", "runtime", "delegate", "precision", "input", "threads", "device")


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages that shape the numbers."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


STANDIN_OF = {"tflite": ("benchmark_model", "LiteRT"), "executorch": ("executor_runner", "ExecuTorch")}


def device_title(device: dict) -> str:
    """Where a report ran, in words; a test rig says so (loopback device, stand-in tool)."""
    if device.get("members"):  # a fleet
        return f"{len(device['members'])} devices: " + "; ".join(
            f"{m.get('label', m.get('serial'))} = {device_title(m)}" for m in device["members"])
    name = device.get("name", device.get("kind"))
    rig = []
    if device.get("test_device"):
        rig.append(f"edgesr's {device['test_device']} test device (simulating {name})")
    if device.get("benchmark_tool") == "stand-in":
        tool, runtime = STANDIN_OF[device.get("runtime", "tflite")]
        rig.append(f"the stand-in {tool} ({runtime} on the host CPU)")
    if rig:
        return " with ".join(rig) + ": NOT a phone's numbers"
    return name


def new_report(device: dict, settings: dict) -> dict:
    """An empty report carrying machine, versions and settings so runs can be compared."""
    return {"schema": SCHEMA, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "device": device,
            "ran_on": device_title(device),
            "host": {"os": platform.platform(), "python": platform.python_version()},
            "versions": package_versions(), "settings": settings, "cases": []}


def case_key(case: dict) -> tuple:
    return tuple(json.dumps(case.get(k)) for k in CASE_KEY)


def headline_ms(case: dict) -> float:
    """The latency a case is compared by: the median, or the mean where only that is known
    (benchmark_model on a phone reports mean/min/max/std)."""
    latency = case["latency"]
    return latency["median_ms"] if latency.get("median_ms") is not None else latency["mean_ms"]


def model_label(case: dict) -> str:
    """'ecbsr-M4C16x4', or the file name for a case benchmarked from a given .tflite file."""
    return f"{case['model']}-{case['variant']}x{case['scale']}" if case.get("variant") else case["model"]


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _shape(case: dict) -> str:
    return "x".join(map(str, case["input"]))


def xnnpack_cell(case: dict) -> str:
    """'1' (partitions, every op in XNNPACK) or '6 -5' (partitions, ops left outside); '-' if not a .tflite."""
    found = case.get("xnnpack")
    if not found:
        return "-"
    outside = sum(found["outside"].values())
    return f"{found['partitions']}" + (f" -{outside}" if outside else "")


def ceiling_line(device: dict) -> str:
    """The measured ceilings a host report's %ceil column divides by."""
    ceiling = device.get("ceiling")
    if not ceiling:
        return ""
    parts = [f"{t} thread(s): fp32 {v['fp32_gflops']:.0f} GFLOP/s, int8 "
             + (f"{v['int8_gops']:.0f} GOP/s" if v.get("int8_gops") else "unmeasured")
             for t, v in ceiling["by_threads"].items()]
    return f"ceiling ({ceiling['method']}): " + "; ".join(parts)


def _devices(cases: list[dict]) -> list[str]:
    return list(dict.fromkeys(c.get("device", "") for c in cases))


def _cv_cell(case: dict) -> str:
    """Run-to-run CV of a device case in %, '!' when it never reached its target; '-' on the host."""
    if case.get("cv") is None:
        return "-"
    return f"{100 * case['cv']:.1f}" + ("!" if case.get("stable") is False else "")


def format_table(report: dict) -> str:
    """Terminal table: one row per case ('-' where a runtime does not report a number); a device
    column when the report covers several devices, a CV column for device runs."""
    cases = report["cases"]
    several = len(_devices(cases)) > 1
    wide = max([6] + [len(c.get("device", "")) for c in cases]) if several else 0
    device_head = f"{'device':<{wide}} " if several else ""
    repeated = any(c.get("cv") is not None for c in cases)
    cv_head = f" {'cv%':>6}" if repeated else ""
    header = (f"{device_head}{'model':<14} {'runtime':<18} {'prec':<5} {'input':<13} {'thr':>3} {'median':>9} "
              f"{'mean':>9} {'p90':>9} {'min':>9} {'std':>7} {'first':>9} {'init':>8} {'peak MB':>8} {'GOP/s':>8} "
              f"{'%ceil':>6} {'xnn':>5}{cv_head}")
    lines = [header, "-" * len(header)]
    for c in cases:
        lat = c["latency"]
        runtime = c["runtime"] + (f"/{c['delegate']}" if c.get("delegate") else "")
        peak = None if c.get("ceiling_fraction") is None else 100 * c["ceiling_fraction"]
        device = f"{c.get('device', ''):<{wide}} " if several else ""
        lines.append(f"{device}{model_label(c):<14} {runtime:<18} {c['precision']:<5} {_shape(c):<13} "
                     f"{c['threads']:>3} {_num(lat['median_ms'], '9.2f'):>9} {_num(lat['mean_ms'], '9.2f'):>9} "
                     f"{_num(lat['p90_ms'], '9.2f'):>9} {_num(lat['min_ms'], '9.2f'):>9} "
                     f"{_num(lat['std_ms'], '7.2f'):>7} {_num(c.get('first_ms'), '9.2f'):>9} "
                     f"{_num(c.get('init_ms'), '8.0f'):>8} {_num(c.get('peak_rss_mb'), '8.0f'):>8} "
                     f"{_num(c.get('gflops'), '8.1f'):>8} {_num(peak, '6.1f'):>6} {xnnpack_cell(c):>5}"
                     + (f" {_cv_cell(c):>6}" if repeated else ""))
    for failed in report.get("failed", []):
        lines.append(f"{failed['device']}: FAILED, no rows: {failed['reason']}")
    lines.append("times in ms (timed runs; first = first inference; init = model load, imports excluded); "
                 "peak MB = peak resident memory; GOP/s = 2 x MACs / median (mean where no median); %ceil = of the "
                 "measured GEMM ceiling at that precision and thread count; xnn = XNNPACK partitions, -N ops "
                 "left outside it" + ("; cv% = run-to-run coefficient of variation of the repeated runs' means "
                                      "(! = never reached its target)" if repeated else ""))
    return "\n".join(lines)


CSV_FIELDS = ("model", "variant", "scale", "device", "runtime", "delegate", "precision", "input", "threads", "runs",
              "min_ms", "median_ms", "mean_ms", "p90_ms", "max_ms", "std_ms", "first_ms", "init_ms",
              "peak_rss_mb", "params", "macs", "gflops", "ceiling_gops", "ceiling_fraction", "repeats", "cv", "stable",
              "thermal_before_c", "thermal_after_c")


def to_csv(report: dict) -> str:
    """One CSV row per case, latency statistics flattened."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for c in report["cases"]:
        writer.writerow({**c, **c["latency"], "input": _shape(c)})
    return out.getvalue()


def write_outputs(report: dict, json_path: Path | None, csv_path: Path | None, plot_path: Path | None,
                  force: bool) -> list[Path]:
    """Write whichever report files were asked for, each atomically."""
    written = []
    if json_path:
        write_bytes_atomic(json_path, json.dumps(report, indent=2).encode(), force)
        written.append(json_path)
    if csv_path:
        write_bytes_atomic(csv_path, to_csv(report).encode(), force)
        written.append(csv_path)
    if plot_path:
        plot_png(report, plot_path, force)
        written.append(plot_path)
    return written


def _series_label(case: dict) -> str:
    delegate = f"/{case['delegate']}" if case.get("delegate") else ""
    return f"{case['runtime']}{delegate} {case['precision']}"


def _plot_sizes(ax, cases: list[dict], colors) -> None:
    """Latency vs input pixels, one line per model/runtime/precision/threads."""
    series: dict[str, list[tuple[int, float]]] = {}
    for c in cases:
        n, _, h, w = c["input"]
        label = f"{model_label(c)} {_series_label(c)} t{c['threads']}"
        series.setdefault(label, []).append((n * h * w, headline_ms(c)))
    for i, (label, points) in enumerate(sorted(series.items())):
        points.sort()
        ax.plot([p[0] / 1e3 for p in points], [p[1] for p in points], marker="o", label=label,
                color=colors(i % colors.N))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("input pixels (thousands, LR; log)")
    ax.set_ylabel("median (device: mean) latency (ms; log)")
    ax.set_title("Latency vs input size")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)


def _plot_bars(ax, cases: list[dict], colors) -> None:
    """Latency at each model's largest input. One model: a group per runtime/precision, a bar
    per thread count. Several models: a group per model, a bar per runtime/precision/threads.
    Several devices: a group per device, a bar per model/runtime/precision/threads."""
    largest: dict[tuple[str, str, int], tuple[int, float]] = {}
    by_device = len(_devices(cases)) > 1
    for c in cases:
        group = c["device"] if by_device else model_label(c)
        series = f"{model_label(c)} {_series_label(c)}" if by_device else _series_label(c)
        key = (group, series, c["threads"])
        pixels = c["input"][0] * c["input"][2] * c["input"][3]
        if key not in largest or pixels > largest[key][0]:
            largest[key] = (pixels, headline_ms(c))
    models = sorted({k[0] for k in largest})
    if len(models) == 1:
        groups, hues = sorted({k[1] for k in largest}), sorted({k[2] for k in largest})
        value = {(k[1], k[2]): v[1] for k, v in largest.items()}
        hue_label = [f"{t} thread{'s' if t > 1 else ''}" for t in hues]
    else:
        groups, hues = models, sorted({(k[1], k[2]) for k in largest})
        value = {(k[0], (k[1], k[2])): v[1] for k, v in largest.items()}
        hue_label = [f"{s} t{t}" for s, t in hues]
    width = 0.8 / max(len(hues), 1)
    for i, hue in enumerate(hues):
        xs = [g + (i - (len(hues) - 1) / 2) * width for g in range(len(groups))]
        ys = [value.get((group, hue), 0.0) for group in groups]
        bars = ax.bar(xs, ys, width=width, label=hue_label[i], color=colors(i % colors.N))
        if len(models) == 1:
            ax.bar_label(bars, fmt="%.0f", fontsize=7)
    shown = [v for v in value.values() if v > 0]
    if shown and max(shown) > 20 * min(shown):
        ax.set_yscale("log")
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("median (device: mean) latency (ms) at the largest input")
    ax.set_title("Per device" if by_device else models[0] if len(models) == 1 else "Per model")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, ncol=2 if len(hues) > 8 else 1)


def plot_png(report: dict, path: Path, force: bool = False) -> None:
    """Bars of latency per runtime/precision/threads (per model); with several input sizes,
    also latency vs input pixels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = report["cases"]
    several_sizes = len({tuple(c["input"]) for c in cases}) > 1
    fig, axes = plt.subplots(1, 2 if several_sizes else 1, figsize=(13 if several_sizes else 8, 5.5), squeeze=False)
    colors = plt.get_cmap("tab20")
    if several_sizes:
        _plot_sizes(axes[0][1], cases, colors)
    _plot_bars(axes[0][0], cases, colors)
    device = report["device"]
    sizes = ", ".join(sorted({_shape(c) for c in cases}))
    title = textwrap.fill(f"edgesr bench on {device_title(device)} (input {sizes})", 130)
    fig.suptitle(title, fontsize=10 if "\n" not in title else 8)
    fig.tight_layout()
    with atomic_output(Path(path), force) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def load_report(path: Path) -> dict:
    """Read a report written by `edgesr bench --json`."""
    try:
        report = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read benchmark report {path}: {exc}") from None
    if not isinstance(report, dict) or report.get("schema") != SCHEMA:
        raise UserError(f"{path} is not an edgesr benchmark report (schema {SCHEMA})")
    problem = schema_problem(report)
    if problem:
        raise UserError(f"benchmark report {path} is damaged: {problem}; run the benchmark again to write it")
    return report


_CASE_FIELDS = {"model": str, "runtime": str, "precision": str, "input": list, "threads": int, "latency": dict}


def schema_problem(report: dict) -> str | None:
    """What is wrong with a report's structure (the fields compare and the table read), or None."""
    if not isinstance(report.get("device"), dict):
        return "no 'device' object"
    cases = report.get("cases")
    if not isinstance(cases, list):
        return "no 'cases' list"
    for i, case in enumerate(cases):
        if not isinstance(case, dict):
            return f"case {i} is not an object"
        for key, kind in _CASE_FIELDS.items():
            if not isinstance(case.get(key), kind) or isinstance(case.get(key), bool):
                return f"case {i} has no valid '{key}'"
        if len(case["input"]) != 4 or not all(isinstance(d, int) for d in case["input"]):
            return f"case {i}: 'input' is not [N, C, H, W]"
        latency = case["latency"]
        headline = latency.get("median_ms") if latency.get("median_ms") is not None else latency.get("mean_ms")
        if not isinstance(headline, (int, float)) or isinstance(headline, bool) or headline <= 0:
            return f"case {i}: 'latency' has no positive median_ms or mean_ms"
    return None


def compare(a: dict, b: dict) -> str:
    """Median latency of every case present in both reports, and the ratio B/A."""
    index = {case_key(c): c for c in a["cases"]}
    header = f"{'case':<60} {'A median':>10} {'B median':>10} {'B/A':>7}"
    lines = [header, "-" * len(header)]
    matched = 0
    for cb in b["cases"]:
        ca = index.get(case_key(cb))
        if ca is None:
            continue
        matched += 1
        label = f"{model_label(cb)} {cb['runtime']} {cb['precision']} {_shape(cb)} t{cb['threads']}"
        ma, mb = headline_ms(ca), headline_ms(cb)
        lines.append(f"{label:<60} {ma:>10.2f} {mb:>10.2f} {mb / ma:>7.3f}")
    if not matched:
        raise UserError("the two reports have no case in common (same model, runtime, precision, input, threads)")
    if a["device"] != b["device"]:
        lines.append("note: the reports come from different devices; ratios compare machines, not runtimes")
    return "\n".join(lines)
