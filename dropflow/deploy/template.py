"""Job script templates: data files with ``{{ name }}`` placeholders, checked before anything is submitted.

Theory of operation
-------------------
A template is a text file that a site may replace (``--template FILE``): the shipped one,
``templates/slurm.sbatch``, holds the usual ``#SBATCH`` options, module loads and the virtualenv activation,
then runs the bootstrap. Placeholders are ``{{ name }}``, a syntax no shell uses, so a template keeps its
``$VARIABLES`` and ``${...}`` as they are. Rendering is all or nothing: a placeholder that names no known
variable, or a template that lacks a required one (it would never start the engine), raises
:class:`TemplateError` naming the file and line, and nothing is written or submitted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from importlib import resources

__all__ = ["DEFAULT_SLURM_TEMPLATE", "TemplateError", "load", "placeholders", "render"]

DEFAULT_SLURM_TEMPLATE = "slurm.sbatch"
_PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class TemplateError(ValueError):
    """A template that cannot be rendered; the message names the file and line."""


def load(path: str | None) -> tuple[str, str]:
    """(text, where) of a template file, or of the shipped default when ``path`` is None."""
    if path is None:
        text = resources.files(__package__).joinpath("templates", DEFAULT_SLURM_TEMPLATE).read_text()
        return text, f"(built-in {DEFAULT_SLURM_TEMPLATE})"
    try:
        with open(path, encoding="utf-8") as f:
            return f.read(), path
    except OSError as exc:
        raise TemplateError(f"cannot read template {path!r}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise TemplateError(f"template {path!r} is not UTF-8 text: {exc}") from None


def placeholders(text: str) -> list[tuple[int, str]]:
    """(line number, name) of every placeholder, in order."""
    found = []
    for match in _PLACEHOLDER.finditer(text):
        found.append((text.count("\n", 0, match.start()) + 1, match.group(1)))
    return found


def render(
    text: str, values: Mapping[str, str], where: str = "template", required: Iterable[str] = ()
) -> str:
    """Substitute every placeholder; unknown or malformed names and missing required ones are errors."""
    problems = []
    for line, name in placeholders(text):
        if not _NAME.match(name):
            problems.append(f"{where}, line {line}: '{{{{ {name} }}}}' is not a variable name")
        elif name not in values:
            problems.append(
                f"{where}, line {line}: unknown template variable '{name}' "
                f"(known: {', '.join(sorted(values))})"
            )
    used = {name for _, name in placeholders(text)}
    for name in required:
        if name not in used:
            problems.append(f"{where}: the template must use {{{{ {name} }}}}")
    if problems:
        raise TemplateError("\n".join(problems))
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], text)
