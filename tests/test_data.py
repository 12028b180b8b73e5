"""Datasets: real MNIST from the local folder, downloads over real HTTP, bad files, CIFAR layout."""

from __future__ import annotations

import gzip
import http.server
import shutil
import struct
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minirobust.data import datasets as ds
from minirobust.data import (
    dataset_stats,
    iterate_minibatches,
    load_cifar10,
    load_mnist,
    parse_cifar10_batch,
    parse_idx,
    read_idx,
    to_float,
    train_val_split,
)
from minirobust.errors import DataError

from .conftest import SHARED_DATA

MNIST_DIR = SHARED_DATA / "mnist"
needs_mnist = pytest.mark.skipif(not (MNIST_DIR / "train-images-idx3-ubyte.gz").exists(),
                                 reason=f"real MNIST files not found in {MNIST_DIR}")
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]  # published label counts
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Each test gets its own user cache (the .npy cache goes there)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


def idx_bytes(arr: np.ndarray, code=0x08) -> bytes:
    header = bytes([0, 0, code, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    return header + arr.astype(ds.np.dtype(">u1") if code == 0x08 else arr.dtype).tobytes()


# ----- real MNIST ------------------------------------------------------------------------------

@needs_mnist
def test_real_mnist_loads_and_is_verified():
    d = load_mnist(SHARED_DATA, download=False)
    assert d.x_train.shape == (60000, 1, 28, 28) and d.x_test.shape == (10000, 1, 28, 28)
    assert d.x_train.dtype == np.uint8 and d.y_train.dtype == np.int64
    assert np.bincount(d.y_train).tolist() == TRAIN_COUNTS
    assert np.bincount(d.y_test).tolist() == TEST_COUNTS
    mean, std = dataset_stats(d.x_train)
    assert abs(mean - 0.1307) < 1e-3 and abs(std - 0.3081) < 1e-3
    # the constants in the code are the published ones
    published = dict(line.split()[::-1] for line in (MNIST_DIR / "SHA256SUMS.raw").read_text().splitlines())
    for fname, sha in ds.MNIST_FILES.values():
        assert published[fname[:-3]] == sha


@needs_mnist
def test_second_load_uses_verified_npy_cache(monkeypatch):
    first = load_mnist(SHARED_DATA, download=False)
    calls = []
    real = ds.read_idx_bytes
    monkeypatch.setattr(ds, "read_idx_bytes", lambda p, limit=None: calls.append(p) or real(p, limit))
    second = load_mnist(SHARED_DATA, download=False)
    assert calls == []  # no gz file re-read
    assert np.array_equal(first.x_train, second.x_train) and np.array_equal(first.y_test, second.y_test)
    # a tampered cache entry is detected by its checksum and rebuilt from the source
    cache = ds.npy_cache_dir(SHARED_DATA / "mnist") / "t10k-labels-idx1-ubyte.gz.npy"
    blob = bytearray(cache.read_bytes())
    blob[-1] ^= 0xFF
    cache.write_bytes(bytes(blob))
    third = load_mnist(SHARED_DATA, download=False)
    assert len(calls) == 1 and np.array_equal(third.y_test, first.y_test)


@needs_mnist
def test_checksum_mismatch_on_local_file(tmp_path):
    folder = tmp_path / "mnist"
    shutil.copytree(MNIST_DIR, folder)
    labels = gzip.decompress((folder / "t10k-labels-idx1-ubyte.gz").read_bytes())
    tampered = labels[:-1] + bytes([(labels[-1] + 1) % 10])  # still a valid IDX file
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(tampered))
    with pytest.raises(DataError, match="t10k-labels.*checksum mismatch"):
        load_mnist(tmp_path, download=False)


def test_missing_files_without_download(tmp_path):
    with pytest.raises(DataError, match="MNIST files missing.*data fetch mnist"):
        load_mnist(tmp_path, download=False)


def test_data_root_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIROBUST_DATA", str(tmp_path / "env"))
    assert ds.data_root(tmp_path / "explicit") == tmp_path / "explicit"
    assert ds.data_root() == tmp_path / "env"
    monkeypatch.delenv("MINIROBUST_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert ds.data_root() == tmp_path / "xdg" / "minirobust"


# ----- downloads over real HTTP on 127.0.0.1 ---------------------------------------------------

class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict = {}  # path -> bytes

    def log_message(self, *args):
        pass

    def do_GET(self):
        kind, _, name = self.path.strip("/").partition("/")
        body = self.files.get(name)
        if kind == "slowheaders":  # the status line and headers a byte every 0.2 s, never finished in time
            try:
                for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Padding: " + b"a" * 400:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(0.2)
            except OSError:
                pass
            return
        if kind == "missing" or body is None:
            self.send_error(404)
            return
        if kind == "corrupt":
            raw = bytearray(gzip.decompress(body))
            raw[-1] ^= 0x01
            body = gzip.compress(bytes(raw), compresslevel=1)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if kind == "trickle":  # a byte at a time, slowly (a hostile or broken server)
            for i in range(len(body)):
                try:
                    self.wfile.write(body[i : i + 1])
                    self.wfile.flush()
                except OSError:
                    return
                time.sleep(0.05)
            return
        if kind == "cut":  # half the body, then the connection drops
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture
def server():
    files = {}
    if MNIST_DIR.exists():
        files = {p.name: p.read_bytes() for p in MNIST_DIR.glob("*.gz")}
    handler = type("Handler", (_Handler,), {"files": files})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _leftovers(folder: Path):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@needs_mnist
def test_download_success_then_load(server, tmp_path):
    d = load_mnist(tmp_path, urls=[f"{server}/ok/"], log=lambda *_: None)
    assert d.x_train.shape[0] == 60000
    assert _leftovers(tmp_path / "mnist") == sorted(f for f, _ in ds.MNIST_FILES.values())


@needs_mnist
def test_mirror_fallback_after_404(server, tmp_path):
    messages = []
    ds.fetch_mnist(tmp_path, urls=[f"{server}/missing/", f"{server}/ok/"], log=messages.append)
    assert len(messages) == 4 and all("/ok/" in m for m in messages)


@needs_mnist
def test_checksum_mismatch_leaves_nothing(server, tmp_path):
    with pytest.raises(DataError, match="checksum mismatch"):
        ds.fetch_mnist(tmp_path, urls=[f"{server}/corrupt/"], log=None)
    assert _leftovers(tmp_path / "mnist") == []


@needs_mnist
def test_connection_cut_leaves_no_partial_file(server, tmp_path):
    with pytest.raises(DataError, match="could not download"):
        ds.fetch_mnist(tmp_path, urls=[f"{server}/cut/"], log=None)
    assert _leftovers(tmp_path / "mnist") == []
    # the next mirror is tried after a cut
    ds.fetch_mnist(tmp_path, urls=[f"{server}/cut/", f"{server}/ok/"], log=None)
    assert len(_leftovers(tmp_path / "mnist")) == 4


@needs_mnist
def test_a_trickling_server_is_given_up_and_stale_parts_are_cleaned(server, tmp_path, monkeypatch):
    from minirobust.data import download

    monkeypatch.setattr(download, "GRACE_S", 0.5)
    folder = tmp_path / "mnist"
    folder.mkdir()
    stale = folder / "train-images-idx3-ubyte.gz.part-killed"  # what a killed fetch leaves
    stale.write_bytes(b"half a file")
    t0 = time.monotonic()
    with pytest.raises(DataError, match="below the minimum"):
        ds.fetch_mnist(tmp_path, urls=[f"{server}/trickle/"], log=None)
    assert time.monotonic() - t0 < 20
    assert _leftovers(folder) == []  # the stale part is gone, and the trickle left none
    monkeypatch.setattr(download, "DEADLINE_S", 0.3)
    monkeypatch.setattr(download, "MIN_RATE", 0)
    with pytest.raises(DataError, match="still running after"):
        ds.fetch_mnist(tmp_path, urls=[f"{server}/trickle/"], log=None)


def test_a_server_trickling_its_headers_is_stopped_at_the_deadline(server, tmp_path, monkeypatch):
    # issue 28 item 12: the per-read timeout never fired, and the deadline only covered the body
    from minirobust.data import download

    monkeypatch.setattr(download, "DEADLINE_S", 1.5)
    t0 = time.monotonic()
    with pytest.raises(DataError, match="no response from the server within"):
        ds.fetch_mnist(tmp_path, urls=[f"{server}/slowheaders/"], log=None)
    assert time.monotonic() - t0 < 15


def test_fetch_into_a_file_is_a_one_line_error(tmp_path):
    (tmp_path / "README.md").write_text("not a folder")
    with pytest.raises(DataError, match="cannot create"):
        ds.fetch_mnist(tmp_path / "README.md", urls=["http://127.0.0.1:9/"], log=None)


def test_all_mirrors_failing_lists_each(server, tmp_path):
    with pytest.raises(DataError) as info:
        ds.download_verified([f"{server}/missing/a", f"{server}/missing/b"], tmp_path / "a", "0" * 64)
    assert "missing/a" in str(info.value) and "missing/b" in str(info.value) and "404" in str(info.value)


# ----- bad files -------------------------------------------------------------------------------

def test_idx_round_trip_and_gzip(tmp_path):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a.idx").write_bytes(idx_bytes(arr))
    (tmp_path / "a.idx.gz").write_bytes(gzip.compress(idx_bytes(arr)))
    assert np.array_equal(read_idx(tmp_path / "a.idx"), arr)
    assert np.array_equal(read_idx(tmp_path / "a.idx.gz"), arr)
    f = np.arange(6, dtype=">f4").reshape(2, 3)
    assert np.array_equal(parse_idx(bytes([0, 0, 0x0D, 2, 0, 0, 0, 2, 0, 0, 0, 3]) + f.tobytes()), f)


@pytest.mark.parametrize("data, match", [
    (b"\x00\x00\x07\x01\x00\x00\x00\x01\x05", "wrong IDX magic"),
    (b"\x12\x34\x08\x01\x00\x00\x00\x01\x05", "wrong IDX magic"),
    (b"\x00\x00\x08\x03\x00\x00\x00\x02\x00\x00\x00\x02\x00\x00\x00\x02" + bytes(7), "truncated data"),
    (b"\x00\x00\x08\x02\x00\x00", "truncated IDX header"),
    (b"\x00\x00\x08\x01\x00\x00\x00\x01\x05\x06", "unexpected bytes"),
    (b"\x00\x00\x08\x01\xff\xff\xff\xff", "truncated data"),  # a huge claim: no allocation
    (b"\x00\x00", "too short"),
])
def test_bad_idx(data, match):
    with pytest.raises(DataError, match=match):
        parse_idx(data, "bad.idx")


def test_bad_idx_names_the_file(tmp_path):
    (tmp_path / "labels.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x09\x01"))
    with pytest.raises(DataError, match=r"labels\.gz: truncated data"):
        read_idx(tmp_path / "labels.gz")
    (tmp_path / "cut.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x64" + bytes(100))[:20])
    with pytest.raises(DataError, match=r"cut\.gz: corrupt or truncated gzip"):
        read_idx(tmp_path / "cut.gz")


def _write_fake_mnist(folder: Path, n_train=5, n_test=3, label_fix=None):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    parts = {"train": n_train, "test": n_test}
    for key, (fname, _) in ds.MNIST_FILES.items():
        split, what = key.split("_")
        n = parts[split]
        arr = rng.integers(0, 256, (n, 28, 28)) if what == "images" else rng.integers(0, 10, n)
        if label_fix and what == "labels":
            arr = label_fix(arr)
        (folder / fname).write_bytes(gzip.compress(idx_bytes(arr.astype(np.uint8))))


@pytest.mark.parametrize("label_fix, match", [
    (lambda a: a[:-1], "5 images but 4 labels"),
    (lambda a: np.where(np.arange(len(a)) == 0, 12, a), "labels out of range"),
])
def test_inconsistent_mnist_files(tmp_path, monkeypatch, label_fix, match):
    _write_fake_mnist(tmp_path / "mnist", label_fix=label_fix)
    monkeypatch.setattr(ds, "_decode_mnist_file", lambda path, sha: read_idx(path))  # skip checksums
    with pytest.raises(DataError, match=match):
        load_mnist(tmp_path, download=False, cache=False)


def test_cifar_wrong_record_length():
    with pytest.raises(DataError, match="3073-byte CIFAR-10 records"):
        parse_cifar10_batch(bytes(3073 * 2 + 5), "data_batch_1.bin")
    bad_label = bytearray(3073)
    bad_label[0] = 10
    with pytest.raises(DataError, match="label 10 out of range"):
        parse_cifar10_batch(bytes(bad_label))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_readers_never_crash_on_random_bytes(data):
    for parse in (parse_idx, parse_cifar10_batch):
        try:
            parse(data)
        except DataError:
            pass


@settings(max_examples=150, deadline=None)
@given(st.binary(min_size=1, max_size=64), st.integers(0, 255), st.integers(1, 4))
def test_idx_reader_random_headers_and_gzip(body, code, ndim):
    header = bytes([0, 0, code, ndim]) + body
    for data in (header, gzip.compress(header)[: max(len(header) // 2, 3)]):
        try:
            from minirobust.data.idx import gunzip_if_needed

            parse_idx(gunzip_if_needed(data, "x"))
        except DataError:
            pass


# ----- CIFAR-10 layout ---------------------------------------------------------------------------

def _cifar_record(label, r, g, b):
    return bytes([label]) + r.tobytes() + g.tobytes() + b.tobytes()


def test_cifar_layout_channel_order_and_row_major(tmp_path):
    folder = tmp_path / "cifar10" / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    pix = np.arange(1024, dtype=np.uint32)
    red = (pix % 256).astype(np.uint8).reshape(32, 32)  # varies along rows: checks row-major
    green = np.full((32, 32), 100, np.uint8)
    blue = np.full((32, 32), 200, np.uint8)
    for i, name in enumerate(ds.CIFAR10_TRAIN + ds.CIFAR10_TEST):
        records = [_cifar_record((i + k) % 10, red, green, blue) for k in range(3)]
        (folder / name).write_bytes(b"".join(records))
    (folder / ds.CIFAR10_META).write_text("\n".join(
        ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]) + "\n\n")
    d = load_cifar10(tmp_path, download=False)
    assert d.x_train.shape == (15, 3, 32, 32) and d.x_test.shape == (3, 3, 32, 32)
    assert d.x_train.dtype == np.uint8 and d.y_train.dtype == np.int64
    x = d.x_train[0]
    assert x[0, 0, 5] == 5 and x[0, 1, 0] == 32 and x[0, 7, 31] == (7 * 32 + 31) % 256  # R, row-major
    assert (x[1] == 100).all() and (x[2] == 200).all()  # G then B planes
    assert d.y_train[:6].tolist() == [0, 1, 2, 1, 2, 3] and d.classes[0] == "airplane"
    mean, std = dataset_stats(d.x_train, per_channel=True)
    assert len(mean) == 3 and abs(mean[1] - 100 / 255) < 1e-9


def test_cifar_extraction_from_archive(tmp_path):
    import io
    import tarfile

    buf = io.BytesIO()
    rec = _cifar_record(3, *(np.zeros((32, 32), np.uint8),) * 3)
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name in ds.CIFAR10_TRAIN + ds.CIFAR10_TEST + [ds.CIFAR10_META]:
            data = (rec * 10000) if name.endswith(".bin") else b"\n".join(b"c%d" % i for i in range(10))
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        evil = tarfile.TarInfo("../evil.txt")
        evil.size = 1
        tar.addfile(evil, io.BytesIO(b"x"))
    base = tmp_path / "cifar10"
    base.mkdir()
    (base / ds.CIFAR10_ARCHIVE).write_bytes(buf.getvalue())
    ds._extract_cifar(base / ds.CIFAR10_ARCHIVE, base / ds.CIFAR10_DIR)
    assert not (tmp_path / "evil.txt").exists()
    d = load_cifar10(tmp_path, download=False)
    assert d.x_train.shape == (50000, 3, 32, 32) and set(d.y_test.tolist()) == {3}
    # a file changed after extraction no longer matches the manifest
    f = base / ds.CIFAR10_DIR / "test_batch.bin"
    data = bytearray(f.read_bytes())
    data[5] = 1
    f.write_bytes(bytes(data))
    with pytest.raises(DataError, match="checksum mismatch"):
        load_cifar10(tmp_path, download=False)


# ----- conversion, splits, batches ---------------------------------------------------------------

def test_to_float_and_split():
    x = np.arange(20, dtype=np.uint8).reshape(20, 1, 1, 1) * 12
    f = to_float(x)
    assert f.dtype == np.float32 and f.max() <= 1.0 and np.isclose(f[1, 0, 0, 0], 12 / 255)
    with pytest.raises(DataError, match="uint8"):
        to_float(f)
    y = np.arange(20)
    a = train_val_split(x, y, 5, seed=1)
    b = train_val_split(x, y, 5, seed=1)
    assert all(np.array_equal(p, q) for p, q in zip(a, b))
    assert len(a[0]) == 15 and len(a[2]) == 5 and not set(a[1]) & set(a[3])


def test_batches_seeded_and_last_batch_policy():
    x, y = np.arange(10, dtype=np.float32).reshape(10, 1), np.arange(10)
    first = [yb.tolist() for _, yb in iterate_minibatches(x, y, 4, rng=3)]
    again = [yb.tolist() for _, yb in iterate_minibatches(x, y, 4, rng=3)]
    assert first == again and [len(b) for b in first] == [4, 4, 2]
    assert sorted(sum(first, [])) == list(range(10))
    dropped = [yb.tolist() for _, yb in iterate_minibatches(x, y, 4, rng=3, last_batch="drop")]
    assert dropped == first[:2]
    ordered = [yb.tolist() for _, yb in iterate_minibatches(x, y, 4, shuffle=False)]
    assert ordered[0] == [0, 1, 2, 3]


def test_an_existing_cifar_archive_is_verified_and_its_members_sized_before_reading(tmp_path):
    # issue 28 item 11: an archive already in place was extracted without its checksum, and each
    # member read whole before its size was checked (a 6.5 MB archive with a 1.5 GB member)
    import io
    import tarfile

    base = tmp_path / "cifar10"
    base.mkdir()
    (base / ds.CIFAR10_ARCHIVE).write_bytes(b"not the archive")
    with pytest.raises(DataError, match="not the CIFAR-10 archive"):
        ds.fetch_cifar10(tmp_path, urls=["http://127.0.0.1:9/"], log=None)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo(f"cifar-10-batches-bin/{ds.CIFAR10_TRAIN[0]}")
        info.size = 200 * 10**6  # declared; a reader that trusts it would decompress 200 MB of zeros
        tar.addfile(info, io.BytesIO(bytes(info.size)))
    archive = tmp_path / "bomb.tar.gz"
    archive.write_bytes(buf.getvalue())
    with pytest.raises(DataError, match="declares 200,000,000 bytes"):
        ds._extract_cifar(archive, tmp_path / "out")
