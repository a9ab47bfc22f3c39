"""Trainer behaviour not visible from the CLI tests: crash summaries, no-shuffle order, progress hooks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nntrain import config as cfg
from nntrain.api import fit
from nntrain.train.trainer import Hooks

from conftest import small_config


def test_an_unexpected_error_leaves_a_failed_summary(tmp_path, monkeypatch):
    """A crash inside training still writes summary.json (status failed) and keeps last.npz loadable."""
    from nntrain.engine import optim

    calls = {"n": 0}
    original = optim.SGD.step

    def flaky(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 20:  # of 35 steps (5 epochs of 7 batches)
            raise OSError("disk on fire")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(optim.SGD, "step", flaky)
    config = cfg.load_config(None, [], raw=small_config())
    with pytest.raises(OSError):
        fit(config, runs_root=tmp_path)
    (run,) = tmp_path.iterdir()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "failed" and "disk on fire" in summary["message"]
    with np.load(run / "checkpoints" / "last.npz", allow_pickle=False) as npz:
        assert np.isfinite(npz["layers.0.weight"]).all()


def test_hooks_see_every_epoch_and_batch(tmp_path):
    rows, batches, starts = [], [], []
    hooks = Hooks(
        on_start=lambda run, exp, done: starts.append(done),
        on_epoch=rows.append,
        on_batch=lambda done, total, loss: batches.append((done, total)),
    )
    config = cfg.load_config(None, [], raw=small_config(train={"epochs": 3, "batch_size": 50}))
    summary = fit(config, runs_root=tmp_path, hooks=hooks)
    n_train = 210  # 300 rows less 15% val and 15% test
    per_epoch = -(-n_train // 50)
    assert summary["status"] == "completed" and starts == [0]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert batches[:per_epoch] == [(i, per_epoch) for i in range(1, per_epoch + 1)]
    assert len(batches) == 3 * per_epoch


def test_a_prune_hook_ends_the_run_after_that_epoch(tmp_path):
    """hooks.prune returning a reason ends training after that epoch as 'pruned', its checkpoints kept."""
    hooks = Hooks(prune=lambda row: "worse than the median at epoch 2" if row["epoch"] == 2 else None)
    config = cfg.load_config(None, [], raw=small_config(train={"epochs": 5, "batch_size": 50}))
    summary = fit(config, run_dir=tmp_path / "run", hooks=hooks)
    assert summary["status"] == "pruned" and summary["message"] == "worse than the median at epoch 2"
    assert summary["epochs_completed"] == 2 and summary["final_parameters"] == "last.npz (epoch 2)"
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "pruned"
    assert len((tmp_path / "run" / "metrics.csv").read_text().splitlines()) == 3  # the header and 2 epochs


def test_a_run_that_trained_its_last_epoch_is_not_pruned(tmp_path):
    """Pruning stops a run early; after its last epoch there is nothing left to stop: it completed."""
    calls = []
    hooks = Hooks(prune=lambda row: calls.append(row["epoch"]) or "always worse")
    config = cfg.load_config(None, [], raw=small_config(train={"epochs": 1, "batch_size": 50}))
    assert fit(config, run_dir=tmp_path / "run", hooks=hooks)["status"] == "completed"
    assert calls == []


def test_full_batch_without_shuffle_is_plain_gradient_descent(tmp_path):
    """batch_size full + shuffle false: each epoch is exactly one step on the whole training split."""
    config = cfg.load_config(
        None, [], raw=small_config(train={"epochs": 2, "batch_size": "full", "shuffle": False}, optimizer={"momentum": 0.0})
    )
    summary = fit(config, runs_root=tmp_path)
    run = tmp_path / next(p.name for p in tmp_path.iterdir())
    with np.load(run / "checkpoints" / "last.npz", allow_pickle=False) as npz:
        assert int(npz["optim.steps"]) == 2
    assert summary["status"] == "completed"
