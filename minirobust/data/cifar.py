"""The CIFAR-10 *binary* format (never the pickled Python version: unpickling runs code).

Each record is 1 label byte followed by 3072 pixel bytes: 1024 red, then 1024 green,
then 1024 blue, each plane a 32x32 image in row-major order. So a record reshapes
directly into (3, 32, 32) = (C, H, W).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError

RECORD = 1 + 3 * 32 * 32  # 3073 bytes
CLASSES = 10


def parse_cifar10_batch(data: bytes, name: str = "<bytes>"):
    """(images uint8 (n, 3, 32, 32), labels int64 (n,)) from one batch file's bytes."""
    if len(data) == 0 or len(data) % RECORD:
        raise DataError(f"{name}: {len(data)} bytes is not a whole number of {RECORD}-byte CIFAR-10 records "
                        "(a record of the wrong length, or a truncated file)")
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, RECORD)
    labels = records[:, 0].astype(np.int64)
    if labels.max() >= CLASSES:
        bad = int(np.argmax(labels >= CLASSES))
        raise DataError(f"{name}: label {labels[bad]} out of range 0-9 in record {bad}")
    images = records[:, 1:].reshape(-1, 3, 32, 32).copy()
    return images, labels


def read_cifar10_batch(path):
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise DataError(f"{path}: file not found") from exc
    return parse_cifar10_batch(data, str(path))


def read_label_names(path) -> list:
    """batches.meta.txt: one class name a line (blank lines ignored)."""
    names = [line.strip() for line in Path(path).read_text(encoding="ascii", errors="replace").splitlines()]
    names = [n for n in names if n]
    if len(names) != CLASSES:
        raise DataError(f"{path}: expected {CLASSES} class names, found {len(names)}")
    return names
