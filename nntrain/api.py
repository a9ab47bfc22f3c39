"""The Python API behind the CLI: fit, resume, evaluate, predict, gradcheck; plot, report, compare, export.

    from nntrain.api import fit
    summary = fit("configs/quickstart.yaml", overrides=["train.epochs=5"])
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import numpy as np

from . import config as cfg
from .data.dataset import builtin_names, encode_labels, resolve_path
from .data.files import TableOptions, read_table, read_text_column
from .data.inputs import is_input_file, read_inputs
from .engine.gradcheck import check_gradients
from .errors import NntrainError
from .train import checkpoint
from .train.experiment import Experiment, SavedSplits, check_token_ids, encode_step_labels, prepare
from .npzfile import load_npz
from .train.rundir import RunDir, atomic_write, save_npz
from .train.metrics import check_threshold, decide
from .train.trainer import Hooks, Trainer


def _config_and_base(config, overrides) -> tuple[cfg.Config, Path | None]:
    if isinstance(config, cfg.Config):
        if overrides:
            config = cfg.load_config(None, overrides, raw=cfg.to_dict(config))
        return config, None
    path = Path(config)
    return cfg.load_config(path, overrides), path.parent


def _pin_data_path(config: cfg.Config, base: Path | None) -> None:
    """Record data files by absolute path, so the run directory works from any directory."""
    pin = lambda path, *suffixes: str(resolve_path(path, base, *suffixes).resolve())
    for key, source in config.data.sources().items():
        try:
            if isinstance(source, cfg.ArrayFiles):
                source.X, source.y = pin(source.X, (".npy",)), pin(source.y, (".npy",))
                if source.lengths is not None:
                    source.lengths = pin(source.lengths, (".npy",))
            elif source not in builtin_names():
                setattr(config.data, key, pin(source))
        except NntrainError as e:
            raise NntrainError(str(e), f"data.{key}") from None


def fit(
    config,
    overrides: list[str] = (),
    runs_root: Path = Path("runs"),
    run_dir: Path | None = None,
    weights: Path | None = None,
    hooks: Hooks | None = None,
) -> dict:
    """Train a config (path or Config) into a new run directory; return the summary."""
    config, base = _config_and_base(config, overrides)
    _pin_data_path(config, base)
    exp = prepare(config, base)
    if weights is not None:
        checkpoint.load_parameters(exp.network, checkpoint.read_parameters(Path(weights)), weights)
    hooks = hooks or Hooks()
    if hooks.stop:  # Ctrl-C while the data was loading: stop before anything is written
        raise KeyboardInterrupt
    for note in exp.dataset.notes:
        hooks.log(note)
    for caution in exp.cautions:
        hooks.log(f"caution: {caution}")
    _warn_line_search(exp, hooks)
    run = RunDir.create(Path(runs_root), config.name or "run", run_dir, cfg.to_yaml(config).encode())
    return _train_from_scratch(exp, run, hooks)


def _train_from_scratch(exp: Experiment, run: RunDir, hooks: Hooks) -> dict:
    """Write the run's splits.npz, then train from epoch 0 (a new run, or one that never got a checkpoint).

    config.yaml is written first, by the caller.
    """
    save_npz(run.splits_file, exp.splits)
    return Trainer(exp, run, hooks).fit()


def _resume_config(run: RunDir, overrides, config_path) -> cfg.Config:
    """The config to continue `run` with: config_path's (data paths pinned) or the run's config.yaml, with overrides."""
    if config_path is not None:
        config = cfg.load_config(Path(config_path), overrides)
        _pin_data_path(config, Path(config_path).parent)
        return config
    return cfg.load_config(run.config_file, overrides)


def _check_resume_config(run: RunDir, saved: cfg.Config, config: cfg.Config, config_path) -> None:
    changed = [k for k in _differences(saved, config) if k != "train.epochs"]
    if changed:
        source = config_path or "its config"
        raise NntrainError(
            f"cannot resume {run.path}: {source} differs from the run in {', '.join(changed)}; only train.epochs may change"
        )
    if config.train.epochs < saved.train.epochs:
        raise NntrainError(
            f"train.epochs {config.train.epochs} is less than the run's {saved.train.epochs}; it may only grow on resume"
        )


def resume(
    run_dir: Path,
    overrides: list[str] = (),
    config_path: Path | None = None,
    hooks: Hooks | None = None,
) -> dict:
    """Continue a run from its newest readable checkpoint, in the same directory.

    The run's config (or `config_path`, when given) with `overrides` applied must equal the
    checkpoint's, except that train.epochs may grow.
    """
    hooks = hooks or Hooks()
    run = RunDir.open(run_dir)
    if checkpoint.none_yet(run):
        return _restart(run, overrides, config_path, hooks)
    path, arrays = checkpoint.newest_readable(run, hooks.log)
    saved = checkpoint.embedded_config(arrays, path)
    config = _resume_config(run, overrides, config_path)
    config.name = saved.name
    splits = SavedSplits(run.splits_file, load_npz(run.splits_file))
    exp = prepare(config, None, splits=splits, saved=arrays)  # also fills task defaults
    _check_resume_config(run, saved, config, config_path)
    state = checkpoint.restore(exp, arrays, training=True)
    atomic_write(run.config_file, cfg.to_yaml(config).encode())
    hooks.log(f"resuming {run.path} from {path.name} (epoch {state.epoch})")
    _warn_line_search(exp, hooks)
    return Trainer(exp, run, hooks).fit(state)


def _restart(run: RunDir, overrides, config_path, hooks: Hooks) -> dict:
    """Train a run that stopped before its first checkpoint again from epoch 0, in its own directory.

    Its config.yaml (written before anything else) is what the run was started with; the
    config to train (config_path or config.yaml, with overrides) may differ from it only in a
    larger train.epochs, as on any resume. Everything else (splits.npz, metrics.csv, ...) is
    written anew, so the run ends as one that was never stopped.
    """
    saved = cfg.load_config(run.config_file)
    config = _resume_config(run, overrides, config_path)
    config.name = saved.name
    exp = prepare(config, None)
    _check_resume_config(run, saved, config, config_path)
    if hooks.stop:  # Ctrl-C while the data was loading: stop before anything is written
        raise KeyboardInterrupt
    hooks.log(f"{run.path} has no checkpoint yet (stopped before its first); starting it from epoch 0")
    for note in exp.dataset.notes:
        hooks.log(note)
    _warn_line_search(exp, hooks)
    run.remove_temp_files()  # of writes the stop cut short
    atomic_write(run.config_file, cfg.to_yaml(config).encode())
    return _train_from_scratch(exp, run, hooks)


def _warn_line_search(exp: Experiment, hooks: Hooks) -> None:
    """An optimizer that line-searches (lbfgs) compares many evaluations of one loss: say so when layers change it."""
    changing = list(dict.fromkeys(layer.name for layer in exp.network.layers if layer.random))
    if exp.optimizer.needs_closure and changing:
        hooks.log(
            f"warning: {exp.optimizer.name} evaluates the loss many times per step, but in training"
            f" {' and '.join(changing)} give{'s' if len(changing) == 1 else ''} a different loss at every evaluation"
            " (new random masks or noise), so its line search compares different objectives; deterministic"
            " layers suit it (docs/config.md#lbfgs)"
        )


def _differences(a: cfg.Config, b: cfg.Config) -> list[str]:
    return checkpoint.config_differences(cfg.to_dict(a), cfg.to_dict(b))


def sample(run_dir: Path, length: int = 200, temperature: float = 1.0, prime: str = "", seed: int = 0, which: str = "best") -> str:
    """Text written by a language-model run: `prime` and `length` more tokens (see train.generate)."""
    from .train.generate import sample_text

    exp = load_run(run_dir, which, with_data=False)
    return sample_text(exp, length, temperature, prime, seed)


def load_run(run_dir: Path, which: str = "best", with_data: bool = True, dtype: str | None = None) -> Experiment:
    """A saved run's network with the parameters of checkpoint `which` (best | last | a path).

    Without `with_data` nothing but the run directory is read: the network, scaling and
    class names all come from the checkpoint. `dtype` overrides the run's (gradcheck: float64).
    A checkpoint file from another run is refused: the run's splits would not fit its data.
    """
    run = RunDir.open(run_dir)
    path = run.checkpoint(which)
    if which == "best" and not os.path.lexists(path):  # a run interrupted in its first epoch has only last.npz
        path = run.checkpoint("last")
    if which in ("best", "last") and not os.path.lexists(path):
        raise NntrainError(f"{run.path} has no checkpoint: it was stopped before its first one was written")
    arrays = checkpoint.read(path)
    config = checkpoint.embedded_config(arrays, path)
    if which not in ("best", "last"):
        own = checkpoint.embedded_config(checkpoint.read(run.checkpoint("last")), run.checkpoint("last"))
        differ = [k for k in _differences(own, config) if k != "train.epochs"]
        if differ:
            raise NntrainError(f"{path} is not a checkpoint of {run.path}: its config differs in {', '.join(differ)}")
    if dtype is not None:
        config.dtype = dtype
    splits = SavedSplits(run.splits_file, load_npz(run.splits_file)) if with_data and os.path.lexists(run.splits_file) else None
    exp = prepare(config, None, splits=splits, saved=arrays, with_data=with_data)
    checkpoint.restore(exp, arrays, training=False)
    exp.source = path.stem if which in ("best", "last") else which  # "last" when there is no best.npz
    return exp


def _file_arrays(exp: Experiment, data: Path):
    """(X, y, t, lengths) of a labelled data file or image folder, encoded (and images resized) as the run's
    training data was; lengths: an .npz's sequence lengths, or None."""
    lengths = None
    if exp.dataset.vocabulary is not None:  # a text classifier: the table's text column and target
        X, y_raw, lengths = _text_inputs(exp, resolve_path(str(data), None), with_target=True)
    elif is_input_file(data):  # arrays (an .npz with y), or an image folder with one subfolder per class
        inputs = read_inputs(Path(data), exp.dataset.sample_shape, exp.config.data.image, with_target=True)
        X, y_raw, lengths = inputs.X, inputs.y, inputs.lengths
    else:
        path = resolve_path(str(data), None)
        table = read_table(path, encoder=exp.dataset.encoder, options=TableOptions.of(exp.config.data))
        X, y_raw = table.X, table.y
    if X.shape[1] != exp.network.in_features:
        raise NntrainError(f"{data} has {X.shape[1]} feature columns; the run was trained on {exp.network.in_features}")
    if exp.dataset.y.ndim == 2 and exp.dataset.classes is not None:  # a class per step (sequence labelling)
        if np.ndim(y_raw) != 2 or np.shape(y_raw)[1] != exp.dataset.y.shape[1]:
            raise NntrainError(f"{data}: y must hold a class per step, ({len(X)}, {exp.dataset.y.shape[1]}); it has shape {np.shape(y_raw)}")
        y, _ = encode_step_labels(y_raw, exp.dataset.classes, lengths)
    else:
        y, _ = encode_labels(y_raw, exp.dataset.task, exp.dataset.classes)
    check_token_ids(exp.network, X, str(data))
    return (*exp.encode(X, y), lengths)


def evaluate_run(
    run_dir: Path, which: str = "best", split: str = "test", data: Path | None = None, threshold: float | None = None,
    metrics=(),
) -> dict:
    """Loss and metrics of a saved run on one of its splits, or on a labelled data file.

    `metrics`: metrics to compute besides the run's train.metrics (those that apply to its task and loss).

    A model whose outputs overflow (huge parameters or scaling statistics) gets NaN or infinite
    metrics, without numpy warnings; `eval --fail-under` / `--fail-over` gates then fail.
    """
    with np.errstate(all="ignore"):
        return _evaluate_run(run_dir, which, split, data, threshold, metrics)


def _evaluate_run(run_dir: Path, which: str, split: str, data: Path | None, threshold: float | None, metrics) -> dict:
    exp = load_run(run_dir, which, with_data=data is None)
    _check_threshold(exp, threshold)
    exp.threshold = threshold
    exp.add_metrics(metrics)
    language_model = _is_language_model(exp)
    if language_model and data is not None:
        raise NntrainError("a language model is evaluated on its own text's splits (eval --split val); it writes text with `nntrain sample`")
    if data is not None:
        X, y, t, lengths = _file_arrays(exp, data)
        source, samples, result = str(data), len(X), exp.evaluate(X, y, t, confusion=True, lengths=lengths)
    else:
        if not len(exp.splits[split]):
            raise NntrainError(f"the run has no '{split}' split (data.split gave it 0 rows); choose another --split")
        # A language model's confusion matrix would be vocabulary x vocabulary: its accuracy per step says enough.
        source, samples, result = split, len(exp.splits[split]), exp.evaluate_split(split, confusion=not language_model)
    if "confusion" in result:
        result["classes"] = exp.dataset.classes
    return {"run_dir": str(run_dir), "checkpoint": exp.source, "data": source, "samples": int(samples), **result}


def _classes_per_step(loss, z: np.ndarray, lengths, classes) -> np.ndarray:
    """Outputs (N, T, K) of a class per step -> the class name of each step (N, T), '' after a sequence's end."""
    names = np.array(classes, dtype=object)[loss.decide(z)]
    if lengths is not None:
        names[np.arange(z.shape[1])[None, :] >= np.asarray(lengths)[:, None]] = ""
    return names


def _text_inputs(exp: Experiment, path: Path, with_target: bool):
    """(token ids X, raw target or None, lengths) of a table's text column, tokenized as the run's training texts were."""
    options = TableOptions.of(exp.config.data)
    texts, y_raw = read_text_column(
        path, exp.config.data.text.column, options.target, options.delimiter, with_target, options.missing
    )
    X, lengths = exp.dataset.vocabulary.encode_texts(texts.tolist())
    return X.astype(np.float64), y_raw, lengths


def _is_language_model(exp: Experiment) -> bool:
    """A run trained on a text file: it predicts the next token at every step (`nntrain sample`)."""
    return exp.dataset.vocabulary is not None and exp.dataset.y.ndim == 2


def _check_threshold(exp: Experiment, threshold: float | None) -> None:
    """A decision threshold needs a binary run whose loss gives probabilities."""
    if threshold is None:
        return
    try:
        if exp.dataset.n_classes != 2:
            raise ValueError(f"a decision threshold applies to binary classification; this run has {exp.dataset.n_classes or 'no'} classes")
        check_threshold(exp.network.loss, threshold, exp.network.out_features)
    except ValueError as e:
        raise NntrainError(f"--threshold: {e}") from None


def predict_run(
    run_dir: Path, input_path: Path, which: str = "best", threshold: float | None = None, as_json: bool = False
) -> tuple[str, list[str]]:
    """Predictions for the rows of a table file, in its row order: (CSV or JSON Lines text, problems).

    Each row gives class and probabilities, or values; the run's id column (data.columns.id)
    comes first when the file has it. A row that cannot be scored (a missing value the run
    does not impute, an unknown category, text in a number column, outputs that overflow) is
    kept with empty predictions (JSON: an "error"), and `problems` names it by line. With
    `threshold` (binary classification with probabilities) the second class is predicted where
    its probability is at least `threshold`.
    """
    exp = load_run(run_dir, which, with_data=False)
    _check_threshold(exp, threshold)
    if _is_language_model(exp):
        raise NntrainError("a language model predicts the next token of a text: write text with `nntrain sample RUN`")
    options = TableOptions.of(exp.config.data)
    problems: dict[int, str] = {}
    lengths = None
    if exp.dataset.vocabulary is not None:  # a text classifier: the table's text column, as the run tokenizes it
        X, _, lengths = _text_inputs(exp, Path(input_path), with_target=False)
        id_name, ids, unit, places = None, None, "index", list  # rows by their index in the table, from 0
    elif is_input_file(input_path):  # arrays, or an image folder (read at the run's image size and mode)
        inputs = read_inputs(Path(input_path), exp.dataset.sample_shape, exp.config.data.image, with_target=False)
        X, lengths = exp.imputer.transform(inputs.X), inputs.lengths
        problems.update(inputs.problems)
        if inputs.paths is not None:  # a folder: each row is named by its file, which leads every output row
            id_name, ids, unit, places = "path", [str(p) for p in inputs.paths], None, None
        else:  # an array: by its index in X, from 0
            id_name, ids, unit, places = None, None, "index", list
    else:
        data = read_table(Path(input_path), encoder=exp.dataset.encoder, with_target=False, options=options, problems=problems)
        X = exp.imputer.transform(data.X)
        id_name, ids = (options.roles.id, data.ids) if data.ids is not None else (None, None)
        unit = "line" if data.table.format == "csv" else "row"  # Parquet and Feather have rows, not lines
        places = data.table.lines
    loss, classes = exp.network.loss, exp.dataset.classes
    check_token_ids(exp.network, X, str(input_path))
    ok = ~np.isnan(X).any(axis=1)
    for r in np.flatnonzero(~ok):
        problems.setdefault(int(r), "a missing value")
    infinite = ok & ~np.isfinite(X).all(axis=1)
    for r in np.flatnonzero(infinite):
        problems.setdefault(int(r), "a value that is not a finite number")
    ok &= ~infinite
    with np.errstate(all="ignore"):  # overflow is reported per row below, not as numpy warnings
        Xs = exp.scaler.transform(X[ok], exp.dtype, refuse=False)
        beyond = ~np.isfinite(Xs).all(axis=tuple(range(1, Xs.ndim)))
        for r in np.flatnonzero(ok)[beyond]:
            problems[int(r)] = f"a value scales beyond {np.dtype(exp.dtype).name} (data.scale of the run)"
        z = exp.network.forward(Xs, lengths=None if lengths is None else lengths[ok])
        out = loss.predict(z).astype(np.float64)
        if classes is None:
            out = exp.to_target_units(out)
    per_step = None
    if z.ndim == 3:  # a class per step (sequence labelling): each row's classes, step by step
        per_step = _classes_per_step(loss, z, None if lengths is None else lengths[ok], classes)
        finite = np.isfinite(z).all(axis=(1, 2))
    else:
        finite = np.isfinite(z).all(axis=1) & np.isfinite(out).all(axis=1)
    checkpoint_name = f"{exp.source}.npz" if exp.source in ("best", "last") else f"'{exp.source}'"
    for r in np.flatnonzero(ok)[~finite]:
        problems.setdefault(int(r), f"the model's outputs are not finite (the parameters or scaling statistics of {checkpoint_name} overflow)")
    if per_step is not None:
        header = [f"class_{t}" for t in range(per_step.shape[1])]
        scored = per_step.tolist()
    elif classes is not None:
        decided = decide(loss, z, threshold)
        prefix = "p" if loss.probabilities else "score"
        if out.shape[1] == len(classes):
            names = [f"{prefix}_{c}" for c in classes]
        else:
            names = [f"p_{classes[1]}" if loss.probabilities else "score"]
        header = ["class", *names]
        scored = [[classes[k], *row] for k, row in zip(decided.tolist(), out.tolist())]
    else:
        header = ["prediction"] if out.shape[1] == 1 else [f"prediction_{j}" for j in range(out.shape[1])]
        scored = out.tolist()
    rows: list[list | None] = [None] * len(X)
    for r, row in zip(np.flatnonzero(ok), scored):
        rows[r] = row
    for r in problems:
        rows[r] = None
    bad = sorted(problems)
    if unit is None:
        messages = [f"{ids[r]}: {problems[r]}" for r in bad]
    else:
        messages = [f"{input_path}, {unit} {place}: {problems[r]}" for r, place in zip(bad, places(bad) if bad else [])]
    if as_json:
        all_places = places(range(len(X))) if unit is not None else None
        text = io.StringIO()
        for r, row in enumerate(rows):
            record = {unit: all_places[r]} if unit is not None else {}
            if id_name is not None:
                record[id_name] = str(ids[r])
            if row is None:
                record["error"] = problems[r]
            else:
                record.update(zip(header, row))
            text.write(json.dumps(record) + "\n")
        return text.getvalue(), messages
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(([id_name] if id_name else []) + header)
    for r, row in enumerate(rows):
        cells = [""] * len(header) if row is None else [v if isinstance(v, str) else f"{v:.6g}" for v in row]
        writer.writerow(([str(ids[r])] if id_name else []) + cells)
    return text.getvalue(), messages


def gradcheck(source, overrides=(), samples: int = 8, eps: float = 1e-4, tol: float = 1e-6, entries: int = 100):
    """Check the analytic gradients of a config's (or a saved run's) network in float64.

    Returns (checks, info): one TensorCheck per parameter tensor and the input.
    """
    source = Path(source)
    if os.path.isdir(source):  # os.path's isdir is False (not an OSError) for a path the system refuses
        if overrides:
            raise NntrainError("--set changes a config; a run directory is checked as it was trained")
        exp = load_run(source, "last", dtype="float64")
        config = exp.config
    else:
        config, base = _config_and_base(source, overrides)
        config.dtype = "float64"
        exp = prepare(config, base)
    n = len(exp.splits["train"])
    need = exp.network.min_batch
    if min(samples, n) < need:
        which = next(layer.name for layer in exp.network.layers if layer.batch_statistics and layer.min_batch == need)
        raise NntrainError(f"{which} needs at least {need} samples to normalize in training mode; use --samples {need} or more (got {samples})")
    pick = np.random.default_rng(config.seed).choice(n, size=min(samples, n), replace=False)
    X, _, t = exp.rows("train", pick)
    lengths = exp.lengths_of("train", pick)
    checks = check_gradients(exp.network, X, t, eps=eps, tol=tol, max_entries=entries, lengths=lengths)
    return checks, {"samples": int(len(pick)), "eps": eps, "tol": tol}


def plot(run_dirs, what=None, out=None, fmt: str | None = None, **options) -> dict:
    """Plots of runs as files (see nntrain.report.plots.plot_runs): {"files", "kinds", "skipped", "text"}."""
    from .report.plots import plot_runs

    return plot_runs([Path(r) for r in run_dirs], what, None if out is None else Path(out), fmt, **options)


def terminal_curves(run_dirs) -> str:
    """The runs' loss per epoch as a few lines of text (no matplotlib needed)."""
    from .report.plots import terminal_curves as draw

    return draw([Path(r) for r in run_dirs])


def report(run_dir, out=None, which: str = "best") -> Path:
    """Write a run's self-contained HTML report (see nntrain.report.html); returns its path."""
    from .report.html import write_report

    return write_report(Path(run_dir), None if out is None else Path(out), which)


def compare(paths, plot_file=None) -> dict:
    """Runs (or sweep directories' trials) side by side: config differences, metrics, epochs, times.

    With `plot_file`, their learning curves overlaid in that file too (result["plot"])."""
    from .report.compare import compare_runs, plot_comparison

    result = compare_runs([Path(p) for p in paths])
    if plot_file is not None:
        result["plot"] = str(plot_comparison(result, Path(plot_file)))
    return result


def export(run_dir, fmt: str, which: str = "best", out=None) -> dict:
    """A run's model as ONNX or safetensors with a sidecar JSON (see nntrain.report.export)."""
    from .report.export import export_run

    return export_run(Path(run_dir), fmt, which, None if out is None else Path(out))
