"""Reporting: a trial's row from its runs' rows (status, mean and std over the folds),
ranking (`rank_trials`), the result dict (`sweep_result`) and the terminal's leaderboard
(`format_leaderboard`).

The value a trial is ranked by is the best value of the monitor (`train.monitor`, as best.npz
records it) of each of its runs, as mean and (population) standard deviation over the folds.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .plan import SweepPlan, Trial, value_text

STATUS_ORDER = ("failed", "diverged", "pruned", "interrupted", "pending")  # a trial has the first status any of its runs has


def trial_row(plan: SweepPlan, trial: Trial, rows: dict[str, dict]) -> dict:
    """A trial's row. Its value is the mean (and std) over its runs' values when it completed; a
    pruned trial's is the mean over the runs that have one (each its best value before it
    stopped; runs not started have none), shown but never ranked."""
    runs = [rows[r.dir] for r in trial.runs]
    statuses = {r["status"] for r in runs}
    status = next((s for s in STATUS_ORDER if s in statuses), "completed")
    mean = std = None
    values = [r["value"] for r in runs]
    if status == "pruned":
        values = [v for v in values if v is not None and math.isfinite(v)]
    if status in ("completed", "pruned") and values and all(v is not None and math.isfinite(v) for v in values):
        mean = float(np.mean(values))
        std = float(np.std(values)) if len(values) > 1 else None
    seconds = [r["seconds"] for r in runs if r["seconds"] is not None]
    return {
        "trial": trial.index,
        "name": trial.name,
        "values": trial.values,
        "overrides": trial.overrides,
        "seed": trial.seed,
        "status": status,
        "mean": mean,
        "std": std,
        "rank": None,
        "seconds": round(sum(seconds), 3) if seconds else None,
        "runs": runs,
    }


def rank_trials(trials: list[dict], higher_is_better: bool) -> list[dict]:
    """Set each trial's rank (1 = best; None when not completed) and return them best first.

    Completed trials with a value come first, by that value (descending when higher is better),
    ties by trial index; then pruned trials, unranked, by their value so far (the same way);
    then the others in trial order.
    """
    def by_value(t):
        return (-t["mean"] if higher_is_better else t["mean"], t["trial"])

    scored = sorted((t for t in trials if t["mean"] is not None and t["status"] == "completed"), key=by_value)
    for rank, t in enumerate(scored, 1):
        t["rank"] = rank
    pruned = sorted((t for t in trials if t["mean"] is not None and t["status"] == "pruned"), key=by_value)
    placed = {id(t) for t in scored + pruned}
    rest = [t for t in trials if id(t) not in placed]
    for t in pruned + rest:
        t["rank"] = None
    return scored + pruned + rest


def cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return repr(value)
    return value_text(value)


def sweep_result(plan: SweepPlan, sweep_dir: Path, rows: dict[str, dict], signal_number: int | None = None) -> dict:
    """The result dict (JSON-serializable) of a sweep whose runs ended as `rows` say."""
    trials = [trial_row(plan, t, rows) for t in plan.trials]
    board = rank_trials(trials, plan.higher_is_better)
    statuses = [s for s in ("completed", *STATUS_ORDER) if s != "pruned" or plan.spec.prune != "none"]  # pruned: when it prunes
    counts = {s: sum(t["status"] == s for t in trials) for s in statuses}
    unfinished = counts["interrupted"] + counts["pending"]
    return {
        "status": "interrupted" if unfinished or signal_number is not None else "completed",
        "signal": signal_number,
        "sweep_dir": str(sweep_dir),
        "csv": str(Path(sweep_dir) / "sweep.csv"),
        "name": plan.name,
        "metric": plan.metric,
        "higher_is_better": plan.higher_is_better,
        "folds": plan.spec.folds,
        "search": plan.spec.method,
        "prune": plan.spec.prune,
        "keys": plan.spec.swept_keys(),
        "counts": counts,
        "trials": trials,
        "leaderboard": [{k: t[k] for k in ("rank", "trial", "name", "values", "mean", "std")} for t in board if t["rank"]],
        "best": next((t for t in board if t["rank"] == 1), None),
    }


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return cell(value)


def format_leaderboard(result: dict, top: int | None = None) -> str:
    """A plain-text table of the trials, best first (unranked ones after), for the terminal."""
    board = rank_trials([dict(t) for t in result["trials"]], result["higher_is_better"])
    if top is not None:
        board = board[:top]
    arrow = "higher is better" if result["higher_is_better"] else "lower is better"
    value = f"{result['metric']} ({arrow})" + (f", mean ± std over {result['folds']} folds" if result["folds"] else "")
    header = ["rank", "trial", *result["keys"], value, "status"]
    lines = []
    for t in board:
        score = "" if t["mean"] is None else f"{t['mean']:.4f}" + ("" if t["std"] is None else f" ± {t['std']:.4f}")
        lines.append([str(t["rank"] or "-"), t["name"], *(_short(t["values"].get(k)) for k in result["keys"]), score, t["status"]])
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(header)]
    fmt = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()
    return "\n".join([fmt(header), *(fmt(line) for line in lines)])
