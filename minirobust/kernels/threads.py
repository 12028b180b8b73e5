"""Two thread pools share the cores: let the idle one sleep.

A training step alternates between matrix products (OpenBLAS, NumPy's BLAS, with its own
worker threads) and our kernels (Numba, with its own worker threads), dozens of times per step.
Out of the box both pools get in each other's way on a small machine:

* OpenBLAS keeps a worker spinning for 2^28 CPU cycles (~0.1 s) after every product, waiting
  for the next one. The Numba kernel that runs next then shares a core with it and runs about
  twice as slowly as when OpenBLAS's worker sleeps.
* Numba's OpenMP layer spins too, by default, and next to a spinning OpenBLAS a kernel launch
  can stall for milliseconds. Its ``workqueue`` layer sleeps instead, but wakes its workers
  through two rounds of condition variables per kernel, and a step launches ~15 kernels.

``configure()`` makes both sleep when idle: OpenBLAS gets its shortest thread timeout (2^4
cycles) and Numba the OpenMP layer with ``OMP_WAIT_POLICY=passive`` (a launch is then cheaper
than the workqueue's, and the calling thread works too). On the paper's net, batch 100, 2 cores,
this took about a quarter off both the plain and the robust step (figures in
benchmarks/README.md).

Whatever you set yourself wins: ``NUMBA_THREADING_LAYER``, ``OMP_WAIT_POLICY`` and
``OPENBLAS_THREAD_TIMEOUT`` from the environment are left alone, and
``MINIROBUST_THREAD_TUNING=0`` turns all of this off (then: the workqueue layer, OpenBLAS as
it is). Where something cannot be done (no OpenBLAS, no OpenMP runtime, Numba's threads
already started by other code) the rest still is, and ``describe()`` says what is in effect.
The settings are environment variables, so they are process-wide: an OpenMP library loaded
later in the same process (PyTorch's, say) and child processes see them too. GNU OpenMP cannot
run in a process forked after it started; there the kernels run on one thread (cpu._Kernel).
"""

from __future__ import annotations

import ctypes
import importlib
import os

BLAS_TIMEOUT = 4  # OpenBLAS's minimum: idle workers sleep after 2^4 cycles
_state = {}  # what configure() did, for describe()


def tuning_enabled() -> bool:
    return os.environ.get("MINIROBUST_THREAD_TUNING", "1") != "0"


def configure() -> dict:
    """Apply the settings above once (``kernels.cpu`` calls it before Numba starts threads)."""
    if _state:
        return dict(_state)
    if not tuning_enabled():
        _state["numba_layer"] = _choose_numba_layer("workqueue")
        _state["openblas_timeout"] = "untouched (MINIROBUST_THREAD_TUNING=0)"
        return dict(_state)
    omp_can_sleep = _ask_openmp_to_sleep()
    _state["openblas_timeout"] = _shorten_openblas_timeout()
    _state["numba_layer"] = _choose_numba_layer("omp" if omp_can_sleep and _omp_layer_loads() else "workqueue")
    return dict(_state)


def describe() -> dict:
    """The thread settings in effect: Numba's layer and thread count, OpenMP's wait policy,
    OpenBLAS's thread timeout (for ``minirobust.info()`` and the benchmarks)."""
    import numba  # noqa: PLC0415

    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel kernel has run yet
        layer = f"{numba.config.THREADING_LAYER} (not started yet)"
    return {"numba_threading_layer": layer, "numba_threads": numba.get_num_threads(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(default)"),
            "openblas_thread_timeout": _state.get("openblas_timeout", "(not configured)")}


# ----- OpenMP: sleep, do not spin --------------------------------------------------------------------
def _ask_openmp_to_sleep() -> bool:
    """Set OMP_WAIT_POLICY=passive unless the user chose a policy; True if it will hold."""
    policy = os.environ.get("OMP_WAIT_POLICY")
    if policy is not None:
        return policy.strip().lower() == "passive"
    if _loaded_libraries("libgomp.so"):  # already running: it read its settings at load time
        return False
    os.environ["OMP_WAIT_POLICY"] = "passive"
    return True


def _omp_layer_loads() -> bool:
    try:  # Numba's OpenMP layer needs the system's libgomp
        importlib.import_module("numba.np.ufunc.omppool")
        return True
    except ImportError:
        return False


def _choose_numba_layer(preferred: str) -> str:
    """Use ``preferred`` unless the user chose a layer or Numba's threads already run."""
    import numba  # noqa: PLC0415  (reads NUMBA_THREADING_LAYER into numba.config on import)

    try:
        return f"{numba.threading_layer()} (started before minirobust could choose)"
    except ValueError:
        pass
    if numba.config.THREADING_LAYER != "default":  # set by the user, in the environment or in code
        return f"{numba.config.THREADING_LAYER} (user's choice)"
    numba.config.THREADING_LAYER = preferred  # read when the first parallel kernel runs
    return preferred


# ----- OpenBLAS: idle workers sleep at once ------------------------------------------------------------
def _shorten_openblas_timeout() -> str:
    """Give NumPy's OpenBLAS the shortest thread timeout; a sentence saying what happened.

    OpenBLAS reads OPENBLAS_THREAD_TIMEOUT when it creates its workers. They exist already
    (NumPy is imported), so we re-read the environment and stop them; OpenBLAS starts them
    again, with the new timeout, at the next product (the path it takes after a fork).
    Stopping them must not race a product on another Python thread: the fast tier loads on the
    first fast op (or ``kernels.warmup()``), on the thread that calls it. If other threads of
    yours run NumPy products at that moment, set OPENBLAS_THREAD_TIMEOUT yourself instead.
    """
    if "OPENBLAS_THREAD_TIMEOUT" in os.environ:
        return f"{os.environ['OPENBLAS_THREAD_TIMEOUT']} (from the environment)"
    for path, lib in openblas_thread_servers():
        os.environ["OPENBLAS_THREAD_TIMEOUT"] = str(BLAS_TIMEOUT)
        lib.openblas_read_env()
        lib.blas_thread_shutdown_()
        now = lib.openblas_thread_timeout()
        if now == BLAS_TIMEOUT:
            return f"2^{BLAS_TIMEOUT} cycles ({os.path.basename(path)})"
        return f"2^{now} cycles ({os.path.basename(path)} did not take the new setting)"
    return "untouched (no OpenBLAS with a thread server found)"


def openblas_thread_servers() -> list:
    """(path, ctypes library) of each loaded OpenBLAS that exports what the settings above use:
    ``openblas_read_env``, ``blas_thread_shutdown_`` and ``openblas_thread_timeout`` (which
    returns the timeout in effect, as a power of 2)."""
    import numpy  # noqa: PLC0415, F401  (loads the BLAS)

    found = []
    for path in _loaded_libraries("openblas"):
        try:
            lib = ctypes.CDLL(path, mode=os.RTLD_NOLOAD | os.RTLD_NOW)
            lib.openblas_read_env, lib.blas_thread_shutdown_  # noqa: B018  (present?)
            lib.openblas_thread_timeout.restype = ctypes.c_int
        except (OSError, AttributeError):
            continue
        found.append((path, lib))
    return found


def _loaded_libraries(name_part: str) -> list:
    """Paths of the shared libraries loaded in this process whose file name contains ``name_part``."""
    try:
        with open("/proc/self/maps", encoding="utf-8") as f:
            paths = {line.split()[-1] for line in f if "/" in line}
    except OSError:  # not Linux
        return []
    return sorted(p for p in paths if name_part in os.path.basename(p))
