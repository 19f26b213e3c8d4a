"""SplitSR alpha sweep on the host CPU: `python -m benchmarks.splitsr_alpha`.

For alpha in (0.25, 0.5, 1.0) on one CPU-friendly config (default A<alpha>-G2B4-H2-C32, x4,
180x320 LR), export + verify the deploy graph to ONNX and TFLite and time both with the
host harness (`edgesr.bench.host.model_target`, `plan_cases`, `run_bench`: one worker process per case,
fp32, 1 thread). The sweep runs in `--passes` passes with the alpha order reversed each
pass, so slow drift of a shared machine hits every alpha alike; the headline latency of an
(alpha, runtime) is the mean of its per-pass medians. Writes
benchmarks/results/splitsr-alpha.{json,md} and refreshes the table between the
`<!-- bench:splitsr-alpha -->` markers in README.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

from benchmarks.publish import refresh_readme
from edgesr.atomic import write_bytes_atomic
from edgesr.bench import report as reports
from edgesr.bench.host import host_device, model_target, plan_cases, run_bench
from edgesr.model import prepare
from edgesr.profile import count_macs, macs_per_lr_pixel

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
NAME = "splitsr-alpha"
ALPHAS = (0.25, 0.5, 1.0)
RUNTIMES = ("onnxruntime", "tflite")


def _load() -> str:
    return " / ".join(f"{v:.2f}" for v in os.getloadavg())


def _macs(prepared) -> dict:
    """MACs per LR pixel: whole deploy graph, and the residual-group body alone (where alpha acts)."""
    cfg, size = prepared.config, 16
    body = count_macs(prepared.deploy.body, (1, cfg.channels, size, size)) / (size * size)
    return {"total": macs_per_lr_pixel(prepared.deploy, cfg.colors), "body": body}


def summarize_sweep(report: dict) -> list[dict]:
    """One row per alpha: MACs, and per runtime the mean of the pass medians and its ratio to alpha = 1."""
    rows = []
    for alpha, info in sorted(report["alphas"].items(), key=lambda kv: float(kv[0])):
        row = {"alpha": float(alpha), "variant": info["variant"], "macs_total": info["macs"]["total"],
               "macs_body": info["macs"]["body"], "latency_ms": {}, "pass_medians_ms": {}}
        for runtime in report["settings"]["runtimes"]:
            medians = [c["latency"]["median_ms"] for c in report["cases"]
                       if c["variant"] == info["variant"] and c["runtime"] == runtime]
            row["pass_medians_ms"][runtime] = medians
            row["latency_ms"][runtime] = statistics.fmean(medians)
        rows.append(row)
    base = next(r for r in rows if r["alpha"] == 1.0) if any(r["alpha"] == 1.0 for r in rows) else None
    for row in rows:
        row["macs_ratio"] = row["macs_total"] / base["macs_total"] if base else None
        row["body_macs_ratio"] = row["macs_body"] / base["macs_body"] if base else None
        row["latency_ratio"] = ({rt: row["latency_ms"][rt] / base["latency_ms"][rt] for rt in row["latency_ms"]}
                                if base else {})
    return rows


def to_markdown(report: dict) -> str:
    rows = report["sweep"]
    runtimes = report["settings"]["runtimes"]
    head = ("| alpha | variant | MACs/LR px (total) | vs alpha=1 | body MACs/LR px | vs alpha=1 | "
            + " | ".join(f"{rt} ms | vs alpha=1" for rt in runtimes) + " |")
    lines = [head, "|---:|---|---:|---:|---:|---:|" + "---:|---:|" * len(runtimes)]
    for r in rows:
        cells = [f"{r['alpha']:g}", r["variant"], f"{r['macs_total']:,.0f}", f"{r['macs_ratio']:.2f}",
                 f"{r['macs_body']:,.0f}", f"{r['body_macs_ratio']:.2f}"]
        for rt in runtimes:
            cells += [f"{r['latency_ms'][rt]:.1f}", f"{r['latency_ratio'][rt]:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    s, device = report["settings"], report["device"]
    lines.append("")
    lines.append(f"Measured {report['created'][:10]} on {device['name']} ({device['cpu']['logical_cores']} cores, "
                 f"{device['cpu']['simd']}); x{s['scale']}, {s['input']} LR, fp32, {s['threads']} thread; "
                 f"{s['passes']} passes (alpha order reversed each pass) x {s['runs']} timed runs per case "
                 f"over {s['rounds']} interleaved rounds, one process per case; ms = mean of the per-pass "
                 f"medians. Load average before/after: {s['load_before']} -> {s['load_after']} (shared machine). "
                 "'body' = the residual groups + body conv, where alpha acts; 'total' adds head, x4 upsampler "
                 f"and tail. Weights: {s['weights']}.")
    return "\n".join(lines)


def run(groups: int, blocks: int, hybrid: int, channels: int, scale: int, size: str, passes: int, warmup: int,
        runs: int, rounds: int) -> dict:
    def progress(message: str) -> None:
        print(f"[{NAME} {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    variants = {alpha: f"A{alpha:g}-G{groups}B{blocks}-H{hybrid}-C{channels}" for alpha in ALPHAS}
    prepared = {alpha: prepare("splitsr", v, scale) for alpha, v in variants.items()}
    settings = {"runtimes": list(RUNTIMES), "precision": "fp32", "threads": 1, "scale": scale, "input": size,
                "passes": passes, "warmup": warmup, "runs": runs, "rounds": rounds,
                "weights": ", ".join(sorted({p.weights for p in prepared.values()})), "load_before": _load()}
    device = host_device([1])
    report = reports.new_report(device, settings)
    report["alphas"] = {str(a): {"variant": v, "macs": _macs(prepared[a])} for a, v in variants.items()}
    start = time.perf_counter()
    for p in range(passes):
        order = ALPHAS if p % 2 == 0 else tuple(reversed(ALPHAS))
        for alpha in order:
            progress(f"pass {p + 1}/{passes}: alpha {alpha:g} ({variants[alpha]} x{scale}, {size})")
            target = model_target(prepared[alpha])
            cases = plan_cases(target, list(RUNTIMES), ["fp32"], [size], [1])
            for case in run_bench(target, cases, warmup, runs, rounds, device, progress):
                report["cases"].append({**case, "alpha": alpha, "pass": p + 1})
    settings["load_after"] = _load()
    settings["wall_s"] = round(time.perf_counter() - start, 1)
    report["sweep"] = summarize_sweep(report)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--groups", type=int, default=2)
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--hybrid", type=int, default=2, help="split groups (default: all 2)")
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--input", default="180x320", help="LR size HxW (default: 180x320)")
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-readme", action="store_true", help="do not refresh README.md")
    args = parser.parse_args(argv)
    report = run(args.groups, args.blocks, args.hybrid, args.channels, args.scale, args.input, args.passes,
                 args.warmup, args.runs, args.rounds)
    RESULTS.mkdir(parents=True, exist_ok=True)
    reports.write_outputs(report, RESULTS / f"{NAME}.json", None, None, force=True)
    table = to_markdown(report)
    title = (f"SplitSR alpha sweep, G{args.groups}B{args.blocks}-H{args.hybrid}-C{args.channels} x{args.scale}, "
             f"{args.input} LR, fp32, 1 thread")
    write_bytes_atomic(RESULTS / f"{NAME}.md", f"## {title}\n\n{table}\n".encode(), force=True)
    print(reports.format_table(report))
    print(table)
    where = "README.md and " if not args.no_readme and refresh_readme(NAME, table) else ""
    print(f"wrote {where}benchmarks/results/{NAME}.{{json,md}} in {report['settings']['wall_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
