"""Layers: each one a small class that knows its forward and its backward.

Shapes: every layer maps (batch, in) -> (batch, out); activations keep the width.
`forward(x, training)` keeps what `backward` needs; `backward(grad)` takes dL/d(output),
fills `grads` for the layer's own parameters and returns dL/d(input).

Gradients are assigned, not accumulated: in a chain every layer is applied once per
batch, so there is no fan-out to sum over and no zero-grad pass to pay for.

A layer's config options are the keyword-only parameters of its constructor (see
`registry`); sizes, dtype and weights come later, in `setup`.

Besides `params` (trained) a layer may keep `buffers`: state that the optimizer never
touches but that the network saves and restores with the parameters (batch_norm's running
statistics). Buffers are updated in place, so the arrays the network sees stay the layer's.
`decayed` names the parameters weight decay applies to (only linear layers' weight matrices).

Randomness at training time (dropout masks, noise) is drawn from `self.rng`, a
numpy Generator that the Network assigns to every layer (it is the network's own `rng`;
see `Network.rng`). Nothing here draws from numpy's global state. A stochastic layer used
outside a Network must be given `layer.rng` by hand before a training-mode forward.

Workspace mode (the trainer's batch loop; see `workspace` and `Network.reuse_buffers`): a
layer whose `workspace` is a dict may, in training-mode calls, return arrays it reuses for
the next batch of the same size, and may overwrite its input (`overwrite_input`) or the
incoming gradient (`overwrite_grad`) when the network says that nobody else needs them. A
layer's class attribute `output_reusable` tells the network whether the next layer may
overwrite this layer's output (False when backward reads the output again, as sigmoid's does).
Outside workspace mode every call returns fresh arrays and leaves its arguments alone.
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np

from .init import INITIALIZERS, init_weight
from .registry import Range, Registry
from .workspace import ones, scratch, zeros

LAYERS = Registry("layer")
InitName = Literal[tuple(INITIALIZERS)]


class Layer:
    """Base class: no parameters, width unchanged."""

    name = "layer"
    decayed: tuple[str, ...] = ()  # names of the params weight decay applies to
    rng: np.random.Generator | None = None  # training-time randomness; set by the Network
    workspace: dict | None = None  # reused training-time arrays; set by Network.reuse_buffers
    overwrite_input = False  # workspace mode: the next forward may write into its input (set by the Network)
    overwrite_grad = False  # workspace mode: the next backward may write into its incoming gradient
    output_reusable = False  # the next layer may overwrite this layer's (training) output
    # False: a training-mode forward draws random numbers, so two evaluations of the same batch
    # differ (what a line search, which evaluates the loss many times, must know).
    repeatable = True

    def __init__(self):
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.buffers: dict[str, np.ndarray] = {}

    def _generator(self) -> np.random.Generator:
        if self.rng is None:
            raise RuntimeError(f"{self.name} layer has no rng: a Network sets it; a standalone layer needs layer.rng")
        return self.rng

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
    Weight decay applies to W, not to b.
    """

    decayed = ("weight",)
    output_reusable = True  # backward needs x, not y

    def __init__(
        self,
        *,
        units: Annotated[int, Range(ge=1, le=1_000_000)],  # bounded so that sizes stay far from int64 overflow
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
        weight = self.params["weight"]
        if training and self.workspace is not None:
            y = scratch(self.workspace, "y", (x.shape[0], self.units), np.result_type(x, weight))
            np.matmul(x, weight, out=y)
        else:
            y = x @ weight
        y += self.params["bias"]
        return y

    def backward(self, grad, need_input_grad=True):
        """grad: (batch, units) -> (batch, in); dW = x.T @ grad, db = sum over the batch."""
        np.matmul(self.x.T, grad, out=self.grads["weight"])
        if self.workspace is None:
            np.sum(grad, axis=0, out=self.grads["bias"])
        else:  # the same sum as a matrix-vector product: several times faster for these shapes
            np.matmul(ones(self.workspace, grad.shape[0], grad.dtype), grad, out=self.grads["bias"])
        if not need_input_grad:
            return None
        weight = self.params["weight"]
        if self.workspace is None:
            return grad @ weight.T
        dx = scratch(self.workspace, "dx", (grad.shape[0], weight.shape[0]), np.result_type(grad, weight))
        return np.matmul(grad, weight.T, out=dx)


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

    output_reusable = True  # backward needs the mask only

    def forward(self, x, training):
        ws = self.workspace
        if not (training and ws is not None):
            self.mask = x > 0
            return np.maximum(x, 0)
        self.mask = np.greater(x, 0, out=scratch(ws, "mask", x.shape, np.bool_))
        y = x if self.overwrite_input else scratch(ws, "y", x.shape, x.dtype)
        return np.maximum(x, zeros(ws, x.shape, x.dtype), out=y)  # max(x, 0), NaN stays NaN

    def backward(self, grad, need_input_grad=True):
        if self.workspace is None:
            return grad * self.mask
        out = grad if self.overwrite_grad else scratch(self.workspace, "dx", grad.shape, grad.dtype)
        return np.multiply(grad, self.mask, out=out)

    def kinks(self):
        return self.mask


@LAYERS.register("leaky_relu")
class LeakyReLU(Layer):
    """x for x > 0, slope * x otherwise, elementwise. Keeps the mask x > 0."""

    output_reusable = True

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

    output_reusable = True

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


# ---------------------------------------------------------------- regularization


@LAYERS.register("dropout")
class Dropout(Layer):
    """Inverted dropout: (batch, n) -> (batch, n).

    Training: each unit is kept with probability 1 - p and scaled by 1 / (1 - p), so
    E[y] = x; the mask (batch, n), already scaled, is kept for backward (dL/dx = mask * g).
    Eval: identity. Masks are drawn from `self.rng` (the network's generator).
    """

    repeatable = False  # training: new masks at every forward
    output_reusable = True  # a new array; backward keeps what it needs elsewhere

    def __init__(self, *, p: Annotated[float, Range(ge=0, lt=1)] = 0.5):
        super().__init__()
        self.p = p
        self.mask = None

    def forward(self, x, training):
        if not training or self.p == 0:
            self.mask = None
            return x
        # Uniforms are drawn in float64 whatever the dtype: float32 and float64 runs see the same masks.
        keep = self._generator().random(x.shape) >= self.p
        self.mask = keep * x.dtype.type(1 / (1 - self.p))  # bool * scalar of x's dtype: x's dtype
        return x * self.mask

    def backward(self, grad, need_input_grad=True):
        return grad if self.mask is None else grad * self.mask


@LAYERS.register("gaussian_noise")
class GaussianNoise(Layer):
    """y = x + N(0, std^2) noise at training time, y = x at eval: (batch, n) -> (batch, n).

    The noise does not depend on x, so dL/dx = dL/dy. Drawn from `self.rng` in float64,
    then cast to x's dtype (float32 and float64 runs see the same noise, rounded).
    """

    repeatable = False  # training: new noise at every forward
    output_reusable = True  # a new array; backward keeps what it needs elsewhere

    def __init__(self, *, std: Annotated[float, Range(ge=0)] = 0.1):
        super().__init__()
        self.std = std

    def forward(self, x, training):
        if not training or self.std == 0:
            return x
        noise = self._generator().standard_normal(x.shape)
        noise *= self.std
        return x + noise.astype(x.dtype, copy=False)

    def backward(self, grad, need_input_grad=True):
        return grad


# ---------------------------------------------------------------- normalization


@LAYERS.register("batch_norm")
class BatchNorm(Layer):
    """Batch normalization over the batch axis, as torch.nn.BatchNorm1d(n): (batch, n) -> (batch, n).

    Training: mean m and biased variance v of each feature over the batch (both (n,)),
    x_hat = (x - m) / sqrt(v + eps), y = weight * x_hat + bias (weight, bias: (n,), init 1, 0).
    The buffers running_mean (init 0) and running_var (init 1), both (n,), move towards the
    batch statistics: r = (1 - momentum) r + momentum s, with the unbiased variance
    v * B / (B - 1) for running_var, so a training batch needs B >= 2 samples.
    Eval: the running statistics replace m and v. Keeps x_hat (batch, n) and 1 / sqrt(v + eps) (n,).
    """

    output_reusable = True  # a new array; backward keeps what it needs elsewhere

    def __init__(
        self,
        *,
        momentum: Annotated[float, Range(ge=0, le=1)] = 0.1,
        eps: Annotated[float, Range(gt=0)] = 1e-5,
    ):
        super().__init__()
        self.momentum = momentum
        self.eps = eps

    def setup(self, in_features, dtype, rng, init, init_scale):
        self.params = {"weight": np.ones(in_features, dtype=dtype), "bias": np.zeros(in_features, dtype=dtype)}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.buffers = {"running_mean": np.zeros(in_features, dtype=dtype), "running_var": np.ones(in_features, dtype=dtype)}
        return in_features

    def forward(self, x, training):
        self.training = training
        if training:
            batch = x.shape[0]
            if batch < 2:
                raise ValueError(f"batch_norm needs at least 2 samples per training batch, got {batch}")
            mean = x.mean(axis=0)
            xc = x - mean
            var = np.mean(xc * xc, axis=0)
            m = self.momentum
            running_mean, running_var = self.buffers["running_mean"], self.buffers["running_var"]
            running_mean *= 1 - m
            running_mean += m * mean
            running_var *= 1 - m
            running_var += (m * batch / (batch - 1)) * var
        else:
            xc = x - self.buffers["running_mean"]
            var = self.buffers["running_var"]
        self.inv_std = 1 / np.sqrt(var + self.eps)
        self.x_hat = xc * self.inv_std
        return self.x_hat * self.params["weight"] + self.params["bias"]

    def backward(self, grad, need_input_grad=True):
        """grad: (batch, n) -> (batch, n). In training the batch statistics depend on every row of x:

        dx = inv_std / B * (B g_hat - sum_b g_hat - x_hat * sum_b (g_hat * x_hat)), g_hat = weight * grad.
        """
        np.sum(grad * self.x_hat, axis=0, out=self.grads["weight"])
        np.sum(grad, axis=0, out=self.grads["bias"])
        if not need_input_grad:
            return None
        g_hat = grad * self.params["weight"]
        if not self.training:
            return g_hat * self.inv_std
        batch = grad.shape[0]
        dx = g_hat * batch
        dx -= g_hat.sum(axis=0)
        dx -= self.x_hat * np.sum(g_hat * self.x_hat, axis=0)
        dx *= self.inv_std / batch
        return dx


@LAYERS.register("layer_norm")
class LayerNorm(Layer):
    """Layer normalization over the feature axis, as torch.nn.LayerNorm(n): (batch, n) -> (batch, n).

    For each row: mean m and biased variance v over its n features ((batch, 1) each),
    x_hat = (x - m) / sqrt(v + eps), y = weight * x_hat + bias (weight, bias: (n,), init 1, 0).
    The same at training and eval time. Keeps x_hat (batch, n) and 1 / sqrt(v + eps) (batch, 1).
    """

    output_reusable = True  # a new array; backward keeps what it needs elsewhere

    def __init__(self, *, eps: Annotated[float, Range(gt=0)] = 1e-5):
        super().__init__()
        self.eps = eps

    def setup(self, in_features, dtype, rng, init, init_scale):
        self.params = {"weight": np.ones(in_features, dtype=dtype), "bias": np.zeros(in_features, dtype=dtype)}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        return in_features

    def forward(self, x, training):
        xc = x - x.mean(axis=1, keepdims=True)
        var = np.mean(xc * xc, axis=1, keepdims=True)
        self.inv_std = 1 / np.sqrt(var + self.eps)
        self.x_hat = xc * self.inv_std
        return self.x_hat * self.params["weight"] + self.params["bias"]

    def backward(self, grad, need_input_grad=True):
        """grad: (batch, n) -> (batch, n); row by row, as batch_norm's backward with the axes swapped:

        dx = inv_std / n * (n g_hat - sum_j g_hat - x_hat * sum_j (g_hat * x_hat)), g_hat = weight * grad.
        """
        np.sum(grad * self.x_hat, axis=0, out=self.grads["weight"])
        np.sum(grad, axis=0, out=self.grads["bias"])
        if not need_input_grad:
            return None
        g_hat = grad * self.params["weight"]
        n = grad.shape[1]
        dx = g_hat * n
        dx -= g_hat.sum(axis=1, keepdims=True)
        dx -= self.x_hat * np.sum(g_hat * self.x_hat, axis=1, keepdims=True)
        dx *= self.inv_std / n
        return dx
