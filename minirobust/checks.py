"""Input checks with errors that name the problem.

Layers call these once per forward pass; the cost is a few attribute reads, except
``check_finite`` which scans the array (the model does it once, on its input).
"""

from __future__ import annotations

import numpy as np

from .backend import get_xp
from .errors import InputError


def check_array(x, name="input"):
    """x must be a NumPy or CuPy array (not a list, not a scalar)."""
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise InputError(f"{name} must be an array, got {type(x).__name__}")
    get_xp(x)  # recognised array type


def check_float(x, name="input"):
    """x must have a floating dtype (images: convert uint8 with data.to_float first)."""
    check_array(x, name)
    if x.dtype.kind != "f":
        raise InputError(
            f"{name} has dtype {x.dtype}; a floating dtype (float32 or float64) is required "
            "(convert uint8 images to [0, 1] floats first)"
        )


def check_rank(x, ndim, layout, name="input"):
    """x must have ``ndim`` axes; ``layout`` names them in the message, e.g. '(N, C, H, W)'."""
    if x.ndim != ndim:
        raise InputError(f"{name} must have {ndim} axes {layout}, got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise InputError(f"{name} is an empty batch (shape {tuple(x.shape)}); N must be >= 1")


def check_axis(x, axis, expected, what, name="input"):
    """x.shape[axis] must equal ``expected``."""
    if x.shape[axis] != expected:
        raise InputError(
            f"{name} has {x.shape[axis]} {what} (shape {tuple(x.shape)}), expected {expected}"
        )


def check_finite(x, name="input"):
    """x must contain no NaN or inf."""
    xp = get_xp(x)
    if not bool(xp.isfinite(x).all()):
        n_nan = int(xp.isnan(x).sum())
        n_inf = int(xp.isinf(x).sum())
        raise InputError(f"{name} contains non-finite values ({n_nan} NaN, {n_inf} inf)")


def check_labels(y, n, num_classes, name="labels"):
    """y must be n integer class indices in [0, num_classes)."""
    check_array(y, name)
    if y.dtype.kind not in "iu":
        raise InputError(f"{name} must be integers, got dtype {y.dtype}")
    if y.ndim != 1 or y.shape[0] != n:
        raise InputError(f"{name} must have shape ({n},), got {tuple(y.shape)}")
    if n:
        low, high = get_xp(y).stack([y.min(), y.max()]).tolist()  # one copy back from a GPU, not two
        if low < 0 or high >= num_classes:
            raise InputError(f"{name} out of range: values in [{low}, {high}], expected [0, {num_classes - 1}]")


def as_pair(v, name):
    """An int or a pair of ints -> (a, b), with a clear error for anything else."""
    if isinstance(v, (int, np.integer)):
        return int(v), int(v)
    if isinstance(v, (tuple, list)) and len(v) == 2 and all(isinstance(a, (int, np.integer)) for a in v):
        return int(v[0]), int(v[1])
    raise InputError(f"{name} must be an int or a pair of ints, got {v!r}")
