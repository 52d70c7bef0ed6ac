"""Admitting the daemon's own user, on this machine, without a token: for DALiuGE's clients, which cannot
send one.

Theory of operation
-------------------
DALiuGE 6.6's clients (``dlg.restutils.RestClient``, hence ``dlg.clients``, ``dlg submit``, ``dlg map``)
open ``http.client.HTTPConnection(host, port)`` and send no credential of any kind: no header of the
caller's choosing, no URL userinfo, no query parameter. A daemon that requires its token therefore cannot
serve them -- unless it can tell, without a token, that the caller is someone who could read the token
anyway: a process of the daemon's own user on the same machine.

The kernel knows. A connection to loopback has both ends on this machine, and the kernel's table of TCP
sockets (``/proc/net/tcp``, ``/proc/net/tcp6``) names the user that owns each end. So a request without a
token is admitted, when the daemon runs with ``--trust-local-user``, if all of these hold:

1. the peer's address is loopback, and the kernel lists the peer's socket, ESTABLISHED, to this daemon's
   address and port, owned by this daemon's effective user id;
2. the ``Host`` header names loopback (``localhost``, ``127.x.x.x``, ``::1``): a web page that re-binds
   its own host name to 127.0.0.1 sends its own name, and is refused;
3. it does not come from a web browser -- which runs as the user, and would let any web page post a graph
   to the daemon: browsers send ``Sec-Fetch-*`` headers, and an ``Origin`` on cross-site requests;
   requests with either are refused (except DALiuGE's client's own fixed ``Origin``).

Nothing is cached: every request is checked against the table as it is while the connection is open. This
grants nothing that the user's other processes do not have already -- they can read the token file -- and
nothing to anyone else. Over the network, the token is required as always; an SSH tunnel ending on the
daemon's host (``ssh -L 8001:localhost:8001 host``) connects from the user's own ``sshd`` process, and is
admitted.
"""

from __future__ import annotations

import ipaddress
import os
import struct
from collections.abc import Mapping

__all__ = ["DLG_ORIGIN", "is_loopback", "local_user_request", "socket_owner"]

#: The ``Origin`` that DALiuGE's REST client sends with every body (a fixed string, not a browser's).
DLG_ORIGIN = "http://dlg-tm.localhost"
ESTABLISHED = "01"
_TABLES = ("/proc/net/tcp", "/proc/net/tcp6")


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def _hex(host: str, port: int) -> tuple[str, str] | None:
    """An endpoint as the kernel prints it in /proc/net/tcp (IPv4) and /proc/net/tcp6."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv4Address):
        # The kernel prints each 32-bit word of the address in host byte order, the port in hex.
        v4 = "{:08X}".format(struct.unpack("=I", ip.packed)[0])
        mapped = ipaddress.IPv6Address(f"::ffff:{ip}").packed
        v6 = "".join(f"{w:08X}" for w in struct.unpack("=4I", mapped))
        return f"{v4}:{port:04X}", f"{v6}:{port:04X}"
    v6 = "".join(f"{w:08X}" for w in struct.unpack("=4I", ip.packed))
    v4_of = ip.ipv4_mapped
    v4 = "{:08X}".format(struct.unpack("=I", v4_of.packed)[0]) if v4_of is not None else ""
    return (f"{v4}:{port:04X}" if v4 else ""), f"{v6}:{port:04X}"


def socket_owner(peer: tuple[str, int], local: tuple[str, int]) -> int | None:
    """The user id owning the ESTABLISHED socket at ``peer`` connected to ``local``, from the kernel's
    table; None if the kernel lists no such connection (or there is no /proc)."""
    a, b = _hex(*peer), _hex(*local)
    if a is None or b is None:
        return None
    for table, (mine, theirs) in zip(_TABLES, ((a[0], b[0]), (a[1], b[1])), strict=True):
        if not mine or not theirs:
            continue
        try:
            with open(table) as f:
                next(f, None)
                for line in f:
                    fields = line.split()
                    # sl local rem st queues tr retrnsmt uid ...
                    if (
                        len(fields) > 7
                        and fields[1] == mine
                        and fields[2] == theirs
                        and fields[3] == ESTABLISHED
                    ):
                        return int(fields[7])
        except OSError:
            continue
    return None


def _endpoint(value: object) -> tuple[str, int] | None:
    """An ASGI scope's ``client`` or ``server``: ``(host, port)``, or None if it is not one."""
    if not isinstance(value, list | tuple):
        return None
    try:
        pair = tuple(value)
        if len(pair) == 2:
            return str(pair[0]), int(pair[1])
    except (TypeError, ValueError):
        pass
    return None


def local_user_request(peer_: object, local_: object, headers: Mapping[str, str]) -> bool:
    """Is this request from a process of this daemon's own user on this machine, and not a browser's?
    ``peer_`` and ``local_``: the two ends (the ASGI scope's ``client`` and ``server``); ``headers``: with
    lower-case names."""
    peer, local = _endpoint(peer_), _endpoint(local_)
    if peer is None or local is None or not is_loopback(peer[0]):
        return False
    host = headers.get("host", "")
    hostname = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    if not host or not is_loopback(hostname):
        return False
    if any(name.startswith("sec-fetch-") for name in headers):
        return False
    origin = headers.get("origin")
    if origin is not None and origin != DLG_ORIGIN:
        return False
    return socket_owner(peer, local) == os.geteuid()
