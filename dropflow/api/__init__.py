"""Pipelines in Python: decorated functions and shell commands whose calls build a dropflow graph.

Theory of operation
-------------------
Inside ``with Pipeline("name") as p:``, calling a ``@python`` function or :func:`shell` adds an app to the
pipeline and returns a :class:`Handle` -- a future of its result -- that other calls take as arguments; the
values in between are data drops the API picks (memory, shared memory for ``SharedArray``, files for shell
outputs) unless a :class:`Data` says otherwise. :func:`map`, :func:`scatter`, :func:`reduce`, :class:`loop`
and :func:`branch` are the logical graph's constructs. ``workflow:///TASK/PATH`` in a command names a file
of another task, as in DAGonStar. The pipeline is nothing but a native logical graph (:meth:`Pipeline.build`):
``p.run()`` runs it here, ``p.submit(url)`` on a cluster, ``p.slurm(nodes=N)`` as a Slurm job, and
``p.save(path)`` writes the file that ``dropflow run``, ``submit`` and ``slurm submit`` take; after a run,
``handle.result()`` gives values back. See ``docs/python-api.md``.
"""

from __future__ import annotations

from .constructs import branch, constant, input_file, loop, map, reduce, scatter
from .data import Data, SharedArray, directory, file, memory, shm
from .functions import PythonFunction, python
from .graph import Handle, Mapped, Pipeline, PipelineError
from .shell import ShellFunction, ShellTask, shell
from .targets import PipelineFailed, Run, SlurmRun

__all__ = [
    "Data",
    "Handle",
    "Mapped",
    "Pipeline",
    "PipelineError",
    "PipelineFailed",
    "PythonFunction",
    "Run",
    "SharedArray",
    "ShellFunction",
    "ShellTask",
    "SlurmRun",
    "branch",
    "constant",
    "directory",
    "file",
    "input_file",
    "loop",
    "map",
    "memory",
    "python",
    "reduce",
    "scatter",
    "shell",
    "shm",
]
