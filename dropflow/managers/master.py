"""The master manager: the session API over several island managers.

It is the island manager one level up: a graph is split by each drop's ``island`` instead of its ``node``,
and each island receives its part, with proxies of the neighbours that live in other islands. Before
deploying, the master collects the bus address of every node of every island and gives the whole map to
each island, which passes it to its nodes, so node managers in different islands exchange events and data
directly, not through the managers above them.
"""

from __future__ import annotations

from typing import Any

from ..drops.spec import DropSpec
from .dlgcompat import find_member
from .errors import NodeFailure
from .island import DataIslandManager, _IslandSession, bus_peer

__all__ = ["MasterManager"]


class MasterManager(DataIslandManager):
    role = "mm"
    member_key = "island"

    def _peers(self, s: _IslandSession, parts: dict[str, list[DropSpec]]) -> dict[str, dict[str, str]]:
        peers: dict[str, dict[str, str]] = {}
        for island, nodes in self._fan(s.nodes, lambda c: c.nodes()).items():
            if isinstance(nodes, Exception):
                raise NodeFailure(f"island {island!r} cannot list its nodes: {nodes}")
            for node in nodes:
                if node.get("reachable") and node.get("bus"):
                    peers[node["name"]] = bus_peer(node)
        return peers

    def nodes(self) -> list[dict[str, Any]]:
        """Every island, with its node managers (``nodes``), or why it cannot be reached."""
        islands = super().nodes()
        members = self._fan([i["name"] for i in islands if i["reachable"]], lambda c: c.nodes())
        for island in islands:
            found = members.get(island["name"])
            island["nodes"] = found if isinstance(found, list) else []
        return islands

    def _island_nodes(self) -> dict[str, dict[str, str | None]]:
        """Each island's node managers, with their URLs."""
        out: dict[str, dict[str, str | None]] = {}
        for island, nodes in self._fan(self.node_names(), lambda c: c.nodes()).items():
            if isinstance(nodes, list):
                out[island] = {n["name"]: n.get("url") for n in nodes if isinstance(n, dict) and "name" in n}
        return out

    def node_urls(self) -> dict[str, str | None]:
        """Every node manager of every island, with its URL: a graph may place drops on them by address."""
        return {name: url for nodes in self._island_nodes().values() for name, url in nodes.items()}

    def island_of(self, node: str) -> str | None:
        """The island holding the node that ``node`` names (by name or address)."""
        for island, nodes in sorted(self._island_nodes().items()):
            if find_member(node, nodes) is not None:
                return island
        return None
