"""`edgesr bench`: latency on the host CPU or a phone through adb; `bench compare A B`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edgesr.cli.common import Parser, add_model_args, at_least, check_outputs, open_exported, prepare, progress, say
from edgesr.errors import UserError

HOST_RUNTIMES = ["torch-train", "torch", "onnxruntime", "tflite"]


def _compare(args: argparse.Namespace) -> int:
    from edgesr.bench import report as reports

    if len(args.files) != 2:
        raise UserError("bench compare takes two report files: edgesr bench compare A.json B.json")
    say(args, reports.compare(reports.load_report(args.files[0]), reports.load_report(args.files[1])))
    return 0


def _write(args: argparse.Namespace, report: dict) -> None:
    from edgesr.bench import report as reports

    if args.json == "-":
        import json

        print(json.dumps(report, indent=2))
    for path in reports.write_outputs(report, None if args.json == "-" else args.json, args.csv, args.plot,
                                      args.force):
        say(args, f"wrote {path}")


def _host(args: argparse.Namespace) -> int:
    from edgesr.api import HOST_RUNTIMES, Model
    from edgesr.bench.host import RUNTIME_OF

    options = dict(inputs=args.input, threads=args.threads, warmup=args.warmup, runs=args.runs, rounds=args.rounds,
                   progress=progress, input_data=args.input_data)
    if args.model_file:
        exported = open_exported(args, args.model_file)
        meta = exported.metadata or {}
        fmt = meta.get("runtime") or args.model_file.suffix.lstrip(".")
        own = (RUNTIME_OF.get(fmt, fmt), meta.get("precision"))
        if (args.runtime and args.runtime != [own[0]]) or (args.precision and args.precision != [own[1]]):
            raise UserError(f"{args.model_file} runs on {own[0]} at {own[1]} only: drop --runtime/--precision")
        result = exported.bench(**options)
    else:
        result = Model(prepare(args)).bench(runtimes=args.runtime or HOST_RUNTIMES,
                                            precisions=args.precision or ["fp32"], **options)
    say(args, result.table())
    _write(args, result.report)
    return 0


def _adb(args: argparse.Namespace) -> int:
    from edgesr.android.bench import DeviceSettings, check_binary
    from edgesr.android.command import bench_on_phones, check_device_options, device_tool, format_estimates
    from edgesr.bench import report as reports
    from edgesr.cli.device import phones

    tool = device_tool(args.runtime)
    args.precision = args.precision or ["fp32"]
    check_device_options(args.delegate, args.precision, args.threads, args.warmup, args.runs, args.cooldown, tool)
    binary = check_binary(args.benchmark_binary, tool.binary)
    if args.verify and (args.model_file or tool.runtime != "tflite"):
        raise UserError("--verify checks .tflite files exported here against their training graph: drop --model-file "
                        "and use --runtime tflite, or run without --verify")
    chosen = phones(args)
    settings = DeviceSettings(binary, args.cores, args.cooldown, args.max_temp, args.warmup, args.runs, args.keep,
                              tuple(args.benchmark_arg), cv_target=args.cv_target / 100, max_repeats=args.max_repeats)
    prepared = prepare(args) if args.verify else None
    verified = _verify_first(args, prepared, chosen, settings) if args.verify else None
    report = bench_on_phones(chosen, None if args.model_file else lambda: prepared or prepare(args), args.model_file,
                             args.precision, args.delegate, args.threads, args.input, settings, progress, tool)
    for facts in report["device"].get("members", [report["device"]]):
        say(args, f"bench on {reports.device_title(facts)} ({facts['serial']}, Android {facts['android']}, "
                  f"{facts['abi']}, SoC {facts['soc']}); cores {args.cores}; thermal before {facts['thermal_c']}, "
                  f"after {facts['thermal_after_c']}")
    say(args, reports.format_table(report))
    unstable = [c for c in report["cases"] if c.get("stable") is False]
    if unstable:
        say(args, f"{len(unstable)} case(s) never reached a run-to-run CV of {args.cv_target:g}% in "
                  f"{args.max_repeats} runs (cv% marked !): cool the phone (--cooldown, --max-temp) or raise "
                  "--max-repeats")
    if report["estimates"]:
        say(args, "whole-image estimates (each graph's calls for a photo of that size, from the glue run on the "
                  "host, at the phone's per-call times; host-side glue not included):")
        say(args, format_estimates(report["estimates"]))
    say(args, "device numbers come from benchmark_model (mean/min/max/std per run set; no median)"
        if tool.runtime == "tflite" else "device numbers come from executor_runner (each timed execution)")
    if verified is not None:
        report["verify"] = verified.to_dict()
        say(args, "outputs on the phone(s) against the training graph (edgesr verify --device adb):")
        say(args, verified.table())
    _write(args, report)
    for failed in report["failed"]:
        print(f"edgesr: FAILED on {failed['device']}: {failed['reason']}", file=sys.stderr)
    if verified is not None and not verified.passed:
        problems = verified.problems()
        print(f"edgesr: verify FAILED: {len(problems)} problem(s); first: {problems[0]}", file=sys.stderr)
    return 1 if report["failed"] or (verified is not None and not verified.passed) else 0


def _verify_first(args: argparse.Namespace, prepared, chosen, settings):
    """--verify: every precision and delegate of the bench checked on every phone first."""
    from edgesr.android.parity import verify_on_phones
    from edgesr.check import DEFAULT_SIZES

    return verify_on_phones(prepared, chosen, args.precision, args.delegate, DEFAULT_SIZES, settings, False,
                            progress)


def run(args: argparse.Namespace) -> int:
    if args.action == "compare":
        return _compare(args)
    if args.action is not None or args.files:
        raise UserError(f"unknown bench action '{args.action or args.files[0]}': use 'edgesr bench compare A B' "
                        "or options only")
    check_outputs(args, args.json, args.csv, args.plot)
    return _adb(args) if args.device == "adb" else _host(args)


def add(sub) -> None:
    from edgesr.cli.common import json_path
    from edgesr.cli.device import add_phone_args, add_stability_args

    bench: Parser = sub.add_parser("bench", help="measure latency per runtime, precision, size and threads",
                                   description="Benchmark latency on the host CPU (each case in its own process, timed "
                                   "in interleaved rounds) or on a phone through adb. 'edgesr bench compare A.json "
                                   "B.json' prints the median ratios of two saved reports.")
    bench.add_argument("action", nargs="?", help="'compare' to compare two reports")
    bench.add_argument("files", nargs="*", type=Path, help="the two reports for 'compare'")
    add_model_args(bench)
    bench.add_argument("--model-file", "--tflite", type=Path, dest="model_file",
                       help="benchmark this exported file or bundle folder instead of exporting (adb: .tflite)")
    bench.add_argument("--device", default="host", choices=["host", "adb"],
                       help="host CPU (default) or an Android phone through adb")
    bench.add_argument("--runtime", nargs="+", help="host: torch-train (training graph), torch (deploy form), "
                       "onnxruntime, tflite, executorch (default: the first four; with --model-file its own); adb: "
                       "tflite (default, benchmark_model) or executorch (executor_runner)")
    bench.add_argument("--precision", nargs="+", help="fp32, fp16, int8 (fp16: tflite only; int8: tflite, executorch; "
                       "default: fp32)")
    bench.add_argument("--input", nargs="+", default=["360x640"], metavar="SIZE",
                       help="LR input sizes, HxW or NxCxHxW (default: 360x640)")
    bench.add_argument("--input-data", choices=("photo", "noise"), default="photo",
                       help="host: what the input holds: a bundled photo mirrored to the size (default), or uniform "
                       "noise (kernels branch on data: noise can time PReLU-heavy runtimes much slower)")
    bench.add_argument("--threads", nargs="+", type=at_least(1), default=[1], help="thread counts (default: 1)")
    bench.add_argument("--warmup", type=at_least(0), default=5, help="untimed runs per case (default: 5)")
    bench.add_argument("--runs", type=at_least(1), default=30, help="timed runs per case (default: 30)")
    bench.add_argument("--rounds", type=at_least(1), default=3,
                       help="interleaved rounds the runs are split over (default: 3)")
    bench.add_argument("--json", type=json_path, help="write the report as JSON ('-': stdout)")
    bench.add_argument("--csv", type=Path, help="write the report as CSV")
    bench.add_argument("--plot", type=Path, help="write a PNG plot (latency vs size; per model)")
    bench.add_argument("--force", action="store_true", help="overwrite existing report files")
    device = add_phone_args(bench, "TFLite benchmark_model (or, with --runtime executorch, ExecuTorch "
                            "executor_runner) built for the phone's ABI (see android_bench/README.md)")
    device.add_argument("--cores", default="big", help="big, little, all or a hex CPU mask (default: big)")
    device.add_argument("--cooldown", type=at_least(0), default=5, help="seconds to idle before each run (default: 5)")
    device.add_argument("--max-temp", type=float, metavar="C",
                        help="wait (up to 300 s) until every thermal zone is at or below C before each run")
    add_stability_args(device)
    device.add_argument("--verify", action="store_true",
                        help="first check each precision and delegate's outputs on every phone against the training "
                        "graph (as 'edgesr verify --device adb'); the report carries the checks, exit 1 if one fails")
    bench.set_defaults(func=run)
