"""Model-based search (`search: tpe`): trials asked one by one from Optuna's TPE sampler, each
told its result before the trials asked after it learn from it.

The search space is the sweep's: `log_uniform` keys are log-scaled floats, `uniform` keys
floats, `choice` and `grid` keys categorical (the sampler picks an index into the values, so a
value may be anything `--set` takes: a number, a word, a list, a mapping). Each asked trial is
an ordinary `Trial` (overrides like a grid or random one). Optuna is imported only here, and
only for `search: tpe` (`pip install 'nntrain[search]'`).

What the sampler is told: a completed trial its value (the mean over its folds), a pruned one
`PRUNED` with its value so far as the intermediate value at its last epoch, a failed or
diverged one `FAIL` (it teaches nothing). The sampler is `TPESampler(seed=<the sweep seed>,
n_startup_trials=tpe_startup)`: the first `tpe_startup` trials are its random draws.

Determinism: the sweep asks a trial when a run slot is free and no run is waiting, so with
jobs J at most J trials are in flight. With one at a time, each trial is asked after the one
before was told: the trials are fixed by the sweep seed. With J > 1 which results have come
in when a trial is asked depends on timing, and so do the trials after the first
`tpe_startup` (those are random draws, the same whatever the timing).

Resume (`replay`): the trials sweep.yaml records are asked again in order, each finished one
told right after its ask, as a sweep that ran them one at a time did; while the sampler gives
the recorded values back, the study is the uninterrupted one's, so a serial sweep resumed
asks the same trials as one never interrupted. When a value differs (the sweep ran trials in
parallel, or another Optuna version samples differently) the study is built instead from the
recorded trials and their results, with a sampler seeded from the sweep seed and the number
of trials: the search goes on from what it learned, though not as the uninterrupted sweep
would have.
"""

from __future__ import annotations

import copy
import json
import math

import numpy as np

from ..errors import NntrainError
from .spec import SweepSpec, TPE_STARTUP

_GOLDEN = 0.6180339887498949  # an interior probe point: not a round number, so an integer key shows it needs integers


def import_optuna(what: str = "search: tpe (--search tpe)"):
    """The optuna module, or NntrainError saying how to install it."""
    try:
        import optuna
    except ImportError:
        raise NntrainError(f"{what} needs Optuna, an optional extra: pip install 'nntrain[search]'") from None
    return optuna


def categorical_keys(spec: SweepSpec) -> dict[str, list]:
    """The keys TPE treats as categorical (grid and choice), with their values."""
    return {**spec.grid, **spec.choice}


def probe_values(spec: SweepSpec) -> list[dict]:
    """Points of the search space whose configs are validated before a tpe sweep starts: every
    range's low end, an interior point and high end, and every categorical value."""
    categorical = categorical_keys(spec)

    def point(fraction: float, pick) -> dict:
        values = {}
        for key in spec.swept_keys():
            if key in spec.log_uniform or key in spec.uniform:
                lo, hi = spec.log_uniform.get(key) or spec.uniform[key]
                if fraction in (0.0, 1.0):
                    values[key] = float(lo if fraction == 0.0 else hi)
                elif key in spec.log_uniform:
                    values[key] = float(min(max(math.exp(math.log(lo) + fraction * (math.log(hi) - math.log(lo))), lo), hi))
                else:
                    values[key] = float(min(max(lo + fraction * (hi - lo), lo), hi))
            else:
                values[key] = copy.deepcopy(categorical[key][pick(key)])
        return values

    probes = [point(0.0, lambda key: 0), point(_GOLDEN, lambda key: 0), point(1.0, lambda key: -1)]
    for key, options in categorical.items():
        for i in range(1, len(options) - 1):
            probes.append(point(0.0, lambda k, i=i, key=key: i if k == key else 0))
    unique = []
    for p in probes:
        if not any(_same(p, q) for q in unique):
            unique.append(p)
    return unique


def _same(a, b) -> bool:
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


class TpeSearch:
    """The sampler's side of a tpe sweep: `ask(index)` a trial's values, `tell(index, row)` its result
    (row as report.trial_row gives it), `replay` on resume."""

    def __init__(self, spec: SweepSpec, higher_is_better: bool, seed: int):
        self.optuna = optuna = import_optuna()
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # no line per told trial: the sweep says what happened
        self.spec, self.seed, self.higher_is_better = spec, int(seed), higher_is_better
        self.categorical = categorical_keys(spec)
        self.distributions = {}
        for key in spec.swept_keys():
            if key in spec.log_uniform:
                self.distributions[key] = optuna.distributions.FloatDistribution(*spec.log_uniform[key], log=True)
            elif key in spec.uniform:
                self.distributions[key] = optuna.distributions.FloatDistribution(*spec.uniform[key])
            else:
                self.distributions[key] = optuna.distributions.CategoricalDistribution(list(range(len(self.categorical[key]))))
        self.study = self._study(self.seed)
        self.asked: dict = {}  # trial index -> its optuna Trial, until told
        self.params: dict[int, dict] = {}  # trial index -> the sampler's params (indices for categorical keys)
        self.exact = True  # the study is the one of a sweep that asked and told in trial order

    def _study(self, seed: int):
        startup = self.spec.tpe_startup if self.spec.tpe_startup is not None else TPE_STARTUP
        sampler = self.optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup)
        return self.optuna.create_study(direction="maximize" if self.higher_is_better else "minimize", sampler=sampler)

    def _values(self, params: dict) -> dict:
        values = {}
        for key, dist in self.distributions.items():
            if key in self.categorical:
                values[key] = copy.deepcopy(self.categorical[key][int(params[key])])
            else:
                values[key] = float(min(max(float(params[key]), dist.low), dist.high))
        return values

    def _params(self, values: dict) -> dict:
        params = {}
        for key in self.distributions:
            if key in self.categorical:
                found = [i for i, v in enumerate(self.categorical[key]) if _same(v, values.get(key))]
                if not found:
                    raise NntrainError(f"the recorded value {values.get(key)!r} of {key} is not one of sweep.yaml's values")
                params[key] = found[0]
            else:
                params[key] = float(values[key])
        return params

    def ask(self, index: int) -> dict:
        """The values of trial `index` (the next one), from the sampler."""
        trial = self.study.ask(self.distributions)
        self.asked[index], self.params[index] = trial, dict(trial.params)
        return self._values(trial.params)

    def _result(self, row: dict):
        """(state, value, intermediate {step: value}) to tell for a trial row."""
        state = self.optuna.trial.TrialState
        if row["status"] == "completed" and row["mean"] is not None and math.isfinite(row["mean"]):
            return state.COMPLETE, row["mean"], {}
        if row["status"] == "pruned":
            steps = [r["epochs"] for r in row["runs"] if r.get("epochs")]
            so_far = {max(steps): row["mean"]} if steps and row["mean"] is not None and math.isfinite(row["mean"]) else {}
            return state.PRUNED, None, so_far
        return state.FAIL, None, {}

    def tell(self, index: int, row: dict) -> None:
        """Trial `index` ended as `row` says (a finished trial: completed, pruned, failed or diverged)."""
        state, value, intermediate = self._result(row)
        trial = self.asked.pop(index, None)
        if trial is not None:
            for step, v in intermediate.items():
                trial.report(v, step)
            self.study.tell(trial, value, state=state)
        else:  # a recorded trial in a study rebuilt on resume
            self.study.add_trial(
                self.optuna.trial.create_trial(
                    params=self.params[index], distributions=self.distributions, value=value, state=state,
                    intermediate_values=intermediate,
                )
            )

    def replay(self, trials: list, finished: dict[int, dict]) -> None:
        """Resume: the recorded `trials` (in index order) asked again, each of `finished` (index ->
        trial row) told right after its ask. See the module docstring."""
        for trial in trials:
            values = self.ask(trial.index)
            if not _same(values, trial.values):
                self._rebuild(trials, finished)
                return
            if trial.index in finished:
                self.tell(trial.index, finished[trial.index])

    def _rebuild(self, trials: list, finished: dict[int, dict]) -> None:
        seed = int(np.random.SeedSequence([self.seed, len(trials)]).generate_state(1, np.uint32)[0])
        self.study, self.asked, self.params, self.exact = self._study(seed), {}, {}, False
        for trial in trials:
            self.params[trial.index] = self._params(trial.values)
            if trial.index in finished:
                self.tell(trial.index, finished[trial.index])
