"""Regularizing layers that are random at training time and the identity at evaluation."""

from __future__ import annotations

from typing import Annotated

import numpy as np

from ..registry import Range
from .base import LAYERS, Layer


@LAYERS.register("dropout")
class Dropout(Layer):
    """Inverted dropout, elementwise on any shape.

    Training: each unit is kept with probability 1 - p and scaled by 1 / (1 - p), so E[y] = x;
    the mask (already scaled, x's shape) is kept for backward (dL/dx = mask * g). Eval: the
    identity. Masks are drawn from `self.rng` (the network's generator).
    """

    random = True

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
        return np.multiply(x, self.mask, out=self.empty("y", x.shape, x.dtype))

    def backward(self, grad, need_input_grad=True):
        if self.mask is None:
            return grad
        return np.multiply(grad, self.mask, out=self.empty("dx", grad.shape, grad.dtype))

    def to_graph(self, graph, x):
        return x  # the identity at evaluation

    def torch_module(self):
        return f"nn.Dropout(p={float(self.p)!r})"


@LAYERS.register("gaussian_noise")
class GaussianNoise(Layer):
    """y = x + N(0, std^2) noise at training time, y = x at eval, elementwise on any shape.

    The noise does not depend on x, so dL/dx = dL/dy. Drawn from `self.rng` in float64, then
    cast to x's dtype (float32 and float64 runs see the same noise, rounded).
    """

    random = True

    def __init__(self, *, std: Annotated[float, Range(ge=0)] = 0.1):
        super().__init__()
        self.std = std

    def forward(self, x, training):
        if not training or self.std == 0:
            return x
        noise = self._generator().standard_normal(x.shape)
        noise *= self.std
        return np.add(x, noise.astype(x.dtype, copy=False), out=self.empty("y", x.shape, x.dtype))

    def backward(self, grad, need_input_grad=True):
        return grad

    def to_graph(self, graph, x):
        return x  # the identity at evaluation

    def torch_module(self):
        return "nn.Identity()"  # torch has no noise module; at evaluation it is the identity
