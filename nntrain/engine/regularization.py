"""Penalties on the weights and gradient clipping, applied between backward and the optimizer step.

Both act on the network's parameter list (objects with `value`, `grad`, `decay`); penalties
touch only parameters marked `decay` (weight matrices), never biases or normalization
parameters.
"""

from __future__ import annotations

import math

import numpy as np


class Penalty:
    """l1 * sum|W| + l2 * sum W^2 over the weight matrices, added to the loss.

    Unlike an optimizer's weight_decay (which only changes the update), the penalty is part
    of the objective: it appears in the reported loss, and its gradient l1 * sign(W) + 2 l2 W
    is added to each weight's gradient before the optimizer sees it.
    """

    def __init__(self, l1: float = 0.0, l2: float = 0.0):
        self.l1, self.l2 = l1, l2

    def __bool__(self) -> bool:
        return bool(self.l1 or self.l2)

    def value(self, params) -> float:
        total = 0.0
        for p in params:
            if p.decay:
                if self.l1:
                    total += self.l1 * float(np.abs(p.value).sum())
                if self.l2:
                    total += self.l2 * float(np.vdot(p.value, p.value))
        return total

    def add_gradients(self, params) -> None:
        """grad += l1 sign(W) + 2 l2 W, in place, for every weight matrix."""
        for p in params:
            if p.decay:
                if self.l1:
                    p.grad += self.l1 * np.sign(p.value)
                if self.l2:
                    p.grad += (2 * self.l2) * p.value


def clip_grad_norm(params, max_norm: float) -> float:
    """Scale all gradients together so their global L2 norm is at most max_norm; return the norm before.

    As torch.nn.utils.clip_grad_norm_: coefficient max_norm / (norm + 1e-6), applied only when below 1.
    """
    norm = math.sqrt(sum(float(np.vdot(p.grad, p.grad)) for p in params))
    coefficient = max_norm / (norm + 1e-6)
    if coefficient < 1:
        for p in params:
            p.grad *= coefficient
    return norm
