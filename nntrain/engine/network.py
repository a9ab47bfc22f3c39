"""Network: a chain of layers and a loss, with forward, backward and the parameter list."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .init import InitError
from .layers import Layer
from .losses import Loss


@dataclass
class Param:
    """One parameter tensor as the optimizer and checkpoints see it."""

    key: str  # "layers.<i>.<name>", i = the layer's index in the config's model.layers
    value: np.ndarray
    grad: np.ndarray
    decay: bool  # weight decay / L2 applies: the names in the layer's `decayed` (linear weights only)


DEFAULT_RNG_SEED = 0


def pack_parameters(layers: list[Layer]) -> None:
    """Make the layers' parameters consecutive views of one flat array, and their gradients of another.

    In the order of `Network.params` (layer by layer, each layer's params in order). The values
    are copied, the layers' dicts then hold the views, and nothing else changes: every
    parameter is still its own (C-contiguous) array, updated in place as before. What it buys is
    that an optimizer can update all parameters with one call per operation over the flat arrays
    (see `contiguous_views`) instead of one per parameter, which matters at small batch sizes.
    Parameters of different dtypes are left as they are.
    """
    entries = [(layer, name) for layer in layers for name in layer.params]
    if not entries:
        return
    dtypes = {layer.params[name].dtype for layer, name in entries} | {layer.grads[name].dtype for layer, name in entries}
    if len(dtypes) != 1:
        return
    dtype = dtypes.pop()
    total = sum(layer.params[name].size for layer, name in entries)
    values, grads = np.empty(total, dtype), np.zeros(total, dtype)
    offset = 0
    for layer, name in entries:
        value, grad = layer.params[name], layer.grads[name]
        size = value.size
        view = values[offset : offset + size].reshape(value.shape)
        view[...] = value
        layer.params[name] = view
        view = grads[offset : offset + size].reshape(grad.shape)
        view[...] = grad
        layer.grads[name] = view
        offset += size


def contiguous_views(arrays) -> np.ndarray | None:
    """The 1-D array that `arrays` tile in order (each a C-contiguous view, back to back), or None."""
    if not arrays:
        return None
    base = arrays[0].base
    if base is None or base.ndim != 1 or not base.flags.c_contiguous:
        return None
    start = base.__array_interface__["data"][0]
    first = position = arrays[0].__array_interface__["data"][0]
    for a in arrays:
        if a.base is not base or a.dtype != base.dtype or not a.flags.c_contiguous:
            return None
        if a.__array_interface__["data"][0] != position:
            return None
        position += a.nbytes
    begin = (first - start) // base.itemsize
    return base[begin : begin + (position - first) // base.itemsize]


class Network:
    """Layers applied in order, then a loss on the last output.

    When the last layer is the activation the loss already applies (softmax before
    cross_entropy, sigmoid before binary_cross_entropy), that layer is skipped in the
    chain and the loss works on the logits, which is exact and numerically stable;
    `predict` still returns probabilities.

    `rng` (the constructor argument) initializes the weights and is not kept. Randomness at
    training time (dropout masks, gaussian noise) comes from `network.rng`, a separate
    Generator, seeded with DEFAULT_RNG_SEED until the owner assigns its own (the trainer
    assigns the run's training generator, whose state checkpoints save). Assigning
    `network.rng` hands that same Generator object to every layer as `layer.rng`; code that
    needs to replay a forward pass can save and restore `network.rng.bit_generator.state`.

    `params` lists what the optimizer trains; layers' `buffers` (batch_norm's running
    statistics) are not in it, but `state_dict` / `load_state_dict` carry both, each as
    layers.<i>.<name>.
    """

    def __init__(self, layers: list[Layer], loss: Loss, in_features: int, dtype, rng, init="he", init_scale=0.01):
        self.layers = layers
        self.loss = loss
        self.dtype = np.dtype(dtype)
        self.in_features = in_features
        width = in_features
        for i, layer in enumerate(layers):
            try:
                width = layer.setup(width, self.dtype, rng, init, init_scale)
            except InitError as e:  # which layer's weights overflowed, for the message
                e.layer = i
                raise
        self.fused = bool(layers) and loss.fuses is not None and layers[-1].name == loss.fuses
        self.chain = layers[:-1] if self.fused else layers
        self.out_features = width
        pack_parameters(layers)
        self.params = [
            Param(f"layers.{i}.{name}", value, layer.grads[name], decay=name in layer.decayed)
            for i, layer in enumerate(layers)
            for name, value in layer.params.items()
        ]
        for i, layer in enumerate(layers):
            both = set(layer.params) & set(layer.buffers)
            if both:
                raise ValueError(f"layer {i} ({layer.name}) has {sorted(both)} both as parameters and as buffers")
        self.rng = np.random.default_rng(DEFAULT_RNG_SEED)
        self._reuse = False  # workspace mode (reuse_buffers)
        has_params = [i for i, layer in enumerate(self.chain) if layer.params]
        self._first_param_layer = has_params[0] if has_params else len(self.chain)

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

    def buffers(self) -> dict[str, np.ndarray]:
        """Non-trained state of the layers (batch_norm running statistics) by key layers.<i>.<name>.

        The arrays are the layers' own (updated in place by training-mode forwards), not copies.
        """
        return {f"layers.{i}.{name}": value for i, layer in enumerate(self.layers) for name, value in layer.buffers.items()}

    def reuse_buffers(self, enabled: bool = True) -> None:
        """Workspace mode on or off (see engine.workspace): training-mode outputs and gradients in reused arrays.

        While it is on, the arrays that a training-mode `forward`, `backward` or `loss_and_grad`
        returns (z, dL/dx) stay valid only until the next training-mode call with a batch of the
        same size; the trainer's batch loop uses each batch's results before the next. Evaluation
        (training=False) always gets fresh arrays. Turning it off drops the kept arrays.
        """
        self._reuse = bool(enabled)
        for part in (*self.layers, self.loss):
            part.workspace = {} if enabled else None
            if not enabled and isinstance(part, Layer):
                part.overwrite_input = part.overwrite_grad = False

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        """x: (batch, in_features) -> network output z: (batch, out_features), before any fused activation."""
        if not (training and self._reuse):
            for layer in self.chain:
                x = layer.forward(x, training)
            return x
        # Workspace mode: tell each layer whether its input is an array nobody else needs, so that it
        # may write into it (ReLU does). The caller's x is never that; a layer's new output is, unless
        # the layer reads it again in backward; a layer that hands its input on passes that status on.
        owned = False
        for layer in self.chain:
            layer.overwrite_input = owned
            y = layer.forward(x, training)
            owned = owned if y is x else layer.output_reusable
            x = y
        return x

    def backward(self, grad: np.ndarray, input_grad: bool = False) -> np.ndarray | None:
        """grad: dL/dz (batch, out_features). Fills every parameter's gradient; returns dL/dx if asked.

        Without `input_grad`, layers below the first parameterized layer are not visited and
        that layer skips its input gradient: nobody needs the gradient w.r.t. the data.
        In workspace mode layers may write into the gradients passed between them, never into
        `grad` itself unless it came from the loss (loss_and_grad).
        """
        return self._backward(grad, input_grad, owned=False)

    def _backward(self, grad: np.ndarray, input_grad: bool, owned: bool) -> np.ndarray | None:
        reuse = self._reuse
        for i in range(len(self.chain) - 1, -1, -1):
            if not input_grad and i < self._first_param_layer:
                return None
            layer = self.chain[i]
            if reuse:
                layer.overwrite_grad = owned
            new = layer.backward(grad, need_input_grad=input_grad or i > self._first_param_layer)
            owned = owned if new is grad else True
            grad = new
        return grad

    def loss_and_grad(self, x: np.ndarray, t: np.ndarray, input_grad: bool = False):
        """One training pass: (loss, z, dL/dx or None), with parameter gradients filled.

        In workspace mode (reuse_buffers) z and dL/dx are valid until the next training pass.
        """
        z = self.forward(x, training=True)
        loss = self.loss.forward(z, t)
        dx = self._backward(self.loss.backward(), input_grad, owned=True)  # the loss's gradient is its own array
        return loss, z, dx

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Probabilities (classification losses) or values: (batch, out_features)."""
        return self.loss.predict(self.forward(x, training=False))

    def state_dict(self) -> dict[str, np.ndarray]:
        """Parameters and buffers by key layers.<i>.<name>: the live arrays, not copies."""
        return {**{p.key: p.value for p in self.params}, **self.buffers()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Copy parameters and buffers in place; keys and shapes must match exactly.

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
