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
from .checker import Mismatch, as_outputs, compare, compare_all, numeric_gradient


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
        return compare_all((f"d{name}", g, numeric_gradient(loss, tensors[name]), "finite differences give")
                           for name, g in zip(wrt, got))

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


# ----- the robustness exercises: functions with one exact answer --------------------------------
# Each is judged first on the property a learner can reason about (inside the ball, inside the box),
# with a message in those words, then entry by entry against the answer.

def exact_judge(inputs, names, truth, properties=()):
    """A judge for ``fn(**inputs) -> names`` against ``truth(**inputs)`` (a tuple of arrays);
    each of ``properties(got, inputs)`` raises Mismatch in plain words before the comparison."""
    def judge(fn):
        got = _call(fn, {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in inputs.items()}, names)
        expected = truth(**inputs)
        for name, value, want in zip(names, got, expected):
            if value.shape != want.shape:
                raise Mismatch(f"{name} has shape {value.shape}, expected {want.shape}")
        for prop in properties:
            prop(got, inputs)
        return compare_all((name, value, want, "the right answer is") for name, value, want in zip(names, got, expected))

    return judge


def _per_example_norm(v, p):
    flat = v.reshape(len(v), -1)
    return np.abs(flat).max(axis=1) if p == "inf" else np.sqrt((flat * flat).sum(axis=1))


def inside_ball(name, p, centre="x"):
    def prop(got, inputs):
        out = got[0]
        norms = _per_example_norm(out - inputs[centre], p)
        n = int(np.argmax(norms))
        if norms[n] > inputs["eps"] * (1 + 1e-9) + 1e-12:
            raise Mismatch(f"{name} leaves the l_{p} ball: example {n} has ||{name} - {centre}||_{p} = {norms[n]:.6g} "
                           f"> eps = {inputs['eps']:g} (measure the distance from {centre}, the clean image)")
    return prop


def inside_box(name, lo=0.0, hi=1.0):
    def prop(got, inputs):
        out = got[0]
        if out.min() < lo - 1e-12 or out.max() > hi + 1e-12:
            idx = tuple(int(i) for i in np.argwhere((out < lo - 1e-12) | (out > hi + 1e-12))[0])
            raise Mismatch(f"{name} leaves the box [{lo:g}, {hi:g}] at index {idx} ({out[idx]:.6g}): pixels must stay "
                           "valid (clip)")
    return prop


def _images(seed, shape=(4, 1, 3, 3)):
    """Pixels in [0, 1], some exactly at 0 and 1 (MNIST's background and strokes): clipping matters."""
    x = distinct_values(shape, seed, 0.0, 1.0)
    x.reshape(len(x), -1)[:, 0], x.reshape(len(x), -1)[:, 1] = 0.0, 1.0
    return x


def _offsets(shape, seed, scale):
    return distinct_values(shape, seed, -scale, scale, gap=0.01 * scale)


_EPS = 0.1
_X = _images(20)
_G = _offsets(_X.shape, 21, 1.0)  # a gradient: no zeros, so sign() is never ambiguous


def _truth_fgsm(x, g, eps):
    return (np.clip(x + eps * np.sign(g), 0.0, 1.0),)


def _truth_project_linf(x_adv, x, eps):
    return (np.clip(x_adv, x - eps, x + eps),)


def _truth_project_l2(x_adv, x, eps):
    delta = x_adv - x
    norms = _per_example_norm(delta, 2).reshape((-1,) + (1,) * (x.ndim - 1))
    return (x + delta * np.minimum(1.0, eps / np.where(norms > 0, norms, 1.0)),)


def _truth_pgd_step(x_adv, x, g, eps, step_size):
    stepped = x_adv + step_size * np.sign(g)
    return (np.clip(np.clip(stepped, x - eps, x + eps), 0.0, 1.0),)


def _l2_targets():
    """x_adv around _X: example 0 well outside the ball, 1 inside it, 2 exactly at x, 3 just outside."""
    delta = _offsets(_X.shape, 22, 1.0)
    scales = np.array([3.0, 0.4, 0.0, 1.05]) * 0.5  # eps = 0.5 for l_2 below
    delta *= (scales / _per_example_norm(delta, 2)).reshape(-1, 1, 1, 1)
    return _X + delta


def _pgd_start():
    """x_adv on the l_inf sphere around _X (a step that leaves it must be projected back)."""
    return np.clip(_X + _EPS * np.sign(_offsets(_X.shape, 23, 1.0)), 0.0, 1.0)


# algorithm1_step: softmax regression, logits = x @ W + b, on N images flattened to D pixels
_A1 = {"W": distinct_values((6, 3), 30, -1.0, 1.0), "b": distinct_values((3,), 31, -0.5, 0.5),
       "x": _images(32, (4, 6)), "y": np.array([0, 2, 1, 2]), "eps": 0.2, "lr": 0.5}


def _ce_grads(W, b, x, y):
    """(dL/dx, dL/dW, dL/db) of the mean softmax cross-entropy of x @ W + b, by the library's loss."""
    loss = SoftmaxCrossEntropy("mean")
    loss.forward(x @ W + b, y)
    dz = loss.backward()
    return dz @ W.T, x.T @ dz, dz.sum(axis=0)


def _truth_algorithm1_step(W, b, x, y, eps, lr):
    gx, _, _ = _ce_grads(W, b, x, y)
    x_adv = np.clip(x + eps * np.sign(gx), 0.0, 1.0)  # ascent: the fast method, inside the box
    _, dW, db = _ce_grads(W, b, x_adv, y)  # descent: on the perturbed batch only
    return W - lr * dW, b - lr * db


def _truth_ibp_dense(lower, upper, W, b):
    centre, radius = (upper + lower) / 2, (upper - lower) / 2
    mid, spread = centre @ W + b, radius @ np.abs(W)
    return mid - spread, mid + spread


_IBP_LOWER = distinct_values((3, 5), 40, -1.0, 1.0)
_IBP_INPUTS = {"lower": _IBP_LOWER, "upper": _IBP_LOWER + np.abs(distinct_values((3, 5), 41, 0.1, 0.5)),
               "W": distinct_values((5, 4), 42, -1.0, 1.0), "b": distinct_values((4,), 43, -0.5, 0.5)}


def _ibp_sound(got, inputs):
    """Every point of the input box must map inside the output interval (sampled)."""
    lo, hi = got
    rng = np.random.default_rng(44)
    for _ in range(200):
        t = rng.random(inputs["lower"].shape)
        z = (inputs["lower"] + t * (inputs["upper"] - inputs["lower"])) @ inputs["W"] + inputs["b"]
        for name, bad in (("lower_out", z < lo - 1e-12), ("upper_out", z > hi + 1e-12)):
            if bad.any():
                idx = tuple(int(i) for i in np.argwhere(bad)[0])
                raise Mismatch(f"{name} is not a bound: a point of the input box gives {z[idx]:.6g} at index {idx}, "
                               f"outside [{lo[idx]:.6g}, {hi[idx]:.6g}] (a negative weight turns a lower bound into "
                               "an upper one)")


EXERCISES.update({e.name: e for e in (
    Exercise("fgsm", "fgsm(x, g, eps) -> x_adv; x: images in [0, 1], g: dloss/dx (same shape)",
             "one step of eps * sign(g), then clip to [0, 1] so the pixels stay valid",
             exact_judge({"x": _X, "g": _G, "eps": _EPS}, ["x_adv"], _truth_fgsm,
                         [inside_ball("x_adv", "inf"), inside_box("x_adv")])),
    Exercise("project_linf", "project_linf(x_adv, x, eps) -> x_proj; the nearest point to x_adv with "
             "||x_proj - x||_inf <= eps",
             "the l_inf ball is a box around x: clip each pixel to [x - eps, x + eps]",
             exact_judge({"x_adv": _X + _offsets(_X.shape, 24, 0.25), "x": _X, "eps": _EPS}, ["x_proj"],
                         _truth_project_linf, [inside_ball("x_proj", "inf")])),
    Exercise("project_l2", "project_l2(x_adv, x, eps) -> x_proj; per example, the nearest point to x_adv with "
             "||x_proj - x||_2 <= eps",
             "delta = x_adv - x; scale delta by min(1, eps / ||delta||_2) per example: points inside stay put",
             exact_judge({"x_adv": _l2_targets(), "x": _X, "eps": 0.5}, ["x_proj"], _truth_project_l2,
                         [inside_ball("x_proj", 2)])),
    Exercise("pgd_step", "pgd_step(x_adv, x, g, eps, step_size) -> x_next; one l_inf PGD step from x_adv "
             "(g = dloss/dx at x_adv)",
             "step x_adv + step_size * sign(g), project onto the ball around x (not around x_adv), clip to [0, 1]",
             exact_judge({"x_adv": _pgd_start(), "x": _X, "g": _G, "eps": _EPS, "step_size": 0.04}, ["x_next"],
                         _truth_pgd_step, [inside_ball("x_next", "inf"), inside_box("x_next")])),
    Exercise("algorithm1_step", "algorithm1_step(W, b, x, y, eps, lr) -> (W_new, b_new); softmax regression "
             "logits = x @ W + b, mean cross-entropy, x: (N, D) in [0, 1]",
             "ascent: x_adv = clip(x + eps * sign(dL/dx), 0, 1); descent: W - lr * dL/dW and b - lr * dL/db "
             "at x_adv (the perturbed batch only)",
             exact_judge(_A1, ["W_new", "b_new"], _truth_algorithm1_step)),
    Exercise("ibp_dense", "ibp_dense(lower, upper, W, b) -> (lower_out, upper_out); bounds on x @ W + b for every "
             "x with lower <= x <= upper, x: (N, D), W: (D, M)",
             "centre c = (upper + lower) / 2, radius r = (upper - lower) / 2; out: c @ W + b -/+ r @ |W|",
             exact_judge(_IBP_INPUTS, ["lower_out", "upper_out"], _truth_ibp_dense, [_ibp_sound])),
)})
