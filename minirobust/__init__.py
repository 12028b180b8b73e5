"""minirobust: a from-scratch NumPy/CuPy engine for robust optimization of neural nets.

Start here:
    import minirobust as mr
    model = mr.nets.paper_mnist(seed=0)
    loss, grads, dx = model.loss_and_grads(x, y)   # dx = dL/dx, the input gradient
"""

from __future__ import annotations

__version__ = "0.1.0"

from . import backend, gradcheck, kernels, layers, losses, nets, optim  # noqa: E402
from .backend import get_backend, get_xp, set_backend, to_device, to_host  # noqa: E402
from .errors import (  # noqa: E402
    BackendError,
    BackendMismatchError,
    CheckpointError,
    DataError,
    InputError,
    MinirobustError,
    TrainingError,
)
from .model import Sequential  # noqa: E402


def info(as_dict: bool = False):
    """Print (or return) versions, devices, the backend and each op's kernel tier."""
    out = {"minirobust": __version__, **backend.info(),
           "kernel_policy": kernels.get_policy(), "kernel_tiers": kernels.describe(),
           "cpu_threads": kernels.thread_settings()}
    if out.get("cupy"):  # which tier each op uses for arrays on the GPU
        import numpy as np  # noqa: PLC0415

        out["gpu_kernel_tiers"] = kernels.describe(backend.to_gpu(np.zeros(1, np.float32)))
    if as_dict:
        return out
    for k, v in out.items():
        print(f"{k:>24}: {v}")
    return None


__all__ = [
    "BackendError", "BackendMismatchError", "CheckpointError", "DataError", "InputError",
    "MinirobustError", "Sequential", "TrainingError", "backend", "get_backend", "get_xp",
    "gradcheck", "info", "kernels", "layers", "losses", "nets", "optim", "set_backend",
    "to_device", "to_host", "__version__",
]
