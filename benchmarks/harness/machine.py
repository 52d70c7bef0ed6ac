"""What machine a result was measured on: CPUs, memory, kernel, Python, load average, versions."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from typing import Any

__all__ = ["describe", "load_average"]


def _lscpu() -> dict[str, str]:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {}
    fields = {}
    for line in out.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def _mem_total_gib() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def git_state(repo: str) -> dict[str, Any]:
    """The commit measured, and the files that differed from it (the tree may be shared and edited)."""

    def git(*args: str) -> str:
        out = subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True)
        return out.stdout.rstrip("\n")

    dirty = [line[3:] for line in git("status", "--porcelain", "--untracked-files=no").splitlines()]
    return {"commit": git("rev-parse", "HEAD"), "modified": dirty}


def describe() -> dict[str, Any]:
    cpu = _lscpu()
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "nproc": os.cpu_count(),
        "cpu_model": cpu.get("Model name", platform.processor()),
        "cpu_mhz": cpu.get("CPU MHz") or cpu.get("BogoMIPS"),
        "hypervisor": cpu.get("Hypervisor vendor"),
        "mem_total_gib": _mem_total_gib(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_average_start": load_average(),
    }
