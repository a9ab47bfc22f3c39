"""2-D convolution over (batch, channels, height, width), as torch.nn.Conv2d; shared helpers for the pooling layers.

How it is computed (im2col): the kh kw kernel taps of every output position, for every input
channel, are copied out of the (zero-padded) input through one strided view into a matrix
`cols` with a row per (channel, tap), C kh kw rows. The convolution is then one matrix
product with the weight (filters, C kh kw); backward is two more (dW = g @ cols.T,
dcols = W.T @ g) and col2im, which adds each tap's rows of dcols back onto the input
positions the tap read (strided views; nothing per sample in Python).

Two layouts (`Conv2d.plan`, chosen in setup by PER_SAMPLE_POSITIONS):
- per sample: cols (N, C kh kw, OH OW) and a stacked product per sample, whose
  (filters, OH OW) results already are the output's layout (no transposition);
- batch: cols (C kh kw, N P) and one product for the whole batch, transposed into
  (N, filters, OH, OW) afterwards. With stride 1 its P positions per sample are a "wide"
  grid: OH full rows of the padded width Wp, of which the last Wp - OW of each row are junk.
  Then tap (i, j) of all of a sample's positions is one contiguous run of its flattened
  image, from i dh Wp + j dw, so the im2col copy moves runs of OH Wp numbers instead of rows
  of OW (8 in LeNet's second convolution: numpy is slow at short runs). The junk costs
  Wp / OW more product; the output drops it, and its gradient is set to zero there, so it
  adds nothing to dW or to dx. The last row's junk would read past the image: it is not
  read but zeroed in cols.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..graph import torch_args
from ..init import init_weight
from ..registry import Range
from .base import LAYERS, Layer, ShapeError, need_ndim
from .dense import InitName

# Per-sample products when a sample has at least PER_SAMPLE_POSITIONS output positions per row
# of cols (C kh kw taps) and its product is at most PER_SAMPLE_WORK multiply-adds. Measured at
# batch 128 on 2 cores: LeNet's first convolution (576 positions, 25 taps) and the Keras MNIST
# example's (676, 9) are faster per sample; LeNet's second (64, 150) and Keras's second (576,
# 288) for the batch. OpenBLAS runs products as small as the bound on one thread; larger ones it
# splits over its threads and syncs them once per product, which costs milliseconds per sample
# whenever another process holds a core (128 products of Keras's second layer: 37 ms on one
# thread, 2 s on two threads of a loaded machine; one product for the batch syncs once).
PER_SAMPLE_POSITIONS = 8
PER_SAMPLE_WORK = 2**19

MAX_SIZE = 100_000  # kernel, stride, padding and dilation bounds: far from any overflow of sizes

# An option that is one number for both axes or a pair [height, width] (YAML gives lists).
# The config checks the range of a number and of each entry of a pair; the constructor checks a pair has two.
Size = Annotated[int, Range(ge=1, le=MAX_SIZE)] | list[Annotated[int, Range(ge=1, le=MAX_SIZE)]]
Padding = Annotated[int, Range(ge=0, le=MAX_SIZE)] | list[Annotated[int, Range(ge=0, le=MAX_SIZE)]]

IMAGE = "(channels, height, width)"


def pair(layer: str, option: str, value, minimum: int) -> tuple[int, int]:
    """`value` (an int, or a list / tuple of two) as (height, width); ValueError unless each is an int >= minimum."""

    def is_int(v):
        return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))

    if is_int(value):
        result = (int(value), int(value))
    elif isinstance(value, (list, tuple)) and len(value) == 2 and all(is_int(v) for v in value):
        result = (int(value[0]), int(value[1]))
    else:
        raise ValueError(f"{layer}: {option} must be an integer or a pair [height, width] of integers, got {value!r}")
    if min(result) < minimum or max(result) > MAX_SIZE:
        raise ValueError(f"{layer}: {option} must be between {minimum} and {MAX_SIZE}, got {value!r}")
    return result


def pad_into(
    layer: Layer, name: str, x: np.ndarray, pads: tuple[int, int, int, int], fill, dtype, tail: int = 0
) -> np.ndarray:
    """x: (N, C, H, W) copied into the middle of a C-contiguous (N, C, H + top + bottom, W + left + right) array.

    pads = (top, bottom, left, right); the border is set to `fill` every time (the array may be
    last step's, or new and uninitialized), which costs only the border. With `tail`, the
    array's buffer goes on for that many more numbers, set to `fill`: room for strided views
    that read a little past the end.
    """
    top, bottom, left, right = pads
    n, c, h, w = x.shape
    shape = (n, c, h + top + bottom, w + left + right)
    size = math.prod(shape)
    buffer = layer.empty(name, (size + tail,), dtype)
    buffer[size:] = fill
    padded = buffer[:size].reshape(shape)
    padded[:, :, :top] = fill
    padded[:, :, top + h :] = fill
    padded[:, :, top : top + h, :left] = fill
    padded[:, :, top : top + h, left + w :] = fill
    padded[:, :, top : top + h, left : left + w] = x
    return padded


def crop(layer: Layer, name: str, padded: np.ndarray, pads: tuple[int, int, int, int]) -> np.ndarray:
    """The inside of a padded (N, C, Hp, Wp) array (drop `pads` = (top, bottom, left, right)) as a contiguous array."""
    top, bottom, left, right = pads
    if not any(pads):
        return padded
    n, c, hp, wp = padded.shape
    out = layer.empty(name, (n, c, hp - top - bottom, wp - left - right), padded.dtype)
    np.copyto(out, padded[:, :, top : hp - bottom, left : wp - right])
    return out


def output_size(layer: Layer, in_shape, kernel, stride, dilation, pads) -> tuple[int, int]:
    """(OH, OW) = floor((size + padding - dilation (kernel - 1) - 1) / stride) + 1 per axis.

    ShapeError unless samples are (channels, height, width) with room for the kernel.
    """
    need_ndim(layer, in_shape, 3, IMAGE)  # the layers' sample_ndim
    _, h, w = in_shape
    hp, wp = h + pads[0] + pads[1], w + pads[2] + pads[3]
    span = (dilation[0] * (kernel[0] - 1) + 1, dilation[1] * (kernel[1] - 1) + 1)
    if hp < span[0] or wp < span[1]:
        padded = f" ({hp}x{wp} with its padding)" if any(pads) else ""
        spread = f" (dilation {dilation[0]}x{dilation[1]})" if dilation != (1, 1) else ""
        raise ShapeError(
            f"{layer.name}: a {kernel[0]}x{kernel[1]} kernel{spread} spans {span[0]}x{span[1]} pixels, larger than the "
            f"{h}x{w} image of its input shape {tuple(in_shape)}{padded}"
        )
    return (hp - span[0]) // stride[0] + 1, (wp - span[1]) // stride[1] + 1


@LAYERS.register("conv2d")
class Conv2d(Layer):
    """2-D cross-correlation, as torch.nn.Conv2d(C, filters, kernel_size, stride, padding, dilation, bias).

    x: (N, C, H, W) -> y: (N, filters, OH, OW), with zero padding;
    y[n, o, p, q] = b[o] + sum_{c, i, j} W[o, c, i, j] xpad[n, c, p sh + i dh, q sw + j dw],
    OH = floor((H + pad_top + pad_bottom - dh (kh - 1) - 1) / sh) + 1 (and so OW).
    W: (filters, C, kh, kw) as torch stores it, b: (filters,). kernel_size, stride, padding and
    dilation are one number or [height, width]; padding "same" (stride 1 only) pads
    dilation (kernel - 1) in total per axis, the odd one at the bottom / right as torch does,
    "valid" is padding 0. `init` / `init_scale` override the model-wide initializer (fan_in =
    C kh kw, fan_out = filters kh kw, as torch counts them); b starts at 0. Weight decay applies
    to W. Keeps the im2col matrix of its input for backward.
    """

    decayed = ("weight",)
    width_option = "filters"
    sample_ndim = 3

    def __init__(
        self,
        *,
        filters: Annotated[int, Range(ge=1, le=1_000_000)],
        kernel_size: Size,
        stride: Size = 1,
        padding: Padding | Literal["same", "valid"] = 0,
        dilation: Size = 1,
        bias: bool = True,
        init: InitName | None = None,
        init_scale: Annotated[float, Range(gt=0)] | None = None,
    ):
        super().__init__()
        self.filters = filters
        self.kernel = pair(self.name, "kernel_size", kernel_size, 1)
        self.stride = pair(self.name, "stride", stride, 1)
        self.dilation = pair(self.name, "dilation", dilation, 1)
        if padding == "same":
            if self.stride != (1, 1):
                raise ValueError(f"{self.name}: padding 'same' needs stride 1 (as in torch), got stride {stride!r}")
            totals = [d * (k - 1) for d, k in zip(self.dilation, self.kernel)]
            self.pads = (totals[0] // 2, totals[0] - totals[0] // 2, totals[1] // 2, totals[1] - totals[1] // 2)
        elif padding == "valid":
            self.pads = (0, 0, 0, 0)
        else:
            ph, pw = pair(self.name, "padding", padding, 0)
            self.pads = (ph, ph, pw, pw)
        self.bias = bias
        self.init = init
        self.init_scale = init_scale
        self.cols = None

    def setup(self, in_shape, dtype, rng, init, init_scale):
        self.out_hw = output_size(self, in_shape, self.kernel, self.stride, self.dilation, self.pads)
        c, h, w = in_shape
        kh, kw = self.kernel
        self.channels = c
        self.padded_hw = (h + self.pads[0] + self.pads[1], w + self.pads[2] + self.pads[3])
        self.taps = c * kh * kw
        positions = math.prod(self.out_hw)
        work = self.filters * self.taps * positions
        self.plan(positions >= PER_SAMPLE_POSITIONS * self.taps and work <= PER_SAMPLE_WORK)
        name = self.init or init
        scale = self.init_scale if self.init_scale is not None else init_scale
        shape = (self.filters, c, kh, kw)
        params = {"weight": init_weight(name, self.taps, self.filters * kh * kw, rng, scale, dtype, shape=shape)}
        if self.bias:
            params["bias"] = np.zeros(self.filters, dtype)
        self._add_params(dtype, **params)
        return (self.filters, *self.out_hw)

    def plan(self, per_sample: bool) -> None:
        """Choose the layout of the im2col matrix (called by `setup`; tests run every case both ways).

        per_sample: cols (N, C kh kw, OH OW), one product per sample, whose (filters, OH OW)
        results already are the output's layout: best for small products with many positions
        (a first layer on a large image, see PER_SAMPLE_POSITIONS). Else cols (C kh kw, N P),
        one product for the batch: best for small images, where the per-sample products would
        be tiny, and for large products; with stride 1 its positions are the wide grid of full
        rows (see the module docstring).
        """
        self.per_sample = per_sample
        self.wide = not per_sample and self.stride == (1, 1)
        # The per-sample im2col copies output rows whole where they are contiguous in the input.
        self.row_runs = per_sample and self.stride[1] == 1
        oh, ow = self.out_hw
        self.grid = (oh, self.padded_hw[1]) if self.wide else (oh, ow)  # positions per sample
        self.cols = None

    # --- strided views --------------------------------------------------------------------

    def _padded(self, x: np.ndarray, dtype) -> np.ndarray:
        """x zero-padded (a copy), or x itself where it needs no padding and no cast.

        For the wide grid always a copy, whose buffer has dw (kw - 1) zeros after its end:
        the last image's last row of positions reads that far past it (the junk of that row).
        """
        if self.wide:
            return pad_into(self, "padded", x, self.pads, 0, dtype, tail=self.dilation[1] * (self.kernel[1] - 1))
        if any(self.pads) or x.dtype != dtype or (self.row_runs and not x.flags.c_contiguous):
            return pad_into(self, "padded", x, self.pads, 0, dtype)
        return x

    def _windows(self, image: np.ndarray) -> np.ndarray:
        """Read-only view of every tap at every position of the padded input, in the order of cols' axes:

        (N, C, kh, kw, OH, OW) per sample, (C, kh, kw, N, OH, OW) for the batch and
        (C, kh, kw, N, OH Wp) for the wide grid: there the positions run on along the
        flattened image, into the next image's first numbers and, for the very last image,
        into the zeros after the end of the padded input's buffer (see `_padded`).
        """
        sn, sc, sh, sw = image.strides
        (kh, kw), (dh, dw), n, c = self.kernel, self.dilation, len(image), self.channels
        taps = (dh * sh, dw * sw)
        if self.wide:
            return as_strided(image, (c, kh, kw, n, math.prod(self.grid)), (sc, *taps, sn, sw), writeable=False)
        grid = (sh * self.stride[0], sw * self.stride[1])
        if self.per_sample:
            return as_strided(image, (n, c, kh, kw, *self.out_hw), (sn, sc, *taps, *grid), writeable=False)
        return as_strided(image, (c, kh, kw, n, *self.out_hw), (sc, *taps, sn, *grid), writeable=False)

    def _im2col(self, x: np.ndarray, dtype) -> np.ndarray:
        """The im2col matrix: (N, C kh kw, OH OW) per sample, (C kh kw, N P) for the batch."""
        image = self._padded(x, dtype)
        windows = self._windows(image)
        n, positions = len(x), math.prod(self.grid)
        if self.per_sample:
            cols = self.empty("cols", (n, self.taps, positions), dtype)
        else:
            cols = self.empty("cols", (self.taps, n * positions), dtype)
        if self.row_runs:
            # Each output row's run of OW numbers as one opaque item: numpy copies a few long items
            # much faster than many runs of a few floats (LeNet's first layer: 0.40 ms, not 0.49).
            run = np.dtype((np.void, self.out_hw[1] * cols.itemsize))
            image_bytes = image.reshape(-1).view(np.uint8)  # the windows' base, C-contiguous (see _padded)
            shape, strides = (*windows.shape[:-1], run.itemsize), (*windows.strides[:-1], 1)
            source = as_strided(image_bytes, shape, strides, writeable=False)
            np.copyto(cols.reshape(*windows.shape[:-1], -1).view(np.uint8).view(run)[..., 0], source.view(run)[..., 0])
        else:
            np.copyto(cols.reshape(windows.shape), windows)
        return cols

    def _outputs(self, product: np.ndarray, n: int) -> np.ndarray:
        """The batch's product (filters, N P) -> view (filters, N, OH, OW) of the real outputs (the junk left out)."""
        return product.reshape(self.filters, n, *self.grid)[..., : self.out_hw[1]]

    # --- forward and backward -----------------------------------------------------------

    def forward(self, x, training):
        weight = self.params["weight"].reshape(self.filters, self.taps)
        dtype = np.result_type(x, weight)
        n = len(x)
        self.cols = cols = self._im2col(x, dtype)
        y = self.empty("y", (n, self.filters, *self.out_hw), dtype)
        if self.per_sample:
            np.matmul(weight, cols, out=y.reshape(n, self.filters, -1))
        else:
            product = np.matmul(weight, cols, out=self.empty("product", (self.filters, cols.shape[1]), dtype))
            np.copyto(y, self._outputs(product, n).transpose(1, 0, 2, 3))
        if self.bias:
            # On (N, filters, OH OW): numpy's loops are much faster along OH OW than along rows of OW.
            y_rows = y.reshape(n, self.filters, -1)
            np.add(y_rows, self.params["bias"].reshape(1, -1, 1), out=y_rows)
        return y

    def backward(self, grad, need_input_grad=True):
        """grad: (N, filters, OH, OW) -> (N, C, H, W).

        With g the gradient as a matrix of positions like cols (zero at the wide grid's junk):
        dW = g @ cols.T (per sample, then summed), db = g summed over positions, and dx from
        dcols = W.T @ g, each tap's rows added back where the tap read them (col2im; the wide
        grid folds the taps of a kernel row into the product, see `_input_grad_wide`), then
        the padding dropped.
        """
        weight = self.params["weight"].reshape(self.filters, self.taps)
        dweight = self.grads["weight"].reshape(self.filters, self.taps)
        dtype = np.result_type(grad, weight)
        n = len(grad)
        if self.per_sample:
            g = grad.reshape(n, self.filters, -1)
            per_sample = self.empty("dweights", (n, *dweight.shape), dtype)
            np.matmul(g, self.cols.transpose(0, 2, 1), out=per_sample)
            np.add.reduce(per_sample, axis=0, out=dweight)
            if self.bias:
                # Sums as matrix-vector products with ones: much faster than np.sum over two axes.
                positions = g.shape[2]
                per_filter = self.empty("dbias", (n, self.filters), dtype)
                np.matmul(g, self.arena.ones(positions, dtype), out=per_filter)
                np.matmul(self.arena.ones(n, dtype), per_filter, out=self.grads["bias"])
        else:
            g = self.empty("grad_grid", (self.filters, self.cols.shape[1]), dtype)
            if self.wide:
                g.fill(0)  # the junk
            np.copyto(self._outputs(g, n), grad.transpose(1, 0, 2, 3))
            # (cols @ g.T).T rather than g @ cols.T: OpenBLAS is faster with the long axis inside.
            dweight_t = np.matmul(self.cols, g.T, out=self.empty("dweight_t", dweight.shape[::-1], dtype))
            np.copyto(dweight, dweight_t.T)
            if self.bias:
                np.matmul(g, self.arena.ones(g.shape[1], dtype), out=self.grads["bias"])
        if not need_input_grad:
            return None
        dpadded = self.empty("grad_padded", (n, self.channels, *self.padded_hw), dtype)
        dpadded.fill(0)
        if self.wide:
            self._input_grad_wide(g, dpadded)
        else:
            self._col2im(np.matmul(weight.T, g, out=self.empty("grad_cols", self.cols.shape, dtype)), dpadded)
        return crop(self, "dx", dpadded, self.pads)

    def to_graph(self, graph, x):
        """ONNX Conv: pads (top, left, bottom, right), the weight as it is (torch's layout)."""
        top, bottom, left, right = self.pads
        inputs = [x, graph.constant(self.params["weight"], "weight")]
        if self.bias:
            inputs.append(graph.constant(self.params["bias"], "bias"))
        return graph.node(
            "Conv", inputs, kernel_shape=list(self.kernel), strides=list(self.stride), dilations=list(self.dilation),
            pads=[top, left, bottom, right],
        )

    def torch_module(self):
        top, bottom, left, right = self.pads
        # torch's padding="same" pads the odd one at the bottom / right, as nntrain's "same" does.
        padding = (top, left) if (top, left) == (bottom, right) else "same"
        return "nn.Conv2d(" + torch_args(
            self.channels, self.filters, kernel_size=self.kernel, stride=self.stride if self.stride != (1, 1) else None,
            padding=padding if padding != (0, 0) else None, dilation=self.dilation if self.dilation != (1, 1) else None,
            bias=None if self.bias else False,
        ) + ")"

    def torch_state(self):
        return dict(self.params)

    def _col2im(self, dcols: np.ndarray, dpadded: np.ndarray) -> None:
        """dpadded += every tap's slice of dcols, at the positions the tap read (the plain (OH, OW) grid)."""
        sn, sc, sh, sw = dpadded.strides
        grid = (sh * self.stride[0], sw * self.stride[1])
        n, c = len(dpadded), self.channels
        if self.per_sample:
            dcols = dcols.reshape(n, c, *self.kernel, *self.out_hw)
            shape, strides = (n, c, *self.out_hw), (sn, sc, *grid)
        else:
            dcols = dcols.reshape(c, *self.kernel, n, *self.out_hw)
            shape, strides = (c, n, *self.out_hw), (sc, sn, *grid)
        for i in range(self.kernel[0]):
            for j in range(self.kernel[1]):
                origin = dpadded[:, :, i * self.dilation[0] :, j * self.dilation[1] :]
                tap = as_strided(origin, shape, strides)
                np.add(tap, dcols[:, :, i, j] if self.per_sample else dcols[:, i, j], out=tap)

    def _input_grad_wide(self, g: np.ndarray, dpadded: np.ndarray) -> None:
        """dpadded += the input gradient of the wide grid, from g (filters, N P), P = OH Wp, in one product.

        Tap (i, j) read the flattened image at i dh Wp + j dw + m for positions m < P, so
        dx[n, c, i dh Wp + t] gets sum_j sum_o W[o, c, i, j] g[o, n P + t - j dw] for every
        kernel row i. The sums over j and o are one product for all rows i at once:
        rows = Wcat (kh C, kw filters) @ shifted (kw filters, N P), shifted[j] = g moved right by
        j dw along the whole N P axis (a sample's last j dw positions move into the next sample,
        but those are the last row's junk, 0). Then each rows[i], sample by sample, is added to
        the flattened image at i dh Wp. Against dcols = W.T @ g and one addition per tap, the
        product is as large, its result kh times smaller, and the additions are kh, not kh kw.
        """
        (kh, kw), (dh, dw), n, c = self.kernel, self.dilation, len(dpadded), self.channels
        positions = math.prod(self.grid)
        span = n * positions
        shifted = self.empty("shifted_grad", (kw, self.filters, span), g.dtype)
        for j in range(kw):
            shifted[j, :, : j * dw] = 0
            shifted[j, :, j * dw :] = g[:, : span - j * dw]
        # Wcat[(i, c), (j, o)] = W[o, c, i, j], with zero rows up to a multiple of 16: OpenBLAS is
        # markedly faster on such products (LeNet's 30 rows: 0.53 ms, 32: 0.40 ms).
        height = -(-kh * c // 16) * 16
        wcat = self.empty("weight_rows", (height, kw * self.filters), g.dtype)
        wcat[kh * c :] = 0
        np.copyto(wcat[: kh * c].reshape(kh, c, kw, self.filters), self.params["weight"].transpose(2, 1, 3, 0))
        rows = self.empty("kernel_rows", (height, span), g.dtype)
        np.matmul(wcat, shifted.reshape(kw * self.filters, span), out=rows)
        image = dpadded.reshape(n, c, -1)
        for i in range(kh):
            start = i * dh * self.padded_hw[1]
            target = image[:, :, start : start + positions]
            np.add(target, rows[i * c : (i + 1) * c].reshape(c, n, positions).transpose(1, 0, 2), out=target)
