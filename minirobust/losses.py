"""Softmax cross-entropy, forward and backward.

For logits z (N, classes) and integer labels y (N,):

    loss_n = logsumexp(z_n) - z_n[y_n]          (stable: subtract max(z_n) first)
    dloss_n/dz_n = softmax(z_n) - onehot(y_n)

Reduction 'mean' (training), 'sum' (attacks: each example's input gradient does not
shrink with the batch size) or 'none' (per-example losses, shape (N,)).
"""

from __future__ import annotations

import numpy as np

from . import checks
from .backend import get_xp
from .errors import InputError

REDUCTIONS = ("mean", "sum", "none")


def log_softmax(z):
    """Row-wise log softmax of z: (N, classes), numerically stable."""
    xp = get_xp(z)
    shifted = z - z.max(axis=1, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))


class SoftmaxCrossEntropy:
    """``loss = forward(logits, labels)``; ``dlogits = backward(dloss=1.0)``."""

    def __init__(self, reduction: str = "mean"):
        if reduction not in REDUCTIONS:
            raise InputError(f"unknown reduction {reduction!r}: choose one of {REDUCTIONS}")
        self.reduction = reduction
        self.params, self.grads = {}, {}
        self._probs = self._labels = None

    def forward(self, logits, labels):
        checks.check_float(logits, "logits")
        checks.check_rank(logits, 2, "(N, classes)", "logits")
        checks.check_labels(labels, logits.shape[0], logits.shape[1])
        xp = get_xp(logits, labels)
        logp = log_softmax(logits)
        per_example = -logp[xp.arange(logits.shape[0]), labels]
        self._probs, self._labels = xp.exp(logp), labels
        if self.reduction == "mean":
            return per_example.mean()
        if self.reduction == "sum":
            return per_example.sum()
        return per_example

    def backward(self, dloss=1.0):
        """dL/dlogits for upstream ``dloss``: a scalar (for reduction 'none', the same upstream
        gradient for every example), or shape (N,) for reduction 'none'."""
        if self._probs is None:
            raise RuntimeError("SoftmaxCrossEntropy.backward called before forward")
        xp = get_xp(self._probs)
        N = self._probs.shape[0]
        d = self._probs.copy()
        d[xp.arange(N), self._labels] -= 1
        if self.reduction == "mean":
            d /= N
        if np.isscalar(dloss):  # the usual 1.0: a Python scalar takes d's dtype, with no copy to a GPU
            return d * dloss
        dloss = xp.asarray(dloss, dtype=d.dtype)
        if self.reduction == "none":
            return d * dloss.reshape(N, 1)
        return d * dloss


def softmax_cross_entropy(logits, labels, reduction="mean"):
    """Functional form: the loss only (no backward state kept)."""
    return SoftmaxCrossEntropy(reduction).forward(logits, labels)
