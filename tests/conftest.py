"""Shared fixtures: a CLI runner and small configs that train in well under a second."""

from __future__ import annotations

import compileall
import functools
import io
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

import nntrain
from nntrain.cli import app
from nntrain.engine.layers import LAYERS
from nntrain.engine.losses import LOSSES
from nntrain.engine.network import Network, Param


def pytest_sessionstart(session):
    """Byte-compile nntrain once, so the hundreds of processes the suite starts do not each recompile it.

    The CLI, fault-campaign, sweep and Ray-worker tests run nntrain in fresh interpreters. Where
    PYTHONDONTWRITEBYTECODE is set (as on some CI machines) no process writes a __pycache__, and each one
    spends about 0.2 s compiling nntrain's modules again; Python still reads a cache it did not write.
    """
    compileall.compile_dir(Path(nntrain.__file__).parent, quiet=2)


@pytest.fixture
def cli():
    """cli(*args) -> result with .exit_code, .stdout, .stderr (the real CLI, in process)."""
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)

    return invoke


def small_config(**sections) -> dict:
    """A spirals classifier small enough for a unit test; sections replace the defaults' keys."""
    config = {
        "name": "small",
        "seed": 0,
        "data": {"dataset": "spirals", "options": {"samples": 300, "classes": 3, "noise": 0.2}},
        "model": {"layers": [{"linear": 16}, "relu", {"linear": 3}]},
        "loss": "cross_entropy",
        "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
        "train": {"epochs": 5, "batch_size": 32},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    return config


@pytest.fixture
def write_config(tmp_path):
    """write_config(**sections) -> path of a YAML file holding small_config(**sections)."""

    def write(name: str = "small.yaml", **sections) -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(small_config(**sections)))
        return path

    return write


# --- table tests (test_table.py, test_columns.py) ---------------------------------------------


def table_config(tmp_path, data: dict, name="c.yaml", classes=2, epochs=2, layers=None, hidden=4, optimizer=None, **extra):
    """A YAML file of a small classifier on `data` (a data section): hidden-relu-classes, SGD, batches of 16."""
    config = {
        "seed": 0,
        "data": data,
        "model": {"layers": layers or [{"linear": hidden}, "relu", {"linear": classes}]},
        "loss": "cross_entropy",
        "optimizer": optimizer or {"name": "sgd", "lr": 0.05},
        "train": {"epochs": epochs, "batch_size": 16},
        **extra,
    }
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return path


def fit_json(cli, config, run_dir):
    """`nntrain fit --json` that must succeed: (summary, result)."""
    result = cli("fit", config, "--run-dir", run_dir, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), result


# --- optimizer and schedule tests ---------------------------------------------------------


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array of an .npz file (a reference fixture), read into memory."""
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def npz_round_trip(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What a checkpoint does with a state dict: save to .npz and load back (plain arrays, no pickle)."""
    buf = io.BytesIO()
    np.savez(buf, **state)
    buf.seek(0)
    return load_arrays(buf)


def param(values, decay=True, key="layers.0.weight", dtype=np.float64) -> Param:
    """A standalone Param (float64 by default) with a zero gradient buffer."""
    value = np.array(values, dtype=dtype)
    return Param(key, value, np.zeros_like(value), decay)


def run_steps(opt, p: Param, grads) -> list[np.ndarray]:
    """Feed `grads` to opt.step one by one; the parameter after each step."""
    out = []
    for g in grads:
        p.grad[...] = g
        opt.step([p])
        out.append(p.value.copy())
    return out


# --- layer tests (test_noise.py, test_norm.py) ---------------------------------------------


def layer(name, width=4, dtype=np.float64, seed=0, **options):
    """A set-up layer for inputs of `width`; stochastic layers get their own Generator(seed)."""
    obj = LAYERS[name](**options)
    obj.setup((width,), np.dtype(dtype), np.random.default_rng(123), "he", 0.01)
    obj.rng = np.random.default_rng(seed)
    return obj


def build(spec, loss="mse", in_features=4, dtype=np.float64, seed=0):
    """A Network from [("linear", {"units": 6}), ("dropout", {"p": 0.3}), ...]."""
    layers = [LAYERS[name](**options) for name, options in spec]
    return Network(layers, LOSSES[loss](), in_features, dtype, np.random.default_rng(seed), init="xavier")


# --- mnist / fashion_mnist without a network (test_configs.py, test_export.py) -------------------


def install_mnist_stand_ins(tmp_path, monkeypatch, rows: int | None = None, train: int = 1500, shuffle: bool = True):
    """mnist and fashion_mnist in a cache of their own: the bundled digits (the first `rows`) as (28, 28)
    uint8 images (each pixel 3x3, a 2-pixel border, a little noise), `train` for training, the rest for
    testing; `shuffle` mixes them first (the file is ordered by writer)."""
    import dataclasses

    from nntrain.data import download

    cache = tmp_path / "cache"
    monkeypatch.setenv("NNTRAIN_DATA", str(cache))
    files = _mnist_stand_in_files(rows, train, shuffle)
    for name in ("mnist", "fashion_mnist"):
        spec = download.DOWNLOADABLE[name]
        (cache / name).mkdir(parents=True)
        for filename, (data, _) in files.items():
            (cache / name / filename).write_bytes(data)
        roles = {role: (filename, files[filename][1]) for role, (filename, _) in spec.files.items()}
        monkeypatch.setitem(download.DOWNLOADABLE, name, dataclasses.replace(spec, files=roles))


@functools.cache
def _mnist_stand_in_files(rows: int | None, train: int, shuffle: bool) -> dict[str, tuple[bytes, str]]:
    """{file name: (its gzipped IDX bytes, their sha256)} of install_mnist_stand_ins' images, made once per
    session (gzip takes about a second; test_configs installs them for every test)."""
    import hashlib
    import tempfile

    from nntrain.data import download
    from nntrain.data.bundled import read_bundled
    from nntrain.data.idx import write_idx

    X, y, _ = read_bundled("digits")
    X, y = np.asarray(X, dtype=np.float64).reshape(-1, 8, 8)[:rows], np.asarray(y).astype(np.int64)[:rows]
    rng = np.random.default_rng(0)
    if shuffle:
        order = rng.permutation(len(y))
        X, y = X[order], y[order]
    images = np.pad(np.kron(X, np.ones((3, 3))), ((0, 0), (2, 2), (2, 2))) * (255 / 16)
    images = np.clip(images + rng.normal(0, 10, images.shape), 0, 255).astype(np.uint8)
    arrays = {"train_images": images[:train], "train_labels": y[:train].astype(np.uint8),
              "test_images": images[train:], "test_labels": y[train:].astype(np.uint8)}  # fmt: skip
    files = {}
    with tempfile.TemporaryDirectory() as folder:
        for name in ("mnist", "fashion_mnist"):  # both download the same file names
            for role, (filename, _) in download.DOWNLOADABLE[name].files.items():
                if filename in files:
                    continue
                write_idx(Path(folder) / filename, arrays[role])
                data = (Path(folder) / filename).read_bytes()
                files[filename] = (data, hashlib.sha256(data).hexdigest())
    return files


# --- sweep directories (test_sweep*.py) -------------------------------------------------------------


def read_csv(path) -> list[dict]:
    """A CSV file's rows as dicts of strings (sweep.csv, metrics.csv)."""
    import csv

    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def without_seconds(rows):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


def summary(run_dir) -> dict:
    """A run directory's summary.json."""
    return json.loads((Path(run_dir) / "summary.json").read_text())
