"""How much slower this machine is right now than the quiet 2-core machine the time budgets were set
on, so that tests with a time budget (the lesson notebooks, the kill loop) stretch it on a busy
machine instead of failing there, and still catch a lesson that became slow on a quiet one.

The probe is a fixed mix of what the suite spends its time on: NumPy products through OpenBLAS
(whose worker threads stall when another process holds a core) and plain Python.
"""

from __future__ import annotations

import time

import numpy as np

QUIET_SECONDS = 0.045  # the probe on this project's 2-core machine with nothing else running (measured 0.031)


def probe_seconds() -> float:
    a = np.random.default_rng(0).random((384, 384), dtype=np.float32)
    start = time.perf_counter()
    for _ in range(30):
        a = (a @ a) / 384.0
    sum(i * i for i in range(300_000))
    return time.perf_counter() - start


def slowness(repeats: int = 3) -> float:
    """>= 1: the best of a few probes against the quiet machine's time."""
    return max(1.0, min(probe_seconds() for _ in range(repeats)) / QUIET_SECONDS)
