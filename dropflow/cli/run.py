"""``dropflow run`` and ``dropflow validate``: a graph on an in-process node, no daemons.

``run`` loads any graph format, deploys it on a :class:`~dropflow.engine.Node` started for the purpose,
follows it (with a progress bar on a terminal) and prints the summary; ``validate`` builds the graph
without running it. The engine is imported by the handlers, so ``dropflow run --help`` does not load it.
"""

from __future__ import annotations

import argparse
import functools
import json
import mmap
import os
import shlex
import sys
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .common import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, UsageError, command, integer, params

if TYPE_CHECKING:
    from ..drops.spec import DropSpec
    from ..engine import Session, Summary

__all__ = ["cmd_run", "cmd_validate"]

#: The summary shows what this many apps printed, the last lines of each (--json has it all).
OUTPUTS_SHOWN = 10
OUTPUT_LINES = 5


def _graph_args(p: argparse.ArgumentParser, optional: bool = False) -> None:
    p.add_argument(
        "graph",
        nargs="?" if optional else None,
        help="graph file (native physical or logical, EAGLE .graph, DALiuGE PG); - for stdin"
        + ("; with --resume, the session's own copy by default" if optional else ""),
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
    _graph_args(p, optional=True)
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
        help="where Python functions that name no executor run (default: a thread; other kinds: their own)",
    )
    p.add_argument(
        "--progress",
        choices=("auto", "always", "never"),
        default="auto",
        help="progress bar on standard error (auto: when it is a terminal)",
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument(
        "--resume",
        metavar="SESSION",
        help="continue SESSION, which ended early (killed, Ctrl-C, a failure): apps that finished are not "
        "run again where what they made still exists; the rest runs",
    )
    p.add_argument(
        "--no-journal",
        action="store_true",
        help="keep no journal (a little faster; the session cannot be resumed)",
    )


def _session_id(args: argparse.Namespace, name: str, given: str | None = None) -> str:
    from ..engine.workspace import check_session_id

    given = given or args.session_id
    if given:
        try:
            return check_session_id(given)
        except ValueError as exc:
            raise UsageError(f"--session-id: {exc}") from None
    stamp = datetime.now().strftime("%Y%m%dT%H%M%S")
    return f"{name}-{stamp}-{os.urandom(2).hex()}"


def _import_dirs(args: argparse.Namespace) -> list[str]:
    """Where Python function apps import from: the graph's directory, then --pythonpath."""
    dirs = [os.path.abspath(d) for d in args.pythonpath]
    if args.graph and args.graph != "-":
        dirs.insert(0, os.path.dirname(os.path.abspath(args.graph)))
    return dirs


def _add_pythonpath(args: argparse.Namespace, recorded: list[str] | None = None) -> None:
    dirs = [*recorded, *map(os.path.abspath, args.pythonpath)] if recorded is not None else _import_dirs(args)
    for d in reversed(dirs):
        if not os.path.isdir(d):
            raise UsageError(f"--pythonpath {d!r} is not a directory")
        if d not in sys.path:
            sys.path.insert(0, d)


def _check_inputs(drops: list[DropSpec], graph: str, allowed: list[str]) -> None:
    """Refuse, with what to do, a root file given by a relative path that names a file of the user's.

    A relative path is inside the session's workspace, which does not exist before the session: a root
    input there is missing for sure, and if the path names a file here, that file was surely meant.
    """
    from ..drops.errors import GraphError, Problem
    from ..drops.spec import AppSpec, DataSpec

    produced = {
        d
        for s in drops
        if isinstance(s, AppSpec)
        for v in s.outputs.values()
        for d in ([v] if isinstance(v, str) else v)
    }
    problems = []
    bases = [os.getcwd()] + ([os.path.dirname(os.path.abspath(graph))] if graph != "-" else [])
    for spec in drops:
        path = getattr(spec, "path", None)
        if not isinstance(spec, DataSpec) or not spec.TRAITS.must_exist or spec.id in produced:
            continue
        if not path or os.path.isabs(path):
            continue
        found = next((os.path.join(b, path) for b in bases if os.path.exists(os.path.join(b, path))), None)
        if found is None:
            continue
        found = os.path.abspath(found)
        allow = (
            ""
            if any(found.startswith(os.path.abspath(a) + os.sep) for a in allowed)
            else (f" and --allow-path {os.path.dirname(found)}")
        )
        problems.append(
            Problem(
                spec.label(),
                "path",
                f"{path!r} is relative, so it would be looked for in the new session's workspace, where it "
                f'cannot be; to read {found}, give "path": {found!r}{allow}',
            )
        )
    if problems:
        raise GraphError(problems, graph)


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
        file=sys.stderr,
        dynamic_ncols=True,
        desc=session.id[:40],
        mininterval=0.2,
    ) as bar:
        while not session.ended:
            session.wait(0.2)
            done, _ = session.progress()
            bar.update(int(done) - bar.n)
        bar.update(int(session.progress()[0]) - bar.n)


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
    shown = list(s.outputs.items())[:OUTPUTS_SHOWN]
    if shown:
        lines.append(
            f"  output of {len(s.outputs)} app(s)"
            + (", the first shown:" if len(shown) < len(s.outputs) else ":")
        )
    for uid, text in shown:
        tail = text.rstrip().splitlines()[-OUTPUT_LINES:]
        lines.append(f"    {uid}:")
        lines += [f"      {line}" for line in tail]
    return "\n".join(lines)


def _wants_processes(args: argparse.Namespace) -> bool:
    """Whether the run will need worker processes: asked for, or named in the graph (a byte search, cheap)."""
    if args.executor == "process":
        return True
    if not args.graph or args.graph == "-":  # stdin, or a resume's own copy: started when needed
        return False
    try:
        with open(args.graph, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return data.find(b'"process"') >= 0
    except (OSError, ValueError):  # unreadable or empty: load_graph says why
        return False


@command("run", _run_args)
def cmd_run(args: argparse.Namespace) -> int:
    # The worker zygote starts first, if the graph has process apps: its interpreter imports the app
    # runners while this one imports the engine and loads the graph, so that no worker start is left on the
    # critical path.
    from ..engine import zygote

    warm = zygote.acquire() if _wants_processes(args) else None
    try:
        return _run(args)
    finally:
        if warm is not None:
            zygote.release(warm)


def _load_stdin(data: bytes, graph_params: dict[str, str]) -> Any:
    """Load a graph read from standard input already (its bytes are also the journal's copy)."""
    import io

    from ..loading import load_graph

    stdin = sys.stdin
    sys.stdin = io.TextIOWrapper(io.BytesIO(data))
    try:
        return load_graph("-", graph_params)
    finally:
        sys.stdin = stdin


def _run(args: argparse.Namespace) -> int:
    from ..deploy import resume as resuming
    from ..engine import Node
    from ..engine.journal import Journal, journal_dir
    from ..engine.workspace import default_root
    from ..loading import load_graph, read_graph_bytes

    root = os.path.abspath(args.workspace or default_root())
    journaling = not args.no_journal
    record = plan = None
    prepare: Callable[[], object] | None = None
    try:
        if args.resume:
            if not journaling:
                raise UsageError("--resume needs the session's journal: drop --no-journal")
            session_id = _session_id(args, "", args.resume)
            jdir = journal_dir(resuming.journal_root(root), session_id)
            record = resuming.load_run(jdir, session_id)
            if resuming.session_alive(root, session_id):
                raise resuming.ResumeError(
                    f"session {session_id!r} is still running in another process; it can be resumed once it "
                    "has ended"
                )
            given = read_graph_bytes(args.graph) if args.graph else None
            resuming.check_same_graph(record, given, params(args.param))
            args.allow_path = [*record.allow_paths, *args.allow_path]
            _add_pythonpath(args, record.pythonpath)
            source = record.source
        elif args.graph is None:
            raise UsageError("the following arguments are required: graph (or --resume SESSION)")
        else:
            _add_pythonpath(args)
            source = args.graph
    except resuming.ResumeError as exc:
        raise UsageError(str(exc)) from None
    t0 = time.perf_counter()
    data = None
    if record is not None:
        graph = load_graph(record.graph, record.params)
    elif journaling and args.graph == "-":
        data = read_graph_bytes(args.graph)  # read once: the journal keeps a copy
        graph = _load_stdin(data, params(args.param))
    else:
        graph = load_graph(args.graph, params(args.param))
    _check_inputs(graph.drops, source, args.allow_path)
    load_seconds = time.perf_counter() - t0
    if record is None:
        session_id = _session_id(args, graph.name)
        jdir = journal_dir(resuming.journal_root(root), session_id)
        if journaling:
            try:
                resuming.check_new_journal(jdir, session_id)
            except resuming.ResumeError as exc:
                raise UsageError(str(exc)) from None
            # Written when the session deploys, once its graph has built: a bad graph leaves nothing.
            prepare = functools.partial(
                resuming.start_journal,
                jdir,
                session_id,
                args.graph,
                data,
                params(args.param),
                _import_dirs(args),
                args.allow_path,
            )
    else:
        plan, _records = resuming.plan_resume(jdir, graph.drops)
        print(f"dropflow: resuming session {session_id}: {plan.describe()}", file=sys.stderr)
    node = Node(
        workspace_root=root,
        allowed_paths=args.allow_path,
        threads=args.threads,
        processes=args.processes,
        executor=args.executor,
    )
    node.start()
    interrupted = False
    try:
        session = node.create_session(session_id)
        if journaling:
            session.journal = Journal(jdir, node.name, plan, prepare=prepare)
        session.add(graph.drops)
        del graph
        session.deploy(source=source)
        try:
            _follow(session, args.progress)
        except KeyboardInterrupt:
            interrupted = True
            print("\ndropflow: interrupted, cancelling (press Ctrl-C again to stop waiting)", file=sys.stderr)
            session.cancel()
            session.wait()
        summary = session.summary()
        workspace = session.workspace.dir
    finally:
        node.close()
    resumable = journaling and not resuming.finish(jdir, summary.state, keep_workspaces=[workspace])
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
            "outputs": summary.outputs,
            "resumed": plan.to_dict()["finished"].__len__() if plan is not None else None,
            "journal": jdir if resumable else None,
        }
        print(json.dumps(out, indent=2))
    else:
        print(_format_summary(summary, load_seconds))
    if resumable:
        where = f" --workspace {shlex.quote(args.workspace)}" if args.workspace else ""
        print(
            f"dropflow: session {session_id} did not finish; continue it with: "
            f"dropflow run --resume {session_id}{where}",
            file=sys.stderr,
        )
    if interrupted:
        return EXIT_INTERRUPTED
    return EXIT_OK if summary.state == "FINISHED" else EXIT_FAILED


@command("validate", _graph_args)
def cmd_validate(args: argparse.Namespace) -> int:
    from ..drops.errors import GraphError
    from ..drops.foreign import ForeignAppSpec, ForeignDataSpec, problem
    from ..engine.graph import build
    from ..engine.workspace import Workspace, default_root
    from ..loading import load_graph

    _add_pythonpath(args)
    graph = load_graph(args.graph, params(args.param))
    _check_inputs(graph.drops, args.graph, args.allow_path)
    ws = Workspace(default_root(), "validate", args.allow_path)
    # Components that translate but cannot run here are reported, not refused: they are refused at deploy.
    foreign = [s for s in graph.drops if isinstance(s, ForeignAppSpec | ForeignDataSpec)]
    refusals = {str(problem(s)) for s in foreign}
    try:
        runtime = build(graph.drops, ws, args.graph)
        size, apps = len(runtime), len(runtime.apps)
    except GraphError as exc:
        if not foreign or any(str(p) not in refusals for p in exc.problems):
            raise
        size, apps = len(graph.drops), sum(1 for s in graph.drops if s.CATEGORY == "app")
    print(f"{args.graph}: valid {graph.kind} graph, {size} drops ({apps} apps, {size - apps} data)")
    for line in sorted(refusals)[:20]:
        print(f"  cannot run here (refused at deploy): {line}")
    return EXIT_OK
