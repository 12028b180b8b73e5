"""Exercise maxpool_backward: write the function below, then check it.

In a notebook:   from minirobust.exercises import check, load_exercise
                 check("maxpool_backward", load_exercise("maxpool_backward"))
In a terminal:   minirobust exercises check maxpool_backward
The checker compares what you return with the truth and names the tensor, the index and the
error band when something is off. A reference solution is in ../solutions/maxpool_backward.py: try first.
"""

import numpy as np


def maxpool_backward(x, dy, kernel, stride):
    """Backward pass of max-pooling with square windows (no padding); windows may overlap.

    x: (N, C, H, W) the forward's input, dy: (N, C, OH, OW) = dL/dy, kernel, stride: ints.
    Returns dx: (N, C, H, W). Each window sends its gradient to the position of its maximum.
    """
    # YOUR CODE HERE
    raise NotImplementedError("maxpool_backward: not written yet")
