"""What every command module shares: exit statuses, :class:`UsageError`, registration, argument helpers.

This module imports nothing of dropflow beyond itself at import time (token helpers are imported when
called), so any command module can use it without making ``dropflow --help`` pay for the engine.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "REGISTERED",
    "AddArgs",
    "Run",
    "UsageError",
    "command",
    "integer",
    "params",
    "port_number",
    "read_token",
    "tls_verify",
]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

AddArgs = Callable[[argparse.ArgumentParser], None]
Run = Callable[[argparse.Namespace], int]
#: name -> (add_arguments, run), filled as command modules are imported (see ``dropflow.cli.COMMANDS``).
REGISTERED: dict[str, tuple[AddArgs, Run]] = {}


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit status 2."""


def command(name: str, add: AddArgs) -> Callable[[Run], Run]:
    """Register ``run`` as command ``name`` with the arguments ``add`` declares (its help is in the index)."""

    def register(run: Run) -> Run:
        REGISTERED[name] = (add, run)
        return run

    return register


# -- argument helpers shared by every command module ---------------------------------------------------------


def params(pairs: list[str]) -> dict[str, str]:
    """``--param NAME=VALUE`` options as a dict."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--param {pair!r}: expected NAME=VALUE")
        out[key] = value
    return out


def integer(minimum: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer, at least ``minimum`` if given."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if minimum is not None and value < minimum:
            raise argparse.ArgumentTypeError(f"{value} must be at least {minimum}")
        return value

    return parse


def port_number(text: str) -> int:
    """An argparse type: a TCP port number (0 for any free one)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port number (0-65535)")
    return value


def read_token(path: str | None) -> str | None:
    """A client's token: ``--token-file``, else $DROPFLOW_TOKEN, else the default file the daemons of this
    user keep (``~/.config/dropflow/token``) if it exists; None if there is none."""
    from ..managers.auth import TokenError, find_token

    try:
        return find_token(path)
    except TokenError as exc:
        raise UsageError(str(exc)) from None


def tls_verify(ca_file: str | None) -> object:
    """How a client checks https:// managers: ``--ca-file`` (or $DROPFLOW_CA_FILE), else the system's CAs."""
    from ..managers.auth import TokenError
    from ..managers.auth import tls_verify as verify

    try:
        return verify(ca_file)
    except TokenError as exc:
        raise UsageError(str(exc)) from None
