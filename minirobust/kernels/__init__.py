"""Hot ops in tiers, and the policy that picks one.

Tiers (same signatures, tested equal):
    reference  plain NumPy/CuPy array code, readable; the oracle (``reference.py``)
    cpu        Numba kernels for NumPy arrays (``cpu.py``)
    gpu        CUDA kernels for CuPy arrays (``gpu.py``, sources in ``cuda/``)

Policy for the fast tiers: ``auto`` (the fast tier for the arrays' device when it can run, the
default), ``always`` (a fast tier or a clear error), ``never`` (always the reference tier: step
through it in a notebook). Host arrays get the cpu tier, CuPy arrays the gpu tier. Set with ``set_policy`` or the environment variable ``MINIROBUST_FAST``.

Use ``get_op("im2col", x)`` to get the function for an op and the arrays it will run on.

A tier may implement only some ops: ``get_op`` falls back to the reference tier, op by op, so a
new tier can start with a few kernels (``has_op`` says whether a tier has its own). Tuning
choices that belong to one tier (how big a chunk, which of two equal paths is cheaper there)
live in that tier's module as ``TUNING`` names, read with ``tuning(name, x)`` and falling back
to the reference tier's neutral choice in the same way.
"""

from __future__ import annotations

import contextlib
import os

from ..backend import get_xp, is_device_array
from ..errors import BackendError
from . import reference

OPS = ("im2col", "col2im", "maxpool_forward", "maxpool_backward", "rows_to_nchw", "nchw_to_rows",
       "rows_relu_maxpool", "relu_maxpool_to_rows", "conv_relu_maxpool_input_grad",
       "linf_ascent_step", "l2_ascent_step", "l1_ascent_step", "lp_ascent_step",
       "linf_projection", "l2_projection", "l1_projection", "sgd_momentum_step", "adam_step",
       "batchnorm_stats", "batchnorm_forward", "batchnorm_backward")
# The tier-specific choices a tier may make (see reference.py for what each means).
TUNING = ("FUSED_STAGES", "INPUT_GRAD_CHUNK_BYTES", "prefers_winners_input_grad")
POLICIES = ("auto", "always", "never")

_policy = None
_cpu_module = None
_cpu_error = None


def _validate_policy(policy):
    if policy not in POLICIES:
        raise BackendError(f"unknown kernel policy {policy!r}: choose one of {', '.join(POLICIES)}")
    return policy


def set_policy(policy: str) -> str:
    """Choose when the fast tier runs: 'auto' | 'always' | 'never'."""
    global _policy
    _policy = _validate_policy(policy)
    return _policy


def get_policy() -> str:
    if _policy is None:
        set_policy(os.environ.get("MINIROBUST_FAST", "auto"))
    return _policy


@contextlib.contextmanager
def policy(name: str):
    """Temporarily use another policy: ``with kernels.policy("never"): ...``."""
    old = get_policy()
    set_policy(name)
    try:
        yield
    finally:
        set_policy(old)


def _cpu():
    """The Numba tier module, imported on first use (Numba import costs ~0.5 s)."""
    global _cpu_module, _cpu_error
    if _cpu_module is None and _cpu_error is None:
        try:
            from . import cpu  # noqa: PLC0415

            _cpu_module = cpu
        except Exception as exc:  # pragma: no cover - numba is a hard dependency
            _cpu_error = f"{type(exc).__name__}: {exc}"
    return _cpu_module


def tier_for(x=None) -> str:
    """Name of the tier that would run an op on array ``x`` under the current policy."""
    pol = get_policy()
    if pol == "never":
        return "reference"
    if x is not None and is_device_array(x):
        return "gpu"  # the GPU tier compiles its kernels on first use; CuPy is there (x is a CuPy array)
    if _cpu() is not None:
        return "cpu"
    if pol == "always":
        raise BackendError(f"kernel policy 'always' but the Numba tier cannot load: {_cpu_error}")
    return "reference"


def _tier_module(x=None):
    """The module of the tier that ``tier_for(x)`` names."""
    get_xp(x)  # raises early on a mixed/unknown array type
    tier = tier_for(x)
    if tier == "gpu":
        from . import gpu  # noqa: PLC0415 - imports no cupy itself; kernels build on first use

        return gpu
    return _cpu() if tier == "cpu" else reference


def has_op(name: str, x=None) -> bool:
    """True when the tier for ``x`` implements op ``name`` itself (no fallback needed)."""
    if name not in OPS:
        raise KeyError(f"unknown op {name!r}; ops are {OPS}")
    return hasattr(_tier_module(x), name)


def _own_or_reference(name, x):
    module = _tier_module(x)
    return getattr(module if hasattr(module, name) else reference, name)


def get_op(name: str, x=None):
    """The function implementing op ``name`` for arrays like ``x``: the tier's own, or the
    reference tier's where the tier has none."""
    if name not in OPS:
        raise KeyError(f"unknown op {name!r}; ops are {OPS}")
    return _own_or_reference(name, x)


def tuning(name: str, x=None):
    """A tier-specific choice (one of ``TUNING``) of the tier for ``x``, or the reference
    tier's neutral one where the tier makes none."""
    if name not in TUNING:
        raise KeyError(f"unknown tuning {name!r}; known: {TUNING}")
    return _own_or_reference(name, x)


def offers_fused(stage: str, x=None) -> bool:
    """Does the tier for ``x`` offer fused stage ``stage`` (e.g. "conv_relu_maxpool")?

    Fusion is an optimisation a tier offers (its module lists it in ``FUSED_STAGES``), not
    something every tier does: the reference tier holds the fused ops as readable oracles
    but offers no fused stage, so by default it runs the layers one by one.
    """
    return stage in tuning("FUSED_STAGES", x)


def op_tier(name: str, x=None) -> str:
    """The tier that will actually run op ``name`` on arrays like ``x`` (after fallback)."""
    return tier_for(x) if has_op(name, x) else "reference"


def describe(x=None) -> dict:
    """Which tier each op uses now for arrays like ``x`` (host arrays by default), for
    ``minirobust.info()``."""
    return {op: op_tier(op, x) for op in OPS}


def thread_settings() -> dict:
    """How the fast tier's threads and OpenBLAS's share the cores (see threads.py)."""
    if _cpu() is None:
        return {"fast tier": f"not loaded ({_cpu_error})"}
    from . import threads  # noqa: PLC0415

    return threads.describe()


def warmup(dtype="float32"):
    """Compile (or load from Numba's on-disk cache) the fast tier's kernels for ``dtype`` now,
    so that the first training step is not charged for it. A no-op on the reference tier."""
    import numpy as np  # noqa: PLC0415

    if tier_for(None) == "cpu":
        _cpu().warmup((np.dtype(dtype).type,))
