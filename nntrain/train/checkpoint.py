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
  data.features                        feature names after encoding, in input order
  data.image_shape                     (height, width) of image data, which rows hold flattened
  loss.weights                         per-class weights of the loss (loss.class_weights), by label
  meta.epoch, meta.best_epoch, meta.best_value, meta.rng (training RNG state, JSON),
  meta.config (the resolved config, JSON), meta.config_sha256, meta.version
Everything is a plain array; nothing needs pickle to load.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import __version__
from .. import config as cfg
from ..errors import NntrainError
from .experiment import Experiment
from .rundir import RunDir, load_npz, save_npz, text_array


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
    if exp.dataset.image_shape is not None:
        arrays["data.image_shape"] = np.array(exp.dataset.image_shape, dtype=np.int64)
    if exp.dataset.classes is not None:
        arrays["data.classes"] = np.array(exp.dataset.classes, dtype=np.str_)
    save_npz(path, arrays)


def read(path: Path) -> dict[str, np.ndarray]:
    """A checkpoint's arrays, checked for the keys every checkpoint has."""
    arrays = load_npz(path)
    missing = [k for k in ("meta.epoch", "meta.config", "meta.config_sha256") if k not in arrays]
    if missing:
        raise NntrainError(f"'{path}' is not an nntrain checkpoint (missing {', '.join(missing)})")
    text = str(arrays["meta.config"])
    if hashlib.sha256(text.encode()).hexdigest() != str(arrays["meta.config_sha256"]):
        raise NntrainError(f"'{path}' is corrupt: its embedded config does not match its SHA-256")
    return arrays


def embedded_config(arrays: dict[str, np.ndarray]) -> cfg.Config:
    return cfg.validate(json.loads(str(arrays["meta.config"])))


def restore(exp: Experiment, arrays: dict[str, np.ndarray], training: bool) -> TrainingState:
    """Load parameters (and, for training, optimizer and RNG state) into `exp`.

    Anything missing or malformed is an NntrainError: a checkpoint is input, not trusted code.
    """
    try:
        exp.network.load_state_dict(arrays)
    except ValueError as e:
        raise NntrainError(f"checkpoint does not fit the network: {e}") from None
    try:
        state = TrainingState(int(arrays["meta.epoch"]), int(arrays["meta.best_epoch"]), float(arrays["meta.best_value"]))
        if training:
            optim = {k[len("optim.") :]: v for k, v in arrays.items() if k.startswith("optim.")}
            exp.optimizer.check_state(optim, {p.key: p.value.shape for p in exp.network.params})
            exp.optimizer.load_state_dict(optim)
            if exp.schedule is not None:
                exp.schedule.load_state_dict({k[len("schedule.") :]: v for k, v in arrays.items() if k.startswith("schedule.")})
                exp.optimizer.lr = exp.schedule.lr
            exp.rngs["train"].bit_generator.state = json.loads(str(arrays["meta.rng"]))
    except (KeyError, ValueError, TypeError) as e:
        raise NntrainError(f"checkpoint is damaged or incomplete: {type(e).__name__}: {e}") from None
    return state


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
