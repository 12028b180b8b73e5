"""Interval bound propagation (Gowal et al. 2018): sound bounds on every logit over an input box.

The input box is B = [x - eps, x + eps] intersected with [0, 1]. Each layer maps a box [l, u] to a
box that contains every output of a point of [l, u]:

    affine layer  y = A h + b   (Dense, Conv2D, Normalize, BatchNorm in eval mode)
                  centre c = (u + l) / 2, radius r = (u - l) / 2:
                  c' = A c + b,  r' = |A| r,  [l', u'] = [c' - r', c' + r']
    monotone      y = f(h) with f non-decreasing in each input (ReLU, MaxPool2D):
                  [l', u'] = [f(l), f(u)]
    shape only    Flatten, Dropout (the identity in evaluation): unchanged

The last Dense layer is folded into the question asked ("elision"): instead of bounding each
logit and subtracting bounds (loose), bound each margin z_y - z_j directly, a linear function of
the last hidden box with weights W_y - W_j:
    lower(z_y - z_j) = (W_y - W_j) c + (b_y - b_j) - |W_y - W_j| r.
If every such lower bound is > 0, no point of the box changes the prediction: a certificate.

Every rule has a hand-written backward pass (what IBP training needs): for r' = |A| r the gradient
reaches A through sign(A). The rules reuse the layers' own forward and backward passes, on twin
layers that hold A or |A| (so each tier's fast kernels serve the bounds too).
"""

from __future__ import annotations

import copy

from ..backend import get_xp
from ..errors import InputError
from ..layers import BatchNorm, Conv2D, Dense, Dropout, Flatten, MaxPool2D, Normalize, ReLU


def _twin(layer, weight):
    """A copy of a Conv2D / Dense layer with weight ``weight`` and no bias, with its own caches."""
    t = copy.copy(layer)
    t.params, t.grads, t.bias = {"W": weight}, {}, False
    t.forget()  # its own caches and scratch memory, not the original's
    return t


class AffineRule:
    """Dense and Conv2D: c' = W c + b, r' = |W| r."""

    def __init__(self, layer):
        self.layer = layer
        W = layer.params["W"]
        self.center, self.radius = _twin(layer, W), _twin(layer, abs(W))
        self.grads = {}

    def _bias_shape(self, y):
        return (1, -1) + (1,) * (y.ndim - 2)

    def forward(self, l, u):
        c, r = (u + l) / 2, (u - l) / 2
        c2, r2 = self.center.forward(c), self.radius.forward(r)
        if self.layer.bias:
            c2 = c2 + self.layer.params["b"].reshape(self._bias_shape(c2))
        return c2 - r2, c2 + r2

    def backward(self, dl, du):
        dc2, dr2 = dl + du, du - dl  # l' = c' - r', u' = c' + r'
        dc, dr = self.center.backward(dc2), self.radius.backward(dr2)
        W = self.layer.params["W"]
        self.grads = {"W": self.center.grads["W"] + get_xp(W).sign(W) * self.radius.grads["W"]}
        if self.layer.bias:
            self.grads["b"] = dc2.sum(axis=tuple(i for i in range(dc2.ndim) if i != 1))
        return (dc - dr) / 2, (dc + dr) / 2  # c = (u + l) / 2, r = (u - l) / 2


class MonotoneRule:
    """ReLU, MaxPool2D: non-decreasing in every input, so the bounds go through as they are."""

    def __init__(self, layer):
        self.lower, self.upper, self.grads = copy.copy(layer), copy.copy(layer), {}

    def forward(self, l, u):
        return self.lower.forward(l), self.upper.forward(u)

    def backward(self, dl, du):
        return self.lower.backward(dl), self.upper.backward(du)


class NormalizeRule:
    """(h - mean) / std with std > 0: increasing, so [l, u] -> [(l - m) / s, (u - m) / s]."""

    def __init__(self, layer):
        self.layer, self.grads = layer, {}

    def forward(self, l, u):
        return self.layer.forward(l), self.layer.forward(u)

    def backward(self, dl, du):
        return self.layer.backward(dl), self.layer.backward(du)  # dy / std, the same for both


class ShapeRule:
    """Flatten and Dropout (the identity in evaluation): the box's shape changes, nothing else."""

    def __init__(self, layer):
        self.layer, self.shape, self.grads = layer, None, {}

    def forward(self, l, u):
        self.shape = l.shape
        if isinstance(self.layer, Dropout):
            return l, u
        return l.reshape(l.shape[0], -1), u.reshape(u.shape[0], -1)

    def backward(self, dl, du):
        return dl.reshape(self.shape), du.reshape(self.shape)


class BatchNormRule:
    """BatchNorm in evaluation mode: per channel y = a h + (beta - a mean), a = gamma / sqrt(var + eps)."""

    def __init__(self, layer):
        self.layer, self.grads = layer, {}

    def _per_channel(self, v, like):
        return v.reshape((1, -1) + (1,) * (like.ndim - 2))

    def forward(self, l, u):
        L = self.layer
        self.inv_std = 1.0 / get_xp(l).sqrt(L.running["var"] + L.eps)
        a = self._per_channel(L.params["gamma"] * self.inv_std, l)
        shift = self._per_channel(L.params["beta"] - L.params["gamma"] * self.inv_std * L.running["mean"], l)
        self.c, self.r = (u + l) / 2, (u - l) / 2
        c2, r2 = a * self.c + shift, abs(a) * self.r
        return (c2 - r2).astype(l.dtype, copy=False), (c2 + r2).astype(l.dtype, copy=False)

    def backward(self, dl, du):
        L = self.layer
        gamma = L.params["gamma"]
        a = self._per_channel(gamma * self.inv_std, dl)
        dc2, dr2 = dl + du, du - dl
        axes = tuple(i for i in range(dl.ndim) if i != 1)
        centred = self.c - self._per_channel(L.running["mean"], dl)
        sign = self._per_channel(get_xp(gamma).sign(gamma), dl)
        self.grads = {"gamma": ((dc2 * centred + dr2 * sign * self.r).sum(axis=axes) * self.inv_std).astype(gamma.dtype),
                      "beta": dc2.sum(axis=axes)}
        dc, dr = a * dc2, abs(a) * dr2
        return ((dc - dr) / 2).astype(dl.dtype, copy=False), ((dc + dr) / 2).astype(dl.dtype, copy=False)


RULES = ((Conv2D, AffineRule), (Dense, AffineRule), (ReLU, MonotoneRule), (MaxPool2D, MonotoneRule),
         (Normalize, NormalizeRule), (Flatten, ShapeRule), (Dropout, ShapeRule), (BatchNorm, BatchNormRule))


def rule_for(layer):
    for kind, rule in RULES:
        if isinstance(layer, kind):
            return rule(layer)
    raise InputError(f"no interval bound rule for layer {type(layer).__name__}: IBP covers "
                     f"{', '.join(k.__name__ for k, _ in RULES)}")


def input_box(x, eps, bounds=(0.0, 1.0)):
    """[x - eps, x + eps], intersected with the input bounds (None: no bounds)."""
    xp = get_xp(x)
    lo, hi = x - eps, x + eps
    if bounds is not None:
        lo, hi = xp.clip(lo, bounds[0], bounds[1]), xp.clip(hi, bounds[0], bounds[1])
    return lo.astype(x.dtype, copy=False), hi.astype(x.dtype, copy=False)


class MarginElision:
    """The last Dense layer folded into the margins z_y - z_j (the tighter "elision" form)."""

    def __init__(self, layer):
        self.layer, self.grads = layer, {}

    def forward(self, l, u, y):
        xp = get_xp(l)
        W = self.layer.params["W"]  # (in, K)
        self.y, self.c, self.r = y, (u + l) / 2, (u - l) / 2
        self.D = W[:, y].T[:, :, None] - W[None, :, :]  # (N, in, K): W_y - W_j per example
        lower = xp.einsum("ni,nik->nk", self.c, self.D) - xp.einsum("ni,nik->nk", self.r, abs(self.D))
        if self.layer.bias:
            b = self.layer.params["b"]
            lower = lower + (b[y][:, None] - b[None, :])
        return lower  # (N, K); the y column is exactly 0

    def backward(self, dlower):
        xp = get_xp(dlower)
        N, K = dlower.shape
        dc = xp.einsum("nik,nk->ni", self.D, dlower)
        dr = -xp.einsum("nik,nk->ni", abs(self.D), dlower)
        dD = self.c[:, :, None] * dlower[:, None, :] - xp.sign(self.D) * self.r[:, :, None] * dlower[:, None, :]
        dW = -dD.sum(axis=0)  # every W_j gets -dD[:, :, j]
        onehot = xp.zeros((N, K), dtype=dlower.dtype)
        onehot[xp.arange(N), self.y] = 1
        dW += xp.einsum("nik,nc->ic", dD, onehot)  # W_y gets +sum_j dD[:, :, j]
        self.grads = {"W": dW}
        if self.layer.bias:
            self.grads["b"] = onehot.T @ dlower.sum(axis=1) - dlower.sum(axis=0)
        return (dc - dr) / 2, (dc + dr) / 2


class IntervalPass:
    """One interval pass through a model: ``logit_bounds`` (every logit), or ``margin_bounds``
    (the last layer elided) and then ``backward`` for the parameter and input gradients."""

    def __init__(self, model):
        self.model = model
        self.rules = [rule_for(layer) for layer in model.layers]

    def _input(self, x):
        return self.model.on_device(x, "IBP input").astype(self.model.dtype, copy=False)

    def logit_bounds(self, x, eps, bounds=(0.0, 1.0)):
        l, u = input_box(self._input(x), eps, bounds)
        for rule in self.rules:
            l, u = rule.forward(l, u)
        return l, u

    def margin_bounds(self, x, y, eps, bounds=(0.0, 1.0)):
        """Lower bounds (N, K) on z_y - z_j over the box (0 in column y)."""
        last = self.model.layers[-1]
        if not isinstance(last, Dense):
            raise InputError(f"margin bounds fold the last layer, which must be Dense, not {type(last).__name__}")
        x, y = self._input(x), self.model.on_device(y, "labels")
        l, u = input_box(x, eps, bounds)
        for rule in self.rules[:-1]:
            l, u = rule.forward(l, u)
        self.rules[-1] = MarginElision(last)
        return self.rules[-1].forward(l, u, y)

    def backward(self, dlower):
        """From dLoss/d(margin lower bounds): fills ``grads`` ({parameter name: gradient}) and returns
        the gradients with respect to the input box's lower and upper ends."""
        dl, du = self.rules[-1].backward(dlower)
        for rule in reversed(self.rules[:-1]):
            dl, du = rule.backward(dl, du)
        self.grads = {f"{layer.name}.{k}": v for layer, rule in zip(self.model.layers, self.rules)
                      for k, v in rule.grads.items()}
        return dl, du
