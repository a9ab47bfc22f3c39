"""Token embeddings: integer ids -> learned vectors, as torch.nn.Embedding.

The data hands every input over as floats, so the ids arrive as whole numbers in a float
array: forward checks that each is a whole number in 0..vocabulary-1 and looks its row up.
The ids have no gradient: backward fills the table's gradient and returns None, and the
layer must come first in a network (`integer_input`, checked by Network). In float32 the
ids are exact up to 2**24 (16,777,216): a larger vocabulary needs float64 data.

The table's gradient is a scatter-add of the N T rows of the upstream gradient into the
rows of their ids (repeated ids add up). It is one np.bincount over the flat indices
id * dim + feature, which writes the whole (vocabulary, dim) table, zeros included. Measured
for 3000 ids (numpy 2.4, 2 cores), in microseconds, float64:

    vocabulary x dim     np.add.at   sort + add.reduceat   bincount
    100 x 16                  792                  199          92
    100 x 64                 1389                  582         452
    1000 x 64                1816                 1364         498
    10000 x 64               2493                 2392        1279
    10000 x 256             13602                14666        7435

(bincount sums in float64 whatever the dtype, then the table is cast to it.)
"""

from __future__ import annotations

from typing import Annotated

import numpy as np

from .base import LAYERS, Layer, ShapeError, need_ndim
from ..graph import torch_args
from ..registry import Range

MAX_VOCABULARY = 100_000_000


@LAYERS.register("embedding")
class Embedding(Layer):
    """A (vocabulary, dim) table of vectors looked up by token id, as torch.nn.Embedding(vocabulary, dim, padding_idx).

    x: (N, T) ids (whole numbers held in floats) -> y: (N, T, dim), y[n, t] = W[x[n, t]].
    W is drawn N(0, 1) as torch draws it (times `init_scale` when given; the model-wide
    initializer and init_scale do not apply: they are sized for weights of a product, and an
    embedding's rows are looked up, not summed). `padding_index`: the id of a padding token,
    whose row starts at zero, reads as zero whatever it holds and never gets a gradient (torch's
    padding_idx; there a row set by hand would be read, here none can be set, so it stays
    zero, and reading zero makes the gradient of that row truly 0, so gradcheck agrees).

    Weight decay (and the l1 / l2 penalties) do not apply to W (`decayed` is empty): a dense
    decay gradient shrinks every row at every step, while a rare token's row gets a gradient
    from the data only in the few batches that hold it, so the decay, not the data, would set
    the vectors of rare tokens. minGPT leaves nn.Embedding out of weight decay for this reason
    and Keras' Embedding has no regularizer by default (torch's optimizers decay whatever they
    are given, embeddings included).
    """

    integer_input = True
    sample_ndim = 1
    width_option = "dim"
    vocabulary_option = "vocabulary"
    decayed = ()

    def __init__(
        self,
        *,
        vocabulary: Annotated[int, Range(ge=1, le=MAX_VOCABULARY)] | None = None,
        dim: Annotated[int, Range(ge=1, le=1_000_000)],
        padding_index: int | None = None,
        init_scale: Annotated[float, Range(gt=0)] | None = None,
    ):
        super().__init__()
        for option, value, low, high in (("vocabulary", vocabulary, 1, MAX_VOCABULARY), ("dim", dim, 1, 1_000_000)):
            if value is None and option == "vocabulary":
                continue
            if not isinstance(value, (int, np.integer)) or isinstance(value, (bool, np.bool_)) or not low <= value <= high:
                raise ValueError(f"{self.name}: {option} must be an integer between {low} and {high}, got {value!r}")
        self.vocabulary, self.dim = None if vocabulary is None else int(vocabulary), int(dim)
        self.padding_index = padding_index
        self.init_scale = init_scale
        self.ids = self.pad = None
        if self.vocabulary is not None:
            self._check_padding_index()

    def _check_padding_index(self) -> None:
        padding_index = self.padding_index
        if padding_index is not None:
            whole = isinstance(padding_index, (int, np.integer)) and not isinstance(padding_index, (bool, np.bool_))
            if not whole or not 0 <= padding_index < self.vocabulary:
                raise ValueError(
                    f"{self.name}: padding_index must be a token id in 0..{self.vocabulary - 1} (vocabulary "
                    f"{self.vocabulary}), got {padding_index!r}"
                )
            self.padding_index = int(padding_index)

    def setup(self, in_shape, dtype, rng, init, init_scale):
        need_ndim(self, in_shape, 1, "(steps,) of token ids")
        if self.vocabulary is None:
            raise ShapeError(f"{self.name} needs its vocabulary size: give vocabulary, or train on text, whose vocabulary sets it")
        self._check_padding_index()
        self.steps = in_shape[0]
        weight = rng.standard_normal((self.vocabulary, self.dim))  # drawn in float64, then cast (as engine.init)
        if self.init_scale is not None:
            weight *= self.init_scale
        if self.padding_index is not None:
            weight[self.padding_index] = 0
        self._add_params(dtype, weight=weight)
        return (self.steps, self.dim)

    def token_ids(self, x: np.ndarray) -> np.ndarray:
        """x as intp ids (an arena array); ValueError naming the first bad value unless all are whole numbers in range."""
        x = np.asarray(x)
        ids = self.empty("ids", x.shape, np.intp)
        if x.dtype.kind in "iu":
            good = (x >= 0) & (x < self.vocabulary)
        else:
            # NaN fails every comparison; a fraction is not equal to its floor.
            good = (x >= 0) & (x <= self.vocabulary - 1) & (np.floor(x) == x)
        if not good.all():
            where = tuple(int(i) for i in np.argwhere(~good)[0])
            value = x[where]
            what = "not a whole number" if x.dtype.kind == "f" and np.isfinite(value) and value != np.floor(value) else "out of range"
            raise ValueError(
                f"{self.name}: token ids must be whole numbers in 0..{self.vocabulary - 1} (vocabulary {self.vocabulary}), "
                f"got {value.item()!r} ({what}) at index {list(where)} of the batch"
            )
        np.copyto(ids, x, casting="unsafe")
        return ids

    def forward(self, x, training):
        if x.ndim != 2:
            raise ValueError(f"{self.name} takes a batch of (steps,) token ids, (N, T), got an array of shape {x.shape}")
        weight = self.params["weight"]
        self.ids = ids = self.token_ids(x)
        y = np.take(weight, ids, axis=0, out=self.empty("y", (*ids.shape, self.dim), weight.dtype))
        self.pad = None
        if self.padding_index is not None:
            self.pad = np.equal(ids, self.padding_index, out=self.empty("pad", ids.shape, np.bool_))
            np.copyto(y, 0, where=self.pad[..., None])
        return y

    def backward(self, grad, need_input_grad=True):
        """grad: (N, T, dim) -> None. dW[v] = the sum of grad over the positions of id v; the padding row 0."""
        ids, dim = self.ids.reshape(-1), self.dim
        g = grad.reshape(-1, dim)
        flat = self.empty("flat_ids", (len(ids), dim), np.intp)  # id * dim + feature of every entry of g
        np.add.outer(np.multiply(ids, dim, out=self.empty("row_starts", ids.shape, np.intp)), self.arena.arange(dim), out=flat)
        sums = np.bincount(flat.reshape(-1), weights=g.reshape(-1), minlength=self.vocabulary * dim)
        dweight = self.grads["weight"]
        np.copyto(dweight, sums.reshape(self.vocabulary, dim))
        if self.padding_index is not None:
            dweight[self.padding_index] = 0
        return None  # token ids have no gradient

    def _table(self) -> np.ndarray:
        """W with the padding row zero: what forward reads."""
        weight = self.params["weight"].copy()
        if self.padding_index is not None:
            weight[self.padding_index] = 0
        return weight

    def to_graph(self, graph, x):
        """Gather(W, ids): x holds int64 token ids (N, T)."""
        return graph.node("Gather", [graph.constant(self._table(), "embedding"), x], axis=0)

    def torch_module(self):
        return f"nn.Embedding({torch_args(self.vocabulary, self.dim, padding_idx=self.padding_index)})"

    def torch_state(self):
        return {"weight": self._table()}
