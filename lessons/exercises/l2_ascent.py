"""Exercise l2_ascent: write the function below, then check it.

In a notebook:   from minirobust.exercises import check, load_exercise
                 check("l2_ascent", load_exercise("l2_ascent"))
In a terminal:   minirobust exercises check l2_ascent
The checker compares what you return with the truth and names the tensor, the index and the
error band when something is off. A reference solution is in ../solutions/l2_ascent.py: try first.
"""

import numpy as np


def l2_ascent(g, eps):
    """The steepest-ascent step in the l_2 ball: argmax over ||delta||_2 <= eps of <g, delta>.

    g: (N, ...) gradients, one example per row of the first axis; eps: the radius.
    Returns delta (same shape as g): per example eps * g / ||g||_2 (0 where g is 0).
    """
    # YOUR CODE HERE
    raise NotImplementedError("l2_ascent: not written yet")
