"""The run report (`nntrain report RUN [--out FILE]`): one self-contained HTML file.

    from nntrain.report.html import write_report
    path = write_report(Path("runs/quickstart-20261123-232745"))   # ./quickstart-20261123-232745-report.html

The page needs nothing but itself: CSS in a <style> element, images inlined as
`data:image/png;base64,...`, no script and no link to the network, so it opens the same in any
browser, offline, years later. It holds, in order: an overview (status, epochs, best value),
the final metrics per split, the learning curves, the confusion matrix on the test split with
per-class precision / recall / F1 (classifiers), the diagnostics warnings (runs trained with
`train.diagnostics: true`), the layer table (output shape and parameters per layer), the data
(source, rows per split, sample shape, features, columns with their roles, classes with their
counts), the timings and the run's config.yaml.

Images come from nntrain.report.plots and need matplotlib (`pip install 'nntrain[plot]'`);
without it every section is there, with a line saying how to get the images. Every value taken
from the run (config values, column and class names, messages) is HTML-escaped.

The report is never written into the run directory: nntrain writes into a run only to train it.
"""

from __future__ import annotations

import base64
import math
import os
from datetime import datetime
from html import escape
from pathlib import Path

from .. import __version__
from ..errors import NntrainError
from ..fileio import atomic_write, read_text
from ..train.rundir import RunDir, metric_value, read_metrics, read_summary, refuse_inside_run
from .compare import RUN_DIRECTORY

PLOT_HINT = "pip install 'nntrain[plot]'"
LAYER_ROWS = 200  # a deeper network shows its first and last layers
EPOCH_ROWS = 30  # metrics.csv rows shown; a longer run shows a spread of epochs (first, best and last among them)
FEATURE_NAMES = 24  # input names listed; of more, the first 19 and the last 4
COLUMN_ROWS = 100  # table columns listed with their roles
CONFUSION_CLASSES = 40  # a larger confusion matrix is left to `nntrain eval --json`

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #1d232b; background: #fff;
       margin: 0 auto; max-width: 1100px; padding: 24px 32px 48px; line-height: 1.45; }
h1 { font-size: 1.6em; margin: 0 0 4px; }
h2 { font-size: 1.2em; margin: 32px 0 10px; padding-bottom: 4px; border-bottom: 2px solid #d8dee6; }
.sub { color: #5a6572; margin: 0 0 16px; }
nav { background: #f2f5f8; border-radius: 6px; padding: 8px 12px; font-size: 0.92em; }
nav a { color: #1f5fa8; text-decoration: none; margin-right: 14px; }
table { border-collapse: collapse; margin: 6px 0 12px; font-size: 0.92em; }
th, td { border: 1px solid #d8dee6; padding: 3px 10px; text-align: left; vertical-align: top; }
th { background: #f2f5f8; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.best td { background: #fff4d6; }
table.kv th { width: 13em; }
pre { background: #f6f8fa; border: 1px solid #d8dee6; border-radius: 6px; padding: 10px 12px; overflow-x: auto;
      font-size: 0.85em; line-height: 1.35; }
.status-completed { color: #17803d; font-weight: 600; }
.status-diverged, .status-failed { color: #b42318; font-weight: 600; }
.status-interrupted { color: #b54708; font-weight: 600; }
.note { color: #5a6572; font-style: italic; }
.warnings li { color: #8a2c0d; margin-bottom: 4px; }
.ok { color: #17803d; }
figure { margin: 8px 0 16px; }
figure img { max-width: 100%; border: 1px solid #d8dee6; border-radius: 4px; }
figcaption { color: #5a6572; font-size: 0.88em; }
table.confusion td.num { min-width: 3em; }
footer { margin-top: 40px; color: #5a6572; font-size: 0.85em; border-top: 1px solid #d8dee6; padding-top: 8px; }
"""


def default_path(run_dir: Path) -> Path:
    """Where `write_report` puts the report of `run_dir` by default: <run name>-report.html in the current directory."""
    return Path(f"{Path(run_dir).resolve().name}-report.html")


def write_report(run_dir: Path, out: Path | None = None, which: str = "best") -> Path:
    """Write the report of `run_dir` (checkpoint `which` for the model and the confusion matrix) and return its path.

    `out`: the file to write (an existing folder: <run name>-report.html in it); default
    `default_path(run_dir)`. A path inside the run directory is refused (NntrainError): a run
    directory holds what training wrote, nothing else. Written atomically.
    """
    run = _open(run_dir)
    path = default_path(run.path) if out is None else Path(out)
    if os.path.isdir(path):
        path = path / default_path(run.path).name
    refuse_inside_run(path, [run.path], "--out")
    text = render_report(run.path, which)
    atomic_write(path, text.encode("utf-8"), "writing the report")
    return path


def _open(run_dir: Path) -> RunDir:
    try:
        return RunDir.open(Path(run_dir))
    except NntrainError:
        raise NntrainError(f"'{run_dir}' is not a run directory (no config.yaml): {RUN_DIRECTORY}") from None


# --- small HTML helpers -------------------------------------------------------------------------


def _e(value) -> str:
    """Text for an element's content: & < > escaped (quotes are plain text there)."""
    return escape(str(value), quote=False)


def _a(value) -> str:
    """Text for an attribute value in double quotes: & < > " ' escaped."""
    return escape(str(value), quote=True)


def _num(value, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value != 0 and (abs(value) < 10 ** -digits or abs(value) >= 1e6):
            return f"{value:.{digits - 1}e}"
        return f"{value:.{digits}f}"
    return _e(value)


def _table(header: list[str], rows: list[list], numeric: set[int] = frozenset(), classes: str = "", row_classes=None) -> str:
    """An HTML table; cells are escaped unless given as _Raw."""
    cls = f' class="{classes}"' if classes else ""
    head = "".join(f'<th class="num">{_e(h)}</th>' if k in numeric else f"<th>{_e(h)}</th>" for k, h in enumerate(header))
    body = []
    for i, row in enumerate(rows):
        cells = []
        for k, cell in enumerate(row):
            text = cell.html if isinstance(cell, _Raw) else _e(cell)
            cells.append(f'<td class="num">{text}</td>' if k in numeric else f"<td>{text}</td>")
        tr = f' class="{row_classes[i]}"' if row_classes and row_classes[i] else ""
        body.append(f"<tr{tr}>{''.join(cells)}</tr>")
    return f"<table{cls}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _kv(pairs: list[tuple[str, object]]) -> str:
    rows = "".join(
        f"<tr><th>{_e(k)}</th><td>{v.html if isinstance(v, _Raw) else _e(v)}</td></tr>" for k, v in pairs if v is not None
    )
    return f'<table class="kv"><tbody>{rows}</tbody></table>'


class _Raw:
    """HTML made here (already escaped), put into a table cell as it is."""

    def __init__(self, html: str):
        self.html = html


def _note(text: str) -> str:
    return f'<p class="note">{_e(text)}</p>'


def _section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{_e(title)}</h2>{body}</section>'


def _image(figure, caption: str) -> str:
    data = base64.b64encode(figure.content).decode("ascii")
    mime = {"png": "image/png", "svg": "image/svg+xml"}.get(figure.fmt, f"image/{figure.fmt}")
    return (
        f'<figure><img alt="{_a(caption)}" src="data:{mime};base64,{data}">'
        f"<figcaption>{_e(caption)}</figcaption></figure>"
    )


# --- what the report reads ----------------------------------------------------------------------


def _load(shared, which: str):
    """(experiment or None, problem or None): the run with its data, else without (the checkpoint alone).

    `shared` is the plots' Run of this run directory, which keeps each experiment it loads: the
    report and every image use one load of the data (a large dataset takes seconds to read).
    """
    try:
        return shared.exp(which, data=True), None
    except NntrainError as e:
        problem = f"the run's data could not be read ({e}); the model below comes from the checkpoint alone"
    try:
        return shared.exp(which, data=False), problem
    except NntrainError as e:
        if which not in ("best", "last"):  # a checkpoint file asked for by name must be there and be the run's
            raise
        return None, f"the run's checkpoint could not be read: {e}"


# --- sections -----------------------------------------------------------------------------------


def _overview(run: RunDir, summary: dict | None, rows: list[dict], exp, which: str) -> str:
    if summary is None:
        status = _Raw('<span class="status-interrupted">no summary.json</span> (still training, or stopped by a kill)')
        return _kv([("status", status), ("epochs in metrics.csv", len(rows)), ("directory", str(run.path))])
    state = summary.get("status") or "unknown"
    status = _Raw(f'<span class="status-{_a(state)}">{_e(state)}</span>')
    best = None
    if summary.get("best_value") is not None:
        best = f"{summary.get('monitor')} {_num(summary['best_value'])} at epoch {summary.get('best_epoch')}"
    return _kv([
        ("status", status),
        ("message", summary.get("message")),
        ("epochs", f"{summary.get('epochs_completed')} of {summary.get('epochs_planned')}"
                   + (" (stopped early)" if summary.get("stopped_early") else "")),
        ("best", best),
        ("final metrics from", summary.get("final_parameters")),
        ("model and confusion from", f"{exp.source}.npz" if exp is not None and exp.source in ("best", "last") else
         (exp.source if exp is not None else None)),
        ("directory", str(run.path)),
    ])


def _final_metrics(summary: dict | None) -> str:
    final = (summary or {}).get("final") or {}
    splits = [s for s in ("train", "val", "test") if isinstance(final.get(s), dict)]
    if not splits:
        return _note("No final metrics: the run has not finished an epoch, or has no summary.json yet.")
    names = list(dict.fromkeys(m for s in splits for m in final[s]))
    rows = [[m, *(_Raw(_num(final[s].get(m))) for s in splits)] for m in names]
    where = summary.get("final_parameters")
    return _table(["metric", *splits], rows, numeric=set(range(1, len(splits) + 1))) + (
        _note(f"From summary.json: the parameters of {where}.") if where else ""
    )


# Where each plot kind goes, and its caption. "confusion" is the HTML table of its own section.
OUTPUT_KINDS = {
    "roc": "ROC curve on the held-out split",
    "pr": "precision-recall curve on the held-out split",
    "scatter": "predicted against actual values",
    "residuals": "residuals (predicted minus actual)",
}
INSIDE_KINDS = {
    "boundary": "decision boundary over the two input features",
    "boundary-epochs": "the decision boundary epoch by epoch",
    "weights": "the first layer's weights",
    "filters": "convolution filters",
    "features": "feature maps of one sample",
    "projection": "a hidden layer's outputs projected to two dimensions (PCA)",
}


class _Images:
    """The report's images: the kinds of plot that apply to the run, drawn by nntrain.report.plots when matplotlib is there."""

    def __init__(self, shared, which: str, has_checkpoint: bool):
        from . import plots

        self.plots, self.run, self.which = plots, shared, which
        self.available = plots.have_matplotlib()
        self.kinds = plots.kinds_for(shared) if has_checkpoint else []

    def section(self, kinds: dict[str, str]) -> str:
        """The images of those of `kinds` that apply ('' when none does); without matplotlib a line naming them."""
        present = [k for k in kinds if k in self.kinds]
        if not present:
            return ""
        if not self.available:
            return _note(f"Images ({', '.join(present)}) need matplotlib: {PLOT_HINT} gives them.")
        return "".join(self.figure(k, kinds[k]) for k in present)

    def figure(self, kind: str, caption: str) -> str:
        options = {"which": self.which} if "which" in getattr(self.plots, "OPTIONS", {}).get(kind, {}) else {}
        try:
            figure = self.plots.render([self.run], kind, "png", **options)
        except NntrainError as e:
            return _note(f"No {kind} image: {e}")
        return _image(figure, caption)


def _curves(images: _Images, rows: list[dict], summary: dict | None) -> str:
    if not rows:
        return _note("metrics.csv has no complete epoch yet.")
    if images.available:
        image = images.figure("curves", "learning curves: the loss and metrics per epoch")
    else:
        chart = images.plots.terminal_curves([images.run])
        image = _note(f"The learning-curve images need matplotlib: {PLOT_HINT} gives them.") + f"<pre>{_e(chart)}</pre>"
    return image + _epoch_table(rows, (summary or {}).get("best_epoch"))


def _epoch_table(rows: list[dict], best_epoch) -> str:
    columns = [c for c in rows[0] if c != "seconds"]
    shown = rows
    if len(rows) > EPOCH_ROWS:
        picks = {round(i * (len(rows) - 1) / (EPOCH_ROWS - 2)) for i in range(EPOCH_ROWS - 1)}
        picks |= {i for i, r in enumerate(rows) if best_epoch is not None and int(r["epoch"]) == best_epoch}
        shown = [rows[i] for i in sorted(picks)]
    body = [[r["epoch"], *(_Raw(_num(metric_value(r[c]))) for c in columns[1:])] for r in shown]
    marks = ["best" if best_epoch is not None and int(r["epoch"]) == best_epoch else "" for r in shown]
    note = f"{len(shown)} of {len(rows)} epochs shown. " if len(shown) < len(rows) else ""
    best = "; the best epoch is highlighted" if any(marks) else ""
    return _table(columns, body, numeric=set(range(len(columns))), row_classes=marks) + _note(
        f"{note}metrics.csv per epoch{best}."
    )


def _confusion(exp, problem: str | None) -> str | None:
    """The confusion-matrix section, or None when the run is not a classifier (of one class per sample)."""
    if exp is None or exp.dataset.classes is None or (problem is None and exp.dataset.y.ndim != 1):
        return None
    if problem is not None:
        return _note("No confusion matrix: the run's data could not be read (see Data).")
    if not len(exp.splits.get("test", ())):
        return _note("The run has no test split (data.split.test is 0), so there is no confusion matrix on unseen data.")
    classes = exp.dataset.classes
    if len(classes) > CONFUSION_CLASSES:
        return _note(f"{len(classes)} classes: the matrix is too large to read here; `nntrain eval RUN --json` has it.")
    import numpy as np

    with np.errstate(all="ignore"):  # as `nntrain eval`: an overflowing model gets NaN metrics, not warnings
        result = exp.evaluate_split("test", confusion=True)
    matrix = result.get("confusion")
    if matrix is None:
        return None
    peak = max(max(row) for row in matrix) or 1
    body = []
    for i, row in enumerate(matrix):
        cells = []
        for j, count in enumerate(row):
            if not count:
                cells.append('<td class="num">0</td>')
                continue
            share = count / peak
            hue = "31, 95, 168" if i == j else "180, 35, 24"  # right: blue, wrong: red, deeper for more
            ink = "#fff" if share > 0.55 else "#1d232b"
            style = f"background: rgba({hue}, {0.08 + 0.72 * share:.2f}); color: {ink}"
            cells.append(f'<td class="num" style="{style}">{count:,}</td>')
        body.append(f"<tr><th>{_e(classes[i])}</th>{''.join(cells)}</tr>")
    head = "".join(f'<th class="num">{_e(c)}</th>' for c in classes)
    rows_html = "".join(body)
    table = (
        f'<table class="confusion"><thead><tr><th>true \\ predicted</th>{head}</tr></thead>'
        f"<tbody>{rows_html}</tbody></table>"
    )

    per = result.get("per_class") or {}
    detail = ""
    if per:
        detail = _table(
            ["class", "precision", "recall", "F1", "support"],
            [
                [c, *(_Raw(_num(per[name][k])) for name in ("precision", "recall", "f1", "support"))]
                for k, c in enumerate(classes)
            ],
            numeric={1, 2, 3, 4},
        )
    source = f"{exp.source}.npz" if exp.source in ("best", "last") else exp.source
    skip = ("run_dir", "checkpoint", "data", "samples")
    metrics = ", ".join(f"{k} {_num(v)}" for k, v in result.items() if k not in skip and isinstance(v, (int, float)))
    return (
        _note(
            f"Test split, {len(exp.splits['test']):,} samples, parameters of {source}: {metrics}."
            " Rows: true class; columns: predicted."
        )
        + table
        + detail
    )


def _diagnostics(run: RunDir, summary: dict | None, images: _Images) -> str:
    from ..train import diagnostics

    parts = []
    cautions = (summary or {}).get("cautions") or []
    if cautions:
        items = "".join(f"<li>{_e(c)}</li>" for c in cautions)
        parts.append(f'<p>Cautions recorded in summary.json:</p><ul class="warnings">{items}</ul>')
    if not (run.path / diagnostics.DIAGNOSTICS_FILE).is_file():
        parts.append(_note("The run was trained without train.diagnostics, so there are no per-layer diagnostics; "
                           "train with --set train.diagnostics=true to get them and their warnings."))
        return "".join(parts)
    try:
        result = diagnostics.inspect(run.path)
    except NntrainError as e:
        return "".join(parts) + _note(f"diagnostics.csv could not be read: {e}")
    warnings = result["warnings"]
    if warnings:
        parts.append(f"<p>Epoch {result['epoch']} (as <code>nntrain inspect</code> shows it):</p>")
        parts.append('<ul class="warnings">' + "".join(f"<li>warning: {_e(w)}</li>" for w in warnings) + "</ul>")
    else:
        first, last = result["epochs"]
        parts.append(f'<p class="ok">No warnings at epoch {result["epoch"]} (epochs {first}..{last} recorded).</p>')
    lines = diagnostics.format_table(result["layers"]) + diagnostics.format_steps(result["steps"])
    parts.append(f"<pre>{_e(chr(10).join(lines))}</pre>")
    parts.append(images.section({"diagnostics": "per-layer diagnostics over the epochs (diagnostics.csv)"}))
    return "".join(parts)


def _layers(exp) -> str:
    from ..train.experiment import shape_text

    if exp is None:
        return _note("No model: the run has no readable checkpoint yet.")
    entries = exp.network.summary()
    shown = entries if len(entries) <= LAYER_ROWS else entries[: LAYER_ROWS - 20] + [None] + entries[-20:]
    rows = [["", "input", shape_text(exp.network.in_shape), ""]]
    for entry in shown:
        if entry is None:
            rows.append(["...", f"{len(entries) - len(shown) + 1:,} more layers", "", ""])
        else:
            rows.append([entry["layer"], entry["type"], shape_text(entry["shape"]), _Raw(f"{entry['params']:,}")])
    total = sum(e["params"] for e in entries)
    return _table(["layer", "type", "output shape", "params"], rows, numeric={0, 3}, classes="layers") + (
        f"<p><strong>{total:,}</strong> parameters ({_e(exp.dtype)}), loss {_e(exp.network.loss.name)}, "
        f"optimizer {_e(exp.optimizer.name)}.</p>"
    )


def _data(exp, problem: str | None) -> str:
    if exp is None:
        return _note(problem or "No data summary: the run could not be loaded.")
    parts = [_note(problem)] if problem else []
    config, dataset = exp.config, exp.dataset
    sources = []
    for key, source in config.data.sources().items():
        text = source if isinstance(source, str) else f"X: {source.X}, y: {source.y}"
        sources.append((f"data.{key}", text))
    pairs = [*sources]
    if config.data.options:
        pairs.append(("options", ", ".join(f"{k}: {v}" for k, v in config.data.options.items())))
    pairs.append(("task", dataset.task))
    have_rows = problem is None
    if have_rows:
        pairs.append(("rows", ", ".join(f"{s} {len(exp.splits[s]):,}" for s in ("train", "val", "test") if s in exp.splits)))
    from ..train.experiment import shape_text

    pairs.append(("sample shape", shape_text(dataset.sample_shape)))
    pairs.append(("inputs", f"{exp.network.in_features:,}"))
    if dataset.vocabulary is not None:
        pairs.append(("vocabulary", f"{len(dataset.vocabulary.tokens):,} tokens"))
    names = dataset.feature_names
    if len(names) > 20 and names == [f"x{j}" for j in range(len(names))]:
        pairs.append(("input names", f"x0 ... x{len(names) - 1} (unnamed)"))
    elif len(names) > FEATURE_NAMES:
        pairs.append(("input names", ", ".join(names[: FEATURE_NAMES - 5]) + ", ..., " + ", ".join(names[-4:])))
    elif names:
        pairs.append(("input names", ", ".join(names)))
    if dataset.task == "regression":
        scaled = " (scaled for training: data.scale_target)" if config.data.scale_target else ""
        pairs.append(("targets", f"{dataset.n_targets}{scaled}"))
    pairs.append(("scaling", exp.scaler.method))
    parts.append(_kv(pairs))
    if dataset.plans:
        shown = dataset.plans[:COLUMN_ROWS]
        kind = lambda p: f"category ({p.categories} values)" if p.kind == "category" else p.kind
        rows = [[p.name, p.role, kind(p), _Raw(_num(p.missing)), p.why] for p in shown]
        more = f" ({len(dataset.plans) - len(shown):,} more not shown)" if len(dataset.plans) > len(shown) else ""
        parts.append(f"<p>Columns of the table ({len(dataset.plans):,}){_e(more)}:</p>")
        parts.append(_table(["column", "role", "kind", "missing", "note"], rows, numeric={3}))
    language_model = dataset.vocabulary is not None and dataset.y.ndim == 2  # its classes are the vocabulary's tokens
    if dataset.classes is not None and not language_model:
        parts.append(_classes(exp, have_rows and dataset.y.ndim == 1))
    return "".join(parts)


def _classes(exp, counts: bool) -> str:
    import numpy as np

    classes = exp.dataset.classes
    shown = classes[:CONFUSION_CLASSES]
    more = f" ({len(classes) - len(shown):,} more not shown)" if len(classes) > len(shown) else ""
    if not counts:
        return f"<p>Classes ({len(classes):,}){_e(more)}: {_e(', '.join(map(str, shown)))}</p>"
    splits = [s for s in ("train", "val", "test") if s in exp.splits and len(exp.splits[s])]
    y = np.asarray(exp.dataset.y)
    tallies = {s: np.bincount(y[exp.splits[s]].astype(np.int64), minlength=len(classes)) for s in splits}
    rows = [[c, *(_Raw(f"{int(tallies[s][k]):,}") for s in splits)] for k, c in enumerate(shown)]
    table = _table(["class", *splits], rows, numeric=set(range(1, len(splits) + 1)))
    return f"<p>Classes ({len(classes):,}){_e(more)}, rows per split:</p>{table}"


def _timings(summary: dict | None, rows: list[dict]) -> str:
    seconds = [s for s in (metric_value(r.get("seconds")) for r in rows) if s is not None]
    pairs = []
    if summary is not None and summary.get("seconds") is not None:
        pairs.append(("wall time", f"{summary['seconds']:.2f} s (the last fit or resume, evaluation included)"))
    if seconds:
        pairs += [
            ("training, all epochs", f"{sum(seconds):.2f} s over {len(seconds)} epochs"),
            ("per epoch", f"mean {sum(seconds) / len(seconds):.3f} s, fastest {min(seconds):.3f} s, slowest {max(seconds):.3f} s"),
        ]
    if summary is not None:
        pairs.append(("versions", f"nntrain {summary.get('nntrain_version')}, numpy {summary.get('numpy_version')}"))
    return _kv(pairs) if pairs else _note("No timings yet.")


def _config(run: RunDir) -> str:
    return f"<pre>{_e(read_text(run.config_file, 'run config'))}</pre>"


def render_report(run_dir: Path, which: str = "best") -> str:
    """The report of `run_dir` as one HTML document (see the module's docstring); reads the run, writes nothing."""
    run = _open(run_dir)
    summary = read_summary(run.summary_file)
    rows = read_metrics(run.metrics_file) if run.metrics_file.is_file() else []
    from .plots.runs import Run

    shared = Run(run.path)
    exp, problem = _load(shared, which)
    name = run.path.resolve().name
    images = _Images(shared, which, exp is not None)
    sections = [
        ("overview", "Overview", _overview(run, summary, rows, exp, which)),
        ("metrics", "Final metrics", _final_metrics(summary)),
        ("curves", "Learning curves", _curves(images, rows, summary)),
    ]
    confusion = _confusion(exp, problem)
    if confusion is not None:
        sections.append(("confusion", "Confusion matrix", confusion))
    for anchor, title, kinds in (("outputs", "Outputs", OUTPUT_KINDS), ("inside", "Inside the network", INSIDE_KINDS)):
        html = images.section(kinds)
        if html:
            sections.append((anchor, title, html))
    sections += [
        ("diagnostics", "Diagnostics", _diagnostics(run, summary, images)),
        ("model", "Model", _layers(exp)),
        ("data", "Data", _data(exp, problem)),
        ("timings", "Timings", _timings(summary, rows)),
        ("config", "Config", _config(run)),
    ]
    nav = "".join(f'<a href="#{anchor}">{_e(title)}</a>' for anchor, title, _ in sections)
    body = "".join(_section(anchor, title, html) for anchor, title, html in sections)
    stamp = datetime.now().isoformat(timespec="seconds")
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(name)}: nntrain run report</title><style>{CSS}</style></head><body>"
        f"<h1>{_e(name)}</h1>"
        f'<p class="sub">nntrain run report, written {_e(stamp)} by nntrain {_e(__version__)}</p>'
        f"<nav>{nav}</nav>{body}"
        f"<footer>Run directory {_e(run.path.resolve())}. This file is self-contained: no scripts, no network.</footer>"
        "</body></html>\n"
    )
