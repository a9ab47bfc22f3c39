"""L-BFGS with a strong-Wolfe line search: torch.optim.LBFGS, full-batch only (see `LBFGS`).

The line search and the cubic interpolation follow torch.optim.lbfgs step for step, so a run
compares with PyTorch's; the optimizer is registered with the others as `lbfgs`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated

import numpy as np

from .optim import OPTIMIZERS, Optimizer
from .registry import Range

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
