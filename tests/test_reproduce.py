"""`minirobust reproduce mnist --quick`: structure, sanity, determinism."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from .conftest import SHARED_DATA

pytestmark = pytest.mark.skipif(not (SHARED_DATA / "mnist").exists(), reason=f"no MNIST in {SHARED_DATA}")


def reproduce(tmp, *extra):
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp / "cache")}
    cmd = [sys.executable, "-m", "minirobust.cli", "reproduce", "mnist", "--quick", "--no-progress",
           "--data-dir", str(SHARED_DATA), "--results-dir", str(tmp / "results"), "--runs-dir", str(tmp / "runs"),
           *extra]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads((tmp / "results" / "results.json").read_text()), out.stdout


def _numbers(results):
    """Everything but timings, which legitimately vary between runs."""
    r = {k: v for k, v in results.items() if k not in ("wall_time_s", "seconds_per_epoch",
                                                        "robust_over_plain_epoch_time", "stage_seconds",
                                                        "training_seconds")}
    return json.dumps(r, sort_keys=True)


def test_quick_reproduction(tmp_path):
    r, stdout = reproduce(tmp_path)
    assert set(r) >= {"settings", "software", "machine", "amnist", "table", "curves", "seconds_per_epoch",
                      "wall_time_s", "paper_clean_acc", "single_pixel"}
    assert set(r["table"]) == {"baseline", "linf", "l2", "l1"}
    # the baseline scores 0% on its own adversarial set, by construction
    assert r["amnist"]["baseline_acc"] == 0.0 and r["table"]["baseline"]["amnist"]["overall"] == 0.0
    assert r["amnist"]["size"] > 0 and set(r["amnist"]["parts"]) <= {"inf", "2", "1"}
    t = r["table"]
    # a robust net beats the baseline at its training eps, and on AMNIST
    assert t["linf"]["fast_linf_train_eps"] > t["baseline"]["fast_linf_train_eps"]
    assert all(t[n]["amnist"]["overall"] > 20 for n in ("linf", "l2"))
    for name, row in t.items():
        assert 80 <= row["clean_acc"] <= 100, name
        # the suite's columns: l_inf and l_2 at the training radius and twice it, PGD beside each
        keys = [k for k in row if k.startswith("suite_") and not k.endswith("_broken_by")]
        assert len(keys) == 4 and {k.split("_")[1] for k in keys} == {"linf", "l2"}, keys
        for k in keys:
            assert 0 <= row[k] <= 100 and row[f"pgd_{k[6:]}_suite_subset"] is not None
            assert sum(row[f"{k}_broken_by"].values()) == round((100 - row[k]) * 20 / 100)
    for norm, per in r["curves"].items():
        for name, pts in per.items():
            assert pts[0]["eps"] == 0 and pts[0]["robust_acc"] == row_clean(t, name), (norm, name)
    for png in ("curve_linf.png", "curve_l2.png", "curve_l1.png", "amnist_linf.png"):
        assert (tmp_path / "results" / png).read_bytes()[:4] == b"\x89PNG"
    table = (tmp_path / "results" / "table.md").read_text()
    assert "| baseline |" in table and "suite l_inf" in table and "to the suite" in table
    assert r["wall_time_s"] < 600


def row_clean(table, name):
    return table[name]["clean_acc"]


def test_same_seed_same_numbers_and_resume(tmp_path):
    small = ["--n-train", "1500", "--n-test", "300"]
    a, _ = reproduce(tmp_path / "a", *small)
    b, _ = reproduce(tmp_path / "b", *small)
    assert _numbers(a) == _numbers(b)
    # --resume on a finished run retrains nothing and gives the same numbers
    c, stdout = reproduce(tmp_path / "a", *small, "--resume")
    assert stdout.count("finished earlier") == 4
    assert _numbers(c) == _numbers(a)


def test_table_columns_are_typed_records_the_writer_and_the_table_share():
    # issue 27 item 4: no key parsed back by slicing; the committed tables come out the same
    import json

    from minirobust.experiments.mnist import AttackColumn, attack_columns, render_table

    from .conftest import REPO

    col = AttackColumn("suite", "2", 0.62)
    assert (col.key, col.beside_key, col.broken_by_key) == ("suite_l2_0.62", "pgd_l2_0.62_suite_subset",
                                                            "suite_l2_0.62_broken_by")
    for folder in ("mnist", "cifar10"):
        results = json.loads((REPO / "results" / folder / "results.json").read_text())
        assert render_table(results) == (REPO / "results" / folder / "table.md").read_text()
        for c in attack_columns(results["settings"]):
            assert c.key in results["table"]["baseline"] and c.beside_key in results["table"]["baseline"]
