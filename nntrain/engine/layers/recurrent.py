"""Recurrent layers over sequences: rnn, lstm, gru, as torch.nn.RNN / LSTM / GRU (batch_first=True, one layer).

x: (N, T, D), time on axis 1 -> (N, T, dirs H) for `output: sequence`, (N, dirs H) for
`output: last`; dirs = 2 when bidirectional. One layer each: a stack is several layers in the
config (torch's num_layers = 2 is two layers here, the second taking the first's sequence).

The cells, with x the input at a step, h (and c) the state before it, a = W_ih x + b_ih + W_hh h + b_hh:

    rnn   h' = tanh(a)  or relu(a)                                           G = 1
    lstm  [a_i, a_f, a_g, a_o] = a;  i, f, o = sigmoid(a_i, a_f, a_o), g = tanh(a_g)
          c' = f c + i g,  h' = o tanh(c')                                   G = 4
    gru   [r, z] = sigmoid(W_i[rz] x + b_i[rz] + W_h[rz] h + b_h[rz])
          n = tanh(W_in x + b_in + r (W_hn h + b_hn)),  h' = (1 - z) n + z h  G = 3

Parameters, in torch's layout and names without the `_l0`: weight_ih (G H, D), weight_hh
(G H, H), bias_ih and bias_hh (G H,), the gate blocks of H rows in the order above (lstm i, f,
g, o; gru r, z, n), so a torch state dict loads by renaming. A bidirectional layer has the
same four again with the suffix `_reverse` for the direction that runs from the last step to
the first; its outputs follow the forward direction's at each step ([forward, reverse]).
`output: last` is torch's h_n: the forward direction's state after its last step and the
reverse direction's after its first (step 0), concatenated (for lstm h, not c). Initial
states are zero; backward propagates through the whole sequence.

Initialization: without the layer's own `init`, every weight and bias is drawn from
U(-1/sqrt(H), 1/sqrt(H)), torch's default, whatever the model-wide initializer is: that
one (He by default) is made for feed-forward ReLU layers, and He's std sqrt(2 / H) on the
recurrent matrix gives it a spectral radius near sqrt(2), so states and gradients grow
step after step. With `init` (and `init_scale`) the weights come from that initializer
(fan_in = D or H, fan_out = G H, as torch counts them) and the biases start at 0.

Variable lengths (`lengths`, see layers.base): steps t >= L of a sample of length L are
padding. There the state carries over unchanged, the output is 0 (what torch's
pad_packed_sequence gives) and nothing flows back: their input gradient is 0 and they add
nothing to the parameters' gradients. The reverse direction thus starts from the zero state
at each sample's last real step L - 1, as torch's packed sequences do, and `last` gives the
forward state at step L - 1, the reverse state at step 0. The padded inputs are never read
(they are zeroed in the layer's copy of x), so whatever they hold, NaN included, changes nothing.

How it is computed, for speed: every internal array is time-major and gate-major, (T, G H, N)
for the gates and (T + 1, H, N) for the states: a step's slice is contiguous, and so is every
gate's block of it (H rows of the N samples), so the gate arithmetic runs on contiguous arrays
(slices of (N, G H) rows would be strided: twice as slow, measured). Per direction, the input
projections of all steps, bias included, are one batched product [W_ih, b] @ [x_t; 1] before
the loop; each step adds one product W_hh @ h for all gates of all samples and does the gate
arithmetic in place. The projections are kept negated, -(W x + b), because the sigmoids are
1 / (1 + exp(-a)): one exp for all of an LSTM's gates, its tanh(g) as 2 sigmoid(2 g) - 1 with
exp(-2 g) = exp(-g)^2 (a float32 exp costs half a tanh).
Backward collects the pre-activation gradients of all steps in one (T, G H, N) array, copies it
once to (G H, T N), and gets dW_ih, dx and dW_hh (against the stacked previous states) with one
product each after the loop; the only Python loop is over time.
Arrays written each batch come from the arena (`self.empty`), so a training step reuses them.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import numpy as np

from ..graph import torch_args
from ..init import init_weight
from ..registry import Range
from .base import LAYERS, Layer, need_ndim
from .dense import InitName

OUTPUTS = ("sequence", "last")
SEQUENCE = "(steps, features)"


def _sigmoid_of_negated_(a: np.ndarray) -> None:
    """a <- 1 / (1 + e^a) in place: the sigmoid of -a, for a that holds a negated pre-activation.

    e^a overflows to inf for a above ~88 (float32) or ~709 (float64), and 1 / (1 + inf) = 0 is
    the sigmoid's value there: the forward pass runs with overflow warnings off. Three passes,
    one of them an exp, cost about two thirds of a tanh (measured: float32 exp 1.3, tanh 2.6 ns
    a number).
    """
    np.exp(a, out=a)
    a += 1
    np.reciprocal(a, out=a)


def _times_sigmoid_grad(d: np.ndarray, s: np.ndarray, tmp: np.ndarray) -> None:
    """d <- d s (1 - s) in place: the gradient through a sigmoid whose output was s."""
    np.subtract(1, s, out=tmp)
    tmp *= s
    d *= tmp


def _times_tanh_grad(d: np.ndarray, y: np.ndarray, tmp: np.ndarray) -> None:
    """d <- d (1 - y^2) in place: the gradient through a tanh whose output was y."""
    np.multiply(y, y, out=tmp)
    np.subtract(1, tmp, out=tmp)
    d *= tmp


class _Recurrent(Layer):
    """What the three cells share: options, parameters, masks, the projections and the products after the loop.

    A cell implements `_run(d, gates, hs)` (the time loop of direction d, forward) and
    `_back(d, dy, dh)` (its loop backward, returning the gradient arrays).
    """

    gates = 1  # G: gate blocks of H rows in the weights
    sample_ndim = 2
    width_option = "units"
    uses_lengths = True

    def __init__(
        self,
        *,
        units: Annotated[int, Range(ge=1, le=1_000_000)],  # H, the state's size per direction
        bidirectional: bool = False,
        output: Literal["sequence", "last"] = "sequence",
        init: InitName | None = None,
        init_scale: Annotated[float, Range(gt=0)] | None = None,
    ):
        super().__init__()
        if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units < 1:
            raise ValueError(f"{self.name}: units must be a positive integer, got {units!r}")
        if output not in OUTPUTS:
            raise ValueError(f"{self.name}: output must be one of {', '.join(OUTPUTS)}, got {output!r}")
        self.units = int(units)
        self.bidirectional = bool(bidirectional)
        self.output = output
        self.init = init
        self.init_scale = init_scale
        self.suffixes = ("", "_reverse") if self.bidirectional else ("",)
        self.decayed = tuple(f"{w}{s}" for s in self.suffixes for w in ("weight_ih", "weight_hh"))
        self.pad = None
        self.saved: list[dict] = []

    @property
    def directions(self) -> int:
        return len(self.suffixes)

    def setup(self, in_shape, dtype, rng, init, init_scale):
        need_ndim(self, in_shape, 2, SEQUENCE)
        steps, features = in_shape
        self.steps = steps
        h, gh = self.units, self.gates * self.units
        scale = self.init_scale if self.init_scale is not None else init_scale
        bound = 1 / math.sqrt(h)
        params = {}
        for suffix in self.suffixes:
            shapes = {"weight_ih": (gh, features), "weight_hh": (gh, h), "bias_ih": (gh,), "bias_hh": (gh,)}
            for name, shape in shapes.items():
                if self.init is None:  # torch's default for every weight and bias
                    value = rng.uniform(-bound, bound, shape)
                elif name.startswith("weight"):
                    value = init_weight(self.init, shape[1], gh, rng, scale, dtype, shape=shape)
                else:
                    value = np.zeros(shape)
                params[name + suffix] = value
        self._add_params(dtype, **params)
        width = self.directions * h
        return (steps, width) if self.output == "sequence" else (width,)

    def out_lengths(self, lengths):
        return lengths if self.output == "sequence" else None

    # ------------------------------------------------------------------ forward

    def _masks(self, n: int, steps: int):
        """(T, 1, N) booleans: padding (t >= L) and real steps, or None when every sample is whole."""
        lengths = self.lengths
        if lengths is None:
            return None, None
        lengths = np.asarray(lengths)
        if lengths.shape != (n,):
            raise ValueError(f"{self.name}: lengths must be ({n},), one per sequence of the batch, got {lengths.shape}")
        if (lengths >= steps).all():
            return None, None
        times = self.arena.arange(steps)[:, None]
        valid = np.less(times, lengths[None, :], out=self.empty("valid", (steps, n), np.bool_))
        pad = np.logical_not(valid, out=self.empty("pad", (steps, n), np.bool_))
        return pad[:, None, :], valid[:, None, :]

    def _input_bias(self, suffix: str, dtype) -> np.ndarray:
        """The bias added to the input projections before the loop: b_ih + b_hh (gru: not b_hn, which r scales)."""
        return (self.params["bias_ih" + suffix] + self.params["bias_hh" + suffix]).astype(dtype, copy=False)

    def forward(self, x, training):
        """x: (N, T, D) -> (N, T, dirs H) or (N, dirs H); keeps the states and gates for backward."""
        n, steps, features = x.shape
        h, gh = self.units, self.gates * self.units
        dtype = np.result_type(x, self.params["weight_ih"])
        self.pad, self.valid = self._masks(n, steps)
        xt = self.empty("xt", (steps, n, features), dtype)  # (T, N, D): for dW_ih after the backward loop
        np.copyto(xt, x.transpose(1, 0, 2))
        # (T, D + 1, N): x and a row of ones, so that the projections' product adds their bias too
        # (a separate pass over the (T, G H, N) result would cost half as much as the product).
        xT = self.empty("xT", (steps, features + 1, n), dtype)
        np.copyto(xT[:, :features], x.transpose(1, 2, 0))
        xT[:, features] = 1
        if self.pad is not None:  # padded inputs are never read, whatever they hold
            np.copyto(xt, 0, where=self.pad.transpose(0, 2, 1))
            np.copyto(xT[:, :features], 0, where=self.pad)
        self.xt = xt
        self.saved = []
        for d, suffix in enumerate(self.suffixes):
            # -[W_ih, b] @ [x; 1]: the projections negated, as _run wants them.
            w = self.empty("negated_weight_bias", (gh, features + 1), dtype)
            np.negative(self.params["weight_ih" + suffix], out=w[:, :features])
            np.negative(self._input_bias(suffix, dtype), out=w[:, features])
            gates = self.empty(f"gates{d}", (steps, gh, n), dtype)
            np.matmul(w, xT, out=gates)
            hs = self.empty(f"h{d}", (steps + 1, h, n), dtype)  # states; the zero initial one in the extra slot
            hs[steps if d else 0] = 0
            self.saved.append({"gates": gates, "hs": hs})
            with np.errstate(over="ignore"):  # exp(-a) of a very negative a is inf, and the sigmoid 0
                self._run(d, gates, hs)
        return self._outputs(n, steps, dtype)

    def _order(self, d: int, steps: int):
        """Steps in the order direction d visits them, each with the slots of the state before and after it.

        hs has T + 1 slots: the forward direction's state after step t is in slot t + 1 (slot 0
        the initial zero), the reverse direction's in slot t (slot T the initial zero).
        """
        if d == 0:
            return [(t, t, t + 1) for t in range(steps)]
        return [(t, t + 1, t) for t in range(steps - 1, -1, -1)]

    def _outputs(self, n, steps, dtype):
        h = self.units
        if self.output == "last":
            y = self.empty("y", (n, self.directions * h), dtype)
            for d, saved in enumerate(self.saved):
                y[:, d * h : (d + 1) * h] = saved["hs"][0 if d else steps].T
            return y
        y = self.empty("y", (n, steps, self.directions * h), dtype)
        for d, saved in enumerate(self.saved):
            states = saved["hs"][:steps] if d else saved["hs"][1:]
            np.copyto(y[:, :, d * h : (d + 1) * h], states.transpose(2, 0, 1))
        if self.pad is not None:
            np.copyto(y, 0, where=self.pad.transpose(2, 0, 1))
        return y

    def _run(self, d, gates, hs):  # pragma: no cover - abstract
        """Direction d's loop forward. gates (T, G H, N) holds -(W_ih x + b) on entry, negated because
        the sigmoids need exp(-a) (see _sigmoid_of_negated_), and the gates' activations on exit."""
        raise NotImplementedError

    # ------------------------------------------------------------------ export

    # ONNX's operator, and the order of torch's gate blocks in ONNX's weights (LSTM: i, o, f, c from
    # torch's i, f, g, o; GRU: z, r, h from r, z, n); `onnx_attributes` completes the operator.
    onnx_op = "RNN"
    onnx_gates: tuple[int, ...] = (0,)
    torch_class = "RNN"

    def onnx_attributes(self) -> dict:
        return {}

    def _onnx_blocks(self, a: np.ndarray) -> np.ndarray:
        """torch's gate blocks of H rows in ONNX's order."""
        h = self.units
        return np.concatenate([a[g * h : (g + 1) * h] for g in self.onnx_gates])

    def to_graph(self, graph, x):
        """Time-major ONNX RNN / LSTM / GRU (W, R, B stacked per direction), sequence_lens from the lengths.

        x (N, T, D) -> Transpose (T, N, D) -> Y (T, dirs, N, H), Y_h (dirs, N, H) -> (N, T, dirs H)
        with padded steps 0, or h_n (N, dirs H). Padded inputs are set to 0 first (nntrain never reads them).
        """
        steps, h, p = self.steps, self.units, self.params
        x = graph.fill_padding(x, steps, 0.0)
        w = np.stack([self._onnx_blocks(p["weight_ih" + s]) for s in self.suffixes])
        r = np.stack([self._onnx_blocks(p["weight_hh" + s]) for s in self.suffixes])
        b = np.stack([np.concatenate([self._onnx_blocks(p["bias_ih" + s]), self._onnx_blocks(p["bias_hh" + s])]) for s in self.suffixes])
        lengths = "" if graph.lengths is None else graph.node("Cast", [graph.lengths], to=np.dtype(np.int32))
        inputs = [graph.transpose(x, (1, 0, 2)), graph.constant(w, "W"), graph.constant(r, "R"), graph.constant(b, "B"), lengths]
        y, y_h = graph.node(
            self.onnx_op, inputs, outputs=2, hidden_size=h,
            direction="bidirectional" if self.bidirectional else "forward", **self.onnx_attributes(),
        )[:2]
        width = self.directions * h
        if self.output == "last":
            return graph.reshape(graph.transpose(y_h, (1, 0, 2)), (0, width))
        out = graph.reshape(graph.transpose(y, (2, 0, 1, 3)), (0, steps, width))
        return graph.fill_padding(out, steps, 0.0)

    def lengths_to_graph(self, graph, lengths):
        return lengths if self.output == "sequence" else None

    def torch_module(self):
        """torch's module (batch-first) through the snippet's `recurrent` helper, which returns y or h_n."""
        options = self.torch_options()
        args = torch_args(self.params["weight_ih"].shape[1], self.units, bidirectional=self.bidirectional or None, **options)
        return f"recurrent(nn.{self.torch_class}, last={self.output == 'last'})({args})"

    def torch_options(self) -> dict:
        return {}

    def torch_state(self):
        """torch's names: weight_ih_l0, ..., and weight_ih_l0_reverse, ... for the reverse direction."""
        return {f"{name}_l0{suffix}": self.params[name + suffix] for suffix in self.suffixes
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}

    # ------------------------------------------------------------------ backward

    def backward(self, grad, need_input_grad=True):
        """grad: dL/dy -> dL/dx (N, T, D); fills the gradients of every weight and bias."""
        xt = self.xt
        steps, n, features = xt.shape
        h, gh = self.units, self.gates * self.units
        dtype = xt.dtype
        dy = None
        if self.output == "sequence":
            dy = self.empty("dy", (steps, self.directions * h, n), dtype)
            np.copyto(dy, grad.transpose(1, 2, 0))
            if self.pad is not None:
                np.copyto(dy, 0, where=self.pad)  # the output is 0 there, whatever its gradient
        ones = self.arena.ones(steps * n, dtype)
        dx_parts = []
        for d, suffix in enumerate(self.suffixes):
            dh = self.empty("dh", (h, n), dtype)
            if dy is None:
                np.copyto(dh, grad[:, d * h : (d + 1) * h].T)
            else:
                dh[...] = 0
            dgx, dgh = self._back(d, None if dy is None else dy[:, d * h : (d + 1) * h], dh)
            grads, saved = self.grads, self.saved[d]
            # The products over all steps want gate-major (G H, T N) matrices: one copy each.
            dgx2 = self._gate_major(f"dgx{d}", dgx)
            dgh2 = dgx2 if dgh is dgx else self._gate_major(f"dgh{d}", dgh)
            np.matmul(dgx2, xt.reshape(-1, features), out=grads["weight_ih" + suffix])
            previous = saved["hs"][1:] if d else saved["hs"][:steps]  # the state before each step
            np.matmul(dgh2, self._gate_major(f"previous{d}", previous).T, out=grads["weight_hh" + suffix])
            np.matmul(dgx2, ones, out=grads["bias_ih" + suffix])
            if dgh is dgx:
                grads["bias_hh" + suffix][...] = grads["bias_ih" + suffix]
            else:
                np.matmul(dgh2, ones, out=grads["bias_hh" + suffix])
            if need_input_grad:
                part = self.empty(f"dxt{d}", (steps, n, features), dtype)
                np.matmul(dgx2.T, self.params["weight_ih" + suffix], out=part.reshape(-1, features))
                dx_parts.append(part)
        if not need_input_grad:
            return None
        dx = self.empty("dx", (n, steps, features), dtype)
        if len(dx_parts) == 1:
            np.copyto(dx, dx_parts[0].transpose(1, 0, 2))
        else:
            np.add(dx_parts[0].transpose(1, 0, 2), dx_parts[1].transpose(1, 0, 2), out=dx)
        return dx

    def _gate_major(self, name: str, a: np.ndarray) -> np.ndarray:
        """(T, K, N) per-step arrays as one (K, T N) matrix, columns in (step, sample) order (a copy)."""
        steps, k, n = a.shape
        out = self.empty(name, (k, steps, n), a.dtype)
        np.copyto(out, a.transpose(1, 0, 2))
        return out.reshape(k, steps * n)

    def _back(self, d, dy, dh):  # pragma: no cover - abstract
        """Direction d's loop backward from dh, the gradient of its last state (for output last), with dy
        (T, N, H) the gradient of its outputs (None for last): (dL/d(input part of a), dL/d(state part of a)),
        both (T, N, G H), the same array where they are equal (rnn, lstm)."""
        raise NotImplementedError

    def _carry(self, t, dh, dht):
        """At padded steps the state passed through unchanged, and so does its gradient."""
        if self.pad is not None:
            np.copyto(dh, dht, where=self.pad[t])

    def _stop(self, t, *arrays):
        """Padded steps' pre-activation gradients are 0: they add nothing to dW or dx."""
        if self.pad is not None:
            for a in arrays:
                np.copyto(a, 0, where=self.pad[t])


@LAYERS.register("rnn")
class RNN(_Recurrent):
    """Elman recurrent layer h' = tanh or relu(W_ih x + b_ih + W_hh h + b_hh), as torch.nn.RNN (see the module docstring).

    x: (N, T, D) -> (N, T, dirs H) (`output: sequence`) or h_n (N, dirs H) (`output: last`).
    `activation` tanh (torch's default) or relu. Weight decay applies to the weights, not the biases.
    """

    gates = 1

    def __init__(
        self,
        *,
        units: Annotated[int, Range(ge=1, le=1_000_000)],
        bidirectional: bool = False,
        output: Literal["sequence", "last"] = "sequence",
        activation: Literal["tanh", "relu"] = "tanh",
        init: InitName | None = None,
        init_scale: Annotated[float, Range(gt=0)] | None = None,
    ):
        super().__init__(units=units, bidirectional=bidirectional, output=output, init=init, init_scale=init_scale)
        if activation not in ("tanh", "relu"):
            raise ValueError(f"{self.name}: activation must be tanh or relu, got {activation!r}")
        self.activation = activation
        self.mask = None

    def onnx_attributes(self):
        return {"activations": ["Relu" if self.activation == "relu" else "Tanh"] * self.directions}

    def torch_options(self):
        return {"nonlinearity": self.activation if self.activation != "tanh" else None}

    def _run(self, d, gates, hs):
        steps, h, n = gates.shape
        w_hh = self.params["weight_hh" + self.suffixes[d]]
        hh = self.empty("hh", (h, n), gates.dtype)
        relu = self.activation == "relu"
        if relu:
            if d == 0:
                self.mask = self.empty("mask", (self.directions, steps, h, n), np.bool_)
            mask = self.mask[d]
        pad = self.pad
        for t, before, after in self._order(d, steps):
            a = gates[t]
            np.matmul(w_hh, hs[before], out=hh)
            np.subtract(hh, a, out=a)  # the pre-activation: a held its negated input part
            if relu:
                np.greater(a, 0, out=mask[t])
                np.maximum(a, 0, out=hs[after])
            else:
                np.tanh(a, out=hs[after])
            if pad is not None:
                np.copyto(hs[after], hs[before], where=pad[t])
                if relu:
                    np.copyto(mask[t], False, where=pad[t])

    def _back(self, d, dy, dh):
        saved = self.saved[d]
        hs = saved["hs"]
        steps, h, n = saved["gates"].shape
        w_hh = self.params["weight_hh" + self.suffixes[d]]
        da = self.empty(f"da{d}", (steps, h, n), hs.dtype)
        dht = self.empty("dht", (h, n), hs.dtype)
        tmp = self.empty("tmp", (h, n), hs.dtype)
        relu = self.activation == "relu"
        mask = self.mask[d] if relu else None
        for t, before, after in reversed(self._order(d, steps)):
            if dy is None:
                dh, dht = dht, dh  # dht: the state's whole gradient; dh is free to receive the next
            else:
                np.add(dh, dy[t], out=dht)
            g = da[t]
            if relu:
                np.multiply(dht, mask[t], out=g)
            else:
                np.copyto(g, dht)
                _times_tanh_grad(g, hs[after], tmp)
            self._stop(t, g)
            np.matmul(w_hh.T, g, out=dh)
            self._carry(t, dh, dht)
        return da, da

    def kinks(self):
        return self.mask if self.activation == "relu" else None


@LAYERS.register("lstm")
class LSTM(_Recurrent):
    """Long short-term memory layer, as torch.nn.LSTM: gates i, f, g, o; c' = f c + i g, h' = o tanh(c') (see the module docstring).

    x: (N, T, D) -> the states h (N, T, dirs H) (`output: sequence`) or h_n (N, dirs H)
    (`output: last`). Weight decay applies to the weights, not the biases.
    """

    gates = 4
    onnx_op, onnx_gates, torch_class = "LSTM", (0, 3, 1, 2), "LSTM"

    def _run(self, d, gates, hs):
        steps, gh, n = gates.shape
        h = self.units
        dtype = gates.dtype
        w_hh = self.params["weight_hh" + self.suffixes[d]]
        cs = self.empty(f"c{d}", (steps + 1, h, n), dtype)
        cs[steps if d else 0] = 0
        tanh_c = self.empty(f"tanh_c{d}", (steps, h, n), dtype)
        self.saved[d].update(cs=cs, tanh_c=tanh_c)
        hh = self.empty("hh", (gh, n), dtype)
        tmp = self.empty("tmp", (h, n), dtype)
        pad = self.pad
        for t, before, after in self._order(d, steps):
            a = gates[t]
            np.matmul(w_hh, hs[before], out=hh)
            a -= hh  # -(pre-activations)
            # All four blocks through one exp: sigmoid(x) = 1 / (1 + e^-x) for i, f, o, and for g
            # tanh(x) = 2 sigmoid(2 x) - 1, with e^-2x = (e^-x)^2.
            np.exp(a, out=a)
            np.multiply(a[2 * h : 3 * h], a[2 * h : 3 * h], out=a[2 * h : 3 * h])
            a += 1
            np.reciprocal(a, out=a)
            np.multiply(a[2 * h : 3 * h], 2, out=a[2 * h : 3 * h])
            a[2 * h : 3 * h] -= 1
            c = cs[after]
            np.multiply(a[h : 2 * h], cs[before], out=c)
            np.multiply(a[:h], a[2 * h : 3 * h], out=tmp)
            c += tmp
            np.tanh(c, out=tanh_c[t])
            np.multiply(a[3 * h :], tanh_c[t], out=hs[after])
            if pad is not None:
                np.copyto(c, cs[before], where=pad[t])
                np.copyto(hs[after], hs[before], where=pad[t])

    def _back(self, d, dy, dh):
        saved = self.saved[d]
        acts, cs, tanh_c = saved["gates"], saved["cs"], saved["tanh_c"]
        steps, gh, n = acts.shape
        h = self.units
        dtype = acts.dtype
        w_hh = self.params["weight_hh" + self.suffixes[d]]
        da = self.empty(f"da{d}", (steps, gh, n), dtype)
        dht = self.empty("dht", (h, n), dtype)
        dc = self.empty("dc", (h, n), dtype)
        dc[...] = 0
        dct = self.empty("dct", (h, n), dtype)
        tmp = self.empty("tmp", (h, n), dtype)
        slope = self.empty("slope", (gh, n), dtype)
        valid = self.valid
        for t, before, after in reversed(self._order(d, steps)):
            if dy is None:
                dh, dht = dht, dh
            else:
                np.add(dh, dy[t], out=dht)
            a, g = acts[t], da[t]
            i, f, gg, o = a[:h], a[h : 2 * h], a[2 * h : 3 * h], a[3 * h :]
            di, df, dg, do = g[:h], g[h : 2 * h], g[2 * h : 3 * h], g[3 * h :]
            tc = tanh_c[t]
            np.multiply(dht, tc, out=do)  # dL/do
            np.multiply(dht, o, out=dct)  # dL/dtanh(c'), then dL/dc' with the carried dc
            _times_tanh_grad(dct, tc, tmp)
            dct += dc
            np.multiply(dct, gg, out=di)
            np.multiply(dct, i, out=dg)
            np.multiply(dct, cs[before], out=df)
            # dc <- dL/dc = dL/dc' f, at real steps; at padded ones c passed through unchanged.
            np.multiply(dct, f, out=dc, where=True if valid is None else valid[t])
            # Through the activations, all four blocks at once: s (1 - s) = s - s^2 for i, f, o, 1 - g^2 for g.
            np.multiply(a, a, out=slope)
            np.subtract(a[: 2 * h], slope[: 2 * h], out=slope[: 2 * h])
            np.subtract(1, slope[2 * h : 3 * h], out=slope[2 * h : 3 * h])
            np.subtract(o, slope[3 * h :], out=slope[3 * h :])
            g *= slope
            self._stop(t, g)
            np.matmul(w_hh.T, g, out=dh)
            self._carry(t, dh, dht)
        return da, da


@LAYERS.register("gru")
class GRU(_Recurrent):
    """Gated recurrent unit layer, as torch.nn.GRU: gates r, z, n; h' = (1 - z) n + z h (see the module docstring).

    x: (N, T, D) -> (N, T, dirs H) (`output: sequence`) or h_n (N, dirs H) (`output: last`).
    Weight decay applies to the weights, not the biases.
    """

    gates = 3
    onnx_op, onnx_gates, torch_class = "GRU", (1, 0, 2), "GRU"

    def onnx_attributes(self):
        return {"linear_before_reset": 1}  # r scales W_hn h + b_hn, as torch's GRU

    def _input_bias(self, suffix, dtype):
        bias = self.params["bias_ih" + suffix].astype(dtype, copy=True)
        bias[: 2 * self.units] += self.params["bias_hh" + suffix][: 2 * self.units]
        return bias

    def _run(self, d, gates, hs):
        steps, gh, n = gates.shape
        h = self.units
        dtype = gates.dtype
        suffix = self.suffixes[d]
        w_hh = self.params["weight_hh" + suffix]
        b_hn = self.params["bias_hh" + suffix][2 * h :]
        hns = self.empty(f"hn{d}", (steps, h, n), dtype)  # W_hn h + b_hn of each step, which r scaled
        self.saved[d]["hn"] = hns
        hh = self.empty("hh", (gh, n), dtype)
        tmp = self.empty("tmp", (h, n), dtype)
        pad = self.pad
        for t, before, after in self._order(d, steps):
            a = gates[t]
            np.matmul(w_hh, hs[before], out=hh)
            rz = a[: 2 * h]
            rz -= hh[: 2 * h]
            _sigmoid_of_negated_(rz)
            np.add(hh[2 * h :], b_hn[:, None], out=hns[t])
            nn = a[2 * h :]
            np.multiply(a[:h], hns[t], out=tmp)
            np.subtract(tmp, nn, out=nn)
            np.tanh(nn, out=nn)
            # h' = n + z (h - n)
            np.subtract(hs[before], nn, out=tmp)
            tmp *= a[h : 2 * h]
            np.add(nn, tmp, out=hs[after])
            if pad is not None:
                np.copyto(hs[after], hs[before], where=pad[t])

    def _back(self, d, dy, dh):
        saved = self.saved[d]
        acts, hs, hns = saved["gates"], saved["hs"], saved["hn"]
        steps, gh, n = acts.shape
        h = self.units
        dtype = acts.dtype
        w_hh = self.params["weight_hh" + self.suffixes[d]]
        dgx = self.empty(f"dgx{d}", (steps, gh, n), dtype)  # dL/d(W_ih x + b_ih) per gate
        dgh = self.empty(f"dgh{d}", (steps, gh, n), dtype)  # dL/d(W_hh h + b_hh) per gate
        dht = self.empty("dht", (h, n), dtype)
        tmp = self.empty("tmp", (h, n), dtype)
        tmp2 = self.empty("tmp2", (2 * h, n), dtype)
        for t, before, after in reversed(self._order(d, steps)):
            if dy is None:
                dh, dht = dht, dh
            else:
                np.add(dh, dy[t], out=dht)
            a, gx, gh_ = acts[t], dgx[t], dgh[t]
            r, z, nn = a[:h], a[h : 2 * h], a[2 * h :]
            dr, dz, dn = gx[:h], gx[h : 2 * h], gx[2 * h :]
            np.subtract(hs[before], nn, out=dz)  # dL/dz = dh (h - n)
            dz *= dht
            np.subtract(1, z, out=dn)  # dL/dn = dh (1 - z), then through its tanh
            dn *= dht
            _times_tanh_grad(dn, nn, tmp)
            np.multiply(dn, hns[t], out=dr)  # dL/dr = dL/da_n (W_hn h + b_hn)
            _times_sigmoid_grad(gx[: 2 * h], a[: 2 * h], tmp2)
            gh_[: 2 * h] = gx[: 2 * h]
            np.multiply(dn, r, out=gh_[2 * h :])
            self._stop(t, gx, gh_)
            np.matmul(w_hh.T, gh_, out=dh)
            np.multiply(dht, z, out=tmp)  # h' = ... + z h
            dh += tmp
            self._carry(t, dh, dht)
        return dgx, dgh
