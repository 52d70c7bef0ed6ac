"""A numpy image in shared memory, scattered into bands, calibrated in worker processes, gathered.

The bands reach the worker processes without a copy: each maps its band's shared-memory segment. Each band
expires as soon as its calibration is done.
"""

from __future__ import annotations

import numpy as np

from dropflow.api import Pipeline, SharedArray, map, python, scatter, shm


@python
def make_image(size: int) -> SharedArray:
    rows = np.arange(size, dtype=np.float32)[:, None]
    return np.sin(rows / 17.0) + np.cos(np.arange(size, dtype=np.float32) / 23.0)


@python(executor="process", returns=shm(expire_after_use=True))
def calibrate(band: np.ndarray, gain: float = 2.0) -> np.ndarray:
    return band * gain - band.mean()


@python
def combine(bands: list[np.ndarray]) -> dict[str, float]:
    image = np.concatenate(bands, axis=0)
    return {
        "rows": image.shape[0],
        "mean": round(float(image.mean()), 6),
        "std": round(float(image.std()), 6),
    }


with Pipeline("numpy-scatter-gather") as image_pipeline:
    image = make_image(1024)
    bands = scatter(image, 4, kind=shm(expire_after_use=True))
    stats = combine(map(calibrate, bands))

if __name__ == "__main__":
    image_pipeline.run()
    print(stats.result())
