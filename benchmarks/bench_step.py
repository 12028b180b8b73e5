"""Training-step, attack and inference speed of minirobust against PyTorch CPU.

    python benchmarks/bench_step.py            # (make bench) full suite, ~5 minutes on 2 cores
    python benchmarks/bench_step.py --quick    # fewer repeats and configurations

Each (framework, net, batch) runs in its own subprocess with the same thread count, so thread
pools and peak memory do not leak between measurements; the parent prints medians and the
ratio minirobust time / PyTorch time (< 1 means minirobust is faster). PyTorch is optional:
without it only absolute figures are printed.

OpenBLAS note: some machines here set OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE (older OpenBLAS
builds crashed on their CPUs); that forces slower kernels on a current NumPy. The workers
unset both (this benchmark only; tests and CI keep them) and report the kernel OpenBLAS used.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

NETS = {"paper": "paper_mnist", "large": "large_mnist"}
STEPS = ("plain", "robust_linf", "robust_l2", "robust_l1")
EPS = {"robust_linf": ("inf", 0.062), "robust_l2": ("2", 0.62), "robust_l1": ("1", 0.62)}


def forward_flops(net: str, batch: int) -> int:
    """Multiply-adds x 2 of one forward pass (convolutions and dense layers)."""
    if net == "paper":  # conv 1->32 5x5 on 24x24, conv 32->64 5x5 on 4x4, dense 256x200, 200x10
        macs = 24 * 24 * 32 * 25 + 4 * 4 * 64 * 32 * 25 + 256 * 200 + 200 * 10
    else:  # 'same' convs on 28x28 and 14x14, dense 3136x1024, 1024x10
        macs = 28 * 28 * 32 * 25 + 14 * 14 * 64 * 32 * 25 + 3136 * 1024 + 1024 * 10
    return 2 * macs * batch


def step_flops(net, batch, step):
    """Plain step: forward + backward (dX and dW) = 3 forwards. Robust: + ascent (forward + dX) = 5."""
    return forward_flops(net, batch) * (3 if step == "plain" else 5)


def median_time(fn, repeats, warmup=1):
    """Median wall time of ``fn()`` over ``repeats`` calls, after ``warmup`` untimed calls.
    (Also used by tests/test_speed_guard.py.)"""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _timeit_interleaved(fns: dict, repeats, warmup):
    """Median time of each function, running them in turn (a, b, c, a, b, c, ...), so that
    drifting machine load hits every measurement alike and their ratios stay meaningful."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def _peak_rss_mb():
    import resource  # noqa: PLC0415

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ----- workers (run in subprocesses) ---------------------------------------------------------------

def worker_minirobust(net, batch, repeats, warmup):
    import numpy as np  # noqa: PLC0415

    from minirobust.hostmem import tune_allocator  # noqa: PLC0415

    tune_allocator()  # as the minirobust command does (bench --no-malloc-tuning: off for both)

    from minirobust import nets  # noqa: PLC0415
    from minirobust.kernels import cpu  # noqa: PLC0415
    from minirobust.robust import RobustTrainer, TrainConfig, fast_method, pgd  # noqa: PLC0415

    cpu.warmup((np.float32,))
    rng = np.random.default_rng(0)
    x = rng.random((batch, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, batch)
    rss0 = _peak_rss_mb()
    steps = {}
    for step in STEPS:
        model = getattr(nets, NETS[net])(seed=0)
        norm, eps = EPS.get(step, (None, 0.0))
        trainer = RobustTrainer(model, TrainConfig(norm=norm, eps=eps), log=lambda *_: None, progress=False)
        steps[step] = lambda t=trainer: t.train_step(x, y)
    out = _timeit_interleaved(steps, repeats, warmup)
    model = getattr(nets, NETS[net])(seed=0)
    out["attack_fast"] = median_time(lambda: fast_method(model, x, y, eps=0.062), repeats, warmup)
    out["attack_pgd10"] = median_time(lambda: pgd(model, x, y, eps=0.062, steps=10, rng=0), max(repeats // 4, 3), 1)
    out["inference"] = median_time(lambda: model.predict(x), repeats, warmup)
    out["peak_rss_mb"] = _peak_rss_mb()
    out["rss_growth_mb"] = out["peak_rss_mb"] - rss0
    try:
        from threadpoolctl import threadpool_info  # noqa: PLC0415

        out["blas"] = [f"{i.get('internal_api')} {i.get('architecture')} threads={i.get('num_threads')}"
                       for i in threadpool_info()]
    except ImportError:
        out["blas"] = ["(threadpoolctl not installed)"]
    out["threads"] = cpu.threads.describe()
    return out


def worker_torch(net, batch, repeats, warmup, threads):
    # PyTorch runs with its own thread defaults: minirobust's thread settings (kernels/threads.py,
    # applied when the Numba tier loads) must not reach it, and do not: this process never loads it
    from minirobust.hostmem import tune_allocator  # noqa: PLC0415

    tune_allocator()  # the same allocator settings for PyTorch's CPU tensors (they use malloc too)
    import torch  # noqa: PLC0415
    from torch import nn  # noqa: PLC0415

    torch.set_num_threads(threads)
    torch.manual_seed(0)

    def build():
        if net == "paper":
            return nn.Sequential(nn.Conv2d(1, 32, 5), nn.ReLU(), nn.MaxPool2d(3, 3), nn.Conv2d(32, 64, 5), nn.ReLU(),
                                 nn.MaxPool2d(2, 2), nn.Flatten(), nn.Linear(256, 200), nn.ReLU(), nn.Linear(200, 10))
        return nn.Sequential(nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2, 2),
                             nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2, 2), nn.Flatten(),
                             nn.Linear(3136, 1024), nn.ReLU(), nn.Linear(1024, 10))

    x = torch.rand(batch, 1, 28, 28)
    y = torch.randint(0, 10, (batch,))
    mean, std = 0.1307, 0.3081
    loss_fn = nn.CrossEntropyLoss()

    def make_step(model, opt, norm, eps):
        def ascent(xb):
            xa = xb.clone().requires_grad_(True)
            loss = loss_fn(model((xa - mean) / std), y)
            (g,) = torch.autograd.grad(loss, xa)  # input gradient only: no parameter gradients
            if norm == "inf":
                d = eps * g.sign()
            elif norm == "2":
                d = eps * g / g.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
            else:
                flat = g.flatten(1)
                idx = flat.abs().argmax(dim=1)
                d = torch.zeros_like(flat)
                d[torch.arange(len(flat)), idx] = eps * flat[torch.arange(len(flat)), idx].sign()
                d = d.view_as(g)
            return (xb + d).clamp(0, 1).detach()

        def step():
            xb = x if norm is None else ascent(x)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model((xb - mean) / std), y)
            loss.backward()
            opt.step()
        return step

    rss0 = _peak_rss_mb()
    steps = {}
    for step in STEPS:
        model = build()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=2e-3)
        norm, eps = EPS.get(step, (None, 0.0))
        steps[step] = make_step(model, opt, norm, eps)
    out = _timeit_interleaved(steps, repeats, warmup)
    model = build()

    # the attacks do what minirobust's fast_method / pgd do: the adversarial batch AND its
    # success flags (one more forward pass), so the ratio compares the same work
    def success(xa):
        with torch.no_grad():
            return model((xa - mean) / std).argmax(1) != y

    def fgsm():
        xa = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(loss_fn(model((xa - mean) / std), y), xa)
        xa = (x + 0.062 * g.sign()).clamp(0, 1)
        return xa, success(xa)

    def pgd10():
        xa = (x + torch.empty_like(x).uniform_(-0.062, 0.062)).clamp(0, 1)
        for _ in range(10):
            xa.requires_grad_(True)
            (g,) = torch.autograd.grad(loss_fn(model((xa - mean) / std), y), xa)
            xa = torch.min(torch.max(xa.detach() + 0.0155 * g.sign(), x - 0.062), x + 0.062).clamp(0, 1)
        return xa, success(xa)

    out["attack_fast"] = median_time(fgsm, repeats, warmup)
    out["attack_pgd10"] = median_time(pgd10, max(repeats // 4, 3), 1)
    with torch.no_grad():
        out["inference"] = median_time(lambda: model((x - mean) / std).argmax(1), repeats, warmup)
    out["peak_rss_mb"] = _peak_rss_mb()
    out["rss_growth_mb"] = out["peak_rss_mb"] - rss0
    out["torch"] = torch.__version__
    assert "minirobust.kernels.cpu" not in sys.modules, "minirobust's thread settings leaked into the PyTorch worker"
    out["omp_wait_policy"] = os.environ.get("OMP_WAIT_POLICY", "(default)")
    return out


def gemm_gflops(threads, n=2048):
    import numpy as np  # noqa: PLC0415

    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    b = a.T.copy()
    t = median_time(lambda: a @ b, 5, 2)
    return 2 * n**3 / t / 1e9


# ----- the parent ---------------------------------------------------------------------------------

def run_worker(kind, net, batch, args):
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "OPENBLAS_NUM_THREADS": str(args.threads),
           "MKL_NUM_THREADS": str(args.threads), "NUMBA_NUM_THREADS": str(args.threads)}
    if args.no_malloc_tuning:
        env["MINIROBUST_MALLOC_TUNING"] = "0"
    if args.no_thread_tuning:
        env["MINIROBUST_THREAD_TUNING"] = "0"
    env.pop("OPENBLAS_CORETYPE", None)
    env.pop("OPENBLAS_L2_SIZE", None)
    code = (f"import json, sys; sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r}); "
            f"import bench_step as b; ")
    if kind == "gemm":
        code += f"print(json.dumps({{'gflops': b.gemm_gflops({args.threads})}}))"
    elif kind == "minirobust":
        code += f"print(json.dumps(b.worker_minirobust({net!r}, {batch}, {args.repeats}, {args.warmup})))"
    else:
        code += f"print(json.dumps(b.worker_torch({net!r}, {batch}, {args.repeats}, {args.warmup}, {args.threads})))"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise RuntimeError(f"{kind} worker failed:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def have_torch() -> bool:
    return subprocess.run([sys.executable, "-c", "import torch"], capture_output=True).returncode == 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="paper net, batch 100, fewer repeats")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--no-malloc-tuning", action="store_true",
                   help="keep glibc's default allocator settings in both workers (see minirobust/hostmem.py)")
    p.add_argument("--no-thread-tuning", action="store_true",
                   help="minirobust without its thread settings (Numba workqueue layer, OpenBLAS as it is; "
                        "see minirobust/kernels/threads.py)")
    p.add_argument("--json", default=None, help="also write all figures to this JSON file")
    args = p.parse_args(argv)
    configs = [("paper", 100)] if args.quick else [("paper", 100), ("paper", 128), ("large", 100), ("large", 128)]
    if args.quick:
        args.repeats = min(args.repeats, 10)
    use_torch = not args.no_torch and have_torch()
    gemm = run_worker("gemm", None, None, args)["gflops"]
    print(f"threads {args.threads}; NumPy sgemm 2048^2: {gemm:.0f} GFLOP/s; PyTorch: {'yes' if use_torch else 'not installed'}")
    report = {"gemm_gflops": gemm, "threads": args.threads, "results": []}
    for net, batch in configs:
        mr = run_worker("minirobust", net, batch, args)
        th = run_worker("torch", net, batch, args) if use_torch else None
        print(f"\n{net} MNIST net, batch {batch} (medians; ratio = minirobust / PyTorch time, < 1: faster)")
        print(f"  {'measure':<14}{'minirobust':>16}{'PyTorch':>16}{'ratio':>8}{'GFLOP/s':>10}")
        for key in (*STEPS, "attack_fast", "attack_pgd10", "inference"):
            a = mr[key]
            b = th[key] if th else None
            ratio = f"{a / b:.2f}" if b else "-"
            gf = f"{step_flops(net, batch, key) / a / 1e9:.0f}" if key in STEPS else ""
            print(f"  {key:<14}{batch / a:>11,.0f} im/s{(f'{batch / b:>11,.0f} im/s') if b else '-':>16}"
                  f"{ratio:>8}{gf:>10}")
        print(f"  robust_linf / plain: minirobust {mr['robust_linf'] / mr['plain']:.2f}"
              + (f", PyTorch {th['robust_linf'] / th['plain']:.2f}" if th else ""))
        print(f"  peak RSS: minirobust {mr['peak_rss_mb']:.0f} MB (+{mr['rss_growth_mb']:.0f} while running)"
              + (f", PyTorch {th['peak_rss_mb']:.0f} MB (+{th['rss_growth_mb']:.0f})" if th else ""))
        print(f"  BLAS: {'; '.join(mr['blas'])}")
        print(f"  minirobust threads: {mr['threads']}" + (f"; PyTorch OMP_WAIT_POLICY {th['omp_wait_policy']}" if th else ""))
        report["results"].append({"net": net, "batch": batch, "minirobust": mr, "torch": th})
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
