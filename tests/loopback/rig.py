"""Loopback phones for tests: a LoopbackDevice with a phone-like taskset, connected to a real adb server."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from loopback.loopback_device import AdbServer, LoopbackDevice

DEVICE_DIR = "data/local/tmp/edgesr"
LOOPBACK_TASKSET = """#!/bin/sh
# Loopback stand-in for toybox taskset: the simulated phone has 8 CPUs and this host fewer, so
# the mask is checked for form and the command runs unpinned.
case "$1" in ''|*[!0-9a-fA-F]*) echo "taskset: bad mask '$1'" >&2; exit 1 ;; esac
shift
exec "$@"
"""


def start_phone(root: Path, server: AdbServer, **kwargs) -> LoopbackDevice:
    """A loopback device under `root`, connected to `server`; `device.work` is its edgesr work folder."""
    device = LoopbackDevice(root, **kwargs)
    device.start()
    taskset = root / "system" / "bin" / "taskset"
    taskset.write_text(LOOPBACK_TASKSET)
    taskset.chmod(0o755)
    server.connect(device)
    device.work = root / DEVICE_DIR
    return device


def unplug_when(device: LoopbackDevice, ready: Callable[[], bool], delay: float) -> threading.Thread:
    """A started thread that stops `device` `delay` seconds after `ready()` first holds (within 60 s)."""

    def unplug() -> None:
        deadline = time.time() + 60
        while time.time() < deadline:
            if ready():
                time.sleep(delay)
                device.stop()
                return
            time.sleep(0.05)

    thread = threading.Thread(target=unplug, daemon=True)
    thread.start()
    return thread
