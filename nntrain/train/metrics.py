"""Metrics accumulated batch by batch from outputs already computed (no second forward pass)."""

from __future__ import annotations

import numpy as np


class Metrics:
    """Running loss and metrics over an epoch or an evaluation.

    Classification: accuracy from `loss.decide(z)` against class indices y: (batch,).
    Regression: mse, mae and r2 (averaged over outputs) against y: (batch,) or (batch, k).
    """

    def __init__(self, loss, names: list[str], to_target_units=None):
        self.loss_fn, self.names = loss, names
        self.to_target_units = to_target_units  # regression outputs back to the targets' units
        self.n = 0
        self.loss_sum = 0.0
        self.correct = 0
        self.sse = self.sae = self.y_sum = self.y_sq = 0.0
        self.shift = None  # targets are summed relative to the first batch's mean, so r2 keeps its precision

    def add(self, loss: float, z: np.ndarray, y: np.ndarray) -> None:
        batch = len(z)
        self.n += batch
        self.loss_sum += loss * batch
        if "accuracy" in self.names:
            self.correct += int(np.count_nonzero(self.loss_fn.decide(z) == y))
        if any(m in self.names for m in ("mse", "mae", "r2")):
            target = y.reshape(batch, -1)
            out = self.to_target_units(z) if self.to_target_units else z
            diff = out.astype(np.float64) - target
            self.sse = self.sse + np.sum(diff * diff, axis=0)
            self.sae = self.sae + np.sum(np.abs(diff), axis=0)
            if self.shift is None:
                self.shift = target.mean(axis=0)
            centred = target - self.shift
            self.y_sum = self.y_sum + centred.sum(axis=0)
            self.y_sq = self.y_sq + np.sum(centred * centred, axis=0)

    def result(self) -> dict[str, float]:
        out = {"loss": self.loss_sum / self.n}
        if "accuracy" in self.names:
            out["accuracy"] = self.correct / self.n
        if "mse" in self.names:
            out["mse"] = float(np.mean(self.sse) / self.n)
        if "mae" in self.names:
            out["mae"] = float(np.mean(self.sae) / self.n)
        if "r2" in self.names:
            total = self.y_sq - self.y_sum**2 / self.n
            out["r2"] = float(np.mean(1 - self.sse / np.where(total > 0, total, np.nan)))
        return {k: float(v) for k, v in out.items() if k == "loss" or k in self.names}

