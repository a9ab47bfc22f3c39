"""Normalization: batch_norm (per feature or per channel over the batch) and layer_norm (per sample)."""

from __future__ import annotations

import math
from typing import Annotated

import numpy as np

from ..graph import ExportError, torch_args
from ..registry import Range
from .base import LAYERS, Layer


@LAYERS.register("batch_norm")
class BatchNorm(Layer):
    """Batch normalization, as torch.nn.BatchNorm1d(n) on (batch, n) and BatchNorm2d(c) on (batch, c, h, w).

    Axis 1 holds the features (or channels), C of them; statistics are taken over every other
    axis, B values per feature (B = batch, or batch * h * w). Sequences (batch, steps, C) have
    their features last: statistics per feature over the batch and the steps, B = batch * steps
    (torch's BatchNorm1d(C) on the permuted (batch, C, steps)). Training: mean m and biased
    variance v per feature (both (C,)), x_hat = (x - m) / sqrt(v + eps),
    y = weight * x_hat + bias (weight, bias: (C,), init 1, 0). The state running_mean (init 0)
    and running_var (init 1), both (C,), move towards the batch statistics:
    r = (1 - momentum) r + momentum s, with the unbiased variance v * B / (B - 1) for
    running_var, so B must be at least 2. Eval: the running statistics replace m and v.
    Keeps x_hat and 1 / sqrt(v + eps).
    """

    batch_statistics = True
    min_batch = 2  # per (batch, n) input; an image's h * w values already give 2 at batch 1
    scales = ("weight",)

    def __init__(
        self,
        *,
        momentum: Annotated[float, Range(ge=0, le=1)] = 0.1,
        eps: Annotated[float, Range(gt=0)] = 1e-5,
    ):
        super().__init__()
        self.momentum = momentum
        self.eps = eps

    def setup(self, in_shape, dtype, rng, init, init_scale):
        sequence = len(in_shape) == 2  # (steps, features): the features are the last axis
        c = in_shape[-1] if sequence else in_shape[0]
        self.channels = c
        self._add_params(dtype, weight=np.ones(c), bias=np.zeros(c))
        self.state = {"running_mean": np.zeros(c, dtype=dtype), "running_var": np.ones(c, dtype=dtype)}
        if sequence:  # statistics over the batch and the steps; (C,) broadcasts over both
            self.axes, self.view = (0, 1), (c,)
        else:  # over axis 0 and the sample axes after the first; (C, 1, 1) broadcasts over (h, w)
            self.axes = (0, *range(2, len(in_shape) + 1))
            self.view = (c, *(1,) * (len(in_shape) - 1))
        self.min_batch = 2 if math.prod(in_shape) == c else 1
        return in_shape

    def forward(self, x, training):
        self.training = training
        view = self.view
        if training:
            count = x.size // self.channels
            if count < 2:
                raise ValueError(f"batch_norm needs at least 2 values per feature in a training batch, got {count}")
            mean = x.mean(axis=self.axes)
            xc = x - mean.reshape(view)
            var = np.mean(xc * xc, axis=self.axes)
            m = self.momentum
            running_mean, running_var = self.state["running_mean"], self.state["running_var"]
            running_mean *= 1 - m
            running_mean += m * mean
            running_var *= 1 - m
            running_var += (m * count / (count - 1)) * var
        else:
            xc = x - self.state["running_mean"].reshape(view)
            var = self.state["running_var"]
        self.inv_std = (1 / np.sqrt(var + self.eps)).reshape(view)
        self.x_hat = xc * self.inv_std
        return self.x_hat * self.params["weight"].reshape(view) + self.params["bias"].reshape(view)

    def backward(self, grad, need_input_grad=True):
        """grad: x's shape. In training the batch statistics depend on every value of x:

        dx = inv_std / B * (B g_hat - sum g_hat - x_hat * sum (g_hat * x_hat)), g_hat = weight * grad,
        the sums over the B values of each feature.
        """
        axes, view = self.axes, self.view
        np.sum(grad * self.x_hat, axis=axes, out=self.grads["weight"])
        np.sum(grad, axis=axes, out=self.grads["bias"])
        if not need_input_grad:
            return None
        g_hat = grad * self.params["weight"].reshape(view)
        if not self.training:
            return g_hat * self.inv_std
        count = grad.size // self.channels
        dx = g_hat * count
        dx -= g_hat.sum(axis=axes).reshape(view)
        dx -= self.x_hat * np.sum(g_hat * self.x_hat, axis=axes).reshape(view)
        dx *= self.inv_std / count
        return dx

    def to_graph(self, graph, x):
        """Eval: (x - running_mean) * inv_std * weight + bias, inv_std = 1 / sqrt(running_var + eps), as forward computes it."""
        view, dtype = self.view, self.params["weight"].dtype
        inv_std = (1 / np.sqrt(self.state["running_var"] + self.eps)).astype(dtype, copy=False)
        xc = graph.node("Sub", [x, graph.constant(self.state["running_mean"].reshape(view), "running_mean")])
        x_hat = graph.node("Mul", [xc, graph.constant(inv_std.reshape(view), "inv_std")])
        y = graph.node("Mul", [x_hat, graph.constant(self.params["weight"].reshape(view), "weight")])
        return graph.node("Add", [y, graph.constant(self.params["bias"].reshape(view), "bias")])

    def torch_module(self):
        """BatchNorm1d on (N, C), BatchNorm2d on images; on sequences (N, T, C) a BatchNorm1d over (N, C, T)."""
        args = torch_args(self.channels, eps=float(self.eps), momentum=float(self.momentum))
        if self.axes == (0, 1):  # sequences, features last
            return f"over_steps(nn.BatchNorm1d)({args})"
        kind = {1: "BatchNorm1d", 3: "BatchNorm2d", 4: "BatchNorm3d"}.get(len(self.view))
        if kind is None:
            raise ExportError(f"a batch_norm over samples of {len(self.view)} axes has no torch module")
        return f"nn.{kind}({args})"

    def torch_state(self):
        """weight, bias, running_mean, running_var and num_batches_tracked (0: nntrain does not count them;
        torch reads it only with momentum=None)."""
        return {**self.params, **self.state, "num_batches_tracked": np.array(0, dtype=np.int64)}


@LAYERS.register("layer_norm")
class LayerNorm(Layer):
    """Layer normalization over the last axis, as torch.nn.LayerNorm(n): (..., n) -> (..., n).

    For each sample (each position of the other axes): mean m and biased variance v over its n
    features, x_hat = (x - m) / sqrt(v + eps), y = weight * x_hat + bias (weight, bias: (n,),
    init 1, 0). The same at training and eval time. Keeps x_hat and 1 / sqrt(v + eps).
    """

    scales = ("weight",)

    def __init__(self, *, eps: Annotated[float, Range(gt=0)] = 1e-5):
        super().__init__()
        self.eps = eps

    def setup(self, in_shape, dtype, rng, init, init_scale):
        n = in_shape[-1]
        self._add_params(dtype, weight=np.ones(n), bias=np.zeros(n))
        return in_shape

    def forward(self, x, training):
        xc = x - x.mean(axis=-1, keepdims=True)
        var = np.mean(xc * xc, axis=-1, keepdims=True)
        self.inv_std = 1 / np.sqrt(var + self.eps)
        self.x_hat = xc * self.inv_std
        return self.x_hat * self.params["weight"] + self.params["bias"]

    def backward(self, grad, need_input_grad=True):
        """grad: (..., n) -> (..., n); per sample, as batch_norm's backward with the axes swapped:

        dx = inv_std / n * (n g_hat - sum_j g_hat - x_hat * sum_j (g_hat * x_hat)), g_hat = weight * grad.
        """
        rows = tuple(range(grad.ndim - 1))
        np.sum(grad * self.x_hat, axis=rows, out=self.grads["weight"])
        np.sum(grad, axis=rows, out=self.grads["bias"])
        if not need_input_grad:
            return None
        g_hat = grad * self.params["weight"]
        n = grad.shape[-1]
        dx = g_hat * n
        dx -= g_hat.sum(axis=-1, keepdims=True)
        dx -= self.x_hat * np.sum(g_hat * self.x_hat, axis=-1, keepdims=True)
        dx *= self.inv_std / n
        return dx

    def to_graph(self, graph, x):
        """As forward: xc = x - mean, inv_std = 1 / sqrt(mean(xc^2) + eps), y = xc inv_std weight + bias."""
        last = graph.ints([-1], "axes")
        xc = graph.node("Sub", [x, graph.node("ReduceMean", [x, last], keepdims=1)])
        var = graph.node("ReduceMean", [graph.node("Mul", [xc, xc]), last], keepdims=1)
        std = graph.node("Sqrt", [graph.node("Add", [var, graph.constant(np.array(self.eps), "eps")])])
        x_hat = graph.node("Mul", [xc, graph.node("Reciprocal", [std])])
        y = graph.node("Mul", [x_hat, graph.constant(self.params["weight"], "weight")])
        return graph.node("Add", [y, graph.constant(self.params["bias"], "bias")])

    def torch_module(self):
        return f"nn.LayerNorm({torch_args(len(self.params['weight']), eps=float(self.eps))})"

    def torch_state(self):
        return dict(self.params)
