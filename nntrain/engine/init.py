"""Weight initializers: (fan_in, fan_out) -> a (fan_in, fan_out) matrix. Biases start at zero.

Weights are drawn in float64 and then cast, so a float32 and a float64 network built from
the same seed start from the same values (up to rounding).
"""

from __future__ import annotations

import numpy as np

INITIALIZERS = {}


def initializer(name):
    def add(fn):
        INITIALIZERS[name] = fn
        return fn

    return add


@initializer("he")
def he(fan_in, fan_out, rng, scale):
    """Normal with std sqrt(2 / fan_in) (He et al. 2015), suited to ReLU layers."""
    return rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in)


@initializer("xavier")
def xavier(fan_in, fan_out, rng, scale):
    """Uniform in ±sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio 2010), suited to tanh/sigmoid."""
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, (fan_in, fan_out))


@initializer("normal")
def normal(fan_in, fan_out, rng, scale):
    """Normal with std `init_scale`."""
    return rng.standard_normal((fan_in, fan_out)) * scale


@initializer("uniform")
def uniform(fan_in, fan_out, rng, scale):
    """Uniform in ±`init_scale`."""
    return rng.uniform(-scale, scale, (fan_in, fan_out))


@initializer("he_uniform")
def he_uniform(fan_in, fan_out, rng, scale):
    """Uniform in ±sqrt(6 / fan_in): He's variance 2 / fan_in with a uniform draw."""
    limit = np.sqrt(6.0 / fan_in)
    return rng.uniform(-limit, limit, (fan_in, fan_out))


@initializer("xavier_normal")
def xavier_normal(fan_in, fan_out, rng, scale):
    """Normal with std sqrt(2 / (fan_in + fan_out)): Glorot's variance with a normal draw."""
    return rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / (fan_in + fan_out))


@initializer("lecun")
def lecun(fan_in, fan_out, rng, scale):
    """Normal with std sqrt(1 / fan_in) (LeCun 1998), suited to tanh and SELU-like units."""
    return rng.standard_normal((fan_in, fan_out)) * np.sqrt(1.0 / fan_in)


@initializer("orthogonal")
def orthogonal(fan_in, fan_out, rng, scale):
    """A (semi-)orthogonal matrix (Saxe et al. 2014): Q of the QR of a Gaussian matrix, signs fixed by R's diagonal.

    Rows are orthonormal when fan_in <= fan_out, columns otherwise (as torch.nn.init.orthogonal_).
    """
    flat = rng.standard_normal((max(fan_in, fan_out), min(fan_in, fan_out)))
    q, r = np.linalg.qr(flat)
    q *= np.sign(np.diag(r))  # makes the result uniformly distributed over orthogonal matrices
    return q if fan_in >= fan_out else q.T


class InitError(ValueError):
    """The initializer gave weights that are not finite numbers (an init_scale too large for the dtype).

    `layer` is the index of the layer whose weights they were (set by Network).
    """

    layer: int | None = None


def init_weight(name: str, fan_in: int, fan_out: int, rng: np.random.Generator, scale: float, dtype) -> np.ndarray:
    """A (fan_in, fan_out) weight matrix of `dtype` from initializer `name`.

    InitError when the weights are not all finite in `dtype` (e.g. normal with init_scale 1e308,
    or 1e39 in float32): computed without numpy warnings, refused instead.
    """
    if name not in INITIALIZERS:
        raise KeyError(f"unknown initializer '{name}'; allowed: {', '.join(INITIALIZERS)}")
    with np.errstate(all="ignore"):
        try:
            weight = INITIALIZERS[name](fan_in, fan_out, rng, scale).astype(dtype)
        except OverflowError:  # uniform: high - low beyond the largest float
            weight = None
    if weight is None or not np.isfinite(weight).all():
        raise InitError(f"init_scale {scale:g} gives initial weights that are not finite in {np.dtype(dtype).name} ({name} init)")
    return weight
