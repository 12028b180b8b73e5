"""Optimisers: SGD (momentum, Nesterov) and Adam, with weight decay and lr decay.

Both update a model's parameters in place from a {name: gradient} dict:

    opt = SGD(model, lr=0.01, momentum=0.9, weight_decay=1e-3, decay=5e-6)
    loss, grads, dx = model.loss_and_grads(x, y)
    opt.step(grads)

Learning rate at step t (t = number of steps taken so far): ``lr * lr_scale / (1 + t * decay)``
(Keras' classic per-step decay, used by the paper's MNIST authors; ``lr_scale`` is a step
schedule's factor that the trainer sets each epoch, e.g. halving every 25 epochs for CIFAR-10).

Weight decay adds ``weight_decay * W`` to the gradient of every weight matrix/kernel
(parameters named ``*.W``), not to biases: the gradient of the L2 penalty
``weight_decay/2 * ||W||^2``. (Keras' ``l2(c)`` penalty c*||W||^2 equals weight_decay = 2c.)
"""

from __future__ import annotations

from .backend import get_xp, to_device, to_host
from .errors import InputError
from .kernels import get_op


def _is_weight(name: str) -> bool:
    return name.endswith(".W")


def _full_gradient(param, grad, wd):
    """The loss gradient plus weight decay's (wd * param); ``grad`` itself when wd is 0."""
    return grad + wd * param if wd else grad


class Optimizer:
    """Shared bookkeeping: the step counter, the lr schedule, weight decay, state I/O."""

    def __init__(self, model, lr, weight_decay=0.0, decay=0.0):
        if lr <= 0 or weight_decay < 0 or decay < 0:
            raise InputError(f"need lr > 0, weight_decay >= 0, decay >= 0; got {lr}, {weight_decay}, {decay}")
        self.model, self.lr, self.weight_decay, self.decay = model, float(lr), float(weight_decay), float(decay)
        self.t = 0  # steps taken
        self.lr_scale = 1.0  # a schedule's factor, set by the trainer each epoch (e.g. halvings)
        self.state: dict = {}  # per-parameter buffers, e.g. {"velocity": {name: array}}

    def current_lr(self) -> float:
        return self.lr * self.lr_scale / (1.0 + self.t * self.decay)

    def step(self, grads: dict):
        params = self.model.parameters()
        missing = set(params) - set(grads)
        if missing:
            raise InputError(f"optimizer step: no gradient for {sorted(missing)}")
        lr = self.current_lr()
        for name, param in params.items():
            wd = self.weight_decay if _is_weight(name) else 0.0
            self.model.set_parameter(name, self._update(name, param, grads[name], lr, wd))
        self.t += 1

    def _update(self, name, param, grad, lr, wd):
        """The new value of ``param`` given its loss gradient; the full gradient is grad + wd*param."""
        raise NotImplementedError

    def _buffer(self, kind, name, like):
        buf = self.state.setdefault(kind, {})
        if name not in buf:
            buf[name] = get_xp(like).zeros_like(like)
        return buf[name]

    # state for checkpoints: arrays go to .npz, scalars to JSON
    def state_arrays(self) -> dict:
        return {f"{kind}/{name}": to_host(v) for kind, d in self.state.items() for name, v in d.items()}

    state_kinds: tuple = ()  # the names of the per-parameter buffers this optimiser keeps

    def check_state_arrays(self, arrays: dict):
        """Raise ValueError unless every buffer is 'kind/parameter' of this optimiser, with its
        parameter's shape and a float dtype (a tampered file or another optimiser's state)."""
        params = self.model.parameters()
        for key, value in arrays.items():
            kind, _, name = key.partition("/")
            if kind not in self.state_kinds or name not in params:
                raise ValueError(f"optimizer buffer {key!r} belongs to no parameter of this model "
                                 f"({type(self).__name__} keeps {sorted(self.state_kinds)})")
            if tuple(value.shape) != tuple(params[name].shape) or value.dtype.kind != "f":
                raise ValueError(f"optimizer buffer {key!r} has shape {tuple(value.shape)} and dtype "
                                 f"{value.dtype}; the parameter is {tuple(params[name].shape)}")

    def load_state_arrays(self, arrays: dict, t: int):
        self.state = {}
        for key, value in arrays.items():
            kind, name = key.split("/", 1)
            self.state.setdefault(kind, {})[name] = to_device(value, dtype=self.model.dtype)
        self.t = int(t)

    def config(self) -> dict:
        return {"type": type(self).__name__, "lr": self.lr, "weight_decay": self.weight_decay, "decay": self.decay}


class SGD(Optimizer):
    """v <- momentum*v - lr*g; W <- W + v  (Nesterov: W <- W + momentum*v - lr*g)."""

    state_kinds = ("velocity",)

    def __init__(self, model, lr=0.01, momentum=0.0, nesterov=False, weight_decay=0.0, decay=0.0):
        super().__init__(model, lr, weight_decay, decay)
        if not 0.0 <= momentum < 1.0:
            raise InputError(f"momentum must be in [0, 1), got {momentum}")
        if nesterov and momentum == 0:
            raise InputError("Nesterov momentum needs momentum > 0")
        self.momentum, self.nesterov = float(momentum), bool(nesterov)

    def _update(self, name, param, grad, lr, wd):
        if self.momentum and not self.nesterov:  # the usual case: one fused, in-place op
            v = self._buffer("velocity", name, param)
            get_op("sgd_momentum_step", param)(param, grad, v, lr, wd, self.momentum)
            return param
        g = _full_gradient(param, grad, wd)
        if self.momentum == 0:
            return param - lr * g
        v = self._buffer("velocity", name, param)
        v *= self.momentum
        v -= lr * g
        return param + self.momentum * v - lr * g  # Nesterov

    def config(self):
        return {**super().config(), "momentum": self.momentum, "nesterov": self.nesterov}


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) with bias correction."""

    state_kinds = ("m", "v")

    def __init__(self, model, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, decay=0.0):
        super().__init__(model, lr, weight_decay, decay)
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)

    def _update(self, name, param, grad, lr, wd):
        m, v = self._buffer("m", name, param), self._buffer("v", name, param)
        get_op("adam_step", param)(param, grad, m, v, lr, wd, self.beta1, self.beta2, self.eps, self.t + 1)
        return param  # updated in place

    def config(self):
        return {**super().config(), "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}


OPTIMIZERS = {"SGD": SGD, "Adam": Adam}


def optimizer_from_config(model, cfg: dict) -> Optimizer:
    cfg = dict(cfg)
    kind = cfg.pop("type")
    if kind not in OPTIMIZERS:
        raise InputError(f"unknown optimizer {kind!r}")
    return OPTIMIZERS[kind](model, **cfg)

