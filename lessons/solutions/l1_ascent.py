"""Reference solution of exercise l1_ascent (see ../exercises/l1_ascent.py)."""

import numpy as np


def l1_ascent(g, eps):
    """The steepest-ascent step in the l_1 ball: argmax over ||delta||_1 <= eps of <g, delta>.

    g: (N, ...) gradients, one example per row of the first axis; eps: the radius.
    Returns delta (same shape as g): per example, all of eps on the ONE coordinate of largest
    |g|, with the sign of g there (0 where g is 0).
    """
    flat = g.reshape(len(g), -1)
    delta = np.zeros_like(flat)
    rows = np.arange(len(flat))
    top = np.abs(flat).argmax(axis=1)
    delta[rows, top] = eps * np.sign(flat[rows, top])
    return delta.reshape(g.shape)
