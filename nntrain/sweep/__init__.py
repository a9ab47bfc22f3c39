"""Hyper-parameter sweeps: grid, random and TPE trials, pruning, cross-validation folds, parallel workers, resume.

    from nntrain.sweep import run_sweep, sweep_options
    result = run_sweep("configs/spirals.yaml", spec=sweep_options(grid=["optimizer.lr=0.3,0.1"], folds=3), jobs=2)

The package, in the order its modules import each other (each imports only those above it):

    spec.py       SweepSpec; sweep_options (the CLI's --grid, --random, ... flags as a `sweep:`
                  mapping), merge_specs (over the config's `sweep:` section), validate_spec
    search.py     search: tpe: TpeSearch (Optuna's TPE sampler, ask / tell, replay on resume),
                  the search space's probe points; the only module that imports optuna
    plan.py       RunPlan, Trial, SweepPlan (what sweep.yaml records); the random draws
                  (draw_values), per-trial seeds (derived_seed), make_trials, plan_sweep, load_plan
    pruning.py    Pruner: the median and asha rules on the per-epoch monitored value (no imports
                  from the package: a manager process or an actor hosts it cheaply)
    executors.py  TrialTask, run_task, the Executor protocol, SerialExecutor, LocalExecutor (worker
                  processes: start-up, BLAS threads, signals, shared objects), stop requests
    report.py     a trial's row from its runs' rows, rank_trials, sweep_result, format_leaderboard
    run.py        SweepHooks, the runs' rows, sweep.csv, resume state, the execution loop
                  (trials asked as slots free for tpe, the pruner shared with the runs), run_sweep

The names below are re-exported here, so `from nntrain.sweep import ...` is all a caller needs.
The `sweep:` section's keys are described in spec.py, the sweep directory's layout in run.py.
Runs are executed by an `Executor` (submit a `TrialTask`, get a future of its summary):
`SerialExecutor` trains in this process, `LocalExecutor` in worker processes. Another backend
(a cluster queue) only needs `submit`, `stop`, `close` and `jobs`, and `run_task` on the far side;
pruning also needs `share(obj)` (a handle the runs call the pruner through).
"""

from .executors import THREAD_VARIABLES, Executor, LocalExecutor, SerialExecutor, TrialTask, available_cores, run_task
from .plan import RunPlan, SweepPlan, Trial, derived_seed, draw_values, load_plan, make_trial, make_trials, plan_sweep
from .pruning import Pruner
from .report import STATUS_ORDER, format_leaderboard, rank_trials, sweep_result
from .run import EXECUTOR_KINDS, SweepHooks, csv_columns, run_sweep
from .search import TpeSearch
from .spec import (
    MAPPING_KEYS,
    PRUNE_RULES,
    RESERVED_KEYS,
    SEARCH_METHODS,
    SEED_MODES,
    SPEC_KEYS,
    SweepSpec,
    merge_specs,
    split_values,
    sweep_options,
    validate_spec,
)

__all__ = [
    # spec
    "SPEC_KEYS", "MAPPING_KEYS", "SEED_MODES", "SEARCH_METHODS", "PRUNE_RULES", "RESERVED_KEYS", "SweepSpec",
    "split_values", "sweep_options", "merge_specs", "validate_spec",
    # search, pruning
    "TpeSearch", "Pruner",
    # plan
    "RunPlan", "Trial", "SweepPlan", "derived_seed", "draw_values", "make_trial", "make_trials", "plan_sweep", "load_plan",
    # executors
    "THREAD_VARIABLES", "TrialTask", "run_task", "Executor", "SerialExecutor", "LocalExecutor", "available_cores",
    # report
    "STATUS_ORDER", "rank_trials", "sweep_result", "format_leaderboard",
    # run
    "EXECUTOR_KINDS", "SweepHooks", "csv_columns", "run_sweep",
]
