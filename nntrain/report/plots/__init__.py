"""The plots of `nntrain plot RUN [RUN...]`: learning curves, outputs, decision boundaries, inside the network.

    from nntrain.report.plots import kinds_for, render, plot_runs
    kinds_for(run)                              # the kinds that apply to the run, in KINDS order
    fig = render([run], "confusion", "svg")     # Figure(kind, fmt, content=bytes, data={the numbers drawn})
    plot_runs([run], None, Path("plots"))       # every kind that applies, as plots/<run name>-<kind>.png

Kinds (docs/plots.md shows each): curves (several runs overlaid), confusion, roc, pr, scatter,
residuals, boundary, boundary-epochs, weights, filters, features, diagnostics, projection.

matplotlib (the `plot` extra) is imported only when a figure is drawn; without it `render`
says how to install it, and `terminal_curves` still draws the loss in a few lines of Unicode.
Plots never write into a run directory: only training does.
"""

from __future__ import annotations

import os
from pathlib import Path

from ...errors import NntrainError
from .figure import FORMATS, INSTALL, Figure
from . import figure as _figure

KINDS: tuple[str, ...] = (
    "curves",
    "confusion",
    "roc",
    "pr",
    "scatter",
    "residuals",
    "boundary",
    "boundary-epochs",
    "weights",
    "filters",
    "features",
    "diagnostics",
    "projection",
)

# The options each kind takes, with their defaults (split None: the kind's default split, see docs/plots.md).
OPTIONS: dict[str, dict] = {
    "curves": {},
    "confusion": {"which": "best", "split": None},
    "roc": {"which": "best", "split": None},
    "pr": {"which": "best", "split": None},
    "scatter": {"which": "best", "split": None},
    "residuals": {"which": "best", "split": None},
    "boundary": {"which": "best", "split": None, "grid": 200, "max_points": 2000},
    "boundary-epochs": {"split": None, "grid": 100, "frames": 12, "max_points": 2000},
    "weights": {"which": "best"},
    "filters": {"which": "best", "layer": None},
    "features": {"which": "best", "split": None, "sample": 0, "layer": None},
    "diagnostics": {},
    "projection": {"which": "best", "split": None, "layer": None, "method": "pca", "max_points": 1000},
}
# The command line's flag for each option (which is --checkpoint there), for messages that name an option.
FLAGS = {"which": "--checkpoint", "max_points": "--max-points"}


def _named(option: str) -> str:
    return f"'{option}' ({FLAGS.get(option, '--' + option)})"


ALL_OPTIONS = tuple(dict.fromkeys(name for options in OPTIONS.values() for name in options))
ANIMATED = ("boundary-epochs",)  # the kinds that may be a GIF

__all__ = ["KINDS", "OPTIONS", "Figure", "have_matplotlib", "kinds_for", "plot_runs", "reasons", "render", "terminal_curves"]


def have_matplotlib() -> bool:
    """Whether matplotlib (the `plot` extra) can be imported."""
    return _figure.have_matplotlib()


# ---------------------------------------------------------------- which kinds apply


def reasons(run_dir: Path) -> dict[str, str | None]:
    """For every kind, None when it applies to the run, else why not (a sentence)."""
    from .runs import (
        Run,
        embedding_layer,
        filter_layers,
        first_weights,
        hidden_layer,
        is_language_model,
        map_layers,
        per_row_classes,
        two_d_inputs,
    )

    run = run_dir if isinstance(run_dir, Run) else Run(run_dir)
    out: dict[str, str | None] = {}
    columns, values = run.metrics()
    out["curves"] = None if columns and len(values.get("epoch", ())) else "metrics.csv has no finished epoch yet"
    exp = run.network_exp()
    if exp is None:
        for kind in KINDS[1:]:
            out[kind] = "the run has no checkpoint yet (it stopped before its first epoch ended)"
        return out
    network, dataset = exp.network, exp.dataset
    classification, regression = dataset.task == "classification", dataset.task == "regression"
    classes = dataset.n_classes
    if not classification:
        out["confusion"] = "a confusion matrix is for classification; this run does regression"
    elif is_language_model(exp):
        out["confusion"] = "a language model's confusion matrix would be vocabulary x vocabulary; eval reports its accuracy"
    else:
        out["confusion"] = None
    binary = None if classification and classes == 2 and per_row_classes(exp) else (
        "ROC and precision-recall curves are for binary classification (one class of two per sample); this run "
        + ("does regression" if regression else f"has {classes} classes" if classes != 2 else "has a class per step")
    )  # fmt: skip
    out["roc"] = out["pr"] = binary
    out["scatter"] = out["residuals"] = None if regression else "predicted vs actual and residuals are for regression; this run classifies"
    plane = two_d_inputs(exp)
    if not plane:
        out["boundary"] = f"the decision boundary is drawn over two input features; this run's samples have shape {tuple(dataset.sample_shape)}"
    elif not (classification and per_row_classes(exp)):
        out["boundary"] = "the decision boundary is for classification; this run does regression"
    else:
        out["boundary"] = None
    if out["boundary"] is not None:
        out["boundary-epochs"] = out["boundary"]
    elif len(run.epoch_checkpoints()) < 2:
        out["boundary-epochs"] = "the run saved fewer than 2 epoch checkpoints (train.checkpoint_every)"
    else:
        out["boundary-epochs"] = None
    out["weights"] = None if first_weights(network) is not None else (
        "the network's first layer with weights is not a weight matrix over the inputs"
        " (see filters for a convolution, projection for an embedding)"
    )  # fmt: skip
    out["filters"] = None if filter_layers(network) else "the network has no convolution filters (a layer with a 4-d weight)"
    out["features"] = None if filter_layers(network) and map_layers(network) else "the network has no convolution making feature maps"
    out["diagnostics"] = None if os.path.isfile(run.path / "diagnostics.csv") else "the run was not trained with train.diagnostics: true"
    out["projection"] = None if embedding_layer(network) is not None or hidden_layer(network) is not None else (
        "the network has no hidden layer or embedding to project"
    )  # fmt: skip
    return out


def kinds_for(run_dir: Path) -> list[str]:
    """The kinds that apply to this run (its task, the shape of its data and network, the files it has), in KINDS order."""
    found = reasons(run_dir)
    return [kind for kind in KINDS if found[kind] is None]


def _check_kind(kind: str) -> None:
    from ...engine.registry import did_you_mean

    if kind not in KINDS:
        raise NntrainError(f"unknown plot '{kind}'{did_you_mean(kind, KINDS)}; allowed: {', '.join(KINDS)}")


def _check_fmt(kind: str, fmt: str) -> None:
    allowed = (*FORMATS, "gif") if kind in ANIMATED else FORMATS
    if fmt not in allowed:
        extra = f" (gif: only {', '.join(ANIMATED)})" if fmt == "gif" else ""
        raise NntrainError(f"plot {kind} cannot be written as '{fmt}'{extra}; allowed: {', '.join(allowed)}")


def _check_options(kind: str, options: dict) -> dict:
    from ...engine.registry import did_you_mean

    for name in options:
        if name not in OPTIONS[kind]:
            allowed = ", ".join(OPTIONS[kind]) or "none"
            raise NntrainError(f"plot {kind} takes no option {_named(name)}{did_you_mean(name, ALL_OPTIONS)}; its options: {allowed}")
    return {**OPTIONS[kind], **options}


# ---------------------------------------------------------------- drawing


def render(run_dirs: list[Path], kind: str, fmt: str = "png", **options) -> Figure:
    """One plot of `kind` as a Figure (bytes in memory; nothing is written).

    Several runs only for "curves" (overlaid). `options`: those of OPTIONS[kind] (which, split,
    layer, sample, grid, frames, method, max_points). NntrainError for a kind that does not apply
    (saying why and which kinds do), an unknown option or format, or matplotlib missing.
    """
    from .runs import Run

    runs = [r if isinstance(r, Run) else Run(r) for r in _as_list(run_dirs)]
    return _render(runs, kind, fmt, options)


def _as_list(run_dirs) -> list:
    if isinstance(run_dirs, (str, os.PathLike)):
        return [run_dirs]
    run_dirs = list(run_dirs)
    if not run_dirs:
        raise NntrainError("no run directory to plot")
    return run_dirs


def _render(runs: list, kind: str, fmt: str, options: dict) -> Figure:
    from . import boundary, curves, inside, outputs

    _check_kind(kind)
    _check_fmt(kind, fmt)
    options = _check_options(kind, options)
    _figure.require_matplotlib()
    if kind != "curves" and len(runs) > 1:
        raise NntrainError(f"plot {kind} draws one run; only curves overlay several ({len(runs)} given)")
    for run in runs:
        why = reasons(run)[kind]
        if why is not None:
            applies = kinds_for(run)
            raise NntrainError(f"plot {kind} does not apply to {run.name}: {why}; plots that apply: {', '.join(applies) or 'none'}")
    draw = {
        "curves": lambda: curves.render_curves(runs, fmt),
        "confusion": lambda: outputs.render_confusion(runs[0], fmt, **options),
        "roc": lambda: outputs.render_roc(runs[0], fmt, **options),
        "pr": lambda: outputs.render_pr(runs[0], fmt, **options),
        "scatter": lambda: outputs.render_scatter(runs[0], fmt, **options),
        "residuals": lambda: outputs.render_residuals(runs[0], fmt, **options),
        "boundary": lambda: boundary.render_boundary(runs[0], fmt, **options),
        "boundary-epochs": lambda: boundary.render_boundary_epochs(runs[0], fmt, **options),
        "weights": lambda: inside.render_weights(runs[0], fmt, **options),
        "filters": lambda: inside.render_filters(runs[0], fmt, **options),
        "features": lambda: inside.render_features(runs[0], fmt, **options),
        "diagnostics": lambda: inside.render_diagnostics(runs[0], fmt),
        "projection": lambda: inside.render_projection(runs[0], fmt, **options),
    }
    return draw[kind]()


def terminal_curves(run_dirs: list[Path], width: int = 72, height: int = 12) -> str:
    """Each run's train and validation loss per epoch as a small Unicode chart (no matplotlib needed)."""
    from .curves import terminal_curves as draw
    from .runs import Run

    return draw([r if isinstance(r, Run) else Run(r) for r in _as_list(run_dirs)], width, height)


# ---------------------------------------------------------------- files

SUFFIXES = {".png": "png", ".svg": "svg", ".gif": "gif"}


def plot_runs(run_dirs: list[Path], what: list[str] | None, out: Path | None, fmt: str | None = None, **options) -> dict:
    """Draw plots of runs into files; return {"files": [...], "kinds": [...], "skipped": {kind: reason}, "text": ...}.

    what: the kinds to draw; None: every kind that applies (just "curves" for several runs), the
    others listed in "skipped" with the reason. A kind asked for by name that does not apply is
    an NntrainError. out: None writes ./<run name>-<kind>.<fmt> (several runs: the names joined
    by '+'); with one kind, the file (its suffix gives the format); with several, a folder (made
    if needed) that gets <run name>-<kind>.<fmt> files, or, when it ends in .png / .svg, a stem:
    <stem>-<kind>.<suffix>. fmt: png | svg | gif (gif: boundary-epochs only, as an animation);
    default from out's suffix, else png. options: see `render`; each kind gets the ones it takes,
    and an option no asked-for kind takes is an error.

    Without matplotlib nothing is written: "text" holds terminal_curves of the runs (when curves
    are among the kinds) and "skipped" says how to install it. Files are never written inside a
    run directory.
    """
    from ...fileio import atomic_write, make_dir
    from .runs import Run

    runs = [Run(r) for r in _as_list(run_dirs)]
    explicit = what is not None
    kinds = list(dict.fromkeys(what)) if explicit else (["curves"] if len(runs) > 1 else list(KINDS))
    if explicit and not kinds:
        raise NntrainError(f"no plot asked for; allowed: {', '.join(KINDS)}")
    for kind in kinds:
        _check_kind(kind)
    known = {name for kind in kinds for name in OPTIONS[kind]}
    for name in options:
        if name not in known:
            from ...engine.registry import did_you_mean

            takers = [kind for kind in KINDS if name in OPTIONS[kind]]
            hint = f"; it is an option of {', '.join(takers)}" if takers else f"{did_you_mean(name, ALL_OPTIONS)}; options: {', '.join(ALL_OPTIONS)}"
            raise NntrainError(f"option {_named(name)} applies to none of the plots drawn ({', '.join(kinds)}){hint}")
    fmt = _resolve_fmt(fmt, out, kinds)
    result = {"files": [], "kinds": [], "skipped": {}, "text": None}
    if not have_matplotlib():
        result["skipped"] = {kind: f"matplotlib is not installed: {INSTALL}" for kind in kinds}
        if "curves" in kinds:
            result["text"] = terminal_curves(runs)
        return result
    found = {} if explicit or len(runs) > 1 else reasons(runs[0])
    todo = []
    for kind in kinds:
        if found.get(kind) is not None:
            result["skipped"][kind] = found[kind]
            continue
        todo.append(kind)
    if not explicit and fmt == "gif":  # only the animation can be a GIF
        for kind in [k for k in todo if k not in ANIMATED]:
            result["skipped"][kind] = "only boundary-epochs is written as a GIF"
            todo.remove(kind)
    paths = _paths(runs, todo, out, fmt)
    from ...train.rundir import refuse_inside_run

    for kind in todo:
        path = paths[kind]
        refuse_inside_run(path, [r.path for r in runs], "--out")
        kind_options = {k: v for k, v in options.items() if k in OPTIONS[kind]}
        try:
            fig = _render(runs, kind, fmt, kind_options)
        except NntrainError as e:
            if explicit:
                raise
            result["skipped"][kind] = str(e)
            continue
        if not path.parent.exists():
            make_dir(path.parent, "creating the plots folder", parents=True)
        atomic_write(path, fig.content, f"writing the {kind} plot")
        result["files"].append(str(path))
        result["kinds"].append(kind)
    return result


def _resolve_fmt(fmt: str | None, out: Path | None, kinds: list[str]) -> str:
    suffix = SUFFIXES.get(Path(out).suffix.lower()) if out is not None else None
    if fmt is None:
        fmt = suffix or "png"
    elif suffix is not None and suffix != fmt:
        raise NntrainError(f"--out '{out}' ends in .{suffix}, but the format asked for is {fmt}")
    if fmt not in (*FORMATS, "gif"):
        raise NntrainError(f"unknown plot format '{fmt}'; allowed: png, svg, gif (boundary-epochs only)")
    return fmt


def _paths(runs: list, kinds: list[str], out: Path | None, fmt: str) -> dict[str, Path]:
    """Where each kind's file goes (see plot_runs)."""
    names = [run.name for run in runs]
    stem = names[0] if len(names) == 1 else "+".join(names[:3]) + (f"+{len(names) - 3}-more" if len(names) > 3 else "")
    if out is None:
        return {kind: Path(f"{stem}-{kind}.{fmt}") for kind in kinds}
    out = Path(out)
    if out.suffix.lower() in SUFFIXES:
        if len(kinds) == 1:
            return {kinds[0]: out}
        return {kind: out.with_name(f"{out.stem}-{kind}{out.suffix}") for kind in kinds}
    if out.exists() and not out.is_dir():
        raise NntrainError(f"--out '{out}' is a file; give a folder, or a name ending in .png / .svg")
    return {kind: out / f"{stem}-{kind}.{fmt}" for kind in kinds}
