"""The Square attack (Andriushchenko, Croce, Flammarion & Hein 2020): random search that uses
only the model's scores, never its gradient.

Each query changes the perturbation inside one random square window (side s, shrinking on a
fixed schedule as the queries go by) and keeps the change when it lowers the margin
z_y - max_{j != y} z_j; an example stops once the margin is negative (misclassified). Since it
needs no gradient, a model that hides or breaks its gradient (gradient masking) does not stop
it: when Square finds adversarial points that the white-box attacks missed, the white-box
numbers are not to be trusted.

l_inf (the paper's Algorithm 2): start from vertical stripes of +-eps, each query sets one
window of every channel to a fresh +-eps.
l_2 (after the paper's Algorithm 3): each query moves the perturbation's mass out of a second
window into the first, as a centre-heavy "meta-perturbation" of random sign, then rescales to
the ball (a simplification: the paper solves for the new window's size exactly).
"""

from __future__ import annotations

import math

import numpy as np

from ..backend import get_xp
from ..errors import InputError
from .attack_base import (AttackResult, batch_size_or_none, check_attack_inputs, generator, labels_or_predictions,
                          whole)
from .balls import Ball, lp_norm
from .objectives import margin

# the fraction p of pixels a window covers halves at these query counts, as in the paper
SCHEDULE = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
# "published": the paper's and the reference AutoAttack's defaults: p_init 0.8 and the schedule
# read at the query index as it is (AutoAttack's standard version runs Square with
# resc_schedule=False): the first windows cover 80% of the image (25 px of 28), shrinking to 6 px
# after 1,000 queries. "rescaled": p_init 0.05 (l_inf) / 0.1 (l_2), the schedule stretched to the
# budget as if it were 10,000 queries: small windows from the start.
SCHEDULES = ("published", "rescaled")
P_INIT = {"published": {"inf": 0.8, "2": 0.8}, "rescaled": {"inf": 0.05, "2": 0.1}}


def window_fraction(i: int, n_queries: int, p_init: float, schedule: str = "published") -> float:
    """p at query i: p_init halved once for each point of the schedule already passed."""
    if schedule == "rescaled" and n_queries < 10000:
        i = int(i / n_queries * 10000)
    return p_init / 2 ** sum(i > mark for mark in SCHEDULE)


def window_side(i: int, n_queries: int, p_init: float, H: int, W: int, schedule: str = "published") -> int:
    """The side s of query i's square window: s^2 ~ p H W, at least 1 and less than the image
    (as the reference clamps it), so a window always has somewhere to move."""
    s = int(round(math.sqrt(window_fraction(i, n_queries, p_init, schedule) * H * W)))
    return max(1, min(s, min(H, W) - 1))


def meta_perturbation(s: int) -> np.ndarray:
    """A centre-heavy s x s pattern of unit l_2 norm (nested squares, weight 1/(r+1)^2 for the
    r-th ring from the centre, opposite signs on the two halves), the building block of the
    l_2 attack."""
    out = np.zeros((s, s))
    half = max(s // 2, 1)
    for part, sign in ((slice(0, half), 1.0), (slice(half, s), -1.0)):
        cols = out[:, part]
        h, w = cols.shape
        if w == 0:
            continue
        ci, cj = (h - 1) / 2, (w - 1) / 2
        ii, jj = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        ring = np.maximum(np.abs(ii - ci), np.abs(jj - cj)).round()
        cols[:] = sign / (ring + 1) ** 2
    return out / np.linalg.norm(out)


def square(model, x, y=None, norm="inf", eps=0.03, n_queries=1000, rng=None, bounds=(0.0, 1.0),
           p_init=None, schedule="published", batch_size=None) -> AttackResult:
    """Square attack on images x (N, C, H, W) in the l_inf or l_2 ball of radius eps.

    Untargeted: minimises the margin of ``y`` (the model's predictions by default). Each of the
    ``n_queries`` iterations costs one forward pass on the examples not yet fooled.
    ``schedule``: "published" (p_init 0.8, the paper's schedule as it is) or "rescaled" (see
    ``P_INIT``); ``p_init`` overrides the schedule's own.
    ``batch_size``: attack that many examples at a time (the chunks share ``rng``'s stream).
    """
    ball = Ball(norm, eps)
    if ball.name not in ("inf", "2"):
        raise InputError(f"the Square attack is for l_inf and l_2, not l_{ball.name}")
    if schedule not in SCHEDULES:
        raise InputError(f"unknown Square schedule {schedule!r}: choose {' or '.join(SCHEDULES)}")
    x = check_attack_inputs(model, x, bounds)
    if x.ndim != 4:
        raise InputError(f"the Square attack needs images (N, C, H, W), got shape {tuple(x.shape)}")
    n_queries, batch_size = whole(n_queries, "n_queries"), batch_size_or_none(batch_size)
    rng = generator(rng)
    y = labels_or_predictions(model, x, y)
    p_init = P_INIT[schedule][ball.name] if p_init is None else float(p_init)
    run = _square_linf if ball.name == "inf" else _square_l2
    size = x.shape[0] if batch_size is None else int(batch_size)

    def side(i):
        return window_side(i, int(n_queries), p_init, *x.shape[2:], schedule)

    parts = [run(model, x[i : i + size], y[i : i + size], ball.eps, int(n_queries), rng, bounds, side)
             for i in range(0, x.shape[0], size)]
    x_adv = get_xp(x).concatenate(parts)
    pred = model.predict(x_adv)
    return AttackResult(x_adv, pred != y, lp_norm(x_adv - x, ball.p), y, info={"queries": int(n_queries)})


def _clip(x, bounds):
    return x if bounds is None else get_xp(x).clip(x, *bounds)


def _margins(model, x, y):
    return margin(model.forward(x, train=False), y)


def _window(rng, H, W, s):
    r, c = int(rng.integers(0, H - s + 1)), int(rng.integers(0, W - s + 1))
    return slice(r, r + s), slice(c, c + s)


def _signs(rng, shape, like):
    return get_xp(like).asarray(rng.choice([-1.0, 1.0], size=shape), dtype=like.dtype)


def _random_search(model, x, y, x_adv, n_queries, side, propose):
    """The loop both norms share: each query, ``propose(xa, xc, s)`` changes the perturbation
    of the examples not yet fooled inside windows of side s; a change is kept where it lowers
    the margin."""
    xp = get_xp(x)
    best = _margins(model, x_adv, y)
    for i in range(n_queries):
        active = xp.flatnonzero(best > 0)
        if active.size == 0:
            break
        s = side(i)
        xa = x_adv[active]
        cand = propose(xa, x[active], s)
        m = _margins(model, cand, y[active])
        better = m < best[active]
        x_adv[active] = xp.where(better[:, None, None, None], cand, xa)
        best[active] = xp.minimum(best[active], m)
    return x_adv


def _square_linf(model, x, y, eps, n_queries, rng, bounds, side):
    N, C, H, W = x.shape

    def propose(xa, xc, s):  # one window of every channel set to a fresh +-eps
        rows, cols = _window(rng, H, W, s)
        cand = xa.copy()
        cand[:, :, rows, cols] = _clip(xc[:, :, rows, cols] + eps * _signs(rng, (xa.shape[0], C, 1, 1), x), bounds)
        return cand

    x_adv = _clip(x + eps * _signs(rng, (N, C, 1, W), x), bounds)  # start: vertical stripes
    return _random_search(model, x, y, x_adv, n_queries, side, propose)


def _square_l2(model, x, y, eps, n_queries, rng, bounds, side):
    xp = get_xp(x)
    N, C, H, W = x.shape

    def propose(xa, xc, s):  # the mass of two windows (and what the ball has left) moved into one
        w1, w2 = _window(rng, H, W, s), _window(rng, H, W, s)
        d = xa - xc
        held = (d[:, :, w1[0], w1[1]] ** 2).sum(axis=(2, 3)) + (d[:, :, w2[0], w2[1]] ** 2).sum(axis=(2, 3))
        free = xp.maximum(eps**2 - (d**2).sum(axis=(1, 2, 3)), 0)[:, None] / C
        radius = xp.sqrt(held + free)  # (n, C)
        new = d.copy()
        new[:, :, w2[0], w2[1]] = 0
        pattern = xp.asarray(meta_perturbation(s), dtype=x.dtype)
        new[:, :, w1[0], w1[1]] = pattern * (radius * _signs(rng, (xa.shape[0], C), x))[:, :, None, None]
        return _clip(xc + _to_ball(new, eps), bounds)

    # start: a grid of meta-perturbation tiles with random signs, scaled to norm eps
    s0 = max(1, H // 5)
    delta = xp.zeros_like(x)
    tile = xp.asarray(meta_perturbation(s0), dtype=x.dtype)
    for r in range(0, H - s0 + 1, s0):
        for c in range(0, W - s0 + 1, s0):
            delta[:, :, r : r + s0, c : c + s0] = tile * _signs(rng, (N, C, 1, 1), x)
    x_adv = _clip(x + _to_ball(delta, eps), bounds)
    return _random_search(model, x, y, x_adv, n_queries, side, propose)


def _to_ball(delta, eps):
    """Rescale each example's perturbation to l_2 norm at most eps."""
    return Ball("2", eps).project(delta)
