"""Layers: each one a small class that knows its forward and its backward.

Shapes: every layer maps (batch, in) -> (batch, out); activations keep the width.
`forward(x, training)` keeps what `backward` needs; `backward(grad)` takes dL/d(output),
fills `grads` for the layer's own parameters and returns dL/d(input).

Gradients are assigned, not accumulated: in a chain every layer is applied once per
batch, so there is no fan-out to sum over and no zero-grad pass to pay for.

A layer's config options are the keyword-only parameters of its constructor (see
`registry`); sizes, dtype and weights come later, in `setup`.
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np

from .init import INITIALIZERS, init_weight
from .registry import Range, Registry

LAYERS = Registry("layer")
InitName = Literal[tuple(INITIALIZERS)]


class Layer:
    """Base class: no parameters, width unchanged."""

    name = "layer"

    def __init__(self):
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}

    def setup(self, in_features: int, dtype, rng: np.random.Generator, init: str, init_scale: float) -> int:
        """Allocate parameters for inputs of width `in_features`; return the output width."""
        return in_features

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, grad: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:  # pragma: no cover
        raise NotImplementedError

    def kinks(self) -> np.ndarray | None:
        """Which side of each non-differentiable point the last forward was on (for gradcheck)."""
        return None


@LAYERS.register("linear")
class Linear(Layer):
    """Affine map y = x @ W + b.

    x: (batch, in), W: (in, units), b: (units,) -> y: (batch, units). Keeps x for backward.
    `init` / `init_scale` override the model-wide initializer for this layer.
    """

    def __init__(
        self,
        *,
        units: Annotated[int, Range(ge=1)],
        init: InitName | None = None,
        init_scale: Annotated[float, Range(gt=0)] | None = None,
    ):
        super().__init__()
        self.units = units
        self.init = init
        self.init_scale = init_scale
        self.x = None

    def setup(self, in_features, dtype, rng, init, init_scale):
        name = self.init or init
        scale = self.init_scale if self.init_scale is not None else init_scale
        self.params = {
            "weight": init_weight(name, in_features, self.units, rng, scale, dtype),
            "bias": np.zeros(self.units, dtype=dtype),
        }
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        return self.units

    def forward(self, x, training):
        self.x = x
        y = x @ self.params["weight"]
        y += self.params["bias"]
        return y

    def backward(self, grad, need_input_grad=True):
        """grad: (batch, units) -> (batch, in); dW = x.T @ grad, db = sum over the batch."""
        np.matmul(self.x.T, grad, out=self.grads["weight"])
        np.sum(grad, axis=0, out=self.grads["bias"])
        return grad @ self.params["weight"].T if need_input_grad else None


@LAYERS.register("sigmoid")
class Sigmoid(Layer):
    """Logistic function 1 / (1 + e^-x), elementwise. Keeps its output y; dy/dx = y (1 - y)."""

    def forward(self, x, training):
        # 0.5 (1 + tanh(x / 2)) is the logistic function without overflow for large |x|.
        y = np.tanh(x * 0.5)
        y += 1
        y *= 0.5
        self.y = y
        return y

    def backward(self, grad, need_input_grad=True):
        return grad * self.y * (1 - self.y)


@LAYERS.register("tanh")
class Tanh(Layer):
    """Hyperbolic tangent, elementwise. Keeps its output y; dy/dx = 1 - y^2."""

    def forward(self, x, training):
        self.y = np.tanh(x)
        return self.y

    def backward(self, grad, need_input_grad=True):
        return grad * (1 - self.y * self.y)


@LAYERS.register("relu")
class ReLU(Layer):
    """max(x, 0), elementwise. Keeps the mask x > 0."""

    def forward(self, x, training):
        self.mask = x > 0
        return np.maximum(x, 0)

    def backward(self, grad, need_input_grad=True):
        return grad * self.mask

    def kinks(self):
        return self.mask


@LAYERS.register("leaky_relu")
class LeakyReLU(Layer):
    """x for x > 0, slope * x otherwise, elementwise. Keeps the mask x > 0."""

    def __init__(self, *, slope: Annotated[float, Range(ge=0)] = 0.01):
        super().__init__()
        self.slope = slope

    def forward(self, x, training):
        self.mask = x > 0
        return np.where(self.mask, x, x * self.slope)

    def backward(self, grad, need_input_grad=True):
        return np.where(self.mask, grad, grad * self.slope)

    def kinks(self):
        return self.mask


@LAYERS.register("identity")
class Identity(Layer):
    """y = x: a linear output for regression."""

    def forward(self, x, training):
        return x

    def backward(self, grad, need_input_grad=True):
        return grad


@LAYERS.register("softmax")
class Softmax(Layer):
    """Row-wise softmax: (batch, k) -> (batch, k) probabilities. Keeps its output y.

    Before `cross_entropy` the network fuses it into the loss instead (stable log-sum-exp).
    """

    def forward(self, x, training):
        y = x - x.max(axis=1, keepdims=True)
        np.exp(y, out=y)
        y /= y.sum(axis=1, keepdims=True)
        self.y = y
        return y

    def backward(self, grad, need_input_grad=True):
        # Jacobian-vector product of softmax: y * (g - <g, y>) row by row.
        dot = np.sum(grad * self.y, axis=1, keepdims=True)
        return self.y * (grad - dot)
