"""Per-layer forward / backward time of one training step (where does a step go?).

    python benchmarks/profile_layers.py [--net paper|large] [--batch 100]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from minirobust import nets
from minirobust.kernels import cpu
from minirobust.losses import SoftmaxCrossEntropy


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--net", default="paper", choices=("paper", "large"))
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--repeats", type=int, default=30)
    a = p.parse_args()
    cpu.warmup((np.float32,))
    model = (nets.paper_mnist if a.net == "paper" else nets.large_mnist)(seed=0)
    rng = np.random.default_rng(0)
    x = rng.random((a.batch, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, a.batch)
    fwd = {layer.name: [] for layer in model.layers}
    bwd = {layer.name: [] for layer in model.layers}
    for _ in range(a.repeats):
        h = x
        for layer in model.layers:
            t = time.perf_counter()
            h = layer.forward(h, train=True)
            fwd[layer.name].append(time.perf_counter() - t)
        loss = SoftmaxCrossEntropy()
        loss.forward(h, y)
        d = loss.backward()
        for layer in reversed(model.layers):
            t = time.perf_counter()
            d = layer.backward(d)
            bwd[layer.name].append(time.perf_counter() - t)
    total = 0.0
    print(f"{'layer':<14}{'forward ms':>12}{'backward ms':>13}")
    for layer in model.layers:
        f, b = statistics.median(fwd[layer.name]) * 1e3, statistics.median(bwd[layer.name]) * 1e3
        total += f + b
        print(f"{layer.name:<14}{f:>12.2f}{b:>13.2f}")
    print(f"{'total':<14}{total:>25.2f}")


if __name__ == "__main__":
    main()
