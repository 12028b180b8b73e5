"""Reference solution of exercise dense_backward (see ../exercises/dense_backward.py)."""

import numpy as np


def dense_backward(x, W, b, dy):
    """The task: ../exercises/dense_backward.py."""
    dx = dy @ W.T        # each input feeds every output through its row of W
    dW = x.T @ dy        # sum over the batch of (input) x (output gradient)
    db = dy.sum(axis=0)  # the bias is added to every example
    return dx, dW, db
