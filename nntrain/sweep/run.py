"""Running a sweep and its bookkeeping: `SweepHooks`, the rows of runs (pending or from a
summary), sweep.csv, the sweep directory, resume state, the execution loop and `run_sweep`.

Every run is an ordinary run directory inside the sweep directory:

    runs/<name>-sweep-<YYYYmmdd-HHMMSS>/
        sweep.yaml              base config, sweep definition, every trial with its overrides
        sweep.csv               one row per trial, rewritten (atomically) after every finished run
        trial-000/              one run directory per trial ...
        trial-001-fold-0/       ... or per trial and fold with folds
"""

from __future__ import annotations

import csv
import io
import json
import signal
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..errors import NntrainError
from ..fileio import atomic_write
from ..train.rundir import new_directory
from ..train.trainer import StopRequest, stop_on_signals
from .executors import AnyStop, Executor, LocalExecutor, SerialExecutor, TrialTask, move_aside
from .plan import RunPlan, SweepPlan, load_plan, plan_sweep, trial_error
from .report import cell, rank_trials, sweep_result, trial_row
from .spec import is_int


@dataclass
class SweepHooks:
    """How a caller follows and steers a sweep; every part is optional.

    on_run_start(task) when a run is submitted (task.resume: it continues an interrupted run);
    on_run_end(task, row) when it ended (row as in result['trials'][i]['runs']); on_trial_end(trial)
    when every run of a trial ended (as in result['trials']); on_epoch(task, row) every epoch of a
    run trained in this process (SerialExecutor only); log(message) notes. Setting stop (e.g.
    stop.signal = signal.SIGINT) ends the sweep as a Ctrl-C does.
    """

    on_run_start: Callable = lambda task: None
    on_run_end: Callable = lambda task, row: None
    on_trial_end: Callable = lambda trial: None
    on_epoch: Callable = lambda task, row: None
    log: Callable = lambda message: None
    stop: StopRequest = field(default_factory=StopRequest)


def _pending_row(run: RunPlan) -> dict:
    return {"fold": run.fold, "run_dir": run.dir, "status": "pending", "value": None, "epochs": None, "seconds": None, "message": None}


def _summary_row(run: RunPlan, summary: dict, metric: str) -> dict:
    value, message = summary.get("best_value"), summary.get("message")
    if summary.get("monitor") not in (None, metric):
        value, message = None, f"the run monitored {summary.get('monitor')}, not the sweep's {metric}"
    return {
        "fold": run.fold,
        "run_dir": run.dir,
        "status": summary.get("status", "failed"),
        "value": None if value is None else float(value),
        "epochs": summary.get("epochs_completed"),
        "seconds": summary.get("seconds"),
        "message": message,
    }


def _read_summary(path: Path) -> dict | None:
    try:
        summary = json.loads((path / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) and "status" in summary else None


def csv_columns(plan: SweepPlan) -> list[str]:
    columns = ["trial", *plan.spec.swept_keys()]
    if plan.spec.seeds == "per_trial":
        columns.append("seed")
    columns += [f"{plan.metric}_mean", f"{plan.metric}_std"]
    if plan.spec.folds:
        columns.append(f"{plan.metric}_folds")
    return columns + ["rank", "status", "seconds", "run_dirs"]


def _write_csv(path: Path, plan: SweepPlan, trials: list[dict]) -> None:
    text = io.StringIO(newline="")
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(csv_columns(plan))
    for t in trials:
        row = [t["trial"], *(cell(t["values"].get(k)) for k in plan.spec.swept_keys())]
        if plan.spec.seeds == "per_trial":
            row.append(t["seed"])
        row += [cell(t["mean"]), cell(t["std"])]
        if plan.spec.folds:
            row.append(";".join(cell(r["value"]) for r in t["runs"]))
        row += [cell(t["rank"]), t["status"], cell(t["seconds"]), ";".join(r["run_dir"] for r in t["runs"])]
        writer.writerow(row)
    atomic_write(path, text.getvalue().encode())


def _create_sweep_dir(runs_root: Path, name: str, path: Path | None) -> Path:
    return new_directory(runs_root, f"{name}-sweep", path, "sweep directory", "; continue a sweep with --resume")


def _resume_state(plan: SweepPlan, sweep_dir: Path, log) -> tuple[dict[str, dict], dict[str, bool]]:
    """What each run directory holds: finished rows, and which runs to execute (True: resume)."""
    rows, todo = {}, {}
    for trial in plan.trials:
        for run in trial.runs:
            path = sweep_dir / run.dir
            rows[run.dir] = _pending_row(run)
            if not path.exists():
                todo[run.dir] = False
                continue
            summary = _read_summary(path)
            status = summary["status"] if summary else None
            if status in ("completed", "diverged"):  # a diverged run diverges again: a result, not an accident
                rows[run.dir] = _summary_row(run, summary, plan.metric)
            elif status in ("interrupted", None) and (path / "config.yaml").is_file() and (path / "checkpoints" / "last.npz").is_file():
                todo[run.dir] = True
            else:
                moved = move_aside(path)
                log(f"{run.dir}: {status or 'no summary and no checkpoint'}; moved to {moved.name}, running it again")
                todo[run.dir] = False
    return rows, todo


def _execute(plan, sweep_dir, tasks, executor, hooks, stop, rows, trial_of) -> int | None:
    """Submit tasks (at most executor.jobs at a time) until done or stopped; the stop's signal, if any."""
    queue, running = deque(tasks), {}
    jobs = max(1, int(getattr(executor, "jobs", 1)))
    stopped_by = None
    csv_path = sweep_dir / "sweep.csv"
    open_runs = {t.index: sum(1 for r in t.runs if rows[r.dir]["status"] == "pending") for t in plan.trials}

    def finish(task: TrialTask, future: Future):
        nonlocal stopped_by
        trial = trial_of[task.trial]
        run = next(r for r in trial.runs if r.dir == task.name)
        try:
            summary = future.result()
        except Exception as e:  # noqa: BLE001 - any failure of one run is that run's result
            interrupted = bool(stop) and not isinstance(e, NntrainError)  # e.g. a worker killed by the same Ctrl-C
            message = str(e) if isinstance(e, NntrainError) else f"{type(e).__name__}: {e}"
            summary = {"status": "interrupted" if interrupted else "failed", "message": message}
        if summary.get("status") == "interrupted" and stopped_by is None:
            stopped_by = summary.get("signal") or stop.signal or signal.SIGINT
        rows[task.name] = _summary_row(run, summary, plan.metric)
        trials = [trial_row(plan, t, rows) for t in plan.trials]
        rank_trials(trials, plan.higher_is_better)
        _write_csv(csv_path, plan, trials)
        hooks.on_run_end(task, rows[task.name])
        open_runs[task.trial] -= 1
        if open_runs[task.trial] == 0:
            hooks.on_trial_end(next(t for t in trials if t["trial"] == task.trial))

    asked_to_stop = False
    while queue or running:
        if (stop or stopped_by is not None) and not asked_to_stop:
            asked_to_stop = True
            stopped_by = stopped_by or stop.signal or signal.SIGINT
            queue.clear()  # never submitted: they stay pending
            executor.stop()
        while queue and len(running) < jobs and not (stop or stopped_by is not None):
            task = queue.popleft()
            hooks.on_run_start(task)
            try:
                future = executor.submit(task)
            except Exception as e:  # noqa: BLE001 - e.g. a broken worker pool: the run failed, resume runs it again
                future = Future()
                future.set_exception(e)
            running[future] = task
            if future.done():  # SerialExecutor: it ran during submit
                finish(running.pop(future), future)
        if not running:
            continue
        done, _ = wait(list(running), timeout=0.2, return_when=FIRST_COMPLETED)
        for future in done:
            finish(running.pop(future), future)
    return stopped_by


def run_sweep(
    config=None,
    overrides: Sequence[str] = (),
    spec: dict | None = None,
    *,
    runs_root: Path = Path("runs"),
    sweep_dir: Path | None = None,
    jobs: int = 1,
    executor: Executor | None = None,
    resume: Path | None = None,
    hooks: SweepHooks | None = None,
) -> dict:
    """Run a sweep (or continue one with `resume`=SWEEP_DIR) and return its result dict.

    config / overrides / spec: see plan_sweep (spec is a `sweep:` mapping, e.g. from
    sweep_options, merged over the config's section). The sweep directory is `sweep_dir`
    (must not exist) or runs_root/<name>-sweep-<YYYYmmdd-HHMMSS>. Runs execute on
    `executor`, or a SerialExecutor (jobs=1) / LocalExecutor(jobs) made and closed here.

    On SIGINT / SIGTERM (when called from the main thread) or hooks.stop, no further run is
    submitted, runs in progress end as interrupted, sweep.csv is written, and the result's
    status is 'interrupted' with the signal number in 'signal'.

    With `resume`: completed and diverged runs are kept, interrupted ones continue
    (nntrain.api.resume), failed or missing ones run again (a failed run directory is moved
    to <dir>.failed-N first). The trials are sweep.yaml's, so the final sweep.csv equals
    that of an uninterrupted sweep except for the seconds column.
    """
    hooks = hooks or SweepHooks()
    if not is_int(jobs) or jobs < 1:
        raise NntrainError(f"must be an integer >= 1, got {jobs!r}", "--jobs")
    if executor is not None and jobs != 1:
        raise NntrainError("give jobs or an executor, not both")
    if resume is not None:
        if config is not None or overrides or spec:
            raise NntrainError("--resume continues a sweep as its sweep.yaml defines it; give no config, --set or sweep options")
        path = Path(resume)
        plan = load_plan(path)
        for trial in plan.trials:  # the data must still be there, and the configs still valid
            for run in trial.runs:
                try:
                    plan.run_config(run)
                except NntrainError as e:
                    raise trial_error(trial, run, e) from None
        rows, todo = _resume_state(plan, path, hooks.log)
    else:
        if config is None:
            raise NntrainError("give a config file, or --resume SWEEP_DIR")
        plan = plan_sweep(config, overrides, spec, hooks.log)
        path = _create_sweep_dir(runs_root, plan.name, sweep_dir)
        atomic_write(path / "sweep.yaml", yaml.safe_dump(plan.to_dict(), sort_keys=False).encode())
        rows = {r.dir: _pending_row(r) for t in plan.trials for r in t.runs}
        todo = {r.dir: False for t in plan.trials for r in t.runs}
    path = path.resolve()
    trial_of = {t.index: t for t in plan.trials}
    tasks = []
    for trial in plan.trials:
        for run in trial.runs:
            if run.dir in todo:
                raw, _ = plan.run_config(run)
                tasks.append(TrialTask(trial.index, run.fold, run.dir, str(path / run.dir), raw, todo[run.dir]))
    trials = [trial_row(plan, t, rows) for t in plan.trials]
    rank_trials(trials, plan.higher_is_better)
    _write_csv(path / "sweep.csv", plan, trials)
    for trial in trials:
        if trial["status"] != "pending" and all(r["status"] != "pending" for r in trial["runs"]):
            hooks.log(f"{trial['name']}: {trial['status']} already, kept")

    own = executor is None
    try:
        with stop_on_signals() as signalled:
            stop = AnyStop(hooks.stop, signalled)
            if own:
                executor = SerialExecutor(stop, hooks.on_epoch, lambda task, m: hooks.log(f"{task.name}: {m}")) if jobs == 1 else LocalExecutor(jobs)
            try:
                stopped_by = _execute(plan, path, tasks, executor, hooks, stop, rows, trial_of)
            except BaseException:
                if executor is not None:
                    executor.stop()  # do not wait for whole runs on the way out
                raise
    finally:
        if own and executor is not None:
            executor.close()
    return sweep_result(plan, path, rows, stopped_by)
