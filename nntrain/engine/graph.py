"""Format-neutral descriptions of a trained network for other runtimes (what `nntrain export` writes).

Two descriptions, each declared by the layers themselves (see `layers.base.Layer`):

- A computation graph. `Graph` records nodes (an operator type, input and output names,
  attributes) and constants (numpy arrays); operator types and attributes are plain strings
  and numbers, spelled as ONNX spells them (opset OPSET, ai.onnx.ml ML_OPSET), but nothing here
  imports onnx: the report side turns the records into a model file. A layer's
  `to_graph(graph, x)` emits its inference computation (eval mode: dropout and noise are the
  identity, batch_norm uses its running statistics) from the value named x and returns its
  output's name; `lengths_to_graph(graph, lengths)` does the same for the real lengths of
  its output's sequences (`Layer.out_lengths`). `network_to_graph` chains them and ends with
  what `Network.predict` applies (`predict_to_graph`).
- A torch.nn.Sequential with one module per layer (indices as nntrain's layer indices), as
  Python source (`torch_source`), and the parameters under its keys and layouts
  (`torch_state_dict`): layer i's `torch_state()` under "i.". Where a layer has no torch module
  of its own (a recurrent layer inside a Sequential, a module over nntrain's (N, T, C)
  sequences, time_pool), its constructor text uses a small helper of TORCH_HELPERS, whose
  source the snippet then defines; the helpers never rename a parameter.

A layer that cannot be described raises ExportError naming it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

OPSET = 18  # ONNX's default domain: Reduce* take their axes as an input from opset 18 on
ML_OPSET = 3  # ai.onnx.ml (LabelEncoder 2: string keys to int64 values)


class ExportError(ValueError):
    """A network (or one of its layers) that cannot be described for another runtime."""


@dataclass
class Node:
    """One operator application: outputs = op_type(inputs; attributes). An input "" is an omitted optional one."""

    op_type: str
    inputs: list[str]
    outputs: list[str]
    attributes: dict = field(default_factory=dict)
    domain: str = ""  # "" is ONNX's default domain; "ai.onnx.ml" for the classic-ML operators


@dataclass
class Value:
    """A graph input or output: name, numpy dtype (np.str_ for strings), shape with None for a free size (the batch)."""

    name: str
    dtype: np.dtype
    shape: tuple


class Graph:
    """Nodes and constants of an inference computation, recorded in order; every value has a unique name.

    `dtype` is the floating type the network computes in (float32). `lengths` is the name of the
    current (N,) int64 real lengths of the sequences flowing through (None: every sequence is
    whole, or no sequences); `network_to_graph` keeps it up to date between layers.

    Attribute values are Python ints, floats, strings, lists of them, or numpy dtypes (for
    Cast's `to`), which the writer turns into the format's own type codes.
    """

    def __init__(self, dtype=np.float32):
        self.dtype = np.dtype(dtype)
        self.nodes: list[Node] = []
        self.constants: dict[str, np.ndarray] = {}
        self.inputs: list[Value] = []
        self.outputs: list[Value] = []
        self.lengths: str | None = None
        self._used: set[str] = set()
        self._counts: Counter = Counter()
        self._masks: dict[tuple, str] = {}

    def fresh(self, hint: str) -> str:
        """A name not used yet, from `hint`."""
        while True:
            self._counts[hint] += 1
            name = f"{hint}_{self._counts[hint]}"
            if name not in self._used:
                self._used.add(name)
                return name

    def input(self, name: str, dtype, shape: tuple) -> str:
        """Declare a graph input (names are the user's: kept as given; ExportError if one repeats)."""
        if name in self._used:
            raise ExportError(f"two inputs would be named '{name}'")
        self._used.add(name)
        self.inputs.append(Value(name, np.dtype(dtype), tuple(shape)))
        return name

    def output(self, name: str, value: str, dtype, shape: tuple) -> str:
        """Declare `value` a graph output named `name` (through an Identity node)."""
        if name in self._used:
            raise ExportError(f"the output name '{name}' is already used")
        self._used.add(name)
        self.nodes.append(Node("Identity", [value], [name]))
        self.outputs.append(Value(name, np.dtype(dtype), tuple(shape)))
        return name

    def node(self, op_type: str, inputs, outputs: int = 1, domain: str = "", **attributes):
        """Append op_type(inputs) with `attributes`; the name of its output (a list when outputs > 1)."""
        names = [self.fresh(op_type.lower()) for _ in range(outputs)]
        self.nodes.append(Node(op_type, list(inputs), names, attributes, domain))
        return names[0] if outputs == 1 else names

    def constant(self, value, hint: str = "const", dtype=None) -> str:
        """An initializer holding `value`; floating values are cast to the graph's dtype unless `dtype` is given."""
        array = np.asarray(value)
        if dtype is not None:
            array = array.astype(dtype)
        elif array.dtype.kind == "f":
            array = array.astype(self.dtype)
        name = self.fresh(hint)
        self.constants[name] = np.array(array, order="C")  # (np.ascontiguousarray would make a scalar (1,))
        return name

    def ints(self, values, hint: str = "shape") -> str:
        """An int64 constant (shapes, axes, indices)."""
        return self.constant(np.asarray(values, dtype=np.int64), hint, np.int64)

    # --- helpers the layers share ------------------------------------------------------

    def valid(self, lengths: str, steps: int) -> str:
        """(N, T, 1) bool: True at the real steps t < lengths[n] of sequences of `steps` steps (cached)."""
        key = (lengths, steps)
        if key not in self._masks:
            times = self.ints(np.arange(steps)[None, :], "steps")
            column = self.node("Unsqueeze", [lengths, self.ints([1], "axes")])  # (N, 1)
            mask = self.node("Less", [times, column])  # (N, T)
            self._masks[key] = self.node("Unsqueeze", [mask, self.ints([2], "axes")])
        return self._masks[key]

    def fill_padding(self, x: str, steps: int, fill: float) -> str:
        """x (N, T, C) with the padded steps of each sequence set to `fill` (x itself when every sequence is whole)."""
        if self.lengths is None:
            return x
        return self.node("Where", [self.valid(self.lengths, steps), x, self.constant(np.array(fill), "fill")])

    def transpose(self, x: str, perm) -> str:
        return self.node("Transpose", [x], perm=list(perm))

    def reshape(self, x: str, shape) -> str:
        """Reshape to `shape`, where 0 keeps that axis's size (the batch)."""
        return self.node("Reshape", [x, self.ints(shape)])


def network_to_graph(network, graph: Graph, x: str, lengths: str | None = None) -> str:
    """Emit `network.predict`: x (N, *network.in_shape) in graph.dtype -> probabilities or values; the output's name.

    `lengths`: the name of the (N,) int64 real lengths of the input sequences, or None.
    """
    graph.lengths = lengths
    for i, layer in enumerate(network.chain):
        try:
            x = layer.to_graph(graph, x)
            if graph.lengths is not None:
                graph.lengths = layer.lengths_to_graph(graph, graph.lengths)
        except ExportError as e:
            raise ExportError(f"layer {i} ({layer.name}): {e}") from None
    return predict_to_graph(network.loss, graph, x)


def predict_to_graph(loss, graph: Graph, z: str) -> str:
    """What `loss.predict` does to the network's output z: the activation it fuses (softmax, sigmoid), or nothing."""
    from .layers import LAYERS
    from .losses import Loss

    if loss.fuses is not None:
        return LAYERS[loss.fuses]().to_graph(graph, z)
    if type(loss).predict is Loss.predict:
        return z
    raise ExportError(f"the {loss.name} loss's predictions cannot be exported")


# --- torch ----------------------------------------------------------------------------------

# Modules the torch snippet defines when a layer's constructor text uses them (found by name).
TORCH_HELPERS = {
    "recurrent": '''
def recurrent(cls, last):
    """torch's RNN / LSTM / GRU, batch-first, as a module of a Sequential: its output sequence (N, T, dirs H),
    or with `last` h_n as (N, dirs H), [forward, reverse]. The parameters keep torch's names (weight_ih_l0, ...)."""

    class Recurrent(cls):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, batch_first=True, **kwargs)

        def forward(self, x):
            y, state = super().forward(x)
            if not last:
                return y
            h = state[0] if isinstance(state, tuple) else state  # an LSTM's state is (h_n, c_n)
            return h.transpose(0, 1).reshape(len(x), -1)

    return Recurrent
''',
    "over_steps": '''
def over_steps(cls):
    """A torch module over (N, C, T) applied to sequences (N, T, C), as nntrain holds them: permuted in and out."""

    class OverSteps(cls):
        def forward(self, x):
            return super().forward(x.transpose(1, 2)).transpose(1, 2)

    return OverSteps
''',
    "TimePool": '''
class TimePool(nn.Module):
    """(N, T, C) -> (N, C): the last step, the mean or the max over the steps (whole sequences)."""

    def __init__(self, mode):
        super().__init__()
        self.mode = mode

    def forward(self, x):
        if self.mode == "last":
            return x[:, -1]
        return x.mean(dim=1) if self.mode == "mean" else x.amax(dim=1)
''',
}


def torch_state_dict(network) -> dict[str, np.ndarray]:
    """Every layer's `torch_state()` under "i." (i its index, the Sequential's): what torch's load_state_dict takes."""
    state = {}
    for i, layer in enumerate(network.layers):
        try:
            for key, value in layer.torch_state().items():
                state[f"{i}.{key}"] = np.array(value, order="C")  # a copy; scalars stay 0-d
        except ExportError as e:
            raise ExportError(f"layer {i} ({layer.name}): {e}") from None
    return state


def torch_source(network) -> str:
    """Python source that builds the equivalent torch.nn.Sequential as `model` (one module per layer, in order).

    For whole sequences: torch's modules in a Sequential take no lengths (see docs/export.md).
    The last lines say what `predict` applies after it when the loss fuses an activation the
    Sequential does not end with.
    """
    modules = []
    for i, layer in enumerate(network.layers):
        try:
            modules.append(layer.torch_module())
        except ExportError as e:
            raise ExportError(f"layer {i} ({layer.name}): {e}") from None
    helpers = [source.strip("\n") for name, source in TORCH_HELPERS.items() if any(f"{name}(" in m for m in modules)]
    lines = ["import torch", "from torch import nn", ""]
    for source in helpers:
        lines += ["", source, ""]
    if helpers:
        lines.append("")
    lines.append("model = nn.Sequential(")
    lines += [f"    {m},  # {i}: {layer.name}" for i, (m, layer) in enumerate(zip(modules, network.layers))]
    lines.append(")")
    loss = network.loss
    if loss.fuses is not None and not network.fused:
        from .layers import LAYERS

        lines.append(f"# predictions as nntrain predicts them: {LAYERS[loss.fuses]().torch_module()}(model(x))")
    return "\n".join(lines) + "\n"


def torch_args(*args, **options) -> str:
    """Constructor arguments as source: positional ones, then the options that are not None."""
    parts = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in options.items() if v is not None]
    return ", ".join(parts)
