"""Activations: elementwise maps of any shape, and softmax over the last axis."""

from __future__ import annotations

from typing import Annotated

import numpy as np

from ..graph import torch_args
from ..registry import Range
from .base import LAYERS, Layer


@LAYERS.register("sigmoid")
class Sigmoid(Layer):
    """Logistic function 1 / (1 + e^-x), elementwise. Keeps its output y; dy/dx = y (1 - y)."""

    # There the local gradient y (1 - y) is below ~0.01 (diagnostics).
    saturates = (0.01, 0.99)

    def forward(self, x, training):
        # 0.5 (1 + tanh(x / 2)) is the logistic function without overflow for large |x|.
        y = np.multiply(x, 0.5, out=self.empty("y", x.shape, x.dtype))
        np.tanh(y, out=y)
        y += 1
        y *= 0.5
        self.y = y
        return y

    def backward(self, grad, need_input_grad=True):
        dx = np.multiply(grad, self.y, out=self.empty("dx", grad.shape, np.result_type(grad, self.y)))
        dx *= 1 - self.y
        return dx

    def to_graph(self, graph, x):
        return graph.node("Sigmoid", [x])

    def torch_module(self):
        return "nn.Sigmoid()"


@LAYERS.register("tanh")
class Tanh(Layer):
    """Hyperbolic tangent, elementwise. Keeps its output y; dy/dx = 1 - y^2."""

    saturates = (-0.99, 0.99)  # |y| > 0.99: 1 - y^2 < 0.02

    def forward(self, x, training):
        self.y = np.tanh(x, out=self.empty("y", x.shape, x.dtype))
        return self.y

    def backward(self, grad, need_input_grad=True):
        dx = np.multiply(self.y, self.y, out=self.empty("dx", grad.shape, np.result_type(grad, self.y)))
        np.subtract(1, dx, out=dx)
        dx *= grad
        return dx

    def to_graph(self, graph, x):
        return graph.node("Tanh", [x])

    def torch_module(self):
        return "nn.Tanh()"


@LAYERS.register("relu")
class ReLU(Layer):
    """max(x, 0), elementwise. Keeps the mask x > 0."""

    dies = "zero"

    def forward(self, x, training):
        self.mask = np.greater(x, 0, out=self.empty("mask", x.shape, np.bool_))
        # np.maximum, not a where: NaN stays NaN; the arena picks the fastest zero for this size.
        return np.maximum(x, self.arena.zero(x.shape, x.dtype), out=self.empty("y", x.shape, x.dtype))

    def backward(self, grad, need_input_grad=True):
        return np.multiply(grad, self.mask, out=self.empty("dx", grad.shape, grad.dtype))

    def kinks(self):
        return self.mask

    def to_graph(self, graph, x):
        return graph.node("Relu", [x])

    def torch_module(self):
        return "nn.ReLU()"


@LAYERS.register("leaky_relu")
class LeakyReLU(Layer):
    """x for x > 0, slope * x otherwise, elementwise. Keeps the mask x > 0."""

    dies = "leak"

    def __init__(self, *, slope: Annotated[float, Range(ge=0)] = 0.01):
        super().__init__()
        self.slope = slope

    def forward(self, x, training):
        self.mask = np.greater(x, 0, out=self.empty("mask", x.shape, np.bool_))
        y = np.multiply(x, x.dtype.type(self.slope), out=self.empty("y", x.shape, x.dtype))
        np.copyto(y, x, where=self.mask)
        return y

    def backward(self, grad, need_input_grad=True):
        dx = np.multiply(grad, grad.dtype.type(self.slope), out=self.empty("dx", grad.shape, grad.dtype))
        np.copyto(dx, grad, where=self.mask)
        return dx

    def kinks(self):
        return self.mask

    def to_graph(self, graph, x):
        return graph.node("LeakyRelu", [x], alpha=float(self.slope))

    def torch_module(self):
        return f"nn.LeakyReLU({torch_args(float(self.slope))})"


@LAYERS.register("softmax")
class Softmax(Layer):
    """Softmax over the last axis: (..., k) -> (..., k) probabilities. Keeps its output y.

    Before `cross_entropy` the network fuses it into the loss instead (stable log-sum-exp).
    """

    def forward(self, x, training):
        y = np.subtract(x, x.max(axis=-1, keepdims=True), out=self.empty("y", x.shape, x.dtype))
        np.exp(y, out=y)
        y /= y.sum(axis=-1, keepdims=True)
        self.y = y
        return y

    def backward(self, grad, need_input_grad=True):
        # Jacobian-vector product of softmax: y * (g - <g, y>) over the last axis.
        dot = np.sum(grad * self.y, axis=-1, keepdims=True)
        dx = np.subtract(grad, dot, out=self.empty("dx", grad.shape, np.result_type(grad, self.y)))
        dx *= self.y
        return dx

    def to_graph(self, graph, x):
        return graph.node("Softmax", [x], axis=-1)

    def torch_module(self):
        return "nn.Softmax(dim=-1)"
