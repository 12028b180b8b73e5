"""The paper's MNIST experiment, end to end: ``minirobust reproduce mnist``.

Stages (each shows progress, each writes into ``results_dir``):
  1. train the baseline and the l_inf, l_2, l_1 robust nets (Algorithm 1, one ascent step)
     with the authors' settings; checkpoints in ``runs_dir/<net>/`` so a stopped run resumes
     and finished nets are not retrained;
  2. build AMNIST: adversarial examples of the baseline from the test images it classifies
     correctly, with the fast method for each norm at the SMALLEST eps of a fixed grid that
     fools it (the paper does not state its eps; the grid is in ``AMNIST_GRIDS``);
  3. Table 1: clean test accuracy and AMNIST accuracy (overall and per part) of every net;
  4. accuracy under the fast method against a grid of eps, for each norm (over ALL test
     points, RobustBench style), and a figure per norm;
  5. beyond the paper: PGD (l_inf, 40 steps, random start) at the training eps and twice it,
     the gradient-masking guard (fast l_inf at eps = 1), time per epoch plain vs robust;
  6. figures of single-pixel (l_1) adversarial examples that fool the baseline, and of AMNIST.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import __version__, checkpoint, nets
from ..backend import to_host
from ..data import dataset_stats, load_mnist, to_float
from ..robust import (
    RobustTrainer,
    TrainConfig,
    accuracy_on_set,
    accuracy_vs_eps,
    adversarial_set,
    full_range_check,
    robust_accuracy,
    single_pixel,
)
from ..robust.run_folder import RunFolder

MNIST_STD_PIXEL = 0.3081  # the authors' radii are in standardised units: eps_pixel = eps_std * std

# name -> (norm, eps in standardised units as published)
ROBUST_NETS = {"baseline": (None, 0.0), "linf": ("inf", 0.2), "l2": ("2", 2.0), "l1": ("1", 2.0)}

# Authors' settings (paper + their code): SGD lr 0.01, momentum 0.9, per-step decay 5e-6,
# Keras l2(1e-3) weight decay (= 2e-3 in our gradient convention), batch 100, 120 epochs.
PAPER_TRAINING = dict(lr=0.01, momentum=0.9, decay=5e-6, weight_decay=2e-3, batch_size=100)
PAPER_EPOCHS = 120
PAPER_CLEAN = {"baseline": 99.09, "linf": 99.34, "l2": 99.29, "l1": 99.12}

AMNIST_GRIDS = {  # pixel-scale eps; with clipping to [0, 1] one pixel cannot move more than 1
    "inf": [round(0.01 * k, 2) for k in range(1, 31)],  # 0.01 ... 0.30
    "2": [round(0.25 * k, 2) for k in range(1, 25)],  # 0.25 ... 6.0
    "1": [round(0.1 * k, 1) for k in range(1, 11)],  # 0.1 ... 1.0 (a single pixel, clipped)
}
CURVE_GRIDS = {
    "inf": [0.0, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.25, 0.3],
    "2": [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0],
    "1": [0.0, 0.25, 0.5, 0.75, 1.0],
}


@dataclass
class Settings:
    epochs: int = 20
    n_train: int | None = None  # None: all 60,000
    n_test: int | None = None  # None: all 10,000
    n_pgd: int = 1000  # test images for the PGD columns
    pgd_steps: int = 40
    n_suite: int = 100  # test images for the suite's columns (0: none); each column takes minutes
    suite_steps: int = 100  # APGD steps in the suite (APGD-T: per target class)
    suite_queries: int = 1000  # Square's queries in the suite
    seed: int = 0
    clip: bool = True
    quick: bool = False
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class AttackColumn:
    """One attacked-accuracy column of Table 1, and the one place its result keys are spelt: the
    writer (``pgd_columns``, ``suite_columns``) and the reader (``render_table``) both use it.

    kind "pgd": PGD-k at l_norm eps, beside the fast method on the same images;
    kind "suite": the attack suite at l_norm eps, beside PGD-k on the same images."""

    kind: str  # "pgd" | "suite"
    norm: str  # "inf" | "2"
    eps: float

    @property
    def tag(self) -> str:
        return f"l{self.norm}_{self.eps:g}"

    @property
    def key(self) -> str:  # the column's own accuracy
        return f"{self.kind}_{self.tag}"

    @property
    def beside_key(self) -> str:  # the accuracy it is compared with, on the same images
        return f"fast_{self.tag}_pgd_subset" if self.kind == "pgd" else f"pgd_{self.tag}_suite_subset"

    @property
    def broken_by_key(self) -> str:  # the suite's per-attack counts
        return f"suite_{self.tag}_broken_by"

    def header(self, settings) -> str:
        n = min(settings["n_pgd"] if self.kind == "pgd" else settings.get("n_suite", 0), settings["n_test"])
        names = "fast / PGD" if self.kind == "pgd" else "PGD"
        last = "" if self.kind == "pgd" else " / suite"
        return f"{names}-{settings['pgd_steps']}{last} l_{self.norm} eps {self.eps:g} ({n} imgs)"


def pgd_column_set(eps_pixel) -> list:
    """PGD at the l_inf training radius and twice it (``eps_pixel``: {"linf": eps, ...})."""
    return [AttackColumn("pgd", "inf", e) for e in (eps_pixel["linf"], 2 * eps_pixel["linf"])]


def suite_column_set(eps_pixel) -> list:
    """The suite at the l_inf and l_2 training radii and twice each."""
    return [AttackColumn("suite", norm, e) for norm, net in (("inf", "linf"), ("2", "l2"))
            for e in (eps_pixel[net], 2 * eps_pixel[net])]


def attack_columns(settings) -> list:
    """Table 1's attack columns, from the run's settings: the PGD set, and the suite set when the
    run had a suite (n_suite > 0); the same sets the writer runs."""
    eps = settings["eps_pixel"]
    return (pgd_column_set(eps) if settings["n_pgd"] else []) + (suite_column_set(eps) if settings.get("n_suite") else [])


QUICK = dict(epochs=1, n_train=10000, n_test=2000, n_pgd=200, pgd_steps=10, n_suite=20, suite_steps=10,
             suite_queries=50)


def machine_description() -> dict:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}


def software_versions() -> dict:
    import numba  # noqa: PLC0415

    from ..backend import get_backend  # noqa: PLC0415
    from ..kernels import describe  # noqa: PLC0415

    return {"minirobust": __version__, "numpy": np.__version__, "numba": numba.__version__,
            "backend": get_backend(), "kernel_tiers": describe()}


def _pct(v):
    return None if v is None else round(100 * v, 2)


class MnistReproduction:
    """Runs the stages; ``run()`` returns the results dict it also writes to results.json.

    The experiment's choices are class attributes, so ``cifar10.Cifar10Reproduction`` reuses
    the stages with its own net, data, radii and grids.
    """

    dataset, set_name = "MNIST", "amnist"  # the adversarial set: AMNIST
    robust_nets, training, paper_epochs, paper_clean = ROBUST_NETS, PAPER_TRAINING, PAPER_EPOCHS, PAPER_CLEAN
    set_grids, curve_grids, std_pixel = AMNIST_GRIDS, CURVE_GRIDS, MNIST_STD_PIXEL
    paper_clean_label = "clean (paper)"

    def __init__(self, settings: Settings, results_dir="results/mnist", runs_dir="runs/mnist", data_dir=None,
                 resume=False, log=print, progress=True):
        self.s, self.log, self.progress, self.resume = settings, log, progress, resume
        self.results_dir, self.runs_dir, self.data_dir = Path(results_dir), Path(runs_dir), data_dir
        self.models, self.timings = {}, {}

    def _stage(self, items, desc):
        """Iterate with a progress bar for one stage (shown on a terminal, unless disabled)."""
        items = list(items)
        if not self.progress:
            return items
        from tqdm.auto import tqdm  # noqa: PLC0415

        return tqdm(items, desc=desc, leave=False, disable=None)

    # ----- data -----------------------------------------------------------------------------------
    def load_data(self):
        d = load_mnist(self.data_dir, log=self.log)
        self.mean, self.std = dataset_stats(d.x_train)
        self.x, self.y = to_float(d.x_train[: self.s.n_train]), d.y_train[: self.s.n_train]
        self.xt, self.yt = to_float(d.x_test[: self.s.n_test]), d.y_test[: self.s.n_test]

    def eps_pixel(self, name) -> float:
        return round(self.robust_nets[name][1] * self.std_pixel, 4)

    def extra_settings(self) -> dict:
        return {}

    def make_model(self):
        return nets.paper_mnist(seed=self.s.seed, mean=self.mean, std=self.std)

    def train_config(self, name) -> TrainConfig:
        norm = self.robust_nets[name][0]
        return TrainConfig(epochs=self.s.epochs, norm=norm, eps=self.eps_pixel(name) if norm else 0.0,
                           clip=self.s.clip, seed=self.s.seed, **self.training)

    # ----- stage 1: training ---------------------------------------------------------------------
    def train_all(self):
        for name, (norm, _) in self.robust_nets.items():
            out = self.runs_dir / name
            cfg = self.train_config(name)
            final = out / "model.npz"
            if self.resume and final.exists():
                ck = checkpoint.load(final)
                if ck.meta.get("config") == cfg.to_json() and ck.epoch == cfg.epochs:
                    self.log(f"[train] {name}: finished earlier, loaded {final}")
                    self.models[name] = ck.model
                    self.timings[name] = [h["seconds"] for h in ck.meta.get("history", [])]
                    continue
            if not self.resume:
                RunFolder(out).clear()  # under the folder's lock: never a run another process holds
            self.log(f"[train] {name}: norm {norm or '-'}, eps {cfg.eps:g} (pixel scale), {cfg.epochs} epochs "
                     f"on {len(self.x):,} images")
            model = self.make_model()
            trainer = RobustTrainer(model, cfg, out_dir=out, resume=self.resume, log=self.log,
                                    progress=self.progress)
            trainer.fit(self.x, self.y)
            self.models[name] = model
            self.timings[name] = [h["seconds"] for h in trainer.history]

    # ----- stage 2-6: evaluation ----------------------------------------------------------------
    def build_amnist(self):
        self.log(f"[{self.set_name}] attacking the baseline's correctly classified test images")
        self.amnist = adversarial_set(self.models["baseline"], self.xt, self.yt, self.set_grids,
                                      bounds=(0.0, 1.0) if self.s.clip else None)
        self.amnist.save(self.runs_dir / f"{self.set_name}.npz")
        return self.amnist

    def curve_subset(self):
        """The test images the accuracy-vs-eps curves run on (MNIST: all of them)."""
        return self.xt, self.yt

    def curves(self):
        out = {}
        jobs = [(norm, name) for norm in self.curve_grids for name in self.models]
        xs, ys = self.curve_subset()
        for norm, name in self._stage(jobs, "accuracy-vs-eps curves"):
            self.log(f"[curves] fast l_{norm}: {name}")
            out.setdefault(norm, {})[name] = accuracy_vs_eps(self.models[name], xs, ys, norm,
                                                             self.curve_grids[norm])
        return out

    def pgd_columns(self):
        xs, ys = self.xt[: self.s.n_pgd], self.yt[: self.s.n_pgd]
        columns = pgd_column_set({"linf": self.eps_pixel("linf")})
        out = {}
        for name, model in self._stage(self.models.items(), f"PGD-{self.s.pgd_steps}"):
            self.log(f"[pgd] l_inf {self.s.pgd_steps} steps: {name}")
            out[name] = {}
            for col in columns:
                out[name][col.key] = robust_accuracy(model, xs, ys, "inf", col.eps, method="pgd",
                                                     steps=self.s.pgd_steps, random_start=True, rng=self.s.seed)
                # the fast method on the same subset, so the two columns compare like with like
                out[name][col.beside_key] = robust_accuracy(model, xs, ys, "inf", col.eps)
        return out

    def suite_columns(self):
        """The standard suite (APGD-CE, APGD-T, Square; worst case per example) at the l_inf
        and l_2 training radii and twice them, on the first ``n_suite`` test images, with
        PGD on the same images so that the drop from PGD to the suite compares like with like."""
        from ..robust.suite import fast_suite, run_suite  # noqa: PLC0415

        n = min(self.s.n_suite, len(self.xt))
        xs, ys = self.xt[:n], self.yt[:n]
        attacks = fast_suite(steps=self.s.suite_steps, n_queries=self.s.suite_queries)
        out = {}
        for name, model in self._stage(self.models.items(), "suite"):
            out[name] = {}
            for col in suite_column_set({net: self.eps_pixel(net) for net in ("linf", "l2")}):
                self.log(f"[suite] {name}: l_{col.norm} eps {col.eps:g} on {n} images")
                r = run_suite(model, xs, ys, col.norm, col.eps, attacks=attacks, rng=self.s.seed, log=None)
                pgd_r = robust_accuracy(model, xs, ys, col.norm, col.eps, method="pgd", steps=self.s.pgd_steps,
                                        random_start=True, rng=self.s.seed)
                out[name][col.key] = _pct(r.robust_acc)
                out[name][col.beside_key] = _pct(pgd_r["robust_acc"])
                out[name][col.broken_by_key] = r.to_json()["broken_by"]
        return out

    def run(self) -> dict:
        t0 = time.perf_counter()
        clock = _StageClock()
        self.results_dir.mkdir(parents=True, exist_ok=True)
        self.load_data()
        self.train_all()
        clock.mark("training (this process; per net: training_seconds)")
        amnist = self.build_amnist()
        clock.mark(f"{self.set_name} set")
        baseline_amnist = accuracy_on_set(self.models["baseline"], amnist)
        table = {}
        for name, model in self._stage(self.models.items(), "Table 1"):
            self.log(f"[table] {name}")
            table[name] = {"clean_acc": _pct(model.accuracy(self.xt, self.yt)),
                           self.set_name: {k: (_pct(v) if k != "n" else v) for k, v in accuracy_on_set(model, amnist).items()},
                           "masking_guard_fast_linf_eps1": _pct(full_range_check(model, self.xt, self.yt)["robust_acc"])}
        clock.mark("table and masking guard")
        curves = self.curves()
        clock.mark("curves")
        pgd_cols = self.pgd_columns()
        clock.mark("PGD columns")
        suite_cols = self.suite_columns() if self.s.n_suite else {}
        clock.mark("suite columns")
        for name in table:
            for key, r in pgd_cols[name].items():
                table[name][key] = _pct(r["robust_acc"])
            table[name].update(suite_cols.get(name, {}))
            table[name]["fast_linf_train_eps"] = _pct(
                robust_accuracy(self.models[name], self.xt, self.yt, "inf", self.eps_pixel("linf"))["robust_acc"])
        epoch_s = {k: float(np.median(v)) if v else None for k, v in self.timings.items()}
        results = {
            "settings": {**self.s.__dict__, "training": self.training, "paper_epochs": self.paper_epochs,
                         "eps_pixel": {k: self.eps_pixel(k) for k in self.robust_nets},
                         "eps_standardised": {k: v[1] for k, v in self.robust_nets.items()},
                         f"{self.set_name}_grids": self.set_grids, "curve_grids": self.curve_grids,
                         "n_train": len(self.x), "n_test": len(self.xt), **self.extra_settings()},
            "set_name": self.set_name, "dataset": self.dataset,
            "software": software_versions(), "machine": machine_description(),
            "paper_clean_acc": self.paper_clean, "paper_clean_label": self.paper_clean_label,
            self.set_name: {"size": len(amnist), "parts": amnist.counts(), "n_clean_correct": amnist.info.get("n_clean_correct"),
                       "baseline_acc": _pct(baseline_amnist["overall"]) if len(amnist) else None,
                       "eps_median": {k: float(np.median(amnist.part(k).eps)) for k in amnist.counts()}},
            "table": table,
            "curves": {norm: {name: [{"eps": p["eps"], "robust_acc": _pct(p["robust_acc"]),
                                      "on_clean_correct": _pct(p["robust_acc_on_clean_correct"])} for p in pts]
                              for name, pts in per.items()} for norm, per in curves.items()},
            "seconds_per_epoch": epoch_s,
            "robust_over_plain_epoch_time": {k: (epoch_s[k] / epoch_s["baseline"]) if epoch_s.get("baseline") else None
                                             for k in self.robust_nets if k != "baseline"},
        }
        self.figures(results)
        clock.mark("fast l_inf at the training eps, figures")
        results["training_seconds"] = {k: round(float(np.sum(v)), 1) for k, v in self.timings.items()}
        results["stage_seconds"] = clock.stages
        results["wall_time_s"] = round(time.perf_counter() - t0, 1)
        (self.results_dir / "results.json").write_text(json.dumps(results, indent=1))
        (self.results_dir / "table.md").write_text(render_table(results))
        self.log(render_table(results))
        self.log(f"wrote {self.results_dir}/results.json, table.md and figures in {results['wall_time_s']:.0f} s")
        return results

    def figures(self, results):
        from .figures import plot_accuracy_vs_eps, plot_adversarial_grid  # noqa: PLC0415

        for norm, per in results["curves"].items():
            plot_accuracy_vs_eps({name: [(p["eps"], p["robust_acc"] / 100) for p in pts] for name, pts in per.items()},
                                 self.results_dir / f"curve_l{norm}.png",
                                 title=f"{self.dataset}: accuracy under the fast l_{norm} method")
        base = self.models["baseline"]

        def predict(x):  # host labels for the figures, whatever the backend
            return to_host(base.predict(x))

        n = min(len(self.xt), 2000)
        res = single_pixel(base, self.xt[:n], self.yt[:n], eps=1.0).to_host()
        fooled = np.flatnonzero(res.success & (predict(self.xt[:n]) == self.yt[:n]))
        results["single_pixel"] = {"tried": int(n), "fooled": int(fooled.size)}
        if fooled.size:
            pick = fooled[:8]
            plot_adversarial_grid(self.xt[pick], res.x_adv[pick], predict(self.xt[pick]),
                                  predict(res.x_adv[pick]), self.results_dir / "single_pixel.png",
                                  title="single-pixel (l_1) adversarial examples of the baseline "
                                        "(changed pixel circled)", mark_changed=True)
        for norm in self.amnist.counts():
            part = self.amnist.part(norm)
            pick = np.arange(min(8, len(part)))
            plot_adversarial_grid(self.xt[part.source[pick]], part.x[pick], predict(self.xt[part.source[pick]]),
                                  predict(part.x[pick]), self.results_dir / f"{self.set_name}_l{norm}.png",
                                  title=f"{self.set_name.upper()} l_{norm} part: clean (top) vs adversarial (bottom)",
                                  mark_changed=norm == "1")


class _StageClock:
    """Seconds spent in each stage of a run, in order."""

    def __init__(self):
        self.stages, self._t = {}, time.perf_counter()

    def mark(self, name):
        now = time.perf_counter()
        self.stages[name] = round(now - self._t, 1)
        self._t = now


def render_table(r) -> str:
    t, names = r["table"], list(r["table"])
    key = r.get("set_name", "amnist")  # "acifar" for CIFAR-10
    label = key.upper()
    parts = sorted(r[key]["parts"])
    columns = attack_columns(r["settings"])
    pgd_cols, suite_cols = [c for c in columns if c.kind == "pgd"], [c for c in columns if c.kind == "suite"]
    head = (["net", r.get("paper_clean_label", "clean (paper)"), "clean (ours)", label] + [f"{label} l{p}" for p in parts]
            + ["fast l_inf @train eps"] + [c.header(r["settings"]) for c in pgd_cols]
            + ["fast l_inf eps 1 (guard)"] + [c.header(r["settings"]) for c in suite_cols])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for n in names:
        row = t[n]
        cells = [n, _fmt(r["paper_clean_acc"].get(n)), f"{row['clean_acc']:.2f}", _fmt(row[key].get("overall"))]
        cells += [_fmt(row[key].get(f"l{p}")) for p in parts]
        cells += [_fmt(row["fast_linf_train_eps"])]
        cells += [f"{_fmt(row[c.beside_key])} / {_fmt(row[c.key])}" for c in pgd_cols]
        cells += [_fmt(row["masking_guard_fast_linf_eps1"])]
        cells += [f"{_fmt(row.get(c.beside_key))} / {_fmt(row.get(c.key))}" for c in suite_cols]
        lines.append("| " + " | ".join(cells) + " |")
    a = r[key]
    lines += ["", f"{label}: {a['size']} examples from {a['n_clean_correct']} correctly classified test images "
                  f"(parts: " + ", ".join(f"l{k}: {v}" for k, v in sorted(a["parts"].items())) + "); "
                  f"baseline accuracy on it {a['baseline_acc']}%.",
              *([_suite_drops(t, suite_cols, r["settings"])] if suite_cols else []),
              "Training eps (pixel scale): " + ", ".join(f"{k} {v:g}" for k, v in r["settings"]["eps_pixel"].items()
                                                            if k != "baseline") + ".",
              "Seconds per epoch (median): " + ", ".join(f"{k} {v:.1f}" for k, v in r["seconds_per_epoch"].items()
                                                         if v is not None)
              + "; robust / plain: " + ", ".join(f"{k} {v:.2f}" for k, v in r["robust_over_plain_epoch_time"].items()
                                                 if v is not None) + "."]
    return "\n".join(lines) + "\n"


def _suite_drops(t, columns, settings) -> str:
    """One sentence: how far each robust net's accuracy falls from PGD to the suite."""
    parts = []
    for name, row in t.items():
        if name == "baseline":
            continue
        drops = [f"l_{c.norm} eps {c.eps:g}: {row[c.beside_key] - row[c.key]:+.1f}"
                 for c in columns if row.get(c.key) is not None]
        parts.append(f"{name} ({', '.join(drops)})")
    return (f"From PGD-{settings['pgd_steps']} to the suite (APGD-CE, APGD-T, Square; {settings['suite_steps']} "
            f"steps, {settings['suite_queries']} queries), robust accuracy falls by (points): " + "; ".join(parts)
            + ".")


def _fmt(v):
    return "-" if v is None else f"{v:.2f}"
