"""Datasets: readers, download with checksums, splits and minibatches."""

from .batches import iterate_minibatches
from .synthetic import separable_images

__all__ = ["iterate_minibatches", "separable_images"]
