"""How a learner's function is judged: run it, check its shapes, compare each tensor it
returns with the truth, and say what is wrong in words.

For a backward pass the truth is the numeric gradient: with a fixed random upstream gradient
``dy`` (never all ones: that hides swapped outputs), the scalar ``L = sum(dy * forward(...))``
is differentiated by central differences in float64, entry by entry:

    dL/dt_i ~ (L(t + h e_i) - L(t - h e_i)) / (2h)

Relative error of an entry, as in CS231n: |got - expected| / max(|got| + |expected|, floor),
with floor = 1e-3 * (the tensor's largest |expected|) so that entries that are zero up to
rounding are judged against the tensor's scale. Bands for float64:
    < 1e-7  good: the function is right;
    < 1e-2  suspicious: close but not right (a missing term, a scale, a wrong tie);
    else    wrong.
The inputs are chosen away from kinks (no ReLU input near 0, no max-pool ties), so a
correct function always lands in the good band.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GOOD, WRONG = 1e-7, 1e-2
BANDS = "bands (float64): < 1e-7 good, 1e-7 to 1e-2 suspicious, > 1e-2 wrong"


@dataclass
class Result:
    """The verdict on one exercise: ``passed`` and a message for a person."""

    exercise: str
    passed: bool
    message: str
    worst_error: float = float("nan")  # the worst relative error over the tensors checked

    def __str__(self):
        return self.message

    def __bool__(self):
        return self.passed

    def _repr_pretty_(self, p, cycle):  # IPython shows the message, not a dataclass dump
        p.text(self.message)


class Mismatch(Exception):
    """Raised inside a check with the message that names the wrong tensor."""


def band(err: float) -> str:
    return "good" if err < GOOD else "suspicious" if err < WRONG else "wrong"


def relative_errors(got, expected):
    floor = max(1e-3 * float(np.abs(expected).max(initial=0.0)), 1e-12)
    return np.abs(got - expected) / np.maximum(np.abs(got) + np.abs(expected), floor)


def numeric_gradient(loss, t, h=1e-5):
    """dloss/dt by central differences, entry by entry; ``t`` is perturbed in place and
    restored exactly."""
    grad = np.empty(t.shape)
    for idx in np.ndindex(*t.shape):
        old = t[idx]
        t[idx] = old + h
        up = loss()
        t[idx] = old - h
        down = loss()
        t[idx] = old
        grad[idx] = (up - down) / (2 * h)
    return grad


def as_outputs(got, names, dtype=np.float64):
    """The learner's return value as a tuple of float64 arrays named ``names``. Arrays must keep
    the inputs' ``dtype``: a float32 gradient of float64 inputs has thrown away the precision a
    gradient check needs (lesson 02), so it is a mistake, not something to convert quietly."""
    if got is None:
        raise Mismatch(f"returned None (a missing return?); expected {len(names)} value(s): ({', '.join(names)})")
    if len(names) == 1 and not isinstance(got, (tuple, list)):
        got = (got,)
    if not isinstance(got, (tuple, list)) or len(got) != len(names):
        n = len(got) if isinstance(got, (tuple, list)) else 1
        raise Mismatch(f"returned {n} value(s); expected {len(names)}: ({', '.join(names)})")
    out = []
    for name, value in zip(names, got):
        if value is None:
            raise Mismatch(f"{name} is None: return an array")
        if np.iscomplexobj(value):
            raise Mismatch(f"{name} is complex-valued: a gradient of a real loss is real")
        if isinstance(value, (np.ndarray, np.generic)) and value.dtype != np.dtype(dtype):
            raise Mismatch(f"{name} has dtype {value.dtype}, but the inputs are {np.dtype(dtype)}: keep the inputs' "
                           f"dtype (a float32 result cannot reach the good band of a float64 check; lesson 02)")
        try:
            out.append(np.asarray(value, dtype=np.float64))
        except (TypeError, ValueError) as exc:
            raise Mismatch(f"{name} is not an array of numbers ({type(value).__name__}: {exc})") from None
    return tuple(out)


def constant_factor(got, expected):
    """c when every entry of ``got`` is c times ``expected`` (c != 1), else None: the mark of a
    missing or extra factor (1/N, 2, -1), which deserves saying in words."""
    big = np.abs(expected) > 1e-6 * max(float(np.abs(expected).max(initial=0.0)), 1e-300)
    if big.sum() < 2 or np.any(np.abs(got[~big]) > 1e-9 * max(float(np.abs(got).max(initial=0.0)), 1e-300)):
        return None
    ratios = got[big] / expected[big]
    c = float(np.median(ratios))
    if abs(c - 1.0) < 1e-6 or not np.allclose(ratios, c, rtol=1e-6, atol=0.0):
        return None
    return c


def compare_all(pairs):
    """``compare`` each (name, got, expected, what) and report EVERY wrong tensor, not only the
    first: a learner fixing dx should know that db is wrong too. Returns the worst error."""
    worst, wrong = 0.0, []
    for name, got, expected, what in pairs:
        try:
            worst = max(worst, compare(name, got, expected, what))
        except Mismatch as mismatch:
            wrong.append(str(mismatch))
    if wrong:
        raise Mismatch("; ".join(wrong))
    return worst


def compare(name, got, expected, what="expected"):
    """Raise Mismatch naming ``name`` unless ``got`` matches ``expected`` in the good band;
    return the worst relative error."""
    if got.shape != expected.shape:
        raise Mismatch(f"{name} has shape {got.shape}, expected {expected.shape} (the shape of what it is the "
                       f"gradient of)")
    if not np.all(np.isfinite(got)):
        idx = tuple(int(i) for i in np.argwhere(~np.isfinite(got))[0])
        raise Mismatch(f"{name} has a non-finite entry at index {idx}: {got[idx]}")
    err = relative_errors(got, expected)
    if err.size == 0:
        return 0.0
    worst = np.unravel_index(int(np.argmax(err)), err.shape)
    e = float(err[worst])
    if e >= GOOD:
        idx = tuple(int(i) for i in worst)
        n_bad = int((err >= GOOD).sum())
        factor = constant_factor(got, expected)
        same = (f"; every entry is off by the same factor: got = {factor:.6g} x the right value (a missing or "
                f"extra constant: a sign, a 1/N, a 2?)" if factor is not None else "")
        raise Mismatch(f"{name} is {band(e)}: worst relative error {e:.2e} at index {idx}: {what} "
                       f"{expected[worst]:.6g}, got {got[worst]:.6g} ({n_bad} of {err.size} entries off; "
                       f"expected < 1e-7; {BANDS}){same}")
    return e
