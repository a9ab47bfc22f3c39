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

from ..engine.registry import did_you_mean
from ..errors import NntrainError
from ..fileio import atomic_write
from ..train.rundir import RunDir, new_directory
from ..train.trainer import StopRequest, stop_on_signals
from .executors import AnyStop, Executor, LocalExecutor, SerialExecutor, TrialTask, move_aside
from .plan import RunPlan, SweepPlan, load_plan, plan_sweep, trial_error
from .pruning import Pruner
from .report import cell, rank_trials, sweep_result, trial_row
from .search import TpeSearch
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
    return {"fold": run.fold, "run_dir": run.dir, "status": "pending", "value": None, "epochs": None, "seconds": None,
            "message": None, "attempts": None}


def _not_run_row(run: RunPlan, message: str) -> dict:
    """A run of a pruned trial that was never started: it counts as pruned."""
    return {**_pending_row(run), "status": "pruned", "message": message}


def _summary_row(run: RunPlan, summary: dict, metric: str) -> dict:
    value, message = summary.get("best_value"), summary.get("message")
    if summary.get("monitor") not in (None, metric):
        value, message = None, f"the run monitored {summary.get('monitor')}, not the sweep's {metric}"
    attempts = summary.get("attempts")
    return {
        "fold": run.fold,
        "run_dir": run.dir,
        "status": summary.get("status", "failed"),
        "value": None if value is None else float(value),
        "epochs": summary.get("epochs_completed"),
        "seconds": summary.get("seconds"),
        "message": message,
        "attempts": attempts if is_int(attempts) and attempts >= 1 else 1,
    }


def _read_summary(path: Path) -> dict | None:
    try:
        summary = json.loads((path / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) and "status" in summary else None


def csv_columns(plan: SweepPlan, attempts: bool = False) -> list[str]:
    """sweep.csv's columns; `attempts` (per run, `;`-separated like run_dirs) only once an executor
    started some run more than once (a retried worker), so that other sweeps' files keep their form."""
    columns = ["trial", *plan.spec.swept_keys()]
    if plan.spec.seeds == "per_trial":
        columns.append("seed")
    columns += [f"{plan.metric}_mean", f"{plan.metric}_std"]
    if plan.spec.folds:
        columns.append(f"{plan.metric}_folds")
    return columns + ["rank", "status", "seconds", "run_dirs"] + (["attempts"] if attempts else [])


def _write_csv(path: Path, plan: SweepPlan, trials: list[dict]) -> None:
    attempts = any((r.get("attempts") or 1) > 1 for t in trials for r in t["runs"])
    text = io.StringIO(newline="")
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(csv_columns(plan, attempts))
    for t in trials:
        row = [t["trial"], *(cell(t["values"].get(k)) for k in plan.spec.swept_keys())]
        if plan.spec.seeds == "per_trial":
            row.append(t["seed"])
        row += [cell(t["mean"]), cell(t["std"])]
        if plan.spec.folds:
            row.append(";".join(cell(r["value"]) for r in t["runs"]))
        row += [cell(t["rank"]), t["status"], cell(t["seconds"]), ";".join(r["run_dir"] for r in t["runs"])]
        if attempts:
            row.append(";".join(cell(r.get("attempts")) for r in t["runs"]))
        writer.writerow(row)
    atomic_write(path, text.getvalue().encode())


def _write_plan(path: Path, plan: SweepPlan) -> None:
    atomic_write(path / "sweep.yaml", yaml.safe_dump(plan.to_dict(), sort_keys=False).encode())


def _recorded_attempts(path: Path) -> dict[str, int]:
    """run dir -> attempts, from an earlier sweep.csv's attempts column (a resumed sweep keeps them)."""
    try:
        with open(path / "sweep.csv", newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, csv.Error, UnicodeDecodeError):
        return {}
    out = {}
    for row in rows:
        for run_dir, n in zip((row.get("run_dirs") or "").split(";"), (row.get("attempts") or "").split(";")):
            if n.isdigit() and int(n) >= 1:
                out[run_dir] = int(n)
    return out


def _monitored_values(path: Path, metric: str) -> list[list]:
    """[[epoch, value], ...] of `metric` in a run directory's metrics.csv (empty when unreadable)."""
    try:
        with open(path / "metrics.csv", newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, csv.Error, UnicodeDecodeError):
        return []
    values = []
    for row in rows:
        try:
            values.append([int(row["epoch"]), float(row[metric])])
        except (KeyError, TypeError, ValueError):
            continue
    return values


def _create_sweep_dir(runs_root: Path, name: str, path: Path | None) -> Path:
    return new_directory(runs_root, f"{name}-sweep", path, "sweep directory", "; continue a sweep with --resume")


def _resume_state(plan: SweepPlan, sweep_dir: Path, log) -> tuple[dict[str, dict], dict[str, bool]]:
    """What each run directory holds: finished rows, and which runs to execute (True: resume).

    Completed, diverged and pruned runs are kept; the runs of a pruned trial that never started
    are not run (a pruned trial is finished); an interrupted one with a checkpoint continues
    (the pruner stops it at its next epoch when its trial was pruned); the others run again.
    """
    rows, todo, summaries = {}, {}, {}
    attempts = _recorded_attempts(sweep_dir)
    for trial in plan.trials:
        for run in trial.runs:
            path = sweep_dir / run.dir
            rows[run.dir] = _pending_row(run)
            summaries[run.dir] = _read_summary(path) if path.exists() else None
            status = summaries[run.dir]["status"] if summaries[run.dir] else None
            if status in ("completed", "diverged", "pruned"):  # a diverged run diverges again: a result, not an accident
                rows[run.dir] = _summary_row(run, summaries[run.dir], plan.metric)
                rows[run.dir]["attempts"] = max(rows[run.dir]["attempts"], attempts.get(run.dir, 1))
    for trial in plan.trials:
        pruned = next((r for r in trial.runs if rows[r.dir]["status"] == "pruned"), None)
        for run in trial.runs:
            if rows[run.dir]["status"] != "pending":
                continue
            path = sweep_dir / run.dir
            status = summaries[run.dir]["status"] if summaries[run.dir] else None
            resumable = (path / "config.yaml").is_file() and (path / "checkpoints" / "last.npz").is_file()
            if path.exists() and status in ("interrupted", None) and resumable:
                todo[run.dir] = True
            elif pruned is not None:
                rows[run.dir] = _not_run_row(run, f"not run: {pruned.dir} was pruned")
            elif path.exists():
                moved = move_aside(path)
                log(f"{run.dir}: {status or 'no summary and no checkpoint'}; moved to {moved.name}, running it again")
                todo[run.dir] = False
            else:
                todo[run.dir] = False
    return rows, todo


def _pruner(plan: SweepPlan) -> Pruner:
    spec = plan.spec
    return Pruner(
        spec.prune, plan.higher_is_better, plan.metric,
        warmup=spec.prune_option("prune_warmup"), startup=spec.prune_option("prune_startup"),
        min_epochs=spec.prune_option("prune_min_epochs"), factor=spec.prune_option("prune_factor"),
    )


def _stop_pruned(plan: SweepPlan, sweep_dir: Path, rows: dict, todo: dict[str, bool], verdicts: dict[str, str]) -> None:
    """Resume: an interrupted run the restored pruner stops at its last epoch ends there as
    'pruned' (its summary says so, as if the pruner had stopped it then) instead of training on;
    the runs of a pruned trial that never started are not run."""
    for trial in plan.trials:
        for run in trial.runs:
            summary = _read_summary(sweep_dir / run.dir) if run.dir in verdicts and todo.get(run.dir) else None
            if summary is not None:
                summary = {**summary, "status": "pruned", "message": verdicts[run.dir]}
                RunDir.open(sweep_dir / run.dir).write_summary(summary)
                rows[run.dir] = _summary_row(run, summary, plan.metric)
                del todo[run.dir]
        pruned = next((r for r in trial.runs if rows[r.dir]["status"] == "pruned" and r.dir not in todo), None)
        for run in trial.runs:
            if pruned is not None and todo.get(run.dir) is False:
                del todo[run.dir]
                rows[run.dir] = _not_run_row(run, f"not run: {pruned.dir} was pruned")


def _pruner_history(plan: SweepPlan, sweep_dir: Path, rows: dict[str, dict], todo: dict[str, bool]) -> list[dict]:
    """What Pruner.restore needs of a resumed sweep: every run with epochs on disk, in trial order."""
    history = []
    for trial in plan.trials:
        for run in trial.runs:
            finished = rows[run.dir]["status"] in ("completed", "diverged", "pruned") and (sweep_dir / run.dir).is_dir()
            if finished or todo.get(run.dir):
                history.append({
                    "name": run.dir, "trial": trial.index, "fold": run.fold,
                    "values": _monitored_values(sweep_dir / run.dir, plan.metric),
                    "status": rows[run.dir]["status"] if finished else None, "message": rows[run.dir]["message"],
                })
    return history


class _Runs:
    """The runs still to execute: a queue of tasks, and for a tpe sweep the trials still to ask."""

    def __init__(self, plan: SweepPlan, sweep_dir: Path, rows: dict, todo: dict[str, bool], search=None, pruner=None):
        self.plan, self.sweep_dir, self.rows, self.search, self.pruner = plan, sweep_dir, rows, search, pruner
        self.broken: dict[str, NntrainError] = {}  # run -> why its config cannot be made (run as failed)
        self.queue = deque(task for trial in plan.trials for task in self.tasks(trial, todo))

    def tasks(self, trial, todo: dict[str, bool]) -> list[TrialTask]:
        out = []
        for run in trial.runs:
            if run.dir not in todo:
                continue
            try:
                raw, _ = self.plan.run_config(run)
            except NntrainError as e:
                raw, self.broken[run.dir] = {}, trial_error(trial, run, e)
            out.append(TrialTask(trial.index, run.fold, run.dir, str(self.sweep_dir / run.dir), raw, todo[run.dir],
                                 pruner=self.pruner, monitor=self.plan.metric if self.pruner is not None else None))
        return out

    def can_ask(self) -> bool:
        return self.search is not None and len(self.plan.trials) < self.plan.spec.trials

    def ask(self):
        """The next trial from the sampler: recorded in sweep.yaml before any of its runs starts."""
        trial = self.plan.add_trial(self.search.ask(len(self.plan.trials)))
        _write_plan(self.sweep_dir, self.plan)
        self.rows.update({r.dir: _pending_row(r) for r in trial.runs})
        self.queue.extend(self.tasks(trial, {r.dir: False for r in trial.runs}))
        return trial


def _execute(plan, sweep_dir, runs: _Runs, executor, hooks, stop, rows) -> int | None:
    """Submit tasks (at most executor.jobs at a time; a tpe sweep asks a trial when a slot is free
    and no task waits) until done or stopped; the stop's signal, if any."""
    queue, running = runs.queue, {}
    jobs = max(1, int(getattr(executor, "jobs", 1)))
    stopped_by = None
    csv_path = sweep_dir / "sweep.csv"
    trial_of = {t.index: t for t in plan.trials}
    open_runs = {t.index: sum(1 for r in t.runs if rows[r.dir]["status"] == "pending") for t in plan.trials}

    def write() -> list[dict]:
        trials = [trial_row(plan, t, rows) for t in plan.trials]
        rank_trials(trials, plan.higher_is_better)
        _write_csv(csv_path, plan, trials)
        return trials

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
            if getattr(e, "attempts", None) is not None:  # an executor that retried the run before it failed
                summary["attempts"] = e.attempts
        if summary.get("status") == "interrupted" and stopped_by is None:
            stopped_by = summary.get("signal") or stop.signal or signal.SIGINT
        row = rows[task.name] = _summary_row(run, summary, plan.metric)
        if runs.pruner is not None:
            runs.pruner.finish(task.name, task.trial, task.fold, row["status"])
        if row["status"] == "pruned":  # the trial is decided: its runs not started never run
            for other in [t for t in queue if t.trial == task.trial]:
                queue.remove(other)
                skipped = next(r for r in trial.runs if r.dir == other.name)
                rows[other.name] = _not_run_row(skipped, f"not run: {task.name} was pruned")
                open_runs[task.trial] -= 1
        trials = write()
        hooks.on_run_end(task, row)
        open_runs[task.trial] -= 1
        if open_runs[task.trial] == 0:
            ended = next(t for t in trials if t["trial"] == task.trial)
            if runs.search is not None:
                runs.search.tell(task.trial, ended)
            hooks.on_trial_end(ended)

    asked_to_stop = False
    while True:
        if (stop or stopped_by is not None) and not asked_to_stop:
            asked_to_stop = True
            stopped_by = stopped_by or stop.signal or signal.SIGINT
            queue.clear()  # never submitted: they stay pending
            executor.stop()
        while not asked_to_stop and len(running) < jobs and not (stop or stopped_by is not None):
            if not queue and runs.can_ask():
                trial = runs.ask()
                trial_of[trial.index], open_runs[trial.index] = trial, len(trial.runs)
            if not queue:
                break
            task = queue.popleft()
            hooks.on_run_start(task)
            if task.name in runs.broken:
                future = Future()
                future.set_exception(runs.broken[task.name])
            else:
                try:
                    future = executor.submit(task)
                except Exception as e:  # noqa: BLE001 - e.g. a broken worker pool: the run failed, resume runs it again
                    future = Future()
                    future.set_exception(e)
            running[future] = task
            if future.done():  # SerialExecutor: it ran during submit
                finish(running.pop(future), future)
        if not running:
            if asked_to_stop or not (queue or runs.can_ask()):
                break
            continue  # a stop came while filling the slots: handled above
        done, _ = wait(list(running), timeout=0.2, return_when=FIRST_COMPLETED)
        for future in done:
            finish(running.pop(future), future)
    return stopped_by


EXECUTOR_KINDS = ("local", "ray")


def _executor_factory(kind: str, jobs: int, options: dict):
    """A function (stop, hooks) -> the executor of `kind`; checks the kind and its options now."""
    if kind not in EXECUTOR_KINDS:
        allowed = ", ".join(EXECUTOR_KINDS)
        raise NntrainError(f"got {kind!r}{did_you_mean(str(kind), EXECUTOR_KINDS)}; allowed: {allowed}", "--executor")
    if kind == "local":
        for key, flag in (("address", "--address"), ("cpus_per_trial", "--cpus-per-trial")):
            if options.get(key) is not None:
                raise NntrainError(f"applies to --executor ray only, got {options[key]!r} with --executor local", flag)

        def local(stop, hooks):
            if jobs == 1:
                return SerialExecutor(stop, hooks.on_epoch, lambda task, m: hooks.log(f"{task.name}: {m}"))
            return LocalExecutor(jobs)

        return local
    try:
        from .ray_executor import RayExecutor
    except ImportError as e:
        raise NntrainError(f"--executor ray needs the ray extra: pip install 'nntrain[ray]' ({e})") from None
    given = {k: options[k] for k in ("address", "cpus_per_trial") if options.get(k) is not None}  # else RayExecutor's defaults
    return lambda stop, hooks: RayExecutor(jobs, **given)


def run_sweep(
    config=None,
    overrides: Sequence[str] = (),
    spec: dict | None = None,
    *,
    runs_root: Path = Path("runs"),
    sweep_dir: Path | None = None,
    jobs: int = 1,
    executor: Executor | None = None,
    executor_kind: str = "local",
    executor_options: dict | None = None,
    resume: Path | None = None,
    hooks: SweepHooks | None = None,
) -> dict:
    """Run a sweep (or continue one with `resume`=SWEEP_DIR) and return its result dict.

    config / overrides / spec: see plan_sweep (spec is a `sweep:` mapping, e.g. from
    sweep_options, merged over the config's section). The sweep directory is `sweep_dir`
    (must not exist) or runs_root/<name>-sweep-<YYYYmmdd-HHMMSS>. Runs execute on
    `executor`, or one made and closed here: with executor_kind 'local' a SerialExecutor
    (jobs=1) / LocalExecutor(jobs), with 'ray' a RayExecutor(jobs, address=..., cpus_per_trial=...)
    from executor_options ({"address", "cpus_per_trial", "jobs"}: its jobs replace `jobs`).

    A tpe sweep (search.py) asks its trials as results come, recording each in sweep.yaml
    before it runs; with sweep.prune a Pruner (pruning.py), shared with the runs through
    executor.share, stops bad runs early as 'pruned'.

    On SIGINT / SIGTERM (when called from the main thread) or hooks.stop, no further run is
    submitted, runs in progress end as interrupted, sweep.csv is written, and the result's
    status is 'interrupted' with the signal number in 'signal'.

    With `resume`: completed, diverged and pruned runs are kept, interrupted ones continue
    (nntrain.api.resume), failed or missing ones run again (a failed run directory is moved
    to <dir>.failed-N first), and a tpe sweep asks the trials still in its budget. The trials
    are sweep.yaml's, so the final sweep.csv equals that of an uninterrupted sweep except for
    the seconds column (for a tpe or pruned sweep: when trials ran one at a time).
    """
    hooks = hooks or SweepHooks()
    executor_options = dict(executor_options or {})
    jobs = executor_options.pop("jobs", jobs)
    if not is_int(jobs) or jobs < 1:
        raise NntrainError(f"must be an integer >= 1, got {jobs!r}", "--jobs")
    if executor is not None and (jobs != 1 or executor_kind != "local" or executor_options):
        raise NntrainError("give jobs and executor_kind or an executor, not both")
    make_executor = _executor_factory(executor_kind, jobs, executor_options) if executor is None else None
    search = None
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
        if plan.spec.method == "tpe":
            search = TpeSearch(plan.spec, plan.higher_is_better, plan.search_seed)
        rows, todo = _resume_state(plan, path, hooks.log)
    else:
        if config is None:
            raise NntrainError("give a config file, or --resume SWEEP_DIR")
        plan = plan_sweep(config, overrides, spec, hooks.log)
        if plan.spec.method == "tpe":
            search = TpeSearch(plan.spec, plan.higher_is_better, plan.search_seed)
        path = _create_sweep_dir(runs_root, plan.name, sweep_dir)
        _write_plan(path, plan)
        rows = {r.dir: _pending_row(r) for t in plan.trials for r in t.runs}
        todo = {r.dir: False for t in plan.trials for r in t.runs}
    path = path.resolve()

    own = executor is None
    try:
        with stop_on_signals() as signalled:
            stop = AnyStop(hooks.stop, signalled)
            if own:
                executor = make_executor(stop, hooks)
            try:
                handle = None
                if plan.spec.prune != "none":
                    share = getattr(executor, "share", None)
                    if share is None:
                        raise NntrainError(
                            f"sweep.prune {plan.spec.prune} needs an executor that shares the pruner with its runs"
                            f" (a share(obj) method); {type(executor).__name__} has none"
                        )
                    handle = share(_pruner(plan))
                    if resume is not None:
                        verdicts = handle.restore(_pruner_history(plan, path, rows, todo))
                        _stop_pruned(plan, path, rows, todo, verdicts)
                trials = [trial_row(plan, t, rows) for t in plan.trials]
                rank_trials(trials, plan.higher_is_better)
                _write_csv(path / "sweep.csv", plan, trials)
                for trial in trials:
                    if trial["status"] != "pending" and all(r["status"] != "pending" for r in trial["runs"]):
                        hooks.log(f"{trial['name']}: {trial['status']} already, kept")
                if search is not None and resume is not None:
                    unfinished = {t.index for t in plan.trials if any(r.dir in todo for r in t.runs)}
                    search.replay(plan.trials, {t["trial"]: t for t in trials if t["trial"] not in unfinished})
                runs = _Runs(plan, path, rows, todo, search, handle)
                stopped_by = _execute(plan, path, runs, executor, hooks, stop, rows)
            except BaseException:
                if executor is not None:
                    executor.stop()  # do not wait for whole runs on the way out
                raise
    finally:
        if own and executor is not None:
            executor.close()
    return sweep_result(plan, path, rows, stopped_by)
