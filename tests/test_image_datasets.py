"""Downloadable image datasets end to end: download from a mirror, train with the official split."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import yaml

from nntrain.data import download
from nntrain.data.idx import write_idx


@pytest.fixture
def tiny_mnist(tmp_path, monkeypatch):
    """A 'mnist' of 60 training and 20 test 6x6 images served from a file:// mirror."""
    rng = np.random.default_rng(0)
    served = tmp_path / "mirror"
    served.mkdir()
    spec = download.DOWNLOADABLE["mnist"]
    arrays = {}
    for split, n in (("train", 60), ("test", 20)):
        labels = (np.arange(n) % 3).astype(np.uint8)
        images = (rng.integers(0, 40, size=(n, 6, 6)) + 200 * (labels[:, None, None] == np.arange(6)[None, :, None] // 2)).astype(np.uint8)
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, labels
    files = {}
    for role, (filename, _) in spec.files.items():
        write_idx(served / filename, arrays[role])
        files[role] = (filename, download.sha256_file(served / filename))
    fake = dataclasses.replace(spec, files=files, mirrors=[served.as_uri() + "/"])
    monkeypatch.setitem(download.DOWNLOADABLE, "mnist", fake)
    monkeypatch.setenv("NNTRAIN_DATA", str(tmp_path / "cache"))
    return arrays


def test_download_then_train_on_the_official_split(cli, tiny_mnist, tmp_path):
    assert "not downloaded" in cli("datasets").stdout
    fetched = cli("datasets", "download", "mnist")
    assert fetched.exit_code == 0, fetched.stderr
    assert "mnist" in cli("datasets").stdout and "downloaded" in cli("datasets", "--json").stdout
    config = tmp_path / "mnist.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data": {"dataset": "mnist", "split": {"val": 0.25}, "scale": "none"},
                "model": {"layers": [{"linear": 16}, "relu", {"linear": 10}]},
                "optimizer": {"name": "adam", "lr": 0.01},
                "train": {"epochs": 15, "batch_size": 8},
            }
        )
    )
    result = cli("fit", config, "--run-dir", tmp_path / "run", "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    with np.load(tmp_path / "run/splits.npz") as splits:
        np.testing.assert_array_equal(splits["test"], np.arange(60, 80))  # the official test set, untouched
        assert len(splits["val"]) == 15 and len(splits["train"]) == 45
    with np.load(tmp_path / "run/checkpoints/last.npz") as ckpt:
        assert ckpt["data.sample_shape"].tolist() == [1, 6, 6] and "data.image_shape" not in ckpt
        assert ckpt["layers.0.weight"].shape == (36, 16)  # an MLP takes the images as rows of 36 pixels
    assert summary["final"]["test"]["accuracy"] == 1.0  # the digit is written in bright rows
    shown = cli("datasets", "show", "mnist", "--json")
    info = json.loads(shown.stdout)
    assert info["rows"] == 80 and info["parts"] == {"train": 60, "test": 20} and info["sample_shape"] == [1, 6, 6]
    assert info["feature_ranges"]["x0"][1] <= 1.0  # pixels scaled to [0, 1]


def test_split_test_is_refused_for_an_official_test_set(cli, tiny_mnist, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"data": {"dataset": "mnist", "split": {"test": 0.2}}, "model": {"layers": ["linear: 10"]}}))
    result = cli("validate", config)
    assert result.exit_code == 2 and "data.split.test" in result.stderr


def test_training_before_download_says_how_to_download(cli, tiny_mnist, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"data": {"dataset": "mnist"}, "model": {"layers": [{"linear": 10}]}}))
    result = cli("fit", config, "--runs-root", tmp_path)
    assert result.exit_code == 2 and "nntrain datasets download mnist" in result.stderr


def test_a_damaged_or_truncated_download_is_exit_2(cli, tiny_mnist, tmp_path):
    assert cli("datasets", "download", "mnist").exit_code == 0
    images = tmp_path / "cache" / "mnist" / download.DOWNLOADABLE["mnist"].files["train_images"][0]
    images.write_bytes(images.read_bytes()[:-10])  # truncated after the download
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"data": {"dataset": "mnist"}, "model": {"layers": [{"linear": 10}]}}))
    result = cli("fit", config, "--runs-root", tmp_path / "runs")
    assert result.exit_code == 2 and "damaged" in result.stderr and "nntrain datasets download mnist" in result.stderr
    assert not (tmp_path / "runs").exists()
    assert "damaged" in cli("datasets").stdout
