"""Reading .npz files that may come from anyone: no pickle, no trust in their sizes.

``numpy.load`` of an untrusted .npz is safe from code execution (``allow_pickle=False``) but
not from memory exhaustion: a member's header may declare 10^12 elements, and a small
compressed member may inflate to gigabytes (a zip bomb). Here every member's header is read
first (a few bytes each), the declared sizes are checked against a cap before anything large
is allocated, only the members asked for are read, and each is decompressed as a stream that
stops at the size its header declared. Every failure, whatever the library underneath raised,
becomes the caller's error class with the file and the reason.
"""

from __future__ import annotations

import math
import os
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# The most bytes of arrays a file may declare (all members together); MINIROBUST_MAX_FILE_BYTES
# changes it. 2 GiB holds the full-width CIFAR-10 VGG (60 MB) with its optimiser many times.
DEFAULT_MAX_BYTES = 2 << 30

# What a zip library, NumPy's header parser or a hostile member can raise while being read
READ_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, NotImplementedError, RuntimeError, OSError,
               EOFError, ValueError, KeyError, TypeError, struct.error, MemoryError, OverflowError)


def max_bytes() -> int:
    value = os.environ.get("MINIROBUST_MAX_FILE_BYTES")
    return int(value) if value and value.isdigit() else DEFAULT_MAX_BYTES


@dataclass
class Member:
    name: str
    shape: tuple
    dtype: np.dtype
    fortran: bool

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize  # Python ints: no overflow


def _header(f, name):
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
    elif version in ((2, 0), (3, 0)):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    else:
        raise ValueError(f"unknown .npy version {version}")
    if dtype.hasobject or dtype.fields is not None or dtype.kind not in "biufU":
        raise ValueError(f"member {name!r} has dtype {dtype}: only numbers and fixed-width text are read "
                         "(never objects)")
    if any(not isinstance(d, int) or d < 0 for d in shape):
        raise ValueError(f"member {name!r} declares shape {shape}")
    return Member(name, tuple(shape), dtype, fortran)


def require_regular_file(path, error, what):
    """Refuse anything but a regular file (after links): a device such as /dev/zero reports no
    size and reads forever, and opening a FIFO blocks until a writer comes."""
    path = Path(path)
    if path.exists() and not path.is_dir() and not path.is_file():
        raise error(f"{path}: not a regular file (a device, FIFO or socket): not a {what}")


class NpzReader:
    """``with NpzReader(path, CheckpointError) as z: z.members; z.read(name)``."""

    def __init__(self, path, error=ValueError, what="file", limit=None):
        self.path, self.error, self.what = Path(path), error, what
        self.limit = max_bytes() if limit is None else int(limit)
        self._zip = None

    def __enter__(self):
        self._guard(self._open)
        return self

    def __exit__(self, *exc):
        if self._zip is not None:
            self._zip.close()

    def _fail(self, reason):
        raise self.error(f"{self.path}: not a readable {self.what} ({reason})")

    def _guard(self, fn, *args):
        try:
            return fn(*args)
        except self.error:
            raise
        except READ_ERRORS as exc:
            self._fail(f"{type(exc).__name__}: {exc}")

    def _open(self):
        if not self.path.exists():
            raise self.error(f"{self.path}: {self.what} not found")
        if self.path.is_dir():
            raise self.error(f"{self.path}: is a folder, not a {self.what}")
        require_regular_file(self.path, self.error, self.what)
        self._zip = zipfile.ZipFile(self.path)
        self.members = {}
        for info in self._zip.infolist():
            if not info.filename.endswith(".npy"):
                continue
            name = info.filename[:-4]
            with self._zip.open(info) as f:
                self.members[name] = _header(f, name)
        declared = sum(m.nbytes for m in self.members.values())
        if declared > self.limit:
            self._fail(f"its arrays declare {declared:,} bytes, more than the {self.limit:,} allowed "
                       "(MINIROBUST_MAX_FILE_BYTES)")

    def read(self, name) -> np.ndarray:
        """One member's array, decompressed only up to the size its header declares."""
        if name not in self.members:
            raise self.error(f"{self.path}: no array named {name!r} in this {self.what}")
        return self._guard(self._read, name)

    def _read(self, name):
        member = self.members[name]
        with self._zip.open(name + ".npy") as f:
            _header(f, name)
            data = f.read(member.nbytes)
            if len(data) != member.nbytes:
                raise EOFError(f"member {name!r} is truncated: {len(data)} of {member.nbytes} bytes")
        arr = np.frombuffer(data, dtype=member.dtype)
        return arr.reshape(member.shape, order="F" if member.fortran else "C").copy()


def read_npz(path, error=ValueError, what="file", names=None, limit=None) -> dict:
    """{name: array} of the members asked for (all by default), read as ``NpzReader`` does."""
    with NpzReader(path, error, what, limit) as z:
        return {n: z.read(n) for n in (z.members if names is None else names)}
