"""Certified beside attacked, on the same weights: IBP-trained MNIST nets, and any other models.

    minirobust reproduce certified [--nets paper-mnist,large-mnist] [--eps-list 0.1,0.3]
                                   [--also NAME=model.npz ...]

For each net x eps: train with the ``ibp`` method (plain warm-up, eps and kappa ramped, training
eps 1.1 x the test eps as in later IBP work), then on the first ``n_eval`` test images: clean
accuracy, PGD-40, the attack suite, and IBP-certified accuracy, at the test eps. ``--also`` adds
models trained elsewhere (e.g. the standard-radius runs), certified and attacked the same way.
Certified <= attacked <= clean holds per example in every run (checked before writing).
Runs resume like the standard-radius runs; results go to results/certified/.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .. import nets
from ..backend import to_host
from ..certify import ibp
from ..checkpoint import load_model
from ..data import dataset_stats, load_mnist, to_float
from ..errors import InputError
from ..robust import RobustTrainer, TrainConfig, pgd, run_suite
from ..robust.suite import describe, fast_suite
from ..atomic import write_atomic
from .standard_radius import _pct

PUBLISHED = {0.1: "97.08% certified, 98.92% clean (Gowal et al. 2018, large net, 100 epochs)",
             0.3: "91.79% certified (Gowal et al. 2018, trained at 0.4)"}


@dataclass
class CertifiedSettings:
    epochs: int = 30
    warmup_epochs: float = 1.0
    ramp_epochs: float = 8.0
    train_eps_factor: float = 1.1
    lr: float = 0.01
    lr_halve_every: int = 10  # Gowal decays the lr late in training; halving every 10 epochs is the same idea
    n_train: int | None = None
    n_eval: int = 1000
    pgd_steps: int = 40
    suite_steps: int = 100
    suite_queries: int = 1000
    seed: int = 0

    def train_config(self, eps) -> TrainConfig:
        return TrainConfig(epochs=self.epochs, lr=self.lr, weight_decay=0.0, norm="inf",
                           eps=round(eps * self.train_eps_factor, 6), method="ibp", eps_ramp_epochs=self.ramp_epochs,
                           eps_warmup_epochs=self.warmup_epochs, lr_halve_every=self.lr_halve_every,
                           seed=self.seed)

    def evaluation(self) -> dict:
        """The settings a model's scores depend on (not how the IBP nets were trained): what decides
        whether a stored evaluation of a model trained elsewhere still counts."""
        return {k: getattr(self, k) for k in ("n_eval", "pgd_steps", "suite_steps", "suite_queries", "seed")}


QUICK = dict(epochs=2, warmup_epochs=0.5, ramp_epochs=1.0, lr_halve_every=0, n_train=2000, n_eval=100, pgd_steps=10, suite_steps=10,
             suite_queries=50)


@dataclass
class CertifiedRun:
    net: str
    method: str
    eps: float
    clean_acc: float
    pgd_acc: float
    suite_acc: float
    certified_acc: float
    certifier: str = "ibp"
    epochs: int = 0
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    settings: dict = field(default_factory=dict)


def evaluate(model, x, y, eps, settings) -> dict:
    """Clean, PGD, suite and IBP-certified accuracy (%) on the same points, and the per-example
    order certified <= attacked <= clean checked."""
    cert = ibp(model, x, y, eps)
    suite = run_suite(model, x, y, "inf", eps, rng=settings.seed, log=None,
                      attacks=fast_suite(steps=settings.suite_steps, n_queries=settings.suite_queries))
    clean_ok = suite.clean_ok  # the suite's own clean pass on the same points
    pgd_ok = clean_ok & ~to_host(pgd(model, x, y, norm="inf", eps=eps, steps=settings.pgd_steps, rng=settings.seed,
                                     batch_size=500).success)
    attacked_ok = suite.robust_ok & pgd_ok
    if np.any(cert.certified & ~attacked_ok) or np.any(attacked_ok & ~clean_ok):
        raise AssertionError(f"certified <= attacked <= clean fails at eps {eps}: a bug in the bounds or the attacks")
    return {"clean_acc": _pct(clean_ok.mean()), "pgd_acc": _pct(pgd_ok.mean()), "suite_acc": _pct(suite.robust_acc),
            "certified_acc": _pct(cert.certified_acc)}


class CertifiedReproduction:
    def __init__(self, settings: CertifiedSettings, nets_=("paper-mnist", "large-mnist"), eps_list=(0.1, 0.3),
                 also=(), results_dir="results/certified", runs_dir="runs/certified", data_dir=None, time_limit=None,
                 log=print, progress=True):
        nets_ = [n for n in nets_ if n != "none"]  # --nets none: only --also models, then assemble
        for n in nets_:
            if n not in ("paper-mnist", "large-mnist"):
                raise InputError(f"unknown net {n!r} for certified: choose paper-mnist, large-mnist or none")
        self.s, self.nets, self.eps_list, self.also = settings, list(nets_), [float(e) for e in eps_list], list(also)
        self.results_dir, self.runs_dir, self.data_dir = Path(results_dir), Path(runs_dir), data_dir
        self.time_limit, self.log, self.progress = time_limit, log, progress

    def load_data(self):
        d = load_mnist(self.data_dir, log=self.log)
        self.mean, self.std = dataset_stats(d.x_train)
        self.x, self.y = to_float(d.x_train[: self.s.n_train]), d.y_train[: self.s.n_train]
        self.xt, self.yt = to_float(d.x_test[: self.s.n_eval]), d.y_test[: self.s.n_eval]

    def _stored(self, folder) -> CertifiedRun | None:
        try:
            r = CertifiedRun(**json.loads((folder / "result.json").read_text()))
        except (OSError, ValueError, TypeError):
            return None
        return r if r.settings == asdict(self.s) else None

    def train_one(self, net, eps) -> CertifiedRun:
        folder = self.runs_dir / net / f"ibp-{eps:g}"
        done = self._stored(folder)
        if done is not None and (done.epochs >= self.s.epochs or not (folder / "checkpoint.npz").exists()):
            more = "" if done.epochs >= self.s.epochs else (f" ({done.epochs} of {self.s.epochs} epochs, trained "
                                                             "elsewhere with no checkpoint here: kept as it is)")
            self.log(f"[{net}/ibp/{eps:g}] finished earlier: {done.certified_acc}% certified{more}")
            return done
        model = nets.NETS[net](seed=self.s.seed, mean=self.mean, std=self.std)
        trainer = RobustTrainer(model, self.s.train_config(eps), out_dir=folder,
                                resume=(folder / "checkpoint.npz").exists(), progress=self.progress,
                                log=lambda line: self.log(f"[{net}/ibp/{eps:g}] {line}"),
                                data={"dataset": "mnist", "n_train": self.s.n_train, "net": net})
        history = trainer.fit(self.x, self.y, time_limit=self.time_limit)
        t0 = time.perf_counter()
        scores = evaluate(model, self.xt, self.yt, eps, self.s)
        run = CertifiedRun(net=net, method="ibp", eps=eps, **scores, epochs=trainer.epoch,
                           train_seconds=round(sum(r["seconds"] for r in history), 1),
                           eval_seconds=round(time.perf_counter() - t0, 1), settings=asdict(self.s))
        write_atomic(folder / "result.json", json.dumps(asdict(run), indent=1))
        self.log(f"[{net}/ibp/{eps:g}] clean {run.clean_acc}%  suite {run.suite_acc}%  certified {run.certified_acc}%")
        return run

    def evaluate_other(self, name, path) -> list:
        """A model trained elsewhere (``name`` = "<net>/<method>"), at every eps of the list."""
        model, runs = load_model(path), []
        for eps in self.eps_list:
            t0 = time.perf_counter()
            net, _, method = name.partition("/")
            runs.append(CertifiedRun(net=net, method=method or "?", eps=eps, **evaluate(model, self.xt, self.yt, eps, self.s),
                                     eval_seconds=round(time.perf_counter() - t0, 1), settings=asdict(self.s)))
            self.log(f"[{name}/{eps:g}] clean {runs[-1].clean_acc}%  suite {runs[-1].suite_acc}%  "
                     f"certified {runs[-1].certified_acc}%")
        folder = self.runs_dir / "others" / name.replace("/", "_")
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(folder / "result.json", json.dumps([asdict(r) for r in runs], indent=1))
        return runs

    def run(self) -> dict:
        self.load_data()
        for net in self.nets:
            for eps in self.eps_list:
                self.train_one(net, eps)
        for name, path in self.also:
            self.evaluate_other(name, path)
        return self.assemble()

    def assemble(self) -> dict:
        runs = {}
        for result in sorted(self.runs_dir.glob("*/ibp-*/result.json")):
            r = self._stored(result.parent)
            if r is not None:
                runs[f"{r.net}/ibp/{r.eps:g}"] = r
        for result in sorted(self.runs_dir.glob("others/*/result.json")):
            for d in json.loads(result.read_text()):
                r = CertifiedRun(**d)
                if {k: r.settings.get(k) for k in self.s.evaluation()} == self.s.evaluation():
                    runs[f"{r.net}/{r.method}/{r.eps:g}"] = r
        out = {"n_eval": self.s.n_eval, "settings": asdict(self.s),
               "suite": describe(fast_suite(steps=self.s.suite_steps, n_queries=self.s.suite_queries)),
               "runs": {k: {key: v for key, v in asdict(r).items() if key != "settings"} for k, r in runs.items()}}
        self.results_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(self.results_dir / "results.json", json.dumps(out, indent=1))
        write_atomic(self.results_dir / "table.md", render_table(out))
        if runs:
            plot_certified(out, self.results_dir / "certified.png")
        return out


def render_table(out) -> str:
    lines = [f"MNIST, l_inf: on the first {out['n_eval']} test images, clean, PGD-{out['settings']['pgd_steps']}, the "
             f"suite ({out['suite']}) and IBP-certified accuracy, %.", "",
             "| net / method / eps | epochs | clean | PGD | suite | certified (IBP) | published | train seconds |",
             "|---|---|---|---|---|---|---|---|"]
    for key, r in out["runs"].items():
        pub = PUBLISHED.get(r["eps"], "-") if r["method"] == "ibp" else "-"
        lines.append(f"| {key} | {r['epochs'] or '-'} | {r['clean_acc']:.2f} | {r['pgd_acc']:.2f} | {r['suite_acc']:.2f} | "
                     f"{r['certified_acc']:.2f} | {pub} | {r['train_seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def plot_certified(out, path):
    """Left: the IBP-trained nets, certified (solid) and suite (dashed) against eps. Right: nets
    trained against attacks, the same two lines (their IBP certificate is ~0 everywhere)."""
    from .figures import _plt  # noqa: PLC0415

    plt = _plt()
    series = {}
    for r in out["runs"].values():
        label = f"{r['net']}/{r['method']}" + (f" (trained {r['eps']:g})" if r["method"] == "ibp" else "")
        series.setdefault((r["method"] == "ibp", label), []).append(r)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=120, sharey=True)
    for ax, ibp_trained, title in ((axes[0], True, "IBP-trained"), (axes[1], False, "trained against attacks")):
        chosen = sorted((label, rs) for (is_ibp, label), rs in series.items() if is_ibp == ibp_trained)
        for i, (label, rs) in enumerate(chosen):
            rs = sorted(rs, key=lambda r: r["eps"])
            e = [0.0] + [r["eps"] for r in rs]
            ax.plot(e, [rs[0]["clean_acc"]] + [r["certified_acc"] for r in rs], marker="o", color=f"C{i}",
                    label=f"{label}: certified")
            ax.plot(e, [rs[0]["clean_acc"]] + [r["suite_acc"] for r in rs], marker="x", ls="--", color=f"C{i}",
                    label=f"{label}: suite")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("eps (l_inf, pixel scale)")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        if chosen:  # an empty panel (no such runs yet) has no legend to draw
            ax.legend(fontsize=6, loc="lower left")
    axes[0].set_ylabel("accuracy (%) on the first test images")
    fig.suptitle("IBP-certified (solid: a lower bound) vs the attack suite (dashed: an upper bound)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
