"""Checkpoints: one ``.npz`` file, written atomically, loaded without pickle.

Arrays (parameters, optimiser buffers) are stored by name; everything else (the
architecture, optimiser settings, epoch, RNG state, metrics) is JSON, stored inside the
same archive as a uint8 array named ``__meta__``, so that one ``os.replace`` swaps the
whole checkpoint in: a crash mid-save leaves the previous checkpoint intact. A readable
copy of the JSON is written beside it (``<name>.json``) for humans; it is never read back.

Loading uses ``numpy.load(..., allow_pickle=False)``: a checkpoint from an untrusted
source cannot execute code.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import CheckpointError
from .model import Sequential

FORMAT = "minirobust-checkpoint/1"
META = "__meta__"
OPT_PREFIX = "opt:"
PARAM_PREFIX = "param:"


@dataclass
class Checkpoint:
    model: Sequential
    meta: dict
    optimizer_arrays: dict = field(default_factory=dict)

    @property
    def epoch(self) -> int:
        return int(self.meta.get("epoch", 0))


def _atomic_replace(path: Path, write):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save(path, model: Sequential, optimizer=None, **meta) -> Path:
    """Write model (+ optimiser state) and JSON-able ``meta`` to ``path`` atomically."""
    path = Path(path)
    arrays = {PARAM_PREFIX + k: v for k, v in model.state_dict().items()}
    info = {"format": FORMAT, "model": model.config(), **meta}
    if optimizer is not None:
        arrays.update({OPT_PREFIX + k: v for k, v in optimizer.state_arrays().items()})
        info["optimizer"] = {**optimizer.config(), "t": optimizer.t}
    text = json.dumps(info, indent=1, default=_json_default)
    arrays[META] = np.frombuffer(text.encode(), dtype=np.uint8)
    _atomic_replace(path, lambda f: np.savez(f, **arrays))
    _atomic_replace(path.with_suffix(".json"), lambda f: f.write(text.encode()))
    return path


def _json_default(obj):
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def load(path) -> Checkpoint:
    """Read a checkpoint written by ``save``; rebuild the model and load its weights."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        blob = path.read_bytes()
        with np.load(io.BytesIO(blob), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise CheckpointError(f"{path}: not a readable checkpoint ({exc})") from exc
    if META not in arrays:
        raise CheckpointError(f"{path}: no metadata ({META}) inside; not a minirobust checkpoint")
    try:
        meta = json.loads(arrays.pop(META).tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: corrupt metadata ({exc})") from exc
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: unknown checkpoint format {meta.get('format')!r}")
    try:
        model = Sequential.from_config(meta["model"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot rebuild the model ({exc})") from exc
    params = {k[len(PARAM_PREFIX):]: v for k, v in arrays.items() if k.startswith(PARAM_PREFIX)}
    for name, value in params.items():
        if value.dtype.kind != "f":
            raise CheckpointError(f"{path}: parameter {name} has dtype {value.dtype}, not a float")
        if not np.isfinite(value).all():
            raise CheckpointError(f"{path}: parameter {name} holds {int((~np.isfinite(value)).sum())} non-finite "
                                  "values (NaN or inf): not a usable model")
    model.load_state_dict(params)
    opt = {k[len(OPT_PREFIX):]: v for k, v in arrays.items() if k.startswith(OPT_PREFIX)}
    return Checkpoint(model, meta, opt)


def load_model(path) -> Sequential:
    return load(path).model
