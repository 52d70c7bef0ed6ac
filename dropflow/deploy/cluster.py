"""Where each daemon of an engine-as-a-job runs: a pure plan over the allocation's nodes.

Theory of operation
-------------------
:func:`plan_cluster` takes the allocation's nodes in Slurm's order, each with the address its daemons bind
and are reached at (Slurm's ``NodeAddr``), and decides every daemon's place and port: a node manager on every
node, the nodes cut into ``islands`` contiguous groups with an island manager on the first node of each,
and, with more than one island, a master manager on the first node. Ports count up from one base: node
manager *i* gets ``base + i``, island *j* ``base + N + j``, the master ``base + N + K``. Distinct ports on
distinct hosts cost nothing, and they let several emulated nodes share one host (as in CI). The plan is
written to the results directory (``nodes.json``) where each node's entry point finds its own line.

A base of 0 plans every port as 0: each daemon takes a free port of its node when it starts (see
:mod:`.node_entry`), so that two jobs sharing a node never collide, and :meth:`ClusterPlan.with_ports` fills
in the ports they announced.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass

__all__ = ["ClusterPlan", "DaemonPlan", "IslandPlan", "plan_cluster"]

MAX_PORT = 65535


@dataclass(frozen=True, slots=True)
class DaemonPlan:
    #: Slurm node name the daemon runs on.
    node: str
    #: Address it binds and is reached at.
    address: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"http://{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class IslandPlan:
    manager: DaemonPlan
    members: tuple[DaemonPlan, ...]


@dataclass(frozen=True, slots=True)
class ClusterPlan:
    node_managers: tuple[DaemonPlan, ...]
    islands: tuple[IslandPlan, ...]
    master: DaemonPlan | None

    @property
    def entry(self) -> DaemonPlan:
        """The manager graphs are submitted to: the master, or the only island manager."""
        return self.master if self.master is not None else self.islands[0].manager

    def node_manager(self, node: str) -> DaemonPlan:
        for nm in self.node_managers:
            if nm.node == node:
                return nm
        raise KeyError(f"node {node!r} is not in this job's plan")

    def daemons(self) -> dict[str, DaemonPlan]:
        """Every daemon by the name the bootstrap knows it by: ``nm NODE``, ``island J``, ``master``."""
        out = {f"nm {nm.node}": nm for nm in self.node_managers}
        out.update({f"island {j}": island.manager for j, island in enumerate(self.islands)})
        if self.master is not None:
            out["master"] = self.master
        return out

    def with_ports(self, ports: dict[str, int]) -> ClusterPlan:
        """The plan with the ports the daemons took (by their names, see :meth:`daemons`).

        >>> plan = plan_cluster([("n1", "a"), ("n2", "b")], 0)
        >>> plan.with_ports({"nm n1": 4001, "nm n2": 4002, "island 0": 4003}).islands[0].members[1].url
        'http://b:4002'
        """

        def port(name: str, d: DaemonPlan) -> DaemonPlan:
            return DaemonPlan(d.node, d.address, ports.get(name, d.port))

        nms = tuple(port(f"nm {nm.node}", nm) for nm in self.node_managers)
        by_node = {nm.node: nm for nm in nms}
        islands = tuple(
            IslandPlan(port(f"island {j}", i.manager), tuple(by_node[m.node] for m in i.members))
            for j, i in enumerate(self.islands)
        )
        master = port("master", self.master) if self.master is not None else None
        return ClusterPlan(nms, islands, master)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> ClusterPlan:
        raw = json.loads(text)

        def daemon(d: dict[str, object]) -> DaemonPlan:
            return DaemonPlan(str(d["node"]), str(d["address"]), int(str(d["port"])))

        return cls(
            tuple(daemon(d) for d in raw["node_managers"]),
            tuple(
                IslandPlan(daemon(i["manager"]), tuple(daemon(m) for m in i["members"]))
                for i in raw["islands"]
            ),
            daemon(raw["master"]) if raw["master"] else None,
        )


def plan_cluster(nodes: Sequence[tuple[str, str]], port_base: int, islands: int = 1) -> ClusterPlan:
    """Place the daemons on ``nodes`` ((name, address) in allocation order).

    >>> plan = plan_cluster([("n1", "10.0.0.1"), ("n2", "10.0.0.2"), ("n3", "10.0.0.3")], 8000, islands=2)
    >>> [nm.url for nm in plan.node_managers]
    ['http://10.0.0.1:8000', 'http://10.0.0.2:8001', 'http://10.0.0.3:8002']
    >>> [(i.manager.url, [m.node for m in i.members]) for i in plan.islands]
    [('http://10.0.0.1:8003', ['n1', 'n2']), ('http://10.0.0.3:8004', ['n3'])]
    >>> plan.entry.url
    'http://10.0.0.1:8005'
    """
    n = len(nodes)
    if n < 1:
        raise ValueError("an allocation needs at least one node")
    if not 1 <= islands <= n:
        raise ValueError(f"{islands} islands cannot be made of {n} nodes (1 to {n})")
    last = port_base + n + islands + (1 if islands > 1 else 0) - 1
    if port_base != 0 and (port_base < 1 or last > MAX_PORT):
        raise ValueError(f"ports {port_base}..{last} are outside 1..{MAX_PORT}")
    step = 1 if port_base else 0  # base 0: every port is chosen when its daemon starts
    nms = tuple(DaemonPlan(name, address, port_base + i * step) for i, (name, address) in enumerate(nodes))
    # Contiguous groups whose sizes differ by at most one, larger groups first.
    size, extra = divmod(n, islands)
    groups, start = [], 0
    for j in range(islands):
        end = start + size + (1 if j < extra else 0)
        groups.append(nms[start:end])
        start = end
    planned = tuple(
        IslandPlan(DaemonPlan(g[0].node, g[0].address, (port_base + n + j) * step), g)
        for j, g in enumerate(groups)
    )
    master = (
        DaemonPlan(nms[0].node, nms[0].address, (port_base + n + islands) * step) if islands > 1 else None
    )
    return ClusterPlan(nms, planned, master)
