"""Losses: the mean over the batch of a per-sample loss, with the gradient w.r.t. the network output.

`forward(z, t)` takes the network output z: (batch, width) and encoded targets t (see
`encode`) and returns the loss as a float; `backward()` returns dL/dz: (batch, width).
`predict(z)` turns outputs into what a user sees (probabilities or values); `decide(z)`
gives class indices for classification metrics.

`cross_entropy` and `binary_cross_entropy` take logits and apply softmax / sigmoid
themselves (log-sum-exp, stable for any logit); `fuses` names the output layer a network
may drop in favour of that.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np

from .registry import Range, Registry

LOSSES = Registry("loss")


class Loss:
    name = "loss"
    tasks: tuple[str, ...] = ("classification", "regression")
    fuses: str | None = None
    classes: int | None = None  # the number of classes the loss is made for, when it is fixed
    probabilities = False  # whether `predict` gives class probabilities (else raw scores)

    def encode(self, y: np.ndarray, n_classes: int | None, dtype) -> np.ndarray:
        """Targets as this loss wants them. Classification y: (batch,) class indices."""
        if n_classes is None:  # regression: (batch,) or (batch, k) values
            return np.asarray(y, dtype=dtype).reshape(len(y), -1)
        onehot = np.zeros((len(y), n_classes), dtype=dtype)
        onehot[np.arange(len(y)), y] = 1
        return onehot

    def expected_width(self, n_classes: int | None, n_targets: int) -> int:
        """Width the network output must have for this data."""
        return n_classes if n_classes is not None else n_targets

    def predict(self, z: np.ndarray) -> np.ndarray:
        return z

    def decide(self, z: np.ndarray) -> np.ndarray:
        """Class indices (batch,) from outputs (batch, width)."""
        return z.argmax(axis=1) if z.shape[1] > 1 else (z[:, 0] > 0.5).astype(np.int64)

    def kinks(self) -> np.ndarray | None:
        return None


@LOSSES.register("mse")
class MSE(Loss):
    """Mean squared error, averaged over the batch and the outputs (as torch and Keras).

    For classification the targets are one-hot rows (the classic sigmoid-network setup).
    """

    def forward(self, z, t):
        self.diff = z - t
        return float(np.mean(self.diff * self.diff))

    def backward(self):
        return self.diff * (2.0 / self.diff.size)


@LOSSES.register("mae")
class MAE(Loss):
    """Mean absolute error (L1), averaged over the batch and the outputs."""

    def forward(self, z, t):
        self.diff = z - t
        return float(np.mean(np.abs(self.diff)))

    def backward(self):
        return np.sign(self.diff) * (1.0 / self.diff.size)

    def kinks(self):
        return self.diff > 0


@LOSSES.register("cross_entropy")
class CrossEntropy(Loss):
    """Softmax + negative log-likelihood on logits z: (batch, classes); targets are class indices.

    L = mean_i [log sum_j exp(z_ij) - z_i,y_i];  dL/dz = (softmax(z) - onehot(y)) / batch.
    """

    tasks = ("classification",)
    fuses = "softmax"
    probabilities = True

    def encode(self, y, n_classes, dtype):
        return np.asarray(y, dtype=np.int64)

    def forward(self, z, t):
        shifted = z - z.max(axis=1, keepdims=True)
        exp = np.exp(shifted)
        total = exp.sum(axis=1, keepdims=True)
        rows = np.arange(len(t))
        loss = np.mean(np.log(total[:, 0]) - shifted[rows, t])
        exp /= total
        self.probs, self.t = exp, t
        return float(loss)

    def backward(self):
        grad = self.probs  # reused in place: the next forward computes new probabilities
        grad[np.arange(len(self.t)), self.t] -= 1
        grad *= 1.0 / len(self.t)
        return grad

    def predict(self, z):
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def decide(self, z):
        return z.argmax(axis=1)


class _BinaryLoss(Loss):
    """A loss on one output unit for two classes."""

    tasks = ("classification",)
    classes = 2

    def expected_width(self, n_classes, n_targets):
        return 1

    def decide(self, z):
        return (z[:, 0] > 0).astype(np.int64)


@LOSSES.register("binary_cross_entropy")
class BinaryCrossEntropy(_BinaryLoss):
    """Sigmoid + log loss on one logit z: (batch, 1); targets 0 / 1.

    L = mean [max(z, 0) - z t + log(1 + e^-|z|)] (never overflows); dL/dz = (sigmoid(z) - t) / batch.
    """

    fuses = "sigmoid"
    probabilities = True

    def encode(self, y, n_classes, dtype):
        return np.asarray(y, dtype=dtype).reshape(-1, 1)

    def forward(self, z, t):
        self.z, self.t = z, t
        return float(np.mean(np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))))

    def backward(self):
        grad = self.predict(self.z)
        grad -= self.t
        grad *= 1.0 / len(self.t)
        return grad

    def predict(self, z):
        return 0.5 * (1 + np.tanh(0.5 * z))


@LOSSES.register("hinge")
class Hinge(_BinaryLoss):
    """Binary SVM loss on one score z: (batch, 1); class 0 / 1 become labels -1 / +1.

    L = mean max(0, margin - y z);  dL/dz = -y [margin - y z > 0] / batch.
    """

    def __init__(self, *, margin: Annotated[float, Range(gt=0)] = 1.0):
        self.margin = margin

    def encode(self, y, n_classes, dtype):
        return (2 * np.asarray(y, dtype=dtype) - 1).reshape(-1, 1)

    def forward(self, z, t):
        self.t = t
        self.slack = self.margin - t * z
        return float(np.mean(np.maximum(self.slack, 0)))

    def backward(self):
        return -self.t * (self.slack > 0) * (1.0 / len(self.t))

    def kinks(self):
        return self.slack > 0
