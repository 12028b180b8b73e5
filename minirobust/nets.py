"""The paper's architectures and small nets for tests and lessons.

Every builder takes ``seed`` (same seed, same weights, on every backend), ``dtype``, and
the input statistics for the Normalize layer that opens the net, so that the model's
input is raw [0, 1] pixel space.
"""

from __future__ import annotations

import numpy as np

from .errors import InputError
from .init import make_rng
from .layers import BatchNorm1D, BatchNorm2D, Conv2D, Dense, Dropout, Flatten, MaxPool2D, Normalize, ReLU
from .model import Sequential

# MNIST training-set pixel statistics on the [0, 1] scale (data.dataset_stats computes them)
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
# CIFAR-10 training-set per-channel (R, G, B) statistics on the [0, 1] scale (of the canonical
# images; data.dataset_stats(x, per_channel=True) computes them for the data at hand)
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)

# Zagoruyko's vgg_bn_drop (the net the paper's authors trained): blocks of 3x3 convs, each
# ending in 2x2 max-pooling; (channels, dropout after it) per conv, the block's last conv none
VGG_BLOCKS = [[(64, 0.3), (64, None)],
              [(128, 0.4), (128, None)],
              [(256, 0.4), (256, 0.4), (256, None)],
              [(512, 0.4), (512, 0.4), (512, None)],
              [(512, 0.4), (512, 0.4), (512, None)]]


def _seeds(seed, n):
    rng = make_rng(seed)
    return [int(s) for s in rng.integers(0, 2**31 - 1, size=n)]


def paper_mnist(seed=0, dtype=np.float32, mean=MNIST_MEAN, std=MNIST_STD) -> Sequential:
    """The authors' MNIST net, 105,506 parameters on 1x28x28 input.

    Conv 5x5 (1->32), ReLU, MaxPool 3x3/3, Conv 5x5 (32->64), ReLU, MaxPool 2x2/2,
    Dense 256->200, ReLU, Dense 200->10.  Shapes: 28 -> 24 -> 8 -> 4 -> 2; 64*2*2 = 256.
    """
    s = _seeds(seed, 4)
    return Sequential([
        Normalize(mean, std),
        Conv2D(1, 32, 5, seed=s[0], dtype=dtype), ReLU(), MaxPool2D(3, 3),
        Conv2D(32, 64, 5, seed=s[1], dtype=dtype), ReLU(), MaxPool2D(2, 2),
        Flatten(),
        Dense(256, 200, seed=s[2], dtype=dtype), ReLU(),
        Dense(200, 10, init="glorot", seed=s[3], dtype=dtype),
    ], dtype=dtype)


def large_mnist(seed=0, dtype=np.float32, mean=MNIST_MEAN, std=MNIST_STD) -> Sequential:
    """A bigger MNIST net (32/64 5x5 'same' filters, 2x2 pools, a 1024-unit dense layer),
    the usual TensorFlow-tutorial net, used as the larger benchmark."""
    s = _seeds(seed, 4)
    return Sequential([
        Normalize(mean, std),
        Conv2D(1, 32, 5, padding=2, seed=s[0], dtype=dtype), ReLU(), MaxPool2D(2, 2),
        Conv2D(32, 64, 5, padding=2, seed=s[1], dtype=dtype), ReLU(), MaxPool2D(2, 2),
        Flatten(),
        Dense(64 * 7 * 7, 1024, seed=s[2], dtype=dtype), ReLU(),
        Dense(1024, 10, init="glorot", seed=s[3], dtype=dtype),
    ], dtype=dtype)


def tiny_convnet(in_channels=1, size=8, classes=3, seed=0, dtype=np.float64) -> Sequential:
    """conv-pool-conv-pool-dense-dense small enough for elementwise gradient checks.

    Exercises padding, stride > 1 and overlapping pooling on a (in_channels, size, size) input.
    """
    s = _seeds(seed, 4)
    c1 = Conv2D(in_channels, 3, 3, stride=1, padding=1, seed=s[0], dtype=dtype)
    p1 = MaxPool2D(3, 2, padding=1)  # overlapping, padded
    c2 = Conv2D(3, 4, 3, stride=2, padding=1, seed=s[1], dtype=dtype)
    p2 = MaxPool2D(2, 1)
    shape = (in_channels, size, size)
    for layer in (c1, p1, c2, p2):
        shape = layer.output_shape(shape)
    flat = int(np.prod(shape))
    return Sequential([
        Normalize(0.5, 0.25), c1, ReLU(), p1, c2, ReLU(), p2, Flatten(),
        Dense(flat, 6, seed=s[2], dtype=dtype), ReLU(), Dense(6, classes, seed=s[3], dtype=dtype),
    ], dtype=dtype)


def mlp(in_features, hidden=(64,), classes=10, seed=0, dtype=np.float32) -> Sequential:
    """Flatten, then Dense+ReLU layers, then a Dense classifier."""
    sizes = [in_features, *hidden]
    s = _seeds(seed, len(sizes))
    layers = [Flatten()]
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers += [Dense(a, b, seed=s[i], dtype=dtype), ReLU()]
    layers.append(Dense(sizes[-1], classes, init="glorot", seed=s[-1], dtype=dtype))
    return Sequential(layers, dtype=dtype)


def paper_cifar10(width=1.0, dropout=1.0, seed=0, dtype=np.float32, mean=CIFAR10_MEAN, std=CIFAR10_STD,
                  bn_eps=1e-3) -> Sequential:
    """The authors' CIFAR-10 net, Zagoruyko's ``vgg_bn_drop``, on 3x32x32 input.

    13 convs 3x3 pad 1 (64,64 / 128,128 / 256x3 / 512x3 / 512x3), each followed by
    BatchNorm2D (eps 1e-3) and ReLU, each block ending in 2x2 max-pooling (32 -> 1); dropout
    0.3 after the first conv and 0.4 after the other non-final convs of each block. Classifier:
    Dropout 0.5, Dense 512->512, BatchNorm1D, ReLU, Dropout 0.5, Dense 512->10.

    ``width`` scales every channel count (0.25: 16 ... 128 channels), so a CPU can train a
    narrower net of the same shape; ``dropout`` scales every dropout rate (0: none). At
    width 1, dropout 1 it has 15.0 million parameters.
    """
    if not (0 < width <= MAX_CIFAR_WIDTH) or dropout < 0:
        raise InputError(f"paper_cifar10: need 0 < width <= {MAX_CIFAR_WIDTH} (width 4 is 240 M parameters) and "
                         f"dropout >= 0, got {width}, {dropout}")

    def ch(c):
        return max(1, int(round(c * width)))

    def drop(p, i):
        return [Dropout(min(p * dropout, 0.95), seed=s[i])] if p and dropout else []

    s = _seeds(seed, 32)
    layers, c_in, i = [Normalize(mean, std)], 3, 0
    for block in VGG_BLOCKS:
        for c_out, p in block:
            layers += [Conv2D(c_in, ch(c_out), 3, padding=1, init="he", seed=s[i], dtype=dtype),
                       BatchNorm2D(ch(c_out), eps=bn_eps, dtype=dtype), ReLU(), *drop(p, i + 16)]
            c_in, i = ch(c_out), i + 1
        layers.append(MaxPool2D(2, 2))
    hidden = ch(512)
    layers += [Flatten(), *drop(0.5, 29), Dense(c_in, hidden, seed=s[13], dtype=dtype),
               BatchNorm1D(hidden, eps=bn_eps, dtype=dtype), ReLU(), *drop(0.5, 30),
               Dense(hidden, 10, seed=s[14], dtype=dtype)]
    return Sequential(layers, dtype=dtype)


MAX_CIFAR_WIDTH = 4.0

NETS = {"paper-mnist": paper_mnist, "large-mnist": large_mnist, "paper-cifar10": paper_cifar10}
