"""The Ray executor (nntrain.sweep.ray_executor) on a real Ray cluster this module starts on this
machine: a head node and a second node, one CPU each, with a temporary folder of their own.

Skipped only when Ray is not importable and NNTRAIN_REQUIRE_RAY is unset (CI sets it: there,
a missing Ray is an error). Each `ray start` runs in a session of its own, so the processes it
starts are in its process group, except the workers, which make groups of their own but name
the cluster's folder on their command line; teardown ends both kinds and checks that none of
them remains. `ray stop` is not used: it stops every Ray process of the machine, other users'
included.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from nntrain.errors import NntrainError
from nntrain.sweep import SweepHooks, run_sweep, sweep_options

try:
    import ray
except ImportError:
    if os.environ.get("NNTRAIN_REQUIRE_RAY"):
        raise
    pytest.skip("Ray is not installed (pip install 'nntrain[ray]'); NNTRAIN_REQUIRE_RAY=1 makes this an error", allow_module_level=True)

from nntrain.sweep.ray_executor import WORKER_PREFIX, RayExecutor

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = str(ROOT / "configs" / "quickstart.yaml")
SMALL = ["train.epochs=3", "data.options.samples=300"]
LONG = ["train.epochs=600", "data.options.samples=300", "train.batch_size=8", "train.checkpoint_every=0"]  # ~2 s a run
LONG_SPEC = sweep_options(grid=["optimizer.lr=0.03,0.01,0.003"])
RAY_SCRIPT = Path(sys.executable).with_name("ray")


# --- the cluster ----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _processes(groups: set[int], marker: str) -> list[tuple[int, str]]:
    """(pid, command line) of the processes in `groups` or whose command line contains `marker`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and (int(fields[2]) in groups or marker in cmdline):
            found.append((int(entry.name), cmdline[:160]))
    return found


class Cluster:
    def __init__(self, address: str, worker_tmp: Path):
        self.address, self.worker_tmp = address, worker_tmp

    def worker_folders(self) -> list[Path]:
        return sorted(self.worker_tmp.glob(f"{WORKER_PREFIX}*"))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if not RAY_SCRIPT.is_file():
        pytest.fail(f"the ray script is not next to {sys.executable}")
    temp_dir = Path(tempfile.mkdtemp(prefix="nnray-"))  # short: Ray's socket paths must fit in 107 characters
    worker_tmp = tmp_path_factory.mktemp("worker-tmp")  # the workers' TMPDIR, nothing the driver writes to
    # Authentication set explicitly, so that the driver (this process, whose Ray settings were read
    # when ray was imported) and both nodes agree whatever the machine has (a ~/.ray/auth_token
    # turns token mode on for `ray start --head` but not for a second node). Off: this cluster
    # lives for the module only, on an address of this machine.
    auth = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    env = {**os.environ, **auth, "TMPDIR": str(worker_tmp)}
    saved = {k: os.environ.get(k) for k in auth}
    port = _free_port()
    common = ["--num-cpus=1", "--node-ip-address=127.0.0.1", f"--temp-dir={temp_dir}", "--disable-usage-stats"]
    commands = [
        [str(RAY_SCRIPT), "start", "--head", f"--port={port}", "--include-dashboard=false", *common],
        [str(RAY_SCRIPT), "start", f"--address=127.0.0.1:{port}", *common],
    ]
    groups: set[int] = set()
    try:
        for command in commands:
            proc = subprocess.Popen(command, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            groups.add(proc.pid)  # its session and process group: every process it starts stays in it
            out, _ = proc.communicate(timeout=120)
            assert proc.returncode == 0, out
        os.environ.update(auth)
        ray.init(address=f"127.0.0.1:{port}", logging_level="ERROR", log_to_driver=False)
        deadline = time.monotonic() + 60
        while sum(n["Resources"].get("CPU", 0) for n in ray.nodes() if n["Alive"]) < 2:
            assert time.monotonic() < deadline, ray.nodes()
            time.sleep(0.2)
        yield Cluster(f"127.0.0.1:{port}", worker_tmp)
    finally:
        ray.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 10)):
            for group in groups:
                try:
                    os.killpg(group, sig)
                except ProcessLookupError:
                    pass
            for pid, _ in _processes(set(), str(temp_dir)):  # workers in process groups of their own
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + wait
            while _processes(groups, str(temp_dir)) and time.monotonic() < deadline:
                time.sleep(0.1)
        left = _processes(groups, str(temp_dir))
        shutil.rmtree(temp_dir, ignore_errors=True)
        assert not left, f"Ray processes left running: {left}"


@pytest.fixture
def executor(cluster):
    with RayExecutor(jobs=2, address=cluster.address, cpus_per_trial=1) as ex:
        yield ex


class Recording:
    """An executor that passes everything to another one and keeps the futures, to read their summaries."""

    def __init__(self, inner):
        self.inner, self.jobs, self.futures = inner, inner.jobs, {}

    def submit(self, task):
        self.futures[task.name] = self.inner.submit(task)
        return self.futures[task.name]

    def stop(self):
        self.inner.stop()

    def close(self):
        pass


# --- helpers -------------------------------------------------------------------------------------


def read_csv(path, drop=("seconds", "attempts")) -> list[dict]:
    with open(path, newline="") as f:
        return [{k: v for k, v in row.items() if k not in drop} for row in csv.DictReader(f)]


def run_dirs(sweep_dir: Path) -> list[Path]:
    return sorted(p for p in sweep_dir.iterdir() if p.is_dir())


def same_sweeps(a: Path, b: Path) -> None:
    assert read_csv(a / "sweep.csv") == read_csv(b / "sweep.csv")
    assert [p.name for p in run_dirs(a)] == [p.name for p in run_dirs(b)]
    for x, y in zip(run_dirs(a), run_dirs(b)):
        assert read_csv(x / "metrics.csv") == read_csv(y / "metrics.csv"), x.name


def wait_for_worker_run(cluster, name: str, epochs: int, timeout: float = 60) -> Path:
    """The worker folder in which run `name` has finished `epochs` epochs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for folder in cluster.worker_folders():
            metrics = folder / name / "metrics.csv"
            try:
                if len(metrics.read_text().splitlines()) > epochs:
                    return folder
            except OSError:
                pass
        time.sleep(0.02)
    raise AssertionError(f"{name} did not reach epoch {epochs} on a worker")


@pytest.fixture(scope="module")
def long_reference(tmp_path_factory):
    """The undisturbed sweep (serial) that the killed and the stopped sweeps must equal."""
    path = tmp_path_factory.mktemp("reference") / "sw"
    result = run_sweep(QUICKSTART, LONG, LONG_SPEC, sweep_dir=path)
    assert result["status"] == "completed"
    return path


# --- tests ---------------------------------------------------------------------------------------


def test_an_archive_only_unpacks_files_and_folders_inside_the_run(tmp_path):
    """What comes back from a worker is unpacked as plain files and folders under the run directory, nothing else."""
    import io
    import tarfile

    from nntrain.sweep.ray_executor import _extract, pack

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("name: x\n")
    (run / "checkpoints" / "last.npz").write_bytes(b"npz")
    _extract(pack(run), tmp_path / "back")
    assert (tmp_path / "back" / "checkpoints" / "last.npz").read_bytes() == b"npz"
    for name, kind in (("../outside.txt", tarfile.REGTYPE), ("link", tarfile.SYMTYPE), ("/abs.txt", tarfile.REGTYPE)):
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w") as tar:
            member = tarfile.TarInfo(name)
            member.type = kind
            member.linkname = "/etc/passwd" if kind == tarfile.SYMTYPE else ""
            tar.addfile(member, io.BytesIO(b""))
        with pytest.raises(NntrainError, match="not a file or folder inside it"):
            _extract(archive.getvalue(), tmp_path / f"bad-{kind}-{len(name)}")
    assert not (tmp_path / "outside.txt").exists()


def test_missing_ray_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(NntrainError, match=r"pip install 'nntrain\[ray\]'"):
        RayExecutor(jobs=1)


def test_serial_local_and_ray_give_the_same_trials_and_metrics(tmp_path, cluster, executor):
    spec = sweep_options(grid=["optimizer.lr=0.1,0.03"], folds=2)
    serial = run_sweep(QUICKSTART, SMALL, spec, sweep_dir=tmp_path / "serial")
    local = run_sweep(QUICKSTART, SMALL, spec, sweep_dir=tmp_path / "local", jobs=2)
    recording = Recording(executor)
    on_ray = run_sweep(QUICKSTART, SMALL, spec, sweep_dir=tmp_path / "ray", executor=recording)
    assert serial["status"] == local["status"] == on_ray["status"] == "completed"
    assert [e["trial"] for e in on_ray["leaderboard"]] == [e["trial"] for e in serial["leaderboard"]]
    assert [e["mean"] for e in on_ray["leaderboard"]] == [e["mean"] for e in serial["leaderboard"]]
    same_sweeps(tmp_path / "serial", tmp_path / "ray")
    same_sweeps(tmp_path / "local", tmp_path / "ray")
    assert {name: f.result()["attempts"] for name, f in recording.futures.items()} == {
        f"trial-00{t}-fold-{k}": 1 for t in (0, 1) for k in (0, 1)
    }

    # No shared filesystem needed: the workers trained in folders of their own (removed since), and
    # the driver's run directories are complete, their summaries naming the driver's paths.
    assert cluster.worker_folders() == []
    for run in run_dirs(tmp_path / "ray"):
        assert (run / "config.yaml").is_file() and (run / "metrics.csv").is_file() and (run / "splits.npz").is_file()
        assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.npz", "last.npz"]
        assert json.loads((run / "summary.json").read_text())["run_dir"] == str(run)
        assert recording.futures[run.name].result()["run_dir"] == str(run)
    assert not [p.name for p in (tmp_path / "ray").iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_a_trial_that_fails_on_its_own_is_recorded_and_not_retried(tmp_path, executor):
    recording = Recording(executor)
    spec = sweep_options(grid=["data.options.classes=3,7"])  # 7 classes: the 3-unit output layer is wrong, at fit time
    result = run_sweep(QUICKSTART, SMALL, spec, sweep_dir=tmp_path / "sw", executor=recording)
    assert [t["status"] for t in result["trials"]] == ["completed", "failed"]
    assert "needs 7" in result["trials"][1]["runs"][0]["message"]
    error = recording.futures["trial-001"].exception()
    assert isinstance(error, NntrainError) and error.attempts == 1
    assert executor.attempts == {"trial-000": 1, "trial-001": 1}
    assert recording.futures["trial-000"].result()["attempts"] == 1
    assert not (tmp_path / "sw" / "trial-001").exists()


def test_a_killed_worker_is_retried_and_the_sweep_equals_an_undisturbed_one(tmp_path, cluster, executor, long_reference):
    killed = {}

    def kill_the_worker_of_trial_1():
        folder = wait_for_worker_run(cluster, "trial-001", epochs=2)
        pid = int(folder.name[len(WORKER_PREFIX):].split("-")[0])
        environ = dict(v.split("=", 1) for v in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in v)
        killed.update(pid=pid, threads={k: environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")})
        os.kill(pid, signal.SIGKILL)

    killer = threading.Thread(target=kill_the_worker_of_trial_1)
    killer.start()
    recording = Recording(executor)
    result = run_sweep(QUICKSTART, LONG, LONG_SPEC, sweep_dir=tmp_path / "sw", executor=recording)
    killer.join()
    assert killed["threads"] == {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    assert result["status"] == "completed", result["trials"]
    attempts = {name: f.result()["attempts"] for name, f in recording.futures.items()}
    assert attempts == {"trial-000": 1, "trial-001": 2, "trial-002": 1}
    assert [r["attempts"] for r in read_csv(tmp_path / "sw" / "sweep.csv", drop=())] == ["1", "2", "1"]
    same_sweeps(long_reference, tmp_path / "sw")
    assert cluster.worker_folders() == []  # the killed worker's folder too (removed by a later task)


def test_stop_interrupts_running_trials_and_resume_on_the_local_executor_finishes(tmp_path, cluster, executor, long_reference):
    hooks = SweepHooks()

    def stop_when_both_train():
        wait_for_worker_run(cluster, "trial-000", epochs=2)
        wait_for_worker_run(cluster, "trial-001", epochs=2)
        hooks.stop.signal = signal.SIGINT  # what Ctrl-C does: run_sweep calls executor.stop()

    stopper = threading.Thread(target=stop_when_both_train)
    stopper.start()
    sweep_dir = tmp_path / "sw"
    started = time.monotonic()
    first = run_sweep(QUICKSTART, LONG, LONG_SPEC, sweep_dir=sweep_dir, hooks=hooks, executor=executor)
    stopper.join()
    assert time.monotonic() - started < 10
    assert first["status"] == "interrupted" and first["signal"] == signal.SIGINT
    assert [t["status"] for t in first["trials"]] == ["interrupted", "interrupted", "pending"]
    for name in ("trial-000", "trial-001"):  # came back from the workers, resumable
        run = json.loads((sweep_dir / name / "summary.json").read_text())
        assert run["status"] == "interrupted" and 2 <= run["epochs_completed"] < 600
        assert (sweep_dir / name / "checkpoints" / "last.npz").is_file() and (sweep_dir / name / "config.yaml").is_file()
    assert not (sweep_dir / "trial-002").exists()
    assert cluster.worker_folders() == []

    begun = []
    resumed = run_sweep(resume=sweep_dir, jobs=2, hooks=SweepHooks(on_run_start=begun.append))  # the local executor
    assert resumed["status"] == "completed"
    assert [(t.name, t.resume) for t in begun] == [("trial-000", True), ("trial-001", True), ("trial-002", False)]
    same_sweeps(long_reference, sweep_dir)


def test_share_gives_tasks_and_the_driver_one_object(executor):
    class Tally:
        def __init__(self):
            self.seen = []

        def add(self, value):
            if value < 0:
                raise ValueError(f"negative: {value}")
            self.seen.append(value)
            return len(self.seen)

        def values(self):
            return sorted(self.seen)

    handle = executor.share(Tally())

    @ray.remote(num_cpus=1, max_retries=0)
    def report(shared, value):
        return shared["tally"].add(value)  # inside a container: the handle pickles as task data does

    assert sorted(ray.get([report.remote({"tally": handle}, v) for v in (3, 1, 2)])) == [1, 2, 3]
    assert handle.add(10) == 4 and handle.values() == [1, 2, 3, 10]
    with pytest.raises(ValueError, match="negative: -1"):
        handle.add(-1)
    with pytest.raises(AttributeError):
        handle.seen  # noqa: B018 - only methods are shared
