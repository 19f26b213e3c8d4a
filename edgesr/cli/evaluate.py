"""`edgesr eval`: PSNR/SSIM of a model or an exported file against bicubic, on HR photos."""

from __future__ import annotations

import argparse
from pathlib import Path

from edgesr.cli.common import (
    Parser,
    add_json,
    add_model_args,
    check_outputs,
    open_exported,
    prepare,
    progress,
    say,
    write_json,
)


def print_report(args: argparse.Namespace, report, weights: str) -> None:
    from edgesr.protocol import get_protocol

    io, protocol = report.io, get_protocol(report.scores.protocol)
    say(args, f"eval {report.label} ({report.graph}, weights: {weights}) on {report.data}: protocol {protocol.name} "
              f"({protocol.summary}), {io.scale}-pixel border crop, 8-bit output; RGB PSNR alongside")
    say(args, report.table())
    say(args, f"gain over bicubic: {report.gain_db:+.3f} dB PSNR-Y")
    skipped = report.scores.skipped
    if skipped:
        say(args, f"{len(skipped)} of {len(skipped) + len(report.scores.images)} images skipped (see the warnings): "
                  f"{', '.join(skipped)}")


def add_protocol(parser: Parser) -> None:
    from edgesr.protocol import DEFAULT_PROTOCOL, PROTOCOLS

    parser.add_argument("--protocol", choices=list(PROTOCOLS), default=DEFAULT_PROTOCOL,
                        help="PSNR-Y formula: " + "; ".join(f"{p.name}: {p.summary}" for p in PROTOCOLS.values())
                        + f" (default: {DEFAULT_PROTOCOL})")


def run(args: argparse.Namespace) -> int:
    from edgesr.api import Model
    from edgesr.data import list_images

    check_outputs(args, args.json)
    if args.data != "skimage":
        list_images(Path(args.data))
    if args.model_file:
        exported = open_exported(args, args.model_file)
        report = exported.evaluate(args.data, progress, args.protocol)
        weights = (exported.metadata or {}).get("weights", "-")
    else:
        model = Model(prepare(args))
        report = model.evaluate(args.data, args.graph, progress, args.protocol)
        weights = model.weights
    print_report(args, report, weights)
    write_json(args, {**report.to_dict(), "weights": weights})
    return 0


def add(sub) -> None:
    parser: Parser = sub.add_parser("eval", help="PSNR/SSIM vs bicubic on a folder of HR images",
                                    description="PSNR and SSIM on the Y channel by a paper's protocol (border crop "
                                    "= scale, 8-bit output), RGB PSNR, bicubic baseline; on the training graph, the "
                                    "deploy form or an exported file (which says itself what model it is).")
    add_model_args(parser)
    parser.add_argument("--data", required=True, help="folder of HR images, or 'skimage' for the bundled held-out "
                        "photos")
    parser.add_argument("--graph", choices=["train", "deploy"], default="deploy",
                        help="PyTorch graph to run (default: deploy)")
    add_protocol(parser)
    parser.add_argument("--model-file", type=Path, help="evaluate this exported .onnx/.tflite file or bundle instead")
    add_json(parser, "per-image and mean scores")
    parser.add_argument("--force", action="store_true", help="overwrite an existing --json file")
    parser.set_defaults(func=run)
