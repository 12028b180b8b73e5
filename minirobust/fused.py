"""Conv2D -> ReLU -> MaxPool2D as one stage: what the fast tier runs instead of three layers.

Layer by layer, a convolution writes its whole output, ReLU reads and writes it again (and
keeps a mask as big), max-pool reads it a third time, and backward retraces all three over
the same big arrays. On the paper's MNIST net the first convolution's output is 7.4 MB per
batch of 100 and these memory passes cost more than the convolution's arithmetic.

The stage computes the same function in fewer passes:
  forward:  rows = W @ im2col(x)                       (the convolution, as in Conv2D)
            y, pos = rows_relu_maxpool(rows, b)         (bias, pool, ReLU: one read of rows)
  backward: drows, db = relu_maxpool_to_rows(dy, pos)  (one write of the rows' gradient)
            dW = drows @ cols.T                         (Conv2D's own backward from the rows)
            dx = col2im(W.T @ drows)                    (a chunk of images at a time, see below)
It pools before the ReLU, which is exact because both are monotone (relu(max z) = max relu(z)):
the ReLU then touches 1/(KH*KW) of the values. ``pos`` holds the winning position of each
window, or -1 where the maximum is <= 0 and ReLU passes no gradient.

The input gradient from the pool winners: each live pooled output has one winner, and its
gradient reaches the input through the filter W[f] shifted to the winner's place in the window.
``conv_relu_maxpool_input_grad`` sums dy * (shifted W[f]) over the filters into each window's
patch of the input and adds the patches onto the image: no drows, no columns, and it skips the
non-winners (W.T @ drows multiplies their zeros) and the windows ReLU blocked. The fast CPU
tier takes it where it is less work (``WINNERS_MAX_WORK``: 5x5 or 3x3 filters under a 2x2 or
larger pool); the first layer's input gradient is work only the ascent step does, so this
weighs most on the robust/plain step ratio. Otherwise dx = col2im(W.T @ drows):

Why chunks for dx: ``W.T @ drows`` is as big as im2col's columns, KH*KW times the input (63 MB
for the larger benchmark net's second convolution at batch 100). Written whole, it has left the
cache before col2im reads it back. A chunk of about ``CHUNK_BYTES`` stays in cache between the
two: measured on that convolution (two runs), its backward went from 21.5 to 18.8-18.9 ms and
its input-only backward (the ascent's) from 14.6-14.7 to 12.0-12.5 ms. Chunking the forward's
im2col and product the same way was slower (14.4 -> 15.5-16.6 ms: the product runs less
efficiently on fewer columns), so the forward stays whole. Convolutions whose columns fit in
one chunk (the paper's net) run as before.

The stage owns no parameters: it uses the Conv2D's, and writes the Conv2D's ``grads``, so
optimisers, checkpoints and ``Sequential.gradients()`` see no difference. Only the fast tier
fuses (``Sequential`` decides); with ``kernels.policy("never")`` every layer runs on its own,
which is the path to step through when learning. Tests check both give the same numbers.
"""

from __future__ import annotations

import numpy as np

from .kernels import get_op, tier_for
from .kernels.reference import window_patch
from .layers import Conv2D, MaxPool2D, ReLU

# Bytes of the input gradient's columns per chunk. 8 MB measured best of 2-16 MB on a 2-core
# AMD EPYC (2 MB L2 per core, 32 MB L3); the paper's net (<= 5.8 MB) never splits.
CHUNK_BYTES = 8 << 20

# The input gradient goes straight from the pool winners when that takes at most this fraction
# of the multiply-adds of W.T @ drows. Per window and input channel it is one (TH, TW) patch per
# filter, against KH*KW positions times a CKH x CKW filter: 49 / (9 * 25) = 0.22 on the paper
# net's first convolution, 36 / (4 * 25) = 0.36 on the other three benchmark convolutions.
# Whole steps at batch 100, one process, the same code with and without it: paper net robust
# step 10.8 -> 9.2 ms (plain 5.8 either way); on the larger net's second convolution robust
# 72 -> 62 ms, plain 43 -> 45 ms. A 1x1 pool (ratio 1) keeps the product, which BLAS runs faster.
WINNERS_MAX_WORK = 0.5


def can_fuse(layers) -> bool:
    """True for Conv2D, ReLU, MaxPool2D in this order with an unpadded pool."""
    if len(layers) != 3:
        return False
    conv, relu, pool = layers
    return (isinstance(conv, Conv2D) and isinstance(relu, ReLU) and isinstance(pool, MaxPool2D)
            and pool.padding == (0, 0))


def image_chunks(n_images: int, bytes_per_image: int, budget: int | None = None) -> list:
    """Split range(n_images) into near-equal (start, stop) chunks of at most ``budget`` bytes
    (default ``CHUNK_BYTES``), at least one image each."""
    budget = CHUNK_BYTES if budget is None else budget
    per_chunk = max(1, budget // max(1, bytes_per_image))
    n_chunks = -(-n_images // per_chunk)
    size = -(-n_images // n_chunks)
    return [(i, min(i + size, n_images)) for i in range(0, n_images, size)]


class ConvReluPool:
    """The fused stage. Same forward/backward contract as a layer with parameters."""

    def __init__(self, conv: Conv2D, relu: ReLU, pool: MaxPool2D):
        if not can_fuse([conv, relu, pool]):
            raise ValueError("ConvReluPool needs Conv2D, ReLU, MaxPool2D (unpadded)")
        self.conv, self.relu, self.pool = conv, relu, pool
        self.params = conv.params  # so that Sequential finds the first stage with parameters
        self.name = f"{conv.name}+{relu.name}+{pool.name}"
        self._pos = self._conv_hw = self._x_shape = None

    def forward(self, x, train=False):
        rows = self.conv.forward_rows(x)  # checks x, keeps im2col's columns for backward
        (KH, KW), (SH, SW) = self.pool.kernel_size, self.pool.stride
        OH, OW = self.conv.output_shape(x.shape[1:])[1:]
        y, self._pos = get_op("rows_relu_maxpool", rows)(rows, self.conv.params.get("b"),
                                                          x.shape[0], OH, OW, KH, KW, SH, SW)
        self._conv_hw, self._x_shape = (OH, OW), x.shape
        return y

    def backward(self, dy, param_grads=True, input_grad=True):
        if self._pos is None:
            raise RuntimeError("ConvReluPool.backward called before forward")
        (KH, KW), (SH, SW) = self.pool.kernel_size, self.pool.stride
        OH, OW = self._conv_hw
        to_rows = get_op("relu_maxpool_to_rows", dy)
        drows = None
        if param_grads:
            drows, db = to_rows(dy, self._pos, OH, OW, KH, KW, SH, SW)
            self.conv.backward_rows(drows, db, param_grads=True, input_grad=False)
        if not input_grad:
            return None
        if self._input_grad_from_winners(dy):
            conv = self.conv
            return get_op("conv_relu_maxpool_input_grad", dy)(dy, self._pos, conv.params["W"], self._x_shape, OH, OW,
                                                              KH, KW, SH, SW, conv.stride, conv.padding)
        N, S = self._x_shape[0], OH * OW
        K = self.conv.in_channels * self.conv.kernel_size[0] * self.conv.kernel_size[1]
        dx = None
        for start, stop in image_chunks(N, K * S * dy.itemsize):
            if drows is not None:  # this chunk's columns of the rows' gradient (a strided view)
                drows_chunk = drows[:, start * S : stop * S]
            else:  # the ascent: no parameter gradients, so build only this chunk's rows
                drows_chunk, _ = to_rows(dy[start:stop], self._pos[start:stop], OH, OW, KH, KW, SH, SW)
            dx_chunk = self.conv.input_gradient_from_rows(drows_chunk, (stop - start,) + self._x_shape[1:])
            if start == 0 and stop == N:  # one chunk: no copy
                return dx_chunk
            if dx is None:
                dx = np.empty(self._x_shape, dtype=dy.dtype)
            dx[start:stop] = dx_chunk
        return dx

    def _input_grad_from_winners(self, dy) -> bool:
        """Take dx straight from the pool winners (one kernel) rather than drows -> W.T @ drows
        -> col2im? On the fast CPU tier, when it is less work (``WINNERS_MAX_WORK``)."""
        if tier_for(dy) != "cpu":
            return False
        (KH, KW), (CKH, CKW) = self.pool.kernel_size, self.conv.kernel_size
        TH, TW = window_patch(KH, KW, self.conv.stride, self.conv.kernel_size)
        return TH * TW <= WINNERS_MAX_WORK * KH * KW * CKH * CKW

    def __repr__(self):
        return f"ConvReluPool({self.conv!r}, {self.pool!r})"
