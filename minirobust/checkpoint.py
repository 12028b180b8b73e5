"""Checkpoints: one ``.npz`` file, written atomically, loaded without pickle.

Arrays (parameters, optimiser buffers) are stored by name; everything else (the
architecture, optimiser settings, epoch, RNG state, metrics) is JSON, stored inside the
same archive as a uint8 array named ``__meta__``, so that one ``os.replace`` swaps the
whole checkpoint in: a crash mid-save leaves the previous checkpoint intact. A readable
copy of the JSON is written beside it (``<name>.json``) for humans; it is never read back.

Loading never unpickles (a checkpoint from an untrusted source cannot execute code) and never
trusts the sizes a file declares (``npzfile.py``: capped, checked before anything is built).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .atomic import write_atomic
from .errors import CheckpointError
from .layers import LAYER_TYPES
from .model import Sequential
from .npzfile import NpzReader

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
    write_atomic(path, lambda f: np.savez(f, **arrays))
    write_atomic(path.with_suffix(".json"), text)
    return path


def _json_default(obj):
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def load(path, optimizer: bool = False) -> Checkpoint:
    """Read a checkpoint written by ``save``; rebuild the model and load its weights.

    ``optimizer=True`` also reads the optimiser's buffers (``opt:`` members; resuming needs them);
    otherwise they are never decompressed: a model user pays nothing for them.

    The file is untrusted until checked: its members' headers are read first and their sizes
    capped (``npzfile``); the architecture in the metadata must account for exactly the
    parameters stored, checked before any layer is built; only the members the model and its
    optimiser use are read. Any failure is a ``CheckpointError`` naming the file and the reason.
    """
    path = Path(path)
    with NpzReader(path, CheckpointError, "checkpoint") as z:
        if META not in z.members:
            raise CheckpointError(f"{path}: no metadata ({META}) inside; not a minirobust checkpoint")
        if z.members[META].nbytes > MAX_META_BYTES:
            raise CheckpointError(f"{path}: metadata of {z.members[META].nbytes:,} bytes is implausibly large")
        meta = _parse_meta(path, z.read(META))
        stored = {k[len(PARAM_PREFIX):]: m for k, m in z.members.items() if k.startswith(PARAM_PREFIX)}
        _check_architecture_size(path, meta["model"], stored)
        try:
            model = Sequential.from_config(meta["model"])
        except (KeyError, TypeError, ValueError, AttributeError, MemoryError) as exc:
            raise CheckpointError(f"{path}: cannot rebuild the model ({type(exc).__name__}: {exc})") from exc
        params = {name: z.read(PARAM_PREFIX + name) for name in stored}
        opt = {k[len(OPT_PREFIX):]: z.read(k) for k in z.members if optimizer and k.startswith(OPT_PREFIX)}
    for name, value in params.items():
        if value.dtype.kind != "f":
            raise CheckpointError(f"{path}: parameter {name} has dtype {value.dtype}, not a float")
        if not np.isfinite(value).all():
            raise CheckpointError(f"{path}: parameter {name} holds {int((~np.isfinite(value)).sum())} non-finite "
                                  "values (NaN or inf): not a usable model")
    try:
        model.load_state_dict(params)
    except CheckpointError as exc:  # name the file: "state dict does not match" alone says not which
        raise CheckpointError(f"{path}: {exc}") from None
    return Checkpoint(model, meta, opt)


MAX_META_BYTES = 64 << 20  # the JSON of a checkpoint with a long history is a few hundred kB


def _parse_meta(path, raw) -> dict:
    try:
        meta = json.loads(raw.tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise CheckpointError(f"{path}: corrupt metadata ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise CheckpointError(f"{path}: unknown checkpoint format {found!r}")
    if not isinstance(meta.get("model"), dict) or not isinstance(meta["model"].get("layers"), list):
        raise CheckpointError(f"{path}: the metadata has no model architecture")
    return meta


def _check_architecture_size(path, config, stored):
    """The parameter count the architecture implies must equal what the file stores, checked
    with Python integers before anything is built: a 400-byte file cannot make us allocate a
    Dense(100000, 100000)."""
    try:
        for d in config["layers"]:
            _check_geometry(d)
        implied = sum(_layer_parameter_count(d) for d in config["layers"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{path}: malformed architecture in the metadata ({type(exc).__name__}: {exc})") from exc
    held = sum(math.prod(m.shape) for m in stored.values())
    if implied != held:
        raise CheckpointError(f"{path}: the architecture has {implied:,} parameter values but the file stores "
                              f"{held:,}: the metadata and the weights do not belong together")


MAX_WINDOW = 64  # kernel, stride and padding of a conv or pool layer: real nets use 1-11


def _check_geometry(d):
    """A conv or pool layer's window settings must be whole numbers in [0 or 1, MAX_WINDOW]: a
    forward pass allocates in proportion to them (padding 100000 asked for 73 TiB), and they cost no
    parameters, so the parameter count alone cannot bound them."""
    if d.get("type") not in ("conv2d", "maxpool2d"):
        return
    for key, low in (("kernel_size", 1), ("stride", 1), ("padding", 0)):
        value = d.get(key, low)
        values = value if isinstance(value, list) else [value]
        if len(values) not in (1, 2) or not all(isinstance(v, int) and not isinstance(v, bool) and
                                                low <= v <= MAX_WINDOW for v in values):
            raise ValueError(f"{d['type']}: {key} must be whole numbers in [{low}, {MAX_WINDOW}], got {value!r}")


def _layer_parameter_count(d) -> int:
    """Parameters (and running statistics) a layer config implies, without building it: the
    layer's own declaration (``Layer.declared_shapes``), the one place those shapes are written."""
    kind = d.get("type")
    if kind not in LAYER_TYPES:
        return 0  # an unknown type is refused when the model is built, with its own message
    return sum(math.prod(shape) for shape in LAYER_TYPES[kind].declared_shapes(d).values())


def load_model(path) -> Sequential:
    return load(path).model
