"""Reference solution of exercise ibp_dense (see ../exercises/ibp_dense.py)."""

import numpy as np


def ibp_dense(lower, upper, W, b):
    """The task: ../exercises/ibp_dense.py."""
    centre, radius = (upper + lower) / 2, (upper - lower) / 2
    mid = centre @ W + b
    spread = radius @ np.abs(W)        # each input's half-width, times how much the output can move
    return mid - spread, mid + spread
