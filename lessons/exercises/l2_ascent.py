"""Exercise l2_ascent: write the function below, then `minirobust exercises check l2_ascent`
(lessons/README.md says more). A solution is in ../solutions/l2_ascent.py: try first."""

import numpy as np


def l2_ascent(g, eps):
    """The steepest-ascent step in the l_2 ball: argmax over ||delta||_2 <= eps of <g, delta>.

    g: (N, ...) gradients, one example per row of the first axis; eps: the radius.
    Returns delta (same shape as g): per example eps * g / ||g||_2 (0 where g is 0).
    """
    # YOUR CODE HERE
    raise NotImplementedError("l2_ascent: not written yet")
