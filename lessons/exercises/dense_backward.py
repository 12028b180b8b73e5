"""Exercise dense_backward: write the function below, then `minirobust exercises check dense_backward`
(lessons/README.md says more). A solution is in ../solutions/dense_backward.py: try first."""

import numpy as np


def dense_backward(x, W, b, dy):
    """Backward pass of a dense layer y = x @ W + b.

    x: (N, D) inputs, W: (D, M) weights, b: (M,) bias, dy: (N, M) = dL/dy.
    Returns (dx, dW, db): dL/dx (N, D), dL/dW (D, M), dL/db (M,).
    """
    # YOUR CODE HERE
    raise NotImplementedError("dense_backward: not written yet")
