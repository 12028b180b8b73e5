"""Exercise conv_backward: write the function below, then `minirobust exercises check conv_backward`
(lessons/README.md says more). A solution is in ../solutions/conv_backward.py: try first."""

import numpy as np

from minirobust.kernels.reference import col2im, im2col


def conv_backward(x, W, b, dy, stride, padding):
    """Backward pass of a 2-D convolution computed as rows = W.reshape(F, K) @ im2col(x).

    x: (N, C, H, W) input, W: (F, C, KH, KW) filters, b: (F,) bias, dy: (N, F, OH, OW) = dL/dy.
    stride, padding: ints (the same along both axes).
    Returns (dx, dW, db) with the shapes of x, W and b.

    Use im2col and col2im from minirobust.kernels.reference:
        cols = im2col(x, KH, KW, stride, stride, padding, padding)        # (K, N*OH*OW)
        dx = col2im(dcols, x.shape, KH, KW, stride, stride, padding, padding)

    The order of im2col's axes, which every reshape must follow:
        rows of cols:    K = C*KH*KW, in the order (c, i, j): the same order as W.reshape(F, K);
        columns of cols: P = N*OH*OW, in the order (n, oh, ow): so the product W.reshape(F, K) @ cols
                         is (F, N*OH*OW), and dy (N, F, OH, OW) becomes dy.transpose(1, 0, 2, 3).reshape(F, -1).
    """
    # YOUR CODE HERE
    raise NotImplementedError("conv_backward: not written yet")
