"""Conv2D -> ReLU -> MaxPool2D as one stage: what the fast tier runs instead of three layers.

Layer by layer, a convolution writes its whole output, ReLU reads and writes it again (and
keeps a mask as big), max-pool reads it a third time, and backward retraces all three over
the same big arrays. On the paper's MNIST net the first convolution's output is 7.4 MB per
batch of 100 and these memory passes cost more than the convolution's arithmetic.

The stage computes the same function in fewer passes:
  forward:  rows = W @ im2col(x)                       (the convolution, as in Conv2D)
            y, pos = rows_relu_maxpool(rows, b)         (bias, pool, ReLU: one read of rows)
  backward: drows, db = relu_maxpool_to_rows(dy, pos)  (one write of the rows' gradient)
            then Conv2D's own backward from the rows.
It pools before the ReLU, which is exact because both are monotone (relu(max z) = max relu(z)):
the ReLU then touches 1/(KH*KW) of the values. ``pos`` holds the winning position of each
window, or -1 where the maximum is <= 0 and ReLU passes no gradient.

The stage owns no parameters: it uses the Conv2D's, and writes the Conv2D's ``grads``, so
optimisers, checkpoints and ``Sequential.gradients()`` see no difference. Only the fast tier
fuses (``Sequential`` decides); with ``kernels.policy("never")`` every layer runs on its own,
which is the path to step through when learning. Tests check both give the same numbers.
"""

from __future__ import annotations

from .kernels import get_op
from .layers import Conv2D, MaxPool2D, ReLU


def can_fuse(layers) -> bool:
    """True for Conv2D, ReLU, MaxPool2D in this order with an unpadded pool."""
    if len(layers) != 3:
        return False
    conv, relu, pool = layers
    return (isinstance(conv, Conv2D) and isinstance(relu, ReLU) and isinstance(pool, MaxPool2D)
            and pool.padding == (0, 0))


class ConvReluPool:
    """The fused stage. Same forward/backward contract as a layer with parameters."""

    def __init__(self, conv: Conv2D, relu: ReLU, pool: MaxPool2D):
        if not can_fuse([conv, relu, pool]):
            raise ValueError("ConvReluPool needs Conv2D, ReLU, MaxPool2D (unpadded)")
        self.conv, self.relu, self.pool = conv, relu, pool
        self.params = conv.params  # so that Sequential finds the first stage with parameters
        self.name = f"{conv.name}+{relu.name}+{pool.name}"
        self._pos = self._conv_hw = None

    def forward(self, x, train=False):
        rows = self.conv.forward_rows(x)  # checks x, keeps im2col's columns for backward
        (KH, KW), (SH, SW) = self.pool.kernel_size, self.pool.stride
        OH, OW = self.conv.output_shape(x.shape[1:])[1:]
        y, self._pos = get_op("rows_relu_maxpool", rows)(rows, self.conv.params.get("b"),
                                                          x.shape[0], OH, OW, KH, KW, SH, SW)
        self._conv_hw = (OH, OW)
        return y

    def backward(self, dy, param_grads=True, input_grad=True):
        if self._pos is None:
            raise RuntimeError("ConvReluPool.backward called before forward")
        (KH, KW), (SH, SW) = self.pool.kernel_size, self.pool.stride
        OH, OW = self._conv_hw
        drows, db = get_op("relu_maxpool_to_rows", dy)(dy, self._pos, OH, OW, KH, KW, SH, SW)
        return self.conv.backward_rows(drows, db, param_grads, input_grad)

    def __repr__(self):
        return f"ConvReluPool({self.conv!r}, {self.pool!r})"
