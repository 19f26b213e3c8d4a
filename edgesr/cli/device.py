"""Options every phone command shares (`bench --device adb`, `verify --device adb`): which phones,
on which adb servers, with which benchmark binary and delegates."""

from __future__ import annotations

import argparse
from pathlib import Path

from edgesr.cli.common import at_least, positive_float


def add_phone_args(parser: argparse.ArgumentParser, binary_help: str) -> argparse._ArgumentGroup:
    """The phone options; returns their group so a command can add its own."""
    device = parser.add_argument_group("--device adb")
    device.add_argument("--serial", nargs="+", metavar="SERIAL",
                        help="adb serial(s) of the phone(s) (needed when several are connected; several run in "
                        "parallel)")
    device.add_argument("--all-devices", action="store_true",
                        help="every ready device on every adb server, in parallel (one worker per device)")
    device.add_argument("--adb-server", action="append", metavar="HOST:PORT",
                        help="an adb server to find phones on, e.g. a USB hub host's (adb -H HOST -P PORT; "
                        "repeatable; default: the local server)")
    device.add_argument("--adb", help="adb client binary (default: adb on PATH; honours ANDROID_ADB_SERVER_PORT)")
    device.add_argument("--benchmark-binary", type=Path, metavar="PATH", help=binary_help)
    device.add_argument("--delegate", nargs="+", default=["xnnpack"],
                        help="cpu, xnnpack, gpu, nnapi (default: xnnpack)")
    device.add_argument("--benchmark-arg", action="append", default=[], metavar="FLAG",
                        help="extra benchmark binary flag, e.g. --benchmark-arg=--max_secs=60 or "
                        "--benchmark-arg=--gpu_precision_loss_allowed=false (repeatable)")
    device.add_argument("--keep", action="store_true", help="leave the pushed files on the device")
    return device


def add_stability_args(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--cv-target", type=positive_float, default=3.0, metavar="PERCENT",
                       help="repeat each case until the run-to-run coefficient of variation of its mean is at most "
                       "this (default: 3)")
    group.add_argument("--max-repeats", type=at_least(1), default=5,
                       help="... or it ran this many times; cases that never got there are flagged (default: 5)")


def phones(args: argparse.Namespace):
    """The phones the options name (one by default)."""
    from edgesr.android.fleet import find_phones

    return find_phones(args.adb, args.adb_server, args.serial, args.all_devices)
