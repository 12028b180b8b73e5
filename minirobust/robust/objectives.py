"""What an attack climbs: per-example objectives on LOGITS, with their gradients.

Every function takes logits z (N, classes) and labels, and returns ``(values, dvalues/dz)``:
``values`` (N,) is what the attack maximises, one number per example, and the gradient is that
of ``values.sum()`` (so each example's input gradient is that of its own value).

    cross_entropy   CE(z, y) = logsumexp(z) - z_y                    (untargeted)
                    -CE(z, t)                                         (targeted at t)
    dlr             -(z_y - max_{j != y} z_j) / (z_pi1 - z_pi3)       (untargeted)
                    -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)      (targeted at t)
    margin          z_y - max_{j != y} z_j  (Square minimises it; < 0 means misclassified)

pi1 >= pi2 >= ... are the logits sorted in decreasing order. DLR (Croce & Hein 2020) is the
"difference of logits ratio": shifting or scaling every logit leaves it unchanged, so a model
that only rescales its logits (a huge temperature) cannot flatten it, as it can flatten the
softmax of cross-entropy.
"""

from __future__ import annotations

from ..backend import get_xp
from ..errors import InputError
from ..losses import SoftmaxCrossEntropy

DLR_FLOOR = 1e-12  # keeps the DLR denominator away from 0 when the top logits tie


def cross_entropy(z, y, target=None):
    """CE of the true class (untargeted), or minus CE of ``target`` (targeted)."""
    loss = SoftmaxCrossEntropy("none")
    values = loss.forward(z, y if target is None else target)
    dz = loss.backward(1.0)  # upstream 1 for every example: each row its own example's gradient
    return (values, dz) if target is None else (-values, -dz)


def _rows(z):
    return get_xp(z).arange(z.shape[0])


def _best_other(z, y):
    """Index of the largest logit other than the label's, per row."""
    xp = get_xp(z)
    masked = z.copy()
    masked[_rows(z), y] = -xp.inf
    return masked.argmax(axis=1)


def dlr(z, y, target=None):
    """The DLR objective (untargeted, or targeted at ``target``) and its gradient."""
    xp = get_xp(z)
    N, classes = z.shape
    if classes < (4 if target is not None else 3):
        raise InputError(f"the DLR loss needs at least {4 if target is not None else 3} classes, got {classes}")
    rows = _rows(z)
    order = xp.argsort(-z, axis=1)  # pi1, pi2, ... per row
    other = _best_other(z, y) if target is None else target
    u = z[rows, y] - z[rows, other]  # what the attack drives below 0
    if target is None:
        s = z[rows, order[:, 0]] - z[rows, order[:, 2]] + DLR_FLOOR
        spread = [(order[:, 0], 1.0), (order[:, 2], -1.0)]
    else:
        s = z[rows, order[:, 0]] - (z[rows, order[:, 2]] + z[rows, order[:, 3]]) / 2 + DLR_FLOOR
        spread = [(order[:, 0], 1.0), (order[:, 2], -0.5), (order[:, 3], -0.5)]
    values = -u / s
    dz = xp.zeros_like(z)
    # values = -u/s: d/du = -1/s and d/ds = u/s^2; indices may coincide, so accumulate
    for idx, sign in ((y, -1.0), (other, 1.0)):
        _add_at(dz, rows, idx, sign / s)
    for idx, weight in spread:
        _add_at(dz, rows, idx, weight * u / s**2)
    return values, dz


def _add_at(dz, rows, cols, values):
    """dz[rows, cols] += values (one column per row, so no two writes collide)."""
    dz[rows, cols] = dz[rows, cols] + values


def margin(z, y):
    """z_y - max_{j != y} z_j per row (no gradient: Square uses only values)."""
    rows = _rows(z)
    return z[rows, y] - z[rows, _best_other(z, y)]


OBJECTIVES = {"ce": cross_entropy, "dlr": dlr}


def value_and_input_gradient(model, x, y, objective="ce", target=None):
    """(values (N,), logits, dvalues/dx) at ``x``, the model in evaluation mode: one forward
    and one backward pass (parameter gradients skipped)."""
    if objective not in OBJECTIVES:
        raise InputError(f"unknown objective {objective!r}: choose one of {', '.join(OBJECTIVES)}")
    logits = model.forward(x, train=False)
    values, dz = OBJECTIVES[objective](logits, y, target)
    return values, logits, model.backward(dz.astype(logits.dtype, copy=False), param_grads=False)
