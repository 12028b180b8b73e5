"""Runs the property tests of fuzz_untrusted_files.py in a child process whose address space is
capped (2 GiB; the files' own cap is lowered to 64 MiB) and whose run time is capped: a file that
made the loader allocate more, or loop, fails the test instead of taking the machine down."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

resource = pytest.importorskip("resource")  # POSIX

HERE = Path(__file__).resolve().parent
MEMORY_CAP = 2 << 30


def _cap_memory():
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def test_untrusted_files_only_raise_the_projects_errors_within_memory_and_time_caps(tmp_path):
    env = {**os.environ, "MINIROBUST_MAX_FILE_BYTES": str(64 << 20), "OPENBLAS_NUM_THREADS": "1",
           "FUZZ_EXAMPLES": os.environ.get("FUZZ_EXAMPLES", "300")}
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
                          str(HERE / "fuzz_untrusted_files.py"), "--basetemp", str(tmp_path / "t")],
                         capture_output=True, text=True, env=env, timeout=600, preexec_fn=_cap_memory, cwd=HERE.parent)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "3 passed" in out.stdout
