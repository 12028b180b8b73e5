"""Attacks, all driven by ``model.input_gradient``.

Conventions (those of cleverhans / Foolbox / ART users, without their known traps):
* inputs are in pixel space and ``bounds=(0, 1)`` clips the result to the valid range;
  ``bounds=None`` reproduces the paper's unclipped setting;
* labels default to the model's own predictions (no label leaking);
* untargeted by default (maximise the loss of ``y``); ``targeted=True`` minimises the loss
  of the target labels ``y`` instead;
* the model runs in evaluation mode, the input array is never modified, randomness comes
  from an explicit seed or ``numpy.random.Generator``;
* every attack returns an ``AttackResult``: the adversarial batch, a success mask and the
  perturbation norms.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import checks
from ..backend import get_xp, to_host
from ..errors import InputError
from ..losses import SoftmaxCrossEntropy
from .ascent import ascend, ascent_gradient, clip_to_bounds, default_step_size
from .balls import Ball, lp_norm


@dataclass
class AttackResult:
    x_adv: object  # (N, ...) adversarial inputs
    success: object  # (N,) bool: misclassified (untargeted) or classified as the target
    norms: object  # (N,) ||x_adv - x||_p in the attack's norm
    labels: object  # (N,) the labels attacked (given, or the model's predictions)

    @property
    def success_rate(self) -> float:
        return float(self.success.mean())

    def to_host(self) -> "AttackResult":
        """The same result with NumPy arrays (for saving, plotting, comparing with host labels)."""
        return AttackResult(*(to_host(v) for v in (self.x_adv, self.success, self.norms, self.labels)))


# ----- helpers -------------------------------------------------------------------------------------

def _check_inputs(model, x, bounds):
    """``x`` checked and on the model's device (the device rule: see model.py)."""
    x = model.on_device(x, "attack input")
    checks.check_float(x, "attack input")
    if x.ndim < 2 or x.shape[0] == 0:
        raise InputError(f"attack input must be a non-empty batch (N, ...), got shape {tuple(x.shape)}")
    checks.check_finite(x, "attack input")
    if bounds is not None:
        lo, hi = bounds
        if not lo < hi:
            raise InputError(f"bounds must satisfy low < high, got {bounds}")
        if float(x.min()) < lo - 1e-6 or float(x.max()) > hi + 1e-6:
            raise InputError(f"attack input has values in [{float(x.min()):.3g}, {float(x.max()):.3g}], outside "
                             f"bounds {bounds}: models take raw pixel-space images (normalise inside the model)")
    return x


def _labels(model, x, y):
    if y is None:
        return model.predict(x)
    checks.check_labels(y, x.shape[0], 2**31 - 1)
    return model.on_device(y, "labels")


def _success(model, x_adv, y, targeted):
    pred = model.predict(x_adv)
    return pred == y if targeted else pred != y


def per_example_loss(model, x, y):
    """Cross-entropy of each example, shape (N,), in evaluation mode."""
    return SoftmaxCrossEntropy("none").forward(model.forward(x, train=False), y)


def _batched(attack_one, x, y, batch_size, extra=()):
    """Run ``attack_one(x_chunk, y_chunk, *extra_chunks)`` over chunks and concatenate."""
    if batch_size is None or batch_size >= x.shape[0]:
        return attack_one(x, y, *extra)
    xp = get_xp(x)
    parts = [attack_one(x[i : i + batch_size], y[i : i + batch_size], *[e[:, i : i + batch_size] for e in extra])
             for i in range(0, x.shape[0], batch_size)]
    return tuple(xp.concatenate([p[k] for p in parts]) for k in range(len(parts[0])))


# ----- the fast method ----------------------------------------------------------------------------

def fast_method(model, x, y=None, norm="inf", eps=0.1, bounds=(0.0, 1.0), targeted=False,
                l1_top_k=1, batch_size=None) -> AttackResult:
    """One steepest-ascent step of size eps in the chosen norm (the paper's eq. for
    x' = x + argmax_{||d|| <= eps} <grad_x J(x, y), d>); l_inf is Goodfellow's FGSM."""
    ball = Ball(norm, eps, l1_top_k=l1_top_k)
    x = _check_inputs(model, x, bounds)
    y = _labels(model, x, y)

    def one(xc, yc):
        if ball.eps == 0:
            return (xc.copy(),)
        return (ascend(model, xc, yc, ball, bounds=bounds, targeted=targeted),)

    (x_adv,) = _batched(one, x, y, batch_size)
    return AttackResult(x_adv, _success(model, x_adv, y, targeted), lp_norm(x_adv - x, ball.p), y)


def fast_method_sweep(model, x, y=None, norm="inf", eps_list=(0.1,), bounds=(0.0, 1.0), targeted=False):
    """``fast_method`` at every eps of ``eps_list``, from ONE gradient.

    The fast method's direction (sign(g), g/||g||_2, the top coordinate) does not depend on
    eps, so a sweep over eps costs one backward pass plus one forward pass per eps. Yields
    (eps, AttackResult) equal to ``fast_method(..., eps=eps)``.
    """
    x = _check_inputs(model, x, bounds)
    y = _labels(model, x, y)
    unit = Ball(norm, 1.0).steepest_ascent(ascent_gradient(model, x, y, targeted))
    p = Ball(norm, 1.0).p
    for eps in eps_list:
        Ball(norm, eps)  # validates eps
        x_adv = x.copy() if eps == 0 else clip_to_bounds(x + unit * x.dtype.type(eps), bounds)
        yield eps, AttackResult(x_adv, _success(model, x_adv, y, targeted), lp_norm(x_adv - x, p), y)


# ----- projected gradient descent (iterative) -----------------------------------------------------

def pgd(model, x, y=None, norm="inf", eps=0.1, steps=10, step_size=None, random_start=True,
        restarts=1, rng=None, bounds=(0.0, 1.0), targeted=False, batch_size=None) -> AttackResult:
    """k steps of size ``step_size`` (default 2.5*eps/steps, Madry et al.) in the steepest-ascent
    direction, each followed by projection onto the eps-ball around x (and the bounds).

    ``random_start`` begins at a uniform random point of the ball. With ``restarts > 1``
    the per-example worst case is kept (a success beats a failure; then higher loss wins).
    """
    ball = Ball(norm, eps)
    x = _check_inputs(model, x, bounds)
    if int(steps) < 1 or int(restarts) < 1:
        raise InputError(f"steps and restarts must be >= 1, got {steps}, {restarts}")
    alpha = default_step_size(ball.eps, steps) if step_size is None else float(step_size)
    if alpha < 0:
        raise InputError(f"step_size must be >= 0, got {step_size}")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    y = _labels(model, x, y)
    # all random starts are drawn up front for the whole batch, so that running the attack
    # in chunks (batch_size) gives exactly the same result as all at once
    starts = np.stack([ball.sample(x.shape, rng, dtype=x.dtype) if random_start else np.zeros(x.shape, x.dtype)
                       for _ in range(restarts)])
    starts = model.on_device(starts, "random starts")

    def one(xc, yc, starts_c):
        xp = get_xp(xc)
        best_x, best_ok, best_loss = None, None, None
        for r in range(restarts):
            xa = ascend(model, xc, yc, ball, steps=steps, step_size=alpha, start=starts_c[r], bounds=bounds,
                        targeted=targeted)
            ok = _success(model, xa, yc, targeted)
            loss = per_example_loss(model, xa, yc)
            if targeted:
                loss = -loss
            if best_x is None:
                best_x, best_ok, best_loss = xa, ok, loss
                continue
            better = (ok & ~best_ok) | ((ok == best_ok) & (loss > best_loss))
            best_x = xp.where(better.reshape((-1,) + (1,) * (xc.ndim - 1)), xa, best_x)
            best_ok, best_loss = best_ok | ok, xp.where(better, loss, best_loss)
        return (best_x,)

    (x_adv,) = _batched(one, x, y, batch_size, extra=(starts,))
    return AttackResult(x_adv, _success(model, x_adv, y, targeted), lp_norm(x_adv - x, ball.p), y)


# ----- the single-pixel (l_1) attack --------------------------------------------------------------

def single_pixel(model, x, y=None, eps=1.0, bounds=(0.0, 1.0), targeted=False, batch_size=None) -> AttackResult:
    """The paper's l_1 fast method: change the ONE input coordinate with the largest
    first-order gain.

    Unclipped (``bounds=None``) this is exactly ``fast_method(norm=1)``: all of eps on the
    coordinate of largest |g|. With bounds, a coordinate can only move as far as the range
    allows (a white pixel cannot get whiter), so the gain of coordinate i is
    |g_i| * min(eps, room_i) and we pick the best of those.
    """
    ball = Ball(1, eps)
    x = _check_inputs(model, x, bounds)
    y = _labels(model, x, y)

    def one(xc, yc):
        xp = get_xp(xc)
        g = ascent_gradient(model, xc, yc, targeted)
        flat_g, flat_x = g.reshape(g.shape[0], -1), xc.reshape(xc.shape[0], -1)
        if bounds is None:
            room = xp.full_like(flat_x, ball.eps)
        else:
            room = xp.where(flat_g > 0, bounds[1] - flat_x, flat_x - bounds[0])
            room = xp.minimum(room, ball.eps)
        gain = xp.abs(flat_g) * room
        idx = gain.argmax(axis=1)
        rows = xp.arange(flat_x.shape[0])
        out = flat_x.copy()
        out[rows, idx] += xp.sign(flat_g[rows, idx]) * room[rows, idx]
        return (out.reshape(xc.shape),)

    (x_adv,) = _batched(one, x, y, batch_size)
    return AttackResult(x_adv, _success(model, x_adv, y, targeted), lp_norm(x_adv - x, 1), y)


ATTACKS = {"fast": fast_method, "pgd": pgd, "single-pixel": single_pixel}
