"""``--backend gpu`` end to end without a GPU: CuPy replaced by a strict stand-in (fake_cupy.py:
device arrays that refuse to mix with host arrays, as CuPy's do) and the GPU tier's kernels
compiled for the host (cuda_emulation.py). Everything above the kernels must run unchanged:
layers, model, trainer, attacks, evaluation, checkpoints, optimisers, the CLI; and give the CPU
backend's numbers. The same checks on a real card are in test_gpu.py (marker gpu)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import minirobust as mr
from minirobust import backend, checkpoint, nets
from minirobust.backend import to_host
from minirobust.data import separable_images
from minirobust.gradcheck import check_grad
from minirobust.optim import Adam
from minirobust.robust import (RobustTrainer, TrainConfig, accuracy_vs_eps, adversarial_set, fast_method,
                               full_range_check, pgd, robust_accuracy, single_pixel)

from . import fake_cupy
from .cuda_emulation import emulated_builder, install_gpu_stand_in
from .fake_cupy import DeviceArray, FakeCupy
from .test_reproduce_cifar10 import BUILDER, small_cifar  # noqa: F401 - small_cifar: a fixture, shared


@pytest.fixture(scope="module")
def kernels_for_the_host(tmp_path_factory):
    if shutil.which("g++") is None:
        pytest.skip("g++ is not on the PATH: cannot emulate the CUDA kernels")
    return emulated_builder(tmp_path_factory.mktemp("cuda_host"), device_arrays_only=True)


@pytest.fixture
def fake_gpu(kernels_for_the_host, monkeypatch):
    """The gpu backend, on the host: FakeCupy as ``cupy``, the kernels compiled by g++."""
    if backend.gpu_available()[0] and backend._cupy is not None and not isinstance(backend._cupy, FakeCupy):
        pytest.skip("a real GPU is present: test_gpu.py covers it")
    install_gpu_stand_in(kernels_for_the_host, monkeypatch.setattr, monkeypatch.setitem)
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


def test_the_stand_in_is_as_strict_as_cupy():
    # what the tests above rely on: if the stand-in let these through, a host/device mix-up
    # would pass here and fail on a real card
    cp = FakeCupy()
    d, host = cp.asarray(np.arange(6.0).reshape(2, 3)), np.ones((2, 3))
    for implicit in (lambda: np.asarray(d), lambda: np.array(d), lambda: np.ascontiguousarray(d, dtype=float)):
        with pytest.raises(TypeError, match="Implicit conversion to a NumPy array is not allowed"):
            implicit()
    for mixed in (lambda: d + host, lambda: host * d, lambda: np.maximum(d, host), lambda: np.concatenate([d, host]),
                  lambda: cp.where(d > 0, host, 0), lambda: d.__setitem__(0, host[0])):
        with pytest.raises(TypeError, match="Unsupported type"):
            mixed()
    total, corner = d.sum(), d[1, 2]
    assert isinstance(total, DeviceArray) and total.shape == () and float(total) == 15.0
    assert isinstance(corner, DeviceArray) and int(corner) == 5 and f"{corner:.1f}" == "5.0"
    with pytest.raises(TypeError):
        range(corner)  # no __index__ on a CuPy array
    d[np.array([0])] = 7.0  # NumPy index arrays are converted, as CuPy does
    assert d.get()[0].tolist() == [7.0] * 3 and type(d.get()) is np.ndarray
    assert d.astype(d.dtype, copy=False) is d and cp.asarray(d) is d


def test_the_evaluation_suite_runs_on_the_gpu_backend_with_the_cpu_numbers(fake_gpu):
    from minirobust.robust import apgd, run_suite, square

    x, y = separable_images(60, seed=4)
    results = {}
    for device in ("gpu", "cpu"):
        model, _ = _train(device, x, y, norm="inf", eps=0.1)
        mr.set_backend(device)
        suite = run_suite(model, x, y, "inf", 0.2, log=None)
        a = apgd(model, x, y, norm="2", eps=1.0, steps=5, rng=0)
        s = square(model, x, y, norm="inf", eps=0.2, n_queries=20, rng=0)
        results[device] = (suite, mr.to_host(a.x_adv), mr.to_host(s.x_adv))
    (gs, ga, gq), (cs, ca, cq) = results["gpu"], results["cpu"]
    np.testing.assert_array_equal(gs.robust_ok, cs.robust_ok)
    np.testing.assert_array_equal(gs.broken_by, cs.broken_by)
    np.testing.assert_allclose(ga, ca, atol=1e-4)
    np.testing.assert_allclose(gq, cq, atol=1e-4)


def test_every_gpu_test_passes_on_the_stand_in():
    """Every test marked gpu (test_gpu.py, and the gpu variants of the kernel, layer, model and
    trainer tests) run here on the stand-in, in a fresh pytest with MINIROBUST_TEST_FAKE_GPU=1 (see
    conftest.py): the GPU tests themselves are proven before scarce device time is spent on them."""
    if backend.gpu_available()[0] and not isinstance(backend._cupy, FakeCupy):
        pytest.skip("a real GPU is present: the gpu tests run on it in this session")
    if shutil.which("g++") is None:
        pytest.skip("g++ is not on the PATH: cannot emulate the CUDA kernels")
    from .conftest import REPO, SHARED_DATA

    env = {**os.environ, "MINIROBUST_TEST_FAKE_GPU": "1"}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "gpu", "tests"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    summary = run.stdout.strip().splitlines()[-1]
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert int(re.search(r"(\d+) passed", summary).group(1)) >= 60, summary
    if (SHARED_DATA / "mnist").exists():  # else the MNIST-trained cases skip, with that reason
        assert "skipped" not in summary, run.stdout[-3000:]


def test_the_gpu_benchmark_runs_on_the_stand_in(fake_gpu, tmp_path, capsys):
    # benchmarks/bench_gpu.py end to end (tiny batches, one repeat): the script a lent GPU runs
    # must not fail there for a reason the host could have shown (times here are the emulation's)
    import json

    from benchmarks import bench_gpu

    assert bench_gpu.main(["--batches", "4,8", "--repeat", "1", "--out", str(tmp_path / "b.json")]) == 0
    rows = json.loads((tmp_path / "b.json").read_text())["rows"]
    assert [(r["batch"], r["case"]) for r in rows] == [(b, c) for b in (4, 8) for c in
                                                       ("plain step", "robust l_inf step", "PGD-10 attack")]
    assert "host emulation of a GPU" in capsys.readouterr().out


def test_a_training_step_copies_its_batch_to_the_device_once(fake_gpu):
    # data crosses once per batch, not per op: host -> device, the batch and its labels only (the
    # normalisation constants and the loss's upstream 1.0 stay scalars or stay cached there);
    # device -> host, the few scalars a step checks (finite inputs, label range) and reports
    # (loss, correct count)
    x, y = separable_images(100, seed=5)
    for norm in (None, "inf", "2", "1"):
        model = nets.paper_mnist(seed=0, mean=float(x.mean()), std=float(x.std()))
        trainer = RobustTrainer(model, TrainConfig(norm=norm, eps=0.1 if norm else 0.0), log=None, progress=False)
        trainer.train_step(x, y)
        fake_cupy.TRANSFERS.update(to_device=0, to_host=0)
        trainer.train_step(x, y)
        assert fake_cupy.TRANSFERS["to_device"] == 2, (norm, fake_cupy.TRANSFERS)
        assert fake_cupy.TRANSFERS["to_host"] <= (6 if norm else 4), (norm, fake_cupy.TRANSFERS)
    xd, yd = mr.to_device(x), mr.to_device(y)  # already on the device: nothing to copy
    fake_cupy.TRANSFERS.update(to_device=0, to_host=0)
    trainer.train_step(xd, yd)
    assert fake_cupy.TRANSFERS["to_device"] == 0


def _worker_backend(_):
    return os.environ.get("MINIROBUST_BACKEND")


def test_sweep_workers_take_the_drivers_backend(fake_gpu):
    # `minirobust sweep --backend gpu`: the flag sets the driver's backend, and the spawned
    # workers start with it in their environment (they cannot share the driver's CUDA context)
    from minirobust.experiments.runners import LocalRunner, worker_environment

    assert worker_environment()["MINIROBUST_BACKEND"] == "gpu"
    assert dict(LocalRunner(1).map(_worker_backend, {"run": None})) == {"run": "gpu"}
    mr.set_backend("cpu")
    assert dict(LocalRunner(1).map(_worker_backend, {"run": None})) == {"run": "cpu"}


@pytest.mark.slow
@pytest.mark.skipif(not BUILDER.exists(), reason=f"no CIFAR-10 builder at {BUILDER}")
def test_reproduce_cifar10_runs_with_backend_gpu(fake_gpu, small_cifar, tmp_path):
    # the CIFAR-10 experiment (BatchNorm VGG, four nets, ACIFAR, curves, PGD, figures) on the gpu
    # backend, at tiny sizes; its BatchNorm ops run as the reference tier's CuPy array code
    import json

    from minirobust.cli import main

    assert main(["reproduce", "cifar10", "--backend", "gpu", "--quick", "--n-train", "200", "--n-test", "100",
                 "--width", "0.0625", "--data-dir", str(small_cifar), "--results-dir", str(tmp_path / "results"),
                 "--runs-dir", str(tmp_path / "runs"), "--no-progress"]) == 0
    results = json.loads((tmp_path / "results" / "results.json").read_text())
    assert set(results["table"]) == {"baseline", "linf", "l2", "l1"} and results["acifar"]["baseline_acc"] == 0.0
    assert (tmp_path / "results" / "table.md").exists()


@pytest.mark.parametrize("method", ["pgd", "fgsm-rs", "trades"])
def test_every_training_method_gives_the_cpu_numbers_on_the_gpu_backend(fake_gpu, method):
    # float64: TRADES's first ascent step takes the sign of a KL gradient near 0 (its start is
    # x + 0.001 N(0, 1)), where float32 sums in another order can flip a sign
    x, y = separable_images(80, seed=2)
    params = {}
    for device in ("cpu", "gpu"):
        mr.set_backend(device)
        model = nets.paper_mnist(seed=0, dtype=np.float64)
        cfg = TrainConfig(epochs=1, batch_size=40, norm="inf", eps=0.3, method=method, ascent_steps=2,
                          eps_ramp_epochs=0.5)
        RobustTrainer(model, cfg, log=None, progress=False).fit(x, y)
        params[device] = {k: to_host(v) for k, v in model.parameters().items()}
    for name, value in params["cpu"].items():
        np.testing.assert_allclose(params["gpu"][name], value, rtol=1e-9, atol=1e-12, err_msg=name)


def test_reproduce_mnist_eps03_runs_with_backend_gpu(fake_gpu, tmp_path):
    from minirobust.cli import main

    from .conftest import SHARED_DATA

    if not (SHARED_DATA / "mnist").exists():
        pytest.skip(f"real MNIST not found in {SHARED_DATA}")
    assert main(["reproduce", "mnist-eps03", "--backend", "gpu", "--quick", "--n-train", "500", "--n-test", "100",
                 "--n-suite", "20", "--nets", "paper-mnist", "--methods", "fgsm-rs,trades",
                 "--data-dir", str(SHARED_DATA), "--results-dir", str(tmp_path / "results"),
                 "--runs-dir", str(tmp_path / "runs"), "--no-progress"]) == 0
    import json

    runs = json.loads((tmp_path / "results" / "results.json").read_text())["runs"]
    assert set(runs) == {"paper-mnist/fgsm-rs", "paper-mnist/trades"}
    assert all(0 <= r["suite_acc"] <= r["clean_acc"] for r in runs.values())


def test_ibp_bounds_training_and_reproduce_certified_run_with_backend_gpu(fake_gpu, tmp_path):
    from minirobust.certify import IntervalPass, ibp_loss_and_grads
    from minirobust.cli import main

    from .conftest import SHARED_DATA

    x, y = separable_images(20, seed=1)
    results = {}
    for device in ("cpu", "gpu"):
        mr.set_backend(device)
        model = nets.paper_mnist(seed=0, dtype=np.float64)
        lo, hi = IntervalPass(model).logit_bounds(x, 0.05)
        loss, grads, _ = ibp_loss_and_grads(model, x, y, 0.05)
        results[device] = (to_host(lo), to_host(hi), loss, {k: to_host(v) for k, v in grads.items()})
    for a, b in zip(results["cpu"][:2], results["gpu"][:2]):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-12)
    assert results["gpu"][2] == pytest.approx(results["cpu"][2], rel=1e-10)
    for name, value in results["cpu"][3].items():
        np.testing.assert_allclose(results["gpu"][3][name], value, rtol=1e-8, atol=1e-12, err_msg=name)
    mr.set_backend("gpu")
    if not (SHARED_DATA / "mnist").exists():
        pytest.skip(f"real MNIST not found in {SHARED_DATA}")
    assert main(["reproduce", "certified", "--backend", "gpu", "--quick", "--n-train", "300", "--n-suite", "20",
                 "--nets", "paper-mnist", "--eps-list", "0.1", "--data-dir", str(SHARED_DATA),
                 "--results-dir", str(tmp_path / "results"), "--runs-dir", str(tmp_path / "runs"), "--no-progress"]) == 0
    import json

    assert set(json.loads((tmp_path / "results" / "results.json").read_text())["runs"]) == {"paper-mnist/ibp/0.1"}
