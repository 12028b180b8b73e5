"""Catastrophic overfitting, caught while training.

Single-step adversarial training at a large radius (the paper's method, or FGSM, at MNIST
l_inf 0.3) can collapse within an epoch: accuracy under the training attack soars while accuracy
under a multi-step attack falls to about zero (Wong, Rice & Kolter 2020 call it catastrophic
overfitting). The training attack cannot see it; PGD on a fixed held-out batch can.

After each epoch the trainer measures PGD accuracy on the held-out batch (``pgd_acc_monitor`` in
metrics.jsonl); ``collapse`` reads the history and calls it a collapse when either
  * that accuracy has fallen more than ``margin`` below its best while the accuracy under the
    training attack rose (Wong et al.'s signal: the net was robust and lost it), or
  * once eps is at its full value, the accuracy under the training attack exceeds the PGD
    accuracy by more than ``gap`` (the net never became robust: the training attack no longer
    finds the worst case, so training "succeeds" against it alone; at l_inf 0.3 the paper's
    one-step method collapses this way while eps is still ramping up).
A pure function of the history, so a resumed run judges exactly as an uninterrupted one.
"""

from __future__ import annotations

import math

import numpy as np

from ..backend import to_host
from .attacks import pgd


class OverfitMonitor:
    """PGD-``steps`` accuracy of the model on (x, y), fixed random starts (``seed``)."""

    def __init__(self, x, y, norm, eps, steps=10, margin=0.2, bounds=(0.0, 1.0), seed=0, gap=0.5, full_from=1):
        if len(x) == 0:
            raise ValueError("the monitor needs at least one held-out example")
        self.x, self.y = x, np.asarray(y)
        self.norm, self.eps, self.steps, self.margin, self.bounds, self.seed = norm, eps, steps, margin, bounds, seed
        self.gap, self.full_from = gap, full_from

    def accuracy(self, model) -> float:
        res = pgd(model, self.x, self.y, norm=self.norm, eps=self.eps, steps=self.steps, rng=self.seed,
                  bounds=self.bounds, batch_size=500)
        return float((~to_host(res.success)).mean())

    def collapse(self, history) -> str | None:
        """One line describing the collapse the last epoch shows, or None."""
        return collapse(history, self.margin, self.gap, self.full_from)


def first_full_epoch(eps_ramp_epochs, eps_warmup_epochs=0.0) -> int:
    """The first epoch trained at full eps from its first step to its last."""
    ramp = eps_ramp_epochs + eps_warmup_epochs
    return math.ceil(ramp) + 1 if ramp else 1


def collapse(history, margin, gap=0.5, full_from=1) -> str | None:
    """Catastrophic overfitting in the last record of ``history`` (see the module's docstring):
    one line saying which signal fired, or None."""
    records = [r for r in history if "pgd_acc_monitor" in r]
    if not records:
        return None
    last = records[-1]
    best = max(r["pgd_acc_monitor"] for r in records)
    if len(records) >= 2 and best - last["pgd_acc_monitor"] > margin and last["train_acc"] > records[-2]["train_acc"]:
        return (f"catastrophic overfitting at epoch {last['epoch']}: PGD accuracy on the monitor batch fell to "
                f"{100 * last['pgd_acc_monitor']:.1f}% from its best {100 * best:.1f}% while accuracy under the "
                f"training attack rose from {100 * records[-2]['train_acc']:.1f}% to {100 * last['train_acc']:.1f}%")
    if last["epoch"] >= full_from and last["train_acc"] - last["pgd_acc_monitor"] > gap:
        return (f"catastrophic overfitting at epoch {last['epoch']}: accuracy under the training attack is "
                f"{100 * last['train_acc']:.1f}% but under PGD only {100 * last['pgd_acc_monitor']:.1f}% on the "
                f"monitor batch (more than {100 * gap:.0f} points apart: the training attack no longer finds "
                "the worst case)")
    return None
