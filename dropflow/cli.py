"""The ``dropflow`` command: a thin shell over the loader, the translator and the engine.

Subcommands register themselves through :data:`COMMANDS` (name -> (add_arguments, run)), so later parts of
dropflow add theirs without touching the others. Every user error -- bad arguments, a file that cannot be
read, a graph that does not validate -- prints one clear message and exits with status 2; a session that
does not FINISH exits with 1; nothing prints a traceback for bad input.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from . import __version__
from .drops.errors import GraphError
from .engine import Node, Session, Summary
from .engine.workspace import check_session_id, default_root
from .loading import load_graph

__all__ = ["COMMANDS", "UsageError", "command", "integer", "main", "params", "read_token"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

AddArgs = Callable[[argparse.ArgumentParser], None]
Run = Callable[[argparse.Namespace], int]
#: name -> (help, add_arguments, run)
COMMANDS: dict[str, tuple[str, AddArgs, Run]] = {}


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit status 2."""


def command(name: str, help: str, add: AddArgs) -> Callable[[Run], Run]:
    def register(run: Run) -> Run:
        COMMANDS[name] = (help, add, run)
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


def read_token(path: str | None) -> str | None:
    """The shared secret from ``--token-file`` (or $DROPFLOW_TOKEN); None if neither is given."""
    if not path:
        return os.environ.get("DROPFLOW_TOKEN") or None
    try:
        with open(path) as f:
            token = f.read().strip()
    except OSError as exc:
        raise UsageError(f"--token-file {path!r}: {exc.strerror}") from None
    if not token:
        raise UsageError(f"--token-file {path!r} is empty")
    return token


def _graph_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "graph", help="graph file (native physical or logical, EAGLE .graph, DALiuGE PG); - for stdin"
    )
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a logical graph parameter (repeatable)",
    )
    p.add_argument(
        "--allow-path",
        action="append",
        default=[],
        metavar="DIR",
        help="let file and directory drops use paths under DIR, outside the workspace (repeatable)",
    )


def _run_args(p: argparse.ArgumentParser) -> None:
    _graph_args(p)
    p.add_argument(
        "--workspace",
        metavar="DIR",
        help="root of session workspaces (default: $DROPFLOW_WORKSPACE or ./dropflow-workspace)",
    )
    p.add_argument("--session-id", metavar="ID", help="session id (default: graph name and time)")
    p.add_argument("--threads", type=integer(1), default=32, metavar="N", help="app threads (default 32)")
    p.add_argument("--processes", type=integer(1), metavar="N", help="worker processes (default: CPU count)")
    p.add_argument(
        "--executor",
        choices=("thread", "process"),
        help="where apps that name no executor run (default: each kind's own; trivial apps stay inline)",
    )
    p.add_argument(
        "--pythonpath",
        action="append",
        default=[],
        metavar="DIR",
        help="where Python function apps are imported from (repeatable; the graph's directory "
        "is always included)",
    )
    p.add_argument(
        "--progress",
        choices=("auto", "always", "never"),
        default="auto",
        help="progress bar on standard error (auto: when it is a terminal)",
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def _session_id(args: argparse.Namespace, name: str) -> str:
    if args.session_id:
        try:
            return check_session_id(args.session_id)
        except ValueError as exc:
            raise UsageError(f"--session-id: {exc}") from None
    stamp = datetime.now().strftime("%Y%m%dT%H%M%S")
    return f"{name}-{stamp}-{os.urandom(2).hex()}"


def _add_pythonpath(args: argparse.Namespace) -> None:
    dirs = list(args.pythonpath)
    if args.graph != "-":
        dirs.insert(0, os.path.dirname(os.path.abspath(args.graph)))
    for d in reversed(dirs):
        if not os.path.isdir(d):
            raise UsageError(f"--pythonpath {d!r} is not a directory")
        if d not in sys.path:
            sys.path.insert(0, d)


def _follow(session: Session, mode: str) -> None:
    """Wait for the session, with a progress bar on standard error when wanted."""
    show = mode == "always" or (mode == "auto" and sys.stderr.isatty())
    if not show:
        session.wait()
        return
    from tqdm import tqdm

    done, total = session.progress()
    with tqdm(
        total=total,
        unit="drop",
        unit_scale=True,
        file=sys.stderr,
        dynamic_ncols=True,
        desc=session.id[:40],
        mininterval=0.2,
    ) as bar:
        while not session.ended:
            session.wait(0.2)
            done, _ = session.progress()
            bar.update(done - bar.n)
        bar.update(session.progress()[0] - bar.n)


def _format_summary(s: Summary, load_seconds: float) -> str:
    total = load_seconds + (s.deploy_seconds or 0) + (s.run_seconds or 0)
    lines = [
        f"session {s.session_id}: {s.state} in {total:.2f} s "
        f"(load {load_seconds:.2f} s, deploy {s.deploy_seconds or 0:.2f} s, run {s.run_seconds or 0:.2f} s)",
        f"  drops: {s.drops} -- " + ", ".join(f"{state} {n}" for state, n in s.by_state.items()),
    ]
    if s.failures:
        lines.append(f"  failures ({len(s.failures)}):")
        for f in s.failures[:20]:
            head, *rest = f.message.splitlines() or [""]
            lines.append(f"    drop {f.uid!r} ({f.kind}): {head}")
            lines += [f"      {line}" for line in rest[-8:]]
        if len(s.failures) > 20:
            lines.append(f"    ... and {len(s.failures) - 20} more")
    for uid, text in s.values.items():
        lines.append(f"  {uid} = {text}")
    for path in s.persisted:
        lines.append(f"  kept: {path}")
    return "\n".join(lines)


@command("run", "run a graph on an in-process node (no daemons)", _run_args)
def cmd_run(args: argparse.Namespace) -> int:
    _add_pythonpath(args)
    t0 = time.perf_counter()
    graph = load_graph(args.graph, params(args.param))
    load_seconds = time.perf_counter() - t0
    session_id = _session_id(args, graph.name)
    node = Node(
        workspace_root=args.workspace or default_root(),
        allowed_paths=args.allow_path,
        threads=args.threads,
        processes=args.processes,
        executor=args.executor,
    )
    node.start()
    interrupted = False
    try:
        session = node.create_session(session_id)
        session.add(graph.drops)
        del graph
        session.deploy(source=args.graph)
        try:
            _follow(session, args.progress)
        except KeyboardInterrupt:
            interrupted = True
            print("\ndropflow: interrupted, cancelling (press Ctrl-C again to stop waiting)", file=sys.stderr)
            session.cancel()
            session.wait()
        summary = session.summary()
    finally:
        node.close()
    if args.json:
        out: dict[str, Any] = {
            "session_id": summary.session_id,
            "state": summary.state,
            "drops": summary.drops,
            "by_state": summary.by_state,
            "load_seconds": load_seconds,
            "deploy_seconds": summary.deploy_seconds,
            "run_seconds": summary.run_seconds,
            "failures": [{"uid": f.uid, "kind": f.kind, "message": f.message} for f in summary.failures],
            "persisted": summary.persisted,
            "values": summary.values,
        }
        print(json.dumps(out, indent=2))
    else:
        print(_format_summary(summary, load_seconds))
    if interrupted:
        return EXIT_INTERRUPTED
    return EXIT_OK if summary.state == "FINISHED" else EXIT_FAILED


@command("validate", "check a graph without running it", _graph_args)
def cmd_validate(args: argparse.Namespace) -> int:
    from .engine.graph import build
    from .engine.workspace import Workspace

    graph = load_graph(args.graph, params(args.param))
    ws = Workspace(default_root(), "validate", args.allow_path)
    runtime = build(graph.drops, ws, args.graph)
    apps = len(runtime.apps)
    print(
        f"{args.graph}: valid {graph.kind} graph, {len(runtime)} drops "
        f"({apps} apps, {len(runtime) - apps} data)"
    )
    return EXIT_OK


#: Modules that register more subcommands (imported when the parser is built, so each stays optional).
COMMAND_MODULES = ("cli_translate", "cli_deploy", "cli_daemons", "cli_client")


def parser() -> argparse.ArgumentParser:
    for module in COMMAND_MODULES:
        importlib.import_module(f"{__package__}.{module}")
    p = argparse.ArgumentParser(prog="dropflow", description="A data-activated dataflow engine.")
    p.add_argument("--version", action="version", version=f"dropflow {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (help_text, add, _run) in COMMANDS.items():
        add(sub.add_parser(name, help=help_text, description=help_text))
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    _help, _add, run = COMMANDS[args.command]
    try:
        return run(args)
    except GraphError as exc:
        print(f"dropflow {args.command}: invalid graph, nothing was run:\n{exc}", file=sys.stderr)
        return EXIT_USAGE
    except UsageError as exc:
        print(f"dropflow {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:
        from .managers.errors import ApiError

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


if __name__ == "__main__":
    # Run as a script, this file is __main__, not dropflow.cli, where the other modules registered their
    # commands: hand over to the real module.
    from dropflow.cli import main as _main

    sys.exit(_main())
