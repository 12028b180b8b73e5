"""Conv2D -> ReLU -> MaxPool2D as one stage: the same function as the three layers, faster.

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

Two ways to the input gradient, equal in value; the kernel tier picks (``kernels.tuning``):
  * through the rows: dx = col2im(W.T @ drows), a chunk of images at a time when the tier gives
    a chunk size (``INPUT_GRAD_CHUNK_BYTES``: columns that stay in cache between the product and
    col2im);
  * from the pool winners: ``conv_relu_maxpool_input_grad`` sums dy * (W[f] shifted to the
    winner's place) into each window's patch of the input: no drows, no columns, and it skips
    the non-winners and the windows ReLU blocked (``prefers_winners_input_grad`` says where
    this is less work on that tier). The first layer's input gradient is work only the ascent
    step of robust training does, so this choice weighs on the robust/plain step ratio.

The stage owns what only it needs (its columns, its scratch memory, the pool winners) and uses
the convolution's products from layers.py (``conv_rows``, ``conv_weight_gradient``,
``conv_input_gradient``), the same functions Conv2D's own forward and backward call. It owns no
parameters: it uses the Conv2D's, and writes the Conv2D's ``grads``, so
optimisers, checkpoints and ``Sequential.gradients()`` see no difference. Whether a model runs
these stages is its own visible choice (``Sequential(..., fuse=...)``, shown in its ``repr``);
``model.fuse = False`` runs every layer on its own, on the same kernel tier, which is the path
to step through when learning. Tests check both give the same numbers.
"""

from __future__ import annotations

from .backend import get_xp
from .kernels import get_op, offers_fused, tuning
from .layers import Conv2D, MaxPool2D, ReLU, Scratch, conv_input_gradient, conv_rows, conv_weight_gradient


def can_fuse(layers) -> bool:
    """True for Conv2D, ReLU, MaxPool2D in this order with an unpadded pool."""
    if len(layers) != 3:
        return False
    conv, relu, pool = layers
    return (isinstance(conv, Conv2D) and isinstance(relu, ReLU) and isinstance(pool, MaxPool2D)
            and pool.padding == (0, 0))


def tier_offers_fusion(x=None) -> bool:
    """Does the kernel tier for arrays like ``x`` offer this fused stage (``fuse="auto"``)?"""
    return offers_fused("conv_relu_maxpool", x)


def image_chunks(n_images: int, bytes_per_image: int, budget: int | None) -> list:
    """Split range(n_images) into near-equal (start, stop) chunks of at most ``budget`` bytes,
    at least one image each; one chunk when ``budget`` is None."""
    if budget is None:
        return [(0, n_images)]
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
        self._pos = self._conv_hw = self._x_shape = self._cols = None
        self.scratch = Scratch()

    def forward(self, x, train=False):
        OH, OW = self.conv.check_input(x)
        rows, self._cols = conv_rows(self.conv, x, self.scratch)  # the columns are kept for dW
        (KH, KW), (SH, SW) = self.pool.kernel_size, self.pool.stride
        y, self._pos = get_op("rows_relu_maxpool", rows)(rows, self.conv.params.get("b"),
                                                          x.shape[0], OH, OW, KH, KW, SH, SW)
        self._conv_hw, self._x_shape = (OH, OW), x.shape
        # the three layers did not run on their own: what an earlier layer-by-layer forward left
        # in them is stale, and a backward stepped through them must say so
        for layer in (self.conv, self.relu, self.pool):
            layer.forget()
        return y

    def backward(self, dy, param_grads=True, input_grad=True):
        if self._pos is None:
            raise RuntimeError("ConvReluPool.backward called before forward")
        drows = None
        if param_grads:
            drows, db = self._rows_gradient(dy, self._pos)
            self.conv.grads["W"] = conv_weight_gradient(self.conv, self._cols, drows)
            if self.conv.bias:
                self.conv.grads["b"] = db
        if not input_grad:
            return None
        if self._input_grad_from_winners(dy):
            return self._input_grad_winners(dy)
        return self._input_grad_through_rows(dy, drows)

    def _rows_gradient(self, dy, pos):
        """(drows, db): the pooled gradient routed back onto the conv product rows."""
        (KH, KW), (SH, SW) = self.pool.kernel_size, self.pool.stride
        OH, OW = self._conv_hw
        return get_op("relu_maxpool_to_rows", dy)(dy, pos, OH, OW, KH, KW, SH, SW)

    def _input_grad_from_winners(self, dy) -> bool:
        """The kernel tier's choice between the two equal paths to dx."""
        return tuning("prefers_winners_input_grad", dy)(self.pool.kernel_size, self.conv.stride,
                                                         self.conv.kernel_size)

    def _input_grad_winners(self, dy):
        (KH, KW), (SH, SW) = self.pool.kernel_size, self.pool.stride
        OH, OW = self._conv_hw
        conv = self.conv
        return get_op("conv_relu_maxpool_input_grad", dy)(dy, self._pos, conv.params["W"], self._x_shape, OH, OW,
                                                          KH, KW, SH, SW, conv.stride, conv.padding)

    def _input_grad_through_rows(self, dy, drows):
        """dx = col2im(W.T @ drows), a chunk of images at a time if the tier asks for it."""
        N, S = self._x_shape[0], self._conv_hw[0] * self._conv_hw[1]
        K = self.conv.in_channels * self.conv.kernel_size[0] * self.conv.kernel_size[1]
        chunks = image_chunks(N, K * S * dy.itemsize, tuning("INPUT_GRAD_CHUNK_BYTES", dy))
        dx = None
        for start, stop in chunks:
            if drows is not None:  # this chunk's columns of the rows' gradient (a strided view)
                drows_chunk = drows[:, start * S : stop * S]
            else:  # the ascent: no parameter gradients, so build only this chunk's rows
                drows_chunk, _ = self._rows_gradient(dy[start:stop], self._pos[start:stop])
            dx_chunk = conv_input_gradient(self.conv, drows_chunk, (stop - start,) + self._x_shape[1:], self.scratch)
            if len(chunks) == 1:  # no copy
                return dx_chunk
            if dx is None:
                dx = get_xp(dy).empty(self._x_shape, dtype=dy.dtype)
            dx[start:stop] = dx_chunk
        return dx

    def __repr__(self):
        return f"ConvReluPool({self.conv!r}, {self.relu!r}, {self.pool!r})"
