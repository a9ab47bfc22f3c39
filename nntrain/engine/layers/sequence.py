"""Layers over the time axis of sequences: conv1d, max_pool1d, avg_pool1d (as torch.nn's) and time_pool.

A sample is (T, C): T steps of C features (channels), time on the batch's axis 1 and the
features last, as Keras' Conv1D has them, so that `linear` acts on every step. Weights keep
torch's layouts (conv1d's is (filters, C, k), as torch.nn.Conv1d stores it): a comparison
with torch permutes (N, T, C) <-> (N, C, T) and nothing else.

How conv1d is computed (im2col, as conv2d): the k taps of every output step are read from
the zero-padded input through one strided view (N, OT, k, C) and copied into `cols`, a
(N OT, k C) matrix with a row per output step; the convolution is one product with the
weight arranged as (k C, filters), which gives (N OT, filters), already the output's layout.
Backward: dW = cols.T @ g and dcols = g @ W.T (one product each), then col2im adds each
tap's (N, OT, C) slice of dcols back onto the input steps it read: k strided additions.

The pools stack the k offsets of their windows (offset j of every window is one strided view
of the padded input) into a contiguous (k, N, OT, C) array, and take the max or the sum over
its first axis in k - 1 whole-array operations; backward adds each offset's share of the
gradient back through the same views.

Sequences of different lengths (`uses_lengths`, see `base`): with `self.lengths` (int64
(N,), each in 1..T), steps t >= L of a sample are padding. conv1d and the 1-D pools compute
as if each sequence ended at its L: the padded steps of a copy of the input are set to what
the layer's own padding holds (0 for conv1d and avg, -inf for max) — the input itself is never
written — so padded steps get exactly 0 gradient and their values change nothing. The real
length of each output is the output-size formula applied to L (at least 1: `out_lengths`);
output steps beyond it are padding too. conv1d's and avg_pool1d's hold what the masked input
gives there (conv1d's bias, for instance); max_pool1d's hold 0 and pass no gradient back (a
window of padding alone would be -inf). time_pool reduces each sample over its L real steps.
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..graph import torch_args
from ..init import init_weight
from ..registry import Range
from .base import LAYERS, Layer, ShapeError, need_ndim
from .conv import MAX_SIZE, crop, pad_into
from .dense import InitName

SEQUENCE = "(steps, channels)"

# Options of one axis: a number in a range (the config checks it; the constructor checks it again).
Steps = Annotated[int, Range(ge=1, le=MAX_SIZE)]
Pad = Annotated[int, Range(ge=0, le=MAX_SIZE)]


def single(layer: str, option: str, value, minimum: int) -> int:
    """`value` as an int; ValueError unless it is an integer (not a bool) in minimum..MAX_SIZE."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{layer}: {option} must be an integer (one number: the layer acts along time), got {value!r}")
    if not minimum <= value <= MAX_SIZE:
        raise ValueError(f"{layer}: {option} must be between {minimum} and {MAX_SIZE}, got {value!r}")
    return int(value)


def output_steps(layer: Layer, in_shape, kernel: int, stride: int, dilation: int, pads: tuple[int, int]) -> int:
    """OT = floor((T + pad_left + pad_right - dilation (kernel - 1) - 1) / stride) + 1.

    ShapeError unless samples are (steps, channels) with room for the kernel.
    """
    need_ndim(layer, in_shape, 2, SEQUENCE)  # the layers' sample_ndim
    steps = in_shape[0]
    padded, span = steps + pads[0] + pads[1], dilation * (kernel - 1) + 1
    if padded < span:
        with_padding = f" ({padded} with its padding)" if any(pads) else ""
        spread = f" (dilation {dilation})" if dilation != 1 else ""
        raise ShapeError(
            f"{layer.name}: a kernel of {kernel} steps{spread} spans {span} steps, longer than the {steps} steps of "
            f"its input shape {tuple(in_shape)}{with_padding}"
        )
    return (padded - span) // stride + 1


class _OverTime(Layer):
    """What the windowed layers over time share: padding, the masks of variable lengths, col2im."""

    sample_ndim = 2
    uses_lengths = True
    fill = 0.0  # what the padding holds (and the padded steps of a shorter sequence)
    kernel = stride = dilation = 1
    pads = (0, 0)

    def _setup_steps(self, in_shape) -> None:
        self.out_steps = output_steps(self, in_shape, self.kernel, self.stride, self.dilation, self.pads)
        self.steps, self.channels = in_shape
        self.padded_steps = self.steps + self.pads[0] + self.pads[1]
        self.span = self.dilation * (self.kernel - 1) + 1

    def out_lengths(self, lengths):
        """The output-size formula applied to each real length, at least 1."""
        steps = (lengths + (self.pads[0] + self.pads[1] - self.span)) // self.stride + 1
        return np.maximum(steps, 1)

    def _mask(self, n: int) -> np.ndarray | None:
        """(N, T) True at the padded steps of the batch's sequences, None when every one is whole."""
        lengths = self.lengths
        if lengths is None or (lengths >= self.steps).all():
            return None
        return np.greater_equal(self.arena.arange(self.steps), lengths[:, None], out=self.empty("mask", (n, self.steps), np.bool_))

    def _out_mask(self, n: int) -> np.ndarray:
        """(N, OT) True at the output's padded steps (from `out_lengths`)."""
        out = self.out_lengths(self.lengths)
        return np.greater_equal(self.arena.arange(self.out_steps), out[:, None], out=self.empty("out_mask", (n, self.out_steps), np.bool_))

    def _padded(self, x: np.ndarray, mask, dtype) -> np.ndarray:
        """x with `pads` steps of `fill` before and after and its padded steps (mask) set to `fill`: a copy,
        or x itself where it needs none of that and no cast."""
        if not (any(self.pads) or mask is not None or x.dtype != dtype):
            return x
        left, right = self.pads
        padded = pad_into(self, "padded", x[:, None], (left, right, 0, 0), self.fill, dtype)[:, 0]
        if mask is not None:
            np.copyto(padded[:, left : left + self.steps], self.fill, where=mask[:, :, None])
        return padded

    def _tap(self, padded: np.ndarray, j: int) -> np.ndarray:
        """(N, OT, C) view of the steps tap (offset) j of every window reads: padded[:, j d + t s] for t < OT."""
        start = j * self.dilation
        return padded[:, start : start + self.stride * (self.out_steps - 1) + 1 : self.stride]

    # --- export: the (N, T, C) sequences permuted to ONNX's (N, C, T) around one 1-D operator ---------

    def lengths_to_graph(self, graph, lengths):
        """max((L + pad_left + pad_right - span) // stride + 1, 1), as `out_lengths` (the numerator's sign does
        not matter: a negative one gives at most 0 either way, and the max makes it 1)."""
        shifted = graph.node("Add", [lengths, graph.ints(self.pads[0] + self.pads[1] - self.span, "shift")])
        steps = graph.node("Add", [graph.node("Div", [shifted, graph.ints(self.stride, "stride")]), graph.ints(1, "one")])
        return graph.node("Max", [steps, graph.ints(1, "one")])

    def _onnx_1d(self, graph, x: str, op_type: str, inputs=(), **attributes) -> str:
        """x (N, T, C), its padded steps set to `fill` -> op_type over (N, C, T) -> back to (N, OT, C')."""
        x = graph.fill_padding(x, self.steps, self.fill)
        y = graph.node(
            op_type, [graph.transpose(x, (0, 2, 1)), *inputs], kernel_shape=[self.kernel], strides=[self.stride],
            pads=list(self.pads), **attributes,
        )
        return graph.transpose(y, (0, 2, 1))

    def _input_grad(self, add_tap, n: int, dtype, mask) -> np.ndarray:
        """dL/dx (N, T, C): `add_tap(j, view)` adds tap j's share into its (N, OT, C) view of the padded
        gradient (zeroed first); then the padding is dropped and the padded steps of shorter sequences set to 0."""
        dpadded = self.empty("grad_padded", (n, self.padded_steps, self.channels), dtype)
        dpadded.fill(0)
        for j in range(self.kernel):
            add_tap(j, self._tap(dpadded, j))
        left, right = self.pads
        dx = crop(self, "dx", dpadded[:, None], (left, right, 0, 0))[:, 0]
        if mask is not None:
            np.copyto(dx, 0, where=mask[:, :, None])
        return dx


@LAYERS.register("conv1d")
class Conv1d(_OverTime):
    """1-D cross-correlation over time, as torch.nn.Conv1d(C, filters, kernel_size, stride, padding, dilation, bias).

    x: (N, T, C) -> y: (N, OT, filters), with zero padding;
    y[n, t, o] = b[o] + sum_{c, j} W[o, c, j] xpad[n, t s + j d, c],
    OT = floor((T + pad_left + pad_right - d (k - 1) - 1) / s) + 1. W: (filters, C, k) as torch
    stores it, b: (filters,). padding "same" (stride 1 only) pads d (k - 1) in total, the odd
    one on the right as torch does; "valid" is padding 0. `init` / `init_scale` override the
    model-wide initializer (fan_in = C k, fan_out = filters k, as torch counts them); b starts
    at 0. Weight decay applies to W. With `lengths`, the padded steps of each sequence count as
    zeros (see the module docstring). Keeps the im2col matrix of its input for backward.
    """

    decayed = ("weight",)
    width_option = "filters"

    def __init__(
        self,
        *,
        filters: Annotated[int, Range(ge=1, le=1_000_000)],
        kernel_size: Steps,
        stride: Steps = 1,
        padding: Pad | Literal["same", "valid"] = 0,
        dilation: Steps = 1,
        bias: bool = True,
        init: InitName | None = None,
        init_scale: Annotated[float, Range(gt=0)] | None = None,
    ):
        super().__init__()
        self.filters = filters
        self.kernel = single(self.name, "kernel_size", kernel_size, 1)
        self.stride = single(self.name, "stride", stride, 1)
        self.dilation = single(self.name, "dilation", dilation, 1)
        if padding == "same":
            if self.stride != 1:
                raise ValueError(f"{self.name}: padding 'same' needs stride 1 (as in torch), got stride {stride!r}")
            total = self.dilation * (self.kernel - 1)
            self.pads = (total // 2, total - total // 2)
        elif padding == "valid":
            self.pads = (0, 0)
        elif isinstance(padding, str):
            raise ValueError(f"{self.name}: padding must be an integer, 'same' or 'valid', got {padding!r}")
        else:
            pad = single(self.name, "padding", padding, 0)
            self.pads = (pad, pad)
        self.bias = bias
        self.init = init
        self.init_scale = init_scale
        self.cols = self.weight_matrix = self.mask = None

    def setup(self, in_shape, dtype, rng, init, init_scale):
        self._setup_steps(in_shape)
        c, k = self.channels, self.kernel
        self.taps = c * k
        name = self.init or init
        scale = self.init_scale if self.init_scale is not None else init_scale
        shape = (self.filters, c, k)
        params = {"weight": init_weight(name, self.taps, self.filters * k, rng, scale, dtype, shape=shape)}
        if self.bias:
            params["bias"] = np.zeros(self.filters, dtype)
        self._add_params(dtype, **params)
        return (self.out_steps, self.filters)

    def forward(self, x, training):
        weight = self.params["weight"]
        dtype = np.result_type(x, weight)
        n = len(x)
        # The weight as (k C, filters): row (j, c) holds W[:, c, j], the order of a row of cols.
        self.weight_matrix = wm = self.empty("weight_matrix", (self.taps, self.filters), dtype)
        np.copyto(wm.reshape(self.kernel, self.channels, self.filters), weight.transpose(2, 1, 0))
        self.mask = mask = self._mask(n)
        padded = self._padded(x, mask, dtype)
        sn, st, sc = padded.strides
        windows = as_strided(
            padded, (n, self.out_steps, self.kernel, self.channels), (sn, st * self.stride, st * self.dilation, sc), writeable=False
        )
        cols = self.empty("cols", (n * self.out_steps, self.taps), dtype)
        np.copyto(cols.reshape(windows.shape), windows)
        self.cols = cols
        y = np.matmul(cols, wm, out=self.empty("y", (n * self.out_steps, self.filters), dtype))
        if self.bias:
            np.add(y, self.params["bias"], out=y)
        return y.reshape(n, self.out_steps, self.filters)

    def backward(self, grad, need_input_grad=True):
        """grad: (N, OT, filters) -> (N, T, C): dW = cols.T @ g, db = g summed over rows, dx by col2im of g @ W.T."""
        n = len(grad)
        dtype = np.result_type(grad, self.weight_matrix)
        g = grad.reshape(n * self.out_steps, self.filters)
        dwm = np.matmul(self.cols.T, g, out=self.empty("dweight_matrix", (self.taps, self.filters), dtype))
        np.copyto(self.grads["weight"], dwm.reshape(self.kernel, self.channels, self.filters).transpose(2, 1, 0))
        if self.bias:
            # The sum over rows as a matrix-vector product with ones: faster than np.sum.
            np.matmul(self.arena.ones(len(g), dtype), g, out=self.grads["bias"])
        if not need_input_grad:
            return None
        dcols = np.matmul(g, self.weight_matrix.T, out=self.empty("grad_cols", self.cols.shape, dtype))
        dcols = dcols.reshape(n, self.out_steps, self.kernel, self.channels)
        return self._input_grad(lambda j, view: np.add(view, dcols[:, :, j], out=view), n, dtype, self.mask)

    def to_graph(self, graph, x):
        inputs = [graph.constant(self.params["weight"], "weight")]
        if self.bias:
            inputs.append(graph.constant(self.params["bias"], "bias"))
        return self._onnx_1d(graph, x, "Conv", inputs, dilations=[self.dilation])

    def torch_module(self):
        left, right = self.pads
        padding = left if left == right else "same"  # torch's "same" pads the odd one on the right, as nntrain's
        return "over_steps(nn.Conv1d)(" + torch_args(
            self.channels, self.filters, self.kernel, stride=self.stride if self.stride != 1 else None,
            padding=padding or None, dilation=self.dilation if self.dilation != 1 else None,
            bias=None if self.bias else False,
        ) + ")"

    def torch_state(self):
        return dict(self.params)


class _Pool1d(_OverTime):
    """Windows of kernel_size steps with stride (default: kernel_size) and padding on both ends (default 0)."""

    def __init__(self, kernel_size, stride, padding):
        super().__init__()
        self.kernel = single(self.name, "kernel_size", kernel_size, 1)
        self.stride = self.kernel if stride is None else single(self.name, "stride", stride, 1)
        pad = single(self.name, "padding", padding, 0)
        if 2 * pad > self.kernel:  # torch's rule: no window is all padding
            raise ValueError(
                f"{self.name}: padding must be at most half the kernel size (as in torch), got padding {padding!r} for "
                f"kernel_size {kernel_size!r}"
            )
        self.pads = (pad, pad)
        self.mask = None

    def setup(self, in_shape, dtype, rng, init, init_scale):
        self._setup_steps(in_shape)
        # Each input step in at most one window: backward may write each offset's share instead of adding it.
        self.disjoint = self.stride >= self.kernel
        return (self.out_steps, self.channels)

    def _stacked(self, x: np.ndarray) -> np.ndarray:
        """The windows of x (padded, and masked, with `fill`) as a contiguous (k, N, OT, C) array."""
        n = len(x)
        self.mask = mask = self._mask(n)
        padded = self._padded(x, mask, x.dtype)
        stacked = self.empty("windows", (self.kernel, n, self.out_steps, self.channels), x.dtype)
        for j in range(self.kernel):
            np.copyto(stacked[j], self._tap(padded, j))
        return stacked

    def _scatter(self, share, n: int, dtype) -> np.ndarray:
        """dL/dx from `share(j, out)`, which writes offset j's (N, OT, C) share of the gradient into `out`."""
        if self.disjoint:
            return self._input_grad(share, n, dtype, self.mask)  # each view's steps are its own: written, not added
        part = self.empty("share", (n, self.out_steps, self.channels), dtype)

        def add(j, view):
            share(j, part)
            np.add(view, part, out=view)

        return self._input_grad(add, n, dtype, self.mask)

    def torch_module(self):
        return f"over_steps(nn.{self.torch_class})(" + torch_args(
            self.kernel, stride=self.stride, padding=self.pads[0] or None
        ) + ")"


@LAYERS.register("max_pool1d")
class MaxPool1d(_Pool1d):
    """Max over windows of steps, as torch.nn.MaxPool1d(kernel_size, stride, padding) (floor mode, no dilation).

    x: (N, T, C) -> y: (N, OT, C), y[n, t, c] = max of x[n, t s - pad + j, c] over j < k;
    OT = floor((T + 2 pad - k) / s) + 1. Padding is -inf, at most half the kernel. Keeps, per
    output, the offset of the window's argmax (the first maximum on ties, as torch); backward
    routes each gradient there, summed where windows overlap. A NaN in a window makes its
    output NaN. With `lengths` the padded steps count as -inf, and the output's own padded
    steps (from `out_lengths` on) hold 0 and pass no gradient back.
    """

    fill = -np.inf
    torch_class = "MaxPool1d"

    def __init__(
        self,
        *,
        kernel_size: Steps,
        stride: Steps | None = None,
        padding: Pad = 0,
    ):
        super().__init__(kernel_size, stride, padding)
        self.argmax_dtype = np.dtype(np.uint8 if self.kernel <= 256 else np.int32)
        self.argmax = self.stacked = self.out_mask = None

    def forward(self, x, training):
        self.stacked = self._stacked(x)
        self.out_mask = None if self.mask is None else self._out_mask(len(x))
        # Only a training forward finds the argmax as it goes (an evaluation finds it if asked, see `_argmax`).
        y, self.argmax = self._max(self.stacked, with_argmax=training)
        if self.out_mask is not None:
            np.copyto(y, 0, where=self.out_mask[:, :, None])
        return y

    def _max(self, stacked: np.ndarray, with_argmax: bool):
        """The max over the window's offsets, (N, OT, C), and (if asked, else None) its first argmax offset."""
        shape = stacked.shape[1:]
        y = self.empty("y", shape, stacked.dtype)
        np.copyto(y, stacked[0])
        argmax = None
        if with_argmax:
            argmax = self.empty("argmax", shape, self.argmax_dtype)
            argmax.fill(0)
            greater = self.empty("greater", shape, np.bool_)
            candidate = self.empty("candidate", shape, self.argmax_dtype)
        for j in range(1, self.kernel):
            if with_argmax:
                # Strictly greater: an equal value later in the window does not take over (torch's first
                # maximum). Offsets grow, so "j where greater, else keep" is max(argmax, j * greater).
                np.greater(stacked[j], y, out=greater)
                np.multiply(greater, self.argmax_dtype.type(j), out=candidate)
                np.maximum(argmax, candidate, out=argmax)
            np.maximum(y, stacked[j], out=y)  # maximum propagates NaN
        if with_argmax and self.out_mask is not None:
            np.copyto(argmax, 0, where=self.out_mask[:, :, None])  # padded outputs: nothing to choose
        return y, argmax

    def _argmax(self) -> np.ndarray:
        if self.argmax is None:  # the last forward was an evaluation
            self.argmax = self._max(self.stacked, with_argmax=True)[1]
        return self.argmax

    def backward(self, grad, need_input_grad=True):
        """grad: (N, OT, C) -> (N, T, C): grad at each window's argmax, 0 elsewhere (summed over windows)."""
        if not need_input_grad:
            return None
        argmax = self._argmax()
        if self.out_mask is not None:
            kept = self.empty("grad_kept", grad.shape, grad.dtype)
            np.copyto(kept, grad)
            np.copyto(kept, 0, where=self.out_mask[:, :, None])
            grad = kept
        chosen = self.empty("chosen", grad.shape, np.bool_)

        def share(j, out):
            np.equal(argmax, self.argmax_dtype.type(j), out=chosen)
            np.multiply(grad, chosen, out=out)

        return self._scatter(share, len(grad), grad.dtype)

    def kinks(self):
        """The argmax offsets: they change where a perturbation makes another entry of a window the largest."""
        return self._argmax()

    def to_graph(self, graph, x):
        """MaxPool (its padding ignored: -inf), the input's padded steps -inf, the output's padded steps 0."""
        y = self._onnx_1d(graph, x, "MaxPool")
        if graph.lengths is None:
            return y
        out_valid = graph.valid(self.lengths_to_graph(graph, graph.lengths), self.out_steps)
        return graph.node("Where", [out_valid, y, graph.constant(np.array(0.0), "zero")])


@LAYERS.register("avg_pool1d")
class AvgPool1d(_Pool1d):
    """Mean over windows of steps, as torch.nn.AvgPool1d(kernel_size, stride, padding) (floor mode, count_include_pad).

    x: (N, T, C) -> y: (N, OT, C), y[n, t, c] = (sum of the window's k steps) / k, zero
    padding counted in the window (torch's default count_include_pad=True). Backward: every
    step of a window gets grad / k, summed over the windows it lies in. With `lengths` the
    padded steps count as zeros, divided by k as the padding is.
    """

    torch_class = "AvgPool1d"

    def __init__(
        self,
        *,
        kernel_size: Steps,
        stride: Steps | None = None,
        padding: Pad = 0,
    ):
        super().__init__(kernel_size, stride, padding)

    def forward(self, x, training):
        stacked = self._stacked(x)
        # Summed offset after offset in the window's order (torch's order), then divided as torch does.
        y = np.add.reduce(stacked, axis=0, out=self.empty("y", stacked.shape[1:], x.dtype))
        np.divide(y, self.kernel, out=y)
        return y

    def backward(self, grad, need_input_grad=True):
        if not need_input_grad:
            return None
        each = np.divide(grad, self.kernel, out=self.empty("each", grad.shape, grad.dtype))
        return self._scatter(lambda j, out: np.copyto(out, each), len(grad), grad.dtype)

    def to_graph(self, graph, x):
        return self._onnx_1d(graph, x, "AveragePool", count_include_pad=1)


TimePoolMode = Literal["last", "mean", "max"]


@LAYERS.register("time_pool")
class TimePool(Layer):
    """Each sequence reduced to one vector over its real steps: (N, T, C) -> (N, C).

    mode "last": x[n, L - 1] (the last real step; torch's output[:, -1] of whole sequences,
    Keras' return_sequences=False); "mean": the sum of the L real steps / L; "max": their max
    (the first maximum on ties; it gets the gradient). L is each sample's length (T when the
    batch has no lengths). Padded steps are never read: their gradient is exactly 0.
    """

    sample_ndim = 2
    uses_lengths = True

    def __init__(self, *, mode: TimePoolMode):
        super().__init__()
        if mode not in ("last", "mean", "max"):
            raise ValueError(f"{self.name}: mode must be 'last', 'mean' or 'max', got {mode!r}")
        self.mode = mode
        self.argmax = self.last = self.mask = self.count = None

    def setup(self, in_shape, dtype, rng, init, init_scale):
        need_ndim(self, in_shape, 2, "(steps, features)")
        self.steps, self.channels = in_shape
        return (self.channels,)

    def out_lengths(self, lengths):
        return None  # no time axis left

    def forward(self, x, training):
        n, steps = len(x), self.steps
        lengths = self.lengths
        if lengths is not None and (lengths >= steps).all():
            lengths = None
        self.lengths_used = lengths
        y = self.empty("y", (n, self.channels), x.dtype)
        if self.mode == "last":
            self.last = lengths - 1 if lengths is not None else np.full(n, steps - 1)
            np.copyto(y, x[self.arena.arange(n), self.last])
            return y
        self.mask = mask = None
        if lengths is not None:
            mask = np.greater_equal(self.arena.arange(steps), lengths[:, None], out=self.empty("mask", (n, steps), np.bool_))
            self.mask = mask
            masked = self.empty("masked", x.shape, x.dtype)  # a copy: the input itself is never written
            np.copyto(masked, x)
            np.copyto(masked, 0 if self.mode == "mean" else -np.inf, where=mask[:, :, None])
            x = masked
        if self.mode == "mean":
            # The sum over steps as a product with ones: faster than np.sum over the middle axis.
            np.matmul(self.arena.ones(steps, x.dtype), x, out=y)
            self.count = self.empty("count", (n, 1), x.dtype)
            np.copyto(self.count, steps if lengths is None else lengths[:, None])
            np.divide(y, self.count, out=y)
            return y
        self.argmax = np.argmax(x, axis=1)  # the first maximum of each feature
        np.copyto(y, np.take_along_axis(x, self.argmax[:, None, :], axis=1)[:, 0])
        return y

    def backward(self, grad, need_input_grad=True):
        """grad: (N, C) -> (N, T, C), nonzero only at the steps the forward read."""
        if not need_input_grad:
            return None
        n = len(grad)
        dx = self.empty("dx", (n, self.steps, self.channels), grad.dtype)
        if self.mode == "mean":
            np.divide(grad[:, None, :], self.count[:, :, None], out=dx)
            if self.mask is not None:
                np.copyto(dx, 0, where=self.mask[:, :, None])
            return dx
        dx.fill(0)
        if self.mode == "last":
            dx[self.arena.arange(n), self.last] = grad
        else:
            np.put_along_axis(dx, self.argmax[:, None, :], grad[:, None, :], axis=1)
        return dx

    def kinks(self):
        """mode max: which step is each feature's maximum (it changes where another step becomes the largest)."""
        return self.argmax if self.mode == "max" else None

    def to_graph(self, graph, x):
        """last: GatherND of step L - 1 per sample; mean: the masked sum / L; max: ReduceMax with padding -inf."""
        lengths, steps = graph.lengths, graph.ints([1], "axes")
        if self.mode == "last":
            if lengths is None:
                return graph.node("Gather", [x, graph.ints(self.steps - 1, "last")], axis=1)
            last = graph.node("Unsqueeze", [graph.node("Sub", [lengths, graph.ints(1, "one")]), graph.ints([1], "axes")])
            return graph.node("GatherND", [x, last], batch_dims=1)
        if self.mode == "max":
            return graph.node("ReduceMax", [graph.fill_padding(x, self.steps, -np.inf), steps], keepdims=0)
        total = graph.node("ReduceSum", [graph.fill_padding(x, self.steps, 0.0), steps], keepdims=0)
        if lengths is None:
            count = graph.constant(np.array(self.steps), "steps")
        else:
            count = graph.node("Unsqueeze", [graph.node("Cast", [lengths], to=graph.dtype), graph.ints([1], "axes")])
        return graph.node("Div", [total, count])

    def lengths_to_graph(self, graph, lengths):
        return None

    def torch_module(self):
        return f"TimePool({self.mode!r})"
