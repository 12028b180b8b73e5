"""Exercise project_l2: write the function below, then `minirobust exercises check project_l2`
(lessons/README.md says more). A solution is in ../solutions/project_l2.py: try first."""

import numpy as np


def project_l2(x_adv, x, eps):
    """Projection onto the l_2 ball of radius eps around x, one ball per example: the nearest
    point to x_adv with ||x_proj - x||_2 <= eps.

    x_adv, x: (N, ...) arrays, one example per row of the first axis; eps: the radius.
    Returns x_proj (the shape of x). A point already inside its ball stays where it is; one outside
    moves along the line towards x until it is on the sphere. No division by zero where x_adv == x.
    """
    # YOUR CODE HERE
    raise NotImplementedError("project_l2: not written yet")
