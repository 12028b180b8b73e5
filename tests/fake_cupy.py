"""A stand-in for CuPy on machines without a GPU, strict where CuPy is strict.

``DeviceArray`` is a NumPy array whose type lives in a ``cupy`` module (so minirobust treats it
as a device array) and which, like a CuPy array, refuses to be mixed with a host (NumPy) array in
an operation: a ufunc or array function given both raises ``TypeError("Unsupported type ...")``.
``FakeCupy`` is the module: array creation returns DeviceArrays, ``cuda.runtime`` reports one
device, ``asnumpy`` / ``.get()`` copy to the host. With the GPU tier's kernels compiled for the
host (cuda_emulation.py), ``set_backend("gpu")`` then runs the whole GPU code path on the CPU:
every place where host and device arrays would meet on a real GPU fails here as it would there.

What it cannot catch: ``np.asarray(device_array)`` works here (CuPy forbids implicit conversion),
and timing or memory behaviour of a real card.
"""

from __future__ import annotations

import types

import numpy as np


class DeviceArray(np.ndarray):
    def get(self):
        """A host copy, as cupy.ndarray.get()."""
        return np.array(self.view(np.ndarray))

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        _refuse_host_arrays(inputs + (out or ()), f"{ufunc.__name__}.{method}")
        if out is not None:
            kwargs["out"] = tuple(_host_view(o) for o in out)
        result = getattr(ufunc, method)(*(_host_view(a) for a in inputs), **kwargs)
        return out[0] if out is not None and len(out) == 1 else _to_device(result)

    def __array_function__(self, func, types_, args, kwargs):
        _refuse_host_arrays(_flatten(args) + _flatten(tuple(kwargs.values())), func.__name__)
        return _to_device(func(*_unwrap(args), **_unwrap(kwargs)))


DeviceArray.__module__ = "cupy._core.core"  # what backend.is_device_array looks at


def _flatten(items):
    out = []
    for a in items:
        out.extend(_flatten(a) if isinstance(a, (list, tuple)) else [a])
    return tuple(out)


def _refuse_host_arrays(items, what):
    for a in items:
        if isinstance(a, np.ndarray) and not isinstance(a, DeviceArray) and a.ndim > 0:
            raise TypeError(f"Unsupported type {type(a)} in {what}: a host array given to a device operation")


def _host_view(a):
    return a.view(np.ndarray) if isinstance(a, DeviceArray) else a


def _unwrap(obj):
    if isinstance(obj, DeviceArray):
        return obj.view(np.ndarray)
    if isinstance(obj, (list, tuple)):
        return type(obj)(_unwrap(a) for a in obj)
    if isinstance(obj, dict):
        return {k: _unwrap(v) for k, v in obj.items()}
    return obj


def _to_device(result):
    if isinstance(result, np.ndarray) and not isinstance(result, DeviceArray):
        return result.view(DeviceArray)
    if isinstance(result, tuple):
        return tuple(_to_device(r) for r in result)
    if isinstance(result, list):
        return [_to_device(r) for r in result]
    return result


class _Event:
    def record(self):
        pass

    def synchronize(self):
        pass

    def elapsed_time(self, other):
        return 0.0


class FakeCupy(types.ModuleType):
    """``import cupy`` inside the tests: NumPy's functions, returning DeviceArrays."""

    __version__ = "0.0 (host emulation)"
    ndarray = DeviceArray

    def __init__(self):
        super().__init__("cupy")
        runtime = types.SimpleNamespace(
            getDeviceCount=lambda: 1, getDeviceProperties=lambda i: {"name": b"host emulation of a GPU"},
            runtimeGetVersion=lambda: 13000, driverGetVersion=lambda: 13000)
        self.cuda = types.SimpleNamespace(runtime=runtime, Event=_Event,
                                          Device=lambda *a: types.SimpleNamespace(synchronize=lambda: None))

    def asarray(self, x, dtype=None):
        if isinstance(x, DeviceArray):
            return x if dtype is None or x.dtype == np.dtype(dtype) else x.astype(dtype)
        return np.array(x, dtype=dtype).view(DeviceArray)  # a copy: a transfer to the "device"

    def asnumpy(self, x):
        return x.get() if isinstance(x, DeviceArray) else np.asarray(x)

    def __getattr__(self, name):
        value = getattr(np, name)
        if isinstance(value, type) or not callable(value):
            return value  # dtypes, constants

        def on_device(*args, **kwargs):
            _refuse_host_arrays(_flatten(args) + _flatten(tuple(kwargs.values())), name)
            return _to_device(value(*_unwrap(args), **_unwrap(kwargs)))

        return on_device
