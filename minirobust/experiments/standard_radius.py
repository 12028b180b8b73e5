"""MNIST at the radius the field reports: l_inf eps 0.3, every training method, the suite.

    minirobust reproduce mnist-eps03 [--nets paper-mnist,large-mnist] [--methods paper,fgsm-rs,pgd,trades]

For each net x method: train at eps 0.3 (eps ramped up over the first epochs; the catastrophic-
overfitting monitor on the last 1,000 training images, held out), then measure clean accuracy
on all 10,000 test images, PGD-40 and the attack suite (APGD-CE, APGD-T, Square) on the first
``n_suite``. Each run lives in its own folder (``runs/mnist_eps03/<net>/<method>/``): killed,
it resumes from its checkpoint; finished, its ``result.json`` is reused while the settings it
records are the ones asked for. Runs can train in separate processes (or on separate machines)
and a last call assembles ``results.json``, ``table.md`` and ``monitor.png``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from .. import nets
from ..atomic import write_atomic
from ..data import dataset_stats, load_mnist, to_float
from ..errors import InputError
from ..robust import RobustTrainer, TrainConfig, robust_accuracy, run_suite
from ..robust.monitor import collapse, first_full_epoch
from ..robust.suite import describe, fast_suite

NETS = ("paper-mnist", "large-mnist")
METHODS = ("paper", "fgsm-rs", "pgd", "trades")
# AutoAttack robust accuracy at l_inf 0.3 on MNIST, as published (their nets and schedules differ)
PUBLISHED = {"pgd": ("Madry et al. 2018 (PGD-AT, 4-layer CNN, ~83 epochs of PGD-40)", 88.50),
             "trades": ("Zhang et al. 2019 (TRADES, 4-conv CNN, 100 epochs of 40 steps)", 92.81),
             "fgsm-rs": ("Wong et al. 2020 (FGSM-RS, 10 epochs)", 82.93)}


@dataclass
class Eps03Settings:
    """Everything that decides a run's numbers; a stored result is reused only if they match."""

    eps: float = 0.3
    epochs: int = 20
    eps_ramp_epochs: float = 2.0
    lr: float = 0.01
    weight_decay: float = 5e-4
    train_steps: int = 10  # pgd and trades: ascent steps per batch (step 2.5 * eps / steps)
    n_train: int | None = None  # None: all 60,000 (less the monitor's held-out images)
    monitor: int = 1000  # held-out training images the overfitting monitor attacks
    n_clean: int | None = None  # test images for clean accuracy (None: all 10,000)
    n_suite: int = 1000  # test images for PGD and the suite
    pgd_steps: int = 40
    suite_steps: int = 100
    suite_queries: int = 1000
    seed: int = 0

    def train_config(self, method) -> TrainConfig:
        return TrainConfig(epochs=self.epochs, lr=self.lr, weight_decay=self.weight_decay, norm="inf", eps=self.eps,
                           method=method, ascent_steps=self.train_steps if method in ("pgd", "trades") else None,
                           eps_ramp_epochs=self.eps_ramp_epochs, seed=self.seed)


QUICK = dict(epochs=1, n_train=3000, monitor=200, n_clean=500, n_suite=50, pgd_steps=10, suite_steps=10,
             suite_queries=50, train_steps=3, eps_ramp_epochs=0.5)


@dataclass
class RunResult:
    """One net x method: what it scored, what it cost."""

    net: str
    method: str
    epochs: int
    train_seconds: float
    clean_acc: float  # % on n_clean test images
    suite_acc: float  # % under the suite on the first n_suite
    pgd_acc: float  # % under PGD-40 on the same images
    catastrophic_overfitting: bool
    stopped_early: bool = False  # by the monitor (stop_on_overfit), not by a time limit
    monitor: list = field(default_factory=list)  # pgd_acc_monitor per epoch (%)
    train_acc: list = field(default_factory=list)  # accuracy under the training attack per epoch (%)
    suite_broken_by: dict = field(default_factory=dict)
    eval_seconds: float = 0.0
    settings: dict = field(default_factory=dict)

    def overfit_epochs(self, margin=0.2, gap=0.5) -> list:
        """The epochs at which the monitor's rule (monitor.collapse) fires, judged from the stored
        per-epoch figures, so results from any version of the code are judged alike."""
        history = [{"epoch": i + 1, "train_acc": t / 100, "pgd_acc_monitor": m / 100}
                   for i, (t, m) in enumerate(zip(self.train_acc, self.monitor))]
        full = first_full_epoch(self.settings.get("eps_ramp_epochs", 0))
        return [h["epoch"] for i, h in enumerate(history) if collapse(history[: i + 1], margin, gap, full)]

    @classmethod
    def from_json(cls, d) -> "RunResult":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def _pct(v) -> float:
    return round(100 * float(v), 2)


class StandardRadius:
    def __init__(self, settings: Eps03Settings, nets_=NETS, methods=METHODS, results_dir="results/mnist_eps03",
                 runs_dir="runs/mnist_eps03", data_dir=None, time_limit=None, log=print, progress=True):
        for n in nets_:
            if n not in NETS:
                raise InputError(f"unknown net {n!r} for mnist-eps03: choose from {', '.join(NETS)}")
        for m in methods:
            if m not in METHODS:
                raise InputError(f"unknown method {m!r} for mnist-eps03: choose from {', '.join(METHODS)}")
        self.s, self.nets, self.methods = settings, list(nets_), list(methods)
        self.results_dir, self.runs_dir, self.data_dir = Path(results_dir), Path(runs_dir), data_dir
        self.time_limit, self.log, self.progress = time_limit, log, progress

    def load_data(self):
        d = load_mnist(self.data_dir, log=self.log)
        self.mean, self.std = dataset_stats(d.x_train)
        x, y = to_float(d.x_train[: self.s.n_train]), d.y_train[: self.s.n_train]
        self.x, self.y = x[: -self.s.monitor], y[: -self.s.monitor]
        self.monitor = (x[-self.s.monitor :], y[-self.s.monitor :])
        self.xt, self.yt = to_float(d.x_test[: self.s.n_clean]), d.y_test[: self.s.n_clean]

    def stored(self, folder, finished=True) -> RunResult | None:
        """The folder's result, if it exists, reads, and was made with these settings (and, with
        ``finished``, all the epochs: a run stopped by --time-limit is evaluated but resumes)."""
        try:
            r = RunResult.from_json(json.loads((folder / "result.json").read_text()))
        except (OSError, ValueError, TypeError):
            return None
        if r.settings != asdict(self.s) or (finished and r.epochs < self.s.epochs and not r.stopped_early):
            return None
        return r

    def run_one(self, net, method) -> RunResult:
        folder = self.runs_dir / net / method
        done = self.stored(folder)
        if done is not None:
            self.log(f"[{net}/{method}] finished earlier: {done.suite_acc}% under the suite")
            return done
        partial = self.stored(folder, finished=False)
        if partial is not None and not (folder / "checkpoint.npz").exists():
            self.log(f"[{net}/{method}] {partial.epochs} of {self.s.epochs} epochs, trained elsewhere with no "
                     "checkpoint here to continue from: its result is kept as it is")
            return partial
        model = nets.NETS[net](seed=self.s.seed, mean=self.mean, std=self.std)
        trainer = RobustTrainer(model, self.s.train_config(method), out_dir=folder,
                                resume=(folder / "checkpoint.npz").exists(), progress=self.progress,
                                log=lambda line: self.log(f"[{net}/{method}] {line}"),
                                data={"dataset": "mnist", "n_train": self.s.n_train, "net": net,
                                      "monitor": self.s.monitor})
        history = trainer.fit(self.x, self.y, monitor=self.monitor, time_limit=self.time_limit)
        t0 = time.perf_counter()
        n = min(self.s.n_suite, len(self.xt))
        xs, ys = self.xt[:n], self.yt[:n]
        suite = run_suite(model, xs, ys, "inf", self.s.eps, rng=self.s.seed, log=None,
                          attacks=fast_suite(steps=self.s.suite_steps, n_queries=self.s.suite_queries))
        pgd_r = robust_accuracy(model, xs, ys, "inf", self.s.eps, method="pgd", steps=self.s.pgd_steps, rng=self.s.seed)
        result = RunResult(
            net=net, method=method, epochs=trainer.epoch, train_seconds=round(sum(r["seconds"] for r in history), 1),
            clean_acc=_pct(model.accuracy(self.xt, self.yt)), suite_acc=_pct(suite.robust_acc),
            pgd_acc=_pct(pgd_r["robust_acc"]),
            catastrophic_overfitting=any(r.get("catastrophic_overfitting") for r in history),
            stopped_early=trainer.stopped_early,
            monitor=[_pct(r["pgd_acc_monitor"]) for r in history if "pgd_acc_monitor" in r],
            train_acc=[_pct(r["train_acc"]) for r in history], suite_broken_by=suite.to_json()["broken_by"],
            eval_seconds=round(time.perf_counter() - t0, 1), settings=asdict(self.s))
        write_atomic(folder / "result.json", json.dumps(asdict(result), indent=1))
        self.log(f"[{net}/{method}] clean {result.clean_acc}%  PGD-{self.s.pgd_steps} {result.pgd_acc}%  "
                 f"suite {result.suite_acc}%  ({result.epochs} epochs, {result.train_seconds} s)")
        return result

    def run(self) -> dict:
        self.load_data()
        for net in self.nets:
            for method in self.methods:
                self.run_one(net, method)
        return self.assemble()

    def assemble(self) -> dict:
        """results.json, table.md and monitor.png from every finished run under runs_dir (runs
        trained elsewhere count too, when their settings match)."""
        runs = {}
        for net in NETS:
            for method in METHODS:
                r = self.stored(self.runs_dir / net / method, finished=False)
                if r is not None:
                    runs[f"{net}/{method}"] = r
        out = {"eps": self.s.eps, "n_suite": self.s.n_suite, "settings": asdict(self.s),
               "suite": describe(fast_suite(steps=self.s.suite_steps, n_queries=self.s.suite_queries)),
               "runs": {k: _summary(r) for k, r in runs.items()}}
        self.results_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(self.results_dir / "results.json", json.dumps(out, indent=1))
        write_atomic(self.results_dir / "table.md", render_table(out))
        if runs:
            plot_monitor(runs, self.results_dir / "monitor.png")
        return out


def _summary(r: RunResult) -> dict:
    d = {key: v for key, v in asdict(r).items() if key != "settings"}
    d["overfit_epochs"] = r.overfit_epochs()
    d["catastrophic_overfitting"] = bool(d["overfit_epochs"])
    return d


def render_table(out) -> str:
    lines = [f"MNIST, l_inf eps {out['eps']}: clean accuracy on the test images, PGD-{out['settings']['pgd_steps']} and "
             f"the suite ({out['suite']}) on the first {out['n_suite']}; %.", "",
             "| net / method | epochs | clean | PGD | suite | published (AutoAttack) | catastrophic overfitting "
             "| train seconds |", "|---|---|---|---|---|---|---|---|"]
    for key, r in out["runs"].items():
        pub = PUBLISHED.get(r["method"])
        epochs = f"{r['epochs']}" + ("" if r["epochs"] >= out["settings"]["epochs"] or r.get("stopped_early")
                                     else f" of {out['settings']['epochs']} (time limit)")
        lines.append(f"| {key} | {epochs} | {r['clean_acc']:.2f} | {r['pgd_acc']:.2f} | {r['suite_acc']:.2f} | "
                     f"{f'{pub[1]:.2f} ({pub[0]})' if pub else '-'} | {'yes' if r['catastrophic_overfitting'] else 'no'} "
                     f"| {r['train_seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def plot_monitor(runs: dict, path):
    from .figures import _plt  # noqa: PLC0415

    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.8), dpi=120)
    for key, r in runs.items():
        if r.monitor:
            ax.plot(range(1, len(r.monitor) + 1), r.monitor, marker="o", ms=3,
                    ls="--" if r.net == "paper-mnist" else "-", label=key)
    ax.set_xlabel("epoch")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel("PGD-10 accuracy on held-out images (%)")
    ax.set_title("catastrophic-overfitting monitor, l_inf eps 0.3", fontsize=10)
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
