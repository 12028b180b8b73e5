"""Checking a learner's file in a child process: an endless loop, sys.exit() or a memory blow-up
in the learner's code ends that process, never the checker, and every outcome is one line.

    check_in_child("lessons/exercises/dense_backward.py", "dense_backward")   # -> Result

The child (``python -m minirobust.exercises.isolated FILE NAME MEGABYTES``) caps its address
space, imports the file, runs ``check`` and prints the verdict as one marked JSON line on stdout;
the parent waits at most ``time_limit`` seconds for it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import traceback
from pathlib import Path

from ..errors import InputError
from .checker import Result

MARK = "MINIROBUST-VERDICT "


def _checked_file(path) -> Path:
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a folder; give the .py file with your function")
    if path.suffix != ".py":
        raise InputError(f"{path}: not a Python file (.py)")
    return path


def check_in_child(path, name, time_limit=60.0, memory_mb=8192) -> Result:
    """The verdict on exercise ``name`` in ``path``, from a child process (see the module's docstring)."""
    path = _checked_file(path)
    cmd = [sys.executable, "-m", "minirobust.exercises.isolated", str(path), name, str(int(memory_mb))]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=time_limit)
    except subprocess.TimeoutExpired:
        return Result(name, False, f"FAILED {name}: no verdict within {time_limit:g} s, so the check was stopped: "
                                   f"is there an endless loop in {path.name} (in the function, or run on import)?")
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(MARK):
            return Result(**json.loads(line[len(MARK):]))
    last = (proc.stderr.strip().splitlines() or [""])[-1]
    if "MemoryError" in proc.stderr:
        why = f"it ran out of memory (more than {memory_mb} MB)"
    else:
        why = (f"the process ended (exit code {proc.returncode}) before the check gave a verdict: does {path.name} "
               "call sys.exit(), exit() or os._exit()?")
    return Result(name, False, f"FAILED {name}: {why}" + (f" Last message: {last}" if last else ""))


def _import_problem(path: Path, exc: BaseException) -> str:
    """One line for a file that cannot be imported: what, and the learner's line."""
    if isinstance(exc, SyntaxError) and "utf-8" in str(exc.msg).lower():
        return f"{path.name} line {exc.lineno} is not UTF-8 text ({exc.msg}): save the file as UTF-8"
    if isinstance(exc, SyntaxError):
        return f"{path.name} line {exc.lineno}: SyntaxError: {exc.msg}"
    if isinstance(exc, UnicodeDecodeError):
        return f"{path.name} is not UTF-8 text ({exc.reason} at byte {exc.start}): save it as UTF-8"
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename).resolve() == path.resolve()]
    where = f" at {path.name} line {frames[-1].lineno}" if frames else ""
    return f"importing {path.name} raised {type(exc).__name__}: {exc}{where}"


def _child(path, name, memory_mb):
    try:
        import resource  # noqa: PLC0415 - POSIX

        limit = int(memory_mb) << 20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, ValueError, OSError):
        pass
    from . import _function_from, check  # noqa: PLC0415

    path = Path(path)
    try:
        fn = _function_from(path, name)
    except InputError as exc:
        result = Result(name, False, f"FAILED {name}: {exc}")
    except Exception as exc:  # the learner's file at import: say what and where
        result = Result(name, False, f"FAILED {name}: {_import_problem(path, exc)}")
    else:
        result = check(name, fn, verbose=False)
    sys.stdout.write("\n" + MARK + json.dumps({"exercise": result.exercise, "passed": result.passed,
                                                "message": result.message, "worst_error": result.worst_error})
                     + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    _child(*sys.argv[1:4])
