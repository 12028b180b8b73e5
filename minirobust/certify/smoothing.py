"""Randomized smoothing (Cohen, Rosenfeld & Kolter 2019): a certified l_2 radius from forward passes.

The smoothed classifier g(x) = argmax_c P(f(x + delta) = c), delta ~ N(0, sigma^2 I), is robust:
if the top class has probability p_A >= 1/2, then g keeps its answer within
    radius = sigma * Phi^-1(p_A)
of x. CERTIFY estimates p_A by sampling: n0 noisy copies pick the class c_A, n more count how
often f says c_A, and the one-sided Clopper-Pearson bound gives a p_A that is too low with
probability at most alpha. Below 1/2 the classifier abstains (not certified).
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

from ..backend import to_host
from ..errors import InputError
from .ibp import Certificate


def _log_binomial_coefficients(n):
    """log C(n, i) for i = 0..n, by the running product C(n, i) = C(n, i-1) (n - i + 1) / i."""
    i = np.arange(1, n + 1)
    return np.concatenate([[0.0], np.cumsum(np.log((n - i + 1) / i))])


def clopper_pearson_lower(k, n, alpha) -> float:
    """The largest p with P(Binomial(n, p) >= k) <= alpha: a lower confidence bound on p, wrong
    with probability at most alpha. By bisection on the binomial tail (no SciPy needed)."""
    if not 0 <= k <= n or n < 1 or not 0 < alpha < 1:
        raise InputError(f"clopper_pearson_lower: need 0 <= k <= n, n >= 1, 0 < alpha < 1; got {k}, {n}, {alpha}")
    if k == 0:
        return 0.0
    if k == n:
        return alpha ** (1.0 / n)  # the tail is p^n
    log_c = _log_binomial_coefficients(n)[k:]
    i = np.arange(k, n + 1)

    def tail(p):  # P(X >= k), summed in log space
        terms = log_c + i * math.log(p) + (n - i) * math.log1p(-p)
        top = terms.max()
        return math.exp(top) * np.exp(terms - top).sum()

    lo, hi = 0.0, k / n
    for _ in range(100):
        mid = (lo + hi) / 2
        if tail(mid) > alpha:
            hi = mid
        else:
            lo = mid
    return lo


def _counts(model, x, n, sigma, rng, batch_size, classes):
    """How often f classifies each of n noisy copies of one input as each class."""
    counts = np.zeros(classes, dtype=np.int64)
    done = 0
    while done < n:
        m = min(batch_size, n - done)
        noisy = (x[None] + sigma * rng.standard_normal((m, *x.shape))).astype(x.dtype)
        counts += np.bincount(to_host(model.predict(noisy)), minlength=classes)
        done += m
    return counts


def smooth(model, x, y=None, sigma=0.25, n0=100, n=10000, alpha=0.001, rng=0, batch_size=1000,
           eps=0.0) -> Certificate:
    """CERTIFY for each input: ``margins`` holds the certified l_2 radius (0 where it abstains or
    predicts another class than ``y``); ``certified`` says radius >= eps with the right class
    (y None: the smoothed classifier's own class counts as right). Forward passes only."""
    if sigma <= 0 or n0 < 1 or n < 1:
        raise InputError(f"smooth: need sigma > 0, n0 >= 1, n >= 1; got {sigma}, {n0}, {n}")
    x = to_host(x)
    rng = np.random.default_rng(rng)
    classes = int(to_host(model.predict_logits(x[:1])).shape[1])
    radius = np.zeros(len(x))
    predicted = np.full(len(x), -1)
    for i in range(len(x)):
        top = int(_counts(model, x[i], n0, sigma, rng, batch_size, classes).argmax())
        n_top = int(_counts(model, x[i], n, sigma, rng, batch_size, classes)[top])
        p_lower = clopper_pearson_lower(n_top, n, alpha)
        if p_lower > 0.5:
            predicted[i], radius[i] = top, sigma * NormalDist().inv_cdf(p_lower)
    right = predicted >= 0 if y is None else predicted == to_host(y)
    radius = np.where(right, radius, 0.0)
    return Certificate("smoothing", "2", float(eps), right & (radius >= eps), radius)
