"""Where arrays live: the backend flag (``cpu`` | ``gpu``).

This is the ONLY module that imports cupy. Everything else asks it:

* ``get_xp(*arrays)`` -> the array module (numpy or cupy) that the given arrays belong to,
  or the active backend's module when no array is given. Ops follow their inputs, so
  nobody outside this file writes ``if gpu:``.
* ``to_device(x)`` puts an array on the active backend; ``to_host(x)`` brings it back
  to NumPy.

The flag is chosen, in order of precedence, by ``set_backend(name)``, the command
line's ``--backend``, or the environment variable ``MINIROBUST_BACKEND`` (default ``cpu``).
Choosing ``gpu`` fails at once, with the reason, when cupy cannot be imported or no CUDA
device is visible, instead of failing later deep inside a kernel.
"""

from __future__ import annotations

import os
import platform
import sys

import numpy as np

from .errors import BackendError, BackendMismatchError

BACKENDS = ("cpu", "gpu")

_active = None  # set lazily from MINIROBUST_BACKEND on first use
_cupy = None  # the cupy module once imported successfully
_cupy_error = None  # the reason cupy could not be used, kept for info() and errors


def validate_name(name) -> str:
    """'cpu' or 'gpu' (any case, spaces ignored); a BackendError for anything else."""
    if not isinstance(name, str) or name.strip().lower() not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}: choose one of {', '.join(BACKENDS)}")
    return name.strip().lower()


def _load_cupy():
    """Import cupy and check for a device; remember why not, if it fails."""
    global _cupy, _cupy_error
    if _cupy is not None:
        return _cupy
    try:
        import cupy  # noqa: PLC0415 - the one place cupy is imported
    except Exception as exc:  # ImportError, or a broken CUDA install raising anything
        _cupy_error = f"cupy could not be imported: {type(exc).__name__}: {exc}"
        raise BackendError(f"backend 'gpu' is unavailable: {_cupy_error}") from exc
    try:
        n_devices = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        _cupy_error = f"no usable CUDA device (driver/runtime error: {exc})"
        raise BackendError(f"backend 'gpu' is unavailable: {_cupy_error}") from exc
    if n_devices == 0:
        _cupy_error = "cupy imported but no CUDA device is visible"
        raise BackendError(f"backend 'gpu' is unavailable: {_cupy_error}")
    _cupy, _cupy_error = cupy, None
    return cupy


def cupy_module():
    """The cupy module (for the GPU kernel tier); a BackendError with the reason if unusable."""
    return _load_cupy()


def set_backend(name: str) -> str:
    """Choose where new arrays live: ``"cpu"`` (NumPy + Numba) or ``"gpu"`` (CuPy)."""
    global _active
    name = validate_name(name)
    if name == "gpu":
        _load_cupy()
    _active = name
    return name


def get_backend() -> str:
    """The active backend's name; read from ``MINIROBUST_BACKEND`` the first time."""
    if _active is None:
        set_backend(os.environ.get("MINIROBUST_BACKEND", "cpu"))
    return _active


def gpu_available() -> tuple[bool, str]:
    """(True, "") when the gpu backend can run here, else (False, reason)."""
    try:
        _load_cupy()
        return True, ""
    except BackendError as exc:
        return False, str(exc)


def is_device_array(x) -> bool:
    """True for a CuPy array, checked without importing cupy."""
    return type(x).__module__.split(".")[0] == "cupy"


def get_xp(*arrays):
    """The array module for ``arrays`` (numpy or cupy); the active one when none given.

    Raises BackendMismatchError when host and device arrays are mixed.
    """
    arrays = [a for a in arrays if a is not None and not np.isscalar(a)]
    if not arrays:
        return _cupy if get_backend() == "gpu" else np
    on_device = [is_device_array(a) for a in arrays]
    if all(on_device):
        return _load_cupy()
    if any(on_device):
        kinds = ", ".join(f"{type(a).__module__}.{type(a).__name__}" for a in arrays)
        raise BackendMismatchError(
            f"NumPy and CuPy arrays mixed in one operation ({kinds}); "
            "move them to one backend with minirobust.to_device / minirobust.to_host"
        )
    return np


def to_device(x, dtype=None):
    """Put ``x`` (any array-like) on the active backend, optionally casting ``dtype``."""
    if get_backend() == "gpu":
        cp = _load_cupy()
        return cp.asarray(x, dtype=dtype)
    return np.asarray(to_host(x), dtype=dtype)


def to_gpu(x, dtype=None):
    """Copy ``x`` to the GPU (a CuPy array), whatever the active backend; a BackendError
    with the reason when no GPU can be used."""
    return _load_cupy().asarray(x, dtype=dtype)


def to_host(x):
    """Return ``x`` as a NumPy array (copies from the GPU when needed)."""
    if is_device_array(x):
        return x.get()
    return np.asarray(x)


def _cuda_version(v: int) -> str:
    """CUDA's integer version (e.g. 13000) as '13.0'."""
    return f"{v // 1000}.{(v % 1000) // 10}"


def info() -> dict:
    """Versions, devices and the active backend, as a dict (see ``minirobust.info``)."""
    import numpy  # noqa: PLC0415

    out = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "numpy": numpy.__version__,
        "backend": get_backend(),
        "cpu_count": os.cpu_count(),
    }
    try:
        import numba  # noqa: PLC0415

        out["numba"] = numba.__version__
    except Exception as exc:  # pragma: no cover - numba is a hard dependency
        out["numba"] = f"unavailable ({exc})"
    ok, reason = gpu_available()
    if ok:
        cp = _cupy
        out["cupy"] = cp.__version__
        out["gpu_devices"] = [
            cp.cuda.runtime.getDeviceProperties(i)["name"].decode()
            for i in range(cp.cuda.runtime.getDeviceCount())
        ]
        out["cuda_runtime"] = _cuda_version(cp.cuda.runtime.runtimeGetVersion())
        out["cuda_driver"] = _cuda_version(cp.cuda.runtime.driverGetVersion())
    else:
        out["cupy"] = None
        out["gpu_unavailable_reason"] = reason
    return out
