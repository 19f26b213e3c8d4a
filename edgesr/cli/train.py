"""`edgesr train`: train a model on a folder of HR images (the family's recipe)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path

from edgesr.cli.common import (
    DEFAULT_MODEL,
    Parser,
    add_json,
    add_model_args,
    at_least,
    check_outputs,
    positive_float,
    progress,
    say,
    write_json,
)
from edgesr.cli.evaluate import add_protocol


@contextmanager
def _rank_zero_speaks() -> Iterator[None]:
    """Under torchrun only rank 0 prints (progress, warnings, the report); the others' errors are
    the CLI's to print or not (edgesr.cli.main)."""
    from edgesr.distributed import launched

    if launched().main:
        yield
        return
    with open(os.devnull, "w") as null, redirect_stdout(null), redirect_stderr(null):
        yield


def run(args: argparse.Namespace) -> int:
    with _rank_zero_speaks():
        return _train(args)


def _train(args: argparse.Namespace) -> int:
    from edgesr.api import Model
    from edgesr.cli.evaluate import print_report
    from edgesr.data import list_images
    from edgesr.distributed import launched
    from edgesr.model import Prepared
    from edgesr.train import TrainRequest, run_training

    if args.val and args.val != "skimage":
        list_images(Path(args.val))  # a missing --val folder fails now, not after the training
    check_outputs(args, args.json)
    request = TrainRequest(args.model or DEFAULT_MODEL, args.data, args.output, args.iters, args.variant, args.scale,
                           args.pixel_range, args.batch, args.patch, args.lr, args.seed, args.save_every, args.stage,
                           args.schedule, args.ema, args.loss, args.regularization, tuple(args.hr_scales),
                           args.weights, args.resume, args.force)
    family, config, trained = run_training(request, progress, progress.bar)
    if not launched().main:
        return 0  # rank 0 reports, evaluates and writes the JSON
    say(args, f"saved {args.output} ({args.output.stat().st_size / 1024:.0f} KiB)")
    payload = {"output": str(args.output), "model": family.name, "config": config.to_dict(), "stage": args.stage,
               "iterations": args.iters, "bytes": args.output.stat().st_size}
    if args.val:
        model = Model(Prepared(family, config, trained, family.deployable(trained.eval()), str(args.output), True))
        report = model.evaluate(args.val, "deploy", progress, args.protocol)
        print_report(args, report, str(args.output))
        payload["eval"] = report.to_dict()
    write_json(args, payload)
    return 0


def add(sub) -> None:
    parser: Parser = sub.add_parser("train", help="train a model on a folder of HR images",
                                    description="Train on a folder of HR images (PNG/JPEG): LR by MATLAB bicubic "
                                    "downscaling, random aligned crops, flips and rotations, the family's recipe.")
    add_model_args(parser)
    parser.add_argument("--data", type=Path, required=True, help="folder of HR training images")
    parser.add_argument("--val", help="folder (or 'skimage') to evaluate on after training")
    add_protocol(parser)
    parser.add_argument("--iters", type=at_least(1), required=True, help="training iterations")
    parser.add_argument("--batch", type=at_least(1), help="batch size (default: the recipe's)")
    parser.add_argument("--patch", type=at_least(4), help="LR patch size (default: the recipe's)")
    parser.add_argument("--lr", type=positive_float, help="Adam learning rate (default: the recipe's)")
    parser.add_argument("--schedule", choices=["cosine", "steps"], help="learning-rate schedule: cosine to lr/100, "
                        "or the recipe's steps (lr halved at fixed fractions of the run) (default: the recipe's)")
    parser.add_argument("--ema", type=float, help="decay of the exponential moving average of the weights that is "
                        "saved, e.g. 0.999; 0: none (default: the recipe's)")
    parser.add_argument("--loss", choices=["l1", "mse"], default="l1", help="reconstruction loss of a family "
                        "trained with plain L1 (ECBSR, SplitSR): l1 (the papers') or mse (what PSNR measures, e.g. a "
                        "short fine-tune after L1) (default: l1)")
    parser.add_argument("--regularization", type=float, metavar="W", help="weight of the regularization term of "
                        "a family whose objective has one (SMSR: its sparsity loss, the fraction of positions "
                        "computed, against L1 on 0..255; the paper's 0.1) (default: the recipe's)")
    parser.add_argument("--hr-scales", type=positive_float, nargs="+", default=[1.0], metavar="F",
                        help="also train on each photo downscaled by these factors (<= 1; default: 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed for init, crops and order (default: 0)")
    parser.add_argument("--save-every", type=at_least(1), default=500, help="checkpoint interval (default: 500)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="checkpoint to write (atomically)")
    parser.add_argument("--stage", help="a staged recipe's stage (classsr: branches, then classifier with frozen "
                        "branches, then joint); start each later stage from the previous one with --weights")
    parser.add_argument("--resume", action="store_true", help="continue the run saved in --output")
    parser.add_argument("--force", action="store_true", help="start over even if --output exists (and overwrite "
                        "--json)")
    add_json(parser, "what was trained (and the --val scores)")
    parser.set_defaults(func=run)
