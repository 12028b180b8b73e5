"""Reference solution of exercise l1_ascent (see ../exercises/l1_ascent.py)."""

import numpy as np


def l1_ascent(g, eps):
    """The task: ../exercises/l1_ascent.py."""
    flat = g.reshape(len(g), -1)
    delta = np.zeros_like(flat)
    rows = np.arange(len(flat))
    top = np.abs(flat).argmax(axis=1)
    delta[rows, top] = eps * np.sign(flat[rows, top])
    return delta.reshape(g.shape)
