"""DALiuGE's categories and drop classes, mapped onto dropflow kinds (shared by the EAGLE and PG readers).

Theory of operation
-------------------
A DALiuGE component is known by its ``category`` (Memory, PythonApp, BashShellApp, ...) and the Python
class in ``dropclass``. Classes are matched by their last name (``InMemoryDROP``, ``SleepApp``), which
survives DALiuGE's module moves between versions; the category decides where the class does not (a
``PyFuncApp`` is a Python function whatever its category says). Each match turns the component's flat
parameters (field name -> value, values often strings in EAGLE files) into the fields of a dropflow spec.

What has no dropflow equivalent -- dynamic libraries, services, NGAS or S3 storage, an app class of the
user's own that dropflow cannot import as a function, a component left incomplete -- still translates,
since translation needs only the graph's structure: it becomes a ``foreign_app`` or ``foreign_data`` drop
(:mod:`dropflow.drops.foreign`) that records the component and the reason, naming its category and what is
missing, and that a session refuses when it is deployed.

A component that gives a parameter a value no run could use -- a size that is not a number, an MPI app of
no ranks, a method its DALiuGE class does not have -- is not incomplete but wrong, in DALiuGE as here: it
maps to a foreign drop too (:func:`map_app` says what fits, nothing more), marked ``invalid``, and the
readers refuse the graph, naming the component and the field, as they refuse a value outside a kind's
bounds.
"""

from __future__ import annotations

import ast
import json
import math
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..drops.errors import GraphError

__all__ = ["FOREIGN_KINDS", "InvalidValue", "Mapped", "foreign", "map_app", "map_data", "split_function"]

#: The kinds of components that translate but cannot run (see :mod:`dropflow.drops.foreign`).
FOREIGN_KINDS = frozenset({"foreign_app", "foreign_data"})

_DATA_CLASSES = {
    "InMemoryDROP": "memory",
    "SharedMemoryDROP": "shm",
    "FileDROP": "file",
    "NullDROP": "null",
    "DirectoryContainer": "directory",
    "DirectoryDROP": "directory",
}
_DATA_CATEGORIES = {
    "Memory": "memory",
    "SharedMemory": "shm",
    "File": "file",
    "Directory": "directory",
    "NullDROP": "null",
    "null": "null",
    "Null": "null",
    "Start": "null",
    "End": "null",
}
_UNSUPPORTED_DATA = {
    "NGAS": "NGAS storage",
    "S3": "S3 storage",
    "Plasma": "a Plasma object store",
    "PlasmaFlight": "a Plasma Flight store",
    "RDBMS": "database drops",
    "json": "JSON drops",
    "EnvironmentVariables": "environment-variable drops",
}
_UNSUPPORTED_APPS = {
    "DynlibApp": "dynamic-library apps",
    "DynlibProcApp": "dynamic-library apps",
    "Service": "service apps",
    "Plasma": "a Plasma object store service",
    "PlasmaFlight": "a Plasma Flight service",
}


#: Parameters that configure DALiuGE itself, never arguments of the app.
_META = frozenset(
    {
        "dropclass",
        "func_name",
        "func_code",
        "input_parser",
        "output_parser",
        "execution_time",
        "num_cpus",
        "group_start",
        "group_end",
        "input_redirection",
        "output_redirection",
        "command_line_arguments",
        "paramValueSeparator",
        "argumentPrefix",
        "n_tries",
        "input_error_threshold",
        "command",
        "persist",
        "streaming",
        "pickle",
        "log_level",
        "base_name",
    }
)


class InvalidValue(GraphError):
    """A parameter given a value no run could use (not one missing, nor a component dropflow lacks)."""


@dataclass(slots=True)
class Mapped:
    kind: str
    fields: dict[str, Any] = field(default_factory=dict)
    #: DALiuGE port name -> dropflow port name (a branch's outputs become ``true`` / ``false``).
    rename: dict[str, str] = field(default_factory=dict)
    #: A foreign drop's reason when it is a wrong value: the graph is invalid, and readers refuse it.
    invalid: InvalidValue | None = None
    #: Fields made from *all* of a component's parameters (name -> the function of them that makes it): a
    #: reader that maps one drop of a kind for many fills these in for each drop.
    per_drop: dict[str, Callable[[Mapping[str, Any]], Any]] = field(default_factory=dict)


def _class_name(dropclass: str) -> str:
    return dropclass.rsplit(".", 1)[-1] if dropclass else ""


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _number(value: Any, default: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return default
    return number if math.isfinite(number) else default


def _integer(value: Any, where: str, field: str) -> int:
    """An integer parameter (EAGLE often writes numbers as strings, or as floats like ``4.0``)."""
    if isinstance(value, str):
        try:
            value = float(value.strip()) if "." in value or "e" in value.lower() else int(value.strip())
        except ValueError:
            raise InvalidValue.one(where, field, f"{value!r:.80} is not a number (an integer)") from None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidValue.one(where, field, f"{value!r:.80} is not a number (an integer)")
    return value


def _present(value: Any) -> bool:
    return value is not None and value != "" and value != "None"


def foreign(role: str, category: str, dropclass: str, where: str, error: GraphError) -> Mapped:
    """A component that translates but cannot run: what it was, and why (the first problem found)."""
    first = error.problems[0]
    return Mapped(
        "foreign_app" if role == "app" else "foreign_data",
        {
            "category": category,
            "dropclass": dropclass,
            "origin": where,
            "field": first.field,
            "reason": "; ".join(p.message for p in error.problems),
        },
        invalid=error if isinstance(error, InvalidValue) else None,
    )


def map_data(
    category: str,
    dropclass: str,
    values: Mapping[str, Any],
    where: str,
    args: Sequence[tuple[str, Any, bool]] = (),
) -> Mapped:
    """The dropflow data kind and fields of a DALiuGE data component (``foreign_data`` if none fits).

    ``args`` are the component's application arguments that are not ports: a parameter set's content.
    """
    try:
        if category == "ParameterSet" or _class_name(dropclass) == "ParameterSetDROP":
            return _parameter_set(values, args)
        return _map_data(category, dropclass, values, where)
    except GraphError as exc:
        return foreign("data", category, dropclass, where, exc)


def _map_data(category: str, dropclass: str, values: Mapping[str, Any], where: str) -> Mapped:
    kind = _DATA_CLASSES.get(_class_name(dropclass)) or _DATA_CATEGORIES.get(category)
    if kind is None:
        what = _UNSUPPORTED_DATA.get(category)
        if what is not None:
            raise GraphError.one(
                where,
                "category",
                f"unsupported: dropflow has no equivalent of {what} (category {category!r})",
            )
        raise GraphError.one(
            where, "category", f"unknown data category {category!r} (dropclass {dropclass or 'not given'!r})"
        )
    fields: dict[str, Any] = {}
    if _present(values.get("persist")) and _bool(values["persist"]) and kind != "shm":
        fields["persist"] = True
    if _bool(values.get("expireAfterUse", False)):
        fields["expire_after_use"] = True
    if kind in ("file", "directory"):
        path = values.get("filepath") or values.get("dirname")
        if isinstance(path, str) and path.strip():
            fields["path"] = dlg_root_path(path.strip())
    if kind == "memory":
        data = _pydata(values.get("pydata"), values.get("pydata/type"))
        if data is not None:
            fields["data"] = data
    return Mapped(kind, fields)


def _pydata(value: Any, kind: Any) -> Any:
    """The initial value of a DALiuGE memory drop (its ``pydata``, read as its ``type`` says), or None.

    A value DALiuGE would unpickle from base64 (``Object``, ``raw``) or evaluate as code (``eval``) is not
    read: dropflow runs no code a data drop carries.
    """
    if value is None or value in ("", "None"):
        return None
    kind = str(kind or "").strip().lower()
    try:
        if kind in ("int", "integer"):
            return int(value)
        if kind == "float":
            return float(value)
        if kind in ("bool", "boolean"):
            return bool(value)  # as DALiuGE does: any non-empty string is true
        if kind == "json" and isinstance(value, str):
            return json.loads(value)
    except (TypeError, ValueError, RecursionError):
        # DALiuGE keeps a value it cannot convert as its text's bytes.
        return str(value).encode()
    if kind in ("raw", "eval") or kind.split(".")[0] == "object":
        return None
    return value


_DLG_ROOT = re.compile(r"^(\$DLG_ROOT|\$\{DLG_ROOT\})(/+|$)")


def dlg_root_path(path: str) -> str:
    """A path under DALiuGE's ``$DLG_ROOT`` (its working tree) is a path in the session workspace here."""
    return _DLG_ROOT.sub("", path) or "."


def _parameter_set(values: Mapping[str, Any], args: Sequence[tuple[str, Any, bool]]) -> Mapped:
    mode = str(values.get("mode") or "yaml")
    mode = mode if mode in ("YANDA", "yaml", "ini", "json") else "yaml"
    parameters = {name: value for name, value, _ in args if name not in _META and name != "mode"}
    return Mapped("parameter_set", {"parameters": parameters, "mode": mode})


def split_function(dotted: str) -> str:
    """``pkg.mod.Class.method`` as ``pkg.mod:Class.method`` (the module ends before the first capital)."""
    parts = dotted.strip().split(".")
    if len(parts) < 2:
        return dotted
    for i, part in enumerate(parts[1:], start=1):
        if part[:1].isupper():
            return ".".join(parts[:i]) + ":" + ".".join(parts[i:])
    return ".".join(parts[:-1]) + ":" + parts[-1]


_PLACEHOLDER = re.compile(r"%[io]\[([^\]]+)\]")
_SHELL_FIELD = re.compile(r"%[io]\[([^\]]+)\]|\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _escape(text: str) -> str:
    """Literal text in a dropflow command template (braces doubled)."""
    return text.replace("{", "{{").replace("}", "}}")


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def shell_command(
    command: str, args: Sequence[tuple[str, Any, bool]], ports: Sequence[str], values: Mapping[str, Any]
) -> str:
    """A DALiuGE BashShellApp command as a dropflow shell template (``{port}`` is a drop's path).

    DALiuGE fills ``{name}`` from the app's arguments that are not ports, and ``%i[port]`` / ``%o[port]``
    (and ``{port}``) with the paths of the port's drops; every other brace -- an awk script, a shell
    ``${var}`` -- stays as written, and ``$DLG_ROOT`` and other variables are the shell's to expand
    (``$DLG_ROOT`` is the session workspace unless the environment says otherwise). Arguments not used in
    the command are appended as DALiuGE does: ``--name value``, or the bare value when positional.
    """
    named = {name: _text(value) for name, value, _ in args}
    used: set[str] = set()
    # %i[port] / %o[port] are dropflow's {port}; a brace is a placeholder only if it names a port (a path)
    # or an argument (its value, written in); every other brace is literal.
    source = command.strip()
    pieces: list[str] = []
    pos = 0
    for m in _SHELL_FIELD.finditer(source):
        port, name = m.group(1), m.group(2)
        if port is not None or name in ports:
            replacement = "{" + (port or name) + "}"
        elif name in named:
            replacement = _escape(named[name])
            used.add(name)
        else:
            continue
        pieces += [_escape(source[pos : m.start()]), replacement]
        pos = m.end()
    pieces.append(_escape(source[pos:]))
    text = "".join(pieces)
    prefix = values.get("argumentPrefix", "--")
    sep = values.get("paramValueSeparator", " ")
    words = ['export DLG_ROOT="${{DLG_ROOT:-$DROPFLOW_WORKDIR}}";' if "DLG_ROOT" in text else "", text]
    for name, value, positional in args:
        if name not in used:
            words.append(_text(value) if positional else f"{prefix}{name}{sep}{_text(value)}")
    return " ".join(w for w in words if w)


#: DALiuGE's encodings of a port's data (an application argument's ``encoding``) as dropflow codecs.
_ENCODINGS = {
    "pickle": "pickle",
    "dill": "pickle",
    "npy": "npy",
    "utf-8": "utf-8",
    "raw": "bytes",
    "binary": "bytes",
    "path": "path",
    "dataurl": "path",
}


def port_codecs(
    values: Mapping[str, Any], ports: Sequence[str], also: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The codec of each port whose DALiuGE encoding (parameter ``<port>/encoding``) says how its data is
    read or written; ``also`` adds encodings of DALiuGE's that only some kinds read alike."""
    also = also or {}
    codecs = {}
    for port in ports:
        encoding = values.get(f"{port}/encoding")
        if isinstance(encoding, str):
            key = encoding.strip().lower()
            codec = _ENCODINGS.get(key) or also.get(key)
            if codec is not None:
                codecs[port] = codec
    return codecs


def _shell(
    values: Mapping[str, Any],
    args: Sequence[tuple[str, Any, bool]],
    inputs: Sequence[str],
    outputs: Sequence[str],
    where: str,
) -> Mapped:
    command = values.get("command")
    if not isinstance(command, str) or not command.strip():
        # DALiuGE translates such an app and fails it when it is deployed; so does dropflow, when it runs.
        message = shlex.quote(f"{where}: this BashShellApp has no command")
        return Mapped("shell", {"command": f"echo {message} >&2; exit 1"})
    fields: dict[str, Any] = {"command": shell_command(command, args, [*inputs, *outputs], values)}
    # A {port} of an input port of a value encoding (pickle, utf-8, ...) is its drop's value, not its path
    # (%i[port] is always the path).
    found = [(m.group(1), m.group(2)) for m in _SHELL_FIELD.finditer(command)]
    braced = {name for _, name in found if name} - {port for port, _ in found if port}
    codecs = port_codecs(values, [p for p in inputs if p in braced], {"eval": "utf-8"})
    codecs = {port: codec for port, codec in codecs.items() if codec != "path"}
    if codecs:
        fields["codecs"] = codecs
    return Mapped("shell", fields)


def _command(values: Mapping[str, Any], where: str, kind: str) -> str:
    """A Docker/MPI component's command, DALiuGE's %i[port] / %o[port] placeholders made {port}."""
    command = values.get("command")
    if not isinstance(command, str) or not command.strip():
        raise GraphError.one(where, "command", f"unsupported: this {kind} component has no command to run")
    extra = values.get("args")
    command = _PLACEHOLDER.sub(r"{\1}", command.strip())
    return f"{command} {extra}".strip() if _present(extra) else command


def _docker(values: Mapping[str, Any], where: str) -> Mapped:
    image = values.get("image")
    if not isinstance(image, str) or not image.strip():
        raise GraphError.one(where, "image", "unsupported: this Docker component names no image")
    return Mapped("docker", {"image": image.strip(), "command": _command(values, where, "Docker")})


def _mpi(values: Mapping[str, Any], where: str) -> Mapped:
    key = next((k for k in ("num_of_procs", "maxprocs", "ranks") if _present(values.get(k))), None)
    count = 1 if key is None else _integer(values[key], where, key)
    if count < 1:
        raise InvalidValue.one(where, "num_of_procs", f"an MPI app needs at least one rank, not {count}")
    return Mapped("mpi", {"command": _command(values, where, "Mpi"), "ranks": count})


def _function(values: Mapping[str, Any], kwargs: dict[str, Any], where: str, kind: str) -> dict[str, Any]:
    code = values.get("func_code")
    name = values.get("func_name")
    if _present(code):
        if not _present(name):
            raise GraphError.one(
                where, "func_name", "inline func_code needs the name of the function it defines"
            )
        return {
            "func": "dropflow.drops.apps.daliuge:call_code",
            "kwargs": {"code": code, "function": str(name).rsplit(".", 1)[-1], **kwargs},
        }
    if not _present(name):
        raise GraphError.one(where, "func_name", f"a {kind} needs func_name (module.function) or func_code")
    func = str(name).strip()
    if func.startswith(_DLG_FUNCTIONS):
        # DALiuGE's built-in functions have equivalents of our own.
        func = "dropflow.drops.apps.dlgfunctions." + func[len(_DLG_FUNCTIONS) :]
    return {"func": split_function(func), "kwargs": kwargs}


_DLG_FUNCTIONS = "dlg.apps.simple_functions."

#: Keys of a DALiuGE drop that say where it is and what it is, never values for a function's parameters.
_DROP_KEYS = frozenset(
    {
        "oid",
        "uid",
        "iid",
        "lg_key",
        "rank",
        "loop_ctx",
        "node",
        "island",
        "humanReadableKey",
        "category",
        "categoryType",
        "storage",
        "type",
        "app",
        "weight",
        "dt",
    }
)


def _literal(text: str) -> Any:
    """A Json or Complex argument's Python literal, as DALiuGE evaluates it (kept as text if it is none)."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def _pyfunc(
    values: Mapping[str, Any],
    args: Sequence[tuple[str, Any, bool]],
    inputs: Sequence[str],
    outputs: Sequence[str],
    where: str,
) -> Mapped:
    """A PyFuncApp naming its function, called as DALiuGE calls it (:mod:`dropflow.drops.apps.dlgpyfunc`).

    Every parameter of the component is a value the function may take by name: ``params`` is made from
    them all, for each drop (``per_drop``).
    """
    name = values.get("func_name")
    if not _present(name):
        raise GraphError.one(where, "func_name", "a PyFuncApp needs func_name (module.function) or func_code")
    func = str(name).strip()
    if func.startswith(_DLG_FUNCTIONS):
        # DALiuGE's built-in functions have equivalents of our own.
        func = "dropflow.drops.apps.dlgfunctions." + func[len(_DLG_FUNCTIONS) :]
    encodings: dict[str, str] = {}
    for port in (*inputs, *outputs):
        key = f"{port}/encoding"
        if key in values:
            encoding = values[key]
            encodings[port] = encoding.strip().lower() if isinstance(encoding, str) else ""
    fields: dict[str, Any] = {"func": func, "params": pyfunc_params(values)}
    if encodings:
        fields["encodings"] = encodings
    extra = {n: v for n, v, _ in args if n not in _META}
    if extra:
        fields["extra"] = extra
        positional = [n for n, _, positional in args if positional and n in extra]
        if positional:
            fields["positional"] = positional
    return Mapped("dlg_python", fields, per_drop={"params": pyfunc_params})


def pyfunc_params(values: Mapping[str, Any]) -> dict[str, Any]:
    """The values a PyFuncApp's function may take by name: every parameter of the component that is not
    DALiuGE's own nor empty (DALiuGE takes a graph's value only when it is not: ``value or default``), a
    ``Json`` or ``Complex`` one evaluated as a Python literal."""
    params: dict[str, Any] = {}
    every = dict(values.items())  # one walk over them all (a reader notes it: see dlgplans)
    for key, value in every.items():
        if "/" in key or key in _META or key in _DROP_KEYS:
            continue
        if isinstance(value, str) and str(every.get(f"{key}/type")) in ("Json", "Complex"):
            value = _literal(value)
        if value:
            params[key] = value
    return params


def _branch_ports(outputs: Sequence[str], where: str) -> dict[str, str]:
    if set(outputs) <= {"true", "false"}:
        return {}
    if len(outputs) != 2:
        raise GraphError.one(
            where,
            "outputs",
            f"a branch has two output ports (taken, not taken); this one "
            f"has {len(outputs)}: {', '.join(outputs) or 'none'}",
        )
    # DALiuGE's branches take their first output when the condition holds.
    return {outputs[0]: "true", outputs[1]: "false"}


def map_app(
    category: str,
    dropclass: str,
    values: Mapping[str, Any],
    args: Sequence[tuple[str, Any, bool]],
    outputs: Sequence[str],
    where: str,
    inputs: Sequence[str] = (),
) -> Mapped:
    """The dropflow app kind and fields of a DALiuGE application component (``foreign_app`` if none fits).

    ``values`` are all parameters by name, ``args`` the application arguments that are not ports (name,
    value, positional), ``outputs`` the output port names in declaration order, ``inputs`` the input ports.
    """
    try:
        mapped = _map_app(category, dropclass, values, args, outputs, where, inputs)
    except GraphError as exc:
        return foreign("app", category, dropclass, where, exc)
    return _one_way(mapped, inputs, outputs)


def _one_way(mapped: Mapped, inputs: Sequence[str], outputs: Sequence[str]) -> Mapped:
    """An app whose port is both an input and an output (DALiuGE's ``InputOutput`` usage) gets an output port
    of its own name, ``<port>_out``: dropflow ports have one direction. A pick_one's rest ports follow."""
    both = set(inputs).intersection(outputs)
    if not both:
        return mapped
    taken = {*inputs, *outputs, *mapped.rename.values()}
    for port in outputs:
        if port in both and port not in mapped.rename:
            new = f"{port}_out"
            while new in taken:
                new += "_out"
            taken.add(new)
            mapped.rename[port] = new
    if mapped.kind == "pick_one":
        mapped.fields["rest_ports"] = [mapped.rename.get(p, p) for p in mapped.fields["rest_ports"]]
    encodings = mapped.fields.get("encodings")
    if encodings:
        for port, new in mapped.rename.items():
            if port in encodings:
                encodings[new] = encodings[port]
    return mapped


def _map_app(
    category: str,
    dropclass: str,
    values: Mapping[str, Any],
    args: Sequence[tuple[str, Any, bool]],
    outputs: Sequence[str],
    where: str,
    ports: Sequence[str] = (),
) -> Mapped:
    cls = _class_name(dropclass)
    args = [a for a in args if a[0] not in _META]
    kwargs = {name: value for name, value, _ in args}
    if category in _UNSUPPORTED_APPS:
        raise GraphError.one(
            where,
            "category",
            f"unsupported: dropflow cannot run {_UNSUPPORTED_APPS[category]} (category {category!r})",
        )
    if category == "Docker" or cls in ("DockerApp",):
        return _docker(values, where)
    if category == "Mpi" or cls in ("MPIApp", "MpiApp"):
        return _mpi(values, where)
    if cls in ("SleepApp", "SleepAndCopyApp"):
        # DALiuGE's default is no sleep; older graphs name the field sleepTime.
        raw = values.get("sleep_time", values.get("sleepTime"))
        seconds = max(0.0, _number(raw if _present(raw) else values.get("sleepTime"), 0.0))
        if cls == "SleepAndCopyApp":
            return Mapped("sleep_copy", {"seconds": seconds})
        return Mapped("sleep", {"seconds": seconds}) if seconds > 0 else Mapped("noop")
    if cls in ("CopyApp", "GenericGatherApp"):
        return Mapped("copy")
    if cls == "ArrayGatherApp":
        return Mapped("array_gather")
    if cls == "AverageArraysApp":
        method = str(values.get("method") or "mean")
        if method not in ("mean", "median"):
            raise InvalidValue.one(where, "method", f"{method!r:.80} is not mean or median")
        return Mapped("average_arrays", {"method": method})
    if cls == "UrlRetrieveApp":
        url = values.get("url")
        if not _present(url):
            raise GraphError.one(where, "url", "this UrlRetrieveApp names no url")
        return Mapped("url_retrieve", {"url": str(url)})
    if cls in ("NullBarrierApp", "NoOpApp"):
        return Mapped("noop")
    if cls == "HelloWorldApp":
        greet = values.get("greet")
        return Mapped("hello", {"greet": str(greet)} if _present(greet) else {})
    if cls == "RandomArrayApp":
        fields: dict[str, Any] = {}
        if _present(values.get("size")):
            fields["size"] = _integer(values["size"], where, "size")
        if _present(values.get("integer")):
            fields["integer"] = _bool(values["integer"])
        for key in ("low", "high"):
            if _present(values.get(key)):
                fields[key] = _number(values[key], 0.0)
        return Mapped("random_array", fields)
    if cls == "PickOne":
        # The rest goes to the outputs named rest_array, the picked value to every other one.
        return Mapped("pick_one", {"rest_ports": [p for p in outputs if p == "rest_array"]})
    if cls in ("GenericScatterApp", "GenericNpyScatterApp"):
        return Mapped("scatter_array", {"element": True} if _bool(values.get("element", False)) else {})
    if cls == "GenericNpyGatherApp":
        fields = {"function": str(values.get("function") or "sum")}
        axes = values.get("reduce_axes")
        if _present(axes):
            try:
                fields["axis"] = int(str(axes).strip("[]() ").split(",")[0])
            except ValueError:
                raise InvalidValue.one(where, "reduce_axes", f"{axes!r:.80} is not an axis number") from None
        return Mapped("npy_gather", fields)
    if cls == "SimpleBranch":
        if len(outputs) == 2 or category == "Branch":
            fields = {
                "func": "dropflow.drops.apps.daliuge:constant",
                "kwargs": {"result": _bool(values.get("result", True))},
            }
            return Mapped("branch", fields, _branch_ports(outputs, where))
        # Used as a placeholder app with other than two outputs: it does nothing, like a barrier.
        return Mapped("noop")
    if category == "Branch" or cls in ("Branch", "BranchAppDrop"):
        return Mapped("branch", _function(values, kwargs, where, "branch"), _branch_ports(outputs, where))
    if cls == "PyFuncApp" or category in ("PyFuncApp", "PythonMemberFunction", "PythonFunction"):
        if _present(values.get("func_code")):
            return Mapped("python", _function(values, kwargs, where, "PyFuncApp"))
        return _pyfunc(values, args, ports, outputs, where)
    if cls == "BashShellApp" or category == "BashShellApp":
        return _shell(values, args, ports, outputs, where)
    if not dropclass:
        raise GraphError.one(
            where,
            "dropclass",
            f"unsupported: this {category} component has no dropclass, so there is nothing to run",
        )
    if dropclass.startswith("dlg."):
        raise GraphError.one(
            where,
            "dropclass",
            f"unsupported: DALiuGE class {dropclass!r} (category {category!r}) has no dropflow equivalent",
        )
    raise GraphError.one(
        where,
        "dropclass",
        f"unsupported: custom app class {dropclass!r} (category "
        f"{category!r}) cannot run in dropflow; expose it as a function (PyFuncApp)",
    )
