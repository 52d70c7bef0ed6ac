"""Python function apps that check what containers and MPI programs wrote."""

from __future__ import annotations


def expect_upper(text: bytes, original: bytes) -> str:
    """The downstream check of the Docker test: the container upper-cased its input file."""
    if text != original.upper():
        raise ValueError(f"container output {text!r} is not the upper-cased input {original!r}")
    return text.decode()
