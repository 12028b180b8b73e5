"""The paper's architectures and small nets for tests and lessons.

Every builder takes ``seed`` (same seed, same weights, on every backend), ``dtype``, and
the input statistics for the Normalize layer that opens the net, so that the model's
input is raw [0, 1] pixel space.
"""

from __future__ import annotations

import numpy as np

from .init import make_rng
from .layers import Conv2D, Dense, Flatten, MaxPool2D, Normalize, ReLU
from .model import Sequential

# MNIST training-set pixel statistics on the [0, 1] scale (data.dataset_stats computes them)
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


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


NETS = {"paper-mnist": paper_mnist, "large-mnist": large_mnist}
