"""IBP certificates and the IBP training loss, on top of the interval rules (intervals.py)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..backend import get_xp, to_host
from ..losses import SoftmaxCrossEntropy
from ..robust.attack_base import check_attack_inputs
from .intervals import IntervalPass


@dataclass
class Certificate:
    """Per example: ``certified`` (no point of the ball changes the prediction from the true
    label) and ``margins`` (IBP: the smallest lower bound on z_y - z_j; Lipschitz and smoothing:
    the certified radius), host arrays."""

    method: str
    norm: str
    eps: float
    certified: np.ndarray
    margins: np.ndarray

    @property
    def certified_acc(self) -> float:
        return float(self.certified.mean())

    def to_json(self) -> dict:
        return {"method": self.method, "norm": self.norm, "eps": self.eps, "n": int(len(self.certified)),
                "certified_acc": self.certified_acc}


def ibp(model, x, y, eps, bounds=(0.0, 1.0), batch_size=500) -> Certificate:
    """Certify each (x_i, y_i) against every l_inf perturbation of size eps (inside ``bounds``):
    certified when the lower bound of z_y - z_j over the box is > 0 for every j != y."""
    x = check_attack_inputs(model, x, bounds)
    y = model.on_device(y, "labels")
    margins = np.empty(len(x), dtype=np.float64)
    for i in range(0, len(x), batch_size):
        yb = y[i : i + batch_size]
        lower = IntervalPass(model).margin_bounds(x[i : i + batch_size], yb, eps, bounds)
        margins[i : i + batch_size] = to_host(smallest_margins(lower, yb))
    return Certificate("ibp", "inf", float(eps), margins > 0, margins)


def smallest_margins(lower, y):
    """min over j != y of the lower bounds on z_y - z_j, per example: > 0 is a certificate
    (column y holds z_y - z_y = 0, which is not a margin)."""
    xp = get_xp(lower)
    return (lower + xp.where(xp.arange(lower.shape[1])[None, :] == y[:, None], xp.inf, 0)).min(axis=1)


def worst_case_logits(lower_margins):
    """Logits no better for the true class than any point of the box allows: -lower(z_y - z_j),
    0 for y. Their cross-entropy bounds the cross-entropy of every point in the box from above."""
    return -lower_margins


def ibp_loss_and_grads(model, x, y, eps, bounds=(0.0, 1.0)):
    """(mean CE of the worst-case logits, {parameter: gradient}, number certified) for a batch."""
    interval = IntervalPass(model)
    lower = interval.margin_bounds(x, y, eps, bounds)
    loss_fn = SoftmaxCrossEntropy()
    y = model.on_device(y, "labels")
    loss = float(loss_fn.forward(worst_case_logits(lower), y))
    interval.backward(-loss_fn.backward())  # d/d(lower) = -d/d(worst logits)
    return loss, interval.grads, int((smallest_margins(lower, y) > 0).sum())
