"""A dataset ready for training: features, labels, task, class names, sample shape, splits and scaling."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..engine.registry import did_you_mean
from ..errors import NntrainError
from ..npzfile import Member, check_members, load_npy
from .arrays import DiskRows, in_memory
from . import download
from .bundled import BUNDLED, read_bundled
from .download import DOWNLOADABLE
from .columns import ColumnPlan, FeatureEncoder
from .files import FILE_SUFFIXES, NPZ_MEMBERS, TableOptions, read_arrays, read_table, read_text_column
from .images import ImageOptions, is_folder, read_folder
from .shapes import shape_text
from .table import is_table_file
from .generators import GENERATORS
from .text import TEXT_SUFFIXES, Vocabulary, read_text_file

SPLITS = ("train", "val", "test")


@dataclass
class Dataset:
    """X: (rows, features); y: (rows,) int64 class indices, or (rows, k) float64 values.

    `sample_shape` is what one row is to the network: (features,) for tables, (channels,
    height, width) for images, whose pixels a row holds in C order (`shapes`). X is a float
    array in memory, or rows on disk (`arrays.DiskRows`, `StackedRows`) read batch
    by batch. In memory it holds the values as read until an Experiment is prepared from it,
    which scales it in place (`train.experiment.prepare`): a dataset is held in memory once.
    """

    X: np.ndarray
    y: np.ndarray
    task: str  # "classification" | "regression"
    classes: list[str] | None = None  # class names, index = label
    encoder: FeatureEncoder | None = None  # raw columns -> X; None: X's columns are x0, x1, ...
    notes: list[str] = field(default_factory=list)  # what loading did that a user should hear about
    parts: dict[str, np.ndarray] | None = None  # rows of each given part (files, an official test set), if any
    sample_shape: tuple[int, ...] | None = None  # one row's shape; None: (features,)
    plans: list[ColumnPlan] = field(default_factory=list)  # the training table's columns and their roles
    lengths: np.ndarray | None = None  # (rows,) int64: sequences' real lengths (padded after them); None: whole
    vocabulary: Vocabulary | None = None  # text data: X holds token ids, and y too for a language model
    # A table's text column as token lists, until `encode_texts` (on the training split's vocabulary)
    # turns them into X's ids and `lengths`; X is zeros until then.
    texts: list[list[str]] | None = None

    def __post_init__(self):
        if self.encoder is None:
            self.encoder = FeatureEncoder([f"x{j}" for j in range(self.X.shape[1])])
        self.sample_shape = tuple(int(n) for n in self.sample_shape) if self.sample_shape is not None else (self.X.shape[1],)
        if math.prod(self.sample_shape) != self.X.shape[1]:
            raise ValueError(f"samples of shape {self.sample_shape} do not make rows of {self.X.shape[1]} features")

    @property
    def feature_names(self) -> list[str]:
        return self.encoder.names

    @property
    def in_memory(self) -> bool:
        return in_memory(self.X)

    @property
    def n_classes(self) -> int | None:
        return len(self.classes) if self.classes is not None else None

    @property
    def n_targets(self) -> int:
        return 1 if self.y.ndim == 1 else self.y.shape[1]


def builtin_names() -> list[str]:
    """Every name `data.dataset` accepts besides a file path."""
    return [*GENERATORS, *BUNDLED, *DOWNLOADABLE]


def read_downloaded(name: str) -> RawData:
    """A downloaded image dataset: pixels scaled to [0, 1], samples (1, height, width) as rows of height * width.

    The official training and test sets stay apart (`parts`); labels become the class names.
    """
    train_images, train_labels, test_images, test_labels = download.load(name)
    images = np.concatenate([train_images, test_images])
    X = images.reshape(len(images), -1).astype(np.float32)
    X *= np.float32(1 / 255)
    classes = DOWNLOADABLE[name].classes
    y = np.array(classes)[np.concatenate([train_labels, test_labels])]
    n = len(train_images)
    parts = {"train": np.arange(n), "test": np.arange(n, len(images))}
    return RawData(X, y, task="classification", classes=list(classes), parts=parts, sample_shape=(1, *images.shape[1:]))


def unknown_dataset(dataset: str) -> str:
    names = builtin_names()
    return (
        f"'{dataset}' is neither a built-in dataset{did_you_mean(dataset, names)} ({', '.join(names)})"
        f" nor a data file ({' / '.join(FILE_SUFFIXES)}) nor an image folder (write a folder as a path: ./{dataset})"
    )


def looks_like_folder(source: str) -> bool:
    """Whether a data source without a data file's suffix is meant as an image folder: a path, or an existing folder.

    A bare word that is no folder here ('spiral') stays an unknown dataset name, with a
    did-you-mean; a folder beside the config file is written as a path (./shapes). A built-in
    name is never a folder, even where a folder of that name exists.
    """
    if source in builtin_names() or str(source).lower().endswith(FILE_SUFFIXES):
        return False
    return "/" in source or "\\" in source or is_folder(source)


@dataclass
class RawData:
    """A data source as read: features, labels not yet encoded, and what the source says of itself."""

    X: np.ndarray
    y: np.ndarray
    encoder: FeatureEncoder | None = None
    task: str | None = None  # the source's own task (generators, bundled sets); None for files
    dropped: int = 0  # rows skipped for missing values
    classes: list[str] | None = None  # the source's own class names, in label order
    parts: dict[str, np.ndarray] | None = None  # the source's own split (an official test set)
    sample_shape: tuple[int, ...] | None = None  # one row's shape, when not (features,): (channels, height, width)
    plans: list[ColumnPlan] = field(default_factory=list)  # a table's columns and their roles
    notes: list[str] = field(default_factory=list)  # what reading did: rows dropped, and why
    image: ImageOptions | None = None  # an image folder: the size and mode it was read with
    lengths: np.ndarray | None = None  # (rows,): sequences' real lengths, from an .npz's `lengths`
    vocabulary: Vocabulary | None = None  # a text: its tokens; y then holds token ids (its classes)
    texts: list[list[str]] | None = None  # a table's text column, as token lists (ids once the vocabulary is built)


def read_source(source, options: dict, table: TableOptions, rng, base=None, encoder=None, image=None, text=None) -> RawData:
    """Read a built-in dataset, a data file (table, NPZ), an image folder, or a pair (X.npy, y.npy) given as a tuple.

    `encoder` (a training file's) makes a table encode its features the same way; `image`
    (data.image, or the training folder's resolved size and mode) how a folder's images are read.
    """
    if isinstance(source, tuple):
        return read_array_files(*(resolve_path(p, base, (".npy",)) for p in source))
    if encoder is not None and is_table_file(source) and (text is None or text.column is None):
        return _table_data(read_table(resolve_path(source, base), encoder=encoder, options=table))
    return read_raw(source, options, table, rng, base, image, text)


def _table_data(table) -> RawData:
    return RawData(table.X, table.y, table.encoder, dropped=table.dropped, plans=table.plans, notes=table.notes)


def read_array_files(x_path: Path, y_path: Path, lengths_path: Path | None = None) -> RawData:
    """X from an .npy file left on disk (read batch by batch), y from an .npy file read into memory.

    y: 1-D or 2-D, numbers (finite) or text, one row per row of X. `lengths_path`: an .npy of
    each sequence's real length (rows,), 1 .. X.shape[1] (steps on axis 1).
    """
    X = DiskRows(x_path)
    if not len(X):
        raise NntrainError(f"{x_path} has no rows; X has shape {X.shape}")
    y = load_npy(y_path)
    spec = {"y": Member("biufU", [("rows",), ("rows", None)], values="finite")}
    check_members(y_path, {"y": y}, spec, sizes={"rows": (len(X), f"'{x_path}'")})
    if y.dtype.kind == "b" or (y.dtype.kind == "u" and (not y.size or int(y.max()) < 2**63)):
        y = y.astype(np.int64)  # integers stay integers: no float copy (and uint64 beyond int64 stays uint64)
    lengths = None
    if lengths_path is not None:
        lengths = load_npy(lengths_path)
        check_members(lengths_path, {"lengths": lengths}, {"lengths": NPZ_MEMBERS["lengths"]}, sizes={"rows": (len(X), f"'{x_path}'")})
        shape = X.sample_shape  # (steps,), or (1, steps, features) of a 3-D X
        if len(shape) == 3 and shape[0] != 1 or len(shape) > 3:
            raise NntrainError(f"{lengths_path}: lengths are for sequences, an X of (rows, steps) or (rows, steps, features)")
        steps = shape[1] if len(shape) == 3 else shape[0]
        if int(lengths.max()) > steps:
            raise NntrainError(f"{lengths_path}: lengths must be 1 .. the {steps} steps of {x_path}'s sequences")
        lengths = lengths.astype(np.int64)
    return RawData(X, y, sample_shape=X.sample_shape, lengths=lengths)


def read_raw(dataset: str, options: dict, table: TableOptions, rng, base: Path | None = None, image=None, text=None) -> RawData:
    """Read a built-in dataset, a data file (table, NPZ, text) or an image folder (read with `image`, an ImageOptions).

    A .txt file is a language model's data, cut as `text` (a TextSource) says: token-id windows
    X (rows, steps), the next ids y (rows, steps), its own train / val / test parts.
    """
    if dataset in GENERATORS:
        gen = GENERATORS[dataset]
        X, y = gen(rng, **options)
        # Sequences (samples, T, D) become rows of T * D values in C order, as images do.
        shape = X.shape[1:] if X.ndim > 2 else None
        return RawData(X.reshape(len(X), -1), y, task=gen.task, sample_shape=shape)
    if dataset in BUNDLED:
        X, y, names = read_bundled(dataset)
        info = BUNDLED[dataset]
        return RawData(X, y, FeatureEncoder(names), info.task, sample_shape=info.sample_shape)
    if dataset in DOWNLOADABLE:
        return read_downloaded(dataset)
    path = resolve_path(dataset, base)
    if path.is_dir():
        folder = read_folder(path, image or ImageOptions())
        return RawData(
            folder.X, folder.labels, task="classification", classes=folder.classes,
            sample_shape=folder.sample_shape, image=folder.options,
        )
    if is_table_file(path) and text is not None and text.column is not None:
        texts, y = read_text_column(path, text.column, table.target, table.delimiter, missing=table.missing)
        tokens = text.tokenizer.split_many(texts.tolist())
        return RawData(np.zeros((len(tokens), text.steps)), y, sample_shape=(text.steps,), texts=tokens)
    if is_table_file(path):
        return _table_data(read_table(path, options=table))
    if str(path).lower().endswith(TEXT_SUFFIXES):
        if text is None:
            raise NntrainError(f"'{dataset}' is a text file: a language model's data is data.dataset, with data.text")
        X, y, parts, vocabulary = read_text_file(path, text)
        return RawData(
            X, y, task="classification", classes=vocabulary.tokens, parts=parts, sample_shape=(text.steps,),
            vocabulary=vocabulary,
        )
    data = read_arrays(path)
    return RawData(data.X, data.y, sample_shape=data.sample_shape, lengths=data.lengths)


def resolve_path(dataset: str, base: Path | None, suffixes=FILE_SUFFIXES) -> Path:
    """A data file's path, or an image folder's: as given, or relative to `base` (the config's folder).

    Folders are data sources only where any data source may be given (`suffixes` FILE_SUFFIXES).
    """
    path = Path(dataset).expanduser()
    file = str(path).lower().endswith(suffixes)
    if not file and (suffixes != FILE_SUFFIXES or not looks_like_folder(dataset)):
        raise NntrainError(unknown_dataset(dataset) if suffixes == FILE_SUFFIXES else f"'{dataset}' is not a {suffixes} file")
    try:
        if not path.is_absolute() and base is not None and not path.exists() and (base / path).exists():
            path = base / path
        if file and not path.is_file():
            raise NntrainError(f"data file '{dataset}' does not exist")
        if not file and not path.is_dir():
            if path.exists():
                raise NntrainError(f"'{dataset}' is a file, but neither a data file ({' / '.join(FILE_SUFFIXES)}) nor an image folder")
            raise NntrainError(f"image folder '{dataset}' does not exist")
    except OSError as e:  # stat refuses the path itself: a name too long, a loop of links
        raise NntrainError(f"data file '{dataset}': {e.strerror or e}") from None
    return path


def infer_task(declared: str | None, source_task: str | None, y: np.ndarray, loss_tasks: tuple[str, ...]) -> str:
    """The declared task, else the generator's, else what the loss and the labels allow."""
    if declared:
        return declared
    if source_task:
        return source_task
    if len(loss_tasks) == 1:
        return loss_tasks[0]
    return "classification" if y.dtype.kind == "U" else "regression"


def encode_labels(y: np.ndarray, task: str, classes: list[str] | None = None):
    """Labels -> (y, class names). Classification: int64 indices into the sorted distinct labels."""
    if task == "regression":
        if y.dtype.kind == "U":
            raise NntrainError("the target has non-numeric values, but the task is regression", "data.task")
        y = y.astype(np.float64)
        if not np.isfinite(y).all():
            row = int(np.argwhere(~np.isfinite(y))[0][0])
            raise NntrainError(f"the target of data row {row + 1} is not a finite number", "data.target")
        return y, None
    if y.ndim == 2 and y.dtype.kind != "U" and np.isin(y, (0, 1)).all() and (y.sum(axis=1) == 1).all():
        # One-hot rows: column j is class j, whether or not every class occurs.
        classes = classes or [str(j) for j in range(y.shape[1])]
        y = y.argmax(axis=1)
    if y.ndim != 1:
        raise NntrainError(
            f"a classification target must be one column of labels, or one-hot rows; got shape {y.shape}", "data.task"
        )
    if (y.dtype.kind == "f" and not np.all(np.mod(y, 1) == 0)) or (
        y.dtype.kind == "O" and not all(isinstance(v, int) for v in y.tolist())
    ):
        raise NntrainError(
            "the target has fractional values, which cannot be class labels; set data.task: regression", "data.task"
        )
    if y.dtype.kind != "U":
        y = _whole_numbers(y)  # numeric labels sort as numbers: 2 before 10
    # One pass over the distinct labels, not over the rows: datasets can have millions of rows.
    if y.dtype.kind == "i" and len(y) and 0 <= y.min() and y.max() < 2**20:
        # Small non-negative integers (the usual class labels): counted, not sorted, so that no
        # row-sized temporaries beyond the result are made.
        values, inverse = _present(y), None
    else:
        values, inverse = np.unique(y, return_inverse=True)
    names = [str(v) for v in values.tolist()]
    if classes is None:
        classes = names
    index = {c: i for i, c in enumerate(classes)}
    unknown = [n for n in names if n not in index]
    if unknown:
        raise NntrainError(f"labels {unknown[:5]} are not among the run's classes {classes}")
    mapping = np.array([index[n] for n in names], dtype=np.int64)
    if inverse is not None:
        return mapping[inverse.reshape(-1)], classes
    lookup = np.zeros(int(values[-1]) + 1, dtype=np.int64)
    lookup[values] = mapping
    return lookup[y], classes


def _whole_numbers(y: np.ndarray) -> np.ndarray:
    """Whole-number labels as int64, or, where int64 cannot hold them all, as exact Python ints (object array).

    A label is never changed: 1e30 and 1e30 + 2**80 stay two classes (an int64 cast would
    make both -2**63), and a class is named by its exact value.
    """
    if y.dtype.kind == "O":  # exact numbers from a CSV (files._target): whole numbers checked by the caller
        return y
    if y.dtype.kind in "uf" and len(y) and (float(y.max()) >= 2**63 or float(y.min()) < -(2**63)):
        return np.array([int(v) for v in y.tolist()], dtype=object)
    return y.astype(np.int64, copy=False)


def _present(y: np.ndarray) -> np.ndarray:
    """The values that occur in y (non-negative integers), ascending: np.unique(y) by counting.

    No sort of the rows, and no import of numpy.ma, which np.unique costs `nntrain validate` (~9 ms).
    """
    return np.flatnonzero(np.bincount(y)) if len(y) else np.empty(0, dtype=np.int64)


def split_indices(y: np.ndarray, task: str, val: float, test: float, rng: np.random.Generator) -> dict:
    """Row indices of each split, sorted; stratified by class for classification."""
    groups = [np.flatnonzero(y == c) for c in _present(y)] if task == "classification" else [np.arange(len(y))]
    parts = {name: [] for name in SPLITS}
    for i in range(len(groups)):
        rows = rng.permutation(groups[i])
        groups[i] = None  # each group's indices go once shuffled: millions of rows need not be held twice
        n_test, n_val = round(test * len(rows)), round(val * len(rows))
        parts["test"].append(rows[:n_test])
        parts["val"].append(rows[n_test : n_test + n_val])
        parts["train"].append(rows[n_test + n_val :])
    splits = {}
    for name in SPLITS:
        splits[name] = np.sort(np.concatenate(parts.pop(name))).astype(np.int64, copy=False)
    return splits


def fold_indices(y: np.ndarray, task: str, rows: np.ndarray, folds: int, fold: int, rng) -> tuple:
    """(train, val) of `rows` for cross-validation: fold `fold` of `folds` is val; stratified by class."""
    fold_of = np.empty(len(y), dtype=np.int64)
    groups = [rows[y[rows] == c] for c in _present(y[rows])] if task == "classification" else [rows]
    for members in groups:  # deal each class's shuffled rows round-robin, so every fold gets its share
        fold_of[rng.permutation(members)] = np.arange(len(members)) % folds
    return np.sort(rows[fold_of[rows] != fold]), np.sort(rows[fold_of[rows] == fold])


SCALE_METHODS = ("none", "standardize", "minmax", "divide")


@dataclass
class Scaler:
    """x' = (x - offset) / factor per column, fitted on the training split.

    standardize: offset = mean, factor = std. minmax to [lo, hi]: x' = lo + (x - min) / (max - min) * (hi - lo),
    i.e. offset = min - lo * (max - min) / (hi - lo), factor = (max - min) / (hi - lo). divide:
    offset 0, factor `by` (fixed: 255 takes 8-bit pixels to [0, 1]), nothing is fitted.
    With `channels` (samples (C, H, W) as rows), the statistics are those of each channel, over
    all its pixels in the training rows; with `channels_last` too (sequences (T, C)), those of
    each feature over all steps. Every column of a channel gets that channel's:
    offset and factor always have one entry per column, so applying them needs nothing else.
    `key` names the arrays in a checkpoint (data.scale for features, data.target_scale for targets).
    """

    method: str
    range: tuple[float, float] = (0.0, 1.0)
    key: str = "data.scale"
    offset: np.ndarray | None = None
    factor: np.ndarray | None = None
    channels: int | None = None  # per channel: how many (axis 0 of a sample); None: per column
    channels_last: bool = False  # the channels are a sample's last axis (sequences), not its first
    step_size: int | None = None  # sequences: the columns of one step (features per step)
    by: float = 255.0  # divide: the factor

    @classmethod
    def of(cls, scale, sample_shape: tuple[int, ...]) -> "Scaler":
        """The (unfitted) feature scaler of data.scale (a config.ScaleConfig) for samples of `sample_shape`.

        per auto: per channel for images (C, H, W) and per feature over all steps for sequences
        (T, features), whose steps are alike; per column for flat rows.
        """
        per = scale.per
        if per == "auto":
            per = "channel" if len(sample_shape) in (2, 3) else "feature"
        if per == "channel" and len(sample_shape) < 2:
            raise NntrainError(
                f"per: channel needs samples with channels, (channels, height, width) or (steps, features); these"
                f" have shape {shape_text(sample_shape)}; use per: feature or auto",
                "data.scale.per",
            )
        sequence = len(sample_shape) == 2
        channels = None
        if per == "channel" and scale.name in ("standardize", "minmax"):
            channels = int(sample_shape[-1] if sequence else sample_shape[0])
        return cls(
            scale.name, tuple(scale.range or (0.0, 1.0)), channels=channels, channels_last=sequence,
            step_size=int(sample_shape[-1]) if sequence else None, by=float(scale.by or 255.0),
        )

    def _groups(self, X: np.ndarray):
        """(X viewed so that each statistic is one entry, the axes reduced): per column, or (rows, channel, pixel) per channel."""
        if self.channels is None or X.ndim == 1:
            return X, 0
        if self.channels_last:
            return X.reshape(len(X), -1, self.channels), (0, 1)
        return X.reshape(len(X), self.channels, -1), (0, 2)

    def fit(self, X: np.ndarray) -> "Scaler":
        if self.method == "divide":
            return self._fixed(X)
        if self.method not in ("standardize", "minmax"):
            return self
        groups, axes = self._groups(X)
        with np.errstate(all="ignore"):  # an overflow is reported by _check_fitted, not as a numpy warning
            low = groups.min(axis=axes)
            spread = groups.max(axis=axes) - low
            if self.method == "standardize":
                self.offset, self.factor = groups.mean(axis=axes), groups.std(axis=axes)
            else:
                lo, hi = self.range
                self.factor = spread / (hi - lo)
                self.offset = low - lo * self.factor
            return self._finish(spread, X)

    def fit_rows(self, X, rows: np.ndarray, chunk_bytes: int = 2 * 2**20, lengths: np.ndarray | None = None) -> "Scaler":
        """Fit on X[rows] without holding them in memory at once (X on disk); checks every value is finite.

        Two passes over the rows (mean, then squared deviations) keep the variance accurate.
        `lengths` (one per row of X): sequences padded after their real steps, whose padding
        must not count; the statistics are then those of the real steps alone.
        """
        if lengths is not None and self.step_size and self.method in ("standardize", "minmax"):
            return self._fit_real_steps(np.asarray(X[rows], dtype=np.float64), lengths[rows])
        chunk = max(1, chunk_bytes // (8 * X.shape[1]))
        if in_memory(X) and len(rows) <= chunk:  # small enough to fit at once (values were checked when read)
            return self.fit(np.asarray(X[rows], dtype=np.float64))
        chunks = lambda: (np.asarray(X[rows[i : i + chunk]], dtype=np.float64) for i in range(0, len(rows), chunk))
        total, low, high = 0.0, np.inf, -np.inf
        with np.errstate(all="ignore"):  # an overflow is reported by _check_fitted, not as a numpy warning
            for start, part in zip(range(0, len(rows), chunk), chunks()):
                if not np.isfinite(part).all():
                    bad = start + int(np.argmin(np.isfinite(part).all(axis=1)))
                    raise NntrainError(f"the features of data row {int(rows[bad])} are not all finite numbers")
                groups, axes = self._groups(part)
                total = total + groups.sum(axis=axes)
                low, high = np.minimum(low, groups.min(axis=axes)), np.maximum(high, groups.max(axis=axes))
            if self.method == "divide":
                return self._fixed(X)
            if self.method not in ("standardize", "minmax"):
                return self
            spread = high - low
            if self.method == "standardize":
                count = len(rows) * (X.shape[1] // self.channels if self.channels else 1)  # values per statistic
                mean = total / count
                centre = mean if not self.channels else mean[None, None, :] if self.channels_last else mean[None, :, None]
                squares = sum(((groups - centre) ** 2).sum(axis=axes) for groups, axes in map(self._groups, chunks()))
                self.offset, self.factor = mean, np.sqrt(squares / count)
            else:
                lo, hi = self.range
                self.factor = spread / (hi - lo)
                self.offset = low - lo * self.factor
            return self._finish(spread, X)

    def _fit_real_steps(self, X: np.ndarray, lengths: np.ndarray) -> "Scaler":
        """Statistics of the real steps of sequences, rows of T steps of `step_size` columns with their lengths:
        per channel over all real steps, or per column over the rows where that column's step is real (a
        column that is real in no row is left as it is, as a constant one)."""
        rows, width = len(X), self.step_size
        steps = X.reshape(rows, -1, width)
        real = np.arange(steps.shape[1])[None, :] < lengths[:, None]  # (rows, T)
        if self.channels:
            values = steps[real]  # (real steps, C)
        else:
            values = np.where(real[:, :, None], steps, np.nan).reshape(rows, -1)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: set below
            low, high = np.nanmin(values, axis=0), np.nanmax(values, axis=0)
            if self.method == "standardize":
                self.offset, self.factor = np.nanmean(values, axis=0), np.nanstd(values, axis=0)
            else:
                lo, hi = self.range
                self.factor = (high - low) / (hi - lo)
                self.offset = low - lo * self.factor
        never = np.isnan(low)
        self.offset, self.factor = np.where(never, 0.0, self.offset), np.where(never, 1.0, self.factor)
        return self._finish(np.where(never, 0.0, high - low), X)

    def _fixed(self, X) -> "Scaler":
        """divide: the same offset (0) and factor (`by`) for every column."""
        self.offset, self.factor = np.zeros(X.shape[1:]), np.full(X.shape[1:], self.by)
        return self

    def _finish(self, spread: np.ndarray, X) -> "Scaler":
        """Checked statistics, spread to one entry per column of X (per channel: each channel's over its columns)."""
        self._keep_constant_columns(spread)._check_fitted(spread)
        if self.channels is not None and len(X.shape) > 1:  # X may be rows on disk, which have a shape but no ndim
            per_channel = X.shape[1] // self.channels
            spread_out = np.tile if self.channels_last else np.repeat  # (T, C) rows: the C values again each step
            self.offset, self.factor = spread_out(self.offset, per_channel), spread_out(self.factor, per_channel)
        return self

    def _keep_constant_columns(self, spread: np.ndarray) -> "Scaler":
        # A constant column (its std may round to 1e-16, not 0) is only shifted, never blown up:
        # to 0 when standardizing, to the range's low end for minmax.
        constant = spread <= 0
        if self.method == "minmax":
            self.offset = np.where(constant, self.offset + self.range[0] * self.factor - self.range[0], self.offset)
        self.factor = np.where(constant, 1.0, self.factor)
        return self

    @property
    def _config_key(self) -> str:
        return "data.scale_target" if self.key == "data.target_scale" else self.key

    def _refuse(self, why: str):
        """An error for statistics or scaled values that are not finite: the range's fault when one was chosen."""
        if self.method == "minmax" and tuple(self.range) != (0.0, 1.0):
            lo, hi = self.range
            raise NntrainError(f"[{lo!r}, {hi!r}] gives non-finite scaled values; {why}", f"{self._config_key}.range")
        raise NntrainError(f"{self.method} scaling gives non-finite values; {why}", self._config_key)

    def _check_fitted(self, spread: np.ndarray) -> "Scaler":
        """Finite offsets and positive finite factors, or an error that says which input (or channel) and why."""
        offset, factor, spread = (np.atleast_1d(a) for a in (self.offset, self.factor, spread))
        ok = np.isfinite(offset) & np.isfinite(factor) & (factor > 0)
        if ok.all():
            return self
        j = int(np.argmin(ok))
        what = "target" if self.key == "data.target_scale" else "channel" if self.channels is not None else "input"
        if not np.isfinite(spread[j]) or (self.method == "standardize" and not np.isfinite(factor[j])):
            self._refuse(f"the values of {what} {j} are too far apart for float64 (max − min overflows)")
        if self.method == "minmax":
            lo, hi = self.range
            width = hi - lo
            if not np.isfinite(width):
                self._refuse(f"HIGH − LOW overflows float64; keep both ends within ±{np.finfo(np.float64).max / 2:.3g}")
            if not np.isfinite(factor[j]):
                self._refuse(f"HIGH − LOW ({width!r}) is too small for the spread of {what} {j} ({spread[j]:.6g})")
            if factor[j] <= 0:
                self._refuse(f"HIGH − LOW ({width!r}) is too large for the spread of {what} {j} ({spread[j]:.6g})")
        self._refuse(f"the values of {what} {j} are too large to scale in float64")

    def transform(self, X: np.ndarray, dtype, in_place: bool = False, refuse: bool = True) -> np.ndarray:
        """X scaled, as `dtype`. With `in_place`, X itself is overwritten when it already has that dtype.

        Computed in float64 a few MiB of rows at a time, so a large X needs no float64 copy, and
        the values do not depend on whether it is done in place or in chunks. A scaled value that
        is not finite in `dtype` (a range too wide for float32, data far outside the training
        range, a damaged saved scaling) is an error, not a numpy warning; without `refuse` it is
        left as it is (predict names those rows one by one).
        """
        if self.offset is None:
            return X.astype(dtype, copy=not in_place)
        out = X if in_place and X.dtype == dtype else np.empty(X.shape, dtype=dtype)
        chunk = max(1, 2**18 // max(1, math.prod(X.shape[1:])))  # temporaries of 2 MiB (float64)
        with np.errstate(all="ignore"):
            for start in range(0, len(X), chunk):
                scaled = (X[start : start + chunk] - self.offset) / self.factor
                done = out[start : start + chunk]
                done[...] = scaled
                if refuse and not np.isfinite(done).all():
                    self._refuse(self._describe(scaled, done, dtype))
        return out

    def _describe(self, scaled: np.ndarray, done: np.ndarray, dtype) -> str:
        """Which value of a chunk did not scale to a finite number in `dtype`, and how far off it is."""
        r, *j = (int(i) for i in np.argwhere(~np.isfinite(done))[0])
        where = (f"target {j[0]}" if self.key == "data.target_scale" else f"input {j[0]}") if j else "the target"
        value = float(scaled[(r, *j)])
        if not np.isfinite(value):
            return f"a value of {where} scales to {value}"
        return f"a value of {where} scales to {value:.3g}, beyond {np.dtype(dtype).name} (largest {float(np.finfo(dtype).max):.3g})"

    def inverse(self, X: np.ndarray) -> np.ndarray:
        """Back to original units (float64)."""
        if self.offset is None:
            return X.astype(np.float64)
        with np.errstate(all="ignore"):  # outputs of a diverged model may overflow: they stay inf, without a warning
            return X * self.factor + self.offset

    def state_dict(self) -> dict[str, np.ndarray]:
        if self.offset is None:
            return {}
        return {f"{self.key}.offset": self.offset, f"{self.key}.factor": self.factor}

    @classmethod
    def from_state(cls, method: str, state: dict, key: str = "data.scale") -> "Scaler":
        return cls(method, key=key, offset=state.get(f"{key}.offset"), factor=state.get(f"{key}.factor"))
