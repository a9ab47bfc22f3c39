"""Optimizers: hand-worked steps, torch.optim reference trajectories, state round trip, options."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import npz_round_trip, param, run_steps
from numpy.testing import assert_allclose, assert_array_equal

from nntrain.engine.optim import OPTIMIZERS, SGD, Adam, RMSprop

FIXTURE = Path(__file__).parent / "fixtures" / "torch_optim.npz"






# ---------------------------------------------------------------- worked examples (by hand)


def test_sgd_plain_step():
    """p <- p - lr g."""
    # 1.0 - 0.1 * 0.5 = 0.95;  -2.0 - 0.1 * (-4.0) = -1.6
    (after,) = run_steps(SGD(lr=0.1), param([1.0, -2.0]), [[0.5, -4.0]])
    assert_allclose(after, [0.95, -1.6], rtol=1e-15)


def test_sgd_momentum_two_steps():
    """v starts at 0, so step 1 is plain SGD; step 2 adds momentum * v."""
    # step 1: v = 0.5;              p = 1 - 0.1 * 0.5  = 0.95
    # step 2: v = 0.9 * 0.5 + 0.5 = 0.95;  p = 0.95 - 0.1 * 0.95 = 0.855
    steps = run_steps(SGD(lr=0.1, momentum=0.9), param([1.0]), [[0.5], [0.5]])
    assert_allclose(np.ravel(steps), [0.95, 0.855], rtol=1e-15)


def test_sgd_nesterov_two_steps():
    """Nesterov steps along g + momentum * v."""
    # step 1: v = 0.5;   p = 1 - 0.1 * (0.5 + 0.9 * 0.5)  = 1 - 0.095  = 0.905
    # step 2: v = 0.95;  p = 0.905 - 0.1 * (0.5 + 0.9 * 0.95) = 0.905 - 0.1355 = 0.7695
    steps = run_steps(SGD(lr=0.1, momentum=0.9, nesterov=True), param([1.0]), [[0.5], [0.5]])
    assert_allclose(np.ravel(steps), [0.905, 0.7695], rtol=1e-15)


def test_sgd_weight_decay_applies_to_weights_not_biases():
    """weight_decay adds wd * W to the gradient of Param.decay tensors only."""
    weight = param([2.0], decay=True, key="layers.0.weight")
    bias = param([2.0], decay=False, key="layers.0.bias")
    weight.grad[...] = bias.grad[...] = 0.5
    SGD(lr=0.1, weight_decay=0.1).step([weight, bias])
    # weight: g' = 0.5 + 0.1 * 2.0 = 0.7;  2.0 - 0.1 * 0.7 = 1.93
    # bias:   g' = 0.5 (no decay);       2.0 - 0.1 * 0.5 = 1.95
    assert_allclose(weight.value, [1.93], rtol=1e-15)
    assert_allclose(bias.value, [1.95], rtol=1e-15)


def test_adam_two_steps():
    """Bias-corrected moments, checked against numbers worked out by hand."""
    # step 1 (g = 0.5): m = 0.1 * 0.5 = 0.05, v = 0.001 * 0.25 = 0.00025
    #   m_hat = 0.05 / 0.1 = 0.5, v_hat = 0.00025 / 0.001 = 0.25, sqrt = 0.5
    #   p = 1 - 0.1 * 0.5 / (0.5 + 1e-8) = 0.900000002
    # step 2 (g = -1): m = 0.9 * 0.05 - 0.1 = -0.055, v = 0.999 * 0.00025 + 0.001 = 0.00124975
    #   m_hat = -0.055 / (1 - 0.81) = -0.28947368..., v_hat = 0.00124975 / (1 - 0.998001) = 0.62518759...
    #   sqrt(v_hat) = 0.79068805...;  p = 0.900000002 + 0.1 * 0.28947368 / 0.79068805 = 0.93661035...
    steps = run_steps(Adam(lr=0.1), param([1.0]), [[0.5], [-1.0]])
    assert_allclose(np.ravel(steps), [0.900000002, 0.9366103542405653], rtol=1e-12)


def test_adam_first_step_is_lr_times_sign():
    """With bias correction, step 1 moves every entry by lr * g / (|g| + eps) ~ lr * sign(g), whatever |g|."""
    g = np.array([1e-3, -1e-3, 1.0, -1.0, 1e3, -1e3, 37.5])
    p = param(np.zeros_like(g))
    (after,) = run_steps(Adam(lr=0.01), p, [g])
    assert_allclose(after, -0.01 * np.sign(g), rtol=1e-5)


def test_adam_bias_correction_with_other_betas():
    """Bias correction divides by 1 - beta^t for the configured betas, not the defaults."""
    # beta1 = beta2 = 0.5, g = 2: m = 0.5 * 2 = 1, v = 0.5 * 4 = 2
    # corrected: m_hat = 1 / 0.5 = 2, v_hat = 2 / 0.5 = 4 -> step = 1e-3 * 2 / (2 + 1e-8)
    # uncorrected it would be 1e-3 * 1 / sqrt(2) = 7.07e-4
    (after,) = run_steps(Adam(lr=1e-3, beta1=0.5, beta2=0.5), param([0.0]), [[2.0]])
    assert_allclose(after, [-1e-3 * 2.0 / (2.0 + 1e-8)], rtol=1e-14)


def test_rmsprop_plain_step():
    """p <- p - lr g / (sqrt(s) + eps), s = (1 - alpha) g^2 after one step."""
    # s = 0.01 * 0.25 = 0.0025, sqrt = 0.05;  p = 1 - 0.01 * 0.5 / (0.05 + 1e-8) = 0.90000002
    (after,) = run_steps(RMSprop(lr=0.01), param([1.0]), [[0.5]])
    assert_allclose(after, [0.900000019999996], rtol=1e-14)


def test_rmsprop_momentum_two_steps():
    """The momentum buffer accumulates g / d."""
    # step 1: d = 0.05 + 1e-8, b = 0.5 / d = 9.9999998;  p = 1 - 0.01 * b = 0.90000002
    # step 2: s = 0.99 * 0.0025 + 0.0025 = 0.004975, d = 0.07053369, g / d = 7.08881105
    #         b = 0.9 * 9.9999998 + 7.08881105 = 16.08880925;  p = 0.90000002 - 0.1608880925 = 0.73911193
    steps = run_steps(RMSprop(lr=0.01, momentum=0.9), param([1.0]), [[0.5], [0.5]])
    assert_allclose(np.ravel(steps), [0.900000019999996, 0.7391119275494087], rtol=1e-12)


def test_rmsprop_centered_step():
    """Centered: the denominator uses s - a^2, a the running mean of g."""
    # a = 0.01 * 0.5 = 0.005, s = 0.0025, s - a^2 = 0.002475, sqrt = 0.04974938
    # p = 1 - 0.01 * 0.5 / 0.04974938 = 1 - 0.10050376 = 0.89949624
    (after,) = run_steps(RMSprop(lr=0.01, centered=True), param([1.0]), [[0.5]])
    assert_allclose(after, [0.899496238676095], rtol=1e-12)


# ---------------------------------------------------------------- torch.optim reference


def _fixture():
    with np.load(FIXTURE, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


TORCH = _fixture()
CASES = [str(c) for c in TORCH["cases"]]


def test_fixture_covers_every_optimizer_and_option():
    """The torch fixture exercises each registered optimizer and each of their options."""
    used = {}
    for case in CASES:
        name = str(TORCH[f"{case}.optimizer"])
        used.setdefault(name, set()).update(json.loads(str(TORCH[f"{case}.options"])))
    # lbfgs works on closures, not per-batch steps; its torch comparison lives in test_lbfgs
    assert set(used) == {name for name, cls in OPTIMIZERS.items() if not cls.needs_closure}
    assert used["sgd"] >= {"lr", "momentum", "nesterov", "weight_decay"}
    assert used["adam"] >= {"lr", "beta1", "beta2", "eps", "weight_decay"}
    assert used["rmsprop"] >= {"lr", "alpha", "eps", "momentum", "centered", "weight_decay"}
    assert FIXTURE.stat().st_size < 200_000


@pytest.mark.parametrize("case", CASES)
def test_matches_torch_after_every_step(case):
    """nntrain reproduces torch.optim's parameters after each step (weights decay, biases do not)."""
    opt = OPTIMIZERS[str(TORCH[f"{case}.optimizer"])](**json.loads(str(TORCH[f"{case}.options"])))
    params = [
        param(TORCH["init.weight"], decay=True, key="layers.0.weight"),
        param(TORCH["init.bias"], decay=False, key="layers.0.bias"),
    ]
    steps = len(TORCH["grad.weight"])
    for t in range(steps):
        for p, name in zip(params, ("weight", "bias")):
            p.grad[...] = TORCH[f"grad.{name}"][t]
        opt.step(params)
        for p, name in zip(params, ("weight", "bias")):
            assert_allclose(
                p.value, TORCH[f"{case}.{name}"][t], rtol=1e-12, atol=1e-15, err_msg=f"{name}, step {t + 1}"
            )


def test_torch_fixture_moves_parameters():
    """Sanity of the fixture itself: every case actually changed both tensors."""
    for case in CASES:
        for name in ("weight", "bias"):
            assert not np.allclose(TORCH[f"{case}.{name}"][-1], TORCH[f"init.{name}"]), (case, name)


# ---------------------------------------------------------------- state round trip

OPTIONS = {
    "sgd_momentum": ("sgd", {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    "adam": ("adam", {"lr": 0.01, "weight_decay": 0.01}),
    "rmsprop_full": ("rmsprop", {"lr": 0.01, "momentum": 0.5, "centered": True, "weight_decay": 0.01}),
}


def _params(rng):
    return [
        param(rng.standard_normal((4, 3)), decay=True, key="layers.0.weight"),
        param(rng.standard_normal(3), decay=False, key="layers.0.bias"),
    ]




@pytest.mark.parametrize("case", list(OPTIONS))
def test_state_dict_round_trip_continues_exactly(case):
    """An optimizer restored mid-way continues bit for bit like one that never stopped."""
    name, options = OPTIONS[case]
    rng = np.random.default_rng(3)
    grads = [(rng.standard_normal((4, 3)), rng.standard_normal(3)) for _ in range(6)]

    def feed(opt, params, seq):
        for gw, gb in seq:
            params[0].grad[...], params[1].grad[...] = gw, gb
            opt.step(params)

    straight, straight_params = OPTIMIZERS[name](**options), _params(np.random.default_rng(1))
    feed(straight, straight_params, grads)

    first, params = OPTIMIZERS[name](**options), _params(np.random.default_rng(1))
    feed(first, params, grads[:3])
    saved_state = npz_round_trip(first.state_dict())
    saved_values = [p.value.copy() for p in params]
    del first

    resumed = OPTIMIZERS[name](**options)
    resumed.load_state_dict(saved_state)
    params = _params(np.random.default_rng(99))  # other values, overwritten as a checkpoint restore would
    for p, v in zip(params, saved_values):
        p.value[...] = v
    feed(resumed, params, grads[3:])

    assert resumed.steps == straight.steps == 6
    for p, q in zip(params, straight_params):
        assert_array_equal(p.value, q.value)
    assert resumed.state_dict().keys() == straight.state_dict().keys()
    for key, value in straight.state_dict().items():
        assert_array_equal(resumed.state_dict()[key], value, err_msg=key)


def test_state_dict_holds_steps_and_per_parameter_buffers():
    """Keys are '<param key>.<buffer>' plus 'steps', so they can be saved under 'optim.'."""
    params = _params(np.random.default_rng(0))
    opt = RMSprop(momentum=0.9, centered=True)
    opt.step(params)
    state = opt.state_dict()
    assert int(state["steps"]) == 1
    assert set(state) == {"steps"} | {
        f"layers.0.{p}.{b}" for p in ("weight", "bias") for b in ("square_avg", "momentum_buffer", "grad_avg")
    }
    assert state["layers.0.weight.square_avg"].shape == (4, 3)


def test_load_state_dict_copies_arrays():
    """A loaded state does not alias the caller's arrays: stepping does not write into them."""
    params = _params(np.random.default_rng(0))
    opt = Adam()
    opt.step(params)
    state = npz_round_trip(opt.state_dict())
    before = {k: v.copy() for k, v in state.items()}
    other = Adam()
    other.load_state_dict(state)
    other.step(params)
    for key, value in before.items():
        assert_array_equal(state[key], value, err_msg=key)


# ---------------------------------------------------------------- options


def test_nesterov_without_momentum_is_rejected():
    """torch raises for Nesterov without momentum; so does nntrain."""
    with pytest.raises(ValueError, match="momentum"):
        SGD(nesterov=True, momentum=0)
    with pytest.raises(ValueError):
        SGD(lr=0.1, nesterov=True)  # momentum defaults to 0


def test_sgd_without_momentum_keeps_no_state():
    """Plain SGD has no buffers to save."""
    opt = SGD(lr=0.1)
    opt.step(_params(np.random.default_rng(0)))
    assert set(opt.state_dict()) == {"steps"}


def test_defaults_match_torch():
    """The documented defaults are torch.optim's."""
    sgd, adam, rms = SGD(), Adam(), RMSprop()
    assert (sgd.lr, sgd.momentum, sgd.nesterov, sgd.weight_decay) == (1e-3, 0.0, False, 0.0)
    assert (adam.lr, adam.beta1, adam.beta2, adam.eps, adam.weight_decay) == (1e-3, 0.9, 0.999, 1e-8, 0.0)
    assert (rms.lr, rms.alpha, rms.eps, rms.momentum, rms.centered) == (1e-2, 0.99, 1e-8, 0.0, False)
    assert rms.weight_decay == 0.0


# ---------------------------------------------------------------- packed parameters

PACKED_CASES = {
    "sgd": {"lr": 0.05},
    "sgd_momentum": {"lr": 0.05, "momentum": 0.9},
    "sgd_nesterov_wd": {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01},
    "adam": {"lr": 0.01},
    "adam_wd": {"lr": 0.01, "weight_decay": 0.01},
    "adamw": {"lr": 0.01},
    "rmsprop": {"lr": 0.01, "momentum": 0.5, "centered": True, "weight_decay": 0.01},
    "adagrad": {"lr": 0.05, "lr_decay": 0.01, "initial_accumulator_value": 0.1, "weight_decay": 0.01},
}


def _packed_network(dtype):
    from nntrain.engine.layers import LAYERS
    from nntrain.engine.losses import LOSSES
    from nntrain.engine.network import Network

    layers = [LAYERS["linear"](units=6), LAYERS["tanh"](), LAYERS["linear"](units=3)]
    return Network(layers, LOSSES["cross_entropy"](), 4, dtype, np.random.default_rng(5))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", list(PACKED_CASES))
def test_packed_parameters_take_the_per_parameter_steps(case, dtype):
    """Over the flat arrays (one update for all parameters) the optimizer computes, element for element,
    what it computes one parameter at a time; gradients are left as backward wrote them; and a state
    saved mid-way continues on a new network exactly."""
    name = case.split("_")[0]
    options = PACKED_CASES[case]
    flat_net, each_net = _packed_network(dtype), _packed_network(dtype)
    flat_opt, each_opt = OPTIMIZERS[name](**options), OPTIMIZERS[name](**options)
    rng = np.random.default_rng(6)
    batches = [(rng.standard_normal((5, 4)).astype(dtype), rng.integers(0, 3, 5)) for _ in range(6)]
    for i, (x, y) in enumerate(batches):
        if i == 3:  # resume the flat one from a saved state, on a fresh network holding the saved values
            state, values = npz_round_trip(flat_opt.state_dict()), [p.value.copy() for p in flat_net.params]
            flat_net, flat_opt = _packed_network(dtype), OPTIMIZERS[name](**options)
            for p, v in zip(flat_net.params, values):
                p.value[...] = v
            flat_opt.load_state_dict(state)
        flat_net.loss_and_grad(x, y)
        each_net.loss_and_grad(x, y)
        grads = [p.grad.copy() for p in flat_net.params]
        flat_opt.step(flat_net.params)
        each_opt._step_each(each_net.params)
        assert flat_opt._flat_state is not None  # the flat route was taken
        for p, g in zip(flat_net.params, grads):
            assert_array_equal(p.grad, g, err_msg=f"{p.key}: step changed the gradient")
        tight = {"rtol": 1e-6, "atol": 1e-7} if dtype == "float32" else {"rtol": 1e-13, "atol": 1e-15}
        for p, q in zip(flat_net.params, each_net.params):
            if name == "sgd":  # BLAS axpy may fuse a multiply and an add: a rounding apart at most
                assert_allclose(p.value, q.value, **tight, err_msg=p.key)
            else:
                assert_array_equal(p.value, q.value, err_msg=p.key)
    assert flat_opt.state_dict().keys() == each_opt.state_dict().keys()
    for key, value in each_opt.state_dict().items():
        assert_allclose(flat_opt.state_dict()[key], value, **tight, err_msg=key)


# ---------------------------------------------------------------- check_state: every buffer the optimizer keeps


CHECKED = [
    ("sgd", {"momentum": 0.9}),
    ("sgd", {}),
    ("adam", {}),
    ("adamw", {}),
    ("rmsprop", {"momentum": 0.5, "centered": True}),
    ("adagrad", {}),
    ("lbfgs", {"history_size": 3}),
]


def _stepped(name, options, steps):
    """An optimizer of OPTIMIZERS after `steps` steps on two parameters (lbfgs: steps of a quadratic closure)."""
    params = [param(np.linspace(-1, 1, 6).reshape(2, 3)), param([0.5, -0.5, 0.25], False, "layers.0.bias")]
    opt = OPTIMIZERS[name](lr=0.1, **options)
    for _ in range(steps):
        if opt.needs_closure:

            def closure():
                for p in params:
                    p.grad[...] = 2 * (p.value - 3)
                return float(sum(((p.value - 3) ** 2).sum() for p in params))

            opt.step_closure(params, closure)
        else:
            for p in params:
                p.grad[...] = p.value + 1
            opt.step(params)
    return opt, {p.key: p.value.shape for p in params}


@pytest.mark.parametrize("name, options", CHECKED, ids=[f"{n}{'-' + '-'.join(o) if o else ''}" for n, o in CHECKED])
def test_check_state_requires_exactly_the_buffers_the_optimizer_keeps(name, options):
    for steps in (0, 2):
        opt, shapes = _stepped(name, options, steps)
        state = npz_round_trip(opt.state_dict())
        fresh = OPTIMIZERS[name](lr=0.1, **options)
        fresh.check_state(state, shapes, prefix="optim.")  # what state_dict writes passes, after 0 or more steps
        for key in sorted(state):
            if key in ("steps",) or (name == "lbfgs" and key in ("lbfgs.func_evals", "lbfgs.n_iter")):
                continue  # required by every optimizer (tested elsewhere)
            with pytest.raises(ValueError, match=f"optim.{key}|{key.split('.')[-1]}"):
                fresh.check_state({k: v for k, v in state.items() if k != key}, shapes, prefix="optim.")
        if name != "lbfgs":
            # before the first step even its own buffer is extra; after it, one it does not keep
            others = [b for b in ("sum", "exp_avg_sq", "momentum_buffer") if b not in opt.slots]
            buffer = (opt.slots or others)[0] if steps == 0 else others[0]
            extra = {**state, f"layers.0.bias.{buffer}": np.zeros(3)}
            with pytest.raises(ValueError, match=f"unexpected optim.layers.0.bias.{buffer}"):
                fresh.check_state(extra, shapes, prefix="optim.")
    if name == "lbfgs":  # history without the step that made it, or a step count without lbfgs.numel
        opt, shapes = _stepped(name, options, 1)
        state = opt.state_dict()
        with pytest.raises(ValueError, match="lbfgs.numel"):
            opt.check_state({**{k: v for k, v in state.items() if k != "lbfgs.numel"}}, shapes)
        with pytest.raises(ValueError, match="steps is 0"):
            opt.check_state({**state, "steps": np.array(0)}, shapes)
