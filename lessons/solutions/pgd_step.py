"""Reference solution of exercise pgd_step (see ../exercises/pgd_step.py)."""

import numpy as np


def pgd_step(x_adv, x, g, eps, step_size):
    """The task: ../exercises/pgd_step.py."""
    stepped = x_adv + step_size * np.sign(g)           # steepest ascent for l_inf
    projected = np.clip(stepped, x - eps, x + eps)      # back into the ball around the CLEAN image
    return np.clip(projected, 0.0, 1.0)                 # and into the box of valid pixels
