"""``GET /metrics``: a manager's state in Prometheus' text format, read when scraped.

Theory of operation
-------------------
Nothing on the engine's path is instrumented for Prometheus. Each manager's app has its own
``CollectorRegistry`` (several managers may share a process in tests) holding a custom collector that, when
scraped, reads what the engine and the managers keep anyway: the sessions' states, each session's drops by
state (through the cached :class:`~dropflow.managers.census.Census`, so a scrape of a million-drop session
costs what one census costs, at most every few seconds), the app duration buckets the owner loop fills as
outcomes come back (:class:`~dropflow.engine.observe.AppStats`), the owner's queue and the pools' load, the
bus's counters of messages, bytes and transfers, and the engine's error count. An island exports its
sessions, its members' heartbeat state and its lost nodes. The process collector adds the daemon's own CPU,
memory and file descriptors.

Metric names start with ``dropflow_``; per-session series exist only for sessions that have not ended, so
their number stays bounded however many sessions a daemon has run.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import falcon
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from .. import __version__
from ..drops.states import SESSION_ENDED, SessionState
from ..engine.observe import BUCKETS
from .monitor import IslandMonitor, NodeMonitor, monitor_for

__all__ = ["ManagerCollector", "MetricsResource", "registry_for"]

_ENDED = frozenset(map(str, SESSION_ENDED))


def _sessions_by_state(states: list[str]) -> GaugeMetricFamily:
    g = GaugeMetricFamily("dropflow_sessions", "Sessions held by this manager, by state", labels=["state"])
    counts = Counter(states)
    for state in SessionState:
        g.add_metric([str(state)], counts.get(str(state), 0))
    return g


class ManagerCollector(Collector):
    """Reads a node, island or master manager when scraped."""

    def __init__(self, manager: Any) -> None:
        self.manager = manager
        self.monitor = monitor_for(manager)

    def collect(self) -> Iterator[Metric]:
        m = self.manager
        info = InfoMetricFamily("dropflow", "This manager: role, name and version")
        info.add_metric([], {"role": m.role, "name": m.name, "version": __version__})
        yield info
        if isinstance(self.monitor, NodeMonitor):
            yield from self._node(self.monitor)
        else:
            yield from self._island(self.monitor)

    # -- a node manager -------------------------------------------------------------------------------------

    def _node(self, mon: NodeMonitor) -> Iterator[Metric]:
        node = mon.nm.node
        sessions = list(node.sessions.values())
        yield _sessions_by_state([str(s.state) for s in sessions])
        drops = GaugeMetricFamily(
            "dropflow_drops", "Drops of the sessions on this node, by state", labels=["state"]
        )
        per_session = GaugeMetricFamily(
            "dropflow_session_drops",
            "Drops of each session that has not ended, by state",
            labels=["session", "state"],
        )
        progress = GaugeMetricFamily(
            "dropflow_session_settled_ratio",
            "Settled drops / all drops, per session not ended",
            labels=["session"],
        )
        totals: Counter[str] = Counter()
        in_flight = 0
        for s in sessions:
            counts = mon.census(s).counts()["totals"]
            totals.update(counts)
            in_flight += s.transfers.pending
            if str(s.state) not in _ENDED:
                for state, n in counts.items():
                    per_session.add_metric([s.id, state], n)
                done, total = s.progress()
                progress.add_metric([s.id], done / total if total else 0.0)
        for state, n in sorted(totals.items()):
            drops.add_metric([state], n)
        yield drops
        yield per_session
        yield progress

        stats = node.stats
        counts = list(stats.counts)
        buckets, cumulative = [], 0
        for bound, n in zip((*map(str, BUCKETS), "+Inf"), counts, strict=True):
            cumulative += n
            buckets.append((bound, cumulative))
        yield HistogramMetricFamily(
            "dropflow_app_duration_seconds",
            "How long apps took, from their runner's start to its return",
            buckets=buckets,
            sum_value=stats.sum,
        )
        yield CounterMetricFamily("dropflow_apps_failed", "Apps whose run failed", value=stats.failed)
        yield CounterMetricFamily(
            "dropflow_engine_errors",
            "Events whose handler raised in the owner loop (each failed its session): engine errors",
            value=node.event_errors,
        )

        load = node.load()
        yield GaugeMetricFamily(
            "dropflow_owner_queue_depth", "Events waiting for the owner loop", value=load["queue"]
        )
        yield GaugeMetricFamily(
            "dropflow_owner_timers", "Lifespan and abandon timers armed", value=load["timers"]
        )
        for name, help_text in (
            ("size", "Largest number of workers of each app pool"),
            ("workers", "Workers (threads or processes) of each app pool"),
            ("busy", "Workers of each app pool running an app"),
            ("queued", "Apps waiting for a worker of each pool"),
        ):
            g = GaugeMetricFamily(f"dropflow_pool_{name}", help_text, labels=["pool"])
            for pool, key in (("thread", "threads"), ("process", "processes")):
                row = load[key]
                g.add_metric([pool], row.get(key if name == "workers" else name, 0))
            yield g
        yield GaugeMetricFamily(
            "dropflow_transfers_in_flight", "Fetches and pushes between nodes under way", value=in_flight
        )

        counters = getattr(node.bus, "counters", None)
        if counters is not None:
            for what in ("messages", "bytes"):
                c = CounterMetricFamily(
                    f"dropflow_bus_{what}", f"{what.capitalize()} on the bus", labels=["direction"]
                )
                c.add_metric(["sent"], counters[f"{what}_sent"])
                c.add_metric(["received"], counters[f"{what}_received"])
                yield c
            t = CounterMetricFamily(
                "dropflow_transfers", "Transfers between nodes started", labels=["direction"]
            )
            t.add_metric(["fetch"], counters["fetches"])
            t.add_metric(["push"], counters["pushes"])
            yield t
            yield CounterMetricFamily(
                "dropflow_transfers_failed",
                "Transfers between nodes that failed",
                value=counters["transfers_failed"],
            )

    # -- an island or master --------------------------------------------------------------------------------

    def _island(self, mon: IslandMonitor) -> Iterator[Metric]:
        island = mon.m
        sessions = list(island._sessions.values())
        yield _sessions_by_state([str(s.state) for s in sessions])
        lost = {(sid, n) for s in sessions for sid in [s.id] for n in s.lost}
        yield GaugeMetricFamily(
            "dropflow_lost_members",
            "Members (nodes, or islands) lost by the sessions held here",
            value=len(lost),
        )
        members = GaugeMetricFamily(
            "dropflow_member_silent_seconds",
            "Seconds since each watched member last answered a heartbeat",
            labels=["member"],
        )
        for name in island.node_names():
            silent = island._monitor.silent_for(name)
            if silent is not None:
                members.add_metric([name], silent)
        yield members
        yield GaugeMetricFamily(
            "dropflow_members",
            "Members (node managers, or islands) of this manager",
            value=len(island.node_names()),
        )
        pending = island._monitor.pending_cancels()
        yield GaugeMetricFamily(
            "dropflow_pending_cancels",
            "Orders to cancel a session part, repeated until a silent member answers",
            value=sum(len(v) for v in pending.values()),
        )


def registry_for(manager: Any) -> CollectorRegistry:
    """A registry of its own for one manager: its collector and the process's."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ManagerCollector(manager))
    ProcessCollector(registry=registry)
    return registry


class MetricsResource:
    """``GET /metrics``."""

    def __init__(self, manager: Any) -> None:
        self.registry = registry_for(manager)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = CONTENT_TYPE_LATEST
        resp.data = generate_latest(self.registry)
