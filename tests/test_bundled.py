"""The bundled datasets in datasets/: hashes (registry, README, files), shapes, classes, and loading by name."""

from __future__ import annotations

import gzip
import hashlib
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from nntrain.config import validate
from nntrain.data.bundled import BUNDLED, datasets_dir, read_bundled
from nntrain.data.dataset import builtin_names
from nntrain.errors import NntrainError
from nntrain.train.experiment import prepare

README = Path(__file__).resolve().parent.parent / "datasets" / "README.md"

NAMES = ["iris", "wine", "breast_cancer", "digits", "diabetes"]

# name -> {class: rows}; None for regression
CLASS_COUNTS = {
    "iris": {"setosa": 50, "versicolor": 50, "virginica": 50},
    "wine": {"class_0": 59, "class_1": 71, "class_2": 48},
    "breast_cancer": {"malignant": 212, "benign": 357},
    "digits": {float(d): n for d, n in enumerate([178, 182, 177, 183, 181, 182, 181, 179, 174, 180])},
    "diabetes": None,
}


def readme_sections() -> dict[str, str]:
    """The README text under each '### `name`' heading of the bundled datasets section."""
    text = README.read_text(encoding="utf-8")
    parts = re.split(r"^### `([a-z_]+)`\s*$", text, flags=re.MULTILINE)
    return {parts[i]: parts[i + 1].split("\n## ")[0] for i in range(1, len(parts), 2)}


def test_registry_holds_the_five_datasets():
    assert sorted(BUNDLED) == sorted(NAMES)
    for name, info in BUNDLED.items():
        assert info.name == name
        assert info.file == f"{name}.csv.gz"
        assert info.target == "target"
        assert info.task == ("regression" if name == "diabetes" else "classification")
        assert re.fullmatch(r"[0-9a-f]{64}", info.sha256)
        assert info.description and info.source.startswith("https://") and info.license and info.citation
        assert name in builtin_names()


@pytest.mark.parametrize("name", NAMES)
def test_file_hash_matches_registry_and_readme(name):
    info = BUNDLED[name]
    digest = hashlib.sha256((datasets_dir() / info.file).read_bytes()).hexdigest()
    assert digest == info.sha256
    section = readme_sections()[name]
    assert f"`{info.sha256}`" in section
    assert re.search(rf"\|\s*rows\s*\|\s*{info.rows}\s*\|", section)
    assert re.search(rf"\|\s*features\s*\|\s*{info.features}\s*\|", section)


@pytest.mark.parametrize("name", NAMES)
def test_shape_target_and_classes(name):
    info = BUNDLED[name]
    X, y, features = read_bundled(name)
    assert X.shape == (info.rows, info.features) and X.dtype == np.float64
    assert len(features) == info.features == len(set(features))
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", f) for f in features)
    assert np.isfinite(X).all()
    counts = CLASS_COUNTS[name]
    if counts is None:
        assert y.dtype == np.float64 and np.isfinite(y).all()
    else:
        labels, n = np.unique(y, return_counts=True)
        assert dict(zip(labels.tolist(), n.tolist())) == counts


def test_file_layout_header_and_target_last():
    for name, info in BUNDLED.items():
        with gzip.open(datasets_dir() / info.file, "rt", encoding="utf-8") as f:
            header = f.readline().rstrip("\n").split(",")
        assert header[-1] == "target" and len(header) == info.features + 1, name
    _, _, digits = read_bundled("digits")
    assert digits[0] == "pixel_0_0" and digits[9] == "pixel_1_1" and digits[-1] == "pixel_7_7"


def test_known_values():
    X, y, features = read_bundled("iris")
    assert features == ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"]
    assert X[0].tolist() == [5.1, 3.5, 1.4, 0.2] and y[0] == "setosa"
    # Fisher's values for samples 35 and 38 (the UCI file has them wrong): as in R and scikit-learn
    assert X[34].tolist() == [4.9, 3.1, 1.5, 0.2] and X[37].tolist() == [4.9, 3.6, 1.4, 0.1]
    X, y, features = read_bundled("diabetes")
    assert features[:4] == ["age", "sex", "bmi", "bp"]
    assert X[0].tolist() == [59, 2, 32.1, 101, 157, 93.2, 38, 4, 4.8598, 87] and y[0] == 151  # unscaled
    assert (y.min(), y.max()) == (25, 346)
    X, _, _ = read_bundled("digits")
    assert X.min() == 0 and X.max() == 16 and np.all(X == np.round(X))


def test_damaged_file_is_refused(tmp_path, monkeypatch):
    copy = tmp_path / "datasets"
    shutil.copytree(datasets_dir(), copy)
    path = copy / BUNDLED["iris"].file
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    monkeypatch.setenv("NNTRAIN_DATASETS", str(copy))
    assert datasets_dir() == copy
    with pytest.raises(NntrainError, match="damaged or replaced"):
        read_bundled("iris")
    read_bundled("wine")  # the others are intact
    path.unlink()
    with pytest.raises(NntrainError, match="missing"):
        read_bundled("iris")


def test_config_loads_iris_by_name():
    config = validate({"data": {"dataset": "iris"}, "model": {"layers": [{"linear": 8}, "relu", {"linear": 3}]}})
    exp = prepare(config)
    assert exp.dataset.X.shape == (150, 4)
    assert exp.dataset.feature_names == ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"]
    assert exp.dataset.task == "classification" and config.data.task == "classification"
    assert exp.dataset.n_classes == 3
    assert exp.dataset.classes == ["setosa", "versicolor", "virginica"]
    assert sum(len(rows) for rows in exp.splits.values()) == 150


def test_config_loads_diabetes_as_regression():
    config = validate({"data": {"dataset": "diabetes"}, "model": {"layers": [{"linear": 1}]}, "loss": "mse"})
    exp = prepare(config)
    assert exp.dataset.task == "regression" and exp.dataset.classes is None
    assert exp.dataset.X.shape == (442, 10)
