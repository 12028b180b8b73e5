"""BatchNorm2D / BatchNorm1D, the CIFAR-10 VGG net, and what training mode means for attacks."""

from __future__ import annotations

import numpy as np
import pytest

from minirobust import checkpoint, kernels, nets
from minirobust.errors import InputError
from minirobust.gradcheck import check_grad
from minirobust.kernels import cpu, reference
from minirobust.layers import BatchNorm1D, BatchNorm2D
from minirobust.robust import RobustTrainer, TrainConfig, fast_method, pgd

CASES = [(BatchNorm2D, (4, 3, 5, 5)), (BatchNorm1D, (6, 4))]


def _layer(cls, shape, seed=0):
    rng = np.random.default_rng(seed)
    layer = cls(shape[1], dtype=np.float64)
    layer.params["gamma"] = rng.uniform(0.5, 2.0, shape[1])
    layer.params["beta"] = rng.standard_normal(shape[1])
    layer.running["mean"] = rng.standard_normal(shape[1])
    layer.running["var"] = rng.uniform(0.5, 2.0, shape[1])
    x = rng.standard_normal(shape) * 2 + 1
    return layer, x


@pytest.mark.parametrize("tier", ["never", "always"])
@pytest.mark.parametrize("train", [True, False], ids=["train-mode", "eval-mode"])
@pytest.mark.parametrize("cls, shape", CASES, ids=["2d", "1d"])
def test_batchnorm_gradients_match_finite_differences(cls, shape, train, tier):
    """Input, gamma and beta; in train mode the gradient goes through the batch statistics."""
    layer, x = _layer(cls, shape)
    with kernels.policy(tier):
        report = check_grad(layer, x, forward_kwargs={"train": train})
    assert {c.name for c in report.checks} == {"x", "gamma", "beta"}
    assert report.max_rel_error < 1e-5, str(report)


def test_train_mode_gradient_differs_from_the_affine_one():
    """Had backward ignored the batch statistics, the check above could not tell in eval mode;
    in train mode the two gradients must differ (the per-channel sums of dx are 0)."""
    layer, x = _layer(BatchNorm2D, (4, 3, 5, 5))
    dy = np.random.default_rng(1).standard_normal(x.shape)
    layer.forward(x, train=True)
    dx_train = layer.backward(dy)
    assert np.allclose(dx_train.sum(axis=(0, 2, 3)), 0, atol=1e-10)
    layer.forward(x, train=False)
    assert not np.allclose(layer.backward(dy), dx_train)


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-10), (np.float32, 1e-4)])
@pytest.mark.parametrize("shape", [(8, 5, 42), (16, 12, 1)])  # (N, C, S) views
def test_fast_tier_equals_reference(shape, dtype, rtol):
    rng = np.random.default_rng(2)
    x3 = (rng.standard_normal(shape) * 3 + 2).astype(dtype)
    gamma, beta = rng.uniform(0.5, 2, shape[1]).astype(dtype), rng.standard_normal(shape[1]).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    for a, b in zip(reference.batchnorm_stats(x3), cpu.batchnorm_stats(x3)):
        np.testing.assert_allclose(b, a, rtol=rtol, atol=rtol)
    mean, var = reference.batchnorm_stats(x3)
    inv_std = (1 / np.sqrt(var + 1e-3)).astype(dtype)
    for a, b in zip(reference.batchnorm_forward(x3, mean, inv_std, gamma, beta),
                    cpu.batchnorm_forward(x3, mean, inv_std, gamma, beta)):
        assert b.dtype == dtype
        np.testing.assert_allclose(b, a, rtol=rtol, atol=rtol)
    x_hat = reference.batchnorm_forward(x3, mean, inv_std, gamma, beta)[1]
    for batch_stats in (True, False):
        for a, b in zip(reference.batchnorm_backward(dy, x_hat, gamma, inv_std, batch_stats),
                        cpu.batchnorm_backward(dy, x_hat, gamma, inv_std, batch_stats)):
            assert b.dtype == dtype
            np.testing.assert_allclose(b, a, rtol=rtol, atol=rtol * 10)


def test_running_statistics_follow_the_batches():
    layer = BatchNorm2D(3, momentum=0.1, dtype=np.float64)
    x = np.random.default_rng(3).standard_normal((10, 3, 4, 4)) * 2 + 5
    y = layer.forward(x, train=True)
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-12)  # gamma 1, beta 0
    np.testing.assert_allclose(y.var(axis=(0, 2, 3)), x.var(axis=(0, 2, 3)) / (x.var(axis=(0, 2, 3)) + 1e-3))
    np.testing.assert_allclose(layer.running["mean"], 0.1 * x.mean(axis=(0, 2, 3)))
    np.testing.assert_allclose(layer.running["var"], 0.9 + 0.1 * x.var(axis=(0, 2, 3), ddof=1))
    before = {k: v.copy() for k, v in layer.running.items()}
    layer.forward(x, train=False)  # evaluation never moves them
    assert all(np.array_equal(before[k], layer.running[k]) for k in before)


def test_batchnorm_bad_inputs_are_named():
    with pytest.raises(InputError, match="channels"):
        BatchNorm2D(3).forward(np.zeros((2, 4, 3, 3), np.float32), train=True)
    with pytest.raises(InputError, match=r"\(N, C, H, W\)"):
        BatchNorm2D(3).forward(np.zeros((2, 3), np.float32))
    with pytest.raises(InputError, match="more than one value per channel"):
        BatchNorm1D(3).forward(np.zeros((1, 3), np.float32), train=True)
    with pytest.raises(InputError, match="eps"):
        BatchNorm1D(3, eps=0)


def test_paper_cifar10_shape_and_width():
    full = nets.paper_cifar10()
    kinds = [layer.kind for layer in full.layers]
    assert kinds.count("conv2d") == 13 and kinds.count("batchnorm2d") == 13 and kinds.count("batchnorm1d") == 1
    assert kinds.count("maxpool2d") == 5 and kinds.count("dense") == 2
    rates = [layer.p for layer in full.layers if layer.kind == "dropout"]
    assert rates == [0.3] + [0.4] * 7 + [0.5] * 2
    assert 14.9e6 < full.num_parameters() < 15.1e6  # Zagoruyko's vgg_bn_drop: 15.0 M
    narrow = nets.paper_cifar10(width=0.25, dropout=0.5, dtype=np.float64)
    assert [layer.kind for layer in narrow.layers] == kinds
    assert narrow.layers[1].out_channels == 16 and max(r.p for r in narrow.layers if r.kind == "dropout") == 0.25
    assert narrow.forward(np.random.default_rng(0).random((2, 3, 32, 32))).shape == (2, 10)
    assert "dropout" not in [layer.kind for layer in nets.paper_cifar10(width=0.25, dropout=0).layers]


def _small_bn_net(seed=0):
    return nets.paper_cifar10(width=1 / 16, dropout=1.0, seed=seed, dtype=np.float64)


def test_whole_bn_net_gradients_in_both_modes():
    """The VGG net end to end (14 BatchNorms), eval mode and train mode (without dropout, so
    the function is deterministic): directional checks in float64.

    In train mode a bias feeding a BatchNorm has gradient exactly 0 (the batch mean takes any
    constant shift away), which a finite difference cannot resolve: those are checked to be 0.
    """
    model = nets.paper_cifar10(width=1 / 16, dropout=0, dtype=np.float64)
    x = np.random.default_rng(0).random((3, 3, 32, 32))
    assert check_grad(model, x, mode="directional").max_rel_error < 1e-6
    before_bn = {f"{a.name}.b" for a, b in zip(model.layers, model.layers[1:]) if b.kind.startswith("batchnorm")}
    wrt = ["x"] + [k for k in model.parameters() if k not in before_bn]
    report = check_grad(model, x, mode="directional", forward_kwargs={"train": True}, wrt=wrt)
    assert report.max_rel_error < 1e-6, str(report)
    model.forward(x, train=True)
    model.backward(np.random.default_rng(1).standard_normal((3, 10)))
    assert len(before_bn) == 14 and all(np.abs(model.gradients()[k]).max() < 1e-12 for k in before_bn)


def test_attacks_leave_running_statistics_untouched():
    model = _small_bn_net()
    x = np.random.default_rng(5).random((6, 3, 32, 32))
    RobustTrainer(model, TrainConfig(epochs=1, batch_size=6), progress=False, log=None).train_step(
        x, np.arange(6) % 10)  # running statistics now away from their initial values
    before = model.state_dict()
    fast_method(model, x, norm="inf", eps=0.03)
    pgd(model, x, norm="2", eps=0.5, steps=3, rng=0)
    after = model.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)
    assert any(".running." in k for k in before)


def test_train_attack_mode_uses_batch_statistics():
    """--attack-mode train (the authors'): the ascent step runs the net in training mode, so
    it moves the running statistics; the default eval mode does not."""
    x = np.random.default_rng(6).random((8, 3, 32, 32))
    y = np.arange(8) % 10
    deltas = {}
    for mode in ("eval", "train"):
        model = _small_bn_net()
        trainer = RobustTrainer(model, TrainConfig(norm="inf", eps=0.01, batch_size=8, attack_mode=mode),
                                progress=False, log=None)
        before = model.running_stats()["2_batchnorm2d.running.mean"].copy()  # the first conv's BatchNorm
        trainer.perturb(x, y)
        deltas[mode] = float(np.abs(model.running_stats()["2_batchnorm2d.running.mean"] - before).max())
    assert deltas["eval"] == 0 and deltas["train"] > 0
    with pytest.raises(InputError, match="attack_mode"):
        TrainConfig(attack_mode="training").validate()


def test_checkpoint_keeps_running_statistics(tmp_path):
    model = nets.paper_cifar10(width=1 / 16, seed=1)
    model.layers[2].running["mean"] += 0.5
    checkpoint.save(tmp_path / "m.npz", model)
    loaded = checkpoint.load_model(tmp_path / "m.npz")
    assert np.array_equal(loaded.layers[2].running["mean"], model.layers[2].running["mean"])
    x = np.random.default_rng(7).random((2, 3, 32, 32)).astype(np.float32)
    assert np.array_equal(loaded.forward(x), model.forward(x))


def test_lr_halves_every_n_epochs(tmp_path):
    x = np.random.default_rng(8).random((20, 1, 8, 8))
    y = np.arange(20) % 3
    model = nets.tiny_convnet()
    trainer = RobustTrainer(model, TrainConfig(epochs=5, batch_size=10, lr=0.08, decay=0.0, lr_halve_every=2),
                            progress=False, log=None)
    history = trainer.fit(x, y)
    assert [h["lr"] for h in history] == [0.08, 0.08, 0.04, 0.04, 0.02]
