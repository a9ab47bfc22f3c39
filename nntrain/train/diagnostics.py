"""Training diagnostics: per-epoch, per-layer numbers that show why a network does not learn.

With `train.diagnostics: true` the trainer keeps a `Diagnostics` object and the run
directory gets `diagnostics.csv`: one row per layer of `model.layers` and per finished
epoch, with

    epoch               the finished epoch (1, 2, ...), as in metrics.csv
    layer               the layer's index in model.layers (the i of the checkpoint key layers.<i>.weight)
    type                the layer's registered name: linear, relu, sigmoid, ...
    weight_norm         ||W||_2 (Frobenius) of the layer's weights at the end of the epoch: its `weight`
                        parameter, or all its `weight_*` ones as one vector (a recurrent layer's
                        weight_ih and weight_hh); blank for layers without (activations, dropout, ...)
    grad_norm           mean over the epoch's optimizer steps of ||dL/dW||_2, measured after backward
                        (and the l1/l2 penalty gradients) but before gradient clipping and before
                        the optimizer's own weight decay, so clipping does not hide an explosion
    update_ratio        mean over sampled optimizer steps of ||W_after - W_before||_2 / ||W_before||_2:
                        exact per step; by default the first UPDATE_SAMPLE_STEPS steps of each
                        epoch are measured (each costs one copy of W into a buffer allocated
                        once), `update_samples=None` measures every step
    dead_fraction       activations whose units can die (a layer's `dies`: relu, leaky_relu):
                        fraction of units whose output is <= 0 for every sample of the probe
                        batch (for leaky_relu: always on the negative side); a unit is one
                        output position (a feature, or one channel at one pixel)
    saturated_fraction  activations that saturate (a layer's `saturates`: sigmoid outside
                        (0.01, 0.99), tanh outside (-0.99, 0.99)): fraction of units saturated
                        for at least 99% of the probe samples
    activation_mean     mean of the layer's output over all probe samples and units
    activation_std      standard deviation (ddof 0) of the same values

The probe batch is fixed for the whole run (see `probe_batch`: up to PROBE_ROWS rows spread
evenly over the validation split, or the training split when there is no validation); the
activation columns come from one eval-mode pass over it at the end of each epoch. That pass
runs every layer of model.layers, including an output activation the loss fuses (softmax
before cross_entropy, sigmoid before binary_cross_entropy), draws no random numbers and
changes no buffers, so a run with diagnostics trains exactly as one without.

Per optimizer step the cost is one dot product per weight matrix (the gradient norm), plus,
on sampled steps only, one copy and one subtraction of each weight matrix. Per epoch it is
one forward pass over the probe batch.

For a network that takes sequences (samples of shape (steps, features), not token ids) the run
directory also gets `diagnostics_steps.csv`: per epoch and per step t, `input_grad_norm`, the
root mean square of ||dL/dx_t|| over the probe rows that have a step t (all of them without
`lengths`; nan where none has), the gradient of the loss with respect to
that step of the input, from one eval-mode forward and backward pass over the probe batch
(with its targets) at the end of the epoch. Where it is orders of magnitude smaller at the
first steps than at the last, what happened early in a sequence barely reaches the loss: the
gradient vanishes over time. That pass overwrites the parameters' gradients, which the next
training step assigns anew, so training is still exactly as without diagnostics.

`read_diagnostics(run_dir)` reads the file back, `report(rows, epoch)` picks one epoch and
adds plain-language warnings for values in known-bad ranges, `format_table` lays the table
out for a terminal, `inspect(run_dir, epoch)` does all of it and returns a JSON-ready dict.

Warnings (thresholds: the named constants below):
    dead_fraction > DEAD_FRACTION_WARN                       relu / leaky_relu layers
    saturated_fraction > SATURATED_FRACTION_WARN             hidden sigmoid / tanh layers (not the last layer)
    update_ratio > UPDATE_RATIO_HIGH or < UPDATE_RATIO_LOW   weight matrices (not batch/layer norm scales);
                                                             with grad_norm 0 the message says no gradient arrives
    first / last weight matrix grad_norm beyond GRAD_RATIO_WARN either way: exploding / vanishing gradients
    a non-finite weight_norm or grad_norm: diverged
    sequences: the first step's input_grad_norm below 1 / GRAD_RATIO_WARN of the last step's: vanishing over time
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from ..engine.layers import LAYERS, Layer
from ..errors import NntrainError
from ..fileio import LineLog
from .rundir import csv_text, read_csv

DIAGNOSTICS_FILE = "diagnostics.csv"
STEPS_FILE = "diagnostics_steps.csv"  # sequence inputs: the gradient reaching each step
STEP_COLUMNS = ["epoch", "step", "input_grad_norm"]
COLUMNS = [
    "epoch",
    "layer",
    "type",
    "weight_norm",
    "grad_norm",
    "update_ratio",
    "dead_fraction",
    "saturated_fraction",
    "activation_mean",
    "activation_std",
]
FLOAT_COLUMNS = COLUMNS[3:]

# ---------------------------------------------------------------- measurement rules

# Probe batch: enough rows that "dead for every sample" and "saturated for 99% of samples"
# mean something, few enough that the extra forward pass per epoch costs next to nothing.
PROBE_ROWS = 256
# update_ratio is measured exactly on the first this-many optimizer steps of each epoch
# (fewer when the epoch has fewer steps); see Diagnostics(update_samples=...).
UPDATE_SAMPLE_STEPS = 10
# Which activations die or saturate, and where, is declared on the layer classes (`dies`,
# `saturates`: e.g. sigmoid outside (0.01, 0.99), tanh outside (-0.99, 0.99), where the local
# gradient is below ~0.01-0.02, so almost nothing flows back through the unit).
# A unit counts as saturated when it is saturated on at least this fraction of the probe
# samples (not 100%: one unusual sample should not make a stuck unit look alive).
SATURATED_SAMPLES = 0.99

# ---------------------------------------------------------------- warning thresholds

# More than this fraction of a relu layer's units dead: that part of the layer no longer
# learns (its gradient is zero for every sample). A few dead units are normal; half is not.
DEAD_FRACTION_WARN = 0.5
# More than this fraction of a hidden sigmoid/tanh layer's units saturated: gradients through
# the layer are mostly ~0. Output layers are not warned about: a confident classifier's
# sigmoid output is near 0 or 1 on purpose.
SATURATED_FRACTION_WARN = 0.3
# Update/weight ratio per step: ~1e-3 is the usual healthy value (CS231n). Above
# UPDATE_RATIO_HIGH each step rewrites a tenth of the weights' size or more: the learning
# rate is too high. Below UPDATE_RATIO_LOW the weights barely move: the learning rate is too
# low or the gradients have vanished (or the loss has already converged to ~0).
UPDATE_RATIO_HIGH = 1e-1
UPDATE_RATIO_LOW = 1e-5
# Ratio of the first and the last weight matrix's mean gradient norm beyond which gradients
# explode (first >> last) or vanish (first << last) on the way back through the network.
# Layer sizes alone explain factors of 10-100; three orders of magnitude do not.
GRAD_RATIO_WARN = 1e3


def _layer_class(name: str):
    """The class a row's `type` names (rows are read back from diagnostics.csv), or the plain Layer."""
    return LAYERS.get(name, Layer)


def _is_scale(name: str) -> bool:
    """A layer whose `weight` is a per-feature scale (batch_norm, layer_norm), not a weight matrix: its norms
    and ratios are reported but left out of the weight-ratio warnings, whose healthy ranges are those of weights."""
    return "weight" in _layer_class(name).scales


def _saturation_text(low: float, high: float) -> str:
    return f"|y| > {high:g}" if low == -high else f"< {low:g} or > {high:g}"


def _norm(*arrays: np.ndarray) -> float:
    """||a||_2 over all entries of the arrays together, without a temporary of their size (BLAS dots of flat views)."""
    return math.sqrt(sum(float(np.dot(flat, flat)) for flat in (a.reshape(-1) for a in arrays)))


def weight_names(layer) -> list[str]:
    """A layer's weights as torch names them: `weight`, or `weight_*` (a recurrent layer's weight_ih, weight_hh, ...).

    Its norms are those of all of them together, as one vector."""
    return [name for name in layer.params if name == "weight" or name.startswith("weight_")]


def probe_batch(exp, rows: int = PROBE_ROWS) -> np.ndarray:
    """The probe X of an Experiment (see `probe_rows`)."""
    return probe_rows(exp, rows)[0]


def probe_rows(exp, rows: int = PROBE_ROWS) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The probe (X, encoded targets, sequence lengths or None) of an Experiment: up to `rows` rows of the val split
    (train when val is empty).

    Rows are spread evenly over the split (positions 0 .. n-1), so a split read from a file
    sorted by class still gives a mixed probe. Deterministic, draws no random numbers, and
    reads only those rows when the data stays on disk. X is scaled as the network sees it.
    """
    split = "val" if len(exp.splits["val"]) else "train"
    n = len(exp.splits[split])
    if n == 0:
        raise NntrainError("no rows to build a diagnostics probe batch from")
    positions = np.unique(np.linspace(0, n - 1, min(n, rows)).round().astype(np.int64))
    X, _, t = exp.rows(split, positions)
    return X, t, exp.lengths_of(split, positions)


class Diagnostics:
    """Per-layer diagnostics of `network`, measured on the fixed probe batch `probe_X`.

    Lifecycle (what the trainer calls):
      Diagnostics(network, probe_X, run_dir, keep_until, probe_t=...)  once, before the first epoch
      after_backward()   once per optimizer step: after backward and the penalty gradients,
                         after the finite-loss check, before gradient clipping and the step
      end_epoch(epoch)   once per finished epoch, after its last optimizer step (e.g. just
                         before metrics.csv's row is written); writes and returns the rows
      sync(), commit()   before / after the epoch's last.npz is written; rollback() instead
                         when it could not be, dropping the epoch's rows from the file
      close()            when training ends (in a finally)

    `run_dir` None keeps everything in memory (end_epoch still returns the rows).
    `keep_until`: resuming from a checkpoint of that epoch; rows of later epochs (written
    before a crash) are dropped, as MetricsLog does. None starts a fresh file.
    `update_samples`: how many optimizer steps per epoch update_ratio measures exactly (the
    first ones of the epoch); None measures every step. `probe_t`: the probe rows' encoded
    targets, for the gradient reaching each step of a sequence input (none without them).
    """

    def __init__(
        self,
        network,
        probe_X: np.ndarray,
        run_dir: Path | None = None,
        keep_until: int | None = None,
        update_samples: int | None = UPDATE_SAMPLE_STEPS,
        probe_t: np.ndarray | None = None,
        probe_lengths: np.ndarray | None = None,
    ):
        if update_samples is not None and update_samples < 1:
            raise ValueError(f"update_samples must be >= 1 or None, got {update_samples}")
        self.network = network
        self.probe_X = np.asarray(probe_X, dtype=network.dtype)
        if self.probe_X.ndim != 2 or len(self.probe_X) == 0:
            raise ValueError(f"probe_X must be a non-empty (rows, features) array, got shape {self.probe_X.shape}")
        self.update_samples = update_samples
        network_input = network.in_shape
        self.sequence = len(network_input) == 2 and not network.layers[0].integer_input and probe_t is not None
        self.probe_t = probe_t
        self.probe_lengths = probe_lengths
        # Layers with weights, by index in model.layers, and the names of their weights.
        self.names = {i: weight_names(layer) for i, layer in enumerate(network.layers) if weight_names(layer)}
        self.weighted = list(self.names)
        self._before = {i: [np.empty_like(network.layers[i].params[n]) for n in self.names[i]] for i in self.weighted}
        self._reset()
        self.path = self.file = self.steps_file = None
        if run_dir is not None:
            self.path = Path(run_dir) / DIAGNOSTICS_FILE
            self.file = _open_log(self.path, COLUMNS, "layer", keep_until)
            if self.sequence:
                self.steps_file = _open_log(Path(run_dir) / STEPS_FILE, STEP_COLUMNS, "step", keep_until)

    # ------------------------------------------------------------ file

    @property
    def _files(self) -> list:
        return [f for f in (self.file, self.steps_file) if f is not None]

    def commit(self) -> None:
        """The rows written so far belong to a checkpointed epoch: keep them."""
        for file in self._files:
            file.commit()

    def rollback(self) -> None:
        """Drop the rows written since the last commit (their epoch has no checkpoint)."""
        for file in self._files:
            file.rollback()

    def sync(self) -> None:
        for file in self._files:
            file.sync("writing the diagnostics")

    def close(self) -> None:
        for file in self._files:
            file.close()
        self.file = self.steps_file = None

    # ------------------------------------------------------------ per step

    def _reset(self) -> None:
        self.steps = 0
        self._grad_sum = dict.fromkeys(self.weighted, 0.0)
        self._ratio_sum = dict.fromkeys(self.weighted, 0.0)
        self._ratio_steps = 0
        self._pending: dict[int, float] | None = None  # ||W_before|| of the snapshot awaiting its step

    def _finish_pending(self) -> None:
        """The sampled step since the snapshot has been taken: add ||W - W_before|| / ||W_before||."""
        if self._pending is None:
            return
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            for i, before_norm in self._pending.items():
                params = self.network.layers[i].params
                for name, delta in zip(self.names[i], self._before[i]):
                    np.subtract(params[name], delta, out=delta)
                change = _norm(*self._before[i])
                # ||W_before|| = 0: any change is infinitely large relative to it (nan stays nan).
                self._ratio_sum[i] += change / before_norm if before_norm != 0 else (math.inf if change > 0 else 0.0)
        self._ratio_steps += 1
        self._pending = None

    def after_backward(self) -> None:
        """Record this step's gradient norms; on sampled steps, snapshot W before the optimizer moves it.

        The change of the previous sampled step is measured here too (W is then what that step
        left), so one call per step is all the trainer needs.
        """
        self._finish_pending()
        layers = self.network.layers
        with np.errstate(over="ignore", invalid="ignore"):
            for i in self.weighted:
                self._grad_sum[i] += _norm(*(layers[i].grads[n] for n in self.names[i]))
        self.steps += 1
        if self.update_samples is None or self.steps <= self.update_samples:
            self._pending = {}
            for i in self.weighted:
                weights = [layers[i].params[n] for n in self.names[i]]
                for before, weight in zip(self._before[i], weights):
                    np.copyto(before, weight)
                with np.errstate(over="ignore", invalid="ignore"):
                    self._pending[i] = _norm(*weights)

    # ------------------------------------------------------------ per epoch

    def measure(self, epoch: int) -> list[dict]:
        """This epoch's rows (one per layer of model.layers) from what was recorded so far; writes nothing."""
        self._finish_pending()
        rows = []
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            x = self.network.as_samples(self.probe_X)
            lengths = self.network.check_lengths(self.probe_lengths, x)
            for i, layer in enumerate(self.network.layers):
                if layer.uses_lengths:  # the probe rows' own lengths, not the last batch's
                    layer.lengths = lengths
                x = layer.forward(x, False)
                if lengths is not None:
                    lengths = layer.out_lengths(lengths)
                row = dict.fromkeys(COLUMNS)
                row.update(epoch=int(epoch), layer=i, type=layer.name)
                if i in self._grad_sum:
                    row["weight_norm"] = _norm(*(layer.params[n] for n in self.names[i]))
                    if self.steps:
                        row["grad_norm"] = self._grad_sum[i] / self.steps
                    if self._ratio_steps:
                        row["update_ratio"] = self._ratio_sum[i] / self._ratio_steps
                if layer.dies:  # a unit: one output position (a feature, or a channel at one pixel)
                    row["dead_fraction"] = float(np.mean(np.all(x <= 0, axis=0)))
                elif layer.saturates is not None:
                    low, high = layer.saturates
                    out = (x < low) | (x > high)
                    row["saturated_fraction"] = float(np.mean(np.mean(out, axis=0) >= SATURATED_SAMPLES))
                row["activation_mean"] = float(np.mean(x, dtype=np.float64))
                row["activation_std"] = float(np.std(x, dtype=np.float64))
                rows.append(row)
        return rows

    def end_epoch(self, epoch: int) -> list[dict]:
        """Measure, append the epoch's rows to diagnostics.csv (one flushed write), reset the per-step sums.

        Returns the rows: dicts with the COLUMNS keys, floats, None where a column does not apply.
        """
        rows = self.measure(epoch)
        steps = self.measure_steps(epoch)
        # The whole epoch at once: a crash tears at most one epoch; a failed write leaves none of it.
        for file, columns, table in ((self.file, COLUMNS, rows), (self.steps_file, STEP_COLUMNS, steps)):
            if file is not None:
                text = csv_text(columns, [{k: _fmt(v) for k, v in row.items()} for row in table])
                file.append(text, f"writing the diagnostics of epoch {int(epoch)}")
        self._reset()
        return rows

    def measure_steps(self, epoch: int) -> list[dict]:
        """This epoch's input_grad_norm per step of a sequence input (see the module docstring); [] otherwise."""
        if not self.sequence:
            return []
        network = self.network
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            x = network.as_samples(self.probe_X)
            network.loss.forward(network.forward(x, training=False, lengths=self.probe_lengths), self.probe_t)
            dx = network.backward(network.loss.backward(), input_grad=True)
            squares = np.sum(np.square(dx, dtype=np.float64), axis=2)  # (rows, steps)
            real = np.ones(squares.shape, bool)
            if self.probe_lengths is not None:  # the mean over the rows whose step t is real
                real = np.arange(squares.shape[1])[None, :] < np.asarray(self.probe_lengths)[:, None]
            counts = real.sum(axis=0)
            per_step = np.sqrt(np.where(real, squares, 0).sum(axis=0) / np.maximum(counts, 1))
            per_step[counts == 0] = np.nan  # no probe row is that long
        return [{"epoch": int(epoch), "step": t, "input_grad_norm": float(v)} for t, v in enumerate(per_step)]


def _fmt(value):
    if value is None:
        return ""
    return f"{value:.8g}" if isinstance(value, float) else value


# ---------------------------------------------------------------- reading and reporting


def _read_raw(path: Path, columns: list[str] = COLUMNS) -> list[dict]:
    """The rows of a diagnostics file, as strings; NntrainError (exit 2) naming it when unreadable or foreign."""
    fields, rows = read_csv(path, "the diagnostics file")
    if fields is not None and list(fields) != columns:
        raise NntrainError(f"'{path}' is not a diagnostics file (columns {fields}, expected {columns})")
    return rows


def _open_log(path: Path, columns: list[str], index: str, keep_until: int | None) -> LineLog:
    """A diagnostics file appended an epoch at a time; resuming (`keep_until`) keeps the rows up to that epoch."""
    kept = []
    if keep_until is not None and path.exists():
        kept = [
            r
            for r in _read_raw(path, columns)
            if (r.get("epoch") or "").isdigit()
            and (r.get(index) or "").isdigit()  # not a line torn by a crash
            and int(r["epoch"]) <= keep_until
        ]
    # Appended unbuffered, an epoch at a time; rolled back when that epoch's checkpoint fails.
    return LineLog(path, csv_text(columns, kept, header=True), "writing the diagnostics")


def _parse_float(text: str) -> float | None:
    return None if text == "" else float(text)


def read_diagnostics(run_dir: Path) -> list[dict]:
    """The rows of RUN_DIR/diagnostics.csv (or of a .csv path given directly), typed.

    epoch and layer are ints, type a str, the other columns floats or None where blank.
    A row that does not parse (a line torn by a crash) is skipped. NntrainError when the
    file is missing, has another header, or holds no rows.
    """
    path = Path(run_dir)
    if os.path.isdir(path):  # os.path's checks are False, not an error, for a path the system refuses
        path = path / DIAGNOSTICS_FILE
    if not os.path.isfile(path):
        raise NntrainError(f"'{path}' does not exist: the run was not trained with train.diagnostics: true")
    raw = _read_raw(path)
    rows = []
    for r in raw:
        try:
            row = {"epoch": int(r["epoch"]), "layer": int(r["layer"]), "type": r["type"]}
            row.update({k: _parse_float(r[k]) for k in FLOAT_COLUMNS})
        except (TypeError, ValueError):
            continue
        rows.append(row)
    if not rows:
        raise NntrainError(f"'{path}' holds no diagnostics rows yet (no epoch has finished)")
    return rows


def _pct(value: float) -> str:
    return f"{value:.0%}"


def report(rows: list[dict], epoch: int | None = None) -> tuple[list[dict], list[str]]:
    """(table_rows, warnings) for one epoch: the last in `rows` when `epoch` is None.

    table_rows: that epoch's rows ordered by layer (the dicts as given). warnings: plain
    sentences, one per finding, for values in the known-bad ranges set by the *_WARN / *_HIGH /
    *_LOW constants above; empty for a healthy network. NntrainError for an epoch not in rows.
    """
    if not rows:
        raise NntrainError("no diagnostics rows to report on")
    epochs = sorted({r["epoch"] for r in rows})
    if epoch is None:
        epoch = epochs[-1]
    elif epoch not in epochs:
        raise NntrainError(f"epoch {epoch} is not in the diagnostics (epochs {epochs[0]}..{epochs[-1]})")
    table = sorted((r for r in rows if r["epoch"] == epoch), key=lambda r: r["layer"])
    return table, _warnings(table)


def _warnings(table: list[dict]) -> list[str]:
    warnings = []
    last_layer = max(r["layer"] for r in table)
    for r in table:
        where = f"layer {r['layer']} ({r['type']})"
        for key in ("weight_norm", "grad_norm"):  # (an infinite update_ratio only means ||W_before|| was 0)
            if r[key] is not None and not math.isfinite(r[key]):
                warnings.append(
                    f"{where}: the {key.replace('_', ' ')} is {r[key]} — training diverged; lower optimizer.lr,"
                    " use data.scale: standardize, or set train.clip_grad_norm"
                )
        dead = r["dead_fraction"]
        if dead is not None and dead > DEAD_FRACTION_WARN:
            if _layer_class(r["type"]).dies == "leak":
                warnings.append(
                    f"{where}: {_pct(dead)} of units are on the negative side for every probe sample (only the leak"
                    " passes gradient) — lower the learning rate or check input scaling"
                )
            else:
                warnings.append(
                    f"{where}: {_pct(dead)} of units are dead (output 0 for every probe sample) — lower the learning"
                    " rate, use leaky_relu, or check input scaling"
                )
        saturated = r["saturated_fraction"]
        if saturated is not None and saturated > SATURATED_FRACTION_WARN and r["layer"] != last_layer:
            limit = _saturation_text(*(_layer_class(r["type"]).saturates or (math.nan, math.nan)))
            warnings.append(
                f"{where}: {_pct(saturated)} of units are saturated ({limit} for at least {_pct(SATURATED_SAMPLES)} of"
                " probe samples), so almost no gradient flows through them — scale the inputs (data.scale), use a"
                " smaller init_scale or xavier init, or lower the learning rate"
            )
        ratio = r["update_ratio"]
        if ratio is not None and math.isfinite(ratio) and not _is_scale(r["type"]):
            if ratio > UPDATE_RATIO_HIGH:
                warnings.append(
                    f"{where}: each step changes the weights by {ratio:.2g} of their norm (healthy ≈ 1e-3) —"
                    " the learning rate is probably too high"
                )
            elif ratio < UPDATE_RATIO_LOW and r["grad_norm"] == 0:
                warnings.append(
                    f"{where}: no gradient reaches the weights (gradient norm 0), so they no longer change — look for"
                    " dead or saturated units before this layer (or a loss already at 0)"
                )
            elif ratio < UPDATE_RATIO_LOW:
                warnings.append(
                    f"{where}: each step changes the weights by only {ratio:.2g} of their norm (healthy ≈ 1e-3) —"
                    " the learning rate is probably too low or the gradients vanish (fine only if the training"
                    " loss has already converged)"
                )
    grads = [
        r
        for r in table
        if r["grad_norm"] is not None and math.isfinite(r["grad_norm"]) and not _is_scale(r["type"])
    ]
    if len(grads) >= 2:
        first, last = grads[0], grads[-1]
        a, b = first["grad_norm"], last["grad_norm"]
        names = f"layer {first['layer']} ({first['type']}) and layer {last['layer']} ({last['type']})"
        if a > GRAD_RATIO_WARN * b:
            warnings.append(
                f"exploding gradients: the gradient norm grows {_ratio(a, b)} from the last weight layer to the"
                f" first ({names}: {b:.3g} -> {a:.3g}) — lower the learning rate, use a smaller init or"
                " train.clip_grad_norm, or add batch_norm"
            )
        elif b > GRAD_RATIO_WARN * a:
            warnings.append(
                f"vanishing gradients: the gradient norm shrinks {_ratio(b, a)} from the last weight layer to the"
                f" first ({names}: {b:.3g} -> {a:.3g}) — use relu instead of sigmoid/tanh, he init, fewer layers,"
                " or check for dead or saturated units"
            )
    return warnings


def _ratio(big: float, small: float) -> str:
    return f"{big / small:.2g}x" if small > 0 else "from 0 to a non-zero value"


# ---------------------------------------------------------------- presentation


def format_table(table_rows: list[dict]) -> list[str]:
    """report()'s table as aligned text lines (header first); '-' where a column does not apply."""
    headers = ["layer", "type", "weight_norm", "grad_norm", "update_ratio", "dead", "saturated", "act_mean", "act_std"]
    keys = ["layer", "type", "weight_norm", "grad_norm", "update_ratio", "dead_fraction", "saturated_fraction",
            "activation_mean", "activation_std"]  # fmt: skip

    def cell(key, value):
        if value is None:
            return "-"
        if key in ("dead_fraction", "saturated_fraction") and math.isfinite(value):
            return f"{value:.1%}"
        return f"{value:.3g}" if isinstance(value, float) else str(value)

    cells = [[cell(k, r[k]) for k in keys] for r in table_rows]
    widths = [max(len(h), *(len(c[j]) for c in cells)) for j, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) if j < 2 else h.rjust(w) for j, (h, w) in enumerate(zip(headers, widths)))]
    for c in cells:
        lines.append("  ".join(v.ljust(w) if j < 2 else v.rjust(w) for j, (v, w) in enumerate(zip(c, widths))))
    return lines


def _json_safe(value):
    return None if isinstance(value, float) and not math.isfinite(value) else value


def inspect(run_dir: Path, epoch: int | None = None) -> dict:
    """Everything `nntrain inspect RUN_DIR [--epoch N]` shows, as a JSON-ready dict.

    {"run_dir", "epoch", "epochs": [first, last], "layers": table rows (non-finite floats as
    null), "warnings": [...]}. NntrainError (exit 2) for a missing file or epoch.
    """
    rows = read_diagnostics(run_dir)
    table, warnings = report(rows, epoch)
    epochs = sorted({r["epoch"] for r in rows})
    steps = [r["input_grad_norm"] for r in read_steps(run_dir) if r["epoch"] == table[0]["epoch"]]
    warnings += _step_warnings(steps)
    return {
        "run_dir": str(run_dir),
        "epoch": table[0]["epoch"],
        "epochs": [epochs[0], epochs[-1]],
        "layers": [{k: _json_safe(v) for k, v in r.items()} for r in table],
        "steps": [_json_safe(v) for v in steps],  # input_grad_norm per step of a sequence input; [] otherwise
        "warnings": warnings,
    }


def read_steps(run_dir: Path) -> list[dict]:
    """The rows of RUN_DIR/diagnostics_steps.csv (epoch, step, input_grad_norm), typed; [] without the file."""
    path = Path(run_dir) / STEPS_FILE
    if not os.path.isdir(run_dir) or not os.path.isfile(path):
        return []
    rows = []
    for r in _read_raw(path, STEP_COLUMNS):
        try:
            rows.append({"epoch": int(r["epoch"]), "step": int(r["step"]), "input_grad_norm": _parse_float(r["input_grad_norm"])})
        except (TypeError, ValueError):  # a line torn by a crash
            continue
    return rows


def _step_warnings(steps: list) -> list[str]:
    known = [v for v in steps if v is not None and math.isfinite(v)]  # steps no probe row reaches have none
    if len(known) < 2 or steps[0] is None or not math.isfinite(steps[0]):
        return []
    first, last = known[0], known[-1]
    if last > 0 and first < last / GRAD_RATIO_WARN:
        return [
            f"the gradient reaching the first step of the input is {_ratio(last, first)} smaller than at the last"
            f" ({first:.2g} against {last:.2g}): it vanishes over the {len(steps)} steps, so the network barely learns"
            " from what comes early in a sequence; gated layers (lstm, gru) can learn to carry it"
        ]
    return []


def format_steps(steps: list[float], shown: int = 8) -> list[str]:
    """The gradient per step as a few text lines: `shown` steps spread from the first to the last."""
    if not steps:
        return []
    picks = sorted({round(i * (len(steps) - 1) / max(1, shown - 1)) for i in range(shown)})
    cells = [f"step {t}: {steps[t]:.2g}" if steps[t] is not None and math.isfinite(steps[t]) else f"step {t}: -" for t in picks]
    return ["gradient reaching each input step (RMS of ||dL/dx_t|| over the probe rows):", "  " + ", ".join(cells)]
