"""Exercise fgsm: write the function below, then `minirobust exercises check fgsm`
(lessons/README.md says more). A solution is in ../solutions/fgsm.py: try first."""

import numpy as np


def fgsm(x, g, eps):
    """The fast gradient sign method (Goodfellow et al. 2015) in the l_inf ball, inside the box [0, 1].

    x: images in [0, 1], any shape; g: dloss/dx, the same shape; eps: the radius.
    Returns x_adv: x moved by eps in the direction of the sign of g, then clipped to [0, 1]
    (a pixel at 1 cannot get brighter: the ball meets the box).
    Keep the dtype of x (float64 here).
    """
    # YOUR CODE HERE
    raise NotImplementedError("fgsm: not written yet")
