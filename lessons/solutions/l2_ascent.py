"""Reference solution of exercise l2_ascent (see ../exercises/l2_ascent.py)."""

import numpy as np


def l2_ascent(g, eps):
    """The task: ../exercises/l2_ascent.py."""
    flat = g.reshape(len(g), -1)
    norms = np.sqrt((flat * flat).sum(axis=1))
    scale = np.where(norms > 0, eps / np.where(norms > 0, norms, 1.0), 0.0)
    return g * scale.reshape((-1,) + (1,) * (g.ndim - 1))
