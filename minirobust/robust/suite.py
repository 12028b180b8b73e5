"""An AutoAttack-style evaluation: per example, the worst case over a fixed set of strong,
parameter-free attacks.

The attacks run in order, each only on the points that every earlier attack failed to break
(a broken point stays broken), so the suite's robust accuracy is, per example, the minimum over
its attacks. After each attack the accuracy so far is printed, and every point records which
attack broke it first (or "clean" when the model gets it wrong without an attack).

Two versions (say which, with its budgets, when you report a number; every SuiteResult carries
both):
    standard   AutoAttack's published standard version (Croce & Hein 2020):
               APGD-CE 100 steps; APGD-T (targeted DLR) 100 steps for each of the 9 classes the
               model ranks highest after the true one; FAB-T 100 steps for each of those 9;
               Square 5,000 queries
    fast       smaller budgets that fit a CPU: APGD-CE 100, APGD-T 3 targets x 100, Square 1,000
               queries (``fast_suite`` builds it with other budgets)
Square exists for l_inf and l_2 only; on l_1 it is skipped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..backend import to_host
from ..errors import InputError
from .apgd import apgd
from .attack_base import check_attack_inputs
from .balls import Ball, lp_norm
from .fab import fab
from .square import square


def apgd_ce(model, x, y, norm, eps, rng=0, bounds=(0.0, 1.0), steps=100):
    return apgd(model, x, y, norm=norm, eps=eps, steps=steps, objective="ce", rng=rng, bounds=bounds).x_adv


def _ranked_targets(model, x, y, n_targets):
    """Per example, the classes the model ranks highest after the true one: (N, n_targets),
    column r - 1 holding the r-th (AutoAttack's targets for APGD-T and FAB-T)."""
    order = to_host(model.predict_logits(x)).argsort(axis=1)[:, ::-1]
    n_targets = min(n_targets, order.shape[1] - 1)
    return np.array([[c for c in row if c != t][:n_targets] for row, t in zip(order, to_host(y))])


def _per_target(model, x, y, n_targets, attack_one):
    """Run ``attack_one(indices, targets) -> (x_adv, broke)`` for each ranked target in turn on the
    points no earlier target broke; keep the first success of each point."""
    y_host = to_host(y)
    targets = _ranked_targets(model, x, y_host, n_targets)
    x_adv, broken = to_host(x).copy(), np.zeros(len(y_host), bool)
    for rank in range(targets.shape[1]):
        todo = np.flatnonzero(~broken)
        if todo.size == 0:
            break
        xa, broke = attack_one(todo, targets[todo, rank])
        x_adv[todo[broke]] = xa[broke]
        broken[todo[broke]] = True
    return x_adv


def apgd_t(model, x, y, norm, eps, rng=0, bounds=(0.0, 1.0), steps=100, n_targets=3):
    """APGD-T: targeted DLR at each of the ``n_targets`` classes the model ranks highest after the
    true one; per example, the first target run that breaks it is kept."""
    y_host = to_host(y)

    def one(todo, target):
        res = apgd(model, x[todo], y_host[todo], norm=norm, eps=eps, steps=steps, objective="dlr", target=target,
                   rng=rng, bounds=bounds)
        return to_host(res.x_adv), to_host(model.predict(res.x_adv)) != y_host[todo]

    return _per_target(model, x, y, n_targets, one)


def fab_t(model, x, y, norm, eps, rng=0, bounds=(0.0, 1.0), steps=100, n_targets=9):
    """FAB-T: FAB's closest misclassified point towards each of the ``n_targets`` classes ranked
    highest after the true one; a point is broken when that point lies inside the eps ball.
    (FAB is deterministic from the image: ``rng`` is unused.)"""
    y_host = to_host(y)

    def one(todo, target):
        res = fab(model, x[todo], y_host[todo], norm=norm, eps=eps, target=target, steps=steps, bounds=bounds)
        return to_host(res.x_adv), to_host(res.success) & (to_host(model.predict(res.x_adv)) != y_host[todo])

    return _per_target(model, x, y, n_targets, one)


def square_attack(model, x, y, norm, eps, rng=0, bounds=(0.0, 1.0), n_queries=1000):
    return square(model, x, y, norm=norm, eps=eps, n_queries=n_queries, rng=rng, bounds=bounds).x_adv


def fast_suite(steps=100, n_targets=3, n_queries=1000) -> tuple:
    """The fast version's (name, attack, budget) list, with other budgets for quick runs."""
    return (("apgd-ce", apgd_ce, {"steps": steps}), ("apgd-t", apgd_t, {"steps": steps, "n_targets": n_targets}),
            ("square", square_attack, {"n_queries": n_queries}))


def standard_suite(steps=100, n_targets=9, n_queries=5000) -> tuple:
    """AutoAttack's standard version (its budgets are the defaults)."""
    return (("apgd-ce", apgd_ce, {"steps": steps}), ("apgd-t", apgd_t, {"steps": steps, "n_targets": n_targets}),
            ("fab-t", fab_t, {"steps": steps, "n_targets": n_targets}), ("square", square_attack, {"n_queries": n_queries}))


_WORDS = {"apgd-ce": lambda b: f"APGD-CE {b['steps']} steps",
          "apgd-t": lambda b: f"APGD-T {b['n_targets']} targets x {b['steps']}",
          "fab-t": lambda b: f"FAB-T {b['n_targets']} targets x {b['steps']}",
          "square": lambda b: f"Square {b['n_queries']} queries"}


def describe(attacks) -> str:
    """The attacks and their budgets in words, for reports (a custom attack: its name and budget)."""
    def words(name, budget):
        try:
            return _WORDS[name](budget)
        except KeyError:  # not a suite attack, or a budget in other terms
            return name + (f" {budget}" if budget else "")

    return ", ".join(words(name, budget) for name, _, budget in attacks)


VERSIONS = {"standard": standard_suite(), "fast": fast_suite()}


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
    version: str = "custom"  # "standard", "fast", or "custom" (an attack list)
    budgets: str = ""  # the attacks and their budgets in words (``describe``)

    @property
    def clean_acc(self) -> float:
        return float(self.clean_ok.mean())

    @property
    def robust_acc(self) -> float:
        return float(self.robust_ok.mean())

    def per_example(self, x, y) -> list:
        """One record per example of (x, y): its label, clean and robust verdicts, the attack that
        broke it first ("" if none, "clean" if misclassified as it is), and the l_p size of the
        adversarial point that broke it (None where none did)."""
        x, y = to_host(x), to_host(y)
        sizes = to_host(lp_norm(self.x_adv - x, Ball(self.norm, self.eps).p))
        return [{"index": i, "label": int(y[i]), "clean_ok": bool(self.clean_ok[i]), "robust_ok": bool(self.robust_ok[i]),
                 "broken_by": str(self.broken_by[i]),
                 "perturbation_norm": float(sizes[i]) if self.broken_by[i] not in ("", "clean") else None}
                for i in range(len(y))]

    def to_json(self) -> dict:
        names, counts = np.unique(self.broken_by[self.broken_by != ""], return_counts=True)
        return {"version": self.version, "budgets": self.budgets, "norm": self.norm, "eps": self.eps,
                "n": int(len(self.clean_ok)), "clean_acc": self.clean_acc, "robust_acc": self.robust_acc, "attacks": self.log,
                "broken_by": {str(k): int(v) for k, v in zip(names, counts)}}


def run_suite(model, x, y, norm="inf", eps=0.03, version="standard", attacks=None, rng=0, bounds=(0.0, 1.0),
              batch_size=500, log=print) -> SuiteResult:
    """The worst case per example over the suite's attacks (see the module's docstring).

    x, y: host arrays (true labels). ``version``: "standard" (AutoAttack's) or "fast".
    ``attacks``: a list of (name, function, kwargs) to use instead of a version; each function is
    called as ``fn(model, x, y, norm, eps, rng=, bounds=, **kwargs)`` and returns adversarial
    inputs. Returns a ``SuiteResult`` (host arrays).
    """
    if attacks is None:
        if version not in VERSIONS:
            raise InputError(f"unknown suite version {version!r}: choose one of {', '.join(VERSIONS)}")
        attacks = VERSIONS[version]
    else:
        version = "custom"
    Ball(norm, eps)  # validates
    check_attack_inputs(model, x, bounds)
    x, y = to_host(x), to_host(y)
    log = log or (lambda *_: None)
    clean_ok = _predict(model, x, batch_size) == y
    robust_ok = clean_ok.copy()
    broken_by = np.where(clean_ok, "", "clean").astype("<U16")
    x_adv = x.copy()
    steps = []
    log(f"suite {version} ({describe(attacks)}): l_{Ball(norm, eps).name} eps {eps:g} on {len(x)} points; "
        f"clean accuracy {100 * clean_ok.mean():.2f}%")
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
    return SuiteResult(Ball(norm, eps).name, float(eps), clean_ok, robust_ok, broken_by, x_adv, steps, version,
                       describe(attacks))


def _predict(model, x, batch_size):
    return to_host(model.predict(x, batch_size))
