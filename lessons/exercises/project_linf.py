"""Exercise project_linf: write the function below, then `minirobust exercises check project_linf`
(lessons/README.md says more). A solution is in ../solutions/project_linf.py: try first."""

import numpy as np


def project_linf(x_adv, x, eps):
    """Projection onto the l_inf ball of radius eps around x: the nearest point to x_adv
    (in l_2 distance) with max |x_proj - x| <= eps.

    x_adv, x: arrays of the same shape; eps: the radius.
    Returns x_proj. The l_inf ball is a box, so each pixel is projected on its own.
    """
    # YOUR CODE HERE
    raise NotImplementedError("project_linf: not written yet")
