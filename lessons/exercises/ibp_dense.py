"""Exercise ibp_dense: write the function below, then `minirobust exercises check ibp_dense`
(lessons/README.md says more). A solution is in ../solutions/ibp_dense.py: try first."""

import numpy as np


def ibp_dense(lower, upper, W, b):
    """Interval bound propagation through a dense layer y = x @ W + b (Gowal et al. 2018).

    lower, upper: (N, D) bounds with lower <= upper: the input x can be anywhere in that box.
    W: (D, M), b: (M,). Returns (lower_out, upper_out), each (N, M): the tightest box that holds
    x @ W + b for every x in the input box.
    Hint: write the box as centre +- radius; a negative weight swaps which end of an input
    interval gives the smallest output.
    """
    # YOUR CODE HERE
    raise NotImplementedError("ibp_dense: not written yet")
