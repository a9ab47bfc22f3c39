"""Peak memory of one training epoch on data left on disk (.npy, rows read with pread) versus data in memory (.npz).

    pip install -e .
    python benchmarks/memory.py --gb 4 --dir /tmp/nntrain-bench

Generates float32 feature matrices (rows x 256) and 10-class labels derived from them, then trains
one epoch of the same small network through the real CLI (`python -m nntrain.cli fit ... --json`)
in a child process per measurement, and reports each child's peak resident set size and wall time:

- on disk: `data.dataset: {X: X.npy, y: y.npy}` at two sizes (--small-gb and --gb), so that the
  figures show whether memory depends on the file size;
- in memory: the same rows as an `.npz` (which nntrain loads whole) at --compare-gb sizes;
- MNIST-shaped in memory: 60000 x 784 float32 features in an `.npz`, the network 784-256-128-10 and
  batch 128 of the speed benchmark; the figure to read is peak RSS minus the data's size (the goal:
  at most 100 MB on top of the data);
- startup: `python -c 'import nntrain.cli'` (what `nntrain --help` loads) and `import nntrain.api`
  (what `fit` loads: numpy, the engine, the data code), for context.

Peak RSS is the child's own `ru_maxrss` (KiB on Linux), taken with os.wait4 on its pid by a tiny
launcher process that forked it (see LAUNCHER for why not getrusage(RUSAGE_CHILDREN) in this script:
that is the maximum over *all* children waited for, and through vfork + exec a child inherits this
script's own high-water mark). A thread also samples /proc/<pid>/status every --sample seconds to
split the peak into anonymous memory (arrays the process allocated) and file-backed memory (pages of
the memory-mapped .npy mapped into the process, which count towards RSS while mapped), with a time
line kept in the JSON; its last VmHWM reading cross-checks ru_maxrss.

Results: a Markdown table on stdout and in benchmarks/results/memory.md, the same figures in
benchmarks/results/memory.json. Linux only (/proc, ru_maxrss in KiB).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import mmap
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import numpy as np

FEATURES = 256
CLASSES = 10
DTYPE = np.float32
ROW_BYTES = FEATURES * np.dtype(DTYPE).itemsize
CHUNK_ROWS = 65536  # 64 MiB of float32 features per generated chunk
SEED = 12345
MiB = 2**20
GiB = 2**30
RESULTS = Path(__file__).resolve().parent / "results"

CONFIG = """\
# Written by benchmarks/memory.py
name: {name}
seed: 0
data:
  dataset: {dataset}
  split: {{val: {split}, test: {split}}}
  scale: standardize
model:
  layers: [{hidden}relu, {{linear: 10}}]
loss: cross_entropy
optimizer: {{name: sgd, lr: 0.05, momentum: 0.9}}
train:
  epochs: 1
  batch_size: {batch}
"""
SETUP = {"split": 0.01, "hidden": "{linear: 128}, ", "batch": 256}  # the on-disk and .npz runs
MNIST_ROWS, MNIST_FEATURES = 60000, 784
MNIST_SETUP = {"split": 0.1, "hidden": "{linear: 256}, relu, {linear: 128}, ", "batch": 128}  # epoch.py's network

# ---------------------------------------------------------------- data


def rows_for(gb: float) -> int:
    """Rows of float32 x 256 features that make `gb` GiB of features."""
    return max(1000, round(gb * GiB / ROW_BYTES))


def _problem():
    """Per-feature offsets and scales (so standardizing matters) and the weights that define the labels."""
    rng = np.random.default_rng(SEED)
    offsets = rng.normal(0, 3, FEATURES).astype(DTYPE)
    scales = rng.uniform(0.5, 4, FEATURES).astype(DTYPE)
    weights = rng.normal(0, 1, (FEATURES, CLASSES)).astype(DTYPE)
    return offsets, scales, weights


def chunk(k: int, rows: int, problem):
    """Rows k*CHUNK_ROWS ... of the data stream: the same rows whatever the file size, so files share rows."""
    offsets, scales, weights = problem
    rng = np.random.default_rng([SEED, k])
    z = rng.standard_normal((rows, FEATURES), dtype=DTYPE)
    y = np.argmax(z @ weights + rng.standard_normal((rows, CLASSES), dtype=DTYPE), axis=1).astype(np.int64)
    return z * scales + offsets, y  # features with assorted means and spreads; labels a noisy linear rule


def chunks(n: int):
    problem = _problem()
    for k, start in enumerate(range(0, n, CHUNK_ROWS)):
        yield start, *chunk(k, min(CHUNK_ROWS, n - start), problem)


def npy_ok(path: Path, shape, dtype) -> bool:
    try:
        a = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return False
    return a.shape == tuple(shape) and a.dtype == dtype


def make_npy(folder: Path, n: int) -> tuple[Path, Path]:
    """X.npy (n x 256 float32) and y.npy (n int64), written chunk by chunk through open_memmap.

    Files are written under a temporary name and renamed when complete, so an existing file of the
    right shape is a complete one and is reused.
    """
    x_path, y_path = folder / f"X-{n}.npy", folder / f"y-{n}.npy"
    if npy_ok(x_path, (n, FEATURES), DTYPE) and npy_ok(y_path, (n,), np.int64):
        print(f"  reusing {x_path} ({x_path.stat().st_size / GiB:.2f} GiB)", file=sys.stderr)
        return x_path, y_path
    t0 = time.perf_counter()
    tmp_x, tmp_y = x_path.with_suffix(".partial.npy"), y_path.with_suffix(".partial.npy")
    X = np.lib.format.open_memmap(tmp_x, mode="w+", dtype=DTYPE, shape=(n, FEATURES))
    y = np.lib.format.open_memmap(tmp_y, mode="w+", dtype=np.int64, shape=(n,))
    for start, xc, yc in chunks(n):
        X[start : start + len(xc)] = xc
        y[start : start + len(yc)] = yc
        if start // CHUNK_ROWS % 16 == 15:  # write back and unmap what is done, so generation stays small
            X.flush()
            X._mmap.madvise(mmap.MADV_DONTNEED)
    X.flush(), y.flush()
    del X, y
    os.replace(tmp_x, x_path), os.replace(tmp_y, y_path)
    print(
        f"  wrote {x_path} ({x_path.stat().st_size / GiB:.2f} GiB) in {time.perf_counter() - t0:.0f}s", file=sys.stderr
    )
    return x_path, y_path


def make_npz(folder: Path, n: int) -> Path:
    """data-N.npz with arrays X and y: the same rows as the .npy files, streamed into the zip chunk by chunk."""
    path = folder / f"data-{n}.npz"
    try:
        with np.load(path, allow_pickle=False) as z:
            if set(z.files) >= {"X", "y"} and len(z["y"]) == n:
                print(f"  reusing {path}", file=sys.stderr)
                return path
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        pass
    tmp = path.with_suffix(".partial.npz")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        with zf.open("X.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_1_0(
                f, {"descr": np.dtype(DTYPE).str, "fortran_order": False, "shape": (n, FEATURES)}
            )
            labels = np.empty(n, dtype=np.int64)
            for start, xc, yc in chunks(n):
                f.write(np.ascontiguousarray(xc).tobytes())
                labels[start : start + len(yc)] = yc
        with zf.open("y.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array(f, labels)
    os.replace(tmp, path)
    print(f"  wrote {path} ({path.stat().st_size / GiB:.2f} GiB)", file=sys.stderr)
    return path


def make_mnist_npz(folder: Path) -> Path:
    """mnist-shaped.npz: 60000 x 784 float32 "pixels" in [0, 1) and 10 classes from a noisy linear rule."""
    path = folder / "mnist-shaped.npz"
    try:
        with np.load(path, allow_pickle=False) as z:
            if z["X"].shape == (MNIST_ROWS, MNIST_FEATURES):
                print(f"  reusing {path}", file=sys.stderr)
                return path
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):
        pass
    rng = np.random.default_rng(SEED)
    X = rng.random((MNIST_ROWS, MNIST_FEATURES), dtype=DTYPE)
    weights = rng.normal(0, 1, (MNIST_FEATURES, CLASSES)).astype(DTYPE)
    y = np.argmax((X - 0.5) @ weights + rng.standard_normal((MNIST_ROWS, CLASSES), dtype=DTYPE), axis=1)
    tmp = path.with_suffix(".partial.npz")
    np.savez(tmp, X=X, y=y.astype(np.int64))
    os.replace(tmp, path)
    return path


# ---------------------------------------------------------------- measuring


def _status(pid: int) -> dict[str, int] | None:
    """VmRSS, VmHWM, RssAnon, RssFile, RssShmem of a live process, in KiB (None once it has exited)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
            out[key] = int(value.split()[0])
    return out or None


# A tiny parent for each measured command. Linux carries the old address space's high-water mark into
# ru_maxrss across exec (exec_mmap -> setmax_mm_hiwater_rss), and subprocess starts children with vfork,
# whose "old" address space is this script's own: a child's ru_maxrss could never be lower than this
# script's peak (hundreds of MiB after generating data). Forking from a fresh `python -S` of ~10 MiB
# keeps that floor far below anything measured; the launcher reports its own VmHWM as the floor.
LAUNCHER = r"""
import os, sys
out, err, *cmd = sys.argv[1:]
pid = os.fork()
if pid == 0:
    try:
        os.dup2(os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), 1)
        os.dup2(os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), 2)
        os.execv(cmd[0], cmd)
    finally:
        os._exit(127)
print(pid, flush=True)
os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped: its pid cannot be reused yet
print("exited", flush=True)
sys.stdin.readline()  # the caller has stopped sampling /proc/<pid>
_, status, usage = os.wait4(pid, 0)
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss, hwm, flush=True)
"""


def measure(cmd: list[str], sample: float, log: Path | None = None) -> dict:
    """Run `cmd`; its peak RSS (its own ru_maxrss), wall time, peaks of anon/file RSS, a time line, its stdout."""
    folder = Path(tempfile.mkdtemp(prefix="nntrain-bench-"))
    out_path, err_path = folder / "stdout", (log or folder / "stderr")
    t0 = time.perf_counter()
    launcher = subprocess.Popen(
        [sys.executable, "-S", "-c", LAUNCHER, str(out_path), str(err_path), *cmd],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    pid = int(launcher.stdout.readline())
    samples, done = [], threading.Event()

    def sampler():
        while not done.is_set():
            s = _status(pid)
            if s and "VmRSS" in s:
                samples.append(
                    (
                        round(time.perf_counter() - t0, 3),
                        s["VmRSS"],
                        s.get("RssAnon", 0),
                        s.get("RssFile", 0),
                        s["VmHWM"],
                    )
                )
            done.wait(sample)

    thread = threading.Thread(target=sampler, daemon=True)
    thread.start()
    assert launcher.stdout.readline().strip() == "exited"
    seconds = time.perf_counter() - t0
    done.set()
    thread.join()
    launcher.stdin.write("\n")
    launcher.stdin.flush()
    code, maxrss, floor = (int(v) for v in launcher.stdout.readline().split())
    launcher.wait()
    text = out_path.read_text()
    shutil.rmtree(folder)
    if code != 0:
        tail = log.read_text()[-3000:] if log else ""
        raise SystemExit(f"command failed (exit {code}): {' '.join(cmd)}\n{tail}")
    step = max(1, len(samples) // 150)
    return {
        "peak_rss_kib": maxrss,  # the child's ru_maxrss, KiB on Linux
        "launcher_hwm_kib": floor,  # the lowest ru_maxrss this method can report
        "sampled_hwm_kib": max((s[4] for s in samples), default=0),  # VmHWM last seen: a lower bound, a cross-check
        "seconds": round(seconds, 2),
        "peak_anon_kib": max((s[2] for s in samples), default=0),
        "peak_file_kib": max((s[3] for s in samples), default=0),
        "samples": len(samples),
        "timeline": [list(s[:4]) for s in samples[::step]],  # (seconds, VmRSS, RssAnon, RssFile) in KiB
        "stdout": text,
    }


def figures(m: dict) -> dict:
    mib = lambda key: round(m[key] / 1024, 1)
    return {
        "peak_rss_mib": mib("peak_rss_kib"),
        "peak_anon_mib": mib("peak_anon_kib"),
        "peak_file_mib": mib("peak_file_kib"),
        "sampled_hwm_mib": mib("sampled_hwm_kib"),
        "launcher_floor_mib": mib("launcher_hwm_kib"),
        "seconds": m["seconds"],
    }


def train(
    name: str, dataset_yaml: str, size_bytes: int, rows: int, mode: str, folder: Path, sample: float, setup=SETUP
) -> dict:
    config = folder / f"{name}.yaml"
    config.write_text(CONFIG.format(name=name, dataset=dataset_yaml, **setup))
    run_dir = folder / "runs" / name
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.parent.mkdir(exist_ok=True)
    cmd = [sys.executable, "-m", "nntrain.cli", "fit", str(config), "--run-dir", str(run_dir), "--json"]
    print(f"  {mode}, {size_bytes / GiB:.2f} GiB, {rows} rows ...", file=sys.stderr, flush=True)
    m = measure(cmd, sample, folder / f"{name}.log")
    summary = json.loads(m.pop("stdout").strip().splitlines()[-1])
    if summary["status"] != "completed":
        raise SystemExit(f"{name}: training {summary['status']}: {summary.get('message')}")
    shutil.rmtree(run_dir, ignore_errors=True)
    result = {
        "name": name,
        "mode": mode,
        "file_bytes": size_bytes,
        "rows": rows,
        **figures(m),
        "rss_over_file": round(m["peak_rss_kib"] * 1024 / size_bytes, 3),
        "test_accuracy": round(summary["final"]["test"]["accuracy"], 4),
        "train_seconds": summary["seconds"],
        "timeline_kib": m["timeline"],
    }
    print(
        f"    peak RSS {result['peak_rss_mib']:.0f} MiB (anon {result['peak_anon_mib']:.0f}, file-backed "
        f"{result['peak_file_mib']:.0f}), {result['seconds']:.1f}s, test accuracy {result['test_accuracy']}",
        file=sys.stderr,
        flush=True,
    )
    return result


# ---------------------------------------------------------------- report


def machine() -> dict:
    mem = next(line for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))
    import nntrain

    return {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "mem_total_gib": round(int(mem.split()[1]) / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "nntrain": nntrain.__version__,
        "git": _git(),
        "loadavg_start": Path("/proc/loadavg").read_text().split()[0],  # other work on the machine skews the seconds
    }


def _git() -> str | None:
    """The checkout's commit, with "+dirty" when the working tree has changes (figures depend on both)."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "nntrain"], cwd=root, capture_output=True, text=True, check=False
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def growth(results: list[dict]) -> list[str]:
    """Per mode with two sizes or more: how much peak RSS grows per GiB of data (0 if memory is bounded)."""
    lines = []
    for mode in dict.fromkeys(r["mode"] for r in results if r["file_bytes"]):
        runs = sorted((r for r in results if r["mode"] == mode), key=lambda r: r["file_bytes"])
        if len(runs) < 2:
            continue
        a, b = runs[0], runs[-1]
        slope = (b["peak_rss_mib"] - a["peak_rss_mib"]) / ((b["file_bytes"] - a["file_bytes"]) / GiB)
        anon = (b["peak_anon_mib"] - a["peak_anon_mib"]) / ((b["file_bytes"] - a["file_bytes"]) / GiB)
        lines.append(
            f"- {mode}: peak RSS grows {slope:.0f} MiB per GiB of data between {a['file_bytes'] / GiB:.2f} and "
            f"{b['file_bytes'] / GiB:.2f} GiB (anonymous part: {anon:.0f} MiB per GiB)"
            + (": independent of the data size" if slope < 50 else ": grows with the data")
        )
    return lines


def table(results: list[dict]) -> str:
    lines = [
        "| dataset on disk | mode | rows | peak RSS (MiB) | peak anon / file-backed RSS, sampled (MiB) | seconds | RSS / file size | test acc. |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        size = f"{r['file_bytes'] / GiB:.2f} GiB" if r["file_bytes"] else "-"
        ratio = f"{r['rss_over_file']:.2f}" if r["file_bytes"] else "-"
        acc = f"{r['test_accuracy']:.3f}" if r.get("test_accuracy") is not None else "-"
        split = f"{r['peak_anon_mib']:.0f} / {r['peak_file_mib']:.0f}"
        lines.append(
            f"| {size} | {r['mode']} | {r['rows']:,} | {r['peak_rss_mib']:.0f} | {split} | {r['seconds']:.1f} | {ratio} | {acc} |"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gb", type=float, default=4.0, help="size of the larger on-disk X.npy, GiB (default 4)")
    p.add_argument(
        "--small-gb", type=float, default=1.0, help="size of the smaller on-disk X.npy, GiB; 0 skips it (default 1)"
    )
    p.add_argument(
        "--compare-gb",
        type=float,
        nargs="*",
        default=[0.5, 1.0],
        help="sizes of the in-memory .npz runs, GiB (default 0.5 1)",
    )
    p.add_argument(
        "--mnist", action=argparse.BooleanOptionalAction, default=True, help="run the MNIST-shaped in-memory case"
    )
    p.add_argument("--dir", type=Path, default=Path("/tmp/nntrain-bench"), help="where data files and runs go")
    p.add_argument("--sample", type=float, default=0.05, help="seconds between /proc samples (default 0.05)")
    p.add_argument("--cleanup", action="store_true", help="delete the generated data files at the end")
    p.add_argument("--no-save", action="store_true", help="print only; do not write benchmarks/results/")
    args = p.parse_args(argv)

    args.dir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(args.dir).free
    need = sum(rows_for(g) * (ROW_BYTES + 8) for g in [args.gb, args.small_gb, *args.compare_gb] if g > 0)
    if free < need * 1.2:
        raise SystemExit(f"{args.dir} has {free / GiB:.1f} GiB free; the data files need about {need / GiB:.1f} GiB")

    info = machine()
    print(f"machine: {info}", file=sys.stderr)
    results = []

    # Startup: the CLI module alone (what `nntrain --help` loads), and the API a `fit` imports (numpy, engine, data).
    for code, mode in (
        ("import nntrain.cli", "startup: `import nntrain.cli`"),
        ("import nntrain.api", "startup: `import nntrain.api`"),
    ):
        print(f"startup baseline: python -c '{code}'", file=sys.stderr)
        m = measure([sys.executable, "-c", code], args.sample)
        results.append(
            {
                "name": code.split()[-1],
                "mode": mode,
                "file_bytes": 0,
                "rows": 0,
                **figures(m),
                "rss_over_file": None,
                "test_accuracy": None,
            }
        )

    for gb in sorted({g for g in (args.small_gb, args.gb) if g > 0}):
        n = rows_for(gb)
        print(f"on-disk data, {gb} GiB:", file=sys.stderr)
        x_path, y_path = make_npy(args.dir, n)
        size = x_path.stat().st_size + y_path.stat().st_size
        dataset = f"{{X: {x_path.resolve()}, y: {y_path.resolve()}}}"
        results.append(train(f"disk-{n}", dataset, size, n, "on disk (.npy, rows read with pread)", args.dir, args.sample))

    for gb in sorted(set(args.compare_gb)):
        n = rows_for(gb)
        print(f"in-memory data, {gb} GiB:", file=sys.stderr)
        path = make_npz(args.dir, n)
        results.append(
            train(f"memory-{n}", str(path.resolve()), path.stat().st_size, n, "in memory (.npz)", args.dir, args.sample)
        )

    notes = growth(results)
    if args.mnist:
        print("MNIST-shaped data in memory:", file=sys.stderr)
        path = make_mnist_npz(args.dir)
        r = train(
            "mnist-shaped", str(path.resolve()), path.stat().st_size, MNIST_ROWS, "in memory (.npz), MNIST-shaped",
            args.dir, args.sample, MNIST_SETUP,
        )
        results.append(r)
        over = r["peak_rss_mib"] * MiB - r["file_bytes"]
        notes.append(
            f"- MNIST-shaped in memory (60000 x 784 float32, 784-256-128-10, batch 128, one epoch): peak RSS"
            f" {r['peak_rss_mib']:.0f} MiB = the data ({r['file_bytes'] / 1e6:.1f} MB) + {over / 1e6:.1f} MB"
            f" (goal: + 100 MB at most: {'met' if over <= 100e6 else 'NOT met'})"
        )

    info["loadavg_end"] = Path("/proc/loadavg").read_text().split()[0]
    md = table(results) + "\n\n" + "\n".join(notes)
    header = (
        f"# nntrain memory benchmark\n\n"
        f"{info['date']} · {info['nproc']} CPUs, {info['mem_total_gib']} GiB RAM · Linux {info['kernel']} · "
        f"Python {info['python']}, numpy {info['numpy']}, nntrain {info['nntrain']} (git {info['git']}) · load average {info['loadavg_start']} at the start, {info['loadavg_end']} at the end\n\n"
        f"One epoch, batch 256, network 256-128-relu-10, sgd momentum, split val/test 0.01, standardize"
        f" (the MNIST-shaped row: see its note). "
        f"Peak RSS is each child's own ru_maxrss; anon / file-backed are the peaks of RssAnon and RssFile sampled "
        f"from /proc every {args.sample}s. Sizes are X plus y on disk; the .npz holds float32 X.\n\n"
    )
    print(md)
    if not args.no_save:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "memory.md").write_text(header + md + "\n")
        (RESULTS / "memory.json").write_text(
            json.dumps({"machine": info, "command": sys.argv, "results": results}, indent=1) + "\n"
        )
        print(f"wrote {RESULTS / 'memory.md'} and memory.json", file=sys.stderr)

    if args.cleanup:
        for pattern in ("X-*.npy", "y-*.npy", "data-*.npz", "mnist-shaped.npz"):
            for f in args.dir.glob(pattern):
                f.unlink()
        shutil.rmtree(args.dir / "runs", ignore_errors=True)
        print(f"deleted the data files in {args.dir}", file=sys.stderr)


if __name__ == "__main__":
    main()
