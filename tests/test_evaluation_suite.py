"""APGD, Square, targeted modes, keep-the-worst restarts, the suite and the masking checks."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from minirobust import checkpoint, nets
from minirobust.data import separable_images
from minirobust.errors import InputError
from minirobust.layers import Layer
from minirobust.robust import (RobustTrainer, TrainConfig, apgd, ascend, masking_checks, per_example_loss, pgd,
                               pick_targets, run_suite, square)
from minirobust.robust.apgd import checkpoints
from minirobust.robust.balls import Ball, lp_norm
from minirobust.robust.objectives import cross_entropy, dlr


@pytest.fixture(scope="module")
def trained():
    """A paper MNIST net trained briefly on the separable task: (model, x, y) of 200 test points."""
    x, y = separable_images(1000, seed=0, noise=0.35)
    model = nets.paper_mnist(seed=0, mean=float(x.mean()), std=float(x.std()))
    RobustTrainer(model, TrainConfig(epochs=2, batch_size=50), progress=False, log=None).fit(x, y)
    xt, yt = separable_images(200, seed=1, noise=0.35)
    return model, xt, yt


def _accuracy(model, x_adv, y):
    return float((model.predict(x_adv) == y).mean())


# ----- the objectives -------------------------------------------------------------------------------

@pytest.mark.parametrize("objective, targeted", [(cross_entropy, False), (cross_entropy, True), (dlr, False),
                                                 (dlr, True)])
def test_objective_gradients_match_finite_differences(objective, targeted):
    rng = np.random.default_rng(0)
    z = rng.standard_normal((6, 10)) * 3
    y = rng.integers(0, 10, 6)
    target = (y + rng.integers(1, 10, 6)) % 10 if targeted else None
    _, dz = objective(z, y, target)
    h, numeric = 1e-6, np.zeros_like(z)
    for idx in np.ndindex(z.shape):
        zp, zm = z.copy(), z.copy()
        zp[idx] += h
        zm[idx] -= h
        numeric[idx] = (objective(zp, y, target)[0].sum() - objective(zm, y, target)[0].sum()) / (2 * h)
    np.testing.assert_allclose(dz, numeric, rtol=1e-5, atol=1e-7)


def test_dlr_ignores_a_temperature():
    z = np.random.default_rng(1).standard_normal((5, 10))
    y = np.arange(5)
    np.testing.assert_allclose(dlr(z * 1000 + 7, y)[0], dlr(z, y)[0], rtol=1e-9)


# ----- every attack: norm bound, box, eps 0, input untouched ---------------------------------------

ATTACK_CASES = [
    ("pgd", "inf"), ("pgd", "2"), ("pgd", "1"),
    ("apgd-ce", "inf"), ("apgd-ce", "2"), ("apgd-ce", "1"),
    ("apgd-dlr", "inf"), ("apgd-dlr", "2"), ("apgd-dlr", "1"),
    ("apgd-t", "inf"), ("apgd-t", "2"), ("apgd-t", "1"),
    ("square", "inf"), ("square", "2"),
]
EPS = {"inf": 0.1, "2": 1.0, "1": 4.0}


def _run(name, model, x, y, norm, eps):
    if name == "pgd":
        return pgd(model, x, y, norm=norm, eps=eps, steps=5, restarts=2, rng=0)
    if name == "square":
        return square(model, x, y, norm=norm, eps=eps, n_queries=30, rng=0)
    objective = "ce" if name == "apgd-ce" else "dlr"
    return apgd(model, x, y, norm=norm, eps=eps, steps=10, objective=objective,
                target="random" if name == "apgd-t" else None, rng=0)


@pytest.mark.parametrize("name, norm", ATTACK_CASES)
def test_attack_respects_the_ball_and_the_box_and_leaves_the_input_alone(trained, name, norm):
    model, x, y = trained
    x, y = x[:40], y[:40]
    before = x.copy()
    res = _run(name, model, x, y, norm, EPS[norm])
    assert np.array_equal(x, before)
    p = Ball(norm, 1.0).p
    assert (lp_norm(res.x_adv - x, p) <= EPS[norm] * (1 + 1e-5) + 1e-6).all()
    assert res.x_adv.min() >= 0.0 and res.x_adv.max() <= 1.0
    assert res.x_adv.dtype == x.dtype and res.x_adv.shape == x.shape
    zero = _run(name, model, x, y, norm, 0.0)
    assert np.array_equal(zero.x_adv, x)


def test_attacks_raise_the_loss(trained):
    model, x, y = trained
    clean = per_example_loss(model, x, y)
    for name, norm in [("pgd", "inf"), ("apgd-ce", "inf"), ("apgd-ce", "2"), ("apgd-ce", "1")]:
        res = _run(name, model, x, y, norm, EPS[norm] / 4)
        assert (per_example_loss(model, res.x_adv, y) >= clean - 1e-5).mean() > 0.95, (name, norm)


def test_l1_step_can_leave_the_box_edge_only_inward(trained):
    """On an image of 0s and 1s every coordinate sits on the box edge: APGD-l_1 must still move
    (inward) and stay in the box and the ball."""
    model, x, y = trained
    xb = (x[:20] > 0.5).astype(np.float32)
    res = apgd(model, xb, y[:20], norm="1", eps=5.0, steps=10, rng=0)
    assert np.abs(res.x_adv - xb).sum() > 0
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1
    assert (np.abs(res.x_adv - xb).reshape(20, -1).sum(axis=1) <= 5.0 * (1 + 1e-5)).all()


# ----- APGD's schedule and strength ------------------------------------------------------------------

def test_checkpoints_follow_the_paper():
    # the paper's p_j, in exact decimals: 0.22, 0.41, 0.57, 0.70, 0.80, 0.87, 0.93, 0.99
    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert checkpoints(1000) == [220, 410, 570, 700, 800, 870, 930, 990]
    assert checkpoints(10) == [3, 5, 6, 7, 8, 9]  # ceil(2.2), ceil(4.1), ceil(5.7), 7, 8, ceil(8.7); 9.3 -> 10 not < 10


def test_apgd_best_value_never_falls_between_checkpoints(trained):
    model, x, y = trained
    for norm in ("inf", "2", "1"):
        res = apgd(model, x, y, norm=norm, eps=EPS[norm] / 2, steps=40, rng=0, trace=True)
        tr = res.info["best_at_checkpoints"]
        assert tr.shape == (len(checkpoints(40)) + 2, len(x))
        assert (np.diff(tr, axis=0) >= 0).all(), norm
        assert (tr[-1] > tr[0]).mean() > 0.9, norm  # and it does climb


def test_apgd_ce_is_at_least_as_strong_as_pgd_with_the_same_budget(trained):
    model, x, y = trained
    for norm, eps in (("inf", 0.05), ("2", 0.6)):
        a = _accuracy(model, apgd(model, x, y, norm=norm, eps=eps, steps=20, rng=0).x_adv, y)
        b = _accuracy(model, pgd(model, x, y, norm=norm, eps=eps, steps=20, rng=0).x_adv, y)
        assert a <= b + 0.005, (norm, a, b)


def test_apgd_t_is_at_least_as_strong_as_apgd_ce_on_most_seeds(trained):
    model, x, y = trained
    wins = 0
    for seed in range(5):
        ce = _accuracy(model, apgd(model, x, y, norm="inf", eps=0.04, steps=15, rng=seed).x_adv, y)
        t = run_suite(model, x, y, "inf", 0.04, attacks=[("apgd-t", _apgd_t_15, {})], rng=seed, log=None).robust_acc
        wins += t <= ce
    assert wins >= 3


def _apgd_t_15(model, x, y, norm, eps, rng=0, bounds=(0.0, 1.0)):
    from minirobust.robust.suite import apgd_t

    return apgd_t(model, x, y, norm, eps, rng=rng, bounds=bounds, steps=15, n_targets=3)


# ----- PGD keeps the worst case; targeted modes ----------------------------------------------------

def test_pgd_keeps_the_worst_iterate_not_the_last(trained):
    """With a step far too large the iterates bounce; PGD (no random start) must return, per
    example, the first fooling iterate, else the iterate of highest loss."""
    model, x, y = trained
    eps, steps, alpha = 0.08, 6, 0.08
    res = pgd(model, x, y, norm="inf", eps=eps, steps=steps, step_size=alpha, random_start=False)
    ball = Ball("inf", eps)
    path = [x] + [ascend(model, x, y, ball, steps=t, step_size=alpha, start=np.zeros_like(x)) for t in
                  range(1, steps + 1)]
    losses = np.stack([per_example_loss(model, p, y) for p in path])
    fooled = np.stack([model.predict(p) != y for p in path])
    for i in range(len(x)):
        if fooled[:, i].any():
            first = int(np.argmax(fooled[:, i]))
            np.testing.assert_array_equal(res.x_adv[i], path[first][i])
        else:
            np.testing.assert_allclose(per_example_loss(model, res.x_adv[i : i + 1], y[i : i + 1])[0],
                                       losses[:, i].max(), rtol=1e-5)  # float32: batch of 1 vs N
    assert (losses[-1] < losses.max(axis=0) - 1e-6).any()  # the case matters: some last iterate is not best


def test_targeted_modes(trained):
    model, x, y = trained
    random = pick_targets(model, x, y, "random", rng=0)
    assert (random != y).all() and len(np.unique(random)) > 3
    least = pick_targets(model, x, y, "least-likely")
    np.testing.assert_array_equal(least, model.predict_logits(x).argmin(axis=1))
    with pytest.raises(InputError, match="equal the true labels"):
        pick_targets(model, x, y, y)
    with pytest.raises(InputError, match="target mode"):
        pick_targets(model, x, y, "likely")
    res = pgd(model, x, y, eps=0.3, steps=20, target="least-likely", rng=0)
    np.testing.assert_array_equal(res.labels, least)
    np.testing.assert_array_equal(res.success, model.predict(res.x_adv) == least)
    assert res.success.mean() > 0.5
    # APGD-T, as the reference AutoAttack: success is misclassification, and the kept iterate is the
    # first that leaves the true class, whether or not it reached the target
    res = apgd(model, x, y, eps=0.3, steps=20, target="least-likely", objective="dlr", rng=0)
    np.testing.assert_array_equal(res.labels, least)
    np.testing.assert_array_equal(res.success, model.predict(res.x_adv) != y)
    assert res.success.mean() > 0.5
    short = apgd(model, x, y, eps=0.15, steps=3, target="least-likely", objective="dlr", rng=0)
    pred = model.predict(short.x_adv)
    assert (short.success & (pred != least)).any()  # broken on the way, target not reached: kept


# ----- the suite -----------------------------------------------------------------------------------

def test_suite_accuracy_is_the_per_example_minimum_over_its_attacks(trained):
    """Planted attacks: 'a' breaks the even points, 'b' the points divisible by 3 (each by moving
    them to a point of another class); the suite keeps a point only if neither breaks it."""
    model, x, y = trained
    ok = model.predict(x) == y
    x, y = x[ok][:60], y[ok][:60]
    other = {c: x[np.flatnonzero(model.predict(x) != c)[0]] for c in range(10) if (model.predict(x) != c).any()}
    index = {v.tobytes(): i for i, v in enumerate(x)}

    def planted(rule):
        def attack(model_, xs, ys, norm, eps, rng=0, bounds=(0, 1)):
            out = xs.copy()
            for j, (xi, yi) in enumerate(zip(xs, ys)):
                if rule(index[xi.tobytes()]):
                    out[j] = other[int(yi)]
            return out
        return attack

    res = run_suite(model, x, y, "inf", 0.1, attacks=[("a", planted(lambda i: i % 2 == 0), {}),
                                                      ("b", planted(lambda i: i % 3 == 0), {})], log=None)
    i = np.arange(len(x))
    np.testing.assert_array_equal(res.robust_ok, (i % 2 != 0) & (i % 3 != 0))
    assert (res.broken_by[i % 2 == 0] == "a").all()
    assert (res.broken_by[(i % 2 != 0) & (i % 3 == 0)] == "b").all()
    assert res.log[1]["tried"] == int((i % 2 != 0).sum())  # b runs only on what a left standing
    assert res.to_json()["broken_by"] == {"a": 30, "b": 10}


def test_the_fast_suite_prints_each_attack_and_beats_each_one_alone(trained, capsys):
    model, x, y = trained
    x, y = x[:80], y[:80]
    res = run_suite(model, x, y, "inf", 0.03, version="fast")
    out = capsys.readouterr().out
    assert "after apgd-ce" in out and "after apgd-t" in out and "after square" in out
    assert "suite fast (APGD-CE 100 steps, APGD-T 3 targets x 100, Square 1000 queries)" in out
    alone = _accuracy(model, apgd(model, x, y, eps=0.03, steps=100, rng=0).x_adv, y)
    assert res.robust_acc <= alone
    assert set(res.broken_by) <= {"", "clean", "apgd-ce", "apgd-t", "square"}
    l1 = run_suite(model, x[:10], y[:10], "1", 1.0, version="fast", log=None)
    assert l1.log[-1] == {"attack": "square", "skipped": True}


# ----- masking checks ----------------------------------------------------------------------------------

class Temperature(Layer):
    """Multiplies the logits by a huge constant: the softmax saturates, so cross-entropy's
    gradient is exactly 0 on every confidently classified point (a classic masked defence)."""

    kind = "temperature"

    def __init__(self, t):
        super().__init__()
        self.t = t

    def forward(self, x, train=False):
        return x * np.float32(self.t)

    def backward(self, dy, param_grads=True):
        return dy * np.float32(self.t)


class StepInput(Layer):
    """Quantises the input to 4 levels and reports a zero gradient (a shattered gradient)."""

    kind = "step"

    def forward(self, x, train=False):
        return np.round(x * 3) / 3

    def backward(self, dy, param_grads=True):
        return np.zeros_like(dy)


def _masked(model, layer, first=False):
    from minirobust.model import Sequential

    layers = [layer, *model.layers] if first else [*model.layers, layer]
    return Sequential(layers)


def test_masking_checks_flag_masked_defences_and_pass_an_honest_net(trained):
    model, x, y = trained
    x, y = x[:100], y[:100]
    honest = masking_checks(model, x, y, norm="inf", eps=0.1, log=None)
    assert not any(c.suspicious for c in honest), [c.to_json() for c in honest]
    hot = masking_checks(_masked(model, Temperature(1e4)), x, y, norm="inf", eps=0.1, log=None)
    flagged = {c.name for c in hot if c.suspicious}
    assert {"gradients", "unbounded"} <= flagged, [c.to_json() for c in hot]
    step = masking_checks(_masked(model, StepInput(), first=True), x, y, norm="inf", eps=0.1, log=None)
    flagged = {c.name for c in step if c.suspicious}
    assert {"gradients", "unbounded", "black-box"} <= flagged, [c.to_json() for c in step]


def test_masking_check_catches_randomness(trained):
    model, x, y = trained

    class Noisy(Layer):
        kind = "noisy"

        def forward(self, x, train=False):
            return x + np.random.default_rng().normal(0, 1e-3, x.shape).astype(x.dtype)

        def backward(self, dy, param_grads=True):
            return dy

    from minirobust.robust.masking import check_randomness

    assert check_randomness(_masked(model, Noisy()), x[:10]).suspicious
    assert not check_randomness(model, x[:10]).suspicious


# ----- the command line --------------------------------------------------------------------------------

def test_evaluate_suite_and_masking_check_from_the_cli(trained, tmp_path):
    model, _, _ = trained
    checkpoint.save(tmp_path / "m.npz", model)
    out = subprocess.run([sys.executable, "-m", "minirobust.cli", "evaluate", "--model", str(tmp_path / "m.npz"),
                          "--dataset", "synthetic", "--n-test", "40", "--suite", "standard", "--eps", "0.03",
                          "--masking-check", "--out", str(tmp_path / "r.json")],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "after apgd-t" in out.stdout and "after fab-t" in out.stdout and "suite standard (" in out.stdout
    assert "verdict: no sign of gradient masking" in out.stdout
    report = json.loads((tmp_path / "r.json").read_text())
    records = report["suite"]["per_example"]
    assert len(records) == 40 and report["suite"]["version"] == "standard" and "FAB-T 9 targets" in report["suite"]["budgets"]
    for r in records:
        assert r["robust_ok"] == (r["broken_by"] == "") and (r["perturbation_norm"] is None) == (r["broken_by"] in ("", "clean"))
        if r["perturbation_norm"] is not None:
            assert r["perturbation_norm"] <= 0.03 + 1e-6
    assert {c["name"] for c in report["masking_checks"]} == {"gradients", "randomness", "unbounded", "monotone",
                                                             "black-box"}
    bad = subprocess.run([sys.executable, "-m", "minirobust.cli", "evaluate", "--model", str(tmp_path / "m.npz"),
                          "--dataset", "synthetic", "--n-test", "10", "--suite", "standard"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--suite needs the radius" in bad.stderr


def _apgd_as_written_in_the_paper(model, x, y, eps, steps, start):
    """Croce & Hein 2020, Algorithm 1 (l_inf, cross-entropy), transcribed line by line for one
    batch: the test's independent statement of the step-size rule."""
    from minirobust.robust.objectives import value_and_input_gradient

    def f(at):
        v, _, g = value_and_input_gradient(model, at, y, "ce")
        return v, g

    def P(z):
        return np.clip(np.clip(z, x - eps, x + eps), 0.0, 1.0)

    W = checkpoints(steps)
    col = (-1, 1, 1, 1)
    eta = np.full(len(x), 2 * eps, np.float32)
    x_k = P(x + start)
    f_k, g_k = f(x_k)
    x_prev = x_k
    x_max, f_max, g_max = x_k, f_k, g_k
    last_w, ups = 0, np.zeros(len(x), int)
    eta_last, fmax_last = eta.copy(), f_max.copy()
    for k in range(steps):
        z = P(x_k + eta.reshape(col) * np.sign(g_k))
        alpha = 0.75 if k > 0 else 1.0
        x_next = P(x_k + alpha * (z - x_k) + (1 - alpha) * (x_k - x_prev))
        f_next, g_next = f(x_next)
        ups += f_next > f_k
        better = f_next > f_max
        x_max = np.where(better.reshape(col), x_next, x_max)
        g_max = np.where(better.reshape(col), g_next, g_max)
        f_max = np.maximum(f_max, f_next)
        x_prev, x_k, f_k, g_k = x_k, x_next, f_next, g_next
        if k + 1 in W:
            condition_1 = ups < 0.75 * (k + 1 - last_w)  # "fewer than rho (w_j - w_{j-1})"
            condition_2 = (eta_last == eta) & (fmax_last == f_max)
            halve = condition_1 | condition_2
            eta_last, fmax_last = eta.copy(), f_max.copy()
            eta = np.where(halve, eta / 2, eta)
            x_k = np.where(halve.reshape(col), x_max, x_k)  # x^(k+1) <- x_max; x^(k) is kept
            g_k, f_k = np.where(halve.reshape(col), g_max, g_k), np.where(halve, f_max, f_k)
            last_w, ups = k + 1, np.zeros(len(x), int)
    return f_max


def test_apgd_follows_the_papers_algorithm_line_by_line(trained):
    # issue 29: the comparison operator, the checkpoints and the momentum after a halving, as published
    model, x, y = trained
    x, y, eps, steps = x[:40], y[:40], 0.08, 30
    start = Ball("inf", eps).sample(x.shape, np.random.default_rng(3), dtype=x.dtype)
    from minirobust.robust.apgd import _apgd_run

    ours = _apgd_run(model, x, y, None, Ball("inf", eps), steps, "ce", start, (0.0, 1.0), 0.05)[1]
    paper = _apgd_as_written_in_the_paper(model, x, y, eps, steps, start)
    np.testing.assert_allclose(ours, paper, rtol=1e-5)  # equal up to float32 rounding of the projections


def test_square_windows_follow_the_published_schedule():
    # issue 29: p_init 0.8 on the schedule for 10,000 queries, as published and as AutoAttack runs it
    from minirobust.robust.square import window_side

    assert window_side(0, 5000, 0.8, 28, 28) == 25  # round(sqrt(0.8 * 784)): most of a 28 px digit
    assert window_side(0, 5000, 0.8, 32, 32) == 29
    assert window_side(11, 5000, 0.8, 28, 28) == 18  # halved after query 10: round(sqrt(0.4 * 784))
    assert window_side(9000, 10000, 0.8, 28, 28) == 1  # 0.8 / 512 of the image: one pixel
    # the small-window start (the old default) is kept as the "rescaled" option: 6 px at first
    assert window_side(0, 1000, 0.05, 28, 28, "rescaled") == 6
    assert window_side(0, 5000, 4.0, 28, 28) == 27  # never the whole image: a window must be able to move


def test_square_uses_the_published_first_window_and_refuses_an_unknown_schedule(trained, monkeypatch):
    module = sys.modules["minirobust.robust.square"]  # (minirobust.robust.square is the function)
    seen = []
    original = module._window

    def spy(rng, H, W, s):
        seen.append(s)
        return original(rng, H, W, s)

    monkeypatch.setattr(module, "_window", spy)
    model, x, y = trained
    square(model, x[:5], y[:5], norm="inf", eps=0.3, n_queries=3, rng=0)
    assert seen and seen[0] == 25, seen
    with pytest.raises(InputError, match="unknown Square schedule 'fast'"):
        square(model, x[:5], y[:5], norm="inf", eps=0.3, n_queries=3, schedule="fast")


# ----- FAB (issue 29) -----------------------------------------------------------------------------------

def _linear_model_near_its_boundary(n=20, seed=0):
    """A two-class linear model whose boundary z_0 = z_1 passes through the grey image, and images
    at known small distances from it (well inside the box): the closest boundary point is known."""
    from minirobust.layers import Dense, Flatten
    from minirobust.model import Sequential

    rng = np.random.default_rng(seed)
    net = Sequential([Flatten(), Dense(16, 2, seed=seed, dtype=np.float64)])
    W = net.layers[1].params["W"]
    w = W[:, 0] - W[:, 1]
    net.layers[1].params["b"][:] = [-0.5 * w.sum(), 0.0]
    along = rng.uniform(-0.05, 0.05, (n, 16))
    along -= (along @ w / (w @ w))[:, None] * w
    t = rng.choice([-1.0, 1.0], n) * rng.uniform(0.01, 0.03, n)
    x = (0.5 + along + t[:, None] * w / np.abs(w).max()).reshape(n, 1, 4, 4)
    margin = np.abs(x.reshape(n, -1) @ w + net.layers[1].params["b"][0])
    return net, x, w, margin


@pytest.mark.parametrize("norm, dual", [("inf", 1), ("2", 2), ("1", np.inf)])
def test_fab_finds_the_closest_boundary_point_of_a_linear_model(norm, dual):
    from minirobust.robust.fab import ETA, fab

    net, x, w, margin = _linear_model_near_its_boundary()
    closest = margin / np.linalg.norm(w, ord=dual)  # the distance to the hyperplane in l_norm
    res = fab(net, x, norm=norm, steps=50, trace=True)
    found = lp_norm(res.x_adv - x, Ball(norm, 1.0).p)
    assert res.success.all() and (net.predict(res.x_adv) != net.predict(x)).all()
    assert (found >= closest * (1 - 1e-9)).all()  # nothing adversarial is closer than the boundary
    assert (found <= closest * 1.01).all(), found / closest  # and FAB gets within 1% of it
    unboxed = fab(net, x, norm=norm, steps=50, bounds=None)  # the box does not bind here: the same answer
    np.testing.assert_allclose(lp_norm(unboxed.x_adv - x, Ball(norm, 1.0).p), found, rtol=1e-6)
    best = res.info["best_norm"]
    assert (np.diff(best, axis=0) <= 0).all()  # the best norm never grows...
    assert np.allclose(best[0], ETA * closest) and (best[-1] < best[0]).all()  # ...and shrinks from the overshoot


@pytest.mark.parametrize("norm, eps", [("inf", 0.1), ("2", 1.0), ("1", 5.0)])
def test_fab_t_stays_in_the_box_and_counts_only_points_inside_the_ball(trained, norm, eps):
    from minirobust.robust.fab import fab
    from minirobust.robust.suite import fab_t

    model, x, y = trained
    x, y = x[:30], y[:30]
    res = fab(model, x, y, norm=norm, steps=20)
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1
    assert (model.predict(res.x_adv)[res.success] != y[res.success]).all()
    xa = fab_t(model, x, y, norm, eps, steps=20, n_targets=3)
    moved = np.abs(xa - x).reshape(len(x), -1).max(axis=1) > 0
    sizes = lp_norm(xa - x, Ball(norm, eps).p)
    assert (sizes[moved] <= eps + 1e-6).all() and (model.predict(xa[moved]) != y[moved]).all()
    assert xa.min() >= 0 and xa.max() <= 1


def test_the_standard_version_runs_autoattacks_four_attacks_with_their_budgets(trained):
    from minirobust.robust.suite import VERSIONS, describe

    assert describe(VERSIONS["standard"]) == ("APGD-CE 100 steps, APGD-T 9 targets x 100, FAB-T 9 targets x 100, "
                                              "Square 5000 queries")
    assert describe(VERSIONS["fast"]) == "APGD-CE 100 steps, APGD-T 3 targets x 100, Square 1000 queries"
    model, x, y = trained
    res = run_suite(model, x[:6], y[:6], "inf", 0.05, version="standard", log=None)
    assert [s["attack"] for s in res.log] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert res.to_json()["version"] == "standard" and res.to_json()["budgets"].startswith("APGD-CE 100")
    with pytest.raises(InputError, match="unknown suite version 'strong'"):
        run_suite(model, x[:2], y[:2], "inf", 0.05, version="strong")
