"""Pooling over (batch, channels, height, width): max_pool2d, avg_pool2d (as torch.nn's) and global_avg_pool.

The windowed pools work on the offsets of a window, not on windows: offset (i, j) of every
window is one strided view of the (padded) input, xpad[:, :, i::sh, j::sw] cut to (OH, OW).
One copy stacks the kh kw views into a contiguous (kh kw, N, C, OH, OW) array (numpy is
several times faster on contiguous operands than on views with a stride of 2), and the max or
the sum over the window is then kh kw - 1 whole-array operations. When windows neither
overlap nor are padded (stride >= kernel) every input pixel lies in at most one window, and
backward writes each offset's gradient into the input gradient instead of adding it; for
windows side by side (stride = kernel, the common 2x2 pool) it does so in two steps that both
run along long stretches of memory (see `_Pool2d._scatter`). Overlapping windows add offset
by offset.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..graph import torch_args
from .base import LAYERS, Layer, need_ndim
from .conv import IMAGE, Padding, Size, crop, output_size, pad_into, pair


class _Pool2d(Layer):
    """Windows of kernel_size with stride (default: kernel_size) and padding on both sides (default 0)."""

    sample_ndim = 3
    fill = 0.0  # what the padding holds

    def __init__(self, kernel_size, stride, padding):
        super().__init__()
        self.kernel = pair(self.name, "kernel_size", kernel_size, 1)
        self.stride = self.kernel if stride is None else pair(self.name, "stride", stride, 1)
        ph, pw = pair(self.name, "padding", padding, 0)
        if 2 * ph > self.kernel[0] or 2 * pw > self.kernel[1]:  # torch's rule: no window is all padding
            raise ValueError(
                f"{self.name}: padding must be at most half the kernel size (as in torch), got padding "
                f"{padding!r} for kernel_size {kernel_size!r}"
            )
        self.pads = (ph, ph, pw, pw)
        self.count = self.kernel[0] * self.kernel[1]  # offsets per window

    def setup(self, in_shape, dtype, rng, init, init_scale):
        self.out_hw = output_size(self, in_shape, self.kernel, self.stride, (1, 1), self.pads)
        c, h, w = in_shape
        self.padded_hw = (h + 2 * self.pads[0], w + 2 * self.pads[2])
        # Each input pixel in at most one window: backward may write instead of add.
        self.disjoint = all(s >= k for s, k in zip(self.stride, self.kernel)) and not any(self.pads)
        # Windows side by side (stride = kernel): the input is (OH, kh, OW, kw) blocks, then leftovers.
        self.tiled = self.stride == self.kernel and not any(self.pads)
        # ... with no leftovers: no pixel of the input gradient is left to zero.
        self.covered = self.tiled and all(o * k == n for o, k, n in zip(self.out_hw, self.kernel, (h, w)))
        return (c, *self.out_hw)

    def _windows(self, image: np.ndarray, writeable: bool = False) -> np.ndarray:
        """View (kh, kw, N, C, OH, OW) of a padded (N, C, Hp, Wp) array: [i, j] is offset (i, j) of every window.

        Writable only into the layer's own gradient array, and there the views of different
        offsets overlap where the windows do: only `disjoint` pools write it whole.
        """
        sn, sc, sh, sw = image.strides
        shape = (*self.kernel, len(image), image.shape[1], *self.out_hw)
        strides = (sh, sw, sn, sc, sh * self.stride[0], sw * self.stride[1])
        return as_strided(image, shape, strides, writeable=writeable)

    def _stacked(self, x: np.ndarray) -> np.ndarray:
        """The windows of x (padded with `fill`) as a contiguous (kh kw, N, C, OH, OW) array."""
        image = pad_into(self, "padded", x, self.pads, self.fill, x.dtype) if any(self.pads) else x
        windows = self._windows(image)
        stacked = self.empty("windows", (self.count, *windows.shape[2:]), x.dtype)
        np.copyto(stacked.reshape(windows.shape), windows)
        return stacked

    def _scatter(self, share, shape: tuple, dtype) -> np.ndarray:
        """The input gradient (N, C, H, W) from each offset's share of the output gradient, summed over windows.

        `share(q, out)` writes the (N, C, OH, OW) share of window offset q (row-major) into `out`.
        """
        n, c, oh, ow = shape
        (kh, kw), count = self.kernel, self.count
        dpadded = self.empty("grad_padded", (n, c, *self.padded_hw), dtype)
        if not self.covered:
            dpadded.fill(0)
        if self.tiled:
            # Numpy is slow at writing the strided offset views of the input directly; instead each
            # share goes into every kw-th number of a row block (one long strided run), then each
            # block row i is copied into the input rows i, i + kh, ... (runs of OW kw numbers).
            blocks = self.empty("blocks", (kh, n, c, oh, ow, kw), dtype)
            for q in range(count):
                share(q, blocks[divmod(q, kw)[0], ..., q % kw])
            sn, sc, sh, sw = dpadded.strides
            rows = as_strided(dpadded, (kh, n, c, oh, ow * kw), (sh, sn, sc, sh * kh, sw))
            np.copyto(rows, blocks.reshape(kh, n, c, oh, ow * kw))
        elif self.disjoint:
            shares = self.empty("shares", (count, n, c, oh, ow), dtype)
            for q in range(count):
                share(q, shares[q])
            windows = self._windows(dpadded, writeable=True)
            np.copyto(windows, shares.reshape(windows.shape))
        else:
            windows = self._windows(dpadded, writeable=True)
            part = self.empty("share", shape, dtype)
            for q in range(count):
                share(q, part)
                view = windows[divmod(q, kw)]
                np.add(view, part, out=view)
        return crop(self, "dx", dpadded, self.pads)

    def to_graph(self, graph, x):
        top, bottom, left, right = self.pads
        options = {"count_include_pad": 1} if self.onnx_op == "AveragePool" else {}
        return graph.node(
            self.onnx_op, [x], kernel_shape=list(self.kernel), strides=list(self.stride), pads=[top, left, bottom, right],
            **options,
        )

    def torch_module(self):
        padding = (self.pads[0], self.pads[2])
        return f"nn.{self.torch_class}(" + torch_args(
            kernel_size=self.kernel, stride=self.stride, padding=padding if padding != (0, 0) else None
        ) + ")"


@LAYERS.register("max_pool2d")
class MaxPool2d(_Pool2d):
    """Max over windows, as torch.nn.MaxPool2d(kernel_size, stride, padding) (floor mode, no dilation).

    x: (N, C, H, W) -> y: (N, C, OH, OW), y[n, c, p, q] = max of the kh x kw window at
    (p sh - pad_h, q sw - pad_w); OH = floor((H + 2 pad_h - kh) / sh) + 1 (and so OW). Padding
    is -inf, at most half the kernel. Keeps, per output, the offset of the window's argmax (the
    first maximum in row-major order on ties, as torch); backward routes each gradient there,
    summed where windows overlap. A NaN in a window makes its output NaN.
    """

    fill = -np.inf
    onnx_op, torch_class = "MaxPool", "MaxPool2d"  # padding -inf: ONNX's MaxPool ignores its padding

    def __init__(
        self,
        *,
        kernel_size: Size,
        stride: Size | None = None,
        padding: Padding = 0,
    ):
        super().__init__(kernel_size, stride, padding)
        self.argmax_dtype = np.dtype(np.uint8 if self.count <= 256 else np.int32)
        self.offsets = np.arange(self.count, dtype=self.argmax_dtype).reshape(-1, 1, 1, 1, 1)
        self.argmax = self.stacked = None

    def forward(self, x, training):
        self.stacked = self._stacked(x)
        # Only a training forward finds the argmax as it goes (an evaluation finds it if asked, see `_argmax`).
        y, self.argmax = self._max(self.stacked, with_argmax=training)
        return y

    def _max(self, stacked: np.ndarray, with_argmax: bool):
        """The max over the window's offsets, (N, C, OH, OW), and (if asked, else None) its first argmax offset."""
        shape = stacked.shape[1:]
        y = self.empty("y", shape, stacked.dtype)
        np.copyto(y, stacked[0])
        argmax = None
        if with_argmax:
            argmax = self.empty("argmax", shape, self.argmax_dtype)
            argmax.fill(0)
            greater = self.empty("greater", shape, np.bool_)
            candidate = self.empty("candidate", shape, self.argmax_dtype)
        for q in range(1, self.count):
            if with_argmax:
                # Strictly greater: an equal value later in the window does not take over (torch's first
                # maximum). Offsets grow, so "q where greater, else keep" is max(argmax, q * greater),
                # much faster than copyto(argmax, q, where=greater) on masks without a pattern.
                np.greater(stacked[q], y, out=greater)
                np.multiply(greater, self.offsets[q, 0, 0, 0], out=candidate)
                np.maximum(argmax, candidate, out=argmax)
            np.maximum(y, stacked[q], out=y)  # maximum propagates NaN
        return y, argmax

    def _argmax(self) -> np.ndarray:
        if self.argmax is None:  # the last forward was an evaluation
            self.argmax = self._max(self.stacked, with_argmax=True)[1]
        return self.argmax

    def backward(self, grad, need_input_grad=True):
        """grad: (N, C, OH, OW) -> (N, C, H, W): grad at each window's argmax, 0 elsewhere (summed over windows)."""
        if not need_input_grad:
            return None
        chosen = np.equal(self._argmax(), self.offsets, out=self.empty("chosen", (self.count, *grad.shape), np.bool_))
        return self._scatter(lambda q, out: np.multiply(grad, chosen[q], out=out), grad.shape, grad.dtype)

    def kinks(self):
        """The argmax offsets: they change where a perturbation makes another entry of a window the largest."""
        return self._argmax()


@LAYERS.register("avg_pool2d")
class AvgPool2d(_Pool2d):
    """Mean over windows, as torch.nn.AvgPool2d(kernel_size, stride, padding) (floor mode, count_include_pad).

    x: (N, C, H, W) -> y: (N, C, OH, OW), y[n, c, p, q] = (sum of the kh x kw window) / (kh kw),
    zero padding counted in the window (torch's default count_include_pad=True). Backward:
    every pixel of a window gets grad / (kh kw), summed over the windows it lies in.
    """

    onnx_op, torch_class = "AveragePool", "AvgPool2d"

    def __init__(
        self,
        *,
        kernel_size: Size,
        stride: Size | None = None,
        padding: Padding = 0,
    ):
        super().__init__(kernel_size, stride, padding)

    def forward(self, x, training):
        stacked = self._stacked(x)
        # Summed offset after offset in the window's row-major order (torch's order), then divided as torch does.
        y = np.add.reduce(stacked, axis=0, out=self.empty("y", stacked.shape[1:], x.dtype))
        np.divide(y, self.count, out=y)
        return y

    def backward(self, grad, need_input_grad=True):
        if not need_input_grad:
            return None
        each = np.divide(grad, self.count, out=self.empty("each", grad.shape, grad.dtype))
        return self._scatter(lambda q, out: np.copyto(out, each), grad.shape, grad.dtype)


@LAYERS.register("global_avg_pool")
class GlobalAvgPool(Layer):
    """Mean over the image of each channel, as torch.nn.AdaptiveAvgPool2d(1) then flatten.

    x: (N, C, H, W) -> y: (N, C), y[n, c] = sum_{h, w} x[n, c, h, w] / (H W); dx = grad / (H W)
    at every pixel.
    """

    sample_ndim = 3

    def setup(self, in_shape, dtype, rng, init, init_scale):
        need_ndim(self, in_shape, 3, IMAGE)
        self.in_shape = tuple(in_shape)
        self.pixels = in_shape[1] * in_shape[2]
        return (in_shape[0],)

    def forward(self, x, training):
        n, c = x.shape[:2]
        # The sums as a matrix-vector product with ones: several times faster than np.sum over two axes.
        y = self.empty("y", (n * c,), x.dtype)
        np.matmul(x.reshape(n * c, self.pixels), self.arena.ones(self.pixels, x.dtype), out=y)
        np.divide(y, self.pixels, out=y)
        return y.reshape(n, c)

    def backward(self, grad, need_input_grad=True):
        if not need_input_grad:
            return None
        dx = self.empty("dx", (len(grad), *self.in_shape), grad.dtype)
        np.divide(grad[:, :, None, None], self.pixels, out=dx)
        return dx

    def to_graph(self, graph, x):
        return graph.node("Flatten", [graph.node("GlobalAveragePool", [x])], axis=1)

    def torch_module(self):
        return "nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())"
