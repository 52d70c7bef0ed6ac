"""The side-by-side benchmark: every system on the same workloads, interleaved, with medians and ratios.

Theory of operation
-------------------
1. Environments: unless ``--smoke``, the virtualenvs of the peers asked for are installed (or reused) by
   :mod:`venvs`.
2. Workloads run in the report's order, the real work first (``py``, ``proc``, ``shell``, numpy) and the
   no-op graphs, the engine's bookkeeping floor, last. For each workload and N (ascending; the sizes depend on
   the app kind, :data:`SIZES`), a child process writes every system's graph files (:mod:`convert`),
   so this process stays small. Then the repeats run interleaved -- every system once, in a fixed order,
   then every system again -- so that a burst of load on the shared machine hits all systems alike.
3. A run that does not finish within ``--timeout`` is killed and recorded as ``dnf``; that system is not run
   again for that workload at this or larger N. A cell whose first run took longer than ``--slow`` seconds
   is not repeated (its median is of one run, marked ``[n=1]``). A run that fails or is wrong is recorded
   and not repeated.
4. Translator rows: both translators on the same scaled EAGLE scatter graphs, in their own environments.
5. Results: ``results.json`` (every run, the machine, versions, load averages), ``results.md`` (the tables)
   and, when matplotlib is available (the ``tools`` environment), ``time.png`` and ``memory.png``.

Smoke mode runs dropflow and the two floors on every default workload at tiny N, and writes (but does not run)
the peers' graphs, so that CI keeps the harness working without the peers' environments; unless ``--out`` is
given it prints the tables and writes no file.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

import machine
import measure
import report
import venvs
from peers import PEERS
from systems import OWN, Context, Row, System
from workloads import WORKLOADS as ALL_WORKLOADS
from workloads import split

__all__ = ["main"]

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(os.path.dirname(HERE), "results")
SYSTEMS: dict[str, System] = {s.name: s for s in [*OWN, *PEERS]}
#: the default workloads, in the report's order: real work first, the no-op bookkeeping floor last
WORKLOADS = [
    "py-chain", "py-fan", "proc-chain", "proc-fan", "shell-chain", "shell-fan", "numpy", "numpy-proc",
    "noop-chain", "noop-fan", "noop-scatter2",
]  # fmt: skip
#: N of each app kind in a full run (the numpy pipelines' is --numpy-bytes)
SIZES = {
    "py": [1_000, 10_000, 100_000],
    "proc": [1_000, 10_000],
    "shell": [1_000, 5_000],
    "noop": [1_000, 10_000, 100_000, 1_000_000],
}
SMOKE_SIZES = [20]
#: smoke: every app kind and both numpy pipelines, one shape each (two for py), to stay within seconds
SMOKE_WORKLOADS = [
    "py-chain", "py-fan", "proc-chain", "shell-chain", "numpy", "numpy-proc", "noop-chain", "noop-scatter2",
]  # fmt: skip
#: systems that run beyond --peer-max-n (dropflow alone, and the floors it is compared with)
UNBOUNDED = {"dropflow", "floor", "loop"}
ORDER = [
    "dropflow", "dropflow-memory", "dropflow-cluster", "daliuge", "dask", "ray", "parsl-threads",
    "parsl-htex", "floor", "loop",
]  # fmt: skip
#: the virtualenv each peer needs
ENV_OF = {name: s.env for name, s in SYSTEMS.items() if s.env != "dropflow"}
TRANSLATOR_SIZES = [1_000, 10_000, 100_000, 1_000_000]


def log(*parts: Any) -> None:
    print("bench:", *parts, file=sys.stderr, flush=True)


def _child_json(argv: list[str], env: dict[str, str] | None = None, timeout: float | None = None) -> Any:
    out = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="sidebyside", description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="tiny N, dropflow and the floors only (seconds)")
    p.add_argument("--sizes", type=int, nargs="+", help="N of every DAG workload (default: per app kind)")
    p.add_argument("--workloads", nargs="+", choices=ALL_WORKLOADS, help=f"default: {' '.join(WORKLOADS)}")
    p.add_argument("--systems", nargs="+", choices=ORDER, help="default: all that are available")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--timeout", type=float, default=300.0, help="seconds before a run is 'did not finish'")
    p.add_argument("--slow", type=float, default=90.0, help="a cell whose first run is slower runs once")
    p.add_argument("--peer-max-n", type=int, default=100_000, help="largest N for the peers")
    p.add_argument("--numpy-bytes", type=int, help="array size of the numpy pipeline (default 256 MiB)")
    p.add_argument(
        "--translator-sizes", type=int, nargs="*", help="drops of the translator rows ([] to skip)"
    )
    p.add_argument(
        "--out", help=f"results directory (default {RESULTS}; smoke: none, the tables are printed)"
    )
    p.add_argument("--no-plots", action="store_true")
    return p.parse_args(argv)


def run_workloads(args: argparse.Namespace, ctx: Context, systems: list[str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    gone: dict[tuple[str, str], str] = {}  # (system, workload) -> why it no longer runs
    for workload in args.workloads:
        numpy = workload.startswith("numpy")
        sizes = [args.numpy_bytes] if numpy else args.sizes or SIZES[split(workload)[0]]
        for n in sizes:
            files_dir = os.path.join(ctx.workdir, f"graphs-{workload}-{n}")
            convert = [ctx.dropflow_python, os.path.join(HERE, "convert.py"), workload, str(n), files_dir]
            if not numpy and n > args.peer_max_n:
                convert.append("--no-peers")
            files = _child_json(convert)
            active = [
                s
                for s in systems
                if SYSTEMS[s].supports(workload) and (numpy or n <= args.peer_max_n or s in UNBOUNDED)
            ]
            once: set[str] = set()
            for repeat in range(args.repeats):
                for name in active:
                    if (name, workload) in gone or (repeat > 0 and name in once):
                        continue
                    row = SYSTEMS[name].run(ctx, files, workload, n, repeat)
                    rows.append(row.to_dict())
                    shown = f"{row.e2e_s:.3f} s" if row.e2e_s is not None else row.detail[:200]
                    rss = f"{row.peak_rss_mb:.0f} MB" if row.peak_rss_mb is not None else "-"
                    log(f"{workload:13} N={n:<9} {name:16} #{repeat} {row.status:6} {shown}  rss {rss}")
                    if row.status == "dnf":
                        gone[(name, workload)] = f"did not finish in {ctx.timeout:g} s at N={n:,}"
                    elif row.status != "ok" or (repeat == 0 and (row.total_s or 0) > args.slow):
                        once.add(name)
            for name in active:
                if (name, workload) in gone and not any(
                    r["system"] == name and r["workload"] == workload and r["n"] == n for r in rows
                ):
                    rows.append(
                        Row(
                            name,
                            workload,
                            n,
                            0,
                            "dnf",
                            files["tasks"],
                            files["drops"],
                            detail=gone[(name, workload)],
                        ).to_dict()
                    )
            shutil.rmtree(files_dir, ignore_errors=True)
    return rows


def run_translators(args: argparse.Namespace, ctx: Context) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    translators = {"dropflow": ctx.dropflow_python, "daliuge": ctx.pythons.get("daliuge")}
    drivers = {"dropflow": "translate_dropflow.py", "daliuge": "translate_daliuge.py"}
    gone: set[str] = set()
    for size in args.translator_sizes:
        path = os.path.join(ctx.workdir, f"scatter-{size}.graph")
        subprocess.run(
            [ctx.dropflow_python, os.path.join(HERE, "eagle_graphs.py"), str(size), path],
            check=True,
            capture_output=True,
        )
        once: set[str] = set()
        for repeat in range(args.repeats):
            for name, py in translators.items():
                if py is None or name in gone or (repeat > 0 and name in once):
                    continue
                row: dict[str, Any] = {"system": name, "target_drops": size, "repeat": repeat}
                argv = [py, os.path.join(HERE, "drivers", drivers[name]), path, "8"]
                t0 = time.perf_counter()
                try:
                    row.update(_child_json(argv, env=ctx.env(), timeout=ctx.timeout), status="ok", detail="")
                except subprocess.TimeoutExpired:
                    row.update(status="dnf", detail=f"did not finish in {ctx.timeout:g} s")
                    gone.add(name)
                except (RuntimeError, ValueError) as exc:
                    row.update(status="failed", detail=str(exc)[-500:])
                    once.add(name)
                if time.perf_counter() - t0 > args.slow:
                    once.add(name)
                rows.append(row)
                shown = row.get("total_s", row["detail"])
                log(f"translate drops={size:<9} {name:10} #{repeat} {row['status']:6} {shown}")
        os.unlink(path)
    return rows


def _leftover_shm(before: set[str]) -> list[str]:
    """What appeared in /dev/shm during the run and is still there, mapped by no live process (segments of
    other users' live processes on a shared machine are not ours)."""
    return sorted(measure.unmapped(sorted(measure.shm_names() - before)))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.smoke:
        args.sizes = args.sizes or SMOKE_SIZES
        args.numpy_bytes = args.numpy_bytes or 2**20
        args.systems = args.systems or ["dropflow", "dropflow-memory", "floor", "loop"]
        args.translator_sizes = [] if args.translator_sizes is None else args.translator_sizes
        args.repeats = min(args.repeats, 2)  # pairs of repeats are enough to exercise the interleaving
        args.workloads = args.workloads or SMOKE_WORKLOADS
    args.workloads = args.workloads or WORKLOADS
    args.numpy_bytes = args.numpy_bytes or 256 * 2**20
    args.translator_sizes = TRANSLATOR_SIZES if args.translator_sizes is None else args.translator_sizes
    wanted = args.systems or ORDER

    if not args.smoke:
        needed = {ENV_OF[s] for s in wanted if s in ENV_OF}
        if args.translator_sizes:
            needed.add("daliuge")
        for name in [*sorted(needed), "tools"]:
            venvs.ensure(name)
    ctx = Context(workdir=tempfile.mkdtemp(prefix="dropflow-bench-"), timeout=args.timeout)
    ctx.pythons = {name: venvs.python(name) for name in venvs.ENVS}
    systems, missing = [], {}
    for name in [s for s in ORDER if s in wanted]:
        why = SYSTEMS[name].unavailable(ctx)
        if why:
            missing[name] = why
            log(f"{name}: not run: {why}")
        else:
            systems.append(name)

    info = machine.describe()
    info["git"] = machine.git_state(os.path.dirname(os.path.dirname(HERE)))
    shm_before = set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()
    started = time.perf_counter()
    try:
        ctx.expected_checksum = int(
            subprocess.run(
                [ctx.dropflow_python, os.path.join(HERE, "payload.py"), str(args.numpy_bytes)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        rows = run_workloads(args, ctx, systems)
        translator_rows = run_translators(args, ctx) if args.translator_sizes else []
    finally:
        shutil.rmtree(ctx.workdir, ignore_errors=True)
    info["load_average_end"] = machine.load_average()
    info["duration_s"] = round(time.perf_counter() - started, 1)
    leftovers = _leftover_shm(shm_before)

    versions = {"dropflow": venvs.version_of(ctx.dropflow_python, "dropflow")}
    used = {ENV_OF[s] for s in systems if s in ENV_OF}
    for env, dist in (
        ("daliuge", "daliuge-engine"),
        ("dask", "distributed"),
        ("ray", "ray"),
        ("parsl", "parsl"),
    ):
        py = ctx.pythons.get(env)
        if py and env in used:
            versions[env] = venvs.version_of(py, dist)
    result = {
        "benchmark": "sidebyside",
        "mode": "smoke" if args.smoke else "full",
        "machine": info,
        "versions": versions,
        "settings": {
            "sizes": args.sizes or SIZES,
            "workloads": args.workloads,
            "repeats": args.repeats,
            "timeout_s": args.timeout,
            "slow_s": args.slow,
            "peer_max_n": args.peer_max_n,
            "numpy_bytes": args.numpy_bytes,
            "translator_sizes": args.translator_sizes,
        },
        "systems": systems,
        "missing": missing,
        "shm_leftovers": leftovers,
        "rows": rows,
        "translator_rows": translator_rows,
    }
    if args.out is None and args.smoke:  # nothing to keep: show the tables, leave no files behind
        print(page(result))
    else:
        out_dir = args.out or RESULTS
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, "results.json"), "w") as f:
            json.dump(result, f, indent=1)
        with open(os.path.join(out_dir, "results.md"), "w") as f:
            f.write(page(result))
        tools = ctx.pythons.get("tools")
        if args.no_plots:
            pass
        elif tools:
            subprocess.run([tools, os.path.join(HERE, "plots.py"), out_dir], check=True)
        else:
            log("plots skipped: the tools virtualenv (matplotlib) is not installed")
        log(f"results in {out_dir}")
    bad = [
        r
        for r in rows
        if r["status"] in ("wrong", "failed") and r["system"] in UNBOUNDED | {"dropflow-memory"}
    ]
    return 1 if bad or leftovers else 0


def page(result: dict[str, Any]) -> str:
    return report.page(result, ORDER)


if __name__ == "__main__":
    sys.exit(main())
