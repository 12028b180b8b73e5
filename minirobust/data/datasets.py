"""MNIST and CIFAR-10: where they live, fetching them, loading them, splitting them.

Where data comes from, in this order:
    1. ``data_dir=`` (the CLI's ``--data-dir``)
    2. the environment variable ``MINIROBUST_DATA``
    3. the user cache: ``$XDG_CACHE_HOME/minirobust`` or ``~/.cache/minirobust``
Inside it: ``mnist/<the four canonical .gz files>`` and
``cifar10/cifar-10-batches-bin/<data_batch_1..5.bin, test_batch.bin, batches.meta.txt>``.
Missing files are downloaded (``download=True``) from the canonical source, then mirrors,
and verified before they are put in place.

Images come out as uint8 (N, C, H, W) and labels as int64 (N,); ``to_float`` is the one
explicit step to float32 in [0, 1].
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..atomic import write_atomic
from ..errors import DataError
from ..npzfile import require_regular_file
from .cifar import RECORD, parse_cifar10_batch, read_batch_bytes, read_label_names
from .download import download_verified, sha256_bytes
from .idx import parse_idx, read_idx_bytes

# ----- the published files ------------------------------------------------------------------

MNIST_URLS = [  # canonical first, then the usual public mirrors
    "http://yann.lecun.com/exdb/mnist/",
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
]
# SHA-256 of each UNCOMPRESSED file (the .gz wrappers differ between mirrors; the content does not)
MNIST_FILES = {
    "train_images": ("train-images-idx3-ubyte.gz", "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
    "train_labels": ("train-labels-idx1-ubyte.gz", "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
    "test_images": ("t10k-images-idx3-ubyte.gz", "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
    "test_labels": ("t10k-labels-idx1-ubyte.gz", "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
}
MNIST_CLASSES = [str(i) for i in range(10)]

CIFAR10_URLS = [
    "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
]
CIFAR10_ARCHIVE = "cifar-10-binary.tar.gz"
# SHA-256 of the archive (170,052,171 bytes; the authors publish its MD5
# c32a1d4ab5d03f1284b67883e8d87530). The archive pins every member's content; after a
# verified extraction we record each member's SHA-256 in MANIFEST.sha256 and check it on load.
CIFAR10_ARCHIVE_SHA256 = "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd"
CIFAR10_DIR = "cifar-10-batches-bin"
CIFAR10_TRAIN = [f"data_batch_{i}.bin" for i in range(1, 6)]
CIFAR10_TEST = ["test_batch.bin"]
CIFAR10_META = "batches.meta.txt"
CIFAR10_MANIFEST = "MANIFEST.sha256"

DATASETS = ("mnist", "cifar10")


@dataclass
class Dataset:
    """Train/test images (uint8, NCHW) and labels (int64), plus class names."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: list = field(default_factory=list)

    def __repr__(self):
        return (f"Dataset({self.name}: train {self.x_train.shape} test {self.x_test.shape}, "
                f"{len(self.classes)} classes)")


# ----- locations ------------------------------------------------------------------------------

def user_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "minirobust"


def data_root(data_dir=None) -> Path:
    """The data folder: ``data_dir``, else $MINIROBUST_DATA, else the user cache."""
    if data_dir:
        return Path(data_dir).expanduser()
    env = os.environ.get("MINIROBUST_DATA")
    return Path(env).expanduser() if env else user_cache_dir()


def npy_cache_dir(source_folder: Path) -> Path:
    """Where decoded arrays are cached: in the user cache, keyed by the source folder.

    Never beside the source: data folders may be shared or read-only.
    """
    tag = hashlib.sha256(str(source_folder.resolve()).encode()).hexdigest()[:16]
    return user_cache_dir() / "npy-cache" / tag


# ----- the verified .npy cache -----------------------------------------------------------------

def _cached_array(source: Path, cache_dir: Path, decode):
    """``decode(source)`` -> array, memoised on disk as a checksummed .npy.

    The cache entry is used only when the source file's size and mtime are unchanged and
    the .npy bytes still hash to what was recorded; it is read with allow_pickle=False.
    """
    npy, meta_path = cache_dir / (source.name + ".npy"), cache_dir / (source.name + ".json")
    st = source.stat()
    stamp = {"source": source.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    if npy.exists() and meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text())
            blob = npy.read_bytes()
            if {k: meta.get(k) for k in stamp} == stamp and sha256_bytes(blob) == meta.get("npy_sha256"):
                return np.load(io.BytesIO(blob), allow_pickle=False)
        except (OSError, ValueError):
            pass  # a damaged cache entry is rebuilt below
    arr = decode(source)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        np.save(buf, arr, allow_pickle=False)
        blob = buf.getvalue()
        write_atomic(npy, blob)
        write_atomic(meta_path, json.dumps({**stamp, "npy_sha256": sha256_bytes(blob)}).encode())
    except OSError:
        pass  # caching is an optimisation; a read-only place just means no cache
    return arr


# ----- MNIST -----------------------------------------------------------------------------------

MNIST_MAX_BYTES = 60000 * 28 * 28 + 16  # the largest MNIST file, uncompressed: no file may declare more


def _decode_mnist_file(path: Path, sha256: str) -> np.ndarray:
    data = read_idx_bytes(path, limit=MNIST_MAX_BYTES)
    digest = sha256_bytes(data)
    if digest != sha256:
        raise DataError(f"{path}: checksum mismatch (SHA-256 of the uncompressed file is {digest}, "
                        f"expected {sha256}); delete it to download it again")
    return parse_idx(data, str(path))


def check_pair(images, labels, name, classes, image_shape):
    """Image and label files must agree: same count, expected image shape, labels in range."""
    if labels.ndim != 1:
        raise DataError(f"{name}: labels must be 1-D, got shape {labels.shape}")
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"{name}: {images.shape[0]} images but {labels.shape[0]} labels")
    if tuple(images.shape[1:]) != tuple(image_shape):
        raise DataError(f"{name}: images of shape {images.shape[1:]}, expected {image_shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        raise DataError(f"{name}: labels out of range [{labels.min()}, {labels.max()}], expected 0-{classes - 1}")


def fetch_mnist(data_dir=None, urls=None, log=print) -> Path:
    """Make sure the four MNIST files are in ``<root>/mnist``; download what is missing."""
    folder = data_root(data_dir) / "mnist"
    for fname, sha in MNIST_FILES.values():
        if not (folder / fname).exists():
            download_verified([u + fname for u in (urls or MNIST_URLS)], folder / fname, sha, log=log)
    return folder


def load_mnist(data_dir=None, download=True, urls=None, cache=True, log=print) -> Dataset:
    """MNIST: 60,000 train and 10,000 test images, uint8 (N, 1, 28, 28), labels int64."""
    folder = data_root(data_dir) / "mnist"
    missing = [f for f, _ in MNIST_FILES.values() if not (folder / f).exists()]
    if missing:
        if not download:
            raise DataError(f"MNIST files missing in {folder}: {', '.join(missing)} "
                            "(run `minirobust data fetch mnist`, or point --data-dir / MINIROBUST_DATA at them)")
        fetch_mnist(data_dir, urls=urls, log=log)
    cache_dir = npy_cache_dir(folder) if cache else None
    arrays = {}
    for key, (fname, sha) in MNIST_FILES.items():
        def decode(path, sha=sha):
            return _decode_mnist_file(path, sha)
        src = folder / fname
        arrays[key] = _cached_array(src, cache_dir, decode) if cache else decode(src)
    out = {}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"].astype(np.int64)
        if images.ndim != 3:
            raise DataError(f"{folder}: MNIST {split} images must be (N, 28, 28), got {images.shape}")
        check_pair(images, labels, f"MNIST {split} ({folder})", 10, (28, 28))
        out[split] = (images.reshape(-1, 1, 28, 28).astype(np.uint8), labels)
    return Dataset("mnist", *out["train"], *out["test"], classes=MNIST_CLASSES)


# ----- CIFAR-10 --------------------------------------------------------------------------------

def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _extract_cifar(archive: Path, folder: Path):
    """Extract only the expected regular files, by exact name (no path traversal, no links)."""
    wanted = CIFAR10_TRAIN + CIFAR10_TEST + [CIFAR10_META]
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = {m.name: m for m in tar.getmembers()}
            for name in wanted:
                member = members.get(f"{CIFAR10_DIR}/{name}")
                if member is None or not member.isfile():
                    raise DataError(f"{archive}: no regular file {CIFAR10_DIR}/{name} in the archive")
                expected = 10000 * RECORD if name.endswith(".bin") else 4096
                if (name.endswith(".bin") and member.size != expected) or member.size > expected:
                    # from the member's header, before a byte of it is decompressed
                    raise DataError(f"{archive}: {name} declares {member.size:,} bytes, expected "
                                    f"{'' if name.endswith('.bin') else 'at most '}{expected:,}")
                data = tar.extractfile(member).read(expected + 1)
                if len(data) != member.size:
                    raise DataError(f"{archive}: {name} holds {len(data):,} bytes, its header says {member.size:,}")
                write_atomic(folder / name, data)
                manifest[name] = sha256_bytes(data)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DataError(f"{archive}: corrupt archive ({exc})") from exc
    write_atomic(folder / CIFAR10_MANIFEST, "".join(f"{h}  {n}\n" for n, h in manifest.items()).encode())


def fetch_cifar10(data_dir=None, urls=None, log=print) -> Path:
    """Make sure the CIFAR-10 binary files are in ``<root>/cifar10/cifar-10-batches-bin``."""
    base = data_root(data_dir) / "cifar10"
    folder = base / CIFAR10_DIR
    if all((folder / n).exists() for n in CIFAR10_TRAIN + CIFAR10_TEST + [CIFAR10_META]):
        return folder
    archive = base / CIFAR10_ARCHIVE
    if not archive.exists():
        download_verified(urls or CIFAR10_URLS, archive, CIFAR10_ARCHIVE_SHA256, checksum_of="file", log=log)
    else:  # an archive already there (a copy, an earlier run) is verified like a fresh download
        require_regular_file(archive, DataError, "CIFAR-10 archive")
        digest = _file_sha256(archive)
        if digest != CIFAR10_ARCHIVE_SHA256:
            raise DataError(f"{archive}: SHA-256 {digest}, expected {CIFAR10_ARCHIVE_SHA256}: not the CIFAR-10 "
                            "archive (delete it to download it again)")
    _extract_cifar(archive, folder)
    return folder


def _read_manifest(folder: Path) -> dict:
    path = folder / CIFAR10_MANIFEST
    if not path.exists():
        return {}
    out = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            out[parts[1]] = parts[0]
    return out


def load_cifar10(data_dir=None, download=True, urls=None, log=print) -> Dataset:
    """CIFAR-10 (binary version): uint8 (N, 3, 32, 32) images, int64 labels, class names."""
    base = data_root(data_dir) / "cifar10"
    folder = base / CIFAR10_DIR
    needed = CIFAR10_TRAIN + CIFAR10_TEST + [CIFAR10_META]
    missing = [n for n in needed if not (folder / n).exists()]
    if missing:
        if not download:
            raise DataError(f"CIFAR-10 files missing in {folder}: {', '.join(missing)} "
                            "(run `minirobust data fetch cifar10`)")
        fetch_cifar10(data_dir, urls=urls, log=log)
    manifest = _read_manifest(folder)

    def read(name):
        data = read_batch_bytes(folder / name)
        if name in manifest and sha256_bytes(data) != manifest[name]:
            raise DataError(f"{folder / name}: checksum mismatch with {CIFAR10_MANIFEST}")
        return parse_cifar10_batch(data, str(folder / name))

    parts = [read(n) for n in CIFAR10_TRAIN]
    x_train, y_train = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    x_test, y_test = read(CIFAR10_TEST[0])
    return Dataset("cifar10", x_train, y_train, x_test, y_test, classes=read_label_names(folder / CIFAR10_META))


def _dataset_functions(name: str):
    table = {"mnist": (load_mnist, fetch_mnist), "cifar10": (load_cifar10, fetch_cifar10)}
    if name not in table:
        raise DataError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")
    return table[name]


def load_dataset(name: str, data_dir=None, download=True, log=print) -> Dataset:
    """``load_mnist`` or ``load_cifar10`` by name."""
    return _dataset_functions(name)[0](data_dir, download=download, log=log)


def fetch_dataset(name: str, data_dir=None, urls=None, log=print) -> Path:
    """``fetch_mnist`` or ``fetch_cifar10`` by name: download and verify what is missing."""
    return _dataset_functions(name)[1](data_dir, urls=urls, log=log)


# ----- from uint8 to training arrays -----------------------------------------------------------

def to_float(images, dtype=np.float32) -> np.ndarray:
    """uint8 pixels -> floats in [0, 1] (the pixel space eps is measured in)."""
    if images.dtype != np.uint8:
        raise DataError(f"to_float expects uint8 images, got {images.dtype}")
    return images.astype(dtype) / dtype(255)


def dataset_stats(images, per_channel=False):
    """(mean, std) of uint8 training images on the [0, 1] scale, for the Normalize layer."""
    x = images.astype(np.float64) / 255.0
    if per_channel:
        axes = (0,) + tuple(range(2, x.ndim))
        return x.mean(axis=axes).tolist(), x.std(axis=axes).tolist()
    return float(x.mean()), float(x.std())


def train_val_split(x, y, n_val: int, seed: int = 0):
    """Carve a validation set of ``n_val`` examples out of the training split, seeded."""
    if not 0 <= n_val < len(x):
        raise DataError(f"n_val must be in [0, {len(x)}), got {n_val}")
    order = np.random.default_rng(seed).permutation(len(x))
    val, train = order[:n_val], order[n_val:]
    return x[train], y[train], x[val], y[val]
