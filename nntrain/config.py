"""The config schema (pydantic models), shorthand expansion, --set overrides and readable errors.

Component options (layers, losses, optimizers, dataset generators) are not repeated here:
their models are generated from the keyword-only constructor parameters of the registered
classes, so the schema always says exactly what the engine accepts.
"""

from __future__ import annotations

import inspect
import json
import math
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PlainValidator,
    TypeAdapter,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)
from pydantic import Tag

from .data.dataset import builtin_names, looks_like_folder, unknown_dataset
from .data.files import is_data_file
from .data.table import is_table_file
from .data.download import DOWNLOADABLE
from .data.generators import GENERATORS
from .engine.init import INITIALIZERS
from .engine.layers import LAYERS
from .engine.losses import LOSSES
from .engine.optim import OPTIMIZERS
from .engine.registry import Range, did_you_mean
from .engine.schedules import SCHEDULES
from . import safe_yaml
from .errors import NntrainError, short_repr, shorten

CLASSIFICATION_METRICS = (
    "accuracy", "balanced_accuracy", "f1", "roc_auc", "average_precision", "log_loss", "precision", "recall"
)
REGRESSION_METRICS = ("mse", "mae", "r2")
LOWER_IS_BETTER = ("loss", "mse", "mae", "log_loss")
PROBABILITY_METRICS = ("log_loss",)  # metrics of class probabilities: not for losses that give raw scores


class Strict(BaseModel):
    """Unknown keys are errors (with a did-you-mean), and values are not coerced ('3' is not 3)."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data):
        if isinstance(data, dict):
            for key in data:
                if key not in cls.model_fields:
                    allowed = ", ".join(cls.model_fields)
                    raise ValueError(f"unknown key '{key}'{did_you_mean(key, cls.model_fields)}; allowed keys: {allowed}")
        return data


# --- models generated from the engine's constructors -------------------------------------


def _pydantic_type(tp):
    """Replace the engine's `Range` markers with pydantic `Field` constraints, recursively."""
    origin = typing.get_origin(tp)
    if origin is Annotated:
        base, *meta = typing.get_args(tp)
        meta = [Field(**{k: v for k, v in vars(m).items() if v is not None}) if isinstance(m, Range) else m for m in meta]
        return Annotated[(_pydantic_type(base), *meta)]
    if origin in (Union, types.UnionType):
        return Union[tuple(_pydantic_type(a) for a in typing.get_args(tp))]
    if origin is list:  # e.g. a kernel size [height, width] of integers in a range
        return list[_pydantic_type(typing.get_args(tp)[0])]
    return tp


def options_of(fn) -> dict[str, tuple]:
    """Keyword-only parameters of `fn` as pydantic field definitions {name: (type, default)}."""
    hints = typing.get_type_hints(fn, include_extras=True)
    fields = {}
    for p in inspect.signature(fn).parameters.values():
        if p.kind is p.KEYWORD_ONLY:
            default = ... if p.default is p.empty else p.default
            fields[p.name] = (_pydantic_type(hints[p.name]), default)
    return fields


class OptionModels(Mapping):
    """Name -> options model of each class in `registry`, each model built on first use.

    Building all ~30 models up front was most of the time `nntrain validate` took to start,
    and a config uses a handful; `nntrain schema` builds them all.
    """

    def __init__(self, registry, build):
        self.registry, self.build = registry, build
        self.built: dict[str, type[BaseModel]] = {}  # the models built so far

    def __getitem__(self, name: str) -> type[BaseModel]:
        if name not in self.built:
            self.built[name] = self.build(name, self.registry[name])
        return self.built[name]

    def __iter__(self):
        return iter(self.registry)

    def __len__(self):
        return len(self.registry)


def _tagged_models(registry, tag: str, **extra) -> OptionModels:
    """One model per registered class: its tag, its constructor options, and `extra` fields (not passed to it)."""

    def build(name, cls):
        return create_model(
            f"{cls.__name__}Options",
            __base__=Strict,
            __doc__=(cls.__doc__ or "").strip().splitlines()[0],
            **{tag: (Literal[name], ...)},
            **options_of(cls.__init__),
            **extra,
        )

    return OptionModels(registry, build)


LAYER_MODELS = _tagged_models(LAYERS, "type")
LOSS_MODELS = _tagged_models(LOSSES, "name")
SCHEDULE_MODELS = _tagged_models(SCHEDULES, "name")
GENERATOR_MODELS = OptionModels(
    GENERATORS, lambda name, fn: create_model(f"{name}Options", __base__=Strict, **options_of(fn))
)


class _ShorthandSchema:
    """JSON Schema of a component: any of its models (chosen by the tag) or a shorthand form, so editors accept both."""

    def __init__(self, models: OptionModels, tag: str):
        self.models, self.tag = models, tag

    def __get_pydantic_json_schema__(self, core_schema, handler):
        # The validator has no schema to show; the discriminated union of every model says what it accepts.
        union = Annotated[Union[tuple(self.models.values())], Field(discriminator=self.tag)]
        names = list(self.models)
        one_key = {"type": "object", "minProperties": 1, "maxProperties": 1, "propertyNames": {"enum": names}}
        return {"anyOf": [handler(TypeAdapter(union).core_schema), {"enum": names}, one_key]}


def _union(models: OptionModels, tag: str, what: str):
    """One of `models`, chosen by `tag`, accepting the shorthand forms `_expand` describes.

    Not a pydantic discriminated union, which would build every model when the config's class
    is defined: only the model named is built. Its errors keep their key paths (pydantic nests
    a ValidationError raised here under the field's path).
    """

    def validate(value):
        value = _expand(value, models.registry, tag, what)
        return models[value[tag]].model_validate(value)

    return Annotated[Any, PlainValidator(validate), _ShorthandSchema(models, tag)]


OPTIMIZER_MODELS = _tagged_models(
    OPTIMIZERS,
    "name",
    schedule=(_union(SCHEDULE_MODELS, "name", "schedule") | None, Field(None, description="learning-rate schedule")),
)


def options(spec: BaseModel, tag: str = "name") -> dict:
    """A component's constructor arguments: everything in its config but its name (and an optimizer's schedule)."""
    return spec.model_dump(exclude={tag, "schedule"})


def _at(key: str, message: str) -> str:
    """A message about sub-key `key` of the value being validated; `_format_error` joins the paths."""
    return f"@{key}: {message}"


def _expand(value, registry, tag: str, what: str):
    """Shorthand -> full form: `tanh` -> {type: tanh}; `linear: 3` -> {type: linear, units: 3}."""
    if isinstance(value, str):
        value = {tag: value}
    elif isinstance(value, dict) and tag not in value and len(value) == 1:
        (name, arg), = value.items()
        if name in registry:
            if isinstance(arg, dict):
                value = {tag: name, **arg}
            elif arg is None:
                value = {tag: name}
            else:  # the first option is the one a bare value sets (units for linear)
                first = next(iter(options_of(registry[name].__init__)), None)
                if first is None:
                    raise ValueError(f"'{name}' takes no options, so '{name}: {arg}' means nothing")
                value = {tag: name, first: arg}
    if not isinstance(value, dict):
        raise ValueError(f"expected a {what} name or mapping, got {short_repr(value)}")
    # Mapping-valued options are keyed by class names, which YAML may read as numbers (0: 2.0).
    value = {k: ({str(a): b for a, b in v.items()} if isinstance(v, dict) else v) for k, v in value.items()}
    if tag not in value:
        raise ValueError(f"a {what} needs '{tag}' (one of: {', '.join(registry)})")
    name = value[tag]
    if not isinstance(name, str):
        raise ValueError(_at(tag, f"got {short_repr(name)}, which is not a name; allowed: {', '.join(registry)}"))
    if name not in registry:
        raise ValueError(f"unknown {what} '{shorten(name)}'{did_you_mean(name, registry)}; allowed: {', '.join(registry)}")
    return value


# --- the config -------------------------------------------------------------------------


class SplitConfig(Strict):
    """Fractions of the rows held out for validation and test (0 allowed)."""

    val: Annotated[float, Field(ge=0, lt=1)] = 0.15
    test: Annotated[float, Field(ge=0, lt=1)] = 0.15
    folds: Annotated[int, Field(ge=2)] | None = Field(
        None, description="cross-validation: the rows left after the test split form this many folds"
    )
    fold: Annotated[int, Field(ge=0)] = Field(0, description="with folds: which fold (0-based) is the validation split")

    def settle(self, key: str, value: float, why: str) -> None:
        """A fraction that another setting decides: refused if the user set it otherwise, else recorded as `value`.

        Recording it keeps the resolved config honest, and lets it validate again when a run is reloaded.
        """
        if key in self.model_fields_set and getattr(self, key) != value:
            raise ValueError(_at(key, f"does not apply {why}"))
        setattr(self, key, value)

    @model_validator(mode="after")
    def _leaves_training_rows(self):
        if self.folds is not None:
            if self.fold >= self.folds:
                raise ValueError(_at("fold", f"{self.fold} is not a fold of {self.folds} (0 to {self.folds - 1})"))
            # What one fold amounts to, for the record.
            self.settle("val", round((1 - self.test) / self.folds, 6), "with folds: the validation split is one fold")
        if self.val + self.test >= 1:
            raise ValueError(f"val + test = {self.val + self.test:g} leaves no training rows; the sum must be < 1")
        return self


class ScaleConfig(Strict):
    """Feature scaling: `standardize` (mean 0, std 1) and `minmax` (to `range`) fitted on the training split, `divide` fixed."""

    name: Literal["none", "standardize", "minmax", "divide"] = "standardize"
    range: Annotated[list[float], Field(min_length=2, max_length=2)] | None = Field(
        None, description="minmax only: [low, high], default [0, 1]"
    )
    by: Annotated[float, Field(gt=0)] | None = Field(None, description="divide only: x / by, default 255 (8-bit pixels to [0, 1])")
    per: Literal["auto", "feature", "channel"] = Field(
        "auto", description="standardize / minmax: statistics per feature column or per channel; auto: per channel for images, per feature over all steps for sequences"
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value):
        return {"name": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _range_fits(self):
        if self.range is not None and self.name != "minmax":
            raise ValueError(_at("range", f"applies only to minmax scaling, not to {self.name}"))
        if self.by is not None and self.name != "divide":
            raise ValueError(_at("by", f"applies only to divide scaling, not to {self.name}"))
        if self.per != "auto" and self.name not in ("standardize", "minmax"):
            raise ValueError(_at("per", f"applies only to standardize and minmax scaling, not to {self.name}"))
        if self.name == "divide":
            self.by = self.by if self.by is not None else 255.0
        if self.name == "minmax":
            self.range = self.range or [0.0, 1.0]
            if not self.range[0] < self.range[1]:
                raise ValueError(_at("range", f"low must be below high, got {self.range}"))
        return self


class ImageConfig(Strict):
    """Image folders: the size every image is resized to, and its colours (channels)."""

    size: Annotated[list[Annotated[int, Field(ge=1, le=8192)]], Field(min_length=2, max_length=2)] | None = Field(
        None, description="[height, width] in pixels; default: the images' own size, which must be one for all"
    )
    mode: Literal["auto", "grayscale", "rgb"] = Field(
        "auto", description="grayscale: 1 channel, rgb: 3; auto: grayscale when every training image is"
    )


class TextConfig(Strict):
    """Text as token sequences: a plain text file (.txt) for a language model, which learns the next token
    at every step, or a table's text column for a text classifier (`column`). The vocabulary is built on the
    training data alone and saved with the run."""

    column: str | None = Field(None, description="a table's column of text: the network's input (other feature columns are not read)")

    tokens: Literal["char", "word"] = Field("char", description="char: every character; word: words and punctuation")
    lower: bool = Field(False, description="lower-case the text first")
    length: Annotated[int, Field(ge=1, le=100_000)] = Field(
        100, description="steps per training sequence (a text file); tokens kept of each text (a column: the rest is cut)"
    )
    min_count: Annotated[int, Field(ge=1)] = Field(1, description="tokens seen fewer times in training become <unk>")
    max_vocabulary: Annotated[int, Field(ge=3, le=100_000_000)] | None = Field(
        None, description="at most this many tokens, <pad> and <unk> included; the rarest become <unk>"
    )


class ArrayFiles(Strict):
    """Two .npy files: features X (rows, features) or images (rows, [channels,] height, width), read from disk batch by batch, and targets y (rows,); for sequences (rows, steps, features) padded after their end, `lengths` (rows,)."""

    X: str
    y: str
    lengths: str | None = Field(None, description="an .npy of each sequence's real length (rows,), 1 .. steps")


Source = Annotated[
    Union[Annotated[str, Tag("path")], Annotated[ArrayFiles, Tag("files")]],
    Discriminator(lambda v: "files" if isinstance(v, (dict, ArrayFiles)) else "path"),
]
SOURCE_KEYS = ("dataset", "train", "val", "test")


ColumnName = Annotated[str, Field(min_length=1, max_length=1000)]


class ColumnsConfig(Strict):
    """What each column of a table file is for; a column no key names is a feature (if no guard refuses it)."""

    features: list[ColumnName] | None = Field(None, description="only these columns are features (the others are ignored)")
    ignore: list[ColumnName] = Field(default_factory=list, description="columns read but never used")
    id: ColumnName | None = Field(None, description="an ID column: never a feature; predict copies it to its output")
    categorical: list[ColumnName] = Field(default_factory=list, description="columns one-hot encoded even if they hold numbers")
    max_categories: Annotated[int, Field(ge=2, le=100_000)] = Field(
        50, description="a text column with more distinct values is refused unless declared"
    )

    @model_validator(mode="after")
    def _each_once(self):
        for key in ("features", "ignore", "categorical"):
            names = getattr(self, key) or []
            for i, name in enumerate(names):
                if name in names[:i]:
                    raise ValueError(_at(key, f"lists '{name}' more than once"))
        return self


class ImputeRule(Strict):
    """How missing cells of a column are filled, from the training split."""

    strategy: Literal["mean", "median", "most_frequent", "constant"]
    value: float | str | None = Field(None, description="constant: the value (default 0, or 'missing' for categories)")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value):
        return {"strategy": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _value_fits(self):
        if self.value is not None and self.strategy != "constant":
            raise ValueError(_at("value", f"applies only to strategy constant, not to {self.strategy}"))
        if isinstance(self.value, float) and not math.isfinite(self.value):
            raise ValueError(_at("value", f"must be a finite number, got {self.value}"))
        return self


class ImputeConfig(Strict):
    """data.missing: impute: how missing feature cells are filled (statistics of the training split)."""

    numeric: ImputeRule = Field(default_factory=lambda: ImputeRule(strategy="mean"), description="mean | median | most_frequent | constant")
    categorical: ImputeRule = Field(default_factory=lambda: ImputeRule(strategy="most_frequent"), description="most_frequent | constant")
    indicators: bool = Field(False, description="add an input col:missing (1 where the cell was missing) per column with gaps")
    columns: dict[ColumnName, ImputeRule] = Field(default_factory=dict, description="per-column rules")

    @model_validator(mode="after")
    def _categorical_fits(self):
        if self.categorical.strategy in ("mean", "median"):
            raise ValueError(_at("categorical", f"{self.categorical.strategy} has no meaning for categories; use most_frequent or constant"))
        if self.numeric.strategy == "constant" and isinstance(self.numeric.value, str):
            raise ValueError(_at("numeric.value", f"must be a number, got {self.numeric.value!r}"))
        return self


class DataConfig(Strict):
    dataset: Source | None = Field(
        None,
        description="a built-in dataset (see `nntrain datasets`), a .csv / .csv.gz / .npz file, an image folder"
        " (one subfolder per class), or {X: .npy, y: .npy}",
    )
    train: Source | None = Field(None, description="instead of dataset: the training file; then val / test files too")
    val: Source | None = Field(None, description="the validation file (with train); default: split.val of train")
    test: Source | None = Field(None, description="the test file (with train); default: no test split")
    options: dict[str, Any] = Field(default_factory=dict, description="parameters of a built-in generator")
    target: str | int | None = Field(None, description="CSV only: target column by name or index (default: last)")
    task: Literal["classification", "regression"] | None = Field(None, description="inferred when omitted")
    split: SplitConfig = Field(default_factory=SplitConfig)
    scale: ScaleConfig = Field(
        default_factory=ScaleConfig, description="none | standardize | minmax | divide, or {name, range, by, per}"
    )
    scale_target: bool = Field(False, description="regression: standardize the targets too (predictions in original units)")
    missing: Literal["error", "drop", "impute"] = Field(
        "error", description="table cells that are empty, NA, NaN, ?: error, drop the row, or impute (data.impute)"
    )
    impute: ImputeConfig | None = Field(None, description="with missing: impute; default: mean / most_frequent")
    columns: ColumnsConfig | None = Field(None, description="table files: feature, id, ignored and categorical columns")
    unknown: Literal["error", "ignore"] = Field(
        "error", description="a category not seen in training: error, or ignore (encoded as all zeros)"
    )
    delimiter: Literal["auto", ",", ";", "\t", "|"] = Field("auto", description="CSV: the field delimiter (auto: detected)")
    flatten: bool = Field(
        False, description="true: image samples reach the network as flat rows of channels * height * width (runs from before sample shapes say true)"
    )
    image: ImageConfig | None = Field(None, description="image folders: {size: [height, width], mode: grayscale | rgb}")
    text: TextConfig | None = Field(None, description="a .txt file: how its text becomes token sequences")

    def sources(self) -> dict[str, str | ArrayFiles]:
        """The data sources given: {dataset: ...} or {train: ..., val: ..., test: ...}."""
        return {k: v for k in SOURCE_KEYS if (v := getattr(self, k)) is not None}

    @model_validator(mode="after")
    def _sources_fit(self):
        if (self.dataset is None) == (self.train is None):
            raise ValueError(_at("dataset", "give either data.dataset, or data.train (with optional data.val, data.test)"))
        if self.dataset is not None and (self.val is not None or self.test is not None):
            raise ValueError(_at("val" if self.val is not None else "test", "needs data.train instead of data.dataset"))
        try:
            if self.train is not None:
                self.split.settle("test", 0.0, "with data.train: the test set is data.test")
            if isinstance(self.dataset, str) and self.dataset in DOWNLOADABLE:
                self.split.settle("test", 0.0, f"to {self.dataset}: its official test set is used")
            if self.val is not None:
                self.split.settle("val", 0.0, "with data.val: the validation set is that file")
        except ValueError as e:
            raise ValueError(str(e).replace("@", "@split.", 1)) from None
        for key, source in self.sources().items():
            if isinstance(source, str) and not is_data_file(source) and not looks_like_folder(source):
                if key != "dataset" and source in builtin_names():
                    raise ValueError(_at(key, f"'{source}' is a built-in dataset: use data.dataset, or give a file here"))
                if key != "dataset" or source not in builtin_names():
                    raise ValueError(_at(key, unknown_dataset(source)))
        tables = any(isinstance(s, str) and is_table_file(s) for s in self.sources().values())
        for key, given in (("target", self.target is not None), ("columns", self.columns is not None),
                           ("unknown", self.unknown != "error"), ("delimiter", self.delimiter != "auto"), ("missing", self.missing == "impute")):
            if given and not tables:
                raise ValueError(_at(key, "applies only to table files (CSV, Parquet, Feather); an .npz names its arrays X and y"))
        folders = any(isinstance(s, str) and looks_like_folder(s) for s in self.sources().values())
        if self.image is not None and not folders:
            raise ValueError(_at("image", "applies only to image folders (a data source that is a folder of class subfolders)"))
        if self.impute is not None and self.missing != "impute":
            raise ValueError(_at("impute", f"applies with data.missing: impute (it is {self.missing})"))
        if self.missing == "impute" and self.impute is None:
            self.impute = ImputeConfig()
        model = GENERATOR_MODELS.get(self.dataset) if isinstance(self.dataset, str) else None
        if model is None:
            if self.options:
                raise ValueError(_at("options", "options apply only to generated datasets (see `nntrain datasets`)"))
            return self
        try:
            self.options = model.model_validate(self.options).model_dump()
        except ValidationError as e:
            where, msg = _describe(e.errors()[0])  # one error at a time: a validator raises once
            raise ValueError(_at("options" + (f".{where}" if where else ""), msg)) from None
        return self


class ModelConfig(Strict):
    init: Literal[tuple(INITIALIZERS)] = Field("he", description="weight initializer for linear and convolution layers (recurrent layers and embeddings draw as torch does unless given their own init)")
    init_scale: Annotated[float, Field(gt=0)] = Field(0.01, description="std (normal) or limit (uniform)")
    layers: Annotated[list[_union(LAYER_MODELS, "type", "layer")], Field(min_length=1)]


class EarlyStoppingConfig(Strict):
    """Stop when the monitored value has not improved by more than min_delta for `patience` epochs."""

    monitor: str | None = Field(None, description="default: train.monitor (they must agree: best.npz follows it)")
    patience: Annotated[int, Field(ge=1)] = 10
    min_delta: Annotated[float, Field(ge=0)] = 0.0
    restore_best: bool = Field(True, description="end with the best epoch's parameters (best.npz)")


class TrainConfig(Strict):
    epochs: Annotated[int, Field(ge=1)] = 20
    batch_size: Annotated[int, Field(ge=1)] | Literal["full"] = Field(32, description="an integer or 'full'")
    shuffle: bool = True
    checkpoint_every: Annotated[int, Field(ge=0)] = Field(10, description="epochs; 0 = only last and best")
    metrics: list[Literal[CLASSIFICATION_METRICS + REGRESSION_METRICS]] | None = Field(
        None, description="default: accuracy for classification, mse for regression"
    )
    monitor: str | None = Field(None, description="default: val_loss, or train_loss without a validation split")
    early_stopping: EarlyStoppingConfig | None = None
    clip_grad_norm: Annotated[float, Field(gt=0)] | None = Field(None, description="largest global L2 norm of the gradients")
    diagnostics: bool = Field(False, description="write diagnostics.csv: per-layer norms, update ratios, dead units")

    @field_validator("metrics")
    @classmethod
    def _each_metric_once(cls, value):
        for i, metric in enumerate(value or []):
            if metric in value[:i]:  # metrics.csv would get two columns of one name
                raise ValueError(f"lists {metric} more than once; give each metric once")
        return value

    @field_validator("batch_size", mode="before")
    @classmethod
    def _int_or_full(cls, value):
        if isinstance(value, bool) or not isinstance(value, (int, str)) or (isinstance(value, str) and value != "full"):
            raise ValueError(f"got {value!r}{did_you_mean(value, ['full'])}; allowed: an integer >= 1 or 'full'")
        return value

    @model_validator(mode="after")
    def _one_monitor(self):
        stopping = self.early_stopping
        if stopping is not None and stopping.monitor is not None:
            if self.monitor is not None and self.monitor != stopping.monitor:
                raise ValueError(
                    _at("early_stopping.monitor", f"'{stopping.monitor}' differs from train.monitor '{self.monitor}';"
                        " best.npz and early stopping follow one value")
                )
            self.monitor = stopping.monitor
        return self


class RegularizationConfig(Strict):
    """Penalties added to the loss, on weight matrices only (not biases or normalization parameters)."""

    l1: Annotated[float, Field(ge=0)] = Field(0.0, description="l1 * sum |W|")
    l2: Annotated[float, Field(ge=0)] = Field(0.0, description="l2 * sum W^2")


class Config(Strict):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=100)] | None = Field(
        None, description="run name (letters, digits, '.', '_', '-'; at most 100); default: the config file's stem"
    )
    seed: Annotated[int, Field(ge=0)] = 0
    dtype: Literal["float32", "float64"] = "float32"
    data: DataConfig
    model: ModelConfig
    loss: _union(LOSS_MODELS, "name", "loss") = Field(
        default_factory=lambda: LOSS_MODELS["cross_entropy"](name="cross_entropy")
    )
    optimizer: _union(OPTIMIZER_MODELS, "name", "optimizer") = Field(
        default_factory=lambda: OPTIMIZER_MODELS["adam"](name="adam")
    )
    regularization: RegularizationConfig = Field(default_factory=RegularizationConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    sweep: dict[str, Any] | None = Field(
        None, description="hyper-parameter search, read by `nntrain sweep` (checked there); `fit` ignores it"
    )

    @model_validator(mode="after")
    def _components_accept_options(self):
        # Constructing a component runs its own checks (e.g. nesterov needs momentum).
        for key, registry, spec, tag in [("loss", LOSSES, self.loss, "name"), ("optimizer", OPTIMIZERS, self.optimizer, "name")]:
            try:
                registry[getattr(spec, tag)](**options(spec, tag))
            except ValueError as e:
                raise ValueError(_at(key, str(e))) from None
        if self.optimizer.schedule is not None:
            try:
                SCHEDULES[self.optimizer.schedule.name](**options(self.optimizer.schedule))
            except ValueError as e:
                raise ValueError(_at("optimizer.schedule", str(e))) from None
        if OPTIMIZERS[self.optimizer.name].needs_closure:
            if self.train.batch_size != "full":
                raise ValueError(_at("train.batch_size", f"{self.optimizer.name} works on the whole training set: use 'full'"))
            if self.train.clip_grad_norm is not None:
                raise ValueError(_at("train.clip_grad_norm", f"does not apply to {self.optimizer.name}, which line-searches its own steps"))
        plateau = getattr(self.optimizer.schedule, "monitor", None)
        if plateau is not None and self.train.monitor is None:  # as early_stopping.monitor does
            self.train.monitor = plateau
        return self


# --- reading, overriding, reporting -------------------------------------------------------


def _format_error(err: dict) -> str:
    where, msg = _describe(err)
    return f"{where}: {msg}" if where else msg


def _describe(err: dict) -> tuple[str, str]:
    """(dotted key path, message) of one pydantic error."""
    loc = []
    parts = list(err["loc"])
    for i, part in enumerate(parts):
        # Unions put the member in the path (data.dataset.files.X): drop it. (Components need no
        # such rule: `_union` validates them outside a union, so their paths hold only keys.)
        previous = parts[i - 1] if i else None
        if isinstance(part, str) and (
            (previous in SOURCE_KEYS and part in ("path", "files"))
            or re.match(r"^(literal\[|dict\[|list\[|constrained-|function-|str$|int$|float$|bool$)", part)
        ):
            continue  # a union member's label, not a key the user wrote
        loc.append(str(part))
    msg = err["msg"].removeprefix("Value error, ")
    if msg.startswith("@"):  # see _at
        sub, _, msg = msg[1:].partition(": ")
        loc.append(sub)
    where = ".".join(loc)
    if err["type"] == "missing":
        msg = "required key is missing"
    elif err["type"] == "literal_error":
        msg = f"got {short_repr(err['input'])}; allowed: {err['ctx']['expected']}"
        if isinstance(err["input"], str):
            allowed = [a.strip(" '") for a in err["ctx"]["expected"].replace(" or ", ", ").split(",")]
            msg = f"got {short_repr(err['input'])}{did_you_mean(err['input'], allowed)}; allowed: {err['ctx']['expected']}"
    elif not err["type"].startswith("value_error") and "input" in err and not isinstance(err["input"], (dict, list)):
        msg = f"{msg} (got {short_repr(err['input'])})"
    return where, msg


def validate_dataset_options(dataset: str, options: dict) -> dict:
    """A built-in dataset's options with defaults filled in, or NntrainError as for data.options."""
    model = GENERATOR_MODELS.get(dataset)
    if model is None:
        if options:
            raise NntrainError(f"'{dataset}' takes no options (only generated datasets do)", "data.options")
        return {}
    try:
        return model.model_validate(options).model_dump()
    except ValidationError as e:
        where, msg = _describe(e.errors()[0])
        raise NntrainError(msg, "data.options" + (f".{where}" if where else "")) from None


def validate(raw: dict) -> Config:
    """A raw mapping -> Config, or NntrainError listing every problem with its key path."""
    if not isinstance(raw, dict):
        raise NntrainError(f"a config must be a mapping of keys to values, got {type(raw).__name__}")
    try:
        return Config.model_validate(raw)
    except ValidationError as e:
        lines = list(dict.fromkeys(_format_error(err) for err in e.errors()))
        raise NntrainError("invalid config:\n  " + "\n  ".join(lines)) from None


def read_yaml(path: Path) -> dict:
    raw = safe_yaml.read(path, "config file")
    return {} if raw is None else raw


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply `KEY=VALUE` overrides (dotted keys, list indices as numbers; VALUE parsed as YAML)."""
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise NntrainError(f"--set '{shorten(item)}' must look like KEY=VALUE, e.g. --set optimizer.lr=0.01")
        if not key.isascii():  # a config's keys are names; argv bytes that are not UTF-8 arrive as surrogates
            try:
                key.encode("utf-8")
            except UnicodeEncodeError:
                raise NntrainError(f"--set {shorten(ascii(key))[1:-1]}: the key is not valid UTF-8 text") from None
        value = safe_yaml.parse_value(text, f"--set {shorten(key)}: the value")
        node = raw
        parts = key.split(".")
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            if isinstance(node, list):
                if not part.lstrip("-").isdigit() or not -len(node) <= int(part) < len(node):
                    raise NntrainError(f"--set {key}: '{part}' is not an index of a list of {len(node)}")
                index = int(part)
                if last:
                    node[index] = value
                else:
                    if isinstance(node[index], (str, dict)) and ".".join(parts[:depth]).endswith("layers"):
                        node[index] = _expand_for_override(node[index])
                    node = node[index]
            elif isinstance(node, dict):
                if last:
                    node[part] = value
                else:
                    if node is raw and part in ("loss", "optimizer"):
                        # --set optimizer.lr=... on a config that names no optimizer changes the default one
                        if part not in node:
                            node[part] = Config.model_fields[part].default_factory().name
                        if isinstance(node[part], str):
                            node[part] = {"name": node[part]}
                    node = node.setdefault(part, {})
            else:
                raise NntrainError(f"--set {key}: '{'.'.join(parts[:depth])}' is a value, not a section")
    return raw


def _expand_for_override(layer):
    try:
        return _expand(layer, LAYERS, "type", "layer")
    except ValueError:
        return layer


def load_config(path: Path | None, overrides: list[str] = (), raw: dict | None = None) -> Config:
    """Read a YAML config (or take `raw`), apply overrides, validate. The name defaults to the file stem."""
    raw = read_yaml(path) if raw is None else raw
    if not isinstance(raw, dict):
        raise NntrainError(f"'{path}' must hold a mapping of keys to values, got {type(raw).__name__}")
    raw = apply_overrides(raw, list(overrides))
    config = validate(raw)
    if config.name is None and path is not None:  # the file's stem, made safe for a directory name
        config.name = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(path).stem)[:100].strip("-.") or "run"
    return config


def resolve(config: Config, task: str) -> Config:
    """Fill the defaults that depend on the data's task; check metrics and monitor against it."""
    allowed = CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS
    if config.train.metrics is None:
        config.train.metrics = [allowed[0]]
    for m in config.train.metrics:
        if m not in allowed:
            raise NntrainError(f"'{m}' is not a {task} metric; allowed: {', '.join(allowed)}", "train.metrics")
    loss_tasks = LOSSES[config.loss.name].tasks
    if not LOSSES[config.loss.name].probabilities:
        wanted = [m for m in PROBABILITY_METRICS if m in config.train.metrics]
        if wanted:
            raise NntrainError(
                f"{wanted[0]} needs class probabilities, which loss '{config.loss.name}' does not give;"
                " use cross_entropy or binary_cross_entropy, or another metric",
                "train.metrics",
            )
    if task not in loss_tasks:
        raise NntrainError(
            f"'{config.loss.name}' is a {loss_tasks[0]} loss but the task is {task}; "
            f"for {task} use one of: {', '.join(n for n, c in LOSSES.items() if task in c.tasks)}",
            "loss",
        )
    has_val = config.data.split.val > 0 or config.data.val is not None
    if config.train.monitor is None:
        config.train.monitor = "val_loss" if has_val else "train_loss"
    if config.train.early_stopping is not None:
        config.train.early_stopping.monitor = config.train.monitor
    schedule = config.optimizer.schedule
    if schedule is not None and getattr(schedule, "monitor", None) not in (None, config.train.monitor):
        raise NntrainError(
            f"'{schedule.monitor}' differs from train.monitor '{config.train.monitor}'; the plateau follows train.monitor",
            "optimizer.schedule.monitor",
        )
    choices = [f"{s}_{m}" for s in (("train", "val") if has_val else ("train",)) for m in ["loss", *config.train.metrics]]
    if config.train.monitor not in choices:
        hint = " (there is no validation split)" if config.train.monitor.startswith("val_") and not has_val else ""
        raise NntrainError(
            f"got '{config.train.monitor}'{hint}{did_you_mean(config.train.monitor, choices)}; allowed: {', '.join(choices)}",
            "train.monitor",
        )
    if config.data.scale_target and task != "regression":
        raise NntrainError(f"scaling targets applies to regression, but the task is {task}", "data.scale_target")
    config.data.task = task
    return config


def higher_is_better(monitor: str) -> bool:
    return not monitor.endswith(LOWER_IS_BETTER)


def to_dict(config: Config) -> dict:
    return config.model_dump(mode="json")


def to_yaml(config: Config) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)


def canonical_json(config: Config) -> str:
    return json.dumps(to_dict(config), sort_keys=True)


def json_schema() -> dict:
    return Config.model_json_schema()
