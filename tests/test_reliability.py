"""Untrusted files cannot exhaust memory or leak foreign exceptions; resume checks what it
resumes; the command line checks its outputs before the work starts; API misuse is named."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from minirobust import checkpoint, nets
from minirobust.data import parse_idx, read_cifar10_batch, read_idx, separable_images
from minirobust.errors import CheckpointError, DataError, InputError, MinirobustError
from minirobust.npzfile import NpzReader
from minirobust.robust import AdversarialSet, RobustTrainer, TrainConfig, apgd, fast_method, pgd, square

REPO = Path(__file__).resolve().parents[1]


def _rewrite(path, meta=None, drop=(), add=None):
    """Rewrite a checkpoint's members: new metadata, some arrays dropped or added."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files if k not in drop}
    if meta is not None:
        arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    arrays.update(add or {})
    np.savez(path, **arrays)


def _meta(path):
    with np.load(path, allow_pickle=False) as z:
        return json.loads(z["__meta__"].tobytes().decode())


# ----- checkpoints from anyone -----------------------------------------------------------------------

def test_architecture_claiming_a_huge_layer_is_refused_before_anything_is_built(tmp_path):
    path = checkpoint.save(tmp_path / "c.npz", nets.mlp(4, hidden=(3,), classes=2), epoch=1)
    meta = _meta(path)
    meta["model"]["layers"][1] = {"type": "dense", "in_features": 100000, "out_features": 100000}
    _rewrite(path, meta)
    assert path.stat().st_size < 4000
    t0 = time.perf_counter()
    with pytest.raises(CheckpointError, match="10,000,100,008 parameter values but the file stores 23"):
        checkpoint.load(path)
    assert time.perf_counter() - t0 < 1  # nothing of 40 GB was allocated


def _npy_bytes(shape, dtype):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buf.getvalue()  # magic, version and header


def test_a_member_declaring_a_trillion_elements_is_refused_from_its_header(tmp_path):
    path = tmp_path / "c.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("param:0_dense.W.npy", _npy_bytes((10**6, 10**6), "<f4"))
    with pytest.raises(CheckpointError, match="declare 4,000,000,000,000 bytes, more than"):
        checkpoint.load(path)


def test_a_zip_bomb_member_the_model_never_uses_is_never_read(tmp_path, monkeypatch):
    path = checkpoint.save(tmp_path / "c.npz", nets.mlp(4, hidden=(3,), classes=2), epoch=1)
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as zf:  # 64 MB of zeros in ~64 kB
        zf.writestr("junk.npy", _npy_bytes((64 << 20,), "|u1") + bytes(64 << 20))
    assert path.stat().st_size < 1 << 20
    read = []
    real = NpzReader.read
    monkeypatch.setattr(NpzReader, "read", lambda self, name: read.append(name) or real(self, name))
    assert checkpoint.load(path).epoch == 1
    assert "junk" not in read
    monkeypatch.setenv("MINIROBUST_MAX_FILE_BYTES", str(16 << 20))  # and under a tighter cap it is refused
    with pytest.raises(CheckpointError, match="more than the 16,777,216 allowed"):
        checkpoint.load(path)


def test_a_member_that_lies_about_its_size_stops_at_the_declared_size(tmp_path):
    path = checkpoint.save(tmp_path / "c.npz", nets.mlp(4, hidden=(3,), classes=2), epoch=1)
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for k, v in arrays.items():
            data = _npy_bytes(v.shape, v.dtype.str) + v.tobytes()
            if k == "param:1_dense.W":
                data = _npy_bytes(v.shape, v.dtype.str) + v.tobytes()[:8]  # truncated body
            zf.writestr(k + ".npy", data)
    with pytest.raises(CheckpointError, match="truncated"):
        checkpoint.load(path)


@pytest.mark.parametrize("damage", ["method 99", "encrypted", "string weights", "structured", "folder"])
def test_foreign_failures_become_checkpoint_errors(tmp_path, damage):
    path = checkpoint.save(tmp_path / "c.npz", nets.mlp(4, hidden=(3,), classes=2), epoch=1)
    data = bytearray(path.read_bytes())
    central = data.find(b"PK\x01\x02")  # the first central-directory entry, which zipfile trusts
    if damage == "method 99":
        data[central + 10 : central + 12] = (99).to_bytes(2, "little")  # its compression method
        path.write_bytes(bytes(data))
    elif damage == "encrypted":
        data[central + 8] |= 1  # its encryption flag
        path.write_bytes(bytes(data))
    elif damage == "string weights":
        _rewrite(path, add={"param:1_dense.W": np.array(["a" * 4] * 12).reshape(4, 3)})
    elif damage == "structured":
        _rewrite(path, add={"param:1_dense.W": np.zeros((4, 3), dtype=[("a", "<f4"), ("b", "<i4")])})
    else:
        path.unlink()
        path.mkdir()
    with pytest.raises(CheckpointError, match=str(path.name)):
        checkpoint.load(path)


@pytest.mark.parametrize("std", [float("inf"), float("nan"), 0.0])
def test_a_checkpoint_with_a_non_finite_normalize_is_refused(tmp_path, std):
    path = checkpoint.save(tmp_path / "c.npz", nets.paper_mnist(seed=0), epoch=1)
    meta = _meta(path)
    meta["model"]["layers"][0]["std"] = [std]
    _rewrite(path, meta)
    with pytest.raises(CheckpointError, match="Normalize: mean and std must be finite"):
        checkpoint.load(path)


# ----- resume checks what it resumes -------------------------------------------------------------------

@pytest.fixture
def run_folder(tmp_path):
    x, y = separable_images(100, seed=0)
    model = nets.paper_mnist(seed=0, mean=0.3, std=0.3)
    RobustTrainer(model, TrainConfig(epochs=1, batch_size=50), out_dir=tmp_path / "run", progress=False,
                  log=None).fit(x, y)
    return tmp_path / "run", x, y


def _resume(folder, x, y):
    model = nets.paper_mnist(seed=0, mean=0.3, std=0.3)
    return RobustTrainer(model, TrainConfig(epochs=2, batch_size=50), out_dir=folder, resume=True, progress=False,
                         log=None).fit(x, y)


@pytest.mark.parametrize("damage, message", [
    ("model instead", "without its training state"),
    ("rng state", "data-order RNG state is not valid"),
    ("optimizer keys", "belongs to no parameter"),
    ("optimizer shapes", "has shape"),
    ("step count", "step count"),
    ("epoch", "epoch"),
])
def test_resume_names_what_is_wrong_with_the_checkpoint(run_folder, damage, message):
    folder, x, y = run_folder
    ck = folder / "checkpoint.npz"
    meta = _meta(ck)
    if damage == "model instead":
        ck.write_bytes((folder / "model.npz").read_bytes())
    elif damage == "rng state":
        meta["rng_state"]["state"]["state"] = "not a number"
        _rewrite(ck, meta)
    elif damage == "optimizer keys":
        _rewrite(ck, add={"opt:velocity/9_dense.Q": np.zeros(3, np.float32)})
    elif damage == "optimizer shapes":
        _rewrite(ck, add={"opt:velocity/8_dense.W": np.zeros((2, 2), np.float32)})
    elif damage == "step count":
        meta["optimizer"]["t"] = "many"
        _rewrite(ck, meta)
    else:
        meta["epoch"] = -3
        _rewrite(ck, meta)
    with pytest.raises(CheckpointError, match=message):
        _resume(folder, x, y)


# ----- data files ------------------------------------------------------------------------------------

def test_a_gzip_bomb_is_stopped_by_the_header_before_it_inflates(tmp_path):
    bomb = tmp_path / "bomb.gz"  # a header declaring 1 GiB, then 1 GiB of zeros, compressed to ~1 MB
    with gzip.open(bomb, "wb", compresslevel=1) as f:
        f.write(b"\x00\x00\x08\x01" + (1 << 30).to_bytes(4, "big"))
        zeros = bytes(16 << 20)
        for _ in range(64):
            f.write(zeros)
    assert bomb.stat().st_size < 8 << 20
    t0 = time.perf_counter()
    with pytest.raises(DataError, match="declares 1,073,741,824 bytes, more than the 47,040,016 allowed"):
        read_idx(bomb, limit=47_040_016)
    assert time.perf_counter() - t0 < 1
    tail = tmp_path / "tail.gz"  # a valid 4-byte file followed by a long run of zeros
    with gzip.open(tail, "wb", compresslevel=1) as f:
        f.write(b"\x00\x00\x08\x01" + (4).to_bytes(4, "big") + b"abcd")
        for _ in range(16):
            f.write(zeros)
    with pytest.raises(DataError, match="unexpected bytes after"):
        read_idx(tail)


def test_idx_headers_with_many_or_zero_dimensions(tmp_path):
    with pytest.raises(DataError, match="declares 40 dimensions"):
        parse_idx(bytes([0, 0, 8, 40]) + bytes(160), "x.idx")
    with pytest.raises(DataError, match="zero dimension"):
        parse_idx(bytes([0, 0, 8, 2]) + (0).to_bytes(4, "big") + (4_000_000_000).to_bytes(4, "big"), "x.idx")


def test_cifar_batch_that_is_a_folder_or_too_large(tmp_path):
    with pytest.raises(DataError, match="is a folder"):
        read_cifar10_batch(tmp_path)
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        f.truncate(60001 * 3073)  # sparse: no disk used
    with pytest.raises(DataError, match="more than the whole CIFAR-10"):
        read_cifar10_batch(big)


def test_truncated_adversarial_set_is_a_data_error(tmp_path):
    aset = AdversarialSet(np.zeros((3, 1, 4, 4), np.float32), np.zeros(3, np.int64), np.arange(3),
                          np.array(["inf"] * 3), np.full(3, 0.1, np.float32))
    aset.save(tmp_path / "a.npz")
    data = (tmp_path / "a.npz").read_bytes()
    (tmp_path / "a.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="a.npz: not a readable adversarial set"):
        AdversarialSet.load(tmp_path / "a.npz")


# ----- API misuse ------------------------------------------------------------------------------------

@pytest.mark.parametrize("call, message", [
    (lambda m, x: pgd(m, x, steps=2.5), "steps must be a whole number"),
    (lambda m, x: pgd(m, x, restarts=1.5), "restarts must be a whole number"),
    (lambda m, x: pgd(m, x, rng="abc"), "rng must be a seed"),
    (lambda m, x: pgd(m, x, step_size=float("nan")), "step_size must be a finite number"),
    (lambda m, x: pgd(m, x, eps=1e39), "eps must be a finite number"),
    (lambda m, x: pgd(m, x, batch_size=0), "batch_size must be a whole number >= 1"),
    (lambda m, x: fast_method(m, x, batch_size=0), "batch_size must be a whole number >= 1"),
    (lambda m, x: apgd(m, x, steps=0), "steps must be a whole number"),
    (lambda m, x: square(m, x, n_queries=1.5), "n_queries must be a whole number"),
    (lambda m, x: square(m, x, norm="1"), "Square attack is for l_inf and l_2"),
])
def test_api_misuse_is_a_named_input_error(call, message):
    model = nets.paper_mnist(seed=0)
    x = np.random.default_rng(0).random((4, 1, 28, 28), dtype=np.float32)
    with pytest.raises(InputError, match=message):
        call(model, x)


# ----- the command line: outputs checked before the work, flags never ignored ---------------------------

def cli(*args, cwd=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "minirobust.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)


SYNTH = ["--dataset", "synthetic", "--no-progress", "--n-train", "200", "--n-test", "20"]


@pytest.mark.parametrize("args, message", [
    (["train", *SYNTH, "--out", "README.md"], "--out README.md: is a file, not a folder"),
    (["train", *SYNTH, "--out", "/proc/minirobust/run"], "cannot write there"),
    (["train", *SYNTH, "--resume"], "--resume needs --out"),
    (["train", *SYNTH, "--alpha", "0.5"], "they need --norm"),
    (["train", *SYNTH, "--ascent-steps", "3"], "they need --norm"),
    (["reproduce", "mnist", "--results-dir", "README.md"], "--results-dir README.md: is a file"),
    (["data", "fetch", "mnist", "--data-dir", "README.md", "--url", "http://127.0.0.1:9/"], "cannot create"),
    (["evaluate", "--model", "m.npz", "--figure", "f.png"], "--figure draws the accuracy-vs-eps curve"),
    (["evaluate", "--model", "m.npz", "--eps-grid", ","], "expected comma-separated radii"),
    (["attack", "--model", "m.npz", "--out", "."], "--out .: is a folder"),
])
def test_bad_outputs_and_ignored_flags_are_one_line_errors_before_any_work(tmp_path, args, message):
    (tmp_path / "README.md").write_text("a file")
    t0 = time.perf_counter()
    out = cli(*args, cwd=tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    assert message in out.stderr and "Traceback" not in out.stderr
    assert time.perf_counter() - t0 < 30  # refused at once, not after the work
    assert not (tmp_path / "README.md").is_dir() and (tmp_path / "README.md").read_text() == "a file"


def test_attack_out_in_a_new_folder_and_truncated_adv_set(tmp_path):
    model = tmp_path / "m.npz"
    checkpoint.save(model, nets.paper_mnist(seed=0, mean=0.3, std=0.3))
    out = cli("attack", "--model", str(model), "--dataset", "synthetic", "--n-test", "10", "--out",
              str(tmp_path / "no" / "dir" / "a.npz"))
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "no" / "dir" / "a.npz").exists()
    (tmp_path / "cut.npz").write_bytes((tmp_path / "no" / "dir" / "a.npz").read_bytes()[:300])
    out = cli("evaluate", "--model", str(model), "--dataset", "synthetic", "--n-test", "10", "--adv-set",
              str(tmp_path / "cut.npz"))
    assert out.returncode == 2 and "not a readable adversarial set" in out.stderr and "Traceback" not in out.stderr


def test_train_piped_into_head_still_saves_its_model(tmp_path):
    cmd = (f"{sys.executable} -m minirobust.cli train {' '.join(SYNTH)} --epochs 2 --out {tmp_path / 'run'} "
           "| head -1")
    out = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "BrokenPipe" not in out.stderr and (tmp_path / "run" / "model.npz").exists()


def test_an_adversarial_set_is_written_atomically(tmp_path, monkeypatch):
    # a writer killed mid-save leaves the previous set whole (no partial .npz that every rerun trips on)
    import numpy as np

    from minirobust.robust import AdversarialSet

    path = tmp_path / "sets" / "amnist.npz"
    first = AdversarialSet(np.zeros((2, 1, 4, 4), np.float32), np.array([0, 1]), np.array([0, 1]),
                           np.array(["inf", "inf"]), np.array([0.1, 0.2]))
    first.save(path)

    def killed(f, **arrays):
        f.write(b"PK\x03\x04 half an archive")
        raise KeyboardInterrupt  # the driver dies mid-write

    monkeypatch.setattr(np, "savez_compressed", killed)
    with pytest.raises(KeyboardInterrupt):
        first.save(path)
    monkeypatch.undo()
    again = AdversarialSet.load(path)
    assert len(again.y) == 2 and list(path.parent.iterdir()) == [path]


def test_reproduce_never_clears_a_run_folder_another_run_holds(tmp_path):
    # issue 28 item 1: without --resume, reproduce started each net's folder afresh by deleting it,
    # lock or not; now it clears under the folder's lock and a held folder stops it in one line
    from minirobust.errors import TrainingError
    from minirobust.robust.run_folder import RunFolder

    folder = RunFolder(tmp_path / "baseline")
    folder.path.mkdir()
    (folder.path / "metrics.jsonl").write_text('{"epoch": 1}\n')
    holder = RunFolder(folder.path)
    with holder.lock():  # another process's training, as far as flock can tell
        with pytest.raises(TrainingError, match="in use by another training run"):
            RunFolder(folder.path).clear()
    assert (folder.path / "metrics.jsonl").exists()
    folder.clear()
    assert [p.name for p in folder.path.iterdir()] == [".lock"]


def test_devices_and_fifos_are_refused_before_they_are_read(tmp_path):
    # issue 28 item 10: a model or data file linked to /dev/zero read until memory ran out; a FIFO hung
    import os

    from minirobust import checkpoint
    from minirobust.data.cifar import read_cifar10_batch
    from minirobust.data.idx import read_idx
    from minirobust.errors import CheckpointError, DataError

    zero = tmp_path / "zero.npz"
    zero.symlink_to("/dev/zero")
    fifo = tmp_path / "fifo.bin"
    os.mkfifo(fifo)
    for path in (zero, fifo):
        with pytest.raises(CheckpointError, match="not a regular file"):
            checkpoint.load(path)
        with pytest.raises(DataError, match="not a regular file"):
            read_idx(path)
        with pytest.raises(DataError, match="not a regular file"):
            read_cifar10_batch(path)


def test_more_cli_misuse_is_one_line(tmp_path):
    # issue 28 item 13: width bound, single-pixel with --norm, a report to a full disk, an oversized batch
    import subprocess
    import sys

    import numpy as np

    from minirobust import checkpoint, nets
    from minirobust.data import parse_cifar10_batch
    from minirobust.errors import DataError

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "minirobust.cli", *args], capture_output=True, text=True,
                              timeout=120)

    for width in ("1000", "1e30"):
        out = cli("reproduce", "cifar10", "--quick", "--width", width, "--data-dir", str(tmp_path / "none"),
                  "--results-dir", str(tmp_path / "r"), "--runs-dir", str(tmp_path / "runs"))
        assert out.returncode == 2 and "width" in out.stderr and "Traceback" not in out.stderr, out.stderr
    model = tmp_path / "m.npz"
    checkpoint.save(model, nets.paper_mnist(seed=0))
    synthetic = ("--dataset", "synthetic", "--n-test", "20")
    out = cli("attack", *synthetic, "--model", str(model), "--method", "single-pixel", "--norm", "2")
    assert out.returncode == 2 and "takes no --norm" in out.stderr
    if Path("/dev/full").exists():
        out = cli("evaluate", *synthetic, "--model", str(model), "--out", "/dev/full")
        assert out.returncode == 2 and "cannot write the report" in out.stderr and "Traceback" not in out.stderr
    record = np.zeros(3073, np.uint8).tobytes()
    with pytest.raises(DataError, match="holds at most 10,000"):
        parse_cifar10_batch(record * 20000, "big.bin")


def test_layer_settings_of_an_untrusted_checkpoint_are_bounded(tmp_path):
    # issue 28 item 8: padding 100000 asked for 73 TiB at the first forward pass; a pool kernel of 1e9
    # was a ValueError traceback
    from minirobust import checkpoint, nets
    from minirobust.errors import CheckpointError

    for layer_index, key, value in ((1, "padding", [100000, 100000]), (3, "kernel_size", [10**9, 10**9]),
                                    (1, "stride", [0, 1])):
        path = tmp_path / f"{key}.npz"
        checkpoint.save(path, nets.paper_mnist(seed=0))
        with np.load(path) as z:
            arrays = dict(z)
        meta = json.loads(arrays["__meta__"].tobytes())
        meta["model"]["layers"][layer_index][key] = value
        arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
        np.savez(path, **arrays)
        with pytest.raises(CheckpointError, match=key):
            checkpoint.load(path)


def test_unused_optimizer_members_are_never_decompressed(tmp_path, monkeypatch):
    # issue 28 item 9: a 2 MB model with a zip-bomb "opt:x" member took evaluate to 3.8 GB
    from minirobust import checkpoint, nets, npzfile

    path = tmp_path / "m.npz"
    checkpoint.save(path, nets.paper_mnist(seed=0))
    with np.load(path) as z:
        arrays = dict(z)
    arrays["opt:velocity/bomb"] = np.zeros(10**7, np.float32)  # 40 MB of zeros, a few kB compressed
    np.savez_compressed(path, **arrays)
    read = []
    original = npzfile.NpzReader.read
    monkeypatch.setattr(npzfile.NpzReader, "read", lambda self, name: read.append(name) or original(self, name))
    checkpoint.load(path)
    assert read and not any(name.startswith("opt:") for name in read)


def test_mismatched_parameter_names_name_the_file(tmp_path):
    from minirobust import checkpoint, nets
    from minirobust.errors import CheckpointError

    path = tmp_path / "renamed.npz"
    checkpoint.save(path, nets.paper_mnist(seed=0))
    with np.load(path) as z:
        arrays = {("param:1_conv2d.Wx" if k == "param:1_conv2d.W" else k): v for k, v in z.items()}
    np.savez(path, **arrays)
    with pytest.raises(CheckpointError, match=r"renamed\.npz: state dict does not match"):
        checkpoint.load(path)
