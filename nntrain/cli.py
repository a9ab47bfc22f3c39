"""The `nntrain` command line. The only module that prints or exits.

Exit codes: 0 success; 1 a check failed (gradcheck, --fail-under/--fail-over, divergence);
2 bad usage, config, data or checkpoint; 70 internal error (a bug in nntrain); 74 an output could
not be written (disk full, read-only, permissions); 130 interrupted by SIGINT; 143 by SIGTERM.
"""

# No `from __future__ import annotations` here: typer would then evaluate every command's
# annotations from strings whenever it builds the command line (~13 ms at every start).

import gc
import json
import os
import re
import signal
import sys
import traceback
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(
    add_completion=True,
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Config-driven neural-network training on a NumPy engine.",
    context_settings={"help_option_names": ["-h", "--help"]},
)

EXIT_OK, EXIT_CHECK_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_INTERNAL = 70  # sysexits' EX_SOFTWARE; an error nntrain did not foresee is a bug, never "a check failed"
EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}

Debug = Annotated[bool, typer.Option("--debug", help="Show Python tracebacks for errors.")]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout and nothing else there.")]


def _values(*values: str):
    """Shell completion for an option that takes one of `values` (see README, Shell completion)."""
    return lambda incomplete: [v for v in values if v.startswith(incomplete)]


def _dataset_names(incomplete: str) -> list[str]:
    from .data.dataset import builtin_names

    return [name for name in builtin_names() if name.startswith(incomplete)]


def _downloadable_names(incomplete: str) -> list[str]:
    from .data.download import DOWNLOADABLE

    return [name for name in DOWNLOADABLE if name.startswith(incomplete)]


Checkpoint = Annotated[
    str, typer.Option("--checkpoint", help="best, last, or a checkpoint file.", autocompletion=_values("best", "last"))
]
Sets = Annotated[
    Optional[list[str]],
    typer.Option("--set", "-s", metavar="KEY=VALUE", help="Override a config key, e.g. --set optimizer.lr=0.01 (repeatable)."),
]


def _say(message: str, stream=None, end: str = "\n") -> None:
    """Print a line; a closed pipe (`nntrain fit ... | head`) silences output but never stops the work.

    Any other failure to write (stdout on a full disk) is exit 74, said on stderr.
    """
    stream = stream or sys.stdout
    try:
        print(message, file=stream, flush=True, end=end)
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())  # so the flush at exit does not fail again
    except OSError as e:
        from .errors import WriteError

        error = WriteError(getattr(stream, "name", "the output"), e, "printing the output")
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())  # what stays in the buffer cannot fail again at exit
        if stream is not sys.stderr:
            _say(f"error: {error}", sys.stderr)
        raise typer.Exit(error.exit_code) from None


def _err(message: str) -> None:
    _say(message, sys.stderr)


def _guard(debug: bool, action):
    """Run `action`; turn user errors into a message and exit code 2, never a traceback."""
    from .errors import NntrainError

    try:
        return action()
    except NntrainError as e:  # WriteError (a subclass) has its own code
        if debug:
            traceback.print_exc()
        _err(f"error: {e}")
        raise typer.Exit(e.exit_code) from None
    except KeyboardInterrupt:
        _err("interrupted")
        raise typer.Exit(EXIT_SIGNAL[signal.SIGINT]) from None
    except MemoryError:
        _err("error: not enough memory (a layer, a batch or the data is too large for this machine)")
        raise typer.Exit(EXIT_USAGE) from None
    except typer.Exit:
        raise
    except Exception as e:  # a bug in nntrain: say so briefly, the traceback is one flag away
        if debug:
            traceback.print_exc()
        from .errors import shorten

        _err(f"internal error (a bug in nntrain): {type(e).__name__}: {shorten(str(e), 300)} (run again with --debug for the traceback)")
        raise typer.Exit(EXIT_INTERNAL) from None


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) >= 1e-3 or value == 0 else f"{value:.3e}"
    return str(value)


class EpochReport:
    """Progress while training: one plain line per epoch, plus a live rich bar on a terminal."""

    def __init__(self, quiet: bool, stream):
        self.quiet, self.stream = quiet, stream
        self.progress = None
        self.epochs = self.epoch_now = 0

    def start(self, run, exp, epochs_done: int):
        self.epochs, self.epoch_now = exp.config.train.epochs, epochs_done + 1
        if self.quiet:
            return
        _say(f"run directory: {run.path}", self.stream)
        if self.stream.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TaskProgressColumn(),
                TimeElapsedColumn(),
                console=Console(file=self.stream),
            )
            self.progress.start()
            self.task = self.progress.add_task(self._label(), total=self.epochs, completed=epochs_done)

    def _label(self) -> str:
        return f"epoch {min(self.epoch_now, self.epochs)}/{self.epochs}"

    def epoch(self, row: dict):
        if self.quiet:
            return
        metrics = "  ".join(f"{k} {_fmt(v)}" for k, v in row.items() if k not in ("epoch", "lr", "seconds"))
        line = f"epoch {row['epoch']}/{self.epochs}  {metrics}  {row['seconds']:.2f}s"
        self.epoch_now = row["epoch"] + 1
        if self.progress is None:
            _say(line, self.stream)
        else:  # printed above the live bar, which keeps running below
            self.progress.update(self.task, completed=row["epoch"], description=self._label())
            self.progress.console.print(line, markup=False, highlight=False)

    def batch(self, done: int, total: int, loss: float):
        if self.progress is not None:
            # An exponential average keeps the live loss readable when batches are noisy.
            self.loss = loss if done == 1 else 0.9 * self.loss + 0.1 * loss
            label = f"{self._label()}  loss {_fmt(self.loss)}"
            self.progress.update(self.task, completed=self.epoch_now - 1 + done / total, description=label)

    def stop(self):
        if self.progress is not None:
            self.progress.stop()


def _print_summary(summary: dict) -> None:
    lines = [f"status: {summary['status']} after {summary['epochs_completed']}/{summary['epochs_planned']} epochs"]
    if summary.get("message"):
        lines.append(summary["message"])
    if summary.get("best_epoch"):
        lines.append(f"best {summary['monitor']}: {_fmt(summary['best_value'])} at epoch {summary['best_epoch']}")
    for split, metrics in summary.get("final", {}).items():
        lines.append(f"{split:<6}" + "  ".join(f"{k} {_fmt(v)}" for k, v in metrics.items()))
    lines.append(f"run directory: {summary['run_dir']}")
    _say("\n".join(lines))


@app.command()
def fit(
    config: Annotated[Optional[Path], typer.Argument(help="YAML config file.", show_default=False)] = None,
    set_: Sets = None,
    run_dir: Annotated[Optional[Path], typer.Option("--run-dir", help="Write the run here (must not exist).")] = None,
    runs_root: Annotated[Path, typer.Option("--runs-root", help="Where new run directories are created.")] = Path("runs"),
    weights: Annotated[Optional[Path], typer.Option("--weights", help="Start from the parameters in this .npz.")] = None,
    resume: Annotated[Optional[Path], typer.Option("--resume", help="Continue this run directory from its last checkpoint.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the final summary.")] = False,
    threads: Annotated[
        Optional[int], typer.Option("--threads", min=1, help="BLAS threads (default: what OMP/OPENBLAS/MKL_NUM_THREADS say).")
    ] = None,
    json_: Json = False,
    debug: Debug = False,
):
    """Train a network from CONFIG into a new run directory (or continue one with --resume)."""
    if threads is not None and "numpy" not in sys.modules:
        # BLAS reads these once, when numpy loads; nntrain imports numpy only below this line.
        for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[variable] = str(threads)
    from . import api
    from .train.trainer import Hooks, stop_on_signals

    if config is None and resume is None:
        _err("error: give a CONFIG file, or --resume RUN_DIR")
        raise typer.Exit(EXIT_USAGE)
    if resume is not None and (run_dir is not None or weights is not None):
        _err("error: --resume continues an existing run; it cannot take --run-dir or --weights")
        raise typer.Exit(EXIT_USAGE)
    stream = sys.stderr if json_ else sys.stdout
    report = EpochReport(quiet, stream)

    def run():
        with stop_on_signals() as stop:
            hooks = Hooks(report.start, report.epoch, report.batch, _err, stop)
            try:
                if resume is not None:
                    return api.resume(resume, set_ or [], config, hooks), stop
                return api.fit(config, set_ or [], runs_root, run_dir, weights, hooks), stop
            finally:
                report.stop()

    summary, stop = _guard(debug, run)
    if json_:
        _say(json.dumps(summary))
    else:
        _print_summary(summary)
    if summary["status"] == "diverged":
        raise typer.Exit(EXIT_CHECK_FAILED)
    if summary["status"] == "interrupted":
        raise typer.Exit(EXIT_SIGNAL.get(stop.signal, 130))


def _print_confusion(matrix: list[list[int]], classes: list[str]) -> None:
    """Rows are the true classes, columns the predicted ones."""
    width = max(6, *(len(c) for c in classes), *(len(str(v)) for row in matrix for v in row)) + 1
    _say("confusion (rows: true, columns: predicted)")
    _say(" " * width + "".join(f"{c:>{width}}" for c in classes))
    for name, row in zip(classes, matrix):
        _say(f"{name:>{width}}" + "".join(f"{v:>{width}}" for v in row))


def _threshold(items: list[str], flag: str) -> dict[str, float]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            out[name] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            _err(f"error: {flag} '{item}' must look like METRIC=NUMBER, e.g. {flag} accuracy=0.95")
            raise typer.Exit(EXIT_USAGE)
    return out


@app.command("eval")
def eval_(
    run_dir: Annotated[Path, typer.Argument(help="A run directory.", show_default=False)],
    checkpoint: Checkpoint = "best",
    split: Annotated[str, typer.Option("--split", help="train, val or test.", autocompletion=_values("train", "val", "test"))] = "test",
    data: Annotated[Optional[Path], typer.Option("--data", help="Score a labelled .csv / .npz file instead of a split.")] = None,
    fail_under: Annotated[Optional[list[str]], typer.Option("--fail-under", metavar="METRIC=VALUE", help="Exit 1 if METRIC < VALUE.")] = None,
    fail_over: Annotated[Optional[list[str]], typer.Option("--fail-over", metavar="METRIC=VALUE", help="Exit 1 if METRIC > VALUE.")] = None,
    threshold: Annotated[Optional[float], typer.Option("--threshold", help="Binary: predict the second class where its probability >= this.")] = None,
    json_: Json = False,
    debug: Debug = False,
):
    """Loss and metrics of a saved model on a split of its data, or on a file."""
    from . import api

    if split not in ("train", "val", "test"):
        _err(f"error: --split '{split}' is not one of: train, val, test")
        raise typer.Exit(EXIT_USAGE)
    _check_threshold(threshold)
    under, over = _threshold(fail_under or [], "--fail-under"), _threshold(fail_over or [], "--fail-over")
    gates = [*under, *over]
    result = _guard(debug, lambda: api.evaluate_run(run_dir, checkpoint, split, data, threshold, gates))
    failed = []
    for name, limit in [*((n, v) for n, v in under.items()), *((n, v) for n, v in over.items())]:
        if name not in result or not isinstance(result[name], float):
            allowed = [k for k, v in result.items() if isinstance(v, float)]
            _err(f"error: '{name}' is not a metric of this run; allowed: {', '.join(allowed)}")
            raise typer.Exit(EXIT_USAGE)
    # Written as "not passing" so that a NaN metric fails a gate instead of slipping through it.
    failed += [f"{n} {_fmt(result[n])} < {v:g}" for n, v in under.items() if not result[n] >= v]
    failed += [f"{n} {_fmt(result[n])} > {v:g}" for n, v in over.items() if not result[n] <= v]
    if json_:
        _say(json.dumps({**result, "failed": failed}))
    else:
        _say(f"{result['data']} ({result['samples']} samples, {result['checkpoint']} checkpoint)")
        for k, v in result.items():
            if isinstance(v, float):
                _say(f"  {k:<18} {_fmt(v)}")
        if "confusion" in result:
            _print_confusion(result["confusion"], result["classes"])
        for f in failed:
            _say(f"FAILED: {f}")
    if failed:
        raise typer.Exit(EXIT_CHECK_FAILED)


@app.command()
def sample(
    run_dir: Annotated[Path, typer.Argument(help="A run trained on a text file (data.text).", show_default=False)],
    length: Annotated[int, typer.Option("--length", "-n", help="Tokens to write after the prime.")] = 200,
    temperature: Annotated[float, typer.Option("--temperature", "-t", help="1: the model's distribution; lower: likelier tokens; 0: always the likeliest.")] = 1.0,
    prime: Annotated[str, typer.Option("--prime", help="Text the model continues (default: a line break).")] = "",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the draws: the same seed writes the same text.")] = 0,
    checkpoint: Checkpoint = "best",
    json_: Json = False,
    debug: Debug = False,
):
    """Text written by a language model: the prime, then one token at a time drawn from what the model predicts."""
    from . import api

    text = _guard(debug, lambda: api.sample(run_dir, length, temperature, prime, seed, checkpoint))
    if json_:
        _say(json.dumps({"run_dir": str(run_dir), "prime": prime, "length": length, "temperature": temperature, "seed": seed, "text": text}))
    else:
        _say(text)


@app.command()
def predict(
    run_dir: Annotated[Path, typer.Argument(help="A run directory.", show_default=False)],
    input_file: Annotated[Path, typer.Argument(help="A table (CSV, Parquet, Feather) with the feature columns.", show_default=False)],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write the predictions here instead of stdout.")] = None,
    checkpoint: Checkpoint = "best",
    threshold: Annotated[Optional[float], typer.Option("--threshold", help="Binary: predict the second class where its probability >= this.")] = None,
    json_: Annotated[bool, typer.Option("--json", help="JSON Lines: one object per row, with its line number.")] = False,
    debug: Debug = False,
):
    """Predictions for the rows of a table, in its order: class and probabilities, or values.

    Rows that cannot be scored keep their place with empty predictions (JSON: an "error"), are
    listed on stderr, and make the exit code 2.
    """
    from . import api

    from .errors import WriteError

    _check_threshold(threshold)

    def run():
        text, problems = api.predict_run(run_dir, input_file, checkpoint, threshold, json_)
        if out is None:
            _say(text, end="")
        else:
            try:
                out.write_text(text)
            except OSError as e:
                raise WriteError(out, e, "writing the predictions") from None
        return problems

    problems = _guard(debug, run)
    if problems:
        _err(f"warning: {len(problems)} row{'s' if len(problems) != 1 else ''} could not be scored:")
        for line in problems[:20]:
            _err(f"  {line}")
        if len(problems) > 20:
            _err(f"  ... and {len(problems) - 20} more")
        raise typer.Exit(EXIT_USAGE)


def _check_threshold(threshold: float | None) -> None:
    if threshold is not None and not 0 < threshold < 1:
        _err(f"error: --threshold must lie strictly between 0 and 1, got {threshold:g}")
        raise typer.Exit(EXIT_USAGE)


@app.command()
def gradcheck(
    source: Annotated[Path, typer.Argument(help="A config file or a run directory.", show_default=False)],
    set_: Sets = None,
    samples: Annotated[int, typer.Option("--samples", min=1, help="Data rows in the checked batch.")] = 8,
    eps: Annotated[float, typer.Option("--eps", help="Finite-difference step h (> 0).")] = 1e-4,
    tol: Annotated[float, typer.Option("--tol", min=0, help="Largest relative error that passes.")] = 1e-6,
    entries: Annotated[int, typer.Option("--entries", min=1, help="Entries checked per tensor at most.")] = 100,
    json_: Json = False,
    debug: Debug = False,
):
    """Compare backprop's gradients with centered finite differences, in float64."""
    from . import api

    if not eps > 0:
        _err(f"error: --eps must be > 0, got {eps:g}")
        raise typer.Exit(EXIT_USAGE)

    checks, info = _guard(debug, lambda: api.gradcheck(source, set_ or [], samples, eps, tol, entries))
    # A tensor whose every entry sat on a kink proved nothing: not a failure of backprop, but no pass either.
    ok = all(c.passed and c.kinks < c.checked for c in checks)
    if json_:
        tensors = [{**vars(c), "max_rel_error": None if c.kinks == c.checked else c.max_rel_error} for c in checks]
        _say(json.dumps({**info, "passed": ok, "tensors": tensors}))
    else:
        wide = max([20, *(len(c.name) + 1 for c in checks)])  # a recurrent layer's layers.2.weight_hh_reverse
        _say(f"{'tensor':<{wide}} {'shape':<12} {'checked':>7} {'kinks':>5} {'max rel error':>14}  result")
        for c in checks:
            shape = "x".join(map(str, c.shape))
            result = "pass" if c.passed else "FAIL"
            if c.kinks == c.checked:
                result = "not compared: every entry sat on a kink (try a smaller --eps)"
            _say(f"{c.name:<{wide}} {shape:<12} {c.checked:>7} {c.kinks:>5} {c.max_rel_error:>14.2e}  {result}")
        _say(f"{'passed' if ok else 'FAILED'}: {info['samples']} samples, eps {eps:g}, tolerance {tol:g}")
    if not ok:
        raise typer.Exit(EXIT_CHECK_FAILED)


@app.command()
def validate(
    config: Annotated[Path, typer.Argument(help="YAML config file.", show_default=False)],
    set_: Sets = None,
    debug: Debug = False,
):
    """Check a config (and its data) and print it with every default filled in."""
    from . import config as cfg
    from .train.experiment import prepare

    def check():
        c = cfg.load_config(config, set_ or [])
        exp = prepare(c, config.parent)
        plans = exp.dataset.plans
        if plans:
            from .data.columns import column_report

            features = sum(p.role == "feature" for p in plans)
            _err(f"columns ({len(plans)}; {features} features, {exp.network.in_features} inputs after encoding):")
            for line in column_report(plans):
                _err(line)
        for note in exp.dataset.notes:
            _err(f"note: {note}")
        for caution in exp.cautions:
            _err(f"caution: {caution}")
        if c.sweep is not None:  # fit ignores the section, but a check of the config covers it
            from .sweep import plan_sweep

            plan = plan_sweep(config, set_ or [], None, check_data=False)
            if plan.spec.method == "tpe":  # its trials are asked as results come: the space's corners were checked
                _err(f"sweep: tpe, up to {plan.spec.trials} trials, the search space valid")
            else:
                trials = plan.trials
                _err(f"sweep: {len(trials)} trial{'s' if len(trials) != 1 else ''}, each config valid")
        for line in _layer_table(exp.network):  # last: printed only when everything else passed
            _err(line)
        return cfg.to_yaml(c)

    _say(_guard(debug, check), end="")


LAYER_TABLE_ROWS = 50  # a deeper network shows its first and last layers (a 10,000-layer config stays readable)


def _layer_table(network) -> list[str]:
    """The network's shape after every layer and its parameter counts, as Keras' summary() shows them."""
    from .train.experiment import shape_text

    entries = network.summary()
    rows = [("layer", "type", "output shape", "params"), ("", "input", shape_text(network.in_shape), "")]
    shown = entries if len(entries) <= LAYER_TABLE_ROWS else entries[: LAYER_TABLE_ROWS - 10] + [None] + entries[-10:]
    for entry in shown:
        if entry is None:
            rows.append(("...", f"{len(entries) - LAYER_TABLE_ROWS} more layers", "", ""))
        else:
            rows.append((str(entry["layer"]), entry["type"], shape_text(entry["shape"]), f"{entry['params']:,}"))
    widths = [max(len(r[k]) for r in rows) for k in range(4)]
    lines = ["model:"]
    for r in rows:
        lines.append(f"  {r[0]:>{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]:>{widths[3]}}".rstrip())
    lines.append(f"  {sum(entry['params'] for entry in entries):,} parameters")
    return lines


@app.command()
def inspect(
    run_dir: Annotated[Path, typer.Argument(help="A run trained with train.diagnostics: true.", show_default=False)],
    epoch: Annotated[Optional[int], typer.Option("--epoch", help="Which epoch (default: the last).")] = None,
    json_: Json = False,
    debug: Debug = False,
):
    """Per-layer diagnostics of a run, with warnings when a value is in a known-bad range."""
    from .train import diagnostics

    result = _guard(debug, lambda: diagnostics.inspect(run_dir, epoch))
    if json_:
        _say(json.dumps(result))
        return
    _say(f"{result['run_dir']}: epoch {result['epoch']} (epochs {result['epochs'][0]}..{result['epochs'][1]})")
    for line in diagnostics.format_table(result["layers"]) + diagnostics.format_steps(result["steps"]):
        _say(line)
    for warning in result["warnings"] or ["no warnings"]:
        _say(f"warning: {warning}" if result["warnings"] else warning)


@app.command()
def plot(
    run_dirs: Annotated[list[Path], typer.Argument(help="Run directories (several: their learning curves overlaid).", show_default=False)],
    what: Annotated[
        Optional[list[str]],
        typer.Option("--what", "-w", metavar="KIND", help="A plot to draw (repeatable; default: every one that applies).",
                     autocompletion=lambda incomplete: _plot_kinds(incomplete)),
    ] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="The file (one plot), or a folder or FILE.png stem (several).")] = None,
    fmt: Annotated[Optional[str], typer.Option("--format", help="png, svg, or gif (boundary-epochs).", autocompletion=_values("png", "svg", "gif"))] = None,
    checkpoint: Checkpoint = "best",
    split: Annotated[Optional[str], typer.Option("--split", help="train, val or test (default: per plot, see docs/plots.md).", autocompletion=_values("train", "val", "test"))] = None,
    layer: Annotated[Optional[int], typer.Option("--layer", help="filters, features, projection: the layer's index.")] = None,
    sample: Annotated[Optional[int], typer.Option("--sample", help="features: which row of the split.")] = None,
    grid: Annotated[Optional[int], typer.Option("--grid", min=10, help="boundary: grid points per axis.")] = None,
    frames: Annotated[Optional[int], typer.Option("--frames", min=2, help="boundary-epochs: how many epochs to draw.")] = None,
    method: Annotated[Optional[str], typer.Option("--method", help="projection: pca, or tsne (with scikit-learn).", autocompletion=_values("pca", "tsne"))] = None,
    max_points: Annotated[Optional[int], typer.Option("--max-points", min=2, help="boundary, projection: rows drawn at most (2 or more).")] = None,
    terminal: Annotated[bool, typer.Option("--terminal", help="Draw the loss curves here, in text, and write no file.")] = False,
    json_: Json = False,
    debug: Debug = False,
):
    """Pictures of runs: learning curves, confusion matrix, ROC / PR, predictions, decision boundary, weights,
    filters, feature maps, diagnostics, projections. Without matplotlib, the curves in the terminal."""
    from . import api

    given = {"which": None if checkpoint == "best" else checkpoint, "split": split, "layer": layer, "sample": sample,
             "grid": grid, "frames": frames, "method": method, "max_points": max_points}  # fmt: skip
    options = {k: v for k, v in given.items() if v is not None}
    if terminal:
        if what:
            _err("error: --terminal draws the loss curves only; leave out --what")
            raise typer.Exit(EXIT_USAGE)
        text = _guard(debug, lambda: api.terminal_curves(run_dirs))
        _say(text, end="" if text.endswith("\n") else "\n")
        return
    result = _guard(debug, lambda: api.plot(run_dirs, what, out, fmt, **options))
    drawn = bool(result["files"] or result.get("text"))  # else exit 2: nothing asked for could be drawn
    if json_:
        _say(json.dumps(result))
        if not drawn:
            raise typer.Exit(EXIT_USAGE)
        return
    if result.get("text"):
        _say(result["text"], end="" if result["text"].endswith("\n") else "\n")
    for path in result["files"]:
        _say(f"wrote {path}")
    by_reason: dict[str, list[str]] = {}  # kinds that share a reason (no matplotlib: all of them) on one line
    for kind, why in result["skipped"].items():
        by_reason.setdefault(why, []).append(kind)
    for why, kinds in by_reason.items():
        _err(f"not drawn: {', '.join(kinds)}: {why}")
    if not drawn:
        raise typer.Exit(EXIT_USAGE)


def _plot_kinds(incomplete: str) -> list[str]:
    from .report.plots import KINDS

    return [kind for kind in KINDS if kind.startswith(incomplete)]


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="A run directory.", show_default=False)],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="The HTML file (default: ./<run name>-report.html).")] = None,
    checkpoint: Checkpoint = "best",
    debug: Debug = False,
):
    """One self-contained HTML page about a run: config, data, layers, curves, metrics, confusion, diagnostics."""
    from . import api

    path = _guard(debug, lambda: api.report(run_dir, out, checkpoint))
    _say(f"wrote {path}")


def _text_width(default: int = 100) -> int:
    """Columns for a plain-text table: $COLUMNS, else the terminal's width, else (a pipe, a file) `default`."""
    import shutil

    if not os.environ.get("COLUMNS", "").strip().isdigit() and not sys.stdout.isatty():
        return default  # scripts and files get the same text whatever window started them
    return max(40, shutil.get_terminal_size((default, 24)).columns)


@app.command()
def compare(
    paths: Annotated[list[Path], typer.Argument(help="Run directories or sweep directories (their trials).", show_default=False)],
    plot_file: Annotated[Optional[Path], typer.Option("--plot", help="Also draw their learning curves, overlaid, into this .png / .svg.")] = None,
    json_: Json = False,
    debug: Debug = False,
):
    """Runs side by side: the config keys that differ, final and best metrics, epochs and wall time."""
    from . import api
    from .report.compare import format_comparison

    result = _guard(debug, lambda: api.compare(paths, plot_file))
    if json_:
        _say(json.dumps(result))
        return
    _say(format_comparison(result, _text_width()))
    if plot_file is not None:
        _say(f"wrote {result['plot']}")


@app.command()
def export(
    run_dir: Annotated[Path, typer.Argument(help="A run directory.", show_default=False)],
    fmt: Annotated[str, typer.Option("--format", "-f", help="onnx (preprocessing included) or safetensors (torch.nn's keys).", autocompletion=_values("onnx", "safetensors"))],
    checkpoint: Annotated[str, typer.Option("--checkpoint", help="best or last.", autocompletion=_values("best", "last"))] = "best",
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="The file (default: ./<run name>.onnx or .safetensors).")] = None,
    json_: Json = False,
    debug: Debug = False,
):
    """The run's model for other runtimes: ONNX, or safetensors for torch.nn; a sidecar JSON beside it."""
    from . import api

    result = _guard(debug, lambda: api.export(run_dir, fmt, checkpoint, out))
    if json_:
        _say(json.dumps(result))
        return
    source = f"{result['checkpoint']} checkpoint" + (f", epoch {result['epoch']}" if result.get("epoch") is not None else "")
    if "keys" in result:  # safetensors: tensors, no inputs
        what = f"{len(result['keys'])} tensors under torch.nn.Sequential's keys"
    else:
        what = f"inputs {', '.join(result['inputs'])}; outputs {', '.join(result['outputs'])}"
    _say(f"wrote {result['path']} ({what}; {source})")
    _say(f"wrote {result['sidecar']}")


@app.command()
def sweep(
    config: Annotated[Optional[Path], typer.Argument(help="YAML config (its `sweep:` section is used too).", show_default=False)] = None,
    set_: Sets = None,
    grid: Annotated[Optional[list[str]], typer.Option("--grid", metavar="KEY=V1,V2", help="Try every value (repeatable).")] = None,
    random: Annotated[Optional[int], typer.Option("--random", min=1, help="Draw N random trials.")] = None,
    log_uniform: Annotated[Optional[list[str]], typer.Option("--log-uniform", metavar="KEY=LO:HI", help="Random: log-uniform.")] = None,
    uniform: Annotated[Optional[list[str]], typer.Option("--uniform", metavar="KEY=LO:HI", help="Random: uniform.")] = None,
    choice: Annotated[Optional[list[str]], typer.Option("--choice", metavar="KEY=A,B", help="Random: one of the values.")] = None,
    folds: Annotated[Optional[int], typer.Option("--folds", min=2, help="K-fold cross-validation per trial.")] = None,
    metric: Annotated[Optional[str], typer.Option("--metric", help="What ranks trials (default: train.monitor).")] = None,
    sweep_seed: Annotated[Optional[int], typer.Option("--sweep-seed", help="Seed of the random draws.")] = None,
    seeds: Annotated[Optional[str], typer.Option("--seeds", help="same (default: comparable trials) | per_trial.", autocompletion=_values("same", "per_trial"))] = None,
    search: Annotated[Optional[str], typer.Option("--search", help="grid | random | tpe (default: grid, random with --random).", autocompletion=_values("grid", "random", "tpe"))] = None,
    trials: Annotated[Optional[int], typer.Option("--trials", min=1, help="--search tpe: the number of trials.")] = None,
    tpe_startup: Annotated[Optional[int], typer.Option("--tpe-startup", min=0, help="--search tpe: random trials first (default 10).")] = None,
    prune: Annotated[Optional[str], typer.Option("--prune", help="none | median | asha: stop bad trials early.", autocompletion=_values("none", "median", "asha"))] = None,
    prune_warmup: Annotated[Optional[int], typer.Option("--prune-warmup", min=0, help="median: epochs never pruned (default 1).")] = None,
    prune_startup: Annotated[Optional[int], typer.Option("--prune-startup", min=1, help="median: completed runs before any pruning (default 3).")] = None,
    prune_min_epochs: Annotated[Optional[int], typer.Option("--prune-min-epochs", min=1, help="asha: the first rung's epoch (default 1).")] = None,
    prune_factor: Annotated[Optional[int], typer.Option("--prune-factor", min=2, help="asha: each rung keeps the best 1/N (default 3).")] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="Trials run at once, in worker processes.")] = 1,
    executor: Annotated[str, typer.Option("--executor", help="local (this machine) | ray (a Ray cluster, with the ray extra).", autocompletion=_values("local", "ray"))] = "local",
    address: Annotated[Optional[str], typer.Option("--address", metavar="HOST:PORT|auto", help="--executor ray: the cluster (default: a local one).")] = None,
    cpus_per_trial: Annotated[Optional[float], typer.Option("--cpus-per-trial", min=0, help="--executor ray: CPUs each run reserves.")] = None,
    runs_root: Annotated[Path, typer.Option("--runs-root", help="Where the sweep directory is created.")] = Path("runs"),
    sweep_dir: Annotated[Optional[Path], typer.Option("--sweep-dir", help="Write the sweep here (must not exist).")] = None,
    resume: Annotated[Optional[Path], typer.Option("--resume", help="Continue this sweep directory.")] = None,
    top: Annotated[Optional[int], typer.Option("--top", min=1, help="Show only the N best trials.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate and list the trials; run nothing.")] = False,
    json_: Json = False,
    debug: Debug = False,
):
    """Hyper-parameter search: grid, random or TPE trials, optionally cross-validated and pruned, ranked in a leaderboard."""
    from . import sweep as sweeps

    def options():
        return sweeps.sweep_options(
            grid=grid or (), random=random, log_uniform=log_uniform or (), uniform=uniform or (),
            choice=choice or (), folds=folds, metric=metric, seed=sweep_seed, seeds=seeds, search=search, trials=trials,
            tpe_startup=tpe_startup, prune=prune, prune_warmup=prune_warmup, prune_startup=prune_startup,
            prune_min_epochs=prune_min_epochs, prune_factor=prune_factor,
        )

    if dry_run:
        plan = _guard(debug, lambda: sweeps.plan_sweep(config, set_ or [], options(), log=_err))
        planned = plan.to_dict()["trials"]
        if json_:
            _say(json.dumps(planned))
        elif plan.spec.method == "tpe":  # no trials before results come
            _say(f"tpe: {plan.spec.trials} trials, asked as results come, over {', '.join(plan.spec.swept_keys())}")
        else:
            for trial in planned:
                _say(f"{trial['name']}  {' '.join(trial['overrides']) or '(base config)'}")
        return

    def run():
        hooks = sweeps.SweepHooks(
            on_run_end=lambda task, row: _err(
                f"{task.name}: {row.get('status')} {_fmt(row.get('value'))}"
                + (f" ({row['message']})" if row.get("status") == "pruned" and row.get("message") else "")
            ),
            log=_err,
        )
        spec = options()  # with --resume any sweep option is refused: the sweep is sweep.yaml's
        remote = {"address": address, "cpus_per_trial": cpus_per_trial, "jobs": jobs}
        return sweeps.run_sweep(
            config, set_ or [], spec, runs_root=runs_root, sweep_dir=sweep_dir, jobs=jobs, resume=resume, hooks=hooks,
            executor_kind=executor, executor_options={k: v for k, v in remote.items() if v is not None},
        )

    result = _guard(debug, run)
    if json_:
        _say(json.dumps(result))
    else:
        _say(sweeps.format_leaderboard(result, top))
        _say(f"sweep directory: {result['sweep_dir']}")
    if result["status"] == "interrupted":
        raise typer.Exit(EXIT_SIGNAL.get(result.get("signal"), 130))
    if result["counts"].get("failed"):
        raise typer.Exit(EXIT_CHECK_FAILED)


@app.command()
def schema():
    """Print the JSON Schema of the config file, for editors."""
    from .config import json_schema

    _say(json.dumps(json_schema(), indent=2))


datasets_app = typer.Typer(
    invoke_without_command=True,
    rich_markup_mode=None,
    help="List the built-in datasets; `show` one, or `download` one.",
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(datasets_app, name="datasets")


@datasets_app.callback()
def datasets(ctx: typer.Context, json_: Json = False):
    """List the built-in datasets: generated ones with their options, bundled files, downloadable sets."""
    if ctx.invoked_subcommand is not None:
        return
    from .data.catalog import catalog

    listing = catalog()
    if json_:
        _say(json.dumps(listing, indent=2))
        return
    for kind, title in [("generated", "Generated"), ("bundled", "Bundled"), ("downloadable", "Downloadable")]:
        _say(f"{title}:")
        for name, info in listing.items():
            if info["kind"] != kind:
                continue
            if kind == "generated":
                detail = ", ".join(f"{k}={v}" for k, v in info["options"].items())
            elif kind == "bundled":
                detail = f"{info['rows']} rows x {info['features']} features"
            else:
                detail = info["status"]
            _say(f"  {name:<14} {info['task']:<15} {detail}")
            _say(f"  {'':<14} {info['description']}")
    _say("\nA .csv / .csv.gz / .npz path, or {X: file.npy, y: file.npy}, works as data.dataset too.")


@datasets_app.command("show")
def datasets_show(
    name: Annotated[str, typer.Argument(help="A built-in dataset name.", show_default=False, autocompletion=_dataset_names)],
    set_: Annotated[
        Optional[list[str]], typer.Option("--set", "-s", metavar="OPTION=VALUE", help="A generator option, e.g. --set samples=500.")
    ] = None,
    json_: Json = False,
    debug: Debug = False,
):
    """Rows, features, classes and their balance, and feature ranges of a built-in dataset."""
    from . import config as cfg
    from . import safe_yaml
    from .data.catalog import describe
    from .train.experiment import seed_streams

    raw_options = {}
    for item in set_ or []:
        key, sep, value = item.partition("=")
        if not sep:
            _err(f"error: --set '{item}' must look like OPTION=VALUE, e.g. --set samples=500")
            raise typer.Exit(EXIT_USAGE)
        raw_options[key] = value

    def show():
        options = {key: safe_yaml.parse_value(value, f"--set {key}: the value") for key, value in raw_options.items()}
        # Validated as data.options would be; generated with seed 0's data stream, as `seed: 0` trains on.
        options = cfg.validate_dataset_options(name, options)
        return describe(name, options, seed_streams(0)["data"])

    info = _guard(debug, show)
    if json_:
        _say(json.dumps(info))
        return
    _say(f"{info['name']}: {info['rows']} rows, {info['features']} features, {info['task']}")
    for key in ("sample_shape", "parts"):
        if key in info:
            _say(f"{key}: {info[key]}")
    if "classes" in info:
        _say("classes:")
        total = sum(info["classes"].values())  # rows, or steps for a class per step
        for label, count in info["classes"].items():
            _say(f"  {label:<14} {count:>7}  ({count / total:.1%})")
    else:
        _say(f"target range: {_fmt(info['target_range'][0])} .. {_fmt(info['target_range'][1])}")
    ranges = list(info["feature_ranges"].items())
    _say("feature ranges:")
    for feature, (lo, hi) in ranges[:20]:
        _say(f"  {feature:<20} {_fmt(lo):>10} .. {_fmt(hi)}")
    if len(ranges) > 20:
        low, high = min(r[0] for _, r in ranges), max(r[1] for _, r in ranges)
        _say(f"  ... {len(ranges) - 20} more; all features lie in {_fmt(low)} .. {_fmt(high)}")


@datasets_app.command("download")
def datasets_download(
    name: Annotated[str, typer.Argument(help="mnist or fashion_mnist.", show_default=False, autocompletion=_downloadable_names)],
    dir_: Annotated[Optional[Path], typer.Option("--dir", help="Cache folder (default: $NNTRAIN_DATA or ~/.cache/nntrain).")] = None,
    mirror: Annotated[Optional[list[str]], typer.Option("--mirror", metavar="URL", help="Base URL to fetch from instead (repeatable).")] = None,
    debug: Debug = False,
):
    """Download a dataset's files into the cache, verifying every file's SHA-256."""
    from .data import download

    folder = _guard(debug, lambda: download.download(name, dir_, mirror or None, log=_err))
    _say(f"{name} is ready in {folder}")


# The config keys that `datasets convert` takes as options, in the messages of the column guards.
_CONVERT_OPTIONS = {"data.columns.ignore": "--ignore", "data.columns.id": "--id", "data.columns.categorical": "--categorical",
                    "data.target": "--target", "data.missing": "--missing"}


def _as_convert_options(message: str) -> str:
    """A data error's message with the config keys that convert has as options named by those options."""
    message = re.sub(r"^data\.columns: ", "", message)  # the key of a guard's refusal; the text says what to do
    message = re.sub(r"\bdata\.(?:columns\.(?:ignore|id|categorical)|target|missing)\b", lambda m: _CONVERT_OPTIONS[m[0]], message)
    # A guard's hint, "list 'c' in --ignore (or make it --id), or in --categorical to ...", as options to give.
    message = re.sub(r"list '([^']*)' in --ignore \(or make it --id\)", r"give --ignore '\1' (or --id '\1')", message)
    message = re.sub(r"(--ignore '([^']*)' \(or --id '[^']*'\)), or in --categorical", r"\1, or --categorical '\2'", message)
    return message.replace(
        ", or in data.columns.features if it is meant as a feature",
        " (a feature it can only be when a config reads the table itself, with data.columns.features)",
    )


@datasets_app.command("convert")
def datasets_convert(
    input_file: Annotated[Path, typer.Argument(help="A table file (CSV, CSV.gz, Parquet, Feather).", show_default=False)],
    out_dir: Annotated[Path, typer.Argument(help="Folder for X.npy, y.npy and features.json.", show_default=False)],
    target: Annotated[Optional[str], typer.Option("--target", help="The target column (default: the last).")] = None,
    id_: Annotated[Optional[str], typer.Option("--id", help="An ID column (left out).")] = None,
    ignore: Annotated[Optional[list[str]], typer.Option("--ignore", metavar="COLUMN", help="Leave this column out (repeatable).")] = None,
    categorical: Annotated[Optional[list[str]], typer.Option("--categorical", metavar="COLUMN", help="One-hot encode this column (repeatable).")] = None,
    missing: Annotated[str, typer.Option("--missing", help="error | drop: rows with a missing cell.", autocompletion=_values("error", "drop"))] = "error",
    delimiter: Annotated[Optional[str], typer.Option("--delimiter", help="CSV delimiter (default: detected).")] = None,
    dtype: Annotated[str, typer.Option("--dtype", help="float32 | float64 for X.npy.", autocompletion=_values("float32", "float64"))] = "float32",
    debug: Debug = False,
):
    """Convert a table, however large, into X.npy / y.npy, which train batch by batch from disk.

    The file is read twice, a batch at a time, so memory stays bounded whatever its size.
    """
    from .data.columns import Roles
    from .data.convert import convert

    for option, value, allowed in (("--missing", missing, ("error", "drop")), ("--dtype", dtype, ("float32", "float64")),
                                   ("--delimiter", delimiter, (None, ",", ";", "\t", "|"))):
        if value not in allowed:
            _err(f"error: {option} '{value}' is not one of: {', '.join(a for a in allowed if a)}")
            raise typer.Exit(EXIT_USAGE)
    roles = Roles(ignore=list(ignore or []), id=id_, categorical=list(categorical or []))

    def run():
        from .errors import NntrainError

        try:
            return convert(input_file, out_dir, target, roles, missing, delimiter, dtype)
        except NntrainError as e:  # the column guards speak of config keys; here they are options
            raise NntrainError(_as_convert_options(str(e))) from None

    result = _guard(debug, run)
    from .data.columns import column_report

    _err(f"columns ({len(result['plans'])}):")
    for line in column_report(result["plans"]):
        _err(line)
    _say(f"wrote {result['rows']} rows x {len(result['features'])} inputs to {out_dir}; train on them with:")
    _say("data:")
    _say(f"  dataset: {{X: {result['X']}, y: {result['y']}}}")


def main():
    # A path given in bytes that are not UTF-8 reaches Python as surrogates; echoing it must not fail.
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    try:
        app()
    finally:
        # At exit the interpreter runs a full garbage collection over every object the imports made
        # (pydantic's, numpy's, typer's): ~45 ms of a quick command like `validate`, for memory the
        # process is about to hand back anyway. Frozen objects are left out of it; nntrain closes its
        # files itself, so no finalizer is needed at exit.
        gc.freeze()


if __name__ == "__main__":
    main()
