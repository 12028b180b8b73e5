"""The CIFAR-10 *binary* format (never the pickled Python version: unpickling runs code).

Each record is 1 label byte followed by 3072 pixel bytes: 1024 red, then 1024 green,
then 1024 blue, each plane a 32x32 image in row-major order. So a record reshapes
directly into (3, 32, 32) = (C, H, W).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError
from ..npzfile import require_regular_file

RECORD = 1 + 3 * 32 * 32  # 3073 bytes
CLASSES = 10


MAX_RECORDS = 60000  # the whole data set
BATCH_RECORDS = 10000  # one batch file


def parse_cifar10_batch(data: bytes, name: str = "<bytes>"):
    """(images uint8 (n, 3, 32, 32), labels int64 (n,)) from one batch file's bytes."""
    if len(data) == 0 or len(data) % RECORD:
        raise DataError(f"{name}: {len(data)} bytes is not a whole number of {RECORD}-byte CIFAR-10 records "
                        "(a record of the wrong length, or a truncated file)")
    if len(data) // RECORD > BATCH_RECORDS:
        raise DataError(f"{name}: {len(data) // RECORD:,} records; a CIFAR-10 batch file holds at most "
                        f"{BATCH_RECORDS:,}")
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, RECORD)
    labels = records[:, 0].astype(np.int64)
    if labels.max() >= CLASSES:
        bad = int(np.argmax(labels >= CLASSES))
        raise DataError(f"{name}: label {labels[bad]} out of range 0-9 in record {bad}")
    images = records[:, 1:].reshape(-1, 3, 32, 32).copy()
    return images, labels




def read_batch_bytes(path) -> bytes:
    """A batch file's bytes, after checking (from its size alone) that it can be one."""
    path = Path(path)
    try:
        if path.is_dir():
            raise DataError(f"{path}: is a folder, not a CIFAR-10 batch file")
        require_regular_file(path, DataError, "CIFAR-10 batch file")
        size = path.stat().st_size
        if size > MAX_RECORDS * RECORD:
            raise DataError(f"{path}: {size:,} bytes is more than the whole CIFAR-10 data set: not a batch file")
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise DataError(f"{path}: file not found") from exc
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc})") from exc


def read_cifar10_batch(path):
    return parse_cifar10_batch(read_batch_bytes(path), str(path))


def read_label_names(path) -> list:
    """batches.meta.txt: one class name a line (blank lines ignored)."""
    try:
        text = Path(path).read_bytes()[:4096].decode("ascii", errors="replace")
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc})") from exc
    names = [line.strip() for line in text.splitlines()]
    names = [n for n in names if n]
    if len(names) != CLASSES:
        raise DataError(f"{path}: expected {CLASSES} class names, found {len(names)}")
    return names
