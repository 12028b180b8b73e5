"""``--backend gpu`` end to end without a GPU: CuPy replaced by a strict stand-in (fake_cupy.py:
device arrays that refuse to mix with host arrays, as CuPy's do) and the GPU tier's kernels
compiled for the host (cuda_emulation.py). Everything above the kernels must run unchanged:
layers, model, trainer, attacks, evaluation, checkpoints, optimisers, the CLI; and give the CPU
backend's numbers. The same checks on a real card are in test_gpu.py (marker gpu)."""

from __future__ import annotations

import shutil
import sys

import numpy as np
import pytest

import minirobust as mr
from minirobust import backend, checkpoint, nets
from minirobust.data import separable_images
from minirobust.gradcheck import check_grad
from minirobust.kernels import gpu
from minirobust.optim import Adam
from minirobust.robust import (RobustTrainer, TrainConfig, accuracy_vs_eps, adversarial_set, fast_method,
                               full_range_check, pgd, robust_accuracy, single_pixel)

from .cuda_emulation import emulated_builder
from .fake_cupy import DeviceArray, FakeCupy


@pytest.fixture(scope="module")
def kernels_for_the_host(tmp_path_factory):
    if shutil.which("g++") is None:
        pytest.skip("g++ is not on the PATH: cannot emulate the CUDA kernels")
    return emulated_builder(tmp_path_factory.mktemp("cuda_host"))


@pytest.fixture
def fake_gpu(kernels_for_the_host, monkeypatch):
    """The gpu backend, on the host: FakeCupy as ``cupy``, the kernels compiled by g++."""
    if backend.gpu_available()[0] and backend._cupy is not None and not isinstance(backend._cupy, FakeCupy):
        pytest.skip("a real GPU is present: test_gpu.py covers it")
    monkeypatch.setitem(sys.modules, "cupy", FakeCupy())
    monkeypatch.setattr(backend, "_cupy", None)
    monkeypatch.setattr(backend, "_cupy_error", None)
    monkeypatch.setattr(gpu, "build_kernels", kernels_for_the_host)
    monkeypatch.setattr(gpu, "_built", {})
    old = backend.get_backend()
    mr.set_backend("gpu")
    yield
    mr.set_backend(old)


def _train(device, x, y, **cfg):
    mr.set_backend(device)
    model = nets.paper_mnist(seed=0, mean=float(x.mean()), std=float(x.std()))
    history = RobustTrainer(model, TrainConfig(epochs=1, batch_size=50, **cfg), log=None, progress=False).fit(
        x, y, x[:100], y[:100])
    return model, history


def test_info_reports_the_device_and_the_gpu_tier_of_each_op(fake_gpu):
    info = mr.info(as_dict=True)
    assert info["gpu_devices"] == ["host emulation of a GPU"] and info["cuda_runtime"] == "13.0"
    tiers = info["gpu_kernel_tiers"]
    assert tiers["im2col"] == "gpu" and tiers["l1_projection"] == "gpu" and tiers["adam_step"] == "gpu"
    assert tiers["conv_relu_maxpool_input_grad"] == "reference"  # no kernel yet: CuPy array code


@pytest.mark.parametrize("norm", [None, "inf", "2", "1"])
def test_training_on_the_gpu_backend_gives_the_cpu_backends_numbers(fake_gpu, norm):
    x, y = separable_images(300, seed=0)
    cfg = dict(norm=norm, eps=0.1 if norm else 0.0)
    gpu_model, gpu_history = _train("gpu", x, y, **cfg)
    cpu_model, cpu_history = _train("cpu", x, y, **cfg)
    assert gpu_model.device == "gpu" and cpu_model.device == "cpu"
    assert "fused stages on the gpu tier" in repr(gpu_model)
    for g, c in zip(gpu_history, cpu_history):
        assert g["train_loss"] == pytest.approx(c["train_loss"], rel=1e-4)
        assert g["val_acc"] == pytest.approx(c["val_acc"], abs=0.02)
    for name, value in cpu_model.parameters().items():
        assert isinstance(gpu_model.parameters()[name], DeviceArray)
        np.testing.assert_allclose(gpu_model.parameters()[name].get(), value, rtol=1e-3, atol=1e-4)


def test_attacks_and_evaluation_take_host_arrays_for_a_gpu_model(fake_gpu):
    x, y = separable_images(120, seed=1)
    model, _ = _train("gpu", x, y, norm="inf", eps=0.1)
    mr.set_backend("gpu")
    for result in (fast_method(model, x, y, norm="2", eps=1.0), pgd(model, x, y, eps=0.1, steps=3, restarts=2, rng=0),
                   single_pixel(model, x, y), fast_method(model, x, eps=0.1, batch_size=50)):
        assert isinstance(result.x_adv, DeviceArray) and result.x_adv.shape == x.shape
        host = result.to_host()
        assert type(host.x_adv) is np.ndarray and 0 <= host.success_rate <= 1
    r = robust_accuracy(model, x, y, "inf", 0.1, method="pgd", steps=2, rng=0)
    assert 0 <= r["robust_acc"] <= r["clean_acc"] <= 1
    curve = accuracy_vs_eps(model, x, y, "inf", [0.0, 0.1, 0.3])
    assert curve[0]["robust_acc"] == pytest.approx(model.accuracy(x, y))
    aset = adversarial_set(model, x, y, {"inf": [0.1, 0.3], "2": [2.0]})
    assert type(aset.x) is np.ndarray and len(aset) > 0
    assert 0 <= full_range_check(model, x, y)["robust_acc"] <= 1
    assert model.predict(x, batch_size=50).shape == (120,)


def test_check_grad_in_float64_on_the_gpu_backend(fake_gpu):
    model = nets.tiny_convnet(in_channels=1, size=8, classes=3, seed=0)
    assert model.device == "gpu"
    x = np.random.default_rng(0).permutation(np.linspace(0.01, 0.99, 2 * 64)).reshape(2, 1, 8, 8)
    check_grad(model, mr.to_device(x), h=1e-5).assert_ok(1e-6)


def test_the_batchnorm_vgg_net_trains_on_the_gpu_backend_with_the_cpu_numbers(fake_gpu, tmp_path):
    """BatchNorm's ops have no CUDA kernel yet: the reference tier's array code runs on CuPy
    arrays. Train and eval mode, running statistics and a checkpoint round trip."""
    x = np.random.default_rng(3).random((16, 3, 32, 32))  # float64: the tiers sum in different orders
    y = np.arange(16) % 10
    models = {}
    for device in ("gpu", "cpu"):
        mr.set_backend(device)
        model = nets.paper_cifar10(width=1 / 16, dropout=1.0, seed=0, dtype=np.float64)
        RobustTrainer(model, TrainConfig(epochs=2, batch_size=8, lr=0.05, norm="2", eps=0.1), log=None,
                      progress=False).fit(x, y)
        models[device] = model
    assert models["gpu"].device == "gpu"
    cpu_state = models["cpu"].state_dict()
    for name, value in models["gpu"].state_dict().items():  # parameters and running statistics
        np.testing.assert_allclose(value, cpu_state[name], rtol=1e-9, atol=1e-12, err_msg=name)
    mr.set_backend("gpu")
    checkpoint.save(tmp_path / "vgg.npz", models["gpu"])
    loaded = checkpoint.load_model(tmp_path / "vgg.npz")
    np.testing.assert_allclose(mr.to_host(loaded.forward(x)), mr.to_host(models["gpu"].forward(x)), rtol=1e-12)


def test_adam_and_checkpoints_on_the_gpu_backend(fake_gpu, tmp_path):
    x, y = separable_images(40, seed=2)
    model = nets.paper_mnist(seed=0)
    opt = Adam(model, lr=1e-3, weight_decay=1e-3)
    for _ in range(2):
        opt.step(model.loss_and_grads(x, y)[1])
    checkpoint.save(tmp_path / "c.npz", model, opt, epoch=1)
    on_gpu = checkpoint.load(tmp_path / "c.npz")
    assert on_gpu.model.device == "gpu"
    mr.set_backend("cpu")
    on_cpu = checkpoint.load(tmp_path / "c.npz")
    assert on_cpu.model.device == "cpu"
    for name, value in model.parameters().items():
        np.testing.assert_array_equal(on_cpu.model.parameters()[name], value.get())
    cpu_model = nets.paper_mnist(seed=0)
    cpu_opt = Adam(cpu_model, lr=1e-3, weight_decay=1e-3)
    for _ in range(2):
        cpu_opt.step(cpu_model.loss_and_grads(x, y)[1])
    for name, value in cpu_model.parameters().items():
        np.testing.assert_allclose(model.parameters()[name].get(), value, rtol=1e-4, atol=1e-6)


def test_the_cli_runs_with_backend_gpu(fake_gpu, tmp_path, capsys):
    from minirobust.cli import main

    out = tmp_path / "run"
    common = ["--backend", "gpu", "--dataset", "synthetic"]
    assert main(["train", *common, "--n-train", "200", "--epochs", "1", "--norm", "inf", "--eps", "0.1",
                 "--out", str(out)]) == 0
    assert main(["attack", *common, "--model", str(out / "model.npz"), "--n-test", "100", "--method", "pgd",
                 "--eps", "0.1", "--out", str(tmp_path / "adv.npz"), "--figure", str(tmp_path / "adv.png")]) == 0
    assert main(["evaluate", *common, "--model", str(out / "model.npz"), "--n-test", "100",
                 "--eps-grid", "0,0.1", "--masking-check"]) == 0
    printed = capsys.readouterr().out
    assert "success rate" in printed and "robust acc" in printed and "fast l_inf at eps 1" in printed
    with np.load(tmp_path / "adv.npz") as saved:
        assert saved["x_adv"].shape == (100, 1, 28, 28)


@pytest.mark.slow
def test_reproduce_mnist_runs_with_backend_gpu(fake_gpu, tmp_path):
    # the whole experiment (four nets, AMNIST, curves, PGD, figures) on the gpu backend; tiny sizes
    from minirobust.cli import main

    from .conftest import SHARED_DATA

    if not (SHARED_DATA / "mnist").exists():
        pytest.skip(f"real MNIST not found in {SHARED_DATA}")
    assert main(["reproduce", "mnist", "--backend", "gpu", "--quick", "--epochs", "1", "--n-train", "600",
                 "--n-test", "300", "--data-dir", str(SHARED_DATA), "--results-dir", str(tmp_path / "results"),
                 "--runs-dir", str(tmp_path / "runs"), "--no-progress"]) == 0
    import json

    results = json.loads((tmp_path / "results" / "results.json").read_text())
    assert set(results["table"]) == {"baseline", "linf", "l2", "l1"}
    assert (tmp_path / "results" / "curve_linf.png").exists()
