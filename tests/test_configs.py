"""Every example config in configs/ trains end to end to a sensible level, and its gradients check.

The configs on downloadable datasets (mnist, fashion_mnist) train here on a stand-in of the
same shape: the bundled digits drawn as 28x28 images (see `stand_ins`); their accuracy on the
real files is what their comments document.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from nntrain.api import fit, gradcheck

from conftest import install_mnist_stand_ins

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
    "lenet_digits": ("test", "accuracy", 0.98),
    "lenet_mnist": ("test", "accuracy", 0.9),
    "cnn_fashion": ("test", "accuracy", 0.9),
    "adding_lstm": ("test", "r2", 0.95),
    "sine_forecast": ("test", "r2", 0.95),
    "char_lm": ("val", "accuracy", 0.4),  # after 4 epochs (OVERRIDES); 0.53 after its 15
    "text_reviews": ("test", "accuracy", 0.95),
}
# config -> (split, metric, highest acceptable value): a config that shows what does not learn.
FAILS = {"adding_rnn": ("test", "r2", 0.2)}  # a vanilla RNN on the adding problem at length 50
# The stand-ins have 1500 training images instead of 60,000: fewer epochs, and for LeNet smaller batches.
OVERRIDES = {"lenet_mnist": ["train.epochs=6", "train.batch_size=32"], "cnn_fashion": ["train.epochs=3"],
             "char_lm": ["train.epochs=4"]}  # fmt: skip


@pytest.fixture(autouse=True)
def stand_ins(tmp_path, monkeypatch):
    """mnist and fashion_mnist in a cache of their own: the 1797 bundled digits as (28, 28) uint8 images
    (each pixel 3x3, a 2-pixel border, a little noise), shuffled, 1500 for training and 297 for testing."""
    install_mnist_stand_ins(tmp_path, monkeypatch)


def test_every_config_has_a_level():
    assert sorted(p.stem for p in CONFIGS.glob("*.yaml")) == sorted([*LEVELS, *FAILS])


@pytest.mark.parametrize("name", sorted(LEVELS))
def test_config_trains_to_level(name, tmp_path):
    split, metric, level = LEVELS[name]
    summary = fit(CONFIGS / f"{name}.yaml", overrides=OVERRIDES.get(name, []), runs_root=tmp_path / "runs")
    assert summary["status"] == "completed"
    assert summary["final"][split][metric] >= level, summary["final"]


@pytest.mark.parametrize("name", sorted(FAILS))
def test_config_stays_at_its_baseline(name, tmp_path):
    split, metric, level = FAILS[name]
    summary = fit(CONFIGS / f"{name}.yaml", runs_root=tmp_path / "runs")
    assert summary["status"] == "completed"
    assert summary["final"][split][metric] < level, summary["final"]


@pytest.mark.parametrize("name", sorted([*LEVELS, *FAILS]))
def test_config_gradients_check(name):
    # The 1.2-million-parameter cnn_fashion: 20 entries per tensor (each costs four forward passes);
    # char_lm's LSTM runs 100 steps of 256 units per forward pass: 10 entries of 2 samples.
    entries, samples = {"cnn_fashion": (20, 8), "char_lm": (10, 2)}.get(name, (100, 8))
    checks, _ = gradcheck(CONFIGS / f"{name}.yaml", entries=entries, samples=samples)
    assert all(c.passed for c in checks), [(c.name, c.max_rel_error) for c in checks]


@pytest.mark.parametrize("name, total", [("lenet_digits", "13,802"), ("adding_lstm", "4,641")])
def test_docs_layer_table_is_what_validate_prints(name, total):
    """docs/classic.md shows `nntrain validate configs/NAME.yaml`'s layer table verbatim."""
    import subprocess
    import sys

    root = CONFIGS.parent
    done = subprocess.run(
        [sys.executable, "-m", "nntrain.cli", "validate", f"configs/{name}.yaml"], capture_output=True, text=True, cwd=root
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith("model:\n") and f"  {total} parameters\n" in done.stderr
    docs = (root / "docs" / "classic.md").read_text()
    shown = docs.split(f"$ nntrain validate configs/{name}.yaml > /dev/null\n", 1)[1].split("```", 1)[0]
    assert shown == done.stderr
