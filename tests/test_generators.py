"""The sequence generators (adding, parity, sine_wave): shapes, seeding, what their labels are, their
baselines, and how the data layer and `nntrain datasets` see them (rows of T * D, sample shape (T, D))."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import small_config

from nntrain.config import load_config, validate_dataset_options
from nntrain.data.catalog import catalog, describe
from nntrain.data.dataset import read_raw
from nntrain.data.generators import GENERATORS, SINE_FREQUENCIES
from nntrain.errors import NntrainError
from nntrain.train.experiment import load_dataset, prepare, seed_streams

SEQUENCES = {"adding": ("regression", 2), "parity": ("classification", 1), "sine_wave": ("regression", 1)}


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def gen(name: str, seed: int = 0, **options):
    return GENERATORS[name](rng(seed), **options)


# --- the generators ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SEQUENCES))
def test_registered_with_their_task(name):
    assert GENERATORS[name].task == SEQUENCES[name][0]


@pytest.mark.parametrize("name", sorted(SEQUENCES))
@pytest.mark.parametrize("samples, length", [(4, 2), (37, 3), (200, 17)])
def test_shapes_and_dtypes(name, samples, length):
    X, y = gen(name, 1, samples=samples, length=length)
    assert X.shape == (samples, length, SEQUENCES[name][1]) and X.dtype == np.float64
    assert y.shape == (samples,)
    assert np.isfinite(X).all() and np.isfinite(y).all()
    assert y.dtype.kind in ("iu" if name == "parity" else "f")


@pytest.mark.parametrize("name", sorted(SEQUENCES))
def test_defaults_give_sequences(name):
    X, y = gen(name)
    assert X.ndim == 3 and len(X) == len(y) == 1000 and X.shape[1] >= 2


@pytest.mark.parametrize("name", sorted(SEQUENCES))
@pytest.mark.parametrize("noise", [0.0, 0.3])
def test_deterministic_for_a_seed(name, noise):
    X1, y1 = gen(name, 5, samples=100, noise=noise)
    X2, y2 = gen(name, 5, samples=100, noise=noise)
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(y1, y2)
    X3, _ = gen(name, 6, samples=100, noise=noise)
    assert not np.array_equal(X1, X3)


@pytest.mark.parametrize("name", sorted(SEQUENCES))
def test_draw_only_from_the_given_rng(name):
    state = np.random.get_state()
    try:
        np.random.seed(1)
        a = gen(name, 7, samples=50, noise=0.1)
        untouched = np.random.get_state()
        np.random.seed(12345)  # the global NumPy RNG must not matter, nor be drawn from
        b = gen(name, 7, samples=50, noise=0.1)
        np.random.seed(1)
        assert all(np.array_equal(u, v) if isinstance(u, np.ndarray) else u == v for u, v in zip(untouched, np.random.get_state()))
    finally:
        np.random.set_state(state)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)


def test_noise_changes_the_inputs_only_by_gaussian_noise():
    for name in ("parity", "sine_wave"):
        clean, y0 = gen(name, 3, samples=2000, noise=0.0)
        noisy, y1 = gen(name, 3, samples=2000, noise=0.5)
        np.testing.assert_array_equal(y0, y1)  # the labels / targets stay noise-free
        residual = noisy - clean
        assert abs(residual.mean()) < 0.02 and abs(residual.std() - 0.5) < 0.02


# --- adding -----------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [2, 3, 10, 51])
def test_adding_markers_one_per_half_and_targets_are_the_marked_sums(length):
    X, y = gen("adding", 8, samples=3000, length=length)
    values, marker = X[:, :, 0], X[:, :, 1]
    assert ((values >= 0) & (values < 1)).all()
    assert np.isin(marker, (0.0, 1.0)).all()
    half = length // 2
    assert (marker[:, :half].sum(axis=1) == 1).all() and (marker[:, half:].sum(axis=1) == 1).all()
    np.testing.assert_allclose(y, (values * marker).sum(axis=1), rtol=0, atol=1e-12)
    if length >= 10:  # every step of each half is marked sometimes
        assert (marker[:, :half].sum(axis=0) > 0).all() and (marker[:, half:].sum(axis=0) > 0).all()


def test_adding_constant_prediction_baseline_is_one_sixth():
    """Predicting 1.0 (the mean target) always: MSE = Var(u1 + u2) = 2 / 12 = 1/6 ≈ 0.167."""
    _, y = gen("adding", 9, samples=400_000, length=10)
    mse = float(np.mean((y - 1.0) ** 2))
    assert abs(mse - 1 / 6) < 0.002, mse
    assert abs(float(y.mean()) - 1.0) < 0.003  # 1.0 is the best constant
    _, noisy = gen("adding", 9, samples=400_000, length=10, noise=0.5)
    assert abs(float(np.mean((noisy - 1.0) ** 2)) - (1 / 6 + 0.25)) < 0.005  # + noise**2


# --- parity -----------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [2, 5, 8, 33])
def test_parity_labels_are_the_xor_of_the_bits(length):
    X, y = gen("parity", 10, samples=1001, length=length)
    bits = X[:, :, 0]
    assert np.isin(bits, (0.0, 1.0)).all()
    xor = np.bitwise_xor.reduce(bits.astype(np.int64), axis=1)
    np.testing.assert_array_equal(y, xor)
    np.testing.assert_array_equal(y, bits.sum(axis=1).astype(np.int64) % 2)


@pytest.mark.parametrize("samples", [4, 5, 1000, 1001])
def test_parity_labels_are_balanced(samples):
    _, y = gen("parity", 11, samples=samples)
    counts = np.bincount(y, minlength=2)
    assert counts.sum() == samples and counts.max() - counts.min() <= 1


def test_parity_bits_are_uniform_at_every_step():
    X, _ = gen("parity", 12, samples=40_000, length=6)
    np.testing.assert_allclose(X[:, :, 0].mean(axis=0), 0.5, atol=0.01)  # the fixed-up last bit too


# --- sine_wave --------------------------------------------------------------------------------


def _cos_frequency(X):
    """cos f of each noise-free window, from x[t-1] + x[t+1] = 2 cos(f) x[t] (least squares over the window)."""
    return ((X[:, :-2] + X[:, 2:]) * X[:, 1:-1]).sum(axis=1) / (2 * (X[:, 1:-1] ** 2).sum(axis=1))


@pytest.mark.parametrize("length", [3, 20, 200])
def test_sine_wave_targets_continue_the_windows(length):
    X, y = gen("sine_wave", 13, samples=2000, length=length, noise=0.0)
    x = X[:, :, 0]
    c = _cos_frequency(x)
    # Every window is a sine of amplitude 1 with a frequency in the documented range ...
    np.testing.assert_allclose(x[:, 2:], 2 * c[:, None] * x[:, 1:-1] - x[:, :-2], atol=1e-9)
    amplitude2 = (x[:, -1] ** 2 + x[:, -2] ** 2 - 2 * c * x[:, -1] * x[:, -2]) / (1 - c**2)
    np.testing.assert_allclose(amplitude2, 1.0, atol=1e-6)
    f = np.arccos(c)
    assert (f >= SINE_FREQUENCIES[0] - 1e-6).all() and (f <= SINE_FREQUENCIES[1] + 1e-6).all()
    # ... and the target is the same sine one step later.
    np.testing.assert_allclose(y, 2 * c * x[:, -1] - x[:, -2], atol=1e-9)


def test_sine_wave_baselines():
    """Predicting 0: MSE 0.5; repeating the last value: E[1 - cos f] ≈ 0.176 for f uniform in SINE_FREQUENCIES."""
    X, y = gen("sine_wave", 14, samples=400_000, length=5)
    lo, hi = SINE_FREQUENCIES
    persistence = 1 - (np.sin(hi) - np.sin(lo)) / (hi - lo)
    assert abs(persistence - 0.176) < 0.0005
    assert abs(float(np.mean(y**2)) - 0.5) < 0.003
    assert abs(float(np.mean((y - X[:, -1, 0]) ** 2)) - persistence) < 0.002


# --- the data layer and the CLI -----------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SEQUENCES))
def test_read_raw_gives_rows_of_t_times_d_and_the_sample_shape(name):
    X, y = gen(name, 15, samples=30, length=7)
    raw = read_raw(name, {"samples": 30, "length": 7}, None, rng(15))
    D = SEQUENCES[name][1]
    assert raw.X.shape == (30, 7 * D) and raw.sample_shape == (7, D) and raw.task == SEQUENCES[name][0]
    np.testing.assert_array_equal(raw.X, X.reshape(30, -1))  # C order: step by step, features within a step
    np.testing.assert_array_equal(raw.X.reshape(30, 7, D), X)
    np.testing.assert_array_equal(raw.y, y)


def test_read_raw_keeps_flat_generators_flat():
    raw = read_raw("spirals", {"samples": 30}, None, rng(16))
    assert raw.X.shape == (30, 2) and raw.sample_shape is None


@pytest.mark.parametrize("name", sorted(SEQUENCES))
def test_a_config_loads_each_by_name(name):
    config = load_config(None, [], raw=small_config(data={"dataset": name, "options": {"samples": 60, "length": 6}}))
    dataset = load_dataset(config, seed_streams(config.seed)["data"], None)
    D = SEQUENCES[name][1]
    assert dataset.X.shape == (60, 6 * D) and dataset.sample_shape == (6, D)
    assert dataset.task == SEQUENCES[name][0]


def test_length_is_validated_as_a_data_option():
    assert validate_dataset_options("adding", {"length": 2})["length"] == 2
    for bad in (1, 100_001):
        with pytest.raises(NntrainError, match="length"):
            validate_dataset_options("adding", {"length": bad})


def test_an_mlp_trains_on_flattened_sequences():
    raw = small_config(
        data={"dataset": "adding", "options": {"samples": 200, "length": 5}},
        model={"layers": [{"linear": 8}, "relu", {"linear": 1}]},
        loss="mse",
        train={"epochs": 1, "batch_size": 32},
    )
    exp = prepare(load_config(None, [], raw=raw))
    assert exp.dataset.sample_shape == (5, 2)
    X, _, _ = exp.arrays("train")
    assert X.shape[1] == 10


def test_datasets_lists_the_sequence_generators(cli):
    result = cli("datasets")
    assert result.exit_code == 0
    names = [line.split()[0] for line in result.stdout.splitlines() if line.startswith("  ") and line.split()]
    assert set(SEQUENCES) <= set(names)
    listing = json.loads(cli("datasets", "--json").stdout)
    for name, (task, _) in SEQUENCES.items():
        assert listing[name]["kind"] == "generated" and listing[name]["task"] == task
        assert set(listing[name]["options"]) == {"samples", "length", "noise"}
    assert catalog()["adding"]["options"] == {"samples": 1000, "length": 50, "noise": 0.0}


def test_datasets_show_gives_the_sample_shape(cli):
    result = cli("datasets", "show", "adding", "--set", "samples=100", "--set", "length=12")
    assert result.exit_code == 0, result.stdout
    assert "adding: 100 rows, 24 features, regression" in result.stdout
    assert "sample_shape: [12, 2]" in result.stdout
    info = json.loads(cli("datasets", "show", "parity", "--set", "length=4", "--json").stdout)
    assert info["sample_shape"] == [4, 1] and info["features"] == 4
    assert info["classes"] == {"0": 500, "1": 500}
    assert describe("sine_wave", {"samples": 10, "length": 3, "noise": 0.0}, rng(0))["sample_shape"] == [3, 1]


@pytest.mark.parametrize("name", ["adding", "parity", "sine_wave"])
def test_sets_too_large_to_hold_are_refused_before_anything_is_drawn(name):
    from nntrain.data.generators import MAX_SEQUENCE_STEPS

    with pytest.raises(NntrainError, match="at most") as caught:
        GENERATORS[name](np.random.default_rng(0), samples=MAX_SEQUENCE_STEPS // 10 + 1, length=10)
    assert caught.value.key == "data.options"


def test_copy_memory_asks_for_the_symbols_after_the_delay_and_labels_every_step():
    X, y = GENERATORS["copy_memory"](np.random.default_rng(0), samples=50, length=6, symbols=4, count=3)
    steps = 2 * 3 + 6
    assert X.shape == (50, steps, 6) and y.shape == (50, steps) and y.dtype == np.int64
    code = X.argmax(axis=2)
    assert (X.sum(axis=2) == 1).all() and (code[:, 3 + 6 - 1] == 5).all()  # one-hot; the marker before the copy
    assert (code[:, 3:8] == 4).all() and (code[:, -3:] == 4).all()  # blanks
    np.testing.assert_array_equal(y[:, -3:], code[:, :3] + 1)  # the symbols again, after the delay
    assert (y[:, :-3] == 0).all()
    assert GENERATORS["copy_memory"].task == "classification"


def test_copy_memory_is_a_class_per_step_through_the_data_layer():
    from nntrain.data.catalog import describe

    info = describe("copy_memory", {"samples": 10, "length": 4, "count": 2}, np.random.default_rng(0))
    assert info["sample_shape"] == [8, 10] and sum(info["classes"].values()) == 10 * 8
