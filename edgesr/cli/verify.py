"""`edgesr verify`: every graph and format on the same inputs, within the rounding-error model."""

from __future__ import annotations

import argparse
import sys

from edgesr.cli.common import (
    Parser,
    add_int8_form,
    add_json,
    add_model_args,
    check_outputs,
    prepare,
    progress,
    say,
    size_list,
    write_json,
)
from edgesr.cli.device import add_phone_args
from edgesr.errors import cli_option, render_options

PRECISIONS = ("fp32", "fp16", "int8")


def _check_fits(prepared, sizes: list[tuple[int, int]]) -> None:
    """Inputs whose activations (value and variance of a few live tensors in the float64 error
    model) would not fit in memory are refused first."""
    from edgesr.profile import peak_activation_per_pixel
    from edgesr.resources import check_fits

    module = prepared.train if prepared.train is not None else next(iter(prepared.deployable.graphs.values())).module
    pixels = sum(h * w for h, w in sizes)
    per_pixel = peak_activation_per_pixel(module, prepared.config.colors)
    check_fits(f"verifying {prepared.label} on {pixels:,} LR pixels", int(pixels * per_pixel * 8 * 2 * 6),
               "use smaller --sizes")


def _phones(args: argparse.Namespace, prepared, sizes: list[tuple[int, int]]) -> int:
    """`verify --device adb`: the .tflite files on every phone and delegate, checked on the host."""
    from edgesr.android.bench import DeviceSettings, check_binary
    from edgesr.android.command import check_delegates
    from edgesr.android.parity import verify_on_phones
    from edgesr.cli.device import phones
    from edgesr.export.exporter import FORMATS
    from edgesr.verify import precisions_to_check

    check_delegates(args.delegate)
    binary = check_binary(args.benchmark_binary)
    precisions = [p for p in precisions_to_check(prepared, args.precision) if p in FORMATS["tflite"]]
    chosen = phones(args)
    settings = DeviceSettings(binary, keep=args.keep, extra_args=tuple(args.benchmark_arg))
    result = verify_on_phones(prepared, chosen, precisions, args.delegate, sizes, settings,
                              args.require_full_delegation, progress, args.int8_form)
    say(args, f"verify on the phone: {prepared.label} ({prepared.io.color_space}, 0..{prepared.config.pixel_range:g})"
              f"; weights: {prepared.weights}")
    for facts in result.devices:
        say(args, f"{facts['label']}: {facts['ran_on']} (Android {facts['android']}, {facts['abi']}, SoC "
                  f"{facts['soc']})")
    say(args, f"inputs: random + real photo crop at each of {', '.join(f'{h}x{w}' for h, w in sizes)}, each pushed "
              "as a raw tensor and run by benchmark_model; the training graph runs on the host")
    say(args, result.table())
    say(args, "bound: the error model each row is judged by: the file's precision; fp16-compute (fp16 weights, "
              "tensors and arithmetic) for a GPU delegate unless --benchmark-arg=--gpu_precision_loss_allowed=false, "
              "for NNAPI with --nnapi_allow_fp16=true")
    write_json(args, result.to_dict())
    if not result.passed:
        problems = result.problems()
        print(f"FAILED: {len(problems)} problem(s); first: {problems[0]}", file=sys.stderr)
        return 1
    say(args, f"all {len(result.rows)} phone checks passed")
    return 0


def run(args: argparse.Namespace) -> int:
    from edgesr.api import Model
    from edgesr.check import DEFAULT_SIZES

    check_outputs(args, args.json)
    prepared = prepare(args)
    chosen = args.sizes or DEFAULT_SIZES
    _check_fits(prepared, chosen)
    if args.device == "adb":
        return _phones(args, prepared, chosen)
    report = Model(prepared).verify(args.precision, chosen, progress, args.int8_form)
    cfg = prepared.config
    sizes = ", ".join(f"{h}x{w}" for h, w in chosen)
    say(args, f"verify {prepared.label} ({prepared.io.color_space}, 0..{cfg.pixel_range:g}); weights: "
              f"{prepared.weights}")
    say(args, f"inputs: random + real photo crop at each of {sizes}; worst case over all inputs; PSNR with peak "
              f"{cfg.pixel_range:g}")
    if not args.precision and prepared.family.verify_note:
        say(args, f"note: {render_options(prepared.family.verify_note, cli_option)}")
    say(args, report.table())
    write_json(args, report.to_dict())
    if not report.passed:
        print(f"FAILED: {len(report.failed)} of {len(report.checks)} checks; first: {report.failed[0].problem()}",
              file=sys.stderr)
        return 1
    say(args, f"all {len(report.checks)} checks passed")
    return 0


def add(sub) -> None:
    parser: Parser = sub.add_parser("verify", help="compare training, deploy, ONNX and TFLite outputs",
                                    description="Run the training graph, the deploy form, the ONNX file (ONNX Runtime) "
                                    "and the TFLite files (LiteRT) on the same random and real images, and check each "
                                    "pair within the rounding-error model. With --device adb the TFLite files run on "
                                    "phones instead (benchmark_model, per delegate), checked the same way. Exit 1 if "
                                    "a bound is broken.")
    add_model_args(parser)
    parser.add_argument("--precision", nargs="+", choices=PRECISIONS,
                        help="TFLite precisions to check (default: all the family exports; smsr: fp32 fp16)")
    add_int8_form(parser)
    parser.add_argument("--sizes", type=size_list, default=None,
                        help="LR input sizes HxW,... (default: 48x48,37x53,64x41)")
    add_json(parser, "the results")
    parser.add_argument("--force", action="store_true", help="overwrite an existing --json file")
    parser.add_argument("--device", default="host", choices=["host", "adb"],
                        help="host (default: every format on this machine) or adb: the .tflite files run by "
                        "benchmark_model on phones, per delegate and precision, checked against the training graph")
    phone = add_phone_args(parser, "TFLite benchmark_model built for the phone's ABI, with --output_filepath "
                           "(see android_bench/README.md)")
    phone.add_argument("--require-full-delegation", action="store_true",
                       help="fail a row whose delegate leaves any op to the CPU (benchmark_model's "
                       "--require_full_delegation)")
    parser.set_defaults(func=run)
