"""Functions used by the example graphs. Each is plain Python: dropflow passes inputs as arguments."""

from __future__ import annotations

import numpy as np


def make_image(size: int, out) -> None:
    """Fill a size x size image in place, inside its output drop (shared memory: no copy)."""
    image = out.array((size, size), np.float32)
    rows = np.arange(size, dtype=np.float32)[:, None]
    image[:] = np.sin(rows / 17.0) + np.cos(np.arange(size, dtype=np.float32) / 23.0)


def split(image: np.ndarray, parts: int = 4) -> list[np.ndarray]:
    """Scatter: cut the image into horizontal bands, one per output drop."""
    return np.array_split(image, parts, axis=0)


def calibrate(band: np.ndarray, gain: float = 2.0) -> np.ndarray:
    """Process one band (runs in a worker process; the band is read from shared memory in place)."""
    return band * gain - band.mean()


def combine(bands: list[np.ndarray]) -> dict[str, float]:
    """Gather: statistics of the re-assembled image."""
    image = np.concatenate(bands, axis=0)
    return {"rows": float(image.shape[0]), "mean": float(image.mean()), "std": float(image.std())}


def is_large(numbers: bytes, threshold: int = 100) -> bool:
    """Branch predicate: does the input file hold more than ``threshold`` lines?"""
    return numbers.count(b"\n") > threshold
