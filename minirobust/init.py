"""Seeded weight initialisers.

Each takes a NumPy ``Generator`` so that the same seed builds the same net on every
backend (weights are drawn on the host, then moved).

fan_in / fan_out: for Dense (in, out); for Conv2D (C*KH*KW, F*KH*KW).
"""

from __future__ import annotations

import numpy as np


def he_normal(shape, fan_in, rng, dtype=np.float32):
    """N(0, 2/fan_in): keeps activations' variance through ReLU layers (He et al. 2015)."""
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(dtype)


def glorot_uniform(shape, fan_in, fan_out, rng, dtype=np.float32):
    """U(-a, a) with a = sqrt(6/(fan_in+fan_out)) (Glorot & Bengio 2010; Keras' default)."""
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape).astype(dtype)


INITIALISERS = ("he", "glorot")


def make_rng(seed_or_rng):
    """A Generator from a seed, a Generator, or None (fresh entropy)."""
    if isinstance(seed_or_rng, np.random.Generator):
        return seed_or_rng
    return np.random.default_rng(seed_or_rng)
