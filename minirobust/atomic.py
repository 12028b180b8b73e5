"""One way to write a file so that a crash never leaves it half-written.

The bytes go to a temporary file in the same folder (``<name>.tmp-XXXX``), are flushed and
fsynced, and the file is renamed over the target (``os.replace``: atomic on one file system).
A reader sees the old file or the new one, never a mix; a killed writer leaves at most a
``*.tmp-*`` file, which the next run in that folder may remove.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path


def write_atomic(path, content) -> Path:
    """Replace ``path`` with ``content``: str (UTF-8), bytes, or a function that writes to a
    binary file object (e.g. ``lambda f: np.savez(f, **arrays)``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(content):
                content(f)
            else:
                f.write(content.encode("utf-8") if isinstance(content, str) else content)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def csv_text(rows, columns) -> str:
    """CSV of dict rows (the columns in order), as text for write_atomic."""
    import csv  # noqa: PLC0415

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()
