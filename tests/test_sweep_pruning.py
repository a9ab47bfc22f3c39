"""Pruning in sweeps (nntrain/sweep/pruning.py): the median and asha rules on hand-computed reports
and against optuna's pruners, folds, restore on resume, and pruned runs in the run directory,
sweep.csv and the leaderboard, serially and in worker processes."""

from __future__ import annotations

import pickle
import signal

import numpy as np
import pytest
from conftest import read_csv, small_config, summary, without_seconds

from nntrain.errors import NntrainError
from nntrain.sweep import LocalExecutor, SweepHooks, format_leaderboard, run_sweep, sweep_options
from nntrain.sweep.pruning import Pruner


def tiny(epochs=4, **train) -> dict:
    return small_config(
        data={"dataset": "spirals", "options": {"samples": 200, "classes": 3, "noise": 0.2}},
        model={"layers": [{"linear": 8}, "relu", {"linear": 3}]},
        train={"epochs": epochs, "batch_size": 32, **train},
    )


def feed(pruner, name, trial, values, fold=None, finish=True):
    """Report values (epochs 1, 2, ...) until pruned; the epoch it was pruned at, or None."""
    for epoch, value in enumerate(values, 1):
        if pruner.report(name, trial, fold, epoch, value):
            if finish:
                pruner.finish(name, trial, fold, "pruned")
            return epoch
    if finish:
        pruner.finish(name, trial, fold, "completed")
    return None


# --- the rules, by hand ----------------------------------------------------------------


def test_median_rule_by_hand():
    p = Pruner("median", higher_is_better=False, metric="val_loss", warmup=1, startup=2)
    assert feed(p, "a", 0, [1.0, 0.8, 0.6, 0.5]) is None  # nothing completed yet: never pruned
    assert p.report("b", 1, None, 3, 5.0) is None  # only one completed run, startup 2: no judgement
    p = Pruner("median", higher_is_better=False, metric="val_loss", warmup=1, startup=2)
    feed(p, "a", 0, [1.0, 0.8, 0.6, 0.5])
    feed(p, "b", 1, [0.9, 0.7, 0.5, 0.4])
    assert p.report("c", 2, None, 1, 2.0) is None  # epoch 1 <= warmup
    # epoch 2: best so far min(2.0, 0.76) = 0.76 > median(0.8, 0.7) = 0.75
    reason = p.report("c", 2, None, 2, 0.76)
    assert reason == "median rule: best val_loss 0.76 by epoch 2 is worse than the median 0.75 of 2 completed runs at epoch 2"
    assert p.report("d", 3, None, 2, 0.74) is None  # 0.74 < 0.75
    assert p.report("d", 3, None, 3, 0.56) is not None  # best 0.56 > median(0.6, 0.5) = 0.55
    assert p.report("e", 4, None, 2, 0.75) is None  # equal to the median: not worse
    assert p.report("e", 4, None, 5, 9.0) is None  # no completed run reached epoch 5: no reference
    assert p.pruned_trials().keys() == {2, 3}


def test_median_rule_higher_is_better_compares_the_best_so_far():
    p = Pruner("median", higher_is_better=True, metric="val_accuracy", warmup=0, startup=1)
    feed(p, "a", 0, [0.5, 0.7, 0.8])
    assert p.report("b", 1, None, 1, 0.6) is None  # 0.6 >= 0.5
    assert p.report("b", 1, None, 2, 0.65) is not None  # best so far 0.65 < 0.7
    assert p.report("c", 2, None, 1, 0.9) is None
    assert p.report("c", 2, None, 2, 0.1) is None  # the best so far (0.9) counts, not the last value
    assert p.report("c", 2, None, 3, 0.85) is None  # 0.9 >= 0.8


def test_asha_rule_by_hand():
    # rungs at epochs 1, 2, 4 (min_epochs 1, factor 2); a run goes on if among the best max(1, n // 2)
    p = Pruner("asha", higher_is_better=False, metric="val_loss", min_epochs=1, factor=2)
    assert p.report("a", 0, None, 1, 0.5) is None  # alone at rung 1
    assert p.report("a", 0, None, 2, 0.4) is None  # alone at rung 2
    assert p.report("b", 1, None, 1, 0.6) == "asha: val_loss 0.6 at epoch 1 is not among the best 1 of the 2 runs that reached epoch 1"
    assert p.report("c", 2, None, 1, 0.45) is None  # best of [0.5, 0.6, 0.45]
    assert p.report("c", 2, None, 2, 0.42) is not None  # [0.4, 0.42]: keeps 1
    assert p.report("d", 3, None, 1, 0.55) is not None  # [0.45, 0.5, 0.55, 0.6]: keeps 2, 0.55 is third
    assert p.report("e", 4, None, 1, 0.5) is None  # [0.45, 0.5, 0.5, 0.55, 0.6]: keeps 2, a tie goes on
    assert p.report("e", 4, None, 2, 0.3) is None
    assert p.report("e", 4, None, 3, 9.0) is None  # no rung at epoch 3
    assert p.report("e", 4, None, 4, 9.0) is None  # alone at rung 4
    assert p.report("f", 5, None, 1, float("nan")) == "val_loss is nan at epoch 1"
    # higher is better: the largest values go on
    q = Pruner("asha", higher_is_better=True, metric="val_accuracy", min_epochs=2, factor=3)
    assert q.report("a", 0, None, 1, 0.1) is None  # before the first rung (epoch 2)
    assert q.report("a", 0, None, 2, 0.8) is None
    assert q.report("b", 1, None, 2, 0.7) is not None
    assert q.report("c", 2, None, 2, 0.9) is None


def test_folds_are_judged_per_fold_and_a_pruned_fold_prunes_its_trial():
    p = Pruner("median", higher_is_better=False, metric="val_loss", warmup=0, startup=1)
    feed(p, "t0-f0", 0, [0.5, 0.5], fold=0)
    feed(p, "t0-f1", 0, [0.9, 0.9], fold=1)  # fold 1 is the harder one
    assert p.report("t1-f1", 1, 1, 1, 0.8) is None  # compared with fold 1 (0.9), not fold 0
    reason = p.report("t1-f0", 1, 0, 1, 0.8)
    assert reason == "median rule: best val_loss 0.8 by epoch 1 is worse than the median 0.5 of 1 completed run (fold 0) at epoch 1"
    assert p.report("t1-f1", 1, 1, 2, 0.1) == f"another fold of the trial was pruned ({reason})"


@pytest.mark.parametrize("rule", ["median", "asha"])
@pytest.mark.parametrize("higher", [False, True])
def test_the_rules_decide_as_optunas_pruners_do(rule, higher):
    """The same reports, one trial at a time, through our Pruner and through an optuna study with
    MedianPruner / SuccessiveHalvingPruner: every trial stops at the same epoch (or none)."""
    optuna = pytest.importorskip("optuna")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rng = np.random.default_rng(7)
    curves = [rng.uniform(0.2, 1.0) + rng.uniform(0.0, 0.3) * np.exp(-np.arange(1, 10) / rng.uniform(1, 4))
              + rng.normal(0, 0.02, 9) for _ in range(25)]
    if rule == "median":
        ours = Pruner("median", higher, warmup=2, startup=3)
        theirs = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=3)  # epochs > 2 are judged
    else:
        ours = Pruner("asha", higher, min_epochs=1, factor=2)
        theirs = optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=2)
    study = optuna.create_study(direction="maximize" if higher else "minimize", pruner=theirs)
    ours_at, theirs_at = [], []
    for i, curve in enumerate(curves):
        ours_at.append(feed(ours, f"trial-{i}", i, curve))
        trial, stopped = study.ask(), None
        for epoch, value in enumerate(curve, 1):
            trial.report(float(value), epoch)
            if trial.should_prune():
                stopped = epoch
                break
        study.tell(trial, None if stopped else float(curve[-1]),
                   state=optuna.trial.TrialState.PRUNED if stopped else optuna.trial.TrialState.COMPLETE)
        theirs_at.append(stopped)
    assert ours_at == theirs_at
    assert 3 <= sum(a is not None for a in ours_at) <= 22  # the comparison is not vacuous


@pytest.mark.parametrize("rule", ["median", "asha"])
def test_a_restored_pruner_decides_as_the_one_that_saw_it_all(rule):
    """restore(history) on resume (pickled into another process or not) gives the same decisions."""
    rng = np.random.default_rng(3)
    curves = [rng.uniform(0.2, 1.0, 6) for _ in range(8)]
    curves[5][:2] = [0.15, 0.12]  # the run that was interrupted: good so far (a pruned one would not continue)
    live = Pruner(rule, False, warmup=0, startup=2, factor=2)
    history = []
    for i, curve in enumerate(curves[:5]):
        stopped = feed(live, f"r{i}", i, curve)
        n = stopped or len(curve)
        history.append({"name": f"r{i}", "trial": i, "fold": None, "values": [[e + 1, float(v)] for e, v in enumerate(curve[:n])],
                        "status": "pruned" if stopped else "completed", "message": None})
    # run 5 was interrupted after epoch 2 (both judged); it continues from epoch 3
    assert live.report("r5", 5, None, 1, float(curves[5][0])) is None
    assert live.report("r5", 5, None, 2, float(curves[5][1])) is None
    history.append({"name": "r5", "trial": 5, "fold": None, "values": [[1, float(curves[5][0])], [2, float(curves[5][1])]],
                    "status": None, "message": None})
    restored = pickle.loads(pickle.dumps(Pruner(rule, False, warmup=0, startup=2, factor=2)))
    restored.restore(history)
    assert restored.pruned_trials().keys() == live.pruned_trials().keys()
    for epoch in range(3, 7):
        assert restored.report("r5", 5, None, epoch, float(curves[5][epoch - 1])) == live.report("r5", 5, None, epoch, float(curves[5][epoch - 1]))
    for i in (6, 7):
        assert feed(restored, f"r{i}", i, curves[i]) == feed(live, f"r{i}", i, curves[i])


# --- sweeps ------------------------------------------------------------------------------


def test_a_pruned_trial_says_so_in_its_run_directory_sweep_csv_and_the_leaderboard(tmp_path):
    spec = sweep_options(grid=["optimizer.lr=0.3,0.1,0.0001"], prune="median", prune_warmup=0, prune_startup=2)
    result = run_sweep(tiny(epochs=5), spec=spec, sweep_dir=tmp_path / "sw")
    assert [t["status"] for t in result["trials"]] == ["completed", "completed", "pruned"]
    run = summary(tmp_path / "sw" / "trial-002")
    assert run["status"] == "pruned" and run["epochs_completed"] == 1 and run["message"].startswith("median rule: best val_loss") and "of 2 completed runs" in run["message"]
    assert len(read_csv(tmp_path / "sw" / "trial-002" / "metrics.csv")) == 1
    pruned = result["trials"][2]
    assert pruned["rank"] is None and pruned["mean"] == pytest.approx(run["best_value"])  # its value so far, unranked
    assert result["counts"] == {"completed": 2, "failed": 0, "diverged": 0, "pruned": 1, "interrupted": 0, "pending": 0}
    assert result["status"] == "completed" and [e["trial"] for e in result["leaderboard"]] == [0, 1]
    rows = read_csv(tmp_path / "sw" / "sweep.csv")
    assert [r["status"] for r in rows] == ["completed", "completed", "pruned"] and [r["rank"] for r in rows] == ["1", "2", ""]
    assert float(rows[2]["val_loss_mean"]) == pruned["mean"]
    lines = format_leaderboard(result).splitlines()
    assert lines[3].split()[:2] == ["-", "trial-002"] and lines[3].split()[-1] == "pruned"
    # resume keeps it (never runs it again)
    started = []
    again = run_sweep(resume=tmp_path / "sw", hooks=SweepHooks(on_run_start=started.append))
    assert started == [] and again["trials"][2]["status"] == "pruned"


def test_pruning_with_folds_stops_the_trial_and_skips_its_other_folds(tmp_path):
    spec = sweep_options(grid=["optimizer.lr=0.3,0.0001"], folds=2, prune="asha", prune_min_epochs=1, prune_factor=3)
    result = run_sweep(tiny(epochs=3), spec=spec, sweep_dir=tmp_path / "sw")
    good, bad = result["trials"]
    assert good["status"] == "completed" and bad["status"] == "pruned"
    assert [r["status"] for r in bad["runs"]] == ["pruned", "pruned"]
    assert summary(tmp_path / "sw" / "trial-001-fold-0")["epochs_completed"] == 1
    assert bad["runs"][1]["message"] == "not run: trial-001-fold-0 was pruned"
    assert not (tmp_path / "sw" / "trial-001-fold-1").exists()
    row = read_csv(tmp_path / "sw" / "sweep.csv")[1]
    assert row["status"] == "pruned" and row["val_loss_folds"].endswith(";") and row["rank"] == ""
    assert bad["mean"] == bad["runs"][0]["value"] and bad["std"] is None  # over the fold that ran
    started = []
    run_sweep(resume=tmp_path / "sw", hooks=SweepHooks(on_run_start=started.append))
    assert started == [] and not (tmp_path / "sw" / "trial-001-fold-1").exists()


def test_pruning_through_worker_processes_stops_runs_early(tmp_path):
    """jobs 2: two good trials run first (nothing completed: no pruning); the two bad ones start
    when a good one completed, and the pruner, served to the workers, stops them at epoch 1."""
    spec = sweep_options(grid=["optimizer.lr=0.3,0.2,0.0001,0.0002"], prune="median", prune_warmup=0, prune_startup=1)
    result = run_sweep(tiny(epochs=8), spec=spec, sweep_dir=tmp_path / "sw", jobs=2)
    assert [t["status"] for t in result["trials"]][2:] == ["pruned", "pruned"]
    assert "completed" in [t["status"] for t in result["trials"]][:2]
    for name in ("trial-002", "trial-003"):
        assert summary(tmp_path / "sw" / name)["status"] == "pruned"
        assert len(read_csv(tmp_path / "sw" / name / "metrics.csv")) == 1  # it really stopped, in its worker


def test_one_at_a_time_every_executor_gives_the_same_pruned_tpe_sweep_and_resume_finishes_it(tmp_path):
    """TPE + median pruning: SerialExecutor and LocalExecutor(jobs=1) give the same sweep; a serial
    sweep interrupted mid-trial and resumed ends as the uninterrupted one."""
    spec = sweep_options(search="tpe", trials=7, tpe_startup=3, log_uniform=["optimizer.lr=1e-4:1"], prune="median",
                         prune_warmup=0, prune_startup=1, seed=5)
    reference = run_sweep(tiny(), spec=spec, sweep_dir=tmp_path / "ref")
    assert "pruned" in [t["status"] for t in reference["trials"]] and reference["counts"]["completed"] >= 2
    with LocalExecutor(jobs=1) as executor:
        local = run_sweep(tiny(), spec=spec, sweep_dir=tmp_path / "local", executor=executor)
    assert without_seconds(read_csv(tmp_path / "local" / "sweep.csv")) == without_seconds(read_csv(tmp_path / "ref" / "sweep.csv"))
    assert format_leaderboard(local) == format_leaderboard(reference)

    hooks = SweepHooks()

    def on_epoch(task, row):  # Ctrl-C right after trial 3's first epoch: before the pruner judged it
        if task.trial == 3 and row["epoch"] == 1:
            hooks.stop.signal = signal.SIGINT

    hooks.on_epoch = on_epoch
    first = run_sweep(tiny(), spec=spec, sweep_dir=tmp_path / "sw", hooks=hooks)
    assert first["status"] == "interrupted" and len(first["trials"]) == 4
    assert summary(tmp_path / "sw" / "trial-003")["status"] == "interrupted"
    started = []
    resumed = run_sweep(resume=tmp_path / "sw", hooks=SweepHooks(on_run_start=started.append))
    assert resumed["status"] == "completed" and len(resumed["trials"]) == 7
    # judged on resume as it would have been: pruned there (not after another epoch), or continued
    assert summary(tmp_path / "sw" / "trial-003")["status"] == summary(tmp_path / "ref" / "trial-003")["status"]
    assert ("trial-003" in [t.name for t in started]) == (reference["trials"][3]["status"] != "pruned")
    assert without_seconds(read_csv(tmp_path / "sw" / "sweep.csv")) == without_seconds(read_csv(tmp_path / "ref" / "sweep.csv"))


def test_pruning_errors_name_the_key(tmp_path):
    cases = [
        (sweep_options(grid=["optimizer.lr=0.1"], prune="medain"), ["sweep.prune", "did you mean 'median'", "none, median, asha"]),
        (sweep_options(grid=["optimizer.lr=0.1"], prune="median", prune_factor=2), ["sweep.prune_factor", "prune: asha only"]),
        (sweep_options(grid=["optimizer.lr=0.1"], prune_warmup=2), ["sweep.prune_warmup", "prune: median only"]),
        (sweep_options(grid=["optimizer.lr=0.1"], prune="asha", prune_factor=1), ["sweep.prune_factor", ">= 2"]),
    ]
    for spec, words in cases:
        with pytest.raises(NntrainError) as e:
            run_sweep(tiny(), spec=spec, sweep_dir=tmp_path / "sw")
        assert all(w in str(e.value) for w in words), str(e.value)
    assert not (tmp_path / "sw").exists()


def test_an_executor_that_cannot_share_refuses_pruning(tmp_path):
    class NoShare:
        jobs = 1

        def submit(self, task):
            raise AssertionError("never submitted")

        def stop(self):
            pass

        def close(self):
            pass

    spec = sweep_options(grid=["optimizer.lr=0.1"], prune="median")
    with pytest.raises(NntrainError, match="needs an executor that shares the pruner"):
        run_sweep(tiny(), spec=spec, sweep_dir=tmp_path / "sw", executor=NoShare())
