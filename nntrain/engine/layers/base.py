"""The layer protocol: one class per layer, with one forward and one backward.

Shapes: a layer maps (batch, *in_shape) -> (batch, *out_shape). `setup(in_shape, ...)` takes
the per-sample input shape, allocates the parameters and returns the per-sample output shape,
so shapes flow from the data through the config before anything is computed.
`forward(x, training)` keeps what `backward` needs; `backward(grad, need_input_grad)` takes
dL/d(output), fills `grads` for the layer's own parameters and returns dL/d(input) (None when
`need_input_grad` is False: nobody needs it).

Gradients are assigned, not accumulated: in a chain every layer is applied once per batch, so
there is no fan-out to sum over and no zero-grad pass to pay for.

Arrays a layer writes its results into come from `self.empty(name, shape, dtype)` (see
`engine.arena`): new arrays, except inside a training step of the trainer's batch loop, where
the network's arena hands back last step's array. A layer never writes into its arguments.

A layer's config options are the keyword-only parameters of its constructor (see `registry`);
shapes, dtype and weights come later, in `setup`. Besides `params` (trained) a layer may keep
`state`: arrays the optimizer never touches but that checkpoints save with the parameters
(batch_norm's running statistics), updated in place so the arrays the network sees stay the
layer's. Randomness at training time comes from `self.rng`, the network's Generator (see
`Network.rng`); a stochastic layer used on its own must be given one by hand.

Sequences are samples of shape (T, features...): time is the batch's axis 1. Sequences of
different lengths share a batch padded after each one's last real step, with `lengths`
(batch,) ints in 1..T. A layer that must know them (a recurrent layer, a pooling over time)
declares `uses_lengths`; the network sets `self.lengths` before each forward (None when every
sample is whole) and backward uses the same. `out_lengths` tells the network what the lengths
of a layer's output are: the same for layers that act per step (the default), other numbers
for a strided convolution over time, None once the time axis is gone.
"""

from __future__ import annotations

import numpy as np

from ..arena import FRESH, Arena
from ..graph import ExportError
from ..registry import Registry

LAYERS = Registry("layer")

Shape = tuple[int, ...]


class Layer:
    """Base class: no parameters, shape unchanged.

    The class attributes below are what the rest of the program may know about a layer;
    nothing outside the engine tests a layer's name.
    """

    name = "layer"
    # An activation whose units can die, a unit being dead when its output is <= 0 for every
    # input: "zero" when a dead unit passes no gradient at all (relu), "leak" when only a leak.
    dies: str | None = None
    # An activation whose output saturates outside the open interval (low, high), where its
    # local gradient nearly vanishes.
    saturates: tuple[float, float] | None = None
    # A training-mode forward normalizes with statistics of the batch; then `min_batch` is the
    # fewest samples a training batch may have (set by setup: batch_norm over images needs only 1).
    batch_statistics = False
    min_batch = 1
    # Parameters that weight decay and the l1 / l2 penalties apply to (weight matrices and
    # kernels, not biases), and those that are per-feature scales starting at 1 (their size is
    # not a weight's size: diagnostics leave them out of the weight-ratio warnings).
    decayed: tuple[str, ...] = ()
    scales: tuple[str, ...] = ()
    # A training-mode forward draws random numbers, so two evaluations of the same batch differ
    # (what a line search, which evaluates the loss many times, must know).
    random = False
    # How many axes a sample must have for this layer (3 for (channels, height, width)), when it
    # needs a shape; None takes any. Image data reaches the first such layer with its shape kept.
    sample_ndim: int | None = None
    # The constructor option that sets the size of the output's last axis (or channels), if any:
    # where a user fixes a network whose output does not fit the data.
    width_option: str | None = None
    # The constructor option that is the data's vocabulary size (an embedding's), filled in from
    # text data when the config leaves it out.
    vocabulary_option: str | None = None

    # The layer takes integer ids (token ids into an embedding), held in a float array: its
    # input has no gradient, and backward returns None.
    integer_input = False
    # The layer reads `self.lengths`, the real length of each sample's sequence (see the module docstring).
    uses_lengths = False
    lengths: np.ndarray | None = None

    rng: np.random.Generator | None = None  # training-time randomness; set by the Network
    arena: Arena = FRESH  # where results are written; the Network gives each layer its own

    def __init__(self):
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.state: dict[str, np.ndarray] = {}

    def empty(self, name: str, shape: Shape, dtype) -> np.ndarray:
        """An array to write a result into (see engine.arena)."""
        return self.arena.empty(self, name, shape, dtype)

    def _generator(self) -> np.random.Generator:
        if self.rng is None:
            raise RuntimeError(f"{self.name} layer has no rng: a Network sets it; a standalone layer needs layer.rng")
        return self.rng

    def _add_params(self, dtype, **values: np.ndarray) -> None:
        """Set the parameters (cast to dtype) and zeroed gradients of the same shapes."""
        self.params = {k: np.asarray(v, dtype=dtype) for k, v in values.items()}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}

    def setup(self, in_shape: Shape, dtype, rng: np.random.Generator, init: str, init_scale: float) -> Shape:
        """Allocate parameters for samples of shape `in_shape`; return the samples' output shape."""
        return in_shape

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, grad: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:  # pragma: no cover
        raise NotImplementedError

    def out_lengths(self, lengths: np.ndarray) -> np.ndarray | None:
        """The real lengths of the output's sequences given the input's (batch,): the same by default."""
        return lengths

    def kinks(self) -> np.ndarray | None:
        """Which side of each non-differentiable point the last forward was on (for gradcheck)."""
        return None

    # --- export (see engine.graph): how other runtimes compute this layer ----------------------

    def to_graph(self, graph, x: str) -> str:
        """Emit the eval-mode forward into `graph` (an engine.graph.Graph) from the value named x; its output's name.

        `graph.lengths` is the name of the input sequences' (N,) real lengths when the layer
        `uses_lengths` and they may be shorter than T, else None.
        """
        raise ExportError(f"{self.name} layers cannot be exported to a graph yet")

    def lengths_to_graph(self, graph, lengths: str) -> str | None:
        """The output's real lengths as graph values, from the input's (`out_lengths`): the same by default."""
        return lengths

    def torch_module(self) -> str:
        """Source of the equivalent torch module's constructor (e.g. "nn.Linear(64, 10)"), after setup."""
        raise ExportError(f"{self.name} layers have no torch module to export to yet")

    def torch_state(self) -> dict[str, np.ndarray]:
        """Parameters and state under the names and layouts of `torch_module()`'s module (empty: none)."""
        return {}


class ShapeError(ValueError):
    """A layer cannot take inputs of this shape (a convolution of a flat vector, a kernel larger than the image)."""


def need_ndim(layer: Layer, in_shape: Shape, ndim: int, what: str) -> None:
    """ShapeError unless samples have `ndim` axes (e.g. 3 for (channels, height, width))."""
    if len(in_shape) != ndim:
        raise ShapeError(f"{layer.name} takes samples of shape {what}, but its input has shape {tuple(in_shape)}")
