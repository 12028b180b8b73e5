"""Exercise relu_backward: write the function below, then `minirobust exercises check relu_backward`
(lessons/README.md says more). A solution is in ../solutions/relu_backward.py: try first."""

import numpy as np


def relu_backward(x, dy):
    """Backward pass of y = max(x, 0), elementwise, any shape.

    x: the forward's input, dy: dL/dy (same shape). Returns dx = dL/dx.
    Take the derivative at exactly 0 as 0.
    """
    # YOUR CODE HERE
    raise NotImplementedError("relu_backward: not written yet")
