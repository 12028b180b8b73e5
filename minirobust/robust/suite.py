"""An AutoAttack-style evaluation: per example, the worst case over a fixed set of strong,
parameter-free attacks.

The attacks run in order, each only on the points that every earlier attack failed to break
(a broken point stays broken), so the suite's robust accuracy is, per example, the minimum over
its attacks. After each attack the accuracy so far is printed, and every point records which
attack broke it first (or "clean" when the model gets it wrong without an attack).

The "standard" suite (the budgets are smaller than AutoAttack's, to fit a CPU; say which you
used when you report a number):
    apgd-ce    APGD on cross-entropy, 100 steps
    apgd-t     APGD on the targeted DLR loss, 100 steps for each of the 3 most likely other classes
    square     Square, 1,000 queries (l_inf and l_2 only: there is no l_1 Square)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..backend import to_host
from ..errors import InputError
from .apgd import apgd
from .attacks import _check_inputs
from .balls import Ball
from .square import square


def apgd_ce(model, x, y, norm, eps, rng=0, bounds=(0.0, 1.0), steps=100):
    return apgd(model, x, y, norm=norm, eps=eps, steps=steps, objective="ce", rng=rng, bounds=bounds).x_adv


def apgd_t(model, x, y, norm, eps, rng=0, bounds=(0.0, 1.0), steps=100, n_targets=3):
    """APGD-T: targeted DLR at each of the ``n_targets`` classes the model ranks highest after the
    true one; per example, the first target run that breaks it is kept."""
    xp_logits = model.predict_logits(x)
    order = to_host(xp_logits).argsort(axis=1)[:, ::-1]
    y_host = to_host(y)
    x_adv = to_host(x).copy()
    broken = np.zeros(len(y_host), bool)
    for rank in range(1, min(n_targets, order.shape[1] - 1) + 1):
        todo = np.flatnonzero(~broken)
        if todo.size == 0:
            break
        # the rank-th class after removing the true label from the ranking
        others = np.array([[c for c in row if c != t][:rank] for row, t in zip(order[todo], y_host[todo])])
        target = others[:, rank - 1]
        res = apgd(model, x[todo], y_host[todo], norm=norm, eps=eps, steps=steps, objective="dlr", target=target,
                   rng=rng, bounds=bounds)
        now = to_host(model.predict(res.x_adv)) != y_host[todo]
        x_adv[todo[now]] = to_host(res.x_adv)[now]
        broken[todo[now]] = True
    return x_adv


def square_attack(model, x, y, norm, eps, rng=0, bounds=(0.0, 1.0), n_queries=1000):
    return square(model, x, y, norm=norm, eps=eps, n_queries=n_queries, rng=rng, bounds=bounds).x_adv


def standard_suite(steps=100, n_targets=3, n_queries=1000) -> tuple:
    """The standard suite's (name, attack, budget) list; smaller budgets for quick runs."""
    return (("apgd-ce", apgd_ce, {"steps": steps}), ("apgd-t", apgd_t, {"steps": steps, "n_targets": n_targets}),
            ("square", square_attack, {"n_queries": n_queries}))


def describe_suite(steps=100, n_targets=3, n_queries=1000) -> str:
    """The budgets of ``standard_suite(steps, n_targets, n_queries)`` in words, for reports."""
    return f"APGD-CE {steps} steps, APGD-T {n_targets} targets x {steps}, Square {n_queries} queries"


SUITES = {"standard": standard_suite()}


def attack_applies(name: str, norm) -> bool:
    """Square exists for l_inf and l_2 only."""
    return not (name == "square" and Ball(norm, 0.0).name not in ("inf", "2"))


@dataclass
class SuiteResult:
    norm: str
    eps: float
    clean_ok: np.ndarray  # (N,) classified correctly without attack
    robust_ok: np.ndarray  # (N,) still correct after every attack
    broken_by: np.ndarray  # (N,) "" (robust), "clean", or the first attack that broke the point
    x_adv: np.ndarray  # (N, ...) the first adversarial point found (x where none was)
    log: list = field(default_factory=list)  # per attack: name, points tried, accuracy after, seconds

    @property
    def clean_acc(self) -> float:
        return float(self.clean_ok.mean())

    @property
    def robust_acc(self) -> float:
        return float(self.robust_ok.mean())

    def to_json(self) -> dict:
        names, counts = np.unique(self.broken_by[self.broken_by != ""], return_counts=True)
        return {"norm": self.norm, "eps": self.eps, "n": int(len(self.clean_ok)), "clean_acc": self.clean_acc,
                "robust_acc": self.robust_acc, "attacks": self.log,
                "broken_by": {str(k): int(v) for k, v in zip(names, counts)}}


def run_suite(model, x, y, norm="inf", eps=0.03, suite="standard", attacks=None, rng=0, bounds=(0.0, 1.0),
              batch_size=500, log=print) -> SuiteResult:
    """The worst case per example over the suite's attacks (see the module's docstring).

    x, y: host arrays (true labels). ``attacks``: a list of (name, function, kwargs) to use
    instead of a named suite; each function is called as ``fn(model, x, y, norm, eps, rng=,
    bounds=, **kwargs)`` and returns adversarial inputs. Returns a ``SuiteResult`` (host arrays).
    """
    if attacks is None:
        if suite not in SUITES:
            raise InputError(f"unknown suite {suite!r}: choose one of {', '.join(SUITES)}")
        attacks = SUITES[suite]
    Ball(norm, eps)  # validates
    _check_inputs(model, x, bounds)
    x, y = to_host(x), to_host(y)
    log = log or (lambda *_: None)
    clean_ok = _predict(model, x, batch_size) == y
    robust_ok = clean_ok.copy()
    broken_by = np.where(clean_ok, "", "clean").astype("<U16")
    x_adv = x.copy()
    steps = []
    log(f"suite {suite if attacks is SUITES.get(suite) else 'custom'}: l_{Ball(norm, eps).name} eps {eps:g} on "
        f"{len(x)} points; clean accuracy {100 * clean_ok.mean():.2f}%")
    for name, fn, kwargs in attacks:
        if not attack_applies(name, norm):
            log(f"  {name:<8} not defined for l_{Ball(norm, eps).name}: skipped")
            steps.append({"attack": name, "skipped": True})
            continue
        todo = np.flatnonzero(robust_ok)
        t0 = time.perf_counter()
        for i in range(0, todo.size, batch_size):
            idx = todo[i : i + batch_size]
            xa = to_host(fn(model, x[idx], y[idx], norm, eps, rng=rng, bounds=bounds, **kwargs))
            fooled = _predict(model, xa, batch_size) != y[idx]
            x_adv[idx[fooled]] = xa[fooled]
            robust_ok[idx[fooled]] = False
            broken_by[idx[fooled]] = name
        seconds = time.perf_counter() - t0
        steps.append({"attack": name, "tried": int(todo.size), "broke": int(todo.size - robust_ok[todo].sum()),
                      "robust_acc_after": float(robust_ok.mean()), "seconds": round(seconds, 2)})
        log(f"  after {name:<8} robust accuracy {100 * robust_ok.mean():6.2f}%  ({steps[-1]['broke']} of "
            f"{todo.size} broken, {seconds:.1f} s)")
    return SuiteResult(Ball(norm, eps).name, float(eps), clean_ok, robust_ok, broken_by, x_adv, steps)


def _predict(model, x, batch_size):
    return to_host(model.predict(x, batch_size))
