"""Reference solution of exercise algorithm1_step (see ../exercises/algorithm1_step.py)."""

import numpy as np


def algorithm1_step(W, b, x, y, eps, lr):
    """The task: ../exercises/algorithm1_step.py."""
    def gradients(inputs):
        logits = inputs @ W + b
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        dz = p.copy()
        dz[np.arange(len(y)), y] -= 1.0
        dz /= len(y)
        return dz @ W.T, inputs.T @ dz, dz.sum(axis=0)

    gx, _, _ = gradients(x)
    x_adv = np.clip(x + eps * np.sign(gx), 0.0, 1.0)   # the inner maximisation, one step
    _, dW, db = gradients(x_adv)                        # the outer minimisation, on x_adv only
    return W - lr * dW, b - lr * db
