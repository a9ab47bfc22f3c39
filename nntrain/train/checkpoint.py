"""What a checkpoint holds, and how a training state is saved into and restored from one.

Keys of the .npz:
  layers.<i>.weight, layers.<i>.bias   parameters; <i> = index in model.layers; weight: (in, out)
  layers.<i>.running_mean, .running_var  batch_norm's running statistics (not trained, but saved)
  optim.<key>                          optimizer state (optim.steps, optim.layers.0.weight.exp_avg, ...)
  schedule.<key>                       learning-rate schedule state (epoch, base_lr, lr, plateau counters)
  data.scale.offset, data.scale.factor scaling statistics of the training split (x' = (x - offset) / factor)
  data.classes                         class names (classification), index = label
  data.target_scale.offset, .factor    regression targets' scaling (data.scale_target)
  data.columns, data.categories.<j>    raw feature columns; categories of text column j (one-hot)
  data.indicators                      columns with a missing-value indicator input (data.impute.indicators)
  data.impute.fill                     what fills a missing input (data.missing: impute), one per input
  data.features                        feature names after encoding, in input order
  data.sample_shape                    shape of one sample when it has more than one axis: (channels, height, width)
                                       of images, whose rows hold the pixels in C order
  data.image_shape                     (height, width): read only, from runs before data.sample_shape; means (1, h, w)
  data.text.vocabulary, .tokens, .lower, .max_length   text data: the vocabulary (token of each id) and tokenizer
  data.target_steps                    a class per step of sequences (a language model, sequence labelling): the steps
  loss.weights                         per-class weights of the loss (loss.class_weights), by label
  meta.epoch, meta.best_epoch, meta.best_value, meta.rng (training RNG state, JSON),
  meta.config (the resolved config, JSON), meta.config_sha256, meta.version
Everything is a plain array; nothing needs pickle to load.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import __version__
from .. import config as cfg
from ..data.columns import FeatureEncoder
from ..data.text import members as text_members
from ..engine.losses import LOSSES
from ..errors import NntrainError
from ..fileio import read_text
from ..npzfile import Member, check_members, load_npz
from .experiment import Experiment, output_width
from .rundir import RunDir, read_metrics, save_npz, text_array

COUNT = Member("iu", (), values="count")  # epochs, steps, counters: 0 .. 2**53, far from int64 overflow
TEXT = Member("U", ())
# Weights (in, out), convolution kernels (out, in, kh, kw), biases and norms (n,); the network checks exact shapes.
PARAMETERS = {"layers.*": Member("f", [(None,) * axes for axes in range(1, 5)])}

# Every key family of the README's "Checkpoint keys" table; the first pattern a key matches applies.
# Named sizes must agree: "features" (inputs after encoding), "classes", "columns" (raw columns).
MEMBERS = {
    **PARAMETERS,
    "optim.steps": Member("iu", (), required=True, values="count"),
    "optim.lbfgs.func_evals": COUNT,
    "optim.lbfgs.n_iter": COUNT,
    "optim.lbfgs.numel": COUNT,
    "optim.*": Member("f", None),  # per-parameter buffers and the L-BFGS history; shapes: restore
    "schedule.epoch": COUNT,
    "schedule.num_bad_epochs": COUNT,
    "schedule.cooldown_counter": COUNT,
    "schedule.base_lr": Member("f", (), values="positive"),
    "schedule.lr": Member("f", (), values="nonnegative"),
    "schedule.best": Member("f", ()),  # +-inf before the first epoch
    "schedule.mode": TEXT,
    "loss.weights": Member("f", ("classes",), values="nonnegative"),
    "data.scale.offset": Member("f", ("features",), values="finite"),
    "data.scale.factor": Member("f", ("features",), values="positive"),
    # 0-D for one target column (rows,), 1-D for several; checked against the data in experiment.prepare
    "data.target_scale.offset": Member("f", [(), (None,)], values="finite"),
    "data.target_scale.factor": Member("f", [(), (None,)], values="positive"),
    "data.columns": Member("U", ("columns",)),
    "data.categories.*": Member("U", (None,)),
    "data.indicators": Member("U", (None,)),
    "data.impute.fill": Member("f", ("features",), values="finite"),
    "data.features": Member("U", ("features",), required=True),
    "data.classes": Member("U", ("classes",)),
    "data.sample_shape": Member("iu", (None,), values="positive"),
    "data.image_shape": Member("iu", (2,), values="positive"),  # older runs' (height, width)
    **text_members("data.text", required=False),  # a text's vocabulary and tokenizer
    "data.target_steps": Member("iu", (), values="positive"),  # a class per step: the steps
    "meta.epoch": Member("iu", (), required=True, values="count"),
    "meta.best_epoch": Member("iu", (), required=True, values="count"),
    "meta.best_value": Member("f", (), required=True),  # NaN while nothing was monitored
    "meta.rng": Member("U", (), required=True),
    "meta.config": Member("U", (), required=True),
    "meta.config_sha256": Member("U", (), required=True),
    "meta.version": Member("U", (), required=True),
}


class Checkpoint(dict):
    """A checkpoint's arrays by key, checked by `read`, and the file they came from (for messages)."""

    def __init__(self, path: Path, arrays: dict[str, np.ndarray]):
        super().__init__(arrays)
        self.path = Path(path)


@dataclass
class TrainingState:
    """Where training stands after an epoch: what a resumed run must continue from."""

    epoch: int = 0
    best_epoch: int = 0
    best_value: float = float("nan")


def save(path: Path, exp: Experiment, state: TrainingState) -> None:
    text = cfg.canonical_json(exp.config)
    arrays = {
        **exp.network.state_dict(),
        **{f"optim.{k}": v for k, v in exp.optimizer.state_dict().items()},
        **({f"schedule.{k}": v for k, v in exp.schedule.state_dict().items()} if exp.schedule is not None else {}),
        **exp.scaler.state_dict(),
        **exp.target_scaler.state_dict(),
        **exp.dataset.encoder.state_dict(),
        **exp.imputer.state_dict(),
        "meta.epoch": np.array(state.epoch, dtype=np.int64),
        "meta.best_epoch": np.array(state.best_epoch, dtype=np.int64),
        "meta.best_value": np.array(state.best_value, dtype=np.float64),
        "meta.rng": text_array(json.dumps(exp.rngs["train"].bit_generator.state)),
        "meta.config": text_array(text),
        "meta.config_sha256": text_array(hashlib.sha256(text.encode()).hexdigest()),
        "meta.version": text_array(__version__),
    }
    arrays["data.features"] = np.array(exp.dataset.feature_names, dtype=np.str_)
    if getattr(exp.network.loss, "weights", None) is not None:
        arrays["loss.weights"] = np.asarray(exp.network.loss.weights, dtype=np.float64)
    if len(exp.dataset.sample_shape) > 1:  # (features,) follows from data.features
        arrays["data.sample_shape"] = np.array(exp.dataset.sample_shape, dtype=np.int64)
    if exp.dataset.classes is not None:
        arrays["data.classes"] = np.array(exp.dataset.classes, dtype=np.str_)
    if exp.dataset.vocabulary is not None:
        arrays.update(exp.dataset.vocabulary.state("data.text"))
    if exp.dataset.classes is not None and exp.dataset.y.ndim == 2:  # a class per step (language model, labelling)
        arrays["data.target_steps"] = np.array(exp.dataset.y.shape[1], dtype=np.int64)
    save_npz(path, arrays)


def read(path: Path) -> Checkpoint:
    """A checkpoint's arrays, validated as a whole; NntrainError naming the file otherwise.

    Checked: every member decodes (npzfile.load_npz) and is one of MEMBERS with its dtype kind,
    shape and values (counters from 0 to 2**53); the embedded config matches its SHA-256 and is a
    valid, resolved config; best epoch <= epoch <= train.epochs; schedule.epoch = epoch (and for
    lbfgs optim.steps = epoch); meta.rng is a generator state; optimizer buffers have their
    parameter's shape; and what the config implies of the data:
    class names (unique, at least 2, as many as the output layer needs) exactly for
    classification, loss.weights exactly with loss.class_weights, scaling statistics exactly
    with data.scale / data.scale_target, at least one feature, distinct columns and categories
    that give the feature names, a sample shape (or an older run's image shape) holding the features.
    """
    arrays = Checkpoint(path, load_npz(path))
    sizes = check_members(path, arrays, MEMBERS, closed=True)
    text = str(arrays["meta.config"])
    if hashlib.sha256(text.encode()).hexdigest() != str(arrays["meta.config_sha256"]):
        raise NntrainError(f"'{path}' is corrupt: its embedded config does not match its SHA-256")
    _check_consistency(path, arrays, embedded_config(arrays, path), sizes)
    return arrays


def _check_consistency(path: Path, arrays: dict[str, np.ndarray], config: cfg.Config, sizes: dict[str, int]) -> None:
    """What `read` checks across members, and of the members against the embedded config."""

    def inconsistent(problem: str) -> NntrainError:
        return NntrainError(f"'{path}' is inconsistent: {problem}")

    epoch, best_epoch = int(arrays["meta.epoch"]), int(arrays["meta.best_epoch"])
    if best_epoch > epoch:
        raise inconsistent(f"meta.best_epoch {best_epoch} is after meta.epoch {epoch}")
    if epoch > config.train.epochs:
        raise inconsistent(f"meta.epoch {epoch} is beyond its config's train.epochs {config.train.epochs}")
    _check_counters(arrays, config, epoch, inconsistent)
    try:  # on a throwaway generator of the kind training uses (default_rng's)
        np.random.PCG64(0).state = json.loads(str(arrays["meta.rng"]))
    except (ValueError, TypeError, KeyError, OverflowError, RecursionError) as e:
        raise inconsistent(f"meta.rng is not the JSON state of a PCG64 generator ({type(e).__name__}: {e})") from None
    for key in [k for k in arrays if k.startswith("optim.layers.")]:  # optim.<parameter>.<buffer>
        param = key[len("optim.") :].rsplit(".", 1)[0]
        if param not in arrays or arrays[param].shape != arrays[key].shape:
            of = f"that of {param}, {arrays[param].shape}" if param in arrays else f"there is no parameter {param}"
            raise inconsistent(f"{key} has shape {arrays[key].shape}, but {of}")
    classification = config.data.task == "classification"
    if classification != ("data.classes" in arrays):
        has = "lacks" if classification else "has"
        raise inconsistent(f"its config's task is {config.data.task}, but it {has} data.classes")
    if classification:
        classes = [str(c) for c in arrays["data.classes"]]
        if len(classes) < 2 or len(set(classes)) != len(classes):
            raise inconsistent(f"data.classes {classes} are not at least 2 distinct class names")
        width = output_width(config)
        need = LOSSES[config.loss.name](**cfg.options(config.loss)).expected_width(len(classes), 1)
        if width and width != need:
            raise inconsistent(
                f"data.classes has {len(classes)} classes, for which '{config.loss.name}' needs {need} outputs,"
                f" but the network has {width}"
            )
    weighted = getattr(config.loss, "class_weights", None) is not None
    if weighted != ("loss.weights" in arrays):
        is_set, has = ("set", "lacks") if weighted else ("not set", "has")
        raise inconsistent(f"loss.class_weights is {is_set}, but it {has} loss.weights")
    scaling = (
        ("data.scale", config.data.scale.name != "none", f"data.scale: {config.data.scale.name}"),
        ("data.target_scale", config.data.scale_target, f"data.scale_target: {str(config.data.scale_target).lower()}"),
    )
    if (config.data.missing == "impute") != ("data.impute.fill" in arrays):
        has = "lacks" if config.data.missing == "impute" else "has"
        raise inconsistent(f"its config has data.missing: {config.data.missing}, but it {has} data.impute.fill")
    for key, wanted, setting in scaling:
        have = [k for k in (f"{key}.offset", f"{key}.factor") if k in arrays]
        if len(have) != (2 if wanted else 0):
            must = "both be there" if wanted else "be absent"
            raise inconsistent(f"its config has {setting}, so {key}.offset and .factor must {must}; it has {have or 'none'}")
    if not sizes["features"]:
        raise inconsistent("data.features is empty: a network needs an input")
    if "data.indicators" in arrays and ("data.columns" not in arrays or not set(arrays["data.indicators"].tolist()) <= set(arrays["data.columns"].tolist())):
        raise inconsistent("data.indicators names columns that are not among its data.columns")
    for key in [k for k in arrays if k in ("data.columns", "data.indicators") or k.startswith("data.categories.")]:
        names = arrays[key].tolist()
        if len(set(names)) != len(names):
            raise inconsistent(f"{key} names {sorted(n for n in set(names) if names.count(n) > 1)[:3]} more than once")
    if "data.columns" in arrays:
        columns = arrays["data.columns"].tolist()
        positions = {f"data.categories.{j}" for j in range(len(columns))}
        stray = [k for k in arrays if k.startswith("data.categories.") and k not in positions]
        if stray:
            raise inconsistent(f"{stray[0]} is not the position of one of its {len(columns)} data.columns")
        if FeatureEncoder.from_state(arrays).names != [str(f) for f in arrays["data.features"]]:
            raise inconsistent("data.features are not the inputs that data.columns and data.categories give")
    if "data.sample_shape" in arrays and "data.image_shape" in arrays:
        raise inconsistent("it has both data.sample_shape and data.image_shape (the older form of it)")
    for key in ("data.sample_shape", "data.image_shape"):
        if key in arrays and math.prod(arrays[key].tolist()) != sizes["features"]:
            shape = arrays[key].tolist()
            raise inconsistent(f"{key} {shape} does not hold its {sizes['features']} features")
    if "data.sample_shape" in arrays and not len(arrays["data.sample_shape"]):
        raise inconsistent("data.sample_shape is empty: a sample has at least one axis")


def _check_counters(arrays: dict[str, np.ndarray], config: cfg.Config, epoch: int, inconsistent) -> None:
    """Step and epoch counters that follow from meta.epoch: a schedule steps once per epoch, lbfgs too.

    (The optimizer's step count of a mini-batch run depends on the training rows too: `restore`.)
    """
    if "schedule.epoch" in arrays and int(arrays["schedule.epoch"]) != epoch:
        raise inconsistent(f"schedule.epoch is {int(arrays['schedule.epoch'])}, but meta.epoch is {epoch} (the schedule steps once per epoch)")
    if "schedule.num_bad_epochs" in arrays and int(arrays["schedule.num_bad_epochs"]) > epoch:
        raise inconsistent(f"schedule.num_bad_epochs {int(arrays['schedule.num_bad_epochs'])} is more than meta.epoch {epoch}")
    cooldown = getattr(config.optimizer.schedule, "cooldown", None)
    if "schedule.cooldown_counter" in arrays and cooldown is not None and int(arrays["schedule.cooldown_counter"]) > cooldown:
        raise inconsistent(
            f"schedule.cooldown_counter {int(arrays['schedule.cooldown_counter'])} is more than its config's cooldown {cooldown}"
        )
    if config.optimizer.name == "lbfgs":
        steps = int(arrays["optim.steps"])
        if steps != epoch:
            raise inconsistent(f"optim.steps is {steps}, but lbfgs takes one step per epoch and meta.epoch is {epoch}")
        max_iter = getattr(config.optimizer, "max_iter", None)
        if "optim.lbfgs.n_iter" in arrays and max_iter is not None and int(arrays["optim.lbfgs.n_iter"]) > steps * max_iter:
            raise inconsistent(
                f"optim.lbfgs.n_iter {int(arrays['optim.lbfgs.n_iter'])} is more than {steps} steps of at most"
                f" {max_iter} iterations (optimizer.max_iter)"
            )


def read_parameters(path: Path) -> dict[str, np.ndarray]:
    """The parameters (`layers.*`, float arrays) of an .npz, e.g. another run's checkpoint (fit --weights)."""
    arrays = load_npz(path)
    check_members(path, arrays, PARAMETERS)
    return {k: v for k, v in arrays.items() if k.startswith("layers.")}


def load_parameters(network, arrays: dict[str, np.ndarray], path) -> None:
    """Copy `arrays` (read from `path`) into the network; NntrainError unless the keys and shapes fit exactly."""
    try:
        network.load_state_dict(arrays)
    except ValueError as e:
        raise NntrainError(f"'{path}' does not fit the network: {e}") from None


def embedded_config(arrays: dict[str, np.ndarray], path="the checkpoint") -> cfg.Config:
    """The resolved config stored in a checkpoint; NntrainError naming `path` unless it is a valid one."""
    try:
        raw = json.loads(str(arrays["meta.config"]))
    except (ValueError, RecursionError) as e:
        raise NntrainError(f"'{path}' is corrupt: its embedded config is not JSON ({e})") from None
    if not isinstance(raw, dict):
        raise NntrainError(f"'{path}' is corrupt: its embedded config is {type(raw).__name__}, not a mapping")
    try:
        config = cfg.validate(raw)
    except NntrainError as e:
        raise NntrainError(f"'{path}' has an invalid embedded config: {e}") from None
    if config.data.task is None:
        raise NntrainError(f"'{path}' has an embedded config without data.task (not a config nntrain resolved)")
    return config


def restore(exp: Experiment, arrays: Checkpoint, training: bool) -> TrainingState:
    """Load parameters (and, for training, optimizer and RNG state) into `exp` from a checkpoint `read` checked.

    What only the network and the data can tell (parameter and optimizer-state shapes, every
    buffer the optimizer keeps, optim.steps = epochs x batches per epoch) is checked here, an
    NntrainError naming the file: a checkpoint is input, not trusted code.
    """
    load_parameters(exp.network, arrays, arrays.path)
    state = TrainingState(int(arrays["meta.epoch"]), int(arrays["meta.best_epoch"]), float(arrays["meta.best_value"]))
    if training:
        steps, per_epoch = int(arrays["optim.steps"]), steps_per_epoch(exp)
        if steps != state.epoch * per_epoch:  # a wrong count would change the updates (Adam's bias correction, ...)
            raise NntrainError(
                f"'{arrays.path}' is inconsistent: optim.steps is {steps}, but {state.epoch} epoch{'s' if state.epoch != 1 else ''}"
                f" of {per_epoch} optimizer step{'s' if per_epoch != 1 else ''} make {state.epoch * per_epoch}"
            )
        try:
            optim = {k[len("optim.") :]: v for k, v in arrays.items() if k.startswith("optim.")}
            exp.optimizer.check_state(optim, {p.key: p.value.shape for p in exp.network.params}, prefix="optim.")
            exp.optimizer.load_state_dict(optim)
            if exp.schedule is not None:
                exp.schedule.load_state_dict({k[len("schedule.") :]: v for k, v in arrays.items() if k.startswith("schedule.")})
                exp.optimizer.lr = exp.schedule.lr
            exp.rngs["train"].bit_generator.state = json.loads(str(arrays["meta.rng"]))
        except (KeyError, ValueError, TypeError) as e:
            raise NntrainError(f"'{arrays.path}' is damaged or incomplete: {type(e).__name__}: {e}") from None
    return state


def steps_per_epoch(exp: Experiment) -> int:
    """Optimizer steps in one epoch: one per mini-batch of the training rows, one for lbfgs (full batch)."""
    n = len(exp.splits["train"])
    if exp.optimizer.needs_closure:
        return 1
    batch = exp.config.train.batch_size
    return 1 if batch == "full" else math.ceil(n / max(1, min(batch, n)))


def none_yet(run: RunDir) -> bool:
    """Whether the run stopped before its first checkpoint (killed, or a full disk, before epoch 0's last.npz).

    True only when its checkpoints folder holds no checkpoint file at all (temporary files of a
    killed write aside) and nothing records a finished epoch: metrics.csv has no row and
    summary.json, if any, says 0 epochs completed. A checkpoint that is there but unreadable, or
    a run whose files say it trained, is not this case (its checkpoints were lost or damaged).
    """
    if not os.path.isdir(run.checkpoints) or os.path.lexists(run.checkpoint("last")) or run.checkpoint_files():
        return False
    try:
        if os.path.lexists(run.metrics_file) and read_metrics(run.metrics_file):
            return False
        if os.path.lexists(run.summary_file):
            summary = json.loads(read_text(run.summary_file, "the summary"))
            if not isinstance(summary, dict) or summary.get("epochs_completed") != 0:
                return False
    except (NntrainError, ValueError, RecursionError):  # unreadable: not a run that merely never started
        return False
    return True


def newest_readable(run: RunDir, log) -> tuple[Path, dict[str, np.ndarray]]:
    """last.npz, or if it is unreadable the readable checkpoint with the highest epoch (with a warning)."""
    last = run.checkpoint("last")
    try:
        return last, read(last)
    except NntrainError as first_error:
        found = []
        for path in run.checkpoint_files():
            if path == last:
                continue
            try:
                arrays = read(path)
            except NntrainError:
                continue
            found.append((int(arrays["meta.epoch"]), path, arrays))
        if not found:
            raise NntrainError(f"cannot resume: {first_error}, and no other readable checkpoint in {run.checkpoints}") from None
        epoch, path, arrays = max(found, key=lambda f: (f[0], f[1].name != "best.npz"))
        log(f"warning: {last} is unreadable ({first_error}); resuming from {path} (epoch {epoch})")
        return path, arrays


def config_differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config dicts."""
    keys = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        path = f"{prefix}{k}"
        if isinstance(a, dict) and isinstance(b, dict):
            keys += config_differences(a, b, path + ".")
        elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            for i, (x, y) in enumerate(zip(a, b)):
                if isinstance(x, dict) and isinstance(y, dict):
                    keys += config_differences(x, y, f"{path}.{i}.")
                elif x != y:
                    keys.append(f"{path}.{i}")
        elif a != b:
            keys.append(path)
    return keys
