"""Optimizers: in-place parameter updates with the formulas and defaults of `torch.optim`.

`step(params)` takes the network's parameters (objects with `key`, `value`, `grad` and
`decay`) and updates each `value` in place. `weight_decay` adds weight_decay * W to the
gradient of parameters marked `decay` (weight matrices), never to biases; AdamW instead
shrinks those parameters directly (decoupled weight decay). State is a flat dict of arrays
(`state_dict`) so it saves into a checkpoint and restores exactly.

Two kinds of optimizer:

- mini-batch optimizers (`needs_closure = False`: sgd, adam, adamw, rmsprop, adagrad):
  the trainer fills every `p.grad` and calls `step(params)` once per batch;
- closure optimizers (`needs_closure = True`: lbfgs, in `engine.lbfgs`, registered here when
  the engine package is imported): full-batch only. Once per epoch the
  trainer calls `step_closure(params, closure)`, where `closure()` recomputes the loss over
  the whole training set at the current parameter values, fills every `p.grad`, and returns
  the loss as a float. `step(params)` raises ValueError.

The learning rate is the attribute `lr`, read at every step, so a schedule changes it by
assigning `optimizer.lr = ...` between epochs. It is not part of `state_dict`.
"""

from __future__ import annotations

import math
from typing import Annotated

import numpy as np

from .arena import contiguous_views
from .blas import axpby
from .registry import Range, Registry

OPTIMIZERS = Registry("optimizer")


class Optimizer:
    name = "optimizer"
    slots: tuple[str, ...] = ()  # per-parameter state arrays (momentum, moments), saved in state_dict
    needs_closure = False  # True: full-batch only, driven by step_closure(params, closure)
    decoupled_weight_decay = False  # True: p <- p (1 - lr wd) before the update, not wd p added to g

    def __init__(self, lr: float, weight_decay: float):
        self.lr = lr
        self.weight_decay = weight_decay
        self.steps = 0
        self.state: dict[str, np.ndarray] = {}
        self._slot_keys: dict[str, tuple] = {}  # param key -> ((slot name, state key), ...)
        self._scratch: dict[tuple, np.ndarray] = {}  # temporaries by (shape, dtype); never saved
        self._flat_state: _FlatState | None = None

    def scratch(self, like: np.ndarray, slot: int = 0) -> np.ndarray:
        """A reusable uninitialized array shaped like `like` for an update's temporaries (not state).

        `slot` tells apart the temporaries one update needs at the same time."""
        key = (like.shape, like.dtype, slot)
        array = self._scratch.get(key)
        if array is None:
            array = self._scratch[key] = np.empty_like(like)
        return array

    def step(self, params) -> None:
        """One update of every parameter from its gradient (p.grad is read, never changed)."""
        flat = self._flat(params)
        if flat is None:
            return self._step_each(params)
        # Parameters, gradients and slots are views of one flat array each (see Network's
        # pack_parameters and _FlatState): `update` runs once over all of them, element for
        # element the same operations as per parameter, in a handful of numpy calls instead of
        # a handful per parameter (which is what small batches pay for).
        self.steps += 1
        if self.decoupled_weight_decay:
            flat.shrink(1 - self.lr * self.weight_decay)
            g = flat.grads
        else:
            g = flat.gradient(self.weight_decay)
        self.update(flat.values, g, **flat.slots)

    def _flat(self, params) -> _FlatState | None:
        """The flat arrays behind `params` and this optimizer's slots, or None when the parameters are not packed."""
        flat = self._flat_state
        if flat is not None and flat.matches(params, self.state):
            return flat
        self._flat_state = flat = _FlatState.build(params, self.state, self.slots, self.init_slot)
        return flat

    def _step_each(self, params) -> None:
        """`step` one parameter at a time: for parameters that are not views of one flat array."""
        self.steps += 1
        keys = self._slot_keys
        for p in params:
            names = keys.get(p.key)
            if names is None:
                names = keys[p.key] = tuple((b, f"{p.key}.{b}") for b in self.slots)
            slots = {}
            for b, key in names:
                value = self.state.get(key)
                if value is None:  # filled on first use, like torch's lazy state
                    value = self.state[key] = self.init_slot(b, p.value)
                slots[b] = value
            g = p.grad
            if self.weight_decay and p.decay:
                if self.decoupled_weight_decay:
                    p.value *= 1 - self.lr * self.weight_decay
                else:
                    g = g + self.weight_decay * p.value
            self.update(p.value, g, **slots)

    def init_slot(self, name: str, value: np.ndarray) -> np.ndarray:
        """The initial content of slot `name` for parameter `value`: zeros, unless overridden."""
        return np.zeros_like(value)

    def update(self, p: np.ndarray, g: np.ndarray, **slots: np.ndarray) -> None:  # pragma: no cover
        """Update parameter p in place from its gradient g and this optimizer's slots for p."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"steps": np.array(self.steps, dtype=np.int64), **self.state}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.steps = int(state["steps"])
        self.state = {k: np.array(v) for k, v in state.items() if k != "steps"}

    def check_state(self, state: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]], prefix: str = "") -> None:
        """Raise ValueError unless `state` (as from state_dict) fits parameters of these shapes.

        shapes: {param key: shape}. Per-parameter slots are keyed '<param key>.<slot>' and
        must have their parameter's shape. They are created at the first step (torch's lazy
        state), so after 0 steps there are none and after any step there is one per parameter and
        slot of this optimizer: a missing one (which would restart at zero, silently changing
        the updates) or an extra one is refused. `prefix` ("optim.") is put before keys in messages.
        """
        if "steps" not in state:
            raise ValueError(f"optimizer state has no '{prefix}steps'")
        steps = int(state["steps"])
        expected = {f"{param}.{b}" for param in shapes for b in self.slots} if steps > 0 else set()
        missing = sorted(expected - set(state))
        extra = sorted(set(state) - expected - {"steps"})
        if missing:
            raise ValueError(
                f"optimizer state has no {prefix}{missing[0]}{f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''}:"
                f" after {steps} step{'s' if steps != 1 else ''} {self.name} keeps {', '.join(self.slots)} for every parameter"
            )
        if extra:
            if steps == 0 and extra[0].rsplit(".", 1)[-1] in self.slots:
                why = f"{prefix}steps is 0, and {self.name} has no slots before its first step"
            else:
                kept = f"keeps {', '.join(self.slots)}" if self.slots else "keeps no per-parameter state"
                why = f"not a slot of these parameters: {self.name} {kept}"
            raise ValueError(f"optimizer state has an unexpected {prefix}{extra[0]} ({why})")
        for key, value in state.items():
            if key == "steps":
                continue
            param = key.rsplit(".", 1)[0]
            if shapes.get(param) != np.shape(value):
                raise ValueError(
                    f"optimizer state {prefix}{key} has shape {np.shape(value)}, its parameter {shapes.get(param)}"
                )


class _FlatState:
    """Parameters, gradients and each per-parameter slot as views of one flat array each.

    `build` succeeds when the parameters' values and gradients tile one flat array each, in
    order (what Network's pack_parameters makes); it then moves the optimizer's slots into
    flat arrays too, keeping the values of slots already in `state` (after a resume) and
    putting the views into `state` under the usual keys, so state_dict and checkpoints see no
    difference. `matches` checks, at every step, that nothing has been swapped since (new
    arrays, a loaded state).
    """

    def __init__(self, params, state, values, grads, slots: dict[str, np.ndarray], views: dict[str, np.ndarray]):
        self.state, self.views = state, views  # views: state key -> the view put into `state`
        self.value_views = [p.value for p in params]
        self.grad_views = [p.grad for p in params]
        self.values, self.grads, self.slots = values, grads, slots
        self.decayed: list[slice] = []  # where the parameters marked `decay` lie in the flat arrays
        offset = 0
        for p in params:
            if p.decay:
                self.decayed.append(slice(offset, offset + p.value.size))
            offset += p.value.size
        self._decayed_grads = None  # g + weight_decay p, when weight decay adds to the gradient

    @classmethod
    def build(cls, params, state: dict, names: tuple[str, ...], init) -> _FlatState | None:
        params = list(params)
        values = contiguous_views([p.value for p in params])
        grads = contiguous_views([p.grad for p in params])
        if values is None or grads is None or values.dtype != grads.dtype or values.size != grads.size:
            return None
        slots, views = {}, {}
        for name in names:
            slots[name] = flat = np.empty_like(values)
            offset = 0
            for p in params:
                key = f"{p.key}.{name}"
                view = flat[offset : offset + p.value.size].reshape(p.value.shape)
                view[...] = state[key] if key in state else init(name, p.value)
                state[key] = views[key] = view
                offset += p.value.size
        return cls(params, state, values, grads, slots, views)

    def matches(self, params, state: dict) -> bool:
        if state is not self.state or len(params) != len(self.value_views):
            return False
        for p, value, grad in zip(params, self.value_views, self.grad_views):
            if p.value is not value or p.grad is not grad:
                return False
        return all(state.get(key) is view for key, view in self.views.items())

    def gradient(self, weight_decay: float) -> np.ndarray:
        """The flat gradient, or g + weight_decay p on the decayed parameters (in an array of its own:
        the parameters' gradients stay as backward left them)."""
        if not weight_decay or not self.decayed:
            return self.grads
        if self._decayed_grads is None:
            self._decayed_grads = np.empty_like(self.grads)
        g = self._decayed_grads
        np.copyto(g, self.grads)
        for part in self.decayed:
            g[part] += weight_decay * self.values[part]
        return g

    def shrink(self, factor: float) -> None:
        """p <- factor p on the decayed parameters (decoupled weight decay)."""
        if factor == 1:
            return
        for part in self.decayed:
            self.values[part] *= factor


@OPTIMIZERS.register("sgd")
class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum, as `torch.optim.SGD`.

    Notes
    -----
    v <- momentum * v + g           (v starts at 0, so the first step has v = g)
    p <- p - lr * v                  plain momentum
    p <- p - lr * (g + momentum * v) Nesterov
    Without momentum: p <- p - lr * g.
    """

    def __init__(
        self,
        *,
        lr: Annotated[float, Range(gt=0)] = 1e-3,
        momentum: Annotated[float, Range(ge=0)] = 0.0,
        nesterov: bool = False,
        weight_decay: Annotated[float, Range(ge=0)] = 0.0,
    ):
        if nesterov and momentum <= 0:
            raise ValueError("nesterov needs momentum > 0")
        super().__init__(lr, weight_decay)
        self.momentum = momentum
        self.nesterov = nesterov
        self.slots = ("momentum_buffer",) if momentum else ()

    def update(self, p, g, momentum_buffer=None):
        # Through BLAS's axpy and scal (engine.blas): no temporaries, and BLAS spreads the passes
        # over its threads; over the packed parameters this is one call per line for all of them.
        if not self.momentum:
            axpby(-self.lr, g, 1.0, p)  # p <- p - lr g
            return
        v = momentum_buffer
        axpby(1.0, g, self.momentum, v)  # v <- momentum v + g
        if self.nesterov:  # p <- p - lr (g + momentum v)
            axpby(-self.lr, g, 1.0, p)
            axpby(-self.lr * self.momentum, v, 1.0, p)
        else:
            axpby(-self.lr, v, 1.0, p)  # p <- p - lr v


@OPTIMIZERS.register("adam")
class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) with bias correction, as `torch.optim.Adam`.

    Notes
    -----
    m <- m + (1 - beta1) (g - m)         v <- beta2 v + (1 - beta2) g^2
    p <- p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
    weight_decay is the L2 form (added to g), as in torch.optim.Adam.
    """

    slots = ("exp_avg", "exp_avg_sq")

    def __init__(
        self,
        *,
        lr: Annotated[float, Range(gt=0)] = 1e-3,
        beta1: Annotated[float, Range(ge=0, lt=1)] = 0.9,
        beta2: Annotated[float, Range(ge=0, lt=1)] = 0.999,
        eps: Annotated[float, Range(gt=0)] = 1e-8,
        weight_decay: Annotated[float, Range(ge=0)] = 0.0,
    ):
        super().__init__(lr, weight_decay)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps

    def update(self, p, g, exp_avg, exp_avg_sq):
        # The formulas above, operation for operation, through one reused temporary (no allocations).
        m, v, tmp = exp_avg, exp_avg_sq, self.scratch(p)
        m += np.multiply(np.subtract(g, m, out=tmp), 1 - self.beta1, out=tmp)  # m += (1 - beta1) (g - m)
        v *= self.beta2
        v += np.multiply(np.multiply(g, 1 - self.beta2, out=tmp), g, out=tmp)  # v += (1 - beta2) g g
        step_size = self.lr / (1 - self.beta1**self.steps)
        denom = np.sqrt(v, out=tmp)
        denom /= math.sqrt(1 - self.beta2**self.steps)  # a Python float: float32 stays float32, as in torch
        denom += self.eps
        p -= np.multiply(np.divide(m, denom, out=tmp), step_size, out=tmp)  # p -= step_size (m / denom)


@OPTIMIZERS.register("rmsprop")
class RMSprop(Optimizer):
    """RMSprop (Hinton 2012) as `torch.optim.RMSprop`, with optional momentum and centering.

    Notes
    -----
    s <- alpha s + (1 - alpha) g^2;  centered: a <- a + (1 - alpha)(g - a), s_hat = s - a^2
    d = sqrt(s_hat) + eps
    momentum > 0: b <- momentum b + g / d;  p <- p - lr b;   else p <- p - lr g / d
    """

    def __init__(
        self,
        *,
        lr: Annotated[float, Range(gt=0)] = 1e-2,
        alpha: Annotated[float, Range(ge=0, lt=1)] = 0.99,
        eps: Annotated[float, Range(gt=0)] = 1e-8,
        momentum: Annotated[float, Range(ge=0)] = 0.0,
        centered: bool = False,
        weight_decay: Annotated[float, Range(ge=0)] = 0.0,
    ):
        super().__init__(lr, weight_decay)
        self.alpha, self.eps, self.momentum, self.centered = alpha, eps, momentum, centered
        self.slots = ("square_avg",) + ("momentum_buffer",) * (momentum > 0) + ("grad_avg",) * centered

    def update(self, p, g, square_avg, momentum_buffer=None, grad_avg=None):
        # The formulas above, operation for operation, through two reused temporaries (no allocations).
        s, b, a = square_avg, momentum_buffer, grad_avg
        tmp, d = self.scratch(p), self.scratch(p, 1)
        s *= self.alpha
        s += np.multiply(np.multiply(g, 1 - self.alpha, out=tmp), g, out=tmp)  # s += (1 - alpha) g g
        if self.centered:
            a += np.multiply(np.subtract(g, a, out=tmp), 1 - self.alpha, out=tmp)  # a += (1 - alpha) (g - a)
            np.sqrt(np.subtract(s, np.multiply(a, a, out=tmp), out=d), out=d)  # d = sqrt(s - a a)
        else:
            np.sqrt(s, out=d)
        d += self.eps
        if self.momentum:
            b *= self.momentum
            b += np.divide(g, d, out=tmp)
            p -= np.multiply(b, self.lr, out=tmp)  # p -= lr b
        else:
            p -= np.multiply(np.divide(g, d, out=tmp), self.lr, out=tmp)  # p -= lr (g / d)


@OPTIMIZERS.register("adamw")
class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019), as `torch.optim.AdamW`.

    Notes
    -----
    Parameters marked `decay` (weight matrices, not biases) first shrink, then take the Adam
    step with their plain gradient g (no L2 term is added to g):

    p <- p (1 - lr wd)                                     (only when decay; wd = weight_decay)
    m <- m + (1 - beta1) (g - m)         v <- beta2 v + (1 - beta2) g^2
    p <- p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    lr is the learning rate in force at this step, so a schedule scales the decay too.
    """

    decoupled_weight_decay = True

    def __init__(
        self,
        *,
        lr: Annotated[float, Range(gt=0)] = 1e-3,
        beta1: Annotated[float, Range(ge=0, lt=1)] = 0.9,
        beta2: Annotated[float, Range(ge=0, lt=1)] = 0.999,
        eps: Annotated[float, Range(gt=0)] = 1e-8,
        weight_decay: Annotated[float, Range(ge=0)] = 1e-2,
    ):
        super().__init__(lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay)


@OPTIMIZERS.register("adagrad")
class Adagrad(Optimizer):
    """Adagrad (Duchi et al. 2011), as `torch.optim.Adagrad`.

    Notes
    -----
    t counts steps from 1; the sum slot starts at initial_accumulator_value.
    g <- g + weight_decay p                 (L2 form, parameters marked decay only)
    clr = lr / (1 + (t - 1) lr_decay)
    sum <- sum + g^2
    p <- p - clr g / (sqrt(sum) + eps)
    """

    slots = ("sum",)

    def __init__(
        self,
        *,
        lr: Annotated[float, Range(gt=0)] = 1e-2,
        lr_decay: Annotated[float, Range(ge=0)] = 0.0,
        weight_decay: Annotated[float, Range(ge=0)] = 0.0,
        initial_accumulator_value: Annotated[float, Range(ge=0)] = 0.0,
        eps: Annotated[float, Range(gt=0)] = 1e-10,
    ):
        super().__init__(lr, weight_decay)
        self.lr_decay, self.initial_accumulator_value, self.eps = lr_decay, initial_accumulator_value, eps

    def init_slot(self, name, value):
        return np.full_like(value, self.initial_accumulator_value)

    def update(self, p, g, sum):
        # The formulas above, operation for operation, through two reused temporaries (no allocations).
        clr = self.lr / (1 + (self.steps - 1) * self.lr_decay)
        tmp, std = self.scratch(p), self.scratch(p, 1)
        sum += np.multiply(g, g, out=tmp)
        np.sqrt(sum, out=std)
        std += self.eps
        p -= np.multiply(np.divide(g, std, out=tmp), clr, out=tmp)  # p -= clr (g / std)
