"""L-BFGS (engine/lbfgs.py): torch.optim.LBFGS reference trajectories, resume, state layout, training.

The reference values come from tests/fixtures/make_torch_extra_fixtures.py (torch 2.13,
run by hand; torch is not needed here). Registration and defaults are in test_optim_extra.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import load_arrays, npz_round_trip, param
from numpy.testing import assert_allclose, assert_array_equal

from nntrain.engine.lbfgs import LBFGS
from nntrain.engine.network import Param

FIXTURE = Path(__file__).parent / "fixtures" / "torch_optim_extra.npz"
TORCH = load_arrays(FIXTURE)
LBFGS_CASES = [str(c) for c in TORCH["lbfgs.cases"]]


# ---------------------------------------------------------------- options


def test_lbfgs_max_eval_default_is_five_quarters_of_max_iter():
    """torch: max_eval = max_iter * 5 // 4 when not given."""
    assert LBFGS(max_iter=7).max_eval == 8
    assert LBFGS(max_iter=4).max_eval == 5
    assert LBFGS(max_iter=7, max_eval=3).max_eval == 3


def test_lbfgs_mini_batch_step_is_refused():
    """step(params) (the per-batch API) says lbfgs needs full-batch training."""
    p = param([1.0, 2.0])
    with pytest.raises(ValueError, match="full-batch"):
        LBFGS().step([p])
    assert_array_equal(p.value, [1.0, 2.0])


# ---------------------------------------------------------------- problems as NumPy closures


def make_problem(problem: str, dtype=np.float64) -> tuple[list[Param], callable]:
    """The fixture's problem: its parameters (in flat order) and a closure filling their grads.

    The same losses as the torch closures of make_torch_extra_fixtures.py, with hand-written gradients.
    """
    names = [str(n) for n in TORCH[f"{problem}.params"]]
    params = [param(TORCH[f"{problem}.init.{n}"], decay=False, key=n, dtype=dtype) for n in names]
    P = {p.key: p for p in params}
    X, y = TORCH[f"{problem}.X"].astype(dtype), TORCH[f"{problem}.y"].astype(dtype)
    calls = []

    def closure() -> float:
        calls.append(1)
        if problem == "logreg":
            w, b = P["weight"], P["bias"]
            z = X @ w.value + b.value
            loss = np.mean(np.logaddexp(0, z) - y * z) + 0.001 * np.sum(w.value**2)
            dz = (1 / (1 + np.exp(-z)) - y) / len(X)
            w.grad[...] = X.T @ dz + 0.002 * w.value
            b.grad[...] = dz.sum(0)
            return float(loss)
        h = np.tanh(X @ P["w1"].value + P["b1"].value)
        z = h @ P["w2"].value + P["b2"].value
        dz = 2 * (z - y) / z.size
        P["w2"].grad[...] = h.T @ dz
        P["b2"].grad[...] = dz.sum(0)
        dh = (dz @ P["w2"].value.T) * (1 - h * h)
        P["w1"].grad[...] = X.T @ dh
        P["b1"].grad[...] = dh.sum(0)
        return float(np.mean((z - y) ** 2))

    closure.calls = calls
    return params, closure


def lbfgs_for(case: str) -> tuple[LBFGS, list[Param], callable]:
    params, closure = make_problem(str(TORCH[f"{case}.problem"]))
    return LBFGS(**json.loads(str(TORCH[f"{case}.options"]))), params, closure


@pytest.mark.parametrize("case", LBFGS_CASES)
def test_lbfgs_matches_torch_after_every_step(case):
    """Same parameters, returned loss, closure evaluations and iterations as torch after each step."""
    opt, params, closure = lbfgs_for(case)
    for t in range(len(TORCH[f"{case}.loss"])):
        loss = opt.step_closure(params, closure)
        assert loss == pytest.approx(float(TORCH[f"{case}.loss"][t]), rel=1e-12, abs=1e-15)
        assert (opt.func_evals, opt.n_iter) == (int(TORCH[f"{case}.func_evals"][t]), int(TORCH[f"{case}.n_iter"][t]))
        assert opt.func_evals == len(closure.calls)
        for p in params:
            assert_allclose(
                p.value, TORCH[f"{case}.{p.key}"][t], rtol=1e-10, atol=1e-12, err_msg=f"{p.key}, step {t + 1}"
            )


def test_lbfgs_fixture_exercises_the_algorithm():
    """The torch cases run many iterations, shift a full history, and (logreg) reach the optimum."""
    assert max(int(TORCH[f"{c}.n_iter"][-1]) for c in LBFGS_CASES) >= 20
    small = json.loads(str(TORCH["mlp_small_history.options"]))
    assert int(TORCH["mlp_small_history.n_iter"][-1]) > 2 * small["history_size"]
    losses = TORCH["logreg_defaults.loss"]
    assert losses[0] > losses[-1] and losses[-1] == pytest.approx(losses[-2], abs=1e-12)
    for case in LBFGS_CASES:
        assert TORCH[f"{case}.loss"][-1] < 0.8 * TORCH[f"{case}.loss"][0], case


@pytest.mark.parametrize("case", ["mlp_small_history", "logreg_defaults", "mlp_all"])
def test_lbfgs_resume_continues_exactly(case):
    """Stopped after 2 steps, saved to .npz and restored into a new optimizer: identical to never stopping."""
    straight, straight_params, straight_closure = lbfgs_for(case)
    for _ in range(5):
        straight.step_closure(straight_params, straight_closure)

    first, params, closure = lbfgs_for(case)
    for _ in range(2):
        first.step_closure(params, closure)
    saved = npz_round_trip(first.state_dict())
    values = [p.value.copy() for p in params]
    del first

    resumed = LBFGS(**json.loads(str(TORCH[f"{case}.options"])))
    resumed.load_state_dict(saved)
    params, closure = make_problem(str(TORCH[f"{case}.problem"]))
    for p, v in zip(params, values):
        p.value[...] = v
    for _ in range(3):
        resumed.step_closure(params, closure)

    for p, q in zip(params, straight_params):
        assert_array_equal(p.value, q.value, err_msg=p.key)
    assert resumed.state_dict().keys() == straight.state_dict().keys()
    for key, value in straight.state_dict().items():
        assert_array_equal(resumed.state_dict()[key], value, err_msg=key)
    for p in params:
        assert_allclose(p.value, TORCH[f"{case}.{p.key}"][4], rtol=1e-10, atol=1e-12)


def test_lbfgs_state_dict_layout():
    """Flat arrays: counters, the flat vectors, and the history as (k, n) matrices with k <= history_size."""
    opt, params, closure = lbfgs_for("mlp_small_history")
    assert set(opt.state_dict()) == {"steps", "lbfgs.func_evals", "lbfgs.n_iter"}  # before any step
    for _ in range(3):
        opt.step_closure(params, closure)
    state = opt.state_dict()
    n = sum(p.value.size for p in params)
    assert int(state["steps"]) == 3 and int(state["lbfgs.numel"]) == n
    assert int(state["lbfgs.n_iter"]) == opt.n_iter and int(state["lbfgs.func_evals"]) == opt.func_evals
    assert state["lbfgs.d"].shape == state["lbfgs.prev_flat_grad"].shape == (n,)
    assert state["lbfgs.old_dirs"].shape == state["lbfgs.old_stps"].shape == (3, n)  # history_size 3, full
    assert state["lbfgs.ro"].shape == (3,) and (state["lbfgs.ro"] > 0).all()
    for key in ("lbfgs.t", "lbfgs.H_diag", "lbfgs.prev_loss"):
        assert state[key].shape == () and state[key].dtype == np.float64
    # s_i . y_i = 1 / ro_i for every stored pair
    ys = np.einsum("ij,ij->i", state["lbfgs.old_dirs"], state["lbfgs.old_stps"])
    assert_allclose(1 / ys, state["lbfgs.ro"], rtol=1e-12)
    opt.check_state(npz_round_trip(state), {p.key: p.value.shape for p in params})


def test_lbfgs_refuses_state_of_another_network_or_incomplete():
    opt, params, closure = lbfgs_for("logreg_defaults")
    opt.step_closure(params, closure)
    state = opt.state_dict()
    other, other_closure = make_problem("mlp")
    restored = LBFGS()
    restored.load_state_dict(state)
    with pytest.raises(ValueError, match="parameter values"):
        restored.step_closure(other, other_closure)
    with pytest.raises(ValueError, match="parameter values"):
        opt.check_state(state, {p.key: p.value.shape for p in other})
    with pytest.raises(ValueError, match="incomplete"):
        LBFGS().load_state_dict({k: v for k, v in state.items() if k != "lbfgs.d"})
    with pytest.raises(ValueError, match="history"):
        LBFGS(history_size=1).load_state_dict(state)  # logreg took several iterations: 2+ pairs
    with pytest.raises(ValueError, match="unknown"):
        LBFGS().load_state_dict({**state, "lbfgs.extra": np.zeros(1)})


def test_lbfgs_returns_at_once_at_an_optimum():
    """max|g| <= tolerance_grad at the first evaluation: one closure call, nothing moves (as torch)."""
    params, closure = make_problem("logreg")
    opt = LBFGS(tolerance_grad=1e3)
    values = [p.value.copy() for p in params]
    loss = opt.step_closure(params, closure)
    assert len(closure.calls) == 1 and opt.n_iter == 0 and opt.func_evals == 1
    assert loss == opt.final_loss
    for p, v in zip(params, values):
        assert_array_equal(p.value, v)
    assert "lbfgs.d" not in opt.state_dict()


def test_lbfgs_final_loss_is_the_loss_at_the_new_point():
    params, closure = make_problem("mlp")
    opt = LBFGS(max_iter=4)
    before = opt.step_closure(params, closure)
    after = opt.final_loss
    assert after < before
    assert closure() == pytest.approx(after, rel=1e-14)


def test_lbfgs_float32_keeps_float32():
    """Parameters and state vectors stay float32; scalars of the state are float64."""
    params, closure = make_problem("mlp", dtype=np.float32)
    values = [p.value for p in params]
    opt = LBFGS(max_iter=5, history_size=3)
    first = opt.step_closure(params, closure)
    for _ in range(2):
        opt.step_closure(params, closure)
    assert opt.final_loss < first
    for p, v in zip(params, values):
        assert p.value is v and p.value.dtype == np.float32
    state = opt.state_dict()
    for key in ("lbfgs.d", "lbfgs.prev_flat_grad", "lbfgs.old_dirs", "lbfgs.old_stps"):
        assert state[key].dtype == np.float32, key
    assert state["lbfgs.t"].dtype == np.float64


def test_lbfgs_trains_an_nntrain_network():
    """The closure contract with a real Network: loss_and_grad on the full batch fills every p.grad."""
    from nntrain.engine.layers import LAYERS
    from nntrain.engine.losses import LOSSES
    from nntrain.engine.network import Network

    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 2))
    y = (X[:, 0] * X[:, 1] > 0).astype(int)  # XOR-like: needs the hidden layer
    layers = [LAYERS["linear"](units=8), LAYERS["tanh"](), LAYERS["linear"](units=2), LAYERS["softmax"]()]
    net = Network(layers, LOSSES["cross_entropy"](), 2, np.float64, np.random.default_rng(1), init="xavier")
    T = net.loss.encode(y, 2, np.float64)
    opt = LBFGS(history_size=10)

    def closure():
        return net.loss_and_grad(X, T)[0]

    losses = [opt.step_closure(net.params, closure) for _ in range(4)]
    assert losses[0] == pytest.approx(np.log(2), abs=0.2)
    assert opt.final_loss < 0.25 * losses[0]
    assert (net.loss.decide(net.forward(X)) == y).mean() > 0.9


@pytest.mark.parametrize(
    "layers, warned",
    [
        ([{"linear": 8}, "tanh", {"dropout": 0.1}, {"linear": 3}], "dropout gives"),
        (
            [{"linear": 8}, {"gaussian_noise": 0.1}, "tanh", {"dropout": 0.1}, {"linear": 3}],
            "gaussian_noise and dropout give",
        ),
        ([{"linear": 8}, {"batch_norm": {}}, "tanh", {"linear": 3}], None),  # same loss at every evaluation
        ([{"linear": 8}, "tanh", {"linear": 3}], None),
    ],
)
def test_lbfgs_warns_about_layers_that_change_the_loss_between_evaluations(tmp_path, layers, warned):
    from conftest import small_config

    from nntrain import config as cfg
    from nntrain.api import fit, resume
    from nntrain.train.trainer import Hooks

    raw = small_config(model={"layers": layers}, optimizer="lbfgs", train={"epochs": 1, "batch_size": "full"})
    messages = []
    summary = fit(cfg.load_config(None, [], raw=raw), run_dir=tmp_path / "run", hooks=Hooks(log=messages.append))
    assert summary["status"] == "completed"
    warnings = [m for m in messages if m.startswith("warning: lbfgs")]
    if warned is None:
        assert warnings == []
    else:
        assert len(warnings) == 1 and warned in warnings[0]
        resumed = []
        resume(tmp_path / "run", overrides=["train.epochs=2"], hooks=Hooks(log=resumed.append))
        assert any(m.startswith("warning: lbfgs") for m in resumed)
