"""The GPU tier: CUDA kernels (``kernels/cuda/*.cu``) run through CuPy, same signatures as
``reference.py``.

Products stay with CuPy (cuBLAS): a convolution is im2col + one matrix product, the Chainer way
(CuPy 14 ships no cuDNN). The kernels here are the memory-bound ops around the products:
im2col/col2im, max-pooling with its argmax routing, the layout changes of the conv rows, the
fused bias + ReLU + max-pool stage and its backward, the steepest-ascent steps and projections
of the uncertainty sets (l_inf, l_2, l_1, l_p; projections for l_inf, l_2, l_1), and the SGD
and Adam updates. Every kernel is a gather (each thread writes its own outputs, no atomics), so
results are deterministic.

Ops this tier does not have fall back to the reference tier's array code, which runs on CuPy
arrays as it is: the fused stage's input gradient straight from the pool winners (the fused
stage goes through the rows here), and the l_p projection for 1 < p < inf (nested bisection).

Sources are compiled once per dtype (``-DREAL=float`` / ``-DREAL=double``) the first time an op
needs them, and cached (CuPy also keeps the compiled binaries on disk). ``build_kernels`` is the
one function that touches CuPy's compiler: the tests replace it with the same sources compiled
by g++ for a serial run on the host (``host_shim.h``), which checks every wrapper and kernel
here against the reference tier on machines without a GPU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..backend import get_xp
from .reference import output_size

SOURCE_DIR = Path(__file__).with_name("cuda")
SOURCES = ("conv.cu", "pool.cu", "fused.cu", "ascent.cu", "optim.cu")
C_TYPES = {"float32": "float", "float64": "double"}
THREADS = 256  # per block; each kernel's grid-stride loop covers any grid
MAX_BLOCKS = 65535 * 16

# ----- tuning: this tier's choices (read through kernels.tuning) ---------------------------------
FUSED_STAGES = ("conv_relu_maxpool",)
INPUT_GRAD_CHUNK_BYTES = None  # device memory is large; the product runs best on all columns at once


def prefers_winners_input_grad(pool_kernel, conv_stride, conv_kernel) -> bool:
    """No winners kernel on this tier yet: the fused stage goes through the rows (cuBLAS)."""
    return False


# ----- building and launching -----------------------------------------------------------------------

def source_code() -> str:
    """Every kernel source in one translation unit (the headers are found with -I)."""
    return "\n".join((SOURCE_DIR / name).read_text() for name in SOURCES)


def compile_options(dtype) -> tuple:
    """NVRTC options for ``dtype``'s build (CuPy adds the card's architecture)."""
    return (f"-DREAL={C_TYPES[np.dtype(dtype).name]}", f"-I{SOURCE_DIR}", "--std=c++14")


def build_kernels(dtype):
    """{kernel name -> launcher(grid, block, args)} for ``dtype``, compiled by CuPy (NVRTC)."""
    from ..backend import cupy_module  # noqa: PLC0415 - the GPU is only touched here

    module = cupy_module().RawModule(code=source_code(), options=compile_options(dtype))
    return _FunctionTable(module.get_function)


class _FunctionTable(dict):
    """Kernels looked up by name on first use, then kept."""

    def __init__(self, lookup):
        super().__init__()
        self._lookup = lookup

    def __missing__(self, name):
        self[name] = fn = self._lookup(name)
        return fn


_built: dict = {}


def kernel(name: str, dtype):
    """The compiled kernel ``name`` for ``dtype`` (built once per dtype)."""
    key = np.dtype(dtype).name
    if key not in C_TYPES:
        raise TypeError(f"GPU kernels exist for float32 and float64, not {key}")
    if key not in _built:
        _built[key] = build_kernels(key)
    return _built[key][name]


def launch(name: str, dtype, n: int, *args):
    """Run kernel ``name`` over ``n`` outputs. Integers go as int64 (the kernels' index_t),
    floats as ``dtype`` (their real_t), arrays as they are."""
    if n <= 0:
        return
    real = np.dtype(dtype).type
    # a scalar's width must match the kernel's parameter: a float32 scalar handed to a double
    # parameter would be read as garbage, so every float (NumPy's included) becomes real_t
    cast = tuple(np.int64(a) if isinstance(a, (int, np.integer)) else real(a) if isinstance(a, (float, np.floating))
                 else a for a in args)
    blocks = int(min(MAX_BLOCKS, -(-n // THREADS)))
    kernel(name, dtype)((blocks,), (THREADS,), cast)


def _contiguous(x):
    return get_xp(x).ascontiguousarray(x)


# ----- the ops (signatures and results as in reference.py) -----------------------------------------

def im2col(x, KH, KW, SH, SW, PH, PW, out=None):
    """x: (N, C, H, W) -> cols: (K, P). ``out``: an optional contiguous (K, P) array to fill."""
    xp, x = get_xp(x), _contiguous(x)
    N, C, H, W = x.shape
    OH, OW = output_size(H, KH, SH, PH), output_size(W, KW, SW, PW)
    cols = xp.empty((C * KH * KW, N * OH * OW), dtype=x.dtype) if out is None else out
    launch("im2col", x.dtype, cols.size, x, cols, N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW)
    return cols


def col2im(cols, x_shape, KH, KW, SH, SW, PH, PW):
    """cols: (K, P) -> dx: x_shape = (N, C, H, W), summing overlapping windows."""
    xp, cols = get_xp(cols), _contiguous(cols)
    N, C, H, W = x_shape
    OH, OW = output_size(H, KH, SH, PH), output_size(W, KW, SW, PW)
    dx = xp.empty(tuple(x_shape), dtype=cols.dtype)
    launch("col2im", cols.dtype, dx.size, cols, dx, N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW)
    return dx


def maxpool_forward(x, KH, KW, SH, SW, PH, PW):
    """x: (N, C, H, W) -> (y, argmax int64), as reference.maxpool_forward."""
    xp, x = get_xp(x), _contiguous(x)
    N, C, H, W = x.shape
    OH, OW = output_size(H, KH, SH, PH), output_size(W, KW, SW, PW)
    y = xp.empty((N, C, OH, OW), dtype=x.dtype)
    argmax = xp.empty((N, C, OH, OW), dtype=np.int64)
    launch("maxpool_forward", x.dtype, y.size, x, y, argmax, N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW)
    return y, argmax


def maxpool_backward(dy, argmax, x_shape, KH, KW, SH, SW, PH, PW):
    """dy, argmax: (N, C, OH, OW) -> dx: x_shape."""
    xp, dy = get_xp(dy), _contiguous(dy)
    argmax = _contiguous(argmax.astype(np.int64, copy=False))
    N, C, H, W = x_shape
    OH, OW = dy.shape[2], dy.shape[3]
    dx = xp.empty(tuple(x_shape), dtype=dy.dtype)
    launch("maxpool_backward", dy.dtype, dx.size, dy, argmax, dx, N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW)
    return dx


def _bias(b, F, like):
    xp = get_xp(like)
    return xp.zeros(F, dtype=like.dtype) if b is None else _contiguous(b.astype(like.dtype, copy=False))


def rows_to_nchw(rows, b, N, OH, OW):
    """(F, N*OH*OW) + bias -> contiguous (N, F, OH, OW)."""
    xp, rows = get_xp(rows), _contiguous(rows)
    F = rows.shape[0]
    y = xp.empty((N, F, OH, OW), dtype=rows.dtype)
    launch("rows_to_nchw", rows.dtype, y.size, rows, _bias(b, F, rows), y, N, F, OH * OW)
    return y


def nchw_to_rows(dy):
    """(N, F, OH, OW) -> contiguous (F, N*OH*OW)."""
    xp, dy = get_xp(dy), _contiguous(dy)
    N, F, OH, OW = dy.shape
    rows = xp.empty((F, N * OH * OW), dtype=dy.dtype)
    launch("nchw_to_rows", dy.dtype, rows.size, dy, rows, N, F, OH * OW)
    return rows


def rows_relu_maxpool(rows, b, N, OH, OW, KH, KW, SH, SW):
    """Bias + ReLU + unpadded max-pool of conv product rows -> (y, pos int32)."""
    xp, rows = get_xp(rows), _contiguous(rows)
    F = rows.shape[0]
    QH, QW = output_size(OH, KH, SH, 0), output_size(OW, KW, SW, 0)
    y = xp.empty((N, F, QH, QW), dtype=rows.dtype)
    pos = xp.empty((N, F, QH, QW), dtype=np.int32)
    launch("rows_relu_maxpool", rows.dtype, y.size, rows, _bias(b, F, rows), y, pos, N, F, OH, OW, KH, KW, SH, SW,
           QH, QW)
    return y, pos


def relu_maxpool_to_rows(dy, pos, OH, OW, KH, KW, SH, SW):
    """Backward of rows_relu_maxpool -> (drows (F, N*OH*OW), db (F,))."""
    xp, dy = get_xp(dy), _contiguous(dy)
    pos = _contiguous(pos.astype(np.int32, copy=False))
    N, F, QH, QW = dy.shape
    drows = xp.empty((F, N * OH * OW), dtype=dy.dtype)
    launch("relu_maxpool_to_rows", dy.dtype, drows.size, dy, pos, drows, N, F, OH, OW, KH, KW, SH, SW, QH, QW)
    db = xp.where(pos >= 0, dy, 0).sum(axis=(0, 2, 3)).astype(dy.dtype)  # a reduction: CuPy's own
    return drows, db


def sgd_momentum_step(param, grad, velocity, lr, wd, momentum):
    """In place on param and velocity, as reference.sgd_momentum_step."""
    if not (param.flags.c_contiguous and velocity.flags.c_contiguous):
        raise ValueError("sgd_momentum_step updates param and velocity in place: both must be C-contiguous")
    g = _contiguous(grad.astype(param.dtype, copy=False))
    launch("sgd_momentum_step", param.dtype, param.size, param, g, velocity, float(lr), float(wd), float(momentum),
           param.size)


# ----- steepest ascent and projections, per example over the non-batch axes ------------------------

def _per_example_op(name, g, *scalars):
    """Run a one-thread-per-example kernel ``name``: g (N, ...) -> out like g."""
    xp, g = get_xp(g), _contiguous(g)
    out = xp.empty_like(g)
    N = g.shape[0]
    launch(name, g.dtype, N, g, out, *scalars, N, g.size // max(N, 1))
    return out


def _elementwise_op(name, g, eps):
    xp, g = get_xp(g), _contiguous(g)
    out = xp.empty_like(g)
    launch(name, g.dtype, g.size, g, out, float(eps), g.size)
    return out


def linf_ascent_step(g, eps):
    """eps * sign(g)."""
    return _elementwise_op("linf_ascent_step", g, eps)


def l2_ascent_step(g, eps):
    """eps * g / ||g||_2 per example (0 for a zero gradient)."""
    return _per_example_op("l2_ascent_step", g, float(eps))


def l1_ascent_step(g, eps):
    """All of eps on each example's first coordinate of largest |g|."""
    return _per_example_op("l1_ascent_step", g, float(eps))


def lp_ascent_step(g, p, eps):
    """eps * sign(g) |g|^(q-1) / ||g||_q^(q-1) per example, 1 < p < inf."""
    return _per_example_op("lp_ascent_step", g, float(p), float(eps))


def linf_projection(delta, eps):
    """Clip each coordinate to [-eps, eps]."""
    return _elementwise_op("linf_projection", delta, eps)


def l2_projection(delta, eps):
    """Rescale the examples outside the l_2 ball onto it."""
    return _per_example_op("l2_projection", delta, float(eps))


def l1_projection(delta, eps):
    """Soft-threshold each example outside the l_1 ball (Duchi et al.)."""
    if eps == 0:
        return get_xp(delta).zeros_like(delta)
    return _per_example_op("l1_projection", delta, float(eps))


def adam_step(param, grad, m, v, lr, wd, beta1, beta2, eps, t):
    """In place on param, m and v, as reference.adam_step."""
    if not all(a.flags.c_contiguous for a in (param, m, v)):
        raise ValueError("adam_step updates param, m and v in place: they must be C-contiguous")
    g = _contiguous(grad.astype(param.dtype, copy=False))
    launch("adam_step", param.dtype, param.size, param, g, m, v, float(lr), float(wd), float(beta1), float(beta2),
           float(1 - beta1), float(1 - beta2), float(1 - beta1**t), float(1 - beta2**t), float(eps), param.size)
