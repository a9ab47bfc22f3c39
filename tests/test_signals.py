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

from conftest import small_config

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


# ---------------------------------------------------------------- SIGKILL at a precise write

# Runs `nntrain fit ...` in a fresh process that SIGKILLs itself at the n-th write of file NAME:
# "before" (its temporary file exists, empty), "mid" (half of it written) or "after" (written and
# fsynced, not yet renamed into place; for metrics.csv / diagnostics.csv: the row is complete).
KILLER = """
import os, signal, sys
from nntrain import fileio
from nntrain.cli import app

name, nth, when = sys.argv[1], int(sys.argv[2]), sys.argv[3]
original, seen = fileio._write, []

def write(fd, data, path):
    if path.name == name:
        seen.append(path)
        if len(seen) == nth:
            if when == "mid":
                original(fd, bytes(data)[: len(data) // 2], path)
            if when == "after":
                original(fd, data, path)
            if when != "before":
                os.fsync(fd)
            os.kill(os.getpid(), signal.SIGKILL)
    original(fd, data, path)

fileio._write = write
app(sys.argv[4:])
"""

KILL_CONFIG = small_config(train={"epochs": 4, "checkpoint_every": 2, "diagnostics": True})


def snapshot(run):
    """File names, checkpoint arrays, CSV rows without seconds, summary without seconds / run_dir."""
    files = sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file())
    checkpoints = {p.name: load(p) for p in sorted((run / "checkpoints").glob("*.npz"))}
    tables = {}
    for name in ("metrics.csv", "diagnostics.csv"):
        with open(run / name, newline="") as f:
            tables[name] = [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(f)]
    summary = json.loads((run / "summary.json").read_text())
    return files, checkpoints, tables, {k: v for k, v in summary.items() if k not in ("seconds", "run_dir")}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("uninterrupted")
    config = folder / "small.yaml"
    config.write_text(yaml.safe_dump(KILL_CONFIG))
    run = folder / "run"
    done = subprocess.run([*NNTRAIN, "fit", str(config), "--run-dir", str(run), "-q"], capture_output=True, text=True, env=ENV, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return config, snapshot(run)


@pytest.mark.parametrize(
    "name, nth, when",
    [
        ("splits.npz", 1, "after"),  # only config.yaml there: a run stopped before its first checkpoint starts again
        ("last.npz", 1, "mid"),  # epoch 0's last.npz torn in its temporary file: no checkpoint yet
        ("last.npz", 3, "before"),  # epoch 2: epoch-0002.npz and best.npz written, last.npz not yet
        ("last.npz", 3, "after"),  # epoch 2's last.npz complete in its temporary file, not renamed
        ("epoch-0002.npz", 1, "before"),  # (once written after last.npz: a kill here lost epoch-0002.npz for good)
        ("epoch-0002.npz", 1, "mid"),  # a torn temporary epoch-0002.npz
        ("best.npz", 2, "mid"),  # epoch 2's best.npz half written
        ("metrics.csv", 3, "mid"),  # half of epoch 2's row
        ("diagnostics.csv", 3, "after"),  # epoch 2's diagnostics rows, before its metrics row
        ("summary.json", 1, "before"),  # every epoch done, the summary not written
    ],
)
def test_a_kill_at_any_write_resumes_to_exactly_the_uninterrupted_run(tmp_path, uninterrupted, name, nth, when):
    config, expected = uninterrupted
    run = tmp_path / "run"
    killed = subprocess.run(
        [sys.executable, "-c", KILLER, name, str(nth), when, "fit", str(config), "--run-dir", str(run), "-q"],
        capture_output=True, text=True, env=ENV, timeout=60,
    )  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    leftovers = [p for p in run.rglob("*") if ".tmp-" in p.name]
    assert bool(leftovers) == (not name.endswith(".csv"))  # an atomic write killed midway leaves its temporary file
    resumed = subprocess.run([*NNTRAIN, "fit", "--resume", str(run), "-q"], capture_output=True, text=True, env=ENV, timeout=60)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert not [p for p in run.rglob("*") if ".tmp-" in p.name]  # removed by the resume
    files, checkpoints, tables, summary = snapshot(run)
    assert files == expected[0]
    for key, arrays in expected[1].items():
        assert sorted(arrays) == sorted(checkpoints[key]), key
        assert not [k for k in arrays if not np.array_equal(arrays[k], checkpoints[key][k])], key
    assert tables == expected[2]
    assert summary == expected[3]
