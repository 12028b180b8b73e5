"""Reference solution of exercise fgsm (see ../exercises/fgsm.py)."""

import numpy as np


def fgsm(x, g, eps):
    """The task: ../exercises/fgsm.py."""
    return np.clip(x + eps * np.sign(g), 0.0, 1.0)
