"""Algorithm 1 of Shaham, Yamada & Negahban: robust optimization by alternating steps.

For each minibatch (x, y):
    1. ascent:  x' = x + argmax_{delta in U} <grad_x J(theta, x, y), delta>
                (one steepest-ascent step, or k projected steps; a backward pass that
                 skips parameter gradients, since only grad_x is needed)
    2. descent: theta <- theta - lr * grad_theta J(theta, x', y)   (the perturbed batch only)

``norm=None`` is plain training. ``alpha`` gives Goodfellow et al.'s objective
alpha * J(x) + (1 - alpha) * J(x') as the special case it is (l_inf ball, one step).

The trainer writes, to ``out_dir``: ``checkpoint.npz`` after every epoch (atomic),
``metrics.jsonl`` (one JSON line per epoch) and ``model.npz`` at the end. ``resume=True``
continues from the checkpoint with the same data order (the shuffling RNG state is saved).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

from .. import checkpoint, kernels
from ..backend import get_xp
from ..data.batches import iterate_minibatches
from ..errors import CheckpointError, InputError, TrainingError
from ..losses import SoftmaxCrossEntropy
from ..optim import SGD
from .ascent import ascend
from .balls import Ball


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved in checkpoints, checked on resume)."""

    epochs: int = 10
    batch_size: int = 100
    lr: float = 0.01
    momentum: float = 0.9
    decay: float = 5e-6  # lr_t = lr / (1 + t * decay)
    weight_decay: float = 2e-3  # = Keras l2(1e-3), the authors' setting (see optim.py)
    norm: str | None = None  # None: plain training; "inf", "2", "1", or any p >= 1
    eps: float = 0.0  # radius of the uncertainty set, in [0, 1] pixel units
    ascent_steps: int = 1  # 1: the paper's single step; k > 1: projected steps
    ascent_step_size: float | None = None  # for k > 1 (default 2.5 * eps / k)
    alpha: float | None = None  # Goodfellow's mix weight of the clean loss; None: perturbed only
    clip: bool = True  # clip x' to the input bounds; False reproduces the paper's setting
    bounds: tuple = (0.0, 1.0)
    seed: int = 0
    lr_halve_every: int = 0  # epochs: halve the lr every this many epochs (0: never)
    attack_mode: str = "eval"  # the ascent step's mode: "eval", or "train" (the paper's authors')

    def validate(self):
        if self.epochs < 0 or self.batch_size < 1:
            raise InputError(f"epochs must be >= 0 and batch_size >= 1, got {self.epochs}, {self.batch_size}")
        if self.norm is not None:
            Ball(self.norm, self.eps)  # raises on an unknown norm or a bad eps
        elif self.eps:
            raise InputError("eps given without a norm: choose --norm inf|2|1 (or eps 0 for plain training)")
        if self.ascent_steps < 1:
            raise InputError(f"ascent_steps must be >= 1, got {self.ascent_steps}")
        if self.lr_halve_every < 0:
            raise InputError(f"lr_halve_every must be >= 0 epochs (0: never), got {self.lr_halve_every}")
        if self.attack_mode not in ("eval", "train"):
            raise InputError(f"attack_mode must be 'eval' or 'train', got {self.attack_mode!r}")
        if self.alpha is not None and not 0.0 <= self.alpha <= 1.0:
            raise InputError(f"alpha must be in [0, 1], got {self.alpha}")
        return self

    def to_json(self) -> dict:
        d = asdict(self)
        d["bounds"] = list(self.bounds)
        return d


class RobustTrainer:
    """Runs Algorithm 1 (or plain training) on a model, with logs and checkpoints."""

    def __init__(self, model, config: TrainConfig, out_dir=None, resume=False, log=print, progress=True,
                 data=None):
        """``data``: JSON-able settings that choose the training data (e.g. ``{"dataset": "mnist",
        "n_train": 1000}``); saved in checkpoints with the data's size and shape, and checked on
        resume, so a resumed run cannot continue on other data without a word."""
        self.model, self.config = model, config.validate()
        self.ball = Ball(config.norm, config.eps) if config.norm is not None else None
        self.optimizer = SGD(model, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
                             decay=config.decay)
        self.rng = np.random.default_rng(config.seed)  # the data order
        self.out_dir = Path(out_dir) if out_dir else None
        self.log, self.progress = log or (lambda *_: None), progress
        self.epoch, self.history = 0, []
        self.data, self._saved_data = dict(data or {}), None
        if resume:
            self._resume()

    # ----- paths ---------------------------------------------------------------------------------
    @property
    def checkpoint_path(self):
        return self.out_dir / "checkpoint.npz" if self.out_dir else None

    @property
    def metrics_path(self):
        return self.out_dir / "metrics.jsonl" if self.out_dir else None

    # ----- the two steps of Algorithm 1 ------------------------------------------------------------
    def perturb(self, x, y):
        """The ascent step: the worst-case x' in the uncertainty set (first order), by the
        routine the attacks use (``ascent.ascend``): one steepest-ascent step, or k projected
        steps from x itself (no random start)."""
        cfg = self.config
        step_size = cfg.ascent_step_size if cfg.ascent_steps > 1 else None
        return ascend(self.model, x, y, self.ball, steps=cfg.ascent_steps, step_size=step_size,
                      bounds=tuple(cfg.bounds) if cfg.clip else None, train=cfg.attack_mode == "train")

    def descent_gradients(self, x, y):
        """Loss, parameter gradients and the number of correct predictions on (x, y)."""
        logits = self.model.forward(x, train=True)
        loss_fn = SoftmaxCrossEntropy()
        loss = float(loss_fn.forward(logits, y))
        self.model.backward(loss_fn.backward(), param_grads=True, input_grad=False)  # no dL/dx needed
        return loss, self.model.gradients(), int((logits.argmax(axis=1) == y).sum())

    def train_step(self, x, y):
        """One minibatch: ascent on the inputs, then descent on the parameters.

        Returns (loss, correct): the loss the step descended and how many examples of the
        batch it used (the perturbed one) the model classified correctly before the step.
        A non-finite loss returns before touching the parameters.
        """
        alpha = self.config.alpha
        x, y = self.model.on_device(x, "training batch"), self.model.on_device(y, "labels")
        x_used = x if self.ball is None or self.ball.eps == 0 else self.perturb(x, y)
        loss, grads, correct = self.descent_gradients(x_used, y)
        if alpha is not None and x_used is not x:
            clean_loss, clean_grads, _ = self.descent_gradients(x, y)
            grads = {k: alpha * clean_grads[k] + (1 - alpha) * grads[k] for k in grads}
            loss = alpha * clean_loss + (1 - alpha) * loss
        if math.isfinite(loss):
            self.optimizer.step(grads)
        return loss, correct

    # ----- epochs, logs, checkpoints ----------------------------------------------------------------
    def fit(self, x, y, x_val=None, y_val=None):
        """Train on host arrays x (N, ...) in [0, 1] and labels y until ``config.epochs``.

        With an ``out_dir`` the run holds that folder's lock for its whole life: a second run
        on the same folder stops at once instead of overwriting this one's files."""
        self.data = {**self.data, "n_examples": len(x), "example_shape": [int(d) for d in x.shape[1:]]}
        self._check_same_data()
        with self._run_folder_lock():
            self._remove_stray_temporaries()
            self._rewrite_metrics()
            return self._fit(x, y, x_val, y_val)

    def _check_same_data(self):
        """On resume: every data setting the checkpoint saved must be the same now."""
        saved = self._saved_data
        if saved is None:  # a new run, or a checkpoint written before data settings were saved
            return
        for key in list(self.data) + [k for k in saved if k not in self.data]:  # the user's settings first
            if saved.get(key) != self.data.get(key):
                raise InputError(f"cannot resume {self.checkpoint_path}: the data differ: {key} was "
                                 f"{saved.get(key)!r}, now {self.data.get(key)!r}")

    def _fit(self, x, y, x_val, y_val):
        cfg = self.config
        n_batches = math.ceil(len(x) / cfg.batch_size)
        kernels.warmup(self.model.dtype)  # compile before the clock of epoch 1 starts
        while self.epoch < cfg.epochs:
            t0 = time.perf_counter()
            if cfg.lr_halve_every:  # a step schedule, a function of the epoch: resumes exactly
                self.optimizer.lr_scale = 0.5 ** (self.epoch // cfg.lr_halve_every)
            bar = _progress_bar(n_batches, f"epoch {self.epoch + 1}/{cfg.epochs}", self.progress)
            losses, correct = [], 0
            for i, (xb, yb) in enumerate(iterate_minibatches(x, y, cfg.batch_size, rng=self.rng)):
                loss, n_ok = self.train_step(xb, yb)
                if not math.isfinite(loss):
                    if bar is not None:
                        bar.close()
                    raise TrainingError(f"loss became {loss} at epoch {self.epoch + 1}, step {i + 1}: training "
                                        f"stopped (try a smaller learning rate); {self._last_good()}")
                losses.append(loss)
                correct += n_ok
                if bar is not None:
                    bar.update(1)
                    if i % 20 == 0:
                        bar.set_postfix(loss=f"{loss:.4f}", acc=f"{correct / ((i + 1) * cfg.batch_size):.3f}")
            if bar is not None:
                bar.close()
            self._check_parameters_finite()  # a non-finite state is never saved as good
            self.epoch += 1
            record = {"epoch": self.epoch, "train_loss": float(np.mean(losses)), "train_acc": correct / len(x),
                      "lr": self.optimizer.current_lr(), "seconds": time.perf_counter() - t0}
            if x_val is not None:
                record["val_acc"] = self.model.accuracy(x_val, y_val)
            self.history.append(record)
            self._save_checkpoint()
            self._append_metrics(record)
            self.log("  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in record.items()))
        if self.out_dir:
            checkpoint.save(self.out_dir / "model.npz", self.model, config=self.config.to_json(),
                            epoch=self.epoch, history=self.history)
        return self.history

    def _last_good(self) -> str:
        """Where training can restart from: the last checkpoint, which holds only finite values
        (a non-finite state is never saved), or that there is none."""
        if self.checkpoint_path is not None and self.checkpoint_path.exists():
            return f"last good checkpoint: {self.checkpoint_path} (epoch {self.epoch})"
        return "no checkpoint was saved (none is written before the first epoch ends)"

    def _check_parameters_finite(self):
        xp = get_xp(*self.model.parameters().values())
        bad = [name for name, v in self.model.parameters().items() if not bool(xp.isfinite(v).all())]
        if bad:
            raise TrainingError(f"parameters {bad} became non-finite (NaN or inf) during epoch {self.epoch + 1}: "
                                f"training stopped (try a smaller learning rate); {self._last_good()}")

    def _save_checkpoint(self):
        if not self.out_dir:
            return
        checkpoint.save(self.checkpoint_path, self.model, self.optimizer, config=self.config.to_json(),
                        epoch=self.epoch, rng_state=self.rng.bit_generator.state, history=self.history,
                        data=self.data)

    @contextlib.contextmanager
    def _run_folder_lock(self):
        """An exclusive lock on ``out_dir/.lock`` (flock: the OS releases it when the process
        ends, however it ends, so a killed run never leaves a stale lock behind)."""
        if not self.out_dir or fcntl is None:  # fcntl: POSIX only; elsewhere runs are not locked
            yield
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        handle = open(self.out_dir / ".lock", "a+")  # noqa: SIM115 - held for the run's life
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise TrainingError(f"{self.out_dir} is in use by another training run (its lock is held): "
                                "wait for it to finish, or choose another output folder") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()

    def _remove_stray_temporaries(self):
        """Temporary files a killed run left mid-write (``*.tmp-*``): never the real files, which
        are only ever replaced whole. Safe because this run holds the folder's lock."""
        if not self.out_dir:
            return
        for stray in self.out_dir.glob("*.tmp-*"):
            try:
                stray.unlink()
            except OSError:
                pass

    def _rewrite_metrics(self):
        """metrics.jsonl = one line per epoch of the history (empty for a new run): the file
        always agrees with the checkpoint, whatever a crash left in it."""
        if not self.out_dir:
            return
        tmp = self.metrics_path.with_name(f"metrics.jsonl.tmp-{os.getpid()}")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in self.history), encoding="utf-8")
        os.replace(tmp, self.metrics_path)

    def _append_metrics(self, record):
        if not self.out_dir:
            return
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def _restore_training_state(self, ckpt):
        """The optimiser's buffers and step count and the data order's RNG, each checked: a
        model file, a tampered state or another optimiser's buffers are one-line errors."""
        path, meta = self.checkpoint_path, ckpt.meta
        if "optimizer" not in meta or "rng_state" not in meta:
            raise CheckpointError(f"cannot resume {path}: it holds a model without its training state (a "
                                  "model.npz?): resume needs the checkpoint.npz that training writes")
        t = meta["optimizer"].get("t") if isinstance(meta["optimizer"], dict) else None
        if not isinstance(t, int) or isinstance(t, bool) or t < 0:
            raise CheckpointError(f"cannot resume {path}: the optimizer's step count {t!r} is not a whole number >= 0")
        _check_optimizer_arrays(path, ckpt.optimizer_arrays, self.optimizer, self.model.parameters())
        self.optimizer.load_state_arrays(ckpt.optimizer_arrays, t)
        try:
            self.rng.bit_generator.state = meta["rng_state"]
        except (TypeError, ValueError, KeyError, OverflowError) as exc:
            raise CheckpointError(f"cannot resume {path}: the saved data-order RNG state is not valid "
                                  f"({type(exc).__name__}: {exc})") from exc
        epoch = meta.get("epoch", 0)
        if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
            raise CheckpointError(f"cannot resume {path}: its epoch {epoch!r} is not a whole number >= 0")
        history = meta.get("history", [])
        if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
            raise CheckpointError(f"cannot resume {path}: its history is not a list of epoch records")

    def _resume(self):
        if not self.out_dir or not self.checkpoint_path.exists():
            self.log("no checkpoint to resume from: starting from scratch")
            return
        ckpt = checkpoint.load(self.checkpoint_path)
        # settings added since a checkpoint was written count as their defaults
        saved = {k: v for k, v in {**TrainConfig().to_json(), **ckpt.meta.get("config", {})}.items()
                 if k != "epochs"}
        now = {k: v for k, v in self.config.to_json().items() if k != "epochs"}
        if saved != now:
            diff = {k: (saved.get(k), now.get(k)) for k in set(saved) | set(now) if saved.get(k) != now.get(k)}
            raise InputError(f"cannot resume {self.checkpoint_path}: settings differ (saved, now): {diff}")
        self.model.load_state_dict(ckpt.model.state_dict())
        self._restore_training_state(ckpt)
        # the checkpoint is the truth: fit() rewrites metrics.jsonl from this history, so a line
        # lost or torn by a crash between the checkpoint and the metrics append comes back
        self.epoch, self.history = ckpt.epoch, list(ckpt.meta.get("history", []))
        self._saved_data = ckpt.meta.get("data")  # checked against the data fit() is given
        self.log(f"resumed from {self.checkpoint_path} at epoch {self.epoch}")


def _optimizer_kinds(optimizer) -> set:
    return {"velocity"} if isinstance(optimizer, SGD) else {"m", "v"}


def _check_optimizer_arrays(path, arrays, optimizer, params):
    """Every saved buffer must be 'kind/parameter' of this optimiser and of its parameter's shape."""
    kinds = _optimizer_kinds(optimizer)
    for key, value in arrays.items():
        kind, _, name = key.partition("/")
        if kind not in kinds or name not in params:
            raise CheckpointError(f"cannot resume {path}: optimizer buffer {key!r} belongs to no parameter of "
                                  f"this model ({type(optimizer).__name__} keeps {sorted(kinds)})")
        if tuple(value.shape) != tuple(params[name].shape) or value.dtype.kind != "f":
            raise CheckpointError(f"cannot resume {path}: optimizer buffer {key!r} has shape {tuple(value.shape)} "
                                  f"and dtype {value.dtype}; the parameter is {tuple(params[name].shape)}")


def _progress_bar(total, desc, enabled):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm  # noqa: PLC0415
    except ImportError:  # pragma: no cover
        return None
    return tqdm(total=total, desc=desc, leave=False, disable=None)
