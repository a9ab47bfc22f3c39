"""Weight initializers: (rows, cols, fan_in, fan_out) -> a (rows, cols) matrix. Biases start at zero.

A linear layer's weight is its (in, units) matrix, so rows = fan_in and cols = fan_out. A
convolution kernel (out, in, kh, kw) is drawn as the (out, in kh kw) matrix torch's
initializers see, with fan_in = in kh kw and fan_out = out kh kw (see `init_weight`).

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
def he(rows, cols, fan_in, fan_out, rng, scale):
    """Normal with std sqrt(2 / fan_in) (He et al. 2015), suited to ReLU layers."""
    return rng.standard_normal((rows, cols)) * np.sqrt(2.0 / fan_in)


@initializer("xavier")
def xavier(rows, cols, fan_in, fan_out, rng, scale):
    """Uniform in ±sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio 2010), suited to tanh/sigmoid."""
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, (rows, cols))


@initializer("normal")
def normal(rows, cols, fan_in, fan_out, rng, scale):
    """Normal with std `init_scale`."""
    return rng.standard_normal((rows, cols)) * scale


@initializer("uniform")
def uniform(rows, cols, fan_in, fan_out, rng, scale):
    """Uniform in ±`init_scale`."""
    return rng.uniform(-scale, scale, (rows, cols))


@initializer("he_uniform")
def he_uniform(rows, cols, fan_in, fan_out, rng, scale):
    """Uniform in ±sqrt(6 / fan_in): He's variance 2 / fan_in with a uniform draw."""
    limit = np.sqrt(6.0 / fan_in)
    return rng.uniform(-limit, limit, (rows, cols))


@initializer("xavier_normal")
def xavier_normal(rows, cols, fan_in, fan_out, rng, scale):
    """Normal with std sqrt(2 / (fan_in + fan_out)): Glorot's variance with a normal draw."""
    return rng.standard_normal((rows, cols)) * np.sqrt(2.0 / (fan_in + fan_out))


@initializer("lecun")
def lecun(rows, cols, fan_in, fan_out, rng, scale):
    """Normal with std sqrt(1 / fan_in) (LeCun 1998), suited to tanh and SELU-like units."""
    return rng.standard_normal((rows, cols)) * np.sqrt(1.0 / fan_in)


@initializer("orthogonal")
def orthogonal(rows, cols, fan_in, fan_out, rng, scale):
    """A (semi-)orthogonal matrix (Saxe et al. 2014): Q of the QR of a Gaussian matrix, signs fixed by R's diagonal.

    Rows are orthonormal when rows <= cols, columns otherwise (as torch.nn.init.orthogonal_).
    """
    flat = rng.standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(flat)
    q *= np.sign(np.diag(r))  # makes the result uniformly distributed over orthogonal matrices
    return q if rows >= cols else q.T


class InitError(ValueError):
    """The initializer gave weights that are not finite numbers (an init_scale too large for the dtype).

    `layer` is the index of the layer whose weights they were (set by Network).
    """

    layer: int | None = None


def init_weight(
    name: str, fan_in: int, fan_out: int, rng: np.random.Generator, scale: float, dtype, shape: tuple[int, ...] | None = None
) -> np.ndarray:
    """A weight of `dtype` from initializer `name`: the (fan_in, fan_out) matrix, or an array of `shape`.

    With `shape` (a kernel (out, in, kh, kw)) the draw is the (shape[0], rest) matrix, reshaped.

    InitError when the weights are not all finite in `dtype` (e.g. normal with init_scale 1e308,
    or 1e39 in float32): computed without numpy warnings, refused instead.
    """
    if name not in INITIALIZERS:
        raise KeyError(f"unknown initializer '{name}'; allowed: {', '.join(INITIALIZERS)}")
    with np.errstate(all="ignore"):
        try:
            rows, cols = (fan_in, fan_out) if shape is None else (shape[0], int(np.prod(shape[1:])))
            weight = INITIALIZERS[name](rows, cols, fan_in, fan_out, rng, scale).astype(dtype)
            if shape is not None:
                weight = weight.reshape(shape)
        except OverflowError:  # uniform: high - low beyond the largest float
            weight = None
    if weight is None or not np.isfinite(weight).all():
        raise InitError(f"init_scale {scale:g} gives initial weights that are not finite in {np.dtype(dtype).name} ({name} init)")
    return weight
