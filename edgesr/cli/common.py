"""What every command shares: one-line argument errors, model options, progress, notices, JSON."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from edgesr.errors import UserError
from edgesr.progress import Progress

MAX_SIDE = 2048
DEFAULT_MODEL = "ecbsr"
progress = Progress()


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump) and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def size_list(text: str) -> list[tuple[int, int]]:
    """'48x48,37x53' -> [(48, 48), (37, 53)]."""
    sizes = []
    for item in text.split(","):
        try:
            h, w = (int(v) for v in item.lower().split("x"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{item}' is not HxW (e.g. 48x48,37x53)") from None
        if not (1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE):
            raise argparse.ArgumentTypeError(f"size {item} must have sides between 1 and {MAX_SIDE}")
        sizes.append((h, w))
    return sizes


def at_least(low: int):
    """An argparse type: an integer >= low."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is less than {low}")
        return value

    return parse


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0."""
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text} is not a finite number > 0")
    return value


def pixel_range(text: str) -> float:
    if text not in ("1", "255"):
        raise argparse.ArgumentTypeError("pixel range must be 1 (inputs in 0..1) or 255 (inputs in 0..255)")
    return float(text)


def json_path(text: str) -> Path | str:
    """A JSON output: a file path, or '-' for stdout."""
    return "-" if text == "-" else Path(text)


def add_model_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--model", help=f"model family (default: {DEFAULT_MODEL}, or what --model-file says it is; "
                       "see 'edgesr models')")
    group.add_argument("--variant", help="architecture, e.g. M4C16 or M4C16-RGB (default: the family's default, "
                       "or the checkpoint's own)")
    group.add_argument("--scale", type=int, help="upscale factor (default: 4, or the checkpoint's)")
    group.add_argument("--weights", type=Path, metavar="CKPT",
                       help="PyTorch checkpoint: the authors', BasicSR ({'params'|'params_ema': ...}) or edgesr; "
                       "training or deploy layout (default: the built-in checkpoint)")
    group.add_argument("--pixel-range", type=pixel_range, metavar="{1,255}",
                       help="input value range (default: 255 for official ECBSR weights, 1 for BasicSR)")


def add_int8_form(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--int8-form", choices=("auto", "native"), default="auto",
                        help="int8 TFLite: 'auto' stores the model's all-XNNPACK form where it has one (ECBSR: convs "
                        "on 2x2 pixel blocks, PReLU as a ReLU pair, same math); 'native' keeps the deploy graph's "
                        "ops (PRELU), for NPU drivers with int8 PRELU")


def add_json(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--json", type=json_path, metavar="PATH", help=f"also write {what} as JSON ('-': stdout, "
                        "and the text goes to stderr)")


def out(args: argparse.Namespace) -> "TextIO":  # noqa: F821
    """Where the human-readable text goes: stdout, or stderr when the JSON takes stdout."""
    return sys.stderr if getattr(args, "json", None) == "-" else sys.stdout


def say(args: argparse.Namespace, text: str) -> None:
    print(text, file=out(args))


def check_outputs(args: argparse.Namespace, *paths: Path | str | None) -> None:
    """Refuse unusable output files before any work."""
    from edgesr.atomic import check_output_path

    for path in paths:
        if path and path != "-":
            check_output_path(Path(path), getattr(args, "force", False))


def write_json(args: argparse.Namespace, payload: dict) -> None:
    """The command's --json, if asked for: stdout ('-') or a file written atomically."""
    if not getattr(args, "json", None):
        return
    text = json.dumps(payload, indent=2, default=str)
    if args.json == "-":
        print(text)
        return
    from edgesr.atomic import write_bytes_atomic

    write_bytes_atomic(Path(args.json), text.encode(), args.force)
    say(args, f"wrote {args.json}")


def prepare(args: argparse.Namespace, announce_now: bool = True):
    """The model the options name. Its random-weights warning becomes one NOTICE line, printed now
    or, with announce_now=False, by announce() once the command has checked its other options."""
    from edgesr.model import RandomWeightsWarning
    from edgesr.model import prepare as build

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)
        prepared = build(args.model or DEFAULT_MODEL, args.variant, args.scale, args.weights, args.pixel_range)
    if announce_now:
        announce(prepared)
    return prepared


def announce(prepared) -> None:
    """Tell the user when the weights are seeded random ones (no checkpoint)."""
    if prepared.notice:
        print(f"NOTICE: {prepared.notice}", file=sys.stderr)


def config_io(args: argparse.Namespace):
    """The I/O the model options describe, without building the model (for a file without metadata)."""
    from edgesr.family import IOSpec, get_family

    family = get_family(args.model or DEFAULT_MODEL)
    return IOSpec.of(family.config(args.variant, args.scale, args.pixel_range))


def open_exported(args: argparse.Namespace, path: Path):
    """An exported file or bundle: its own metadata says what it takes, and model options that
    disagree are refused. A file without metadata takes the model options, checked by one run."""
    from edgesr.api import MissingMetadata, open_model

    try:
        exported = open_model(path)
    except MissingMetadata:
        return open_model(path, config_io(args))
    meta = exported.metadata
    given = {"model": (args.model, meta["family"]), "variant": (args.variant, meta["variant"]),
             "scale": (args.scale, meta["io"]["scale"]), "pixel-range": (args.pixel_range, meta["io"]["pixel_range"])}
    for flag, (asked, found) in given.items():
        if asked is not None and str(asked).lower() != str(found).lower() and not (
                flag == "pixel-range" and float(asked) == float(found)):
            raise UserError(f"{path} holds {exported.label} ({flag} {found}), but --{flag} {asked} was given: drop "
                            "it, the file says what it is")
    return exported
