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


def run(args: argparse.Namespace) -> int:
    from edgesr.api import Model
    from edgesr.check import DEFAULT_SIZES

    check_outputs(args, args.json)
    prepared = prepare(args)
    chosen = args.sizes or DEFAULT_SIZES
    _check_fits(prepared, chosen)
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
                                    "pair within the rounding-error model. Exit 1 if a bound is broken.")
    add_model_args(parser)
    parser.add_argument("--precision", nargs="+", choices=PRECISIONS,
                        help="TFLite precisions to check (default: all the family exports; smsr: fp32 fp16)")
    add_int8_form(parser)
    parser.add_argument("--sizes", type=size_list, default=None,
                        help="LR input sizes HxW,... (default: 48x48,37x53,64x41)")
    add_json(parser, "the results")
    parser.add_argument("--force", action="store_true", help="overwrite an existing --json file")
    parser.set_defaults(func=run)
