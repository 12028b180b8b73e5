"""The smallest complete run: build the paper's MNIST net, train it, print accuracy."""

from __future__ import annotations

import time

from .data import iterate_minibatches, separable_images
from .nets import paper_mnist
from .optim import SGD


def train_plain(model, opt, x, y, epochs=1, batch_size=100, seed=0, log=print):
    """Plain minibatch SGD (robust/ adds the ascent step to this loop)."""
    import numpy as np  # noqa: PLC0415

    rng = np.random.default_rng(seed)
    for epoch in range(epochs):
        losses = []
        for xb, yb in iterate_minibatches(x, y, batch_size, rng=rng):
            loss, grads, _ = model.loss_and_grads(xb, yb)
            opt.step(grads)
            losses.append(loss)
        log(f"epoch {epoch + 1}/{epochs}: mean training loss {sum(losses) / len(losses):.4f}")


def run_demo(n_train=2000, n_test=1000, epochs=2, seed=0, log=print) -> float:
    """Train paper_mnist on the synthetic separable task; return test accuracy."""
    x, y = separable_images(n_train, seed=seed)
    xt, yt = separable_images(n_test, seed=seed + 1)
    model = paper_mnist(seed=seed, mean=float(x.mean()), std=float(x.std()))
    opt = SGD(model, lr=0.01, momentum=0.9)
    t0 = time.perf_counter()
    train_plain(model, opt, x, y, epochs=epochs, seed=seed, log=log)
    acc = model.accuracy(xt, yt)
    log(f"test accuracy {100 * acc:.2f}% on {n_test} held-out images ({time.perf_counter() - t0:.1f} s)")
    return acc
