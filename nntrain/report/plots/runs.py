"""A run directory as the plots read it: its metrics, its checkpoints, its network and data, and which kinds apply.

A `Run` loads what a plot needs once and keeps it: the network of a checkpoint without the data
(enough to tell which kinds apply), with the data (the split rows a plot draws), metrics.csv,
the best epoch. Nothing here writes into the run directory.

What a plot needs to know about the network comes from the layers' declared attributes and their
parameters' shapes, never from a layer's name: "the first layer with a weight" is the first whose
parameters include weights (a `weight`, or a recurrent layer's `weight_*`), "convolution filters"
are a 4-d `weight` (out, in, kh, kw), "an embedding matrix" is the 2-d `weight` of a first layer that
takes token ids (`integer_input`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from ...errors import NntrainError

SPLIT_ORDER = ("test", "val", "train")  # the default split of the plots of outputs: the first with rows


class Run:
    """One run directory, loaded lazily; `exp(which, data)` caches each Experiment it builds."""

    def __init__(self, path: Path):
        from ...train.rundir import RunDir

        self.path = Path(path)
        self.dir = RunDir.open(self.path)  # NntrainError unless it is a run directory
        self.name = self.path.resolve().name
        self._exps: dict = {}
        self._metrics = None

    # ------------------------------------------------------------ files

    def metrics(self) -> tuple[list[str], dict[str, np.ndarray]]:
        """(columns, column -> float array) of metrics.csv; ([], {}) when it has no rows."""
        if self._metrics is None:
            from ...train.rundir import metric_value, read_metrics

            rows = read_metrics(self.dir.metrics_file) if os.path.isfile(self.dir.metrics_file) else []
            columns = list(rows[0]) if rows else []
            values = {}
            for c in columns:
                values[c] = np.array([_nan_if_none(metric_value(r[c])) for r in rows], dtype=np.float64)
            self._metrics = (columns, values)
        return self._metrics

    def summary(self) -> dict:
        """summary.json ({} before training has ended once); NntrainError when it is unreadable."""
        from ...train.rundir import read_summary

        return read_summary(self.dir.summary_file) or {}

    def best_epoch(self) -> int | None:
        """The epoch best.npz holds: summary.json's best_epoch, or best.npz's own record (a run still training)."""
        best = self.summary().get("best_epoch")
        if isinstance(best, int) and best > 0:
            return best
        path = self.dir.checkpoint("best")
        if os.path.isfile(path):
            try:
                with np.load(path, allow_pickle=False) as npz:
                    return int(npz["meta.best_epoch"]) or None
            except (OSError, ValueError, KeyError):
                return None
        return None

    def monitor(self) -> str | None:
        monitor = self.summary().get("monitor")
        if isinstance(monitor, str):
            return monitor
        exp = self.network_exp()
        return exp.config.train.monitor if exp is not None else None

    def has_checkpoint(self) -> bool:
        return os.path.isfile(self.dir.checkpoint("last"))

    def epoch_checkpoints(self) -> list[tuple[int, Path]]:
        """(epoch, file) of the periodic checkpoints and last.npz, by epoch, one file per epoch."""
        found = {}
        for path in self.dir.checkpoint_files():
            if path.stem.startswith("epoch-"):
                found[int(path.stem[len("epoch-") :])] = path
        last = self.dir.checkpoint("last")
        if os.path.isfile(last):
            exp = self.network_exp()
            epoch = int(exp.saved["meta.epoch"]) if exp is not None else None
            if epoch is not None and epoch not in found:
                found[epoch] = last
        return sorted(found.items())

    # ------------------------------------------------------------ experiments

    def exp(self, which: str = "best", data: bool = True):
        """The run's Experiment with checkpoint `which` (best | last | a path), with its data or without."""
        key = (str(which), data)
        if not data and (str(which), True) in self._exps:  # the one with data serves too: no second load
            return self._exps[str(which), True]
        if key not in self._exps:
            from ...api import load_run

            self._exps[key] = load_run(self.path, which, with_data=data)
        return self._exps[key]

    def network_exp(self):
        """The last checkpoint's Experiment without data (the network and data shape), or None before any checkpoint."""
        if not self.has_checkpoint():
            return None
        return self.exp("last", data=False)


# ---------------------------------------------------------------- the network, by declared attributes


def weight_layers(network) -> list[int]:
    """Indices (in model.layers) of the layers with weights: a `weight` of 2+ axes, or `weight_*` (recurrent)."""
    from ...train.diagnostics import weight_names

    out = []
    for i, layer in enumerate(network.layers):
        names = weight_names(layer)
        if any(name != "weight" or layer.params[name].ndim >= 2 for name in names):
            out.append(i)
    return out


def first_weights(network) -> int | None:
    """The first layer with weights, when they are a 2-d matrix `weight` (in, out) over the inputs themselves
    (every layer before it keeps the input's size: dropout, flatten, ...); else None."""
    weighted = weight_layers(network)
    if not weighted:
        return None
    i = weighted[0]
    layer = network.layers[i]
    w = layer.params.get("weight")
    seen = math.prod(network.shapes[i - 1]) if i > 0 else network.in_features
    if w is None or w.ndim != 2 or layer.integer_input or seen != network.in_features or w.shape[0] != seen:
        return None
    return i


def filter_layers(network) -> list[int]:
    """Layers whose `weight` is a bank of 2-D convolution filters: 4 axes, (out channels, in channels, kh, kw)."""
    return [i for i, layer in enumerate(network.layers) if getattr(layer.params.get("weight"), "ndim", 0) == 4]


def map_layers(network) -> list[int]:
    """Layers whose output per sample is a stack of maps (channels, height, width)."""
    return [i for i, shape in enumerate(network.shapes) if len(shape) == 3]


def embedding_layer(network) -> int | None:
    """0 when the first layer takes token ids and holds a (vocabulary, dim) table; else None."""
    if network.layers and network.layers[0].integer_input and getattr(network.layers[0].params.get("weight"), "ndim", 0) == 2:
        return 0
    return None


def hidden_layer(network) -> int | None:
    """The default layer of `projection`: the output just before the last layer with weights (what it separates)."""
    weighted = weight_layers(network)
    if not weighted or weighted[-1] == 0:
        return None
    return weighted[-1] - 1


def is_language_model(exp) -> bool:
    return exp.dataset.vocabulary is not None and exp.dataset.y.ndim == 2


def per_row_classes(exp) -> bool:
    """Classification with one class per sample (not one per step)."""
    return exp.dataset.task == "classification" and exp.dataset.y.ndim == 1


def two_d_inputs(exp) -> bool:
    """Samples of exactly two numeric features, taken as flat rows: a plane the decision boundary can be drawn over."""
    network = exp.network
    return (
        tuple(exp.dataset.sample_shape) == (2,)
        and tuple(network.in_shape) == (2,)
        and not network.layers[0].integer_input
        and exp.dataset.vocabulary is None
    )


def checkpoint_epoch(exp) -> int | None:
    saved = exp.saved
    return int(saved["meta.epoch"]) if saved is not None and "meta.epoch" in saved else None


def checkpoint_text(exp) -> str:
    """'best checkpoint (epoch 18)', as titles name it."""
    epoch = checkpoint_epoch(exp)
    source = exp.source if exp.source in ("best", "last") else Path(str(exp.source)).name
    return f"{source} checkpoint" + (f" (epoch {epoch})" if epoch is not None else "")


def choose_split(exp, split: str | None, order=SPLIT_ORDER) -> str:
    """`split` if it has rows, or (None) the first of `order` that has; NntrainError otherwise."""
    from ...data.dataset import SPLITS

    if split is None:
        for name in order:
            if len(exp.splits[name]):
                return name
        raise NntrainError("the run has no rows in any split")
    if split not in SPLITS:
        raise NntrainError(f"unknown split '{split}'; allowed: {', '.join(SPLITS)}")
    if not len(exp.splits[split]):
        raise NntrainError(f"the run has no '{split}' split (data.split gave it 0 rows); choose another split")
    return split


def spread(n: int, count: int | None) -> np.ndarray:
    """Up to `count` positions 0 .. n-1 spread evenly (all of them when count is None or >= n)."""
    if count is None or count >= n:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, count).round().astype(np.int64))


def split_outputs(exp, split: str, positions: np.ndarray | None = None):
    """(y, z) over a split's rows at `positions` (all by default), in evaluation batches: labels / values as the
    data holds them, and the network's outputs before any fused activation, float64."""
    rows = np.arange(len(exp.splits[split])) if positions is None else positions
    batch = exp.eval_batch()
    ys, zs = [], []
    with np.errstate(all="ignore"):
        for start in range(0, len(rows), batch):
            part = rows[start : start + batch]
            X, y, _ = exp.rows(split, part)
            zs.append(np.asarray(exp.network.forward(X, training=False, lengths=exp.lengths_of(split, part)), dtype=np.float64))
            ys.append(np.asarray(y))
    return np.concatenate(ys), np.concatenate(zs)


def layer_output(exp, X: np.ndarray, layer: int, lengths=None) -> np.ndarray:
    """The output of model.layers[layer] in eval mode for rows X (scaled as the network takes them)."""
    network = exp.network
    x = network.as_samples(X)
    lengths = network.check_lengths(lengths, x)
    with np.errstate(all="ignore"):
        for i, part in enumerate(network.layers[: layer + 1]):
            if part.uses_lengths:
                part.lengths = lengths
            x = part.forward(x, False)
            if lengths is not None:
                lengths = part.out_lengths(lengths)
    return np.asarray(x, dtype=np.float64)


def split_layer_outputs(exp, split: str, positions: np.ndarray, layer: int) -> tuple[np.ndarray, np.ndarray]:
    """(y, outputs of `layer` flattened per row) over a split's rows at `positions`."""
    batch = exp.eval_batch()
    ys, outs = [], []
    for start in range(0, len(positions), batch):
        part = positions[start : start + batch]
        X, y, _ = exp.rows(split, part)
        out = layer_output(exp, X, layer, exp.lengths_of(split, part))
        outs.append(out.reshape(len(out), -1))
        ys.append(np.asarray(y))
    return np.concatenate(ys), np.concatenate(outs)


def _nan_if_none(value: float | None) -> float:
    return math.nan if value is None else value
