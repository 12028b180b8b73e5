"""The GPU tier's CUDA sources compiled by g++ for a serial run on the host (``host_shim.h``).

``emulated_gpu_tier(tmp_dir)`` returns a builder to put in place of ``gpu.build_kernels``: the
same sources, the same wrappers in ``minirobust/kernels/gpu.py``, NumPy arrays instead of CuPy
ones. A launch becomes one call of the kernel as a plain C function, whose grid-stride loop then
visits every index once. Kernels written with shared memory or ``__syncthreads`` could not run
this way; the GPU tier has none (every kernel is a per-output gather), so all of them are checked.
"""

from __future__ import annotations

import ctypes
import operator
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from minirobust import backend
from minirobust.kernels import gpu

from .fake_cupy import DeviceArray, FakeCupy, host_buffer

_SCALARS = {np.dtype(np.int64): ctypes.c_longlong, np.dtype(np.float32): ctypes.c_float,
            np.dtype(np.float64): ctypes.c_double}


def compile_host_library(dtype, out_dir: Path) -> Path:
    """g++ -> a shared library of every kernel for ``dtype``; raises if g++ is missing or fails."""
    if shutil.which("g++") is None:
        raise FileNotFoundError("g++ is not on the PATH")
    ctype = gpu.C_TYPES[np.dtype(dtype).name]
    source = out_dir / f"kernels_{ctype}.cu"
    source.write_text(gpu.source_code())
    library = out_dir / f"kernels_{ctype}.so"
    cmd = ["g++", "-std=c++14", "-O1", "-shared", "-fPIC", "-x", "c++", "-DMINIROBUST_HOST_EMULATION",
           f"-DREAL={ctype}", f"-I{gpu.SOURCE_DIR}", str(source), "-o", str(library)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return library


def _as_c_argument(a, device_arrays_only):
    if isinstance(a, DeviceArray):
        a = host_buffer(a)  # its "device memory"
    elif isinstance(a, np.ndarray) and device_arrays_only:
        raise TypeError(f"Unsupported type {type(a)}: a host array given to a kernel launch")
    if isinstance(a, np.ndarray):
        if not a.flags.c_contiguous:
            raise ValueError("kernels take C-contiguous arrays")
        return ctypes.c_void_p(a.ctypes.data)
    return _SCALARS[np.dtype(type(a))](a)


def emulated_builder(out_dir: Path, device_arrays_only: bool = False):
    """A drop-in for gpu.build_kernels that runs each kernel serially on the host. Arrays are
    NumPy arrays or fake_cupy DeviceArrays; ``device_arrays_only`` refuses NumPy ones, as a
    CuPy RawKernel does."""
    libraries = {}

    def build(dtype):
        name = np.dtype(dtype).name
        if name not in libraries:
            libraries[name] = ctypes.CDLL(str(compile_host_library(dtype, out_dir)))
        lib = libraries[name]

        def lookup(kernel_name):
            fn = getattr(lib, kernel_name)
            fn.restype = None

            def launch(grid, block, args):  # grid and block do not matter: one serial "thread"
                fn(*[_as_c_argument(a, device_arrays_only) for a in args])

            return launch

        return gpu._FunctionTable(lookup)

    return build


def install_gpu_stand_in(builder, set_attribute=setattr, set_item=operator.setitem):
    """Run minirobust's gpu backend on the host: FakeCupy as ``cupy`` and ``builder``'s kernels.
    The test fixture passes monkeypatch's setters (undone after the test); conftest.py the plain
    ones (for a whole session, MINIROBUST_TEST_FAKE_GPU=1)."""
    set_item(sys.modules, "cupy", FakeCupy())
    set_attribute(backend, "_cupy", None)
    set_attribute(backend, "_cupy_error", None)
    set_attribute(gpu, "build_kernels", builder)
    set_attribute(gpu, "_built", {})
