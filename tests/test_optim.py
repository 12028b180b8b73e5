"""Optimisers against hand-computed updates."""

from __future__ import annotations

import numpy as np
import pytest

from minirobust.errors import InputError
from minirobust.layers import Dense
from minirobust.model import Sequential
from minirobust.optim import SGD, Adam


def _model():
    m = Sequential([Dense(2, 1, seed=0, dtype=np.float64)], dtype=np.float64)
    m.set_parameter("0_dense.W", np.array([[1.0], [2.0]]))
    m.set_parameter("0_dense.b", np.array([0.5]))
    return m


G = {"0_dense.W": np.array([[0.1], [-0.2]]), "0_dense.b": np.array([0.3])}


def test_sgd_momentum_weight_decay_and_lr_decay():
    m = _model()
    opt = SGD(m, lr=0.1, momentum=0.9, weight_decay=0.01, decay=0.5)
    W, v = np.array([[1.0], [2.0]]), np.zeros((2, 1))
    b, vb = np.array([0.5]), np.zeros(1)
    for t in range(3):
        lr = 0.1 / (1 + t * 0.5)
        v = 0.9 * v - lr * (G["0_dense.W"] + 0.01 * W)  # decay on weights
        vb = 0.9 * vb - lr * G["0_dense.b"]  # ... not on biases
        W, b = W + v, b + vb
        opt.step(G)
    np.testing.assert_allclose(m.parameters()["0_dense.W"], W)
    np.testing.assert_allclose(m.parameters()["0_dense.b"], b)
    assert opt.t == 3 and np.isclose(opt.current_lr(), 0.1 / 2.5)


def test_nesterov():
    m = _model()
    opt = SGD(m, lr=0.1, momentum=0.5, nesterov=True)
    opt.step(G)
    opt.step(G)
    g = G["0_dense.W"]
    v1 = -0.1 * g
    W1 = np.array([[1.0], [2.0]]) + 0.5 * v1 - 0.1 * g
    v2 = 0.5 * v1 - 0.1 * g
    np.testing.assert_allclose(m.parameters()["0_dense.W"], W1 + 0.5 * v2 - 0.1 * g)


def test_adam_first_steps():
    m = _model()
    opt = Adam(m, lr=0.01)
    opt.step(G)
    # bias-corrected first step moves every parameter by lr * sign(g) (up to eps)
    np.testing.assert_allclose(m.parameters()["0_dense.W"], np.array([[1.0 - 0.01], [2.0 + 0.01]]), rtol=1e-6)


def test_optimizer_minimises_quadratic():
    m = _model()
    opt = Adam(m, lr=0.05)
    for _ in range(500):  # minimise ||W||^2 + ||b||^2 : gradient 2W, 2b
        opt.step({k: 2 * v for k, v in m.parameters().items()})
    assert all(np.abs(v).max() < 1e-2 for v in m.parameters().values())


def test_optimizer_errors():
    with pytest.raises(InputError):
        SGD(_model(), lr=-1)
    with pytest.raises(InputError, match="Nesterov"):
        SGD(_model(), nesterov=True)
    with pytest.raises(InputError, match="no gradient"):
        SGD(_model()).step({})
