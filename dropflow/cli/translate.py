"""``dropflow translate`` and its steps ``unroll``, ``partition``, ``map``: thin shells over the translator.

Each command reads one graph file, calls the pure functions of :mod:`dropflow.translator`, and writes a
native physical graph (``-o FILE``, or standard output). A one-line summary goes to standard error, so the
graph can be piped. Bad arguments and bad graphs raise :class:`~dropflow.cli.UsageError` or
:class:`~dropflow.drops.errors.GraphError`, which ``dropflow``'s main turns into one message and exit 2.

The parser needs the translator's algorithm names, so this module imports the translator (and with it
numpy) when loaded -- which :mod:`dropflow.cli` does only for these commands.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from ..drops.graph import encode_physical
from ..loading import read_graph_bytes
from ..translator import ALGORITHMS, Read, place, read, translate
from .common import UsageError, command, integer, params

__all__ = ["cmd_map", "cmd_partition", "cmd_translate", "cmd_unroll"]


def _nodes(items: list[str] | None) -> list[str]:
    nodes = [n.strip() for item in items or [] for n in item.split(",") if n.strip()]
    return nodes


def _input(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("graph", help=f"{what} (- for standard input)")
    p.add_argument(
        "-o",
        "--output",
        default="-",
        metavar="FILE",
        help="where to write the physical graph (default: standard output)",
    )


def _params_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a graph parameter (repeatable)",
    )


def _partition_args(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument(
        "--algorithm",
        choices=ALGORITHMS,
        default=default,
        help=f"partitioning algorithm (default: {default})",
    )
    p.add_argument(
        "--parts",
        type=integer(0),
        metavar="N",
        help="number of partitions for metis (default: one per worker node)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed for metis (default 0)")
    p.add_argument(
        "--imbalance",
        type=float,
        default=0.05,
        metavar="F",
        help="metis: allowed load above the mean, as a fraction (default 0.05)",
    )
    p.add_argument(
        "--max-dop",
        type=integer(0),
        default=8,
        metavar="N",
        help="min_num_parts: apps one partition runs at a time (default 8)",
    )
    p.add_argument(
        "--deadline",
        type=float,
        metavar="SECONDS",
        help="min_num_parts: finish by this time (default: the critical path)",
    )


def _map_args(p: argparse.ArgumentParser, required: bool) -> None:
    p.add_argument(
        "--nodes",
        action="append",
        required=required,
        metavar="HOST[,HOST...]",
        help="machines to map onto, comma-separated or repeated; the first --islands of them "
        "host island managers",
    )
    p.add_argument(
        "--islands",
        type=integer(0),
        default=0,
        metavar="N",
        help="number of data islands (default 0: no island managers)",
    )


def _write(path: str, data: bytes) -> None:
    if path == "-":
        sys.stdout.buffer.write(data + b"\n")
        sys.stdout.flush()
        return
    try:
        with open(path, "wb") as f:
            f.write(data)
    except OSError as exc:
        raise UsageError(f"cannot write {path!r}: {exc.strerror}") from None


def _name(path: str) -> str:
    return os.path.basename(path).split(".")[0] if path != "-" else "graph"


def _read(args: argparse.Namespace) -> Read:
    return read(read_graph_bytes(args.graph), params(getattr(args, "param", [])))


def _check_partition_args(args: argparse.Namespace) -> None:
    if args.imbalance <= 0:
        raise UsageError("--imbalance must be above 0")
    if args.algorithm == "min_num_parts" and args.max_dop < 1:
        raise UsageError("--max-dop must be at least 1")


def _run(args: argparse.Namespace, nodes: list[str]) -> int:
    _check_partition_args(args)
    t0 = time.perf_counter()
    r = _read(args)
    result = translate(
        r,
        algorithm=args.algorithm,
        parts=args.parts,
        nodes=nodes or None,
        islands=args.islands if nodes else 0,
        seed=args.seed,
        imbalance=args.imbalance,
        max_dop=args.max_dop,
        deadline=args.deadline,
    )
    _write(args.output, encode_physical(result.specs, _name(args.graph)))
    p = result.partitioning
    extra = f", {p.count} partitions ({p.algorithm}), cut volume {p.cut:g}" if p is not None else ""
    where = f" onto {len(nodes)} nodes" if nodes else ""
    print(
        f"dropflow: {r.format} graph {args.graph}: {len(result.specs)} drops{extra}{where} in "
        f"{time.perf_counter() - t0:.2f} s",
        file=sys.stderr,
    )
    return 0


def _translate_args(p: argparse.ArgumentParser) -> None:
    _input(p, "logical graph (native, EAGLE .graph) or DALiuGE physical graph")
    _params_arg(p)
    _partition_args(p, "metis")
    _map_args(p, required=False)


@command("translate", _translate_args)
def cmd_translate(args: argparse.Namespace) -> int:
    nodes = _nodes(args.nodes)
    if args.algorithm == "metis" and args.parts is None and not nodes:
        args.algorithm = "none"  # nothing says how many partitions: one
    return _run(args, nodes)


def _unroll_args(p: argparse.ArgumentParser) -> None:
    _input(p, "logical graph (native or EAGLE .graph)")
    _params_arg(p)


@command("unroll", _unroll_args)
def cmd_unroll(args: argparse.Namespace) -> int:
    args.algorithm, args.parts, args.seed, args.imbalance = "none", None, 0, 0.05
    args.max_dop, args.deadline, args.islands = 8, None, 0
    return _run(args, [])


def _partition_cmd_args(p: argparse.ArgumentParser) -> None:
    _input(p, "graph to partition: logical (weights from it) or physical (unit weights)")
    _params_arg(p)
    _partition_args(p, "metis")


@command("partition", _partition_cmd_args)
def cmd_partition(args: argparse.Namespace) -> int:
    if args.algorithm == "metis" and args.parts is None:
        raise UsageError("metis needs --parts N")
    args.islands = 0
    return _run(args, [])


def _map_cmd_args(p: argparse.ArgumentParser) -> None:
    _input(p, "partitioned physical graph (from dropflow partition)")
    _map_args(p, required=True)


@command("map", _map_cmd_args)
def cmd_map(args: argparse.Namespace) -> int:
    nodes = _nodes(args.nodes)
    if not nodes:
        raise UsageError("--nodes: give at least one node")
    r = read(read_graph_bytes(args.graph))
    if r.specs is None:
        raise UsageError(
            f"{args.graph} is a logical graph; map takes the output of dropflow partition "
            "(or use dropflow translate --nodes)"
        )
    specs = place(r.specs, nodes, args.islands)
    _write(args.output, encode_physical(specs, _name(args.graph)))
    print(f"dropflow: mapped {len(specs)} drops onto {len(nodes)} nodes", file=sys.stderr)
    return 0
