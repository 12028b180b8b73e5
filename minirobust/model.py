"""Sequential: a stack of layers, and the engine's reverse-mode autodiff.

Forward runs the layers in order (each keeps what its backward needs); backward replays
them in reverse and returns dL/dx for the network INPUT, the quantity every attack and
robust-training step is built on.

Fusion is the model's visible choice (``fuse``, shown in ``repr`` and ``summary``): each
Conv2D -> ReLU -> MaxPool2D may run as one fused stage (``fused.py``), the same numbers with
fewer passes over memory. ``"auto"`` (the default) fuses where the kernel tier offers the
fused stage (the Numba tier does; the reference tier does not), ``True`` always, ``False`` never. To step
through the layers one by one on the fast tier: ``model.fuse = False`` (or
``with model.layer_by_layer(): ...``); every layer then keeps its own cached state.

Device rule: the model's parameters live on one device (``model.device``: "cpu" or "gpu").
``forward`` and every entry point that takes data (``loss_and_grads``, ``input_gradient``, the
attacks, the trainer) pass their arrays through ``model.on_device``: host (NumPy) arrays are
copied to the model's device, a device array given to a host model is a
``BackendMismatchError`` naming both sides.
"""

from __future__ import annotations

import contextlib

import numpy as np

from . import backend, checks
from .backend import get_xp, to_device, to_host
from .errors import BackendMismatchError, CheckpointError, InputError
from .fused import ConvReluPool, can_fuse, tier_offers_fusion
from .kernels import tier_for
from .layers import Layer, layer_from_config
from .losses import SoftmaxCrossEntropy

DTYPES = {"float32": np.float32, "float64": np.float64}


def _as_dtype(dtype):
    name = np.dtype(dtype).name
    if name not in DTYPES:
        raise InputError(f"model dtype must be float32 or float64, got {name}")
    return np.dtype(name)


class Sequential:
    """Layers applied in order.

    Parameters are named ``"<index>_<kind>.<param>"`` (e.g. ``"1_conv2d.W"``) so that a
    state dict reads like the architecture.
    """

    def __init__(self, layers, dtype=np.float32, fuse="auto"):
        self.layers: list[Layer] = list(layers)
        self.fuse = fuse
        if not self.layers:
            raise InputError("Sequential needs at least one layer")
        self.dtype = _as_dtype(dtype)
        for i, layer in enumerate(self.layers):
            layer.name = f"{i}_{layer.kind}"
            if any(v.dtype != self.dtype for v in layer.params.values()):
                layer.astype(self.dtype)

    # ----- fusion: a visible choice ------------------------------------------------------------
    @property
    def fuse(self):
        """``"auto"`` (fuse where the kernel tier offers it), ``True`` or ``False``."""
        return self._fuse

    @fuse.setter
    def fuse(self, value):
        if isinstance(value, (bool, np.bool_)):
            value = bool(value)
        elif not (isinstance(value, str) and value == "auto"):
            raise InputError(f"fuse must be 'auto', True or False, got {value!r}")
        self._fuse = value

    def fuses(self, x=None) -> bool:
        """Will forward run fused stages for arrays like ``x`` (host arrays if None)?"""
        if self.fuse == "auto":
            return tier_offers_fusion(x)
        return bool(self.fuse)

    @contextlib.contextmanager
    def layer_by_layer(self):
        """``with model.layer_by_layer(): ...`` runs every layer on its own, then restores."""
        old, self.fuse = self.fuse, False
        try:
            yield self
        finally:
            self.fuse = old

    # ----- the device rule -------------------------------------------------------------------------
    @property
    def device(self) -> str:
        """Where the parameters live: "gpu" (CuPy arrays) or "cpu" (NumPy); a model without
        parameters follows the active backend."""
        params = [v for layer in self.layers for v in layer.params.values()]
        if not params:
            return backend.get_backend()
        return "gpu" if backend.is_device_array(params[0]) else "cpu"

    def on_device(self, x, name="model input"):
        """``x`` on the model's device: a host array is copied to the GPU for a GPU model; a
        GPU array given to a host model raises ``BackendMismatchError`` (copying it back
        silently would hide that the model is not on the GPU)."""
        if x is None or np.isscalar(x):
            return x
        on_gpu = backend.is_device_array(x)
        if self.device == "gpu":
            return x if on_gpu else backend.to_gpu(x)
        if on_gpu:
            raise BackendMismatchError(
                f"{name} is a CuPy (GPU) array but the model's parameters are NumPy (host) arrays; "
                "move the model with model.to('gpu'), or the data with minirobust.to_host")
        return x

    def to(self, device: str) -> "Sequential":
        """Move every parameter to ``device`` ("cpu" or "gpu"), in place; returns self."""
        device = backend.validate_name(device)
        move = backend.to_gpu if device == "gpu" else to_host
        for layer in self.layers:
            layer.params.update({k: move(v) for k, v in layer.params.items()})
            layer.running.update({k: move(v) for k, v in layer.running.items()})
            layer.grads = {}
            layer.forget()  # what forward kept, and scratch memory, belong to the old device
        self._stage_cache = (None,)
        return self

    # ----- the forward and backward passes -------------------------------------------------
    def forward(self, x, train: bool = False):
        """x: (N, ...) floats -> logits (N, classes). ``train`` switches dropout on and makes
        BatchNorm use (and update its running statistics with) the batch's own statistics."""
        x = self.on_device(x)
        checks.check_float(x, "model input")
        if x.ndim < 2:
            raise InputError(f"model input must have a batch axis (N, ...), got shape {tuple(x.shape)}")
        if x.shape[0] == 0:
            raise InputError(f"model input is an empty batch (shape {tuple(x.shape)}); N must be >= 1")
        checks.check_finite(x, "model input")
        x = x.astype(self.dtype, copy=False)  # no silent float64 promotion in a float32 model
        self._stages = self.stages(fuse=self.fuses(x))
        for stage in self._stages:
            x = stage.forward(x, train=train)
        return x

    def stages(self, fuse: bool = False) -> list:
        """What forward runs: the layers, or with ``fuse`` each Conv2D -> ReLU -> MaxPool2D
        replaced by one ``ConvReluPool`` stage (see fused.py)."""
        key = (fuse, tuple(map(id, self.layers)))
        if getattr(self, "_stage_cache", (None,))[0] == key:
            return self._stage_cache[1]
        stages = list(self.layers) if not fuse else self._fused_stages()
        self._stage_cache = (key, stages)
        return stages

    def _fused_stages(self) -> list:
        stages, i = [], 0
        while i < len(self.layers):
            group = self.layers[i : i + 3]
            if can_fuse(group):
                stages.append(ConvReluPool(*group))
                i += 3
            else:
                stages.append(self.layers[i])
                i += 1
        return stages

    def backward(self, dy, param_grads: bool = True, input_grad: bool = True):
        """Given dL/dlogits, return dL/dx for the network input.

        ``param_grads=False``: the layers skip their parameter gradients (the ascent step of
        robust training needs only dL/dx). ``input_grad=False``: stop at the first layer
        with parameters and skip its dL/dx (a descent step needs only parameter gradients;
        for a convnet that saves the first convolution's col2im); returns None then.
        """
        stages = getattr(self, "_stages", None) or self.layers  # those the last forward ran
        stop = 0 if input_grad else next((i for i, s in enumerate(stages) if s.params), 0)
        for i in range(len(stages) - 1, stop - 1, -1):
            if i == stop and not input_grad:
                stages[i].backward(dy, param_grads=param_grads, input_grad=False)
                return None
            dy = stages[i].backward(dy, param_grads=param_grads)
        return dy

    def loss_and_grads(self, x, y, train: bool = True, reduction: str = "mean"):
        """One forward + backward: returns (loss, {param name: gradient}, dL/dx)."""
        loss_fn = SoftmaxCrossEntropy(reduction)
        loss = loss_fn.forward(self.forward(x, train=train), self.on_device(y, "labels"))
        dx = self.backward(loss_fn.backward(), param_grads=True)
        return float(loss), self.gradients(), dx

    def input_gradient(self, x, y=None, reduction: str = "sum", train: bool = False):
        """dL/dx, skipping parameter gradients; in evaluation mode unless ``train`` (then
        dropout is on and BatchNorm uses, and updates its running statistics with, the batch's
        statistics: the mode the paper's authors took the ascent step in).

        Labels default to the model's own predictions (no label leaking). With the default
        'sum' reduction each example's gradient is that of its own loss.
        """
        logits = self.forward(x, train=train)
        y = logits.argmax(axis=1) if y is None else self.on_device(y, "labels")
        loss_fn = SoftmaxCrossEntropy(reduction)
        loss_fn.forward(logits, y)
        return self.backward(loss_fn.backward(), param_grads=False)

    def predict_logits(self, x, batch_size: int | None = None):
        """Logits in evaluation mode, in batches of ``batch_size`` (all at once if None)."""
        if batch_size is None or batch_size >= x.shape[0]:
            return self.forward(x, train=False)
        parts = [self.forward(x[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)]
        return get_xp(parts[0]).concatenate(parts)  # on the model's device

    def predict(self, x, batch_size: int | None = None):
        """Predicted class indices, shape (N,)."""
        return self.predict_logits(x, batch_size).argmax(axis=1)

    def accuracy(self, x, y, batch_size: int | None = 1000) -> float:
        """Fraction of ``x`` classified as ``y`` (host or device arrays, as the model needs)."""
        return float((self.predict(x, batch_size) == self.on_device(y, "labels")).mean())

    # ----- parameters and state ---------------------------------------------------------------
    def parameters(self) -> dict:
        """{name: array} of every trainable parameter (the live arrays, not copies)."""
        return {f"{layer.name}.{k}": v for layer in self.layers for k, v in layer.params.items()}

    def gradients(self) -> dict:
        """{name: array} of the gradients from the last backward pass with param_grads=True."""
        return {f"{layer.name}.{k}": v for layer in self.layers for k, v in layer.grads.items()}

    def running_stats(self) -> dict:
        """{name: array} of the learned state that is not trained by gradients (BatchNorm's
        running mean and variance, e.g. ``"2_batchnorm2d.running.mean"``)."""
        return {f"{layer.name}.running.{k}": v for layer in self.layers for k, v in layer.running.items()}

    def set_parameter(self, name: str, value):
        """Replace one parameter or running statistic (used by optimisers and checkpoint loading)."""
        layer_name, key = name.rsplit(".", 1)
        store = "params"
        if layer_name.endswith(".running"):
            layer_name, store = layer_name[: -len(".running")], "running"
        for layer in self.layers:
            if layer.name == layer_name and key in getattr(layer, store):
                getattr(layer, store)[key] = value
                return
        raise KeyError(f"no parameter named {name!r}")

    def num_parameters(self) -> int:
        return int(sum(v.size for v in self.parameters().values()))

    def state_dict(self) -> dict:
        """{name: NumPy array copy} of every parameter and running statistic, for checkpoints."""
        return {k: to_host(v).copy() for k, v in {**self.parameters(), **self.running_stats()}.items()}

    def load_state_dict(self, state: dict):
        """Load parameters saved by ``state_dict``; names and shapes must match exactly."""
        own = {**self.parameters(), **self.running_stats()}
        missing, unexpected = set(own) - set(state), set(state) - set(own)
        if missing or unexpected:
            raise CheckpointError(f"state dict does not match the model: missing {sorted(missing)}, "
                                  f"unexpected {sorted(unexpected)}")
        for name, value in state.items():
            if tuple(value.shape) != tuple(own[name].shape):
                raise CheckpointError(f"parameter {name}: checkpoint shape {tuple(value.shape)} "
                                      f"!= model shape {tuple(own[name].shape)}")
            self.set_parameter(name, to_device(value, dtype=self.dtype))

    def config(self) -> dict:
        """The architecture as JSON-friendly data (no weights)."""
        return {"dtype": self.dtype.name,
                "layers": [{"type": layer.kind, **layer.config()} for layer in self.layers]}

    @classmethod
    def from_config(cls, cfg: dict) -> "Sequential":
        dtype = _as_dtype(cfg.get("dtype", "float32"))
        layers = [layer_from_config(d["type"], {k: v for k, v in d.items() if k != "type"}, dtype)
                  for d in cfg["layers"]]
        return cls(layers, dtype=dtype)

    def astype(self, dtype) -> "Sequential":
        """A copy of this model with parameters in ``dtype`` (float64 for gradient checks)."""
        clone = Sequential.from_config({**self.config(), "dtype": _as_dtype(dtype).name})
        clone.load_state_dict(self.state_dict())
        clone.fuse = self.fuse  # a run-time choice, not part of the architecture
        return clone

    def _fusion_line(self) -> str:
        """How forward runs now, in words (for repr and summary)."""
        like = next(iter(self.parameters().values()), None)  # an array on the model's device
        state = "fused stages" if self.fuses(like) else "layer by layer"
        return f"fuse={self.fuse!r}: {state} on the {tier_for(like)} tier"

    def _stage_of_layer(self) -> dict:
        """{layer index: 'fused i-j'} for the layers a fused stage would run together."""
        marks, i = {}, 0
        while i < len(self.layers):
            if can_fuse(self.layers[i : i + 3]):
                for k in range(i, i + 3):
                    marks[k] = f"fused {i}-{i + 2}"
                i += 3
            else:
                i += 1
        return marks

    def summary(self, input_shape) -> str:
        """A table of layers, output shapes, parameter counts and which layers run as one
        fused stage, for an input (C, H, W)."""
        fused = self._stage_of_layer() if "fused stages" in self._fusion_line() else {}
        lines = [self._fusion_line(), f"{'layer':<14}{'output shape':<18}{'params':>10}  runs as"]
        shape = tuple(input_shape)
        for i, layer in enumerate(self.layers):
            shape = layer.output_shape(shape)
            n = sum(int(v.size) for v in layer.params.values())
            lines.append(f"{layer.name:<14}{str(shape):<18}{n:>10,}  {fused.get(i, 'layer')}")
        lines.append(f"{'total':<32}{self.num_parameters():>10,}")
        return "\n".join(lines)

    def __repr__(self):
        fused = self._stage_of_layer() if "fused stages" in self._fusion_line() else {}
        lines = [f"Sequential({self._fusion_line()}"]
        i = 0
        while i < len(self.layers):
            if i in fused:  # one fused stage: its three layers on one line
                group = " -> ".join(repr(layer) for layer in self.layers[i : i + 3])
                lines.append(f"  [{i}-{i + 2}] ConvReluPool: {group}")
                i += 3
            else:
                lines.append(f"  [{i}] {self.layers[i]!r}")
                i += 1
        return "\n".join(lines) + "\n)"
