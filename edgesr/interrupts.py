"""SIGTERM and SIGHUP unwind the program like Ctrl-C does: every `finally` runs, so temporary
files and folders are removed and worker processes stopped before edgesr exits 128 + signal."""

from __future__ import annotations

import signal

from edgesr.errors import Terminated

_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _raise(signum: int, _frame) -> None:
    for other in _SIGNALS:  # a second signal must not interrupt the clean-up of the first
        signal.signal(other, signal.SIG_IGN)
    raise Terminated(signum, signal.Signals(signum).name)


def install() -> None:
    """Make SIGTERM and SIGHUP raise Terminated in the main thread."""
    for signum in _SIGNALS:
        signal.signal(signum, _raise)
