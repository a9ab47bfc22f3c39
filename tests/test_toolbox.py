"""Initializers, weight penalties, gradient clipping and early stopping."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nntrain.engine.init import init_weight
from nntrain.engine.network import Param
from nntrain.engine.regularization import Penalty, clip_grad_norm


@pytest.mark.parametrize(
    "name, std",
    [("he_uniform", np.sqrt(2 / 400)), ("xavier_normal", np.sqrt(2 / 700)), ("lecun", np.sqrt(1 / 400))],
)
def test_initializer_spread(name, std):
    w = init_weight(name, 400, 300, np.random.default_rng(0), 0.01, np.float64)
    assert w.std() == pytest.approx(std, rel=0.02)
    assert abs(w.mean()) < 0.01 * std * 10


@pytest.mark.parametrize("shape", [(6, 4), (4, 6), (5, 5)])
def test_orthogonal_initializer(shape):
    w = init_weight("orthogonal", *shape, np.random.default_rng(1), 0.01, np.float64)
    small = min(shape)
    gram = w.T @ w if shape[0] >= shape[1] else w @ w.T
    np.testing.assert_allclose(gram, np.eye(small), atol=1e-12)


def params(*arrays, decay=(True, False)):
    return [Param(f"p{i}", a.copy(), np.zeros_like(a), d) for i, (a, d) in enumerate(zip(arrays, decay))]


def test_penalty_value_and_gradient_on_weights_only():
    W, b = np.array([[1.0, -2.0], [0.5, 0.0]]), np.array([3.0, -3.0])
    ps = params(W, b)
    penalty = Penalty(l1=0.1, l2=0.01)
    # 0.1 * (1 + 2 + 0.5 + 0) + 0.01 * (1 + 4 + 0.25 + 0) = 0.35 + 0.0525; the bias is not penalized
    assert penalty.value(ps) == pytest.approx(0.4025)
    penalty.add_gradients(ps)
    np.testing.assert_allclose(ps[0].grad, 0.1 * np.sign(W) + 0.02 * W)
    np.testing.assert_array_equal(ps[1].grad, 0)


def test_penalty_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    ps = params(rng.normal(size=(3, 4)), rng.normal(size=4))
    penalty = Penalty(l1=0.3, l2=0.7)
    penalty.add_gradients(ps)
    w, eps = ps[0].value, 1e-6
    for index in np.ndindex(w.shape):
        old = w[index]
        w[index] = old + eps
        up = penalty.value(ps)
        w[index] = old - eps
        down = penalty.value(ps)
        w[index] = old
        assert ps[0].grad[index] == pytest.approx((up - down) / (2 * eps), rel=1e-6)


def test_clip_grad_norm_as_torch():
    ps = params(np.zeros((2, 2)), np.zeros(2))
    ps[0].grad[...] = [[3.0, 0.0], [0.0, 0.0]]
    ps[1].grad[...] = [4.0, 0.0]
    assert clip_grad_norm(ps, 1.0) == pytest.approx(5.0)
    # coefficient 1 / (5 + 1e-6)
    np.testing.assert_allclose(ps[0].grad[0, 0], 3.0 / (5.0 + 1e-6))
    np.testing.assert_allclose(ps[1].grad[0], 4.0 / (5.0 + 1e-6))
    assert clip_grad_norm(ps, 10.0) == pytest.approx(1.0, rel=1e-5)  # below the limit: unchanged
    np.testing.assert_allclose(ps[1].grad[0], 4.0 / (5.0 + 1e-6))


def fit_json(cli, config, run, *args):
    result = cli("fit", config, "--run-dir", run, "--json", *args)
    assert result.exit_code in (0, 130), result.stderr
    return json.loads(result.stdout)


def test_regularization_shows_in_the_reported_loss(cli, write_config, tmp_path):
    plain = fit_json(cli, write_config("a.yaml"), tmp_path / "a")
    penalized = fit_json(cli, write_config("b.yaml", regularization={"l2": 0.01}), tmp_path / "b")
    with np.load(tmp_path / "b/checkpoints/last.npz") as ckpt:
        weights = sum(float((ckpt[k].astype(np.float64) ** 2).sum()) for k in ckpt.files if k.endswith(".weight") and k.startswith("layers"))
    assert penalized["final"]["val"]["loss"] > plain["final"]["val"]["loss"] - 1  # sanity: both trained
    data_loss = penalized["final"]["val"]["loss"] - 0.01 * weights
    assert data_loss > 0 and penalized["final"]["val"]["loss"] == pytest.approx(data_loss + 0.01 * weights)


def test_early_stopping_stops_restores_best_and_survives_resume(cli, write_config, tmp_path):
    stopping = {"patience": 2, "min_delta": 0.5}  # a large min_delta: improvement stops being enough at once
    config = write_config(train={"epochs": 30, "early_stopping": stopping})
    summary = fit_json(cli, config, tmp_path / "r")
    assert summary["status"] == "completed" and summary["stopped_early"]
    assert summary["epochs_completed"] == summary["best_epoch"] + 2 < 30
    assert "early stopping: val_loss did not improve by more than 0.5 for 2 epochs" in summary["message"]
    assert summary["final_parameters"] == f"best.npz (epoch {summary['best_epoch']})"
    assert summary["final"]["val"]["loss"] == pytest.approx(summary["best_value"], rel=1e-6)
    again = fit_json(cli, config, tmp_path / "r2")  # deterministic, so the same epoch again
    assert again["epochs_completed"] == summary["epochs_completed"]
    resumed = cli("fit", "--resume", tmp_path / "r", "--set", "train.epochs=40", "--json")
    assert resumed.exit_code == 0 and json.loads(resumed.stdout)["epochs_completed"] == summary["epochs_completed"]


def test_early_stopping_monitor_must_agree_with_train_monitor(cli, write_config):
    bad = write_config(train={"monitor": "val_loss", "early_stopping": {"monitor": "val_accuracy"}})
    result = cli("validate", bad)
    assert result.exit_code == 2 and "train.early_stopping.monitor" in result.stderr
    good = write_config("g.yaml", train={"early_stopping": {"monitor": "val_accuracy"}})
    result = cli("validate", good)
    assert result.exit_code == 0 and "monitor: val_accuracy" in result.stdout


def test_clipping_keeps_a_too_large_learning_rate_from_diverging(cli, write_config, tmp_path):
    raw = dict(optimizer={"lr": 50.0, "momentum": 0.0}, train={"epochs": 3})
    wild = cli("fit", write_config("w.yaml", **raw), "--run-dir", tmp_path / "w", "--json")
    clipped = fit_json(cli, write_config("c.yaml", optimizer=raw["optimizer"], train={"epochs": 3, "clip_grad_norm": 0.01}), tmp_path / "c")
    assert json.loads(wild.stdout)["status"] == "diverged" or json.loads(wild.stdout)["final"]["train"]["loss"] > 1
    assert clipped["status"] == "completed" and np.isfinite(clipped["final"]["train"]["loss"])


def test_folds_partition_the_non_test_rows(tmp_path):
    from nntrain import config as cfg
    from nntrain.train.experiment import prepare

    from conftest import small_config

    vals, tests = [], []
    for k in range(4):
        exp = prepare(cfg.load_config(None, ["data.split.folds=4", f"data.split.fold={k}"], raw=small_config()))
        vals.append(exp.splits["val"])
        tests.append(exp.splits["test"])
        assert not set(exp.splits["val"]) & set(exp.splits["train"])
        assert np.bincount(exp.dataset.y[exp.splits["val"]]).min() >= 15  # stratified: every class in every fold
    assert all(np.array_equal(t, tests[0]) for t in tests)  # the test split never moves
    union = np.sort(np.concatenate(vals))
    np.testing.assert_array_equal(union, np.setdiff1d(np.arange(300), tests[0]))  # folds partition the rest


def test_a_cross_validation_run_reloads(cli, write_config, tmp_path):
    fit_json(cli, write_config(data={"split": {"folds": 3, "fold": 1}}, train={"epochs": 1}), tmp_path / "f")
    result = cli("eval", tmp_path / "f", "--split", "val", "--json")
    assert result.exit_code == 0, result.stderr


def test_fold_config_rules():
    from nntrain import config as cfg

    from conftest import small_config

    from nntrain.errors import NntrainError

    with pytest.raises(NntrainError, match="data.split.fold"):
        cfg.load_config(None, ["data.split.folds=3", "data.split.fold=3"], raw=small_config())
    with pytest.raises(NntrainError, match="data.split.val"):
        cfg.load_config(None, ["data.split.folds=3", "data.split.val=0.2"], raw=small_config())


def test_dropout_and_batch_norm_runs_resume_exactly(cli, write_config, tmp_path):
    """Dropout masks come from the run's training stream and batch_norm statistics are checkpointed."""
    layers = [{"linear": 16}, {"batch_norm": {}}, "relu", {"dropout": 0.3}, {"linear": 3}]
    config = write_config(model={"layers": layers}, train={"epochs": 4, "batch_size": 30})
    straight = fit_json(cli, config, tmp_path / "a", "--set", "train.epochs=4")
    first = cli("fit", config, "--run-dir", tmp_path / "b", "--set", "train.epochs=2", "-q")
    assert first.exit_code == 0, first.stderr
    resumed = cli("fit", "--resume", tmp_path / "b", "--set", "train.epochs=4", "--json")
    assert resumed.exit_code == 0, resumed.stderr
    assert json.loads(resumed.stdout)["final"] == straight["final"]
    with np.load(tmp_path / "a/checkpoints/last.npz") as a, np.load(tmp_path / "b/checkpoints/last.npz") as b:
        assert "layers.1.running_var" in a.files
        for key in a.files:
            if key.startswith(("layers.", "optim.")):
                np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_a_one_row_last_batch_with_batch_norm_is_refused(cli, write_config):
    # 300 rows - 15% - 15% = 210 training rows; batches of 19 leave 1 row at the end
    config = write_config(model={"layers": [{"linear": 8}, "batch_norm", {"linear": 3}]}, train={"batch_size": 19})
    result = cli("validate", config)
    assert result.exit_code == 2 and "train.batch_size" in result.stderr


def test_balanced_class_weights_are_saved_and_reused_by_eval(cli, tmp_path):
    import yaml

    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 2))
    y = np.where(X[:, 0] + 0.5 * rng.normal(size=400) > 1.2, "rare", "common")  # about 12% rare
    lines = ["a,b,label"] + [f"{p:.4f},{q:.4f},{c}" for (p, q), c in zip(X, y)]
    (tmp_path / "imb.csv").write_text("\n".join(lines) + "\n")
    config = tmp_path / "imb.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data": {"dataset": "imb.csv"},
                "model": {"layers": [{"linear": 2}]},
                "loss": {"name": "cross_entropy", "class_weights": "balanced"},
                "optimizer": {"name": "adam", "lr": 0.05},
                "train": {"epochs": 10, "metrics": ["accuracy", "balanced_accuracy", "f1"]},
            }
        )
    )
    summary = fit_json(cli, config, tmp_path / "r")
    with np.load(tmp_path / "r/checkpoints/last.npz") as ckpt:
        weights = ckpt["loss.weights"]
    assert weights[1] > 3 * weights[0]  # classes sorted: common, rare
    evaluated = cli("eval", tmp_path / "r", "--json")
    assert evaluated.exit_code == 0, evaluated.stderr
    result = json.loads(evaluated.stdout)
    assert set(result) >= {"balanced_accuracy", "f1", "accuracy"}
    assert result["balanced_accuracy"] == pytest.approx(summary["final"]["test"]["balanced_accuracy"])
    # predict rebuilds the model from the checkpoint alone, weights included
    (tmp_path / "q.csv").write_text("a,b\n3,0\n-2,0\n")
    predicted = cli("predict", tmp_path / "r", tmp_path / "q.csv")
    assert predicted.exit_code == 0 and predicted.stdout.splitlines()[1].startswith("rare")


def test_diagnostics_are_written_and_inspected(cli, write_config, tmp_path):
    config = write_config(train={"epochs": 3, "diagnostics": True}, optimizer={"lr": 3.0})
    summary = fit_json(cli, config, tmp_path / "r")
    lines = (tmp_path / "r/diagnostics.csv").read_text().splitlines()
    assert lines[0].startswith("epoch,layer,type,weight_norm,grad_norm,update_ratio,dead_fraction")
    assert len(lines) == 1 + 3 * 3  # three epochs, three layers
    shown = cli("inspect", tmp_path / "r")
    assert shown.exit_code == 0 and "epoch 3" in shown.stdout and "relu" in shown.stdout
    as_json = json.loads(cli("inspect", tmp_path / "r", "--epoch", "1", "--json").stdout)
    assert as_json["epoch"] == 1 and [row["layer"] for row in as_json["layers"]] == [0, 1, 2]
    assert cli("inspect", tmp_path / "r", "--epoch", "9").exit_code == 2
    plain = write_config("p.yaml", train={"epochs": 1})
    fit_json(cli, plain, tmp_path / "p")
    missing = cli("inspect", tmp_path / "p")
    assert missing.exit_code == 2 and "diagnostics" in missing.stderr
    assert summary["status"] in ("completed", "diverged")


def test_schedule_sets_the_logged_rate_and_resumes_exactly(cli, write_config, tmp_path):
    schedule = {"name": "step", "step_size": 2, "gamma": 0.5, "warmup_epochs": 1}
    config = write_config(optimizer={"schedule": schedule}, train={"epochs": 6})
    fit_json(cli, config, tmp_path / "a")
    rates = [float(line.split(",")[-2]) for line in (tmp_path / "a/metrics.csv").read_text().splitlines()[1:]]
    # warm-up: lr/2, then the step schedule counted from the end of the warm-up: lr, lr, lr/2, lr/2, lr/4
    assert rates == pytest.approx([0.05, 0.1, 0.1, 0.05, 0.05, 0.025])
    assert cli("fit", config, "--run-dir", tmp_path / "b", "--set", "train.epochs=3", "-q").exit_code == 0
    resumed = cli("fit", "--resume", tmp_path / "b", "--set", "train.epochs=6", "-q")
    assert resumed.exit_code == 0, resumed.stderr
    a = (tmp_path / "a/metrics.csv").read_text().splitlines()
    b = (tmp_path / "b/metrics.csv").read_text().splitlines()
    assert [line.rsplit(",", 1)[0] for line in a] == [line.rsplit(",", 1)[0] for line in b]


def test_plateau_schedule_lowers_the_rate_when_the_monitor_stalls(cli, write_config, tmp_path):
    schedule = {"name": "plateau", "patience": 0, "factor": 0.5, "threshold": 0.5}
    fit_json(cli, write_config(optimizer={"schedule": schedule}, train={"epochs": 4}), tmp_path / "p")
    rates = [float(line.split(",")[-2]) for line in (tmp_path / "p/metrics.csv").read_text().splitlines()[1:]]
    assert rates[0] == 0.1 and rates[-1] < rates[0]


def test_lbfgs_trains_full_batch(cli, write_config, tmp_path):
    refused = cli("validate", write_config("x.yaml", optimizer="lbfgs"))
    assert refused.exit_code == 2 and "train.batch_size" in refused.stderr
    config = write_config(
        "l.yaml",
        data={"dataset": "moons", "options": {"samples": 300, "noise": 0.1}},
        model={"layers": [{"linear": 16}, "tanh", {"linear": 2}]},
        optimizer="lbfgs",
        train={"epochs": 5, "batch_size": "full"},
    )
    summary = fit_json(cli, config, tmp_path / "l")
    assert summary["status"] == "completed" and summary["final"]["val"]["accuracy"] > 0.95
    assert cli("fit", config, "--run-dir", tmp_path / "m", "--set", "train.epochs=2", "-q").exit_code == 0
    resumed = cli("fit", "--resume", tmp_path / "m", "--set", "train.epochs=5", "--json")
    assert json.loads(resumed.stdout)["final"] == summary["final"]


def test_sweep_from_the_cli(cli, write_config, tmp_path):
    config = write_config(train={"epochs": 2})
    args = ["sweep", config, "--grid", "optimizer.lr=0.3,0.03", "--folds", "2", "--runs-root", tmp_path, "--json"]
    result = cli(*args)
    assert result.exit_code == 0, result.stderr
    sweep = json.loads(result.stdout)
    assert sweep["counts"]["completed"] == 2 and len(sweep["trials"][0]["runs"]) == 2
    assert [t["rank"] for t in sweep["leaderboard"]] == [1, 2]
    assert (tmp_path / sweep["sweep_dir"] / "sweep.csv").exists()  # an absolute sweep_dir replaces tmp_path
    bad = cli("sweep", config, "--grid", "optimizer.lrr=0.1", "--runs-root", tmp_path / "bad")
    assert bad.exit_code == 2 and "did you mean 'lr'" in bad.stderr and not (tmp_path / "bad").exists()


@pytest.mark.parametrize(
    "override, key",
    [
        ('model.layers=[{linear: 8}, {dropout: -0.1}, {linear: 3}]', "model.layers.1.p"),
        ("train.early_stopping={patience: 0}", "train.early_stopping.patience"),
        ("optimizer.schedule={name: cosin}", "optimizer.schedule"),
        ("optimizer.schedule={name: step}", "optimizer.schedule.step_size"),
        ("regularization.l2=-1", "regularization.l2"),
        ("train.clip_grad_norm=0", "train.clip_grad_norm"),
        ("loss={name: cross_entropy, class_weights: heavy}", "loss.class_weights"),
    ],
)
def test_bad_toolbox_values_exit_2_naming_the_key(cli, write_config, override, key):
    result = cli("validate", write_config(), "--set", override)
    assert result.exit_code == 2 and key in result.stderr, result.stderr
    assert "Traceback" not in result.output


def test_a_config_with_a_sweep_section_fits_and_sweeps(cli, tmp_path):
    config = tmp_path / "s.yaml"
    config.write_text(
        "data: {dataset: spirals, options: {samples: 200}}\n"
        "model: {layers: [{linear: 8}, relu, {linear: 3}]}\n"
        "train: {epochs: 1}\n"
        "sweep: {grid: {optimizer.lr: [0.01, 0.1]}}\n"
    )
    assert cli("fit", config, "--runs-root", tmp_path / "fit", "-q").exit_code == 0  # fit ignores the section
    result = cli("sweep", config, "--runs-root", tmp_path / "sweep", "--json")
    assert result.exit_code == 0, result.stderr
    assert sorted(t["values"]["optimizer.lr"] for t in json.loads(result.stdout)["trials"]) == [0.01, 0.1]
