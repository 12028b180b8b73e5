"""Attack throughput on the paper's MNIST net: APGD and Square against the fast method.

    python benchmarks/bench_attacks.py            # 500 images
    python benchmarks/bench_attacks.py --n 200    # fewer

Every attack runs on the same images of the same trained net, in this process, with an eps so
small that almost no image is broken early (early stops would flatter the iterative attacks):
the figures are the full per-image cost. Printed per attack: images per second, the time per
image as a multiple of the fast method's, and the cost per model pass (forward + backward for
the gradient attacks, forward only for Square) as a multiple of one fast-method gradient.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from minirobust import kernels, nets  # noqa: E402
from minirobust.data import separable_images  # noqa: E402
from minirobust.robust import RobustTrainer, TrainConfig, apgd, fast_method, pgd, square  # noqa: E402


def timed(fn, repeats=3):
    fn()  # warm up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=500)
    args = ap.parse_args()
    x, y = separable_images(2000, seed=0, noise=0.35)
    model = nets.paper_mnist(seed=0, mean=float(x.mean()), std=float(x.std()))
    RobustTrainer(model, TrainConfig(epochs=1, batch_size=100), progress=False, log=None).fit(x, y)
    kernels.warmup()
    xt, yt = x[: args.n], y[: args.n]
    eps = {"inf": 1e-3, "2": 1e-2}
    runs = {
        "fast l_inf (1 gradient)": (lambda: fast_method(model, xt, yt, eps=eps["inf"]), 1),
        "PGD-40 l_inf": (lambda: pgd(model, xt, yt, eps=eps["inf"], steps=40, rng=0), 41),
        "APGD-CE 100 l_inf": (lambda: apgd(model, xt, yt, eps=eps["inf"], steps=100, rng=0), 101),
        "APGD-DLR 100 l_2": (lambda: apgd(model, xt, yt, norm="2", eps=eps["2"], steps=100, objective="dlr", rng=0),
                             101),
        "APGD-CE 100 l_1": (lambda: apgd(model, xt, yt, norm="1", eps=0.05, steps=100, rng=0), 101),
        "Square 1000 l_inf": (lambda: square(model, xt, yt, eps=eps["inf"], n_queries=1000, rng=0), 1001),
        "Square 1000 l_2": (lambda: square(model, xt, yt, norm="2", eps=eps["2"], n_queries=1000, rng=0), 1001),
    }
    print(f"paper MNIST net, {args.n} images, {os.cpu_count()} cores; eps tiny so no early stops")
    base = None
    print(f"{'attack':<22}{'images/s':>10}{'x fast (per image)':>20}{'per pass / fast':>17}")
    for name, (fn, passes) in runs.items():
        t = timed(fn, repeats=3 if passes < 200 else 1)
        base = base or t
        print(f"{name:<22}{args.n / t:>10.0f}{t / base:>20.1f}{t / base / passes:>17.2f}")


if __name__ == "__main__":
    main()
