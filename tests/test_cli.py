"""Every CLI subcommand runs as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def run_cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "minirobust.cli", *args], capture_output=True, text=True,
                          timeout=kw.pop("timeout", 300), **kw)


def test_info():
    out = run_cli("info")
    assert out.returncode == 0, out.stderr
    assert "numpy" in out.stdout and "kernel_tiers" in out.stdout and "backend" in out.stdout


def test_help_and_bad_flag():
    out = run_cli("--help")
    assert out.returncode == 0 and "demo" in out.stdout and "info" in out.stdout
    out = run_cli("info", "--backend", "tpu")
    assert out.returncode == 2 and "invalid choice" in out.stderr and "Traceback" not in out.stderr


def test_backend_gpu_without_a_gpu_fails_at_once_with_one_line(tmp_path):
    from minirobust.backend import gpu_available

    if gpu_available()[0]:
        pytest.skip("a GPU is here: the flag works (tests/test_gpu.py)")
    for args, env in ((("train", "--backend", "gpu", "--epochs", "1"), {}), (("info",), {"MINIROBUST_BACKEND": "gpu"}),
                      (("sweep", "--backend", "gpu", "--dataset", "synthetic", "--out", str(tmp_path / "s")), {})):
        out = run_cli(*args, env={**os.environ, **env}, timeout=60)
        assert out.returncode == 2 and out.stdout == "", out.stdout
        assert out.stderr.count("\n") == 1 and "backend 'gpu' is unavailable" in out.stderr, out.stderr


def test_demo_trains_and_prints_accuracy():
    out = run_cli("demo", "--epochs", "1", "--synthetic")
    assert out.returncode == 0, out.stderr
    acc = float(out.stdout.split("test accuracy ")[1].split("%")[0])
    assert acc > 80


def test_data_info_and_fetch(tmp_path):
    from .conftest import SHARED_DATA

    if not (SHARED_DATA / "mnist").exists():
        import pytest

        pytest.skip(f"no MNIST in {SHARED_DATA}")
    env = {**__import__("os").environ, "XDG_CACHE_HOME": str(tmp_path)}
    out = run_cli("data", "info", "mnist", "--data-dir", str(SHARED_DATA), env=env)
    assert out.returncode == 0, out.stderr
    assert "(60000, 1, 28, 28)" in out.stdout and "5923" in out.stdout
    out = run_cli("data", "fetch", "mnist", "--data-dir", str(SHARED_DATA), env=env)
    assert out.returncode == 0 and "verified" in out.stdout
    out = run_cli("data", "info", "mnist", "--data-dir", str(tmp_path / "empty"), "--no-download", env=env)
    assert out.returncode == 2 and "MNIST files missing" in out.stderr and "Traceback" not in out.stderr


# ----- train / attack / evaluate ------------------------------------------------------------------

import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

SYNTH = ["--dataset", "synthetic", "--no-progress"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    res = run_cli("train", *SYNTH, "--n-train", "600", "--n-test", "200", "--norm", "inf", "--eps", "0.1",
                  "--epochs", "2", "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert "test accuracy" in res.stdout and "fast-method l_inf accuracy at eps 0.1" in res.stdout
    return out


def test_train_writes_run_folder(trained_run):
    names = sorted(p.name for p in trained_run.iterdir())
    assert {"checkpoint.npz", "metrics.jsonl", "model.npz"} <= set(names)
    lines = (trained_run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(ln)["epoch"] for ln in lines] == [1, 2]


@pytest.mark.parametrize("method, extra", [("fast", ["--norm", "2", "--eps", "1.0"]),
                                           ("pgd", ["--steps", "3"]),
                                           ("single-pixel", ["--eps", "1.0"])])
def test_attack(trained_run, tmp_path, method, extra):
    fig = tmp_path / "grid.png"
    res = run_cli("attack", *SYNTH[:2], "--model", str(trained_run / "model.npz"), "--method", method,
                  "--n-test", "100", "--out", str(tmp_path / "adv.npz"), "--figure", str(fig), *extra)
    assert res.returncode == 0, res.stderr
    assert "success rate" in res.stdout and "perturbation norms" in res.stdout
    with np.load(tmp_path / "adv.npz", allow_pickle=False) as z:
        assert z["x_adv"].shape == (100, 1, 28, 28)
    assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate(trained_run, tmp_path):
    res = run_cli("evaluate", *SYNTH[:2], "--model", str(trained_run / "model.npz"), "--n-test", "100",
                  "--eps-grid", "0,0.05,0.1", "--masking-check", "--out", str(tmp_path / "e.json"),
                  "--figure", str(tmp_path / "curve.png"))
    assert res.returncode == 0, res.stderr
    report = json.loads((tmp_path / "e.json").read_text())
    accs = [p["robust_acc"] for p in report["curve"]["points"]]
    assert accs[0] == report["clean_acc"] and accs == sorted(accs, reverse=True)
    assert "full_range_check" in report and (tmp_path / "curve.png").exists()


@pytest.mark.parametrize("args, message", [
    (["train", "--eps", "-0.1", "--norm", "inf"], "expected a finite number >= 0"),
    (["train", "--norm", "l7x", "--eps", "0.1"], "unknown norm"),
    (["train", "--eps", "0.1"], "eps given without a norm"),
    (["train", "--data-dir", "/nonexistent/dir", "--epochs", "1"], "could not download"),
    (["attack", "--model", "/nonexistent/model.npz", "--dataset", "synthetic"], "checkpoint not found"),
    (["evaluate", "--model", "x.npz", "--eps-grid", "0,-1"], "expected a finite number >= 0"),
    (["train", "--lr", "inf"], "expected a finite number, got inf"),
    (["train", "--lr", "nan"], "expected a finite number, got nan"),
    (["train", "--momentum=-inf"], "expected a finite number, got -inf"),
    (["train", "--seed", "-1"], "expected a whole number >= 0, got -1"),
    (["demo", "--seed", "-1"], "expected a whole number >= 0, got -1"),
])
def test_bad_flags_are_one_line_errors(args, message, tmp_path):
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path), "MINIROBUST_DATA": str(tmp_path / "nodata")}
    if "could not download" in message:  # never reach the network: a closed local port
        args = ["data", "fetch", "mnist", "--data-dir", str(tmp_path), "--url", "http://127.0.0.1:9/"]
    res = run_cli(*args, env=env, timeout=120)
    assert res.returncode == 2, res.stdout + res.stderr
    assert message in res.stderr and "Traceback" not in res.stderr


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(tmp_path):
    common = ["train", *SYNTH, "--n-train", "3000", "--n-test", "50", "--norm", "inf", "--eps", "0.1",
              "--epochs", "3", "--batch-size", "50"]
    full = run_cli(*common, "--out", str(tmp_path / "full"))
    assert full.returncode == 0, full.stderr
    import subprocess
    import sys

    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "minirobust.cli", *common, "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, first = time.time() + 120, ""
    while not first.endswith("\n") and time.time() < deadline:  # epoch 1's whole metrics line
        time.sleep(0.01)
        first = (out / "metrics.jsonl").read_text() if (out / "metrics.jsonl").exists() else ""
    time.sleep(json.loads(first)["seconds"] / 3)  # a third into epoch 2, however fast the machine
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1  # killed mid-epoch 2
    assert not (out / "model.npz").exists()
    resumed = run_cli(*common, "--out", str(out), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    from minirobust import checkpoint

    a = checkpoint.load(tmp_path / "full" / "model.npz").model.parameters()
    b = checkpoint.load(out / "model.npz").model.parameters()
    for k in a:
        np.testing.assert_allclose(b[k], a[k], rtol=1e-6, atol=1e-7)


def test_resume_on_other_data_is_a_one_line_error_naming_the_setting(tmp_path):
    out = tmp_path / "run"
    common = ["train", "--dataset", "synthetic", "--out", str(out), "--no-progress"]
    first = run_cli(*common, "--n-train", "200", "--epochs", "1", timeout=300)
    assert first.returncode == 0, first.stderr
    other = run_cli(*common, "--n-train", "300", "--epochs", "2", "--resume", timeout=300)
    assert other.returncode == 2 and "n_train was 200, now 300" in other.stderr and "Traceback" not in other.stderr
    same = run_cli(*common, "--n-train", "200", "--epochs", "2", "--resume", timeout=300)
    assert same.returncode == 0, same.stderr
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]


def test_train_methods_and_certify(tmp_path):
    common = ("--dataset", "synthetic", "--n-train", "300", "--n-test", "60")
    for method in ("pgd", "fgsm-rs", "trades", "ibp"):
        out = run_cli("train", *common, "--norm", "inf", "--eps", "0.05", "--method", method, "--epochs", "1",
                      "--ascent-steps", *(("2",) if method in ("pgd", "trades") else ("1",)), "--eps-ramp", "0.5",
                      "--monitor", "50", "--no-progress", "--out", str(tmp_path / method))
        assert out.returncode == 0, out.stderr
        assert "pgd_acc_monitor" in (tmp_path / method / "metrics.jsonl").read_text()
    model = str(tmp_path / "ibp" / "model.npz")
    common = ("--dataset", "synthetic", "--n-test", "60")  # certify reads test images only: no --n-train
    out = run_cli("certify", *common, "--model", model, "--eps", "0.05", "--attack", "suite",
                  "--out", str(tmp_path / "c.json"))
    assert out.returncode == 0, out.stderr
    assert "certified accuracy (ibp, l_inf eps 0.05)" in out.stdout and "attack suite" in out.stdout
    for args, word in ((("--method", "ibp", "--norm", "2"), "use --norm inf"),
                       (("--method", "smoothing", "--norm", "inf"), "use --norm 2")):
        out = run_cli("certify", *common, "--model", model, "--eps", "0.05", *args)
        assert out.returncode == 2 and word in out.stderr and "Traceback" not in out.stderr
    out = run_cli("train", *common, "--method", "pgd", "--epochs", "1")
    assert out.returncode == 2 and "--method: these shape robust training: they need --norm and --eps" in out.stderr
    out = run_cli("certify", *common, "--n-train", "5", "--model", model, "--eps", "0.05")
    assert out.returncode == 2 and "unrecognized arguments: --n-train" in out.stderr


def test_train_flags_are_declared_once_on_the_config():
    # issue 27 item 5: every TrainConfig field made with option() is a flag of `train`, with its default
    import dataclasses

    from minirobust.cli import build_parser, config_from_args
    from minirobust.robust import TrainConfig

    parser = build_parser()
    args = parser.parse_args(["train"])
    assert config_from_args(TrainConfig, args) == TrainConfig()  # the defaults come from one place
    args = parser.parse_args(["train", "--norm", "2", "--eps", "0.5", "--method", "trades", "--beta", "3",
                              "--step-size", "0.1", "--eps-ramp", "2", "--no-clip", "--lr-halve-every", "4"])
    config = config_from_args(TrainConfig, args, seed=args.seed)
    assert (config.norm, config.eps, config.method, config.beta, config.ascent_step_size, config.eps_ramp_epochs,
            config.clip, config.lr_halve_every) == ("2", 0.5, "trades", 3.0, 0.1, 2.0, False, 4)
    flags = [f.metadata["flag"] for f in dataclasses.fields(TrainConfig) if "flag" in f.metadata]
    import argparse

    train = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["train"]
    offered = {o for a in train._actions for o in a.option_strings}
    assert len(flags) >= 18 and set(flags) <= offered, set(flags) - offered
