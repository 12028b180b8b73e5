"""The project's own error types.

Every error that minirobust raises on purpose derives from ``MinirobustError`` so a
user can catch "anything this library complained about" in one ``except``. The
subclasses also derive from the closest built-in error (ValueError, RuntimeError,
TypeError) so ordinary code that catches those keeps working.
"""


class MinirobustError(Exception):
    """Base class of every error minirobust raises deliberately."""


class InputError(MinirobustError, ValueError):
    """An array given to a layer, loss, model or attack is unusable (shape, dtype, NaN, empty)."""


class BackendError(MinirobustError, RuntimeError):
    """The requested backend is unknown or cannot run here (no cupy, no CUDA device)."""


class BackendMismatchError(MinirobustError, TypeError):
    """NumPy (host) and CuPy (device) arrays were mixed in one operation."""


class DataError(MinirobustError, ValueError):
    """A dataset file is missing, corrupt, truncated or fails its checksum."""


class CheckpointError(MinirobustError, ValueError):
    """A checkpoint file is missing, corrupt or does not match the model."""


class TrainingError(MinirobustError, RuntimeError):
    """Training cannot go on (for example the loss became NaN or inf)."""
