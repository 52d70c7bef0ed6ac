"""DALiuGE's PyFuncApp: a Python function called the way DALiuGE 6.6 calls it (graphs in DALiuGE's format).

Theory of operation
-------------------
dropflow's own ``python`` kind is strict: every input port must be a parameter, every required parameter
must be given, several output ports take a dict. Graphs drawn for DALiuGE rely on its looser convention,
which this kind reproduces:

- **The function** is named as DALiuGE names it: ``module.attr.attr`` (the module is the longest prefix
  that imports), a builtin by its bare name (``compile``), and a name whose first part is a builtin is that
  builtin (DALiuGE resolves ``object.__init__`` to ``object``); a trailing ``__init__`` or ``__class__``
  stands for its class.
- **Arguments.** Each positional-or-keyword parameter of the function gets a value: the graph's value of
  that name (``params``, only values that are not empty: DALiuGE's ``value or default``), else the
  parameter's default, else None. An input port of the same name overrides it with the drop's value, read
  as the port's DALiuGE encoding says (``encodings``; ``pickle`` when none is given): ``pickle`` / ``dill``
  unpickle, ``npy`` loads an array, ``eval`` evaluates a literal, ``utf-8`` gives the bytes, ``path`` the
  drop's path; an encoding given as empty leaves the port unread. An input port that names no parameter is
  ignored, as are keyword-only parameters (they keep their defaults). The graph's remaining application
  arguments (``extra``) go to ``**kwargs`` and ``*args`` when the function takes them.
- **The result** goes whole to every output drop, encoded as its port's encoding says: ``pickle`` (and
  ``dill``: dropflow writes a plain pickle, protocol 4 as DALiuGE's), ``npy``, ``utf-8`` / ``eval`` (a string
  as itself, anything else as its ``repr``), ``raw`` / ``binary`` (bytes or text as they are).

A function that fails, or arguments its signature does not accept, fail the app with the exception.
"""

from __future__ import annotations

import ast
import builtins
import functools
import importlib
import inspect
import io
import pickle
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from ..errors import Problem
from ..spec import AppSpec
from .base import AppError, CancelToken, InputRef, Outcome, OutputRef, Task, format_exception
from .capture import captured

__all__ = ["DlgPythonSpec", "check", "resolve", "run"]

#: DALiuGE's default encoding of a port's data (its ``dill``, read and written here as a pickle).
DEFAULT_ENCODING = "pickle"
#: The pickle protocol DALiuGE's pickles are written with (Python's default there).
PICKLE_PROTOCOL = 4


class DlgPythonSpec(AppSpec, tag="dlg_python", frozen=True, gc=False, kw_only=True):
    """Calls a Python function as DALiuGE's PyFuncApp does (see :mod:`.dlgpyfunc`)."""

    USER_CODE: ClassVar[bool] = True

    #: The function's dotted name, as DALiuGE's ``func_name`` gives it.
    func: str
    #: The graph's values for parameters of the function, by name (non-empty values only).
    params: dict[str, Any] = {}
    #: DALiuGE encoding of each port's data, by port name ("" for a port DALiuGE does not read).
    encodings: dict[str, str] = {}
    #: The graph's other application arguments, for a function that takes ``**kwargs`` (or ``*args``: the
    #: names in ``positional``).
    extra: dict[str, Any] = {}
    positional: list[str] = []


@functools.lru_cache(maxsize=1024)
def resolve(name: str) -> Callable[..., Any]:
    """The callable DALiuGE's ``func_name`` names, or AppError saying why there is none."""
    parts = name.strip().split(".")
    table = vars(builtins)
    if parts[0] in table:
        obj: Any = table[parts[0]]
    elif len(parts) < 2:
        raise AppError(f"{name!r} is not a builtin and names no module")
    else:
        if parts[-1] in ("__init__", "__class__"):
            parts = parts[:-1]
        obj = _import(parts, name)
    if not callable(obj):
        raise AppError(f"{name!r} is a {type(obj).__name__}, not a callable")
    return obj  # type: ignore[no-any-return]


def _import(parts: list[str], name: str) -> Any:
    """The attribute ``parts`` names: the longest prefix that imports as a module, then attributes."""
    error: Exception | None = None
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError as exc:
            error = error or exc
            continue
        except Exception as exc:  # a module that fails as it is imported: reported, not raised
            raise AppError(f"cannot import {'.'.join(parts[:cut])!r}: {type(exc).__name__}: {exc}") from None
        try:
            for part in parts[cut:]:
                obj = getattr(obj, part)
        except AttributeError:
            raise AppError(
                f"module {'.'.join(parts[:cut])!r} has no attribute {'.'.join(parts[cut:])!r}"
            ) from None
        return obj
    raise AppError(f"cannot import {name!r}: {type(error).__name__}: {error}") from None


def check(spec: AppSpec) -> list[Problem]:
    """The function must exist (found before anything runs, as for dropflow's own Python apps)."""
    assert isinstance(spec, DlgPythonSpec)
    try:
        resolve(spec.func)
    except AppError as exc:
        return [Problem(spec.label(), "func", str(exc))]
    return []


def _read(ref: InputRef, encoding: str) -> Any:
    """An input drop's value, read as DALiuGE reads a port of ``encoding``."""
    store = ref.store
    if store is None:
        return None
    if encoding in ("path", "dataurl"):
        path = store.fspath()
        return path if path is not None else bytes(store.buffer())
    data = bytes(store.buffer())
    if encoding == "npy":
        return np.load(io.BytesIO(data), allow_pickle=True)
    if encoding == "utf-8":
        return data
    if encoding == "eval":
        text = data.decode()
        return ast.literal_eval(text) if text else None
    if encoding == "binary":
        return data.decode() if data else 0
    return pickle.loads(data) if data else None  # pickle, dill, raw and any other: DALiuGE's dill


def _encode(value: Any, encoding: str) -> bytes:
    """A result as DALiuGE writes it to a port of ``encoding``."""
    if encoding in ("utf-8", "eval"):
        return (value if isinstance(value, str) else repr(value)).encode()
    if encoding == "npy":
        buf = io.BytesIO()
        np.save(buf, value if isinstance(value, np.ndarray) else np.array(value), allow_pickle=False)
        return buf.getvalue()
    if encoding in ("raw", "binary"):
        if isinstance(value, str):
            return value.encode()
        if isinstance(value, bytes | bytearray | memoryview):
            return bytes(value)
        raise AppError(f"a {encoding} port takes bytes or text, not {type(value).__name__}")
    if encoding in ("path", "dataurl"):
        raise AppError(f"DALiuGE cannot write a result to a port of encoding {encoding!r}")
    return pickle.dumps(value, protocol=PICKLE_PROTOCOL)


def _arguments(
    spec: DlgPythonSpec, func: Callable[..., Any], inputs: list[InputRef]
) -> tuple[list[Any], dict[str, Any]]:
    """The positional and keyword arguments DALiuGE calls ``func`` with."""
    try:
        parameters = inspect.signature(func).parameters
    except (TypeError, ValueError):
        # No signature (some C functions): DALiuGE passes the graph's other arguments, in order, positionally.
        return list(spec.extra.values()), {}
    named = {
        name: p for name, p in parameters.items() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    }
    kwargs: dict[str, Any] = {}
    for name, p in named.items():
        value = spec.params.get(name)
        kwargs[name] = value if value is not None else (None if p.default is p.empty else p.default)
    # DALiuGE looks at no more inputs than the function has parameters.
    keyword_only = sum(p.kind is p.KEYWORD_ONLY for p in parameters.values())
    count = min(len(inputs), len(parameters) + keyword_only) if parameters else len(inputs)
    for ref in inputs[:count]:
        if ref.port not in named:
            continue
        encoding = spec.encodings.get(ref.port, DEFAULT_ENCODING)
        if encoding:
            kwargs[ref.port] = _read(ref, encoding)
    args: list[Any] = []
    kinds = {p.kind for p in parameters.values()}
    if inspect.Parameter.VAR_KEYWORD in kinds:
        kwargs.update({k: v for k, v in spec.extra.items() if k not in spec.positional and k not in named})
    if inspect.Parameter.VAR_POSITIONAL in kinds:
        args = [v for k, v in spec.extra.items() if k in spec.positional and k not in named]
    return args, kwargs


def _write(refs: list[OutputRef], spec: DlgPythonSpec, value: Any) -> None:
    for ref in refs:
        data = _encode(value, spec.encodings.get(ref.port) or DEFAULT_ENCODING)
        ref.store.put([data])


def run(task: Task, token: CancelToken) -> Outcome:
    spec = task.spec
    assert isinstance(spec, DlgPythonSpec)
    with captured() as printed:
        try:
            func = resolve(spec.func)
            args, kwargs = _arguments(spec, func, task.inputs)
            value = func(*args, **kwargs)
            _write(task.outputs, spec, value)
        except AppError as exc:
            outcome = Outcome.failed(str(exc))
        except Exception as exc:  # the function failed, or was given arguments it does not take
            outcome = Outcome.failed(format_exception(exc, skip_frames=1))
        else:
            outcome = Outcome(True, stores={ref.drop_id: ref.store for ref in task.outputs})
    outcome.stdout, outcome.stderr = printed.out.text(), printed.err.text()
    return outcome
