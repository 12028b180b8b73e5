"""Training methods beyond Algorithm 1 (pgd, fgsm-rs, trades), the eps ramp and the overfitting
monitor: perturbations in the ball and the box, random starts uniform in the ball, TRADES's
gradient through both passes against finite differences, the paper method as Algorithm 1 written
out, and resume bit-identical to an uninterrupted run for every method."""

from __future__ import annotations

import numpy as np
import pytest

from minirobust import checkpoint, nets
from minirobust.backend import to_host
from minirobust.data import separable_images
from minirobust.losses import SoftmaxCrossEntropy, log_softmax
from minirobust.optim import SGD
from minirobust.robust import Ball, RobustTrainer, TrainConfig, ascend
from minirobust.robust.methods import METHODS, descend_on, make_method, trades_loss_and_grads
from minirobust.robust.monitor import OverfitMonitor, collapse

ROBUST = ["paper", "pgd", "fgsm-rs", "trades"]


def _quiet(model, out_dir=None, resume=False, **cfg):
    return RobustTrainer(model, TrainConfig(**cfg), out_dir=out_dir, resume=resume, log=lambda *_: None,
                         progress=False)


@pytest.fixture(scope="module")
def digits():
    x, y = separable_images(120, seed=7)  # (N, 1, 28, 28) in [0, 1], 10 classes
    return x, y


@pytest.mark.parametrize("method", ROBUST)
@pytest.mark.parametrize("norm, eps", [("inf", 0.3), ("2", 2.0)])
def test_every_method_perturbs_inside_the_ball_and_the_box(method, norm, eps, digits):
    x, y = digits
    trainer = _quiet(nets.paper_mnist(seed=0), norm=norm, eps=eps, method=method, ascent_steps=3)
    x_adv = to_host(trainer.perturb(x[:40], y[:40]))
    assert np.all(Ball(norm, eps).contains(x_adv - x[:40], tol=1e-5))
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    assert np.abs(x_adv - x[:40]).max() > 0.1 * (eps if norm == "inf" else eps / 28)  # it moved


@pytest.mark.parametrize("method", ["pgd", "fgsm-rs"])
def test_the_random_start_is_uniform_in_the_ball(method):
    m = make_method(TrainConfig(norm="inf", eps=0.3, method=method))
    start = m.start(np.zeros((400, 1, 28, 28), np.float32), Ball("inf", 0.3), np.random.default_rng(0))
    assert np.abs(start).max() <= 0.3
    counts, _ = np.histogram(start, bins=10, range=(-0.3, 0.3))
    expected = start.size / 10
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 27.9, counts  # chi-square, 9 degrees of freedom, p = 0.001
    # l_2: uniform in the ball means P(||delta|| <= r * eps) = r^d; in d = 4 dimensions
    m2 = make_method(TrainConfig(norm="2", eps=2.0, method=method))
    radii = np.linalg.norm(m2.start(np.zeros((20000, 4)), Ball("2", 2.0), np.random.default_rng(1)), axis=1) / 2.0
    for r in (0.5, 0.8, 0.95):
        assert abs((radii <= r).mean() - r**4) < 0.015, r
    assert radii.max() <= 1.0 + 1e-12


def test_fgsm_rs_is_one_projected_step_of_1_25_eps_from_its_start(digits):
    x, y = digits
    model = nets.paper_mnist(seed=0)
    trainer = _quiet(model, norm="inf", eps=0.3, method="fgsm-rs", seed=3)
    start = np.random.default_rng([3, 1]).uniform(-0.3, 0.3, size=x[:20].shape).astype(x.dtype)
    want = ascend(model, x[:20], y[:20], Ball("inf", 0.3), steps=1, step_size=0.375, start=start)
    np.testing.assert_array_equal(to_host(trainer.perturb(x[:20], y[:20])), to_host(want))


def test_the_paper_method_is_algorithm_1_written_out(digits):
    # ascent (one steepest-ascent step), descent on the perturbed batch only, SGD: bit for bit
    x, y = digits
    cfg = dict(norm="inf", eps=0.1, batch_size=40, epochs=1)
    by_trainer = nets.paper_mnist(seed=0)
    trainer = _quiet(by_trainer, **cfg)
    by_hand = nets.paper_mnist(seed=0)
    opt = SGD(by_hand, lr=0.01, momentum=0.9, weight_decay=2e-3, decay=5e-6)
    for i in range(0, 120, 40):
        xb, yb = x[i : i + 40], y[i : i + 40]
        trainer.train_step(xb, yb)
        x_adv = np.clip(xb + 0.1 * np.sign(to_host(by_hand.input_gradient(xb, yb))), 0, 1)
        logits = by_hand.forward(x_adv, train=True)
        loss = SoftmaxCrossEntropy()
        loss.forward(logits, yb)
        by_hand.backward(loss.backward())
        opt.step(by_hand.gradients())
    for name, value in by_trainer.parameters().items():
        np.testing.assert_array_equal(to_host(value), to_host(by_hand.parameters()[name]), err_msg=name)


def _trades_loss(model, x, x_adv, y, beta):
    logp = log_softmax(model.forward(x, train=True))
    logq = log_softmax(model.forward(x_adv, train=True))
    ce = -logp[np.arange(len(y)), y].mean()
    return ce + beta * (np.exp(logp) * (logp - logq)).sum(axis=1).mean()


def test_the_trades_gradient_equals_finite_differences_through_both_passes():
    model = nets.tiny_convnet(seed=2)  # float64, conv + pool + dense
    rng = np.random.default_rng(0)
    x = rng.random((5, 1, 8, 8))
    x_adv = np.clip(x + rng.uniform(-0.2, 0.2, x.shape), 0, 1)
    y = np.array([0, 1, 2, 1, 0])
    loss, grads, _ = trades_loss_and_grads(model, x, x_adv, y, beta=3.0)
    assert loss == pytest.approx(_trades_loss(model, x, x_adv, y, 3.0), rel=1e-12)
    h = 1e-6
    for name, param in model.parameters().items():
        flat = param.reshape(-1)
        for i in rng.choice(flat.size, size=min(flat.size, 6), replace=False):
            old = flat[i]
            flat[i] = old + h
            up = _trades_loss(model, x, x_adv, y, 3.0)
            flat[i] = old - h
            down = _trades_loss(model, x, x_adv, y, 3.0)
            flat[i] = old
            numeric = (up - down) / (2 * h)
            got = grads[name].reshape(-1)[i]
            assert abs(got - numeric) <= 1e-6 * max(1.0, abs(numeric)), (name, i, got, numeric)
    # beta = 0 leaves the clean cross-entropy alone; the KL term's part is the rest
    ce_loss, ce_grads, _ = descend_on(model, x, y)
    loss0, grads0, _ = trades_loss_and_grads(model, x, x_adv, y, beta=0.0)
    assert loss0 == pytest.approx(ce_loss, rel=1e-12)
    for name in ce_grads:
        np.testing.assert_allclose(grads0[name], ce_grads[name], rtol=1e-10, atol=1e-14)


def test_the_trades_ascent_raises_the_kl_term(digits):
    x, y = digits
    model = nets.paper_mnist(seed=0, dtype=np.float64)
    _quiet(model, epochs=1, batch_size=40).fit(x, y)  # a model with opinions
    xb = x[:30].astype(np.float64)
    m = make_method(TrainConfig(norm="inf", eps=0.3, method="trades"))
    rng = np.random.default_rng(0)
    start_only = np.clip(xb + m.start(xb, Ball("inf", 0.3), np.random.default_rng(0)), 0, 1)
    x_adv = to_host(m.perturb(model, xb, y[:30], Ball("inf", 0.3), rng))

    def kl(xa):
        logp, logq = log_softmax(model.forward(xb)), log_softmax(model.forward(xa))
        return (np.exp(logp) * (logp - logq)).sum(axis=1).mean()

    assert kl(x_adv) > 10 * kl(start_only) and kl(x_adv) > 1e-3


@pytest.mark.parametrize("method", [*ROBUST, "ibp"])
def test_resume_mid_run_is_bit_identical_for_every_method(method, digits, tmp_path):
    x, y = digits
    cfg = dict(norm="inf", eps=0.3, method=method, ascent_steps=2 if method in ("pgd", "trades") else None,
               batch_size=40, epochs=2, eps_ramp_epochs=1.5, eps_warmup_epochs=0.5 if method == "ibp" else 0.0)
    straight = nets.paper_mnist(seed=0)
    _quiet(straight, **cfg).fit(x, y)
    halves = nets.paper_mnist(seed=0)
    _quiet(halves, out_dir=tmp_path, **{**cfg, "epochs": 1}).fit(x, y)
    resumed = _quiet(halves, out_dir=tmp_path, resume=True, **cfg)
    assert resumed.epoch == 1
    resumed.fit(x, y)
    for name, value in straight.parameters().items():
        np.testing.assert_array_equal(to_host(value), to_host(halves.parameters()[name]), err_msg=name)


def test_the_eps_ramp_grows_linearly_then_holds(digits):
    x, y = digits
    trainer = _quiet(nets.paper_mnist(seed=0), norm="inf", eps=0.3, batch_size=40, eps_ramp_epochs=2, epochs=1)
    trainer.batches_per_epoch = 3
    seen = []
    for t in range(8):
        trainer.optimizer.t = t
        seen.append(trainer.current_ball().eps)
    np.testing.assert_allclose(seen, [0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.3, 0.3])
    assert trainer.current_ball() is trainer.ball  # past the ramp: the configured ball itself


def test_the_collapse_rule_needs_a_fall_and_a_rising_training_accuracy():
    h = [{"epoch": 1, "train_acc": 0.5, "pgd_acc_monitor": 0.6},
         {"epoch": 2, "train_acc": 0.6, "pgd_acc_monitor": 0.7}]
    assert collapse(h, 0.2) is None
    fell = h + [{"epoch": 3, "train_acc": 0.9, "pgd_acc_monitor": 0.02}]
    assert "catastrophic overfitting at epoch 3" in collapse(fell, 0.2)
    assert collapse(h + [{"epoch": 3, "train_acc": 0.55, "pgd_acc_monitor": 0.3}], 0.2) is None  # both fell
    assert collapse(h + [{"epoch": 3, "train_acc": 0.9, "pgd_acc_monitor": 0.55}], 0.2) is None  # within margin


def test_the_monitor_fires_on_a_planted_collapse_and_restores_the_best_model(digits, tmp_path, monkeypatch):
    x, y = digits
    planted = iter([0.6, 0.8, 0.05, 0.9])  # the third epoch's PGD accuracy collapses
    monkeypatch.setattr(OverfitMonitor, "accuracy", lambda self, model: next(planted))
    monkeypatch.setattr("minirobust.robust.monitor.collapse",
                        lambda history, margin, gap, full: collapse([{**r, "train_acc": r["epoch"] / 10}
                                                                     for r in history], margin, gap, full))
    said = []
    model = nets.paper_mnist(seed=0)
    trainer = RobustTrainer(model, TrainConfig(norm="inf", eps=0.3, method="fgsm-rs", batch_size=40, epochs=4,
                                               stop_on_overfit=True), out_dir=tmp_path, log=said.append,
                            progress=False)
    history = trainer.fit(x[:80], y[:80], monitor=(x[80:], y[80:]))
    assert [r["epoch"] for r in history] == [1, 2, 3]  # stopped after the collapse
    assert history[-1]["catastrophic_overfitting"] and history[-1]["stopped_early"]
    assert any("catastrophic overfitting at epoch 3" in line for line in said)
    best = checkpoint.load(tmp_path / "best.npz")
    assert best.meta["epoch"] == 2 and best.meta["pgd_acc_monitor"] == 0.8
    final = checkpoint.load(tmp_path / "model.npz").model
    for name, value in best.model.parameters().items():
        np.testing.assert_array_equal(to_host(model.parameters()[name]), value, err_msg=name)
        np.testing.assert_array_equal(final.parameters()[name], value, err_msg=name)


def test_the_monitor_measures_pgd_accuracy(digits):
    x, y = digits
    model = nets.paper_mnist(seed=0)
    _quiet(model, epochs=2, batch_size=40).fit(x, y)
    watcher = OverfitMonitor(x[:50], y[:50], "inf", 0.0, steps=2)
    assert watcher.accuracy(model) == pytest.approx(model.accuracy(x[:50], y[:50]))
    assert OverfitMonitor(x[:50], y[:50], "inf", 0.5, steps=5).accuracy(model) < watcher.accuracy(model)


def test_bad_method_settings_are_named():
    from minirobust.errors import InputError  # noqa: PLC0415

    for cfg, word in [(dict(method="madry", norm="inf", eps=0.1), "unknown training method"),
                      (dict(method="pgd"), "needs a norm"),
                      (dict(method="trades", norm="inf", eps=0.1, alpha=0.5), "alpha"),
                      (dict(norm="inf", eps=0.1, beta=float("nan")), "beta"),
                      (dict(norm="inf", eps=0.1, eps_ramp_epochs=-1), "eps_ramp_epochs")]:
        with pytest.raises(InputError, match=word):
            TrainConfig(**cfg).validate()
    assert set(METHODS) == {"paper", "pgd", "fgsm-rs", "trades", "ibp"}


def test_the_gap_rule_catches_a_net_that_never_became_robust():
    # the paper's method at l_inf 0.3 with a 2-epoch ramp, as measured on large-mnist: robust to its
    # own one-step attack, not to PGD, from the first epoch at full eps on
    train = [0.898, 0.859, 0.943, 0.988]
    monitor = [0.035, 0.006, 0.0, 0.0]
    history = [{"epoch": i + 1, "train_acc": t, "pgd_acc_monitor": m} for i, (t, m) in enumerate(zip(train, monitor))]
    assert collapse(history[:2], 0.2, 0.5, full_from=3) is None  # still ramping: a gap is expected
    assert "training attack no longer finds the worst case" in collapse(history[:3], 0.2, 0.5, full_from=3)
    # PGD-AT on the same net: the training attack's accuracy tracks PGD's
    pgd_at = [{"epoch": e, "train_acc": 0.9, "pgd_acc_monitor": 0.88} for e in (1, 2, 3)]
    assert collapse(pgd_at, 0.2, 0.5, full_from=3) is None
