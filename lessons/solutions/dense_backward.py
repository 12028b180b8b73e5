"""Reference solution of exercise dense_backward (see ../exercises/dense_backward.py)."""

import numpy as np


def dense_backward(x, W, b, dy):
    """Backward pass of a dense layer y = x @ W + b.

    x: (N, D) inputs, W: (D, M) weights, b: (M,) bias, dy: (N, M) = dL/dy.
    Returns (dx, dW, db): dL/dx (N, D), dL/dW (D, M), dL/db (M,).
    """
    dx = dy @ W.T        # each input feeds every output through its row of W
    dW = x.T @ dy        # sum over the batch of (input) x (output gradient)
    db = dy.sum(axis=0)  # the bias is added to every example
    return dx, dW, db
