"""Property tests run by test_fuzz.py in a child process under a memory cap (RLIMIT_AS) and a
time cap: random bytes, and random mutations of real checkpoints, IDX files (plain and gzip),
CIFAR-10 batches and adversarial sets, only ever load or raise the project's own error.

Not collected by a plain ``pytest`` run (the name does not start with test_): the cap is
applied to the child process only, so the rest of the suite is not constrained by it.
"""

from __future__ import annotations

import gzip
import io

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minirobust import checkpoint, nets
from minirobust.data import read_cifar10_batch, read_idx
from minirobust.errors import MinirobustError
from minirobust.optim import SGD
from minirobust.robust import AdversarialSet

SETTINGS = settings(max_examples=int(__import__("os").environ.get("FUZZ_EXAMPLES", 120)), deadline=None,
                    suppress_health_check=list(HealthCheck), derandomize=True)


def _checkpoint_bytes(tmp):
    model = nets.tiny_convnet(dtype=np.float32)
    opt = SGD(model, lr=0.1, momentum=0.9)
    x = np.random.default_rng(0).random((2, 1, 8, 8), dtype=np.float32)
    opt.step(model.loss_and_grads(x, np.array([0, 1]))[1])
    path = checkpoint.save(tmp / "seed.npz", model, opt, epoch=1, rng_state=np.random.default_rng(0).bit_generator.state,
                           history=[{"epoch": 1}])
    return path.read_bytes()


def _idx_bytes():
    arr = np.arange(2 * 5 * 5, dtype=np.uint8).reshape(2, 5, 5)
    return bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in arr.shape) + arr.tobytes()


def _cifar_bytes():
    rng = np.random.default_rng(0)
    return b"".join(bytes([k % 10]) + rng.integers(0, 256, 3072, dtype=np.uint8).tobytes() for k in range(3))


def _adv_set_bytes(tmp):
    aset = AdversarialSet(np.zeros((3, 1, 4, 4), np.float32), np.zeros(3, np.int64), np.arange(3),
                          np.array(["inf"] * 3), np.full(3, 0.1, np.float32))
    aset.save(tmp / "seed_set.npz")
    return (tmp / "seed_set.npz").read_bytes()


mutation = st.lists(st.tuples(st.sampled_from(["flip", "cut", "insert", "zero"]), st.floats(0, 1),
                              st.integers(0, 255)), min_size=1, max_size=6)


def mutate(data: bytes, ops) -> bytes:
    b = bytearray(data)
    for op, where, value in ops:
        i = min(int(where * len(b)), max(len(b) - 1, 0))
        if not b:
            break
        if op == "flip":
            b[i] ^= value or 1
        elif op == "cut":
            del b[i:]
        elif op == "insert":
            b[i:i] = bytes([value]) * (value % 17 + 1)
        else:
            b[i : i + 8] = bytes(min(8, len(b) - i))
    return bytes(b)


def _loads_or_project_error(load, path):
    try:
        load(path)
    except MinirobustError:
        pass  # anything else (a foreign exception, a MemoryError) fails the property


LOADERS = {
    "checkpoint": checkpoint.load,
    "idx": read_idx,
    "cifar": read_cifar10_batch,
    "adversarial set": AdversarialSet.load,
}


def _seeds(tmp):
    return {"checkpoint": _checkpoint_bytes(tmp), "idx": _idx_bytes(), "idx.gz": gzip.compress(_idx_bytes()),
            "cifar": _cifar_bytes(), "adversarial set": _adv_set_bytes(tmp)}


@SETTINGS
@given(kind=st.sampled_from(sorted(LOADERS)), blob=st.binary(max_size=4096))
def test_random_bytes(tmp_path_factory, kind, blob):
    path = tmp_path_factory.mktemp("fuzz") / "f.bin"
    path.write_bytes(blob)
    _loads_or_project_error(LOADERS[kind], path)


@SETTINGS
@given(kind=st.sampled_from(["checkpoint", "idx", "idx.gz", "cifar", "adversarial set"]), ops=mutation)
def test_mutated_real_files(tmp_path_factory, kind, ops):
    tmp = tmp_path_factory.mktemp("fuzz")
    seeds = _seeds(tmp)
    path = tmp / "f.bin"
    path.write_bytes(mutate(seeds[kind], ops))
    _loads_or_project_error(LOADERS[kind.replace(".gz", "")], path)


def test_the_seeds_load():
    import tempfile
    from pathlib import Path

    tmp = Path(tempfile.mkdtemp())
    for kind, blob in _seeds(tmp).items():
        (tmp / kind).write_bytes(blob)
        LOADERS[kind.replace(".gz", "")](tmp / kind)
