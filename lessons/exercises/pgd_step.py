"""Exercise pgd_step: write the function below, then `minirobust exercises check pgd_step`
(lessons/README.md says more). A solution is in ../solutions/pgd_step.py: try first."""

import numpy as np


def pgd_step(x_adv, x, g, eps, step_size):
    """One step of projected gradient ascent (PGD, Madry et al. 2018) in the l_inf ball.

    x_adv: the current adversarial images; x: the clean images (the centre of the ball);
    g: dloss/dx evaluated at x_adv; eps: the radius; step_size: how far one step moves each pixel.
    Returns x_next: x_adv + step_size * sign(g), projected back onto the ball around x, then
    clipped to [0, 1].
    """
    # YOUR CODE HERE
    raise NotImplementedError("pgd_step: not written yet")
