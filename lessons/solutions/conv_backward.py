"""Reference solution of exercise conv_backward (see ../exercises/conv_backward.py)."""

import numpy as np

from minirobust.kernels.reference import col2im, im2col


def conv_backward(x, W, b, dy, stride, padding):
    """The task: ../exercises/conv_backward.py."""
    F, C, KH, KW = W.shape
    cols = im2col(x, KH, KW, stride, stride, padding, padding)        # (K, P), P = N*OH*OW
    dy_rows = dy.transpose(1, 0, 2, 3).reshape(F, -1)                 # (F, P): the layout of the rows
    db = dy_rows.sum(axis=1)
    dW = (dy_rows @ cols.T).reshape(W.shape)                          # (F, K) -> (F, C, KH, KW)
    dcols = W.reshape(F, -1).T @ dy_rows                              # (K, P)
    dx = col2im(dcols, x.shape, KH, KW, stride, stride, padding, padding)  # fold, summing overlaps
    return dx, dW, db
