"""What a CIFAR-10 run of the authors' VGG net costs at each width, on this machine.

    python benchmarks/bench_cifar_width.py                    # widths 1/4, 1/2, 1; 256 images each
    python benchmarks/bench_cifar_width.py --widths 1 --images 384

For each width: seconds per training step (batch 128) of plain training and of Algorithm 1
(l_2 ascent step in evaluation mode, then the descent step), measured on ``--images`` images,
and the time one epoch of 50,000 images would take at that rate. Random images: the cost of a
step does not depend on the pixels.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from minirobust import kernels, nets  # noqa: E402
from minirobust.robust import RobustTrainer, TrainConfig  # noqa: E402

EPOCH = 50_000
BATCH = 128


def seconds_per_step(width, norm, images):
    model = nets.paper_cifar10(width=width, dropout=width)
    trainer = RobustTrainer(model, TrainConfig(batch_size=BATCH, norm=norm, eps=0.1 if norm else 0.0, lr=0.05),
                            progress=False, log=None)
    rng = np.random.default_rng(0)
    x = rng.random((images, 3, 32, 32), dtype=np.float32)
    y = rng.integers(0, 10, images)
    trainer.train_step(x[:BATCH], y[:BATCH])  # warm-up: first-call costs are not a step's
    steps = max(1, images // BATCH)
    t0 = time.perf_counter()
    for i in range(steps):
        trainer.train_step(x[i * BATCH : (i + 1) * BATCH], y[i * BATCH : (i + 1) * BATCH])
    return (time.perf_counter() - t0) / steps


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--widths", default="0.25,0.5,1")
    ap.add_argument("--images", type=int, default=256)
    args = ap.parse_args()
    kernels.warmup()
    print(f"paper_cifar10 (VGG, BatchNorm), batch {BATCH}, {args.images} images per measurement, "
          f"{os.cpu_count()} cores")
    print(f"{'width':>6}{'params':>12}{'plain s/step':>14}{'robust s/step':>15}{'plain min/epoch':>17}"
          f"{'robust min/epoch':>18}")
    for w in (float(v) for v in args.widths.split(",")):
        plain, robust = seconds_per_step(w, None, args.images), seconds_per_step(w, "2", args.images)
        per_epoch = EPOCH / BATCH / 60
        print(f"{w:>6g}{nets.paper_cifar10(width=w).num_parameters():>12,}{plain:>14.2f}{robust:>15.2f}"
              f"{plain * per_epoch:>17.1f}{robust * per_epoch:>18.1f}")


if __name__ == "__main__":
    main()
