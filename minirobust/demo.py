"""The smallest complete run: build the paper's MNIST net, train it, print accuracy."""

from __future__ import annotations

import time

from .data import dataset_stats, load_mnist, separable_images, to_float
from .nets import paper_mnist
from .robust import RobustTrainer, TrainConfig


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
    log(f"training the paper's MNIST net ({model.num_parameters():,} parameters) on {len(x):,} images of {what}")
    t0 = time.perf_counter()
    # plain training is Algorithm 1 with no uncertainty set (the paper's SGD settings)
    RobustTrainer(model, TrainConfig(epochs=epochs, seed=seed), log=log).fit(x, y)
    acc = model.accuracy(xt, yt)
    log(f"test accuracy {100 * acc:.2f}% on {len(xt):,} held-out images ({time.perf_counter() - t0:.1f} s)")
    return acc
