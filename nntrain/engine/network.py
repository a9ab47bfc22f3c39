"""Network: a chain of layers and a loss; shapes flow through setup; forward, backward, parameters, state."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .arena import Arena, pack_parameters
from .init import InitError
from .layers import Layer, Shape, ShapeError
from .losses import Loss


@dataclass
class Param:
    """One parameter tensor as the optimizer and checkpoints see it."""

    key: str  # "layers.<i>.<name>", i = the layer's index in the config's model.layers
    value: np.ndarray
    grad: np.ndarray
    decay: bool  # weight decay / L1 / L2 apply: the names in the layer's `decayed` (weights, kernels)


DEFAULT_RNG_SEED = 0


class Network:
    """Layers applied in order, then a loss on the last output.

    `in_shape` is the shape of one sample (an int n means (n,)); inputs are (batch, *in_shape),
    or (batch, prod(in_shape)) rows, which are viewed in that shape. `shapes[i]` is the shape of
    layer i's output for one sample, and `out_shape` the last of them.

    When the last layer is the activation the loss already applies (softmax before
    cross_entropy, sigmoid before binary_cross_entropy), that layer is skipped in the chain and
    the loss works on the logits, which is exact and numerically stable; `predict` still
    returns probabilities.

    `rng` (the constructor argument) initializes the weights and is not kept. Randomness at
    training time (dropout masks, gaussian noise) comes from `network.rng`, a separate
    Generator, seeded with DEFAULT_RNG_SEED until the owner assigns its own (the trainer assigns
    the run's training generator, whose state checkpoints save). Assigning `network.rng` hands
    that same Generator object to every layer as `layer.rng`.

    `params` lists what the optimizer trains; the layers' `state` (batch_norm's running
    statistics) is not in it, but `state_dict` / `load_state_dict` carry both, each as
    layers.<i>.<name>.
    """

    def __init__(self, layers: list[Layer], loss: Loss, in_shape: Shape | int, dtype, rng, init="he", init_scale=0.01):
        self.layers = layers
        self.loss = loss
        self.dtype = np.dtype(dtype)
        self.in_shape = (in_shape,) if isinstance(in_shape, (int, np.integer)) else tuple(int(n) for n in in_shape)
        shape, self.shapes = self.in_shape, []
        for i, layer in enumerate(layers):
            if layer.integer_input and i > 0:
                error = ShapeError(f"{layer.name} takes token ids from the data, so it must be the first layer")
                error.layer = i
                raise error
            try:
                shape = tuple(layer.setup(shape, self.dtype, rng, init, init_scale))
            except (InitError, ShapeError) as e:  # which layer it was, for the message
                e.layer = i
                raise
            self.shapes.append(shape)
        self.out_shape = shape
        self.fused = bool(layers) and loss.fuses is not None and layers[-1].name == loss.fuses
        self.chain = layers[:-1] if self.fused else layers
        pack_parameters(layers)
        self.params = [
            Param(f"layers.{i}.{name}", value, layer.grads[name], decay=name in layer.decayed)
            for i, layer in enumerate(layers)
            for name, value in layer.params.items()
        ]
        for i, layer in enumerate(layers):
            both = set(layer.params) & set(layer.state)
            if both:
                raise ValueError(f"layer {i} ({layer.name}) has {sorted(both)} both as parameters and as state")
        # One arena for the whole chain and the loss: it reuses arrays only inside a training step.
        self.arena = Arena()
        for part in (*layers, loss):
            part.arena = self.arena
        self._reuse = False
        self.rng = np.random.default_rng(DEFAULT_RNG_SEED)
        has_params = [i for i, layer in enumerate(self.chain) if layer.params]
        self._first_param_layer = has_params[0] if has_params else len(self.chain)

    @property
    def in_features(self) -> int:
        """Numbers per input sample: the width of the rows the data hands over."""
        return math.prod(self.in_shape)

    @property
    def out_features(self) -> int:
        return math.prod(self.out_shape)

    @property
    def min_batch(self) -> int:
        """The fewest samples a training batch may have (layers that normalize with batch statistics)."""
        return max((layer.min_batch for layer in self.layers if layer.batch_statistics), default=1)

    @property
    def rng(self) -> np.random.Generator:
        """The Generator that layers draw from at training time (dropout, noise); shared, not copied."""
        return self._rng

    @rng.setter
    def rng(self, generator: np.random.Generator) -> None:
        if not isinstance(generator, np.random.Generator):
            raise TypeError(f"Network.rng must be a numpy Generator, not {type(generator).__name__}")
        self._rng = generator
        for layer in self.layers:
            layer.rng = generator

    def summary(self) -> list[dict]:
        """One entry per layer: index, type, output shape per sample and parameter count (Keras' summary())."""
        return [
            {"layer": i, "type": layer.name, "shape": shape, "params": sum(v.size for v in layer.params.values())}
            for i, (layer, shape) in enumerate(zip(self.layers, self.shapes))
        ]

    def layer_state(self) -> dict[str, np.ndarray]:
        """Non-trained state of the layers (batch_norm running statistics) by key layers.<i>.<name>.

        The arrays are the layers' own (updated in place by training-mode forwards), not copies.
        """
        return {f"layers.{i}.{name}": value for i, layer in enumerate(self.layers) for name, value in layer.state.items()}

    def reuse_arrays(self, enabled: bool = True) -> None:
        """Reuse of arrays from one training step to the next (see engine.arena), on or off.

        While it is on, the arrays that `loss_and_grad` returns (z, dL/dx) and that layers keep
        stay valid only until the next `loss_and_grad`; the trainer's batch loop uses each
        batch's results before the next. Every other call gets new arrays. Off drops them.
        """
        self._reuse = bool(enabled)
        if not enabled:
            self.arena.clear()

    def as_samples(self, x: np.ndarray) -> np.ndarray:
        """Rows of prod(in_shape) numbers viewed as (batch, *in_shape)."""
        if x.ndim == 2 and len(self.in_shape) != 1:
            return x.reshape(len(x), *self.in_shape)
        return x

    def forward(self, x: np.ndarray, training: bool = False, lengths: np.ndarray | None = None) -> np.ndarray:
        """x: (batch, *in_shape) or rows (batch, in_features) -> output z: (batch, *out_shape), before any fused activation.

        `lengths` (batch,): the real length of each sample's sequence (in_shape[0] = T steps,
        padded after them); None when every sample is whole. Each layer that declares
        `uses_lengths` gets the lengths of its input; the loss gets those of the last output.
        """
        x = self.as_samples(x)
        lengths = self.check_lengths(lengths, x)
        for layer in self.chain:
            if layer.uses_lengths:
                layer.lengths = lengths
            x = layer.forward(x, training)
            if lengths is not None:
                lengths = layer.out_lengths(lengths)
        if self.loss.uses_lengths:
            self.loss.lengths = lengths
        return x

    def check_lengths(self, lengths, x: np.ndarray) -> np.ndarray | None:
        """lengths as int64 (batch,), None where every sample is whole; ValueError unless each is in 1..T."""
        if lengths is None:
            return None
        lengths = np.asarray(lengths)
        if x.ndim < 2 or lengths.shape != (len(x),) or not np.issubdtype(lengths.dtype, np.integer):
            raise ValueError(f"lengths must be ({len(x)},) integers, one per sequence of the batch, got {lengths.shape}")
        steps = x.shape[1]
        if len(lengths) and (lengths.min() < 1 or lengths.max() > steps):
            raise ValueError(f"lengths must be between 1 and the sequences' {steps} steps, got {lengths.min()}..{lengths.max()}")
        return None if (lengths == steps).all() else lengths.astype(np.int64, copy=False)

    def backward(self, grad: np.ndarray, input_grad: bool = False) -> np.ndarray | None:
        """grad: dL/dz (batch, *out_shape). Fills every parameter's gradient; returns dL/dx (batch, *in_shape) if asked.

        Without `input_grad`, layers below the first parameterized layer are not visited and
        that layer skips its input gradient: nobody needs the gradient w.r.t. the data. Token ids
        into an embedding have none: then the result is None.
        """
        for i in range(len(self.chain) - 1, -1, -1):
            if not input_grad and i < self._first_param_layer:
                return None
            grad = self.chain[i].backward(grad, need_input_grad=input_grad or i > self._first_param_layer)
            if grad is None:  # an embedding's token ids have no gradient
                return None
        return grad

    def loss_and_grad(self, x: np.ndarray, t: np.ndarray, input_grad: bool = False, lengths: np.ndarray | None = None):
        """One training step's pass: (loss, z, dL/dx or None), with parameter gradients filled.

        With `reuse_arrays` on, z and dL/dx are valid until the next call. `lengths`: see `forward`.
        """
        self.arena.reusing = self._reuse
        try:
            z = self.forward(x, training=True, lengths=lengths)
            loss = self.loss.forward(z, t)
            dx = self.backward(self.loss.backward(), input_grad)
        finally:
            self.arena.reusing = False
        if dx is not None and dx.shape != x.shape:
            dx = dx.reshape(x.shape)
        return loss, z, dx

    def predict(self, x: np.ndarray, lengths: np.ndarray | None = None) -> np.ndarray:
        """Probabilities (classification losses) or values: (batch, *out_shape)."""
        return self.loss.predict(self.forward(x, training=False, lengths=lengths))

    def state_dict(self) -> dict[str, np.ndarray]:
        """Parameters and layer state by key layers.<i>.<name>: the live arrays, not copies."""
        return {**{p.key: p.value for p in self.params}, **self.layer_state()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Copy parameters and layer state in place; keys and shapes must match exactly.

        Keys not starting with "layers." (a checkpoint's other entries) are ignored. Everything
        is checked before anything is changed: a rejected state leaves the network as it was.
        """
        expected = self.state_dict()
        missing = sorted(set(expected) - set(state))
        extra = sorted(k for k in state if k.startswith("layers.") and k not in expected)
        if missing or extra:
            raise ValueError(f"parameter keys differ: missing {missing or 'none'}, unexpected {extra or 'none'}")
        for key, value in expected.items():  # check everything before changing anything
            if np.shape(state[key]) != value.shape:
                raise ValueError(f"{key} has shape {np.shape(state[key])}, the network needs {value.shape}")
        for key, value in expected.items():
            value[...] = state[key]
