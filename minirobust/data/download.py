"""Download with mirrors, a progress bar, checksums, and atomic placement.

The rule: a file only ever appears under its final name after its SHA-256 has been
verified. Bytes stream into ``<name>.part-<random>`` in the destination folder; a
checksum mismatch, a 404, a connection cut half-way or Ctrl-C deletes the part file;
success renames it into place (``os.replace`` is atomic on one file system).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from ..errors import DataError
from .idx import gunzip_if_needed

CHUNK = 1 << 16
TIMEOUT_S = 60


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _progress(total, desc):
    try:
        from tqdm.auto import tqdm  # noqa: PLC0415
    except ImportError:  # pragma: no cover - tqdm is a dependency; degrade quietly without it
        return None
    return tqdm(total=total, unit="B", unit_scale=True, desc=desc, disable=None, leave=False)


def _stream_to(url: str, out, desc: str):
    """Copy ``url``'s body into the open file ``out``; raise on a short read."""
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp:  # noqa: S310 - http(s) URLs from our table
        length = resp.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        bar, received = _progress(total, desc), 0
        try:
            while True:
                chunk = resp.read(CHUNK)
                if not chunk:
                    break
                out.write(chunk)
                received += len(chunk)
                if bar is not None:
                    bar.update(len(chunk))
        finally:
            if bar is not None:
                bar.close()
    if total is not None and received != total:
        raise DataError(f"connection cut: received {received} of {total} bytes")


def download_verified(urls, dest, sha256: str, checksum_of: str = "uncompressed", log=None) -> Path:
    """Fetch the first URL that works into ``dest`` and verify its SHA-256.

    ``checksum_of``: 'uncompressed' hashes the gunzipped content (MNIST publishes hashes of
    the raw IDX files), 'file' hashes the bytes as downloaded (an archive).
    Tries each URL in order (mirrors); raises DataError listing every failure.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    failures = []
    for url in urls:
        fd, part = tempfile.mkstemp(prefix=dest.name + ".part-", dir=dest.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                _stream_to(url, out, desc=dest.name)
            data = Path(part).read_bytes()
            content = gunzip_if_needed(data, url) if checksum_of == "uncompressed" else data
            digest = sha256_bytes(content)
            if digest != sha256:
                raise DataError(f"checksum mismatch: SHA-256 {digest}, expected {sha256}")
            os.replace(part, dest)
            if log:
                log(f"downloaded {dest.name} from {url} (SHA-256 verified)")
            return dest
        except (urllib.error.URLError, http.client.HTTPException, OSError, DataError, ValueError) as exc:
            failures.append(f"{url}: {exc}")
        finally:
            if os.path.exists(part):
                os.unlink(part)  # never leave a partial or unverified file behind
    raise DataError(f"could not download {dest.name}: " + "; ".join(failures))
