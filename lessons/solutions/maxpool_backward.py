"""Reference solution of exercise maxpool_backward (see ../exercises/maxpool_backward.py)."""

import numpy as np


def maxpool_backward(x, dy, kernel, stride):
    """The task: ../exercises/maxpool_backward.py."""
    N, C, OH, OW = dy.shape
    dx = np.zeros_like(x)
    for oh in range(OH):
        for ow in range(OW):
            h, w = oh * stride, ow * stride
            window = x[:, :, h : h + kernel, w : w + kernel].reshape(N, C, -1)
            k = window.argmax(axis=2)                     # the winner of each window
            i, j = np.unravel_index(k, (kernel, kernel))
            n, c = np.meshgrid(np.arange(N), np.arange(C), indexing="ij")
            np.add.at(dx, (n, c, h + i, w + j), dy[:, :, oh, ow])  # +=: windows overlap
    return dx
