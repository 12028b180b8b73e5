"""Reference solution of exercise pgd_step (see ../exercises/pgd_step.py)."""

import numpy as np


def pgd_step(x_adv, x, g, eps, step_size):
    """One step of projected gradient ascent (PGD, Madry et al. 2018) in the l_inf ball.

    x_adv: the current adversarial images; x: the clean images (the centre of the ball);
    g: dloss/dx evaluated at x_adv; eps: the radius; step_size: how far one step moves each pixel.
    Returns x_next: x_adv + step_size * sign(g), projected back onto the ball around x, then
    clipped to [0, 1].
    """
    stepped = x_adv + step_size * np.sign(g)           # steepest ascent for l_inf
    projected = np.clip(stepped, x - eps, x + eps)      # back into the ball around the CLEAN image
    return np.clip(projected, 0.0, 1.0)                 # and into the box of valid pixels
