"""configs/classic/: each config trains end to end to the level its header comment states.

Besides the per-config levels: the softmax classifier starts at loss ln 3, class weights raise
balanced accuracy on imbalanced data, Huber beats MSE on data with outliers, the cosine
schedule's learning rate ramps up and decays in metrics.csv, L-BFGS never raises the loss,
and the top-level `regularization` penalties do what they say (L1 zeros weights, L2 shrinks
them). The figures are in docs/classic.md.
"""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from nntrain import config as cfg
from nntrain.api import fit, gradcheck, load_run
from nntrain.train.experiment import prepare

ROOT = Path(__file__).resolve().parent.parent
CLASSIC = ROOT / "configs" / "classic"

# config -> [(split, metric, lowest, highest)] on the final model of a seed-0 run.
LEVELS = {
    "sigmoid_mse_digits": [("test", "accuracy", 0.95, 1)],
    "softmax_spirals": [("train", "accuracy", 0.40, 0.65)],  # a linear model cannot do better
    "relu_spirals": [("train", "accuracy", 0.97, 1)],
    "svm_linear": [("test", "accuracy", 0.97, 1)],
    "svm_multiclass_blobs": [("test", "accuracy", 0.95, 1)],
    "mlp_digits_regularized": [("test", "accuracy", 0.97, 1)],
    "sine_momentum": [("test", "r2", 0.9, 1)],
    "huber_outliers": [("test", "r2", 0.98, 1), ("test", "mae", 0, 0.5)],
    "lbfgs_fullbatch": [("test", "accuracy", 0.95, 1)],
    "cosine_warmup": [("test", "accuracy", 0.97, 1)],
    "imbalanced_plain": [("test", "accuracy", 0.94, 1), ("test", "balanced_accuracy", 0, 0.70)],
    "imbalanced_balanced": [("test", "balanced_accuracy", 0.80, 1)],
}


@pytest.fixture(scope="module")
def train(tmp_path_factory):
    """train(name, *overrides) -> summary; each distinct run trains once per module."""
    root = tmp_path_factory.mktemp("classic-runs")
    done = {}

    def run(name: str, *overrides: str) -> dict:
        key = (name, overrides)
        if key not in done:
            done[key] = fit(CLASSIC / f"{name}.yaml", overrides=list(overrides), runs_root=root)
            assert done[key]["status"] == "completed", done[key]
        return done[key]

    return run


def metrics_csv(summary: dict) -> list[dict]:
    with open(Path(summary["run_dir"]) / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_every_classic_config_has_a_level():
    assert sorted(p.stem for p in CLASSIC.glob("*.yaml")) == sorted(LEVELS)


@pytest.mark.parametrize("name", sorted(LEVELS))
def test_classic_config_reaches_its_level(name, train):
    final = train(name)["final"]
    for split, metric, low, high in LEVELS[name]:
        assert low <= final[split][metric] <= high, (split, metric, final)


@pytest.mark.parametrize("name", sorted(LEVELS))
def test_classic_config_gradients_check(name):
    checks, _ = gradcheck(CLASSIC / f"{name}.yaml")
    assert all(c.passed for c in checks), [(c.name, c.max_rel_error) for c in checks]


# --- softmax and ReLU on spirals ----------------------------------------------------------


def test_softmax_spirals_starts_at_ln3(tmp_path):
    """Small weights give every class probability ~1/3: the loss before training is ln 3."""
    exp = prepare(cfg.load_config(CLASSIC / "softmax_spirals.yaml"), CLASSIC)
    X, _, t = exp.arrays("train")
    loss = exp.network.loss.forward(exp.network.forward(X, training=False), t)
    assert abs(loss - math.log(3)) < 0.05, loss  # measured 1.110 (seed 0)
    # The first epoch's train loss is that of the initial weights (one full-batch step comes after it),
    # plus the L2 penalty, which is tiny for weights of std 0.01.
    first = metrics_csv(fit(CLASSIC / "softmax_spirals.yaml", overrides=["train.epochs=1"], runs_root=tmp_path))[0]
    assert float(first["train_loss"]) == pytest.approx(loss, abs=1e-3)


def test_hidden_layer_beats_the_linear_softmax_on_the_same_spirals(train):
    linear = train("softmax_spirals")["final"]["train"]["accuracy"]
    relu = train("relu_spirals")["final"]["train"]["accuracy"]
    assert relu - linear > 0.3, (linear, relu)


# --- SVMs ----------------------------------------------------------------------------------


def test_linear_svm_finds_the_true_boundary(train):
    """The data's labels are sign(x0 - 0.5 x1); the SVM's weights, in raw units, point along (1, -0.5)."""
    exp = load_run(Path(train("svm_linear")["run_dir"]), "last", with_data=False)
    w = exp.network.params[0].value.ravel().astype(np.float64) / exp.scaler.factor
    truth = np.array([1.0, -0.5])
    assert w @ truth / (np.linalg.norm(w) * np.linalg.norm(truth)) > 0.95, w


# --- MLP with dropout, batch norm, early stopping -----------------------------------------


@pytest.mark.parametrize("seed", [1, 2])  # seed 0 is in test_classic_config_reaches_its_level
def test_mlp_digits_regularized_is_robust_over_seeds(seed, train):
    summary = train("mlp_digits_regularized", f"seed={seed}")
    assert summary["final"]["test"]["accuracy"] >= 0.97, summary["final"]


def test_mlp_digits_regularized_stops_early_and_restores_the_best_epoch(train):
    summary = train("mlp_digits_regularized")
    assert summary["stopped_early"] and summary["epochs_completed"] < summary["epochs_planned"], summary
    assert summary["final_parameters"] == f"best.npz (epoch {summary['best_epoch']})"
    assert summary["final"]["val"]["loss"] == pytest.approx(summary["best_value"], rel=1e-6)


# --- regression: Huber against MSE on outliers ---------------------------------------------


def test_huber_beats_mse_on_data_with_outliers(train):
    """Same data, model, optimizer and seed; only the loss differs. Test rows are clean."""
    huber = train("huber_outliers")["final"]["test"]
    mse = train("huber_outliers", "loss=mse")["final"]["test"]
    assert mse["mae"] > 2.0 and mse["r2"] < 0.6, mse  # the outliers drag the least-squares line up
    assert huber["mae"] <= mse["mae"] / 5, (huber, mse)  # documented: 0.32 against 2.97
    assert huber["r2"] >= mse["r2"] + 0.4, (huber, mse)  # documented: 0.990 against 0.401


# --- L-BFGS and the cosine schedule ---------------------------------------------------------


def test_lbfgs_training_loss_never_rises(train):
    losses = [float(row["train_loss"]) for row in metrics_csv(train("lbfgs_fullbatch"))]
    assert len(losses) == 10
    assert all(b <= a * (1 + 1e-5) for a, b in pairwise(losses)), losses  # metrics.csv keeps 6 digits
    assert losses[-1] < losses[0] / 4, losses


def test_cosine_warmup_lr_column_ramps_then_decays(cli, tmp_path):
    """Through the CLI: the lr column of metrics.csv follows warm-up then cosine annealing."""
    result = cli("fit", CLASSIC / "cosine_warmup.yaml", "--runs-root", tmp_path, "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    lr = [float(row["lr"]) for row in metrics_csv(summary)]
    base, eta_min, warmup, t_max = 0.2, 0.001, 5, 25
    assert len(lr) == 30
    assert all(a < b for a, b in pairwise(lr[: warmup + 1])), lr  # epochs 1..6 rise
    assert lr[warmup] == pytest.approx(base)  # epoch 6 runs at the full rate
    assert all(a > b for a, b in pairwise(lr[warmup:])), lr  # then it only falls
    for epoch, value in enumerate(lr, 1):
        if epoch <= warmup:
            expected = base * epoch / (warmup + 1)
        else:
            expected = eta_min + (base - eta_min) * (1 + math.cos(math.pi * (epoch - 1 - warmup) / t_max)) / 2
        assert value == pytest.approx(expected, rel=1e-5), (epoch, value, expected)
    assert lr[-1] < 0.01 * base
    assert summary["final"]["test"]["accuracy"] >= 0.97


# --- class weights on imbalanced data -------------------------------------------------------


def test_balanced_class_weights_improve_balanced_accuracy(train):
    plain = train("imbalanced_plain")["final"]["test"]
    balanced = train("imbalanced_balanced")["final"]["test"]
    assert balanced["balanced_accuracy"] >= plain["balanced_accuracy"] + 0.15, (plain, balanced)  # 0.61 -> 0.85
    assert plain["accuracy"] > balanced["accuracy"], (plain, balanced)  # the price: more common rows called rare


def test_balanced_class_weights_are_n_over_k_counts():
    exp = prepare(cfg.load_config(CLASSIC / "imbalanced_balanced.yaml"), CLASSIC)
    counts = np.bincount(exp.dataset.y[exp.splits["train"]])
    assert counts.tolist() == [1520, 80]  # 1900 / 100 less the stratified 20 % for validation
    np.testing.assert_allclose(exp.network.loss.weights, counts.sum() / (2 * counts))


# --- regularization ------------------------------------------------------------------------

def regularization_config(l1: float = 0.0, l2: float = 0.0) -> cfg.Config:
    """A spirals net with small init and plain SGD; runs differ only in the penalty."""
    return cfg.validate(
        {
            "name": f"reg-l1-{l1:g}-l2-{l2:g}",
            "seed": 0,
            "data": {"dataset": "spirals", "options": {"samples": 600, "classes": 3, "noise": 0.2}},
            "model": {"init": "normal", "init_scale": 0.1, "layers": [{"linear": 32}, "relu", {"linear": 3}]},
            "loss": "cross_entropy",
            "optimizer": {"name": "sgd", "lr": 0.1},
            "regularization": {"l1": l1, "l2": l2},
            "train": {"epochs": 40, "batch_size": 32, "checkpoint_every": 0},
        }
    )


@pytest.fixture(scope="module")
def regularized(tmp_path_factory):
    """Summaries of the same run without a penalty, with l1 = 0.01 and with l2 = 0.01."""
    root = tmp_path_factory.mktemp("regularization-runs")
    runs = {"none": {}, "l1": {"l1": 0.01}, "l2": {"l2": 0.01}}
    return {key: fit(regularization_config(**penalty), runs_root=root) for key, penalty in runs.items()}


def weights(summary: dict) -> np.ndarray:
    """All weight-matrix entries of the run's final network (biases excluded, as the penalty excludes them)."""
    exp = load_run(Path(summary["run_dir"]), "last", with_data=False)
    return np.concatenate([p.value.ravel().astype(np.float64) for p in exp.network.params if p.decay])


def test_l1_drives_many_weights_to_zero(regularized):
    plain, sparse = weights(regularized["none"]), weights(regularized["l1"])
    assert plain.size == sparse.size == 2 * 32 + 32 * 3
    assert np.mean(np.abs(plain) < 1e-3) < 0.05, np.mean(np.abs(plain) < 1e-3)  # measured 0.0
    assert np.mean(np.abs(sparse) < 1e-3) > 0.4, np.mean(np.abs(sparse) < 1e-3)  # measured 0.61
    assert np.abs(sparse).max() > 0.3  # sparse, not uniformly small: the weights that matter stay


def test_l2_shrinks_the_weight_norm_without_zeroing(regularized):
    plain, shrunk = weights(regularized["none"]), weights(regularized["l2"])
    ratio = np.linalg.norm(shrunk) / np.linalg.norm(plain)
    assert ratio < 0.8, ratio  # measured 0.66
    assert np.mean(np.abs(shrunk) < 1e-3) < 0.05  # L2's pull vanishes near 0, so it does not make zeros


def test_penalty_is_part_of_the_reported_loss(regularized):
    """With l2, the reported train loss is the data loss plus l2 * sum W^2 of the final weights."""
    summary = regularized["l2"]
    exp = load_run(Path(summary["run_dir"]), "last")
    X, _, t = exp.arrays("train")
    data_loss = exp.network.loss.forward(exp.network.forward(X), t)
    w = weights(summary)
    assert summary["final"]["train"]["loss"] == pytest.approx(data_loss + 0.01 * float(w @ w), rel=1e-4)
    assert 0.01 * float(w @ w) > 0.05 * data_loss  # large enough that leaving it out would fail


# --- the generated data files ---------------------------------------------------------------


def test_classic_data_files_are_what_make_py_writes():
    """datasets/classic/make.py regenerates the CSV files byte for byte, and they stay small."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "datasets" / "classic" / "make.py"), "--check"],
        check=False,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    for path in (ROOT / "datasets" / "classic").glob("*.csv"):
        assert path.stat().st_size < 100_000, path
