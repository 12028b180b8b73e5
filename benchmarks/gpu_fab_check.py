"""On a GPU machine: FAB on the GPU backend against the CPU, then the standard suite (AutoAttack's
budgets) on the card against a briefly trained robust net, with each attack's seconds.

    MINIROBUST_DATA=<folder with mnist/> python benchmarks/gpu_fab_check.py [--backend cpu --n 20]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import minirobust as mr
from minirobust.data import dataset_stats, load_mnist, separable_images, to_float
from minirobust.robust import RobustTrainer, TrainConfig, fab, run_suite


def fab_against_the_cpu(backend):
    x, y = separable_images(60, seed=0)
    cpu, other = mr.nets.paper_mnist(seed=0), mr.nets.paper_mnist(seed=0).to(backend)
    for norm in ("inf", "2", "1"):
        a, b = fab(cpu, x, y, norm=norm, steps=10), fab(other, x, y, norm=norm, steps=10).to_host()
        both = a.success & b.success
        print(f"fab l_{norm}: success cpu {a.success.mean():.2f}, {backend} {b.success.mean():.2f}; "
              f"max |norm difference| {float(np.abs(np.where(both, a.norms - b.norms, 0)).max()):.1e}")


def standard_suite_on_a_trained_net(backend, n_train, n):
    d = load_mnist(log=lambda *a: None)
    mean, std = dataset_stats(d.x_train)
    model = mr.nets.paper_mnist(seed=0, mean=mean, std=std).to(backend)
    t = time.perf_counter()
    RobustTrainer(model, TrainConfig(epochs=1, norm="inf", eps=0.1), log=None, progress=False).fit(
        to_float(d.x_train[:n_train]), d.y_train[:n_train])
    print(f"trained one epoch of Algorithm 1 (l_inf 0.1) on {n_train} images in {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    res = run_suite(model, to_float(d.x_test[:n]), d.y_test[:n], "inf", 0.1, version="standard")
    print(f"standard suite: {res.robust_acc:.2%} robust on {n} images, {(time.perf_counter() - t) / n:.3f} s per image")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backend", default="gpu")
    p.add_argument("--n-train", type=int, default=60000)
    p.add_argument("--n", type=int, default=200, help="test images for the suite")
    args = p.parse_args()
    fab_against_the_cpu(args.backend)
    standard_suite_on_a_trained_net(args.backend, args.n_train, args.n)


if __name__ == "__main__":
    main()
