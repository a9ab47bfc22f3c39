"""Affine maps and shape changes: linear, identity, flatten."""

from __future__ import annotations

import math
from typing import Annotated, Literal

import numpy as np

from ..graph import torch_args
from ..init import INITIALIZERS, init_weight
from ..registry import Range
from .base import LAYERS, Layer

InitName = Literal[tuple(INITIALIZERS)]


@LAYERS.register("linear")
class Linear(Layer):
    """Affine map of the last axis, y = x @ W + b.

    x: (batch, ..., in), W: (in, units), b: (units,) -> y: (batch, ..., units). Keeps x for
    backward. (torch's nn.Linear stores W transposed, as (units, in).) `init` / `init_scale`
    override the model-wide initializer for this layer. Weight decay applies to W, not to b.
    """

    decayed = ("weight",)
    width_option = "units"

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

    def setup(self, in_shape, dtype, rng, init, init_scale):
        name = self.init or init
        scale = self.init_scale if self.init_scale is not None else init_scale
        fan_in = in_shape[-1]
        self._add_params(
            dtype, weight=init_weight(name, fan_in, self.units, rng, scale, dtype), bias=np.zeros(self.units, dtype)
        )
        return (*in_shape[:-1], self.units)

    def forward(self, x, training):
        weight = self.params["weight"]
        x2 = x.reshape(-1, x.shape[-1])  # the leading axes as rows (a view)
        self.x = x2
        y = np.matmul(x2, weight, out=self.empty("y", (x2.shape[0], self.units), np.result_type(x, weight)))
        y += self.params["bias"]
        return y if x.ndim == 2 else y.reshape(*x.shape[:-1], self.units)

    def backward(self, grad, need_input_grad=True):
        """grad: (batch, ..., units) -> (batch, ..., in); dW = x.T @ grad, db = grad summed over all rows."""
        g2 = grad.reshape(-1, self.units)
        np.matmul(self.x.T, g2, out=self.grads["weight"])
        # The sum over rows as a matrix-vector product: several times faster than np.sum for these shapes.
        np.matmul(self.arena.ones(g2.shape[0], g2.dtype), g2, out=self.grads["bias"])
        if not need_input_grad:
            return None
        weight = self.params["weight"]
        dx = np.matmul(g2, weight.T, out=self.empty("dx", self.x.shape, np.result_type(grad, weight)))
        return dx if grad.ndim == 2 else dx.reshape(*grad.shape[:-1], weight.shape[0])

    def to_graph(self, graph, x):
        """MatMul(x, W) + b over the last axis (any leading axes)."""
        y = graph.node("MatMul", [x, graph.constant(self.params["weight"], "weight")])
        return graph.node("Add", [y, graph.constant(self.params["bias"], "bias")])

    def torch_module(self):
        return f"nn.Linear({torch_args(self.params['weight'].shape[0], self.units)})"

    def torch_state(self):
        """torch's nn.Linear keeps W as (units, in): the transpose of nntrain's (in, units)."""
        return {"weight": self.params["weight"].T, "bias": self.params["bias"]}


@LAYERS.register("identity")
class Identity(Layer):
    """y = x: a linear output for regression."""

    def forward(self, x, training):
        return x

    def backward(self, grad, need_input_grad=True):
        return grad

    def to_graph(self, graph, x):
        return x

    def torch_module(self):
        return "nn.Identity()"


@LAYERS.register("flatten")
class Flatten(Layer):
    """(batch, *shape) -> (batch, prod(shape)), in C order (torch's nn.Flatten): a view, no copy."""

    def setup(self, in_shape, dtype, rng, init, init_scale):
        self.in_shape = tuple(in_shape)
        return (math.prod(in_shape),)

    def out_lengths(self, lengths):
        return None  # no time axis left

    def forward(self, x, training):
        return x.reshape(len(x), -1)

    def backward(self, grad, need_input_grad=True):
        return grad.reshape(len(grad), *self.in_shape) if need_input_grad else None

    def to_graph(self, graph, x):
        return graph.node("Flatten", [x], axis=1)

    def lengths_to_graph(self, graph, lengths):
        return None

    def torch_module(self):
        return "nn.Flatten()"
