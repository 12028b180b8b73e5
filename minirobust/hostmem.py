"""Host memory: keep big NumPy arrays' pages instead of returning them to the OS each step.

glibc's malloc serves every allocation above ``M_MMAP_THRESHOLD`` (128 KiB to start with) with
fresh pages from the kernel and unmaps them on free. A training step allocates and frees many
arrays of megabytes (activations, masks, gradients), so every step pays thousands of page faults
for memory it used a moment ago; on the paper's MNIST net that was about a quarter of a training
step's time on the CPU (figures in benchmarks/README.md).

``tune_allocator()`` raises the mmap threshold to 32 MiB (glibc's maximum) and the trim
threshold to 1 GiB, so freed blocks stay in the process heap and are reused. This is what deep
learning frameworks' caching allocators achieve. It is process-wide, so the library never does it
on import: the ``minirobust`` command and the benchmarks call it, and so can you. Set
``MINIROBUST_MALLOC_TUNING=0`` to turn it off. Elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3


def tune_allocator(mmap_threshold: int = 32 << 20, trim_threshold: int = 1 << 30) -> bool:
    """Apply the settings above; True if glibc accepted them."""
    if os.environ.get("MINIROBUST_MALLOC_TUNING", "1") == "0":
        return False
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS, Windows)
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, int(mmap_threshold))) and bool(mallopt(M_TRIM_THRESHOLD, int(trim_threshold)))
