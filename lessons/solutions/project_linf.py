"""Reference solution of exercise project_linf (see ../exercises/project_linf.py)."""

import numpy as np


def project_linf(x_adv, x, eps):
    """Projection onto the l_inf ball of radius eps around x: the nearest point to x_adv
    (in l_2 distance) with max |x_proj - x| <= eps.

    x_adv, x: arrays of the same shape; eps: the radius.
    Returns x_proj. The l_inf ball is a box, so each pixel is projected on its own.
    """
    return np.clip(x_adv, x - eps, x + eps)
