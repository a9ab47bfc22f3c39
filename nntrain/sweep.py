"""Hyper-parameter sweeps: grid and random trials, cross-validation folds, parallel workers, resume.

    from nntrain.sweep import run_sweep, sweep_options
    result = run_sweep("configs/spirals.yaml", spec=sweep_options(grid=["optimizer.lr=0.3,0.1"], folds=3), jobs=2)

A sweep is defined by a `sweep:` section of the config and/or by `sweep_options` (the CLI
flags), both in the same form:

    sweep:
      grid: {optimizer.lr: [0.3, 0.1, 0.03], model.layers.0.units: [32, 64]}   # cartesian product
      random: 8                                  # 8 random draws from the distributions below
      log_uniform: {optimizer.weight_decay: [1.0e-6, 1.0e-2]}   # exp(U(ln lo, ln hi))
      uniform: {optimizer.momentum: [0.5, 0.99]}                # U(lo, hi)
      choice: {model.layers.1: [relu, tanh]}                    # one of the values, equally likely
      folds: 5            # every trial runs 5 times, data.split.folds=5, data.split.fold=0..4
      metric: val_loss    # the value trials are ranked by = train.monitor of every run
      seed: 0             # the random draws' seed (default: the config's seed)
      seeds: same         # same: every trial runs with the config's seed | per_trial: derived seeds

Trials are the grid's points crossed with the random draws: the N draws are made once and
every grid point is combined with each of them (grid points x N trials). The value a trial is
ranked by is the best value of the monitor (`train.monitor`, as best.npz records it) of each of
its runs, as mean and (population) standard deviation over the folds.

Every run is an ordinary run directory inside the sweep directory:

    runs/<name>-sweep-<YYYYmmdd-HHMMSS>/
        sweep.yaml              base config, sweep definition, every trial with its overrides
        sweep.csv               one row per trial, rewritten (atomically) after every finished run
        trial-000/              one run directory per trial ...
        trial-001-fold-0/       ... or per trial and fold with folds

Runs are executed by an `Executor` (submit a `TrialTask`, get a future of its summary):
`SerialExecutor` trains in this process, `LocalExecutor` in worker processes. Another backend
(a cluster queue) only needs `submit`, `stop`, `close` and `jobs`, and `run_task` on the far side.
"""

from __future__ import annotations

import copy
import csv
import io
import itertools
import json
import math
import multiprocessing
import os
import re
import signal
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import yaml

from . import __version__
from . import config as cfg
from . import safe_yaml
from .engine.registry import did_you_mean
from .errors import NntrainError, WriteError
from .fileio import atomic_write
from .train.rundir import new_directory
from .train.trainer import Hooks, StopRequest, stop_on_signals

SPEC_KEYS = ("grid", "random", "log_uniform", "uniform", "choice", "folds", "metric", "seed", "seeds")
MAPPING_KEYS = ("grid", "log_uniform", "uniform", "choice")  # the ones keyed by config key
SEED_MODES = ("same", "per_trial")
RESERVED_KEYS = {
    "name": "the runs of a sweep are named by the sweep",
    "data.split.folds": "use sweep.folds (--folds) for cross-validation",
    "data.split.fold": "use sweep.folds (--folds) for cross-validation",
    "train.monitor": "trials are ranked by one value: set it with sweep.metric (--metric)",
    "train.early_stopping.monitor": "trials are ranked by one value: set it with sweep.metric (--metric)",
}
STATUS_ORDER = ("failed", "diverged", "interrupted", "pending")  # a trial has the first status any of its runs has
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")
_DRAW_STREAM = 0x5EE9  # the random draws' SeedSequence is [sweep seed, this]


# --- the sweep definition ----------------------------------------------------------------


@dataclass
class SweepSpec:
    """A validated sweep definition; `to_dict` gives it back in the `sweep:` section's form."""

    grid: dict[str, list] = field(default_factory=dict)
    random: int = 0
    log_uniform: dict[str, tuple[float, float]] = field(default_factory=dict)
    uniform: dict[str, tuple[float, float]] = field(default_factory=dict)
    choice: dict[str, list] = field(default_factory=dict)
    folds: int | None = None
    metric: str | None = None
    seed: int | None = None
    seeds: str = "same"

    def swept_keys(self) -> list[str]:
        """The swept config keys, in the order of the trials' columns."""
        return [*self.grid, *self.log_uniform, *self.uniform, *self.choice]

    def to_dict(self) -> dict:
        out = {}
        for key in SPEC_KEYS:
            value = getattr(self, key)
            if key in ("log_uniform", "uniform"):
                value = {k: list(v) for k, v in value.items()}
            if key in MAPPING_KEYS and not value or key == "random" and not value or value is None:
                continue
            out[key] = value
        return out


def _parse_value(text: str):
    """A value as --set parses it: YAML (1e-3 is a number), else the text itself."""
    return safe_yaml.parse_value(text, "the value")


def split_values(text: str) -> list[str]:
    """`0.1,0.01` -> ['0.1', '0.01']; commas inside [], {} or quotes do not split."""
    pieces, depth, quote, current = [], 0, None, ""
    for ch in text:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            pieces.append(current)
            current = ""
            continue
        current += ch
    pieces.append(current)
    return [p.strip() for p in pieces]


def _key_and_text(item: str, flag: str, form: str, example: str) -> tuple[str, str]:
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key or not text.strip():
        raise NntrainError(f"{flag} '{item}' must look like {form}, e.g. {flag} {example}")
    return key, text


def sweep_options(
    grid: Sequence[str] = (),
    random: int | None = None,
    log_uniform: Sequence[str] = (),
    uniform: Sequence[str] = (),
    choice: Sequence[str] = (),
    folds: int | None = None,
    metric: str | None = None,
    seed: int | None = None,
    seeds: str | None = None,
) -> dict:
    """The CLI's sweep flags as a `sweep:` section mapping (only the flags given).

    grid / choice: 'KEY=V1,V2,...' (values parsed as --set parses them); log_uniform / uniform:
    'KEY=LOW:HIGH'. A key given twice in one flag kind is an error.
    """
    spec: dict[str, Any] = {}
    for flag, name, items, example in [
        ("--grid", "grid", grid, "optimizer.lr=0.1,0.03,0.01"),
        ("--choice", "choice", choice, "model.layers.1=relu,tanh"),
    ]:
        for item in items or ():
            key, text = _key_and_text(item, flag, "KEY=V1,V2,...", example)
            pieces = split_values(text)
            if any(p == "" for p in pieces):
                raise NntrainError(f"{flag} '{item}' has an empty value; separate values by single commas, e.g. {flag} {example}")
            if key in spec.get(name, {}):
                raise NntrainError(f"{flag} {key} is given twice; give all its values in one {flag} {key}=V1,V2,...")
            spec.setdefault(name, {})[key] = [_parse_value(p) for p in pieces]
    for flag, name, items, example in [
        ("--log-uniform", "log_uniform", log_uniform, "optimizer.lr=1e-4:1e-1"),
        ("--uniform", "uniform", uniform, "optimizer.momentum=0.5:0.99"),
    ]:
        for item in items or ():
            key, text = _key_and_text(item, flag, "KEY=LOW:HIGH", example)
            lo, sep, hi = text.partition(":")
            try:
                bounds = [float(lo), float(hi)]
            except ValueError:
                sep = ""
            if not sep:
                raise NntrainError(f"{flag} '{item}' must look like KEY=LOW:HIGH with two numbers, e.g. {flag} {example}")
            if key in spec.get(name, {}):
                raise NntrainError(f"{flag} {key} is given twice")
            spec.setdefault(name, {})[key] = bounds
    for name, value in [("random", random), ("folds", folds), ("metric", metric), ("seed", seed), ("seeds", seeds)]:
        if value is not None:
            spec[name] = value
    return spec


def _flatten(mapping: dict, where: str, prefix: str = "") -> dict:
    """{optimizer: {lr: [...]}} -> {optimizer.lr: [...]}: nested keys as dotted ones (a value
    of grid, choice, log_uniform or uniform is a list, so a mapping is always nesting)."""
    out = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        entries = _flatten(value, where, name + ".") if isinstance(value, dict) and value else {name: value}
        for flat, entry in entries.items():
            if flat in out:
                raise NntrainError(f"'{flat}' is given twice", where)
            out[flat] = entry
    return out


def merge_specs(section: dict | None, options: dict | None) -> dict:
    """The config's `sweep:` section with the command line's options over it.

    A config key given on the command line (in any of grid, log_uniform, uniform, choice)
    replaces that key's entry in the section, whichever kind it was; random, folds, metric,
    seed and seeds replace the section's.
    """
    merged = copy.deepcopy(section or {})
    if not isinstance(merged, dict):
        return merged  # validate_spec says what is wrong
    for name in MAPPING_KEYS:
        if isinstance(merged.get(name), dict):
            merged[name] = _flatten(merged[name], f"sweep.{name}")
    for name, value in (options or {}).items():
        if name in MAPPING_KEYS and isinstance(value, dict):
            if not isinstance(merged.get(name), dict):
                merged[name] = {}
            for key, entry in value.items():
                for other in MAPPING_KEYS:
                    if other != name and isinstance(merged.get(other), dict):
                        merged[other].pop(key, None)
                merged[name][key] = copy.deepcopy(entry)  # a key of the same kind keeps its place
        else:
            merged[name] = value
    return {k: v for k, v in merged.items() if not (k in MAPPING_KEYS and v == {})}


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _same(a, b) -> bool:
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def validate_spec(raw: dict | None) -> SweepSpec:
    """A `sweep:` mapping -> SweepSpec, or NntrainError naming the key (sweep.grid.optimizer.lr: ...)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise NntrainError(f"must be a mapping of {', '.join(SPEC_KEYS)}, got {type(raw).__name__}", "sweep")
    for key in raw:
        if key not in SPEC_KEYS:
            raise NntrainError(f"unknown key '{key}'{did_you_mean(key, SPEC_KEYS)}; allowed keys: {', '.join(SPEC_KEYS)}", "sweep")
    spec = SweepSpec()
    owner: dict[str, str] = {}
    for name in MAPPING_KEYS:
        section = raw.get(name)
        if section is None:
            continue
        if not isinstance(section, dict) or not section:
            raise NntrainError(f"must be a non-empty mapping of config keys to {'values' if name in ('grid', 'choice') else '[low, high]'}", f"sweep.{name}")
        for key, value in _flatten(section, f"sweep.{name}").items():
            where = f"sweep.{name}.{key}"
            if not isinstance(key, str) or not key or key.startswith(".") or key.endswith(".") or ".." in key:
                raise NntrainError(f"'{key}' is not a config key (dotted, e.g. optimizer.lr)", f"sweep.{name}")
            if key in owner:
                raise NntrainError(f"is swept twice, also in sweep.{owner[key]}; give each key one kind of values", where)
            owner[key] = name
            if key in RESERVED_KEYS:
                raise NntrainError(f"cannot be swept: {RESERVED_KEYS[key]}", where)
            if name in ("grid", "choice"):
                if not isinstance(value, list) or not value:
                    raise NntrainError(f"must be a non-empty list of values, got {value!r}", where)
                for i, v in enumerate(value):
                    if any(_same(v, w) for w in value[:i]):
                        raise NntrainError(f"the value {v!r} is given twice", where)
                getattr(spec, name)[key] = list(value)
            else:
                if not (isinstance(value, (list, tuple)) and len(value) == 2 and all(_is_number(v) for v in value)):
                    raise NntrainError(f"must be [low, high], two finite numbers, got {value!r}", where)
                lo, hi = float(value[0]), float(value[1])
                if not lo < hi:
                    raise NntrainError(f"low {lo:g} must be below high {hi:g}", where)
                if name == "log_uniform" and lo <= 0:
                    raise NntrainError(f"log-uniform bounds must be > 0, got [{lo:g}, {hi:g}]", where)
                getattr(spec, name)[key] = (lo, hi)
    if "random" in raw:
        if not _is_int(raw["random"]) or raw["random"] < 1:
            raise NntrainError(f"must be an integer >= 1 (the number of random draws), got {raw['random']!r}", "sweep.random")
        spec.random = raw["random"]
        if not (spec.log_uniform or spec.uniform or spec.choice):
            raise NntrainError("draws from log_uniform, uniform or choice; give at least one of them", "sweep.random")
    elif spec.log_uniform or spec.uniform or spec.choice:
        kind = next(k for k in ("log_uniform", "uniform", "choice") if getattr(spec, k))
        raise NntrainError("values are drawn only with random: N (--random N), the number of draws", f"sweep.{kind}")
    if raw.get("folds") is not None:
        if not _is_int(raw["folds"]) or raw["folds"] < 2:
            raise NntrainError(f"must be an integer >= 2, got {raw['folds']!r}", "sweep.folds")
        spec.folds = raw["folds"]
    if raw.get("metric") is not None:
        if not isinstance(raw["metric"], str) or not re.fullmatch(r"(train|val)_[a-z0-9_]+", raw["metric"]):
            raise NntrainError(f"must be a monitored value such as val_loss or val_accuracy, got {raw['metric']!r}", "sweep.metric")
        spec.metric = raw["metric"]
    if raw.get("seed") is not None:
        if not _is_int(raw["seed"]) or raw["seed"] < 0:
            raise NntrainError(f"must be an integer >= 0, got {raw['seed']!r}", "sweep.seed")
        spec.seed = raw["seed"]
    if raw.get("seeds") is not None:
        if raw["seeds"] not in SEED_MODES:
            raise NntrainError(f"got {raw['seeds']!r}{did_you_mean(raw['seeds'], SEED_MODES)}; allowed: {', '.join(SEED_MODES)}", "sweep.seeds")
        spec.seeds = raw["seeds"]
    if spec.seeds == "per_trial" and "seed" in owner:
        raise NntrainError("with seeds: per_trial every trial's seed is derived; sweep seed itself with seeds: same", f"sweep.{owner['seed']}.seed")
    if not (spec.grid or spec.random or spec.folds):
        raise NntrainError("nothing to sweep: give grid, random (with log_uniform, uniform or choice) or folds", "sweep")
    return spec


# --- trials ------------------------------------------------------------------------------


@dataclass
class RunPlan:
    """One run of a trial: its directory name inside the sweep directory and its overrides."""

    dir: str
    fold: int | None
    overrides: list[str]


@dataclass
class Trial:
    index: int
    name: str  # trial-003
    values: dict  # swept key -> value
    overrides: list[str]  # KEY=VALUE, as --set takes them (the fold's are in runs)
    seed: int | None  # the derived seed with seeds: per_trial, else None (the config's)
    runs: list[RunPlan]


def _value_text(value) -> str:
    """A value as --set text that parses back to the same value (JSON is YAML flow style)."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return yaml.safe_dump(value, default_flow_style=True).removesuffix("\n...\n").strip()


def derived_seed(seed: int, index: int) -> int:
    """Trial `index`'s seed with seeds: per_trial: SeedSequence([seed, index]), 32 bits."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1, np.uint32)[0])


def draw_values(spec: SweepSpec, seed: int) -> list[dict]:
    """spec.random draws {key: value} from the distributions, reproducibly from `seed`.

    Keys are drawn in the order log_uniform, uniform, choice (each in its given order), draw
    after draw, from numpy.random.default_rng(SeedSequence([seed, 0x5EE9])).
    """
    if not spec.random:
        return [{}]
    rng = np.random.default_rng(np.random.SeedSequence([seed, _DRAW_STREAM]))
    draws = []
    for _ in range(spec.random):
        values = {}
        for key, (lo, hi) in spec.log_uniform.items():
            values[key] = min(max(float(np.exp(rng.uniform(np.log(lo), np.log(hi)))), lo), hi)
        for key, (lo, hi) in spec.uniform.items():
            values[key] = min(max(float(rng.uniform(lo, hi)), lo), hi)
        for key, options in spec.choice.items():
            values[key] = copy.deepcopy(options[int(rng.integers(len(options)))])
        draws.append(values)
    return draws


def make_trials(spec: SweepSpec, config_seed: int) -> list[Trial]:
    """Grid points (cartesian product, first key slowest) x random draws, each with its runs."""
    grid = list(itertools.product(*spec.grid.values())) if spec.grid else [()]
    draws = draw_values(spec, spec.seed if spec.seed is not None else config_seed)
    n = len(grid) * len(draws)
    width = max(3, len(str(n - 1)))
    trials = []
    for index, (point, draw) in enumerate(itertools.product(grid, draws)):
        values = {**dict(zip(spec.grid, copy.deepcopy(point))), **draw}
        overrides = [f"{k}={_value_text(v)}" for k, v in values.items()]
        seed = None
        if spec.seeds == "per_trial":
            seed = derived_seed(config_seed, index)
            overrides.append(f"seed={seed}")
        name = f"trial-{index:0{width}d}"
        if spec.folds:
            runs = [
                RunPlan(f"{name}-fold-{k}", k, [*overrides, f"data.split.folds={spec.folds}", f"data.split.fold={k}"])
                for k in range(spec.folds)
            ]
        else:
            runs = [RunPlan(name, None, list(overrides))]
        trials.append(Trial(index, name, values, overrides, seed, runs))
    return trials


@dataclass
class SweepPlan:
    """Everything a sweep runs, validated; `to_dict` is sweep.yaml."""

    name: str
    base: dict  # the raw config every run starts from (sweep section removed, --set applied)
    base_dir: str | None  # where relative data paths of `base` are found (the config's folder)
    spec: SweepSpec
    metric: str
    trials: list[Trial]
    notes: list[str] = field(default_factory=list)

    @property
    def higher_is_better(self) -> bool:
        return cfg.higher_is_better(self.metric)

    def run_config(self, run: RunPlan) -> tuple[dict, cfg.Config]:
        """(raw mapping, Config) of one run: base + overrides, data paths made absolute."""
        from .api import _pin_data_path

        raw = copy.deepcopy(self.base)
        config = cfg.load_config(None, run.overrides, raw=raw)  # applies the overrides to raw in place
        _pin_data_path(config, Path(self.base_dir) if self.base_dir else None)
        data = raw.setdefault("data", {})
        for key, source in config.data.sources().items():
            data[key] = source if isinstance(source, str) else {"X": source.X, "y": source.y}
        return raw, config

    def to_dict(self) -> dict:
        return {
            "nntrain_version": __version__,
            "created": datetime.now().isoformat(timespec="seconds"),
            "name": self.name,
            "metric": self.metric,
            "higher_is_better": self.higher_is_better,
            "base_dir": self.base_dir,
            "sweep": self.spec.to_dict(),
            "base": self.base,
            "trials": [
                {
                    "trial": t.index,
                    "name": t.name,
                    "values": t.values,
                    "overrides": t.overrides,
                    "seed": t.seed,
                    "runs": [asdict(r) for r in t.runs],
                }
                for t in self.trials
            ],
        }

    @classmethod
    def from_dict(cls, data: dict, where: str) -> SweepPlan:
        try:
            trials = [
                Trial(t["trial"], t["name"], t["values"], t["overrides"], t["seed"], [RunPlan(**r) for r in t["runs"]])
                for t in data["trials"]
            ]
            return cls(data["name"], data["base"], data["base_dir"], validate_spec(data["sweep"]), data["metric"], trials)
        except (KeyError, TypeError) as e:
            raise NntrainError(f"'{where}' is not a sweep file nntrain can read (missing or malformed {e})") from None


def _trial_error(trial: Trial, run: RunPlan, error: NntrainError) -> NntrainError:
    what = " ".join(run.overrides) or "the base config"
    return NntrainError(f"{trial.name}{f' fold {run.fold}' if run.fold is not None else ''} ({what}): {error}")


def plan_sweep(
    config,
    overrides: Sequence[str] = (),
    spec: dict | None = None,
    log: Callable[[str], None] = lambda message: None,
    check_data: bool = True,
) -> SweepPlan:
    """Read the config, take its `sweep:` section, merge `spec` over it, and make every trial.

    `config` is a YAML path or a raw mapping (relative data paths then resolve against the
    working directory). `overrides` (--set) change the base config; those starting with
    `sweep.` change the sweep section. Every run's config is validated, and the first run's
    data is loaded once (`check_data`) so that data and monitor errors surface now. Nothing is
    written. Raises NntrainError naming the key, and the trial, on the first problem.
    """
    if isinstance(config, dict):
        raw, base_dir, stem = copy.deepcopy(config), None, None
    else:
        path = Path(config)
        raw, base_dir, stem = cfg.read_yaml(path), str(path.parent.resolve()), path.stem
        if not isinstance(raw, dict):
            raise NntrainError(f"'{path}' must hold a mapping of keys to values, got {type(raw).__name__}")
    section = raw.pop("sweep", None)
    sweep_sets = [o for o in overrides if o.startswith("sweep.")]
    if sweep_sets:
        section = cfg.apply_overrides({"sweep": section if section is not None else {}}, sweep_sets)["sweep"]
    if section is not None and not isinstance(section, dict):
        raise NntrainError(f"must be a mapping of {', '.join(SPEC_KEYS)}, got {type(section).__name__}", "sweep")
    raw = cfg.apply_overrides(raw, [o for o in overrides if not o.startswith("sweep.")])
    sweep = validate_spec(merge_specs(section, spec))
    notes = []
    if raw.get("name") is None:
        raw["name"] = (re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-.") if stem else "") or "sweep"
    if sweep.metric is not None:
        raw = cfg.apply_overrides(raw, [f"train.monitor={sweep.metric}"])
    if sweep.folds:
        data = raw.get("data") if isinstance(raw.get("data"), dict) else {}
        if data.get("val") is not None:
            raise NntrainError(
                "data.val is a separate validation file; folds carve the validation rows out of the training data", "sweep.folds"
            )
        split = data.get("split")
        if isinstance(split, dict) and "val" in split:
            notes.append(f"data.split.val {split['val']} does not apply with folds (a fold is the validation split); ignored")
            del split["val"]
    seed = raw.get("seed", 0)
    trials = make_trials(sweep, seed if _is_int(seed) and seed >= 0 else 0)
    plan = SweepPlan(str(raw["name"]), raw, base_dir, sweep, sweep.metric or "", trials, notes)
    first = None
    for trial in trials:
        for run in trial.runs:
            try:
                _, config = plan.run_config(run)
            except NntrainError as e:
                raise _trial_error(trial, run, e) from None
            first = first or (trial, run, config)
    trial, run, config = first
    if check_data:
        from .train.experiment import prepare

        try:
            prepare(config, None)  # reads the data, resolves the monitor's default and checks it
        except NntrainError as e:
            raise _trial_error(trial, run, e) from None
        plan.metric = config.train.monitor
    elif not plan.metric:
        plan.metric = config.train.monitor or ("val_loss" if config.data.split.val > 0 else "train_loss")
    for note in notes:
        log(note)
    return plan


# --- execution -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TrialTask:
    """One run to execute: plain, picklable data, complete in itself.

    `config` is the run's raw config mapping (the trial's overrides applied, data paths
    absolute). With `resume` the run directory holds an interrupted run to continue
    (nntrain.api.resume); otherwise it does not exist yet and nntrain.api.fit creates it.
    """

    trial: int
    fold: int | None
    name: str  # the run directory's name inside the sweep directory
    run_dir: str  # its absolute path
    config: dict
    resume: bool = False


class _AnyStop(StopRequest):
    """A StopRequest that is set when any of its sources is."""

    def __init__(self, *sources):
        self.sources = [s for s in sources if s is not None]

    def __bool__(self):
        return any(bool(s) for s in self.sources)

    @property
    def signal(self):
        for source in self.sources:
            if source:
                return getattr(source, "signal", None) or signal.SIGINT
        return None


class _EventStop:
    """A multiprocessing Event seen as a stop request (set by the parent: stop, as Ctrl-C does)."""

    signal = signal.SIGINT

    def __init__(self, event):
        self.event = event

    def __bool__(self):
        return self.event.is_set()


def run_task(
    task: TrialTask,
    stop: StopRequest | None = None,
    on_epoch: Callable[[TrialTask, dict], None] | None = None,
    log: Callable[[TrialTask, str], None] | None = None,
) -> dict:
    """Execute one run where this is called; return its summary (nntrain.api.fit's).

    Training ends as 'interrupted' (last.npz kept, resumable) when `stop` becomes true. A stop
    before training began returns a summary with status 'interrupted' and no run directory.
    The returned dict carries 'signal' (the stop's signal number) when it was interrupted.
    Errors (NntrainError for a bad config or data) propagate: the sweep records 'failed'.
    """
    from . import api

    stop = stop if stop is not None else StopRequest()
    hooks = Hooks(
        on_epoch=(lambda row: on_epoch(task, row)) if on_epoch else (lambda row: None),
        log=(lambda message: log(task, message)) if log else (lambda message: None),
        stop=stop,
    )
    try:
        summary = None
        if task.resume:
            try:
                summary = api.resume(Path(task.run_dir), hooks=hooks)
            except WriteError:  # a full or read-only disk: starting again would fail the same way, and lose the run
                raise
            except NntrainError as e:  # a damaged interrupted run: start it again rather than fail every resume
                moved = _move_aside(Path(task.run_dir))
                hooks.log(f"cannot resume ({e}); moved to {moved.name}, running it again")
        if summary is None:
            summary = api.fit(cfg.load_config(None, raw=copy.deepcopy(task.config)), run_dir=Path(task.run_dir), hooks=hooks)
    except KeyboardInterrupt:  # stopped before training began (api.fit) or a signal with no handler
        summary = {"status": "interrupted", "message": "stopped before training began", "run_dir": task.run_dir,
                   "epochs_completed": 0, "monitor": None, "best_value": None, "seconds": 0.0}
    if summary["status"] == "interrupted":
        summary = {**summary, "signal": int(stop.signal or signal.SIGINT)}
    return summary


@runtime_checkable
class Executor(Protocol):
    """Where runs execute. The sweep keeps at most `jobs` runs submitted at a time.

    submit(task) returns a concurrent.futures.Future whose result is the run's summary dict
    (as `run_task` returns it) or whose exception says why it failed. stop() asks the
    runs in progress to end soon as 'interrupted' (resumable), like Ctrl-C; it is called
    once, from the sweep's thread. close() releases the executor's resources.
    """

    jobs: int

    def submit(self, task: TrialTask) -> Future: ...

    def stop(self) -> None: ...

    def close(self) -> None: ...


class SerialExecutor:
    """Runs each task in this process, one at a time, when it is submitted (jobs = 1).

    A run stops as interrupted on SIGINT / SIGTERM (in the main thread), on stop(), or when
    `stop` (e.g. the sweep's hooks.stop) is set. `on_epoch(task, row)` and `log(task, message)`
    follow the run in progress.
    """

    jobs = 1

    def __init__(self, stop: StopRequest | None = None, on_epoch=None, log=None):
        self._external, self._stopped = stop, StopRequest()
        self.on_epoch, self.log = on_epoch, log

    def submit(self, task: TrialTask) -> Future:
        future = Future()
        with stop_on_signals() as signalled:
            try:
                future.set_result(run_task(task, _AnyStop(signalled, self._stopped, self._external), self.on_epoch, self.log))
            except Exception as e:  # noqa: BLE001 - the future carries any failure of the run
                future.set_exception(e)
        return future

    def stop(self) -> None:
        self._stopped.signal = signal.SIGINT

    def close(self) -> None:
        pass


_WORKER_STOP = None  # the parent's stop Event, in a LocalExecutor worker process


def _init_worker(event) -> None:
    """Worker start: remember the stop event; an idle worker ignores SIGINT / SIGTERM (the parent
    decides), so a Ctrl-C between tasks cannot kill it and lose the pool's other runs."""
    global _WORKER_STOP
    _WORKER_STOP = event
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _worker_ready() -> int:
    return os.getpid()


def _worker_run(task: TrialTask) -> dict:
    """A task in a worker process: SIGINT / SIGTERM or the parent's stop end the run as interrupted."""
    with stop_on_signals() as signalled:
        return run_task(task, _AnyStop(signalled, _EventStop(_WORKER_STOP) if _WORKER_STOP is not None else None))


@contextmanager
def _spawning(threads: int | None):
    """While worker processes start: the BLAS thread variables set for them, and SIGINT / SIGTERM
    ignored, so that the workers start with those ignored (a disposition that survives exec)."""
    saved = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    if threads is not None:
        os.environ.update({name: str(threads) for name in THREAD_VARIABLES})
    handlers = {}
    if threading.current_thread() is threading.main_thread():
        handlers = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in handlers.items():
            signal.signal(s, h)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class LocalExecutor:
    """Runs tasks in `jobs` worker processes on this machine (spawned, so fork-safe everywhere).

    The workers start at once. With jobs > 1 each gets OMP / OPENBLAS / MKL / VECLIB /
    NUMEXPR_NUM_THREADS = `threads` (default: available cores // jobs, at least 1), so jobs x
    threads does not oversubscribe the cores. A worker turns SIGINT / SIGTERM during a run,
    or stop(), into an interrupted run (never a lost one); idle workers ignore signals.
    """

    def __init__(self, jobs: int = 2, threads: int | None = None):
        if not _is_int(jobs) or jobs < 1:
            raise NntrainError(f"must be an integer >= 1, got {jobs!r}", "--jobs")
        self.jobs = jobs
        self.threads = threads if threads is not None else (max(1, available_cores() // jobs) if jobs > 1 else None)
        context = multiprocessing.get_context("spawn")
        self._event = context.Event()
        self.pool = ProcessPoolExecutor(jobs, mp_context=context, initializer=_init_worker, initargs=(self._event,))
        with _spawning(self.threads):
            started = [self.pool.submit(_worker_ready) for _ in range(jobs)]  # one process per submit while none is idle
        try:
            for future in started:
                future.result()
        except Exception as e:  # noqa: BLE001 - BrokenProcessPool and whatever else stopped a worker
            self.pool.shutdown(wait=False, cancel_futures=True)
            raise NntrainError(
                f"the worker processes did not start ({type(e).__name__}: {e}); a script that runs a sweep with"
                " jobs > 1 must do so under `if __name__ == '__main__':`, since workers import it"
            ) from None

    def submit(self, task: TrialTask) -> Future:
        return self.pool.submit(_worker_run, task)

    def stop(self) -> None:
        self._event.set()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --- the sweep -----------------------------------------------------------------------------


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


def _trial_row(plan: SweepPlan, trial: Trial, rows: dict[str, dict]) -> dict:
    runs = [rows[r.dir] for r in trial.runs]
    statuses = {r["status"] for r in runs}
    status = next((s for s in STATUS_ORDER if s in statuses), "completed")
    mean = std = None
    values = [r["value"] for r in runs]
    if status == "completed" and all(v is not None and math.isfinite(v) for v in values):
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
    """Set each trial's rank (1 = best; None without a value) and return them best first.

    Trials with a mean value come first, by that value (descending when higher is better),
    ties by trial index; the others follow in trial order.
    """
    scored = [t for t in trials if t["mean"] is not None]
    scored.sort(key=lambda t: (-t["mean"] if higher_is_better else t["mean"], t["trial"]))
    for rank, t in enumerate(scored, 1):
        t["rank"] = rank
    rest = [t for t in trials if t["mean"] is None]
    for t in rest:
        t["rank"] = None
    return scored + rest


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return repr(value)
    return _value_text(value)


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
        row = [t["trial"], *(_cell(t["values"].get(k)) for k in plan.spec.swept_keys())]
        if plan.spec.seeds == "per_trial":
            row.append(t["seed"])
        row += [_cell(t["mean"]), _cell(t["std"])]
        if plan.spec.folds:
            row.append(";".join(_cell(r["value"]) for r in t["runs"]))
        row += [_cell(t["rank"]), t["status"], _cell(t["seconds"]), ";".join(r["run_dir"] for r in t["runs"])]
        writer.writerow(row)
    atomic_write(path, text.getvalue().encode())


def _create_sweep_dir(runs_root: Path, name: str, path: Path | None) -> Path:
    return new_directory(runs_root, f"{name}-sweep", path, "sweep directory", "; continue a sweep with --resume")


def load_plan(sweep_dir: Path) -> SweepPlan:
    """The plan a sweep directory's sweep.yaml records."""
    path = Path(sweep_dir) / "sweep.yaml"
    if not path.is_file():
        raise NntrainError(f"'{sweep_dir}' is not a sweep directory (no sweep.yaml)")
    data = safe_yaml.read(path, "sweep file")
    if not isinstance(data, dict):
        raise NntrainError(f"'{path}' is not a sweep file (not a mapping)")
    return SweepPlan.from_dict(data, str(path))


def _move_aside(path: Path) -> Path:
    n = 1
    while (target := path.with_name(f"{path.name}.failed-{n}")).exists():
        n += 1
    try:
        path.rename(target)
    except OSError as e:
        raise WriteError(path, e, f"moving it aside to {target.name}") from None
    return target


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
                moved = _move_aside(path)
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
        trials = [_trial_row(plan, t, rows) for t in plan.trials]
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
    if not _is_int(jobs) or jobs < 1:
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
                    raise _trial_error(trial, run, e) from None
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
    trials = [_trial_row(plan, t, rows) for t in plan.trials]
    rank_trials(trials, plan.higher_is_better)
    _write_csv(path / "sweep.csv", plan, trials)
    for trial in trials:
        if trial["status"] != "pending" and all(r["status"] != "pending" for r in trial["runs"]):
            hooks.log(f"{trial['name']}: {trial['status']} already, kept")

    own = executor is None
    try:
        with stop_on_signals() as signalled:
            stop = _AnyStop(hooks.stop, signalled)
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


def sweep_result(plan: SweepPlan, sweep_dir: Path, rows: dict[str, dict], signal_number: int | None = None) -> dict:
    """The result dict (JSON-serializable) of a sweep whose runs ended as `rows` say."""
    trials = [_trial_row(plan, t, rows) for t in plan.trials]
    board = rank_trials(trials, plan.higher_is_better)
    counts = {s: sum(t["status"] == s for t in trials) for s in ("completed", *STATUS_ORDER)}
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
        "keys": plan.spec.swept_keys(),
        "counts": counts,
        "trials": trials,
        "leaderboard": [{k: t[k] for k in ("rank", "trial", "name", "values", "mean", "std")} for t in board if t["rank"]],
        "best": next((t for t in board if t["rank"] == 1), None),
    }


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return _cell(value)


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
