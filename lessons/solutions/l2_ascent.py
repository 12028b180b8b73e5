"""Reference solution of exercise l2_ascent (see ../exercises/l2_ascent.py)."""

import numpy as np


def l2_ascent(g, eps):
    """The steepest-ascent step in the l_2 ball: argmax over ||delta||_2 <= eps of <g, delta>.

    g: (N, ...) gradients, one example per row of the first axis; eps: the radius.
    Returns delta (same shape as g): per example eps * g / ||g||_2 (0 where g is 0).
    """
    flat = g.reshape(len(g), -1)
    norms = np.sqrt((flat * flat).sum(axis=1))
    scale = np.where(norms > 0, eps / np.where(norms > 0, norms, 1.0), 0.0)
    return g * scale.reshape((-1,) + (1,) * (g.ndim - 1))
