"""Gradient checking: compare a hand-written backward pass with finite differences.

    report = check_grad(layer, x)          # every input and parameter, elementwise
    print(report)                          # worst relative error per tensor, verdict
    report.assert_ok()                     # raises with a full dump when it is wrong

How it works. With a fixed random upstream gradient ``dy`` (never all ones: that hides
bugs that swap or mix output positions), the scalar ``L(t) = sum(dy * forward(x))`` has
gradient ``backward(dy)`` with respect to the input and ``grads`` with respect to each
parameter. The numeric side uses central differences in float64:

    dL/dt_i ~ (L(t + h e_i) - L(t - h e_i)) / (2h)

``mode="elementwise"`` does this for every entry (2 forward passes each: small tensors);
``mode="directional"`` checks one random unit direction d per tensor,
``<grad, d> ~ (L(t + h d) - L(t - h d)) / (2h)`` (2 forward passes per tensor: big ones).

Relative error of an entry: |analytic - numeric| / max(|analytic| + |numeric|, floor),
where floor = 1e-3 * (the tensor's largest |numeric| entry), so that entries that are
zero up to rounding are judged against the tensor's own scale.
Verdict on the worst entry: < 1e-7 "good", < 1e-4 "suspicious", else "bad".

A kink (ReLU at 0, a max-pool tie) makes finite differences wrong, not the backward
pass; at the worst entry we compare the two one-sided differences and warn if they
disagree, which is the signature of a kink inside [t - h, t + h].
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .backend import get_xp, to_host
from .errors import InputError

GOOD, SUSPICIOUS = 1e-7, 1e-4


@dataclass
class TensorCheck:
    """The result for one tensor (the input ``x`` or one parameter)."""

    name: str
    max_rel_error: float
    index: tuple  # where the worst entry is ((), in directional mode)
    analytic: float  # the analytic value there
    numeric: float  # the numeric value there
    kink: bool = False  # one-sided differences disagree at the worst entry

    @property
    def verdict(self) -> str:
        return verdict(self.max_rel_error)


@dataclass
class GradReport:
    """Per-tensor results of ``check_grad``; ``str(report)`` prints a table."""

    mode: str
    checks: list = field(default_factory=list)
    dy_modified: bool = False  # backward wrote into its upstream gradient (a contract breach)

    @property
    def worst(self) -> TensorCheck:
        return max(self.checks, key=lambda c: c.max_rel_error)

    @property
    def max_rel_error(self) -> float:
        return self.worst.max_rel_error

    @property
    def verdict(self) -> str:
        return "bad" if self.dy_modified else verdict(self.max_rel_error)

    @property
    def warnings(self) -> list:
        out = [f"{c.name}: worst entry {c.index} sits at a kink (one-sided differences disagree); "
               "its numeric gradient is unreliable, move the input away from it" for c in self.checks if c.kink]
        if self.dy_modified:
            out.append("backward modified its upstream gradient dy in place")
        return out

    def ok(self, tol: float = SUSPICIOUS) -> bool:
        return not self.dy_modified and self.max_rel_error < tol

    def assert_ok(self, tol: float = SUSPICIOUS):
        if not self.ok(tol):
            raise AssertionError(f"gradient check failed (tolerance {tol:g}):\n{self}")

    def __str__(self):
        rows = [f"gradient check ({self.mode}): verdict {self.verdict}",
                f"  {'tensor':<16}{'max rel err':>12}  {'at index':<18}{'analytic':>14}{'numeric':>14}  verdict"]
        for c in self.checks:
            rows.append(f"  {c.name:<16}{c.max_rel_error:>12.2e}  {str(c.index):<18}"
                        f"{c.analytic:>14.6e}{c.numeric:>14.6e}  {c.verdict}{'  (kink!)' if c.kink else ''}")
        rows += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(rows)


def verdict(err: float) -> str:
    return "good" if err < GOOD else "suspicious" if err < SUSPICIOUS else "bad"


def _params_of(module) -> dict:
    return module.parameters() if callable(getattr(module, "parameters", None)) else getattr(module, "params", {})


def _grads_of(module) -> dict:
    return module.gradients() if callable(getattr(module, "gradients", None)) else getattr(module, "grads", {})


def _relative_errors(analytic, numeric):
    floor = max(1e-3 * float(np.abs(numeric).max(initial=0.0)), 1e-12)
    return np.abs(analytic - numeric) / np.maximum(np.abs(analytic) + np.abs(numeric), floor)


def check_grad(module, x, dy=None, wrt=None, mode: str = "elementwise", forward_kwargs=None,
               h: float = 1e-6, seed: int = 0) -> GradReport:
    """Check ``module.backward`` against central differences of ``module.forward``.

    module: anything with ``forward(x, **forward_kwargs)`` and ``backward(dy)`` returning
        dL/dx, whose parameters (``params`` dict or ``parameters()``) get gradients
        (``grads`` or ``gradients()``): a Layer, a Sequential, a SoftmaxCrossEntropy.
        Its parameters must be float64.
    x: the float64 input (a view is fine: it is perturbed in place and restored exactly).
    dy: the upstream gradient; a seeded standard-normal one by default.
    wrt: names of tensors to check ("x" and parameter names); all of them by default.
    """
    if mode not in ("elementwise", "directional"):
        raise InputError(f"unknown mode {mode!r}: 'elementwise' or 'directional'")
    kwargs = forward_kwargs or {}
    params = _params_of(module)
    for name, t in {"x": x, **params}.items():
        if t.dtype != np.float64:
            raise InputError(f"check_grad needs float64 tensors; {name} is {t.dtype} "
                             "(build the layer with dtype=np.float64 or use model.astype('float64'))")
    rng = np.random.default_rng(seed)
    xp = get_xp(x)

    y = module.forward(x, **kwargs)
    if dy is None:
        dy = xp.asarray(rng.standard_normal(np.shape(y)))
    dy_before = dy.copy()
    dx = module.backward(dy)
    dy_modified = not bool((dy == dy_before).all())
    analytic = {"x": dx, **{k: v.copy() for k, v in _grads_of(module).items()}}

    def L():
        return float((module.forward(x, **kwargs) * dy).sum())

    tensors = {"x": x, **params}
    names = list(tensors) if wrt is None else list(wrt)
    report = GradReport(mode=mode, dy_modified=dy_modified)
    for name in names:
        if name not in tensors or name not in analytic:
            raise InputError(f"no tensor/gradient named {name!r}; have {sorted(analytic)}")
        t, a = tensors[name], to_host(analytic[name])
        if tuple(a.shape) != tuple(t.shape):
            report.checks.append(TensorCheck(name, np.inf, (), np.nan, np.nan))
            continue
        if mode == "elementwise":
            report.checks.append(_elementwise(name, t, a, L, h))
        else:
            report.checks.append(_directional(name, t, a, L, h, rng))
    module.forward(x, **kwargs)  # leave the module's caches as they were
    return report


def _elementwise(name, t, a, L, h):
    numeric = np.empty(t.shape)
    for idx in np.ndindex(*t.shape):
        old = t[idx].item()
        t[idx] = old + h
        up = L()
        t[idx] = old - h
        down = L()
        t[idx] = old  # exact restore
        numeric[idx] = (up - down) / (2 * h)
    err = _relative_errors(a, numeric)
    worst = np.unravel_index(int(np.argmax(err)), err.shape) if err.size else ()
    kink = _is_kink(t, worst, L, h, direction=None) if err.size else False
    return TensorCheck(name, float(err.max(initial=0.0)), tuple(int(i) for i in worst),
                       float(a[worst]) if err.size else 0.0, float(numeric[worst]) if err.size else 0.0, kink)


def _directional(name, t, a, L, h, rng):
    xp = get_xp(t)
    d = rng.standard_normal(t.shape)
    d /= np.linalg.norm(d)
    d_dev = xp.asarray(d)
    original = t.copy()
    t += h * d_dev
    up = L()
    t[...] = original - h * d_dev
    down = L()
    t[...] = original
    numeric = (up - down) / (2 * h)
    analytic = float((a * d).sum())
    err = float(_relative_errors(np.array([analytic]), np.array([numeric]))[0])
    kink = _is_kink(t, None, L, h, direction=d_dev)
    return TensorCheck(name, err, (), analytic, numeric, kink)


def _is_kink(t, idx, L, h, direction):
    """True when the forward and backward one-sided differences disagree strongly."""
    original = t.copy()
    centre = L()
    if direction is None:  # one entry
        old = t[idx].item()
        t[idx] = old + h
        up = L()
        t[idx] = old - h
        down = L()
        t[idx] = old
    else:  # a direction
        t += h * direction
        up = L()
        t[...] = original - h * direction
        down = L()
        t[...] = original
    fwd, bwd = (up - centre) / h, (centre - down) / h
    scale = max(abs(fwd), abs(bwd), 1e-8)
    # smooth functions: the two differ by O(h * curvature); a kink makes them differ by O(1)
    return abs(fwd - bwd) / scale > 1e-2
