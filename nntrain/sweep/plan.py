"""Planning: the trials of a sweep (`Trial`, each with its runs, `RunPlan`), the random draws,
per-trial seeds, and `SweepPlan` (what sweep.yaml records): `plan_sweep` makes one from a
config, `load_plan` reads one back from a sweep directory.

Trials are the grid's points crossed with the random draws: the N draws are made once and
every grid point is combined with each of them (grid points x N trials). With folds, each
trial has one run per fold. A tpe sweep plans no trials: they are asked one by one while it
runs (SweepPlan.add_trial, search.py), and its search space's probe points are validated
instead.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import yaml

from .. import __version__
from .. import config as cfg
from .. import safe_yaml
from ..errors import NntrainError
from .spec import SPEC_KEYS, SweepSpec, is_int, merge_specs, validate_spec

_DRAW_STREAM = 0x5EE9  # the random draws' SeedSequence is [sweep seed, this]


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


def value_text(value) -> str:
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


def make_trial(spec: SweepSpec, index: int, values: dict, config_seed: int, width: int = 3, name: str | None = None) -> Trial:
    """Trial `index` with these swept values: its overrides, seed and runs (one per fold)."""
    overrides = [f"{k}={value_text(v)}" for k, v in values.items()]
    seed = None
    if spec.seeds == "per_trial":
        seed = derived_seed(config_seed, index)
        overrides.append(f"seed={seed}")
    name = name or f"trial-{index:0{width}d}"
    if spec.folds:
        runs = [
            RunPlan(f"{name}-fold-{k}", k, [*overrides, f"data.split.folds={spec.folds}", f"data.split.fold={k}"])
            for k in range(spec.folds)
        ]
    else:
        runs = [RunPlan(name, None, list(overrides))]
    return Trial(index, name, values, overrides, seed, runs)


def trial_width(spec: SweepSpec, n: int) -> int:
    """Digits of the trial numbers: 3, or more for a sweep of 1000 trials or more."""
    return max(3, len(str((spec.trials if spec.method == "tpe" else n) - 1)))


def make_trials(spec: SweepSpec, config_seed: int) -> list[Trial]:
    """Grid points (cartesian product, first key slowest) x random draws, each with its runs.

    A tpe sweep has none up front: its trials are asked as results come (run.py, search.py).
    """
    if spec.method == "tpe":
        return []
    grid = list(itertools.product(*spec.grid.values())) if spec.grid else [()]
    draws = draw_values(spec, spec.seed if spec.seed is not None else config_seed)
    width = trial_width(spec, len(grid) * len(draws))
    return [
        make_trial(spec, index, {**dict(zip(spec.grid, copy.deepcopy(point))), **draw}, config_seed, width)
        for index, (point, draw) in enumerate(itertools.product(grid, draws))
    ]


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
    created: str = field(default_factory=lambda: datetime.now().isoformat(timespec="seconds"))

    @property
    def higher_is_better(self) -> bool:
        return cfg.higher_is_better(self.metric)

    @property
    def config_seed(self) -> int:
        """The base config's seed (0 when it has none): derived per-trial seeds start from it."""
        seed = self.base.get("seed", 0)
        return seed if is_int(seed) and seed >= 0 else 0

    @property
    def search_seed(self) -> int:
        """The seed of the random draws and of the TPE sampler: sweep.seed, else the config's."""
        return self.spec.seed if self.spec.seed is not None else self.config_seed

    def add_trial(self, values: dict) -> Trial:
        """Append the next trial (of a tpe sweep) with these values, and return it."""
        trial = make_trial(self.spec, len(self.trials), values, self.config_seed, trial_width(self.spec, 0))
        self.trials.append(trial)
        return trial

    def run_config(self, run: RunPlan) -> tuple[dict, cfg.Config]:
        """(raw mapping, Config) of one run: base + overrides, data paths made absolute."""
        from ..api import _pin_data_path

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
            "created": self.created,
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
            plan = cls(data["name"], data["base"], data["base_dir"], validate_spec(data["sweep"]), data["metric"], trials)
            plan.created = str(data.get("created") or plan.created)
            return plan
        except (KeyError, TypeError) as e:
            raise NntrainError(f"'{where}' is not a sweep file nntrain can read (missing or malformed {e})") from None


def trial_error(trial: Trial, run: RunPlan, error: NntrainError) -> NntrainError:
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
    trials = make_trials(sweep, seed if is_int(seed) and seed >= 0 else 0)
    plan = SweepPlan(str(raw["name"]), raw, base_dir, sweep, sweep.metric or "", trials, notes)
    first = None
    checked = trials
    if sweep.method == "tpe":  # no trials yet: check the configs of the search space's corners and values
        from .search import probe_values

        checked = [make_trial(sweep, 0, values, plan.config_seed, name="search space") for values in probe_values(sweep)]
    for trial in checked:
        for run in trial.runs:
            try:
                _, config = plan.run_config(run)
            except NntrainError as e:
                raise trial_error(trial, run, e) from None
            first = first or (trial, run, config)
    trial, run, config = first
    if check_data:
        from ..train.experiment import prepare

        try:
            prepare(config, None)  # reads the data, resolves the monitor's default and checks it
        except NntrainError as e:
            raise trial_error(trial, run, e) from None
        plan.metric = config.train.monitor
    elif not plan.metric:
        plan.metric = config.train.monitor or ("val_loss" if config.data.split.val > 0 else "train_loss")
    for note in notes:
        log(note)
    return plan


def load_plan(sweep_dir: Path) -> SweepPlan:
    """The plan a sweep directory's sweep.yaml records."""
    path = Path(sweep_dir) / "sweep.yaml"
    if not path.is_file():
        raise NntrainError(f"'{sweep_dir}' is not a sweep directory (no sweep.yaml)")
    data = safe_yaml.read(path, "sweep file")
    if not isinstance(data, dict):
        raise NntrainError(f"'{path}' is not a sweep file (not a mapping)")
    return SweepPlan.from_dict(data, str(path))
