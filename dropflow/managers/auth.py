"""Secrets of the managers: the shared token, proofs that a peer holds it, and request checks.

Theory of operation
-------------------
Whoever holds a cluster's *token* may run code as its daemons' user; nobody else may do anything. Every
daemon therefore starts with a token, found in this order: ``--token-file FILE``, ``$DROPFLOW_TOKEN``, then
the *default file*: ``$DROPFLOW_TOKEN_FILE``, or ``$XDG_CONFIG_HOME/dropflow/token`` (by default
``~/.config/dropflow/token``). A daemon creates the default file on first use -- 32 random bytes, the
directory of mode 0700, the file 0600, made atomically so that daemons starting together agree on one
token. dropflow's own clients (the CLI, islands, masters, ``cluster up``, the Slurm bootstrap) look in the
same places, so on one machine, or on machines that share a home directory, nothing needs to be passed. A
token file that others may read is refused, as ssh refuses such a key; tokens never appear on a command
line or in a log.

Requests carry the token as ``Authorization: Bearer <token>``, compared in constant time. Before an island
sends a token or a graph to a node it has not talked to -- one announced over zeroconf, named in
``POST /api/v1/node/{name}`` (or ``/api/node/{host:port}``) or ``--nodes`` -- the node proves that it
holds the token without sending it:
the island sends a fresh random *challenge*, the node answers ``HMAC-SHA256(token, challenge | name | url)``
where ``url`` is the node's own idea of where it is reached, so an impostor can neither answer nor relay a
real node's answer under another address (:func:`proof`, :func:`check_proof`).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import socket
import ssl
import stat
from urllib.parse import urlsplit

__all__ = [
    "TOKEN_ENV",
    "TOKEN_FILE_ENV",
    "TokenError",
    "bearer_ok",
    "check_proof",
    "default_token_path",
    "ensure_token",
    "find_token",
    "new_challenge",
    "proof",
    "read_token_file",
    "same_endpoint",
    "tls_verify",
]

TOKEN_ENV = "DROPFLOW_TOKEN"
TOKEN_FILE_ENV = "DROPFLOW_TOKEN_FILE"
CA_FILE_ENV = "DROPFLOW_CA_FILE"
#: Tokens shorter than this are refused: a guessable token is no token.
MIN_TOKEN = 16


class TokenError(Exception):
    """A token file that cannot be used; the message says what to do."""


def default_token_path() -> str:
    """Where daemons keep, and clients look for, the token when none is given."""
    explicit = os.environ.get(TOKEN_FILE_ENV)
    if explicit:
        return explicit
    config = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(config, "dropflow", "token")


def read_token_file(path: str) -> str:
    """The token in ``path``; refuses a file that other users may read or that is not ours."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise TokenError(f"token file {path}: {exc.strerror}") from None
    with os.fdopen(fd) as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise TokenError(f"token file {path} is not a regular file")
        if st.st_uid != os.geteuid():
            raise TokenError(f"token file {path} belongs to another user (uid {st.st_uid}); use your own")
        if st.st_mode & 0o077:
            raise TokenError(
                f"token file {path} may be read by other users (mode {stat.S_IMODE(st.st_mode):o}); "
                f"run: chmod 600 {path}"
            )
        token = f.read().strip()
    if len(token) < MIN_TOKEN:
        raise TokenError(f"token file {path} holds no token of at least {MIN_TOKEN} characters")
    return token


def find_token(path: str | None = None) -> str | None:
    """A client's token: ``path`` if given, else ``$DROPFLOW_TOKEN``, else the default file if it exists."""
    if path:
        return read_token_file(path)
    env = os.environ.get(TOKEN_ENV)
    if env:
        return env.strip()
    default = default_token_path()
    if os.path.lexists(default):
        return read_token_file(default)
    return None


def ensure_token(path: str | None = None) -> tuple[str, str]:
    """A daemon's token and where it came from: like :func:`find_token`, but the default file is created
    when it does not exist yet."""
    if path:
        return read_token_file(path), path
    env = os.environ.get(TOKEN_ENV)
    if env:
        if len(env.strip()) < MIN_TOKEN:
            raise TokenError(f"${TOKEN_ENV} holds no token of at least {MIN_TOKEN} characters")
        return env.strip(), f"${TOKEN_ENV}"
    default = default_token_path()
    if not os.path.lexists(default):
        _create(default)
    return read_token_file(default), default


def _create(path: str) -> None:
    """Write a new token to ``path`` unless another process does first (then its token is the one)."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=0o700, exist_ok=True)
    tmp = os.path.join(directory, f".token-{os.getpid()}-{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
        with contextlib.suppress(FileExistsError):  # another daemon won the race: use its token
            os.link(tmp, path)
    finally:
        os.unlink(tmp)


def bearer_ok(header: str | None, token: str) -> bool:
    """Does an ``Authorization`` header carry ``token``? (constant time)"""
    return hmac.compare_digest((header or "").encode(), f"Bearer {token}".encode())


def new_challenge() -> str:
    return secrets.token_hex(16)


def proof(token: str, challenge: str, name: str, url: str) -> str:
    """A manager's answer to ``challenge``: it holds ``token``, is called ``name``, is reached at ``url``."""
    message = f"dropflow-proof-v1\n{challenge}\n{name}\n{url}".encode()
    return hmac.new(token.encode(), message, hashlib.sha256).hexdigest()


def check_proof(token: str, challenge: str, name: str, url: str, answer: object) -> bool:
    return isinstance(answer, str) and hmac.compare_digest(answer, proof(token, challenge, name, url))


def _addresses(host: str) -> set[str]:
    try:
        return {str(info[4][0]) for info in socket.getaddrinfo(host, None)}
    except (OSError, UnicodeError):
        return {host}


def same_endpoint(a: str, b: str) -> bool:
    """Do two URLs reach the same scheme, port and host (compared by address: localhost is 127.0.0.1)?"""
    ua, ub = urlsplit(a), urlsplit(b)
    if ua.scheme != ub.scheme or ua.port != ub.port or not ua.hostname or not ub.hostname:
        return False
    return ua.hostname == ub.hostname or bool(_addresses(ua.hostname) & _addresses(ub.hostname))


def tls_verify(ca_file: str | None = None) -> ssl.SSLContext | bool:
    """How a client checks the certificates of https:// managers: against ``ca_file`` (or
    ``$DROPFLOW_CA_FILE``) when given -- a site's CA, or a self-signed certificate itself -- else against
    the system's CAs."""
    path = ca_file or os.environ.get(CA_FILE_ENV)
    if not path:
        return True
    try:
        return ssl.create_default_context(cafile=path)
    except (OSError, ssl.SSLError) as exc:
        raise TokenError(f"CA file {path}: {exc}") from None
