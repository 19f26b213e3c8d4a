"""Progress for long work: a bar that redraws itself on a terminal, plain timestamped lines in
a log. Library code takes any `progress(message)` callable; this is the one the CLI passes."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Call with a message for a step; `bar(done, total, text)` for a loop."""

    def __init__(self, stream: TextIO | None = None, width: int = 28):
        self._stream = stream
        self.width = width
        self._open_bar = False
        self._last_logged = 0.0

    @property
    def stream(self) -> TextIO:
        return self._stream or sys.stderr  # looked up per call: whoever redirected stderr meanwhile gets it

    @property
    def tty(self) -> bool:
        return self.stream.isatty()

    def _line(self, text: str) -> None:
        if self._open_bar:
            self.stream.write("\n")
            self._open_bar = False
        self.stream.write(f"[edgesr {time.strftime('%H:%M:%S')}] {text}\n")
        self.stream.flush()

    def __call__(self, message: str) -> None:
        self._line(message)

    def bar(self, done: int, total: int, text: str = "", every_s: float = 10.0) -> None:
        """A bar on a terminal (redrawn in place); in a log, a line every `every_s` seconds and at the end."""
        fraction = done / total if total else 1.0
        if self.tty:
            filled = int(fraction * self.width)
            self.stream.write(f"\r[{'#' * filled}{'.' * (self.width - filled)}] {done}/{total} {text}\x1b[K")
            self.stream.flush()
            self._open_bar = done < total
            if done >= total:
                self.stream.write("\n")
            return
        now = time.monotonic()
        if now - self._last_logged >= every_s or done >= total:
            self._last_logged = now
            self._line(f"{done}/{total} {text}".rstrip())
