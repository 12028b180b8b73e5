"""Training runs: a method (what the descent is taken on) inside a run (epochs, checkpoints).

Algorithm 1 of Shaham, Yamada & Negahban is the default method, ``paper``. For each minibatch:
    1. ascent:  x' = x + argmax_{delta in U} <grad_x J(theta, x, y), delta>
                (one steepest-ascent step, or k projected steps; a backward pass that
                 skips parameter gradients, since only grad_x is needed)
    2. descent: theta <- theta - lr * grad_theta J(theta, x', y)   (the perturbed batch only)

The other methods (``pgd``, ``fgsm-rs``, ``trades``, ``ibp``; see methods.py) change what the ascent
starts from and what the descent is taken on; this file is the same for all of them:
the optimiser step, the eps ramp, the epoch loop, the overfitting monitor, and the run folder
(run_folder.py: lock, atomic checkpoints, metrics, resume with the same data order and the same
random starts).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np

from .. import kernels
from ..backend import get_xp, to_host
from ..data.batches import iterate_minibatches
from ..errors import CheckpointError, InputError, TrainingError
from ..optim import SGD
from ..options import option
from .balls import Ball
from .methods import METHODS, descend_on, make_method
from .monitor import OverfitMonitor, first_full_epoch
from .run_folder import RunFolder, whole_number


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved in checkpoints, checked on resume)."""

    # a field made with option() is also a command-line flag of `minirobust train` (options.py)
    epochs: int = option(10, "--epochs", "positive_int")
    batch_size: int = option(100, "--batch-size", "positive_int")
    lr: float = option(0.01, "--lr", "finite_float")
    momentum: float = option(0.9, "--momentum", "finite_float")
    decay: float = option(5e-6, "--decay", "nonneg_float", "per-step lr decay: lr / (1 + t*decay)")
    weight_decay: float = option(2e-3, "--weight-decay", "nonneg_float")  # = Keras l2(1e-3), the authors' (optim.py)
    norm: str | None = option(None, "--norm", "norm", "uncertainty set: inf, 2, 1 or any p >= 1 (omit for plain "
                              "training)")
    eps: float = option(0.0, "--eps", "nonneg_float", "radius of the ball, in [0, 1] pixel units")
    method: str = option("paper", "--method", "choice", "paper: Algorithm 1 (default); pgd: Madry's PGD-AT; "
                         "fgsm-rs: Wong's FGSM with a random start; trades: Zhang's TRADES; ibp: Gowal's interval "
                         "bound propagation (l_inf)", choices=tuple(METHODS), robust_only=True)
    ascent_steps: int | None = option(None, "--ascent-steps", "positive_int", "ascent steps per batch (default: the "
                                      "method's: paper, fgsm-rs 1; pgd, trades 10)", robust_only=True)
    ascent_step_size: float | None = option(None, "--step-size", "positive_float", "ascent step size (default: "
                                            "2.5*eps/steps; fgsm-rs 1.25*eps)", robust_only=True)
    alpha: float | None = option(None, "--alpha", "finite_float", "Goodfellow's objective alpha*J(x) + "
                                 "(1-alpha)*J(x'); default: J(x') only", robust_only=True)
    beta: float = option(6.0, "--beta", "nonneg_float", "trades: weight of the KL term", robust_only=True)
    eps_ramp_epochs: float = option(0.0, "--eps-ramp", "nonneg_float", "grow eps linearly from 0 over this many "
                                    "epochs (default 0: full eps at once)", metavar="EPOCHS", robust_only=True)
    eps_warmup_epochs: float = option(0.0, "--eps-warmup", "nonneg_float", "epochs of plain training before the eps "
                                      "ramp starts (IBP's warm-up)", metavar="EPOCHS", robust_only=True)
    clip: bool = option(True, "--no-clip", "negated", "do not clip x' to [0, 1] (the paper's setting)")
    bounds: tuple = (0.0, 1.0)
    seed: int = 0  # the command line's --seed (every command has one)
    lr_halve_every: int = option(0, "--lr-halve-every", "nonneg_int", "halve the lr every N epochs (0: never)")
    attack_mode: str = option("eval", "--attack-mode", "choice", "the ascent step's mode: eval (default) or train "
                              "(dropout on, BatchNorm on batch statistics)", choices=("eval", "train"),
                              robust_only=True)
    monitor_steps: int = 10  # PGD steps of the overfitting monitor (when fit is given a monitor batch)
    overfit_margin: float = 0.2  # a fall of PGD accuracy below its best that counts as a collapse
    overfit_gap: float = 0.5  # training-attack accuracy this far above PGD's (at full eps) is a collapse
    stop_on_overfit: bool = option(False, "--stop-on-overfit", "switch", "with --monitor: on catastrophic "
                                   "overfitting restore the best model and stop", robust_only=True)

    def validate(self):
        if self.epochs < 0 or self.batch_size < 1:
            raise InputError(f"epochs must be >= 0 and batch_size >= 1, got {self.epochs}, {self.batch_size}")
        if self.method not in METHODS:
            raise InputError(f"unknown training method {self.method!r}: choose one of {', '.join(METHODS)}")
        if self.norm is not None:
            Ball(self.norm, self.eps)  # raises on an unknown norm or a bad eps
        elif self.eps:
            raise InputError("eps given without a norm: choose --norm inf|2|1 (or eps 0 for plain training)")
        if self.norm is None and self.method != "paper":
            raise InputError(f"method {self.method!r} trains against a ball: it needs a norm and eps")
        if self.method == "ibp" and Ball(self.norm, self.eps).name != "inf":
            raise InputError("the ibp method bounds an l_inf box: use norm 'inf'")
        if self.ascent_steps is not None and self.ascent_steps < 1:
            raise InputError(f"ascent_steps must be >= 1, got {self.ascent_steps}")
        for name in ("ascent_step_size", "beta", "eps_ramp_epochs", "eps_warmup_epochs", "overfit_margin",
                     "overfit_gap"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise InputError(f"{name} must be a finite number >= 0, got {value}")
        if self.monitor_steps < 1:
            raise InputError(f"monitor_steps must be >= 1, got {self.monitor_steps}")
        if self.lr_halve_every < 0:
            raise InputError(f"lr_halve_every must be >= 0 epochs (0: never), got {self.lr_halve_every}")
        if self.attack_mode not in ("eval", "train"):
            raise InputError(f"attack_mode must be 'eval' or 'train', got {self.attack_mode!r}")
        if self.alpha is not None and not 0.0 <= self.alpha <= 1.0:
            raise InputError(f"alpha must be in [0, 1], got {self.alpha}")
        if self.alpha is not None and self.method != "paper":
            raise InputError("alpha (Goodfellow's mix) belongs to the paper method; trades has its own beta")
        return self

    def to_json(self) -> dict:
        d = asdict(self)
        d["bounds"] = list(self.bounds)
        return d

    def resolved_json(self) -> dict:
        """to_json with each 'the method's own' setting spelled out: what resume compares."""
        d = self.to_json()
        d["ascent_steps"] = self.ascent_steps or METHODS[self.method].default_steps
        return d


class RobustTrainer:
    """Trains a model with a method (``config.method``), with logs and checkpoints."""

    def __init__(self, model, config: TrainConfig, out_dir=None, resume=False, log=print, progress=True,
                 data=None):
        """``data``: JSON-able settings that choose the training data (e.g. ``{"dataset": "mnist",
        "n_train": 1000}``); saved in checkpoints with the data's size and shape, and checked on
        resume, so a resumed run cannot continue on other data without a word."""
        self.model, self.config = model, config.validate()
        self.method = make_method(config)
        self.ball = Ball(config.norm, config.eps) if config.norm is not None else None
        self.optimizer = SGD(model, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
                             decay=config.decay)
        self.rng = np.random.default_rng(config.seed)  # the data order
        self.noise_rng = np.random.default_rng([config.seed, 1])  # the methods' random starts
        self.folder = RunFolder(out_dir)
        self.log, self.progress = log or (lambda *_: None), progress
        self.epoch, self.history = 0, []
        self.batches_per_epoch = None  # known once fit() sees the data; the eps ramp needs it
        self.data, self._saved_data = dict(data or {}), None
        if resume:
            self._resume()

    @property
    def out_dir(self):
        return self.folder.path

    @out_dir.setter
    def out_dir(self, path):
        self.folder = RunFolder(path)

    @property
    def checkpoint_path(self):
        return self.folder.checkpoint_path

    @property
    def metrics_path(self):
        return self.folder.metrics_path

    # ----- one step: the method's gradients, then the optimiser ---------------------------------------
    def current_ball(self):
        """The ball of this step: ``config.eps``; 0 during the warm-up; during the eps ramp a
        linear fraction of it. A function of the optimiser's step count (saved), so a resumed run
        ramps identically."""
        cfg = self.config
        if self.ball is None or not (cfg.eps_ramp_epochs or cfg.eps_warmup_epochs) or not self.batches_per_epoch:
            return self.ball
        step = self.optimizer.t + 1 - cfg.eps_warmup_epochs * self.batches_per_epoch
        ramp_steps = cfg.eps_ramp_epochs * self.batches_per_epoch
        fraction = min(1.0, max(0.0, step / ramp_steps if ramp_steps else float(step > 0)))
        return self.ball if fraction >= 1.0 else Ball(cfg.norm, cfg.eps * fraction)

    def perturb(self, x, y):
        """The ascent: the inputs the method trains on (the worst case it finds in the ball)."""
        return self.method.perturb(self.model, x, y, self.current_ball(), self.noise_rng)

    def descent_gradients(self, x, y):
        """Loss, parameter gradients and the number of correct predictions on (x, y)."""
        return descend_on(self.model, x, y)

    def train_step(self, x, y):
        """One minibatch: the method's ascent and descent gradients, then the optimiser step.

        Returns (loss, correct): the loss the step descended and how many examples of the
        batch it trained on the model classified correctly before the step.
        A non-finite loss returns before touching the parameters.
        """
        x, y = self.model.on_device(x, "training batch"), self.model.on_device(y, "labels")
        loss, grads, correct = self.method.step(self.model, x, y, self.current_ball(), self.noise_rng)
        if math.isfinite(loss):
            self.optimizer.step(grads)
        return loss, correct

    # ----- epochs -------------------------------------------------------------------------------------
    def fit(self, x, y, x_val=None, y_val=None, monitor=None, time_limit=None):
        """Train on host arrays x (N, ...) in [0, 1] and labels y until ``config.epochs``.

        ``monitor``: a held-out (x, y) for the catastrophic-overfitting monitor (PGD accuracy after
        each epoch, ``pgd_acc_monitor``; see monitor.py). ``time_limit``: seconds; no new epoch
        starts after it (the run is left resumable, as after a kill). With an ``out_dir`` the run
        holds that folder's lock for its whole life: a second run on the same folder stops at once."""
        self.data = {**self.data, "n_examples": len(x), "example_shape": [int(d) for d in x.shape[1:]]}
        self._check_same_data()
        watcher = None
        if monitor is not None and self.ball is not None:
            cfg = self.config
            watcher = OverfitMonitor(monitor[0], monitor[1], cfg.norm, cfg.eps, steps=cfg.monitor_steps,
                                     margin=cfg.overfit_margin, bounds=tuple(cfg.bounds) if cfg.clip else None,
                                     seed=cfg.seed, gap=cfg.overfit_gap, full_from=first_full_epoch(cfg.eps_ramp_epochs,
                                                                                         cfg.eps_warmup_epochs))
        with self.folder.lock():
            self.folder.remove_stray_temporaries()
            self.folder.rewrite_metrics(self.history)
            return self._fit(x, y, x_val, y_val, watcher, time_limit)

    def _check_same_data(self):
        """On resume: every data setting the checkpoint saved must be the same now."""
        saved = self._saved_data
        if saved is None:  # a new run, or a checkpoint written before data settings were saved
            return
        for key in list(self.data) + [k for k in saved if k not in self.data]:  # the user's settings first
            if saved.get(key) != self.data.get(key):
                raise InputError(f"cannot resume {self.checkpoint_path}: the data differ: {key} was "
                                 f"{saved.get(key)!r}, now {self.data.get(key)!r}")

    @property
    def stopped_early(self) -> bool:
        return any(r.get("stopped_early") for r in self.history)

    def _fit(self, x, y, x_val, y_val, watcher, time_limit):
        cfg = self.config
        self.batches_per_epoch = math.ceil(len(x) / cfg.batch_size)
        kernels.warmup(self.model.dtype)  # compile before the clock of epoch 1 starts
        started = time.perf_counter()
        while self.epoch < cfg.epochs and not self.stopped_early:
            if time_limit is not None and time.perf_counter() - started > time_limit:
                self.log(f"time limit of {time_limit:g} s reached after epoch {self.epoch}: resume to continue")
                break
            t0 = time.perf_counter()
            if cfg.lr_halve_every:  # a step schedule, a function of the epoch: resumes exactly
                self.optimizer.lr_scale = 0.5 ** (self.epoch // cfg.lr_halve_every)
            loss, correct = self._one_epoch(x, y)
            self._check_parameters_finite()  # a non-finite state is never saved as good
            self.epoch += 1
            record = {"epoch": self.epoch, "train_loss": loss, "train_acc": correct / len(x),
                      "lr": self.optimizer.current_lr(), "seconds": time.perf_counter() - t0}
            if self.ball is not None and (cfg.eps_ramp_epochs or cfg.eps_warmup_epochs):
                record["eps"] = self.current_ball().eps
            if x_val is not None:
                record["val_acc"] = self.model.accuracy(x_val, y_val)
            if watcher is not None:
                self._watch(watcher, record)
            self.history.append(record)
            if record.get("stopped_early"):
                self._restore_best()
            self._save_checkpoint()
            self.folder.append_metrics(record)
            self.log("  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in record.items()))
        self.folder.save("model.npz", self.model, config=self.config.to_json(), epoch=self.epoch,
                         history=self.history)
        return self.history

    def _one_epoch(self, x, y):
        cfg = self.config
        bar = _progress_bar(self.batches_per_epoch, f"epoch {self.epoch + 1}/{cfg.epochs}", self.progress)
        losses, correct = [], 0
        try:
            for i, (xb, yb) in enumerate(iterate_minibatches(x, y, cfg.batch_size, rng=self.rng)):
                loss, n_ok = self.train_step(xb, yb)
                if not math.isfinite(loss):
                    raise TrainingError(f"loss became {loss} at epoch {self.epoch + 1}, step {i + 1}: training "
                                        f"stopped (try a smaller learning rate); {self.folder.last_good(self.epoch)}")
                losses.append(loss)
                correct += n_ok
                if bar is not None:
                    bar.update(1)
                    if i % 20 == 0:
                        bar.set_postfix(loss=f"{loss:.4f}", acc=f"{correct / ((i + 1) * cfg.batch_size):.3f}")
        finally:
            if bar is not None:
                bar.close()
        return float(np.mean(losses)), correct

    def _watch(self, watcher, record):
        """PGD accuracy on the monitor batch; the best model kept in best.npz; a collapse said in
        one line (and, with ``stop_on_overfit``, training stops on the best model)."""
        record["pgd_acc_monitor"] = watcher.accuracy(self.model)
        earlier = [r["pgd_acc_monitor"] for r in self.history if "pgd_acc_monitor" in r]
        if not earlier or record["pgd_acc_monitor"] > max(earlier):
            self.folder.save("best.npz", self.model, config=self.config.to_json(), epoch=self.epoch,
                             pgd_acc_monitor=record["pgd_acc_monitor"])
            self._best = {k: to_host(v).copy() for k, v in self.model.parameters().items()}
        message = watcher.collapse([*self.history, record])
        if message:
            record["catastrophic_overfitting"] = True
            self.log(message + ("; stopping on the best model (stop_on_overfit)" if self.config.stop_on_overfit
                                else ""))
            if self.config.stop_on_overfit:
                record["stopped_early"] = True

    def _restore_best(self):
        """The parameters of the epoch with the best monitor accuracy (from memory, or best.npz
        after a resume)."""
        best = getattr(self, "_best", None)
        if best is None and self.folder and self.folder.file("best.npz").exists():
            from .. import checkpoint  # noqa: PLC0415

            best = checkpoint.load(self.folder.file("best.npz")).model.parameters()
        if best is not None:
            self.model.load_state_dict({**self.model.state_dict(), **{k: to_host(v) for k, v in best.items()}})

    def _check_parameters_finite(self):
        xp = get_xp(*self.model.parameters().values())
        bad = [name for name, v in self.model.parameters().items() if not bool(xp.isfinite(v).all())]
        if bad:
            raise TrainingError(f"parameters {bad} became non-finite (NaN or inf) during epoch {self.epoch + 1}: "
                                f"training stopped (try a smaller learning rate); {self.folder.last_good(self.epoch)}")

    # ----- checkpoints and resume -------------------------------------------------------------------
    def _save_checkpoint(self):
        self.folder.save("checkpoint.npz", self.model, self.optimizer, config=self.config.to_json(),
                         epoch=self.epoch, rng_state=self.rng.bit_generator.state,
                         noise_rng_state=self.noise_rng.bit_generator.state, history=self.history, data=self.data)

    def _restore_training_state(self, ckpt):
        """The optimiser's buffers and step count and the RNGs, each checked: a model file, a
        tampered state or another optimiser's buffers are one-line errors."""
        path, meta = self.checkpoint_path, ckpt.meta
        if "optimizer" not in meta or "rng_state" not in meta:
            raise CheckpointError(f"cannot resume {path}: it holds a model without its training state (a "
                                  "model.npz?): resume needs the checkpoint.npz that training writes")
        t = meta["optimizer"].get("t") if isinstance(meta["optimizer"], dict) else None
        whole_number(path, "the optimizer's step count", t)
        try:
            self.optimizer.check_state_arrays(ckpt.optimizer_arrays)
        except ValueError as exc:
            raise CheckpointError(f"cannot resume {path}: {exc}") from None
        self.optimizer.load_state_arrays(ckpt.optimizer_arrays, t)
        for generator, key, what in ((self.rng, "rng_state", "data-order"),
                                     (self.noise_rng, "noise_rng_state", "random-start")):
            if key not in meta:  # written before the methods drew random starts: the fresh state
                continue
            try:
                generator.bit_generator.state = meta[key]
            except (TypeError, ValueError, KeyError, OverflowError) as exc:
                raise CheckpointError(f"cannot resume {path}: the saved {what} RNG state is not valid "
                                      f"({type(exc).__name__}: {exc})") from exc
        whole_number(path, "its epoch", meta.get("epoch", 0))
        history = meta.get("history", [])
        if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
            raise CheckpointError(f"cannot resume {path}: its history is not a list of epoch records")

    def _resume(self):
        ckpt = self.folder.load_checkpoint()
        if ckpt is None:
            self.log("no checkpoint to resume from: starting from scratch")
            return
        # settings added since a checkpoint was written count as their defaults
        saved_cfg = {**TrainConfig().to_json(), **ckpt.meta.get("config", {})}
        try:
            saved = TrainConfig(**{**saved_cfg, "bounds": tuple(saved_cfg["bounds"])}).resolved_json()
        except (TypeError, KeyError, ValueError) as exc:
            raise CheckpointError(f"cannot resume {self.checkpoint_path}: its settings are not valid ({exc})") from None
        saved.pop("epochs")
        now = {k: v for k, v in self.config.resolved_json().items() if k != "epochs"}
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


def _progress_bar(total, desc, enabled):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm  # noqa: PLC0415
    except ImportError:  # pragma: no cover
        return None
    return tqdm(total=total, desc=desc, leave=False, disable=None)
