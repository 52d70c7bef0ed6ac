"""Docker apps: a command run in a container, its inputs and outputs bind-mounted from the session.

Theory of operation
-------------------
The runner talks to a Docker engine through the Docker SDK (``DOCKER_HOST`` or the default socket, or the
spec's ``docker_host``). ``command`` is a template like a shell app's: each ``%i[port]`` / ``%o[port]``
(or ``{port}``) becomes the shell-quoted path of the port's drop, and the built-in fields are available.
Paths are the *same* inside the container as outside: the session's working directory is bind-mounted at
its own path (read-write), and so is every input that lies elsewhere (read-only, e.g. under an allowed
directory) and the parent directory of every output that lies elsewhere. A command therefore needs no path
translation, and what it writes lands where the engine expects its outputs.

With ``shell`` (the default) the rendered command runs as ``/bin/sh -c COMMAND``, replacing the image's
entrypoint; without it, the command is split into words and passed to the image's entrypoint.

The container runs as the calling user's uid:gid, so its outputs belong to whoever runs the engine and it
cannot write what that user could not; in the session's working directory, with the session's environment
variables and the spec's ``env``; with no network unless the spec names one. Its main process exiting
non-zero puts the app in ERROR with the tail of its standard error; the container is removed whatever
happens. Cancelling the app (or its timeout) stops the container: SIGTERM, then SIGKILL after a grace period;
Docker's init runs as PID 1 by default so that the SIGTERM reaches the command.

The runner blocks in one ``wait`` on the container. A container is not a child process of the engine (its
processes belong to the Docker engine), so cancelling cannot signal a process group: the
:class:`CancelToken` runs a callback instead, which stops the container from a thread of its own -- the
cancelling thread is the owner loop, which must not block -- and the stopped container ends the wait.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import threading
from collections.abc import Iterator, Mapping
from typing import Annotated, Any, ClassVar, Literal, NamedTuple

import msgspec

from ..errors import Problem
from ..spec import AppSpec, DataTraits, Seconds
from .base import CancelToken, Outcome, Task
from .shell import substitute, template_problems

__all__ = ["DockerSpec", "EngineUnreachable", "check_docker", "run"]

#: Seconds a stopped container gets between SIGTERM and SIGKILL.
STOP_GRACE = 5
LOG_TAIL_LINES = 50
LOG_TAIL_CHARS = 2048
LABEL_SESSION = "dropflow.session"
LABEL_DROP = "dropflow.drop"


class DockerSpec(AppSpec, tag="docker", frozen=True, gc=False, kw_only=True):
    """Runs a command in a Docker container."""

    #: A thread waits for the container; a worker process would add nothing.
    EXECUTORS: ClassVar[tuple[str, ...]] = ("thread",)

    #: Image name, e.g. ``"debian:bookworm"`` or ``"ci/tool:1.2"``.
    image: Annotated[str, msgspec.Meta(min_length=1)]
    #: Command template; ``{port}`` placeholders become the paths of the port's drops.
    command: str
    #: Run the command with ``/bin/sh -c`` (the image needs a shell); else split it into words for the
    #: image's entrypoint.
    shell: bool = True
    #: Extra environment variables inside the container.
    env: dict[str, str] = {}
    #: Docker network mode: ``none`` (default), ``host``, or a network's name.
    network: str = "none"
    #: Pull the image when it is not on the engine (``missing``), ``always``, or ``never``.
    pull: Literal["missing", "always", "never"] = "missing"
    #: Engine address (``unix:///path`` or ``tcp://host:port``); default ``DOCKER_HOST`` or the local socket.
    docker_host: str | None = None
    #: Stop the container and fail the app after this many seconds.
    timeout: Seconds | None = None
    #: Run Docker's tiny init as PID 1: it passes signals on and reaps zombies, so a stop takes effect at
    #: once (a shell or ``sleep`` as PID 1 ignores SIGTERM and would be killed only after the grace period).
    init: bool = True


class EngineUnreachable(Exception):
    """No Docker engine answers at the address the app would use."""


def check_docker(spec: DockerSpec, kinds: Mapping[str, DataTraits]) -> list[Problem]:
    """Problems with a Docker app's template, given the kind of each linked drop (by drop id)."""
    where = spec.label()
    problems = template_problems(spec, spec.command, kinds, None)
    for field, port_map in (("inputs", spec.inputs), ("outputs", spec.outputs)):
        for port, value in port_map.items():
            for drop_id in [value] if isinstance(value, str) else value:
                # A container reaches data by a bind-mounted path, or /dev/null, which every container has.
                traits = kinds.get(drop_id)
                if traits is not None and not (traits.mountable or traits.discards):
                    kind = traits.kind
                    problems.append(
                        Problem(
                            where,
                            field,
                            f"port {port!r}: a container reaches data by path, but {drop_id!r} is a {kind} "
                            "drop; use a file or directory drop",
                        )
                    )
    return problems


# -- the engine ---------------------------------------------------------------------------------------------

_clients: dict[str | None, Any] = {}
_clients_lock = threading.Lock()


def _where(docker_host: str | None) -> str:
    return docker_host or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def client(docker_host: str | None = None) -> Any:
    """A Docker client for the engine at ``docker_host`` (or the environment's), shared between apps.

    Raises :class:`EngineUnreachable` when no engine answers there.
    """
    with _clients_lock:
        cached = _clients.get(docker_host)
    if cached is not None:
        return cached
    import docker  # deferred: only Docker apps need the SDK

    try:
        made = docker.from_env() if docker_host is None else docker.DockerClient(base_url=docker_host)
        made.ping()
    except docker.errors.DockerException as exc:
        reason = str(exc).split(": ", 1)[-1]
        raise EngineUnreachable(
            f"no Docker engine is reachable at {_where(docker_host)} ({reason}); start the Docker daemon, "
            "or point DOCKER_HOST (or the drop's docker_host) at one"
        ) from None
    with _clients_lock:
        return _clients.setdefault(docker_host, made)


# -- rendering ----------------------------------------------------------------------------------------------


class _Link(NamedTuple):
    port: str
    path: str
    directory: bool
    output: bool


def _links(task: Task) -> Iterator[_Link]:
    """Every linked drop with its path; null drops, and failed or skipped inputs, read as /dev/null."""
    for ref in task.inputs:
        path = None if ref.store is None or ref.traits.discards else ref.store.fspath()
        yield _Link(ref.port, path or "/dev/null", ref.traits.directory, False)
    for out in task.outputs:
        path = None if out.traits.discards else out.store.fspath()
        yield _Link(out.port, path or "/dev/null", out.traits.directory, True)


def render(task: Task, spec: DockerSpec) -> str:
    words: dict[str, list[str]] = {}
    for link in _links(task):
        words.setdefault(link.port, []).append(shlex.quote(link.path))
    fields: dict[str, str] = {port: " ".join(w) for port, w in words.items()}
    fields.setdefault("session_id", shlex.quote(task.session_id))
    fields.setdefault("drop_id", shlex.quote(task.spec.id))
    fields.setdefault("workdir", shlex.quote(task.workdir))
    return substitute(spec.command, fields)


def _under(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip(os.sep) + os.sep)


def bind_mounts(task: Task) -> dict[str, bool]:
    """Host path -> read-only, for the session directory and every drop path outside it.

    An output file may not exist yet (and a bind mount of a missing file would make Docker create a
    directory in its place), so for an output outside the workspace its parent directory is mounted.
    """
    workdir = os.path.abspath(task.workdir)
    mounts: dict[str, bool] = {workdir: False}
    for link in _links(task):
        path = link.path
        if path == "/dev/null" or _under(path, workdir):
            continue
        if link.output:
            mounts[path if link.directory else os.path.dirname(path)] = False
        else:
            mounts.setdefault(path, True)
    # A mount inside another one is redundant (and its mode would be ambiguous): keep the outer one.
    tops = sorted(mounts, key=len)
    kept: dict[str, bool] = {}
    for path in tops:
        outer = next((k for k in kept if _under(path, k)), None)
        if outer is None:
            kept[path] = mounts[path]
        elif not mounts[path]:
            kept[outer] = False
    return kept


def _container_args(task: Task, spec: DockerSpec) -> dict[str, Any]:
    from docker.types import Mount

    command = render(task, spec)
    args: dict[str, Any] = {
        "image": spec.image,
        "user": f"{os.getuid()}:{os.getgid()}",
        "working_dir": task.workdir,
        "environment": {**task.env(), **spec.env},
        "network_mode": spec.network,
        "labels": {LABEL_SESSION: task.session_id, LABEL_DROP: task.spec.id},
        "mounts": [
            Mount(target=path, source=path, type="bind", read_only=ro)
            for path, ro in bind_mounts(task).items()
        ],
        "init": spec.init,
        "detach": True,
    }
    if spec.shell:
        args.update(entrypoint=["/bin/sh", "-c"], command=[command])
    else:
        args["command"] = shlex.split(command)
    return args


# -- running ------------------------------------------------------------------------------------------------


def _ensure_image(docker_client: Any, spec: DockerSpec) -> None:
    import docker

    if spec.pull == "always":
        _pull(docker_client, spec.image)
        return
    try:
        docker_client.images.get(spec.image)
    except docker.errors.ImageNotFound:
        if spec.pull == "never":
            raise _Failed(f"image {spec.image!r} is not on the Docker engine (and pull is 'never')") from None
        _pull(docker_client, spec.image)


def _pull(docker_client: Any, image: str) -> None:
    import docker

    try:
        docker_client.images.pull(image)
    except docker.errors.DockerException as exc:
        raise _Failed(f"cannot pull image {image!r}: {_explain(exc)}") from None


def _explain(exc: Exception) -> str:
    explanation = getattr(exc, "explanation", None)
    return str(explanation or exc)


class _Failed(Exception):
    """Ends a run with this message as the app's error."""


def _wait(container: Any, token: CancelToken, timeout: float | None) -> int | None:
    """The container's exit status, or None if the app was cancelled or timed out first."""
    import requests

    token.on_cancel(lambda: threading.Thread(target=_stop, args=(container,), daemon=True).start())
    try:
        result = container.wait(timeout=timeout)
    except requests.exceptions.ReadTimeout:
        return None
    except requests.exceptions.ConnectionError as exc:
        # The SDK reports a read that timed out as a ConnectionError wrapping a ReadTimeoutError; any other
        # connection error means the engine went away.
        if "timed out" in str(exc).lower():
            return None
        raise _Failed(f"lost the Docker engine while the container ran: {exc}") from None
    return None if token.cancelled else int(result.get("StatusCode", -1))


def _tail(container: Any, stderr: bool) -> str:
    import docker

    try:
        raw = container.logs(stdout=not stderr, stderr=stderr, tail=LOG_TAIL_LINES)
    except docker.errors.DockerException:
        return ""
    text: str = raw.decode(errors="replace").strip()
    return text[-LOG_TAIL_CHARS:]


def _failure(container: Any, status: int) -> str:
    container.reload()
    state = container.attrs.get("State", {})
    how = "killed: out of memory" if state.get("OOMKilled") else f"exit status {status}"
    err = _tail(container, stderr=True)
    if err:
        return f"container failed ({how}); stderr:\n{err}"
    out = _tail(container, stderr=False)
    return f"container failed ({how})" + (f"; output:\n{out}" if out else "")


def _stop(container: Any) -> None:
    import docker

    with contextlib.suppress(docker.errors.DockerException):  # already gone: removal makes sure
        container.stop(timeout=STOP_GRACE)


def _remove(container: Any) -> None:
    import docker

    # Gone already, or an engine that refuses now and would refuse a retry too: the labels name a leftover.
    with contextlib.suppress(docker.errors.DockerException):
        container.remove(force=True)


def run(task: Task, token: CancelToken) -> Outcome:
    spec = task.spec
    assert isinstance(spec, DockerSpec)
    import docker

    try:
        engine = client(spec.docker_host)
        _ensure_image(engine, spec)
        args = _container_args(task, spec)
    except (EngineUnreachable, _Failed) as exc:
        return Outcome.failed(str(exc))
    if token.cancelled:
        return Outcome.failed("cancelled")
    try:
        container = engine.containers.create(**args)
    except docker.errors.DockerException as exc:
        return Outcome.failed(f"cannot create a container of {spec.image!r}: {_explain(exc)}")
    try:
        try:
            container.start()
        except docker.errors.DockerException as exc:
            return Outcome.failed(f"cannot start a container of {spec.image!r}: {_explain(exc)}")
        try:
            status = _wait(container, token, spec.timeout)
        except _Failed as exc:
            return Outcome.failed(str(exc))
        if status is None:
            _stop(container)
            if token.cancelled:
                return Outcome.failed("cancelled")
            assert spec.timeout is not None
            err = _tail(container, stderr=True)
            return Outcome.failed(
                f"timed out after {spec.timeout:g} s; container stopped"
                + (f"; stderr:\n{err}" if err else "")
            )
        if status != 0:
            return Outcome.failed(_failure(container, status))
    finally:
        _remove(container)
    return Outcome(True, stores={ref.drop_id: ref.store for ref in task.outputs})
