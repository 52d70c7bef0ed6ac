"""A chain of Python functions, Parsl style: each call returns a handle, a future that the next call takes.

Nothing runs while the pipeline is built; ``chain.run()`` runs it here (``chain.submit(url)`` on a cluster,
``chain.slurm(nodes=3)`` as a Slurm job), and ``handle.result()`` gives the value back.
"""

from __future__ import annotations

from dropflow.api import Pipeline, python


@python
def generate(n: int) -> list[int]:
    return list(range(1, n + 1))


@python
def square(xs: list[int]) -> list[int]:
    return [x * x for x in xs]


@python
def increment(x: int) -> int:
    return x + 1


@python
def total(values: list[int]) -> int:
    return sum(values)


with Pipeline("parsl-chain") as chain:
    squares = square(generate(10))  # one future feeds the next
    sum_of_squares = total(squares)
    bumped = [increment(i) for i in range(5)]  # five independent apps, as a loop of Parsl apps
    sum_of_bumped = total(bumped)  # a list of futures is a list of values

if __name__ == "__main__":
    chain.run()
    print(sum_of_squares.result(), sum_of_bumped.result())  # 385 15
