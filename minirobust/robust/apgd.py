"""APGD: Auto-PGD (Croce & Hein 2020), the step-size-free PGD that AutoAttack is built on.

PGD with three changes that remove its step size:

* momentum: x_{k+1} = P(x_k + a (z_{k+1} - x_k) + (1 - a)(x_k - x_{k-1})), a = 0.75, where
  z_{k+1} = P(x_k + eta_k * steepest_ascent(grad f(x_k)));
* the step size eta starts at 2 eps and is halved, per example, at fixed checkpoints
  w_0 = 0 < w_1 < ... (fractions p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03,
  0.06) of the iterations) when the last phase went badly:
    (1) the objective went up in fewer than rho = 75% of the phase's steps, or
    (2) eta was not reduced at the previous checkpoint and the best value did not move;
  after a halving the iterate restarts from the best point so far;
  these details follow the paper (Croce & Hein 2020, section 3.2 and Algorithm 1), where the
  reference code departs from it: condition (1) counts "fewer than" (the reference: "at most",
  `t <= k * k3` in check_oscillation); checkpoints are ceil(p_j * N) (the reference floors
  0.22 * N); condition (2) may fire at the first checkpoint (the reference cannot: its
  reduced_last_check starts true); after a restart the next momentum term is x_max - x^(k), as in
  Algorithm 1's line x^(k+1) <- x_max (the reference does the same);
* the best point (highest objective) is kept, never the last one; an example that is
  misclassified at any iterate keeps the first such point.

Norms: l_inf (sign step), l_2 (g / ||g||_2), l_1 (Croce & Hein 2021: a sparse step on the k
coordinates of largest |g| that can still move, and the exact projection onto the l_1 ball
intersected with the box). Objectives: cross-entropy or DLR, on logits (``objectives.py``).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from ..backend import get_xp
from ..errors import InputError
from .attack_base import (AttackResult, batch_size_or_none, check_attack_inputs, generator, keep_worst,
                          labels_or_predictions, pick_targets, whole)
from .balls import Ball, lp_norm, project_l1_box
from .objectives import value_and_input_gradient

MOMENTUM = 0.75  # a, the weight of the new step against the last move
RHO = 0.75  # condition (1): the fraction of steps that must have raised the objective


def checkpoints(steps: int) -> list:
    """The iterations at which APGD may halve its step size (w_1, w_2, ... < steps):
    w_j = ceil(p_j * steps), p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)
    (Croce & Hein 2020, section 3.2). In exact fractions: in floats p_3 * 100 = 57.000...01,
    whose ceiling is 58, not the paper's 57."""
    p = [Fraction(0), Fraction(22, 100)]
    while p[-1] < 1:
        p.append(p[-1] + max(p[-1] - p[-2] - Fraction(3, 100), Fraction(6, 100)))
    return sorted({math.ceil(f * steps) for f in p[1:] if math.ceil(f * steps) < steps})


def _expand(v, like):
    return v.reshape((-1,) + (1,) * (like.ndim - 1))


class _Geometry:
    """The norm's step and projection for one batch (x and its box are fixed)."""

    def __init__(self, ball: Ball, x, bounds, l1_sparsity):
        self.ball, self.x, self.bounds = ball, x, bounds
        self.sparsity = float(l1_sparsity)
        xp = get_xp(x)
        self.room_down = (x - bounds[0]) if bounds is not None else xp.full_like(x, np.inf)
        self.room_up = (bounds[1] - x) if bounds is not None else xp.full_like(x, np.inf)

    def step(self, x_cur, g, eta):
        """eta (N,) times the steepest-ascent direction at x_cur (unit size in the norm)."""
        if self.ball.p == 1:
            return self._sparse_l1_step(x_cur, g) * _expand(eta, g)
        return self.ball.steepest_ascent(g, eps=1.0) * _expand(eta, g)

    def _sparse_l1_step(self, x_cur, g):
        """Unit l_1 step spread over the k = sparsity * d coordinates of largest |g| that can
        move in g's direction (a coordinate at the box edge cannot)."""
        xp = get_xp(g)
        flat, pos = g.reshape(g.shape[0], -1), (x_cur - self.x).reshape(g.shape[0], -1)
        can_move = xp.where(flat > 0, (self.room_up.reshape(flat.shape) - pos) > 0,
                            (self.room_down.reshape(flat.shape) + pos) > 0)
        score = xp.where(can_move, xp.abs(flat), 0)
        k = max(1, int(math.ceil(self.sparsity * flat.shape[1])))
        kth = -xp.sort(-score, axis=1)[:, k - 1 : k]  # the k-th largest score, per row
        chosen = (score >= kth) & (score > 0)
        count = xp.maximum(chosen.sum(axis=1, keepdims=True), 1)
        return (xp.sign(flat) * chosen / count).reshape(g.shape).astype(g.dtype)

    def project(self, x_new):
        """The closest point of the ball around x, inside the box."""
        delta = x_new - self.x
        if self.ball.p == 1 and self.bounds is not None:
            return self.x + project_l1_box(delta, self.ball.eps, -self.room_down, self.room_up)
        x_new = self.x + self.ball.project(delta)
        return x_new if self.bounds is None else get_xp(x_new).clip(x_new, *self.bounds)


def apgd(model, x, y=None, norm="inf", eps=0.03, steps=100, objective="ce", target=None, restarts=1,
         random_start=True, rng=None, bounds=(0.0, 1.0), l1_sparsity=0.05, batch_size=None,
         trace=False) -> AttackResult:
    """APGD on ``objective`` ("ce" or "dlr") inside the l_p ball of radius eps.

    target: None (untargeted), labels (N,), or "random" / "least-likely" (``pick_targets``);
    targeted runs climb -CE(target) or the targeted DLR; ``success`` is misclassification (the
    true label lost) in both cases, as in the reference AutoAttack. ``restarts`` keeps the per-example
    worst case. ``trace=True`` puts in ``result.info["best_at_checkpoints"]`` the best objective
    value of every example at the start, at each checkpoint and at the end (of the last restart),
    shape (len(checkpoints(steps)) + 2, N).
    """
    ball = Ball(norm, eps)
    x = check_attack_inputs(model, x, bounds)
    steps, restarts = whole(steps, "steps"), whole(restarts, "restarts")
    batch_size = batch_size_or_none(batch_size)
    if not 0 < float(l1_sparsity) <= 1:
        raise InputError(f"l1_sparsity must be in (0, 1], got {l1_sparsity}")
    rng = generator(rng)
    y = labels_or_predictions(model, x, y)
    targets = pick_targets(model, x, y, target, rng) if target is not None else None
    # every random start drawn up front: running in chunks gives the same result as all at once
    starts = [ball.sample(x.shape, rng, dtype=x.dtype) if random_start else None for _ in range(restarts)]
    xp = get_xp(x)
    n = x.shape[0]
    size = n if batch_size is None else int(batch_size)
    x_adv, traces = xp.empty_like(x), []
    success = xp.zeros(n, dtype=bool)
    for i in range(0, n, size):
        sl = slice(i, i + size)
        xb, yb, tb = x[sl], y[sl], None if targets is None else targets[sl]
        best = None
        for start in starts:
            s = None if start is None else model.on_device(start[sl], "random start")
            xa, va, ok, tr = _apgd_run(model, xb, yb, tb, ball, steps, objective, s, bounds, l1_sparsity)
            best = (xa, va, ok) if best is None else keep_worst(best, (xa, va, ok))
        x_adv[sl], success[sl] = best[0], best[2]
        traces.append(tr)
    info = {"best_at_checkpoints": xp.concatenate(traces, axis=1)} if trace else {}
    labels = y if targets is None else targets
    return AttackResult(x_adv, success, lp_norm(x_adv - x, ball.p), labels, info=info)


def _apgd_run(model, x, y, target, ball, steps, objective, start, bounds, l1_sparsity):
    """One APGD run on one batch: (best x, its objective value, success flags, trace)."""
    xp = get_xp(x)
    geo = _Geometry(ball, x, bounds, l1_sparsity)
    if ball.eps == 0:
        v, logits, _ = value_and_input_gradient(model, x, y, objective, target)
        return x.copy(), v, _fooled(logits, y, target), xp.stack([v])

    def evaluate(x_at):
        v, logits, g = value_and_input_gradient(model, x_at, y, objective, target)
        return v, _fooled(logits, y, target), g

    x_cur = x if start is None else geo.project(x + start)
    v_cur, ok_cur, g_cur = evaluate(x_cur)
    eta = xp.full(x.shape[0], 2 * ball.eps, dtype=x.dtype)
    best_x, best_v, best_g = x_cur, v_cur, g_cur
    found, found_x = ok_cur, x_cur  # the first misclassifying iterate of each example
    x_prev = x_cur
    marks = checkpoints(steps)
    phase_start, increases = 0, xp.zeros(x.shape[0], dtype=np.int64)
    eta_at_mark, best_at_mark = eta.copy(), best_v.copy()
    trace = [best_v.copy()]
    for k in range(steps):
        z = geo.project(x_cur + geo.step(x_cur, g_cur, eta))
        a = MOMENTUM if k > 0 else 1.0  # the first step has no last move to carry
        x_next = geo.project(x_cur + a * (z - x_cur) + (1 - a) * (x_cur - x_prev))
        v_next, ok_next, g_next = evaluate(x_next)
        increases += v_next > v_cur
        up = _expand(v_next > best_v, x)
        best_x, best_g = xp.where(up, x_next, best_x), xp.where(up, g_next, best_g)
        best_v = xp.maximum(best_v, v_next)
        new = ok_next & ~found
        found_x, found = xp.where(_expand(new, x), x_next, found_x), found | ok_next
        x_prev, x_cur, v_cur, g_cur = x_cur, x_next, v_next, g_next
        if k + 1 in marks:
            length = k + 1 - phase_start
            too_few_increases = increases < RHO * length
            stalled = (eta_at_mark == eta) & (best_at_mark == best_v)  # not halved last time, no progress
            halve = too_few_increases | stalled
            eta_at_mark, best_at_mark = eta.copy(), best_v.copy()
            eta = xp.where(halve, eta / 2, eta)
            restart = _expand(halve, x)  # x^(k+1) <- x_max; x^(k) stays, so momentum carries x_max - x^(k)
            x_cur = xp.where(restart, best_x, x_cur)
            g_cur, v_cur = xp.where(restart, best_g, g_cur), xp.where(halve, best_v, v_cur)
            phase_start, increases = k + 1, xp.zeros_like(increases)
            trace.append(best_v.copy())
    trace.append(best_v.copy())
    x_out = xp.where(_expand(found, x), found_x, best_x)
    return x_out, best_v, found, xp.stack(trace)


def _fooled(logits, y, target):
    """Misclassified (the prediction is not the true label ``y``), targeted or not: a targeted run
    keeps the first iterate that leaves the true class, whichever class it lands in, as the
    reference AutoAttack does (robust accuracy counts misclassification, not reaching the target)."""
    return logits.argmax(axis=1) != y
