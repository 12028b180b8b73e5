"""Call any kernel tier as one calls the reference tier: with host (NumPy) arrays."""

from __future__ import annotations

import numpy as np

from minirobust.backend import to_host


class HostCalls:
    """A tier's ops called with host arrays: each array argument goes to the tier's device
    (``to_device``), results come back to the host, and every array argument is copied back into
    the caller's array, so in-place updates (the optimisers') show as they do on the host. One
    test body then compares the reference tier with the Numba tier, the emulated GPU tier or a card.
    """

    def __init__(self, module, to_device=lambda a: a):
        self.module, self.to_device = module, to_device

    def __getattr__(self, name):
        op = getattr(self.module, name)

        def call(*args):
            moved = [self.to_device(a) if isinstance(a, np.ndarray) else a for a in args]
            out = op(*moved)
            for a, d in zip(args, moved):
                if isinstance(a, np.ndarray) and d is not a:
                    a[...] = to_host(d)
            return tuple(to_host(o) for o in out) if isinstance(out, tuple) else to_host(out)

        return call
