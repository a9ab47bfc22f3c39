"""Learning-rate schedules: torch.optim.lr_scheduler reference values, warm-up, state round trips, options.

The reference values come from tests/fixtures/make_torch_extra_fixtures.py (torch 2.13,
run by hand; torch is not needed here).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import load_arrays, npz_round_trip
from numpy.testing import assert_allclose, assert_array_equal

from nntrain.engine.optim import AdamW
from nntrain.engine.schedules import SCHEDULES, Schedule

FIXTURE = Path(__file__).parent / "fixtures" / "torch_schedules.npz"




TORCH = load_arrays(FIXTURE)
CASES = [str(c) for c in TORCH["cases"]]




def build(case: str) -> Schedule:
    return SCHEDULES[str(TORCH[f"{case}.schedule"])](**json.loads(str(TORCH[f"{case}.options"])))


def metric(case: str, k: int) -> float | None:
    """The value given to step k (1-based) in the torch case; None where the schedule reads none."""
    value = float(TORCH[f"{case}.metric"][k - 1])
    return None if math.isnan(value) else value


def trajectory(schedule: Schedule, case: str, start: int = 1, stop: int | None = None) -> list[float]:
    stop = len(TORCH[f"{case}.metric"]) if stop is None else stop
    return [schedule.step(metric(case, k)) for k in range(start, stop + 1)]


# ---------------------------------------------------------------- torch reference


def test_fixture_covers_every_schedule_and_option():
    used: dict[str, set] = {}
    for case in CASES:
        used.setdefault(str(TORCH[f"{case}.schedule"]), set()).update(json.loads(str(TORCH[f"{case}.options"])))
    assert set(used) == set(SCHEDULES) == {"step", "multistep", "exponential", "cosine", "plateau"}
    assert used["step"] == {"step_size", "gamma", "warmup_epochs"}
    assert used["multistep"] == {"milestones", "gamma", "warmup_epochs"}
    assert used["exponential"] == {"gamma", "warmup_epochs"}
    assert used["cosine"] == {"T_max", "eta_min", "warmup_epochs"}
    assert used["plateau"] >= {
        "factor",
        "patience",
        "threshold",
        "threshold_mode",
        "cooldown",
        "min_lr",
        "eps",
        "warmup_epochs",
    }
    assert {str(TORCH[f"{c}.mode"]) for c in CASES if str(TORCH[f"{c}.schedule"]) == "plateau"} == {"min", "max"}
    assert all(len(TORCH[f"{c}.lr"]) == 31 for c in CASES)
    assert FIXTURE.stat().st_size < 200_000


@pytest.mark.parametrize("case", CASES)
def test_matches_torch_every_epoch(case):
    """The rate for each of 31 epochs (start, then 30 steps) equals torch's scheduler."""
    schedule = build(case)
    lrs = [schedule.start(float(TORCH[f"{case}.base_lr"]), mode=str(TORCH[f"{case}.mode"]))]
    lrs += trajectory(schedule, case)
    assert_allclose(lrs, TORCH[f"{case}.lr"], rtol=1e-12, atol=1e-15)
    assert schedule.epoch == 30 and schedule.lr == lrs[-1]


def test_torch_fixture_changes_the_rate():
    """Sanity of the fixture: every case's rate actually moves, and plateau cases cut it more than once."""
    for case in CASES:
        lrs = TORCH[f"{case}.lr"]
        assert len(set(lrs.tolist())) > 2, case
        if str(TORCH[f"{case}.schedule"]) == "plateau":
            assert (np.diff(lrs) < 0).sum() >= 2, case


@pytest.mark.parametrize("case", [c for c in CASES if str(TORCH[f"{c}.schedule"]) != "plateau"])
def test_closed_form_lr_at_equals_stepping(case):
    schedule = build(case)
    lrs = [schedule.start(float(TORCH[f"{case}.base_lr"]))] + trajectory(schedule, case)
    assert [schedule.lr_at(k) for k in range(31)] == lrs


# ---------------------------------------------------------------- worked examples


def test_warmup_then_cosine_by_hand():
    """w = 4: epochs 1..4 at base (k+1)/5, then the cosine starts from base_lr at its own epoch 0."""
    schedule = SCHEDULES["cosine"](T_max=4, warmup_epochs=4)
    lrs = [schedule.start(1.0)] + [schedule.step() for _ in range(8)]
    cosine = [1.0, (1 + math.cos(math.pi / 4)) / 2, 0.5, (1 + math.cos(3 * math.pi / 4)) / 2, 0.0]
    assert_allclose(lrs, [0.2, 0.4, 0.6, 0.8] + cosine, rtol=1e-15, atol=1e-17)


def test_warmup_then_step_by_hand():
    """w = 2, step_size 2, gamma 0.5: 1/3, 2/3, then 1, 1, 0.5, 0.5, 0.25."""
    schedule = SCHEDULES["step"](step_size=2, gamma=0.5, warmup_epochs=2)
    lrs = [schedule.start(0.3)] + [schedule.step() for _ in range(6)]
    assert_allclose(lrs, [0.1, 0.2, 0.3, 0.3, 0.15, 0.15, 0.075], rtol=1e-15)


def test_no_warmup_starts_at_base_lr():
    for name, options in [("step", {"step_size": 1}), ("cosine", {"T_max": 3}), ("plateau", {})]:
        assert SCHEDULES[name](**options).start(0.7) == 0.7


def test_plateau_reads_the_metric_and_mode():
    """mode 'max' (accuracy): a rising value is an improvement; stalling for patience + 1 epochs cuts lr."""
    schedule = SCHEDULES["plateau"](patience=1, factor=0.5)
    assert schedule.needs_metric and not SCHEDULES["cosine"].needs_metric
    schedule.start(1.0, mode="max")
    assert [schedule.step(v) for v in [0.5, 0.6, 0.7, 0.7, 0.7, 0.8, 0.8, 0.8]] == [1, 1, 1, 1, 0.5, 0.5, 0.5, 0.25]
    schedule.start(1.0, mode="min")  # the same values now get worse-or-equal after the first
    assert [schedule.step(v) for v in [0.5, 0.6, 0.7]] == [1, 1, 0.5]


def test_plateau_ignores_metrics_during_warmup_and_needs_them_after():
    schedule = SCHEDULES["plateau"](patience=0, warmup_epochs=2)
    schedule.start(1.0)
    assert schedule.step(None) == pytest.approx(2 / 3)  # warm-up: no metric needed
    assert schedule.step(5.0) == 1.0  # the warm-up's last metric is ignored, best is reset
    assert schedule.step(1.0) == 1.0  # first metric at base_lr: the baseline
    assert schedule.step(2.0) == pytest.approx(0.1)  # worse, patience 0: cut
    with pytest.raises(ValueError, match="monitored value"):
        schedule.step(None)


def test_plateau_min_lr_floor_and_eps():
    """lr never drops below min_lr, and a cut smaller than eps is skipped (torch)."""
    schedule = SCHEDULES["plateau"](patience=0, factor=0.5, min_lr=0.3)
    schedule.start(1.0)
    assert [schedule.step(1.0) for _ in range(5)] == [1.0, 0.5, 0.3, 0.3, 0.3]
    schedule = SCHEDULES["plateau"](patience=0, factor=0.5, eps=0.3)
    schedule.start(1.0)
    assert [schedule.step(1.0) for _ in range(4)] == [1.0, 0.5, 0.5, 0.5]  # 0.5 - 0.25 < 0.3


def test_schedule_drives_the_optimizer_lr():
    """The trainer's loop: optimizer.lr = start(optimizer.lr), then = step() after each epoch."""
    opt = AdamW(lr=0.01)
    schedule = SCHEDULES["exponential"](gamma=0.5, warmup_epochs=1)
    opt.lr = schedule.start(opt.lr)
    seen = []
    for _ in range(4):
        seen.append(opt.lr)  # lr in force during this epoch
        opt.lr = schedule.step()
    assert_allclose(seen, [0.005, 0.01, 0.005, 0.0025], rtol=1e-15)


# ---------------------------------------------------------------- state round trip


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("stop", [2, 13])
def test_state_round_trip_continues_exactly(case, stop):
    """Saved after `stop` epochs (mid warm-up for some), restored into a new instance: same rates after."""
    straight = build(case)
    straight.start(float(TORCH[f"{case}.base_lr"]), mode=str(TORCH[f"{case}.mode"]))
    expected = trajectory(straight, case)

    first = build(case)
    first.start(float(TORCH[f"{case}.base_lr"]), mode=str(TORCH[f"{case}.mode"]))
    before = trajectory(first, case, 1, stop)
    saved = npz_round_trip(first.state_dict())
    del first

    resumed = build(case)
    resumed.load_state_dict(saved)
    assert resumed.lr == before[-1] and resumed.epoch == stop
    after = trajectory(resumed, case, stop + 1)
    assert before + after == expected
    for key, value in straight.state_dict().items():
        assert_array_equal(resumed.state_dict()[key], value, err_msg=key)


def test_resume_after_any_epoch():
    """Every stop epoch, every case: cooldowns, bad-epoch counts and warm-ups in progress all survive."""
    for case in CASES:
        base_lr, mode = float(TORCH[f"{case}.base_lr"]), str(TORCH[f"{case}.mode"])
        for stop in range(1, 30):
            first = build(case)
            first.start(base_lr, mode=mode)
            before = trajectory(first, case, 1, stop)
            resumed = build(case)
            resumed.load_state_dict(npz_round_trip(first.state_dict()))
            after = trajectory(resumed, case, stop + 1)
            assert_allclose(
                before + after, TORCH[f"{case}.lr"][1:], rtol=1e-12, atol=1e-15, err_msg=f"{case}, stop {stop}"
            )


@pytest.mark.parametrize(
    "name, options",
    [
        ("cosine", {"T_max": 7, "eta_min": 0.01, "warmup_epochs": 3}),
        ("multistep", {"milestones": [1, 4], "gamma": 0.3, "warmup_epochs": 2}),
        ("plateau", {"patience": 1, "cooldown": 2, "factor": 0.5, "warmup_epochs": 3}),
    ],
)
def test_resume_is_bit_for_bit_at_every_epoch(name, options):
    """Restored at any epoch (warm-up end included), the rates are identical floats, not just close."""
    values = [1.0, 0.9, 0.95, 0.97, 0.96, 0.8, 0.81, 0.82, 0.83, 0.7, 0.71, 0.72, 0.73, 0.74, 0.75]
    straight = SCHEDULES[name](**options)
    expected = [straight.start(0.2)] + [straight.step(v) for v in values]
    if name != "plateau":
        assert [straight.lr_at(k) for k in range(len(expected))] == expected
    for stop in range(len(values)):
        first = SCHEDULES[name](**options)
        lrs = [first.start(0.2)] + [first.step(v) for v in values[:stop]]
        resumed = SCHEDULES[name](**options)
        resumed.load_state_dict(npz_round_trip(first.state_dict()))
        assert lrs + [resumed.step(v) for v in values[stop:]] == expected, stop


def test_state_dict_is_plain_arrays():
    schedule = SCHEDULES["plateau"](patience=3, cooldown=1)
    schedule.start(0.1, mode="max")
    schedule.step(0.5)
    state = schedule.state_dict()
    assert set(state) == {"epoch", "base_lr", "lr", "mode", "best", "num_bad_epochs", "cooldown_counter"}
    assert all(isinstance(v, np.ndarray) and v.dtype != object for v in state.values())
    assert int(state["epoch"]) == 1 and float(state["best"]) == 0.5 and str(state["mode"]) == "max"
    fresh = SCHEDULES["plateau"](patience=3, cooldown=1)
    fresh.load_state_dict(npz_round_trip(state))
    assert fresh.mode == "max" and fresh.best == 0.5 and fresh.lr == 0.1


def test_load_state_refuses_other_options_or_keys():
    schedule = SCHEDULES["step"](step_size=2)
    schedule.start(1.0)
    for _ in range(3):
        schedule.step()
    state = schedule.state_dict()
    with pytest.raises(ValueError, match="these options"):
        SCHEDULES["step"](step_size=5).load_state_dict(state)  # lr 0.1 at epoch 3 is not step_size 5's
    with pytest.raises(ValueError, match="missing"):
        SCHEDULES["step"](step_size=2).load_state_dict({k: v for k, v in state.items() if k != "epoch"})
    with pytest.raises(ValueError, match="unexpected"):
        SCHEDULES["step"](step_size=2).load_state_dict({**state, "best": np.array(1.0)})
    with pytest.raises(ValueError, match="missing"):
        SCHEDULES["plateau"]().load_state_dict(state)


# ---------------------------------------------------------------- options and errors


def test_options_become_a_config_schema():
    """Keyword-only options with Range annotations turn into pydantic fields, as for every component."""
    from pydantic import ValidationError, create_model

    from nntrain.config import options_of

    expected = {
        "step": {"step_size", "gamma", "warmup_epochs"},
        "multistep": {"milestones", "gamma", "warmup_epochs"},
        "exponential": {"gamma", "warmup_epochs"},
        "cosine": {"T_max", "eta_min", "warmup_epochs"},
        "plateau": {
            "factor",
            "patience",
            "threshold",
            "threshold_mode",
            "cooldown",
            "min_lr",
            "eps",
            "monitor",
            "warmup_epochs",
        },
    }
    models = {}
    for name, cls in SCHEDULES.items():
        fields = options_of(cls.__init__)
        assert set(fields) == expected[name], name
        models[name] = create_model(f"{name}Options", **fields)
    assert models["cosine"](T_max=10).warmup_epochs == 0
    assert models["plateau"]().patience == 10
    for name, bad in [
        ("step", {"step_size": 0}),
        ("cosine", {"T_max": 10, "warmup_epochs": -1}),
        ("cosine", {}),  # T_max is required
        ("exponential", {"gamma": 0.0}),
        ("plateau", {"factor": 1.0}),
        ("plateau", {"threshold_mode": "relative"}),
        ("plateau", {"patience": -1}),
    ]:
        with pytest.raises(ValidationError):
            models[name](**bad)


def test_defaults_match_torch():
    p = SCHEDULES["plateau"]()
    assert (p.factor, p.patience, p.threshold, p.threshold_mode, p.cooldown, p.min_lr, p.eps) == (
        0.1,
        10,
        1e-4,
        "rel",
        0,
        0.0,
        1e-8,
    )
    assert SCHEDULES["step"](step_size=3).gamma == 0.1
    assert SCHEDULES["multistep"](milestones=[2]).gamma == 0.1
    assert SCHEDULES["cosine"](T_max=3).eta_min == 0.0
    required = {
        "step": {"step_size": 1},
        "multistep": {"milestones": [1]},
        "exponential": {"gamma": 0.5},
        "cosine": {"T_max": 1},
    }
    for name, cls in SCHEDULES.items():
        assert cls(**required.get(name, {})).warmup_epochs == 0, name


def test_constructor_checks():
    with pytest.raises(ValueError, match="milestones"):
        SCHEDULES["multistep"](milestones=[5, 3])
    with pytest.raises(ValueError, match="milestones"):
        SCHEDULES["multistep"](milestones=[])
    with pytest.raises(ValueError, match="factor"):
        SCHEDULES["plateau"](factor=1.5)
    with pytest.raises(ValueError, match="warmup_epochs"):
        SCHEDULES["cosine"](T_max=3, warmup_epochs=-2)
    with pytest.raises(ValueError, match="mode"):
        SCHEDULES["plateau"]().start(0.1, mode="maximize")
    with pytest.raises(ValueError, match="base_lr"):
        SCHEDULES["cosine"](T_max=3).start(0.0)
    with pytest.raises(RuntimeError, match="start"):
        SCHEDULES["cosine"](T_max=3).step()
    with pytest.raises(TypeError, match="closed form"):
        plateau = SCHEDULES["plateau"]()
        plateau.start(0.1)
        plateau.lr_at(3)


def test_monitor_option_is_kept_for_the_trainer():
    assert SCHEDULES["plateau"](monitor="val_accuracy").monitor == "val_accuracy"
    assert SCHEDULES["plateau"]().monitor is None and SCHEDULES["cosine"](T_max=2).monitor is None
