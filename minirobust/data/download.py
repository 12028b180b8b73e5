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
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from ..errors import DataError
from ..npzfile import max_bytes
from .idx import gunzip_if_needed

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no locks, stale parts are left alone
    fcntl = None

CHUNK = 1 << 16
TIMEOUT_S = 60  # a silent connection fails after this long
DEADLINE_S = float(os.environ.get("MINIROBUST_DOWNLOAD_DEADLINE_S", 1800))  # a whole file, however it trickles
MIN_RATE = 4096  # bytes per second, on average, once GRACE_S have passed
GRACE_S = 30.0


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _progress(total, desc):
    try:
        from tqdm.auto import tqdm  # noqa: PLC0415
    except ImportError:  # pragma: no cover - tqdm is a dependency; degrade quietly without it
        return None
    return tqdm(total=total, unit="B", unit_scale=True, desc=desc, disable=None, leave=False)


def _open_within(url: str, seconds: float):
    """``urlopen(url)`` that gives up after ``seconds`` in all: a server trickling its status line
    and headers a byte at a time never trips the per-read TIMEOUT_S. The request runs in a daemon
    thread; past the deadline it is abandoned (its socket times out on its own) and we say so."""
    box = {}

    def request():
        try:
            box["response"] = urllib.request.urlopen(url, timeout=TIMEOUT_S)  # noqa: S310 - our URL table
        except BaseException as exc:  # handed to the caller's thread below
            box["error"] = exc

    worker = threading.Thread(target=request, daemon=True, name="minirobust-download")
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise DataError(f"no response from the server within {seconds:.0f} s (MINIROBUST_DOWNLOAD_DEADLINE_S): "
                        "stopped")
    if "error" in box:
        raise box["error"]
    return box["response"]


def _stream_to(url: str, out, desc: str, limit: int):
    """Copy ``url``'s body into the open file ``out``; raise on a short read, on a body larger
    than ``limit``, past the deadline (headers included), or when the server trickles slower than
    ``MIN_RATE``."""
    t0 = time.monotonic()
    with _open_within(url, DEADLINE_S) as resp:
        length = resp.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        if total is not None and total > limit:
            raise DataError(f"the server announces {total:,} bytes, more than the {limit:,} expected")
        bar, received = _progress(total, desc), 0
        try:
            while True:
                chunk = resp.read1(CHUNK)  # what has arrived: a trickle cannot hide in a blocking read
                if not chunk:
                    break
                out.write(chunk)
                received += len(chunk)
                if bar is not None:
                    bar.update(len(chunk))
                _check_progress(received, time.monotonic() - t0, limit)
        finally:
            if bar is not None:
                bar.close()
    if total is not None and received != total:
        raise DataError(f"connection cut: received {received} of {total} bytes")


def _check_progress(received, elapsed, limit):
    if received > limit:
        raise DataError(f"more than {limit:,} bytes received: not the expected file")
    if elapsed > DEADLINE_S:
        raise DataError(f"download still running after {DEADLINE_S:.0f} s (MINIROBUST_DOWNLOAD_DEADLINE_S): "
                        "stopped")
    if elapsed > GRACE_S and received / elapsed < MIN_RATE:
        raise DataError(f"the server sends {received / elapsed:.0f} bytes/s, below the minimum of {MIN_RATE}: "
                        "stopped (try a mirror with --url)")


def remove_stale_parts(dest: Path):
    """Delete ``<dest>.part-*`` files that no running download holds (a killed fetch leaves one):
    each live download keeps an exclusive lock on its part file."""
    for part in dest.parent.glob(dest.name + ".part-*"):
        try:
            with open(part, "rb") as f:
                if fcntl is not None:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            part.unlink()
        except (BlockingIOError, FileNotFoundError):
            continue  # in use by another fetch, or already gone
        except OSError:
            continue


def download_verified(urls, dest, sha256: str, checksum_of: str = "uncompressed", log=None) -> Path:
    """Fetch the first URL that works into ``dest`` and verify its SHA-256.

    ``checksum_of``: 'uncompressed' hashes the gunzipped content (MNIST publishes hashes of
    the raw IDX files), 'file' hashes the bytes as downloaded (an archive).
    Tries each URL in order (mirrors); raises DataError listing every failure.
    """
    dest = Path(dest)
    if dest.parent.exists() and not dest.parent.is_dir():
        raise DataError(f"{dest.parent} is a file, not a folder: cannot download {dest.name} into it")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create {dest.parent} for {dest.name}: {exc}") from exc
    remove_stale_parts(dest)
    limit = max_bytes()
    failures = []
    for url in urls:
        fd, part = tempfile.mkstemp(prefix=dest.name + ".part-", dir=dest.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                if fcntl is not None:
                    fcntl.flock(out, fcntl.LOCK_EX)  # live: remove_stale_parts leaves it alone
                _stream_to(url, out, desc=dest.name, limit=limit)
            data = Path(part).read_bytes()
            content = gunzip_if_needed(data, url, limit) if checksum_of == "uncompressed" else data
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
