"""`edgesr export`: re-parameterize, convert, prove parity, then write."""

from __future__ import annotations

import argparse
from pathlib import Path

from edgesr.cli.common import (
    Parser,
    add_int8_form,
    add_json,
    add_model_args,
    announce,
    check_outputs,
    prepare,
    progress,
    say,
    write_json,
)


def run(args: argparse.Namespace) -> int:
    from edgesr.export.exporter import check_format, export, resolve_output

    check_outputs(args, args.json)
    prepared = prepare(args, announce_now=False)
    check_format(prepared, args.format, args.precision)
    out = resolve_output(prepared, args.format, args.precision, args.output, args.force)
    announce(prepared)
    report = export(prepared, args.format, args.precision, out, args.force, progress, args.int8_form)
    say(args, report.format())
    write_json(args, report.to_dict())
    return 0


def add(sub) -> None:
    parser: Parser = sub.add_parser("export", help="re-parameterize and export to ONNX or TFLite, verified",
                                    description="Re-parameterize the training graph, export the deploy form (a file, "
                                    "or a bundle folder for a model of several graphs), check it against the training "
                                    "graph within the rounding-error model, and only then write it.")
    add_model_args(parser)
    parser.add_argument("--format", default="tflite", help="onnx, tflite or pte (ExecuTorch) (default: tflite)")
    parser.add_argument("--precision", default="fp32", help="fp32, fp16 or int8 (TFLite); ONNX is fp32")
    add_int8_form(parser)
    parser.add_argument("-o", "--output", type=Path, help="output file or bundle folder (default: exports/<model>_"
                        "<variant>_x<scale>_<precision>.<ext>)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing output")
    add_json(parser, "the export report")
    parser.set_defaults(func=run)
