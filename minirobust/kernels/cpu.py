"""The fast CPU tier: Numba kernels with the same signatures as ``reference.py``.

Each public function checks nothing and converts nothing beyond what the kernel needs;
the layers validate inputs once. The loops are parallel (``prange``) over images, channels
or rows, so two threads never write the same output element and no atomics are needed.

Numba's threads and OpenBLAS's share the cores; ``threads.configure()`` (run before Numba
starts its threads) makes each pool sleep while the other works: see threads.py.
"""

from __future__ import annotations

import os

from . import threads

threads.configure()

import numba  # noqa: E402
import numpy as np  # noqa: E402
from numba import njit, prange  # noqa: E402

from . import reference  # noqa: E402
from .reference import output_size, window_patch  # noqa: E402

_jit = dict(cache=True, parallel=True, fastmath=False, nogil=True)


class _Kernel:
    """One loop nest, two builds: on Numba's thread team (``prange`` splits the loop) or on
    the calling thread alone (``prange`` runs as ``range``).

    The one-thread build is for a process forked after the team started under the OpenMP
    layer: GNU OpenMP cannot run in such a child (Numba would stop it), so the child runs the
    same loops on one thread. It is compiled there on first use (not cached: Numba's on-disk
    cache tells builds of one function apart by signature only).
    """

    def __init__(self, fn):
        self.team = njit(**_jit)(fn)
        self.one_thread = njit(**{**_jit, "parallel": False, "cache": False})(fn)

    def __call__(self, *args):
        return (self.one_thread if _forked_after_openmp_started else self.team)(*args)


_forked_after_openmp_started = False


def _after_fork_in_child():
    global _forked_after_openmp_started
    try:
        started = numba.threading_layer() == "omp"
    except ValueError:  # the parent never started the team: the child can start its own
        started = False
    _forked_after_openmp_started = _forked_after_openmp_started or started


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# The kernels below read a PRE-PADDED input (zeros for im2col, -inf for pooling), so their
# inner loops have no bounds checks and compile to straight, vectorisable copies.

@_Kernel
def _im2col(xpad, KH, KW, SH, SW, OH, OW, cols):
    N = xpad.shape[0]
    for row in prange(cols.shape[0]):  # each thread fills whole rows: long contiguous writes
        c, i, j = row // (KH * KW), (row // KW) % KH, row % KW
        for n in range(N):
            for oh in range(OH):
                base = (n * OH + oh) * OW
                h = oh * SH + i
                if SW == 1 and OW >= 16:  # long unit-stride rows: a slice copy (memcpy-like)
                    cols[row, base : base + OW] = xpad[n, c, h, j : j + OW]
                elif SW == 1:  # short rows: a plain loop, cheaper than making slice views
                    for ow in range(OW):
                        cols[row, base + ow] = xpad[n, c, h, j + ow]
                else:
                    for ow in range(OW):
                        cols[row, base + ow] = xpad[n, c, h, ow * SW + j]


@njit(cache=True, inline="always")
def _fold_row(crow, dxpad, c, i, j, N, OH, OW, SH, SW):
    # add one row of cols (window offset i, j of channel c) back onto every image
    for n in range(N):
        for oh in range(OH):
            base = (n * OH + oh) * OW
            h = oh * SH + i
            for ow in range(OW):
                dxpad[n, c, h, ow * SW + j] += crow[base + ow]


@_Kernel
def _col2im(cols, KH, KW, SH, SW, OH, OW, dxpad):
    N, C = dxpad.shape[0], dxpad.shape[1]
    # parallel over channels: each task streams its channel's KH*KW rows of cols in order.
    # Measured 1.4-3x faster than going image by image, even for C = 1 (one thread); splitting
    # the images into blocks for more tasks was slower.
    for c in prange(C):
        dxpad[:, c] = 0
        for i in range(KH):
            for j in range(KW):
                crow = cols[(c * KH + i) * KW + j]
                if SW == 1:  # a constant stride: LLVM vectorises the inner loop
                    _fold_row(crow, dxpad, c, i, j, N, OH, OW, SH, 1)
                else:
                    _fold_row(crow, dxpad, c, i, j, N, OH, OW, SH, SW)


# ----- NaN: never hidden -------------------------------------------------------------------------
# NumPy's max propagates NaN and its argmax returns the first NaN; the pooling loops below compare
# with a plain '>' (which skips NaN), because any extra test inside them makes them several times
# slower (measured 4x on the fused stage). So each plane is first checked for NaN on its bit
# patterns, |bits| > the bits of inf, an integer max that vectorises and reads the plane from L1,
# and only a plane that holds a NaN takes the slow, NaN-aware path.

@njit(cache=True, inline="always")
def _has_nan(bits, absmask, inf_bits):
    """True when the float values whose bit patterns are ``bits`` (1-D) hold a NaN."""
    m = bits[0] & absmask
    for k in range(1, bits.size):
        m = max(m, bits[k] & absmask)
    return m > inf_bits


@njit(cache=True)
def _first_nan(window):
    """The row-major index of a 2-D window's first NaN, or -1 when it holds none."""
    KH, KW = window.shape
    for i in range(KH):
        for j in range(KW):
            if window[i, j] != window[i, j]:
                return i * KW + j
    return -1


def _nan_bits(dtype):
    """(integer view dtype, absolute-value mask, bits of +inf) for a float dtype."""
    if np.dtype(dtype) == np.float32:
        return np.int32, np.int32(0x7FFFFFFF), np.int32(0x7F800000)
    return np.int64, np.int64(0x7FFFFFFFFFFFFFFF), np.int64(0x7FF0000000000000)


@_Kernel
def _maxpool_forward(xpad, KH, KW, SH, SW, y, argmax, bits, absmask, inf_bits):
    N, C = xpad.shape[0], xpad.shape[1]
    OH, OW = y.shape[2], y.shape[3]
    for n in prange(N):
        for c in range(C):
            plane_has_nan = _has_nan(bits[n, c].ravel(), absmask, inf_bits)
            for oh in range(OH):
                for ow in range(OW):
                    best = xpad[n, c, oh * SH, ow * SW]
                    best_k = 0
                    for i in range(KH):
                        for j in range(KW):
                            v = xpad[n, c, oh * SH + i, ow * SW + j]
                            if v > best:  # strict '>': ties keep the first index
                                best = v
                                best_k = i * KW + j
                    if plane_has_nan:  # rare: the window's first NaN wins, as in NumPy
                        k = _first_nan(xpad[n, c, oh * SH : oh * SH + KH, ow * SW : ow * SW + KW])
                        if k >= 0:
                            best, best_k = xpad[n, c, oh * SH + k // KW, ow * SW + k % KW], k
                    y[n, c, oh, ow] = best
                    argmax[n, c, oh, ow] = best_k


@_Kernel
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


@_Kernel
def _rows_to_nchw(rows, b, N, OH, OW, y):
    F = rows.shape[0]
    S = OH * OW
    for n in prange(N):
        for f in range(F):
            bias = b[f]
            for s in range(S):
                y[n, f, s] = rows[f, n * S + s] + bias


@_Kernel
def _nchw_to_rows(dy, rows):
    N, F, S = dy.shape
    for f in prange(F):
        for n in range(N):
            for s in range(S):
                rows[f, n * S + s] = dy[n, f, s]


@njit(cache=True, inline="always")
def _relu_maxpool_plane(plane, bias, OW, KH, KW, SH, SW, y, pos):
    # one (n, f) plane of the product rows -> its pooled (QH, QW) outputs and winner positions
    QH, QW = y.shape
    for qh in range(QH):
        for qw in range(QW):
            p0 = qh * SH * OW + qw * SW  # the window's top-left position
            best, best_p = plane[p0], p0
            for i in range(KH):
                for j in range(KW):
                    p = p0 + i * OW + j
                    if plane[p] > best:  # strict '>': ties keep the first position
                        best, best_p = plane[p], p
            best += bias  # the bias is the same across the window: add it once
            if best > 0:
                y[qh, qw] = best
                pos[qh, qw] = best_p
            else:  # ReLU: zero output, no gradient
                y[qh, qw] = 0
                pos[qh, qw] = -1


@njit(cache=True)
def _relu_maxpool_plane_with_nan(plane, bias, OW, KH, KW, SH, SW, y, pos):
    # a plane that holds a NaN: a window with one gives NaN (relu(NaN) = NaN) and no gradient
    _relu_maxpool_plane(plane, bias, OW, KH, KW, SH, SW, y, pos)
    QH, QW = y.shape
    for qh in range(QH):
        for qw in range(QW):
            p0 = qh * SH * OW + qw * SW
            for i in range(KH):
                for j in range(KW):
                    if plane[p0 + i * OW + j] != plane[p0 + i * OW + j]:
                        y[qh, qw] = plane[p0 + i * OW + j]
                        pos[qh, qw] = -1


@_Kernel
def _rows_relu_maxpool(rows, b, N, OH, OW, KH, KW, SH, SW, y, pos, bits, absmask, inf_bits):
    F = rows.shape[0]
    S = OH * OW
    for f in prange(F):  # each thread streams whole rows of the product
        for n in range(N):
            plane = rows[f, n * S : (n + 1) * S]
            if _has_nan(bits[f, n * S : (n + 1) * S], absmask, inf_bits):
                _relu_maxpool_plane_with_nan(plane, b[f], OW, KH, KW, SH, SW, y[n, f], pos[n, f])
                continue
            # the common windows get their own inlined copy with constant sizes, which LLVM
            # unrolls: 1.5-2x faster than the generic loop (measured on the paper's nets)
            if KH == 2 and KW == 2:
                _relu_maxpool_plane(plane, b[f], OW, 2, 2, SH, SW, y[n, f], pos[n, f])
            elif KH == 3 and KW == 3:
                _relu_maxpool_plane(plane, b[f], OW, 3, 3, SH, SW, y[n, f], pos[n, f])
            else:
                _relu_maxpool_plane(plane, b[f], OW, KH, KW, SH, SW, y[n, f], pos[n, f])


@_Kernel
def _relu_maxpool_to_rows(dy, pos, S, drows, db):
    N, F, QH, QW = dy.shape
    for f in prange(F):  # each thread owns whole rows of drows: a memset, then a scatter
        drows[f, :] = 0
        total = 0.0
        for n in range(N):
            for qh in range(QH):
                for qw in range(QW):
                    p = pos[n, f, qh, qw]
                    if p >= 0:
                        drows[f, n * S + p] += dy[n, f, qh, qw]
                        total += dy[n, f, qh, qw]
        db[f] = total


# ----- the fused stage's input gradient, straight from the pool winners ----------------------
# Each live pooled output (n, f, qh, qw) has one winner in its window, at window offset (a, b),
# and its gradient reaches the input through the filter W[f] shifted by that offset: a
# (C, TH, TW) patch of the input under the window. So a window's patch of dx is a sum over the
# filters of dy * (W[f] shifted to f's winner), and dx is the sum of the windows' patches. On a
# first layer (C = 1, a 3x3 pool) that is at most a quarter of the multiply-adds of W.T @ drows,
# which also multiplies every non-winner's zero, and it never writes drows or the columns.
# Skipping the windows ReLU blocked with a branch measured faster than adding 0 * W[f] without
# one, on the paper net's first convolution.

@_Kernel
def _shift_filters(W, KH, KW, CSH, CSW, TH, TW, rows):
    F, C, CKH, CKW = W.shape
    for f in prange(F):
        for a in range(KH):
            for b in range(KW):
                r = (f * KH + a) * KW + b
                rows[r, :] = 0
                for c in range(C):
                    for i in range(CKH):
                        for j in range(CKW):
                            rows[r, (c * TH + a * CSH + i) * TW + b * CSW + j] = W[f, c, i, j]


@_Kernel
def _winners_to_input_grad(dy, pos, shifted, offset_of, OW, SH, SW, CSH, CSW, TH, TW, dxpad):
    N, F, QH, QW = dy.shape
    C, L = dxpad.shape[1], shifted.shape[1]
    KK = shifted.shape[0] // F  # window positions per filter
    for n in prange(N):  # each thread owns whole images: no two threads add to one pixel
        patches = np.zeros((QH * QW, L), dtype=dxpad.dtype)  # one row per pooling window
        for f in range(F):  # filter outermost: consecutive adds go to different rows (no chain)
            for qh in range(QH):
                for qw in range(QW):
                    p = pos[n, f, qh, qw]
                    if p >= 0:  # a window whose maximum ReLU blocked passes nothing
                        d = dy[n, f, qh, qw]
                        r = f * KK + offset_of[p - (qh * SH * OW + qw * SW)]
                        q = qh * QW + qw
                        for t in range(L):
                            patches[q, t] += d * shifted[r, t]
        dxpad[n] = 0
        for qh in range(QH):  # fold the window patches onto the (padded) image; they overlap
            for qw in range(QW):
                q, top, left = qh * QW + qw, qh * SH * CSH, qw * SW * CSW
                for c in range(C):
                    for i in range(TH):
                        for j in range(TW):
                            dxpad[n, c, top + i, left + j] += patches[q, (c * TH + i) * TW + j]


@_Kernel
def _sgd_momentum_step(param, grad, velocity, lr, wd, momentum):
    # one pass over the three arrays (NumPy's expression form makes five, single-threaded)
    for k in prange(param.size):
        step = lr * grad[k] + (lr * wd) * param[k]
        velocity[k] = velocity[k] * momentum - step
        param[k] += velocity[k]


# ----- tuning: this tier's choices for the fused stage (read through kernels.tuning) ----------

# Stages this tier runs fused when a model's ``fuse`` is "auto" (see minirobust/fused.py).
FUSED_STAGES = ("conv_relu_maxpool",)

# Bytes of the fused stage's input-gradient columns per chunk of images. ``W.T @ drows`` is as
# big as im2col's columns, KH*KW times the input (63 MB for the larger benchmark net's second
# convolution at batch 100); written whole, it has left the cache before col2im reads it back.
# 8 MB measured best of 2-16 MB on a 2-core AMD EPYC (2 MB L2 per core, 32 MB L3); the paper's
# net (<= 5.8 MB) never splits. Chunking the forward's product the same way was slower (the
# product runs less efficiently on fewer columns), so only the input gradient is chunked.
INPUT_GRAD_CHUNK_BYTES = 8 << 20

# The input gradient goes straight from the pool winners when that takes at most this fraction
# of the multiply-adds of W.T @ drows. Per window and input channel it is one (TH, TW) patch per
# filter, against KH*KW positions times a CKH x CKW filter: 49 / (9 * 25) = 0.22 on the paper
# net's first convolution, 36 / (4 * 25) = 0.36 on the other three benchmark convolutions. A
# 1x1 pool (ratio 1) keeps the product, which BLAS runs faster.
WINNERS_MAX_WORK = 0.5


def prefers_winners_input_grad(pool_kernel, conv_stride, conv_kernel) -> bool:
    """Take the fused stage's dx from the pool winners (``conv_relu_maxpool_input_grad``)
    when it is less work than the product through the rows (``WINNERS_MAX_WORK``)."""
    (KH, KW), (CKH, CKW) = pool_kernel, conv_kernel
    TH, TW = window_patch(KH, KW, conv_stride, conv_kernel)
    return TH * TW <= WINNERS_MAX_WORK * KH * KW * CKH * CKW


def _padded(x, PH, PW, value):
    x = np.ascontiguousarray(x)
    if PH == 0 and PW == 0:
        return x
    return np.pad(x, ((0, 0), (0, 0), (PH, PH), (PW, PW)), mode="constant", constant_values=value)


def _unpadded(xpad, PH, PW):
    """The inverse of _padded: the (contiguous) interior of a padded (N, C, H, W) array."""
    if PH == 0 and PW == 0:
        return xpad
    return np.ascontiguousarray(xpad[:, :, PH : xpad.shape[2] - PH, PW : xpad.shape[3] - PW])


def im2col(x, KH, KW, SH, SW, PH, PW, out=None):
    """x: (N, C, H, W) -> cols: (K, P). Same as reference.im2col (``out``: a buffer to fill)."""
    N, C, H, W = x.shape
    OH, OW = output_size(H, KH, SH, PH), output_size(W, KW, SW, PW)
    cols = np.empty((C * KH * KW, N * OH * OW), dtype=x.dtype) if out is None else out
    _im2col(_padded(x, PH, PW, 0), KH, KW, SH, SW, OH, OW, cols)
    return cols


def col2im(cols, x_shape, KH, KW, SH, SW, PH, PW):
    """cols: (K, P) -> dx: (N, C, H, W). Same as reference.col2im."""
    cols = np.ascontiguousarray(cols)
    N, C, H, W = x_shape
    OH, OW = output_size(H, KH, SH, PH), output_size(W, KW, SW, PW)
    dxpad = np.empty((N, C, H + 2 * PH, W + 2 * PW), dtype=cols.dtype)
    _col2im(cols, KH, KW, SH, SW, OH, OW, dxpad)
    return _unpadded(dxpad, PH, PW)


def maxpool_forward(x, KH, KW, SH, SW, PH, PW):
    """x: (N, C, H, W) -> (y, argmax). Same as reference.maxpool_forward."""
    N, C, H, W = x.shape
    OH, OW = output_size(H, KH, SH, PH), output_size(W, KW, SW, PW)
    y = np.empty((N, C, OH, OW), dtype=x.dtype)
    argmax = np.empty((N, C, OH, OW), dtype=np.int64)
    xpad = _padded(x, PH, PW, -np.inf)
    int_type, absmask, inf_bits = _nan_bits(x.dtype)
    _maxpool_forward(xpad, KH, KW, SH, SW, y, argmax, xpad.view(int_type), absmask, inf_bits)
    return y, argmax


def maxpool_backward(dy, argmax, x_shape, KH, KW, SH, SW, PH, PW):
    """dy, argmax: (N, C, OH, OW) -> dx: x_shape. Same as reference.maxpool_backward."""
    dy = np.ascontiguousarray(dy)
    dx = np.empty(tuple(x_shape), dtype=dy.dtype)
    _maxpool_backward(dy, np.ascontiguousarray(argmax), KW, SH, SW, PH, PW, dx)
    return dx


def rows_to_nchw(rows, b, N, OH, OW):
    """(F, N*OH*OW) + bias -> contiguous (N, F, OH, OW). Same as reference.rows_to_nchw."""
    rows = np.ascontiguousarray(rows)
    F = rows.shape[0]
    bias = np.zeros(F, dtype=rows.dtype) if b is None else np.ascontiguousarray(b, dtype=rows.dtype)
    y = np.empty((N, F, OH * OW), dtype=rows.dtype)
    _rows_to_nchw(rows, bias, N, OH, OW, y)
    return y.reshape(N, F, OH, OW)


def nchw_to_rows(dy):
    """(N, F, OH, OW) -> contiguous (F, N*OH*OW). Same as reference.nchw_to_rows."""
    N, F, OH, OW = dy.shape
    rows = np.empty((F, N * OH * OW), dtype=dy.dtype)
    _nchw_to_rows(np.ascontiguousarray(dy).reshape(N, F, OH * OW), rows)
    return rows


def rows_relu_maxpool(rows, b, N, OH, OW, KH, KW, SH, SW):
    """Bias + ReLU + unpadded max-pool of conv product rows. Same as reference.rows_relu_maxpool."""
    rows = np.ascontiguousarray(rows)
    F = rows.shape[0]
    QH, QW = output_size(OH, KH, SH, 0), output_size(OW, KW, SW, 0)
    bias = np.zeros(F, dtype=rows.dtype) if b is None else np.ascontiguousarray(b, dtype=rows.dtype)
    y = np.empty((N, F, QH, QW), dtype=rows.dtype)
    pos = np.empty((N, F, QH, QW), dtype=np.int32)
    int_type, absmask, inf_bits = _nan_bits(rows.dtype)
    _rows_relu_maxpool(rows, bias, N, OH, OW, KH, KW, SH, SW, y, pos, rows.view(int_type), absmask, inf_bits)
    return y, pos


def relu_maxpool_to_rows(dy, pos, OH, OW, KH, KW, SH, SW):
    """Backward of rows_relu_maxpool -> (drows, db). Same as reference.relu_maxpool_to_rows."""
    dy, pos = np.ascontiguousarray(dy), np.ascontiguousarray(pos)
    N, F = dy.shape[0], dy.shape[1]
    drows = np.empty((F, N * OH * OW), dtype=dy.dtype)
    db = np.empty(F, dtype=dy.dtype)
    _relu_maxpool_to_rows(dy, pos, OH * OW, drows, db)
    return drows, db


def shifted_filters(W, KH, KW, conv_stride, dtype):
    """W (F, C, CKH, CKW) -> (F*KH*KW, L): row f*KH*KW + a*KW + b is W[f] placed at the input
    offset of pool-window position (a, b) in a (C, TH, TW) patch, flattened; L pads
    C*TH*TW with zeros to a multiple of 16 floats (whole vector registers). Returns (rows, TH, TW)."""
    F, C, CKH, CKW = W.shape
    CSH, CSW = conv_stride
    TH, TW = window_patch(KH, KW, conv_stride, (CKH, CKW))
    rows = np.empty((F * KH * KW, -(-(C * TH * TW) // 16) * 16), dtype=dtype)
    # a kernel, not NumPy slices: it runs once per backward, and for the paper net's second
    # convolution (1.2 MB of rows) NumPy's zeros + slice copies were a visible part of it
    _shift_filters(np.ascontiguousarray(W, dtype=dtype), KH, KW, CSH, CSW, TH, TW, rows)
    return rows, TH, TW


def conv_relu_maxpool_input_grad(dy, pos, W, x_shape, OH, OW, KH, KW, SH, SW, conv_stride, conv_padding):
    """dL/dx of the fused conv -> ReLU -> pool stage from the pooled gradient.
    Same as reference.conv_relu_maxpool_input_grad."""
    dy, pos = np.ascontiguousarray(dy), np.ascontiguousarray(pos)
    shifted, TH, TW = shifted_filters(W, KH, KW, conv_stride, dy.dtype)
    offset_of = np.zeros((KH - 1) * OW + KW, dtype=np.int64)  # window-relative position -> a*KW + b
    for a in range(KH):
        offset_of[a * OW : a * OW + KW] = np.arange(a * KW, (a + 1) * KW)
    N, C, H, Wd = x_shape
    (CSH, CSW), (PH, PW) = conv_stride, conv_padding
    dxpad = np.empty((N, C, H + 2 * PH, Wd + 2 * PW), dtype=dy.dtype)
    _winners_to_input_grad(dy, pos, shifted, offset_of, OW, SH, SW, CSH, CSW, TH, TW, dxpad)
    return _unpadded(dxpad, PH, PW)


def sgd_momentum_step(param, grad, velocity, lr, wd, momentum):
    """In place on param and velocity. Same as reference.sgd_momentum_step."""
    if not (param.flags.c_contiguous and velocity.flags.c_contiguous):
        raise ValueError("sgd_momentum_step updates param and velocity in place: both must be C-contiguous")
    if param.size < 65536:  # starting the threads costs ~50 us: more than NumPy needs here
        return reference.sgd_momentum_step(param, grad, velocity, lr, wd, momentum)
    g = np.ascontiguousarray(grad, dtype=param.dtype).reshape(-1)
    dt = param.dtype.type
    _sgd_momentum_step(param.reshape(-1), g, velocity.reshape(-1), dt(lr), dt(wd), dt(momentum))


# ----- batch normalisation: per channel, on (N, C, S) views; sums in float64 ------------------

@_Kernel
def _batchnorm_stats(x3, mean, var):
    N, C, S = x3.shape
    for c in prange(C):  # one channel per thread: no shared sums
        total = 0.0
        for n in range(N):
            for k in range(S):
                total += x3[n, c, k]
        mu = total / (N * S)
        sq = 0.0  # two passes: the variance of the centred values (no cancellation)
        for n in range(N):
            for k in range(S):
                d = x3[n, c, k] - mu
                sq += d * d
        mean[c] = mu
        var[c] = sq / (N * S)


@_Kernel
def _batchnorm_forward(x3, mean, inv_std, gamma, beta, y, x_hat):
    N, C, S = x3.shape
    for nc in prange(N * C):
        n, c = nc // C, nc % C
        mu, s, g, b = mean[c], inv_std[c], gamma[c], beta[c]
        for k in range(S):
            h = (x3[n, c, k] - mu) * s
            x_hat[n, c, k] = h
            y[n, c, k] = g * h + b


@_Kernel
def _batchnorm_backward(dy3, x_hat, gamma, inv_std, batch_stats, dx, dgamma, dbeta):
    N, C, S = dy3.shape
    m = N * S
    for c in prange(C):
        sum_dy = 0.0
        sum_dy_xhat = 0.0
        for n in range(N):
            for k in range(S):
                sum_dy += dy3[n, c, k]
                sum_dy_xhat += dy3[n, c, k] * x_hat[n, c, k]
        dbeta[c] = sum_dy
        dgamma[c] = sum_dy_xhat
        scale = gamma[c] * inv_std[c]
        a = sum_dy / m if batch_stats else 0.0
        b = sum_dy_xhat / m if batch_stats else 0.0
        for n in range(N):
            for k in range(S):
                dx[n, c, k] = scale * (dy3[n, c, k] - a - x_hat[n, c, k] * b)


def batchnorm_stats(x3):
    """Same as reference.batchnorm_stats (sums in float64, then cast to x's dtype)."""
    C = x3.shape[1]
    mean, var = np.empty(C, np.float64), np.empty(C, np.float64)
    _batchnorm_stats(np.ascontiguousarray(x3), mean, var)
    return mean.astype(x3.dtype), var.astype(x3.dtype)


def batchnorm_forward(x3, mean, inv_std, gamma, beta):
    """Same as reference.batchnorm_forward."""
    x3 = np.ascontiguousarray(x3)
    y, x_hat = np.empty_like(x3), np.empty_like(x3)
    dt = x3.dtype
    _batchnorm_forward(x3, mean.astype(dt), inv_std.astype(dt), gamma.astype(dt), beta.astype(dt), y, x_hat)
    return y, x_hat


def batchnorm_backward(dy3, x_hat, gamma, inv_std, batch_stats):
    """Same as reference.batchnorm_backward (sums in float64)."""
    dy3 = np.ascontiguousarray(dy3)
    C, dt = dy3.shape[1], dy3.dtype
    dx = np.empty_like(dy3)
    dgamma, dbeta = np.empty(C, np.float64), np.empty(C, np.float64)
    _batchnorm_backward(dy3, x_hat, gamma.astype(dt), inv_std.astype(dt), bool(batch_stats), dx, dgamma, dbeta)
    return dx, dgamma.astype(dt), dbeta.astype(dt)


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
        rows = nchw_to_rows(rows_to_nchw(cols[:2], np.zeros(2, dt), 1, 3, 3))
        y, pos = rows_relu_maxpool(rows, None, 1, 3, 3, 2, 2, 1, 1)
        relu_maxpool_to_rows(y, pos, 3, 3, 2, 2, 1, 1)
        conv_relu_maxpool_input_grad(y, pos, np.ones((2, 1, 2, 2), dt), x.shape, 3, 3, 2, 2, 1, 1, (1, 1), (0, 0))
        flat = x.reshape(-1)  # the kernel itself: the wrapper sends arrays this small to NumPy
        _sgd_momentum_step(flat.copy(), flat, flat.copy(), dt(0.1), dt(0.1), dt(0.9))
        x3, ones = x.reshape(1, 1, -1), np.ones(1, dt)
        mean, var = batchnorm_stats(x3)
        yb, x_hat = batchnorm_forward(x3, mean, ones, ones, ones)
        for batch_stats in (True, False):
            batchnorm_backward(yb, x_hat, ones, ones, batch_stats)


NUMBA_VERSION = numba.__version__
