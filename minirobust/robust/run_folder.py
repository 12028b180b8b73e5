"""A training run's folder: what makes a run safe to kill and resume, apart from the method.

    out/.lock            held (flock) for the run's whole life: a second run on it stops at once
    out/checkpoint.npz   after every epoch, atomic (a crash never destroys the last good one)
    out/metrics.jsonl    one JSON line per epoch, rewritten from the checkpoint when a run starts
    out/best.npz         the model with the best monitor accuracy (when a monitor runs)
    out/model.npz        the final model

``RunFolder(None)`` is a run with no folder: every method is then a no-op.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

from .. import checkpoint
from ..atomic import write_atomic
from ..errors import CheckpointError, TrainingError


class RunFolder:
    def __init__(self, out_dir=None):
        self.path = Path(out_dir) if out_dir else None

    def __bool__(self):
        return self.path is not None

    def file(self, name):
        return self.path / name if self.path else None

    @property
    def checkpoint_path(self):
        return self.file("checkpoint.npz")

    @property
    def metrics_path(self):
        return self.file("metrics.jsonl")

    @contextlib.contextmanager
    def lock(self):
        """An exclusive lock on ``out/.lock`` (flock: the OS releases it when the process ends,
        however it ends, so a killed run never leaves a stale lock behind)."""
        if not self.path or fcntl is None:  # fcntl: POSIX only; elsewhere runs are not locked
            yield
            return
        self.path.mkdir(parents=True, exist_ok=True)
        handle = open(self.path / ".lock", "a+")  # noqa: SIM115 - held for the run's life
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise TrainingError(f"{self.path} is in use by another training run (its lock is held): "
                                "wait for it to finish, or choose another output folder") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()

    def clear(self):
        """Start the folder afresh: everything in it removed, under its lock, so that a run that
        holds it (another process training there) is never deleted from under it: that stops
        here with the lock's one-line error instead."""
        if not self.path or not self.path.exists():
            return
        with self.lock():
            for entry in self.path.iterdir():
                if entry.name == ".lock":
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()

    def remove_stray_temporaries(self):
        """Temporary files a killed run left mid-write (``*.tmp-*``): never the real files, which
        are only ever replaced whole. Safe only under the folder's lock."""
        if not self.path:
            return
        for stray in self.path.glob("*.tmp-*"):
            with contextlib.suppress(OSError):
                stray.unlink()

    def rewrite_metrics(self, history):
        """metrics.jsonl = one line per epoch of ``history``: the file always agrees with the
        checkpoint, whatever a crash left in it."""
        if not self.path:
            return
        write_atomic(self.metrics_path, "".join(json.dumps(r) + "\n" for r in history))

    def append_metrics(self, record):
        if not self.path:
            return
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def save(self, name, model, optimizer=None, **meta):
        if self.path:
            checkpoint.save(self.path / name, model, optimizer, **meta)

    def load_checkpoint(self):
        """The checkpoint to resume from, or None when there is none."""
        if not self.path or not self.checkpoint_path.exists():
            return None
        return checkpoint.load(self.checkpoint_path, optimizer=True)

    def last_good(self, epoch) -> str:
        """Where training can restart from: the last checkpoint, which holds only finite values
        (a non-finite state is never saved), or that there is none."""
        if self.checkpoint_path is not None and self.checkpoint_path.exists():
            return f"last good checkpoint: {self.checkpoint_path} (epoch {epoch})"
        return "no checkpoint was saved (none is written before the first epoch ends)"


def whole_number(path, what, value):
    """``value`` if it is an int >= 0 (not a bool), else a CheckpointError naming the file."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise CheckpointError(f"cannot resume {path}: {what} {value!r} is not a whole number >= 0")
    return value
