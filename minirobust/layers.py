"""Layers with hand-written backward passes.

The contract (CS231n's, the clearest for learners):

    y  = layer.forward(x, train=False)   # keeps what backward needs
    dx = layer.backward(dy)              # returns dL/dx; fills layer.grads (same keys as layer.params)

``dy`` is never modified. ``backward(dy, param_grads=False)`` skips the parameter
gradients: the ascent step of robust training only needs dL/dx. Layers with parameters
also take ``input_grad=False`` (skip dL/dx, return None): the first layer of a descent
step needs only its parameter gradients. Backward always refers to the most recent
forward call.

Shapes use the notation of ``kernels/reference.py``: N batch, C channels, H W height
width, KH KW kernel, SH SW stride, PH PW padding, OH OW output, F filters.
"""

from __future__ import annotations

import numpy as np

from . import checks
from .backend import get_xp, to_device
from .errors import InputError
from .init import glorot_uniform, he_normal, make_rng
from .kernels import get_op
from .kernels.reference import output_size


class Layer:
    """Base class: no parameters, identity config. Subclasses override forward/backward."""

    kind = "layer"

    def __init__(self):
        self.params: dict = {}
        self.grads: dict = {}
        self.running: dict = {}  # state that is learned but not trained (BatchNorm's statistics)
        self.name: str | None = None

    def forward(self, x, train: bool = False):
        raise NotImplementedError

    def backward(self, dy, param_grads: bool = True):
        raise NotImplementedError

    kept: tuple = ()  # the attributes forward keeps for backward

    @classmethod
    def declared_shapes(cls, config: dict) -> dict:
        """{name: shape} of every array the layer stores (parameters and running statistics) for a
        ``config()`` dict, computed without building the layer: what a checkpoint's architecture
        implies, checked before anything is allocated. Raises ValueError for a malformed config."""
        return {}

    def forget(self):
        """Drop what the last forward kept for backward (and any scratch memory): a backward
        before the next forward then says so, instead of using stale values. A model calls it on
        layers it ran another way (a fused stage) or moved to another device."""
        for name in self.kept:
            setattr(self, name, None)

    def config(self) -> dict:
        """JSON-friendly constructor arguments (no arrays): rebuilds the layer's shape."""
        return {}

    def output_shape(self, input_shape):
        """Shape of forward(x) for x of ``input_shape`` (without N)."""
        return tuple(input_shape)

    def astype(self, dtype):
        """Cast parameters to ``dtype`` in place; returns self."""
        for k, v in self.params.items():
            self.params[k] = v.astype(dtype)
        for k, v in self.running.items():
            self.running[k] = v.astype(dtype)
        self.grads = {}
        return self

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"


def _require_forward(layer, attr):
    if getattr(layer, attr, None) is None:
        raise RuntimeError(f"{type(layer).__name__}.backward called before forward")


def _positive(config, key) -> int:
    """``config[key]`` as a positive whole number, or ValueError (configs may come from files)."""
    value = config[key]
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{key} must be a positive integer, got {value!r}")
    return value


class Scratch:
    """Scratch arrays kept between calls and never handed to a caller: a fresh array every step
    costs page faults. One flat array per name serves every smaller shape too (a fused stage's
    last chunk of images may be smaller than the others), so the memory stays put."""

    def __init__(self):
        self._arrays = {}

    def get(self, name, shape, like):
        size = int(np.prod(shape))
        buf = self._arrays.get(name)
        if buf is None or buf.size < size or buf.dtype != like.dtype or get_xp(buf) is not get_xp(like):
            buf = get_xp(like).empty(size, dtype=like.dtype)
            self._arrays[name] = buf
        return buf[:size].reshape(shape)


# ----- the convolution as matrix products: Conv2D and the fused stage (fused.py) both use these ----

def conv_rows(conv, x, scratch):
    """x (N, C, H, W) -> (rows (F, N*OH*OW) = W.reshape(F, K) @ cols, cols (K, N*OH*OW)), no bias."""
    (KH, KW), (SH, SW), (PH, PW) = conv.kernel_size, conv.stride, conv.padding
    (N, C), (OH, OW) = x.shape[:2], conv.output_shape(x.shape[1:])[1:]
    cols = get_op("im2col", x)(x, KH, KW, SH, SW, PH, PW, out=scratch.get("cols", (C * KH * KW, N * OH * OW), x))
    return conv.params["W"].reshape(conv.out_channels, -1) @ cols, cols


def conv_weight_gradient(conv, cols, dy_rows):
    """dW from the gradient of the rows: dy_rows @ cols.T, computed as (cols @ dy_rows.T).T (the
    same numbers; OpenBLAS runs this orientation 20-30% faster on the benchmark nets' shapes)."""
    return (cols @ dy_rows.T).T.reshape(conv.params["W"].shape)


def conv_input_gradient(conv, dy_rows, x_shape, scratch):
    """dL/dx for inputs of ``x_shape`` from the gradient of their product rows (F, P):
    col2im(W.T @ dy_rows). ``x_shape`` may cover only some images of a batch (the fused stage
    goes a chunk at a time); the rows are then those images' columns."""
    (KH, KW), (SH, SW), (PH, PW) = conv.kernel_size, conv.stride, conv.padding
    K = conv.in_channels * KH * KW
    dcols = scratch.get("dcols", (K, dy_rows.shape[1]), dy_rows)
    get_xp(dy_rows).matmul(conv.params["W"].reshape(conv.out_channels, K).T, dy_rows, out=dcols)  # (K, P)
    return get_op("col2im", dcols)(dcols, tuple(x_shape), KH, KW, SH, SW, PH, PW)


class Conv2D(Layer):
    """2-D convolution (cross-correlation, as in every DL library) with zero padding.

    x: (N, C, H, W) -> y: (N, F, OH, OW);  W: (F, C, KH, KW), b: (F,).
    Computed as im2col then one matrix product: y = W.reshape(F, K) @ cols + b.
    """

    kind = "conv2d"
    kept = ("_x_shape", "_cols")

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 bias=True, init="glorot", seed=None, dtype=np.float32):
        super().__init__()
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = checks.as_pair(kernel_size, "kernel_size")
        self.stride = checks.as_pair(stride, "stride")
        self.padding = checks.as_pair(padding, "padding")
        self.bias, self.init = bool(bias), init
        if min(self.kernel_size) < 1 or min(self.stride) < 1 or min(self.padding) < 0:
            raise InputError(f"Conv2D: kernel and stride must be >= 1 and padding >= 0, got "
                             f"{self.kernel_size}, {self.stride}, {self.padding}")
        KH, KW = self.kernel_size
        fan_in, fan_out = in_channels * KH * KW, out_channels * KH * KW
        rng = make_rng(seed)
        shape = (out_channels, in_channels, KH, KW)
        if init == "he":
            W = he_normal(shape, fan_in, rng, dtype)
        elif init == "glorot":
            W = glorot_uniform(shape, fan_in, fan_out, rng, dtype)
        else:
            raise InputError(f"unknown init {init!r}: choose 'he' or 'glorot'")
        self.params["W"] = to_device(W)
        if self.bias:
            self.params["b"] = to_device(np.zeros(out_channels, dtype=dtype))
        self._x_shape = self._cols = None
        self.scratch = Scratch()

    def forget(self):
        super().forget()
        self.scratch = Scratch()  # a new one: a copy of this layer may share the old

    @classmethod
    def declared_shapes(cls, config):
        k = config["kernel_size"]
        kh, kw = k if isinstance(k, list) else [k, k]
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in (kh, kw)):
            raise ValueError(f"kernel_size must be positive integers, got {k!r}")
        f = _positive(config, "out_channels")
        shapes = {"W": (f, _positive(config, "in_channels"), kh, kw)}
        return {**shapes, "b": (f,)} if config.get("bias", True) else shapes

    def config(self):
        return dict(in_channels=self.in_channels, out_channels=self.out_channels,
                    kernel_size=list(self.kernel_size), stride=list(self.stride),
                    padding=list(self.padding), bias=self.bias, init=self.init)

    def output_shape(self, input_shape):
        C, H, W = input_shape
        (KH, KW), (SH, SW), (PH, PW) = self.kernel_size, self.stride, self.padding
        return (self.out_channels, output_size(H, KH, SH, PH), output_size(W, KW, SW, PW))

    def check_input(self, x):
        """Raise a clear error for a bad input; return the output size (OH, OW)."""
        checks.check_float(x, "Conv2D input")
        checks.check_rank(x, 4, "(N, C, H, W)", "Conv2D input")
        checks.check_axis(x, 1, self.in_channels, "channels", "Conv2D input")
        OH, OW = self.output_shape(x.shape[1:])[1:]
        if OH < 1 or OW < 1:
            raise InputError(f"Conv2D input {tuple(x.shape)} is smaller than the kernel {self.kernel_size}")
        return OH, OW

    def forward(self, x, train=False):
        OH, OW = self.check_input(x)
        rows, self._cols = conv_rows(self, x, self.scratch)  # the columns are kept for backward
        self._x_shape = x.shape
        # (F, N*OH*OW) + b -> contiguous (N, F, OH, OW), so the next layers read it in order
        return get_op("rows_to_nchw", rows)(rows, self.params.get("b"), x.shape[0], OH, OW)

    def backward(self, dy, param_grads=True, input_grad=True):
        _require_forward(self, "_cols")
        dy_rows = get_op("nchw_to_rows", dy)(dy)  # (F, P), a new array: dy is untouched
        if param_grads:
            self.grads["W"] = conv_weight_gradient(self, self._cols, dy_rows)
            if self.bias:
                self.grads["b"] = dy_rows.sum(axis=1)
        if not input_grad:
            return None
        return conv_input_gradient(self, dy_rows, self._x_shape, self.scratch)


class MaxPool2D(Layer):
    """Max pooling over KH x KW windows; padding is -inf so it never wins.

    x: (N, C, H, W) -> y: (N, C, OH, OW). Overlapping windows (stride < kernel) are
    supported; ties go to the first position in row-major window order.
    """

    kind = "maxpool2d"
    kept = ("_x_shape", "_argmax")

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size = checks.as_pair(kernel_size, "kernel_size")
        self.stride = checks.as_pair(stride if stride is not None else kernel_size, "stride")
        self.padding = checks.as_pair(padding, "padding")
        if min(self.kernel_size) < 1 or min(self.stride) < 1 or min(self.padding) < 0:
            raise InputError(f"MaxPool2D: kernel and stride must be >= 1 and padding >= 0, got "
                             f"{self.kernel_size}, {self.stride}, {self.padding}")
        if any(p > k // 2 for p, k in zip(self.padding, self.kernel_size)):
            # a window made only of padding would have no input to route its gradient to
            raise InputError(f"MaxPool2D: padding {self.padding} must be at most half the kernel {self.kernel_size}")
        self._x_shape = self._argmax = None

    def config(self):
        return dict(kernel_size=list(self.kernel_size), stride=list(self.stride), padding=list(self.padding))

    def output_shape(self, input_shape):
        C, H, W = input_shape
        (KH, KW), (SH, SW), (PH, PW) = self.kernel_size, self.stride, self.padding
        return (C, output_size(H, KH, SH, PH), output_size(W, KW, SW, PW))

    def forward(self, x, train=False):
        checks.check_float(x, "MaxPool2D input")
        checks.check_rank(x, 4, "(N, C, H, W)", "MaxPool2D input")
        (KH, KW), (SH, SW), (PH, PW) = self.kernel_size, self.stride, self.padding
        if output_size(x.shape[2], KH, SH, PH) < 1 or output_size(x.shape[3], KW, SW, PW) < 1:
            raise InputError(f"MaxPool2D input {tuple(x.shape)} is smaller than the window {self.kernel_size}")
        y, self._argmax = get_op("maxpool_forward", x)(x, KH, KW, SH, SW, PH, PW)
        self._x_shape = x.shape
        return y

    def backward(self, dy, param_grads=True):
        _require_forward(self, "_argmax")
        (KH, KW), (SH, SW), (PH, PW) = self.kernel_size, self.stride, self.padding
        return get_op("maxpool_backward", dy)(dy, self._argmax, self._x_shape, KH, KW, SH, SW, PH, PW)


class ReLU(Layer):
    """y = max(x, 0); the derivative at exactly 0 is taken as 0. Any shape."""

    kind = "relu"
    kept = ("_mask",)

    def __init__(self):
        super().__init__()
        self._mask = None

    def forward(self, x, train=False):
        checks.check_float(x, "ReLU input")
        self._mask = x > 0
        # maximum, not x * mask: relu(-inf) = 0 (not NaN) and relu(NaN) = NaN (never hidden)
        return get_xp(x).maximum(x, 0).astype(x.dtype, copy=False)

    def backward(self, dy, param_grads=True):
        _require_forward(self, "_mask")
        return dy * self._mask


class Dense(Layer):
    """Fully connected: y = x @ W + b.  x: (N, in), W: (in, out), b: (out,) -> y: (N, out)."""

    kind = "dense"
    kept = ("_x",)

    def __init__(self, in_features, out_features, bias=True, init="glorot", seed=None, dtype=np.float32):
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.bias, self.init = bool(bias), init
        rng = make_rng(seed)
        shape = (self.in_features, self.out_features)
        if init == "he":
            W = he_normal(shape, self.in_features, rng, dtype)
        elif init == "glorot":
            W = glorot_uniform(shape, self.in_features, self.out_features, rng, dtype)
        else:
            raise InputError(f"unknown init {init!r}: choose 'he' or 'glorot'")
        self.params["W"] = to_device(W)
        if self.bias:
            self.params["b"] = to_device(np.zeros(self.out_features, dtype=dtype))
        self._x = None

    def config(self):
        return dict(in_features=self.in_features, out_features=self.out_features, bias=self.bias, init=self.init)

    @classmethod
    def declared_shapes(cls, config):
        o = _positive(config, "out_features")
        shapes = {"W": (_positive(config, "in_features"), o)}
        return {**shapes, "b": (o,)} if config.get("bias", True) else shapes

    def output_shape(self, input_shape):
        return (self.out_features,)

    def forward(self, x, train=False):
        checks.check_float(x, "Dense input")
        checks.check_rank(x, 2, "(N, features)", "Dense input")
        checks.check_axis(x, 1, self.in_features, "features", "Dense input")
        self._x = x
        y = x @ self.params["W"]
        if self.bias:
            y += self.params["b"]
        return y

    def backward(self, dy, param_grads=True, input_grad=True):
        _require_forward(self, "_x")
        if param_grads:
            self.grads["W"] = self._x.T @ dy
            if self.bias:
                self.grads["b"] = dy.sum(axis=0)
        return dy @ self.params["W"].T if input_grad else None


class Flatten(Layer):
    """(N, d1, d2, ...) -> (N, d1*d2*...); backward reshapes back."""

    kind = "flatten"
    kept = ("_x_shape",)

    def __init__(self):
        super().__init__()
        self._x_shape = None

    def output_shape(self, input_shape):
        return (int(np.prod(input_shape)),)

    def forward(self, x, train=False):
        checks.check_array(x, "Flatten input")
        self._x_shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dy, param_grads=True):
        _require_forward(self, "_x_shape")
        return dy.reshape(self._x_shape)


class Dropout(Layer):
    """Inverted dropout: in training, zero each unit with probability p and scale the rest
    by 1/(1-p), so evaluation is the identity. Masks come from a seeded generator."""

    kind = "dropout"
    kept = ("_mask",)

    def __init__(self, p=0.5, seed=None):
        super().__init__()
        if not 0.0 <= float(p) < 1.0:
            raise InputError(f"Dropout probability must be in [0, 1), got {p}")
        self.p, self.seed = float(p), seed
        self.rng = make_rng(seed)
        self._mask = None

    def config(self):
        return dict(p=self.p, seed=self.seed if isinstance(self.seed, int) else None)

    def forward(self, x, train=False):
        checks.check_float(x, "Dropout input")
        if not train or self.p == 0.0:
            self._mask = 1.0
            return x
        xp = get_xp(x)
        keep = self.rng.random(x.shape) >= self.p  # drawn on the host: same mask on every backend
        self._mask = xp.asarray(keep / (1.0 - self.p), dtype=x.dtype)
        return x * self._mask

    def backward(self, dy, param_grads=True):
        _require_forward(self, "_mask")
        return dy * self._mask


class Normalize(Layer):
    """y = (x - mean) / std with fixed statistics, per channel or scalar.

    Put it first in a model so that the model's input stays in raw [0, 1] pixel space
    (where eps and the input bounds of attacks are defined). No trainable parameters.
    x: (N, C, H, W) or (N, D) -> same shape.
    """

    kind = "normalize"

    def __init__(self, mean, std):
        super().__init__()
        self.mean = [float(m) for m in np.atleast_1d(mean)]
        self.std = [float(s) for s in np.atleast_1d(std)]
        if len(self.mean) != len(self.std):
            raise InputError(f"Normalize: mean has {len(self.mean)} entries, std {len(self.std)}")
        if not all(np.isfinite(v) for v in self.mean + self.std) or not min(self.std) > 0:
            raise InputError(f"Normalize: mean and std must be finite and std positive, got {self.mean}, {self.std}")
        self._per_channel = None  # (key, mean, std): _stats' arrays for one array module, dtype and rank

    def config(self):
        return dict(mean=self.mean, std=self.std)

    def _stats(self, x):
        """(mean, std) to broadcast against x: Python floats for one channel (NumPy and CuPy
        cast them to x's dtype), else per-channel arrays made once per array module and dtype
        and kept, so a GPU forward pass copies nothing to the device."""
        if len(self.mean) == 1:
            return self.mean[0], self.std[0]
        checks.check_axis(x, 1, len(self.mean), "channels", "Normalize input")
        xp = get_xp(x)
        key = (xp.__name__, np.dtype(x.dtype).name, x.ndim)
        if self._per_channel is None or self._per_channel[0] != key:
            shape = (1, -1) + (1,) * (x.ndim - 2)
            self._per_channel = (key, xp.asarray(self.mean, dtype=x.dtype).reshape(shape),
                                 xp.asarray(self.std, dtype=x.dtype).reshape(shape))
        return self._per_channel[1:]

    def forward(self, x, train=False):
        checks.check_float(x, "Normalize input")
        mean, self._std = self._stats(x)
        return (x - mean) / self._std

    def backward(self, dy, param_grads=True):
        _require_forward(self, "_std")
        return dy / self._std

    _std = None


class BatchNorm(Layer):
    """Batch normalisation (Ioffe & Szegedy 2015), per channel (axis 1).

    Training (``train=True``): normalise with the batch's own mean and (biased) variance, and
    move the running statistics toward them:
        running = (1 - momentum) * running + momentum * batch   (the variance unbiased, m/(m-1))
    Evaluation: normalise with the running statistics, a fixed per-channel affine map.
    Either way y = gamma * x_hat + beta. In training the backward pass goes through the batch
    statistics too (every output depends on every input of its channel).
    """

    kind = "batchnorm"
    rank, layout = 2, "(N, C)"

    def __init__(self, num_features, eps=1e-3, momentum=0.1, dtype=np.float32):
        super().__init__()
        self.num_features, self.eps, self.momentum = int(num_features), float(eps), float(momentum)
        if self.num_features < 1 or self.eps <= 0 or not 0.0 <= self.momentum <= 1.0:
            raise InputError(f"{type(self).__name__}: need num_features >= 1, eps > 0, momentum in [0, 1]; "
                             f"got {num_features}, {eps}, {momentum}")
        C = self.num_features
        self.params["gamma"] = to_device(np.ones(C, dtype=dtype))
        self.params["beta"] = to_device(np.zeros(C, dtype=dtype))
        self.running["mean"] = to_device(np.zeros(C, dtype=dtype))
        self.running["var"] = to_device(np.ones(C, dtype=dtype))
        self._x_hat = None

    def config(self):
        return dict(num_features=self.num_features, eps=self.eps, momentum=self.momentum)

    @classmethod
    def declared_shapes(cls, config):
        n = (_positive(config, "num_features"),)
        return {"gamma": n, "beta": n, "mean": n, "var": n}  # parameters, then running statistics

    def forward(self, x, train=False):
        name = f"{type(self).__name__} input"
        checks.check_float(x, name)
        checks.check_rank(x, self.rank, self.layout, name)
        checks.check_axis(x, 1, self.num_features, "channels", name)
        x3 = x.reshape(x.shape[0], self.num_features, -1)  # (N, C, S)
        xp = get_xp(x)
        if train:
            m = x3.shape[0] * x3.shape[2]
            if m < 2:
                raise InputError(f"{type(self).__name__} in training needs more than one value per channel "
                                 f"(input {tuple(x.shape)}); use a batch of 2 or more")
            mean, var = get_op("batchnorm_stats", x3)(x3)
            k = self.momentum
            self.running["mean"] = ((1 - k) * self.running["mean"] + k * mean).astype(x.dtype)
            self.running["var"] = ((1 - k) * self.running["var"] + k * var * (m / (m - 1))).astype(x.dtype)
        else:
            mean, var = self.running["mean"], self.running["var"]
        self._inv_std = (1.0 / xp.sqrt(var + self.eps)).astype(x.dtype)
        y, self._x_hat = get_op("batchnorm_forward", x3)(x3, mean, self._inv_std, self.params["gamma"],
                                                         self.params["beta"])
        self._batch_stats, self._x_shape = bool(train), x.shape
        return y.reshape(x.shape)

    def backward(self, dy, param_grads=True):
        _require_forward(self, "_x_hat")
        dy3 = dy.reshape(self._x_hat.shape)
        dx, dgamma, dbeta = get_op("batchnorm_backward", dy3)(dy3, self._x_hat, self.params["gamma"],
                                                              self._inv_std, self._batch_stats)
        if param_grads:
            self.grads["gamma"], self.grads["beta"] = dgamma, dbeta
        return dx.reshape(self._x_shape)


class BatchNorm2D(BatchNorm):
    """BatchNorm over (N, C, H, W) images: statistics per channel over N, H and W."""

    kind = "batchnorm2d"
    rank, layout = 4, "(N, C, H, W)"


class BatchNorm1D(BatchNorm):
    """BatchNorm over (N, features): statistics per feature over the batch."""

    kind = "batchnorm1d"
    rank, layout = 2, "(N, features)"


LAYER_TYPES = {cls.kind: cls for cls in (Conv2D, MaxPool2D, ReLU, Dense, Flatten, Dropout, Normalize,
                                         BatchNorm2D, BatchNorm1D)}


def layer_from_config(kind: str, cfg: dict, dtype=np.float32) -> Layer:
    """Rebuild a layer (with freshly initialised parameters) from ``Layer.config()``."""
    if kind not in LAYER_TYPES:
        raise InputError(f"unknown layer type {kind!r}; known: {sorted(LAYER_TYPES)}")
    cls = LAYER_TYPES[kind]
    if cls in (Conv2D, Dense):
        return cls(**cfg, seed=0, dtype=dtype)
    if issubclass(cls, BatchNorm):
        return cls(**cfg, dtype=dtype)
    return cls(**cfg)
