"""The lesson notebooks: committed clean, and each one runs top to bottom in SMALL mode in a
fresh kernel within its time budget, ending in its assert checkpoint (``make lessons`` runs
just these: ``pytest -m lessons``)."""

from __future__ import annotations

import json
import math
import os
import time

import pytest

from .calibration import slowness
from .conftest import REPO, SHARED_DATA

LESSONS = REPO / "lessons"
NOTEBOOKS = sorted(LESSONS.glob("[0-9][0-9]_*.ipynb"))
BUDGET_S = 120  # per notebook in SMALL mode on a quiet 2-core machine (measured: 2-35 s)
TOTAL_BUDGET_S = 600  # all of them together
SLOWNESS = slowness()  # a busy machine (CI under load) stretches the budgets by what it measures
TIMES: dict = {}

pytestmark = pytest.mark.lessons


def _cells(path):
    return json.loads(path.read_text())["cells"]


def test_the_fourteen_lessons_are_there():
    names = [p.stem for p in NOTEBOOKS]
    assert len(names) >= 14 and names[0] == "00_setup" and "09_gpu" in names, names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_clean(path):
    nb = json.loads(path.read_text())
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    for i, cell in enumerate(code):
        assert cell["outputs"] == [], f"{path.name}: code cell {i} has outputs; commit notebooks without them"
        assert cell["execution_count"] is None, f"{path.name}: code cell {i} has an execution count"
    sources = ["".join(c["source"]) for c in code]
    assert "MINIROBUST_LESSON_SIZE" in sources[0], "the first code cell sets the SMALL/FULL size"
    assert "assert" in sources[-1] and "checkpoint passed" in sources[-1], "the last cell is an assert checkpoint"
    assert any("plt.show()" in s for s in sources), "each lesson shows at least one figure"
    assert not any("sys.path" in s for s in sources), "lessons import the installed package, no sys.path hacks"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_small_mode_within_its_budget(path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    if not (SHARED_DATA / "mnist").exists():
        pytest.skip(f"real MNIST not found in {SHARED_DATA}: the lessons train on it")
    monkeypatch.setenv("MINIROBUST_LESSON_SIZE", "small")
    monkeypatch.setenv("MINIROBUST_DATA", str(SHARED_DATA))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(path, as_version=4)
    budget = BUDGET_S * SLOWNESS
    client = nbclient.NotebookClient(nb, timeout=math.ceil(budget), kernel_name="python3",  # traitlets: an int
                                     resources={"metadata": {"path": str(LESSONS)}})
    start = time.perf_counter()
    client.execute()  # a fresh kernel; raises CellExecutionError naming the failing cell
    TIMES[path.stem] = elapsed = time.perf_counter() - start
    assert elapsed < budget, (f"{path.name} took {elapsed:.0f} s in SMALL mode (budget {BUDGET_S} s x "
                              f"{SLOWNESS:.2f}, the machine's measured slowness)")
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert any("image/png" in o.get("data", {}) for o in outputs), f"{path.name} drew no figure"
    last = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    assert "checkpoint passed" in last


def test_all_lessons_together_fit_the_total_budget():
    if len(TIMES) < len(NOTEBOOKS):
        pytest.skip("not every notebook ran in this session (run the whole file)")
    total = sum(TIMES.values())
    print(", ".join(f"{k} {v:.0f} s" for k, v in TIMES.items()), f"; total {total:.0f} s")
    assert total < TOTAL_BUDGET_S * SLOWNESS, (f"the lessons took {total:.0f} s together (budget {TOTAL_BUDGET_S} s "
                                              f"x {SLOWNESS:.2f})")


def test_lessons_use_the_exercise_files_learners_edit():
    sources = "".join("".join(c["source"]) for p in NOTEBOOKS for c in _cells(p))
    for name in ("dense_backward", "relu_backward", "softmax_ce_backward", "conv_backward", "maxpool_backward",
                 "l2_ascent", "l1_ascent"):
        assert f'"{name}"' in sources, f"no lesson points the learner to the {name} exercise"
    assert os.path.isdir(LESSONS / "exercises") and os.path.isdir(LESSONS / "solutions")


def test_rendered_lessons_show_their_maths_offline(tmp_path):
    # issue 26: nbconvert's default page loads MathJax from a CDN, so offline the maths was raw TeX
    pytest.importorskip("nbconvert")
    pytest.importorskip("jupyter_server_mathjax")
    import subprocess
    import sys

    lesson = LESSONS / "07_robust_optimization.ipynb"
    rc = subprocess.call([sys.executable, str(LESSONS / "render_html.py"), "--no-execute", "--out", str(tmp_path),
                          str(lesson)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert rc == 0
    html = (tmp_path / "07_robust_optimization.html").read_text()
    assert 'src="mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe"' in html
    assert "cdnjs.cloudflare.com/ajax/libs/mathjax" not in html
    assert (tmp_path / "mathjax" / "MathJax.js").is_file()
    assert (tmp_path / "mathjax" / "config" / "TeX-AMS-MML_HTMLorMML-full.js").is_file()
    assert (tmp_path / "mathjax" / "fonts").is_dir()
    assert r"\max_{\|\delta_i\|_p \le \epsilon}" in html  # the TeX is there for the local MathJax to typeset
