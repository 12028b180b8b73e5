"""Uncertainty sets: l_p balls of radius eps around each example.

Norms are taken per example over all non-batch axes: for x of shape (N, C, H, W),
``Ball(2, eps).norm(delta)`` has shape (N,).

Two operations drive every attack and Algorithm 1:

* ``steepest_ascent(g)``: the delta in the ball maximising the first-order gain <g, delta>.
  By Hoelder's inequality the maximum is eps * ||g||_q with q the dual exponent
  (1/p + 1/q = 1), reached by
      l_inf: eps * sign(g)
      l_2:   eps * g / ||g||_2
      l_1:   eps * sign(g_i) on the single coordinate i of largest |g_i| (ties: the first
             index in C order); ``l1_top_k=k`` spreads eps evenly over the k largest instead
      l_p:   eps * sign(g) |g|^(q-1) / ||g||_q^(q-1)
  A zero gradient gives a zero step (never NaN).
* ``project(delta)``: the exact Euclidean projection onto the ball (closest point):
      l_inf: clip each coordinate;  l_2: rescale if outside;
      l_1:   the sort-based algorithm of Duchi et al. (2008) -- NOT rescaling, which lands
             inside the ball but not at the closest point;
      l_p:   nested bisection on the KKT conditions (accurate to ~1e-10 relative).
"""

from __future__ import annotations

import math

import numpy as np

from ..backend import get_xp
from ..errors import InputError
from ..kernels import get_op
from ..kernels.reference import _flat, _per_example, lp_norm  # noqa: F401 (lp_norm: part of this API)


def parse_norm(norm) -> float:
    """'inf' / 'linf' / np.inf / 2 / '2' / 'l1' ... -> float p >= 1 (inf allowed)."""
    if isinstance(norm, str):
        text = norm.strip().lower().removeprefix("l").removeprefix("_")
        p = math.inf if text in ("inf", "infinity") else None
        if p is None:
            try:
                p = float(text)
            except ValueError:
                raise InputError(f"unknown norm {norm!r}: use inf, 2, 1 or any p >= 1") from None
    else:
        try:
            p = float(norm)
        except (TypeError, ValueError):
            raise InputError(f"unknown norm {norm!r}: use inf, 2, 1 or any p >= 1") from None
    if not p >= 1:  # also rejects NaN
        raise InputError(f"norm p must be >= 1 (a ball of a real norm), got {norm!r}")
    return p


def norm_name(p: float) -> str:
    return "inf" if math.isinf(p) else (str(int(p)) if float(p).is_integer() else str(p))


EPS_MAX = float(np.finfo(np.float32).max)  # beyond it a float32 step is inf, then NaN


class Ball:
    """The l_p ball {delta : ||delta||_p <= eps} around each example."""

    def __init__(self, norm, eps: float, l1_top_k: int = 1):
        self.p = parse_norm(norm)
        eps = float(eps)
        if not eps >= 0 or eps > EPS_MAX:
            raise InputError(f"eps must be a finite number in [0, {EPS_MAX:g}] (float32's range), got {eps}")
        if int(l1_top_k) < 1:
            raise InputError(f"l1_top_k must be >= 1, got {l1_top_k}")
        self.eps, self.l1_top_k = eps, int(l1_top_k)

    @property
    def name(self) -> str:
        return norm_name(self.p)

    @property
    def dual(self) -> float:
        """q with 1/p + 1/q = 1."""
        if math.isinf(self.p):
            return 1.0
        if self.p == 1:
            return math.inf
        return self.p / (self.p - 1)

    def __repr__(self):
        return f"Ball(norm={self.name}, eps={self.eps:g})"

    def norm(self, delta):
        return lp_norm(delta, self.p)

    def contains(self, delta, tol=1e-6):
        """Per-example: is ||delta||_p <= eps (up to a relative tolerance)?"""
        return self.norm(delta) <= self.eps * (1 + tol) + tol

    # ----- the ascent direction -------------------------------------------------------------------
    def steepest_ascent(self, g, eps=None):
        """argmax over the ball of <g, delta>, per example. g: (N, ...) -> delta like g.

        The formulas are the ops ``*_ascent_step`` of ``kernels/reference.py`` (the GPU tier
        has them as kernels): l_inf eps * sign(g); l_2 eps * g / ||g||_2; l_1 all of eps on
        the coordinate of largest |g| (``l1_top_k``: spread over the k largest); l_p
        eps * sign(g) |g|^(q-1) / ||g||_q^(q-1).
        """
        eps = self.eps if eps is None else float(eps)
        if math.isinf(self.p):
            return get_op("linf_ascent_step", g)(g, eps)
        if self.p == 2:
            return get_op("l2_ascent_step", g)(g, eps)
        if self.p == 1:
            if self.l1_top_k == 1:
                return get_op("l1_ascent_step", g)(g, eps)
            return self._l1_top_k_step(g, eps)
        return get_op("lp_ascent_step", g)(g, self.p, eps)

    def _l1_top_k_step(self, g, eps):
        """eps / k on each of the k coordinates of largest |g|, with the sign of g there."""
        xp = get_xp(g)
        flat = _flat(g)
        N, D = flat.shape
        delta = xp.zeros_like(flat)
        k = min(self.l1_top_k, D)
        # stable sort of -|g|: among equal magnitudes the lower index comes first
        order = xp.argsort(-xp.abs(flat), axis=1, kind="stable")[:, :k]
        rows = xp.arange(N)[:, None]
        delta[rows, order] = (eps / k) * xp.sign(flat[rows, order])
        return delta.reshape(g.shape)

    # ----- projection -------------------------------------------------------------------------------
    def project(self, delta):
        """Closest point of the ball to ``delta`` (Euclidean distance), per example."""
        if math.isinf(self.p):
            return get_op("linf_projection", delta)(delta, self.eps)
        if self.p == 2:
            return get_op("l2_projection", delta)(delta, self.eps)
        if self.p == 1:
            return project_l1(delta, self.eps)
        return project_lp(delta, self.p, self.eps)

    # ----- random points -----------------------------------------------------------------------------
    def sample(self, shape, rng, dtype=np.float32):
        """Points uniformly distributed in the ball (host arrays, drawn from ``rng``).

        l_inf: independent uniforms. Finite p: Barthe, Guedon, Mendelson & Naor (2005):
        with z_i iid of density ~ exp(-|z|^p) and w ~ Exp(1), z / (||z||_p^p + w)^(1/p) is
        uniform in the unit l_p ball.
        """
        shape = tuple(shape)
        if math.isinf(self.p):
            return rng.uniform(-self.eps, self.eps, size=shape).astype(dtype)
        p = self.p
        z = rng.gamma(1.0 / p, 1.0, size=shape) ** (1.0 / p) * rng.choice([-1.0, 1.0], size=shape)
        w = rng.exponential(1.0, size=shape[0])
        s = (np.abs(z.reshape(shape[0], -1)) ** p).sum(axis=1) + w
        return (self.eps * z / _per_example(s ** (1.0 / p), z)).astype(dtype)


def project_l1(delta, eps):
    """Euclidean projection onto the l_1 ball of radius eps, per example (Duchi et al. 2008;
    the op ``l1_projection`` of ``kernels/reference.py``)."""
    return get_op("l1_projection", delta)(delta, eps)


def project_lp(delta, p, eps, iters=100):
    """Euclidean projection onto the l_p ball (1 < p < inf) by nested bisection.

    KKT: x_i = sign(v_i) t_i with t_i + lam * p * t_i^(p-1) = |v_i| (solved for t_i in
    [0, |v_i|] by bisection, the left side is increasing), and lam >= 0 chosen by an outer
    bisection so that ||t||_p = eps. Vectorised over examples and coordinates.
    """
    xp = get_xp(delta)
    if eps == 0:
        return xp.zeros_like(delta)
    v = _flat(delta).astype(np.float64)
    a = xp.abs(v)
    inside = lp_norm(v, p) <= eps

    def solve_t(lam):
        lo, hi = xp.zeros_like(a), a.copy()
        for _ in range(iters):
            mid = (lo + hi) / 2
            too_big = mid + lam[:, None] * p * mid ** (p - 1) > a
            hi = xp.where(too_big, mid, hi)
            lo = xp.where(too_big, lo, mid)
        return (lo + hi) / 2

    lam_lo = xp.zeros(v.shape[0])
    lam_hi = xp.ones(v.shape[0])
    while True:  # grow the bracket until every example's t(lam_hi) lies inside the ball
        outside = lp_norm(solve_t(lam_hi), p) > eps
        if not bool(outside.any()):
            break
        lam_hi = xp.where(outside, lam_hi * 10, lam_hi)
    for _ in range(iters):
        mid = (lam_lo + lam_hi) / 2
        outside = lp_norm(solve_t(mid), p) > eps
        lam_lo = xp.where(outside, mid, lam_lo)
        lam_hi = xp.where(outside, lam_hi, mid)
    x = xp.sign(v) * solve_t(lam_hi)
    out = xp.where(inside[:, None], v, x)
    return out.reshape(delta.shape).astype(delta.dtype)


def project_l1_box(delta, eps, low, high, iters=50):
    """Euclidean projection onto {||d||_1 <= eps} intersected with the box low <= d <= high
    (per coordinate, low <= 0 <= high: the room the input bounds leave around x), per example.

    The problem separates per coordinate once the l_1 term has its multiplier lam: each
    coordinate is the soft-threshold of delta at lam, clipped to its interval. ||d(lam)||_1
    falls as lam grows, so lam is found by bisection (float64), as in Croce & Hein's
    APGD-l_1 (2021), whose steps would otherwise leave the box or the ball.
    """
    xp = get_xp(delta)
    v = _flat(delta).astype(np.float64)
    lo, hi = _flat(low).astype(np.float64), _flat(high).astype(np.float64)

    def shrink(lam):
        return xp.clip(xp.sign(v) * xp.maximum(xp.abs(v) - lam[:, None], 0), lo, hi)

    lam_lo = xp.zeros(v.shape[0])
    inside = xp.abs(shrink(lam_lo)).sum(axis=1) <= eps
    lam_hi = xp.abs(v).max(axis=1)  # at lam = max|v| every coordinate is 0
    for _ in range(iters):
        mid = (lam_lo + lam_hi) / 2
        outside = xp.abs(shrink(mid)).sum(axis=1) > eps
        lam_lo = xp.where(outside, mid, lam_lo)
        lam_hi = xp.where(outside, lam_hi, mid)
    lam = xp.where(inside, 0.0, lam_hi)  # lam_hi: always on the inside of the bracket
    return shrink(lam).reshape(delta.shape).astype(delta.dtype)
