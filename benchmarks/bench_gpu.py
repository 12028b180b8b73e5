"""GPU speed: minirobust's gpu backend against PyTorch on the same card, in one process.

    python benchmarks/bench_gpu.py [--batches 100,1000] [--repeat 30] [--out results.json]

The paper's MNIST net, batch 100 and 1000: a plain training step, a robust (l_inf, one ascent
step) training step, and a PGD-10 attack, for minirobust (``--backend gpu``) and for the same
architecture in PyTorch (CUDA). Each time is the median of ``--repeat`` calls, measured with CUDA
events around the call after a warm-up (kernels compiled, memory pools filled). Prints images per
second and the ratio minirobust time / PyTorch time (< 1: minirobust is faster). Without a GPU it
says so and exits 0; without PyTorch it prints minirobust's figures only.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

EPS, PGD_STEPS = 0.1, 10


def cuda_median_ms(fn, repeat, timer):
    """Median of ``repeat`` calls of fn, each timed with a pair of CUDA events.

    timer: (make an event, milliseconds between two recorded events, synchronise the device);
    CuPy and PyTorch spell these differently (cupy.cuda.get_elapsed_time(a, b) vs a.elapsed_time(b))."""
    event_cls, elapsed_ms, synchronize = timer
    fn()
    synchronize()
    times = []
    for _ in range(repeat):
        start, stop = event_cls(), event_cls()
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(elapsed_ms(start, stop))
    return float(np.median(times))


def minirobust_cases(batch, x, y):
    import minirobust as mr  # noqa: PLC0415
    from minirobust.robust import RobustTrainer, TrainConfig, pgd  # noqa: PLC0415

    mr.set_backend("gpu")
    cp = mr.get_xp()
    xg, yg = cp.asarray(x[:batch]), cp.asarray(y[:batch])  # on the card once, like a data loader would
    plain = RobustTrainer(mr.nets.paper_mnist(seed=0), TrainConfig(), log=None, progress=False)
    robust = RobustTrainer(mr.nets.paper_mnist(seed=0), TrainConfig(norm="inf", eps=EPS), log=None, progress=False)
    target = mr.nets.paper_mnist(seed=0)
    cases = {"plain step": lambda: plain.train_step(xg, yg),
             "robust l_inf step": lambda: robust.train_step(xg, yg),
             "PGD-10 attack": lambda: pgd(target, xg, yg, eps=EPS, steps=PGD_STEPS, rng=0)}

    return cases, (cp.cuda.Event, cp.cuda.get_elapsed_time, cp.cuda.Device().synchronize)


def torch_cases(batch, x, y):
    import torch  # noqa: PLC0415
    from torch import nn  # noqa: PLC0415

    dev = torch.device("cuda")
    torch.manual_seed(0)

    def net():
        return nn.Sequential(nn.Conv2d(1, 32, 5), nn.ReLU(), nn.MaxPool2d(3), nn.Conv2d(32, 64, 5), nn.ReLU(),
                             nn.MaxPool2d(2), nn.Flatten(), nn.Linear(256, 200), nn.ReLU(), nn.Linear(200, 10)).to(dev)

    mean, std = 0.1307, 0.3081
    xt, yt = torch.as_tensor(x[:batch], device=dev), torch.as_tensor(y[:batch], device=dev)
    loss_fn = nn.CrossEntropyLoss()

    def logits(model, xb):
        return model((xb - mean) / std)  # normalisation inside the model, as in minirobust

    def step_fn(model):
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=2e-3)

        def descend(xb):
            opt.zero_grad(set_to_none=True)
            loss_fn(logits(model, xb), yt).backward()
            opt.step()

        return opt, descend

    plain_model, robust_model, target = net(), net(), net()
    _, plain_descend = step_fn(plain_model)
    _, robust_descend = step_fn(robust_model)

    def input_grad(model, xb):
        xb = xb.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(loss_fn(logits(model, xb), yt), xb)  # no parameter gradients
        return g

    def robust_step():
        x_adv = (xt + EPS * input_grad(robust_model, xt).sign()).clamp_(0, 1)
        robust_descend(x_adv)

    def pgd_attack():
        gen = torch.Generator(device=dev).manual_seed(0)
        x_adv = (xt + torch.empty_like(xt).uniform_(-EPS, EPS, generator=gen)).clamp(0, 1)
        alpha = 2.5 * EPS / PGD_STEPS
        for _ in range(PGD_STEPS):
            x_adv = x_adv + alpha * input_grad(target, x_adv).sign()
            x_adv = torch.min(torch.max(x_adv, xt - EPS), xt + EPS).clamp(0, 1)
        with torch.no_grad():
            return logits(target, x_adv).argmax(1) != yt

    cases = {"plain step": lambda: plain_descend(xt), "robust l_inf step": robust_step, "PGD-10 attack": pgd_attack}
    def event():
        return torch.cuda.Event(enable_timing=True)

    return cases, (event, lambda start, stop: start.elapsed_time(stop), torch.cuda.synchronize)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batches", default="100,1000")
    p.add_argument("--repeat", type=int, default=30)
    p.add_argument("--out", help="write the figures as JSON here")
    a = p.parse_args(argv)
    from minirobust.backend import gpu_available  # noqa: PLC0415

    ok, reason = gpu_available()
    if not ok:
        print(f"no GPU benchmark here: {reason}")
        return 0
    import minirobust as mr  # noqa: PLC0415

    info = mr.info(as_dict=True)
    print(f"device: {info['gpu_devices']}, CUDA runtime {info.get('cuda_runtime')}, cupy {info['cupy']}")
    try:
        import torch  # noqa: PLC0415

        have_torch = torch.cuda.is_available()
        print(f"PyTorch {torch.__version__}, CUDA available: {have_torch}")
    except ImportError:
        have_torch = False
        print("PyTorch not installed: minirobust's figures only")
    rng = np.random.default_rng(0)
    batches = [int(b) for b in a.batches.split(",")]
    x = rng.random((max(batches), 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, max(batches)).astype(np.int64)
    rows = []
    print(f"{'batch':>6} {'case':<20}{'minirobust img/s':>18}{'PyTorch img/s':>16}{'ratio (time)':>14}")
    for batch in batches:
        cases, timer = minirobust_cases(batch, x, y)
        mine = {k: cuda_median_ms(fn, a.repeat, timer) for k, fn in cases.items()}
        theirs = {}
        if have_torch:
            cases, timer = torch_cases(batch, x, y)
            theirs = {k: cuda_median_ms(fn, a.repeat, timer) for k, fn in cases.items()}
        for case, ms in mine.items():
            row = {"batch": batch, "case": case, "minirobust_ms": ms, "torch_ms": theirs.get(case)}
            rows.append(row)
            t = theirs.get(case)
            print(f"{batch:>6} {case:<20}{batch / ms * 1e3:>18,.0f}"
                  f"{(batch / t * 1e3) if t else float('nan'):>16,.0f}{(ms / t) if t else float('nan'):>14.2f}")
    for batch in batches:
        by = {r["case"]: r for r in rows if r["batch"] == batch}
        ratio = by["robust l_inf step"]["minirobust_ms"] / by["plain step"]["minirobust_ms"]
        print(f"batch {batch}: minirobust robust/plain step {ratio:.2f}")
    if a.out:
        with open(a.out, "w", encoding="utf-8") as f:
            json.dump({"info": {k: str(v) for k, v in info.items()}, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
