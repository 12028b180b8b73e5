"""Catastrophic overfitting, caught while training.

Single-step adversarial training at a large radius (the paper's method, or FGSM, at MNIST
l_inf 0.3) can collapse within an epoch: accuracy under the training attack soars while accuracy
under a multi-step attack falls to about zero (Wong, Rice & Kolter 2020 call it catastrophic
overfitting). The training attack cannot see it; PGD on a fixed held-out batch can.

After each epoch the trainer measures PGD accuracy on the held-out batch (``pgd_acc_monitor`` in
metrics.jsonl); ``collapse`` reads the history and says when that accuracy has fallen more than
``margin`` below its best while the accuracy under the training attack rose. A pure function of
the history, so a resumed run judges exactly as an uninterrupted one.
"""

from __future__ import annotations

import numpy as np

from ..backend import to_host
from .attacks import pgd


class OverfitMonitor:
    """PGD-``steps`` accuracy of the model on (x, y), fixed random starts (``seed``)."""

    def __init__(self, x, y, norm, eps, steps=10, margin=0.2, bounds=(0.0, 1.0), seed=0):
        if len(x) == 0:
            raise ValueError("the monitor needs at least one held-out example")
        self.x, self.y = x, np.asarray(y)
        self.norm, self.eps, self.steps, self.margin, self.bounds, self.seed = norm, eps, steps, margin, bounds, seed

    def accuracy(self, model) -> float:
        res = pgd(model, self.x, self.y, norm=self.norm, eps=self.eps, steps=self.steps, rng=self.seed,
                  bounds=self.bounds, batch_size=500)
        return float((~to_host(res.success)).mean())

    def collapse(self, history) -> str | None:
        """One line describing the collapse the last epoch shows, or None."""
        return collapse(history, self.margin)


def collapse(history, margin) -> str | None:
    """Catastrophic overfitting in the last record of ``history``: its ``pgd_acc_monitor`` is more
    than ``margin`` below the best so far, and ``train_acc`` (under the training attack) rose
    from the epoch before. None when it does not."""
    records = [r for r in history if "pgd_acc_monitor" in r]
    if len(records) < 2:
        return None
    last, before = records[-1], records[-2]
    best = max(r["pgd_acc_monitor"] for r in records)
    fell = best - last["pgd_acc_monitor"]
    if fell > margin and last["train_acc"] > before["train_acc"]:
        return (f"catastrophic overfitting at epoch {last['epoch']}: PGD accuracy on the monitor batch fell to "
                f"{100 * last['pgd_acc_monitor']:.1f}% from its best {100 * best:.1f}% while accuracy under the "
                f"training attack rose from {100 * before['train_acc']:.1f}% to {100 * last['train_acc']:.1f}%")
    return None
