"""The IDX format (MNIST, Fashion-MNIST, ...), plain or gzipped.

Layout (big-endian): two zero bytes, a type code, the number of dimensions D, then D
uint32 sizes, then the values in row-major (C) order:

    0x00 0x00 <type> <D> <size_1> ... <size_D> <data>

Type codes: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64.
Every check happens before any large allocation, so a corrupt header cannot make us
allocate terabytes, and gzip files are decompressed as a stream that stops at the size the
header declares (a small gzip bomb cannot fill the memory).
"""

from __future__ import annotations

import gzip
import io
import math
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..npzfile import require_regular_file

IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
GZIP_MAGIC = b"\x1f\x8b"


MAX_DIMS = 8  # IDX files in use have 1-4 dimensions; more is a corrupt or hostile header
CHUNK = 1 << 20


def default_limit() -> int:
    """The most bytes an IDX file may declare or decompress to (MINIROBUST_MAX_FILE_BYTES)."""
    from ..npzfile import max_bytes  # noqa: PLC0415

    return max_bytes()


def _open_stream(path, name):
    """A binary stream of the file's content, gunzipping on the fly when it is a gzip file."""
    path = Path(path)
    require_regular_file(path, DataError, "data file")
    try:
        raw = open(path, "rb")  # noqa: SIM115 - closed by the caller
    except FileNotFoundError as exc:
        raise DataError(f"{name}: file not found") from exc
    except IsADirectoryError as exc:
        raise DataError(f"{name}: is a folder, not a data file") from exc
    except OSError as exc:
        raise DataError(f"{name}: cannot read ({exc})") from exc
    if raw.read(2) == GZIP_MAGIC:
        raw.seek(0)
        return gzip.GzipFile(fileobj=raw, mode="rb"), raw
    raw.seek(0)
    return raw, raw


def _read_gzip(stream, n, name):
    """At most n bytes from a (possibly gzip) stream; a damaged gzip stream is a DataError."""
    try:
        return stream.read(n)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{name}: corrupt or truncated gzip data ({exc})") from exc


def _read_exact(stream, n, name, what):
    """Exactly n bytes from a (possibly gzip) stream, decompressing no more than n."""
    data = _read_gzip(stream, n, name)
    if len(data) != n:
        raise DataError(f"{name}: truncated {what}: {len(data)} of {n} bytes")
    return data


def read_idx_bytes(path, limit=None) -> bytes:
    """An IDX file's uncompressed bytes, read header first: the size the header declares is
    checked against ``limit`` before the body is read, and exactly that much is decompressed
    (plus one byte, to notice trailing data)."""
    name = str(path)
    limit = default_limit() if limit is None else int(limit)
    stream, raw = _open_stream(path, name)
    with raw, stream:
        head = _read_exact(stream, 4, name, "IDX header")
        _check_magic(head, name)
        dims_bytes = _read_exact(stream, 4 * head[3], name, "IDX header")
        dims = [int.from_bytes(dims_bytes[4 * i : 4 * i + 4], "big") for i in range(head[3])]
        body = math.prod(dims) * np.dtype(IDX_TYPES[head[2]]).itemsize
        if body > limit:
            raise DataError(f"{name}: IDX header {dims} declares {body:,} bytes, more than the {limit:,} allowed")
        data = _read_exact(stream, body, name, f"data (header {dims})")
        if _read_gzip(stream, 1, name):
            raise DataError(f"{name}: unexpected bytes after the data declared by header {dims}")
    return head + dims_bytes + data


def gunzip_if_needed(raw: bytes, name: str, limit=None) -> bytes:
    """``raw``, gunzipped (as a stream, at most ``limit`` bytes) when it is gzip data."""
    if not raw.startswith(GZIP_MAGIC):
        return raw
    limit = default_limit() if limit is None else int(limit)
    with gzip.GzipFile(fileobj=io.BytesIO(raw)) as f:
        data = _read_gzip(f, limit + 1, name)
    if len(data) > limit:
        raise DataError(f"{name}: decompresses to more than {limit:,} bytes: refusing")
    return data


def _check_magic(data, name):
    if len(data) < 4:
        raise DataError(f"{name}: too short for an IDX header ({len(data)} bytes)")
    if data[0] != 0 or data[1] != 0 or data[2] not in IDX_TYPES:
        raise DataError(f"{name}: wrong IDX magic number {data[:4].hex()} "
                        "(expected 0000 then a type code 08/09/0b/0c/0d/0e and the rank)")
    if data[3] == 0 or data[3] > MAX_DIMS:
        raise DataError(f"{name}: IDX header declares {data[3]} dimensions (expected 1 to {MAX_DIMS})")


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parse an uncompressed IDX byte string into a native-endian array."""
    _check_magic(data, name)
    ndim = data[3]
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
    if 0 in dims:
        raise DataError(f"{name}: IDX header {dims} has a zero dimension: no data")
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="))  # native byte order, and a writable copy


def read_idx(path, limit=None) -> np.ndarray:
    """Read an IDX file (plain or gzipped) into an array (header first: see read_idx_bytes)."""
    return parse_idx(read_idx_bytes(path, limit), str(path))
