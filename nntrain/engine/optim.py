"""Optimizers: in-place parameter updates with the formulas and defaults of `torch.optim`.

`step(params)` takes the network's parameters (objects with `key`, `value`, `grad` and
`decay`) and updates each `value` in place. `weight_decay` adds weight_decay * W to the
gradient of parameters marked `decay` (weight matrices), never to biases. State is a flat
dict of arrays (`state_dict`) so it saves into a checkpoint and restores exactly.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np

from .registry import Range, Registry

OPTIMIZERS = Registry("optimizer")


class Optimizer:
    name = "optimizer"
    buffers: tuple[str, ...] = ()

    def __init__(self, lr: float, weight_decay: float):
        self.lr = lr
        self.weight_decay = weight_decay
        self.steps = 0
        self.state: dict[str, np.ndarray] = {}

    def step(self, params) -> None:
        self.steps += 1
        for p in params:
            buffers = {}
            for b in self.buffers:
                key = f"{p.key}.{b}"
                if key not in self.state:  # zero-filled on first use, like torch's lazy state
                    self.state[key] = np.zeros_like(p.value)
                buffers[b] = self.state[key]
            g = p.grad
            if self.weight_decay and p.decay:
                g = g + self.weight_decay * p.value
            self.update(p.value, g, **buffers)

    def update(self, p: np.ndarray, g: np.ndarray, **buffers: np.ndarray) -> None:  # pragma: no cover
        """Update parameter p in place from its gradient g and this optimizer's buffers for p."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"steps": np.array(self.steps, dtype=np.int64), **self.state}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.steps = int(state["steps"])
        self.state = {k: np.array(v) for k, v in state.items() if k != "steps"}


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

    def update(self, p, g, momentum_buffer=None):
        if not self.momentum:
            p -= self.lr * g
            return
        v = momentum_buffer
        v *= self.momentum
        v += g
        if self.nesterov:
            p -= self.lr * (g + self.momentum * v)
        else:
            p -= self.lr * v


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
        m, v = exp_avg, exp_avg_sq
        m += (1 - self.beta1) * (g - m)
        v *= self.beta2
        v += (1 - self.beta2) * g * g
        step_size = self.lr / (1 - self.beta1**self.steps)
        denom = np.sqrt(v)
        denom /= np.sqrt(1 - self.beta2**self.steps)
        denom += self.eps
        p -= step_size * (m / denom)


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
        s, b, a = square_avg, momentum_buffer, grad_avg
        s *= self.alpha
        s += (1 - self.alpha) * g * g
        if self.centered:
            a += (1 - self.alpha) * (g - a)
            d = np.sqrt(s - a * a)
        else:
            d = np.sqrt(s)
        d += self.eps
        if self.momentum:
            b *= self.momentum
            b += g / d
            p -= self.lr * b
        else:
            p -= self.lr * (g / d)
