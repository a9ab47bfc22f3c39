"""From a validated config to data, network and optimizer, ready to train, evaluate or check.

All randomness comes from `config.seed` through one SeedSequence with a child stream per
purpose (data generation, splitting, weight init, training), so changing e.g. the network
does not change the data, and the same seed gives the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import config as cfg
from ..data.dataset import SPLITS, Dataset, Scaler, encode_labels, infer_task, read_raw, split_indices
from ..engine.layers import LAYERS
from ..engine.losses import LOSSES
from ..engine.network import Network
from ..engine.optim import OPTIMIZERS
from ..errors import NntrainError

STREAMS = ("data", "split", "init", "train")


def seed_streams(seed: int) -> dict[str, np.random.Generator]:
    children = np.random.SeedSequence(seed).spawn(len(STREAMS))
    return {name: np.random.default_rng(s) for name, s in zip(STREAMS, children)}


@dataclass
class Experiment:
    config: cfg.Config
    dataset: Dataset
    splits: dict[str, np.ndarray]
    scaler: Scaler
    network: Network
    optimizer: object
    rngs: dict[str, np.random.Generator]
    saved: dict[str, np.ndarray] | None = None  # the checkpoint it was restored from, if any
    source: str | None = None  # that checkpoint's name (best, last, epoch-0010) or path
    _arrays: dict = field(default_factory=dict)

    @property
    def dtype(self):
        return self.network.dtype

    def arrays(self, split: str):
        """(X scaled to dtype, y labels/values, t targets encoded for the loss) of one split."""
        if split not in self._arrays:
            rows = self.splits[split]
            self._arrays[split] = self.encode(self.dataset.X[rows], self.dataset.y[rows])
        return self._arrays[split]

    def encode(self, X: np.ndarray, y: np.ndarray):
        X = self.scaler.transform(X, self.dtype)
        t = self.network.loss.encode(y, self.dataset.n_classes, self.dtype)
        return X, y, t

    def metric_names(self) -> list[str]:
        return list(self.config.train.metrics)


def load_dataset(config: cfg.Config, rng: np.random.Generator, base: Path | None, classes=None) -> Dataset:
    d = config.data
    X, y_raw, features, source_task = read_raw(d.dataset, d.options, d.target, rng, base)
    task = infer_task(d.task, source_task, y_raw, LOSSES[config.loss.name].tasks)
    y, classes = encode_labels(y_raw, task, classes)
    if task == "classification" and len(classes) < 2:
        raise NntrainError(f"the data has a single class ({classes}); classification needs at least 2", "data.dataset")
    return Dataset(X, y, task, classes, features)


def build_network(config: cfg.Config, dataset: Dataset, rng: np.random.Generator) -> Network:
    """The config's layers and loss, sized for `dataset`; the output width is checked against the data."""
    layers = [LAYERS[spec.type](**spec.model_dump(exclude={"type"})) for spec in config.model.layers]
    loss = LOSSES[config.loss.name](**config.loss.model_dump(exclude={"name"}))
    network = Network(layers, loss, dataset.X.shape[1], config.dtype, rng, config.model.init, config.model.init_scale)
    need = loss.expected_width(dataset.n_classes, dataset.n_targets)
    n_classes = dataset.n_classes
    if loss.name in ("binary_cross_entropy", "hinge") and n_classes != 2:
        raise NntrainError(f"'{loss.name}' is for 2 classes; the data has {n_classes}: use cross_entropy", "loss")
    if network.out_features != need:
        linear = [i for i, s in enumerate(config.model.layers) if s.type == "linear"]
        key = f"model.layers.{linear[-1]}.units" if linear else "model.layers"
        what = f"{n_classes} classes" if n_classes is not None else f"{dataset.n_targets} target column(s)"
        raise NntrainError(
            f"the network outputs {network.out_features} values, but '{loss.name}' on data with {what} needs {need}", key
        )
    return network


def saved_dataset(config: cfg.Config, saved: dict[str, np.ndarray]) -> Dataset:
    """A dataset with no rows but the shape of a saved run's data, from its checkpoint alone.

    Enough to rebuild the network and encode new inputs (predict, eval --data) when the
    training data is not at hand any more.
    """
    features = [str(f) for f in saved["data.features"]]
    classes = [str(c) for c in saved["data.classes"]] if "data.classes" in saved else None
    if classes is not None:
        y = np.empty(0, dtype=np.int64)
    else:  # regression: one target per output of the last linear layer
        units = [s.units for s in config.model.layers if s.type == "linear"]
        y = np.empty((0, units[-1]) if units and units[-1] > 1 else 0)
    return Dataset(np.empty((0, len(features))), y, config.data.task, classes, features)


def prepare(
    config: cfg.Config,
    base: Path | None = None,
    splits: dict[str, np.ndarray] | None = None,
    saved: dict[str, np.ndarray] | None = None,
    with_data: bool = True,
) -> Experiment:
    """Data, splits, scaling, network and optimizer for `config` (resolved in place).

    `splits` and `saved` (a checkpoint's arrays: scaling statistics, class names, parameters)
    come from a run directory when a saved run is evaluated or resumed. Without `with_data`
    the dataset has no rows and the data source is not read (see `saved_dataset`).
    """
    rngs = seed_streams(config.seed)
    if with_data or saved is None:
        classes = [str(c) for c in saved["data.classes"]] if saved is not None and "data.classes" in saved else None
        dataset = load_dataset(config, rngs["data"], base, classes)
    else:
        dataset = saved_dataset(config, saved)
        splits = {name: np.empty(0, dtype=np.int64) for name in SPLITS}
    cfg.resolve(config, dataset.task)
    if splits is None:
        s = config.data.split
        splits = split_indices(dataset.y, dataset.task, s.val, s.test, rngs["split"])
        if len(splits["train"]) == 0:
            raise NntrainError(f"the split leaves no training rows out of {len(dataset.y)}", "data.split")
    elif sum(len(v) for v in splits.values()) and max(int(v.max(initial=-1)) for v in splits.values()) >= len(dataset.y):
        raise NntrainError("the run's splits.npz does not match its data (row index out of range)")
    if saved is not None:
        scaler = Scaler.from_state(config.data.scale, saved)
    else:
        scaler = Scaler(config.data.scale).fit(dataset.X[splits["train"]])
    network = build_network(config, dataset, rngs["init"])
    optimizer = OPTIMIZERS[config.optimizer.name](**config.optimizer.model_dump(exclude={"name"}))
    return Experiment(config, dataset, {k: splits[k] for k in SPLITS}, scaler, network, optimizer, rngs, saved)
