"""Learning-rate schedules, stepped once per epoch, with the formulas of `torch.optim.lr_scheduler`.

A schedule declares its config options as the keyword-only parameters of its constructor
(annotated with `Range` like every other component), so `SCHEDULES[name](**options)` builds
it from a config and runs its checks (ValueError on a bad combination). It knows nothing
of the optimizer: the trainer copies the rate it returns into `optimizer.lr`.

Use
---
    schedule = SCHEDULES[name](**options)
    optimizer.lr = schedule.start(optimizer.lr, mode="min")    # fresh run, before epoch 1
    for epoch in 1, 2, ...:
        ... train the epoch with optimizer.lr, evaluate ...
        optimizer.lr = schedule.step(value of the monitored metric)  # after every epoch
    checkpoint: schedule.state_dict()   (flat dict of plain arrays)
    resume:     schedule = SCHEDULES[name](**options); schedule.load_state_dict(saved)
                optimizer.lr = schedule.lr                       # instead of start()

`start(base_lr)` returns the rate for epoch 1 and `step(metric)`, called at the end of
epoch E (1-based), returns the rate for epoch E + 1. Only `plateau` reads the metric
(`needs_metric`); the others accept and ignore it. After k calls of `step`, `epoch == k`
and `lr` is the rate in force during epoch k + 1, which is what torch's scheduler gives
after k calls of its `step()` (its `last_epoch == k`).

Warm-up
-------
Every schedule takes `warmup_epochs` = w >= 0 (default 0, no warm-up). With w > 0 the
first w epochs ramp the rate linearly, then the schedule runs as if it started at the end
of the warm-up, counting its own epochs from 0 there:

    lr(k) = base_lr * (k + 1) / (w + 1)      k < w       (epochs 1..w of the run)
    lr(k) = schedule(k - w)                   k >= w      (schedule(0) = base_lr)

where k is the number of `step` calls so far. This is torch's
`SequentialLR([LinearLR(start_factor=1/(w+1), end_factor=1, total_iters=w), schedule],
milestones=[w])`. `plateau` ignores the metrics of the warm-up epochs: its first metric is
that of epoch w + 1, the first one trained at base_lr.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from itertools import pairwise
from typing import Annotated, Literal

import numpy as np

from .registry import Range, Registry

SCHEDULES = Registry("schedule")

Mode = Literal["min", "max"]


class Schedule:
    """Base class: warm-up, stepping and state. Subclasses define `_main_lr` (or override `_main_step`).

    Notes
    -----
    k = number of step() calls so far (`epoch`), w = warmup_epochs, m = k - w:

    lr(k) = base_lr * (k + 1) / (w + 1)     for k < w   (linear warm-up, torch's LinearLR
                                                          with start_factor 1/(w+1), total_iters w)
    lr(k) = main schedule at its epoch m    for k >= w  (its epoch 0 gives base_lr)

    The rate returned by step() at the end of epoch E (1-based) is lr(E), in force in epoch E + 1.
    """

    name = "schedule"
    needs_metric = False  # True: step(metric) needs the monitored value of the epoch just finished
    monitor: str | None = None  # the metric a schedule asks for by name (plateau's option), else None

    def __init__(self, warmup_epochs: int = 0):
        if isinstance(warmup_epochs, bool) or not isinstance(warmup_epochs, int) or warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be an integer >= 0, got {warmup_epochs!r}")
        self.warmup_epochs = warmup_epochs
        self.base_lr: float | None = None
        self.epoch = 0  # number of step() calls so far
        self.lr: float | None = None  # the rate in force for the next epoch
        self.mode: Mode = "min"

    # -- stepping

    def start(self, base_lr: float, *, mode: Mode = "min") -> float:
        """Begin a fresh run at `base_lr` (the optimizer's configured lr); the rate for epoch 1.

        mode: 'min' if the monitored value improves by going down (losses, mse, mae), 'max'
        if it improves by going up (accuracy, r2). Only `plateau` uses it.
        """
        if not (isinstance(base_lr, (int, float)) and math.isfinite(base_lr) and base_lr > 0):
            raise ValueError(f"base_lr must be a finite number > 0, got {base_lr!r}")
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.base_lr, self.mode, self.epoch = float(base_lr), mode, 0
        self._reset_main()
        self.lr = self._lr_after_start()
        return self.lr

    def step(self, metric: float | None = None) -> float:
        """End of an epoch: advance by one and return the rate for the next epoch.

        metric: the monitored value of the epoch just finished (needed by `plateau` after
        its warm-up; ignored by the others).
        """
        if self.base_lr is None:
            raise RuntimeError("call start(base_lr) or load_state_dict() before step()")
        self.epoch += 1
        w = self.warmup_epochs
        if self.epoch < w:
            self.lr = self.base_lr * (self.epoch + 1) / (w + 1)
        elif self.epoch == w:  # warm-up over: the schedule begins at its epoch 0
            self._reset_main()
            self.lr = self.base_lr
        else:
            self.lr = self._main_step(self.epoch - w, metric)
        return self.lr

    def _lr_after_start(self) -> float:
        w = self.warmup_epochs
        return self.base_lr / (w + 1) if w else self.base_lr

    def _reset_main(self) -> None:
        """Reset the state of the main schedule (at start, and when the warm-up ends)."""

    def _main_step(self, m: int, metric: float | None) -> float:
        """The rate after the main schedule's step m (m >= 1)."""
        return self._main_lr(m)

    def _main_lr(self, m: int) -> float:  # pragma: no cover
        raise NotImplementedError

    def lr_at(self, k: int) -> float:
        """The rate after k calls of step() (k = 0: epoch 1), in closed form; needs start() first."""
        if self.base_lr is None:
            raise RuntimeError("call start(base_lr) or load_state_dict() first")
        w = self.warmup_epochs
        if k < w:
            return self.base_lr * (k + 1) / (w + 1)
        if k == w:  # exactly base_lr, as start() and step() give (a closed form may be 1 ulp off)
            return self.base_lr
        return self._main_lr(k - w)

    # -- state

    def state_dict(self) -> dict[str, np.ndarray]:
        """Plain arrays: epoch (int64), base_lr and lr (float64), plus the schedule's own state."""
        if self.base_lr is None:
            raise RuntimeError("call start(base_lr) before state_dict()")
        return {
            "epoch": np.array(self.epoch, dtype=np.int64),
            "base_lr": np.array(self.base_lr, dtype=np.float64),
            "lr": np.array(self.lr, dtype=np.float64),
            "mode": np.array(self.mode, dtype=np.str_),
            **self._main_state(),
        }

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore what state_dict saved; `lr` is then the rate for the next epoch."""
        expected = {"epoch", "base_lr", "lr", "mode", *self._main_keys}
        if set(state) != expected:
            missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
            raise ValueError(f"{self.name} schedule state: missing {missing}, unexpected {extra}")
        epoch, base_lr, mode = int(state["epoch"]), float(state["base_lr"]), str(state["mode"])
        if epoch < 0 or not (math.isfinite(base_lr) and base_lr > 0) or mode not in ("min", "max"):
            raise ValueError(f"{self.name} schedule state is invalid: epoch {epoch}, base_lr {base_lr}, mode {mode!r}")
        self.epoch, self.base_lr, self.mode = epoch, base_lr, mode
        self.lr = float(state["lr"])
        self._load_main(state)

    _main_keys: tuple[str, ...] = ()

    def _main_state(self) -> dict[str, np.ndarray]:
        return {}

    def _load_main(self, state: dict[str, np.ndarray]) -> None:
        # closed-form schedules: the rate follows from the epoch (a mismatch means other options);
        # the saved rate is kept as it is, so the resumed run goes on bit for bit
        expected = self.lr_at(self.epoch)
        if not math.isclose(self.lr, expected, rel_tol=1e-12, abs_tol=0.0):
            raise ValueError(
                f"{self.name} schedule state has lr {self.lr} at epoch {self.epoch}, but these options give {expected}"
            )


@SCHEDULES.register("step")
class StepSchedule(Schedule):
    """Multiply the rate by gamma every step_size epochs, as `torch.optim.lr_scheduler.StepLR`.

    Notes
    -----
    lr(m) = base_lr * gamma ** (m // step_size), m = epochs since the start (after any warm-up).
    """

    def __init__(
        self,
        *,
        step_size: Annotated[int, Range(ge=1)],
        gamma: Annotated[float, Range(gt=0)] = 0.1,
        warmup_epochs: Annotated[int, Range(ge=0)] = 0,
    ):
        super().__init__(warmup_epochs)
        if step_size < 1:
            raise ValueError(f"step_size must be >= 1, got {step_size}")
        self.step_size, self.gamma = step_size, gamma

    def _main_lr(self, m):
        return self.base_lr * self.gamma ** (m // self.step_size)


@SCHEDULES.register("multistep")
class MultiStepSchedule(Schedule):
    """Multiply the rate by gamma at each milestone epoch, as `torch.optim.lr_scheduler.MultiStepLR`.

    Notes
    -----
    lr(m) = base_lr * gamma ** (number of milestones <= m), m = epochs since the start (after
    any warm-up). Milestones are strictly increasing integers >= 1.
    """

    def __init__(
        self,
        *,
        milestones: list[int],
        gamma: Annotated[float, Range(gt=0)] = 0.1,
        warmup_epochs: Annotated[int, Range(ge=0)] = 0,
    ):
        super().__init__(warmup_epochs)
        milestones = list(milestones)
        if not milestones or any(m < 1 for m in milestones) or any(b <= a for a, b in pairwise(milestones)):
            raise ValueError(
                f"milestones must be a non-empty, strictly increasing list of epochs >= 1, got {milestones}"
            )
        self.milestones, self.gamma = milestones, gamma

    def _main_lr(self, m):
        return self.base_lr * self.gamma ** bisect_right(self.milestones, m)


@SCHEDULES.register("exponential")
class ExponentialSchedule(Schedule):
    """Multiply the rate by gamma every epoch, as `torch.optim.lr_scheduler.ExponentialLR`.

    Notes
    -----
    lr(m) = base_lr * gamma ** m, m = epochs since the start (after any warm-up).
    """

    def __init__(
        self,
        *,
        gamma: Annotated[float, Range(gt=0)],
        warmup_epochs: Annotated[int, Range(ge=0)] = 0,
    ):
        super().__init__(warmup_epochs)
        self.gamma = gamma

    def _main_lr(self, m):
        return self.base_lr * self.gamma**m


@SCHEDULES.register("cosine")
class CosineSchedule(Schedule):
    """Cosine annealing from the base rate to eta_min over T_max epochs, as `torch.optim.lr_scheduler.CosineAnnealingLR`.

    Notes
    -----
    lr(m) = eta_min + (base_lr - eta_min) * (1 + cos(pi * m / T_max)) / 2, m = epochs since the
    start (after any warm-up). lr(T_max) = eta_min; past T_max the cosine goes on (the rate
    climbs back towards base_lr over the next T_max epochs), as in torch. This is torch's
    closed form; its recursive form agrees to rounding.
    """

    def __init__(
        self,
        *,
        T_max: Annotated[int, Range(ge=1)],
        eta_min: Annotated[float, Range(ge=0)] = 0.0,
        warmup_epochs: Annotated[int, Range(ge=0)] = 0,
    ):
        super().__init__(warmup_epochs)
        if T_max < 1:
            raise ValueError(f"T_max must be >= 1, got {T_max}")
        self.T_max, self.eta_min = T_max, eta_min

    def _main_lr(self, m):
        return self.eta_min + (self.base_lr - self.eta_min) * (1 + math.cos(math.pi * m / self.T_max)) / 2


@SCHEDULES.register("plateau")
class PlateauSchedule(Schedule):
    """Cut the rate by `factor` when the monitored value stops improving, as `torch.optim.lr_scheduler.ReduceLROnPlateau`.

    Notes
    -----
    State: best (starts at +inf for mode 'min', -inf for 'max'), num_bad_epochs, cooldown_counter.
    At each step with the epoch's value v:

    better   mode min, rel: v < best (1 - threshold)     abs: v < best - threshold
             mode max, rel: v > best (1 + threshold)     abs: v > best + threshold
    if better: best = v, num_bad_epochs = 0; else num_bad_epochs += 1
    if cooldown_counter > 0: cooldown_counter -= 1, num_bad_epochs = 0
    if num_bad_epochs > patience:
        new = max(lr * factor, min_lr); if lr - new > eps: lr = new
        cooldown_counter = cooldown; num_bad_epochs = 0

    mode comes from start(base_lr, mode=...): 'min' for losses, mse, mae; 'max' for accuracy
    and r2. `monitor` names the value to watch (None: the run's train.monitor); the schedule
    itself only receives the number. During a warm-up the values are ignored and best is
    reset when it ends. A NaN value never counts as better.
    """

    needs_metric = True
    _main_keys = ("best", "num_bad_epochs", "cooldown_counter")

    def __init__(
        self,
        *,
        factor: Annotated[float, Range(gt=0, lt=1)] = 0.1,
        patience: Annotated[int, Range(ge=0)] = 10,
        threshold: Annotated[float, Range(ge=0)] = 1e-4,
        threshold_mode: Literal["rel", "abs"] = "rel",
        cooldown: Annotated[int, Range(ge=0)] = 0,
        min_lr: Annotated[float, Range(ge=0)] = 0.0,
        eps: Annotated[float, Range(ge=0)] = 1e-8,
        monitor: str | None = None,
        warmup_epochs: Annotated[int, Range(ge=0)] = 0,
    ):
        super().__init__(warmup_epochs)
        if not 0 < factor < 1:
            raise ValueError(f"factor must be in (0, 1), got {factor}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}")
        self.factor, self.patience, self.threshold, self.threshold_mode = factor, patience, threshold, threshold_mode
        self.cooldown, self.min_lr, self.eps, self.monitor = cooldown, min_lr, eps, monitor
        self.best = math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0

    def _reset_main(self):
        self.best = math.inf if self.mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0

    def _is_better(self, a: float) -> bool:
        if self.mode == "min":
            return (
                a < self.best * (1.0 - self.threshold)
                if self.threshold_mode == "rel"
                else a < self.best - self.threshold
            )
        return (
            a > self.best * (self.threshold + 1.0) if self.threshold_mode == "rel" else a > self.best + self.threshold
        )

    def _main_step(self, m, metric):
        if metric is None:
            raise ValueError("the plateau schedule needs the monitored value: step(metric)")
        current = float(metric)
        if self._is_better(current):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0  # ignore any bad epochs in cooldown
        lr = self.lr
        if self.num_bad_epochs > self.patience:
            new_lr = max(lr * self.factor, self.min_lr)
            if lr - new_lr > self.eps:
                lr = new_lr
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        return lr

    def lr_at(self, k: int) -> float:
        raise TypeError("plateau has no closed form: its rate depends on the monitored values")

    def _main_state(self):
        return {
            "best": np.array(self.best, dtype=np.float64),
            "num_bad_epochs": np.array(self.num_bad_epochs, dtype=np.int64),
            "cooldown_counter": np.array(self.cooldown_counter, dtype=np.int64),
        }

    def _load_main(self, state):
        self.best = float(state["best"])
        self.num_bad_epochs = int(state["num_bad_epochs"])
        self.cooldown_counter = int(state["cooldown_counter"])
        if not (math.isfinite(self.lr) and self.lr > 0) or self.num_bad_epochs < 0 or self.cooldown_counter < 0:
            raise ValueError(
                f"plateau schedule state is invalid: lr {self.lr}, counters {self.num_bad_epochs}, {self.cooldown_counter}"
            )
