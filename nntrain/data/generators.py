"""Built-in synthetic datasets, seeded: rng -> (X: (samples, 2 or 1) float64, y: (samples,)).

Every generator takes `samples` and `noise`; its other keyword-only parameters are the
`data.options` a config may set. `task` says what the labels are.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np

from ..engine.registry import Range

GENERATORS = {}
Samples = Annotated[int, Range(ge=4, le=100_000_000)]
MAX_NOISE = 1e6  # far beyond any useful noise (the features are of size 1 to 10), and far from overflowing float64
Noise = Annotated[float, Range(ge=0, le=MAX_NOISE)]
Classes = Annotated[int, Range(ge=2, le=1000)]


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
