"""The one exception type that the CLI turns into a one-line message and exit code 2."""


class UserError(Exception):
    """Bad input from the user: the message names the problem and what to do about it."""


class ParityError(Exception):
    """An exported file disagrees with its reference graph beyond the bound (exit code 1)."""
