"""Exceptions the CLI turns into one-line messages: user errors exit 2, tool failures exit 1."""


class UserError(Exception):
    """Bad input from the user: the message names the problem and what to do about it."""


class ToolError(Exception):
    """A step of the toolchain failed (converter, runtime, benchmark worker): exit code 1."""


class ParityError(ToolError):
    """An exported file disagrees with its reference graph beyond the bound."""
