"""Datasets: readers, download with checksums, splits and minibatches."""

from .batches import iterate_minibatches
from .cifar import parse_cifar10_batch, read_cifar10_batch
from .datasets import (
    DATASETS,
    Dataset,
    data_root,
    dataset_stats,
    fetch_dataset,
    load_cifar10,
    load_dataset,
    load_mnist,
    to_float,
    train_val_split,
)
from .idx import parse_idx, read_idx
from .synthetic import separable_images

__all__ = [
    "DATASETS", "Dataset", "data_root", "dataset_stats", "fetch_dataset", "iterate_minibatches",
    "load_cifar10", "load_dataset", "load_mnist", "parse_cifar10_batch", "parse_idx",
    "read_cifar10_batch", "read_idx", "separable_images", "to_float", "train_val_split",
]
