"""The reference tier: plain, readable array code for every hot op.

This is the teaching path and the oracle that the fast tiers are tested against. It
works on NumPy and CuPy arrays alike (``xp = get_xp(x)``), loops only over the small
kernel window, and lets the array library do the rest.

Notation (shared by every docstring in minirobust):
    N batch, C channels, H W height width, KH KW kernel, SH SW stride, PH PW padding,
    OH OW output height/width, F filters, K = C*KH*KW, P = N*OH*OW.

Column layout used by im2col/col2im: ``cols`` has shape (K, P); row ``(c*KH + i)*KW + j``
holds input pixel ``x[n, c, oh*SH + i - PH, ow*SW + j - PW]`` in column ``(n*OH + oh)*OW + ow``.
A convolution is then one matrix product: ``W.reshape(F, K) @ cols`` -> (F, P).

Convolution output layout: the product ``W.reshape(F, K) @ cols`` has shape (F, P), "rows";
``rows_to_nchw`` adds the bias and lays it out as (N, F, OH, OW); ``nchw_to_rows`` is the
inverse layout change, used on the upstream gradient in backward.

Max-pool "argmax" layout: for each output (n, c, oh, ow) the index ``k = i*KW + j`` of the
winning position inside its window (ties go to the first, in row-major window order).
"""

from __future__ import annotations

import math

from ..backend import get_xp


def output_size(size: int, kernel: int, stride: int, pad: int) -> int:
    """Output length of a sliding window: floor((size + 2*pad - kernel) / stride) + 1."""
    return (size + 2 * pad - kernel) // stride + 1


def window_patch(KH, KW, conv_stride, conv_kernel):
    """(TH, TW): the input patch under a KH x KW pooling window of a convolution's outputs."""
    (CSH, CSW), (CKH, CKW) = conv_stride, conv_kernel
    return (KH - 1) * CSH + CKH, (KW - 1) * CSW + CKW


def _pad(x, PH, PW, value):
    """Pad the two spatial axes of an (N, C, H, W) array with a constant."""
    xp = get_xp(x)
    if PH == 0 and PW == 0:
        return x
    return xp.pad(x, ((0, 0), (0, 0), (PH, PH), (PW, PW)), mode="constant", constant_values=value)


def im2col(x, KH, KW, SH, SW, PH, PW, out=None):
    """Unfold sliding windows into columns.

    x: (N, C, H, W) -> cols: (K, P) with K = C*KH*KW, P = N*OH*OW (zero padding).
    ``out``: an optional contiguous (K, P) array to fill (callers reuse one buffer per layer).
    """
    xp = get_xp(x)
    N, C, H, W = x.shape
    OH, OW = output_size(H, KH, SH, PH), output_size(W, KW, SW, PW)
    xpad = _pad(x, PH, PW, 0)
    if out is None:
        out = xp.empty((C * KH * KW, N * OH * OW), dtype=x.dtype)
    cols = out.reshape(C, KH, KW, N, OH, OW)
    for i in range(KH):  # one strided slice per window offset (i, j)
        for j in range(KW):
            window = xpad[:, :, i : i + SH * OH : SH, j : j + SW * OW : SW]  # (N, C, OH, OW)
            cols[:, i, j] = window.transpose(1, 0, 2, 3)
    return cols.reshape(C * KH * KW, N * OH * OW)


def col2im(cols, x_shape, KH, KW, SH, SW, PH, PW):
    """Fold columns back, summing overlaps: the adjoint (transpose) of im2col.

    cols: (K, P) -> dx: x_shape = (N, C, H, W).
    """
    xp = get_xp(cols)
    N, C, H, W = x_shape
    OH, OW = output_size(H, KH, SH, PH), output_size(W, KW, SW, PW)
    cols = cols.reshape(C, KH, KW, N, OH, OW)
    dxpad = xp.zeros((N, C, H + 2 * PH, W + 2 * PW), dtype=cols.dtype)
    for i in range(KH):
        for j in range(KW):
            # '+=' (not '='): windows overlap when the stride is smaller than the kernel
            dxpad[:, :, i : i + SH * OH : SH, j : j + SW * OW : SW] += cols[:, i, j].transpose(1, 0, 2, 3)
    return dxpad[:, :, PH : PH + H, PW : PW + W]


def maxpool_forward(x, KH, KW, SH, SW, PH, PW):
    """Max over each window, padding with -inf (padding never wins).

    x: (N, C, H, W) -> y: (N, C, OH, OW), argmax: (N, C, OH, OW) int64 window index i*KW + j.
    """
    xp = get_xp(x)
    N, C, H, W = x.shape
    OH, OW = output_size(H, KH, SH, PH), output_size(W, KW, SW, PW)
    xpad = _pad(x, PH, PW, -xp.inf)
    windows = xp.empty((KH * KW, N, C, OH, OW), dtype=x.dtype)
    for i in range(KH):
        for j in range(KW):
            windows[i * KW + j] = xpad[:, :, i : i + SH * OH : SH, j : j + SW * OW : SW]
    argmax = windows.argmax(axis=0)  # argmax returns the FIRST maximum: our tie rule
    y = windows.max(axis=0)
    return y, argmax


def maxpool_backward(dy, argmax, x_shape, KH, KW, SH, SW, PH, PW):
    """Route each output gradient to the input that won its window.

    dy, argmax: (N, C, OH, OW) -> dx: x_shape = (N, C, H, W).
    """
    xp = get_xp(dy)
    N, C, H, W = x_shape
    OH, OW = dy.shape[2], dy.shape[3]
    dxpad = xp.zeros((N, C, H + 2 * PH, W + 2 * PW), dtype=dy.dtype)
    for i in range(KH):
        for j in range(KW):
            won = argmax == (i * KW + j)
            # '+=': with overlapping windows one input can win several windows
            dxpad[:, :, i : i + SH * OH : SH, j : j + SW * OW : SW] += dy * won
    return dxpad[:, :, PH : PH + H, PW : PW + W]


def rows_to_nchw(rows, b, N, OH, OW):
    """(F, N*OH*OW) product rows (+ bias b: (F,) or None) -> contiguous (N, F, OH, OW)."""
    xp = get_xp(rows)
    F = rows.shape[0]
    y = rows.reshape(F, N, OH, OW).transpose(1, 0, 2, 3)
    if b is not None:
        y = y + b.reshape(1, F, 1, 1)
    return xp.ascontiguousarray(y)


def nchw_to_rows(dy):
    """(N, F, OH, OW) -> contiguous (F, N*OH*OW): the layout of the product rows."""
    xp = get_xp(dy)
    N, F, OH, OW = dy.shape
    return xp.ascontiguousarray(dy.transpose(1, 0, 2, 3)).reshape(F, N * OH * OW)


# ----- bias + ReLU + max-pool on the convolution's product rows, as one op ---------------------
# The fast tier runs Conv2D -> ReLU -> MaxPool2D as one stage (see ``minirobust/fused.py``).
# ReLU and max commute (both are monotone): relu(max(z)) = max(relu(z)), so pooling first needs
# 1/(KH*KW) of the ReLU work, and a window whose maximum is <= 0 passes no gradient at all.
# "Position" layout: for each pooled output, the flat index oh*OW + ow of the winner inside its
# (OH, OW) convolution plane, or -1 where the window's maximum is <= 0 (ReLU blocks it).


def _window_positions(QH, QW, KH, KW, SH, SW, OW, xp):
    """(KH*KW, 1, 1, QH, QW): the flat plane position of window offset k = i*KW + j of each output."""
    qh = xp.arange(QH).reshape(1, 1, 1, QH, 1) * SH
    qw = xp.arange(QW).reshape(1, 1, 1, 1, QW) * SW
    k = xp.arange(KH * KW).reshape(-1, 1, 1, 1, 1)
    return (qh + k // KW) * OW + (qw + k % KW)


def rows_relu_maxpool(rows, b, N, OH, OW, KH, KW, SH, SW):
    """Bias, ReLU and an unpadded max-pool of the product rows.

    rows: (F, N*OH*OW), b: (F,) or None -> y: (N, F, QH, QW), pos: (N, F, QH, QW) int32 positions.
    Equals ``maxpool(relu(rows_to_nchw(rows, b)))`` (ties go to the first position, as in
    maxpool_forward).
    """
    xp = get_xp(rows)
    z = rows_to_nchw(rows, b, N, OH, OW)
    m, k = maxpool_forward(z, KH, KW, SH, SW, 0, 0)
    QH, QW = m.shape[2], m.shape[3]
    positions = _window_positions(QH, QW, KH, KW, SH, SW, OW, xp)[:, 0, 0]  # (KH*KW, QH, QW)
    pos = xp.take_along_axis(positions[None, None], k[:, :, None], axis=2)[:, :, 0]  # (N, F, QH, QW)
    active = m > 0  # a NaN maximum is not active (no gradient) but stays NaN: relu(NaN) = NaN
    return xp.maximum(m, 0).astype(rows.dtype), xp.where(active, pos, -1).astype(xp.int32)


def relu_maxpool_to_rows(dy, pos, OH, OW, KH, KW, SH, SW):
    """Backward of ``rows_relu_maxpool``: route each pooled gradient to its winner.

    dy, pos: (N, F, QH, QW) -> drows: (F, N*OH*OW), db: (F,) (the bias gradient).
    """
    xp = get_xp(dy)
    N, F, QH, QW = dy.shape
    g = xp.where(pos >= 0, dy, 0)  # ReLU: no gradient through a window whose maximum is <= 0
    dz = xp.zeros((N, F, OH, OW), dtype=dy.dtype)
    positions = _window_positions(QH, QW, KH, KW, SH, SW, OW, xp)
    for i in range(KH):
        for j in range(KW):
            won = pos == positions[i * KW + j]
            # '+=': with overlapping windows one position can win several windows
            dz[:, :, i : i + SH * QH : SH, j : j + SW * QW : SW] += g * won
    return nchw_to_rows(dz), g.sum(axis=(0, 2, 3))


def conv_relu_maxpool_input_grad(dy, pos, W, x_shape, OH, OW, KH, KW, SH, SW, conv_stride, conv_padding):
    """dL/dx of the fused stage Conv2D -> ReLU -> MaxPool2D, from the pooled gradient.

    dy, pos: (N, F, QH, QW) (``pos`` from rows_relu_maxpool), W: (F, C, CKH, CKW) the conv's
    weights, x_shape: (N, C, H, W) its input; OH, OW the conv's output size; KH KW SH SW the
    pool's window and stride; conv_stride, conv_padding: the conv's (CSH, CSW) and (PH, PW).
    The backward of the three layers in a row: route dy to the winners (the rows' gradient),
    multiply by W.T (the columns' gradient) and fold the columns back onto the image.
    """
    xp = get_xp(dy)
    F, C, CKH, CKW = W.shape
    drows, _ = relu_maxpool_to_rows(dy, pos, OH, OW, KH, KW, SH, SW)  # (F, N*OH*OW)
    dcols = W.reshape(F, C * CKH * CKW).T @ drows  # (K, N*OH*OW)
    (CSH, CSW), (PH, PW) = conv_stride, conv_padding
    dx = col2im(dcols, tuple(x_shape), CKH, CKW, CSH, CSW, PH, PW)
    return xp.ascontiguousarray(dx)


# ----- the steepest-ascent steps and projections (robust/balls.py's Ball picks one by norm) ------
# All per example: norms and steps over every axis but the first, g and delta (N, ...).

def _flat(x):
    return x.reshape(x.shape[0], -1)


def _per_example(v, like):
    """Reshape a (N,) vector to broadcast against ``like`` (N, ...)."""
    return v.reshape((v.shape[0],) + (1,) * (like.ndim - 1))


def lp_norm(delta, p: float):
    """Per-example l_p norm over all non-batch axes: (N, ...) -> (N,)."""
    xp = get_xp(delta)
    d = xp.abs(_flat(delta))
    if math.isinf(p):
        return d.max(axis=1)
    if p == 1:
        return d.sum(axis=1)
    if p == 2:
        return xp.sqrt((d * d).sum(axis=1))
    # scale by the max first so |d|^p neither overflows nor underflows
    m = d.max(axis=1, keepdims=True)
    safe = xp.where(m > 0, m, 1)
    return (((d / safe) ** p).sum(axis=1)) ** (1.0 / p) * m[:, 0]


def linf_ascent_step(g, eps):
    """argmax of <g, delta> over ||delta||_inf <= eps: eps * sign(g)."""
    return eps * get_xp(g).sign(g)


def l2_ascent_step(g, eps):
    """argmax over the l_2 ball: eps * g / ||g||_2 (0 for a zero gradient, never NaN)."""
    xp = get_xp(g)
    n = lp_norm(g, 2)
    scale = xp.where(n > 0, eps / xp.where(n > 0, n, 1), 0)
    return g * _per_example(scale, g).astype(g.dtype)


def l1_ascent_step(g, eps):
    """argmax over the l_1 ball: all of eps on the coordinate of largest |g| (the first of equal
    ones), with the sign of g there."""
    xp = get_xp(g)
    flat = _flat(g)
    delta = xp.zeros_like(flat)
    idx = xp.abs(flat).argmax(axis=1)  # argmax returns the first of equal maxima
    rows = xp.arange(flat.shape[0])
    delta[rows, idx] = eps * xp.sign(flat[rows, idx])
    return delta.reshape(g.shape)


def lp_ascent_step(g, p, eps):
    """argmax over the l_p ball (1 < p < inf): eps * sign(g) |g|^(q-1) / ||g||_q^(q-1),
    1/p + 1/q = 1."""
    xp = get_xp(g)
    q = p / (p - 1)
    a = xp.abs(g)
    m = _flat(a).max(axis=1)
    safe_m = _per_example(xp.where(m > 0, m, 1), g)
    r = (a / safe_m) ** (q - 1)  # |g|^(q-1), scaled by max|g|^(q-1) for safety
    denom = lp_norm(r, p)  # = ||g||_q^(q-1) under the same scaling
    scale = xp.where(denom > 0, eps / xp.where(denom > 0, denom, 1), 0)
    return (xp.sign(g) * r * _per_example(scale, g)).astype(g.dtype)


def linf_projection(delta, eps):
    """The closest point of the l_inf ball: clip each coordinate."""
    return get_xp(delta).clip(delta, -eps, eps)


def l2_projection(delta, eps):
    """The closest point of the l_2 ball: rescale the examples outside it."""
    xp = get_xp(delta)
    n = lp_norm(delta, 2)
    scale = xp.where(n > eps, eps / xp.where(n > 0, n, 1), 1)
    return delta * _per_example(scale, delta).astype(delta.dtype)


def l1_projection(delta, eps):
    """Euclidean projection onto the l_1 ball of radius eps, per example.

    Duchi, Shalev-Shwartz, Singer & Chandra (2008): project |v| onto the simplex
    {w >= 0, sum w = eps} by soft-thresholding at theta, where theta is found from the
    sorted magnitudes; restore the signs. Examples already inside are returned unchanged.
    """
    xp = get_xp(delta)
    v = _flat(delta)
    N, D = v.shape
    a = xp.abs(v)
    inside = a.sum(axis=1) <= eps
    if eps == 0:
        return xp.zeros_like(delta)
    mu = -xp.sort(-a, axis=1)  # magnitudes, descending
    cumsum = xp.cumsum(mu, axis=1)
    j = xp.arange(1, D + 1, dtype=a.dtype)
    # rho = the largest j with mu_j > (cumsum_j - eps) / j
    cond = mu * j > (cumsum - eps)
    rho = D - 1 - xp.argmax(cond[:, ::-1], axis=1)  # last True index (cond[:, 0] is always True)
    theta = (cumsum[xp.arange(N), rho] - eps) / (rho + 1).astype(a.dtype)
    w = xp.maximum(a - theta[:, None], 0)
    out = xp.where(inside[:, None], v, xp.sign(v) * w)
    return out.reshape(delta.shape).astype(delta.dtype)


# ----- tuning: the reference tier's neutral choices ---------------------------------------------
# A fast tier may make its own (``kernels.tuning``); the reference tier makes no speed trade-off.

FUSED_STAGES = ()  # the fused ops below are oracles; this tier offers no fused stage itself
INPUT_GRAD_CHUNK_BYTES = None  # the fused stage's input gradient: all images in one chunk


def prefers_winners_input_grad(pool_kernel, conv_stride, conv_kernel) -> bool:
    """Should the fused stage take dx from ``conv_relu_maxpool_input_grad`` rather than
    through the rows (drows -> W.T @ drows -> col2im)? Both give the same numbers; here the
    op IS the rows path, so there is nothing to choose."""
    return False


# ----- the optimiser's update ------------------------------------------------------------------

def sgd_momentum_step(param, grad, velocity, lr, wd, momentum):
    """SGD with momentum and weight decay, in place on ``param`` and ``velocity``:

        v <- momentum * v - (lr * g + lr * wd * W);   W <- W + v
    """
    step = lr * grad + (lr * wd) * param
    velocity *= momentum
    velocity -= step
    param += velocity


def adam_step(param, grad, m, v, lr, wd, beta1, beta2, eps, t):
    """Adam with bias correction (t = this step's number, from 1), in place on param, m, v:

        g = grad + wd * W;  m <- beta1 m + (1 - beta1) g;  v <- beta2 v + (1 - beta2) g^2
        W <- W - lr * (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps)
    """
    xp = get_xp(param)
    g = grad + wd * param if wd else grad
    m *= beta1
    m += (1 - beta1) * g
    v *= beta2
    v += (1 - beta2) * g * g
    m_hat = m / (1 - beta1**t)
    v_hat = v / (1 - beta2**t)
    param -= lr * m_hat / (xp.sqrt(v_hat) + eps)


# ----- batch normalisation ---------------------------------------------------------------------
# Arrays are viewed as (N, C, S): channels on axis 1, S = H*W for images (1 for features); the
# statistics are per channel, over the N*S values of that channel.

def batchnorm_stats(x3):
    """(mean, var) per channel of x3 (N, C, S); var is the biased (1/m) variance."""
    mean = x3.mean(axis=(0, 2))
    var = ((x3 - mean[None, :, None]) ** 2).mean(axis=(0, 2))
    return mean, var


def batchnorm_forward(x3, mean, inv_std, gamma, beta):
    """x_hat = (x - mean) * inv_std;  y = gamma * x_hat + beta, per channel. Returns (y, x_hat)."""
    x_hat = (x3 - mean[None, :, None]) * inv_std[None, :, None]
    return gamma[None, :, None] * x_hat + beta[None, :, None], x_hat


def batchnorm_backward(dy3, x_hat, gamma, inv_std, batch_stats):
    """(dx, dgamma, dbeta) for y = gamma * x_hat + beta.

    With ``batch_stats`` (training) the mean and variance are functions of the batch, and the
    gradient flows through them too (m = N*S values per channel):
        dx = gamma * inv_std * (dy - mean(dy) - x_hat * mean(dy * x_hat))
    Otherwise (evaluation, fixed running statistics) the layer is a per-channel affine map:
        dx = gamma * inv_std * dy
    """
    dbeta = dy3.sum(axis=(0, 2))
    dgamma = (dy3 * x_hat).sum(axis=(0, 2))
    scale = (gamma * inv_std)[None, :, None]
    if not batch_stats:
        return scale * dy3, dgamma, dbeta
    m = dy3.shape[0] * dy3.shape[2]
    return scale * (dy3 - (dbeta / m)[None, :, None] - x_hat * (dgamma / m)[None, :, None]), dgamma, dbeta
