"""What every attack shares: one small public contract.

    attack(model, x, y=None, norm=..., eps=..., <budget>, rng=..., bounds=(0, 1), batch_size=None)
        -> AttackResult

* x: a batch (N, ...) in pixel space, checked by ``check_attack_inputs`` and moved to the model's
  device; y: the labels to attack, the model's own predictions by default
  (``labels_or_predictions``);
* norm and eps: the ball (``balls.Ball``); FAB alone may leave eps out (then it returns the
  smallest perturbation it found, whatever its size);
* the budget: whole numbers (``whole``: steps, restarts, queries), never silently rounded;
* rng: a seed or a numpy Generator (``generator``); bounds: the box the result is clipped to;
* the objective (what is climbed) is the attack's own: ``objectives.py`` holds the shared ones;
* the result: ``AttackResult`` (the adversarial batch, a success mask, the perturbation norms, the
  labels attacked, and anything more in ``info``).

The attacks themselves live in attacks.py (fast method, PGD, single pixel), apgd.py, square.py
and fab.py; registry.py names them all in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import checks
from ..backend import get_xp, to_host
from ..errors import InputError


@dataclass
class AttackResult:
    x_adv: object  # (N, ...) adversarial inputs
    success: object  # (N,) bool: misclassified (untargeted) or classified as the target
    norms: object  # (N,) ||x_adv - x||_p in the attack's norm
    labels: object  # (N,) the labels attacked (given, or the model's predictions; targets if targeted)
    info: dict = field(default_factory=dict)  # what an attack reports beyond these (e.g. APGD's trace)

    @property
    def success_rate(self) -> float:
        return float(self.success.mean())

    def to_host(self) -> "AttackResult":
        """The same result with NumPy arrays (for saving, plotting, comparing with host labels)."""
        return AttackResult(*(to_host(v) for v in (self.x_adv, self.success, self.norms, self.labels)),
                            info={k: to_host(v) if hasattr(v, "shape") else v for k, v in self.info.items()})


def check_attack_inputs(model, x, bounds):
    """``x`` checked and on the model's device (the device rule: see model.py)."""
    x = model.on_device(x, "attack input")
    checks.check_float(x, "attack input")
    if x.ndim < 2 or x.shape[0] == 0:
        raise InputError(f"attack input must be a non-empty batch (N, ...), got shape {tuple(x.shape)}")
    checks.check_finite(x, "attack input")
    if bounds is not None:
        lo, hi = bounds
        if not lo < hi:
            raise InputError(f"bounds must satisfy low < high, got {bounds}")
        if float(x.min()) < lo - 1e-6 or float(x.max()) > hi + 1e-6:
            raise InputError(f"attack input has values in [{float(x.min()):.3g}, {float(x.max()):.3g}], outside "
                             f"bounds {bounds}: models take raw pixel-space images (normalise inside the model)")
    return x


def whole(value, name, minimum=1) -> int:
    """``value`` as an int >= ``minimum``; 2.5 steps or True restarts are errors, not rounded."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InputError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return int(value)


def generator(rng) -> np.random.Generator:
    """A seed (int >= 0), a numpy Generator or None (fresh entropy) as a Generator."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or (isinstance(rng, (int, np.integer)) and not isinstance(rng, bool) and rng >= 0):
        return np.random.default_rng(rng)
    raise InputError(f"rng must be a seed (a whole number >= 0), a numpy.random.Generator or None, got {rng!r}")


def batch_size_or_none(batch_size):
    return None if batch_size is None else whole(batch_size, "batch_size")


def labels_or_predictions(model, x, y):
    """``y`` checked and on the model's device; the model's own predictions when None (no label
    leaking)."""
    if y is None:
        return model.predict(x)
    checks.check_labels(y, x.shape[0], 2**31 - 1)
    return model.on_device(y, "labels")


def success_mask(model, x_adv, y, targeted):
    """Misclassified (untargeted), or classified as the target ``y`` (targeted)."""
    pred = model.predict(x_adv)
    return pred == y if targeted else pred != y


TARGET_MODES = ("random", "least-likely")


def pick_targets(model, x, y, how, rng=None):
    """Target labels for a targeted attack, on the model's device.

    how: labels (N,) given by the caller (checked: none may equal the true label), "random"
    (a uniformly drawn class other than y, from ``rng``) or "least-likely" (the class the
    model scores lowest on the clean input).
    """
    if isinstance(how, str):
        if how not in TARGET_MODES:
            raise InputError(f"unknown target mode {how!r}: give labels, or one of {', '.join(TARGET_MODES)}")
        logits = model.forward(x, train=False)
        classes = logits.shape[1]
        if how == "least-likely":
            return logits.argmin(axis=1)
        shift = model.on_device(generator(rng).integers(1, classes, size=x.shape[0]), "targets")
        return (y + shift) % classes  # never y itself
    targets = model.on_device(how, "targets")
    checks.check_labels(targets, x.shape[0], 2**31 - 1)
    if bool((targets == y).any()):
        raise InputError(f"{int((targets == y).sum())} target labels equal the true labels: a targeted attack "
                         "needs another class")
    return targets


def keep_worst(best, new):
    """Per example, the worse (for the model) of two (x_adv, value, success) triples: a success
    beats a failure; the first success is kept (early stop); between failures, the higher value."""
    bx, bv, bok = best
    nx, nv, nok = new
    xp = get_xp(bx)
    better = (nok & ~bok) | (~nok & ~bok & (nv > bv))
    return (xp.where(better.reshape((-1,) + (1,) * (bx.ndim - 1)), nx, bx), xp.where(better, nv, bv), bok | nok)


def batched(attack_one, x, y, batch_size, extra=()):
    """Run ``attack_one(x_chunk, y_chunk, *extra_chunks)`` over chunks and concatenate."""
    if batch_size is None or batch_size >= x.shape[0]:
        return attack_one(x, y, *extra)
    xp = get_xp(x)
    parts = [attack_one(x[i : i + batch_size], y[i : i + batch_size], *[e[:, i : i + batch_size] for e in extra])
             for i in range(0, x.shape[0], batch_size)]
    return tuple(xp.concatenate([p[k] for p in parts]) for k in range(len(parts[0])))
