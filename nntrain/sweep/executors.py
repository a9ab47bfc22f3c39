"""Executors: where the runs of a sweep execute.

A run is a `TrialTask` (plain, picklable data); `run_task` executes one where it is called
and returns its summary. An `Executor` takes tasks (`submit` returns a future of the summary),
`stop` and `close`: `SerialExecutor` trains in this process, `LocalExecutor` in spawned worker
processes (their start-up, BLAS thread variables and signal handling are here). Another
backend (a cluster queue) only needs `submit`, `stop`, `close` and `jobs`, and `run_task` on
the far side. Stop requests: `AnyStop` (set when any source is) and a worker's view of the
parent's stop event.
"""

from __future__ import annotations

import copy
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing.managers import BaseManager
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from .. import config as cfg
from ..errors import NntrainError, WriteError
from ..train.trainer import Hooks, StopRequest, stop_on_signals
from .spec import is_int

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


@dataclass(frozen=True)
class TrialTask:
    """One run to execute: plain, picklable data, complete in itself.

    `config` is the run's raw config mapping (the trial's overrides applied, data paths
    absolute). With `resume` the run directory holds an interrupted run to continue
    (nntrain.api.resume); otherwise it does not exist yet and nntrain.api.fit creates it.
    """

    trial: int
    fold: int | None
    name: str  # the run directory's name inside the sweep directory
    run_dir: str  # its absolute path
    config: dict
    resume: bool = False
    # With sweep.prune: a handle to the sweep's Pruner (Executor.share), told every finished epoch's
    # value of `monitor` (the sweep's metric); a reason it returns ends the run as 'pruned'.
    pruner: Any = None
    monitor: str | None = None


class AnyStop(StopRequest):
    """A StopRequest that is set when any of its sources is."""

    def __init__(self, *sources):
        self.sources = [s for s in sources if s is not None]

    def __bool__(self):
        return any(bool(s) for s in self.sources)

    @property
    def signal(self):
        for source in self.sources:
            if source:
                return getattr(source, "signal", None) or signal.SIGINT
        return None


class _EventStop:
    """A multiprocessing Event seen as a stop request (set by the parent: stop, as Ctrl-C does)."""

    signal = signal.SIGINT

    def __init__(self, event):
        self.event = event

    def __bool__(self):
        return self.event.is_set()


def move_aside(path: Path) -> Path:
    """Rename a run directory to <name>.failed-N (the first N free) and return the new path."""
    n = 1
    while (target := path.with_name(f"{path.name}.failed-{n}")).exists():
        n += 1
    try:
        path.rename(target)
    except OSError as e:
        raise WriteError(path, e, f"moving it aside to {target.name}") from None
    return target


def run_task(
    task: TrialTask,
    stop: StopRequest | None = None,
    on_epoch: Callable[[TrialTask, dict], None] | None = None,
    log: Callable[[TrialTask, str], None] | None = None,
) -> dict:
    """Execute one run where this is called; return its summary (nntrain.api.fit's).

    Training ends as 'interrupted' (last.npz kept, resumable) when `stop` becomes true. A stop
    before training began returns a summary with status 'interrupted' and no run directory.
    The returned dict carries 'signal' (the stop's signal number) when it was interrupted.
    Errors (NntrainError for a bad config or data) propagate: the sweep records 'failed'.
    """
    from .. import api

    stop = stop if stop is not None else StopRequest()
    hooks = Hooks(
        on_epoch=(lambda row: on_epoch(task, row)) if on_epoch else (lambda row: None),
        log=(lambda message: log(task, message)) if log else (lambda message: None),
        stop=stop,
    )
    if task.pruner is not None:
        monitor = task.monitor or (task.config.get("train") or {}).get("monitor")

        def prune(row: dict) -> str | None:
            if row.get(monitor) is None:
                return None
            return task.pruner.report(task.name, task.trial, task.fold, int(row["epoch"]), float(row[monitor]))

        hooks.prune = prune
    try:
        summary = None
        if task.resume:
            try:
                summary = api.resume(Path(task.run_dir), hooks=hooks)
            except WriteError:  # a full or read-only disk: starting again would fail the same way, and lose the run
                raise
            except NntrainError as e:  # a damaged interrupted run: start it again rather than fail every resume
                moved = move_aside(Path(task.run_dir))
                hooks.log(f"cannot resume ({e}); moved to {moved.name}, running it again")
        if summary is None:
            summary = api.fit(cfg.load_config(None, raw=copy.deepcopy(task.config)), run_dir=Path(task.run_dir), hooks=hooks)
    except KeyboardInterrupt:  # stopped before training began (api.fit) or a signal with no handler
        summary = {"status": "interrupted", "message": "stopped before training began", "run_dir": task.run_dir,
                   "epochs_completed": 0, "monitor": None, "best_value": None, "seconds": 0.0}
    if summary["status"] == "interrupted":
        summary = {**summary, "signal": int(stop.signal or signal.SIGINT)}
    return summary


@runtime_checkable
class Executor(Protocol):
    """Where runs execute. The sweep keeps at most `jobs` runs submitted at a time.

    submit(task) returns a concurrent.futures.Future whose result is the run's summary dict
    (as `run_task` returns it) or whose exception says why it failed. stop() asks the
    runs in progress to end soon as 'interrupted' (resumable), like Ctrl-C; it is called
    once, from the sweep's thread. close() releases the executor's resources.

    share(obj) -> handle, needed only for pruning (sweep.prune) and so not required here:
    a picklable handle with obj's methods, callable from wherever tasks run (and from the
    sweep's thread), synchronously: a call returns the method's result. The sweep makes every
    call to obj through the handle, so obj may live elsewhere (a manager process, an actor).
    SerialExecutor returns obj itself, LocalExecutor a multiprocessing manager's proxy.
    An executor that retries a run (its worker died) sets 'attempts' in the summary.
    """

    jobs: int

    def submit(self, task: TrialTask) -> Future: ...

    def stop(self) -> None: ...

    def close(self) -> None: ...


class SerialExecutor:
    """Runs each task in this process, one at a time, when it is submitted (jobs = 1).

    A run stops as interrupted on SIGINT / SIGTERM (in the main thread), on stop(), or when
    `stop` (e.g. the sweep's hooks.stop) is set. `on_epoch(task, row)` and `log(task, message)`
    follow the run in progress.
    """

    jobs = 1

    def __init__(self, stop: StopRequest | None = None, on_epoch=None, log=None):
        self._external, self._stopped = stop, StopRequest()
        self.on_epoch, self.log = on_epoch, log

    def submit(self, task: TrialTask) -> Future:
        future = Future()
        with stop_on_signals() as signalled:
            try:
                future.set_result(run_task(task, AnyStop(signalled, self._stopped, self._external), self.on_epoch, self.log))
            except Exception as e:  # noqa: BLE001 - the future carries any failure of the run
                future.set_exception(e)
        return future

    def stop(self) -> None:
        self._stopped.signal = signal.SIGINT

    def share(self, obj):
        """Runs train in this process: they call obj itself."""
        return obj

    def close(self) -> None:
        pass


_WORKER_STOP = None  # the parent's stop Event, in a LocalExecutor worker process


def _init_worker(event) -> None:
    """Worker start: remember the stop event; an idle worker ignores SIGINT / SIGTERM (the parent
    decides), so a Ctrl-C between tasks cannot kill it and lose the pool's other runs."""
    global _WORKER_STOP
    _WORKER_STOP = event
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _worker_ready() -> int:
    return os.getpid()


def _ignore_signals() -> None:
    """The shared objects' manager process: Ctrl-C is the sweep's to handle, not a reason to die."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _hosted(obj):
    """In the manager process: the (unpickled) object it serves."""
    return obj


class _SharedObjects(BaseManager):
    """Serves LocalExecutor.share's objects to the workers, from a process of its own."""


_SharedObjects.register("hosted", callable=_hosted)


def _worker_run(task: TrialTask) -> dict:
    """A task in a worker process: SIGINT / SIGTERM or the parent's stop end the run as interrupted."""
    with stop_on_signals() as signalled:
        return run_task(task, AnyStop(signalled, _EventStop(_WORKER_STOP) if _WORKER_STOP is not None else None))


@contextmanager
def _spawning(threads: int | None):
    """While worker processes start: the BLAS thread variables set for them, and SIGINT / SIGTERM
    ignored, so that the workers start with those ignored (a disposition that survives exec)."""
    saved = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    if threads is not None:
        os.environ.update({name: str(threads) for name in THREAD_VARIABLES})
    handlers = {}
    if threading.current_thread() is threading.main_thread():
        handlers = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in handlers.items():
            signal.signal(s, h)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class LocalExecutor:
    """Runs tasks in `jobs` worker processes on this machine (spawned, so fork-safe everywhere).

    The workers start at once. With jobs > 1 each gets OMP / OPENBLAS / MKL / VECLIB /
    NUMEXPR_NUM_THREADS = `threads` (default: available cores // jobs, at least 1), so jobs x
    threads does not oversubscribe the cores. A worker turns SIGINT / SIGTERM during a run,
    or stop(), into an interrupted run (never a lost one); idle workers ignore signals.
    """

    def __init__(self, jobs: int = 2, threads: int | None = None):
        if not is_int(jobs) or jobs < 1:
            raise NntrainError(f"must be an integer >= 1, got {jobs!r}", "--jobs")
        self.jobs = jobs
        self._manager = None
        self.threads = threads if threads is not None else (max(1, available_cores() // jobs) if jobs > 1 else None)
        context = multiprocessing.get_context("spawn")
        self._event = context.Event()
        self.pool = ProcessPoolExecutor(jobs, mp_context=context, initializer=_init_worker, initargs=(self._event,))
        with _spawning(self.threads):
            started = [self.pool.submit(_worker_ready) for _ in range(jobs)]  # one process per submit while none is idle
        try:
            for future in started:
                future.result()
        except Exception as e:  # noqa: BLE001 - BrokenProcessPool and whatever else stopped a worker
            self.pool.shutdown(wait=False, cancel_futures=True)
            raise NntrainError(
                f"the worker processes did not start ({type(e).__name__}: {e}); a script that runs a sweep with"
                " jobs > 1 must do so under `if __name__ == '__main__':`, since workers import it"
            ) from None

    def submit(self, task: TrialTask) -> Future:
        return self.pool.submit(_worker_run, task)

    def stop(self) -> None:
        self._event.set()

    def share(self, obj):
        """A proxy of obj (pickled into a manager process, spawned on first use, which serves every
        worker's calls, each in a thread of its own) that workers call; shut down by close()."""
        if self._manager is None:
            manager = _SharedObjects(ctx=multiprocessing.get_context("spawn"))
            with _spawning(None):
                manager.start(initializer=_ignore_signals)
            self._manager = manager
        return self._manager.hosted(obj)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        if self._manager is not None:
            self._manager.shutdown()
            self._manager = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
