"""Exceptions the CLI turns into one-line messages: user errors exit 2, tool and environment
failures exit 1, signals 128 + the signal number."""

from __future__ import annotations

import errno


class EdgeSRError(Exception):
    """Base of every error edgesr raises on purpose."""


class UserError(EdgeSRError):
    """Bad input from the user: the message names the problem and what to do about it."""


class ToolError(EdgeSRError):
    """A step of the toolchain failed (converter, runtime, benchmark worker, disk): exit code 1."""


class ParityError(ToolError):
    """An exported file disagrees with its reference graph beyond the bound."""


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived: unwinds like Ctrl-C, so every temporary file is removed."""

    def __init__(self, signum: int, name: str):
        super().__init__(name)
        self.signum = signum


_ADVICE = {
    errno.ENOSPC: "free some space or write somewhere else",
    errno.EDQUOT: "free some space or write somewhere else",
    errno.EROFS: "choose a writable location",
    errno.EACCES: "check the permissions or choose another location",
    errno.EPERM: "check the permissions or choose another location",
    errno.EMFILE: "raise the open-file limit (ulimit -n)",
    errno.ENOMEM: "close other programs or use smaller inputs",
}


def os_error(exc: OSError, doing: str) -> ToolError:
    """An OS failure (disk full, read-only file system, ...) as a one-line ToolError."""
    where = f" ({exc.filename})" if exc.filename and str(exc.filename) not in doing else ""
    advice = _ADVICE.get(exc.errno, "check the file system")
    return ToolError(f"{doing} failed{where}: {exc.strerror or exc}: {advice}")
