"""Gradient-check exercises: write a backward pass (or an ascent step), and get told what is wrong.

    from minirobust.exercises import check, load_exercise
    fn = load_exercise("dense_backward")        # your function, from lessons/exercises/dense_backward.py
    check("dense_backward", fn)                 # prints and returns a Result

The same ``check`` runs in the notebooks, on the command line
(``minirobust exercises check dense_backward``) and in the project's tests. It says which
tensor is wrong, at which index, what finite differences (or the library) expected and what
the function returned, and the error band it expected. ``EXERCISES`` lists them; the stubs are
in ``lessons/exercises/`` and the reference solutions apart, in ``lessons/solutions/``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import signal
import threading
import traceback
from pathlib import Path

from ..errors import InputError
from .catalog import EXERCISES, Exercise
from .checker import BANDS, Mismatch, Result, band

from .isolated import check_in_child  # noqa: E402

__all__ = ["EXERCISES", "Exercise", "Result", "check", "check_file", "check_in_child", "find_exercise_file",
           "load_exercise"]


TIME_LIMIT_S = 60.0  # every check here takes well under a second; a minute means a loop that never ends


class _TimeUp(Exception):
    pass


@contextlib.contextmanager
def _time_limit(seconds):
    """Raise _TimeUp inside the block after ``seconds`` (a SIGALRM timer: it interrupts even a bare
    ``while True: pass``). Only the main thread of a POSIX process can take signals; elsewhere the
    block runs without a limit (``check_in_child`` always has one)."""
    usable = (seconds and hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread())
    if not usable:
        yield
        return

    def time_up(signum, frame):
        raise _TimeUp

    previous = signal.signal(signal.SIGALRM, time_up)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def check(name: str, fn, verbose: bool = True, time_limit: float | None = TIME_LIMIT_S) -> Result:
    """Judge ``fn`` as exercise ``name``; print the verdict (unless ``verbose=False``) and
    return it as a ``Result`` (true when passed). A check still running after ``time_limit``
    seconds is stopped with a message (None: no limit)."""
    exercise = _exercise(name)
    if not callable(fn):
        raise InputError(f"check({name!r}, fn): fn must be a function, got {type(fn).__name__}")
    try:
        with _time_limit(time_limit):
            worst = exercise.judge(fn)
        result = Result(name, True, f"PASSED {name}: every tensor matches (worst relative error {worst:.1e}, "
                                    f"{band(worst)}; {BANDS})", worst)
    except NotImplementedError:
        result = Result(name, False, f"NOT WRITTEN YET {name}: the function still raises NotImplementedError. "
                                     f"Write {exercise.signature}. Hint: {exercise.hint}.")
    except _TimeUp:
        result = Result(name, False, f"FAILED {name}: no verdict within {time_limit:g} s, so the check was stopped: "
                                     f"is there an endless loop in the function{_where_now(fn)}?")
    except Mismatch as wrong:
        result = Result(name, False, f"FAILED {name}: {wrong}. Hint: {exercise.hint}.")
    except Exception as exc:  # the learner's code crashed: say where, not a traceback wall
        result = Result(name, False, f"FAILED {name}: the function raised {type(exc).__name__}: {exc}"
                                     f"{_where(fn, exc)}. It is called as {exercise.signature}.")
    if verbose:
        print(result.message)
    return result


def _where(fn, exc) -> str:
    """' at FILE line N': the last line of the learner's own file in the traceback, if any."""
    code = getattr(fn, "__code__", None)
    if code is None:
        return ""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == code.co_filename]
    return f" at {Path(code.co_filename).name} line {frames[-1].lineno}" if frames else ""


def _where_now(fn) -> str:
    """' (FILE)': the learner's file, for a loop that had to be stopped."""
    code = getattr(fn, "__code__", None)
    return f" ({Path(code.co_filename).name})" if code is not None and code.co_filename.endswith(".py") else ""


def find_exercise_file(name: str, folder=None) -> Path:
    """The learner's file for exercise ``name``: ``<folder>/<name>.py``, by default in
    ./exercises (a notebook in lessons/) or ./lessons/exercises (the repository root)."""
    _exercise(name)
    candidates = [Path(folder)] if folder is not None else [Path("exercises"), Path("lessons") / "exercises"]
    for base in candidates:
        path = base / f"{name}.py"
        if path.is_file():
            return path
    raise InputError(f"no file {name}.py in {', '.join(str(c) for c in candidates)}")


def load_exercise(name: str, folder=None):
    """Import the function ``name`` from its file (re-read on every call, so an edit counts)."""
    return _function_from(find_exercise_file(name, folder), name)


def check_file(path, name: str | None = None, verbose: bool = True) -> Result:
    """``check`` the function in ``path`` (named like the file unless ``name`` is given)."""
    path = Path(path)
    name = name or path.stem
    return check(name, _function_from(path, name), verbose=verbose)


def _function_from(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(f"exercise_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # the learner's own file: running it is the point
    fn = getattr(module, name, None)
    if not callable(fn):
        raise InputError(f"{path} defines no function named {name}")
    return fn


def _exercise(name) -> Exercise:
    if name not in EXERCISES:
        raise InputError(f"unknown exercise {name!r}; the exercises are: {', '.join(EXERCISES)}")
    return EXERCISES[name]
