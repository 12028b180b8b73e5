"""Exercise maxpool_backward: write the function below, then `minirobust exercises check maxpool_backward`
(lessons/README.md says more). A solution is in ../solutions/maxpool_backward.py: try first."""

import numpy as np


def maxpool_backward(x, dy, kernel, stride):
    """Backward pass of max-pooling with square windows (no padding); windows may overlap.

    x: (N, C, H, W) the forward's input, dy: (N, C, OH, OW) = dL/dy, kernel, stride: ints.
    Returns dx: (N, C, H, W). Each window sends its gradient to the position of its maximum.
    """
    # YOUR CODE HERE
    raise NotImplementedError("maxpool_backward: not written yet")
