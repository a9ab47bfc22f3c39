"""nntrain.train.generate: text written by a language-model run, and the language model's sanity checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import yaml

from nntrain import api
from nntrain.errors import NntrainError

TEXT = "the cat sat on the mat. the dog sat on the log.\n" * 60


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A small character LSTM trained for a few epochs on a repetitive text."""
    root = tmp_path_factory.mktemp("lm")
    (root / "text.txt").write_text(TEXT)
    config = root / "lm.yaml"
    config.write_text(yaml.safe_dump({
        "seed": 0, "data": {"dataset": "text.txt", "text": {"tokens": "char", "length": 24}, "split": {"val": 0.1, "test": 0.0}},
        "model": {"layers": [{"embedding": {"dim": 8}}, {"lstm": {"units": 32}}, {"linear": 17}]},
        "loss": "cross_entropy", "optimizer": {"name": "adam", "lr": 0.02}, "train": {"epochs": 12, "batch_size": 16},
    }))  # fmt: skip
    summary = api.fit(config, run_dir=root / "run")
    assert summary["status"] == "completed"
    return root / "run", summary


def test_the_loss_at_initialisation_is_about_ln_of_the_vocabulary(tmp_path):
    (tmp_path / "text.txt").write_text(TEXT)
    config = {"data": {"dataset": str(tmp_path / "text.txt"), "text": {"length": 24}, "split": {"val": 0.1, "test": 0.0}},
              "model": {"layers": [{"embedding": {"dim": 8}}, {"lstm": {"units": 32}}, {"linear": 17}]},
              "loss": "cross_entropy", "optimizer": {"name": "sgd", "lr": 1e-9}, "train": {"epochs": 1}}  # fmt: skip
    from nntrain import config as cfg
    from nntrain.train.experiment import prepare

    exp = prepare(cfg.load_config(None, [], raw=config))
    assert len(exp.dataset.vocabulary) == 17 and exp.config.data.scale.name == "none"
    assert exp.config.model.layers[0].vocabulary == 17  # filled in from the data, recorded in the config
    loss = exp.evaluate_split("train")["loss"]
    assert abs(loss - math.log(17)) < 0.05 * math.log(17), loss


def test_training_learns_the_text_and_sampling_writes_it(run):
    path, summary = run
    assert summary["final"]["val"]["accuracy"] > 0.8  # the text repeats: most next characters are certain
    greedy = api.sample(path, length=48, temperature=0, prime="the cat")
    assert greedy.startswith("the cat") and "sat on the" in greedy
    assert api.sample(path, length=48, temperature=0, prime="the cat", seed=5) == greedy  # greedy: no draws


def test_the_same_seed_writes_the_same_text_and_another_seed_may_not(run):
    path, _ = run
    a = api.sample(path, length=200, temperature=1.5, seed=1)
    assert a == api.sample(path, length=200, temperature=1.5, seed=1)
    assert a != api.sample(path, length=200, temperature=1.5, seed=2)
    assert len(a) == 1 + 200  # the default prime, a line break, then one character per token
    assert "<pad>" not in a and "<unk>" not in a


def test_an_unknown_prime_character_and_a_long_prime_are_taken(run):
    path, _ = run
    assert api.sample(path, length=3, temperature=0, prime="Ü").startswith("Ü")  # read as <unk>, written as given
    long = "the dog sat on the log. " * 5  # longer than the 24-step window: its end is read
    assert api.sample(path, length=10, temperature=0, prime=long).startswith(long)


def test_sample_refuses_bad_options_and_runs_that_are_not_language_models(run, tmp_path):
    path, _ = run
    for kwargs, message in (({"length": -1}, "--length"), ({"temperature": -0.5}, "--temperature"),
                            ({"temperature": float("nan")}, "--temperature")):  # fmt: skip
        with pytest.raises(NntrainError, match=message):
            api.sample(path, **kwargs)
    from conftest import small_config

    config = tmp_path / "small.yaml"
    config.write_text(yaml.safe_dump(small_config(train={"epochs": 1, "batch_size": 32})))
    api.fit(config, run_dir=tmp_path / "mlp")
    with pytest.raises(NntrainError, match="not a language model"):
        api.sample(tmp_path / "mlp")


def test_a_run_samples_without_its_text_file(run, tmp_path):
    """The vocabulary and the tokenizer come from the checkpoint."""
    path, _ = run
    import shutil

    moved = tmp_path / "moved"
    shutil.copytree(path, moved)
    text = path.parent / "text.txt"
    hidden = text.with_suffix(".hidden")
    text.rename(hidden)
    try:
        assert api.sample(moved, length=20, temperature=0, prime="the") == api.sample(path, length=20, temperature=0, prime="the")
    finally:
        hidden.rename(text)
    with np.load(moved / "checkpoints" / "best.npz") as checkpoint:
        assert checkpoint["data.text.vocabulary"][:2].tolist() == ["<pad>", "<unk>"]
        assert str(checkpoint["data.text.tokens"]) == "char"


def test_a_changed_text_is_not_taken_for_the_runs_own(run):
    """Evaluating or resuming reads the text again: a vocabulary that differs from the checkpoint's is refused."""
    path, _ = run
    text = path.parent / "text.txt"
    original = text.read_text()
    try:
        text.write_text(original.replace("cat", "cow"))  # 'w' is new
        with pytest.raises(NntrainError, match="vocabulary differs"):
            api.evaluate_run(path, split="val")
    finally:
        text.write_text(original)
    assert api.evaluate_run(path, split="val")["samples"] > 0
