"""Graph-level parameters: declared with a default and a type, overridden at translation time.

Theory of operation
-------------------
A logical graph declares parameters (``"params": {"copies": {"default": 4, "type": "int"}}``, or just
``"params": {"copies": 4}``, whose type is then the default's). Field values anywhere in the graph refer to
one with ``{"param": "copies"}``. Overrides arrive as strings (``--param copies=8``) and are converted by the
declared type, so ``copies`` stays an integer; an override that names no declared parameter, or does not
convert, is an error naming the parameter. Substitution walks a field's value once; it never evaluates code.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..drops.errors import GraphError, Problem

__all__ = ["PARAM_TYPES", "Param", "convert", "declare", "resolve", "substitute"]

PARAM_TYPES: tuple[str, ...] = ("int", "float", "bool", "str", "json")


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    default: Any
    type: str
    help: str = ""


def _type_of(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    return "json"


def convert(text: str, type_: str) -> Any:
    """A string (from the command line) as a value of ``type_``; ValueError says why not."""
    if type_ == "int":
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"{text!r} is not an integer") from None
    if type_ == "float":
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
    if type_ == "bool":
        low = text.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{text!r} is not a boolean (true/false)")
    if type_ == "json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{text!r} is not JSON: {exc.msg}") from None
    return text


def declare(raw: Any) -> dict[str, Param]:
    """Parameters from a graph's ``params`` object."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise GraphError.one("graph", "params", "must be an object of name: default or name: {default, type}")
    out: dict[str, Param] = {}
    problems: list[Problem] = []
    for name, decl in raw.items():
        where = f"parameter {name!r}"
        if isinstance(decl, dict) and "default" in decl:
            unknown = set(decl) - {"default", "type", "help"}
            if unknown:
                problems.append(Problem(where, sorted(unknown)[0], "unknown key (use default, type, help)"))
                continue
            type_ = decl.get("type") or _type_of(decl["default"])
            if type_ not in PARAM_TYPES:
                problems.append(Problem(where, "type", f"{type_!r} is not one of {', '.join(PARAM_TYPES)}"))
                continue
            out[name] = Param(name, decl["default"], type_, str(decl.get("help", "")))
        elif isinstance(decl, dict):
            problems.append(Problem(where, "default", 'missing; declare {"default": value}'))
        else:
            out[name] = Param(name, decl, _type_of(decl))
    if problems:
        raise GraphError(problems)
    return out


def resolve(params: Mapping[str, Param], overrides: Mapping[str, str]) -> dict[str, Any]:
    """Parameter values: defaults, with the overrides converted by each parameter's type."""
    values = {name: p.default for name, p in params.items()}
    problems: list[Problem] = []
    for name, text in overrides.items():
        param = params.get(name)
        if param is None:
            known = ", ".join(sorted(params)) or "none"
            problems.append(
                Problem(
                    f"--param {name}", None, f"the graph has no parameter {name!r} (its parameters: {known})"
                )
            )
            continue
        try:
            values[name] = convert(text, param.type)
        except ValueError as exc:
            problems.append(
                Problem(f"--param {name}", None, f"{exc} (the parameter is of type {param.type})")
            )
    if problems:
        raise GraphError(problems)
    return values


def substitute(value: Any, values: Mapping[str, Any], where: str, field: str) -> Any:
    """``value`` with every ``{"param": name}`` replaced by the parameter's value."""
    if isinstance(value, dict):
        if set(value) == {"param"}:
            name = value["param"]
            if not isinstance(name, str) or name not in values:
                known = ", ".join(sorted(values)) or "none"
                raise GraphError.one(
                    where, field, f"refers to unknown parameter {name!r} (declared: {known})"
                )
            return values[name]
        return {k: substitute(v, values, where, field) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, values, where, field) for v in value]
    return value
