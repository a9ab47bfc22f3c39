"""The Ray executor: each run of a sweep (a trial, or a fold of one) is a Ray task on a cluster.

    from nntrain.sweep import run_sweep, sweep_options
    from nntrain.sweep.ray_executor import RayExecutor
    with RayExecutor(jobs=4) as executor:           # a local Ray instance with 4 CPUs, for this run
        run_sweep("configs/quickstart.yaml", spec=sweep_options(grid=["optimizer.lr=0.3,0.1"]), executor=executor)
    RayExecutor(jobs=16, address="auto")           # an existing cluster (HOST:PORT, auto, ray://...)

This module is the only one that imports `ray`, and nntrain imports it only for `--executor ray`;
without Ray, constructing a RayExecutor is an NntrainError that says `pip install 'nntrain[ray]'`.

Results come back through Ray's object store; workers need no filesystem shared with the driver:

    driver                                        worker (any node)
    submit(task) ── TrialTask (+ the run's tar ──▶ a temporary folder of its own,
                   when task.resume) ─────────┘   $TMPDIR/nntrain-ray-<pid>-XXXX/<run name>/;
                                                  run_task on it (nntrain.api.fit or .resume);
    unpack into .<name>.tmp-<pid> beside     ◀── (summary, the finished run directory as an
    task.run_dir, summary's run_dir set to        uncompressed tar in memory); the folder is
    the driver's path, renamed into place         removed (a killed worker's by the next task
                                                  on that machine)

A run directory on the driver is therefore complete (config.yaml, metrics.csv, checkpoints/,
summary.json) exactly when the sweep records the run as ended, and identical to what the serial
and local executors write, except for the seconds. Replacing an existing run directory (a
resumed run) renames the old one to .<name>.old-<pid> first, renames the new one into place,
then deletes the old one; a kill in between leaves the old run under that hidden name.

Faults. The remote function has max_retries=0; the executor itself resubmits a run whose worker
process or node died, or whose result was lost (Ray's system errors: WorkerCrashedError,
NodeDiedError, LocalRayletDiedError, ObjectLostError and its kinds, OutOfMemoryError), at most
`retries` more times, each time from the beginning (or from the archive a resumed run was sent
with). The summary carries "attempts" (1 when nothing died); a failure's exception carries
`.attempts`. A run that fails on its own (NntrainError: a bad config value, unreadable data)
is not retried; divergence is a status, not an error.

Stopping (Ctrl-C, `stop()`): a small actor holds the stop flag. Each task asks it whether the
sweep stopped before it begins (so a queued task that starts late ends at once, as
'interrupted' with no run directory: resume runs it), and a thread in the task polls it every
POLL_SECONDS while it trains; the trainer only reads a local attribute per batch. A running run
therefore ends as 'interrupted' after the batch in progress, with last.npz, and comes back to
the driver like any other: `sweep --resume DIR` continues it on any executor. stop() also
cancels the tasks Ray has not started yet.

Threads: each task's worker process starts with OMP / OPENBLAS / MKL / VECLIB / NUMEXPR_NUM_THREADS
= round(cpus_per_trial) (at least 1), through the remote function's runtime_env, so numpy's BLAS
uses the CPUs Ray reserved for the task and no more.

`share(obj)` puts an object (a sweep's pruner) in a Ray actor and returns a picklable handle
whose public methods call the actor synchronously, from the driver or from tasks.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import shutil
import signal
import tarfile
import tempfile
import threading
from concurrent.futures import Future
from pathlib import Path

from ..errors import NntrainError, WriteError
from ..fileio import fsync_dir, temp_path
from ..train.trainer import StopRequest
from .executors import THREAD_VARIABLES, TrialTask, run_task
from .spec import is_int

POLL_SECONDS = 0.5  # how often a running task asks the stop actor
WORKER_PREFIX = "nntrain-ray-"  # the workers' temporary folders: nntrain-ray-<pid>-XXXX
SYSTEM_ERRORS = (
    "WorkerCrashedError", "NodeDiedError", "LocalRayletDiedError", "ObjectLostError", "OwnerDiedError",
    "ObjectFetchTimedOutError", "ObjectReconstructionFailedError", "ReferenceCountingAssertionError",
    "OutOfMemoryError", "RaySystemError",
)


def import_ray():
    """The ray module, or an NntrainError saying how to install it."""
    try:
        import ray
    except ImportError as e:
        raise NntrainError(f"--executor ray needs Ray, which is not installed ({e}); pip install 'nntrain[ray]'") from None
    return ray


def _system_errors(ray) -> tuple[type, ...]:
    return tuple(getattr(ray.exceptions, name) for name in SYSTEM_ERRORS if hasattr(ray.exceptions, name))


# --- the run directory as an archive ----------------------------------------------------------


def pack(run_dir: Path) -> bytes:
    """The folder `run_dir` as an uncompressed tar in memory (its members relative to it; checkpoints
    are already compact and the archive travels once, so compressing costs more than it saves)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for path in sorted(Path(run_dir).rglob("*")):
            tar.add(str(path), arcname=str(path.relative_to(run_dir)), recursive=False)
    return out.getvalue()


def _extract(archive: bytes, folder: Path) -> None:
    """Unpack a run directory's archive into `folder`: plain files and folders inside it, nothing else."""
    folder.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r") as tar:
        members = tar.getmembers()
        for member in members:  # tarfile's own "data" filter came with Python 3.11.4: check the same here
            inside = os.path.realpath(folder / member.name).startswith(os.path.realpath(folder) + os.sep)
            if not (member.isfile() or member.isdir()) or not inside:
                raise NntrainError(f"a run directory's archive holds '{member.name}', which is not a file or folder inside it")
        if hasattr(tarfile, "data_filter"):
            tar.extractall(folder, members, filter="data")
        else:
            tar.extractall(folder, members)


def _set_summary_run_dir(folder: Path, run_dir: str) -> None:
    """summary.json's run_dir is the worker's path: make it `run_dir`, leaving the rest byte for byte."""
    path = folder / "summary.json"
    if not path.is_file():
        return
    import json

    text = path.read_text()
    old = json.loads(text).get("run_dir")
    if old is not None and old != run_dir:
        path.write_text(text.replace(f'"run_dir": {json.dumps(old)}', f'"run_dir": {json.dumps(run_dir)}', 1))


def install(archive: bytes, target: Path) -> None:
    """Unpack a run directory's archive at `target`, atomically: into .<name>.tmp-<pid> beside it,
    then renamed into place (an existing `target`, a resumed run, is replaced)."""
    target = Path(target)
    tmp = temp_path(target)
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        _extract(archive, tmp)
        _set_summary_run_dir(tmp, str(target))
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.rename(target, old)
            os.rename(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, target)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise WriteError(target, e, "unpacking the run directory that came back from the Ray worker") from None
    fsync_dir(target.parent)


# --- the worker's side --------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    try:  # a zombie (killed, not yet reaped) is dead
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def remove_stale_folders(root: str | None = None) -> None:
    """Delete the temporary folders of workers that died (SIGKILL, a crash) on this machine."""
    for path in Path(root or tempfile.gettempdir()).glob(f"{WORKER_PREFIX}*"):
        try:
            pid = int(path.name[len(WORKER_PREFIX):].split("-", 1)[0])
        except ValueError:
            continue
        if pid != os.getpid() and not _alive(pid):
            shutil.rmtree(path, ignore_errors=True)


class _StopBoard:
    """The stop flag of one RayExecutor (a Ray actor), and which attempts have begun."""

    def __init__(self):
        self.stopped, self.started = False, set()

    def begin(self, key: str) -> bool:
        if not self.stopped:
            self.started.add(key)
        return self.stopped

    def is_stopped(self) -> bool:
        return self.stopped

    def stop(self) -> list[str]:
        self.stopped = True
        return sorted(self.started)


class _RemoteStop(StopRequest):
    """A StopRequest set from the driver: a thread asks the stop actor every POLL_SECONDS, so the
    trainer's check per batch reads an attribute. A stop actor that is gone (the driver died) stops too."""

    def __init__(self, ray, board):
        super().__init__()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._poll, args=(ray, board), daemon=True, name="nntrain-stop-poll")
        self._thread.start()

    def _poll(self, ray, board):
        while not self._done.wait(POLL_SECONDS):
            try:
                stopped = ray.get(board.is_stopped.remote(), timeout=60)
            except Exception:  # noqa: BLE001 - GetTimeoutError, ActorDiedError: nobody waits for this run any more
                stopped = True
            if stopped:
                self.signal = signal.SIGINT
                return

    def close(self):
        self._done.set()


def _not_started(task: TrialTask, message: str) -> dict:
    return {"status": "interrupted", "message": message, "run_dir": task.run_dir, "epochs_completed": 0,
            "monitor": None, "best_value": None, "seconds": 0.0, "signal": int(signal.SIGINT)}


def _portable(e: BaseException) -> BaseException:
    """What the driver records of a run that failed on its own: the message, as an NntrainError (a user's
    mistake: not retried) or a RuntimeError naming the type; both rebuild anywhere, whatever `e`'s
    constructor takes."""
    if isinstance(e, NntrainError):
        return NntrainError(str(e))
    return RuntimeError(f"{type(e).__name__}: {e}")


def remote_run(task: TrialTask, archive: bytes | None, board, key: str):
    """The Ray task: run `task` in a temporary folder of this worker; (summary, archive, error)."""
    ray = import_ray()
    remove_stale_folders()
    if ray.get(board.begin.remote(key)):
        return _not_started(task, "stopped before it started"), None, None
    stop = _RemoteStop(ray, board)
    work = Path(tempfile.mkdtemp(prefix=f"{WORKER_PREFIX}{os.getpid()}-"))
    try:
        run_dir = work / task.name
        if archive is not None:
            _extract(archive, run_dir)
        try:
            summary = run_task(dataclasses.replace(task, run_dir=str(run_dir)), stop)
        except Exception as e:  # noqa: BLE001 - the run failed on its own: the driver records it
            return None, None, _portable(e)
        summary = {**summary, "run_dir": task.run_dir}
        return summary, (pack(run_dir) if run_dir.is_dir() else None), None
    finally:
        stop.close()
        shutil.rmtree(work, ignore_errors=True)


def _warm() -> int:
    """Start a worker and import what a run needs, so the first trials do not pay for it."""
    import nntrain.api  # noqa: F401

    return os.getpid()


# --- shared objects -----------------------------------------------------------------------------


class _Holder:
    """A Ray actor holding one object; call(name, ...) runs its method (one call at a time)."""

    def __init__(self, obj):
        self.obj = obj

    def call(self, name: str, *args, **kwargs):
        return getattr(self.obj, name)(*args, **kwargs)


class SharedHandle:
    """A picklable stand-in for an object held by a Ray actor: handle.m(...) is ray.get(actor.call.remote('m', ...))."""

    def __init__(self, actor, methods):
        self._actor, self._methods = actor, frozenset(methods)

    def __getattr__(self, name):
        if name.startswith("_") or name not in self._methods:
            raise AttributeError(name)
        actor = self._actor

        def call(*args, **kwargs):
            ray = import_ray()
            try:
                return ray.get(actor.call.remote(name, *args, **kwargs))
            except ray.exceptions.RayTaskError as e:  # the method raised: raise what it raised
                cause = getattr(e, "cause", None)
                raise (cause if isinstance(cause, BaseException) else e) from None

        call.__name__ = name
        return call

    def __repr__(self):
        return f"SharedHandle({sorted(self._methods)})"


# --- the driver's side ---------------------------------------------------------------------------


class _DropTokenNote(logging.Filter):
    def filter(self, record):
        return not str(record.msg).startswith("Token authentication is enabled")


class RayExecutor:
    """Runs tasks as Ray tasks (see the module docstring), at most `jobs` at a time (run_sweep's limit).

    Without `address` a local Ray instance is started on this machine with jobs x cpus_per_trial
    CPUs (no dashboard, no usage statistics, quiet) and shut down by close(); with `address`
    (HOST:PORT, 'auto', ray://...) the executor connects to that cluster and leaves it running.
    If this process is already connected to Ray, that connection is used and kept. Each task
    reserves `cpus_per_trial` CPUs; a run whose worker or node died is retried at most `retries`
    more times. cpus_per_trial None means 1. Other keywords go to ray.init.
    """

    def __init__(self, jobs: int = 1, address: str | None = None, cpus_per_trial: float | None = 1, retries: int = 2, **ray_init_options):
        cpus_per_trial = 1 if cpus_per_trial is None else cpus_per_trial
        if not is_int(jobs) or jobs < 1:
            raise NntrainError(f"must be an integer >= 1, got {jobs!r}", "--jobs")
        if isinstance(cpus_per_trial, bool) or not isinstance(cpus_per_trial, (int, float)) or not cpus_per_trial > 0:
            raise NntrainError(f"must be a number > 0, got {cpus_per_trial!r}", "--cpus-per-trial")
        if not is_int(retries) or retries < 0:
            raise NntrainError(f"must be an integer >= 0, got {retries!r}", "retries")
        ray = self._ray = import_ray()
        self.jobs, self.address, self.cpus_per_trial, self.retries = jobs, address, cpus_per_trial, retries
        self.threads = max(1, round(cpus_per_trial))
        self.attempts: dict[str, int] = {}  # run name -> attempts made so far (the last submission of that name)
        self._lock, self._running, self._drivers, self._actors = threading.Lock(), {}, [], []
        self._stopped = self._closed = False
        self._owns = not ray.is_initialized()
        if self._owns:
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            options = {"logging_level": logging.WARNING, "log_to_driver": False, **ray_init_options}
            if address is None:
                options = {"address": "local", "num_cpus": jobs * cpus_per_trial, "include_dashboard": False,
                           "_node_ip_address": "127.0.0.1", **options}
            else:
                options = {"address": address, **options}
            quiet = _DropTokenNote()  # Ray's default for a new local instance (token auth on) needs no warning
            note = logging.getLogger("ray._private.authentication.authentication_token_setup")
            note.addFilter(quiet)
            try:
                ray.init(**options)
            except (ConnectionError, ValueError, RuntimeError) as e:
                where = f"the Ray cluster at {address}" if address else "a local Ray instance"
                raise NntrainError(f"cannot start or reach {where}: {e}", "--address" if address else None) from None
            finally:
                note.removeFilter(quiet)
        env = {name: str(self.threads) for name in THREAD_VARIABLES}
        self._remote = ray.remote(num_cpus=cpus_per_trial, max_retries=0, runtime_env={"env_vars": env})(remote_run)
        warm = ray.remote(num_cpus=cpus_per_trial, max_retries=0, runtime_env={"env_vars": env})(_warm)
        self._board = self._actor(_StopBoard)
        try:  # one worker per job started now, with nntrain imported (a cluster with fewer CPUs warms fewer)
            ray.get([warm.remote() for _ in range(jobs)], timeout=None if address is None else 120)
        except Exception:  # noqa: BLE001 - a slow or busy cluster: the tasks start their workers themselves
            pass

    def _actor(self, cls, *args):
        """An actor of `cls` that takes no CPU, on the driver's node where there is one (so it lives as long as the driver)."""
        ray = self._ray
        options = {"num_cpus": 0, "max_restarts": 0}
        try:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)
        except Exception:  # noqa: BLE001 - Ray Client drivers have no node: anywhere will do
            pass
        actor = ray.remote(cls).options(**options).remote(*args)
        self._actors.append(actor)
        return actor

    def share(self, obj) -> SharedHandle:
        """A picklable handle to a copy of `obj` held by a Ray actor: its public methods, called synchronously
        from here or from tasks, act on that one copy (calls run one at a time, in arrival order)."""
        methods = [n for n in dir(type(obj)) if not n.startswith("_") and callable(getattr(type(obj), n, None))]
        return SharedHandle(self._actor(_Holder, obj), methods)

    def submit(self, task: TrialTask) -> Future:
        if self._closed:
            raise RuntimeError("the RayExecutor is closed")
        future = Future()
        future.set_running_or_notify_cancel()
        thread = threading.Thread(target=self._drive, args=(task, future), daemon=True, name=f"nntrain-ray-{task.name}")
        self._drivers.append(thread)
        thread.start()
        return future

    def _drive(self, task: TrialTask, future: Future) -> None:
        try:
            future.set_result(self._run(task))
        except BaseException as e:  # noqa: BLE001 - the future carries any failure of the run
            future.set_exception(e)

    def _run(self, task: TrialTask) -> dict:
        ray = self._ray
        system = _system_errors(ray)
        archive = None
        if task.resume and Path(task.run_dir).is_dir():
            archive = ray.put(pack(Path(task.run_dir)))
        attempt = 0
        while True:
            attempt += 1
            self.attempts[task.name] = attempt
            if self._stopped:
                return {**_not_started(task, "stopped before it started"), "attempts": attempt}
            key = f"{task.name}#{attempt}#{id(task)}"
            ref = self._remote.remote(task, archive, self._board, key)
            with self._lock:
                self._running[key] = ref
            try:
                summary, packed, error = ray.get(ref)
            except ray.exceptions.TaskCancelledError:
                return {**_not_started(task, "cancelled before it started"), "attempts": attempt}
            except system as e:
                if self._stopped:  # its partial work is lost; what the driver has is kept, and resume continues
                    return {**_not_started(task, f"its Ray worker died while stopping ({type(e).__name__})"), "attempts": attempt}
                if attempt <= self.retries:
                    continue
                failure = RuntimeError(f"its Ray worker died {attempt} times; last: {type(e).__name__}: {_first_line(e)}")
                failure.attempts = attempt
                raise failure from None
            except ray.exceptions.RayTaskError as e:  # remote_run itself failed (nntrain missing on a node?)
                cause = getattr(e, "cause", None)
                error = cause if isinstance(cause, BaseException) else RuntimeError(_first_line(e))
                error.attempts = attempt
                raise error from None
            finally:
                with self._lock:
                    self._running.pop(key, None)
            if error is not None:
                error.attempts = attempt
                raise error
            if packed is not None:
                install(packed, Path(task.run_dir))
            return {**summary, "run_dir": task.run_dir, "attempts": attempt}

    def stop(self) -> None:
        """Running tasks end as 'interrupted' (within POLL_SECONDS and a batch); tasks not started are cancelled."""
        self._stopped = True
        ray = self._ray
        try:
            started = set(ray.get(self._board.stop.remote(), timeout=30))
        except Exception:  # noqa: BLE001 - the stop actor is gone: the tasks see that as a stop too
            started = set()
        with self._lock:
            waiting = [ref for key, ref in self._running.items() if key not in started]
        for ref in waiting:
            try:
                ray.cancel(ref)
            except Exception:  # noqa: BLE001 - it finished meanwhile
                pass

    def close(self) -> None:
        """Wait for the runs submitted (they return as they end), then release the actors and the connection."""
        if self._closed:
            return
        self._closed = True
        for thread in self._drivers:
            thread.join()
        ray = self._ray
        for actor in self._actors:
            try:
                ray.kill(actor)
            except Exception:  # noqa: BLE001 - already gone
                pass
        if self._owns and ray.is_initialized():
            ray.shutdown()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
