"""SIGTERM and SIGHUP unwind the program like Ctrl-C does: every `finally` runs, so temporary
files and folders are removed and worker processes stopped before edgesr exits 128 + signal."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

from edgesr.errors import Terminated

_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
_held: list[int] = []  # signals that arrived inside deferred() blocks, in order
_depth = 0


def _raise(signum: int, _frame) -> None:
    if _depth:
        _held.append(signum)
        return
    for other in _SIGNALS:  # a second signal must not interrupt the clean-up of the first
        signal.signal(other, signal.SIG_IGN)
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Terminated(signum, signal.Signals(signum).name)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP arriving inside the block take effect when it ends: for the
    few statements that must not be split, e.g. creating a temporary file and noting it for
    removal (a signal in between would leave the file behind). Main thread only (signals are
    handled there); elsewhere the block runs as it is."""
    global _depth
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    interrupt = signal.getsignal(signal.SIGINT)
    if interrupt is signal.default_int_handler:  # Ctrl-C too (unless ignored, as in a background job)
        signal.signal(signal.SIGINT, _raise)
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if interrupt is signal.default_int_handler:
            signal.signal(signal.SIGINT, interrupt)
        if not _depth and _held:
            signum = _held[0]
            _held.clear()
            _raise(signum, None)


def install() -> None:
    """Make SIGTERM and SIGHUP raise Terminated in the main thread."""
    for signum in _SIGNALS:
        signal.signal(signum, _raise)
