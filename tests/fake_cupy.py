"""A stand-in for CuPy on machines without a GPU, strict where CuPy is strict.

``DeviceArray`` holds a NumPy array but is not one, so it behaves as ``cupy.ndarray`` does
(cupy/_core/core.pyx) in the ways that make code fail on a real card:

* implicit conversion to NumPy is refused: ``np.asarray(d)``, ``np.array(d)``,
  ``np.testing.assert_allclose(d, ...)`` raise CuPy's ``TypeError("Implicit conversion to a NumPy
  array is not allowed ...")``; ``d.get()``, ``cupy.asnumpy(d)``, ``float(d)``, ``int(d)``,
  ``d.item()``, ``d.tolist()`` work (and are counted in ``TRANSFERS``, as are host -> device copies);
* a device array and a host (NumPy) array in one ufunc, NumPy function, ``cupy.*`` function,
  kernel launch or ``d[...] = host_array`` raise ``TypeError("Unsupported type ...")``
  (NumPy arrays as *indices* are allowed, as CuPy converts them);
* reductions and scalar indexing give 0-d device arrays, not NumPy scalars (``d.sum()``, ``d[0, 0]``);
* there is no ``__index__``: a device scalar cannot stand in for a Python int in ``range``.

``FakeCupy`` is the module: array creation returns DeviceArrays, ``cuda.runtime`` reports one
device, ``asnumpy`` / ``.get()`` copy to the host. With the GPU tier's kernels compiled for the
host (cuda_emulation.py), ``set_backend("gpu")`` then runs the whole GPU code path on the CPU:
every place where host and device arrays would meet on a real GPU fails here as it would there.

What it cannot catch: a NumPy function CuPy does not implement (here NumPy's runs), and the
timing or memory behaviour of a real card.
"""

from __future__ import annotations

import time
import types

import numpy as np
from numpy.lib.mixins import NDArrayOperatorsMixin

# Copies between host and "device", counted so a test can say how often a training step crosses:
# to_device (cupy.asarray of host data), to_host (.get(), float(), int(), bool(), item(), tolist())
TRANSFERS = {"to_device": 0, "to_host": 0}

IMPLICIT_CONVERSION = ("Implicit conversion to a NumPy array is not allowed. "
                       "Please use `.get()` to construct a NumPy array explicitly.")
_NO_WRAP = {"item", "tolist", "tobytes"}  # methods that return host (Python) values, as CuPy's do


class DeviceArray(NDArrayOperatorsMixin):
    """An array "on the device": a NumPy array inside, reachable only the ways CuPy allows."""

    def __init__(self, host: np.ndarray):
        self._host = host

    # -- explicit copies to the host, and Python scalars --------------------------------------------
    def get(self, order="C"):
        """A host copy, as cupy.ndarray.get()."""
        TRANSFERS["to_host"] += 1
        return np.array(self._host, order=order)

    def __array__(self, dtype=None, copy=None):
        raise TypeError(IMPLICIT_CONVERSION)

    def __float__(self):
        TRANSFERS["to_host"] += 1
        return float(self._host)

    def __int__(self):
        TRANSFERS["to_host"] += 1
        return int(self._host)

    def __bool__(self):
        TRANSFERS["to_host"] += 1
        return bool(self._host)

    def __len__(self):
        return len(self._host)

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __repr__(self):
        return repr(self._host)

    def __str__(self):
        return str(self._host)

    def __format__(self, spec):
        return format(self._host if self._host.ndim else self._host[()], spec)

    # -- indexing: NumPy index arrays are fine, NumPy values are not --------------------------------
    def __getitem__(self, index):
        return _to_device(self._host[_unwrap(index)])

    def __setitem__(self, index, value):
        _refuse_host_arrays((value,), "__setitem__")
        self._host[_unwrap(index)] = _unwrap(value)

    # -- NumPy's protocols, answered as CuPy answers them --------------------------------------------
    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        _refuse_host_arrays(inputs + (out or ()), f"{ufunc.__name__}.{method}")
        if out is not None:
            kwargs["out"] = tuple(_unwrap(o) for o in out)
        result = getattr(ufunc, method)(*_unwrap(inputs), **kwargs)
        if out is not None and len(out) == 1:
            return out[0]
        return _to_device(result)

    def __array_function__(self, func, types_, args, kwargs):
        _refuse_host_arrays(_flatten(args) + _flatten(tuple(kwargs.values())), func.__name__)
        return _to_device(func(*_unwrap(args), **_unwrap(kwargs)))

    # -- everything else (shape, dtype, flags, reshape, astype, sum, ...) from the array inside ------
    def __getattr__(self, name):
        if name.startswith("__") or name in ("ctypes", "data", "base"):
            raise AttributeError(f"DeviceArray has no host attribute {name!r}")
        value = getattr(self._host, name)
        if not callable(value):
            return _to_device(value, same_as=self)
        if name in _NO_WRAP:
            TRANSFERS["to_host"] += 1
            return value

        def method(*args, **kwargs):
            _refuse_host_arrays(_flatten(args) + _flatten(tuple(kwargs.values())), f"ndarray.{name}")
            return _to_device(value(*_unwrap(args), **_unwrap(kwargs)), same_as=self)

        return method

    def __deepcopy__(self, memo):
        return DeviceArray(self._host.copy())

    def __reduce__(self):
        return (DeviceArray, (self._host,))

    __hash__ = None


DeviceArray.__module__ = "cupy._core.core"  # what backend.is_device_array looks at
DeviceArray.__name__ = DeviceArray.__qualname__ = "ndarray"


def host_buffer(a: DeviceArray) -> np.ndarray:
    """The NumPy array inside a DeviceArray (for the emulated kernels: "device memory")."""
    return a._host


def _flatten(items):
    out = []
    for a in items:
        out.extend(_flatten(a) if isinstance(a, (list, tuple)) else [a])
    return tuple(out)


def _refuse_host_arrays(items, what):
    for a in items:
        if isinstance(a, np.ndarray) and a.ndim > 0:
            raise TypeError(f"Unsupported type {type(a)} in {what}: a host array given to a device operation")


def _unwrap(obj):
    if isinstance(obj, DeviceArray):
        return obj._host
    if isinstance(obj, (list, tuple)):
        return type(obj)(_unwrap(a) for a in obj)
    if isinstance(obj, dict):
        return {k: _unwrap(v) for k, v in obj.items()}
    return obj


def _to_device(result, same_as=None):
    """NumPy results as device arrays; NumPy scalars as 0-d device arrays, as CuPy gives them."""
    if same_as is not None and result is same_as._host:
        return same_as  # x.astype(x.dtype, copy=False) is x, as on CuPy
    if isinstance(result, np.ndarray):
        return DeviceArray(result)
    if isinstance(result, np.generic) and not isinstance(result, (np.str_, np.bytes_)):
        return DeviceArray(np.asarray(result))
    if isinstance(result, tuple):
        return tuple(_to_device(r) for r in result)
    if isinstance(result, list):
        return [_to_device(r) for r in result]
    return result


class _Event:
    """cupy.cuda.Event: the host clock at record()."""

    def __init__(self):
        self.at = None

    def record(self):
        self.at = time.perf_counter()

    def synchronize(self):
        pass


def _get_elapsed_time(start, end):
    """cupy.cuda.get_elapsed_time: milliseconds between two recorded events (CuPy's Event has
    no elapsed_time method; PyTorch's has)."""
    return (end.at - start.at) * 1e3


class _DeviceFunction:
    """``cupy.<name>``: NumPy's function on the arrays inside; refuses host arrays."""

    def __init__(self, name, fn):
        self._name, self._fn = name, fn

    def __call__(self, *args, **kwargs):
        _refuse_host_arrays(_flatten(args) + _flatten(tuple(kwargs.values())), f"cupy.{self._name}")
        return _to_device(self._fn(*_unwrap(args), **_unwrap(kwargs)))

    def __getattr__(self, name):  # ufunc methods: cupy.add.at, cupy.maximum.reduce
        return _DeviceFunction(f"{self._name}.{name}", getattr(self._fn, name))


class FakeCupy(types.ModuleType):
    """``import cupy`` inside the tests: NumPy's functions on DeviceArrays."""

    __version__ = "0.0 (host emulation)"
    ndarray = DeviceArray

    def __init__(self):
        super().__init__("cupy")
        runtime = types.SimpleNamespace(
            getDeviceCount=lambda: 1, getDeviceProperties=lambda i: {"name": b"host emulation of a GPU"},
            runtimeGetVersion=lambda: 13000, driverGetVersion=lambda: 13000)
        self.cuda = types.SimpleNamespace(runtime=runtime, Event=_Event, get_elapsed_time=_get_elapsed_time,
                                          Device=lambda *a: types.SimpleNamespace(synchronize=lambda: None))

    def asarray(self, x, dtype=None):
        """A host -> device copy (the one door in), or ``x`` itself when already there."""
        if isinstance(x, DeviceArray):
            return x if dtype is None or x.dtype == np.dtype(dtype) else x.astype(dtype)
        TRANSFERS["to_device"] += 1
        return DeviceArray(np.array(x, dtype=dtype))

    array = asarray

    def asnumpy(self, x):
        return x.get() if isinstance(x, DeviceArray) else np.asarray(x)

    def __getattr__(self, name):
        value = getattr(np, name)
        if isinstance(value, (type, types.ModuleType)) or not callable(value):
            if isinstance(value, types.ModuleType):
                raise AttributeError(f"FakeCupy has no submodule {name!r} (cupy.{name} would make device arrays)")
            return value  # dtypes, constants
        return _DeviceFunction(name, value)
