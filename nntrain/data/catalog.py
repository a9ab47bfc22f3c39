"""What datasets nntrain knows by name, and what a dataset looks like (for `nntrain datasets`)."""

from __future__ import annotations

import inspect

import numpy as np

from ..engine.registry import did_you_mean
from ..errors import NntrainError
from . import download
from .bundled import BUNDLED
from .dataset import builtin_names, read_raw
from .generators import GENERATORS


def catalog(directory=None) -> dict[str, dict]:
    """Every built-in dataset: generated (with its options), bundled, or downloadable (with its status)."""
    listing = {}
    for name, fn in GENERATORS.items():
        params = inspect.signature(fn).parameters.values()
        listing[name] = {
            "kind": "generated",
            "task": fn.task,
            "description": (fn.__doc__ or "").strip().splitlines()[0],
            "options": {p.name: p.default for p in params if p.kind is p.KEYWORD_ONLY},
        }
    for name, info in BUNDLED.items():
        listing[name] = {
            "kind": "bundled",
            "task": info.task,
            "description": info.description,
            "rows": info.rows,
            "features": info.features,
        }
    for name, spec in download.DOWNLOADABLE.items():
        states = download.status(name, directory)
        state = "downloaded" if all(s == "ok" for s in states.values()) else "not downloaded"
        if "corrupt" in states.values():
            state = "damaged (download again)"
        listing[name] = {"kind": "downloadable", "task": "classification", "description": spec.description, "status": state}
    return listing


def describe(name: str, options: dict, rng: np.random.Generator) -> dict:
    """Rows, features, classes with their counts, and feature ranges of a built-in dataset.

    `options` must already be valid for a generator; `rng` is the stream a run would generate it with.
    """
    if name not in builtin_names():
        raise NntrainError(f"unknown dataset '{name}'{did_you_mean(name, builtin_names())}; see `nntrain datasets`")
    raw = read_raw(name, options, None, rng)
    X = np.asarray(raw.X, dtype=np.float64)
    names = raw.encoder.names if raw.encoder is not None else [f"x{j}" for j in range(X.shape[1])]
    info = {"name": name, "rows": int(X.shape[0]), "features": int(X.shape[1]), "task": raw.task}
    if raw.sample_shape is not None and len(raw.sample_shape) > 1:  # images (C, H, W), sequences (T, D)
        info["sample_shape"] = list(raw.sample_shape)
    if raw.task == "classification":
        labels, counts = np.unique(raw.y.astype(str) if raw.y.dtype.kind == "U" else raw.y.astype(np.int64), return_counts=True)
        info["classes"] = {str(label): int(count) for label, count in zip(labels, counts)}
    else:
        info["target_range"] = [float(np.min(raw.y)), float(np.max(raw.y))]
    info["feature_ranges"] = {n: [float(lo), float(hi)] for n, lo, hi in zip(names, X.min(axis=0), X.max(axis=0))}
    if raw.parts is not None:
        info["parts"] = {k: int(len(v)) for k, v in raw.parts.items()}
    return info
