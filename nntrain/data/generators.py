"""Built-in synthetic datasets, seeded: rng -> (X: (samples, 2 or 1) float64, y: (samples,)).

Sequence generators (the recurrent benchmarks) return X: (samples, T, D), time first, features
last; the loader keeps them as rows of T * D values with sample_shape (T, D).
Every generator takes `samples` and `noise`; its other keyword-only parameters are the
`data.options` a config may set. `task` says what the labels are.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np

from ..engine.registry import Range
from ..errors import NntrainError

GENERATORS = {}
Samples = Annotated[int, Range(ge=4, le=100_000_000)]
MAX_NOISE = 1e6  # far beyond any useful noise (the features are of size 1 to 10), and far from overflowing float64
Noise = Annotated[float, Range(ge=0, le=MAX_NOISE)]
Classes = Annotated[int, Range(ge=2, le=1000)]
Length = Annotated[int, Range(ge=2, le=100_000)]  # T, the time steps of a sequence


def generator(task: str):
    def add(fn):
        fn.task = task
        GENERATORS[fn.__name__] = fn
        return fn

    return add


def _balanced_labels(samples: int, classes: int) -> np.ndarray:
    return np.arange(samples) % classes


@generator("classification")
def xor(rng, *, samples: Samples = 400, noise: Noise = 0.25):
    """Four Gaussian clusters at (±1, ±1); the label is 1 where the signs differ (XOR)."""
    corners = rng.integers(0, 2, size=(samples, 2))
    X = (2.0 * corners - 1) + noise * rng.standard_normal((samples, 2))
    return X, corners[:, 0] ^ corners[:, 1]


@generator("classification")
def spirals(rng, *, samples: Samples = 3000, classes: Classes = 3, noise: Noise = 0.2):
    """Interleaved spiral arms, one per class (the CS231n toy set)."""
    y = _balanced_labels(samples, classes)
    # Position along the arm in [0, 1): radius grows with it, angle turns 4 radians per arm.
    r = rng.uniform(0, 1, samples)
    theta = 4 * y + 4 * r + noise * rng.standard_normal(samples)
    X = np.column_stack([r * np.sin(theta), r * np.cos(theta)])
    return X, y


@generator("classification")
def moons(rng, *, samples: Samples = 1000, noise: Noise = 0.1):
    """Two interleaving half circles."""
    y = _balanced_labels(samples, 2)
    angle = rng.uniform(0, np.pi, samples)
    X = np.where(
        y[:, None] == 0,
        np.column_stack([np.cos(angle), np.sin(angle)]),
        np.column_stack([1 - np.cos(angle), 0.5 - np.sin(angle)]),
    )
    return X + noise * rng.standard_normal((samples, 2)), y


@generator("classification")
def circles(rng, *, samples: Samples = 1000, noise: Noise = 0.05, factor: Annotated[float, Range(gt=0, lt=1)] = 0.5):
    """A circle inside another; `factor` is the inner radius relative to the outer (1)."""
    y = _balanced_labels(samples, 2)
    angle = rng.uniform(0, 2 * np.pi, samples)
    radius = np.where(y == 1, factor, 1.0)
    X = radius[:, None] * np.column_stack([np.cos(angle), np.sin(angle)])
    return X + noise * rng.standard_normal((samples, 2)), y


@generator("classification")
def blobs(rng, *, samples: Samples = 1000, classes: Classes = 3, noise: Noise = 1.0):
    """Isotropic Gaussian clusters (std `noise`) around centres drawn in [-10, 10]^2."""
    y = _balanced_labels(samples, classes)
    centres = rng.uniform(-10, 10, size=(classes, 2))
    return centres[y] + noise * rng.standard_normal((samples, 2)), y


@generator("classification")
def linear(rng, *, samples: Samples = 500, noise: Noise = 0.0):
    """Uniform points in [-1, 1]^2 split by the line x0 - 0.5 x1 = 0; `noise` > 0 blurs the boundary."""
    X = rng.uniform(-1, 1, size=(samples, 2))
    y = (X @ np.array([1.0, -0.5]) > 0).astype(np.int64)
    return X + noise * rng.standard_normal((samples, 2)), y


@generator("regression")
def sine(rng, *, samples: Samples = 1000, noise: Noise = 0.1):
    """y = sin(x) + Gaussian noise for x uniform in [-pi, pi]; X: (samples, 1)."""
    x = rng.uniform(-np.pi, np.pi, samples)
    return x[:, None], np.sin(x) + noise * rng.standard_normal(samples)


MAX_SEQUENCE_STEPS = 10**8  # samples * length of a generated sequence set: 1.6 GB of float64 for the adding problem


def _check_size(samples: int, length: int) -> None:
    """NntrainError for a set of sequences too large to generate in memory (each option alone may be in range)."""
    if samples * length > MAX_SEQUENCE_STEPS:
        raise NntrainError(
            f"{samples} samples of length {length} are {samples * length:,} steps; a generated set holds at most"
            f" {MAX_SEQUENCE_STEPS:,}: lower samples or length",
            "data.options",
        )


@generator("regression")
def adding(rng, *, samples: Samples = 1000, length: Length = 50, noise: Noise = 0.0):
    """The adding problem: sum the two marked values of a sequence; X: (samples, T, 2), y: (samples,).

    The task of Hochreiter & Schmidhuber (1997), LSTM's original paper. X[:, t, 0] is uniform in
    [0, 1); X[:, t, 1] is 1 at exactly two steps, one in the first half (t < T // 2) and one in
    the second, 0 elsewhere (a placement many later papers use; the original's differs in
    detail). y = the sum of the two marked values + `noise` * N(0, 1). Baseline: always
    predicting 1.0 gives MSE Var(u1 + u2) = 1/6 ≈ 0.167 (+ noise**2).
    """
    _check_size(samples, length)
    half, rows = length // 2, np.arange(samples)
    values = rng.uniform(0, 1, size=(samples, length))
    first, second = rng.integers(0, half, samples), rng.integers(half, length, samples)
    marker = np.zeros((samples, length))
    marker[rows, first] = marker[rows, second] = 1.0
    y = values[rows, first] + values[rows, second] + noise * rng.standard_normal(samples)
    return np.stack([values, marker], axis=-1), y


@generator("classification")
def parity(rng, *, samples: Samples = 1000, length: Length = 8, noise: Noise = 0.0):
    """Parity of a bit sequence: y = (sum of the bits) mod 2; X: (samples, T, 1), y: (samples,) in {0, 1}.

    X = bits in {0, 1} + `noise` * N(0, 1); the labels are balanced (the counts differ by at most
    one), and the bits of each class are uniform among the sequences of that parity. Baseline:
    chance, 50% accuracy (cross-entropy ln 2 ≈ 0.693).
    """
    _check_size(samples, length)
    y = _balanced_labels(samples, 2)
    bits = rng.integers(0, 2, size=(samples, length))
    # Flipping the last bit where the parity is wrong leaves the bits uniform given the label.
    bits[:, -1] ^= (bits.sum(axis=1) + y) % 2
    return (bits + noise * rng.standard_normal((samples, length)))[:, :, None], y


@generator("classification")
def copy_memory(
    rng, *, samples: Samples = 1000, length: Length = 20, noise: Noise = 0.0,
    symbols: Annotated[int, Range(ge=2, le=100)] = 8, count: Annotated[int, Range(ge=1, le=1000)] = 5,
):
    """The copy-memory task: remember `count` symbols over a delay of `length` steps, then write them back.

    A sample has T = 2 count + length steps. Its input X: (samples, T, symbols + 2) is one-hot:
    `count` random symbols (channels 0 .. symbols - 1), then `length` - 1 blanks (channel
    `symbols`), a marker (channel symbols + 1) that asks for the copy, and `count` blanks more;
    + `noise` * N(0, 1) on every input. The target y: (samples, T) is a class per step: blank
    (class 0) everywhere but the last `count` steps, which are the symbols again (classes 1 ..
    symbols). Baseline: blanks, then guessing, gives cross-entropy count ln(symbols) / T.
    """
    _check_size(samples, 2 * count + length)
    steps = 2 * count + length
    remembered = rng.integers(0, symbols, size=(samples, count))
    code = np.full((samples, steps), symbols)  # blanks
    code[:, :count] = remembered
    code[:, count + length - 1] = symbols + 1  # the marker: write the symbols now
    X = np.eye(symbols + 2)[code] + noise * rng.standard_normal((samples, steps, symbols + 2))
    y = np.zeros((samples, steps), dtype=np.int64)
    y[:, -count:] = remembered + 1
    return X, y


SINE_FREQUENCIES = (0.1, 1.0)  # radians per step: periods of 6.3 to 63 steps


@generator("regression")
def sine_wave(rng, *, samples: Samples = 1000, length: Length = 20, noise: Noise = 0.0):
    """Forecast a sine wave's next value; X: (samples, T, 1), y: (samples,).

    x_t = sin(f t + phase) for t = 0 .. T - 1, with phase uniform in [0, 2 pi) and f uniform in
    SINE_FREQUENCIES per sample, + `noise` * N(0, 1); y = sin(f T + phase), noise-free.
    Baselines: predicting 0 gives MSE 0.5; repeating the last value E[1 - cos f] ≈ 0.176.
    """
    _check_size(samples, length)
    frequency = rng.uniform(*SINE_FREQUENCIES, size=(samples, 1))
    phase = rng.uniform(0, 2 * np.pi, size=(samples, 1))
    wave = np.sin(frequency * np.arange(length + 1) + phase)
    X = wave[:, :length] + noise * rng.standard_normal((samples, length))
    return X[:, :, None], wave[:, length]
