"""The fast method, PGD and the single-pixel attack, all driven by ``model.input_gradient``
(the shared contract: attack_base.py).

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

import numpy as np

from ..backend import get_xp
from ..errors import InputError
from ..losses import SoftmaxCrossEntropy
from .ascent import ascend, ascent_gradient, clip_to_bounds, default_step_size, projected_step
from .attack_base import (AttackResult, batch_size_or_none, batched, check_attack_inputs, generator, keep_worst,
                          labels_or_predictions, pick_targets, success_mask, whole)
from .balls import Ball, lp_norm
from .objectives import value_and_input_gradient


def per_example_loss(model, x, y):
    """Cross-entropy of each example, shape (N,), in evaluation mode."""
    return SoftmaxCrossEntropy("none").forward(model.forward(x, train=False), y)


# ----- the fast method ----------------------------------------------------------------------------

def fast_method(model, x, y=None, norm="inf", eps=0.1, bounds=(0.0, 1.0), targeted=False,
                l1_top_k=1, batch_size=None) -> AttackResult:
    """One steepest-ascent step of size eps in the chosen norm (the paper's eq. for
    x' = x + argmax_{||d|| <= eps} <grad_x J(x, y), d>); l_inf is Goodfellow's FGSM."""
    ball = Ball(norm, eps, l1_top_k=l1_top_k)
    x = check_attack_inputs(model, x, bounds)
    y = labels_or_predictions(model, x, y)
    batch_size = batch_size_or_none(batch_size)

    def one(xc, yc):
        if ball.eps == 0:
            return (xc.copy(),)
        return (ascend(model, xc, yc, ball, bounds=bounds, targeted=targeted),)

    (x_adv,) = batched(one, x, y, batch_size)
    return AttackResult(x_adv, success_mask(model, x_adv, y, targeted), lp_norm(x_adv - x, ball.p), y)


def fast_method_sweep(model, x, y=None, norm="inf", eps_list=(0.1,), bounds=(0.0, 1.0), targeted=False):
    """``fast_method`` at every eps of ``eps_list``, from ONE gradient.

    The fast method's direction (sign(g), g/||g||_2, the top coordinate) does not depend on
    eps, so a sweep over eps costs one backward pass plus one forward pass per eps. Yields
    (eps, AttackResult) equal to ``fast_method(..., eps=eps)``.
    """
    x = check_attack_inputs(model, x, bounds)
    y = labels_or_predictions(model, x, y)
    unit = Ball(norm, 1.0).steepest_ascent(ascent_gradient(model, x, y, targeted))
    p = Ball(norm, 1.0).p
    for eps in eps_list:
        Ball(norm, eps)  # validates eps
        x_adv = x.copy() if eps == 0 else clip_to_bounds(x + unit * x.dtype.type(eps), bounds)
        yield eps, AttackResult(x_adv, success_mask(model, x_adv, y, targeted), lp_norm(x_adv - x, p), y)


# ----- projected gradient descent (iterative) -----------------------------------------------------

def pgd(model, x, y=None, norm="inf", eps=0.1, steps=10, step_size=None, random_start=True,
        restarts=1, rng=None, bounds=(0.0, 1.0), targeted=False, target=None, batch_size=None) -> AttackResult:
    """k steps of size ``step_size`` (default 2.5*eps/steps, Madry et al.) in the steepest-ascent
    direction, each followed by projection onto the eps-ball around x (and the bounds).

    ``random_start`` begins at a uniform random point of the ball. Across steps and restarts
    each example keeps its worst case, never simply the last iterate: the first point that
    fools the model (early stop), else the point of highest loss.
    Targeted: ``targeted=True`` takes ``y`` as the targets (the older form), or ``target`` =
    labels, "random" or "least-likely" (``pick_targets``); the loss of the target goes down.
    """
    ball = Ball(norm, eps)
    x = check_attack_inputs(model, x, bounds)
    steps, restarts = whole(steps, "steps"), whole(restarts, "restarts")
    batch_size = batch_size_or_none(batch_size)
    alpha = default_step_size(ball.eps, steps) if step_size is None else float(step_size)
    if not (alpha >= 0 and np.isfinite(alpha)):
        raise InputError(f"step_size must be a finite number >= 0, got {step_size}")
    rng = generator(rng)
    y = labels_or_predictions(model, x, y)
    if target is not None:
        y, targeted = pick_targets(model, x, y, target, rng), True
    # all random starts are drawn up front for the whole batch, so that running the attack
    # in chunks (batch_size) gives exactly the same result as all at once
    starts = np.stack([ball.sample(x.shape, rng, dtype=x.dtype) if random_start else np.zeros(x.shape, x.dtype)
                       for _ in range(restarts)])
    starts = model.on_device(starts, "random starts")

    def one(xc, yc, starts_c):
        def at(x_at):  # (x, value, fooled) with the loss the attack climbs
            v, logits, g = value_and_input_gradient(model, x_at, yc, "ce", yc if targeted else None)
            fooled = logits.argmax(axis=1) == yc if targeted else logits.argmax(axis=1) != yc
            return (x_at, v, fooled), g

        best = None
        for r in range(restarts):
            x_adv = clip_to_bounds(xc + ball.project(starts_c[r]), bounds)
            for t in range(steps + 1):
                point, g = at(x_adv)
                best = point if best is None else keep_worst(best, point)
                if t < steps:
                    x_adv = projected_step(xc, x_adv, g, ball, alpha, bounds)
        return (best[0],)

    (x_adv,) = batched(one, x, y, batch_size, extra=(starts,))
    return AttackResult(x_adv, success_mask(model, x_adv, y, targeted), lp_norm(x_adv - x, ball.p), y)


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
    x = check_attack_inputs(model, x, bounds)
    y = labels_or_predictions(model, x, y)
    batch_size = batch_size_or_none(batch_size)

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

    (x_adv,) = batched(one, x, y, batch_size)
    return AttackResult(x_adv, success_mask(model, x_adv, y, targeted), lp_norm(x_adv - x, 1), y)

