"""The sweep definition: `SweepSpec`, the CLI's flags as a `sweep:` mapping (`sweep_options`),
their merge over the config's section (`merge_specs`) and validation (`validate_spec`).

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
      search: tpe         # grid | random | tpe (default: grid, or random with random: N)
      trials: 20          # search: tpe: the budget, asked one by one from Optuna's TPE sampler
      tpe_startup: 10     # search: tpe: the first trials are random draws (Optuna's n_startup_trials)
      prune: median       # none | median | asha: stop bad runs early (see pruning.py)
      prune_warmup: 1     # median: epochs never pruned
      prune_startup: 3    # median: completed runs needed before any pruning
      prune_min_epochs: 1 # asha: the first rung's epoch
      prune_factor: 3     # asha: each rung keeps the best 1/factor
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import safe_yaml
from ..engine.registry import did_you_mean
from ..errors import NntrainError

SPEC_KEYS = (
    "grid", "random", "log_uniform", "uniform", "choice", "folds", "metric", "seed", "seeds",
    "search", "trials", "tpe_startup", "prune", "prune_warmup", "prune_startup", "prune_min_epochs", "prune_factor",
)
MAPPING_KEYS = ("grid", "log_uniform", "uniform", "choice")  # the ones keyed by config key
SEED_MODES = ("same", "per_trial")
SEARCH_METHODS = ("grid", "random", "tpe")
PRUNE_RULES = ("none", "median", "asha")
PRUNE_OPTIONS = {  # key -> (the rule it belongs to, its smallest value, its default)
    "prune_warmup": ("median", 0, 1),
    "prune_startup": ("median", 1, 3),
    "prune_min_epochs": ("asha", 1, 1),
    "prune_factor": ("asha", 2, 3),
}
TPE_STARTUP = 10  # Optuna's default n_startup_trials
RESERVED_KEYS = {
    "name": "the runs of a sweep are named by the sweep",
    "data.split.folds": "use sweep.folds (--folds) for cross-validation",
    "data.split.fold": "use sweep.folds (--folds) for cross-validation",
    "train.monitor": "trials are ranked by one value: set it with sweep.metric (--metric)",
    "train.early_stopping.monitor": "trials are ranked by one value: set it with sweep.metric (--metric)",
}


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
    search: str | None = None  # as given; `method` is the one in force
    trials: int | None = None
    tpe_startup: int | None = None
    prune: str = "none"
    prune_warmup: int | None = None
    prune_startup: int | None = None
    prune_min_epochs: int | None = None
    prune_factor: int | None = None

    @property
    def method(self) -> str:
        """grid, random or tpe: `search`, or by default random with random: N, else grid."""
        return self.search or ("random" if self.random else "grid")

    def prune_option(self, key: str) -> int:
        """A prune_* option's value, its default when not given."""
        value = getattr(self, key)
        return PRUNE_OPTIONS[key][2] if value is None else value

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
            if key == "prune" and value == "none":
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
    search: str | None = None,
    trials: int | None = None,
    tpe_startup: int | None = None,
    prune: str | None = None,
    prune_warmup: int | None = None,
    prune_startup: int | None = None,
    prune_min_epochs: int | None = None,
    prune_factor: int | None = None,
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
    scalars = [("random", random), ("folds", folds), ("metric", metric), ("seed", seed), ("seeds", seeds), ("search", search),
               ("trials", trials), ("tpe_startup", tpe_startup), ("prune", prune), ("prune_warmup", prune_warmup),
               ("prune_startup", prune_startup), ("prune_min_epochs", prune_min_epochs), ("prune_factor", prune_factor)]
    for name, value in scalars:
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


def is_int(value) -> bool:
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
    if raw.get("search") is not None:
        if raw["search"] not in SEARCH_METHODS:
            raise NntrainError(f"got {raw['search']!r}{did_you_mean(str(raw['search']), SEARCH_METHODS)}; allowed: {', '.join(SEARCH_METHODS)}", "sweep.search")
        spec.search = raw["search"]
    tpe = spec.search == "tpe"
    for key, smallest, what in [("trials", 1, "the trial budget"), ("tpe_startup", 0, "trials drawn at random before TPE models")]:
        if raw.get(key) is None:
            continue
        if not tpe:
            raise NntrainError(f"is {what} of search: tpe (--search tpe); grid and random trials are given by grid and random: N", f"sweep.{key}")
        if not is_int(raw[key]) or raw[key] < smallest:
            raise NntrainError(f"must be an integer >= {smallest} ({what}), got {raw[key]!r}", f"sweep.{key}")
        setattr(spec, key, raw[key])
    if tpe:
        if raw.get("random") is not None:
            raise NntrainError("with search: tpe the budget is trials: N (--trials N); remove random (--set sweep.random=null)", "sweep.random")
        if spec.trials is None:
            raise NntrainError("search: tpe needs a budget: trials: N (--trials N), the number of trials to run", "sweep.trials")
        if not (spec.grid or spec.log_uniform or spec.uniform or spec.choice):
            raise NntrainError(
                "search: tpe needs a search space: log_uniform, uniform, choice or grid (--log-uniform, --uniform, --choice, --grid)",
                "sweep.search",
            )
    elif raw.get("random") is not None:
        if not is_int(raw["random"]) or raw["random"] < 1:
            raise NntrainError(f"must be an integer >= 1 (the number of random draws), got {raw['random']!r}", "sweep.random")
        if spec.search == "grid":
            raise NntrainError("search: grid makes no random draws; remove random, or use search: random", "sweep.random")
        spec.random = raw["random"]
        if not (spec.log_uniform or spec.uniform or spec.choice):
            raise NntrainError("draws from log_uniform, uniform or choice; give at least one of them", "sweep.random")
    elif spec.search == "random":
        raise NntrainError("search: random needs random: N (--random N), the number of draws", "sweep.search")
    elif spec.log_uniform or spec.uniform or spec.choice:
        kind = next(k for k in ("log_uniform", "uniform", "choice") if getattr(spec, k))
        raise NntrainError("values are drawn only with random: N (--random N), the number of draws", f"sweep.{kind}")
    if raw.get("folds") is not None:
        if not is_int(raw["folds"]) or raw["folds"] < 2:
            raise NntrainError(f"must be an integer >= 2, got {raw['folds']!r}", "sweep.folds")
        spec.folds = raw["folds"]
    if raw.get("metric") is not None:
        if not isinstance(raw["metric"], str) or not re.fullmatch(r"(train|val)_[a-z0-9_]+", raw["metric"]):
            raise NntrainError(f"must be a monitored value such as val_loss or val_accuracy, got {raw['metric']!r}", "sweep.metric")
        spec.metric = raw["metric"]
    if raw.get("seed") is not None:
        if not is_int(raw["seed"]) or raw["seed"] < 0:
            raise NntrainError(f"must be an integer >= 0, got {raw['seed']!r}", "sweep.seed")
        spec.seed = raw["seed"]
    if raw.get("seeds") is not None:
        if raw["seeds"] not in SEED_MODES:
            raise NntrainError(f"got {raw['seeds']!r}{did_you_mean(raw['seeds'], SEED_MODES)}; allowed: {', '.join(SEED_MODES)}", "sweep.seeds")
        spec.seeds = raw["seeds"]
    if spec.seeds == "per_trial" and "seed" in owner:
        raise NntrainError("with seeds: per_trial every trial's seed is derived; sweep seed itself with seeds: same", f"sweep.{owner['seed']}.seed")
    if raw.get("prune") is not None:
        if raw["prune"] not in PRUNE_RULES:
            raise NntrainError(f"got {raw['prune']!r}{did_you_mean(str(raw['prune']), PRUNE_RULES)}; allowed: {', '.join(PRUNE_RULES)}", "sweep.prune")
        spec.prune = raw["prune"]
    for key, (rule, smallest, _) in PRUNE_OPTIONS.items():
        if raw.get(key) is None:
            continue
        if spec.prune != rule:
            raise NntrainError(f"applies to prune: {rule} only (--prune {rule}), the sweep's prune is {spec.prune}", f"sweep.{key}")
        if not is_int(raw[key]) or raw[key] < smallest:
            raise NntrainError(f"must be an integer >= {smallest}, got {raw[key]!r}", f"sweep.{key}")
        setattr(spec, key, raw[key])
    if not (spec.grid or spec.random or spec.folds or tpe):
        raise NntrainError("nothing to sweep: give grid, random (with log_uniform, uniform or choice) or folds", "sweep")
    return spec
