"""From a validated config to data, network and optimizer, ready to train, evaluate or check.

All randomness comes from `config.seed` through one SeedSequence with a child stream per
purpose (data generation, splitting, weight init, training), so changing e.g. the network
does not change the data, and the same seed gives the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import config as cfg
from ..data.arrays import stack
from ..data.dataset import (
    SPLITS,
    Dataset,
    Scaler,
    encode_labels,
    fold_indices,
    infer_task,
    read_source,
    split_indices,
)
from ..data.columns import FeatureEncoder, Imputer, impute_rules
from ..data.files import TableOptions
from ..data.images import ImageOptions
from ..data.table import is_table_file
from ..data.text import TEXT_SUFFIXES, TextSource, Tokenizer, Vocabulary
from ..engine.init import InitError
from ..engine.layers import LAYERS, ShapeError
from ..engine.losses import LOSSES
from ..engine.network import Network
from ..engine.optim import OPTIMIZERS
from ..engine.regularization import Penalty
from ..engine.schedules import SCHEDULES, Schedule
from ..errors import NntrainError
from ..npzfile import Member, check_members
from .metrics import Metrics

STREAMS = ("data", "split", "init", "train")
EVAL_BYTES = 4 * 2**20  # the inputs of one evaluation batch (Experiment.eval_batch)


def seed_streams(seed: int) -> dict[str, np.random.Generator]:
    children = np.random.SeedSequence(seed).spawn(len(STREAMS))
    return {name: np.random.default_rng(s) for name, s in zip(STREAMS, children)}


@dataclass
class Experiment:
    config: cfg.Config
    dataset: Dataset
    splits: dict[str, np.ndarray]
    scaler: Scaler
    target_scaler: Scaler  # regression with data.scale_target; method "none" otherwise
    network: Network
    optimizer: object
    rngs: dict[str, np.random.Generator]
    penalty: Penalty = field(default_factory=Penalty)  # regularization: l1 / l2 on the weights
    schedule: Schedule | None = None  # the learning rate per epoch (optimizer.schedule)
    saved: dict[str, np.ndarray] | None = None  # the checkpoint it was restored from, if any
    source: str | None = None  # that checkpoint's name (best, last, epoch-0010) or path
    # In memory, dataset.X holds every row already scaled to dtype, and targets every row's t:
    # splits and batches are gathered from them by row index, never copied whole.
    targets: np.ndarray | None = None
    imputer: Imputer = field(default_factory=Imputer)  # data.missing: impute; fills NaN inputs before scaling
    threshold: float | None = None  # binary: the probability from which the second class is decided (eval --threshold)
    cautions: list[str] = field(default_factory=list)  # splits too small to measure much (summary.json)
    extra_metrics: list[str] = field(default_factory=list)  # evaluated besides train.metrics (add_metrics)

    @property
    def dtype(self):
        return self.network.dtype

    def arrays(self, split: str):
        """(X scaled to dtype, y labels/values, t targets encoded for the loss) of a whole split, as a copy.

        Training and evaluation gather rows a batch at a time instead (`rows`).
        """
        return self.rows(split, np.arange(len(self.splits[split])))

    def encode(self, X: np.ndarray, y: np.ndarray):
        """Raw features and labels -> (X imputed and scaled, y as is, t: targets in the loss's form and scale)."""
        return self.scaler.transform(self.imputer.transform(X), self.dtype), y, self.encode_targets(y)

    def encode_targets(self, y: np.ndarray) -> np.ndarray:
        """Labels or values -> t, the targets in the loss's form (and, for data.scale_target, scale)."""
        if self.dataset.task == "regression":
            return self.network.loss.encode(self.target_scaler.transform(y, self.dtype), None, self.dtype)
        return self.network.loss.encode(y, self.dataset.n_classes, self.dtype)

    def rows(self, split: str, positions: np.ndarray):
        """(X, y, t) of the split's rows at `positions` (e.g. one shuffled batch), gathered (or read and encoded) now."""
        rows = self.splits[split][positions]
        if self.targets is not None:
            return self.dataset.X[rows], self.dataset.y[rows], self.targets[rows]
        X = self.dataset.X[rows]
        if not self.dataset.in_memory and not np.isfinite(X).all():  # files read lazily are checked as read
            bad = int(rows[np.argmin(np.isfinite(X).all(axis=1))])
            raise NntrainError(f"the features of data row {bad} ({split} split) are not all finite numbers")
        return self.encode(X, self.dataset.y[rows])

    def lengths_of(self, split: str, positions: np.ndarray) -> np.ndarray | None:
        """The real lengths of the sequences at `positions` of the split, None when the data's sequences are whole."""
        if self.dataset.lengths is None:
            return None
        return self.dataset.lengths[self.splits[split][positions]]

    def to_target_units(self, z: np.ndarray) -> np.ndarray:
        """Network outputs in the targets' original units (undoing data.scale_target)."""
        return self.target_scaler.inverse(z) if self.target_scaler.offset is not None else z

    def metric_names(self) -> list[str]:
        return [*self.config.train.metrics, *(m for m in self.extra_metrics if m not in self.config.train.metrics)]

    def add_metrics(self, names) -> None:
        """Also compute these metrics when evaluating (eval --fail-under on a metric the run did not track)."""
        allowed = cfg.CLASSIFICATION_METRICS if self.dataset.task == "classification" else cfg.REGRESSION_METRICS
        if not self.network.loss.probabilities:
            allowed = [m for m in allowed if m not in cfg.PROBABILITY_METRICS]
        self.extra_metrics = [m for m in names if m in allowed]

    def metrics(self) -> Metrics:
        """An empty accumulator for the configured metrics."""
        units = self.to_target_units if self.target_scaler.offset is not None else None
        # A threshold is checked against the run (api._check_threshold) before it is set here.
        return Metrics(self.network.loss, self.metric_names(), units, n_classes=self.dataset.n_classes, threshold=self.threshold)

    def evaluate(
        self, X: np.ndarray, y: np.ndarray, t: np.ndarray, batch: int | None = None, confusion=False, lengths=None
    ) -> dict:
        """Loss and metrics of the network in eval mode over encoded arrays, in large batches.

        With `confusion` (classification), also the confusion matrix as lists: rows true, columns predicted.
        `lengths`: the sequences' real lengths (None: whole).
        """
        cut = (lambda s, e: None) if lengths is None else (lambda s, e: lengths[s:e])
        return self._evaluate(lambda s, e: (X[s:e], y[s:e], t[s:e], cut(s, e)), len(X), batch, confusion)

    def evaluate_split(self, split: str, batch: int | None = None, confusion=False) -> dict:
        """Loss and metrics on one split, gathered (or, on disk, read) a batch at a time."""
        n = len(self.splits[split])

        def get(s, e):
            positions = np.arange(s, min(e, n))
            return (*self.rows(split, positions), self.lengths_of(split, positions))

        return self._evaluate(get, n, batch, confusion)

    def eval_batch(self) -> int:
        """Rows per evaluation batch: about EVAL_BYTES of its widest layer output (or input), 256 to 4096 rows.

        Large enough for efficient matrix products, small enough that evaluating adds only a few
        MiB to a training process whose data fills memory.
        """
        # Per row, the largest of the input and the layers' outputs: a convolution's maps outgrow its input.
        widest = max([self.network.in_features, *(math.prod(shape) for shape in self.network.shapes)])
        row_bytes = max(1, widest) * self.dtype.itemsize
        return int(min(4096, max(256, EVAL_BYTES // row_bytes)))

    def _evaluate(self, get, n: int, batch: int | None, confusion: bool = False) -> dict:
        batch = batch or self.eval_batch()
        metrics = self.metrics()
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # a broken model reports nan, no warnings
            for start in range(0, n, batch):
                X, y, t, lengths = get(start, start + batch)
                z = self.network.forward(X, training=False, lengths=lengths)
                metrics.add(self.network.loss.forward(z, t), z, y, lengths)
            result = metrics.result()
        if self.penalty:  # the penalty is part of the objective, in every reported loss
            result["loss"] += self.penalty.value(self.network.params)
        if confusion and metrics.confusion is not None:
            result["confusion"] = metrics.confusion.tolist()
            result["per_class"] = metrics.per_class()
        return result


def _source(value):
    """A config data source as read_source takes it: a path or name, or an (X.npy, y.npy) tuple."""
    if isinstance(value, cfg.ArrayFiles):
        return (value.X, value.y) if value.lengths is None else (value.X, value.y, value.lengths)
    return value


def load_dataset(config: cfg.Config, rng: np.random.Generator, base: Path | None, classes=None) -> Dataset:
    """The config's data: one source (data.dataset) or one per split (data.train, .val, .test), as one Dataset.

    With several files the first (train) fixes the task, the class names, the encoding of
    text columns and an image folder's size and mode; the others are read with them, and
    `parts` records each file's rows. Every source must hold samples of one shape. The size
    and mode a training folder was read with are recorded in config.data.image, so that the
    run's config says how its images are read (predict, eval --data).
    """
    d = config.data
    raws, notes, encoder = {}, [], None
    options = TableOptions.of(d)
    image = ImageOptions(tuple(d.image.size) if d.image.size else None, d.image.mode) if d.image is not None else None
    text = _text_source(config)
    _check_text_sources(d)
    for key, source in d.sources().items():
        try:
            raws[key] = read_source(_source(source), d.options, options, rng, base, encoder, image, text)
        except NntrainError as e:
            raise e if e.key else NntrainError(str(e), f"data.{key}") from None
        encoder = encoder or raws[key].encoder
        image = raws[key].image or image
        notes += [f"data.{key}: {note}" for note in raws[key].notes]
    first = next(iter(raws.values()))
    if first.image is not None:
        d.image = cfg.ImageConfig(size=list(first.image.size), mode=first.image.mode)
    shapes = {key: raw.sample_shape or (raw.X.shape[1],) for key, raw in raws.items()}
    shape = next(iter(shapes.values()))  # the first source's (data.dataset's or data.train's)
    for key, other in shapes.items():  # different widths are stack's error below
        if other != shape and math.prod(other) == math.prod(shape):
            raise NntrainError(
                f"its samples have shape {shape_text(other)}, but those of data.{next(iter(raws))} have"
                f" {shape_text(shape)}; every source must hold samples of one shape",
                f"data.{key}",
            )
    task = infer_task(d.task, first.task, first.y, LOSSES[config.loss.name].tasks)
    classes = classes or first.classes
    labels = []
    if first.vocabulary is not None:  # a text: its targets are token ids already, its classes the tokens
        if d.text is None:
            d.text = cfg.TextConfig()  # the resolved config (config.yaml) says how the text was cut
        if d.split.folds:
            raise NntrainError("a text is cut into contiguous train / val / test parts; folds would mix them", "data.split.folds")
        labels = [first.y]
    for key, raw in raws.items() if first.vocabulary is None else ():
        try:
            if task == "classification" and labels_per_step(raw, shape):
                y, classes = encode_step_labels(raw.y, classes, raw.lengths)
            else:
                y, classes = encode_labels(raw.y, task, classes)
        except NntrainError as e:
            raise e if e.key else NntrainError(str(e), f"data.{key}") from None
        labels.append(y)
    if task == "classification" and len(classes) < 2:
        raise NntrainError(f"the data has a single class ({classes}); classification needs at least 2", "data")
    starts = np.cumsum([0] + [len(y) for y in labels])
    parts = {key: np.arange(starts[i], starts[i + 1]) for i, key in enumerate(raws)} if "train" in raws else first.parts
    X = stack([raw.X for raw in raws.values()])
    if X.shape[1] == 0:
        raise NntrainError("the data has no feature columns, only a target", "data")
    if d.flatten:  # samples reach the network as flat rows (runs from before sample shapes)
        shape = (X.shape[1],)
    lengths = None
    if any(raw.lengths is not None for raw in raws.values()):  # a source without them has whole sequences
        steps = sequence_steps(shape)
        lengths = np.concatenate([raw.lengths if raw.lengths is not None else np.full(len(raw.y), steps) for raw in raws.values()])
    texts = None
    if first.texts is not None:  # a table's text column, from every source
        texts = [tokens for raw in raws.values() for tokens in raw.texts]
    return Dataset(
        X, np.concatenate(labels), task, classes, first.encoder, notes, parts, shape, first.plans, lengths, first.vocabulary,
        texts,
    )


def encode_texts(config: cfg.Config, dataset: Dataset, train: np.ndarray, saved: dict | None = None) -> None:
    """A table's text column as token ids, in place: X (rows, length) and lengths, by the vocabulary of the
    training rows (or a saved run's)."""
    text = config.data.text
    if saved is not None:
        vocabulary = Vocabulary.from_state(saved, "data.text")
    else:
        tokenizer = Tokenizer(text.tokens, text.lower, key="data.text")
        vocabulary = Vocabulary.build(
            [dataset.texts[i] for i in train], text.min_count, text.max_vocabulary, tokenizer, text.length, "data.text"
        )
    ids, lengths = vocabulary.encode_many(dataset.texts, text.length)
    dataset.X, dataset.lengths, dataset.vocabulary, dataset.texts = ids.astype(np.float64), lengths, vocabulary, None


def _is_text_file(source) -> bool:
    return isinstance(source, str) and source.lower().endswith(TEXT_SUFFIXES)


def _check_text_sources(d: cfg.DataConfig) -> None:
    """A text file is a language model's whole data (data.dataset); data.text applies to it or to a table's column."""
    sources = d.sources()
    for key, source in sources.items():
        if _is_text_file(source) and key != "dataset":
            raise NntrainError("a text file is a language model's whole data: give it as data.dataset", f"data.{key}")
    if d.text is None:
        return
    text_file = _is_text_file(d.dataset)
    if d.text.column is not None and text_file:
        raise NntrainError("a text file has no columns: data.text.column is for a table's column of text", "data.text.column")
    tables = all(isinstance(s, str) and is_table_file(s) for s in sources.values())
    if not text_file and not (tables and d.text.column is not None):
        raise NntrainError(
            "data.text says how text becomes tokens: for a .txt file (a language model), or with data.text.column"
            " for a table's column of text; this data has neither",
            "data.text",
        )


def _text_source(config: cfg.Config) -> TextSource:
    """How a .txt data file is cut (data.text, or its defaults, and data.split)."""
    text = config.data.text or cfg.TextConfig()
    split = config.data.split
    tokenizer = Tokenizer(text.tokens, text.lower, key="data.text")
    return TextSource(tokenizer, text.length, split.val, split.test, text.min_count, text.max_vocabulary, text.column)


def labels_per_step(raw, shape: tuple[int, ...]) -> bool:
    """Whether a source's y (N, T) holds a class per step of its sequences (sequence labelling): whole numbers or
    labels that are not one-hot rows, one per step of sequences of T steps."""
    y = raw.y
    if y is None or y.ndim != 2 or not (len(shape) == 2 or (len(shape) == 3 and shape[0] == 1) or raw.lengths is not None):
        return False
    if y.shape[1] != sequence_steps(shape):
        return False
    one_hot = y.dtype.kind != "U" and np.isin(y, (0, 1)).all() and (y.sum(axis=1) == 1).all()
    return not one_hot


def encode_step_labels(y: np.ndarray, classes, lengths):
    """Labels (N, T) per step -> (int64 class indices (N, T), class names), from the real steps alone (padded: 0)."""
    real = np.ones(y.shape, bool) if lengths is None else np.arange(y.shape[1])[None, :] < lengths[:, None]
    codes, classes = encode_labels(y[real], "classification", classes)
    out = np.zeros(y.shape, np.int64)
    out[real] = codes
    return out, classes


def reads_sequences(network: Network) -> bool:
    """Whether the network takes its samples as sequences whose lengths it honours: (steps, features), or token ids."""
    return len(network.in_shape) == 2 or bool(network.layers and network.layers[0].integer_input)


def check_token_ids(network: Network, X: np.ndarray, where: str) -> None:
    """NntrainError unless rows X are whole token ids the network's first layer (an embedding) has rows for."""
    first = network.layers[0] if network.layers else None
    if first is None or not first.integer_input:
        return
    option = first.vocabulary_option
    size = getattr(first, option)
    bad = ~((X >= 0) & (X < size) & (np.floor(X) == X))
    if bad.any():
        row, column = (int(i) for i in np.argwhere(bad)[0])
        raise NntrainError(
            f"{where}: row {row} holds {float(X[row, column]):g} at step {column}, but the first layer takes token ids, whole"
            f" numbers 0 .. {size - 1} (its {option}: {size})",
            f"model.layers.0.{option}",
        )


def sequence_steps(sample_shape: tuple[int, ...]) -> int:
    """The steps of a sequence of this sample shape: T of (T,), (T, D) and of one-channel (1, T, D)."""
    return sample_shape[1] if len(sample_shape) == 3 and sample_shape[0] == 1 else sample_shape[0]


def splits_of(config: cfg.Config, dataset: Dataset, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Row indices of train / val / test: the given files' rows, with fractions carved where no file is given."""
    s = config.data.split
    # Stratified by the class of each row; a class per step (sequence labelling) has no one class per row.
    stratify = dataset.task if dataset.y.ndim == 1 else "regression"
    if dataset.parts is None and s.folds:
        splits = split_indices(dataset.y, stratify, 0.0, s.test, rng)
        splits["train"], splits["val"] = fold_indices(dataset.y, stratify, splits["train"], s.folds, s.fold, rng)
    elif dataset.parts is None:
        splits = split_indices(dataset.y, stratify, s.val, s.test, rng)
    else:
        splits = {name: dataset.parts.get(name, np.empty(0, dtype=np.int64)) for name in SPLITS}
        if "val" not in dataset.parts:  # carve the validation rows out of the training file
            train = dataset.parts["train"]
            if s.folds:
                splits["train"], splits["val"] = fold_indices(dataset.y, stratify, train, s.folds, s.fold, rng)
            else:
                carved = split_indices(dataset.y[train], stratify, s.val, 0.0, rng)
                splits["train"], splits["val"] = train[carved["train"]], train[carved["val"]]
    if len(splits["train"]) == 0:
        raise NntrainError(f"the split leaves no training rows out of {len(dataset.y)}", "data.split")
    if s.folds and len(splits["train"]) + len(splits["val"]) < s.folds:  # some folds would hold no rows
        rows = len(splits["train"]) + len(splits["val"])
        raise NntrainError(f"{s.folds} folds of {rows} rows leave folds without a row; at most {rows}", "data.split.folds")
    if s.val > 0 and len(splits["val"]) == 0:  # the config promised validation (monitor val_*, val columns)
        raise NntrainError(
            f"{s.val:g} of the data rounds to no validation rows (per class); use a larger fraction, or 0", "data.split.val"
        )
    return splits


def build_network(config: cfg.Config, dataset: Dataset, rng: np.random.Generator) -> Network:
    """The config's layers and loss, sized for `dataset`; the output width is checked against the data."""
    layers = []
    for i, spec in enumerate(config.model.layers):
        option = LAYERS[spec.type].vocabulary_option
        if option is not None and getattr(spec, option) is None and dataset.vocabulary is not None:
            setattr(spec, option, len(dataset.vocabulary))  # the resolved config (config.yaml) records it
        try:
            layers.append(LAYERS[spec.type](**cfg.options(spec, "type")))
        except ValueError as e:  # options that fit one by one but not together (padding 'same' with a stride)
            raise NntrainError(str(e), f"model.layers.{i}") from None
    loss = LOSSES[config.loss.name](**cfg.options(config.loss))
    try:
        network = Network(layers, loss, input_shape(dataset.sample_shape, layers), config.dtype, rng, config.model.init, config.model.init_scale)
    except InitError as e:  # an init_scale so large that the weights overflow
        i = e.layer
        own = getattr(layers[i], "init_scale", None) is not None
        raise NntrainError(
            f"{e} for layer {i} ({config.model.layers[i].type}); use a smaller init_scale",
            f"model.layers.{i}.init_scale" if own else "model.init_scale",
        ) from None
    except ShapeError as e:  # a layer that cannot take its input's shape
        raise NntrainError(str(e), f"model.layers.{e.layer}") from None
    need = loss.expected_width(dataset.n_classes, dataset.n_targets)
    n_classes = dataset.n_classes
    if loss.classes is not None and n_classes != loss.classes:
        raise NntrainError(f"'{loss.name}' is for {loss.classes} classes; the data has {n_classes}: use cross_entropy", "loss")
    steps = dataset.y.shape[1] if dataset.task == "classification" and dataset.y.ndim == 2 else None
    if steps is not None:  # a class per step (a language model): outputs (steps, classes)
        if network.out_shape != (steps, need):
            sized = [i for i, layer in enumerate(layers) if layer.width_option is not None]
            raise NntrainError(
                f"the network's output has shape {shape_text(network.out_shape)} per sample, but '{loss.name}' on"
                f" {steps} steps of {need} classes needs ({steps}, {need}): a recurrent layer with output: sequence,"
                f" then linear {need}",
                f"model.layers.{sized[-1]}.{layers[sized[-1]].width_option}" if sized else "model.layers",
            )
    elif len(network.out_shape) != 1:
        last = len(layers) - 1
        fix = (
            "reduce the steps first: a time_pool layer (mode last, mean or max), or output: last on the last recurrent layer"
            if len(network.out_shape) == 2
            else "add a flatten or global_avg_pool layer before the last linear layer"
        )
        raise NntrainError(
            f"the network's output has shape {shape_text(network.out_shape)} per sample, but '{loss.name}' needs"
            f" {need} values: {fix}",
            f"model.layers.{last}",
        )
    if layers and layers[0].integer_input and config.data.scale.name != "none":
        raise NntrainError(
            f"model.layers.0 ({config.model.layers[0].type}) takes token ids, which scaling would change;"
            f" set data.scale: none (it is {config.data.scale.name})",
            "data.scale",
        )
    if steps is None and network.out_features != need:
        sized = [i for i, layer in enumerate(layers) if layer.width_option is not None]
        key = f"model.layers.{sized[-1]}.{layers[sized[-1]].width_option}" if sized else "model.layers"
        what = f"{n_classes} classes" if n_classes is not None else f"{dataset.n_targets} target column(s)"
        raise NntrainError(
            f"the network outputs {network.out_features} values, but '{loss.name}' on data with {what} needs {need}", key
        )
    return network


def input_shape(sample_shape: tuple[int, ...], layers) -> tuple[int, ...]:
    """The shape the network takes a sample in, from the first layer that needs a shape (`sample_ndim`).

    The data's own shape when that layer takes it; one channel (1, T, D) of a stack of 2-D
    arrays seen as the sequence (T, D) by a layer over steps, a row (T,) as T steps of one
    feature (T, 1), and a sequence (T, D) as the one-channel image (1, T, D) by a convolution
    over images; else the flat (n,) rows an MLP takes (and a layer that needs a shape then says
    what it got). `layers`: instances or classes.
    """
    shape = tuple(sample_shape)
    needs = next((layer.sample_ndim for layer in layers if layer.sample_ndim is not None), None)
    if needs == len(shape):
        return shape
    if needs == len(shape) - 1 and shape[0] == 1:
        return shape[1:]
    if needs == len(shape) + 1 == 3:
        return (1, *shape)
    if needs == len(shape) + 1 == 2:  # a row of T numbers as T steps of one feature
        return (*shape, 1)
    return (math.prod(shape),)


def output_width(config: cfg.Config) -> int | None:
    """The output width the config's layers set: the width option (units, filters) of the last layer that has one."""
    for spec in reversed(config.model.layers):
        option = LAYERS[spec.type].width_option
        if option is not None:
            return getattr(spec, option)
    return None


def shape_text(shape) -> str:
    """A sample shape as users read it: (1, 28, 28)."""
    return "(" + ", ".join(str(n) for n in shape) + ("," if len(shape) == 1 else "") + ")"


def saved_dataset(config: cfg.Config, saved: dict[str, np.ndarray]) -> Dataset:
    """A dataset with no rows but the shape of a saved run's data, from its checkpoint alone.

    Enough to rebuild the network and encode new inputs (predict, eval --data) when the
    training data is not at hand any more. The sample shape is data.sample_shape, or
    data.image_shape (h, w) of runs from before sample shapes, as (1, h, w); with
    data.flatten (which such runs' configs say) the network gets flat rows of it.
    """
    if "data.columns" in saved:
        encoder = FeatureEncoder.from_state(saved, config.data.unknown)
    else:
        encoder = FeatureEncoder([str(f) for f in saved["data.features"]])
    width = len(encoder.names)
    if "data.sample_shape" in saved:
        shape = tuple(saved["data.sample_shape"].tolist())
    elif "data.image_shape" in saved:
        shape = (1, *saved["data.image_shape"].tolist())
    else:
        shape = (width,)
    if config.data.flatten:
        shape = (width,)
    classes = [str(c) for c in saved["data.classes"]] if "data.classes" in saved else None
    vocabulary = Vocabulary.from_state(saved, "data.text") if "data.text.vocabulary" in saved else None
    if classes is not None and "data.target_steps" in saved:  # a class per step (language model, sequence labelling)
        y = np.empty((0, int(saved["data.target_steps"])), dtype=np.int64)
    elif classes is not None:
        y = np.empty(0, dtype=np.int64)
    else:  # regression: one target per output of the network
        outputs = output_width(config)
        y = np.empty((0, outputs) if outputs and outputs > 1 else 0)
    return Dataset(np.empty((0, width)), y, config.data.task, classes, encoder, sample_shape=shape, vocabulary=vocabulary)


SMALL_SPLIT_ROWS, SMALL_SPLIT_CLASS_ROWS = 30, 5  # below these a split's metrics say little


def split_cautions(splits: dict[str, np.ndarray], dataset: Dataset) -> list[str]:
    """A caution for each validation or test split too small to measure anything: < 30 rows, or < 5 of a class."""
    cautions = []
    for name, label in (("val", "validation"), ("test", "test")):
        rows = splits[name]
        if not len(rows):
            continue
        if len(rows) < SMALL_SPLIT_ROWS:
            cautions.append(
                f"the {label} split has only {len(rows)} rows (fewer than {SMALL_SPLIT_ROWS}): its metrics can change"
                " a lot with a single row; use more data or a larger data.split fraction"
            )
            continue
        if dataset.classes is not None and dataset.vocabulary is None:  # a text's rare tokens are no caution
            counts = np.bincount(dataset.y[rows].reshape(-1), minlength=len(dataset.classes))
            few = [(dataset.classes[k], int(c)) for k, c in enumerate(counts) if c < SMALL_SPLIT_CLASS_ROWS]
            if few:
                shown = ", ".join(f"'{c}' {n}" for c, n in few[:5]) + (" ..." if len(few) > 5 else "")
                cautions.append(
                    f"the {label} split has fewer than {SMALL_SPLIT_CLASS_ROWS} rows of some classes ({shown}):"
                    " its per-class metrics measure little"
                )
    return cautions


def _fitted_imputer(config: cfg.Config, dataset: Dataset, train: np.ndarray) -> Imputer:
    """data.missing: impute: fill values from the training rows; otherwise an imputer that does nothing."""
    if config.data.missing != "impute" or not dataset.in_memory:
        return Imputer()
    rules = impute_rules(dataset.encoder, config.data.impute)
    return Imputer.fitted(dataset.encoder, dataset.X, train, rules)


def _saved_scaler(method: str, saved: dict, key: str, width: int, what: str) -> Scaler:
    """The scaler a checkpoint saved; NntrainError unless its statistics have one entry per column of the data.

    A checkpoint's own consistency is checked when it is read (checkpoint.read); only the data
    tells how many columns there are.
    """
    scaler = Scaler.from_state(method, saved, key)
    for name, value in (("offset", scaler.offset), ("factor", scaler.factor)):
        if value is not None and (np.ndim(value) > 1 or np.size(value) != width):
            source = getattr(saved, "path", "the checkpoint")
            raise NntrainError(f"'{source}': {key}.{name} has {np.size(value)} entries, but the data has {width} {what}")
    return scaler


def _check_batch_sizes(config: cfg.Config, network: Network, rows: int) -> None:
    """Layers that normalize with batch statistics need `network.min_batch` rows in every training batch."""
    need = network.min_batch
    if need <= 1:
        return
    which = next(layer.name for layer in network.layers if layer.batch_statistics and layer.min_batch == need)
    batch = rows if config.train.batch_size == "full" else config.train.batch_size
    if batch < need:
        raise NntrainError(
            f"batches of {batch} row{'s' if batch != 1 else ''} cannot be normalized by {which} (it needs at least"
            f" {need} rows per training batch); use train.batch_size {need} or more",
            "train.batch_size",
        )
    if 0 < rows % batch < need or rows < need:
        raise NntrainError(
            f"{rows} training rows in batches of {batch} leave a last batch of {rows % batch or rows} row(s), which"
            f" {which} cannot normalize; change train.batch_size by one",
            "train.batch_size",
        )


SPLITS_FILE = {name: Member("iu", (None,), required=True) for name in SPLITS}


class SavedSplits(dict):
    """The arrays of a run's splits.npz, and the file they came from (for messages)."""

    def __init__(self, path, arrays: dict[str, np.ndarray]):
        super().__init__(arrays)
        self.path = path


def check_splits(splits: dict, rows: int, config: cfg.Config | None = None) -> None:
    """A saved splits.npz, checked as a whole before it is used; NntrainError naming it otherwise.

    It must hold exactly the integer arrays train, val and test, each 1-D, sorted without
    repeats, naming rows of this data (0 .. rows - 1), no row in two splits; train must have
    rows, and val must have rows exactly when the config has a validation split.
    """
    where = f"'{getattr(splits, 'path', 'splits.npz')}'"
    check_members(where[1:-1], splits, SPLITS_FILE, closed=True)
    for name in SPLITS:
        index = splits[name]
        if len(index) and (index.min() < 0 or index.max() >= rows):
            raise NntrainError(f"{where} does not match its data ({name} rows outside 0..{rows - 1})")
        if len(index) > 1 and not (np.diff(index) > 0).all():
            at = int(np.argmin(np.diff(index) > 0))
            problem = "repeats" if index[at] == index[at + 1] else "is not sorted at"
            raise NntrainError(f"{where} is damaged: '{name}' {problem} row {int(index[at + 1])} (position {at + 1})")
    for i, a in enumerate(SPLITS):
        for b in SPLITS[i + 1 :]:
            both = np.intersect1d(splits[a], splits[b], assume_unique=True)
            if len(both):
                raise NntrainError(f"{where} is damaged: row {int(both[0])} is in both '{a}' and '{b}'")
    if not len(splits["train"]):
        raise NntrainError(f"{where} is damaged: its 'train' split has no rows")
    if config is not None:
        has_val = config.data.split.val > 0 or config.data.val is not None
        if has_val != bool(len(splits["val"])):
            problem = "has no rows" if has_val else f"has {len(splits['val'])} rows"
            setting = "has a validation split" if has_val else "has none (data.split.val: 0)"
            raise NntrainError(f"{where} does not match the run's config: its 'val' split {problem}, but the config {setting}")


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
    with_data = with_data or saved is None
    if with_data:
        classes = [str(c) for c in saved["data.classes"]] if saved is not None and "data.classes" in saved else None
        dataset = load_dataset(config, rngs["data"], base, classes)
    else:
        dataset = saved_dataset(config, saved)
        splits = {name: np.empty(0, dtype=np.int64) for name in SPLITS}
    cfg.resolve(config, dataset.task)
    if (dataset.vocabulary is not None or dataset.texts is not None) and "scale" not in config.data.model_fields_set:
        config.data.scale = cfg.ScaleConfig(name="none")  # token ids are not numbers to scale
    if splits is None:
        splits = splits_of(config, dataset, rngs["split"])
    elif with_data:  # a run's splits.npz (without data there are no rows, and no splits)
        check_splits(splits, len(dataset.y), config)
    if dataset.texts is not None:  # the vocabulary of the training rows (a saved run: its own)
        encode_texts(config, dataset, splits["train"], saved)
    scale = config.data.scale
    target_method = "standardize" if config.data.scale_target else "none"
    if saved is not None:
        scaler = _saved_scaler(scale.name, saved, "data.scale", dataset.X.shape[1], "feature columns")
        target_scaler = _saved_scaler(target_method, saved, "data.target_scale", dataset.n_targets, "target columns")
        imputer = Imputer.from_state(saved)
        if with_data and dataset.in_memory:
            imputer.transform(dataset.X)
    else:
        imputer = _fitted_imputer(config, dataset, splits["train"])
        if dataset.in_memory:  # filled before the scaling statistics are taken
            imputer.transform(dataset.X)
        # Sequences are scaled per feature over their steps, whatever shape the data gave them.
        shape = input_shape(dataset.sample_shape, [LAYERS[spec.type] for spec in config.model.layers])
        scaler = Scaler.of(scale, shape if len(shape) == 2 else dataset.sample_shape)
        scaler.fit_rows(dataset.X, splits["train"], lengths=dataset.lengths)
        target_scaler = Scaler(target_method, key="data.target_scale").fit(dataset.y[splits["train"]])
    network = build_network(config, dataset, rngs["init"])
    if dataset.lengths is not None and not reads_sequences(network):
        raise NntrainError(
            f"the data's `lengths` are for a network that reads sequences (a recurrent layer, conv1d or an embedding"
            f" first); this one takes its samples as {shape_text(network.in_shape)}, where padding would count",
            "data.dataset",
        )
    if saved is not None and dataset.vocabulary is not None and "data.text.vocabulary" in saved:
        if Vocabulary.from_state(saved, "data.text").tokens != dataset.vocabulary.tokens:
            raise NntrainError(
                "the text is not the one the run was trained on: its vocabulary differs from the checkpoint's", "data.dataset"
            )
    if with_data and dataset.in_memory:
        check_token_ids(network, dataset.X, "the data")
    if not dataset.in_memory and config.train.batch_size == "full":
        raise NntrainError("data read from disk trains in mini-batches; a full batch would load it all", "train.batch_size")
    network.rng = rngs["train"]  # dropout and noise draw from the training stream, which checkpoints save
    if saved is not None and "loss.weights" in saved:  # a saved run keeps the weights it trained with
        network.loss.weights = saved["loss.weights"]
    elif dataset.classes is not None:  # class_weights: balanced counts come from the training rows
        train = splits["train"]
        labels = dataset.y[train]
        if labels.ndim == 2 and dataset.lengths is not None:  # a class per step: the real steps'
            labels = labels[np.arange(labels.shape[1])[None, :] < dataset.lengths[train][:, None]]
        counts = np.bincount(labels.reshape(-1), minlength=len(dataset.classes))
        try:
            network.loss.set_class_weights(dataset.classes, counts)
        except ValueError as e:
            raise NntrainError(str(e), "loss.class_weights") from None
    if with_data:  # a run loaded without its data (predict, export) trains nothing: no batch to check
        _check_batch_sizes(config, network, len(splits["train"]))
    optimizer = OPTIMIZERS[config.optimizer.name](**cfg.options(config.optimizer))
    spec = config.optimizer.schedule
    schedule = SCHEDULES[spec.name](**cfg.options(spec)) if spec is not None else None
    splits = {k: splits[k] for k in SPLITS}
    penalty = Penalty(config.regularization.l1, config.regularization.l2)
    exp = Experiment(config, dataset, splits, scaler, target_scaler, network, optimizer, rngs, penalty, schedule, saved)
    exp.imputer = imputer
    if with_data:
        exp.cautions = split_cautions(splits, dataset)
    if with_data and dataset.in_memory:  # scaled once, in place where the dtype allows: the data is held in memory once
        dataset.X = scaler.transform(dataset.X, network.dtype, in_place=True)
        exp.targets = exp.encode_targets(dataset.y)
    return exp
