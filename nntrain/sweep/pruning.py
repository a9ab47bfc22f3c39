"""Pruning: stopping bad trials early on the per-epoch monitored value (`sweep.prune`).

One `Pruner` object, on the driver's side, decides for every run of a sweep. Runs report each
finished epoch's value of the sweep's metric through `report`, wherever they execute: the
executor hands them a handle to the pruner (`Executor.share`: the object itself in this
process, a multiprocessing manager's proxy for worker processes, a Ray actor on a cluster).
The driver tells it when a run ended (`finish`) and, on resume, what the run directories
already hold (`restore`). Everything goes through the handle, so the pruner may live in
another process.

The rules are Optuna's, written out here so that they need no extra package and say exactly
what they do (tests/test_sweep_pruning.py checks them against optuna.pruners on the same
reports). Epochs are numbered from 1; "better" follows the metric (lower val_loss, higher
val_accuracy).

median (Optuna's MedianPruner): after epoch e of a run, with e > prune_warmup and at least
    prune_startup completed runs, the run stops when its best value so far is worse than the
    median of the values that the completed runs had at epoch e (completed runs that stopped
    before e do not count; with none left, it trains on).
asha (Optuna's SuccessiveHalvingPruner, asynchronous successive halving): rungs at epochs
    m, m*f, m*f^2, ... (m = prune_min_epochs, f = prune_factor). At a rung a run's value there
    joins the rung's values, which hold every run that reached the rung so far (completed,
    pruned or still training), and the run goes on only if its value is among the best
    max(1, n // f) of those n values (ties go on); otherwise it stops there.

With folds every fold is judged on its own: fold k of a trial is compared with fold k of the
other trials (the folds' validation rows differ, and so does how hard they are), and a trial
stops as a whole when any of its folds is pruned: its folds still training stop at their next
report, its folds not started are not run.

A value that is not finite is pruned at once. Whether a run is pruned depends on which runs
had finished when it reported: one run at a time, that is fixed by the trial order; with
several at once, by timing.
"""

from __future__ import annotations

import math
import statistics
import threading


class Pruner:
    """The pruning decisions of one sweep; see the module docstring for the rules.

    rule: 'median' or 'asha'; higher_is_better: the metric's direction; metric: its name (for
    the reasons given). Safe to call from several threads (a manager serves each worker's
    calls in its own thread) and picklable (its lock is made anew).
    """

    def __init__(
        self,
        rule: str,
        higher_is_better: bool,
        metric: str = "the metric",
        *,
        warmup: int = 1,
        startup: int = 3,
        min_epochs: int = 1,
        factor: int = 3,
    ):
        if rule not in ("median", "asha"):
            raise ValueError(f"rule must be median or asha, got {rule!r}")
        self.rule, self.higher_is_better, self.metric = rule, bool(higher_is_better), metric
        self.warmup, self.startup, self.min_epochs, self.factor = warmup, startup, min_epochs, factor
        self._values: dict[str, dict[int, float]] = {}  # run name -> {epoch: value}
        self._completed: dict[int | None, list[str]] = {}  # fold -> completed runs, in the order they completed
        self._rungs: dict[tuple[int | None, int], dict[str, float]] = {}  # (fold, rung) -> {run: value}
        self._rung_of: dict[str, int] = {}  # run -> rungs passed
        self._pruned: dict[int, str] = {}  # trial -> why it was pruned
        self._pruned_by: dict[int, str] = {}  # trial -> the run whose report pruned it
        self._lock = threading.Lock()

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # --- what runs and the driver call --------------------------------------------------

    def report(self, name: str, trial: int, fold: int | None, epoch: int, value: float) -> str | None:
        """Run `name` (of `trial`, `fold`) finished `epoch` with `value`: a reason to stop it, or None."""
        with self._lock:
            if trial in self._pruned:
                return f"another fold of the trial was pruned ({self._pruned[trial]})"
            self._values.setdefault(name, {})[int(epoch)] = float(value)
            reason = self._judge(name, fold, int(epoch))
            if reason:
                self._pruned[trial], self._pruned_by[trial] = reason, name
            return reason

    def finish(self, name: str, trial: int, fold: int | None, status: str) -> None:
        """Run `name` ended with `status`; a completed run becomes a reference of the median rule."""
        with self._lock:
            if status == "completed" and name not in self._completed.get(fold, []):
                self._completed.setdefault(fold, []).append(name)
            elif status == "pruned":
                self._pruned.setdefault(trial, "pruned")

    def restore(self, runs: list[dict]) -> dict[str, str]:
        """What a resumed sweep's run directories hold, in trial order: each a dict of name, trial,
        fold, values ([[epoch, value], ...] from metrics.csv), status (the summary's; None for a
        run that continues) and message. Finished runs are recorded as they ended; for a run
        that continues, its last epoch is judged again (an interruption may have come between
        that epoch's end and its judgement; one that came later finds the same verdict, as
        the same runs had finished). Returns {run: reason} for the continuing runs that stop
        there: pruned by that verdict, or because their trial was pruned."""
        with self._lock:
            for run in runs:
                name, trial, fold, status = run["name"], run["trial"], run["fold"], run.get("status")
                values = sorted((int(e), float(v)) for e, v in run["values"])
                last = values.pop() if status is None and values else None
                for epoch, value in values:
                    self._values.setdefault(name, {})[epoch] = value
                    if self.rule == "asha":
                        self._record_rungs(name, fold, epoch)
                if last is not None and trial not in self._pruned:
                    self._values.setdefault(name, {})[last[0]] = last[1]
                    if reason := self._judge(name, fold, last[0]):
                        self._pruned[trial], self._pruned_by[trial] = reason, name
                if status == "completed":
                    self._completed.setdefault(fold, []).append(name)
                elif status == "pruned":
                    self._pruned.setdefault(trial, run.get("message") or "pruned")
            verdicts = {}
            for run in runs:
                if run.get("status") is None and run["trial"] in self._pruned:
                    reason = self._pruned[run["trial"]]
                    own = self._pruned_by.get(run["trial"]) == run["name"]
                    verdicts[run["name"]] = reason if own else f"another fold of the trial was pruned ({reason})"
            return verdicts

    def pruned_trials(self) -> dict[int, str]:
        with self._lock:
            return dict(self._pruned)

    # --- the rules ---------------------------------------------------------------------

    def _better(self, a: float, b: float) -> bool:
        return a > b if self.higher_is_better else a < b

    def _of_fold(self, fold) -> str:
        return "" if fold is None else f" (fold {fold})"

    def _judge(self, name: str, fold: int | None, epoch: int) -> str | None:
        value = self._values[name][epoch]
        if not math.isfinite(value):
            return f"{self.metric} is {value} at epoch {epoch}"
        return self._median(name, fold, epoch) if self.rule == "median" else self._asha(name, fold, epoch)

    def _median(self, name: str, fold, epoch: int) -> str | None:
        completed = self._completed.get(fold, [])
        if epoch <= self.warmup or not completed or len(completed) < self.startup:
            return None
        reference = [self._values[c][epoch] for c in completed if epoch in self._values.get(c, {})]
        reference = [v for v in reference if math.isfinite(v)]
        if not reference:
            return None
        mine = [v for e, v in self._values[name].items() if e <= epoch and math.isfinite(v)]
        best = max(mine) if self.higher_is_better else min(mine)
        median = statistics.median(reference)
        if self._better(median, best):
            return (
                f"median rule: best {self.metric} {best:.6g} by epoch {epoch} is worse than the median {median:.6g}"
                f" of {len(reference)} completed run{'s' if len(reference) != 1 else ''}{self._of_fold(fold)} at epoch {epoch}"
            )
        return None

    def _rung_epoch(self, rung: int) -> int:
        return self.min_epochs * self.factor**rung

    def _record_rungs(self, name: str, fold, epoch: int) -> None:
        """Record (no judgement) the rung values of a replayed epoch, as its report did."""
        rung = self._rung_of.get(name, 0)
        while epoch >= self._rung_epoch(rung):
            self._rungs.setdefault((fold, rung), {})[name] = self._values[name][epoch]
            rung += 1
        self._rung_of[name] = rung

    def _asha(self, name: str, fold, epoch: int) -> str | None:
        value = self._values[name][epoch]
        rung = self._rung_of.get(name, 0)
        while epoch >= (at := self._rung_epoch(rung)):
            competing = self._rungs.setdefault((fold, rung), {})
            competing[name] = value
            n = len(competing)
            keep = max(1, n // self.factor)
            threshold = sorted(competing.values(), reverse=self.higher_is_better)[keep - 1]
            if self._better(threshold, value):
                self._rung_of[name] = rung + 1
                return (
                    f"asha: {self.metric} {value:.6g} at epoch {at} is not among the best {keep} of the {n} runs"
                    f"{self._of_fold(fold)} that reached epoch {at}"
                )
            rung += 1
            self._rung_of[name] = rung
        return None
