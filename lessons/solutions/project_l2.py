"""Reference solution of exercise project_l2 (see ../exercises/project_l2.py)."""

import numpy as np


def project_l2(x_adv, x, eps):
    """Projection onto the l_2 ball of radius eps around x, one ball per example: the nearest
    point to x_adv with ||x_proj - x||_2 <= eps.

    x_adv, x: (N, ...) arrays, one example per row of the first axis; eps: the radius.
    Returns x_proj (the shape of x). A point already inside its ball stays where it is; one outside
    moves along the line towards x until it is on the sphere. No division by zero where x_adv == x.
    """
    delta = x_adv - x
    norms = np.sqrt((delta.reshape(len(delta), -1) ** 2).sum(axis=1))
    scale = np.minimum(1.0, eps / np.where(norms > 0, norms, 1.0))  # 1 inside the ball (and at x)
    return x + delta * scale.reshape((-1,) + (1,) * (x.ndim - 1))
