"""The IDX format (MNIST, Fashion-MNIST, ...), plain or gzipped.

Layout (big-endian): two zero bytes, a type code, the number of dimensions D, then D
uint32 sizes, then the values in row-major (C) order:

    0x00 0x00 <type> <D> <size_1> ... <size_D> <data>

Type codes: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64.
Every check happens before any large allocation, so a corrupt header cannot make us
allocate terabytes.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError

IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
GZIP_MAGIC = b"\x1f\x8b"


def read_bytes(path) -> bytes:
    """The file's content, gunzipped when it is a gzip file (detected by its magic bytes)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise DataError(f"{path}: file not found") from exc
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc})") from exc
    return gunzip_if_needed(raw, str(path))


def gunzip_if_needed(raw: bytes, name: str) -> bytes:
    if not raw.startswith(GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{name}: corrupt or truncated gzip data ({exc})") from exc


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parse an uncompressed IDX byte string into a native-endian array."""
    if len(data) < 4:
        raise DataError(f"{name}: too short for an IDX header ({len(data)} bytes)")
    if data[0] != 0 or data[1] != 0 or data[2] not in IDX_TYPES:
        raise DataError(f"{name}: wrong IDX magic number {data[:4].hex()} "
                        "(expected 0000 then a type code 08/09/0b/0c/0d/0e and the rank)")
    ndim = data[3]
    if ndim == 0:
        raise DataError(f"{name}: IDX header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{name}: truncated IDX header ({len(data)} bytes, need {header})")
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    dtype = np.dtype(IDX_TYPES[data[2]])
    expected = dtype.itemsize
    for d in dims:
        expected *= d  # Python ints: no overflow however large the header claims
    got = len(data) - header
    if got < expected:
        raise DataError(f"{name}: truncated data: header {dims} needs {expected} bytes, file has {got}")
    if got > expected:
        raise DataError(f"{name}: {got - expected} unexpected bytes after the data declared by header {dims}")
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="))  # native byte order, and a writable copy


def read_idx(path) -> np.ndarray:
    """Read an IDX file (plain or gzipped) into an array."""
    return parse_idx(read_bytes(path), str(path))
