"""`edgesr bench`: latency on the host CPU or a phone through adb; `bench compare A B`."""

from __future__ import annotations

import argparse
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
    from edgesr.android.adb import Adb
    from edgesr.android.bench import DeviceSettings, check_binary
    from edgesr.android.command import bench_on_device, check_device_options, device_tool, format_estimates
    from edgesr.bench import report as reports

    tool = device_tool(args.runtime)
    args.precision = args.precision or ["fp32"]
    check_device_options(args.delegate, args.precision, args.threads, args.warmup, args.runs, args.cooldown, tool)
    binary = check_binary(args.benchmark_binary, tool.binary)
    adb = Adb(args.adb)
    device = adb.select(args.serial)
    settings = DeviceSettings(binary, args.cores, args.cooldown, args.max_temp, args.warmup, args.runs, args.keep,
                              tuple(args.benchmark_arg))
    report = bench_on_device(adb, device.serial, None if args.model_file else lambda: prepare(args), args.model_file,
                             args.precision, args.delegate, args.threads, args.input, settings, progress, tool)
    facts = report["device"]
    say(args, f"bench on {reports.device_title(facts)} ({device.serial}, Android {facts['android']}, {facts['abi']}, "
              f"SoC {facts['soc']}); cores {args.cores}; thermal before {facts['thermal_c']}, "
              f"after {facts['thermal_after_c']}")
    say(args, reports.format_table(report))
    if report["estimates"]:
        say(args, "whole-image estimates (each graph's calls for a photo of that size, from the glue run on the "
                  "host, at the phone's per-call times; host-side glue not included):")
        say(args, format_estimates(report["estimates"]))
    say(args, "device numbers come from benchmark_model (mean/min/max/std per run set; no median)"
        if tool.runtime == "tflite" else "device numbers come from executor_runner (each timed execution)")
    _write(args, report)
    return 0


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
    device = bench.add_argument_group("--device adb")
    device.add_argument("--serial", help="adb serial of the phone (needed when several are connected)")
    device.add_argument("--adb", help="adb client binary (default: adb on PATH; honours ANDROID_ADB_SERVER_PORT)")
    device.add_argument("--benchmark-binary", type=Path, metavar="PATH",
                        help="TFLite benchmark_model (or, with --runtime executorch, ExecuTorch executor_runner) "
                        "built for the phone's ABI (see android_bench/README.md)")
    device.add_argument("--delegate", nargs="+", default=["xnnpack"],
                        help="cpu, xnnpack, gpu, nnapi (default: xnnpack)")
    device.add_argument("--cores", default="big", help="big, little, all or a hex CPU mask (default: big)")
    device.add_argument("--cooldown", type=at_least(0), default=5, help="seconds to idle before each run (default: 5)")
    device.add_argument("--max-temp", type=float, metavar="C",
                        help="wait (up to 300 s) until every thermal zone is at or below C before each run")
    device.add_argument("--benchmark-arg", action="append", default=[], metavar="FLAG",
                        help="extra benchmark_model flag, e.g. --benchmark-arg=--max_secs=60 (repeatable)")
    device.add_argument("--keep", action="store_true", help="leave the pushed models on the device")
    bench.set_defaults(func=run)
