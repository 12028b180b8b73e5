"""Shared fixtures and helpers for the test suite.

``MINIROBUST_TEST_FAKE_GPU=1`` runs the session on the GPU stand-in (fake_cupy.py as ``cupy``,
the CUDA kernels compiled for the host by cuda_emulation.py): every test marked ``gpu`` then runs
here as it will on a card, so the GPU tests themselves are checked before device time is spent.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

from minirobust.backend import get_backend, gpu_available, set_backend

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MINIROBUST_DATA") or REPO.parent / "shared" / "data")


def tie_free(shape, seed=0, low=-1.0, high=1.0, dtype=np.float64):
    """A shuffled linspace: every value distinct and none at exactly 0, so ReLU and
    max-pool are never evaluated at a kink, and gradient checks are meaningful."""
    n = int(np.prod(shape))
    values = np.linspace(low, high, n)
    values += (high - low) / (4 * max(n - 1, 1))  # shift off the grid so 0 is never hit
    return np.random.default_rng(seed).permutation(values).reshape(shape).astype(dtype)


FAKE_GPU = os.environ.get("MINIROBUST_TEST_FAKE_GPU") == "1"


def pytest_configure(config):
    if FAKE_GPU:
        _install_the_gpu_stand_in()


def _install_the_gpu_stand_in():
    from .cuda_emulation import emulated_builder, install_gpu_stand_in  # noqa: PLC0415

    install_gpu_stand_in(emulated_builder(Path(tempfile.mkdtemp(prefix="minirobust_cuda_host_")),
                                          device_arrays_only=True))


def pytest_collection_modifyitems(config, items):
    ok, reason = gpu_available()
    if ok:
        return
    skip = pytest.mark.skip(reason=f"no GPU here: {reason}")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(params=["cpu", pytest.param("gpu", marks=pytest.mark.gpu)])
def backend_name(request):
    """Run a test once per backend: "cpu" everywhere, "gpu" where a CUDA device is present
    (skipped with the reason elsewhere). New arrays and models live on that backend."""
    old = get_backend()
    set_backend(request.param)
    try:
        yield request.param
    finally:
        set_backend(old)
