"""The graph fuzzer: hostile mutations of real graphs, and the check that every one is handled cleanly.

Theory of operation
-------------------
The *corpus* is every graph the project and DALiuGE's test package ship: the native logical and physical
graphs of ``examples/`` and of ``tests/fuzz/seeds/`` (every construct and kind, and an EAGLE graph of
DALiuGE's loop rules, app-to-app links and foreign components), native physical graphs made by translating
the logical ones, the EAGLE ``.graph`` files and the
DALiuGE physical graphs (``.spec``, ``*PG.graph``) of the ``eagle-test-graphs`` package. Each is decoded once,
and every path into its JSON tree is listed, so that a mutation can pick a place with one draw.

A *case* is a seed graph and one to four mutations, drawn by Hypothesis (which shrinks a failure to the
fewest, simplest mutations): a hostile value put at a place (wrong types, huge and negative numbers, NUL and
unicode, paths out of the workspace), a deleted key or element, a duplicated element (duplicate ids), a kind
swapped for another (app kinds, data kinds, EAGLE categories, constructs), a link turned into a self-link or
reversed into a cycle, a value wrapped ~20,000 deep, or damage to the bytes themselves. Mutations copy only
the containers on their path, so a case costs what its encoding costs.

:func:`check` runs the case through ``dropflow validate`` in this process -- the command's own ``main``, on a
file -- under a watchdog. The outcome is *accepted*, *refused* (exit 2, every problem naming its place) or a
*failure*: an exception out of ``main`` (a traceback), a hang, or a refusal that names nothing.
"""

from __future__ import annotations

import contextlib
import glob
import io
import json
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import daliuge_tests
import msgspec
from hypothesis import strategies as st

from dropflow.cli import main
from dropflow.drops import kinds
from dropflow.drops.graph import encode_physical

__all__ = ["CORPUS", "Case", "Hang", "Outcome", "Seed", "case", "check", "encode", "render"]

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.normpath(os.path.join(HERE, "..", "..", "examples"))
DALIUGE = os.path.dirname(daliuge_tests.__file__)

Path = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Seed:
    name: str
    #: "logical", "physical" (native), "eagle" or "daliuge-physical".
    format: str
    doc: Any
    #: Every path into the tree (to a value of any type), root excluded.
    paths: tuple[Path, ...]
    #: Paths to lists and dicts (where elements can be duplicated or deleted).
    containers: tuple[Path, ...]
    #: Paths to link objects (native "links", EAGLE "linkDataArray") and app port dicts.
    links: tuple[Path, ...]
    #: Paths to the values that say what a thing is (kind, category, construct, ...).
    kinds: tuple[Path, ...]
    #: Paths to values that matter: sizes, paths, commands, ids, links (and EAGLE fields of those names).
    targets: tuple[Path, ...]


_KIND_KEYS = frozenset({"kind", "app", "data", "construct", "category", "categoryType", "type", "dropclass"})
#: Names of the fields a hostile value is most worth putting in (as keys, or as EAGLE fields' names).
_TARGET_NAMES = """
    copies iterations width clamp seconds size ranks nodes data path command func kwargs codec codecs retries
    lifespan timeout error_tolerance executor inputs outputs id oid parent parentId from to fromPort toPort
    from_port to_port loop closesLoop num_of_copies num_of_inputs num_of_iter num_of_procs maxprocs sleep_time
    filepath dirname greet func_name func_code group_start group_end persist format version params default
    seed low high axis function image env launcher mpirun launcher_args integer reduce_axes value_port
    rest_port loop_aware
"""
_TARGETS = frozenset(_TARGET_NAMES.split())


def _walk(doc: Any, path: Path = ()) -> Iterator[tuple[Path, Any]]:
    stack = [(path, doc)]
    while stack:
        p, value = stack.pop()
        if p:
            yield p, value
        if isinstance(value, dict):
            stack += [((*p, k), v) for k, v in value.items()]
        elif isinstance(value, list):
            stack += [((*p, i), v) for i, v in enumerate(value)]


def _seed(name: str, doc: Any) -> Seed:
    paths: list[Path] = []
    containers: list[Path] = [()]
    links: list[Path] = []
    kind_paths: list[Path] = []
    targets: list[Path] = []
    for p, value in _walk(doc):
        if p[-1] in _TARGETS:
            targets.append(p)
        elif isinstance(value, dict) and value.get("name") in _TARGETS:  # an EAGLE field
            targets += [(*p, k) for k in ("value", "defaultValue") if k in value]
        paths.append(p)
        if isinstance(value, dict | list):
            containers.append(p)
        if isinstance(value, dict) and (
            ("from" in value and "to" in value) or (p[-1] in ("inputs", "outputs") and value)
        ):
            links.append(p)
        if p[-1] in _KIND_KEYS and isinstance(value, str):
            kind_paths.append(p)
    if isinstance(doc, list):
        fmt = "daliuge-physical"
    elif isinstance(doc, dict) and doc.get("format") in ("dropflow/logical-graph", "dropflow/physical-graph"):
        fmt = doc["format"].split("/")[1].split("-")[0]
    else:
        fmt = "eagle"
    return Seed(
        name,
        fmt,
        doc,
        tuple(sorted(paths, key=repr)),
        tuple(containers),
        tuple(links),
        tuple(kind_paths),
        tuple(sorted(targets, key=repr)) or tuple(paths[:1]),
    )


def _short(path: str) -> str:
    """A seed's name: its path under examples/ or under the eagle-test-graphs package."""
    for top, label in ((EXAMPLES, "examples"), (DALIUGE, "daliuge_tests"), (HERE, "tests/fuzz")):
        if path.startswith(top + os.sep):
            return label + "/" + os.path.relpath(path, top)
    return path


def _translated(path: str) -> bytes | None:
    """A native physical graph made from a logical example (the physical format's own seeds)."""
    from dropflow.translator import read, translate

    with open(path, "rb") as f:
        data = f.read()
    try:
        return encode_physical(translate(read(data)).specs, name="seed")
    except Exception:
        return None


def _load_corpus() -> list[Seed]:
    files = sorted(glob.glob(os.path.join(EXAMPLES, "*.json")) + glob.glob(os.path.join(EXAMPLES, "*.graph")))
    # Every native construct and kind, and an EAGLE graph of DALiuGE's loop rules, app-to-app links and
    # components dropflow cannot run.
    files += sorted(
        glob.glob(os.path.join(HERE, "seeds", "*.json")) + glob.glob(os.path.join(HERE, "seeds", "*.graph"))
    )
    files += sorted(
        f
        for pattern in ("**/*.graph", "**/*.spec", "engine/graphs/*.json")
        for f in glob.glob(os.path.join(DALIUGE, pattern), recursive=True)
    )
    seeds: list[Seed] = []
    for path in files:
        if os.path.getsize(path) > 400_000:
            continue  # one big seed would make every case of it slow; the small ones cover the same shapes
        with open(path, "rb") as f:
            try:
                doc = json.load(f)
            except ValueError:
                continue
        seeds.append(_seed(_short(path), doc))
    logical = sorted(
        glob.glob(os.path.join(EXAMPLES, "*.lg.json")) + glob.glob(os.path.join(HERE, "seeds", "*.lg.json"))
    )
    logical.append(os.path.join(EXAMPLES, "eagle_scatter_gather.graph"))
    for path in logical:
        data = _translated(path)
        if data is not None:
            seeds.append(_seed(os.path.basename(path) + " (translated)", json.loads(data)))
    return seeds


CORPUS: list[Seed] = _load_corpus()
#: The corpus by format: a case draws a format first, so that each gets a fair share whatever its count.
FORMATS: dict[str, list[Seed]] = {}
for _s in CORPUS:
    FORMATS.setdefault(_s.format, []).append(_s)

#: Names that mean a kind somewhere: dropflow kinds, EAGLE categories and types, constructs.
VOCABULARY: list[str] = sorted(
    {
        *kinds.kind_names(),
        "scatter",
        "gather",
        "loop",
        "groupby",
        "subgraph",
        "frobnicate",
        "Scatter",
        "Gather",
        "Loop",
        "GroupBy",
        "SubGraph",
        "MKN",
        "Comment",
        "GlobalVariable",
        "PythonApp",
        "PyFuncApp",
        "BashShellApp",
        "Memory",
        "File",
        "SharedMemory",
        "NGAS",
        "Plasma",
        "Mpi",
        "Docker",
        "Data",
        "Application",
        "Construct",
        "Control",
        "app",
        "plain",
        "dlg.apps.simple.HelloWorldApp",
        "dlg.apps.simple.SleepApp",
        "dlg.data.drops.file.FileDROP",
    }
)

HOSTILE: list[Any] = [
    None,
    True,
    False,
    0,
    1,
    -1,
    -5,
    0.5,
    -0.5,
    1000,
    30_000,
    2**31,
    10**7,
    10**9,
    2**63 - 1,
    2**63,
    2**64,
    -(2**63) - 1,
    10**30,
    1e308,
    -1e308,
    "",
    " ",
    "x",
    "\x00",
    "a\x00b",
    "\u202e\u200b\ufeff☃",
    "é" * 300,
    "../../../../tmp/escaped",
    "/etc/passwd",
    "sub/../../x",
    "{",
    "}",
    "{x}",
    "{0}",
    "%s%n",
    "-5",
    "1e9",
    "10000000",
    "9223372036854775808",
    "NaN",
    "os:system",
    "json:loads",
    "builtins:eval",
    "x" * 10_000,
    [],
    {},
    [1, "a", None],
    {"a": 1},
    {"param": "nope"},
    {"param": 7},
    [[[[[[[[[[]]]]]]]]]],
]


def _get(doc: Any, path: Path) -> Any:
    for key in path:
        doc = doc[key]
    return doc


def _replace(doc: Any, path: Path, fn: Any) -> Any:
    """A copy of ``doc`` with the value at ``path`` replaced by ``fn(value)`` (only the path is copied)."""
    if not path:
        return fn(doc)
    key, rest = path[0], path[1:]
    if isinstance(doc, dict) and key in doc:
        out = dict(doc)
        out[key] = _replace(doc[key], rest, fn)
        return out
    if isinstance(doc, list) and isinstance(key, int) and -len(doc) <= key < len(doc):
        out2 = list(doc)
        out2[key] = _replace(doc[key], rest, fn)
        return out2
    raise LookupError(path)


def _delete(doc: Any, path: Path) -> Any:
    def drop(container: Any) -> Any:
        key = path[-1]
        if isinstance(container, dict):
            return {k: v for k, v in container.items() if k != key}
        if isinstance(container, list) and isinstance(key, int) and key < len(container):
            return container[:key] + container[key + 1 :]
        raise LookupError(path)

    return _replace(doc, path[:-1], drop)


def _self_link(link: Any) -> Any:
    if isinstance(link, dict) and "from" in link and "to" in link:
        return {**link, "to": link["from"], "toPort": link.get("fromPort"), "to_port": link.get("from_port")}
    if isinstance(link, dict) and link:  # app ports: one port names the drop of another
        values = list(link.values())
        return dict.fromkeys(link, values[0])
    raise LookupError("not a link")


def _reverse(link: Any) -> Any:
    if isinstance(link, dict) and "from" in link and "to" in link:
        out = {**link, "from": link["to"], "to": link["from"]}
        for a, b in (("fromPort", "toPort"), ("from_port", "to_port")):
            if a in link or b in link:
                out[a], out[b] = link.get(b), link.get(a)
        return {k: v for k, v in out.items() if v is not None}
    raise LookupError("not a link")


@dataclass(frozen=True, slots=True)
class Case:
    seed: str
    ops: tuple[str, ...]
    data: bytes

    def __repr__(self) -> str:  # what Hypothesis prints for a failing case: short and reproducible
        return f"Case(seed={self.seed!r}, ops={list(self.ops)!r}, {len(self.data)} bytes)"


def encode(doc: Any) -> bytes:
    try:
        return msgspec.json.encode(doc)
    except (TypeError, OverflowError, msgspec.EncodeError):
        return json.dumps(doc).encode()


#: Mutations, weighted by repetition: hostile values in the fields that matter come up most.
OPS = ("target", "target", "target", "value", "delete", "duplicate", "kind", "link", "nest", "bytes")


@st.composite
def case(draw: st.DrawFn) -> Case:
    """A seed graph with one to four hostile mutations."""
    seed = draw(st.sampled_from(FORMATS[draw(st.sampled_from(sorted(FORMATS)))]))
    doc = seed.doc
    ops: list[str] = []
    nests: list[tuple[str, int, bool, Any]] = []
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(OPS))
        try:
            if op in ("value", "target"):
                path = draw(st.sampled_from(seed.targets if op == "target" else seed.paths))
                value = draw(st.sampled_from(HOSTILE))
                doc = _replace(doc, path, lambda _old, v=value: v)
                ops.append(f"set {list(path)} = {value!r:.60}")
            elif op == "delete":
                path = draw(st.sampled_from(seed.paths))
                doc = _delete(doc, path)
                ops.append(f"delete {list(path)}")
            elif op == "duplicate":
                path = draw(st.sampled_from(seed.containers))
                target = _get(doc, path)
                if isinstance(target, list) and target:
                    i = draw(st.integers(0, len(target) - 1))
                    doc = _replace(doc, path, lambda lst, i=i: [*lst, lst[i]])
                    ops.append(f"duplicate {list(path)}[{i}]")
                elif isinstance(target, dict) and target:
                    key = draw(st.sampled_from(sorted(target, key=str)))
                    doc = _replace(doc, path, lambda d, k=key: {**d, f"{k}_": d[k]})
                    ops.append(f"copy key {list(path)}[{key!r}]")
            elif op == "kind":
                if not seed.kinds:
                    continue
                path = draw(st.sampled_from(seed.kinds))
                value = draw(st.sampled_from(VOCABULARY))
                doc = _replace(doc, path, lambda _old, v=value: v)
                ops.append(f"kind {list(path)} = {value!r}")
            elif op == "link":
                if not seed.links:
                    continue
                path = draw(st.sampled_from(seed.links))
                how = draw(st.sampled_from(("self", "reverse", "add-reversed")))
                if how == "self":
                    doc = _replace(doc, path, _self_link)
                elif how == "reverse":
                    doc = _replace(doc, path, _reverse)
                else:
                    reversed_link = _reverse(_get(doc, path))
                    doc = _replace(doc, path[:-1], lambda lst, r=reversed_link: [*lst, r])
                ops.append(f"{how} link {list(path)}")
            elif op == "nest":
                path = draw(st.sampled_from(seed.paths))
                depth = draw(st.sampled_from((3, 200, 1_000, 20_000)))
                as_dict = draw(st.booleans())
                # Nested at the byte level after encoding: encoders recurse, and 20,000 levels overflow them.
                marker = f"\x01nest{len(nests)}\x01"
                nests.append((marker, depth, as_dict, _get(doc, path)))
                doc = _replace(doc, path, lambda _old, m=marker: m)
                ops.append(f"nest {list(path)} {depth} deep in {'objects' if as_dict else 'lists'}")
            else:
                ops.append("bytes")  # applied below, to the encoding
        except (LookupError, TypeError):
            continue
    data = encode(doc)
    for marker, depth, as_dict, value in nests:
        open_, close = (b'{"n":', b"}") if as_dict else (b"[", b"]")
        data = data.replace(encode(marker), open_ * depth + encode(value) + close * depth)
    if "bytes" in ops:
        how = draw(st.sampled_from(("truncate", "flip", "prefix-deep", "nul")))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if how == "truncate":
            data = data[:at]
        elif how == "flip":
            data = data[:at] + bytes([data[at] ^ 0x20 if data else 0]) + data[at + 1 :]
        elif how == "prefix-deep":
            data = b"[" * 20_000 + data + b"]" * 20_000
        else:
            data = data[:at] + b"\x00" + data[at:]
        ops[ops.index("bytes")] = f"bytes {how} at {at}"
    return Case(seed.name, tuple(ops), data)


class Hang(Exception):
    """The watchdog's alarm: a case took longer than its allowance."""


@dataclass(frozen=True, slots=True)
class Outcome:
    #: "accepted", "refused", or a failure: "traceback", "hang", "vague".
    kind: str
    detail: str


@contextlib.contextmanager
def _watchdog(seconds: float) -> Iterator[None]:
    def alarm(_signum: int, _frame: Any) -> None:
        raise Hang(f"still running after {seconds} s")

    # pytest-timeout may have its own alarm running: keep what is left of it, and put it back after.
    old = signal.signal(signal.SIGALRM, alarm)
    outer, _interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    start = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        if outer:
            signal.setitimer(signal.ITIMER_REAL, max(outer - (time.monotonic() - start), 0.001))


def render(exc: BaseException) -> str:
    """Where an exception came from: its type, message and the innermost dropflow frame."""
    import traceback

    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "dropflow" in f.filename]
    at = f" at {frames[-1].filename.split('dropflow/', 1)[-1]}:{frames[-1].lineno}" if frames else ""
    return f"{type(exc).__name__}{at}: {str(exc)[:200]}"


#: Where the seeds' Python functions import from, given to every ``validate`` (in this process and in a
#: subprocess alike): a case is written to a temporary directory, so the graph's own folder -- which
#: ``validate`` puts on the path -- holds none of them, and what this process happened to import before (an
#: earlier test's example) must not decide a verdict.
IMPORT_FLAGS = ("--pythonpath", EXAMPLES, "--pythonpath", os.path.normpath(os.path.join(HERE, "..", "apps")))


def check(c: Case, path: str, seconds: float = 10.0) -> Outcome:
    """Validate one case with ``dropflow validate`` (in this process); how it went."""
    with open(path, "wb") as f:
        f.write(c.data)
    out, err = io.StringIO(), io.StringIO()
    try:
        with _watchdog(seconds), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["validate", path, *IMPORT_FLAGS])
    except Hang as exc:
        return Outcome("hang", str(exc))
    except BaseException as exc:  # anything out of main would be a traceback for the user
        return Outcome("traceback", render(exc))
    text = err.getvalue()
    if code == 0:
        return Outcome("accepted", out.getvalue())
    if code != 2 or "Traceback" in text:
        return Outcome("traceback", f"exit {code}: {text[:300]}")
    lines = [line for line in text.splitlines()[1:] if line.strip()]
    if not lines:
        return Outcome("vague", f"refusal with no problem listed: {text[:300]}")
    for line in lines:
        if line.strip().startswith("... and"):
            continue
        if not line.startswith(path + ": ") or "object at 0x" in line:
            return Outcome("vague", f"refusal that names no place: {line[:300]}")
        rest = line[len(path) + 2 :]
        if not rest or rest.startswith(":"):
            return Outcome("vague", f"refusal that names no place: {line[:300]}")
    return Outcome("refused", text)
