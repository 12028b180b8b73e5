"""`minirobust reproduce cifar10 --quick` on small files in the official binary layout.

The files hold the first images of each batch of the JPEG-derived CIFAR-10 that the shared
folder builds (``build_binary.py``), so the run sees real images, a few thousand of them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from minirobust.errors import MinirobustError
from minirobust.experiments.cifar10 import ROBUST_NETS, with_radii

from .conftest import SHARED_DATA

BUILDER = SHARED_DATA / "cifar10" / "build_binary.py"
pytestmark = pytest.mark.skipif(not BUILDER.exists(), reason=f"no CIFAR-10 builder in {SHARED_DATA / 'cifar10'}")

RECORD = 3073
TRAIN_PER_BATCH, TEST = 400, 500  # 2,000 training images (all --quick uses), 500 test images


@pytest.fixture(scope="module")
def small_cifar(tmp_path_factory):
    """A data root with cifar10/cifar-10-batches-bin/ holding a small slice of every batch."""
    full = tmp_path_factory.mktemp("cifar-full")
    subprocess.run([sys.executable, str(BUILDER), str(full)], check=True, capture_output=True, timeout=300)
    src = full / "cifar10" / "cifar-10-batches-bin"
    root = tmp_path_factory.mktemp("cifar-small")
    dst = root / "cifar10" / "cifar-10-batches-bin"
    dst.mkdir(parents=True)
    for k in range(1, 6):
        (dst / f"data_batch_{k}.bin").write_bytes((src / f"data_batch_{k}.bin").read_bytes()[: TRAIN_PER_BATCH * RECORD])
    (dst / "test_batch.bin").write_bytes((src / "test_batch.bin").read_bytes()[: TEST * RECORD])
    (dst / "batches.meta.txt").write_bytes((src / "batches.meta.txt").read_bytes())
    return root


def test_quick_cifar10_reproduction(small_cifar, tmp_path):
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "minirobust.cli", "reproduce", "cifar10", "--quick", "--no-progress",
           "--data-dir", str(small_cifar), "--results-dir", str(tmp_path / "results"),
           "--runs-dir", str(tmp_path / "runs"), "--radius", "l1=0.5"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    r = json.loads((tmp_path / "results" / "results.json").read_text())
    assert r["dataset"] == "CIFAR-10" and r["set_name"] == "acifar"
    assert set(r) >= {"settings", "software", "machine", "acifar", "table", "curves", "seconds_per_epoch",
                      "wall_time_s", "single_pixel"}
    s = r["settings"]
    assert s["n_train"] == 5 * TRAIN_PER_BATCH and s["n_test"] == TEST
    assert s["width"] == 0.125 and s["attack_mode"] == "eval" and "JPEG" in s["data"]
    assert set(r["table"]) == {"baseline", "linf", "l2", "l1"}
    # the baseline scores 0% on its own adversarial set, by construction
    assert r["acifar"]["size"] > 0 and r["acifar"]["baseline_acc"] == 0.0
    assert r["table"]["baseline"]["acifar"]["overall"] == 0.0
    # --radius replaced the l1 net's radius only; PGD columns at the l_inf net's radius and twice it
    eps_linf = ROBUST_NETS["linf"][1]
    assert s["eps_pixel"] == {"baseline": 0.0, "linf": eps_linf, "l2": ROBUST_NETS["l2"][1], "l1": 0.5}
    for name, row in r["table"].items():
        assert 0 <= row["clean_acc"] <= 100, name
        assert {f"pgd_linf_{eps_linf:g}", f"pgd_linf_{2 * eps_linf:g}"} <= set(row), name
    for norm, per in r["curves"].items():
        assert set(per) == set(r["table"]), norm
        for name, pts in per.items():
            assert [p["eps"] for p in pts] == r["settings"]["curve_grids"][norm]
    for png in ("curve_linf.png", "curve_l2.png", "curve_l1.png"):
        assert (tmp_path / "results" / png).read_bytes()[:4] == b"\x89PNG"
    assert "| baseline |" in (tmp_path / "results" / "table.md").read_text()
    # every net's checkpoint is in the runs folder, with its running statistics
    for name in r["table"]:
        assert (tmp_path / "runs" / name / "model.npz").exists()


def test_mnist_refuses_cifar10_only_flags(tmp_path):
    out = subprocess.run([sys.executable, "-m", "minirobust.cli", "reproduce", "mnist", "--width", "0.5",
                          "--results-dir", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "--width: only for `reproduce cifar10`" in out.stderr


def test_radius_flag_is_checked(tmp_path):
    def run(*flags):
        return subprocess.run([sys.executable, "-m", "minirobust.cli", "reproduce", *flags, "--results-dir",
                               str(tmp_path)], capture_output=True, text=True, timeout=120)

    out = run("cifar10", "--radius", "l3=0.1")
    assert out.returncode == 2 and "NET=EPS with NET one of linf, l2, l1, got 'l3=0.1'" in out.stderr
    out = run("cifar10", "--radius", "l2=0")
    assert out.returncode == 2 and "expected a finite number > 0, got 0" in out.stderr
    out = run("mnist", "--radius", "l2=0.1")
    assert out.returncode == 2 and "--radius: only for `reproduce cifar10`" in out.stderr


def test_with_radii_replaces_only_the_named_nets():
    nets = with_radii(ROBUST_NETS, {"l2": 0.05})
    assert nets["l2"] == ("2", 0.05) and nets["linf"] == ROBUST_NETS["linf"] and nets["baseline"] == (None, 0.0)
    with pytest.raises(MinirobustError, match="radius for 'baseline': the robust nets are linf, l2, l1"):
        with_radii(ROBUST_NETS, {"baseline": 0.1})
    with pytest.raises(MinirobustError, match="must be a finite number > 0"):
        with_radii(ROBUST_NETS, {"l2": float("nan")})
