"""Numerical gradient checking: analytic gradients against centered finite differences.

For an entry w of a tensor, the numerical gradient is the fourth-order centered difference

    n = (-L(w + 2h) + 8 L(w + h) - 8 L(w - h) + L(w - 2h)) / (12 h)

and the relative error is |a - n| / max(|a|, |n|, floor). Run it in float64: in float32 the
rounding error of L alone swamps the difference. The two-point difference (L(w+h) - L(w-h)) / 2h
has an error of order h^2 that forces a tiny h, and then the rounding error of L divided by h
dominates (about 1e-10 absolute at h = 1e-6, which makes any gradient entry below 1e-4 look
wrong at a 1e-6 tolerance). The four-point form's error is of order h^4, so h = 1e-4 is
accurate to about 1e-12.

What h cannot remove is the rounding of L itself. Each L(w + kh) is off by some multiple of
eps_machine times the size of the terms it sums (not of L: a confident classifier's
log-sum-exp and target logit are both ~10 while their difference is ~1e-3), so n carries
an absolute noise of 1e-13 to 1e-12, and a true gradient of 0 or 1e-8 cannot be told apart
from that noise in relative terms. The floor is therefore `tiny` (1e-5): entries below it
are judged on their absolute error, which must stay under tol * tiny (1e-11 by default),
far below what any wrong formula produces. For losses of large magnitude the floor grows
to 4x the rounding noise of L itself, 18 eps_machine |L| / (12 h), divided by `tol`.

ReLU-like units, MAE and hinge have kinks where the derivative jumps. If w ± 2h moves a
unit across its kink, the finite difference mixes the two one-sided slopes and disagrees
with either analytic value, although backprop is right. Each evaluation records which side
of its kink every unit was on; an entry whose four evaluations differ is counted as
`kinks` and left out of the error, instead of being reported as a failure. A tensor
whose every checked entry sat on a kink has no error to report (NaN): it is not failed,
but neither was it compared, which the CLI says.

Every loss is evaluated in training mode, so dropout and gaussian_noise are active; their
randomness is frozen: the state of `network.rng` is taken once and restored before every
forward pass (the analytic one included), so all evaluations see the same masks and noise
and the check is of that one fixed function. Training-mode forwards also move batch_norm's
running statistics; that state, like the perturbed entries and the RNG state, are put back
when the check ends, so it leaves the network as it found it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .network import Network


STENCIL_STEPS = (2, 1, -1, -2)


@dataclass
class TensorCheck:
    name: str
    shape: tuple[int, ...]
    checked: int
    kinks: int
    max_rel_error: float
    passed: bool


def relative_error(a: np.ndarray, n: np.ndarray, tiny: float) -> np.ndarray:
    return np.abs(a - n) / np.maximum(np.maximum(np.abs(a), np.abs(n)), tiny)


def _kink_state(network: Network) -> list[np.ndarray]:
    states = [layer.kinks() for layer in network.chain] + [network.loss.kinks()]
    return [s.copy() for s in states if s is not None]


def _loss_and_kinks(network: Network, x: np.ndarray, t: np.ndarray, rng_state: dict, lengths):
    network.rng.bit_generator.state = rng_state  # the same masks and noise for every evaluation
    loss = network.loss.forward(network.forward(x, training=True, lengths=lengths), t)
    return loss, _kink_state(network)


def check_gradients(
    network: Network,
    x: np.ndarray,
    t: np.ndarray,
    eps: float = 1e-4,
    tol: float = 1e-6,
    tiny: float = 1e-5,
    max_entries: int = 100,
    rng: np.random.Generator | None = None,
    lengths: np.ndarray | None = None,
) -> list[TensorCheck]:
    """Check every parameter tensor and the input x. x: (batch, in); t: encoded targets.

    `lengths`: the real lengths of variable-length sequences (see Network.forward). The input
    is not checked where it has no gradient (token ids into an embedding). At most `max_entries` entries per tensor are checked (all when the tensor is smaller),
    chosen by `rng`. Every perturbed entry is restored, whatever happens, and so are
    `network.rng`'s state (frozen during the check) and the layers' state.
    """
    rng = rng or np.random.default_rng(0)
    x = np.array(x, dtype=network.dtype)
    rng_state = network.rng.bit_generator.state
    state = {k: v.copy() for k, v in network.layer_state().items()}
    try:
        network.rng.bit_generator.state = rng_state
        _, _, dx = network.loss_and_grad(x, t, input_grad=True, lengths=lengths)
        return _check_tensors(network, x, t, dx, eps, tol, tiny, max_entries, rng, rng_state, lengths)
    finally:
        network.rng.bit_generator.state = rng_state
        for key, value in network.layer_state().items():
            value[...] = state[key]


def _check_tensors(network, x, t, dx, eps, tol, tiny, max_entries, rng, rng_state, lengths) -> list[TensorCheck]:
    tensors = [(p.key, p.value, p.grad.copy()) for p in network.params]
    if dx is not None:
        tensors.append(("input", x, dx.copy()))
    results = []
    for name, value, analytic in tensors:
        flat_value, flat_grad = value.reshape(-1), analytic.reshape(-1)
        if flat_value.size <= max_entries:
            picks = np.arange(flat_value.size)
        else:
            picks = rng.choice(flat_value.size, size=max_entries, replace=False)
        errors, kinks = [], 0
        for j in picks:
            old = flat_value[j]
            losses, states = [], []
            try:
                for step in STENCIL_STEPS:
                    flat_value[j] = old + step * eps
                    loss, state = _loss_and_kinks(network, x, t, rng_state, lengths)
                    losses.append(loss)
                    states.append(state)
            finally:
                flat_value[j] = old
            if any((a != b).any() for other in states[1:] for a, b in zip(states[0], other)):
                kinks += 1
                continue
            plus2, plus1, minus1, minus2 = losses
            # Differences first: equal losses give exactly 0, not the rounding of 8L - 8L.
            numeric = (8 * (plus1 - minus1) - (plus2 - minus2)) / (12 * eps)
            noise = 4 * 18 * np.finfo(np.float64).eps * max(map(abs, losses)) / (12 * eps)
            floor = max(tiny, noise / tol) if tol > 0 else tiny
            errors.append(float(relative_error(flat_grad[j], numeric, floor)))
        worst = max(errors, default=float("nan"))
        results.append(TensorCheck(name, tuple(value.shape), len(picks), kinks, worst, not errors or worst <= tol))
    return results
