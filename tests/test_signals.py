"""SIGINT / SIGTERM during `nntrain fit` (a real process): the run stops cleanly after the batch in
progress with exit code 130 / 143, leaves a resumable run directory, and `--resume` finishes it."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

EPOCHS = 6
NNTRAIN = [sys.executable, "-m", "nntrain.cli"]
# One BLAS thread: tiny matrices gain nothing from more, and oversubscribed threads make timings erratic.
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

# Big enough that an epoch takes a noticeable fraction of a second (thousands of small batches).
CONFIG = {
    "name": "slow",
    "seed": 0,
    "data": {"dataset": "spirals", "options": {"samples": 20000, "classes": 3, "noise": 0.2}},
    "model": {"layers": [{"linear": 256}, "relu", {"linear": 256}, "relu", {"linear": 3}]},
    "loss": "cross_entropy",
    "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
    "train": {"epochs": EPOCHS, "batch_size": 16},
}


def data_rows(metrics):
    """Complete data rows of metrics.csv so far (0 while it does not exist)."""
    try:
        text = metrics.read_text()
    except FileNotFoundError:
        return 0
    return max(0, text.count("\n") - 1)


def interrupt(tmp_path, signum):
    """Start a fit, wait for its first epoch, send `signum`; return (exit code, stdout, stderr, run dir)."""
    config = tmp_path / "slow.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    run = tmp_path / "run"
    with open(tmp_path / "stdout", "w") as out, open(tmp_path / "stderr", "w") as err:
        proc = subprocess.Popen(
            [*NNTRAIN, "fit", str(config), "--run-dir", str(run)], stdout=out, stderr=err, cwd=tmp_path, env=ENV
        )
    try:
        deadline = time.monotonic() + 20
        while data_rows(run / "metrics.csv") < 1:
            assert proc.poll() is None, f"fit exited early with {proc.returncode}"
            assert time.monotonic() < deadline, "no epoch finished within 20 s"
            time.sleep(0.01)
        proc.send_signal(signum)
        code = proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return code, (tmp_path / "stdout").read_text(), (tmp_path / "stderr").read_text(), run


def load(path):
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_stops_cleanly_and_the_run_resumes(tmp_path, signum, code):
    exit_code, stdout, stderr, run = interrupt(tmp_path, signum)
    assert exit_code == code, stdout + stderr
    assert "Traceback" not in stdout + stderr

    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    done = summary["epochs_completed"]
    assert 1 <= done < EPOCHS, "the signal came too late to interrupt the run"
    assert "status: interrupted" in stdout
    # Not a terminal: one plain line per finished epoch, no progress bar, no escape codes.
    assert "\x1b[" not in stdout + stderr
    assert [line.split()[:2] for line in stdout.splitlines() if line.startswith("epoch ")] == [
        ["epoch", f"{n}/{EPOCHS}"] for n in range(1, done + 1)
    ]

    last = load(run / "checkpoints" / "last.npz")
    assert int(last["meta.epoch"]) == done
    assert all(np.isfinite(v).all() for k, v in last.items() if k.startswith("layers."))
    with open(run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == list(range(1, done + 1))  # no row for the cut epoch

    result = subprocess.run(
        [*NNTRAIN, "fit", "--resume", str(run), "-q"], capture_output=True, text=True, cwd=tmp_path, env=ENV, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"resuming {run} from last.npz (epoch {done})" in result.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["epochs_completed"] == EPOCHS
    with open(run / "metrics.csv", newline="") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == list(range(1, EPOCHS + 1))


def test_threads_option_reaches_blas(tmp_path):
    """--threads sets the BLAS thread variables before numpy loads (checked in a fresh process)."""
    import subprocess
    import sys

    code = (
        "import os, sys\n"
        "from typer.testing import CliRunner\n"
        "from nntrain.cli import app\n"
        "before = 'numpy' in sys.modules\n"
        f"CliRunner().invoke(app, ['fit', '{tmp_path / 'missing.yaml'}', '--threads', '1'])\n"
        "print(before, os.environ.get('OPENBLAS_NUM_THREADS'), os.environ.get('OMP_NUM_THREADS'), 'numpy' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    # numpy was not loaded before fit ran, the variables were set, and numpy loaded afterwards with them
    assert out.stdout.split() == ["False", "1", "1", "True"], (out.stdout, out.stderr)
