"""The exercises: what each function takes and returns, the inputs it is checked on, and the
truth it is checked against (finite differences of the forward pass, or the library's own
steepest-ascent step). Shapes use the notation of ``kernels/reference.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..kernels import reference
from ..losses import SoftmaxCrossEntropy
from ..robust.balls import Ball, lp_norm
from .checker import Mismatch, as_outputs, compare, numeric_gradient


@dataclass(frozen=True)
class Exercise:
    name: str
    signature: str  # how the learner's function is called and what it returns
    hint: str  # one line: where to start
    judge: Callable  # judge(fn) -> worst relative error; raises Mismatch naming the wrong tensor


def distinct_values(shape, seed, low=-1.0, high=1.0, gap=0.0):
    """A shuffled linspace: every value distinct (no max-pool ties), and none within ``gap``
    of 0 (no ReLU kinks within a finite-difference step)."""
    n = int(np.prod(shape))
    values = np.linspace(low, high, n) + (high - low) / (4 * max(n - 1, 1))
    values = np.where(np.abs(values) < gap, np.sign(values + 1e-12) * gap, values)
    return np.random.default_rng(seed).permutation(values).reshape(shape)


def _call(fn, args, names):
    """Run the learner's function on copies (so in-place edits cannot hide) and name what
    it returns."""
    copies = {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in args.items()}
    got = as_outputs(fn(**copies), names)
    for k, v in args.items():
        if isinstance(v, np.ndarray) and not np.array_equal(copies[k], v):
            raise Mismatch(f"the function modified its input {k} in place; backward must leave its inputs alone")
    return got


def gradient_judge(forward, inputs, wrt, extra=None, upstream=True, seed=0):
    """A judge for a backward pass. ``forward(**inputs, **extra)`` is the layer's forward;
    the learner's function gets ``inputs``, ``extra`` and (if ``upstream``) ``dy``, and
    returns d<name> for each name in ``wrt``, checked against finite differences of
    L = sum(dy * forward) (or of the forward itself when it is a scalar loss)."""
    extra = extra or {}

    def judge(fn):
        tensors = {k: v.copy() for k, v in inputs.items()}
        args = dict(tensors, **extra)
        if upstream:
            y = forward(**args)
            dy = np.random.default_rng(seed + 99).standard_normal(np.shape(y))
            args["dy"] = dy

            def loss():
                return float((forward(**tensors, **extra) * dy).sum())
        else:
            def loss():
                return float(forward(**tensors, **extra))
        got = _call(fn, args, [f"d{name}" for name in wrt])
        worst = 0.0
        for name, g in zip(wrt, got):
            expected = numeric_gradient(loss, tensors[name])
            worst = max(worst, compare(f"d{name}", g, expected, what="finite differences give"))
        return worst

    return judge


def ascent_judge(norm, seed=0):
    """A judge for a steepest-ascent step ``fn(g, eps) -> delta`` in the l_``norm`` ball."""
    ball = Ball(norm, 0.5)
    g = np.random.default_rng(seed).standard_normal((5, 1, 4, 4))
    g = distinct_values(g.shape, seed) * 3  # distinct magnitudes: no ties for l_1
    g[3] = 0.0  # a zero gradient must give a zero step, never NaN
    q = ball.dual

    def judge(fn):
        (delta,) = _call(fn, {"g": g.copy(), "eps": ball.eps}, ["delta"])
        if delta.shape != g.shape:
            raise Mismatch(f"delta has shape {delta.shape}, expected {g.shape} (the shape of g)")
        bad = np.argwhere(~np.isfinite(delta))
        if bad.size:
            example = int(bad[0][0])
            zero = " (its gradient is all zeros: return a zero step there)" if example == 3 else ""
            raise Mismatch(f"delta has a non-finite entry in example {example}{zero}")
        norms, want = lp_norm(delta, ball.p), np.where(lp_norm(g, 2) > 0, ball.eps, 0.0)
        for n in range(len(g)):
            if abs(norms[n] - want[n]) > 1e-9 * max(1.0, want[n]):
                raise Mismatch(f"delta is wrong: example {n} has ||delta||_{ball.name} = {norms[n]:.6g}, expected eps = "
                               f"{want[n]:.6g} (each example's step has norm eps, or 0 for a zero gradient)")
        gain = (g * delta).reshape(len(g), -1).sum(axis=1)
        best = ball.eps * lp_norm(g, q)
        for n in range(len(g)):
            if gain[n] < best[n] * (1 - 1e-9) - 1e-12:
                raise Mismatch(f"delta is wrong: example {n} gains <g, delta> = {gain[n]:.6g}, but the best step in the "
                               f"ball gains eps * ||g||_q = {best[n]:.6g} (q = {q:g}, the dual norm): not the "
                               "steepest ascent")
        return compare("delta", delta, ball.steepest_ascent(g), what="the steepest ascent step is")

    return judge


# ----- the forward passes the backward exercises differentiate ---------------------------------

def _dense(x, W, b):
    return x @ W + b


def _relu(x):
    return np.maximum(x, 0.0)


def _conv(x, W, b, stride, padding):
    F, C, KH, KW = W.shape
    N, _, H, Wd = x.shape
    OH = reference.output_size(H, KH, stride, padding)
    OW = reference.output_size(Wd, KW, stride, padding)
    cols = reference.im2col(x, KH, KW, stride, stride, padding, padding)
    return reference.rows_to_nchw(W.reshape(F, -1) @ cols, b, N, OH, OW)


def _maxpool(x, kernel, stride):
    return reference.maxpool_forward(x, kernel, kernel, stride, stride, 0, 0)[0]


_LABELS = np.array([2, 0, 4, 1])


def _softmax_ce(logits):
    return SoftmaxCrossEntropy("mean").forward(logits, _LABELS)


def _softmax_ce_judge():
    inner = gradient_judge(_softmax_ce, {"logits": distinct_values((4, 5), 3, -2.0, 2.0)}, ["logits"],
                           upstream=False)

    def judge(fn):  # the learner also gets the labels
        return inner(lambda logits: fn(logits=logits, y=_LABELS.copy()))

    return judge


EXERCISES = {e.name: e for e in (
    Exercise("dense_backward", "dense_backward(x, W, b, dy) -> (dx, dW, db); y = x @ W + b, x: (N, D), W: (D, M)",
             "dy has the shape of y = x @ W + b; each gradient has the shape of what it is the gradient of",
             gradient_judge(_dense, {"x": distinct_values((3, 4), 0), "W": distinct_values((4, 5), 1),
                                     "b": distinct_values((5,), 2)}, ["x", "W", "b"])),
    Exercise("relu_backward", "relu_backward(x, dy) -> dx; y = max(x, 0), any shape",
             "the gradient passes where x > 0 and is 0 elsewhere (ReLU'(0) = 0)",
             gradient_judge(_relu, {"x": distinct_values((2, 3, 4), 4, gap=0.05)}, ["x"])),
    Exercise("softmax_ce_backward",
             "softmax_ce_backward(logits, y) -> dlogits; loss = mean over N of -log softmax(logits)[n, y[n]]",
             "softmax(logits) minus the one-hot labels, divided by N (the loss is a mean)",
             _softmax_ce_judge()),
    Exercise("conv_backward",
             "conv_backward(x, W, b, dy, stride, padding) -> (dx, dW, db); x: (N, C, H, W), W: (F, C, KH, KW)",
             "rows = W.reshape(F, K) @ im2col(x): dW from dy_rows @ cols.T, dx = col2im(W.T @ dy_rows) "
             "(im2col and col2im are in minirobust.kernels.reference)",
             gradient_judge(_conv, {"x": distinct_values((2, 3, 7, 7), 5), "W": distinct_values((4, 3, 3, 3), 6),
                                    "b": distinct_values((4,), 7)}, ["x", "W", "b"],
                            extra={"stride": 2, "padding": 1})),
    Exercise("maxpool_backward", "maxpool_backward(x, dy, kernel, stride) -> dx; x: (N, C, H, W), windows may overlap",
             "each window's gradient goes to its winner only; overlapping windows add up (+=, not =)",
             gradient_judge(_maxpool, {"x": distinct_values((2, 2, 7, 7), 8)}, ["x"],
                            extra={"kernel": 3, "stride": 2})),
    Exercise("l2_ascent", "l2_ascent(g, eps) -> delta; g: (N, ...), one step per example",
             "delta = eps * g / ||g||_2 per example (norm over all axes but the first); 0 where g is 0",
             ascent_judge(2)),
    Exercise("l1_ascent", "l1_ascent(g, eps) -> delta; g: (N, ...), one step per example",
             "all of eps on the coordinate of largest |g| per example, with the sign of g there; 0 where g is 0",
             ascent_judge(1)),
)}
