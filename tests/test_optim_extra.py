"""AdamW and Adagrad: hand-worked steps, torch.optim reference trajectories, state round trips.

The registration, defaults and fixture-coverage tests take in lbfgs too; its own tests are in
test_lbfgs.py. The reference values come from tests/fixtures/make_torch_extra_fixtures.py
(torch 2.13, run by hand; torch is not needed here).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import load_arrays, npz_round_trip, param, run_steps
from numpy.testing import assert_allclose, assert_array_equal

from nntrain.engine.lbfgs import LBFGS
from nntrain.engine.optim import OPTIMIZERS, Adagrad, Adam, AdamW

FIXTURE = Path(__file__).parent / "fixtures" / "torch_optim_extra.npz"
TORCH = load_arrays(FIXTURE)
CASES = [str(c) for c in TORCH["cases"]]
LBFGS_CASES = [str(c) for c in TORCH["lbfgs.cases"]]


# ---------------------------------------------------------------- registration, defaults, traits


def test_registered_with_traits():
    """adagrad and adamw are mini-batch optimizers; lbfgs needs a closure (full-batch training)."""
    assert OPTIMIZERS["adagrad"] is Adagrad and OPTIMIZERS["adamw"] is AdamW and OPTIMIZERS["lbfgs"] is LBFGS
    assert [name for name, cls in OPTIMIZERS.items() if cls.needs_closure] == ["lbfgs"]
    assert LBFGS.needs_closure is True
    assert LBFGS.name == "lbfgs" and AdamW.name == "adamw" and Adagrad.name == "adagrad"


def test_defaults_match_torch():
    a, w, l = Adagrad(), AdamW(), LBFGS()
    assert (a.lr, a.lr_decay, a.weight_decay, a.initial_accumulator_value, a.eps) == (1e-2, 0.0, 0.0, 0.0, 1e-10)
    assert (w.lr, w.beta1, w.beta2, w.eps, w.weight_decay) == (1e-3, 0.9, 0.999, 1e-8, 1e-2)
    assert (l.lr, l.max_iter, l.max_eval, l.tolerance_grad, l.tolerance_change, l.history_size) == (
        1.0,
        20,
        25,
        1e-7,
        1e-9,
        100,
    )


# ---------------------------------------------------------------- worked examples (by hand)


def test_adagrad_two_steps():
    """sum accumulates g^2; p <- p - lr g / (sqrt(sum) + eps)."""
    # step 1: sum = 0.25, p = 1 - 0.1 * 0.5 / (0.5 + 1e-10) = 0.9000000000199999...
    # step 2: sum = 0.25 + 1 = 1.25, p = p1 - 0.1 * (-1) / (sqrt(1.25) + 1e-10) = p1 + 0.0894427190...
    steps = run_steps(Adagrad(lr=0.1), param([1.0]), [[0.5], [-1.0]])
    p1 = 1 - 0.1 * 0.5 / (0.5 + 1e-10)
    assert_allclose(np.ravel(steps), [p1, p1 + 0.1 / (np.sqrt(1.25) + 1e-10)], rtol=1e-15)


def test_adagrad_lr_decay_and_initial_accumulator():
    """clr = lr / (1 + (t - 1) lr_decay); the sum starts at initial_accumulator_value."""
    # step 1: clr = 0.1, sum = 1 + 1 = 2 -> p = -0.1 / sqrt(2)
    # step 2: clr = 0.1 / 1.5, sum = 3   -> p -= (0.1 / 1.5) / sqrt(3)
    opt = Adagrad(lr=0.1, lr_decay=0.5, initial_accumulator_value=1.0, eps=0.0 + 1e-300)
    steps = run_steps(opt, param([0.0]), [[1.0], [1.0]])
    first = -0.1 / np.sqrt(2)
    assert_allclose(np.ravel(steps), [first, first - (0.1 / 1.5) / np.sqrt(3)], rtol=1e-14)
    assert_allclose(opt.state_dict()["layers.0.weight.sum"], [3.0], rtol=0)


def test_adamw_decay_is_decoupled():
    """With g = 0 the Adam part is 0 / (0 + eps) = 0: only the decay p <- p (1 - lr wd) acts, on weights only."""
    weight, bias = param([2.0], decay=True), param([2.0], decay=False, key="layers.0.bias")
    opt = AdamW(lr=0.1, weight_decay=0.5)
    for _ in range(2):
        opt.step([weight, bias])
    assert_allclose(weight.value, [2.0 * 0.95**2], rtol=1e-15)
    assert_array_equal(bias.value, [2.0])
    assert_array_equal(opt.state_dict()["layers.0.weight.exp_avg"], [0.0])  # decay never reaches the moments


def test_adamw_is_not_adam_with_l2():
    """AdamW never adds wd p to the gradient: with weight_decay 0 it is Adam, otherwise it differs from Adam's L2."""
    grads = [[0.5], [-1.0], [0.25]]
    adam = run_steps(Adam(lr=0.1), param([1.0]), grads)
    assert_array_equal(run_steps(AdamW(lr=0.1, weight_decay=0.0), param([1.0]), grads), adam)
    # decoupled: each step multiplies by (1 - 0.1 * 0.5) first, then the same Adam step as without decay
    p, expected = param([1.0]), []
    opt, plain = AdamW(lr=0.1, weight_decay=0.5), Adam(lr=0.1)
    q = param([0.0])  # tracks the pure Adam increments
    for g in grads:
        before = p.value.copy()
        q.value[...] = 0.0
        q.grad[...] = g
        plain.step([q])
        p.grad[...] = g
        opt.step([p])
        expected = before * (1 - 0.1 * 0.5) + q.value
        assert_allclose(p.value, expected, rtol=1e-15)
    assert not np.allclose(p.value, run_steps(Adam(lr=0.1, weight_decay=0.5), param([1.0]), grads)[-1])


# ---------------------------------------------------------------- torch.optim reference: adagrad, adamw


def test_fixture_covers_options():
    """Every option of adagrad, adamw and lbfgs is exercised by some torch case, in float64 and float32."""
    used: dict[str, set] = {}
    for case in CASES:
        used.setdefault(str(TORCH[f"{case}.optimizer"]), set()).update(json.loads(str(TORCH[f"{case}.options"])))
    assert used["adagrad"] == {"lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps"}
    assert used["adamw"] == {"lr", "beta1", "beta2", "eps", "weight_decay"}
    lbfgs = set().union(*(json.loads(str(TORCH[f"{c}.options"])) for c in LBFGS_CASES))
    assert lbfgs == {"lr", "max_iter", "max_eval", "tolerance_grad", "tolerance_change", "history_size"}
    assert {str(TORCH[f"{c}.dtype"]) for c in CASES} == {"float64", "float32"}
    assert any(len(set(TORCH[f"{c}.lr"])) > 1 for c in CASES if c.startswith("adamw"))  # lr changed mid-way
    assert len(TORCH["grad.weight"]) == 10
    assert FIXTURE.stat().st_size < 200_000


@pytest.mark.parametrize("case", CASES)
def test_matches_torch_after_every_step(case):
    """Parameters after each of 10 steps equal torch's (weights decay, biases do not; lr read at every step)."""
    dtype = np.dtype(str(TORCH[f"{case}.dtype"]))
    opt = OPTIMIZERS[str(TORCH[f"{case}.optimizer"])](**json.loads(str(TORCH[f"{case}.options"])))
    params = [
        param(TORCH["init.weight"], decay=True, key="layers.0.weight", dtype=dtype),
        param(TORCH["init.bias"], decay=False, key="layers.0.bias", dtype=dtype),
    ]
    tol = {"rtol": 1e-12, "atol": 1e-15} if dtype == np.float64 else {"rtol": 1e-5, "atol": 1e-6}
    for t in range(len(TORCH["grad.weight"])):
        opt.lr = float(TORCH[f"{case}.lr"][t])
        for p, name in zip(params, ("weight", "bias")):
            p.grad[...] = TORCH[f"grad.{name}"][t]
        opt.step(params)
        for p, name in zip(params, ("weight", "bias")):
            assert p.value.dtype == dtype
            assert_allclose(p.value, TORCH[f"{case}.{name}"][t], err_msg=f"{name}, step {t + 1}", **tol)
    for key, value in opt.state_dict().items():
        if key != "steps":
            assert value.dtype == dtype, key  # float32 training keeps float32 state


def test_torch_fixture_moves_parameters():
    for case in CASES:
        for name in ("weight", "bias"):
            assert not np.allclose(TORCH[f"{case}.{name}"][-1], TORCH[f"init.{name}"]), (case, name)


@pytest.mark.parametrize("name", ["adagrad", "adamw"])
def test_float32_state_stays_float32(name):
    """Buffers, parameters and their updates stay float32 (no silent upcast by the options' Python floats)."""
    opt = OPTIMIZERS[name](lr=0.01, weight_decay=0.1)
    p = param(np.linspace(-1, 1, 6).reshape(2, 3), dtype=np.float32)
    before = p.value
    for g in np.random.default_rng(0).standard_normal((4, 2, 3)).astype(np.float32):
        p.grad[...] = g
        opt.step([p])
    assert p.value is before and p.value.dtype == np.float32
    state = opt.state_dict()
    assert len(state) > 1
    assert all(v.dtype == np.float32 for k, v in state.items() if k != "steps")


# ---------------------------------------------------------------- state round trip: adagrad, adamw


@pytest.mark.parametrize(
    "name, options",
    [
        ("adamw", {"lr": 0.01, "weight_decay": 0.1}),
        ("adagrad", {"lr": 0.1, "lr_decay": 0.1, "initial_accumulator_value": 0.2}),
    ],
)
def test_state_dict_round_trip_continues_exactly(name, options):
    """Restored mid-way (through an .npz), the optimizer continues bit for bit like one that never stopped."""
    rng = np.random.default_rng(5)
    grads = [(rng.standard_normal((4, 3)), rng.standard_normal(3)) for _ in range(8)]
    init = np.random.default_rng(1)
    w0, b0 = init.standard_normal((4, 3)), init.standard_normal(3)

    def fresh():
        return [param(w0, True, "layers.0.weight"), param(b0, False, "layers.0.bias")]

    def feed(opt, params, seq):
        for gw, gb in seq:
            params[0].grad[...], params[1].grad[...] = gw, gb
            opt.step(params)

    straight, straight_params = OPTIMIZERS[name](**options), fresh()
    feed(straight, straight_params, grads)

    first, params = OPTIMIZERS[name](**options), fresh()
    feed(first, params, grads[:3])
    saved = npz_round_trip(first.state_dict())
    resumed = OPTIMIZERS[name](**options)
    resumed.load_state_dict(saved)
    feed(resumed, params, grads[3:])

    assert resumed.steps == straight.steps == 8
    for p, q in zip(params, straight_params):
        assert_array_equal(p.value, q.value)
    for key, value in straight.state_dict().items():
        assert_array_equal(resumed.state_dict()[key], value, err_msg=key)


def test_check_state_per_parameter_shapes():
    """check_state accepts a state that fits the parameters and names the key that does not."""
    params = [param(np.ones((4, 3))), param(np.ones(3), False, "layers.0.bias")]
    opt = AdamW()
    opt.step(params)
    shapes = {p.key: p.value.shape for p in params}
    opt.check_state(npz_round_trip(opt.state_dict()), shapes)
    with pytest.raises(ValueError, match="layers.0.bias.exp_avg"):
        opt.check_state(opt.state_dict(), {**shapes, "layers.0.bias": (4,)})
