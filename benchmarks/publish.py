"""Re-run the published host benchmark tables: `python -m benchmarks.publish [SUITE ...]`
(or `make bench`). Writes benchmarks/results/<suite>.{json,csv,png,md} and refreshes the
tables between the suite's markers in README.md."""

from __future__ import annotations

import argparse
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from edgesr.api import load
from edgesr.atomic import write_bytes_atomic
from edgesr.bench import report as reports

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


@dataclass(frozen=True)
class Suite:
    """One published table: which models and which cases."""

    name: str
    title: str
    models: tuple[tuple[str, str, int], ...]  # (model, variant, scale)
    runtimes: tuple[str, ...]
    precisions: tuple[str, ...]
    inputs: tuple[str, ...]
    threads: tuple[int, ...]
    warmup: int
    runs: int
    rounds: int
    quality: bool = False  # also score each exported precision on the held-out photos (PSNR-Y loss vs fp32)
    table: str = "runtimes"  # the README table: "runtimes" (vs the training graph), "int8" (vs fp32), "targets"


SUITES = {
    "ecbsr-m4c16-x4": Suite(
        "ecbsr-m4c16-x4", "ECBSR-M4C16 x4, 360x640 LR: training graph vs deploy graph on every runtime",
        (("ecbsr", "M4C16", 4),), ("torch-train", "torch", "onnxruntime", "tflite"), ("fp32", "fp16", "int8"),
        ("360x640",), (1, 2), warmup=3, runs=20, rounds=4),
    "ecbsr-presets": Suite(
        "ecbsr-presets", "ECBSR presets, 360x640 LR, x2 and x4, deploy graph, 1 thread",
        tuple(("ecbsr", v, s) for v in ("M4C8", "M4C16", "M8C16", "M10C32", "M16C64") for s in (2, 4)),
        ("torch", "onnxruntime", "tflite"), ("fp32",), ("360x640",), (1,), warmup=1, runs=6, rounds=2),
    "ecbsr-int8": Suite(
        "ecbsr-int8", "ECBSR-M4C16 (shipped weights) in LiteRT: fp32, fp16 and int8 (default form), photo input",
        (("ecbsr", "M4C16", 4), ("ecbsr", "M4C16", 2)), ("tflite",), ("fp32", "fp16", "int8"), ("270x480", "360x640"),
        (1, 2), warmup=3, runs=20, rounds=4, quality=True, table="int8"),
    "three-runtimes": Suite(
        "three-runtimes", "ECBSR-M4C16 x4 (shipped weights): ExecuTorch vs LiteRT vs ONNX Runtime, photo input",
        (("ecbsr", "M4C16", 4),), ("onnxruntime", "tflite", "executorch"), ("fp32", "int8"), ("270x480", "360x640"),
        (1, 2), warmup=3, runs=12, rounds=4, quality=True, table="targets"),
}


def _ceiling(c: dict) -> str:
    fraction = c.get("ceiling_fraction")
    return "-" if fraction is None else f"{100 * fraction:.1f}"


def _measured_on(report: dict) -> str:
    device, settings = report["device"], report["settings"]
    ceiling = reports.ceiling_line(device) or "peak = " + device.get("peak_assumption", "?")
    return (f"Measured {report['created'][:10]} on {device['name']} ({device['cpu']['logical_cores']} cores, "
            f"{device['cpu']['simd']}), {settings.get('input_data', 'noise')} input; {ceiling}; {settings['runs']} "
            f"timed runs per case over {settings['rounds']} interleaved rounds, one process per case. Weights: "
            + settings["weights"] + ".")


def int8_markdown(report: dict) -> str:
    """The README table of a precision suite: speed relative to fp32 in the same run, XNNPACK
    partitions, and the PSNR-Y each file loses to fp32 on the held-out photos."""
    fp32 = {(c["scale"], tuple(c["input"]), c["threads"]): c["latency"]["median_ms"]
            for c in report["cases"] if c["precision"] == "fp32"}
    quality = report.get("quality", {})
    lines = ["| model | prec | LR input | threads | median ms | speed vs fp32 | XNNPACK partitions (ops outside) "
             "| % of ceiling | PSNR-Y dB (loss vs fp32) |", "|---|---|---|---:|---:|---:|---|---:|---:|"]
    for c in report["cases"]:
        base = fp32.get((c["scale"], tuple(c["input"]), c["threads"]))
        found = c.get("xnnpack") or {}
        outside = ", ".join(f"{k} x{v}" for k, v in found.get("outside", {}).items()) or "none"
        score = quality.get(f"{c['scale']}", {})
        psnr = score.get(c["precision"])
        loss = "" if psnr is None or c["precision"] == "fp32" else f" ({psnr - score['fp32']:+.3f})"
        size = f"{c['input'][2]}x{c['input'][3]}"
        lines.append(f"| {c['model']}-{c['variant']} x{c['scale']} | {c['precision']} | {size} | {c['threads']} | "
                     f"{c['latency']['median_ms']:.1f} | "
                     f"{base / c['latency']['median_ms']:.2f}x | {found.get('partitions', '-')} ({outside}) | "
                     f"{_ceiling(c)} | {'-' if psnr is None else f'{psnr:.3f}'}{loss} |")
    lines += ["", _measured_on(report)]
    return "\n".join(lines)


def targets_markdown(report: dict) -> str:
    """The README table of deployment targets: each file's speed relative to LiteRT fp32 in the
    same run, its XNNPACK partitions, and its PSNR-Y on the held-out photos."""
    base = {(tuple(c["input"]), c["threads"]): c["latency"]["median_ms"]
            for c in report["cases"] if (c["runtime"], c["precision"]) == ("tflite", "fp32")}
    quality = report.get("quality", {})
    lines = ["| runtime | prec | LR input | threads | median ms | speed vs LiteRT fp32 | XNNPACK partitions "
             "(ops outside) | PSNR-Y dB |", "|---|---|---|---:|---:|---:|---|---:|"]
    for c in sorted(report["cases"], key=lambda c: (c["input"], c["threads"], c["runtime"], c["precision"])):
        found = c.get("xnnpack")
        delegated = "-" if not found else (f"{found['partitions']} ("
                                           + (", ".join(f"{k} x{v}" for k, v in found["outside"].items()) or "none")
                                           + ")")
        psnr = quality.get(str(c["scale"]), {}).get(f"{c['runtime']}-{c['precision']}")
        ms = c["latency"]["median_ms"]
        lines.append(f"| {c['runtime']} | {c['precision']} | {c['input'][2]}x{c['input'][3]} | {c['threads']} | "
                     f"{ms:.1f} | {base[(tuple(c['input']), c['threads'])] / ms:.2f}x | {delegated} | "
                     f"{'-' if psnr is None else f'{psnr:.3f}'} |")
    lines += ["", _measured_on(report)]
    return "\n".join(lines)


def to_markdown(report: dict) -> str:
    """The README table of a report."""
    train = {(c["model"], c["variant"], c["scale"], tuple(c["input"]), c["threads"]): c["latency"]["median_ms"]
             for c in report["cases"] if c["runtime"] == "torch-train"}
    speedup_header = " vs training graph |" if train else ""
    lines = [f"| model | runtime | prec | threads | median ms | p90 ms |{speedup_header} GOP/s | % of ceiling | "
             "peak MB |",
             "|---|---|---|---:|---:|---:|" + ("---:|" if train else "") + "---:|---:|---:|"]
    for c in report["cases"]:
        speedup = ""
        if train:
            base = train.get((c["model"], c["variant"], c["scale"], tuple(c["input"]), c["threads"]))
            speedup = (f" {base / c['latency']['median_ms']:.1f}x faster |" if base and c["runtime"] != "torch-train"
                       else " - |")
        lines.append(f"| {c['model']}-{c['variant']} x{c['scale']} | {c['runtime']} | {c['precision']} | "
                     f"{c['threads']} | {c['latency']['median_ms']:.1f} | {c['latency']['p90_ms']:.1f} |{speedup} "
                     f"{c['gflops']:.1f} | {_ceiling(c)} | {c['peak_rss_mb']:.0f} |")
    lines += ["", _measured_on(report)]
    return "\n".join(lines)


TABLES = {"int8": int8_markdown, "targets": targets_markdown, "runtimes": to_markdown}


def refresh_readme(name: str, table: str, readme: Path = ROOT / "README.md", kind: str = "bench") -> bool:
    """Replace the text between <!-- KIND:NAME --> and <!-- /KIND:NAME --> in README."""
    text = readme.read_text()
    marker = f"{kind}:{re.escape(name)}"
    pattern = re.compile(rf"(<!-- {marker} -->\n).*?(<!-- /{marker} -->)", re.S)
    if not pattern.search(text):
        return False
    write_bytes_atomic(readme, pattern.sub(lambda m: m.group(1) + table + "\n" + m.group(2), text).encode(),
                       force=True)
    return True


def run_suite(suite: Suite) -> dict:
    def progress(message: str) -> None:
        print(f"[{suite.name} {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    report: dict | None = None
    weights = []
    quality: dict[str, dict[str, float]] = {}
    for name, variant, scale in suite.models:
        model = load(name, variant, scale)
        weights.append(model.weights.replace(f"{ROOT}/", ""))  # a shipped checkpoint by its repository path
        if suite.quality:
            quality[str(scale)] = scores_by_file(model, suite, progress)
        result = model.bench(suite.inputs, suite.runtimes, suite.precisions, suite.threads, suite.warmup, suite.runs,
                             suite.rounds, progress)
        if report is None:
            report = result.report
        else:
            report["cases"] += result.cases
    report["settings"]["weights"] = ", ".join(sorted(set(weights)))
    if quality:
        report["quality"] = quality
    return report


def scores_by_file(model, suite: Suite, progress) -> dict[str, float]:
    """Mean PSNR-Y on the held-out photos of the model exported for each runtime and precision;
    keyed by precision for a LiteRT-only suite, else by runtime-precision."""
    import tempfile

    from edgesr.api import open_model
    from edgesr.bench.host import FILE_FORMAT, RUNTIMES

    scores = {}
    with tempfile.TemporaryDirectory(prefix="edgesr-publish-") as scratch:
        for runtime in suite.runtimes:
            for precision in (p for p in suite.precisions if p in RUNTIMES[runtime]):
                fmt = FILE_FORMAT[runtime]
                progress(f"scoring {model.label} {fmt} {precision} on the held-out photos")
                path = model.export(fmt, precision, out=Path(scratch) / f"{precision}.{fmt}").path
                key = precision if suite.runtimes == ("tflite",) else f"{runtime}-{precision}"
                scores[key] = open_model(path).evaluate().mean["psnr_y"]
    return scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("suites", nargs="*", default=list(SUITES), help=f"suites to run: {', '.join(SUITES)}")
    parser.add_argument("--render-only", action="store_true",
                        help="re-render README/markdown tables from the saved results JSON without measuring")
    args = parser.parse_args(argv)
    unknown = [s for s in args.suites if s not in SUITES]
    if unknown:
        parser.error(f"unknown suite {', '.join(unknown)}: choose from {', '.join(SUITES)}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    for name in args.suites:
        if args.render_only:
            report = reports.load_report(RESULTS / f"{name}.json")
        else:
            report = run_suite(SUITES[name])
            reports.write_outputs(report, RESULTS / f"{name}.json", RESULTS / f"{name}.csv",
                                  RESULTS / f"{name}.png", force=True)
        print(f"## {SUITES[name].title}")
        print(reports.format_table(report))
        table = TABLES[SUITES[name].table](report)
        write_bytes_atomic(RESULTS / f"{name}.md", (f"## {SUITES[name].title}\n\n" + table + "\n").encode(),
                           force=True)
        where = "README.md and " if refresh_readme(name, table) else ""
        print(f"wrote {where}benchmarks/results/{name}.{{json,csv,png,md}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
