"""A synthetic, separable image task for tests, demos and lessons (no download needed).

Each class k owns a fixed random smooth "prototype" image; an example is its class's
prototype plus pixel noise, clipped to [0, 1]. A convnet separates the classes easily,
so a test can demand high accuracy after a short training run.
"""

from __future__ import annotations

import numpy as np


def _smooth(img, passes=2):
    """Blur by averaging each pixel with its 4 neighbours (edges wrap): smooth prototypes."""
    for _ in range(passes):
        img = (img + np.roll(img, 1, -1) + np.roll(img, -1, -1) + np.roll(img, 1, -2) + np.roll(img, -1, -2)) / 5
    return img


def separable_images(n, classes=10, shape=(1, 28, 28), noise=0.25, seed=0):
    """(x, y): x float32 (n, C, H, W) in [0, 1], y int64 (n,) balanced over ``classes``."""
    rng = np.random.default_rng(seed)
    proto_rng = np.random.default_rng(12345)  # prototypes fixed across calls: train/test share them
    protos = _smooth(proto_rng.random((classes, *shape)))
    protos = (protos - protos.min(axis=(1, 2, 3), keepdims=True))
    protos /= protos.max(axis=(1, 2, 3), keepdims=True)
    y = rng.permutation(np.arange(n) % classes).astype(np.int64)
    x = protos[y] + noise * rng.standard_normal((n, *shape))
    return np.clip(x, 0.0, 1.0).astype(np.float32), y
