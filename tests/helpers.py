"""Small trained models shared by the robust-optimization tests."""

from __future__ import annotations

import functools

import pytest

from minirobust import nets
from minirobust.data import dataset_stats, load_mnist, to_float
from minirobust.robust import RobustTrainer, TrainConfig

from .conftest import SHARED_DATA


@functools.lru_cache(maxsize=1)
def mnist_arrays():
    if not (SHARED_DATA / "mnist" / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"real MNIST not found in {SHARED_DATA}")
    d = load_mnist(SHARED_DATA, download=False, log=lambda *_: None)
    mean, std = dataset_stats(d.x_train)
    return to_float(d.x_train), d.y_train, to_float(d.x_test), d.y_test, mean, std


def train_mnist(n_train=6000, epochs=1, norm=None, eps=0.0, seed=0, **cfg):
    x, y, _, _, mean, std = mnist_arrays()
    model = nets.paper_mnist(seed=seed, mean=mean, std=std)
    config = TrainConfig(epochs=epochs, norm=norm, eps=eps, seed=seed, **cfg)
    RobustTrainer(model, config, log=lambda *_: None, progress=False).fit(x[:n_train], y[:n_train])
    return model


@functools.lru_cache(maxsize=1)
def trained_baseline():
    return train_mnist()


def test_batch(n=300):
    _, _, xt, yt, _, _ = mnist_arrays()
    return xt[:n], yt[:n]


test_batch.__test__ = False  # a helper, not a test
