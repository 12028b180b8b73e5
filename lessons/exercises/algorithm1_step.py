"""Exercise algorithm1_step: write the function below, then `minirobust exercises check algorithm1_step`
(lessons/README.md says more). A solution is in ../solutions/algorithm1_step.py: try first."""

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
    # YOUR CODE HERE
    raise NotImplementedError("algorithm1_step: not written yet")
