"""Reference solution of exercise ibp_dense (see ../exercises/ibp_dense.py)."""

import numpy as np


def ibp_dense(lower, upper, W, b):
    """Interval bound propagation through a dense layer y = x @ W + b (Gowal et al. 2018).

    lower, upper: (N, D) bounds with lower <= upper: the input x can be anywhere in that box.
    W: (D, M), b: (M,). Returns (lower_out, upper_out), each (N, M): the tightest box that holds
    x @ W + b for every x in the input box.
    Hint: write the box as centre +- radius; a negative weight swaps which end of an input
    interval gives the smallest output.
    """
    centre, radius = (upper + lower) / 2, (upper - lower) / 2
    mid = centre @ W + b
    spread = radius @ np.abs(W)        # each input's half-width, times how much the output can move
    return mid - spread, mid + spread
