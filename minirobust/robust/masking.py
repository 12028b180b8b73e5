"""Checks that a defence is not masking its gradients (Athalye, Carlini & Wagner 2018; Carlini
et al. 2019, "On evaluating adversarial robustness").

A model can look robust to gradient attacks because its gradient is useless (zero, NaN,
shattered, random), not because it is robust. Each check below looks for one symptom, says what
it found and gives a verdict; ``masking_checks`` runs them all:

  gradients     zero, NaN or inf input gradients of the loss at some points
  monotone      accuracy under attack going UP as eps grows (a stronger attack must do no worse)
  unbounded     an attack allowed the whole box (l_inf eps = 1) not reaching ~0% accuracy
  black-box     Square (no gradients) breaking points that the white-box APGD could not
  randomness    the model's outputs changing between two identical evaluation passes
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..backend import to_host
from .apgd import apgd
from .balls import Ball
from .objectives import value_and_input_gradient
from .square import square

UNBOUNDED_MAX_ACC = 0.05  # an attack over the whole box should leave at most this accuracy
MONOTONE_SLACK = 0.01  # accuracy may rise by this much with eps (sampling noise) before we worry
BLACK_BOX_MAX_EXTRA = 0.01  # fraction of points Square may break beyond APGD (at least 2 points)


@dataclass
class Check:
    name: str
    found: str  # what the check measured, in words
    suspicious: bool
    data: dict

    @property
    def verdict(self) -> str:
        return "SUSPICIOUS" if self.suspicious else "ok"

    def to_json(self) -> dict:
        return {"name": self.name, "found": self.found, "verdict": self.verdict, **self.data}


def check_gradients(model, x, y) -> Check:
    """Input gradients of the cross-entropy at the clean points: none all zero, none NaN/inf."""
    _, _, g = value_and_input_gradient(model, model.on_device(x), model.on_device(y, "labels"), "ce")
    g = to_host(g).reshape(len(x), -1).astype(np.float64)
    nonfinite = int((~np.isfinite(g)).any(axis=1).sum())
    zero = int((np.abs(np.nan_to_num(g)).max(axis=1) == 0).sum())
    found = f"{zero} of {len(x)} points have an all-zero input gradient, {nonfinite} a NaN or inf one"
    return Check("gradients", found, bool(zero or nonfinite), {"zero": zero, "nonfinite": nonfinite})


def check_monotone(model, x, y, norm, eps, steps=20, rng=0) -> Check:
    """APGD-CE accuracy at eps * (0, 1/2, 1, 2, 4): it must not rise with eps."""
    grid = [0.0, eps / 2, eps, 2 * eps, 4 * eps]
    accs = [_apgd_accuracy(model, x, y, norm, e, steps, rng) for e in grid]
    rises = [(grid[i], grid[i + 1]) for i in range(len(grid) - 1) if accs[i + 1] > accs[i] + MONOTONE_SLACK]
    found = "accuracy " + ", ".join(f"{100 * a:.1f}% at {e:g}" for e, a in zip(grid, accs))
    if rises:
        found += "; it rises from " + ", ".join(f"{a:g} to {b:g}" for a, b in rises)
    return Check("monotone", found, bool(rises), {"eps": grid, "accuracy": accs})


def check_unbounded(model, x, y, steps=20, rng=0) -> Check:
    """APGD-CE with l_inf eps = 1 (any image at all) must bring accuracy to ~0%."""
    acc = _apgd_accuracy(model, x, y, "inf", 1.0, steps, rng)
    found = f"APGD-CE l_inf eps 1 leaves {100 * acc:.1f}% accuracy (expected at most {100 * UNBOUNDED_MAX_ACC:.0f}%)"
    return Check("unbounded", found, acc > UNBOUNDED_MAX_ACC, {"accuracy": acc})


def check_black_box(model, x, y, norm, eps, steps=50, n_queries=500, rng=0) -> Check:
    """Square (score-based) on the points APGD-CE left standing: it should break few or none."""
    if Ball(norm, eps).name not in ("inf", "2"):
        return Check("black-box", f"no Square attack for l_{Ball(norm, eps).name}: not checked", False, {})
    res = apgd(model, x, y, norm=norm, eps=eps, steps=steps, rng=rng)
    standing = np.flatnonzero(to_host(model.predict(res.x_adv)) == to_host(y))
    extra = 0
    if standing.size:
        sq = square(model, x[standing], y[standing], norm=norm, eps=eps, n_queries=n_queries, rng=rng)
        extra = int((to_host(model.predict(sq.x_adv)) != to_host(y)[standing]).sum())
    limit = max(2, int(BLACK_BOX_MAX_EXTRA * len(x)))
    found = f"Square broke {extra} of the {standing.size} points APGD-CE could not (more than {limit} is suspicious)"
    return Check("black-box", found, extra > limit, {"apgd_standing": int(standing.size), "square_extra": extra})


def check_randomness(model, x) -> Check:
    """Two evaluation passes over the same inputs must give the same logits."""
    a, b = to_host(model.predict_logits(x)), to_host(model.predict_logits(x))
    differ = int((np.abs(a - b).max(axis=1) > 0).sum())
    found = f"{differ} of {len(x)} points get different logits from two identical passes"
    return Check("randomness", found, bool(differ), {"differ": differ})


def masking_checks(model, x, y, norm="inf", eps=0.03, steps=20, rng=0, log=print) -> list:
    """Run every check on host arrays x, y (true labels); print each finding and verdict."""
    log = log or (lambda *_: None)
    checks = [check_gradients(model, x, y), check_randomness(model, x), check_unbounded(model, x, y, steps, rng),
              check_monotone(model, x, y, norm, eps, steps, rng), check_black_box(model, x, y, norm, eps, rng=rng)]
    for c in checks:
        log(f"  [{c.verdict:<10}] {c.name:<10} {c.found}")
    bad = [c.name for c in checks if c.suspicious]
    log("verdict: " + (f"gradient masking suspected ({', '.join(bad)}): do not trust white-box robustness numbers"
                       if bad else "no sign of gradient masking in these checks"))
    return checks


def _apgd_accuracy(model, x, y, norm, eps, steps, rng) -> float:
    if eps == 0:
        return float((to_host(model.predict(x)) == to_host(y)).mean())
    res = apgd(model, x, y, norm=norm, eps=eps, steps=steps, rng=rng)
    return float((to_host(model.predict(res.x_adv)) == to_host(y)).mean())
