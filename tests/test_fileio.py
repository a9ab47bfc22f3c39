"""Refused writes (disk full, read-only file system) never lose or corrupt a run and end in a clear error.

Faults are injected in-process at nntrain.fileio._write, the one place bytes go to the
operating system, at every write position of a short run: the run must end with exit code 74,
a message naming the file, the previous checkpoint intact, metrics.csv / diagnostics.csv /
summary.json agreeing with last.npz, no temporary file left, and a resume must then give
exactly the files of a run that never failed. One test uses a real small tmpfs.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

from nntrain import fileio
from nntrain.errors import NntrainError, WriteError

from conftest import small_config

EPOCHS = 3
REASONS = {errno.ENOSPC: "no space left on the device", errno.EROFS: "the file system is read-only"}


def config_file(tmp_path, **train):
    raw = small_config(train={"epochs": EPOCHS, "batch_size": 64, "checkpoint_every": 1, "diagnostics": True, **train})
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def load(path):
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def csv_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def temp_files(run):
    return [p for folder in (run, run / "checkpoints") if folder.is_dir() for p in folder.iterdir() if ".tmp-" in p.name]


def snapshot(run):
    """What a run directory holds, comparable between runs: file names, checkpoint arrays, CSV rows w/o seconds."""
    files = sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file())
    checkpoints = {p.name: load(p) for p in sorted((run / "checkpoints").glob("*.npz"))}
    metrics = [{k: v for k, v in r.items() if k != "seconds"} for r in csv_rows(run / "metrics.csv")]
    diagnostics = csv_rows(run / "diagnostics.csv") if (run / "diagnostics.csv").exists() else None
    summary = json.loads((run / "summary.json").read_text())
    summary = {k: v for k, v in summary.items() if k not in ("seconds", "run_dir")}
    return files, checkpoints, metrics, diagnostics, summary


def assert_same_run(a, b):
    files_a, ckpt_a, *rest_a = snapshot(a)
    files_b, ckpt_b, *rest_b = snapshot(b)
    assert files_a == files_b
    for name in ckpt_a:
        assert sorted(ckpt_a[name]) == sorted(ckpt_b[name]), name
        different = [k for k in ckpt_a[name] if not np.array_equal(ckpt_a[name][k], ckpt_b[name][k])]
        assert not different, (name, different)
    assert rest_a == rest_b


class Faults:
    """Replaces fileio._write: the `at`-th write (1-based) fails after writing half its bytes; with
    `sticky` every later write fails too (a full disk), otherwise only that one (a transient error)."""

    def __init__(self, monkeypatch, at=None, code=errno.ENOSPC, sticky=True):
        self.at, self.code, self.sticky = at, code, sticky
        self.calls = []  # the target path of every write
        self.failed = None
        self.original = fileio._write
        monkeypatch.setattr(fileio, "_write", self)

    def __call__(self, fd, data, path):
        self.calls.append(path)
        n = len(self.calls)
        if self.at is not None and (n == self.at or (self.sticky and n > self.at)):
            if n == self.at:
                self.failed = path
                self.original(fd, bytes(data)[: len(data) // 2], path)
            raise OSError(self.code, os.strerror(self.code))
        self.original(fd, data, path)


def assert_consistent(run, result, faults, code, status="failed"):
    """The run as of its newest last.npz, the error naming the file that failed; summary.json, if any, says `status`."""
    assert result.exit_code == 74, result.output
    assert "Traceback" not in result.output and "internal error" not in result.output
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("error: cannot write '") and REASONS[code] in message
    assert str(faults.failed) in message
    assert temp_files(run) == []
    last = run / "checkpoints" / "last.npz"
    if not last.exists():  # the run failed before its first checkpoint
        assert not (run / "metrics.csv").exists() or csv_rows(run / "metrics.csv") == []
        assert not (run / "summary.json").exists() or json.loads((run / "summary.json").read_text())["epochs_completed"] == 0
        return None
    epoch = int(load(last)["meta.epoch"])
    for name in ("metrics.csv", "diagnostics.csv"):
        if (run / name).exists():
            assert sorted({int(r["epoch"]) for r in csv_rows(run / name)}) == list(range(1, epoch + 1)), name
    if (run / "metrics.csv").exists():
        assert len(csv_rows(run / "metrics.csv")) == epoch
    for path in (run / "checkpoints").glob("epoch-*.npz"):
        assert int(load(path)["meta.epoch"]) == int(path.stem.split("-")[1]) <= epoch
    if (run / "checkpoints" / "best.npz").exists():  # written before last.npz, put back when last.npz fails
        assert int(load(run / "checkpoints" / "best.npz")["meta.epoch"]) <= epoch
    if (run / "summary.json").exists():
        summary = json.loads((run / "summary.json").read_text())
        assert summary["status"] == status and summary["epochs_completed"] == epoch
        if status == "failed":
            assert REASONS[code] in summary["message"] and str(faults.failed) in summary["message"]
    return epoch


@pytest.fixture
def reference(cli, tmp_path):
    """The uninterrupted run's directory."""
    config = config_file(tmp_path)
    run = tmp_path / "reference"
    result = cli("fit", config, "--run-dir", run, "-q")
    assert result.exit_code == 0, result.output
    return config, run


def count_writes(cli, monkeypatch, *args):
    """The target path of every write that `nntrain ARGS -q` makes."""
    faults = Faults(monkeypatch)
    result = cli(*args, "-q")
    assert result.exit_code == 0, result.output
    monkeypatch.setattr(fileio, "_write", faults.original)
    return faults.calls


# ---------------------------------------------------------------- a fresh run, every write position


@pytest.mark.parametrize("code, sticky", [(errno.ENOSPC, True), (errno.ENOSPC, False), (errno.EROFS, True)])
def test_a_refused_write_at_any_point_of_a_run_leaves_it_consistent_and_resumable(
    cli, monkeypatch, tmp_path, reference, code, sticky
):
    config, ref = reference
    calls = count_writes(cli, monkeypatch, "fit", config, "--run-dir", tmp_path / "count")
    names = {p.name for p in calls}
    assert {"config.yaml", "splits.npz", "metrics.csv", "diagnostics.csv", "last.npz", "best.npz", "summary.json"} <= names
    assert len(calls) >= 5 + 5 * EPOCHS  # every epoch: diagnostics, metrics, best?, epoch-NNNN, last
    for at in range(1, len(calls) + 1):
        run = tmp_path / f"run-{at}"
        faults = Faults(monkeypatch, at, code, sticky)
        result = cli("fit", config, "--run-dir", run, "-q")
        monkeypatch.setattr(fileio, "_write", faults.original)
        assert faults.failed.name == calls[at - 1].name  # the same write, in another run directory
        epoch = assert_consistent(run, result, faults, code)
        if epoch is None and not run.exists():  # config.yaml could not be written: the folder is removed again
            result = cli("fit", config, "--run-dir", run, "-q")
        else:  # the disk has room again (a run without a checkpoint yet starts again from epoch 0)
            result = cli("fit", "--resume", run, "-q")
        assert result.exit_code == 0, (at, result.output)
        assert temp_files(run) == []
        assert_same_run(ref, run)


def test_a_run_stopped_before_its_first_checkpoint_is_started_again_by_resume(cli, monkeypatch, tmp_path, reference):
    config, ref = reference
    calls = count_writes(cli, monkeypatch, "fit", config, "--run-dir", tmp_path / "count")
    first_last = 1 + [p.name for p in calls].index("last.npz")  # epoch 0's last.npz
    run = tmp_path / "run"
    faults = Faults(monkeypatch, first_last)
    assert cli("fit", config, "--run-dir", run, "-q").exit_code == 74
    monkeypatch.setattr(fileio, "_write", faults.original)
    assert not (run / "checkpoints" / "last.npz").exists() and (run / "config.yaml").exists()
    result = cli("fit", config, "--run-dir", run, "-q")
    assert result.exit_code == 2 and "already exists" in result.stderr
    (run / "checkpoints" / ".last.npz.tmp-99999").write_bytes(b"PK\x03\x04 torn")  # what a SIGKILL leaves
    (run / "summary.json").unlink(missing_ok=True)  # (the full disk refused it too)

    result = cli("fit", "--resume", run, "--set", "optimizer.lr=0.5", "-q")  # resume's rules still hold
    assert result.exit_code == 2 and "optimizer.lr" in result.stderr
    result = cli("fit", "--resume", run, "-q")
    assert result.exit_code == 0, result.output
    assert f"{run} has no checkpoint yet (stopped before its first); starting it from epoch 0" in result.stderr
    for bad in ("Traceback", "internal error", "Warning"):
        assert bad not in result.output
    assert temp_files(run) == []
    assert_same_run(ref, run)


def test_a_run_whose_checkpoints_are_lost_or_unreadable_is_not_started_again(cli, tmp_path, reference):
    """Only a run with no checkpoint file and no finished epoch starts again; a damaged one stays an error."""
    config, ref = reference
    lost = tmp_path / "lost"  # trained 3 epochs, then its checkpoints were deleted
    assert cli("fit", config, "--run-dir", lost, "-q").exit_code == 0
    for path in (lost / "checkpoints").iterdir():
        path.unlink()
    unreadable = tmp_path / "unreadable"  # no epoch finished, but its last.npz is there and empty
    (unreadable / "checkpoints").mkdir(parents=True)
    (unreadable / "config.yaml").write_bytes((ref / "config.yaml").read_bytes())
    (unreadable / "checkpoints" / "last.npz").write_bytes(b"")
    for run in (lost, unreadable):
        before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
        result = cli("fit", "--resume", run, "-q")
        assert result.exit_code == 2, result.output
        assert "cannot resume" in result.stderr and "last.npz" in result.stderr and "Traceback" not in result.output
        assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("links", [True, False], ids=["hard-link", "links-refused"])
@pytest.mark.parametrize("which", ["first-best", "later-best"])
def test_a_failed_last_checkpoint_puts_the_previous_best_back(cli, monkeypatch, tmp_path, reference, links, which):
    """best.npz is written before last.npz; when last.npz fails, best.npz is the previous one again (or absent)."""
    config, ref = reference
    calls = [p.name for p in count_writes(cli, monkeypatch, "fit", config, "--run-dir", tmp_path / "count")]
    bests = [i for i, name in enumerate(calls) if name == "best.npz"]
    assert len(bests) >= 2, calls
    best_write = bests[0] if which == "first-best" else bests[1]
    at = 1 + calls.index("last.npz", best_write)  # the last.npz of the epoch that wrote this best.npz
    if not links:
        def refuse(src, dst):
            raise OSError(errno.EPERM, "Operation not permitted")

        monkeypatch.setattr(os, "link", refuse)
    run = tmp_path / "run"
    faults = Faults(monkeypatch, at, sticky=False)
    result = cli("fit", config, "--run-dir", run, "-q")
    monkeypatch.setattr(fileio, "_write", faults.original)
    assert faults.failed.name == "last.npz"
    epoch = assert_consistent(run, result, faults, errno.ENOSPC)
    best = run / "checkpoints" / "best.npz"
    last = load(run / "checkpoints" / "last.npz")
    if which == "first-best":
        assert not best.exists()  # there was none before this epoch
    else:
        assert int(load(best)["meta.epoch"]) == int(last["meta.best_epoch"]) <= epoch
        kept = load(ref / "checkpoints" / f"epoch-{int(last['meta.best_epoch']):04d}.npz")  # what best.npz was then
        assert not [k for k in kept if not np.array_equal(kept[k], load(best)[k])]
    result = cli("fit", "--resume", run, "-q")
    assert result.exit_code == 0, result.output
    assert_same_run(ref, run)


# ---------------------------------------------------------------- a resumed run, every write position


def test_a_refused_write_during_a_resume_keeps_the_run_consistent(cli, monkeypatch, tmp_path):
    """1 epoch, then a resume to 3 whose k-th write finds the disk full; the fault-free resume is the reference."""
    config = config_file(tmp_path)
    count = tmp_path / "count"
    assert cli("fit", config, "--run-dir", count, "-q", "--set", "train.epochs=1").exit_code == 0
    calls = count_writes(cli, monkeypatch, "fit", "--resume", count, "--set", f"train.epochs={EPOCHS}")
    assert calls[0].name == "config.yaml" and calls[-1].name == "summary.json"
    for at in range(1, len(calls) + 1):
        run = tmp_path / f"run-{at}"
        assert cli("fit", config, "--run-dir", run, "-q", "--set", "train.epochs=1").exit_code == 0
        faults = Faults(monkeypatch, at)
        result = cli("fit", "--resume", run, "-q", "--set", f"train.epochs={EPOCHS}")
        monkeypatch.setattr(fileio, "_write", faults.original)
        # The old summary (completed after 1 epoch) stays only when nothing began (config.yaml failed).
        epoch = assert_consistent(run, result, faults, errno.ENOSPC, "completed" if at == 1 else "failed")
        assert epoch >= 1
        result = cli("fit", "--resume", run, "-q", "--set", f"train.epochs={EPOCHS}")
        assert result.exit_code == 0, (at, result.output)
        assert_same_run(count, run)


def test_when_even_the_summary_cannot_be_written_the_stale_one_is_removed(cli, monkeypatch, tmp_path):
    config = config_file(tmp_path)
    run = tmp_path / "run"
    assert cli("fit", config, "--run-dir", run, "-q", "--set", "train.epochs=1").exit_code == 0
    faults = Faults(monkeypatch, at=4)  # config.yaml, metrics.csv, diagnostics.csv, then epoch 2's first row
    result = cli("fit", "--resume", run, "-q", "--set", "train.epochs=3")
    assert result.exit_code == 74
    assert "diagnostics.csv" in result.stderr and "summary.json could not be written either" in result.stderr
    assert faults.calls[-1].name == "summary.json"
    assert not (run / "summary.json").exists()
    assert int(load(run / "checkpoints" / "last.npz")["meta.epoch"]) == 1
    assert len(csv_rows(run / "metrics.csv")) == 1


# ---------------------------------------------------------------- the primitives


def test_a_failed_atomic_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "file.bin"
    fileio.atomic_write(path, b"old")
    Faults(monkeypatch, at=1)
    with pytest.raises(WriteError) as info:
        fileio.atomic_write(path, b"new" * 1000, "saving it")
    assert info.value.exit_code == 74
    assert str(info.value) == f"cannot write '{path}': no space left on the device (while saving it)"
    assert path.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["file.bin"]

    monkeypatch.undo()

    def refuse(src, dst):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(WriteError, match="Input/output error") as info:
        fileio.atomic_write(path, b"new")
    assert info.value.exit_code == 74
    assert path.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["file.bin"]


def test_a_missing_folder_is_a_usage_error_and_activity_names_the_write(tmp_path):
    with pytest.raises(WriteError) as info, fileio.activity("saving the checkpoint of epoch 7"):
        fileio.atomic_write(tmp_path / "no" / "such.npz", b"x")
    assert info.value.exit_code == 2 and "(while saving the checkpoint of epoch 7)" in str(info.value)
    with pytest.raises(WriteError) as info:
        fileio.make_dir(tmp_path / "no" / "dir", "creating the run directory")
    assert info.value.exit_code == 2


def test_line_log_drops_a_failed_row_and_rolls_back_to_the_last_commit(tmp_path, monkeypatch):
    path = tmp_path / "log.csv"
    log = fileio.LineLog(path, "a,b\r\n")
    log.append("1,2\r\n")
    log.commit()
    log.append("3,4\r\n")
    assert path.read_bytes() == b"a,b\r\n1,2\r\n3,4\r\n"  # written at once, no buffer
    log.rollback()
    assert path.read_bytes() == b"a,b\r\n1,2\r\n"
    faults = Faults(monkeypatch, at=1)
    with pytest.raises(WriteError, match="no space left"):
        log.append("5,6\r\n" * 100, "writing row 5")
    assert faults.failed == path and path.read_bytes() == b"a,b\r\n1,2\r\n"  # the half-written row is gone
    monkeypatch.undo()
    log.append("7,8\r\n")
    log.rollback()
    log.close()
    assert path.read_bytes() == b"a,b\r\n1,2\r\n"


def test_remove_temp_files_removes_only_temporary_files(tmp_path):
    names = [".last.npz.tmp-123", ".metrics.csv.tmp-9", "last.npz", "notes.tmp-1", ".hidden"]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    removed = fileio.remove_temp_files(tmp_path)
    assert sorted(p.name for p in removed) == [".last.npz.tmp-123", ".metrics.csv.tmp-9"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden", "last.npz", "notes.tmp-1"]


def test_read_text_names_the_file(tmp_path):
    (tmp_path / "bad.csv").write_bytes(b"epoch\n\xff\n")
    with pytest.raises(NntrainError, match=r"cannot read the file '.*bad.csv': it is not UTF-8 text \(byte 0xff"):
        fileio.read_text(tmp_path / "bad.csv", "the file")
    with pytest.raises(NntrainError, match="does not exist"):
        fileio.read_text(tmp_path / "missing.csv")


# ---------------------------------------------------------------- a real full disk and a read-only mount


@pytest.fixture
def small_fs(tmp_path):
    """A 200 KiB tmpfs; skipped where mounting is not permitted (not root, no tmpfs, a container)."""
    mount = tmp_path / "fs"
    mount.mkdir()
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root on Linux")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)


def test_a_real_full_disk_and_a_read_only_mount(cli, tmp_path, small_fs):
    config = config_file(tmp_path, epochs=40, diagnostics=False)  # ~5 KB per checkpoint: the disk fills up
    run = small_fs / "run"
    result = cli("fit", config, "--run-dir", run, "-q")
    assert result.exit_code == 74, result.output
    assert "no space left on the device" in result.stderr and "Traceback" not in result.output
    assert temp_files(run) == []
    epoch = int(load(run / "checkpoints" / "last.npz")["meta.epoch"])
    assert 1 <= epoch < 40
    assert [int(r["epoch"]) for r in csv_rows(run / "metrics.csv")] == list(range(1, epoch + 1))
    if (run / "summary.json").exists():
        summary = json.loads((run / "summary.json").read_text())
        assert summary["status"] == "failed" and summary["epochs_completed"] == epoch

    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], capture_output=True).returncode == 0
    result = cli("fit", "--resume", run, "-q")
    assert result.exit_code == 74, result.output
    assert "the file system is read-only" in result.stderr and "Traceback" not in result.output
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
