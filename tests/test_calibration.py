"""The time budgets stretch on a busy machine: the calibration probe sees a CPU hog."""

from __future__ import annotations

import multiprocessing
import os

from .calibration import probe_seconds, slowness


def _spin(seconds):
    import time  # noqa: PLC0415

    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_the_probe_sees_a_cpu_hog():
    quiet = min(probe_seconds() for _ in range(3))
    hogs = [multiprocessing.Process(target=_spin, args=(6.0,)) for _ in range(2 * (os.cpu_count() or 2))]
    for h in hogs:
        h.start()
    try:
        busy = min(probe_seconds() for _ in range(3))
    finally:
        for h in hogs:
            h.terminate()
            h.join()
    assert busy > 1.3 * quiet, (quiet, busy)
    assert slowness() >= 1.0
