"""The GPU backend on a real device (marker gpu; skipped with the reason where there is none):
every kernel against the CPU tier, a whole training step, check_grad in float64 on the GPU, the
same fixed-seed robust training curve on both backends, backend-neutral checkpoints, and the
evaluation entry points fed host arrays for a GPU model. benchmarks/gpu_check.sh runs these."""

from __future__ import annotations

import numpy as np
import pytest

import minirobust as mr
from minirobust import checkpoint, kernels, nets
from minirobust.backend import to_gpu, to_host
from minirobust.data import separable_images
from minirobust.gradcheck import check_grad
from minirobust.kernels import cpu, gpu
from minirobust.robust import RobustTrainer, TrainConfig, accuracy_vs_eps, fast_method, pgd, robust_accuracy

pytestmark = pytest.mark.gpu

GEOMETRIES = [(4, 3, 9, 9, 3, 3, 1, 1, 1, 1), (2, 2, 12, 10, 3, 2, 2, 1, 1, 0), (8, 32, 24, 24, 5, 5, 1, 1, 0, 0)]


@pytest.fixture
def on_gpu():
    mr.set_backend("gpu")
    try:
        yield
    finally:
        mr.set_backend("cpu")


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_every_gpu_kernel_equals_the_cpu_tier(geometry):
    N, C, H, W, KH, KW, SH, SW, PH, PW = geometry
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    args = (KH, KW, SH, SW, PH, PW)
    xg = to_gpu(x)
    assert kernels.get_op("im2col", xg) is gpu.im2col
    np.testing.assert_array_equal(to_host(gpu.im2col(xg, *args)), cpu.im2col(x, *args))
    cols = cpu.im2col(x, *args)
    np.testing.assert_allclose(to_host(gpu.col2im(to_gpu(cols), x.shape, *args)), cpu.col2im(cols, x.shape, *args),
                               rtol=1e-5, atol=1e-5)
    if PH <= KH // 2 and PW <= KW // 2:
        y, am = gpu.maxpool_forward(xg, *args)
        y_c, am_c = cpu.maxpool_forward(x, *args)
        np.testing.assert_array_equal(to_host(y), y_c)
        np.testing.assert_array_equal(to_host(am), am_c)
        dy = rng.standard_normal(y_c.shape).astype(np.float32)
        np.testing.assert_allclose(to_host(gpu.maxpool_backward(to_gpu(dy), am, x.shape, *args)),
                                   cpu.maxpool_backward(dy, am_c, x.shape, *args), rtol=1e-5, atol=1e-6)
    F, OH, OW = 5, H, W
    rows = rng.standard_normal((F, N * OH * OW)).astype(np.float32)
    b = rng.standard_normal(F).astype(np.float32)
    np.testing.assert_array_equal(to_host(gpu.rows_to_nchw(to_gpu(rows), to_gpu(b), N, OH, OW)),
                                  cpu.rows_to_nchw(rows, b, N, OH, OW))
    yg, posg = gpu.rows_relu_maxpool(to_gpu(rows), to_gpu(b), N, OH, OW, 2, 2, 2, 2)
    yc, posc = cpu.rows_relu_maxpool(rows, b, N, OH, OW, 2, 2, 2, 2)
    np.testing.assert_array_equal(to_host(yg), yc)
    np.testing.assert_array_equal(to_host(posg), posc)
    dy = rng.standard_normal(yc.shape).astype(np.float32)
    drows_g, db_g = gpu.relu_maxpool_to_rows(to_gpu(dy), posg, OH, OW, 2, 2, 2, 2)
    drows_c, db_c = cpu.relu_maxpool_to_rows(dy, posc, OH, OW, 2, 2, 2, 2)
    np.testing.assert_allclose(to_host(drows_g), drows_c, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(to_host(db_g), db_c, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(to_host(gpu.nchw_to_rows(to_gpu(yc))), cpu.nchw_to_rows(yc))


def test_a_training_step_on_the_gpu_equals_the_cpu_tier(on_gpu):
    x, y = np.random.default_rng(0).random((32, 1, 28, 28), dtype=np.float32), np.arange(32) % 10
    results = {}
    for device in ("cpu", "gpu"):
        model = nets.paper_mnist(seed=0).to(device)
        trainer = RobustTrainer(model, TrainConfig(norm="inf", eps=0.1), log=None, progress=False)
        loss = [trainer.train_step(x, y)[0] for _ in range(3)]
        results[device] = loss, {k: to_host(v) for k, v in model.parameters().items()}
    np.testing.assert_allclose(results["gpu"][0], results["cpu"][0], rtol=1e-4)
    for name, value in results["cpu"][1].items():
        np.testing.assert_allclose(results["gpu"][1][name], value, rtol=1e-3, atol=1e-5)


def test_check_grad_in_float64_on_the_gpu(on_gpu):
    model = nets.tiny_convnet(in_channels=2, size=9, classes=3, seed=0).to("gpu")
    x = np.random.default_rng(0).permutation(np.linspace(0.01, 0.99, 2 * 2 * 9 * 9)).reshape(2, 2, 9, 9)
    report = check_grad(model, to_gpu(x), h=1e-5)
    report.assert_ok(1e-6)
    layer = mr.layers.Conv2D(3, 4, 3, stride=2, padding=1, dtype=np.float64)
    check_grad(layer, to_gpu(np.random.default_rng(1).standard_normal((2, 3, 7, 7))), h=1e-5).assert_ok(1e-6)


def test_a_fixed_seed_robust_training_gives_the_same_curve_on_both_backends():
    x, y = separable_images(400, seed=0)
    curves = {}
    for device in ("cpu", "gpu"):
        mr.set_backend(device)
        try:
            model = nets.paper_mnist(seed=0, mean=float(x.mean()), std=float(x.std()))
            history = RobustTrainer(model, TrainConfig(epochs=3, batch_size=50, norm="inf", eps=0.1), log=None,
                                    progress=False).fit(x, y)
        finally:
            mr.set_backend("cpu")
        curves[device] = [h["train_loss"] for h in history], [h["train_acc"] for h in history]
    np.testing.assert_allclose(curves["gpu"][0], curves["cpu"][0], rtol=2e-3)
    np.testing.assert_allclose(curves["gpu"][1], curves["cpu"][1], atol=0.01)


def test_checkpoints_are_backend_neutral(tmp_path):
    mr.set_backend("gpu")
    try:
        model = nets.paper_mnist(seed=3)
        assert model.device == "gpu"
        checkpoint.save(tmp_path / "m.npz", model)
        back_on_gpu = checkpoint.load(tmp_path / "m.npz").model
        assert back_on_gpu.device == "gpu"
    finally:
        mr.set_backend("cpu")
    on_cpu = checkpoint.load(tmp_path / "m.npz").model
    assert on_cpu.device == "cpu"
    for name, value in model.parameters().items():
        np.testing.assert_array_equal(on_cpu.parameters()[name], to_host(value))
        np.testing.assert_array_equal(to_host(back_on_gpu.parameters()[name]), to_host(value))
    checkpoint.save(tmp_path / "c.npz", on_cpu)
    mr.set_backend("gpu")
    try:
        assert checkpoint.load(tmp_path / "c.npz").model.device == "gpu"
    finally:
        mr.set_backend("cpu")


def test_attacks_and_evaluation_take_host_arrays_for_a_gpu_model():
    x, y = separable_images(64, seed=1)
    model = nets.paper_mnist(seed=0, mean=float(x.mean()), std=float(x.std())).to("gpu")
    host = nets.paper_mnist(seed=0, mean=float(x.mean()), std=float(x.std()))
    adv, adv_host = fast_method(model, x, y, eps=0.1), fast_method(host, x, y, eps=0.1)
    assert np.mean(to_host(adv.x_adv) == adv_host.x_adv) > 0.99  # sign flips only where g is ~0
    assert pgd(model, x, y, eps=0.1, steps=3, rng=0).x_adv.shape == x.shape
    r = robust_accuracy(model, x, y, "inf", 0.1)
    assert 0.0 <= r["robust_acc"] <= r["clean_acc"] <= 1.0
    assert len(accuracy_vs_eps(model, x, y, "2", [0.0, 1.0])) == 2
    assert kernels.describe(model.parameters()["1_conv2d.W"])["im2col"] == "gpu"
    assert "fused stages on the gpu tier" in repr(model)
