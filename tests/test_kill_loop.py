"""SIGKILL at random moments of a short training, again and again (inside the checkpoint write
and the metrics append among them), each time followed by --resume: the run ends with the same
parameters as an uninterrupted one, a complete metrics.jsonl and no stray temporary files."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np

from minirobust import checkpoint

from .calibration import slowness

COMMON = ["train", "--dataset", "synthetic", "--no-progress", "--n-train", "2000", "--n-test", "20", "--norm", "inf",
          "--eps", "0.1", "--epochs", "6", "--batch-size", "50"]
KILLS = 12


def _train(out, *extra):
    return subprocess.Popen([sys.executable, "-m", "minirobust.cli", *COMMON, "--out", str(out), *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _epochs_done(out):
    metrics = out / "metrics.jsonl"
    return len(metrics.read_text().splitlines()) if metrics.exists() else 0


def test_random_kills_then_resume_match_an_uninterrupted_run(tmp_path):
    wait_s = 300 * slowness()  # a busy machine stretches the timeouts, not the test's meaning
    t0 = time.monotonic()
    full = _train(tmp_path / "full")
    assert full.wait(timeout=wait_s) == 0, full.stderr.read()
    whole_run = time.monotonic() - t0  # start-up and every epoch, however fast this machine is
    out, rng, kills = tmp_path / "killed", np.random.default_rng(0), 0
    for _ in range(KILLS):
        proc = _train(out, "--resume")
        # anywhere in what is left of the run (start-up, a step, a save): timed from the part of the
        # run still to go, so that a resumed run is not let finish before the loop has killed it
        done = _epochs_done(out)
        deadline = time.monotonic() + float(rng.uniform(0.2, 0.9)) * whole_run * max(6 - done, 1) / 6
        # and never later than a random epoch before the last: a machine that got faster since the
        # full run was timed (load comes and goes) must not let the resumed run finish unkilled
        last_epoch = int(rng.integers(done + 1, 6)) if done < 5 else 6
        while proc.poll() is None and time.monotonic() < deadline and _epochs_done(out) < last_epoch:
            time.sleep(0.02)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=60 * slowness())
        if (out / "model.npz").exists():
            break
    last = _train(out, "--resume")
    assert last.wait(timeout=wait_s) == 0, last.stderr.read()
    assert kills >= 3  # the loop did interrupt the run
    a = checkpoint.load(tmp_path / "full" / "model.npz").model.parameters()
    b = checkpoint.load(out / "model.npz").model.parameters()
    for k in a:
        np.testing.assert_array_equal(b[k], a[k])  # bit-identical: same data order, same steps
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3, 4, 5, 6]
    assert sorted(p.name for p in out.iterdir()) == [".lock", "checkpoint.json", "checkpoint.npz", "metrics.jsonl",
                                                     "model.json", "model.npz"]
