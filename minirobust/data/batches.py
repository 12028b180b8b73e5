"""Minibatches with seeded shuffling.

The order comes from a NumPy generator on the host, so the same seed gives the same
batches on every backend; each batch is moved to the active backend as it is served.
"""

from __future__ import annotations

import numpy as np

from ..backend import to_device
from ..errors import InputError

LAST_BATCH = ("keep", "drop")


def batch_order(n: int, shuffle: bool, rng) -> np.ndarray:
    """Indices 0..n-1, permuted by ``rng`` when shuffling."""
    return rng.permutation(n) if shuffle else np.arange(n)


def iterate_minibatches(x, y, batch_size: int, shuffle: bool = True, rng=None, last_batch: str = "keep",
                        to_backend: bool = True, dtype=None):
    """Yield (x_batch, y_batch).

    x: (N, ...) host array; y: (N,). ``rng``: a numpy Generator (or a seed) for the order.
    ``last_batch='drop'`` skips a final batch smaller than ``batch_size``.
    """
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    if last_batch not in LAST_BATCH:
        raise InputError(f"last_batch must be one of {LAST_BATCH}, got {last_batch!r}")
    if len(x) != len(y):
        raise InputError(f"{len(x)} images but {len(y)} labels")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    order = batch_order(len(x), shuffle, rng)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        if last_batch == "drop" and len(idx) < batch_size:
            break
        xb, yb = x[idx], y[idx]
        if to_backend:
            xb, yb = to_device(xb, dtype=dtype), to_device(yb)
        yield xb, yb
