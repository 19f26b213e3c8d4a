"""Exceptions the CLI turns into one-line messages: user errors exit 2, tool and environment
failures exit 1, signals 128 + the signal number.

A message names an option as «name» (the API parameter's name, e.g. «force»): str() shows it
as 'force', the CLI as its flag --force (render(cli_option)), so the library never words a flag."""

from __future__ import annotations

import errno
import re
from collections.abc import Callable

_OPTION = re.compile(r"«([a-z_]+)»")


def api_option(name: str) -> str:
    return f"'{name}'"


def cli_option(name: str) -> str:
    return "--" + name.replace("_", "-")


def render_options(text: str, option: Callable[[str], str] = api_option) -> str:
    """`text` with each «name» worded by `option`."""
    return _OPTION.sub(lambda m: option(m.group(1)), text)


class EdgeSRError(Exception):
    """Base of every error edgesr raises on purpose."""

    @property
    def template(self) -> str:
        """The message with its «option» marks (to embed in another error's message)."""
        return str(self.args[0]) if self.args else ""

    def render(self, option: Callable[[str], str] = api_option) -> str:
        return render_options(self.template, option)

    def __str__(self) -> str:
        return self.render()


class UserError(EdgeSRError):
    """Bad input from the user: the message names the problem and what to do about it."""


class ToolError(EdgeSRError):
    """A step of the toolchain failed (converter, runtime, benchmark worker, disk): exit code 1."""


class PeerLost(ToolError):
    """Another rank of a torchrun job stopped mid-run: every surviving rank says so."""


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
