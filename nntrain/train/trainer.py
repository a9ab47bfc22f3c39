"""The epoch loop: shuffled mini-batches, metrics, checkpoints, divergence and interruption."""

from __future__ import annotations

import math
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .. import __version__
from .. import config as cfg
from ..errors import NntrainError, WriteError
from ..fileio import Previous, activity, remove
from . import checkpoint
from .checkpoint import TrainingState
from .experiment import Experiment
from ..engine.regularization import clip_grad_norm
from .diagnostics import Diagnostics, probe_rows
from .rundir import MetricsLog, RunDir


class BatchGather:
    """Mini-batches of in-memory arrays, gathered row by row into arrays reused for every batch.

    `gather(rows)` takes the batch's row indices and returns views (X, y, t) of those arrays,
    valid until the next call: nothing holds a batch beyond its own step. Compared with
    gathering the whole epoch into a shuffled copy first, no second dataset-sized array is
    kept, and each batch is read from memory once, into arrays that stay in cache.
    """

    def __init__(self, arrays: tuple[np.ndarray, ...], batch: int):
        self.arrays = arrays
        batch = max(1, min(batch, len(arrays[0])))
        # An array passed twice (t is y for class indices) is gathered once: alias[i] is its first position.
        self.alias = [next(j for j, b in enumerate(arrays) if b is a) for a in arrays]
        self.batches = [
            np.empty((batch, *a.shape[1:]), a.dtype) if self.alias[i] == i else None for i, a in enumerate(arrays)
        ]

    def __call__(self, rows: np.ndarray) -> tuple[np.ndarray, ...]:
        m = len(rows)
        out = []
        for source, batch, alias in zip(self.arrays, self.batches, self.alias):
            if batch is None:
                out.append(out[alias])
            else:  # mode "clip": the rows are valid indices, and the default ("raise") copies through a temporary
                out.append(np.take(source, rows, axis=0, out=batch[:m], mode="clip"))
        return tuple(out)


class StopRequest:
    """Set by SIGINT / SIGTERM; the loop stops after the batch in progress."""

    def __init__(self):
        self.signal: int | None = None

    def __bool__(self):
        return self.signal is not None


@contextmanager
def stop_on_signals():
    """Turn SIGINT and SIGTERM into a StopRequest for the duration of training."""
    stop = StopRequest()

    def handler(signum, frame):
        stop.signal = signum

    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield stop
        return
    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@dataclass
class Hooks:
    """How a caller follows and steers training; every part is optional."""

    on_start: Callable = lambda run, exp, epochs_done: None  # once, before the first epoch
    on_epoch: Callable = lambda row: None  # the metrics.csv row of each finished epoch
    on_batch: Callable = lambda done, total, loss: None  # batches done of total, this batch's loss
    log: Callable = lambda message: None  # warnings and notes
    stop: StopRequest = field(default_factory=StopRequest)
    # After each finished epoch but the last (checkpointed, on_epoch called) with its row: a reason (text)
    # ends the run there with status 'pruned' (a sweep's pruner stopping a bad trial); None trains on.
    prune: Callable = lambda row: None


class Trainer:
    """Trains `exp` for config.train.epochs, writing into `run`, reporting through `hooks`."""

    def __init__(self, exp: Experiment, run: RunDir, hooks: Hooks | None = None):
        self.exp, self.run = exp, run
        self.hooks = hooks or Hooks()
        self.monitor = exp.config.train.monitor
        self.higher_is_better = cfg.higher_is_better(self.monitor)

    def columns(self) -> list[str]:
        names = ["loss", *self.exp.metric_names()]
        splits = ("train", "val") if len(self.exp.splits["val"]) else ("train",)
        return ["epoch", *(f"{s}_{m}" for s in splits for m in names), "lr", "seconds"]

    def improved(self, value: float, state: TrainingState) -> bool:
        """Better than the best so far by more than early stopping's min_delta (0 without it)."""
        if math.isnan(state.best_value):
            return True
        stopping = self.exp.config.train.early_stopping
        delta = stopping.min_delta if stopping else 0.0
        return value > state.best_value + delta if self.higher_is_better else value < state.best_value - delta

    def out_of_patience(self, state: TrainingState) -> str | None:
        """Why early stopping ends training now, or None. The count is derived from the state, so it survives resume."""
        stopping = self.exp.config.train.early_stopping
        if stopping is None or state.epoch - state.best_epoch < stopping.patience:
            return None
        return (
            f"early stopping: {self.monitor} did not improve by more than {stopping.min_delta:g} for"
            f" {stopping.patience} epochs (best {state.best_value:.6g} at epoch {state.best_epoch})"
        )

    def fit(self, state: TrainingState | None = None) -> dict:
        """Train from `state` (a fresh start when None) to the configured epoch count; return the summary.

        A failure (a WriteError when the disk is full or read-only, or any other error) leaves
        the run as of its newest last.npz: metrics.csv and diagnostics.csv hold no row after
        that epoch, and summary.json says `failed` with that epoch, or, when even the summary
        cannot be written, is removed rather than left stale; the error then says so.
        """
        resumed = state is not None
        state = state or TrainingState()
        self.hooks.on_start(self.run, self.exp, state.epoch)
        started = time.perf_counter()
        log = self.diagnostics = None
        try:
            if resumed:  # temporary files of writes a kill cut short
                self.run.remove_temp_files()
            log = MetricsLog(self.run.metrics_file, self.columns(), keep_until=state.epoch if resumed else None)
            if not resumed:
                if self.exp.schedule is not None:  # the schedule sets epoch 1's learning rate (warm-up starts low)
                    mode = "max" if self.higher_is_better else "min"
                    self.exp.optimizer.lr = self.exp.schedule.start(self.exp.optimizer.lr, mode=mode)
                with activity("saving the initial checkpoint (epoch 0)"):  # an interrupted first epoch can resume
                    checkpoint.save(self.run.checkpoint("last"), self.exp, state)
            if self.exp.config.train.diagnostics:
                keep = state.epoch if resumed else None
                probe_X, probe_t, probe_lengths = probe_rows(self.exp)
                self.diagnostics = Diagnostics(
                    self.exp.network, probe_X, self.run.path, keep_until=keep, probe_t=probe_t, probe_lengths=probe_lengths
                )
            # Overflow on the way to a NaN loss is reported once, as divergence, not as numpy warnings.
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                status, message = self._epochs(state, log)
        except Exception as e:  # a refused write, a bug: leave a summary that says so, then let it surface
            message = str(e) if isinstance(e, NntrainError) else repr(e)
            self._write_summary(self.summary("failed", state, time.perf_counter() - started, message, evaluate=False), e)
            raise
        finally:
            if log is not None:
                log.close()
            if self.diagnostics is not None:
                self.diagnostics.close()
        summary = self.summary(status, state, time.perf_counter() - started, message)
        self._write_summary(summary)
        return summary

    def _write_summary(self, summary: dict, error: Exception | None = None) -> None:
        """Write summary.json; when that fails, remove the old one rather than leave it stale, and raise.

        While handling `error` (what stopped training) the summary's failure is added to that
        error's message instead of replacing it.
        """
        try:
            self.run.write_summary(summary)
        except WriteError as failed:
            note = "; summary.json could not be written either"
            try:
                remove(self.run.summary_file, "removing the outdated summary")
            except WriteError:
                note += ", and the outdated one could not be removed"
            if error is None:
                raise
            if isinstance(error, NntrainError):
                same = isinstance(error, WriteError) and error.errno == failed.errno
                error.args = (f"{error}{note}" if same else f"{error}{note} ({failed})",)

    def _epochs(self, state: TrainingState, log: MetricsLog) -> tuple[str, str | None]:
        """Run the remaining epochs; (status, message) says how it ended."""
        exp, train, stop = self.exp, self.exp.config.train, self.hooks.stop
        n = len(exp.splits["train"])
        if exp.dataset.in_memory:  # each batch's rows gathered into arrays reused every batch
            batch = n if train.batch_size == "full" else train.batch_size
            gather = BatchGather((exp.dataset.X, exp.dataset.y, exp.targets), batch)
        for epoch in range(state.epoch + 1, train.epochs + 1):
            if reason := self.out_of_patience(state):  # a resumed run that had already stopped early
                return "completed", reason
            t0 = time.perf_counter()
            order = self.epoch_order(n)

            def lengths(s, e):  # the batch's sequence lengths, None for whole sequences
                return exp.lengths_of("train", order[s:e])

            if exp.dataset.in_memory:
                rows = exp.splits["train"][order]
                metrics = self._train_epoch(lambda s, e: (*gather(rows[s:e]), lengths(s, e)), n)
            else:  # data on disk: read each batch's rows when it comes
                metrics = self._train_epoch(lambda s, e: (*exp.rows("train", order[s:e]), lengths(s, e)), n)
            if metrics is None:
                return "diverged", (
                    f"the training loss became non-finite in epoch {epoch}; "
                    "try a lower optimizer.lr, data.scale: standardize, or a different init"
                )
            if stop:  # mid-epoch: last.npz still holds the end of the previous epoch
                return "interrupted", None
            if not all(np.isfinite(p.value).all() for p in exp.network.params):
                return "diverged", f"the parameters became non-finite in epoch {epoch}; try a lower optimizer.lr"
            row = {"epoch": epoch, **{f"train_{k}": v for k, v in metrics.items()}}
            if len(exp.splits["val"]):
                row.update({f"val_{k}": v for k, v in exp.evaluate_split("val").items()})
                if not math.isfinite(row["val_loss"]):
                    return "diverged", f"the validation loss became {row['val_loss']} in epoch {epoch}"
            row["lr"] = exp.optimizer.lr
            row["seconds"] = time.perf_counter() - t0
            self._finish_epoch(epoch, row, state, log)
            self.hooks.on_epoch(row)
            if stop:
                return "interrupted", None
            if reason := self.out_of_patience(state):
                return "completed", reason
            # A run that has trained its last epoch completed: there is nothing left to prune.
            if epoch < train.epochs and (reason := self.hooks.prune(row)):
                return "pruned", reason
        return "completed", None

    def epoch_order(self, n: int) -> np.ndarray:
        """The order in which this epoch visits the n training rows: one draw from the training stream."""
        return self.exp.rngs["train"].permutation(n) if self.exp.config.train.shuffle else np.arange(n)

    def _train_epoch(self, batch_rows, n: int) -> dict | None:
        """One pass of mini-batch updates; the epoch's train loss and metrics, or None if the loss blew up.

        batch_rows(start, end) gives (X, y, t, lengths) of the epoch's rows start..end. Stops early
        (returning what it has) after the batch in progress when a stop is requested.
        """
        exp, stop = self.exp, self.hooks.stop
        if exp.optimizer.needs_closure:
            return self._train_epoch_full_batch(*batch_rows(0, n))
        batch = n if exp.config.train.batch_size == "full" else exp.config.train.batch_size
        batches = math.ceil(n / batch)
        metrics = exp.metrics().without_confusion()  # the epoch's row needs no confusion matrix
        network, optimizer, params = exp.network, exp.optimizer, exp.network.params
        penalty = exp.penalty if exp.penalty else None
        clip, diagnostics, on_batch = exp.config.train.clip_grad_norm, self.diagnostics, self.hooks.on_batch
        # Layer outputs, gradients and the loss's arrays are reused from batch to batch (see engine.arena
        # mode): each batch's z is used by the metrics before the next batch overwrites it.
        network.reuse_arrays(True)
        try:
            for done, start in enumerate(range(0, n, batch), 1):
                X, y, t, lengths = batch_rows(start, start + batch)
                loss, z, _ = network.loss_and_grad(X, t, lengths=lengths)
                if penalty is not None:
                    loss += penalty.value(params)
                    penalty.add_gradients(params)
                if not math.isfinite(loss):
                    return None
                if diagnostics is not None:  # before clipping, so that clipping cannot hide an explosion
                    diagnostics.after_backward()
                if clip:
                    clip_grad_norm(params, clip)
                optimizer.step(params)
                metrics.add(loss, z, y, lengths)
                on_batch(done, batches, loss)
                if stop:
                    break
        finally:
            network.reuse_arrays(False)
        return metrics.result()

    def _train_epoch_full_batch(self, X: np.ndarray, y: np.ndarray, t: np.ndarray, lengths) -> dict | None:
        """One optimizer step that evaluates the whole training set as often as it needs (L-BFGS).

        The epoch's train loss and metrics are those at the start of the step, as a mini-batch
        epoch reports losses before each update.
        """
        exp = self.exp
        first = {}

        def closure() -> float:
            loss, z, _ = exp.network.loss_and_grad(X, t, lengths=lengths)
            if exp.penalty:
                loss += exp.penalty.value(exp.network.params)
                exp.penalty.add_gradients(exp.network.params)
            if not first:
                first.update(loss=loss, z=z.copy())
            return loss

        exp.optimizer.step_closure(exp.network.params, closure)
        if not math.isfinite(first["loss"]) or not math.isfinite(exp.optimizer.final_loss or 0.0):
            return None
        metrics = exp.metrics()
        metrics.add(first["loss"], first["z"], y, lengths)
        self.hooks.on_batch(1, 1, first["loss"])
        return metrics.result()

    def _finish_epoch(self, epoch: int, row: dict, state: TrainingState, log: MetricsLog) -> None:
        """Record a finished epoch: its diagnostics and metrics rows, then its checkpoints, last.npz last.

        last.npz is the commit point. Until it is written the epoch does not count: if anything
        fails (or the process is killed) before, the rows are rolled back (or dropped on
        resume), `state` still describes the previous epoch, and a resume repeats this epoch,
        rewriting the same best.npz / epoch-NNNN.npz (training is deterministic).
        """
        logs = [log] if self.diagnostics is None else [self.diagnostics, log]
        try:
            if self.diagnostics is not None:
                self.diagnostics.end_epoch(epoch)
            log.write(row)
            if self.exp.schedule is not None:  # the next epoch's rate; saved with this epoch's checkpoint
                self.exp.optimizer.lr = self.exp.schedule.step(row[self.exp.schedule.monitor or self.monitor])
            for written in logs:  # on disk before the checkpoint that makes them count
                written.sync()
            self._save(epoch, row, state)
        except BaseException:
            for written in logs:
                written.rollback()
            raise
        for written in logs:
            written.commit()

    def _save(self, epoch: int, row: dict, state: TrainingState) -> None:
        """Checkpoints after an epoch: best.npz when the monitor improved, epoch-NNNN.npz, then last.npz.

        `state` is updated only once last.npz holds the epoch. Each file is serialized and written
        on its own (atomically, fsynced): hard-linking them to one file would save a write, but a
        file damaged in place would then damage them all.

        When a later write fails (a full disk), best.npz is put back as it was (fileio.Previous:
        the old one kept aside without using space), so that no checkpoint is ahead of last.npz.
        A kill between them leaves the new best.npz: the resume repeats the epoch and writes the
        same one again.
        """
        after = TrainingState(epoch, state.best_epoch, state.best_value)
        previous_best = None
        every = self.exp.config.train.checkpoint_every
        periodic = self.run.epoch_checkpoint(epoch) if every and epoch % every == 0 else None
        try:
            if self.improved(row[self.monitor], state):
                after.best_epoch, after.best_value = epoch, float(row[self.monitor])
                previous_best = Previous(self.run.checkpoint("best"))
                with activity(f"saving the best checkpoint (epoch {epoch})"):
                    checkpoint.save(self.run.checkpoint("best"), self.exp, after)
            if periodic is not None:
                with activity(f"saving the checkpoint of epoch {epoch}"):
                    checkpoint.save(periodic, self.exp, after)
            with activity(f"saving the checkpoint of epoch {epoch}"):
                checkpoint.save(self.run.checkpoint("last"), self.exp, after)
        except BaseException:
            if previous_best is not None:
                previous_best.restore()
            if periodic is not None:  # of an epoch that does not count (a resume writes it again)
                try:
                    remove(periodic, "removing the checkpoint of an unfinished epoch")
                except WriteError:
                    pass
            raise
        if previous_best is not None:
            previous_best.discard()
        state.epoch, state.best_epoch, state.best_value = after.epoch, after.best_epoch, after.best_value

    def summary(self, status: str, state: TrainingState, seconds: float, message: str | None, evaluate=True) -> dict:
        """summary.json; `final` holds the metrics of the final parameters, named in `final_parameters`.

        Those are the last finished epoch's (last.npz), or the best epoch's (best.npz) when
        early stopping's restore_best is on; the network is left holding them.
        """
        final, final_parameters = {}, None
        stopping = self.exp.config.train.early_stopping
        if evaluate and state.epoch:
            if status == "completed" and stopping and stopping.restore_best and state.best_epoch:
                which, final_parameters = "best", f"best.npz (epoch {state.best_epoch})"
            else:
                # Interrupted or diverged mid-epoch: evaluate what last.npz holds, not the half-updated network.
                which, final_parameters = "last", f"last.npz (epoch {state.epoch})"
            if status != "completed" or which == "best":
                checkpoint.restore(self.exp, checkpoint.read(self.run.checkpoint(which)), training=False)
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                for split in ("train", "val", "test"):
                    if len(self.exp.splits[split]):
                        final[split] = self.exp.evaluate_split(split)
        return {
            "status": status,
            "message": message,
            "run_dir": str(self.run.path),
            "epochs_completed": state.epoch,
            "epochs_planned": self.exp.config.train.epochs,
            "monitor": self.monitor,
            "best_epoch": state.best_epoch or None,
            "best_value": None if math.isnan(state.best_value) else state.best_value,
            "stopped_early": bool(message and message.startswith("early stopping")),
            "final_parameters": final_parameters,
            "final": final,
            "cautions": list(self.exp.cautions),
            "seconds": round(seconds, 3),  # this invocation; metrics.csv has every epoch's time
            "nntrain_version": __version__,
            "numpy_version": np.__version__,
        }
