"""Run comparison (`nntrain compare RUN RUN...`): config differences and metrics, side by side.

    from nntrain.report.compare import compare_runs, format_comparison
    result = compare_runs([Path("runs/a"), Path("runs/b"), Path("runs/quickstart-sweep-...")])
    print(format_comparison(result))

Each path is a run directory (it holds config.yaml, and once training ends summary.json) or a
sweep directory (it holds sweep.yaml), which stands for its trials' run directories in trial
order. For every run the result holds its status, epochs, wall time, the best epoch with the
monitored value and that epoch's row of metrics.csv, and the final metrics per split of
summary.json. "differences" maps each dotted config key (`model.layers.0.units`, as `--set`
takes it) whose value is not the same in every run to the value in each run; keys equal in
every run are left out.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from .. import config as cfg
from .. import safe_yaml
from ..errors import NntrainError
from ..train.rundir import RunDir, metric_value, read_metrics, read_summary, refuse_inside_run

RUN_DIRECTORY = (
    "a run directory holds config.yaml, metrics.csv, summary.json and checkpoints/ (nntrain fit writes one);"
    " a sweep directory holds sweep.yaml, sweep.csv and its trials' run directories"
)
SPLITS = ("train", "val", "test")
_NOT_METRICS = ("epoch", "lr", "seconds")  # metrics.csv columns that are not a split's metric


def flatten(value, prefix: str = "") -> dict:
    """Nested mappings and lists as {dotted key: leaf value}: {"model": {"layers": [{"units": 8}]}} ->
    {"model.layers.0.units": 8}, the keys `--set` takes. An empty mapping or list is a leaf."""
    if isinstance(value, dict) and value:
        items = value.items()
    elif isinstance(value, list) and value:
        items = enumerate(value)
    else:
        return {prefix: value} if prefix else {}
    out = {}
    for key, entry in items:
        out.update(flatten(entry, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _not_a_run(path: Path, why: str) -> NntrainError:
    return NntrainError(f"'{path}' is not a run or sweep directory ({why}): {RUN_DIRECTORY}")


def expand(paths: list[Path]) -> tuple[list[Path], list[str]]:
    """The run directories `paths` stand for (a sweep directory: its trials'), and notes on what was left out.

    NntrainError naming the first path that is neither a run nor a sweep directory.
    """
    from ..sweep import load_plan

    runs, notes = [], []
    for path in map(Path, paths):
        try:
            is_dir = os.path.isdir(path)
        except ValueError:  # an embedded NUL character
            is_dir = False
        if not is_dir:
            exists = os.path.lexists(str(path).replace("\0", ""))
            raise _not_a_run(path, "not a directory" if exists else "no such directory")
        if os.path.isfile(path / "sweep.yaml"):
            plan = load_plan(path)
            found = 0
            for trial in plan.trials:
                for run in trial.runs:
                    if os.path.isfile(path / run.dir / "config.yaml"):
                        runs.append(path / run.dir)
                        found += 1
                    else:
                        notes.append(f"{path / run.dir}: not started yet (no config.yaml); left out")
            if not found:
                raise NntrainError(
                    f"sweep directory '{path}' has no trial run directory yet; run it with `nntrain sweep --resume {path}`"
                )
            continue
        try:
            RunDir.open(path)
        except NntrainError:
            raise _not_a_run(path, "no config.yaml or sweep.yaml") from None
        runs.append(path)
    return runs, notes


def _names(paths: list[Path]) -> list[str]:
    """Each run's directory name; where two different runs share one, with as many parent folders as tell them apart."""
    resolved = [p.resolve() for p in paths]
    unique = list(dict.fromkeys(resolved))  # the same run given twice keeps one name
    depth = {p: 1 for p in unique}
    name = lambda p: "/".join(p.parts[max(1, len(p.parts) - depth[p]) :])
    for _ in range(max((len(p.parts) for p in unique), default=0)):
        taken: dict[str, list[Path]] = {}
        for p in unique:
            taken.setdefault(name(p), []).append(p)
        clashes = [p for group in taken.values() if len(group) > 1 for p in group if depth[p] < len(p.parts) - 1]
        if not clashes:
            break
        for p in clashes:
            depth[p] += 1
    return [name(p) for p in resolved]


def run_info(path: Path, name: str) -> dict:
    """One run's row of the comparison (JSON-ready), from its summary.json, metrics.csv and config.yaml."""
    run = RunDir.open(path)
    config = safe_yaml.read(run.config_file, "run config")
    if not isinstance(config, dict):
        raise NntrainError(f"'{run.config_file}' is not a run config (not a mapping)")
    summary = read_summary(run.summary_file)
    rows = read_metrics(run.metrics_file) if run.metrics_file.is_file() else []
    train = config.get("train") if isinstance(config.get("train"), dict) else {}
    monitor = (summary or {}).get("monitor") or train.get("monitor") or "val_loss"
    epoch_seconds = [s for s in (metric_value(r.get("seconds")) for r in rows) if s is not None]
    if summary is not None:
        status, epochs = summary.get("status"), summary.get("epochs_completed")
        best_epoch, best_value = summary.get("best_epoch"), summary.get("best_value")
        final = summary.get("final") or {}
    else:  # still training, or killed: what metrics.csv says so far
        status, epochs, final = None, len(rows), {}
        scored = [(v, int(r["epoch"])) for r in rows if (v := metric_value(r.get(monitor))) is not None and math.isfinite(v)]
        best_value, best_epoch = (max(scored) if cfg.higher_is_better(monitor) else min(scored)) if scored else (None, None)
        if scored:  # the first epoch that reached the best value, as the trainer records it
            best_epoch = min(e for v, e in scored if v == best_value)
    best_row = next((r for r in rows if best_epoch is not None and int(r["epoch"]) == best_epoch), None)
    best_metrics = {k: metric_value(v) for k, v in (best_row or {}).items() if k not in _NOT_METRICS}
    return {
        "name": name,
        "path": str(path),
        "status": status,
        "message": (summary or {}).get("message"),
        "epochs": epochs,
        "epochs_planned": (summary or {}).get("epochs_planned", train.get("epochs")),
        "seconds": (summary or {}).get("seconds"),
        "epoch_seconds": round(sum(epoch_seconds), 3) if epoch_seconds else None,
        "monitor": monitor,
        "higher_is_better": cfg.higher_is_better(monitor),
        "best_epoch": best_epoch,
        "best_value": best_value,
        "best_metrics": best_metrics,
        "final_parameters": (summary or {}).get("final_parameters"),
        "final": {s: final[s] for s in SPLITS if isinstance(final.get(s), dict)},
        "config": config,
    }


def compare_runs(paths: list[Path]) -> dict:
    """The comparison of the runs `paths` stand for, in the order given (see the module's docstring).

    {"runs": [{name, path, status, message, epochs, epochs_planned, seconds (summary.json: the
    last invocation's wall time), epoch_seconds (the sum of metrics.csv's epoch times), monitor,
    higher_is_better, best_epoch, best_value, best_metrics (metrics.csv's row of the best epoch),
    final_parameters, final {split: {metric: value}}}, ...], "differences": {dotted key: [value per
    run]}, "absent": {dotted key: [indices of runs whose config lacks it]}, "notes": [...]}.
    Absent values are null in "differences". NntrainError for a path that is neither a run nor a
    sweep directory, and for fewer than 2 runs.
    """
    runs, notes = expand(paths)
    if len(runs) < 2:
        given = ", ".join(f"'{p}'" for p in paths) or "nothing"
        raise NntrainError(f"compare needs at least 2 runs; {given} gave {len(runs)}")
    infos = [run_info(path, name) for path, name in zip(runs, _names(runs))]
    for info in infos:
        if info["status"] is None:
            notes.append(
                f"{info['path']}: no summary.json (still training, or stopped by a kill); epochs and best value from metrics.csv"
            )
    flats = [flatten(info.pop("config")) for info in infos]
    keys = _merged_order(flats)
    missing = object()
    differences, absent = {}, {}
    for key in keys:
        values = [flat.get(key, missing) for flat in flats]
        if all(_same(values[0], v) for v in values[1:]):
            continue
        differences[key] = [None if v is missing else v for v in values]
        lacking = [i for i, v in enumerate(values) if v is missing]
        if lacking:
            absent[key] = lacking
    return {"runs": infos, "differences": differences, "absent": absent, "notes": notes}


def _merged_order(flats: list[dict]) -> list[str]:
    """Every key of the runs' flat configs, each run's keys in their config order: a key only some
    runs have (a fourth layer) comes right after the key before it in the first run that has it."""
    order: list[str] = []
    for flat in flats:
        at = 0
        for key in flat:
            if key in order:
                at = order.index(key) + 1
            else:
                order.insert(at, key)
                at += 1
    return order


def _same(a, b) -> bool:
    """Equal as config values: 1 and 1.0 are the same number, True and 1 are not."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b


# --- the terminal table ------------------------------------------------------------------

CELL = 14  # widest value cell; longer values are cut in the middle


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    if limit <= 3:
        return text[:limit]
    keep = limit - 3
    return text[: (keep + 1) // 2] + "..." + text[len(text) - keep // 2 :]


def _value(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def _metric(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return f"{value:.4f}" if isinstance(value, float) else _value(value)


def _grid(rows: list[list[str]], right: set[int] = frozenset()) -> list[str]:
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
    out = []
    for r in rows:
        cells = [c.rjust(w) if k in right else c.ljust(w) for k, (c, w) in enumerate(zip(r, widths))]
        out.append("  " + "  ".join(cells).rstrip())
    return out


def _side_by_side(title: str, labels: list[str], cells: list[list[str]], n: int, width: int) -> list[str]:
    """A table with a row per label and a column per run (1..n), in blocks of columns that fit `width`."""
    if not labels:
        return []
    label_width = min(max(len(x) for x in labels), max(20, width // 3))
    labels = [_cut(x, label_width) for x in labels]
    cells = [[_cut(c, CELL) for c in row] for row in cells]
    col = [max(len(str(j + 1)), *(len(row[j]) for row in cells)) for j in range(n)]
    lines = [title]
    start = 0
    while start < n:
        used, stop = 2 + label_width, start
        while stop < n and (stop == start or used + 2 + col[stop] <= width):
            used += 2 + col[stop]
            stop += 1
        if start or stop < n:
            lines.append(f"  runs {start + 1}-{stop} of {n}:" if stop - start > 1 else f"  run {start + 1} of {n}:")
        header = ["", *(str(j + 1) for j in range(start, stop))]
        body = [[label, *row[start:stop]] for label, row in zip(labels, cells)]
        lines += _grid([header, *body], right=set(range(1, stop - start + 1)))
        start = stop
    return lines


def format_comparison(result: dict, width: int = 100) -> str:
    """A plain-text report of compare_runs' result for the terminal, `width` columns wide.

    The runs are numbered, each with its status, epochs, best monitored value (at epoch) and
    wall time (summary.json's seconds); the config differences and the metrics are tables with a column
    per run number (wrapped into blocks when the runs do not fit side by side). Values longer
    than 14 characters are cut in the middle.
    """
    runs = result["runs"]
    n = len(runs)
    lines = [f"runs ({n}):"]
    rows = [["#", "run", "status", "epochs", "best (epoch)", "time"]]
    for j, r in enumerate(runs, 1):
        epochs = "-" if r["epochs"] is None else str(r["epochs"])
        if r["epochs"] is not None and r["epochs_planned"]:
            epochs += f"/{r['epochs_planned']}"
        best = "-" if r["best_value"] is None else f"{r['monitor']} {_metric(r['best_value'])} ({r['best_epoch']})"
        seconds = "-" if r["seconds"] is None else f"{r['seconds']:.2f}s"
        rows.append([str(j), r["name"], r["status"] or "no summary", epochs, best, seconds])
    fixed = sum(max(len(row[k]) for row in rows) for k in (0, 2, 3, 4, 5)) + 2 + 2 * 5
    room = max(20, width - fixed)
    for row in rows[1:]:
        row[1] = _cut(row[1], room)
    lines += _grid(rows, right={0, 5})

    diffs = result["differences"]
    absent = result.get("absent", {})
    lines.append("")
    if diffs:
        cells = [
            ["(absent)" if j in absent.get(key, ()) else _value(v) for j, v in enumerate(values)]
            for key, values in diffs.items()
        ]
        title = f"config differences ({len(diffs)} key{'s' if len(diffs) != 1 else ''}):"
        lines += _side_by_side(title, list(diffs), cells, n, width)
    else:
        lines.append("config differences: none (every run has the same config)")

    best_keys = list(dict.fromkeys(k for r in runs for k in r["best_metrics"]))
    if best_keys:
        cells = [[_metric(r["best_metrics"].get(k)) for r in runs] for k in best_keys]
        lines.append("")
        lines += _side_by_side("at the best epoch (metrics.csv):", best_keys, cells, n, width)

    final_keys = list(dict.fromkeys((s, m) for s in SPLITS for r in runs for m in r["final"].get(s, {})))
    lines.append("")
    if final_keys:
        cells = [[_metric(r["final"].get(s, {}).get(m)) for r in runs] for s, m in final_keys]
        lines += _side_by_side("final (summary.json):", [f"{s} {m}" for s, m in final_keys], cells, n, width)
    else:
        lines.append("final: no run has final metrics yet")
    for note in result.get("notes", []):
        lines.append(f"note: {note}")
    return "\n".join(lines)


def plot_comparison(result: dict, out: Path) -> Path:
    """The runs' learning curves overlaid (`compare --plot FILE`), written to `out`: PNG or SVG by its suffix.

    NntrainError for another suffix, a path inside one of the runs (nntrain writes into a run only
    to train it) or without matplotlib (saying how to install it).
    """
    from ..fileio import atomic_write
    from . import plots

    out = Path(out)
    fmt = out.suffix.lower().lstrip(".")
    if fmt not in ("png", "svg"):
        raise NntrainError(f"'{out}': the plot is written as .png or .svg (by the file's suffix)", "--plot")
    runs = [Path(r["path"]) for r in result["runs"]]
    refuse_inside_run(out, runs, "--plot")
    figure = plots.render(runs, "curves", fmt)
    atomic_write(out, figure.content, "writing the plot")
    return out
