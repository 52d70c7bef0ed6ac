"""What a drop is: states and transitions, typed specs, data stores, application kinds, the registry.

This package knows nothing of networks, daemons or the engine's threads.
"""

from .apps.builtin import BranchSpec, CopySpec, NoopSpec, SleepSpec
from .apps.pyfunc import PythonSpec
from .apps.shell import ShellSpec
from .errors import GraphError, Problem
from .graph import FORMAT, VERSION, PhysicalGraph, decode_physical, encode_physical
from .spec import (
    AppSpec,
    DataSpec,
    DirectorySpec,
    DropSpec,
    FileSpec,
    MemorySpec,
    NullSpec,
    SharedMemorySpec,
)
from .states import AppState, DropState, InvalidTransition, SessionState

__all__ = [
    "FORMAT",
    "VERSION",
    "AppSpec",
    "AppState",
    "BranchSpec",
    "CopySpec",
    "DataSpec",
    "DirectorySpec",
    "DropSpec",
    "DropState",
    "FileSpec",
    "GraphError",
    "InvalidTransition",
    "MemorySpec",
    "NoopSpec",
    "NullSpec",
    "PhysicalGraph",
    "Problem",
    "PythonSpec",
    "SessionState",
    "SharedMemorySpec",
    "ShellSpec",
    "SleepSpec",
    "decode_physical",
    "encode_physical",
]
