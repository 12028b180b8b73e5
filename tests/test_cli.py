"""Every CLI subcommand runs as a subprocess."""

from __future__ import annotations

import subprocess
import sys


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
