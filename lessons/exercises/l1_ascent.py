"""Exercise l1_ascent: write the function below, then `minirobust exercises check l1_ascent`
(lessons/README.md says more). A solution is in ../solutions/l1_ascent.py: try first."""

import numpy as np


def l1_ascent(g, eps):
    """The steepest-ascent step in the l_1 ball: argmax over ||delta||_1 <= eps of <g, delta>.

    g: (N, ...) gradients, one example per row of the first axis; eps: the radius.
    Returns delta (same shape as g): per example, all of eps on the ONE coordinate of largest
    |g|, with the sign of g there (0 where g is 0).
    """
    # YOUR CODE HERE
    raise NotImplementedError("l1_ascent: not written yet")
