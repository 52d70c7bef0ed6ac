"""``dropflow why SESSION``: why a session is not finishing (or, once it has, what took the time).

Asks the manager at ``--to`` for the session's frontier (``GET /api/sessions/{id}/why``, see
:mod:`dropflow.managers.why`) and prints the verdict first -- nodes that stopped answering, the inputs apps
wait for and who writes them, the apps running longest -- then the details, or with ``--json`` the whole
report.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from .client import _client, _client_args
from .common import EXIT_OK, command

__all__ = ["cmd_why", "format_report"]


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("session", help="session id")
    _client_args(p)
    p.add_argument("--json", action="store_true", help="print the whole report as JSON")


def _secs(s: float | None) -> str:
    return "-" if s is None else f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min"


def _clock(t: float | None) -> str:
    return "-" if t is None else time.strftime("%H:%M:%S", time.localtime(t)) + f".{int(t % 1 * 1000):03d}"


def format_report(r: dict[str, Any]) -> str:
    """The report as text: the verdict, then running apps, blockers, transfers and the critical path."""
    lines = [*r.get("verdict", [])]
    running = r.get("running") or []
    if running:
        lines += ["", f"running ({r.get('running_count', len(running))}), longest first:"]
        lines += [
            f"  {a['uid']:40} {a.get('kind', ''):8} on {a.get('node')}  since {_clock(a.get('since'))}"
            f"  ({_secs(a.get('seconds'))}){' moving data' if a.get('transfer') else ''}"
            for a in running
        ]
    blockers = r.get("blockers") or []
    if blockers:
        lines += ["", "inputs being written that apps wait for:"]
        for b in blockers:
            makers = ", ".join(
                f"{p['uid']} on {p.get('node')}" + (f" ({p['state']})" if p.get("state") else "")
                for p in b.get("producers") or []
            )
            lines.append(
                f"  {b['input']} (on {b.get('node')}) <- {makers or 'unknown producer'}; "
                f"{b['waiting_count']} waiting: {', '.join(b.get('waiting') or [])}"
            )
    transfers = r.get("transfers") or []
    if transfers:
        lines += ["", "transfers in flight:"]
        lines += [
            f"  {t['direction']} {t['uid']} with {t['peer']} for {', '.join(t.get('apps') or [])}"
            for t in transfers
        ]
    path = r.get("critical_path") or {}
    if path.get("steps"):
        lines += [
            "",
            "critical path" + ("" if path.get("complete") else " (as far back as the logs reach)") + ":",
        ]
        for s in path["steps"]:
            took = f"{s['seconds']:.3f} s" if s.get("seconds") is not None else ""
            at = _clock(s.get("start") or s.get("end"))
            lines.append(f"  {at} {s['uid']:40} {s.get('kind', ''):8} on {s.get('node')}  {took}")
    return "\n".join(lines)


@command("why", _args)
def cmd_why(args: argparse.Namespace) -> int:
    from ..managers.monitor import RemoteMonitor

    client = _client(args)
    try:
        report = RemoteMonitor(client).why(args.session)
    finally:
        client.close()
    print(json.dumps(report, indent=1) if args.json else format_report(report))
    return EXIT_OK
