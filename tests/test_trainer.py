"""Algorithm 1: the ascent step, the special cases, robustness gained, NaN handling. The ascent and
step tests run on every backend (backend_name: the GPU where a device is present)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from minirobust import checkpoint, nets
from minirobust.backend import to_device, to_host
from minirobust.data import separable_images
from minirobust.errors import CheckpointError, InputError, TrainingError
from minirobust.robust import Ball, RobustTrainer, TrainConfig, ascent, fast_method, per_example_loss, pgd, robust_accuracy
from minirobust.robust import attacks as attacks_module
from minirobust.robust import methods as methods_module

from .helpers import mnist_arrays, test_batch, train_mnist, trained_baseline


def _quiet(model, **cfg):
    return RobustTrainer(model, TrainConfig(**cfg), log=lambda *_: None, progress=False)


def _baseline_and_batch(n, device):
    """A copy of the shared trained baseline on ``device``, and a test batch there."""
    x, y = test_batch(n)
    return copy.deepcopy(trained_baseline()).to(device), to_device(x), to_device(y)


@pytest.mark.parametrize("norm, eps", [("inf", 0.1), ("2", 1.5), ("1", 2.0)])
@pytest.mark.parametrize("steps", [1, 5])
def test_ascent_step_stays_in_ball_and_raises_loss(norm, eps, steps, backend_name):
    model, x, y = _baseline_and_batch(200, backend_name)
    trainer = _quiet(model, norm=norm, eps=eps, ascent_steps=steps)
    before = {k: v.copy() for k, v in model.parameters().items()}
    x_adv = trainer.perturb(x, y)
    assert np.all(Ball(norm, eps).contains(x_adv - x, tol=1e-5))
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert (per_example_loss(model, x_adv, y) > per_example_loss(model, x, y)).mean() >= 0.95
    assert all(np.array_equal(v, before[k]) for k, v in model.parameters().items())  # ... and changes none


@pytest.mark.parametrize("norm, eps", [("inf", 0.1), ("2", 1.5), ("1", 2.0)])
def test_trainer_and_attacks_share_one_ascent_routine(norm, eps, backend_name, monkeypatch):
    # the trainer's perturbed batch IS the fast method's (one step) and PGD's without a random
    # start (k steps) on the same weights: both go through robust.ascent.ascend
    model, x, y = _baseline_and_batch(100, backend_name)
    one = _quiet(model, norm=norm, eps=eps).perturb(x, y)
    np.testing.assert_array_equal(to_host(one), to_host(fast_method(model, x, y, norm=norm, eps=eps).x_adv))
    # k steps: the trainer's batch is the end of the path PGD walks; PGD returns, per example,
    # the worst point of that same path (its first fooling point, else its highest loss)
    path = [to_host(x)] + [to_host(ascent.ascend(model, x, y, Ball(norm, eps), steps=t, step_size=2.5 * eps / 4,
                                                 start=np.zeros_like(x))) for t in range(1, 5)]
    np.testing.assert_array_equal(path[-1], to_host(_quiet(model, norm=norm, eps=eps, ascent_steps=4).perturb(x, y)))
    worst = to_host(pgd(model, x, y, norm=norm, eps=eps, steps=4, random_start=False).x_adv)
    for i in range(len(x)):
        assert any(np.array_equal(worst[i], p[i]) for p in path), i
    unclipped = _quiet(model, norm=norm, eps=eps, clip=False).perturb(x, y)
    np.testing.assert_array_equal(to_host(unclipped),
                                  to_host(fast_method(model, x, y, norm=norm, eps=eps, bounds=None).x_adv))
    calls = []
    monkeypatch.setattr(methods_module, "ascend", lambda *a, **kw: calls.append("trainer") or ascent.ascend(*a, **kw))
    monkeypatch.setattr(attacks_module, "ascend", lambda *a, **kw: calls.append("attack") or ascent.ascend(*a, **kw))
    step = ascent.projected_step
    monkeypatch.setattr(attacks_module, "projected_step", lambda *a: calls.append("pgd step") or step(*a))
    _quiet(model, norm=norm, eps=eps).perturb(x, y)
    fast_method(model, x, y, norm=norm, eps=eps)
    pgd(model, x, y, norm=norm, eps=eps, steps=2)
    assert calls == ["trainer", "attack", "pgd step", "pgd step"]


def test_ascent_skips_parameter_gradients(backend_name, monkeypatch):
    model = nets.paper_mnist(seed=0)
    calls = []
    original = model.backward
    monkeypatch.setattr(model, "backward", lambda dy, param_grads=True, input_grad=True:
                        calls.append((param_grads, input_grad)) or original(dy, param_grads, input_grad))
    trainer = _quiet(model, norm="inf", eps=0.1)
    x, y = separable_images(20)
    trainer.train_step(x, y)  # host batches, moved to the model's device
    # ascent: the input gradient only; descent: parameter gradients only
    assert calls == [(False, True), (True, False)] and model.device == backend_name


def _train_params(x, y, **cfg):
    model = nets.paper_mnist(seed=0)
    _quiet(model, epochs=1, batch_size=50, **cfg).fit(x, y)
    return model.parameters()


def test_goodfellow_objective_special_cases():
    x, y = separable_images(300, seed=3)
    plain = _train_params(x, y)
    mixed_clean = _train_params(x, y, norm="inf", eps=0.1, alpha=1.0)  # all weight on J(x)
    robust = _train_params(x, y, norm="inf", eps=0.1)
    mixed_adv = _train_params(x, y, norm="inf", eps=0.1, alpha=0.0)  # all weight on J(x')
    half = _train_params(x, y, norm="inf", eps=0.1, alpha=0.5)
    for k in plain:
        np.testing.assert_allclose(mixed_clean[k], plain[k], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(mixed_adv[k], robust[k], rtol=1e-5, atol=1e-6)
    assert not np.allclose(half["1_conv2d.W"], plain["1_conv2d.W"], atol=1e-4)
    assert not np.allclose(half["1_conv2d.W"], robust["1_conv2d.W"], atol=1e-4)


def test_eps_zero_is_plain_training():
    x, y = separable_images(200, seed=4)
    plain, zero = _train_params(x, y), _train_params(x, y, norm="inf", eps=0.0)
    for k in plain:
        np.testing.assert_array_equal(zero[k], plain[k])


def test_robust_training_beats_plain_on_real_mnist():
    _, _, xt, yt, _, _ = mnist_arrays()
    xt, yt = xt[:1000], yt[:1000]
    eps = 0.2  # measured: fast-method accuracy 34% plain vs 56% robust (6,000 images, 2 epochs)
    plain = train_mnist(n_train=6000, epochs=2)
    robust = train_mnist(n_train=6000, epochs=2, norm="inf", eps=eps)
    r_plain = robust_accuracy(plain, xt, yt, "inf", eps)
    r_robust = robust_accuracy(robust, xt, yt, "inf", eps)
    assert r_robust["robust_acc"] > r_plain["robust_acc"] + 0.1, (r_plain, r_robust)
    assert r_robust["clean_acc"] > 0.85


def test_nan_loss_stops_with_last_good_checkpoint(tmp_path, monkeypatch):
    x, y = separable_images(200, seed=5)
    model = nets.paper_mnist(seed=0)
    trainer = RobustTrainer(model, TrainConfig(epochs=3, batch_size=50), out_dir=tmp_path, log=lambda *_: None,
                            progress=False)
    original = trainer.method.step
    state = {"calls": 0}

    def poisoned(*args):
        state["calls"] += 1
        loss, grads, correct = original(*args)
        return (float("nan") if state["calls"] == 6 else loss), grads, correct  # 2nd step of epoch 2

    monkeypatch.setattr(trainer.method, "step", poisoned)
    with pytest.raises(TrainingError, match=r"loss became nan at epoch 2, step 2.*checkpoint.npz \(epoch 1\)"):
        trainer.fit(x, y)
    ckpt = checkpoint.load(tmp_path / "checkpoint.npz")
    assert ckpt.epoch == 1 and len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 1
    after_epoch1 = ckpt.model.parameters()
    assert all(np.isfinite(v).all() for v in after_epoch1.values())
    assert not (tmp_path / "model.npz").exists()


def test_resume_gives_the_same_parameters(tmp_path):
    x, y = separable_images(300, seed=6)
    cfg = dict(epochs=3, batch_size=50, norm="2", eps=1.0)
    full = nets.paper_mnist(seed=0)
    RobustTrainer(full, TrainConfig(**cfg), out_dir=tmp_path / "full", log=lambda *_: None, progress=False).fit(x, y)
    part = nets.paper_mnist(seed=0)
    RobustTrainer(part, TrainConfig(**{**cfg, "epochs": 1}), out_dir=tmp_path / "part", log=lambda *_: None,
                  progress=False).fit(x, y)
    resumed = nets.paper_mnist(seed=99)  # different weights: they must come from the checkpoint
    trainer = RobustTrainer(resumed, TrainConfig(**cfg), out_dir=tmp_path / "part", resume=True,
                            log=lambda *_: None, progress=False)
    assert trainer.epoch == 1
    trainer.fit(x, y)
    for k, v in full.parameters().items():
        np.testing.assert_allclose(resumed.parameters()[k], v, rtol=1e-6, atol=1e-7)
    epochs = [json.loads(ln)["epoch"] for ln in (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3]
    with pytest.raises(InputError, match="settings differ"):
        RobustTrainer(nets.paper_mnist(), TrainConfig(**{**cfg, "eps": 2.0}), out_dir=tmp_path / "part",
                      resume=True, log=lambda *_: None)


def test_config_errors():
    for bad, match in [(dict(norm="inf", eps=-1), "eps"), (dict(norm="3x", eps=1), "unknown norm"),
                       (dict(eps=0.1), "without a norm"), (dict(alpha=2.0), "alpha"),
                       (dict(ascent_steps=0, norm="inf", eps=0.1), "ascent_steps")]:
        with pytest.raises(InputError, match=match):
            TrainConfig(**bad).validate()


def test_trainer_history_and_metrics(tmp_path):
    x, y = separable_images(200, seed=7)
    model = nets.paper_mnist(seed=0)
    hist = RobustTrainer(model, TrainConfig(epochs=2, batch_size=50, norm="inf", eps=0.05), out_dir=tmp_path,
                         log=lambda *_: None, progress=False).fit(x, y, x[:50], y[:50])
    assert [h["epoch"] for h in hist] == [1, 2]
    assert {"train_loss", "train_acc", "lr", "seconds", "val_acc"} <= set(hist[0])
    assert checkpoint.load(tmp_path / "model.npz").meta["config"]["norm"] == "inf"


@pytest.mark.parametrize("norm", [None, "inf", "2", "1"])
def test_float32_end_to_end_through_a_step(norm, backend_name):
    model = nets.paper_mnist(seed=0)
    trainer = _quiet(model, norm=norm, eps=0.1 if norm else 0.0)
    x, y = separable_images(20)
    if norm:
        assert trainer.perturb(x, y).dtype == np.float32
    trainer.train_step(x, y)
    trainer.train_step(x, y)
    assert all(v.dtype == np.float32 for v in model.parameters().values())
    assert all(v.dtype == np.float32 for v in model.gradients().values())
    assert all(v.dtype == np.float32 for d in trainer.optimizer.state.values() for v in d.values())
    assert model.device == backend_name


def test_a_non_finite_state_is_never_saved_and_the_message_names_a_real_checkpoint(tmp_path):
    x, y = separable_images(200, seed=0)
    # epoch 1 trains normally (and saves); then the learning rate turns the weights to inf
    model = nets.paper_mnist(seed=0)
    trainer = _quiet(model, epochs=1, batch_size=50)
    trainer.out_dir = tmp_path
    trainer.fit(x, y)
    trainer.config.epochs = 2
    trainer.optimizer.lr = 1e38
    with pytest.raises(TrainingError) as err, np.errstate(all="ignore"):  # overflow is the point here
        trainer.fit(x, y)
    message = str(err.value)
    assert f"last good checkpoint: {tmp_path / 'checkpoint.npz'} (epoch 1)" in message
    saved = checkpoint.load(tmp_path / "checkpoint.npz")  # loads: every value finite
    assert saved.epoch == 1
    # no checkpoint yet: the message says so instead of naming a file that does not exist
    fresh = _quiet(nets.paper_mnist(seed=0), epochs=1, batch_size=50, lr=1e38)
    fresh.out_dir = tmp_path / "fresh"
    fresh.out_dir.mkdir()
    with pytest.raises(TrainingError, match="no checkpoint was saved"), np.errstate(all="ignore"):
        fresh.fit(x, y)
    assert not (tmp_path / "fresh" / "checkpoint.npz").exists()


def test_loading_a_checkpoint_with_non_finite_weights_is_an_error(tmp_path):
    model = nets.paper_mnist(seed=0)
    model.parameters()["8_dense.W"][0, 0] = np.nan
    checkpoint.save(tmp_path / "m.npz", model)
    with pytest.raises(CheckpointError, match="8_dense.W holds 1 non-finite"):
        checkpoint.load(tmp_path / "m.npz")


def test_a_run_folder_holds_one_run_at_a_time_and_a_killed_run_leaves_no_stale_lock(tmp_path):
    import subprocess
    import sys

    x, y = separable_images(100, seed=0)
    first = RobustTrainer(nets.paper_mnist(seed=0), TrainConfig(epochs=1, batch_size=50), out_dir=tmp_path,
                          log=None, progress=False)
    second = RobustTrainer(nets.paper_mnist(seed=1), TrainConfig(epochs=1, batch_size=50), out_dir=tmp_path,
                           log=None, progress=False)
    with first.folder.lock():  # the first run is training
        with pytest.raises(TrainingError, match="is in use by another training run"):
            second.fit(x, y)
    assert not (tmp_path / "model.npz").exists()  # the refused run wrote nothing
    second.fit(x, y)  # released: the folder is free again
    # a process that holds the lock and is killed: the OS releases it, nothing stale is left
    code = ("import fcntl, os, signal, sys; f = open(sys.argv[1], 'a+'); fcntl.flock(f, fcntl.LOCK_EX); "
            "print('locked', flush=True); os.kill(os.getpid(), signal.SIGKILL)")
    holder = subprocess.run([sys.executable, "-c", code, str(tmp_path / ".lock")], capture_output=True, text=True)
    assert "locked" in holder.stdout and holder.returncode != 0
    first.fit(x, y)


def test_resume_rebuilds_metrics_from_the_checkpoint_whatever_a_crash_left(tmp_path):
    x, y = separable_images(100, seed=0)
    RobustTrainer(nets.paper_mnist(seed=0), TrainConfig(epochs=2, batch_size=50), out_dir=tmp_path, log=None,
                  progress=False).fit(x, y)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    # a crash lost epoch 2's line and left a torn one behind
    (tmp_path / "metrics.jsonl").write_text(lines[0] + "\n" + '{"epoch": 3, "train_lo')
    resumed = RobustTrainer(nets.paper_mnist(seed=0), TrainConfig(epochs=3, batch_size=50), out_dir=tmp_path,
                            resume=True, log=None, progress=False)
    resumed.fit(x, y)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert records[:2] == [json.loads(line) for line in lines]  # the lost line is back, as it was
