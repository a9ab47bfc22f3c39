"""Hyper-parameter sweeps (nntrain.sweep): grid and random trials, folds, ranking, worker
processes, custom executors, interruption and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import Future

import numpy as np
import pytest
import yaml
from conftest import read_csv, small_config, summary, without_seconds

from nntrain.errors import NntrainError
from nntrain.sweep import (
    THREAD_VARIABLES,
    Executor,
    LocalExecutor,
    SweepHooks,
    available_cores,
    derived_seed,
    format_leaderboard,
    load_plan,
    plan_sweep,
    run_sweep,
    split_values,
    sweep_options,
)


def tiny(**sections) -> dict:
    """A spirals classifier that trains 3 epochs in a fraction of a second."""
    raw = small_config(
        data={"dataset": "spirals", "options": {"samples": 200, "classes": 3, "noise": 0.2}},
        model={"layers": [{"linear": 8}, "relu", {"linear": 3}]},
        train={"epochs": 3, "batch_size": 32},
    )
    for key, value in sections.items():
        raw[key] = {**raw[key], **value} if isinstance(value, dict) and isinstance(raw.get(key), dict) else value
    return raw


# --- trials -----------------------------------------------------------------------------


def test_cli_options_are_parsed_like_set_values():
    spec = sweep_options(
        grid=["optimizer.lr=0.3,1e-2", "model.layers.1=relu,tanh", "model.layers.0=[8, 16],{linear: 4}"],
        log_uniform=["optimizer.weight_decay=1e-5:1e-2"],
        choice=["train.batch_size=16,full"],
        random=4,
        folds=3,
    )
    assert spec["grid"] == {
        "optimizer.lr": [0.3, 0.01],
        "model.layers.1": ["relu", "tanh"],
        "model.layers.0": [[8, 16], {"linear": 4}],
    }
    assert spec["log_uniform"] == {"optimizer.weight_decay": [1e-5, 1e-2]}
    assert spec["choice"] == {"train.batch_size": [16, "full"]}
    assert (spec["random"], spec["folds"]) == (4, 3)
    assert split_values("a,'b,c',[1,2]") == ["a", "'b,c'", "[1,2]"]
    for bad, words in [
        ({"grid": ["optimizer.lr"]}, ["--grid 'optimizer.lr'", "KEY=V1,V2"]),
        ({"grid": ["optimizer.lr=0.1,,0.2"]}, ["empty value"]),
        ({"grid": ["optimizer.lr=0.1", "optimizer.lr=0.2"]}, ["given twice"]),
        ({"log_uniform": ["optimizer.lr=0.1"]}, ["--log-uniform", "KEY=LOW:HIGH"]),
        ({"uniform": ["optimizer.lr=a:b"]}, ["--uniform", "two numbers"]),
    ]:
        with pytest.raises(NntrainError) as e:
            sweep_options(**bad)
        assert all(w in str(e.value) for w in words), str(e.value)


def test_grid_is_the_cartesian_product_and_every_trial_is_validated(tmp_path):
    raw = tiny(sweep={"grid": {"optimizer.lr": [0.3, 0.1], "optimizer.momentum": [0.5]}, "folds": 4})
    del raw["name"]
    path = tmp_path / "net.yaml"
    path.write_text(yaml.safe_dump(raw))
    # The command line adds a key and replaces one of the section's; --set sweep.* edits the section.
    options = sweep_options(grid=["model.layers.0.units=4,8,16", "optimizer.momentum=0.0,0.9"])
    plan = plan_sweep(path, ["train.epochs=2", "sweep.folds=2"], options)

    assert plan.name == "net"  # the config file's stem
    assert "sweep" not in plan.base and plan.base["train"]["epochs"] == 2
    assert plan.spec.swept_keys() == ["optimizer.lr", "optimizer.momentum", "model.layers.0.units"]
    assert plan.spec.folds == 2 and plan.metric == "val_loss"
    assert len(plan.trials) == 2 * 2 * 3
    assert [t.values for t in plan.trials[:4]] == [
        {"optimizer.lr": 0.3, "optimizer.momentum": 0.0, "model.layers.0.units": 4},
        {"optimizer.lr": 0.3, "optimizer.momentum": 0.0, "model.layers.0.units": 8},
        {"optimizer.lr": 0.3, "optimizer.momentum": 0.0, "model.layers.0.units": 16},
        {"optimizer.lr": 0.3, "optimizer.momentum": 0.9, "model.layers.0.units": 4},
    ]
    trial = plan.trials[5]
    assert trial.name == "trial-005"
    assert trial.overrides == ["optimizer.lr=0.3", "optimizer.momentum=0.9", "model.layers.0.units=16"]
    assert [r.dir for r in trial.runs] == ["trial-005-fold-0", "trial-005-fold-1"]
    _, config = plan.run_config(trial.runs[1])
    assert (config.optimizer.lr, config.optimizer.momentum, config.model.layers[0].units) == (0.3, 0.9, 16)
    assert (config.data.split.folds, config.data.split.fold, config.train.epochs) == (2, 1, 2)
    assert config.seed == 0  # seeds: same -- every trial sees the same data, splits and folds


def test_nested_section_keys_and_command_line_keys_of_another_kind():
    section = {
        "grid": {"optimizer": {"lr": [0.1, 0.2]}},
        "random": 2,
        "uniform": {"optimizer.momentum": [0.1, 0.9]},
        "choice": {"model.layers.1": ["relu", "tanh"]},
    }
    # --set sweep.choice.train.batch_size=... nests as any --set does; nested keys read as dotted ones.
    plan = plan_sweep(tiny(sweep=section), ["sweep.choice.train.batch_size=[16, 32]"], check_data=False)
    assert plan.spec.grid == {"optimizer.lr": [0.1, 0.2]}
    assert plan.spec.choice == {"model.layers.1": ["relu", "tanh"], "train.batch_size": [16, 32]}
    # A key given on the command line replaces the section's entry for it, whatever its kind.
    plan = plan_sweep(tiny(sweep=section), [], sweep_options(grid=["optimizer.momentum=0.5,0.7"]), check_data=False)
    assert plan.spec.grid == {"optimizer.lr": [0.1, 0.2], "optimizer.momentum": [0.5, 0.7]} and plan.spec.uniform == {}
    assert len(plan.trials) == 2 * 2 * 2
    del section["choice"]  # now nothing is left to draw from
    with pytest.raises(NntrainError, match="sweep.random: draws from log_uniform, uniform or choice"):
        plan_sweep(tiny(sweep=section), [], sweep_options(grid=["optimizer.momentum=0.5"]), check_data=False)


def test_bad_grid_key_or_value_fails_the_whole_sweep_before_anything_runs(tmp_path):
    root = tmp_path / "runs"
    with pytest.raises(NntrainError) as e:
        run_sweep(tiny(), spec=sweep_options(grid=["optimizer.lrr=0.1,0.01"]), runs_root=root)
    message = str(e.value)
    assert "trial-000 (optimizer.lrr=0.1)" in message and "unknown key 'lrr'" in message and "did you mean 'lr'" in message
    # A bad value in the last trial only: still nothing runs, and the message names trial and key.
    with pytest.raises(NntrainError) as e:
        run_sweep(tiny(), spec=sweep_options(grid=["optimizer.lr=0.1,0.01,-1"]), runs_root=root)
    assert "trial-002 (optimizer.lr=-1)" in str(e.value) and "optimizer.lr: Input should be greater than 0" in str(e.value)
    with pytest.raises(NntrainError) as e:  # an index outside the list of layers, as --set says it
        run_sweep(tiny(), spec=sweep_options(grid=["model.layers.7.units=4"]), runs_root=root)
    assert "model.layers.7.units" in str(e.value)
    with pytest.raises(NntrainError) as e:  # a monitor the data cannot give: found by loading the data once
        run_sweep(tiny(), spec=sweep_options(grid=["optimizer.lr=0.1"], metric="val_acuracy"), runs_root=root)
    assert "train.monitor" in str(e.value) and "did you mean 'val_accuracy'" in str(e.value)
    assert not root.exists()


@pytest.mark.parametrize(
    "section, words",
    [
        ({"gird": {"optimizer.lr": [0.1]}}, ["sweep: unknown key 'gird'", "did you mean 'grid'"]),
        ({"grid": {"optimizer.lr": 0.1}}, ["sweep.grid.optimizer.lr", "non-empty list"]),
        ({"grid": {"optimizer.lr": [0.1, 0.1]}}, ["sweep.grid.optimizer.lr", "given twice"]),
        ({"random": 3}, ["sweep.random", "log_uniform, uniform or choice"]),
        ({"random": 0, "uniform": {"optimizer.lr": [0.1, 0.2]}}, ["sweep.random", ">= 1"]),
        ({"uniform": {"optimizer.lr": [0.1, 0.2]}}, ["sweep.uniform", "random: N"]),
        ({"random": 2, "log_uniform": {"optimizer.lr": [0, 0.1]}}, ["sweep.log_uniform.optimizer.lr", "> 0"]),
        ({"random": 2, "uniform": {"optimizer.lr": [0.2, 0.1]}}, ["sweep.uniform.optimizer.lr", "below high"]),
        ({"grid": {"optimizer.lr": [0.1]}, "random": 2, "choice": {"optimizer.lr": [0.2]}}, ["sweep.choice.optimizer.lr", "swept twice"]),
        ({"grid": {"data.split.fold": [0, 1]}}, ["sweep.grid.data.split.fold", "sweep.folds"]),
        ({"folds": 1}, ["sweep.folds", ">= 2"]),
        ({"folds": 2, "seeds": "per-trial"}, ["sweep.seeds", "did you mean 'per_trial'"]),
        ({"grid": {"seed": [1, 2]}, "seeds": "per_trial"}, ["sweep.grid.seed", "per_trial"]),
        ({"metric": "accuracy", "folds": 2}, ["sweep.metric", "val_accuracy"]),
        ({}, ["nothing to sweep"]),
        ([1, 2], ["sweep: must be a mapping"]),
    ],
)
def test_sweep_section_errors_name_the_key(section, words):
    with pytest.raises(NntrainError) as e:
        plan_sweep(tiny(sweep=section), check_data=False)
    assert all(w in str(e.value) for w in words), str(e.value)


def test_random_draws_are_deterministic_inside_bounds_and_log_uniform_in_log_space():
    section = {
        "random": 300,
        "log_uniform": {"optimizer.lr": [1e-4, 1e-1]},
        "uniform": {"optimizer.momentum": [0.5, 0.9]},
        "choice": {"model.layers.0.units": [4, 8, 16]},
    }
    plans = [plan_sweep(tiny(sweep=section), check_data=False) for _ in range(2)]
    values = [t.values for t in plans[0].trials]
    assert values == [t.values for t in plans[1].trials]  # same seed, same trials
    lr = np.array([v["optimizer.lr"] for v in values])
    momentum = np.array([v["optimizer.momentum"] for v in values])
    units = [v["model.layers.0.units"] for v in values]
    assert lr.min() >= 1e-4 and lr.max() <= 1e-1 and momentum.min() >= 0.5 and momentum.max() <= 0.9
    # Log-uniform: each decade equally likely (uniform would put ~90% of the draws above 1e-2).
    decades = np.histogram(np.log10(lr), bins=[-4, -3, -2, -1])[0] / len(lr)
    assert np.all(np.abs(decades - 1 / 3) < 0.1), decades
    assert abs(np.mean(momentum) - 0.7) < 0.03
    assert set(units) == {4, 8, 16} and all(isinstance(u, int) for u in units)
    # The sweep's own seed (default: the config's) decides the draws; the runs keep the config's seed.
    few = {**section, "random": 5}
    assert [t.values for t in plan_sweep(tiny(sweep=few), check_data=False).trials] == values[:5]
    assert [t.values for t in plan_sweep(tiny(sweep={**few, "seed": 1}), check_data=False).trials] != values[:5]
    assert [t.values for t in plan_sweep(tiny(seed=5, sweep=few), check_data=False).trials] != values[:5]
    _, config = plans[0].run_config(plans[0].trials[7].runs[0])
    assert config.optimizer.lr == values[7]["optimizer.lr"] and config.seed == 0


def test_grid_points_times_random_draws_and_derived_seeds():
    section = {"grid": {"optimizer.lr": [0.1, 0.01]}, "random": 3, "uniform": {"optimizer.momentum": [0.1, 0.9]}}
    plan = plan_sweep(tiny(seed=7, sweep=section), check_data=False)
    assert [t.values["optimizer.lr"] for t in plan.trials] == [0.1, 0.1, 0.1, 0.01, 0.01, 0.01]
    draws = [t.values["optimizer.momentum"] for t in plan.trials]
    assert draws[:3] == draws[3:] and len(set(draws[:3])) == 3  # the same 3 draws for every grid point
    assert all(t.seed is None and not any(o.startswith("seed=") for o in t.overrides) for t in plan.trials)

    per_trial = plan_sweep(tiny(seed=7, sweep={**section, "seeds": "per_trial", "folds": 2}), check_data=False)
    seeds = [t.seed for t in per_trial.trials]
    assert seeds == [derived_seed(7, i) for i in range(6)] and len(set(seeds)) == 6
    assert seeds == [t.seed for t in plan_sweep(tiny(seed=7, sweep={**section, "seeds": "per_trial", "folds": 2}), check_data=False).trials]
    trial = per_trial.trials[4]
    assert {per_trial.run_config(r)[1].seed for r in trial.runs} == {seeds[4]}  # the folds of a trial share its seed


# --- running --------------------------------------------------------------------------------


def test_folds_give_k_runs_per_trial_with_different_validation_rows(tmp_path):
    notes = []
    raw = tiny(data={"split": {"val": 0.2, "test": 0.2}})  # split.val gives way to the folds, with a note
    result = run_sweep(
        raw,
        spec=sweep_options(grid=["optimizer.lr=0.1,0.03"], folds=3),
        sweep_dir=tmp_path / "sw",
        hooks=SweepHooks(log=notes.append),
    )
    sweep_dir = tmp_path / "sw"
    assert result["status"] == "completed" and result["folds"] == 3
    assert any("data.split.val 0.2 does not apply with folds" in n for n in notes)
    assert sorted(p.name for p in sweep_dir.iterdir()) == sorted(
        ["sweep.yaml", "sweep.csv"] + [f"trial-00{t}-fold-{k}" for t in range(2) for k in range(3)]
    )
    splits = []
    for k in range(3):
        with np.load(sweep_dir / f"trial-000-fold-{k}" / "splits.npz") as npz:
            splits.append({name: npz[name] for name in npz.files})
    vals = [s["val"] for s in splits]
    assert all(np.array_equal(s["test"], splits[0]["test"]) for s in splits)  # the test split never moves
    assert sum(len(v) for v in vals) == len(np.unique(np.concatenate(vals)))  # disjoint folds
    assert np.array_equal(np.sort(np.concatenate(vals)), np.sort(np.concatenate([splits[0]["train"], vals[0]])))

    rows = read_csv(sweep_dir / "sweep.csv")
    assert list(rows[0]) == ["trial", "optimizer.lr", "val_loss_mean", "val_loss_std", "val_loss_folds", "rank", "status", "seconds", "run_dirs"]
    for row, trial in zip(rows, result["trials"]):
        best = [summary(sweep_dir / d)["best_value"] for d in row["run_dirs"].split(";")]
        assert row["status"] == "completed" and len(best) == 3
        assert float(row["val_loss_mean"]) == pytest.approx(np.mean(best), rel=1e-12)
        assert float(row["val_loss_std"]) == pytest.approx(np.std(best), rel=1e-12)
        assert [float(v) for v in row["val_loss_folds"].split(";")] == best
        assert trial["mean"] == float(row["val_loss_mean"]) and len(set(best)) == 3
    saved = load_plan(sweep_dir)
    assert [t.overrides for t in saved.trials] == [["optimizer.lr=0.1"], ["optimizer.lr=0.03"]]
    assert saved.trials[1].runs[2].overrides == ["optimizer.lr=0.03", "data.split.folds=3", "data.split.fold=2"]
    assert "val" not in saved.base["data"]["split"]


class FakeExecutor:
    """A stand-in for a distributed backend: answers each task from another thread, a moment later."""

    jobs = 3

    def __init__(self, score):
        self.score, self.tasks, self.stopped, self.closed = score, [], False, False

    def submit(self, task):
        self.tasks.append(task)
        future = Future()
        value = self.score(task.config["optimizer"]["lr"])
        monitor = task.config["train"].get("monitor") or "val_loss"
        done = {"status": "completed", "monitor": monitor, "best_value": value, "epochs_completed": 3, "seconds": 0.5}
        threading.Timer(0.02, future.set_result, [done]).start()
        return future

    def stop(self):
        self.stopped = True

    def close(self):
        self.closed = True


@pytest.mark.parametrize("metric", ["val_loss", "val_accuracy", "val_roc_auc", "val_log_loss"])
def test_a_custom_executor_plugs_in_and_ranking_follows_the_metric_direction(tmp_path, metric):
    lrs = [0.3, 0.01, 0.1, 0.03]
    fake = FakeExecutor(lambda lr: lr)  # the "metric" equals lr: best is the smallest loss, the largest accuracy
    assert isinstance(fake, Executor)
    spec = sweep_options(grid=["optimizer.lr=" + ",".join(map(str, lrs))], metric=metric)
    base = tiny(train={"metrics": ["accuracy", "roc_auc", "log_loss"]})
    result = run_sweep(base, spec=spec, sweep_dir=tmp_path / "sw", executor=fake)

    assert [t.trial for t in fake.tasks] == [0, 1, 2, 3] and not fake.closed  # the caller's executor stays open
    task = fake.tasks[2]
    assert task.name == "trial-002" and task.fold is None and not task.resume
    assert task.run_dir == str((tmp_path / "sw" / "trial-002").resolve())
    assert task.config["optimizer"]["lr"] == 0.1 and task.config["name"] == "small"
    higher = metric in ("val_accuracy", "val_roc_auc")
    best_first = sorted(lrs, reverse=higher)
    assert result["metric"] == metric and result["higher_is_better"] == higher
    assert [e["values"]["optimizer.lr"] for e in result["leaderboard"]] == best_first
    assert result["best"]["values"]["optimizer.lr"] == best_first[0]
    rows = read_csv(tmp_path / "sw" / "sweep.csv")
    assert [int(r["rank"]) for r in rows] == [best_first.index(lr) + 1 for lr in lrs]
    assert [float(r[f"{metric}_mean"]) for r in rows] == lrs and all(r[f"{metric}_std"] == "" for r in rows)
    table = format_leaderboard(result).splitlines()
    assert table[0].split()[:3] == ["rank", "trial", "optimizer.lr"] and metric in table[0]
    assert [line.split()[2] for line in table[1:]] == [str(lr) for lr in best_first]
    json.dumps(result)  # --json


def test_real_runs_rank_by_accuracy_descending(tmp_path):
    result = run_sweep(tiny(), spec=sweep_options(grid=["optimizer.lr=0.3,0.01,0.001"], metric="val_accuracy"), sweep_dir=tmp_path / "sw")
    means = [e["mean"] for e in result["leaderboard"]]
    assert len(means) == 3 and means == sorted(means, reverse=True)
    for trial in result["trials"]:
        run = summary(tmp_path / "sw" / trial["name"])
        assert run["monitor"] == "val_accuracy" and trial["mean"] == run["best_value"]


def test_worker_processes_give_the_same_numbers_as_serial(tmp_path):
    spec = sweep_options(grid=["optimizer.lr=0.1,0.03", "model.layers.0.units=4,8"], folds=2)
    serial = run_sweep(tiny(), spec=spec, sweep_dir=tmp_path / "serial")
    before = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    with LocalExecutor(jobs=2) as executor:
        threads = str(max(1, available_cores() // 2))
        assert [executor.pool.submit(os.getenv, name).result() for name in THREAD_VARIABLES] == [threads] * len(THREAD_VARIABLES)
        assert {name: os.environ.get(name) for name in THREAD_VARIABLES} == before  # the parent's are untouched
        parallel = run_sweep(tiny(), spec=spec, sweep_dir=tmp_path / "parallel", executor=executor)
    assert serial["status"] == parallel["status"] == "completed"
    a, b = read_csv(tmp_path / "serial" / "sweep.csv"), read_csv(tmp_path / "parallel" / "sweep.csv")
    assert without_seconds(a) == without_seconds(b) and all(r["val_loss_mean"] for r in a)


def test_interrupted_sweep_resumed_equals_an_uninterrupted_one(tmp_path):
    spec = sweep_options(grid=["optimizer.lr=0.3,0.1,0.03,0.01"])
    reference = run_sweep(tiny(), spec=spec, sweep_dir=tmp_path / "ref")

    hooks = SweepHooks()

    def on_epoch(task, row):  # Ctrl-C during trial 2's second epoch
        if task.trial == 2 and row["epoch"] == 1:
            hooks.stop.signal = signal.SIGINT

    hooks.on_epoch = on_epoch
    sweep_dir = tmp_path / "sw"
    first = run_sweep(tiny(), spec=spec, sweep_dir=sweep_dir, hooks=hooks)
    assert first["status"] == "interrupted" and first["signal"] == signal.SIGINT
    assert [t["status"] for t in first["trials"]] == ["completed", "completed", "interrupted", "pending"]
    assert first["counts"] == {"completed": 2, "failed": 0, "diverged": 0, "interrupted": 1, "pending": 1}
    assert summary(sweep_dir / "trial-002")["epochs_completed"] == 1
    assert not (sweep_dir / "trial-003").exists()
    rows = read_csv(sweep_dir / "sweep.csv")  # written, with what there is
    assert [r["status"] for r in rows] == ["completed", "completed", "interrupted", "pending"]
    assert rows[2]["val_loss_mean"] == "" and rows[2]["rank"] == ""

    # Besides: trial 1 failed (it runs again, its directory kept aside); trial 0 stays as it is.
    failed = summary(sweep_dir / "trial-001")
    (sweep_dir / "trial-001" / "summary.json").write_text(json.dumps({**failed, "status": "failed"}))
    kept = (sweep_dir / "trial-000" / "summary.json").stat().st_mtime_ns
    started, logs = [], []
    resumed = run_sweep(resume=sweep_dir, hooks=SweepHooks(on_run_start=started.append, log=logs.append))
    assert [(t.name, t.resume) for t in started] == [("trial-001", False), ("trial-002", True), ("trial-003", False)]
    assert (sweep_dir / "trial-001.failed-1").is_dir() and any("trial-001.failed-1" in m for m in logs)
    assert (sweep_dir / "trial-000" / "summary.json").stat().st_mtime_ns == kept
    assert resumed["status"] == "completed" and resumed["signal"] is None
    assert [r["epoch"] for r in read_csv(sweep_dir / "trial-002" / "metrics.csv")] == ["1", "2", "3"]
    assert without_seconds(read_csv(sweep_dir / "sweep.csv")) == without_seconds(read_csv(tmp_path / "ref" / "sweep.csv"))
    assert [e["trial"] for e in resumed["leaderboard"]] == [e["trial"] for e in reference["leaderboard"]]
    # Nothing left to do: a second resume changes nothing.
    again = run_sweep(resume=sweep_dir, hooks=SweepHooks(on_run_start=started.append))
    assert len(started) == 3 and again["status"] == "completed"


def test_resume_refuses_a_new_definition_and_a_non_sweep_directory(tmp_path):
    with pytest.raises(NntrainError, match="give no config"):
        run_sweep(tiny(), spec=sweep_options(folds=2), resume=tmp_path)
    with pytest.raises(NntrainError, match="not a sweep directory"):
        run_sweep(resume=tmp_path)
    with pytest.raises(NntrainError, match="already exists"):
        run_sweep(tiny(), spec=sweep_options(folds=2), sweep_dir=tmp_path)


SCRIPT = """
import json, sys
from nntrain.sweep import run_sweep

if __name__ == "__main__":  # the workers are spawned: they import this file as __mp_main__
    config_file, sweep_dir = sys.argv[1:]
    with open(config_file) as f:
        raw, spec = json.load(f)
    print(json.dumps(run_sweep(raw, spec=spec, sweep_dir=sweep_dir, jobs=2)))
"""


@pytest.mark.parametrize("target", ["group", "parent"])
def test_ctrl_c_in_worker_processes_interrupts_running_trials_and_resume_finishes(tmp_path, target):
    """group: Ctrl-C in a terminal (every process gets SIGINT); parent: only the sweep's process
    gets it (kill -INT PID) and tells its workers to stop."""
    raw = tiny(train={"epochs": 150, "batch_size": 8, "checkpoint_every": 0})  # room to be interrupted mid-run
    spec = sweep_options(grid=["optimizer.lr=0.1,0.03,0.01"])
    (tmp_path / "config.json").write_text(json.dumps([raw, spec]))
    script = tmp_path / "sweep_script.py"
    script.write_text(SCRIPT)
    sweep_dir = tmp_path / "sw"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "config.json"), str(sweep_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, text=True,
    )
    deadline = time.monotonic() + 60
    metrics = [sweep_dir / "trial-000" / "metrics.csv", sweep_dir / "trial-001" / "metrics.csv"]
    while not all(m.exists() and len(m.read_text().splitlines()) >= 3 for m in metrics):  # both are training
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.01)
    (os.killpg if target == "group" else os.kill)(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    result = json.loads(out)
    assert result["status"] == "interrupted" and result["signal"] == signal.SIGINT
    assert [t["status"] for t in result["trials"]] == ["interrupted", "interrupted", "pending"]
    for name in ("trial-000", "trial-001"):  # not lost: ended by the trainer, with a summary, resumable
        run = summary(sweep_dir / name)
        assert run["status"] == "interrupted" and 2 <= run["epochs_completed"] < 150
    assert [r["status"] for r in read_csv(sweep_dir / "sweep.csv")] == ["interrupted", "interrupted", "pending"]

    started = []
    resumed = run_sweep(resume=sweep_dir, hooks=SweepHooks(on_run_start=started.append))
    assert resumed["status"] == "completed"
    assert [(t.name, t.resume) for t in started] == [("trial-000", True), ("trial-001", True), ("trial-002", False)]
    run_sweep(raw, spec=spec, sweep_dir=tmp_path / "ref")
    rows = read_csv(sweep_dir / "sweep.csv")
    assert without_seconds(rows) == without_seconds(read_csv(tmp_path / "ref" / "sweep.csv"))
    assert [r["status"] for r in rows] == ["completed"] * 3
