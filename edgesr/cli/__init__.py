"""The `edgesr` command line: a thin layer over the Python API (edgesr.api), one module per
command. Every failure is one line on stderr; exit codes: 2 user error, 1 tool or environment
error, 130 Ctrl-C, 143 SIGTERM, 129 SIGHUP (temporary files removed first)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time

from edgesr import interrupts
from edgesr.cli import bench, evaluate, export, inspect, models, train, upscale, verify
from edgesr.cli.common import Parser
from edgesr.errors import PeerLost, Terminated, ToolError, UserError, cli_option, os_error
from edgesr.extras import missing_extra
from edgesr.version import __version__

COMMANDS = (models, export, verify, inspect, bench, train, evaluate, upscale)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="edgesr", description="Take efficient super-resolution networks from their training graph "
                    "to verified ONNX/TFLite models and measure them.")
    parser.add_argument("--version", action="version", version=f"edgesr {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for command in COMMANDS:
        command.add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point (see the module docstring for the exit codes)."""
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGHUP)}
    interrupts.install()
    try:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as exc:  # --help, --version, or a one-line argument error already printed
            return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2
        return _run(args)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _fail(message: str, code: int, every_rank: bool = False) -> int:
    """Print the one line (under torchrun: rank 0's, as every rank meets the same error, unless
    `every_rank`: a rank's own failure) and return the exit code."""
    if every_rank or _rank_zero():
        print(f"edgesr: {message}", file=sys.stderr)
    _tell_torchrun(f"edgesr: {message}")
    return code


def _tell_torchrun(line: str) -> None:
    """Under torchrun, leave the line in the rank's error file: the launcher's failure summary then
    shows it as the rank's error (instead of <N/A>)."""
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if path:
        try:
            with open(path, "w") as f:
                json.dump({"message": line, "timestamp": int(time.time())}, f)
        except OSError:
            pass  # the summary then says <N/A>; the line is on stderr


def _rank_zero() -> bool:
    """Not a torchrun rank other than 0 (RANK unset, 0, or not a rank at all)."""
    rank = os.environ.get("RANK", "").strip()
    return not rank.isdigit() or int(rank) == 0


def _run(args: argparse.Namespace) -> int:
    try:
        return args.func(args)
    except UserError as exc:
        return _fail(f"error: {exc.render(cli_option)}", 2)
    except PeerLost as exc:
        return _fail(f"error: {exc.render(cli_option)}", 1, every_rank=True)
    except ToolError as exc:
        return _fail(f"error: {exc.render(cli_option)}", 1)
    except KeyboardInterrupt:
        return _fail("interrupted (Ctrl-C): temporary files removed, nothing half-written left", 130)
    except Terminated as exc:
        return _fail(f"stopped by {exc}: temporary files removed, nothing half-written left", 128 + exc.signum)
    except MemoryError:
        return _fail("error: out of memory: use smaller inputs (--sizes, --input, --tile) or a smaller variant", 1)
    except ModuleNotFoundError as exc:
        missing = missing_extra(exc)
        return _fail(f"error: {missing}", 1) if missing else _internal(exc)
    except OSError as exc:
        return _fail(f"error: {os_error(exc, 'a file operation')}", 1)
    except Exception as exc:  # noqa: BLE001  (the last line of defence: never a traceback)
        return _internal(exc)


def _internal(exc: Exception) -> int:
    if os.environ.get("EDGESR_DEBUG"):
        raise exc
    text = " ".join(str(exc).split())[:300] or "no message"
    return _fail(f"internal error: {type(exc).__name__}: {text} (a bug in edgesr: please report it with the "
                 "command line; EDGESR_DEBUG=1 shows the traceback)", 1, every_rank=True)
