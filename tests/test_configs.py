"""Every example config in configs/ trains end to end to a sensible level, and its gradients check."""

from __future__ import annotations

from pathlib import Path

import pytest

from nntrain.api import fit, gradcheck

CONFIGS = Path(__file__).resolve().parent.parent / "configs"

# config -> (split, metric, lowest acceptable value) on the final model.
LEVELS = {
    "quickstart": ("val", "accuracy", 0.95),
    "spirals": ("val", "accuracy", 0.95),
    "sigmoid_mse": ("val", "accuracy", 0.95),
    "svm_hinge": ("val", "accuracy", 0.97),
    "relu_adam": ("val", "accuracy", 0.97),
    "sine_regression": ("val", "r2", 0.9),
    "fullbatch": ("val", "accuracy", 0.9),
    "iris": ("test", "accuracy", 0.95),
    "wine": ("test", "accuracy", 0.95),
    "breast_cancer": ("test", "accuracy", 0.95),
    "digits": ("test", "accuracy", 0.97),
    "diabetes": ("test", "r2", 0.45),
    "image_folder": ("test", "accuracy", 0.9),
}


def test_every_config_has_a_level():
    assert sorted(p.stem for p in CONFIGS.glob("*.yaml")) == sorted(LEVELS)


@pytest.mark.parametrize("name", sorted(LEVELS))
def test_config_trains_to_level(name, tmp_path):
    split, metric, level = LEVELS[name]
    summary = fit(CONFIGS / f"{name}.yaml", runs_root=tmp_path)
    assert summary["status"] == "completed"
    assert summary["final"][split][metric] >= level, summary["final"]


@pytest.mark.parametrize("name", sorted(LEVELS))
def test_config_gradients_check(name):
    checks, _ = gradcheck(CONFIGS / f"{name}.yaml")
    assert all(c.passed for c in checks), [(c.name, c.max_rel_error) for c in checks]
