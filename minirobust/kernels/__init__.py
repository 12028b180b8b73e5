"""Hot ops in tiers, and the policy that picks one.

Tiers (same signatures, tested equal):
    reference  plain NumPy/CuPy array code, readable; the oracle (``reference.py``)
    cpu        Numba kernels for NumPy arrays (``cpu.py``)

Policy for the fast tier: ``auto`` (fast tier when it can run, the default), ``always``
(fast tier or a clear error), ``never`` (always the reference tier: step through it in a
notebook). Set with ``set_policy`` or the environment variable ``MINIROBUST_FAST``.

Use ``get_op("im2col", x)`` to get the function for an op and the arrays it will run on.
"""

from __future__ import annotations

import contextlib
import os

from ..backend import get_xp, is_device_array
from ..errors import BackendError
from . import reference

OPS = ("im2col", "col2im", "maxpool_forward", "maxpool_backward", "rows_to_nchw", "nchw_to_rows",
       "rows_relu_maxpool", "relu_maxpool_to_rows", "conv_relu_maxpool_input_grad", "sgd_momentum_step")
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
    on_device = x is not None and is_device_array(x)
    if on_device or pol == "never":
        return "reference"
    if _cpu() is not None:
        return "cpu"
    if pol == "always":
        raise BackendError(f"kernel policy 'always' but the Numba tier cannot load: {_cpu_error}")
    return "reference"


def get_op(name: str, x=None):
    """The function implementing op ``name`` for arrays like ``x``."""
    if name not in OPS:
        raise KeyError(f"unknown op {name!r}; ops are {OPS}")
    get_xp(x)  # raises early on a mixed/unknown array type
    module = _cpu() if tier_for(x) == "cpu" else reference
    return getattr(module, name)


def describe() -> dict:
    """Which tier each op uses for host arrays now, for ``minirobust.info()``."""
    return {op: tier_for(None) for op in OPS}


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
