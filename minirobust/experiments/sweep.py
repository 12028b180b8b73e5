"""Sweeps: many trainings over norm x eps x seed, on a process pool or a Dask cluster.

    from minirobust.experiments.sweep import grid, sweep
    rows = sweep(grid(norms=[None, "inf", "2", "1"], seeds=[0, 1, 2], epochs=5), "results/sweeps/mnist")

One run is ``run(config, out_root)``: a pure function of its configuration. It trains (resuming
from its own checkpoint), evaluates (clean accuracy; the fast method over an eps grid for each
norm; PGD l_inf at the training radius and twice it) and writes ``<out>/runs/<key>/`` with its
checkpoint, metrics, model and ``result.json``. A runner (runners.py) only schedules runs, so a
re-run of a sweep skips every run with a result and resumes the others.

After the runs, the driver adds the AMNIST-style accuracy (the paper's adversarial set, built
from the baseline of the same seed: the test images it classifies correctly, each attacked at the
smallest eps of a grid that fools it) and writes ``results.csv`` / ``results.json`` (one row a
run), ``summary.md`` / ``summary.json`` (mean and standard deviation over seeds) and
``summary.png`` (accuracy against eps, per attack norm, with error bars).
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .. import checkpoint, nets
from ..atomic import csv_text, write_atomic
from ..errors import InputError
from ..robust import (AdversarialSet, RobustTrainer, TrainConfig, accuracy_on_set, accuracy_vs_eps, adversarial_set,
                      robust_accuracy)
from ..robust.balls import norm_name, parse_norm
from .mnist import AMNIST_GRIDS, CURVE_GRIDS, MNIST_STD_PIXEL, PAPER_TRAINING
from .runners import make_runner

# the paper's radii on the [0, 1] pixel scale (0.2 / 2 / 2 in standardised units)
PAPER_RADII = {"inf": round(0.2 * MNIST_STD_PIXEL, 4), "2": round(2.0 * MNIST_STD_PIXEL, 4),
               "1": round(2.0 * MNIST_STD_PIXEL, 4)}
TIMING_FIELDS = ("train_seconds", "eval_seconds")  # differ from run to run; everything else must not


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines one run (and nothing else: it names the run's folder)."""

    norm: str | None = None  # None: plain training; "inf", "2", "1"
    eps: float = 0.0
    seed: int = 0
    epochs: int = 5
    net: str = "paper-mnist"
    dataset: str = "mnist"
    n_train: int | None = None
    n_test: int | None = None
    n_pgd: int = 500
    pgd_steps: int = 20

    def __post_init__(self):
        if self.norm is not None:
            object.__setattr__(self, "norm", norm_name(parse_norm(self.norm)))
        if self.norm is None and self.eps:
            raise InputError("a run without a norm trains plainly: its eps must be 0")
        if self.net not in nets.NETS:
            raise InputError(f"unknown net {self.net!r}; known: {sorted(nets.NETS)}")
        if self.dataset not in ("mnist", "synthetic"):
            raise InputError(f"sweeps run on mnist or synthetic, not {self.dataset!r}")
        if int(self.epochs) < 1 or int(self.seed) < 0:
            raise InputError(f"epochs must be >= 1 and seed >= 0, got {self.epochs}, {self.seed}")
        if not (math.isfinite(self.eps) and self.eps >= 0):
            raise InputError(f"eps must be a finite number >= 0, got {self.eps}")
        for name in ("n_train", "n_test"):
            value = getattr(self, name)
            if value is not None and int(value) < 1:
                raise InputError(f"{name} must be >= 1 (or None for all), got {value}")
        if int(self.n_pgd) < 1 or int(self.pgd_steps) < 1:
            raise InputError(f"n_pgd and pgd_steps must be >= 1, got {self.n_pgd}, {self.pgd_steps}")

    @property
    def key(self) -> str:
        """A readable, unique name: the run's folder and its row's id."""
        parts = [self.dataset, self.net, f"l{self.norm}-eps{self.eps:g}" if self.norm else "plain",
                 f"seed{self.seed}", f"ep{self.epochs}"]
        parts += [f"n{self.n_train}"] if self.n_train else []
        parts += [f"t{self.n_test}"] if self.n_test else []
        return "_".join(parts)

    @property
    def group(self) -> str:
        """The key without the seed: the runs a summary averages over."""
        return self.key.replace(f"_seed{self.seed}_", "_")

    def to_dict(self) -> dict:
        return asdict(self)


def grid(norms=(None, "inf", "2", "1"), radii=None, seeds=(0, 1, 2), **common) -> list:
    """Configurations for every norm x radius x seed. ``radii``: {norm: [eps, ...]} in pixel
    units (default: the paper's, ``PAPER_RADII``); a norm of None is plain training."""
    radii = {norm_name(parse_norm(k)): list(v) for k, v in (radii or {k: [v] for k, v in PAPER_RADII.items()}).items()}
    configs = []
    for norm, seed in itertools.product(norms, seeds):
        name = None if norm in (None, "none", "plain") else norm_name(parse_norm(norm))
        for eps in ([0.0] if name is None else radii.get(name) or [PAPER_RADII[name]]):
            configs.append(RunConfig(norm=name, eps=float(eps), seed=int(seed), **common))
    return configs


# ----- one run ----------------------------------------------------------------------------------

def load_arrays(cfg: RunConfig, data_dir=None):
    """(x_train, y_train, x_test, y_test, mean, std): float32 host arrays in [0, 1]."""
    from ..data import dataset_stats, load_mnist, separable_images, to_float  # noqa: PLC0415

    if cfg.dataset == "synthetic":
        x, y = separable_images(cfg.n_train or 2000, seed=0)
        xt, yt = separable_images(cfg.n_test or 500, seed=1)
        return x, y, xt, yt, float(x.mean()), float(x.std())
    d = load_mnist(data_dir, log=lambda *a: None)
    mean, std = dataset_stats(d.x_train)
    return (to_float(d.x_train[: cfg.n_train]), d.y_train[: cfg.n_train], to_float(d.x_test[: cfg.n_test]),
            d.y_test[: cfg.n_test], mean, std)


def run_folder(out_root, cfg: RunConfig) -> Path:
    return Path(out_root) / "runs" / cfg.key


def finished_result(folder, cfg: RunConfig, log=None) -> dict | None:
    """The run's stored result row, if there is one made with exactly ``cfg``'s settings. A torn
    or unreadable result.json, or one from other settings (the folder's name rounds eps and
    leaves out the evaluation settings), is not finished: said in one line, and run again."""
    path = Path(folder) / "result.json"
    if not path.exists():
        return None
    try:
        row = json.loads(path.read_text())
        if not isinstance(row, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        if log:
            log(f"  {path}: unreadable ({type(exc).__name__}), so that run counts as unfinished and runs again")
        return None
    asked = {**cfg.to_dict(), "norm": cfg.norm or "none"}  # as the row stores them
    differ = {k: (row.get(k), v) for k, v in asked.items() if row.get(k) != v}
    if differ:
        if log:
            log(f"  {path}: made with other settings {differ} (stored, asked): evaluated again")
        return None
    return row


def run(config, out_root, data_dir=None) -> dict:
    """Train and evaluate one configuration (a RunConfig or its dict); returns its result row.

    A run with a ``result.json`` of the same settings returns it; one with a checkpoint
    continues from it (a finished training is only evaluated again)."""
    cfg = config if isinstance(config, RunConfig) else RunConfig(**config)
    folder = run_folder(out_root, cfg)
    done = finished_result(folder, cfg)
    if done is not None:
        return done
    x, y, xt, yt, mean, std = load_arrays(cfg, data_dir)
    model = nets.NETS[cfg.net](seed=cfg.seed, mean=mean, std=std)
    train = TrainConfig(epochs=cfg.epochs, norm=cfg.norm, eps=cfg.eps, seed=cfg.seed, **PAPER_TRAINING)
    history = RobustTrainer(model, train, out_dir=folder, resume=True, log=None, progress=False).fit(x, y)
    t0 = time.perf_counter()
    row = {"key": cfg.key, "group": cfg.group, **cfg.to_dict(), "norm": cfg.norm or "none",
           "final_train_loss": history[-1]["train_loss"], "clean_acc": model.accuracy(xt, yt)}
    for norm, eps_list in CURVE_GRIDS.items():  # the fast method: one gradient per batch for the grid
        for point in accuracy_vs_eps(model, xt, yt, norm, eps_list):
            row[f"fast_l{norm}_{point['eps']:g}"] = point["robust_acc"]
    xs, ys = xt[: cfg.n_pgd], yt[: cfg.n_pgd]
    for eps in (PAPER_RADII["inf"], 2 * PAPER_RADII["inf"]):
        row[f"pgd_linf_{eps:g}"] = robust_accuracy(model, xs, ys, "inf", eps, method="pgd", steps=cfg.pgd_steps,
                                                   rng=cfg.seed)["robust_acc"]
    row["train_seconds"] = round(sum(h["seconds"] for h in history), 2)
    row["eval_seconds"] = round(time.perf_counter() - t0, 2)
    write_atomic(folder / "result.json", json.dumps(row, indent=1))
    return row


# ----- the sweep ----------------------------------------------------------------------------------

def sweep(configs, out_dir, runner="local", workers=2, scheduler=None, data_dir=None, progress=True,
          log=print) -> list:
    """Run every configuration (skipping those with results), add AMNIST-style accuracy, write
    the results and the summary. ``runner``: "local", "dask", or a runner object. Returns the
    rows, one a configuration, in the order given."""
    configs = [c if isinstance(c, RunConfig) else RunConfig(**c) for c in configs]
    keys = [c.key for c in configs]
    if len(set(keys)) != len(keys):
        raise InputError("the sweep lists a configuration twice")
    if not configs:
        raise InputError("the sweep has no configurations")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runner = make_runner(runner, workers, scheduler) if isinstance(runner, str) else runner
    stored = {c.key: finished_result(run_folder(out, c), c, log) for c in configs}
    rows = {k: row for k, row in stored.items() if row is not None}
    todo = {c.key: c.to_dict() for c in configs if c.key not in rows}
    log(f"sweep: {len(configs)} runs, {len(rows)} finished earlier, {len(todo)} to run on the "
        f"{getattr(runner, 'name', type(runner).__name__)} runner -> {out}")
    bar = _progress(len(configs), len(rows), progress)
    fn = functools.partial(run, out_root=str(out.resolve()), data_dir=data_dir)
    for key, row in runner.map(fn, todo):
        rows[key] = row
        if bar is not None:
            bar.update(1)
        log(f"  done: {key}  clean {row['clean_acc']:.4f}")
    if bar is not None:
        bar.close()
    ordered = [rows[k] for k in keys]
    add_adversarial_set_accuracy(ordered, configs, out, data_dir, log)
    write_results(ordered, out)
    write_summary(ordered, out)
    return ordered


def _progress(total, done, enabled):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm  # noqa: PLC0415
    except ImportError:  # pragma: no cover
        return None
    return tqdm(total=total, initial=done, desc="runs", disable=None)


def add_adversarial_set_accuracy(rows, configs, out, data_dir=None, log=print):
    """``amnist_acc`` for every run: accuracy on the adversarial set of the plain run of the same
    seed (and data, net, epochs); no such run, no column. The sets are kept in ``out/sets``."""
    by_key = {c.key: c for c in configs}
    for row in rows:
        cfg = by_key[row["key"]]
        base = RunConfig(**{**cfg.to_dict(), "norm": None, "eps": 0.0})
        if base.key not in by_key:
            continue
        path = out / "sets" / f"{base.key}.npz"
        if path.exists():
            aset = AdversarialSet.load(path)
        else:
            _, _, xt, yt, _, _ = load_arrays(base, data_dir)
            baseline = checkpoint.load(run_folder(out, base) / "model.npz").model
            aset = adversarial_set(baseline, xt, yt, AMNIST_GRIDS)
            aset.save(path)
            log(f"  adversarial set of {base.key}: {len(aset)} examples {aset.counts()}")
        model = checkpoint.load(run_folder(out, cfg) / "model.npz").model
        result = accuracy_on_set(model, aset)
        row["amnist_acc"] = result["overall"]
        row["amnist_n"] = len(aset)


def write_results(rows, out: Path):
    write_atomic(out / "results.json", json.dumps(rows, indent=1))
    columns = list(dict.fromkeys(k for row in rows for k in row))
    write_atomic(out / "results.csv", csv_text(rows, columns))


def summarise(rows) -> list:
    """Mean and standard deviation over seeds of every metric, per group (config minus seed)."""
    groups = {}
    for row in rows:
        groups.setdefault(row["group"], []).append(row)
    metrics = [k for k, v in rows[0].items() if isinstance(v, float) and k not in TIMING_FIELDS and k != "eps"]
    metrics += [k for k in ("amnist_acc",) if k in rows[0] and k not in metrics]
    summary = []
    for group, members in groups.items():
        entry = {"group": group, "norm": members[0]["norm"], "eps": members[0]["eps"], "seeds": len(members)}
        for m in metrics:
            values = [r[m] for r in members if r.get(m) is not None]
            if values:
                entry[m] = {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)) if len(values) > 1
                            else 0.0}
        summary.append(entry)
    return summary


def write_summary(rows, out: Path):
    summary = summarise(rows)
    write_atomic(out / "summary.json", json.dumps(summary, indent=1))
    cols = [("clean_acc", "clean"), ("amnist_acc", "AMNIST-style"), (f"pgd_linf_{PAPER_RADII['inf']:g}",
            f"PGD l_inf {PAPER_RADII['inf']:g}"), (f"pgd_linf_{2 * PAPER_RADII['inf']:g}",
            f"PGD l_inf {2 * PAPER_RADII['inf']:g}")]
    cols = [(k, name) for k, name in cols if any(k in s for s in summary)]
    lines = ["| trained | eps | seeds | " + " | ".join(name for _, name in cols) + " |",
             "|---|---|---|" + "---|" * len(cols)]
    for s in summary:
        cells = [f"{100 * s[k]['mean']:.2f} ± {100 * s[k]['std']:.2f}" if k in s else "-" for k, _ in cols]
        lines.append(f"| {s['norm']} | {s['eps']:g} | {s['seeds']} | " + " | ".join(cells) + " |")
    (out / "summary.md").write_text("Accuracy (%), mean ± standard deviation over seeds\n\n" + "\n".join(lines) + "\n")
    _plot_summary(summary, out / "summary.png")


def _plot_summary(summary, path):
    try:
        import matplotlib  # noqa: PLC0415

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:  # pragma: no cover - matplotlib is optional
        return
    fig, axes = plt.subplots(1, len(CURVE_GRIDS), figsize=(5 * len(CURVE_GRIDS), 3.8))
    for ax, (norm, eps_list) in zip(axes, CURVE_GRIDS.items()):
        for s in summary:
            keys = [f"fast_l{norm}_{e:g}" for e in eps_list]
            if not all(k in s for k in keys):
                continue
            label = "plain" if s["norm"] == "none" else f"l_{s['norm']} robust, eps {s['eps']:g}"
            ax.errorbar(eps_list, [s[k]["mean"] for k in keys], yerr=[s[k]["std"] for k in keys], marker="o",
                        ms=3, capsize=3, label=f"{label} ({s['seeds']} seeds)")
        ax.set(xlabel=f"eps (l_{norm}, pixel scale)", ylabel="accuracy", ylim=(0, 1),
               title=f"fast l_{norm} method: mean ± std over seeds")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_radii(items) -> dict:
    """['inf=0.031,0.062', '2=0.62'] -> {'inf': [0.031, 0.062], '2': [0.62]}."""
    radii = {}
    for item in items or []:
        if "=" not in item:
            raise InputError(f"--radii takes NORM=EPS[,EPS...], got {item!r}")
        norm, values = item.split("=", 1)
        try:
            eps = [float(v) for v in values.split(",") if v.strip()]
        except ValueError:
            raise InputError(f"--radii {item!r}: the radii must be numbers") from None
        if not eps or not all(math.isfinite(e) and e >= 0 for e in eps):
            raise InputError(f"--radii {item!r}: give finite radii >= 0")
        name = norm_name(parse_norm(norm))
        if name in radii:
            raise InputError(f"--radii gives l_{name} twice: put all its radii in one NORM=EPS,EPS")
        radii[name] = eps
    return radii
