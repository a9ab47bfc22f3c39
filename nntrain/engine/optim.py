"""Optimizers: in-place parameter updates with the formulas and defaults of `torch.optim`.

`step(params)` takes the network's parameters (objects with `key`, `value`, `grad` and
`decay`) and updates each `value` in place. `weight_decay` adds weight_decay * W to the
gradient of parameters marked `decay` (weight matrices), never to biases; AdamW instead
shrinks those parameters directly (decoupled weight decay). State is a flat dict of arrays
(`state_dict`) so it saves into a checkpoint and restores exactly.

Two kinds of optimizer:

- mini-batch optimizers (`needs_closure = False`: sgd, adam, adamw, rmsprop, adagrad):
  the trainer fills every `p.grad` and calls `step(params)` once per batch;
- closure optimizers (`needs_closure = True`: lbfgs): full-batch only. Once per epoch the
  trainer calls `step_closure(params, closure)`, where `closure()` recomputes the loss over
  the whole training set at the current parameter values, fills every `p.grad`, and returns
  the loss as a float. `step(params)` raises ValueError.

The learning rate is the attribute `lr`, read at every step, so a schedule changes it by
assigning `optimizer.lr = ...` between epochs. It is not part of `state_dict`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated

import numpy as np

from .blas import Axpby
from .registry import Range, Registry

OPTIMIZERS = Registry("optimizer")
# Optimizers that need a closure (full-batch training). Kept apart from OPTIMIZERS until the
# trainer and the config can drive them (see LBFGS); register them into OPTIMIZERS then.


class Optimizer:
    name = "optimizer"
    buffers: tuple[str, ...] = ()
    needs_closure = False  # True: full-batch only, driven by step_closure(params, closure)
    decoupled_weight_decay = False  # True: p <- p (1 - lr wd) before the update, not wd p added to g

    def __init__(self, lr: float, weight_decay: float):
        self.lr = lr
        self.weight_decay = weight_decay
        self.steps = 0
        self.state: dict[str, np.ndarray] = {}
        self._buffer_keys: dict[str, tuple] = {}  # param key -> ((buffer name, state key), ...)
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
        # Parameters, gradients and buffers are views of one flat array each (see Network's
        # pack_parameters and _FlatState): `update` runs once over all of them, element for
        # element the same operations as per parameter, in a handful of numpy calls instead of
        # a handful per parameter (which is what small batches pay for).
        self.steps += 1
        if self.decoupled_weight_decay:
            flat.shrink(1 - self.lr * self.weight_decay)
            g = flat.grads
        else:
            g = flat.gradient(self.weight_decay)
        self.update(flat.values, g, **flat.buffers)

    def _flat(self, params) -> _FlatState | None:
        """The flat arrays behind `params` and this optimizer's buffers, or None when the parameters are not packed."""
        flat = self._flat_state
        if flat is not None and flat.matches(params, self.state):
            return flat
        self._flat_state = flat = _FlatState.build(params, self.state, self.buffers, self.init_buffer)
        return flat

    def _step_each(self, params) -> None:
        """`step` one parameter at a time: for parameters that are not views of one flat array."""
        self.steps += 1
        keys = self._buffer_keys
        for p in params:
            names = keys.get(p.key)
            if names is None:
                names = keys[p.key] = tuple((b, f"{p.key}.{b}") for b in self.buffers)
            buffers = {}
            for b, key in names:
                value = self.state.get(key)
                if value is None:  # filled on first use, like torch's lazy state
                    value = self.state[key] = self.init_buffer(b, p.value)
                buffers[b] = value
            g = p.grad
            if self.weight_decay and p.decay:
                if self.decoupled_weight_decay:
                    p.value *= 1 - self.lr * self.weight_decay
                else:
                    g = g + self.weight_decay * p.value
            self.update(p.value, g, **buffers)

    def init_buffer(self, name: str, value: np.ndarray) -> np.ndarray:
        """The initial content of buffer `name` for parameter `value`: zeros, unless overridden."""
        return np.zeros_like(value)

    def update(self, p: np.ndarray, g: np.ndarray, **buffers: np.ndarray) -> None:  # pragma: no cover
        """Update parameter p in place from its gradient g and this optimizer's buffers for p."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"steps": np.array(self.steps, dtype=np.int64), **self.state}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.steps = int(state["steps"])
        self.state = {k: np.array(v) for k, v in state.items() if k != "steps"}

    def check_state(self, state: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]], prefix: str = "") -> None:
        """Raise ValueError unless `state` (as from state_dict) fits parameters of these shapes.

        shapes: {param key: shape}. Per-parameter buffers are keyed '<param key>.<buffer>' and
        must have their parameter's shape. They are created at the first step (torch's lazy
        state), so after 0 steps there are none and after any step there is one per parameter and
        buffer of this optimizer: a missing one (which would restart at zero, silently changing
        the updates) or an extra one is refused. `prefix` ("optim.") is put before keys in messages.
        """
        if "steps" not in state:
            raise ValueError(f"optimizer state has no '{prefix}steps'")
        steps = int(state["steps"])
        expected = {f"{param}.{b}" for param in shapes for b in self.buffers} if steps > 0 else set()
        missing = sorted(expected - set(state))
        extra = sorted(set(state) - expected - {"steps"})
        if missing:
            raise ValueError(
                f"optimizer state has no {prefix}{missing[0]}{f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''}:"
                f" after {steps} step{'s' if steps != 1 else ''} {self.name} keeps {', '.join(self.buffers)} for every parameter"
            )
        if extra:
            if steps == 0 and extra[0].rsplit(".", 1)[-1] in self.buffers:
                why = f"{prefix}steps is 0, and {self.name} has no buffers before its first step"
            else:
                kept = f"keeps {', '.join(self.buffers)}" if self.buffers else "keeps no buffers"
                why = f"not a buffer of these parameters: {self.name} {kept}"
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
    """Parameters, gradients and each per-parameter buffer as views of one flat array each.

    `build` succeeds when the parameters' values and gradients tile one flat array each, in
    order (what Network's pack_parameters makes); it then moves the optimizer's buffers into
    flat arrays too, keeping the values of buffers already in `state` (after a resume) and
    putting the views into `state` under the usual keys, so state_dict and checkpoints see no
    difference. `matches` checks, at every step, that nothing has been swapped since (new
    arrays, a loaded state).
    """

    def __init__(self, params, state, values, grads, buffers: dict[str, np.ndarray], views: dict[str, np.ndarray]):
        self.state, self.views = state, views  # views: state key -> the view put into `state`
        self.value_views = [p.value for p in params]
        self.grad_views = [p.grad for p in params]
        self.values, self.grads, self.buffers = values, grads, buffers
        self.decayed: list[slice] = []  # where the parameters marked `decay` lie in the flat arrays
        offset = 0
        for p in params:
            if p.decay:
                self.decayed.append(slice(offset, offset + p.value.size))
            offset += p.value.size
        self._decayed_grads = None  # g + weight_decay p, when weight decay adds to the gradient
        self._kernels: dict[tuple[int, int], Axpby] = {}

    @classmethod
    def build(cls, params, state: dict, names: tuple[str, ...], init) -> _FlatState | None:
        from .network import contiguous_views  # a late import: network imports nothing from here

        params = list(params)
        values = contiguous_views([p.value for p in params])
        grads = contiguous_views([p.grad for p in params])
        if values is None or grads is None or values.dtype != grads.dtype or values.size != grads.size:
            return None
        buffers, views = {}, {}
        for name in names:
            buffers[name] = flat = np.empty_like(values)
            offset = 0
            for p in params:
                key = f"{p.key}.{name}"
                view = flat[offset : offset + p.value.size].reshape(p.value.shape)
                view[...] = state[key] if key in state else init(name, p.value)
                state[key] = views[key] = view
                offset += p.value.size
        return cls(params, state, values, grads, buffers, views)

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

    def axpby(self, x: np.ndarray, y: np.ndarray) -> Axpby:
        """The in-place update y <- a x + b y between two of these flat arrays, bound once (engine.blas)."""
        key = (id(x), id(y))  # arrays this object holds, so their ids stay theirs
        kernel = self._kernels.get(key)
        if kernel is None:
            kernel = self._kernels[key] = Axpby(x, y)
        return kernel


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
        self.buffers = ("momentum_buffer",) if momentum else ()

    def step(self, params) -> None:
        flat = self._flat(params)
        if flat is None:
            return self._step_each(params)
        # `update`'s formulas over all parameters at once (see Optimizer.step), through
        # engine.blas: no temporaries, and BLAS spreads the passes over its threads.
        self.steps += 1
        g, p = flat.gradient(self.weight_decay), flat.values
        if not self.momentum:
            flat.axpby(g, p)(-self.lr, 1.0)  # p <- p - lr g
            return
        v = flat.buffers["momentum_buffer"]
        flat.axpby(g, v)(1.0, self.momentum)  # v <- momentum v + g
        if self.nesterov:  # p <- p - lr (g + momentum v)
            flat.axpby(g, p)(-self.lr, 1.0)
            flat.axpby(v, p)(-self.lr * self.momentum, 1.0)
        else:
            flat.axpby(v, p)(-self.lr, 1.0)  # p <- p - lr v

    def update(self, p, g, momentum_buffer=None):
        # In place, through one reused temporary per parameter shape: the same float operations, in the
        # same order and dtype, as `p -= lr * v`, without allocating lr * v at every step.
        tmp = self.scratch(p)
        if not self.momentum:
            p -= np.multiply(g, self.lr, out=tmp)
            return
        v = momentum_buffer
        v *= self.momentum
        v += g
        if self.nesterov:
            np.multiply(v, self.momentum, out=tmp)
            tmp += g
            p -= np.multiply(tmp, self.lr, out=tmp)
        else:
            p -= np.multiply(v, self.lr, out=tmp)


@OPTIMIZERS.register("adam")
class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) with bias correction, as `torch.optim.Adam`.

    Notes
    -----
    m <- m + (1 - beta1) (g - m)         v <- beta2 v + (1 - beta2) g^2
    p <- p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
    weight_decay is the L2 form (added to g), as in torch.optim.Adam.
    """

    buffers = ("exp_avg", "exp_avg_sq")

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
        self.buffers = ("square_avg",) + ("momentum_buffer",) * (momentum > 0) + ("grad_avg",) * centered

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
    t counts steps from 1; the sum buffer starts at initial_accumulator_value.
    g <- g + weight_decay p                 (L2 form, parameters marked decay only)
    clr = lr / (1 + (t - 1) lr_decay)
    sum <- sum + g^2
    p <- p - clr g / (sqrt(sum) + eps)
    """

    buffers = ("sum",)

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

    def init_buffer(self, name, value):
        return np.full_like(value, self.initial_accumulator_value)

    def update(self, p, g, sum):
        # The formulas above, operation for operation, through two reused temporaries (no allocations).
        clr = self.lr / (1 + (self.steps - 1) * self.lr_decay)
        tmp, std = self.scratch(p), self.scratch(p, 1)
        sum += np.multiply(g, g, out=tmp)
        np.sqrt(sum, out=std)
        std += self.eps
        p -= np.multiply(np.divide(g, std, out=tmp), clr, out=tmp)  # p -= clr (g / std)


# ---------------------------------------------------------------- L-BFGS


def _cubic_interpolate(x1, f1, g1, x2, f2, g2, bounds=None) -> float:
    """Minimizer of the cubic through (x1, f1, g1) and (x2, f2, g2), clamped to bounds (torch's)."""
    if bounds is not None:
        xmin_bound, xmax_bound = bounds
    else:
        xmin_bound, xmax_bound = (x1, x2) if x1 <= x2 else (x2, x1)
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1**2 - g1 * g2
    if d2_square >= 0:
        d2 = math.sqrt(d2_square)
        if x1 <= x2:
            min_pos = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
        else:
            min_pos = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
        return min(max(min_pos, xmin_bound), xmax_bound)
    return (xmin_bound + xmax_bound) / 2.0


def _strong_wolfe(obj_func, t, d, f, g, gtd, c1=1e-4, c2=0.9, tolerance_change=1e-9, max_ls=25):
    """torch.optim.lbfgs._strong_wolfe: (f_new, g_new, t, evaluations) for a step along d.

    obj_func(t) evaluates the loss and flat gradient at x + t d (x the current point).
    Scalars are Python floats, vectors arrays of the parameters' dtype.
    """
    d_norm = float(np.abs(d).max())
    f_new, g_new = obj_func(t)
    ls_func_evals = 1
    gtd_new = float(g_new @ d)

    # bracket an interval containing a point satisfying the Wolfe criteria
    t_prev, f_prev, g_prev, gtd_prev = 0.0, f, g, gtd
    done = False
    ls_iter = 0
    while ls_iter < max_ls:
        if f_new > (f + c1 * t * gtd) or (ls_iter > 1 and f_new >= f_prev):
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, g_new], [gtd_prev, gtd_new]
            break
        if abs(gtd_new) <= -c2 * gtd:
            bracket, bracket_f, bracket_g = [t], [f_new], [g_new]
            done = True
            break
        if gtd_new >= 0:
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, g_new], [gtd_prev, gtd_new]
            break
        # interpolate
        min_step = t + 0.01 * (t - t_prev)
        max_step = t * 10
        tmp = t
        t = _cubic_interpolate(t_prev, f_prev, gtd_prev, t, f_new, gtd_new, bounds=(min_step, max_step))
        # next step
        t_prev, f_prev, g_prev, gtd_prev = tmp, f_new, g_new, gtd_new
        f_new, g_new = obj_func(t)
        ls_func_evals += 1
        gtd_new = float(g_new @ d)
        ls_iter += 1

    # reached max number of iterations?
    if ls_iter == max_ls:
        bracket, bracket_f, bracket_g = [0.0, t], [f, f_new], [g, g_new]

    # zoom phase: refine the bracket until a point satisfies the criteria
    insuf_progress = False
    low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[-1] else (1, 0)
    while not done and ls_iter < max_ls:
        # line-search bracket is so small
        if abs(bracket[1] - bracket[0]) * d_norm < tolerance_change:
            break
        t = _cubic_interpolate(bracket[0], bracket_f[0], bracket_gtd[0], bracket[1], bracket_f[1], bracket_gtd[1])
        # t too close to the bracket's ends: move it 0.1 * width inside after insufficient progress
        eps = 0.1 * (max(bracket) - min(bracket))
        if min(max(bracket) - t, t - min(bracket)) < eps:
            if insuf_progress or t >= max(bracket) or t <= min(bracket):
                if abs(t - max(bracket)) < abs(t - min(bracket)):
                    t = max(bracket) - eps
                else:
                    t = min(bracket) + eps
                insuf_progress = False
            else:
                insuf_progress = True
        else:
            insuf_progress = False

        f_new, g_new = obj_func(t)
        ls_func_evals += 1
        gtd_new = float(g_new @ d)
        ls_iter += 1

        if f_new > (f + c1 * t * gtd) or f_new >= bracket_f[low_pos]:
            # Armijo condition not satisfied or not lower than lowest point
            bracket[high_pos], bracket_f[high_pos] = t, f_new
            bracket_g[high_pos], bracket_gtd[high_pos] = g_new, gtd_new
            low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[1] else (1, 0)
        else:
            if abs(gtd_new) <= -c2 * gtd:
                done = True  # Wolfe conditions satisfied
            elif gtd_new * (bracket[high_pos] - bracket[low_pos]) >= 0:
                # old high becomes new low
                bracket[high_pos], bracket_f[high_pos] = bracket[low_pos], bracket_f[low_pos]
                bracket_g[high_pos], bracket_gtd[high_pos] = bracket_g[low_pos], bracket_gtd[low_pos]
            # new point becomes new low
            bracket[low_pos], bracket_f[low_pos] = t, f_new
            bracket_g[low_pos], bracket_gtd[low_pos] = g_new, gtd_new

    return bracket_f[low_pos], bracket_g[low_pos], bracket[low_pos], ls_func_evals


@OPTIMIZERS.register("lbfgs")
class LBFGS(Optimizer):
    """L-BFGS with a strong-Wolfe line search, full-batch only, as `torch.optim.LBFGS(line_search_fn="strong_wolfe")`.

    Notes
    -----
    All parameters form one flat vector x (each `value` raveled, in the order of `params`),
    g the flat gradient. One `step_closure(params, closure)` is torch's `step(closure)`:
    up to max_iter iterations and max_eval closure calls. Iteration k:

    direction  d = -g on the very first iteration (of the whole run); otherwise with
               y = g - g_prev, s = t_prev d_prev: if y.s > 1e-10, push (s, y, rho = 1/y.s) into
               the history (dropping the oldest beyond history_size) and set H_diag = y.s / y.y;
               then d = -H g by the two-loop recursion with H0 = H_diag I.
    step       initial t = min(1, 1 / sum|g|) lr on the very first iteration, else lr; stop if
               g.d > -tolerance_change; else a strong-Wolfe line search (c1 = 1e-4, c2 = 0.9,
               cubic interpolation, at most max_eval - evaluations so far tries) picks t and
               x <- x + t d.
    stop when  max_iter iterations or max_eval evaluations are done, max|g| <= tolerance_grad,
               max|t d| <= tolerance_change, or |loss - previous loss| < tolerance_change.
    A step returns at once if max|g| <= tolerance_grad at its first evaluation.

    The history, d, t, H_diag, previous gradient and loss, and the counters carry over
    from step to step and are in `state_dict` (keys 'lbfgs.*'). Vectors keep the
    parameters' dtype; scalars are float64. There is no weight decay (none in torch either).
    """

    needs_closure = True
    _VECTORS = ("d", "prev_flat_grad")
    _SCALARS = ("t", "H_diag", "prev_loss")

    def __init__(
        self,
        *,
        lr: Annotated[float, Range(gt=0)] = 1.0,
        max_iter: Annotated[int, Range(ge=1)] = 20,
        max_eval: Annotated[int, Range(ge=1)] | None = None,
        tolerance_grad: Annotated[float, Range(ge=0)] = 1e-7,
        tolerance_change: Annotated[float, Range(ge=0)] = 1e-9,
        history_size: Annotated[int, Range(ge=1)] = 100,
    ):
        super().__init__(lr, 0.0)
        self.max_iter = max_iter
        self.max_eval = max_iter * 5 // 4 if max_eval is None else max_eval
        self.tolerance_grad = tolerance_grad
        self.tolerance_change = tolerance_change
        self.history_size = history_size
        self._reset()

    def _reset(self) -> None:
        self.func_evals = 0
        self.n_iter = 0
        self.numel: int | None = None
        self.d = self.prev_flat_grad = None
        self.t = self.H_diag = self.prev_loss = None
        self.old_dirs: list[np.ndarray] = []  # y vectors (gradient differences)
        self.old_stps: list[np.ndarray] = []  # s vectors (steps)
        self.ro: list[float] = []  # 1 / y.s
        self.final_loss: float | None = None

    def step(self, params) -> None:
        raise ValueError(
            "lbfgs needs full-batch training: it takes one step_closure(params, closure) per epoch, "
            "with a closure that evaluates the loss and gradients on the whole training set "
            "(train.batch_size: full), not step(params) per mini-batch"
        )

    # -- flat vector helpers (fixed order: the order of `params`)

    @staticmethod
    def _flat_grad(params) -> np.ndarray:
        return np.concatenate([np.ravel(p.grad) for p in params])

    @staticmethod
    def _add(params, t: float, d: np.ndarray) -> None:
        offset = 0
        for p in params:
            n = p.value.size
            p.value += t * d[offset : offset + n].reshape(p.value.shape)
            offset += n

    def step_closure(self, params, closure: Callable[[], float]) -> float:
        """One L-BFGS step (up to max_iter iterations); the loss before it, as torch returns.

        closure() must recompute the loss over the full training batch at the parameters'
        current values, fill every p.grad, and return the loss as a float. It is called
        1 + (line-search evaluations) times, with the parameters moved in place in between;
        on return the parameters hold the new point. `final_loss` is the loss there; the
        p.grad arrays hold whatever the last closure call left (not necessarily that point's).
        """
        params = list(params)
        numel = sum(p.value.size for p in params)
        if self.numel is not None and numel != self.numel:
            raise ValueError(f"lbfgs state is for {self.numel} parameter values, the network has {numel}")
        self.numel = numel
        self.steps += 1
        lr, max_iter, max_eval = self.lr, self.max_iter, self.max_eval
        tolerance_grad, tolerance_change, history_size = self.tolerance_grad, self.tolerance_change, self.history_size

        orig_loss = float(closure())
        loss = orig_loss
        current_evals = 1
        self.func_evals += 1
        flat_grad = self._flat_grad(params)
        self.final_loss = loss
        if np.abs(flat_grad).max() <= tolerance_grad:  # optimal condition
            return orig_loss

        d, t, H_diag = self.d, self.t, self.H_diag
        old_dirs, old_stps, ro = self.old_dirs, self.old_stps, self.ro
        prev_flat_grad, prev_loss = self.prev_flat_grad, self.prev_loss

        n_iter = 0
        while n_iter < max_iter:
            n_iter += 1
            self.n_iter += 1

            # descent direction
            if self.n_iter == 1:
                d = -flat_grad
                old_dirs, old_stps, ro = [], [], []
                H_diag = 1.0
            else:
                y = flat_grad - prev_flat_grad
                s = d * t
                ys = float(y @ s)
                if ys > 1e-10:
                    if len(old_dirs) == history_size:  # shift history by one (limited memory)
                        old_dirs.pop(0)
                        old_stps.pop(0)
                        ro.pop(0)
                    old_dirs.append(y)
                    old_stps.append(s)
                    ro.append(1.0 / ys)
                    H_diag = ys / float(y @ y)
                # two-loop recursion: d = -H g
                num_old = len(old_dirs)
                al = [0.0] * num_old
                q = -flat_grad
                for i in range(num_old - 1, -1, -1):
                    al[i] = float(old_stps[i] @ q) * ro[i]
                    q -= al[i] * old_dirs[i]
                d = r = q * H_diag
                for i in range(num_old):
                    be_i = float(old_dirs[i] @ r) * ro[i]
                    r += (al[i] - be_i) * old_stps[i]

            prev_flat_grad = flat_grad.copy()
            prev_loss = loss

            # step length
            if self.n_iter == 1:
                t = min(1.0, 1.0 / float(np.abs(flat_grad).sum())) * lr
            else:
                t = lr

            gtd = float(flat_grad @ d)  # directional derivative
            if gtd > -tolerance_change:
                break

            x_init = [p.value.copy() for p in params]

            def obj_func(step, d=d, x_init=x_init):
                self._add(params, step, d)
                value = float(closure())
                grad = self._flat_grad(params)
                for p, x in zip(params, x_init):
                    p.value[...] = x
                return value, grad

            loss, flat_grad, t, ls_func_evals = _strong_wolfe(
                obj_func, t, d, loss, flat_grad, gtd, max_ls=max_eval - current_evals
            )
            self._add(params, t, d)
            opt_cond = np.abs(flat_grad).max() <= tolerance_grad

            current_evals += ls_func_evals
            self.func_evals += ls_func_evals

            # check conditions
            if n_iter == max_iter:
                break
            if current_evals >= max_eval:
                break
            if opt_cond:
                break
            if np.abs(d * t).max() <= tolerance_change:  # lack of progress
                break
            if abs(loss - prev_loss) < tolerance_change:
                break

        self.d, self.t, self.H_diag = d, t, H_diag
        self.old_dirs, self.old_stps, self.ro = old_dirs, old_stps, ro
        self.prev_flat_grad, self.prev_loss = prev_flat_grad, prev_loss
        self.final_loss = loss
        return orig_loss

    # -- state: flat arrays, keys 'steps' and 'lbfgs.*'

    def state_dict(self) -> dict[str, np.ndarray]:
        state = {
            "steps": np.array(self.steps, dtype=np.int64),
            "lbfgs.func_evals": np.array(self.func_evals, dtype=np.int64),
            "lbfgs.n_iter": np.array(self.n_iter, dtype=np.int64),
        }
        if self.numel is not None:
            state["lbfgs.numel"] = np.array(self.numel, dtype=np.int64)
        if self.d is not None:
            dtype, n = self.d.dtype, self.d.size
            for name in self._VECTORS:
                state[f"lbfgs.{name}"] = getattr(self, name).copy()
            for name in self._SCALARS:
                state[f"lbfgs.{name}"] = np.array(getattr(self, name), dtype=np.float64)
            state["lbfgs.old_dirs"] = np.array(self.old_dirs, dtype=dtype).reshape(len(self.old_dirs), n)
            state["lbfgs.old_stps"] = np.array(self.old_stps, dtype=dtype).reshape(len(self.old_stps), n)
            state["lbfgs.ro"] = np.array(self.ro, dtype=np.float64)
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        known = {
            "steps",
            "lbfgs.func_evals",
            "lbfgs.n_iter",
            "lbfgs.numel",
            "lbfgs.old_dirs",
            "lbfgs.old_stps",
            "lbfgs.ro",
        }
        known |= {f"lbfgs.{name}" for name in self._VECTORS + self._SCALARS}
        unknown = sorted(set(state) - known)
        if unknown:
            raise ValueError(f"unknown lbfgs state keys: {', '.join(unknown)}")
        self._reset()
        self.steps = int(state["steps"])
        self.func_evals = int(state["lbfgs.func_evals"])
        self.n_iter = int(state["lbfgs.n_iter"])
        if "lbfgs.numel" in state:
            self.numel = int(state["lbfgs.numel"])
        history = [f"lbfgs.{name}" for name in self._VECTORS + self._SCALARS] + [
            "lbfgs.old_dirs",
            "lbfgs.old_stps",
            "lbfgs.ro",
        ]
        present = [key in state for key in history]
        if not any(present):
            return
        if not all(present) or self.numel is None:
            raise ValueError("lbfgs state is incomplete: " + ", ".join(k for k, p in zip(history, present) if not p))
        n = self.numel
        for name in self._VECTORS:
            value = np.array(state[f"lbfgs.{name}"])
            if value.shape != (n,):
                raise ValueError(f"lbfgs.{name} has shape {value.shape}, expected ({n},)")
            setattr(self, name, value)
        for name in self._SCALARS:
            setattr(self, name, float(state[f"lbfgs.{name}"]))
        dirs, stps, ro = (np.array(state[f"lbfgs.{k}"]) for k in ("old_dirs", "old_stps", "ro"))
        k = len(ro)
        if ro.shape != (k,) or dirs.shape != (k, n) or stps.shape != (k, n) or k > self.history_size:
            raise ValueError(
                f"lbfgs history shapes {dirs.shape}, {stps.shape}, {ro.shape} do not fit "
                f"{n} values and history_size {self.history_size}"
            )
        self.old_dirs = [row.copy() for row in dirs]
        self.old_stps = [row.copy() for row in stps]
        self.ro = [float(v) for v in ro]

    def check_state(self, state: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]], prefix: str = "") -> None:
        """Raise ValueError unless `state` fits parameters of these shapes (total size must match).

        What state_dict writes: steps, lbfgs.func_evals and lbfgs.n_iter always; lbfgs.numel once
        a step was taken; the direction, scalars and history once an iteration ran (n_iter > 0).
        """
        numel = sum(int(np.prod(s)) for s in shapes.values())
        for key in ("steps", "lbfgs.func_evals", "lbfgs.n_iter"):
            if key not in state:
                raise ValueError(f"optimizer state has no '{prefix}{key}'")
        steps, n_iter = int(state["steps"]), int(state["lbfgs.n_iter"])
        if steps > 0 and "lbfgs.numel" not in state:
            raise ValueError(f"optimizer state has no '{prefix}lbfgs.numel' (written after the first lbfgs step)")
        if steps == 0 and "lbfgs.numel" in state:
            raise ValueError(f"optimizer state has {prefix}lbfgs.numel, but {prefix}steps is 0 (no step taken)")
        if n_iter > 0 and steps == 0:
            raise ValueError(f"optimizer state has {prefix}lbfgs.n_iter {n_iter}, but {prefix}steps is 0")
        if n_iter > 0 and "lbfgs.d" not in state:
            raise ValueError(f"optimizer state has no '{prefix}lbfgs.d': lbfgs keeps its history after {n_iter} iterations")
        if n_iter == 0 and "lbfgs.d" in state:
            raise ValueError(f"optimizer state has {prefix}lbfgs.d, but {prefix}lbfgs.n_iter is 0 (no iteration ran)")
        if "lbfgs.numel" in state and int(state["lbfgs.numel"]) != numel:
            raise ValueError(
                f"lbfgs state is for {int(state['lbfgs.numel'])} parameter values, the network has {numel}"
            )
        probe = LBFGS(history_size=self.history_size)
        probe.load_state_dict(state)  # raises ValueError on anything inconsistent (unknown keys, incomplete history)
