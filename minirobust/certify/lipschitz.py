"""Lipschitz bounds: each layer's operator norm, their product, and the radius it certifies.

If every layer f_k is L_k-Lipschitz (in the norm at hand), the net is L = prod_k L_k Lipschitz,
so no perturbation smaller than eps can move a logit difference z_y - z_j by more than
    l_2:   sqrt(2) * L * eps     (the difference of two logits has weights e_y - e_j, of norm sqrt 2)
    l_inf: 2 * L * eps           (each logit moves by at most L * eps)
and a margin larger than that is a certificate: radius = margin / (sqrt(2) L) or margin / (2 L).
The product is usually very loose (Szegedy et al. 2014 computed exactly these per-layer norms);
it is here to be compared with IBP and with the attacks on the same weights.

Per layer, l_2: the largest singular value of the linear part, by power iteration on A^T A, with
A applied by the layer's own forward pass (bias off) and A^T by its own input-gradient pass.
Power iteration approaches the largest singular value from below; it is run until the estimate
changes by less than ``tol`` (relative), and slowly when the top two singular values are close
(a 3x3 convolution's are: 0.02% apart in the tests), so the product is an estimate, not a
guaranteed upper bound; with IBP it is compared, not relied on. l_inf: the largest absolute row sum, exact for Dense and
Conv2D (a convolution's row is its kernel; zero padding only removes terms). ReLU is 1-Lipschitz;
max pooling is 1-Lipschitz for l_inf and sqrt(windows covering one input) for l_2.
"""

from __future__ import annotations

import math

import numpy as np

from ..backend import get_xp, to_host
from ..errors import InputError
from ..layers import BatchNorm, Conv2D, Dense, Dropout, Flatten, MaxPool2D, Normalize, ReLU
from .ibp import Certificate
from .intervals import _twin


def spectral_norm(layer, input_shape, iters=1000, tol=1e-9, seed=0) -> float:
    """Largest singular value of a Dense / Conv2D layer's linear map on inputs of ``input_shape``
    (without N), by power iteration through the layer's forward and backward passes."""
    twin = _twin(layer, layer.params["W"])
    xp = get_xp(layer.params["W"])
    v = xp.asarray(np.random.default_rng(seed).standard_normal((1, *input_shape)), dtype=layer.params["W"].dtype)
    estimate = 0.0
    for _ in range(iters):
        v = v / xp.linalg.norm(v)
        w = twin.backward(twin.forward(v), param_grads=False)  # A^T A v
        new = math.sqrt(float(xp.linalg.norm(w)))
        v = w
        if abs(new - estimate) <= tol * new:
            return new
        estimate = new
    return estimate


def _row_sum_norm(layer) -> float:
    W = to_host(layer.params["W"])
    if isinstance(layer, Dense):  # y = x @ W: output j's row is the column W[:, j]
        return float(np.abs(W).sum(axis=0).max())
    return float(np.abs(W).reshape(W.shape[0], -1).sum(axis=1).max())  # per output channel


def layer_norms(model, input_shape, norm="2") -> list:
    """[(layer name, Lipschitz constant)] in the given norm ('2' or 'inf'), for inputs of shape
    ``input_shape`` (without N)."""
    if norm not in ("2", "inf"):
        raise InputError(f"Lipschitz bounds are for norm '2' or 'inf', got {norm!r}")
    out, shape = [], tuple(input_shape)
    for layer in model.layers:
        if isinstance(layer, (Conv2D, Dense)):
            value = spectral_norm(layer, shape) if norm == "2" else _row_sum_norm(layer)
        elif isinstance(layer, Normalize):
            value = 1.0 / min(layer.std)
        elif isinstance(layer, BatchNorm):  # evaluation mode: a per-channel scale
            scale = to_host(layer.params["gamma"]) / np.sqrt(to_host(layer.running["var"]) + layer.eps)
            value = float(np.abs(scale).max())
        elif isinstance(layer, MaxPool2D):
            (KH, KW), (SH, SW) = layer.kernel_size, layer.stride
            value = 1.0 if norm == "inf" else math.sqrt(math.ceil(KH / SH) * math.ceil(KW / SW))
        elif isinstance(layer, (ReLU, Flatten, Dropout)):
            value = 1.0
        else:
            raise InputError(f"no Lipschitz bound for layer {type(layer).__name__}")
        out.append((layer.name, value))
        shape = layer.output_shape(shape)
    return out


def lipschitz_constant(model, input_shape, norm="2") -> float:
    return math.prod(v for _, v in layer_norms(model, input_shape, norm))


def lipschitz_certify(model, x, y, eps, norm="2", constant=None) -> Certificate:
    """Certified where the margin z_y - max_{j != y} z_j exceeds what eps can change it by."""
    x_host, y = to_host(x), to_host(y)
    L = lipschitz_constant(model, x_host.shape[1:], norm) if constant is None else constant
    z = to_host(model.predict_logits(x_host, batch_size=500)).astype(np.float64)
    rows = np.arange(len(y))
    others = z.copy()
    others[rows, y] = -np.inf
    margin = z[rows, y] - others.max(axis=1)
    radius = np.maximum(margin, 0) / ((math.sqrt(2) if norm == "2" else 2.0) * L)
    return Certificate("lipschitz", norm, float(eps), (margin > 0) & (radius >= eps), radius)
