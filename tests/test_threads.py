"""Thread-pool settings (minirobust/kernels/threads.py): what configure() chooses, that the
user's own settings win, and that the choice does not change a single number.

Each case runs in a fresh interpreter: Numba's threading layer and OpenBLAS's threads are
process-wide and start once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ENV_KEYS = ("NUMBA_THREADING_LAYER", "OMP_WAIT_POLICY", "OPENBLAS_THREAD_TIMEOUT", "MINIROBUST_THREAD_TUNING")

# runs one fused conv stage forward and backward, then reports the settings in effect
PROBE = """
import json
import numpy as np
{before}
from minirobust import nets
from minirobust.kernels import cpu, threads
import numba
model = nets.paper_mnist(seed=0, dtype=np.float64)
x = np.random.default_rng(0).random((6, 1, 28, 28))
_, grads, dx = model.loss_and_grads(x, np.arange(6) % 10)
out = threads.describe()
out["layer"] = numba.threading_layer()
out["omp_available"] = threads._omp_layer_loads()
out["dx"] = dx.ravel().tolist()
out["dW1"] = grads["1_conv2d.W"].ravel().tolist()
servers = threads.openblas_thread_servers()
out["timeout_now"] = servers[0][1].openblas_thread_timeout() if servers else None
print(json.dumps(out))
"""


def probe(before="", **env):
    full = {k: v for k, v in os.environ.items() if k not in ENV_KEYS}
    full.update(env)
    res = subprocess.run([sys.executable, "-c", PROBE.format(before=before)], capture_output=True, text=True,
                         env=full, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def tuned():
    return probe()


def test_configure_picks_sleeping_openmp_or_workqueue(tuned):
    if tuned["omp_available"]:
        assert tuned["layer"] == "omp"
        assert tuned["omp_wait_policy"] == "passive"  # OpenMP's workers must not spin next to OpenBLAS's
    else:  # no libgomp on this machine: the layer that sleeps by itself
        assert tuned["layer"] == "workqueue"


def test_openblas_workers_get_the_shortest_timeout(tuned):
    if tuned["timeout_now"] is None:
        pytest.skip("NumPy's BLAS here is not an OpenBLAS with a thread server")
    assert tuned["timeout_now"] == 4
    assert tuned["openblas_thread_timeout"].startswith("2^4 cycles")


def test_numba_imported_first_still_gets_the_configured_layer(tuned):
    # before this was handled, `import numba` ahead of minirobust left Numba's default
    # (spinning OpenMP) in place, and a kernel after a matrix product could take 4 ms
    first = probe(before="import numba")
    assert first["layer"] == tuned["layer"]
    assert first["omp_wait_policy"] == tuned["omp_wait_policy"]


def test_the_users_settings_win():
    mine = probe(NUMBA_THREADING_LAYER="workqueue", OPENBLAS_THREAD_TIMEOUT="10")
    assert mine["layer"] == "workqueue"
    if mine["timeout_now"] is not None:
        assert mine["timeout_now"] == 10
    assert "from the environment" in mine["openblas_thread_timeout"]


def test_tuning_off_restores_the_old_settings():
    off = probe(MINIROBUST_THREAD_TUNING="0")
    assert off["layer"] == "workqueue"
    assert off["openblas_thread_timeout"].startswith("untouched")
    assert off["omp_wait_policy"] == "(default)"


def test_thread_settings_do_not_change_the_numbers(tuned):
    off = probe(MINIROBUST_THREAD_TUNING="0")
    np.testing.assert_array_equal(np.array(tuned["dx"]), np.array(off["dx"]))
    np.testing.assert_array_equal(np.array(tuned["dW1"]), np.array(off["dW1"]))


FORK_PROBE = """
import multiprocessing as mp, sys
import numpy as np
from minirobust import nets
from minirobust.kernels import cpu
import numba

model = nets.paper_mnist(seed=0, dtype=np.float64)
x = np.random.default_rng(0).random((4, 1, 28, 28))
def input_grad():
    return model.input_gradient(x, np.arange(4))
parent = input_grad()  # starts the thread team
def child(q):
    q.put((input_grad().tolist(), cpu._forked_after_openmp_started))
ctx = mp.get_context("fork")
q = ctx.Queue()
p = ctx.Process(target=child, args=(q,))
p.start()
dx, one_thread = q.get(timeout=120)  # the child compiles its one-thread builds first
p.join(60)
assert p.exitcode == 0, p.exitcode
np.testing.assert_array_equal(np.array(dx), parent)
print(numba.threading_layer(), one_thread)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() on this platform")
def test_a_forked_child_runs_the_kernels():
    # GNU OpenMP cannot run in a child forked after the parent started it; the kernels then
    # run their one-thread builds there, and give the same numbers
    full = {k: v for k, v in os.environ.items() if k not in ENV_KEYS}
    res = subprocess.run([sys.executable, "-c", FORK_PROBE], capture_output=True, text=True, env=full, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    layer, one_thread = res.stdout.split()[-2:]
    assert one_thread == str(layer == "omp")
