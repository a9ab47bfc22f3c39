"""Losses: the mean over the batch of a per-sample loss, with the gradient w.r.t. the network output.

`forward(z, t)` takes the network output z: (batch, width) and encoded targets t (see
`encode`) and returns the loss as a float; `backward()` returns dL/dz: (batch, width).
`predict(z)` turns outputs into what a user sees (probabilities or values); `decide(z)`
gives class indices for classification metrics. `cross_entropy` also takes one output per
step of a sequence, z: (batch, steps, classes) with t: (batch, steps) (see its docstring).

`cross_entropy` and `binary_cross_entropy` take logits and apply softmax / sigmoid
themselves (log-sum-exp, stable for any logit); `fuses` names the output layer a network
may drop in favour of that.

Class weights. The classification losses (cross_entropy, binary_cross_entropy, hinge,
multiclass_hinge, squared_hinge) take a `class_weights` option: `"balanced"`, a mapping
{class name: weight}, or None. The loss cannot know the classes when it is built, so the
owner calls `set_class_weights(classes, counts)` with the class names (in label order) and
the number of training rows of each class; that resolves the option into one weight per
class (`weights`, float64; every forward uses it in the dtype of z, so float32 stays float32):

    balanced:  w_c = n_samples / (n_classes * count_c)      (scikit-learn's formula)
    mapping:   w_c = the weight given for class c's name, 1.0 for classes not named

With weights the loss is the weighted mean, as PyTorch's `weight=` does it:

    L = sum_i w_{y_i} l_i / sum_i w_{y_i},   dL/dz_i = w_{y_i} dl_i/dz_i / sum_i w_{y_i}

(a batch whose weights sum to 0 has loss 0 and gradient 0). Without the option, or before
`set_class_weights` is called, every loss is the plain mean, computed exactly as before.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import numpy as np

from .registry import Range, Registry
from .arena import FRESH, Arena

LOSSES = Registry("loss")

# The `class_weights` option of the classification losses (keys are class names as strings).
ClassWeights = Literal["balanced"] | dict[str, float] | None


class Loss:
    name = "loss"
    tasks: tuple[str, ...] = ("classification", "regression")
    fuses: str | None = None
    classes: int | None = None  # the number of classes the loss is made for, when it is fixed
    probabilities = False  # whether `predict` gives class probabilities (else raw scores)
    weights: np.ndarray | None = None  # resolved per-class weights (losses with `class_weights`)
    # sum_i w_{y_i} of the last forward's batch, None when unweighted: what that batch's mean loss
    # weighs when batches are combined (Metrics), so the total is sum w l / sum w over all rows.
    # cross_entropy over the steps of sequences sets it even unweighted: the number of real steps.
    batch_weight: float | None = None
    arena: Arena = FRESH  # where results are written (see engine.arena); the Network gives it its own
    # A loss over the steps of sequences reads `lengths` (set by the network: see layers.base), None when whole.
    uses_lengths = False
    lengths: np.ndarray | None = None

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

    def set_class_weights(self, classes: list[str], counts: np.ndarray) -> None:
        """Resolve the `class_weights` option for these classes; losses without that option ignore it."""


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


@LOSSES.register("huber")
class Huber(Loss):
    """Huber loss (smooth L1 scaled by delta), averaged over the batch and the outputs, as torch.nn.HuberLoss.

    With d = z - t:  l = d^2 / 2 where |d| < delta, else delta (|d| - delta / 2);
    dL/dz = clip(d, -delta, delta) / (batch * outputs).
    """

    tasks = ("regression",)

    def __init__(self, *, delta: Annotated[float, Range(gt=0)] = 1.0):
        self.delta = delta

    def forward(self, z, t):
        self.diff = z - t
        absolute = np.abs(self.diff)
        quadratic = absolute < self.delta
        self.quadratic = quadratic
        loss = np.where(quadratic, 0.5 * self.diff * self.diff, self.delta * (absolute - 0.5 * self.delta))
        return float(np.mean(loss))

    def backward(self):
        return np.clip(self.diff, -self.delta, self.delta) * (1.0 / self.diff.size)

    def kinks(self):
        # The slope is continuous, the curvature jumps at |d| = delta: finite differences across it are off by O(h).
        return self.quadratic


class _Weighted(Loss):
    """A classification loss with the `class_weights` option (see the module docstring)."""

    tasks = ("classification",)

    def _init_class_weights(self, class_weights) -> None:
        if isinstance(class_weights, str) and class_weights != "balanced":
            raise ValueError(
                f"class_weights must be 'balanced' or a mapping of class names to weights, got '{class_weights}'"
            )
        if isinstance(class_weights, dict):
            for key, value in class_weights.items():
                if not math.isfinite(value) or value < 0:
                    raise ValueError(f"class_weights: the weight of class '{key}' must be finite and >= 0, got {value}")
        self.class_weights = class_weights
        self.weights = None

    @property
    def weights(self) -> np.ndarray | None:
        """Weight per class in label order (float64), or None: the plain mean. Assignable (e.g. from a checkpoint)."""
        return self._weights

    @weights.setter
    def weights(self, value) -> None:
        self._weights = None if value is None else np.array(value, dtype=np.float64).reshape(-1)
        self._cast = None  # the same weights in the dtype of the last forward

    def set_class_weights(self, classes: list[str], counts: np.ndarray) -> None:
        """Resolve `class_weights` for `classes` (names, in label order) with `counts` training rows each.

        ValueError for a class name the mapping gives that is not among `classes`, a negative
        weight, weights that are all 0, or 'balanced' with a class that has no training rows.
        With the option None this does nothing.
        """
        option = self.class_weights
        if option is None:
            return
        names = [str(c) for c in classes]
        counts = np.asarray(counts)
        if counts.shape != (len(names),):
            raise ValueError(f"class_weights: got {counts.size} counts for {len(names)} classes")
        if option == "balanced":
            if (counts <= 0).any():
                empty = [n for n, c in zip(names, counts) if c <= 0]
                raise ValueError(
                    f"class_weights 'balanced': class(es) {', '.join(map(repr, empty))} have no training rows"
                )
            weights = counts.sum() / (len(names) * counts.astype(np.float64))
        else:
            unknown = [k for k in option if str(k) not in names]
            if unknown:
                raise ValueError(
                    f"class_weights names class '{unknown[0]}', which the data does not have; classes: {', '.join(names)}"
                )
            weights = np.array([float(option.get(n, 1.0)) for n in names])
            if (weights < 0).any() or not np.isfinite(weights).all():
                bad = names[int(np.flatnonzero(~(weights >= 0) | ~np.isfinite(weights))[0])]
                raise ValueError(f"class_weights: the weight of class '{bad}' must be finite and >= 0")
        if not weights.any():
            raise ValueError("class_weights: every class has weight 0; at least one must be positive")
        self.weights = weights

    def _coefficients(self, labels: np.ndarray, dtype) -> np.ndarray | None:
        """Per-sample factors w_{y_i} / sum_i w_{y_i} in `dtype` (None: no weights, use 1 / batch)."""
        if self._weights is None:
            self.batch_weight = None
            return None
        if self._cast is None or self._cast.dtype != dtype:
            self._cast = self._weights.astype(dtype)
        w = self._cast[labels]
        total = w.sum()
        self.batch_weight = float(total)
        return w / total if total > 0 else np.zeros_like(w)


@LOSSES.register("cross_entropy")
class CrossEntropy(_Weighted):
    """Softmax + negative log-likelihood on logits; targets are class indices.

    Rows: z (N, K), t (N,):

        L = mean_i [log sum_k exp(z_ik) - z_i,t_i];  dL/dz = (softmax(z) - onehot(t)) / N.

    Steps of sequences (sequence labelling, language models): z (N, T, K), one distribution
    over the K classes per step, t (N, T):

        L = (1 / S) sum_{real (n, s)} [log sum_k exp(z_nsk) - z_ns,t_ns]
        dL/dz_ns = (softmax(z_ns) - onehot(t_ns)) / S at a real step, exactly 0 at a padded one,

    S being the number of real steps. The real steps of sample n are s < L_n, L = `lengths`
    (N,) (the network sets it: the lengths of its last output, see layers.base); the steps
    after are padding and count for nothing. Their logits and targets are never read (any
    value: -1 or an id beyond K as padding, inf or nan logits), they add no loss and get a
    gradient of 0. With `lengths` None every step is real: S = N T. This is torch's
    CrossEntropyLoss on the (N T, K) rows with the padded steps' targets set to ignore_index.
    `lengths` must have shape (N,) (ValueError otherwise); (N, K) outputs ignore it.

    Class weights (see the module docstring), both shapes: the weighted mean over the real
    rows / steps, L = sum w_t l / sum w_t, dL/dz = w_t (softmax - onehot) / sum w_t, the sums
    over real steps only (torch's weight= with ignore_index).

    Combining batches. After each forward `batch_weight` is what that batch's mean loss weighs:
    for (N, T, K) the number of real steps S, or sum w_t over the real steps with class
    weights; for (N, K) None without weights (the batch weighs its N rows, len(z)) and
    sum_i w_t_i with them. The loss over several batches is sum_b L_b W_b / sum_b W_b, W_b read
    right after batch b's forward (the next forward overwrites it). Metrics.add(loss, z, y,
    lengths) does exactly this when called right after each batch's forward: it takes
    `loss.batch_weight`, falling back to its count of rows only where that is None, which for
    sequences it never is; pass it the same `lengths` as the network, so that its per-step
    metrics (accuracy, ...) count the real steps too. Weighing sequence batches by len(y) or
    len(z) counts sequences, not steps, and is wrong whenever batches differ in their numbers
    of real steps.
    """

    fuses = "softmax"
    probabilities = True
    uses_lengths = True

    def __init__(self, *, class_weights: ClassWeights = None):
        self._init_class_weights(class_weights)

    def encode(self, y, n_classes, dtype):
        """Class indices as int64, (N,) or (N, T) as y."""
        return np.asarray(y, dtype=np.int64)

    def forward(self, z, t):
        if z.ndim != 2:
            return self._forward_steps(z, t)
        # One (batch, classes) array goes z - max -> exp -> probabilities -> (in backward) the gradient;
        # in a training step it is the same array every batch. z itself is left as it is (metrics read it).
        arena = self.arena
        dtype = z.dtype if z.dtype.kind == "f" else np.float64
        shifted = np.subtract(z, z.max(axis=1, keepdims=True), out=arena.empty(self, "probs", z.shape, dtype))
        rows = arena.arange(len(t))
        picked = shifted[rows, t]
        exp = np.exp(shifted, out=shifted)
        total = exp.sum(axis=1, keepdims=True)
        self.coef = self._coefficients(t, z.dtype)
        if self.coef is None:
            per_sample = np.log(total[:, 0])
            per_sample -= picked
            loss = np.add.reduce(per_sample) / len(per_sample)  # np.mean's sum and division, without its overhead
        else:
            loss = np.dot(self.coef, np.log(total[:, 0]) - picked)
        exp /= total
        self.probs, self.t = exp, t
        return float(loss)

    def backward(self):
        grad = self.probs  # reused in place: the next forward computes new probabilities
        if grad is None:  # the last forward was over steps
            return self._backward_steps()
        grad[self.arena.arange(len(self.t)), self.t] -= 1
        if self.coef is None:
            grad *= 1.0 / len(self.t)
        else:
            grad *= self.coef[:, None]
        return grad

    def _forward_steps(self, z, t):
        """forward of z (N, T, K), t (N, T): the rows computation on the real steps, gathered (see the docstring)."""
        if z.ndim != 3:
            raise ValueError(f"cross_entropy takes outputs (batch, classes) or (batch, steps, classes), got {z.shape}")
        n, steps, k = z.shape
        t = np.asarray(t)
        if t.shape != (n, steps):
            raise ValueError(f"cross_entropy: outputs {z.shape} need targets of shape {(n, steps)}, got {t.shape}")
        lengths = self.lengths
        arena = self.arena
        dtype = z.dtype if z.dtype.kind == "f" else np.float64
        flat_z, flat_t = z.reshape(n * steps, k), t.reshape(n * steps)
        # Arrays of the batch's full (N T, K) shape, of which the real steps use the first rows: the
        # arena keeps one per batch shape, not one per count of real steps.
        probs = arena.empty(self, "step_probs", (n * steps, k), dtype)
        if lengths is None:
            real = None
            np.subtract(flat_z, flat_z.max(axis=1, keepdims=True), out=probs)
        else:
            if np.shape(lengths) != (n,):
                raise ValueError(f"cross_entropy: lengths must have shape ({n},), got {np.shape(lengths)}")
            real = (arena.arange(steps) < np.asarray(lengths)[:, None]).reshape(n * steps)
            flat_t = flat_t[real]
            gathered = flat_z[real]  # boolean indexing: faster than np.compress(..., out=) here
            probs = np.subtract(gathered, gathered.max(axis=1, keepdims=True), out=probs[: len(flat_t)])
        count = len(flat_t)
        rows = arena.arange(n * steps)[:count]
        picked = probs[rows, flat_t]
        exp = np.exp(probs, out=probs)
        total = exp.sum(axis=1, keepdims=True)
        self.coef = self._coefficients(flat_t, dtype)
        if self.coef is None:
            per_step = np.log(total[:, 0])
            per_step -= picked
            loss = np.add.reduce(per_step) / count if count else 0.0
            self.batch_weight = float(count)
        else:
            loss = np.dot(self.coef, np.log(total[:, 0]) - picked)
        exp /= total
        self.probs, self.t = None, t  # probs None: backward goes to _backward_steps
        self.steps = (exp, rows, flat_t, real)
        return float(loss)

    def _backward_steps(self):
        grad, rows, targets, real = self.steps  # the real steps' probabilities, reused in place
        grad[rows, targets] -= 1
        if self.coef is None:
            grad *= 1.0 / max(len(targets), 1)
        else:
            grad *= self.coef[:, None]
        n, steps = self.t.shape
        if real is None:
            return grad.reshape(n, steps, grad.shape[1])
        out = self.arena.empty(self, "step_grad", (n, steps, grad.shape[1]), grad.dtype)
        flat = out.reshape(n * steps, grad.shape[1])
        flat[real] = grad
        flat[~real] = 0
        return out

    def predict(self, z):
        """Probabilities: softmax over the last axis, (N, K) or (N, T, K)."""
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    def decide(self, z):
        """Class indices: (N,) from (N, K), (N, T) from (N, T, K)."""
        return z.argmax(axis=-1)


class _BinaryLoss(_Weighted):
    """A loss on one output unit for two classes."""

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

    def __init__(self, *, class_weights: ClassWeights = None):
        self._init_class_weights(class_weights)

    def encode(self, y, n_classes, dtype):
        return np.asarray(y, dtype=dtype).reshape(-1, 1)

    def forward(self, z, t):
        self.z, self.t = z, t
        per_sample = np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))
        self.coef = self._coefficients((t[:, 0] > 0.5).astype(np.intp), z.dtype)
        if self.coef is None:
            return float(np.mean(per_sample))
        return float(np.dot(self.coef, per_sample[:, 0]))

    def backward(self):
        grad = self.predict(self.z)
        grad -= self.t
        if self.coef is None:
            grad *= 1.0 / len(self.t)
        else:
            grad *= self.coef[:, None]
        return grad

    def predict(self, z):
        return 0.5 * (1 + np.tanh(0.5 * z))


# ---------------------------------------------------------------- the SVM (hinge) family


def _binary_hinge(loss: _Weighted, z, t, power: int) -> float:
    """Forward of max(0, margin - t z)^power on one score, labels t = ±1; keeps what backward needs."""
    loss.t = t
    loss.slack = loss.margin - t * z
    hinge = np.maximum(loss.slack, 0)
    per_sample = hinge if power == 1 else hinge * hinge
    loss.coef = loss._coefficients((t[:, 0] > 0).astype(np.intp), z.dtype)
    if loss.coef is None:
        return float(np.mean(per_sample))
    return float(np.dot(loss.coef, per_sample[:, 0]))


def _binary_hinge_grad(loss: _Weighted, power: int) -> np.ndarray:
    if power == 1:
        grad = -loss.t * (loss.slack > 0)
    else:
        grad = -2 * loss.t * np.maximum(loss.slack, 0)
    return grad * (1.0 / len(loss.t)) if loss.coef is None else grad * loss.coef[:, None]


def _multiclass_hinge(loss: _Weighted, z, t, power: int) -> float:
    """Forward of sum_{j != y} max(0, z_j - z_y + margin)^power; keeps what backward needs."""
    rows = np.arange(len(t))
    margins = z - z[rows, t][:, None] + loss.margin
    margins[rows, t] = 0  # the target's own score is not a term (its margin would be `margin`)
    loss.t, loss.margins = t, margins
    hinge = np.maximum(margins, 0)
    per_sample = (hinge if power == 1 else hinge * hinge).sum(axis=1)
    loss.coef = loss._coefficients(t, z.dtype)
    if loss.coef is None:
        return float(np.mean(per_sample))
    return float(np.dot(loss.coef, per_sample))


def _multiclass_hinge_grad(loss: _Weighted, power: int) -> np.ndarray:
    # d/dz_j = [m_j > 0] (power 1) or 2 max(m_j, 0) (power 2) for j != y; d/dz_y = -(sum of those)
    if power == 1:
        grad = (loss.margins > 0).astype(loss.margins.dtype)
    else:
        grad = 2 * np.maximum(loss.margins, 0)
    grad[np.arange(len(loss.t)), loss.t] = -grad.sum(axis=1)
    if loss.coef is None:
        grad *= 1.0 / len(loss.t)
    else:
        grad *= loss.coef[:, None]
    return grad


@LOSSES.register("hinge")
class Hinge(_BinaryLoss):
    """Binary SVM loss on one score z: (batch, 1); class 0 / 1 become labels -1 / +1.

    L = mean max(0, margin - y z);  dL/dz = -y [margin - y z > 0] / batch.
    """

    def __init__(self, *, margin: Annotated[float, Range(gt=0)] = 1.0, class_weights: ClassWeights = None):
        self.margin = margin
        self._init_class_weights(class_weights)

    def encode(self, y, n_classes, dtype):
        return (2 * np.asarray(y, dtype=dtype) - 1).reshape(-1, 1)

    def forward(self, z, t):
        return _binary_hinge(self, z, t, 1)

    def backward(self):
        return _binary_hinge_grad(self, 1)

    def kinks(self):
        return self.slack > 0


@LOSSES.register("multiclass_hinge")
class MulticlassHinge(_Weighted):
    """Multiclass SVM loss (Weston-Watkins, as CS231n) on scores z: (batch, classes); targets class indices.

    L = mean_i sum_{j != y_i} max(0, z_ij - z_iy_i + margin)   (not divided by the number of
    classes, unlike torch.nn.MultiMarginLoss);  dL/dz_ij = [term j > 0] / batch for j != y_i,
    dL/dz_iy_i = -(number of positive terms) / batch.
    """

    def __init__(self, *, margin: Annotated[float, Range(gt=0)] = 1.0, class_weights: ClassWeights = None):
        self.margin = margin
        self._init_class_weights(class_weights)

    def encode(self, y, n_classes, dtype):
        return np.asarray(y, dtype=np.int64)

    def forward(self, z, t):
        return _multiclass_hinge(self, z, t, 1)

    def backward(self):
        return _multiclass_hinge_grad(self, 1)

    def decide(self, z):
        return z.argmax(axis=1)

    def kinks(self):
        return self.margins > 0


@LOSSES.register("squared_hinge")
class SquaredHinge(_Weighted):
    """Squared SVM loss: binary (one score, as `hinge`) for 2 classes, multiclass (one score per class) for more.

    2 classes: output width 1, labels -1 / +1, L = mean max(0, margin - y z)^2.
    n > 2 classes: output width n, targets class indices,
        L = mean_i sum_{j != y_i} max(0, z_ij - z_iy_i + margin)^2   (torch MultiMarginLoss(p=2) times n).
    `expected_width` is 1 if n_classes == 2 else n_classes; `encode` chooses the form the same way,
    and `forward` follows the width of z.
    """

    def __init__(self, *, margin: Annotated[float, Range(gt=0)] = 1.0, class_weights: ClassWeights = None):
        self.margin = margin
        self._init_class_weights(class_weights)

    def expected_width(self, n_classes, n_targets):
        return 1 if n_classes == 2 else n_classes

    def encode(self, y, n_classes, dtype):
        if n_classes == 2:
            return (2 * np.asarray(y, dtype=dtype) - 1).reshape(-1, 1)
        return np.asarray(y, dtype=np.int64)

    def forward(self, z, t):
        self.binary = z.shape[1] == 1
        return _binary_hinge(self, z, t, 2) if self.binary else _multiclass_hinge(self, z, t, 2)

    def backward(self):
        return _binary_hinge_grad(self, 2) if self.binary else _multiclass_hinge_grad(self, 2)

    def decide(self, z):
        return (z[:, 0] > 0).astype(np.int64) if z.shape[1] == 1 else z.argmax(axis=1)

    def kinks(self):
        # The slope is continuous at a margin of 0 but the curvature jumps: finite differences across it are off by O(h).
        return (self.slack if self.binary else self.margins) > 0
