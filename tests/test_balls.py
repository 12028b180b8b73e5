"""Steepest-ascent steps and projections of the l_p balls."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minirobust.errors import InputError
from minirobust.robust import Ball, lp_norm, parse_norm

NORMS = ["inf", 2, 1, 3, 1.5]


def dual_norm(g, p):
    flat = g.reshape(g.shape[0], -1)
    q = 1.0 if math.isinf(p) else math.inf if p == 1 else p / (p - 1)
    return np.linalg.norm(flat, ord=q, axis=1)


@settings(max_examples=80, deadline=None)
@given(norm=st.sampled_from(NORMS), eps=st.floats(0.01, 5.0), seed=st.integers(0, 10**6),
       shape=st.sampled_from([(3, 5), (2, 1, 4, 4), (1, 3, 2, 2)]))
def test_steepest_ascent_norm_and_dual(norm, eps, seed, shape):
    g = np.random.default_rng(seed).standard_normal(shape)
    ball = Ball(norm, eps)
    delta = ball.steepest_ascent(g)
    np.testing.assert_allclose(ball.norm(delta), eps, rtol=1e-9)  # on the boundary when g != 0
    gain = (g * delta).reshape(shape[0], -1).sum(axis=1)
    np.testing.assert_allclose(gain, eps * dual_norm(g, ball.p), rtol=1e-9)  # attains the dual norm


@pytest.mark.parametrize("norm", NORMS)
def test_steepest_ascent_beats_random_points(norm):
    rng = np.random.default_rng(0)
    g = rng.standard_normal((4, 10))
    ball = Ball(norm, 0.7)
    best = (g * ball.steepest_ascent(g)).sum(axis=1)
    for _ in range(200):
        z = ball.sample(g.shape, rng, dtype=np.float64)
        assert np.all(ball.contains(z))
        assert np.all((g * z).sum(axis=1) <= best + 1e-12)


@pytest.mark.parametrize("norm", NORMS)
def test_zero_gradient_gives_zero_step(norm):
    g = np.zeros((2, 1, 3, 3), dtype=np.float32)
    g[1, 0, 1, 1] = 0.5  # a nonzero example beside a zero one
    delta = Ball(norm, 0.3).steepest_ascent(g)
    assert np.all(np.isfinite(delta)) and not delta[0].any() and delta[1].any()


def test_l1_step_changes_exactly_one_pixel_first_on_ties():
    g = np.random.default_rng(0).standard_normal((5, 1, 6, 6))
    delta = Ball(1, 2.0).steepest_ascent(g)
    assert [int(np.count_nonzero(d)) for d in delta] == [1] * 5
    flat, dflat = g.reshape(5, -1), delta.reshape(5, -1)
    idx = np.abs(flat).argmax(axis=1)
    assert np.all(dflat[np.arange(5), idx] == 2.0 * np.sign(flat[np.arange(5), idx]))
    tie = np.array([[0.0, -3.0, 3.0, 1.0]])
    assert Ball(1, 1.0).steepest_ascent(tie).tolist() == [[0.0, -1.0, 0.0, 0.0]]  # the first index wins
    top2 = Ball(1, 1.0, l1_top_k=2).steepest_ascent(tie)
    assert top2.tolist() == [[0.0, -0.5, 0.5, 0.0]]


def _certificate(v, x, ball):
    """Exact optimality test for projecting v onto a convex ball: x* is the projection iff
    x* is in the ball and max_{z in ball} <v - x*, z - x*> <= 0, and that max is
    eps * ||v - x*||_q - <v - x*, x*> (a linear function's max over an l_p ball)."""
    r = v - x
    return ball.eps * dual_norm(r, ball.p) - (r * x).reshape(len(v), -1).sum(axis=1)


@settings(max_examples=60, deadline=None)
@given(norm=st.sampled_from(NORMS), eps=st.floats(0.05, 3.0), seed=st.integers(0, 10**6),
       scale=st.floats(0.1, 10.0))
def test_projection_is_optimal(norm, eps, seed, scale):
    v = np.random.default_rng(seed).standard_normal((4, 7)) * scale
    ball = Ball(norm, eps)
    x = ball.project(v)
    assert np.all(ball.contains(x, tol=1e-7))
    outside = lp_norm(v, ball.p) > eps
    cert = _certificate(v, x, ball)
    assert np.all(cert[outside] <= 1e-6 * (1 + np.abs(v).sum())), cert
    np.testing.assert_array_equal(x[~outside], v[~outside])  # points inside stay put


@pytest.mark.parametrize("norm", [1, 3, 1.5])
def test_projection_beats_brute_force_and_rescaling(norm):
    rng = np.random.default_rng(1)
    v = np.array([[2.0, -0.3, 0.9]])
    ball = Ball(norm, 1.0)
    x = ball.project(v)
    best_dist = np.linalg.norm(v - x)
    candidates = ball.sample((200000, 3), rng, dtype=np.float64)  # brute force over the ball
    assert np.linalg.norm(v - candidates, axis=1).min() >= best_dist - 1e-9
    rescaled = v * (1.0 / lp_norm(v, ball.p))[:, None]  # in the ball, but not the closest point
    assert np.linalg.norm(v - rescaled) > best_dist + 1e-3
    assert _certificate(v, rescaled, ball)[0] > 1e-3  # the certificate rejects it


def test_l1_projection_known_answer():
    # |v| = (3, 1, 0.2) onto the l1 ball of radius 2: threshold theta = 1 -> (2, 0, 0)
    x = Ball(1, 2.0).project(np.array([[3.0, -1.0, 0.2]]))
    np.testing.assert_allclose(x, [[2.0, 0.0, 0.0]])
    x = Ball(1, 2.0).project(np.array([[1.5, -1.5, 0.2]]))  # theta = 0.5
    np.testing.assert_allclose(x, [[1.0, -1.0, 0.0]])


def test_parse_norm_and_errors():
    assert parse_norm("inf") == math.inf and parse_norm("linf") == math.inf and parse_norm("l2") == 2
    assert parse_norm(np.inf) == math.inf and parse_norm("1") == 1
    for bad in ("0.5", "max", -1, None):
        with pytest.raises(InputError):
            parse_norm(bad)
    with pytest.raises(InputError, match="eps"):
        Ball("inf", -0.1)
    with pytest.raises(InputError, match="eps"):
        Ball(2, float("nan"))


def test_sample_is_uniform_in_linf_and_inside_others():
    rng = np.random.default_rng(0)
    s = Ball("inf", 0.5).sample((20000, 4), rng)
    assert abs(s.mean()) < 0.01 and abs(s.max() - 0.5) < 1e-3
    for p in (1, 2, 3):
        z = Ball(p, 0.5).sample((5000, 6), rng, dtype=np.float64)
        n = lp_norm(z, p)
        assert np.all(n <= 0.5 + 1e-12)
        # uniform in a d-ball: P(||z|| <= r*eps) = r^d
        assert abs((n <= 0.5 * 0.9).mean() - 0.9**6) < 0.03
