"""Site options of a Slurm job, from flags and a site preset (TOML), without writing a template.

Theory of operation
-------------------
What a site needs of a job script is mostly the same handful of things Parsl's ``SlurmProvider`` exposes:
partition, account, QoS, constraint, GPUs (``--gres`` or ``--gpus-per-node``), memory, cores per node,
``--exclusive`` (asked for, never forced), module loads, environment set-up lines, extra ``#SBATCH`` lines --
and, for dropflow, the directories file drops may use outside the job's workspace (``allow_paths``). A
:class:`SiteOptions` holds them. A *preset* is a TOML file with the same names (``dropflow slurm submit
--site FILE``; by default ``$DROPFLOW_SITE``, else ``~/.config/dropflow/site.toml`` if it exists), so that a
site writes its defaults once; a flag given on the command line wins over the preset, and list options
(modules, env set-up, extra lines, allowed paths) add to it. :func:`problems` checks every value before
anything is rendered, and :func:`sbatch_lines` renders the ``#SBATCH`` lines. Templates stay for what these
options cannot say.

    # ~/.config/dropflow/site.toml
    partition = "cpu"
    account = "astro42"
    qos = "normal"
    constraint = "haswell"
    mem = "64G"
    cpus_per_node = 32
    modules = ["gcc/12", "openmpi/4.1"]
    env_setup = ["export OMP_NUM_THREADS=1"]
    sbatch = ["--mail-type=FAIL"]
    allow_paths = ["/project/astro42", "/scratch/astro42"]
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, fields, replace
from typing import Any

__all__ = [
    "SITE_ENV",
    "SiteError",
    "SiteOptions",
    "default_site_file",
    "load_site",
    "problems",
    "sbatch_lines",
]

SITE_ENV = "DROPFLOW_SITE"
_OPTION = re.compile(r"^[^\s#'\"\\]+$")
_MEM = re.compile(r"^\d+[KMGT]?$")
_GRES = re.compile(r"^[A-Za-z0-9_:.,-]+$")


class SiteError(ValueError):
    """A preset that cannot be used; the message names the file and the key."""


@dataclass(frozen=True, slots=True)
class SiteOptions:
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    #: ``--gres``, e.g. ``gpu:4``.
    gres: str | None = None
    gpus_per_node: int | None = None
    #: ``--mem`` per node, e.g. ``64G``.
    mem: str | None = None
    #: Cores per node: ``--cpus-per-task`` (one task per node runs the node manager).
    cpus_per_node: int | None = None
    exclusive: bool = False
    modules: tuple[str, ...] = ()
    #: Shell lines run before the virtualenv is activated (exports, ``source`` of a site script, ...).
    env_setup: tuple[str, ...] = ()
    #: More ``#SBATCH`` options, without the ``#SBATCH`` (e.g. ``--mail-type=FAIL``).
    sbatch: tuple[str, ...] = ()
    #: Directories that file drops may use outside the job's workspace (project, scratch).
    allow_paths: tuple[str, ...] = ()

    def merged(self, flags: SiteOptions) -> SiteOptions:
        """These options (a preset's) overridden by ``flags``: a flag set wins, lists add up."""
        out: dict[str, Any] = {}
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(flags, f.name)
            if isinstance(mine, tuple):
                out[f.name] = tuple(dict.fromkeys([*mine, *theirs]))
            elif f.name == "exclusive":
                out[f.name] = mine or theirs
            else:
                out[f.name] = theirs if theirs is not None else mine
        return replace(self, **out)


def default_site_file() -> str | None:
    """The preset used when none is named: ``$DROPFLOW_SITE``, else ``~/.config/dropflow/site.toml``."""
    explicit = os.environ.get(SITE_ENV)
    if explicit:
        return explicit
    config = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    path = os.path.join(config, "dropflow", "site.toml")
    return path if os.path.isfile(path) else None


_STR = ("partition", "account", "qos", "constraint", "gres", "mem")
_INT = ("gpus_per_node", "cpus_per_node")
_LIST = ("modules", "env_setup", "sbatch", "allow_paths")


def load_site(path: str) -> SiteOptions:
    """Read a preset; SiteError (file and key) for a file that is not one."""
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except OSError as exc:
        raise SiteError(f"cannot read the site preset {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SiteError(f"the site preset {path} is not TOML: {exc}") from None
    values: dict[str, Any] = {}
    for key, value in raw.items():
        where = f"{path}: {key!r}"
        if key in _STR:
            if not isinstance(value, str):
                raise SiteError(f"{where} must be a string")
            values[key] = value
        elif key in _INT:
            if isinstance(value, bool) or not isinstance(value, int):
                raise SiteError(f"{where} must be an integer")
            values[key] = value
        elif key == "exclusive":
            if not isinstance(value, bool):
                raise SiteError(f"{where} must be true or false")
            values[key] = value
        elif key in _LIST:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise SiteError(f"{where} must be a list of strings")
            values[key] = tuple(value)
        else:
            known = ", ".join(sorted([*_STR, *_INT, "exclusive", *_LIST]))
            raise SiteError(f"{where} is not a site option (known: {known})")
    return SiteOptions(**values)


def problems(site: SiteOptions) -> list[str]:
    """Every value that cannot go into a job script (empty if none)."""
    out = []
    for name in ("partition", "account", "qos", "constraint"):
        value = getattr(site, name)
        if value is not None and not _OPTION.match(value):
            out.append(f"--{name} {value!r}: no spaces, quotes or '#' allowed")
    if site.gres is not None and not _GRES.match(site.gres):
        out.append(f"--gres {site.gres!r} is not a generic resource (e.g. gpu:4)")
    if site.mem is not None and not _MEM.match(site.mem):
        out.append(f"--mem {site.mem!r} is not a size (e.g. 64G, 4000M)")
    for name in _INT:
        value = getattr(site, name)
        if value is not None and value < 1:
            out.append(f"--{name.replace('_', '-')} must be at least 1 (got {value})")
    for module in site.modules:
        if not _OPTION.match(module):
            out.append(f"--module {module!r}: no spaces, quotes or '#' allowed")
    for line in site.sbatch:
        if not line.startswith("--") or "\n" in line:
            out.append(f"--sbatch {line!r}: an option of sbatch, starting with '--', on one line")
    for line in site.env_setup:
        if "\n" in line:
            out.append(f"--env-setup {line!r}: one line each")
    for path in site.allow_paths:
        if not os.path.isabs(path):
            out.append(f"--allow-path {path!r} must be an absolute path (the nodes resolve it)")
        elif not os.path.isdir(path):
            out.append(f"--allow-path {path!r} is not a directory")
    return out


def sbatch_lines(site: SiteOptions, time: str | None) -> list[str]:
    """The ``#SBATCH`` lines of the options given."""
    pairs = [
        ("partition", site.partition),
        ("time", time),
        ("account", site.account),
        ("qos", site.qos),
        ("constraint", site.constraint),
        ("gres", site.gres),
        ("gpus-per-node", site.gpus_per_node),
        ("mem", site.mem),
        ("cpus-per-task", site.cpus_per_node),
    ]
    lines = [f"#SBATCH --{flag}={value}" for flag, value in pairs if value is not None]
    if site.exclusive:
        lines.append("#SBATCH --exclusive")
    lines += [f"#SBATCH {line}" for line in site.sbatch]
    return lines
