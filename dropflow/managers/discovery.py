"""Finding node managers: zeroconf announcements, or a static list.

Theory of operation
-------------------
A node manager started with ``--announce`` registers a ``_dropflow-nm._tcp.local.`` service whose
properties carry its name and REST URL. An island manager started with ``--discover`` browses for that
service type: an added service becomes a node (a REST client to its URL), a removed one is dropped. Both
sides run on the zeroconf library's own threads and react to multicast announcements -- nothing polls.
Anyone on the network can announce anything, so an announcement is only a hint: the island adopts an
announced node only after it proved it holds the cluster's token, never replaces a node it has, and forgets
one whose announcement is withdrawn only if it no longer proves itself (``DataIslandManager.discovered``,
``vanished``). HPC
sites often forbid multicast, so an explicit ``--nodes`` list is the other implementation of the same
small interface: something that calls ``added(name, url)`` and ``removed(name)``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

from zeroconf import IPVersion, ServiceBrowser, ServiceInfo, ServiceStateChange, Zeroconf

__all__ = ["SERVICE", "Announcer", "Browser"]

log = logging.getLogger(__name__)

SERVICE = "_dropflow-nm._tcp.local."


def _zeroconf(interfaces: Sequence[str] | None) -> Zeroconf:
    if interfaces:
        return Zeroconf(interfaces=list(interfaces), ip_version=IPVersion.V4Only)
    return Zeroconf(ip_version=IPVersion.V4Only)


class Announcer:
    """Announce one node manager until ``close()``."""

    def __init__(self, name: str, url: str, interfaces: Sequence[str] | None = None) -> None:
        self.zc = _zeroconf(interfaces)
        where = urlsplit(url)
        address = socket.gethostbyname(where.hostname or "127.0.0.1")
        port = where.port or (443 if where.scheme == "https" else 80)
        # Service instance names are limited to 63 bytes; the node name travels in the properties.
        instance = f"{name[:40]}-{port}.{SERVICE}"
        self.info = ServiceInfo(
            SERVICE,
            instance,
            addresses=[socket.inet_aton(address)],
            port=port,
            properties={"name": name, "url": url},
            # A host name of its own: several nodes may share a machine (and its hostname).
            server=re.sub(r"[^A-Za-z0-9-]", "-", name)[:50] + ".local.",
        )
        self.zc.register_service(self.info, allow_name_change=True)
        log.info("announced %s at %s", name, url)

    def close(self) -> None:
        """Withdraw the announcement (goodbye records, sent three times), then stop.

        zeroconf's blocking ``unregister_service`` gives its three goodbyes 375 ms in all and raises if the
        event loop is late, perhaps before they are sent: on a loaded machine the island then kept a
        stopped node for the records' lifetime (two minutes). Here the goodbyes get up to 5 s."""

        async def withdraw() -> None:
            await (await self.zc.async_unregister_service(self.info))

        loop = self.zc.loop
        if loop is not None and loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(withdraw(), loop).result(5)
            except Exception as exc:  # the node stops anyway; islands lose it by its heartbeats
                log.warning("withdrawing the announcement of %s: %s", self.info.name, exc)
        self.zc.close()


class Browser:
    """Call ``added(name, url)`` and ``removed(name)`` as node managers appear and vanish."""

    def __init__(
        self,
        added: Callable[[str, str], None],
        removed: Callable[[str], object],
        interfaces: Sequence[str] | None = None,
    ) -> None:
        self.zc = _zeroconf(interfaces)
        self._added, self._removed = added, removed
        self._names: dict[str, str] = {}
        self.browser = ServiceBrowser(self.zc, SERVICE, handlers=[self._on_change])

    def _on_change(
        self, zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        if state_change is ServiceStateChange.Removed:
            node = self._names.pop(name, None)
            if node is not None:
                self._removed(node)
            return
        info = zeroconf.get_service_info(service_type, name, timeout=3000)
        if info is None:
            return
        props = {k.decode(): (v.decode() if v else "") for k, v in info.properties.items()}
        node, url = props.get("name"), props.get("url")
        if node and url:
            self._names[name] = node
            self._added(node, url)

    def close(self) -> None:
        self.browser.cancel()
        self.zc.close()
