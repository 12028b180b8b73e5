"""Exercise relu_backward: write the function below, then check it.

In a notebook:   from minirobust.exercises import check, load_exercise
                 check("relu_backward", load_exercise("relu_backward"))
In a terminal:   minirobust exercises check relu_backward
The checker compares what you return with the truth and names the tensor, the index and the
error band when something is off. A reference solution is in ../solutions/relu_backward.py: try first.
"""

import numpy as np


def relu_backward(x, dy):
    """Backward pass of y = max(x, 0), elementwise, any shape.

    x: the forward's input, dy: dL/dy (same shape). Returns dx = dL/dx.
    Take the derivative at exactly 0 as 0.
    """
    # YOUR CODE HERE
    raise NotImplementedError("relu_backward: not written yet")
