"""Per-stage forward / backward time of one training step (where does a step go?).

    python benchmarks/profile_layers.py [--net paper|large] [--batch 100] [--unfused]
                                        [--pass descent|ascent]

Stages are what the fast tier runs: each Conv2D -> ReLU -> MaxPool2D is one fused stage
(minirobust/fused.py); ``--unfused`` times the layers one by one instead. ``--pass`` picks
which backward to time: ``descent`` (parameter gradients, no dL/dx of the first layer: what
a plain step and the descent of a robust step run) or ``ascent`` (dL/dx only, no parameter
gradients: the extra pass a robust step pays for).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from minirobust import nets
from minirobust.hostmem import tune_allocator
from minirobust.kernels import cpu
from minirobust.losses import SoftmaxCrossEntropy


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--net", default="paper", choices=("paper", "large"))
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--unfused", action="store_true", help="time the layers one by one")
    p.add_argument("--pass", dest="which", default="descent", choices=("descent", "ascent"))
    a = p.parse_args()
    tune_allocator()  # as the minirobust command does
    cpu.warmup((np.float32,))
    model = (nets.paper_mnist if a.net == "paper" else nets.large_mnist)(seed=0)
    stages = model.stages(fuse=not a.unfused)
    rng = np.random.default_rng(0)
    x = rng.random((a.batch, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, a.batch)
    ascent = a.which == "ascent"
    first = next(i for i, s in enumerate(stages) if s.params)  # the descent stops here
    fwd = {layer.name: [] for layer in stages}
    bwd = {layer.name: [] for layer in stages}
    for _ in range(a.repeats):
        h = x
        for layer in stages:
            t = time.perf_counter()
            h = layer.forward(h, train=not ascent)
            fwd[layer.name].append(time.perf_counter() - t)
        loss = SoftmaxCrossEntropy("sum" if ascent else "mean")
        loss.forward(h, y)
        d = loss.backward()
        for i in range(len(stages) - 1, -1, -1):
            layer = stages[i]
            t = time.perf_counter()
            if ascent:
                d = layer.backward(d, param_grads=False)
            elif i == first:  # as Sequential.backward(input_grad=False) does
                layer.backward(d, param_grads=True, input_grad=False)
            elif i > first:
                d = layer.backward(d, param_grads=True)
            bwd[layer.name].append(time.perf_counter() - t)
    total = 0.0
    print(f"{'stage':<30}{'forward ms':>12}{'backward ms':>13}")
    for layer in stages:
        f, b = statistics.median(fwd[layer.name]) * 1e3, statistics.median(bwd[layer.name]) * 1e3
        total += f + b
        print(f"{layer.name:<30}{f:>12.2f}{b:>13.2f}")
    print(f"{'total':<30}{total:>25.2f}")


if __name__ == "__main__":
    main()
