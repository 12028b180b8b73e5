"""Evaluation: clean and adversarial accuracy, AMNIST-style adversarial sets, curves.

Two denominators, both reported:
* robust accuracy over ALL points (RobustBench's convention): an example counts only if it
  is classified correctly clean AND still correctly after the attack; clean mistakes count
  as failures;
* accuracy over the clean-correct points only (the denominator the paper's adversarial
  sets use).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..atomic import write_atomic
from ..backend import to_host
from ..errors import DataError, InputError
from ..npzfile import read_npz
from .attack_base import whole
from .attacks import fast_method, fast_method_sweep, pgd
from .balls import parse_norm


def accuracy(model, x, y, batch_size=1000) -> float:
    return model.accuracy(x, y, batch_size)


def _attack(model, x, y, norm, eps, method, **kw):
    from .apgd import apgd  # noqa: PLC0415 - apgd imports attacks, which this module's users import first
    from .square import square  # noqa: PLC0415

    methods = {"fast": fast_method, "pgd": pgd, "apgd": apgd, "square": square}
    if method not in methods:
        raise InputError(f"unknown attack method {method!r}: choose one of {', '.join(methods)}")
    return methods[method](model, x, y, norm=norm, eps=eps, **kw)


def robust_accuracy(model, x, y, norm, eps, method="fast", batch_size=500, **kw) -> dict:
    """Accuracy under attack, with labels = the TRUE labels (an evaluation, not an attack
    on predictions). Returns {'robust_acc' (over all), 'clean_acc', 'robust_acc_on_clean_correct'}."""
    batch_size = whole(batch_size, "batch_size")
    clean_ok = np.zeros(len(x), bool)
    robust_ok = np.zeros(len(x), bool)
    for i in range(0, len(x), batch_size):
        xb, yb = x[i : i + batch_size], y[i : i + batch_size]
        ok = to_host(model.predict(xb)) == to_host(yb)
        res = _attack(model, xb, yb, norm, eps, method, **kw)
        clean_ok[i : i + batch_size] = ok
        robust_ok[i : i + batch_size] = ok & ~to_host(res.success)
    n_clean = int(clean_ok.sum())
    return {"eps": float(eps), "clean_acc": float(clean_ok.mean()), "robust_acc": float(robust_ok.mean()),
            "robust_acc_on_clean_correct": float(robust_ok.sum() / n_clean) if n_clean else 0.0,
            "n": int(len(x)), "n_clean_correct": n_clean}


def accuracy_vs_eps(model, x, y, norm, eps_list, method="fast", batch_size=500, **kw) -> list:
    """``robust_accuracy`` at each eps. The fast method's direction does not depend on eps,
    so its sweep reuses one gradient per batch; PGD runs one attack per eps."""
    batch_size = whole(batch_size, "batch_size")
    if method != "fast":
        return [robust_accuracy(model, x, y, norm, e, method=method, batch_size=batch_size, **kw) for e in eps_list]
    eps_list = [float(e) for e in eps_list]
    clean_ok = np.zeros(len(x), bool)
    robust_ok = np.zeros((len(eps_list), len(x)), bool)
    for i in range(0, len(x), batch_size):
        xb, yb = x[i : i + batch_size], y[i : i + batch_size]
        ok = to_host(model.predict(xb)) == to_host(yb)
        clean_ok[i : i + batch_size] = ok
        for j, (_, res) in enumerate(fast_method_sweep(model, xb, yb, norm, eps_list, **kw)):
            robust_ok[j, i : i + batch_size] = ok & ~to_host(res.success)
    n_clean = int(clean_ok.sum())
    return [{"eps": e, "clean_acc": float(clean_ok.mean()), "robust_acc": float(robust_ok[j].mean()),
             "robust_acc_on_clean_correct": float(robust_ok[j].sum() / n_clean) if n_clean else 0.0,
             "n": int(len(x)), "n_clean_correct": n_clean} for j, e in enumerate(eps_list)]


def norm_stats(norms) -> dict:
    """Summary of perturbation norms (N,): mean, median, min, max."""
    n = np.asarray(to_host(norms), dtype=np.float64)
    if n.size == 0:
        return {"count": 0}
    return {"count": int(n.size), "mean": float(n.mean()), "median": float(np.median(n)),
            "min": float(n.min()), "max": float(n.max())}


def full_range_check(model, x, y, batch_size=500) -> dict:
    """Gradient-masking guard: the fast l_inf method with eps = 1 (the whole [0, 1] range)
    should drive accuracy to chance or below. A model that keeps high accuracy here is
    probably hiding its gradient, not robust."""
    r = robust_accuracy(model, x, y, "inf", 1.0, method="fast", batch_size=batch_size)
    classes = int(to_host(y).max()) + 1
    r["chance"] = 1.0 / max(classes, 2)
    r["suspicious"] = bool(r["robust_acc"] > 2 * r["chance"])
    return r


# ----- adversarial sets (AMNIST / ACIFAR) -------------------------------------------------------

@dataclass
class AdversarialSet:
    """Adversarial examples of a baseline, each with the norm and eps that made it."""

    x: np.ndarray  # (M, C, H, W) float32 in [0, 1]
    y: np.ndarray  # (M,) true labels
    source: np.ndarray  # (M,) index of the clean test image it came from
    norm: np.ndarray  # (M,) '<U3' norm name ("inf", "2", "1")
    eps: np.ndarray  # (M,) the smallest eps on the grid that fooled the baseline
    info: dict = field(default_factory=dict)

    def __len__(self):
        return len(self.y)

    def part(self, norm: str) -> "AdversarialSet":
        keep = self.norm == norm
        return AdversarialSet(self.x[keep], self.y[keep], self.source[keep], self.norm[keep], self.eps[keep])

    def counts(self) -> dict:
        names, counts = np.unique(self.norm, return_counts=True)
        return {str(k): int(v) for k, v in zip(names, counts)}

    def save(self, path):
        # atomic: a driver killed mid-write must not leave a partial set that every rerun trips on
        write_atomic(path, lambda f: np.savez_compressed(f, x=self.x, y=self.y, source=self.source, norm=self.norm,
                                                           eps=self.eps))

    @classmethod
    def load(cls, path) -> "AdversarialSet":
        """Read a set written by ``save`` (an untrusted file: see ``npzfile.py``)."""
        arrays = read_npz(path, DataError, "adversarial set", names=["x", "y", "source", "norm", "eps"])
        n = len(arrays["y"])
        if any(len(v) != n for v in arrays.values()) or arrays["x"].dtype.kind != "f":
            raise DataError(f"{path}: not an adversarial set (arrays of different lengths, or non-float images)")
        return cls(arrays["x"], arrays["y"], arrays["source"], arrays["norm"], arrays["eps"])


def adversarial_set(baseline, x, y, eps_grid: dict, method="fast", batch_size=500, bounds=(0.0, 1.0),
                    **attack_kw) -> AdversarialSet:
    """The paper's AMNIST / ACIFAR construction.

    From the test points the baseline classifies correctly, for each norm in ``eps_grid``
    (e.g. {"inf": [...], "2": [...], "1": [...]}) and each image, take the smallest eps on
    the grid whose attack (against the true label) fools the baseline; keep only those.
    The baseline scores 0% on the result by construction. Host arrays in, host arrays out.
    """
    correct = np.flatnonzero(to_host(baseline.predict(x, 1000)) == to_host(y))
    xs, ys, srcs, norms, epss = [], [], [], [], []

    def keep(x_adv, idx, name, eps):
        xs.append(to_host(x_adv))
        ys.append(to_host(y[idx]))
        srcs.append(idx)
        norms.append(np.full(len(idx), name, dtype="<U3"))
        epss.append(np.full(len(idx), eps, dtype=np.float32))

    for norm, grid in eps_grid.items():
        name, grid = _norm_label(norm), sorted(float(e) for e in grid)
        for i in range(0, correct.size, batch_size):
            idx = correct[i : i + batch_size]
            done = np.zeros(idx.size, bool)
            if method == "fast":  # one gradient per batch serves the whole grid
                sweep = fast_method_sweep(baseline, x[idx], y[idx], norm, grid, bounds=bounds, **attack_kw)
            else:
                sweep = ((e, _attack(baseline, x[idx], y[idx], norm, e, method, bounds=bounds, **attack_kw))
                         for e in grid)
            for eps, res in sweep:
                new = to_host(res.success) & ~done  # the smallest eps on the grid that fools it
                if new.any():
                    keep(to_host(res.x_adv)[new], idx[new], name, eps)
                    done |= new
                if done.all():
                    break
    if not xs:
        shape = (0,) + tuple(x.shape[1:])
        return AdversarialSet(np.zeros(shape, np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64),
                              np.zeros(0, "<U3"), np.zeros(0, np.float32))
    return AdversarialSet(np.concatenate(xs).astype(np.float32), np.concatenate(ys).astype(np.int64),
                          np.concatenate(srcs).astype(np.int64), np.concatenate(norms), np.concatenate(epss),
                          info={"n_clean_correct": int(correct.size), "method": method})


def _norm_label(norm) -> str:
    p = parse_norm(norm)
    return "inf" if np.isinf(p) else str(int(p)) if float(p).is_integer() else str(p)[:3]


def accuracy_on_set(model, aset: AdversarialSet) -> dict:
    """Accuracy of ``model`` on an adversarial set: overall and per part (norm)."""
    if len(aset) == 0:
        return {"overall": None}
    ok = to_host(model.predict(aset.x, 1000)) == aset.y
    out = {"overall": float(ok.mean()), "n": int(len(aset))}
    for name in np.unique(aset.norm):
        keep = aset.norm == name
        out[f"l{name}"] = float(ok[keep].mean())
    return out
