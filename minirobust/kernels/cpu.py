"""The fast CPU tier: Numba kernels with the same signatures as ``reference.py``.

Each public function checks nothing and converts nothing beyond what the kernel needs;
the layers validate inputs once. The loops are parallel over the batch (``prange`` over
n), so two threads never write the same output element and no atomics are needed.

Numba's default threading layer (OpenMP) fights OpenBLAS for the cores; the workqueue
layer does not, so we pick it before Numba starts (unless the user chose one already).
"""

from __future__ import annotations

import os

os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")

import numba  # noqa: E402
import numpy as np  # noqa: E402
from numba import njit, prange  # noqa: E402

from .reference import output_size  # noqa: E402

_jit = dict(cache=True, parallel=True, fastmath=False, nogil=True)


@njit(**_jit)
def _im2col(x, KH, KW, SH, SW, PH, PW, OH, OW, cols):
    N, C, H, W = x.shape
    for n in prange(N):
        for c in range(C):
            for i in range(KH):
                for j in range(KW):
                    row = (c * KH + i) * KW + j
                    for oh in range(OH):
                        h = oh * SH + i - PH
                        base = (n * OH + oh) * OW
                        if h < 0 or h >= H:
                            for ow in range(OW):
                                cols[row, base + ow] = 0
                            continue
                        for ow in range(OW):
                            w = ow * SW + j - PW
                            cols[row, base + ow] = x[n, c, h, w] if 0 <= w < W else 0


@njit(**_jit)
def _col2im(cols, KH, KW, SH, SW, PH, PW, OH, OW, dx):
    N, C, H, W = dx.shape
    for n in prange(N):
        for c in range(C):
            for h in range(H):
                for w in range(W):
                    dx[n, c, h, w] = 0
            for i in range(KH):
                for j in range(KW):
                    row = (c * KH + i) * KW + j
                    for oh in range(OH):
                        h = oh * SH + i - PH
                        if h < 0 or h >= H:
                            continue
                        base = (n * OH + oh) * OW
                        for ow in range(OW):
                            w = ow * SW + j - PW
                            if 0 <= w < W:
                                dx[n, c, h, w] += cols[row, base + ow]


@njit(**_jit)
def _maxpool_forward(x, KH, KW, SH, SW, PH, PW, y, argmax):
    N, C, H, W = x.shape
    OH, OW = y.shape[2], y.shape[3]
    for n in prange(N):
        for c in range(C):
            for oh in range(OH):
                for ow in range(OW):
                    best = -np.inf
                    best_k = 0
                    for i in range(KH):
                        h = oh * SH + i - PH
                        for j in range(KW):
                            w = ow * SW + j - PW
                            v = x[n, c, h, w] if (0 <= h < H and 0 <= w < W) else -np.inf
                            if v > best:  # strict '>': ties keep the first index
                                best = v
                                best_k = i * KW + j
                    y[n, c, oh, ow] = best
                    argmax[n, c, oh, ow] = best_k


@njit(**_jit)
def _maxpool_backward(dy, argmax, KW, SH, SW, PH, PW, dx):
    N, C, H, W = dx.shape
    OH, OW = dy.shape[2], dy.shape[3]
    for n in prange(N):
        for c in range(C):
            for h in range(H):
                for w in range(W):
                    dx[n, c, h, w] = 0
            for oh in range(OH):
                for ow in range(OW):
                    k = argmax[n, c, oh, ow]
                    h = oh * SH + k // KW - PH
                    w = ow * SW + k % KW - PW
                    dx[n, c, h, w] += dy[n, c, oh, ow]


def im2col(x, KH, KW, SH, SW, PH, PW):
    """x: (N, C, H, W) -> cols: (K, P). Same as reference.im2col."""
    x = np.ascontiguousarray(x)
    N, C, H, W = x.shape
    OH, OW = output_size(H, KH, SH, PH), output_size(W, KW, SW, PW)
    cols = np.empty((C * KH * KW, N * OH * OW), dtype=x.dtype)
    _im2col(x, KH, KW, SH, SW, PH, PW, OH, OW, cols)
    return cols


def col2im(cols, x_shape, KH, KW, SH, SW, PH, PW):
    """cols: (K, P) -> dx: (N, C, H, W). Same as reference.col2im."""
    cols = np.ascontiguousarray(cols)
    N, C, H, W = x_shape
    OH, OW = output_size(H, KH, SH, PH), output_size(W, KW, SW, PW)
    dx = np.empty((N, C, H, W), dtype=cols.dtype)
    _col2im(cols, KH, KW, SH, SW, PH, PW, OH, OW, dx)
    return dx


def maxpool_forward(x, KH, KW, SH, SW, PH, PW):
    """x: (N, C, H, W) -> (y, argmax). Same as reference.maxpool_forward."""
    x = np.ascontiguousarray(x)
    N, C, H, W = x.shape
    OH, OW = output_size(H, KH, SH, PH), output_size(W, KW, SW, PW)
    y = np.empty((N, C, OH, OW), dtype=x.dtype)
    argmax = np.empty((N, C, OH, OW), dtype=np.int64)
    _maxpool_forward(x, KH, KW, SH, SW, PH, PW, y, argmax)
    return y, argmax


def maxpool_backward(dy, argmax, x_shape, KH, KW, SH, SW, PH, PW):
    """dy, argmax: (N, C, OH, OW) -> dx: x_shape. Same as reference.maxpool_backward."""
    dy = np.ascontiguousarray(dy)
    dx = np.empty(tuple(x_shape), dtype=dy.dtype)
    _maxpool_backward(dy, np.ascontiguousarray(argmax), KW, SH, SW, PH, PW, dx)
    return dx


def warmup(dtypes=(np.float32, np.float64)):
    """Compile (or load from the on-disk cache) every kernel for the given dtypes.

    Call it before timing anything, so the first training step is not charged for
    compilation.
    """
    for dt in dtypes:
        x = np.zeros((1, 1, 4, 4), dtype=dt)
        cols = im2col(x, 2, 2, 1, 1, 0, 0)
        col2im(cols, x.shape, 2, 2, 1, 1, 0, 0)
        y, am = maxpool_forward(x, 2, 2, 2, 2, 0, 0)
        maxpool_backward(y, am, x.shape, 2, 2, 2, 2, 0, 0)


THREADING_LAYER = os.environ.get("NUMBA_THREADING_LAYER")
NUMBA_VERSION = numba.__version__
