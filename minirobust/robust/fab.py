"""FAB: the Fast Adaptive Boundary attack (Croce & Hein 2020), targeted (FAB-T), for l_inf, l_2, l_1.

FAB looks for the *smallest* perturbation that changes the class, rather than the worst loss in
a fixed ball. At the current point it linearises the boundary between the true class y and a
target class t,

    h(x') ~ h(x) + <grad h(x), x' - x> = 0,     h = z_y - z_t  (positive while y wins over t),

and takes the minimal-norm step onto that hyperplane inside the box (``min_norm_step``), both
from the current point and from the original image. It moves to a convex mix of the two,
weighted towards the original (alpha <= ALPHA_MAX), with a small overshoot ETA. Whenever the new
point is misclassified it is remembered if it is the closest so far, and the iterate is pulled
back towards the original (x <- x_orig + BETA (x - x_orig)): the search walks along the boundary
towards the original image, so the best norm shrinks over the iterations.

For robust accuracy at radius eps (the suite's FAB-T), a point counts as broken only if FAB's
closest misclassified point lies inside the eps ball; ``fab`` itself returns that closest point
whatever its norm.
"""

from __future__ import annotations

import numpy as np

from ..backend import get_xp
from .attack_base import AttackResult, batch_size_or_none, check_attack_inputs, labels_or_predictions, whole
from .balls import Ball, lp_norm

ETA = 1.05  # overshoot of the projection step (the paper's eta)
ALPHA_MAX = 0.1  # the most weight the step from the original image gets (alpha_max)
BETA = 0.9  # backward step towards the original after a success (beta)
BISECTIONS = 60  # halvings of the interval in the l_2 and l_inf projections: float64 precision
UNBOXED = 1e3  # with bounds=None, how far a coordinate may move (pixels live in [0, 1])


def min_norm_step(w, c, lo, hi, p):
    """Per row: the delta of smallest l_p norm with <w, delta> = c and lo <= delta <= hi
    (lo <= 0 <= hi). Where the box cannot reach c, the delta that gets closest.

    w, lo, hi: (N, D); c: (N,). The three norms' solutions (from the KKT conditions):
      l_2:   delta = clip(lam * w, lo, hi), lam found by bisection (w.delta grows with lam);
      l_inf: delta_i = sign(c w_i) min(t, room_i), the smallest t found by bisection;
      l_1:   spend on the coordinates of largest |w_i| first, each up to its room.
    """
    xp = get_xp(w)
    direction = xp.sign(c)[:, None]
    # the room each coordinate has in the direction that moves <w, delta> towards c
    toward = xp.sign(w) * direction  # +1: increase delta_i, -1: decrease it
    room = xp.where(toward > 0, hi, -lo)
    room = xp.where(toward == 0, 0.0, room)
    need = xp.abs(c)
    if p == 1:
        return _min_l1(w, need, room, toward, xp)
    if p == 2:
        # delta(lam) = clip(lam |w|, 0, room) * toward, so <w, delta> = sum |w| clip(lam |w|, 0, room)
        aw = xp.abs(w)
        top = xp.max(xp.where(aw > 0, room / xp.where(aw > 0, aw, 1.0), 0.0), axis=1)  # every coordinate full

        def reach(lam):
            return (aw * xp.minimum(lam[:, None] * aw, room)).sum(axis=1)

        lam = _bisect(reach, need, top, xp)
        return xp.minimum(lam[:, None] * aw, room) * toward
    # l_inf: delta_i = min(t, room_i) * toward_i, so <w, delta> = sum |w_i| min(t, room_i)
    aw = xp.abs(w)

    def reach_inf(t):
        return (aw * xp.minimum(t[:, None], room)).sum(axis=1)

    t = _bisect(reach_inf, need, room.max(axis=1), xp)
    return xp.minimum(t[:, None], room) * toward


def _bisect(reach, need, top, xp):
    """The smallest s in [0, top] with reach(s) >= need (reach grows with s), per row; top where
    even top falls short."""
    low, high = xp.zeros_like(top), top.copy()
    for _ in range(BISECTIONS):
        mid = (low + high) / 2
        enough = reach(mid) >= need
        high, low = xp.where(enough, mid, high), xp.where(enough, low, mid)
    return high


def _min_l1(w, need, room, toward, xp):
    aw = xp.abs(w)
    order = xp.argsort(-aw, axis=1)  # the cheapest coordinates first: most <w, delta> per unit of norm
    aw_sorted, room_sorted = xp.take_along_axis(aw, order, 1), xp.take_along_axis(room, order, 1)
    gain = aw_sorted * room_sorted  # what each coordinate gives when used to the full
    before = xp.cumsum(gain, axis=1) - gain  # what the coordinates before it gave
    remaining = xp.clip(need[:, None] - before, 0.0, None)
    used = xp.where(aw_sorted > 0, xp.minimum(room_sorted, remaining / xp.where(aw_sorted > 0, aw_sorted, 1.0)), 0.0)
    unsort = xp.argsort(order, axis=1)  # back to the coordinates' own order (also on CuPy)
    return xp.take_along_axis(used, unsort, 1) * toward


def fab(model, x, y=None, norm="inf", eps=None, target=None, steps=100, rng=None, bounds=(0.0, 1.0),
        batch_size=None, trace=False) -> AttackResult:
    """Targeted FAB: per example, the closest point it finds that the model does not classify as
    ``y`` (the model's predictions by default), searching along the boundary with ``target``
    (labels (N,); by default the class ranked second). With ``eps``, a point counts (``success``)
    only if that closest point lies inside the eps ball, and examples it does not break inside it
    come back as x; without, the closest point whatever its size. FAB is deterministic from the
    image (``rng`` is accepted for the shared contract and unused). ``trace=True``:
    ``info["best_norm"]`` (steps, N), the best norm after each iteration (inf before the first
    success)."""
    ball = Ball(norm, 1.0 if eps is None else eps)
    x = check_attack_inputs(model, x, bounds)
    steps, batch_size = whole(steps, "steps"), batch_size_or_none(batch_size)
    xp = get_xp(x)
    y = labels_or_predictions(model, x, y)
    if target is None:
        ranked = xp.argsort(model.predict_logits(x), axis=1)
        target = xp.where(ranked[:, -2] == y, ranked[:, -1], ranked[:, -2])  # the best class other than y
    target = model.on_device(xp.asarray(target), "targets")
    size = x.shape[0] if batch_size is None else batch_size
    parts = [_fab_run(model, x[i : i + size], y[i : i + size], target[i : i + size], ball.p, steps, bounds, trace)
             for i in range(0, x.shape[0], size)]
    x_adv, best_norm = xp.concatenate([p[0] for p in parts]), xp.concatenate([p[1] for p in parts])
    success = xp.isfinite(best_norm)
    if eps is not None:
        success &= best_norm <= ball.eps
        x_adv = xp.where(success.reshape((-1,) + (1,) * (x.ndim - 1)), x_adv, x)
    info = {"best_norm": xp.concatenate([p[2] for p in parts], axis=1)} if trace else {}
    return AttackResult(x_adv, success, lp_norm(x_adv - x, ball.p), target, info=info)


def _fab_run(model, x, y, target, p, steps, bounds, trace):
    """FAB on one batch: (the closest misclassified points (x where none), their norms (inf where
    none), the trace (steps, N) or an empty (0, N) array)."""
    xp = get_xp(x)
    flat = (x.shape[0], -1)
    # no box: a room far beyond any useful perturbation, so that the bisections stay finite
    lo = (bounds[0] - x).reshape(flat) if bounds is not None else xp.full((x.shape[0], x[0].size), -UNBOXED)
    hi = (bounds[1] - x).reshape(flat) if bounds is not None else xp.full((x.shape[0], x[0].size), UNBOXED)
    x_orig = x.reshape(flat).astype(np.float64)
    x_cur = x_orig.copy()
    best_x, best_norm = x_orig.copy(), xp.full(x.shape[0], np.inf)
    history = []
    for _ in range(steps):
        h, w = _boundary(model, x_cur.reshape(x.shape).astype(x.dtype), y, target)
        # the same hyperplane {x': h + <w, x' - x_cur> = 0} seen from the current point and from the original
        d_cur = min_norm_step(w, -h, lo - (x_cur - x_orig), hi - (x_cur - x_orig), p)
        d_orig = min_norm_step(w, -(h + (w * (x_orig - x_cur)).sum(axis=1)), lo, hi, p)
        n_cur, n_orig = lp_norm(d_cur, p), lp_norm(d_orig, p)
        total = n_cur + n_orig
        alpha = xp.minimum(xp.where(total > 0, n_cur / xp.where(total > 0, total, 1.0), 0.0), ALPHA_MAX)[:, None]
        x_new = (1 - alpha) * (x_cur + ETA * d_cur) + alpha * (x_orig + ETA * d_orig)
        x_new = xp.clip(x_new, x_orig + lo, x_orig + hi)
        fooled = model.predict(x_new.reshape(x.shape).astype(x.dtype)) != y
        dist = lp_norm(x_new - x_orig, p)
        closer = fooled & (dist < best_norm)
        best_x = xp.where(closer[:, None], x_new, best_x)
        best_norm = xp.where(closer, dist, best_norm)
        x_cur = xp.where(fooled[:, None], x_orig + BETA * (x_new - x_orig), x_new)  # back towards the original
        if trace:
            history.append(best_norm.copy())
    x_best = best_x.reshape(x.shape).astype(x.dtype)
    # the norm of the point returned (float32), so that an eps test agrees with what the caller measures
    best_norm = xp.where(xp.isfinite(best_norm), lp_norm(x_best - x, p), np.inf)
    return x_best, best_norm, xp.stack(history) if trace else xp.zeros((0, x.shape[0]))


def _boundary(model, x, y, target):
    """h = z_y - z_t and its input gradient (float64, flattened), in evaluation mode."""
    xp = get_xp(x)
    logits = model.forward(x, train=False)
    rows = xp.arange(x.shape[0])
    h = (logits[rows, y] - logits[rows, target]).astype(np.float64)
    dz = xp.zeros_like(logits)
    dz[rows, y], dz[rows, target] = 1, -1
    g = model.backward(dz, param_grads=False)
    return h, g.reshape(x.shape[0], -1).astype(np.float64)
