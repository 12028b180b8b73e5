"""Reference solution of exercise relu_backward (see ../exercises/relu_backward.py)."""

import numpy as np


def relu_backward(x, dy):
    """The task: ../exercises/relu_backward.py."""
    return dy * (x > 0)  # the gradient passes where the unit was on
