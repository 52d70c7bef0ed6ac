"""The ``dropflow`` command: a thin shell over the loader, the translator, the engine, managers and deploy.

Theory of operation
-------------------
:data:`COMMANDS` is the index: each command's name, the module of this package that implements it, and its
one-line help. A command module registers ``(add_arguments, run)`` with
:func:`~dropflow.cli.common.command` when it is imported -- and it is imported only when its command is
the one being run (or its ``--help`` is asked for). ``dropflow --help`` therefore imports no command module,
and nothing of numpy or the engine: it lists the index. Command modules in turn defer heavy imports to their
handlers where their parser does not need them.

Every user error -- bad arguments, a file that cannot be read, a graph that does not validate -- prints one
clear message and exits with status 2; a session that does not FINISH exits with 1; nothing prints a
traceback for bad input.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Iterable, Sequence

from .. import __version__
from .common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    AddArgs,
    Run,
    UsageError,
    command,
    integer,
    params,
    read_token,
)

__all__ = [
    "COMMANDS",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "UsageError",
    "command",
    "integer",
    "main",
    "params",
    "parser",
    "read_token",
]

#: name -> (module of dropflow.cli that registers it, one-line help), in the order ``--help`` lists them.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("run", "run a graph on an in-process node (no daemons)"),
    "validate": ("run", "check a graph without running it"),
    "translate": ("translate", "translate a logical graph into a partitioned, mapped physical graph"),
    "unroll": ("translate", "unroll a logical graph into an unpartitioned physical graph"),
    "partition": ("translate", 'partition a graph; drops get node "#<partition>"'),
    "map": ("translate", "map a partitioned physical graph onto nodes and islands"),
    "slurm": ("deploy", "run graphs as Slurm jobs: submit, pilot, status, cancel"),
    "nm": ("daemons", "run a node manager daemon"),
    "dim": ("daemons", "run a data island manager daemon over node managers"),
    "mm": ("daemons", "run a master manager daemon over island managers"),
    "cluster": ("daemons", "start or stop a local cluster: an island manager and N node managers"),
    "translator": ("translator", "run DALiuGE's translator REST API (for EAGLE) over dropflow"),
    "submit": ("client", "submit a graph to a running manager (and with --wait, follow it)"),
    "status": ("client", "show a session's state, drops by state and failures"),
    "cancel": ("client", "cancel a session"),
    "nodes": ("client", "list the node managers (or islands) of a manager"),
    "sessions": ("client", "list sessions, or a session's drops by state (like Balsam's job ls)"),
    "why": ("why", "why is a session not finishing: what it waits for, and who; or its critical path"),
}


def _load(name: str) -> tuple[AddArgs, Run]:
    """Import the module of command ``name``; its (add_arguments, run)."""
    from .common import REGISTERED

    importlib.import_module(f"{__name__}.{COMMANDS[name][0]}")
    return REGISTERED[name]


def parser(commands: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """The argument parser, with the arguments of ``commands`` (default: every command) declared.

    The other commands are listed with their help but without their arguments: parsing never reaches them.
    """
    wanted = set(COMMANDS if commands is None else commands)
    p = argparse.ArgumentParser(prog="dropflow", description="A data-activated dataflow engine.")
    p.add_argument("--version", action="version", version=f"dropflow {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_module, help_text) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        if name in wanted:
            _load(name)[0](sp)
    return p


def _chosen(argv: Sequence[str]) -> list[str]:
    """The command ``argv`` names: its first word that is not an option (the top level takes no values)."""
    for word in argv:
        if not word.startswith("-"):
            return [word] if word in COMMANDS else []
    return []


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser(_chosen(argv)).parse_args(argv)
    args.argv = list(argv)  # a daemon re-executes itself with them (dropflow.engine.heap)
    _add, run = _load(args.command)
    try:
        return run(args)
    except UsageError as exc:
        print(f"dropflow {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:
        # Imported only now: a command that raised one of these has imported its module already.
        from ..drops.errors import GraphError

        if isinstance(exc, GraphError):
            print(f"dropflow {args.command}: invalid graph, nothing was run:\n{exc}", file=sys.stderr)
            return EXIT_USAGE
        from ..managers.errors import ApiError

        if not isinstance(exc, ApiError):
            raise
        print(f"dropflow {args.command}: {exc.message}", file=sys.stderr)
        for problem in exc.extra.get("problems", [])[:20]:
            print(
                f"  {problem['where']}"
                + (f", field '{problem['field']}'" if problem.get("field") else "")
                + f": {problem['message']}",
                file=sys.stderr,
            )
        return EXIT_USAGE if 400 <= exc.status < 500 else EXIT_FAILED
