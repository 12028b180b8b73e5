"""Reference solution of exercise algorithm1_step (see ../exercises/algorithm1_step.py)."""

import numpy as np


def algorithm1_step(W, b, x, y, eps, lr):
    """One step of the paper's Algorithm 1 for softmax regression, in the l_inf ball.

    W: (D, M) weights, b: (M,) biases, x: (N, D) images in [0, 1], y: (N,) labels,
    eps: the radius, lr: the learning rate. The loss is the mean softmax cross-entropy of
    logits = x @ W + b.
      1. ascent:  x_adv = clip(x + eps * sign(dL/dx), 0, 1)
      2. descent: W_new = W - lr * dL/dW and b_new = b - lr * dL/db, both at x_adv (not at x).
    Returns (W_new, b_new). Leave W and b themselves unchanged.
    Useful: with p = softmax(logits), dL/dlogits = (p - onehot(y)) / N.
    """
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
