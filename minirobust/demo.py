"""The smallest complete run: build the paper's MNIST net, train it, print accuracy."""

from __future__ import annotations

import time

import numpy as np

from .data import dataset_stats, iterate_minibatches, load_mnist, separable_images, to_float
from .nets import paper_mnist
from .optim import SGD


def train_plain(model, opt, x, y, epochs=1, batch_size=100, seed=0, log=print):
    """Plain minibatch SGD (robust/ adds the ascent step to this loop)."""
    rng = np.random.default_rng(seed)
    for epoch in range(epochs):
        losses = []
        for xb, yb in iterate_minibatches(x, y, batch_size, rng=rng):
            loss, grads, _ = model.loss_and_grads(xb, yb)
            opt.step(grads)
            losses.append(loss)
        log(f"epoch {epoch + 1}/{epochs}: mean training loss {sum(losses) / len(losses):.4f}")


def run_demo(epochs=1, n_train=None, seed=0, synthetic=False, data_dir=None, log=print) -> float:
    """Train paper_mnist on MNIST (or the synthetic task) and return its test accuracy."""
    if synthetic:
        x, y = separable_images(n_train or 2000, seed=seed)
        xt, yt = separable_images(1000, seed=seed + 1)
        mean, std = float(x.mean()), float(x.std())
        what = "the synthetic separable task"
    else:
        d = load_mnist(data_dir, log=log)
        x, y, xt, yt = to_float(d.x_train), d.y_train, to_float(d.x_test), d.y_test
        if n_train:
            x, y = x[:n_train], y[:n_train]
        mean, std = dataset_stats(d.x_train)
        what = "MNIST"
    model = paper_mnist(seed=seed, mean=mean, std=std)
    opt = SGD(model, lr=0.01, momentum=0.9, weight_decay=2e-3, decay=5e-6)
    log(f"training the paper's MNIST net ({model.num_parameters():,} parameters) on {len(x):,} images of {what}")
    t0 = time.perf_counter()
    train_plain(model, opt, x, y, epochs=epochs, seed=seed, log=log)
    acc = model.accuracy(xt, yt)
    log(f"test accuracy {100 * acc:.2f}% on {len(xt):,} held-out images ({time.perf_counter() - t0:.1f} s)")
    return acc
