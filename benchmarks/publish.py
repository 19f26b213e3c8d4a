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


SUITES = {
    "ecbsr-m4c16-x4": Suite(
        "ecbsr-m4c16-x4", "ECBSR-M4C16 x4, 360x640 LR: training graph vs deploy graph on every runtime",
        (("ecbsr", "M4C16", 4),), ("torch-train", "torch", "onnxruntime", "tflite"), ("fp32", "fp16", "int8"),
        ("360x640",), (1, 2), warmup=3, runs=20, rounds=4),
    "ecbsr-presets": Suite(
        "ecbsr-presets", "ECBSR presets, 360x640 LR, x2 and x4, deploy graph, 1 thread",
        tuple(("ecbsr", v, s) for v in ("M4C8", "M4C16", "M8C16", "M10C32", "M16C64") for s in (2, 4)),
        ("torch", "onnxruntime", "tflite"), ("fp32",), ("360x640",), (1,), warmup=1, runs=6, rounds=2),
}


def to_markdown(report: dict) -> str:
    """The README table of a report."""
    train = {(c["model"], c["variant"], c["scale"], tuple(c["input"]), c["threads"]): c["latency"]["median_ms"]
             for c in report["cases"] if c["runtime"] == "torch-train"}
    speedup_header = " vs training graph |" if train else ""
    lines = [f"| model | runtime | prec | threads | median ms | p90 ms |{speedup_header} GFLOP/s | % of peak | "
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
                     f"{c['gflops']:.1f} | {100 * c['peak_fraction']:.1f} | {c['peak_rss_mb']:.0f} |")
    device = report["device"]
    lines.append("")
    lines.append(f"Measured {report['created'][:10]} on {device['name']} ({device['cpu']['logical_cores']} cores, "
                 f"{device['cpu']['simd']}); peak = {device['peak_assumption']}; "
                 f"{report['settings']['runs']} timed runs per case over {report['settings']['rounds']} "
                 "interleaved rounds, one process per case. Weights: " + report["settings"]["weights"] + ".")
    return "\n".join(lines)


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
    for name, variant, scale in suite.models:
        model = load(name, variant, scale)
        weights.append(model.weights)
        result = model.bench(suite.inputs, suite.runtimes, suite.precisions, suite.threads, suite.warmup, suite.runs,
                             suite.rounds, progress)
        if report is None:
            report = result.report
        else:
            report["cases"] += result.cases
    report["settings"]["weights"] = ", ".join(sorted(set(weights)))
    return report


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
        table = to_markdown(report)
        write_bytes_atomic(RESULTS / f"{name}.md", (f"## {SUITES[name].title}\n\n" + table + "\n").encode(),
                           force=True)
        where = "README.md and " if refresh_readme(name, table) else ""
        print(f"wrote {where}benchmarks/results/{name}.{{json,csv,png,md}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
