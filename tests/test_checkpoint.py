"""Checkpoints: round trip, atomic replacement, no pickle, clear errors."""

from __future__ import annotations

import io

import numpy as np
import pytest

from minirobust import checkpoint, nets
from minirobust.errors import CheckpointError
from minirobust.optim import SGD


def test_round_trip_with_optimizer(tmp_path):
    model = nets.paper_mnist(seed=1)
    opt = SGD(model, lr=0.01, momentum=0.9)
    x = np.random.default_rng(0).random((4, 1, 28, 28), dtype=np.float32)
    _, grads, _ = model.loss_and_grads(x, np.array([0, 1, 2, 3]))
    opt.step(grads)
    rng = np.random.default_rng(5)
    path = checkpoint.save(tmp_path / "c.npz", model, opt, epoch=3, rng_state=rng.bit_generator.state,
                           metrics={"acc": np.float32(0.5)})
    assert checkpoint.load(path).optimizer_arrays == {}  # a model user never decompresses them
    ck = checkpoint.load(path, optimizer=True)
    assert ck.epoch == 3 and ck.meta["optimizer"]["t"] == 1 and ck.meta["metrics"]["acc"] == 0.5
    np.testing.assert_array_equal(ck.model.forward(x), model.forward(x))
    assert set(ck.optimizer_arrays) == {f"velocity/{k}" for k in model.parameters()}
    restored = np.random.default_rng()
    restored.bit_generator.state = ck.meta["rng_state"]
    assert restored.random() == rng.random()
    assert (tmp_path / "c.json").exists()


def test_crash_mid_save_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    model = nets.paper_mnist(seed=1)
    path = checkpoint.save(tmp_path / "c.npz", model, epoch=1)
    good = path.read_bytes()

    def crash(f, **arrays):
        f.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save(path, nets.paper_mnist(seed=2), epoch=2)
    assert path.read_bytes() == good  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.json", "c.npz"]  # no temp files left
    assert checkpoint.load(path).epoch == 1


def test_no_pickle_and_corrupt_files(tmp_path):
    evil = tmp_path / "evil.npz"
    buf = io.BytesIO()
    np.savez(buf, __meta__=np.array([{"format": "x"}], dtype=object))  # an object array needs pickle
    evil.write_bytes(buf.getvalue())
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        checkpoint.load(evil)
    (tmp_path / "junk.npz").write_bytes(b"not a zip file at all")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        checkpoint.load(tmp_path / "junk.npz")
    with pytest.raises(CheckpointError, match="not found"):
        checkpoint.load(tmp_path / "missing.npz")
    np.savez(tmp_path / "plain.npz", a=np.zeros(3))
    with pytest.raises(CheckpointError, match="no metadata"):
        checkpoint.load(tmp_path / "plain.npz")


def test_truncated_checkpoint(tmp_path):
    path = checkpoint.save(tmp_path / "c.npz", nets.paper_mnist(seed=1), epoch=1)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        checkpoint.load(path)
