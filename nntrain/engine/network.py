"""Network: a chain of layers and a loss, with forward, backward and the parameter list."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
        for layer in layers:
            width = layer.setup(width, self.dtype, rng, init, init_scale)
        self.fused = bool(layers) and loss.fuses is not None and layers[-1].name == loss.fuses
        self.chain = layers[:-1] if self.fused else layers
        self.out_features = width
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

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        """x: (batch, in_features) -> network output z: (batch, out_features), before any fused activation."""
        for layer in self.chain:
            x = layer.forward(x, training)
        return x

    def backward(self, grad: np.ndarray, input_grad: bool = False) -> np.ndarray | None:
        """grad: dL/dz (batch, out_features). Fills every parameter's gradient; returns dL/dx if asked.

        Without `input_grad`, layers below the first parameterized layer are not visited and
        that layer skips its input gradient: nobody needs the gradient w.r.t. the data.
        """
        for i in range(len(self.chain) - 1, -1, -1):
            if not input_grad and i < self._first_param_layer:
                return None
            grad = self.chain[i].backward(grad, need_input_grad=input_grad or i > self._first_param_layer)
        return grad

    def loss_and_grad(self, x: np.ndarray, t: np.ndarray, input_grad: bool = False):
        """One training pass: (loss, z, dL/dx or None), with parameter gradients filled."""
        z = self.forward(x, training=True)
        loss = self.loss.forward(z, t)
        dx = self.backward(self.loss.backward(), input_grad)
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
