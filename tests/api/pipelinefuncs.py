"""Functions of the API tests' pipelines (a module: worker processes import them by name)."""

from __future__ import annotations

import numpy as np

from dropflow.api import SharedArray, python, shell, shm


@python
def numbers(n: int) -> list[int]:
    return list(range(n))


@python
def double(x: int) -> int:
    return 2 * x


@python
def add(a: int, b: int = 0) -> int:
    return a + b


@python
def total(xs: list[int]) -> int:
    return sum(xs)


@python
def describe(x: object) -> str:
    return f"<{x}>"


@python(executor="process")
def pid_square(x: int) -> int:
    return x * x


@python
def ramp(n: int) -> SharedArray:
    return np.arange(n, dtype=np.float64)


@python(executor="process", returns=shm())
def scale(part: np.ndarray, by: float = 10.0) -> np.ndarray:
    return part * by


@python
def concat(parts: list[np.ndarray]) -> list[float]:
    return np.concatenate(parts).tolist()


@python
def is_big(x: int, limit: int = 10) -> bool:
    return x > limit


@python
def count_lines(path: str) -> int:
    with open(path) as f:
        return len(f.readlines())


@python
def raw_size(data: bytes) -> int:
    return len(data)


@python(outputs=["low", "high"])
def split_at(xs: list[int], at: int) -> dict[str, list[int]]:
    return {"low": [x for x in xs if x < at], "high": [x for x in xs if x >= at]}


@python
def fail(x: int) -> int:
    raise RuntimeError(f"failing on {x}")


@shell
def compress(data, out=None) -> str:
    return f"gzip -c {data} > {out}"
