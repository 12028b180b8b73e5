"""What each training method costs: seconds per training step relative to plain training, in one process.

    python benchmarks/bench_methods.py [--net paper-mnist] [--batch 100] [--repeat 20] [--backend cpu]

Each method's step (the ascent it prescribes plus the descent) on the same batch of real-looking
inputs, median of ``--repeat`` steps after two warm-up steps; the ratio is against the plain step
timed in the same process, so the machine's speed cancels out.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import minirobust as mr
from minirobust.robust import RobustTrainer, TrainConfig

METHODS = [("plain", {}), ("paper", dict(method="paper")), ("fgsm-rs", dict(method="fgsm-rs")),
           ("pgd-10", dict(method="pgd", ascent_steps=10)), ("trades-10", dict(method="trades", ascent_steps=10)),
           ("ibp", dict(method="ibp"))]


def median_step_seconds(trainer, x, y, repeat):
    for _ in range(2):
        trainer.train_step(x, y)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        trainer.train_step(x, y)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--net", default="paper-mnist", choices=sorted(mr.nets.NETS))
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--backend", default="cpu", choices=("cpu", "gpu"))
    a = p.parse_args(argv)
    mr.set_backend(a.backend)
    rng = np.random.default_rng(0)
    shape = (3, 32, 32) if "cifar" in a.net else (1, 28, 28)
    x = rng.random((a.batch, *shape), dtype=np.float32)
    y = rng.integers(0, 10, a.batch)
    rows = []
    for name, cfg in METHODS:
        model = mr.nets.NETS[a.net](seed=0)
        config = TrainConfig(**({"norm": "inf", "eps": 0.3, **cfg} if cfg else {}))
        rows.append((name, median_step_seconds(RobustTrainer(model, config, log=None, progress=False), x, y,
                                               a.repeat)))
    plain = rows[0][1]
    print(f"{a.net}, batch {a.batch}, backend {a.backend}: median seconds per training step")
    for name, seconds in rows:
        print(f"  {name:<10} {1000 * seconds:8.1f} ms   {seconds / plain:5.2f} x plain")


if __name__ == "__main__":
    main()
