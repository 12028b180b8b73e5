"""The backend flag, array placement, and the errors it gives."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import minirobust as mr
from minirobust import backend
from minirobust.errors import BackendError, BackendMismatchError


def test_import_does_not_import_cupy():
    code = "import sys, minirobust, minirobust.nets; m = minirobust.nets.paper_mnist(); print('cupy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_unknown_backend():
    with pytest.raises(BackendError, match="unknown backend 'tpu'"):
        mr.set_backend("tpu")


def test_env_variable_picks_backend():
    env = {**os.environ, "MINIROBUST_BACKEND": "nonsense"}
    out = subprocess.run([sys.executable, "-c", "import minirobust; minirobust.get_backend()"],
                         capture_output=True, text=True, env=env)
    assert out.returncode != 0 and "unknown backend 'nonsense'" in out.stderr


def test_gpu_request_fails_clearly_without_gpu():
    ok, reason = backend.gpu_available()
    if ok:
        pytest.skip("a GPU is present here")
    with pytest.raises(BackendError, match="gpu' is unavailable: (cupy could not be imported|no usable CUDA|no CUDA)"):
        mr.set_backend("gpu")
    assert mr.get_backend() == "cpu"  # a failed switch leaves the flag alone


def test_ops_follow_inputs_and_mixing_raises():
    x = np.zeros(3)
    assert backend.get_xp(x) is np
    assert backend.get_xp() is np

    class FakeCupyArray:  # an object whose type lives in a 'cupy' module
        shape, dtype = (3,), np.float32

    FakeCupyArray.__module__ = "cupy._core.core"
    with pytest.raises(BackendMismatchError, match="NumPy and CuPy arrays mixed"):
        backend.get_xp(x, FakeCupyArray())


def test_to_device_and_host():
    a = backend.to_device([1, 2, 3], dtype=np.float32)
    assert isinstance(a, np.ndarray) and a.dtype == np.float32
    assert backend.to_host(a) is a or np.array_equal(backend.to_host(a), a)


def test_info_lists_versions_and_tiers():
    d = mr.info(as_dict=True)
    for key in ("minirobust", "numpy", "numba", "backend", "kernel_tiers", "kernel_policy", "cpu_threads"):
        assert key in d
    assert set(d["kernel_tiers"]) == set(mr.kernels.OPS)
    if d["cupy"] is None:
        assert "gpu_unavailable_reason" in d


@pytest.mark.gpu
def test_gpu_forward_backward_matches_cpu():
    cp = pytest.importorskip("cupy")
    model = mr.nets.paper_mnist(seed=0)
    x = np.random.default_rng(0).random((4, 1, 28, 28), dtype=np.float32)
    y = np.array([1, 2, 3, 4])
    loss_cpu, _, dx_cpu = model.loss_and_grads(x, y)
    mr.set_backend("gpu")
    try:
        gmodel = mr.nets.paper_mnist(seed=0)
        loss_gpu, _, dx_gpu = gmodel.loss_and_grads(cp.asarray(x), cp.asarray(y))
    finally:
        mr.set_backend("cpu")
    assert np.isclose(loss_cpu, loss_gpu, rtol=1e-4)
    np.testing.assert_allclose(cp.asnumpy(dx_gpu), dx_cpu, rtol=1e-3, atol=1e-5)


def test_allocator_tuning_is_opt_out(monkeypatch):
    from minirobust.hostmem import tune_allocator

    monkeypatch.setenv("MINIROBUST_MALLOC_TUNING", "0")
    assert tune_allocator() is False  # the opt-out is honoured
    monkeypatch.delenv("MINIROBUST_MALLOC_TUNING")
    assert tune_allocator() in (True, False)  # True on glibc; never raises elsewhere
