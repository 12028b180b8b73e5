"""Exercise dense_backward: write the function below, then check it.

In a notebook:   from minirobust.exercises import check, load_exercise
                 check("dense_backward", load_exercise("dense_backward"))
In a terminal:   minirobust exercises check dense_backward
The checker compares what you return with the truth and names the tensor, the index and the
error band when something is off. A reference solution is in ../solutions/dense_backward.py: try first.
"""

import numpy as np


def dense_backward(x, W, b, dy):
    """Backward pass of a dense layer y = x @ W + b.

    x: (N, D) inputs, W: (D, M) weights, b: (M,) bias, dy: (N, M) = dL/dy.
    Returns (dx, dW, db): dL/dx (N, D), dL/dW (D, M), dL/db (M,).
    """
    # YOUR CODE HERE
    raise NotImplementedError("dense_backward: not written yet")
