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
           "--runs-dir", str(tmp_path / "runs")]
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
    for name, row in r["table"].items():
        assert 0 <= row["clean_acc"] <= 100 and "pgd_linf_0.004" in row, name
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
