"""Reading a table file into arrays: nntrain's `read_table` against pandas, seconds and peak memory.

    pip install -e ".[bench]"          # pandas: benchmark only
    python benchmarks/ingest.py        # 5 rounds, several minutes on 2 cores; --quick for a smoke run

Files (generated here from a seed, into --dir, and reused while their parameters match):
- mnist-9MB: 5000 rows x 785 integer columns, `label` (0..9) first and 784 pixel values 0..255,
  mostly zeros with blobs of "ink" around the centre as in MNIST digits (about 9 MB of CSV);
- wide-200MB: 1,000,000 rows x 20 columns, 18 floats f0..f17 (4 decimals, assorted scales),
  `color` (text, 5 values) and `label` (integer 0..9, last), about 200 MB of CSV; and its
  Parquet copy (pyarrow, default snappy compression). --quick: 100,000 rows (about 20 MB).

Readers, each measurement in a fresh child process:
- nntrain: `nntrain.data.files.read_table(path, options=TableOptions(target="label"))`, which
  reads the file and encodes it: X (rows, features) float64 with `color` one-hot, y, the encoder;
- pandas: `pandas.read_csv(path)` / `pandas.read_parquet(path)` (a DataFrame, nothing encoded);
- pandas+numpy: the same, then the feature columns as float64 the way one would write it for a
  trainer: `df.drop(columns="label")`, `pd.get_dummies(..., columns=["color"])` for the wide
  file, `.to_numpy(dtype=np.float64)`, and `df["label"].to_numpy()`;
- nntrain validate (mnist-9MB only): the whole command, `python -m nntrain.cli validate CONFIG`,
  interpreter start, imports, reading, column report, the network built, the config printed.

The seconds of a reader are those of the read call alone (imports are done and timed first:
numpy, pyarrow.csv / .parquet / .compute and nntrain.data.files for nntrain; pandas, and
pyarrow.parquet for Parquet, for pandas); "process" is the child's wall time from start to exit.
Peak RSS is the child's own ru_maxrss, taken by os.wait4 in a tiny `python -S` launcher that
forks it (as in benchmarks/memory.py: a child started from this script through vfork + exec would
inherit this script's high-water mark into ru_maxrss); the child also reports its own VmHWM from
/proc/self/status, a cross-check, and its RSS after the imports, the floor under the read.

Rounds are interleaved: every round runs every (file, reader) once, the order rotated by one
each round; each figure is the median (min-max) over the rounds. The files are read once before
the rounds, so every read finds them in the page cache. Each child checks what it read: shapes
and sums of X and y, which must agree between nntrain and pandas+numpy (else the run fails).

pyarrow reads CSV on as many threads as there are CPUs (nntrain inherits that), pandas' C parser
uses one: both are measured as they come. With --profile (or `auto`, the default, when the
mnist-9MB target is missed) one more nntrain child reads mnist-9MB under cProfile and the
functions of nntrain/ that take the time are listed.

Results: a Markdown table on stdout and in benchmarks/results/ingest.md, everything in
benchmarks/results/ingest.json (--quick writes to a temporary directory unless --out is given).
Linux only (/proc, ru_maxrss in KiB).
"""

from __future__ import annotations

import os
import sys

# Run as a script, this folder is sys.path[0], where benchmarks/profile.py would shadow the standard
# library's `profile` (which cProfile imports): take the folder off the path.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import argparse
import datetime as dt
import json
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SEED = 20261124
GENERATOR = 2  # bump when the generated files change, so cached copies are written again
MiB = 2**20
TARGET_RATIO = 1.5  # nntrain read_table / pandas.read_csv on mnist-9MB
MNIST_ROWS, SIDE = 5000, 28
WIDE_ROWS, WIDE_ROWS_QUICK, WIDE_FLOATS = 1_000_000, 100_000, 18
COLORS = ("red", "green", "blue", "amber", "violet")
CHUNK = 100_000  # rows of the wide file generated at a time

VALIDATE_CONFIG = """\
# Written by benchmarks/ingest.py
name: ingest-mnist
seed: 0
data:
  dataset: {path}
  target: label
  split: {{val: 0.1, test: 0.1}}
  scale: standardize
model:
  layers: [{{linear: 128}}, relu, {{linear: 10}}]
loss: cross_entropy
optimizer: {{name: sgd, lr: 0.05, momentum: 0.9}}
train:
  epochs: 1
  batch_size: 128
"""


# ---------------------------------------------------------------- data


def _mnist_frame(seed: int):
    """label (rows,) int and pixels (rows, 784) uint8: MNIST-like, ~19 % of pixels inked, a 3-pixel empty border."""
    rng = np.random.default_rng([seed, 784])
    yy, xx = np.mgrid[0:SIDE, 0:SIDE]
    maps = []
    for _ in range(10):  # per class: a few Gaussian strokes around the centre
        p = np.zeros((SIDE, SIDE))
        for _ in range(rng.integers(3, 6)):
            cy, cx = rng.uniform(9, 19, 2)
            sy, sx = rng.uniform(2, 6, 2)
            p += np.exp(-(((yy - cy) / sy) ** 2 + ((xx - cx) / sx) ** 2))
        p = np.minimum(1.5 * p / p.max(), 0.95)
        p[:3], p[-3:], p[:, :3], p[:, -3:] = 0, 0, 0, 0
        maps.append(p.ravel())
    maps = np.array(maps)
    labels = rng.integers(0, 10, MNIST_ROWS)
    shift = rng.integers(-2, 3, (MNIST_ROWS, 2))  # each digit moved a little
    probs = maps[labels].reshape(MNIST_ROWS, SIDE, SIDE)
    for dy in range(-2, 3):
        for dx in range(-2, 3):
            rows = (shift[:, 0] == dy) & (shift[:, 1] == dx)
            probs[rows] = np.roll(probs[rows], (dy, dx), axis=(1, 2))
    inked = rng.random(probs.shape) < probs
    solid = rng.random(probs.shape) < 0.55  # most ink is (nearly) full intensity, the edges are grey
    values = np.where(solid, rng.integers(250, 256, probs.shape), rng.integers(1, 250, probs.shape))
    pixels = np.where(inked, values, 0).astype(np.uint8).reshape(MNIST_ROWS, SIDE * SIDE)
    return labels, pixels


def _wide_chunk(k: int, rows: int):
    """Rows k*CHUNK ... of the wide table as a pyarrow Table (the same rows whatever the file size)."""
    import pyarrow as pa

    scales = np.random.default_rng([SEED, 0]).uniform(0.01, 4000, WIDE_FLOATS)
    weights = np.random.default_rng([SEED, 1]).normal(0, 1, (WIDE_FLOATS + len(COLORS), 10))
    rng = np.random.default_rng([SEED, 2, k])
    z = rng.standard_normal((rows, WIDE_FLOATS))
    color = rng.integers(0, len(COLORS), rows)
    onehot = np.eye(len(COLORS))[color]
    label = np.argmax(np.hstack([z, onehot]) @ weights + rng.standard_normal((rows, 10)), axis=1)
    columns = {f"f{j}": np.round(z[:, j] * scales[j], 5) for j in range(WIDE_FLOATS)}
    columns["color"] = pa.array(np.array(COLORS)[color])
    columns["label"] = label.astype(np.int64)
    return pa.table(columns)


def _fresh(path: Path, meta: dict) -> bool:
    """Whether `path` exists and was written by this generator with these parameters."""
    stamp = path.with_name(path.name + ".meta.json")
    try:
        return path.exists() and json.loads(stamp.read_text()) == meta
    except (OSError, ValueError):
        return False


def _stamp(path: Path, meta: dict) -> None:
    path.with_name(path.name + ".meta.json").write_text(json.dumps(meta))


def make_files(folder: Path, wide_rows: int) -> dict[str, dict]:
    """The benchmark's files: {name: {path, format, rows, columns, bytes}}.

    Each is written under a temporary name, then renamed, with a stamp of its parameters next to it.
    """
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    mnist = folder / "mnist-9MB.csv"
    meta = {"generator": GENERATOR, "seed": SEED, "rows": MNIST_ROWS}
    if not _fresh(mnist, meta):
        t0 = time.perf_counter()
        labels, pixels = _mnist_frame(SEED)
        tmp = mnist.with_name(mnist.name + ".partial")
        with open(tmp, "w", newline="") as f:
            f.write(",".join(["label", *(f"pixel{j}" for j in range(SIDE * SIDE))]) + "\n")
            for label, row in zip(labels.tolist(), pixels.tolist()):
                f.write(f"{label}," + ",".join(map(str, row)) + "\n")
        os.replace(tmp, mnist)
        _stamp(mnist, meta)
        print(f"  wrote {mnist} in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    files["mnist-9MB"] = {"path": mnist, "format": "csv", "rows": MNIST_ROWS, "columns": 785, "category": None}

    label = "wide-200MB" if wide_rows == WIDE_ROWS else f"wide-{wide_rows * 200 // WIDE_ROWS}MB"
    wide, wide_pq = folder / f"wide-{wide_rows}.csv", folder / f"wide-{wide_rows}.parquet"
    meta = {"generator": GENERATOR, "seed": SEED, "rows": wide_rows, "chunk": CHUNK}
    if not (_fresh(wide, meta) and _fresh(wide_pq, meta)):
        t0 = time.perf_counter()
        tmp, tmp_pq = wide.with_name(wide.name + ".partial"), wide_pq.with_name(wide_pq.name + ".partial")
        first = _wide_chunk(0, min(CHUNK, wide_rows))
        options = pcsv.WriteOptions(include_header=False, quoting_style="none")
        with open(tmp, "wb") as f, pcsv.CSVWriter(f, first.schema, write_options=options) as w, \
                pq.ParquetWriter(tmp_pq, first.schema) as wp:
            f.write((",".join(first.column_names) + "\n").encode())  # pyarrow would quote the names
            for k, start in enumerate(range(0, wide_rows, CHUNK)):
                part = first if k == 0 else _wide_chunk(k, min(CHUNK, wide_rows - start))
                w.write_table(part)
                wp.write_table(part)
        os.replace(tmp, wide), os.replace(tmp_pq, wide_pq)
        _stamp(wide, meta), _stamp(wide_pq, meta)
        print(f"  wrote {wide} and {wide_pq.name} in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    common = {"rows": wide_rows, "columns": 2 + WIDE_FLOATS, "category": "color"}
    files[f"{label} CSV"] = {"path": wide, "format": "csv", **common}
    files[f"{label} Parquet"] = {"path": wide_pq, "format": "parquet", **common}
    for f in files.values():
        f["bytes"] = f["path"].stat().st_size
    return files


# ---------------------------------------------------------------- measuring

# The measured child: imports (timed), the read (timed), then checks of what was read; one JSON line out.
# pyarrow imports pandas, when it is installed, the first time it builds an array or a scalar (its pandas shim
# checks whether the values are pandas objects): ~0.25 s and ~50 MiB that nntrain's read pays where pandas is
# installed and not where it is not (pandas is no dependency of nntrain). The "no pandas" variants make it
# unimportable, as in an install without the bench extra.
BLOCK_PANDAS = r"""
import sys
class _NoPandas:
    def find_spec(self, name, path=None, target=None):
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by benchmarks/ingest.py)", name=name)
sys.meta_path.insert(0, _NoPandas())
"""

VALIDATE_NO_PANDAS = BLOCK_PANDAS + r"""
sys.argv = ["nntrain", "validate", *sys.argv[1:]]
from nntrain.cli import main
main()
"""

CHILD = r"""
import json, os, sys, time
t_start = time.perf_counter()
spec = json.loads(sys.argv[1])
if spec["block_pandas"]:
    exec(spec["block_pandas"])

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])

import numpy as np
if spec["reader"].startswith("nntrain"):
    import pyarrow, pyarrow.compute, pyarrow.csv, pyarrow.parquet
    from nntrain.data.files import TableOptions, read_table

    def read():
        d = read_table(spec["path"], options=TableOptions(target=spec["target"]))
        return d.X, d.y
else:
    import pandas as pd
    if spec["format"] == "parquet":
        import pyarrow.parquet
    load = pd.read_parquet if spec["format"] == "parquet" else pd.read_csv

    def read():
        df = load(spec["path"])
        if spec["reader"] == "pandas":
            return df, None
        features = df.drop(columns=spec["target"])
        if spec["category"]:
            features = pd.get_dummies(features, columns=[spec["category"]], dtype=np.float64)
        return features.to_numpy(dtype=np.float64), df[spec["target"]].to_numpy()
imported = time.perf_counter()
rss_imported = status("VmRSS")
modules = set(sys.modules)
if spec.get("profile"):
    import cProfile
    profiler = cProfile.Profile()
    t0 = time.perf_counter()
    X, y = profiler.runcall(read)
    seconds = time.perf_counter() - t0
    profiler.dump_stats(spec["profile"])
else:
    t0 = time.perf_counter()
    X, y = read()
    seconds = time.perf_counter() - t0
if y is None:  # a DataFrame
    check = {"shape": list(X.shape), "columns": list(map(str, X.columns[:3]))}
else:
    check = {"shape": list(X.shape), "X_sum": float(np.nansum(X)), "X_nan": int(np.isnan(X).sum()),
             "y_sum": float(np.asarray(y, dtype=np.float64).sum()), "y_dtype": str(y.dtype)}
check["imported_by_read"] = sorted({m.split(".")[0] for m in sys.modules if not m.startswith("_")}
                                   - {m.split(".")[0] for m in modules})  # packages the read itself imported
print(json.dumps({"seconds": seconds, "import_seconds": imported - t_start, "rss_imported_kib": rss_imported,
                  "vmhwm_kib": status("VmHWM"), "check": check}), flush=True)
"""

# A tiny parent for each measured command (see benchmarks/memory.py): Linux carries the old address space's
# high-water mark into ru_maxrss across exec, and subprocess starts children with vfork, so a child of this
# script could never report less than this script's own peak. Forked from a fresh `python -S` (~9 MiB), it
# reports its own.
LAUNCHER = r"""
import os, sys, time
out, err, *cmd = sys.argv[1:]
t0 = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.dup2(os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), 1)
        os.dup2(os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), 2)
        os.execv(cmd[0], cmd)
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss, time.perf_counter() - t0, flush=True)
"""


def run_child(cmd: list[str]) -> dict:
    """Run `cmd` from the launcher: exit code, its ru_maxrss (KiB), wall seconds, stdout, stderr."""
    folder = Path(tempfile.mkdtemp(prefix="nntrain-ingest-"))
    out, err = folder / "stdout", folder / "stderr"
    try:
        launcher = subprocess.run(
            [sys.executable, "-S", "-c", LAUNCHER, str(out), str(err), *cmd],
            capture_output=True, text=True, cwd=ROOT, check=True,
        )
        code, maxrss, wall = launcher.stdout.split()
        return {"code": int(code), "maxrss_kib": int(maxrss), "wall": float(wall),
                "stdout": out.read_text(), "stderr": err.read_text()}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def measure(job: dict, profile: str | None = None) -> dict:
    """One measurement of `job` (a file and a reader) in a fresh child."""
    f = job["file"]
    if job["reader"].startswith("nntrain validate"):
        if job["reader"] == "nntrain validate":
            r = run_child([sys.executable, "-m", "nntrain.cli", "validate", str(job["config"])])
        else:
            r = run_child([sys.executable, "-c", VALIDATE_NO_PANDAS, str(job["config"])])
        if r["code"] != 0:
            raise SystemExit(f"nntrain validate failed (exit {r['code']}):\n{r['stderr'][-3000:]}")
        return {"seconds": r["wall"], "process_seconds": r["wall"], "peak_rss_kib": r["maxrss_kib"],
                "stderr_lines": len(r["stderr"].splitlines())}
    spec = {"reader": job["reader"], "path": str(f["path"]), "format": f["format"], "target": "label",
            "category": f["category"], "profile": profile,
            "block_pandas": BLOCK_PANDAS if job["reader"] == "nntrain, no pandas" else ""}
    r = run_child([sys.executable, "-c", CHILD, json.dumps(spec)])
    if r["code"] != 0:
        raise SystemExit(f"{job['reader']} on {f['path']} failed (exit {r['code']}):\n{r['stderr'][-3000:]}")
    out = json.loads(r["stdout"].strip().splitlines()[-1])
    return {"seconds": out["seconds"], "process_seconds": r["wall"], "import_seconds": out["import_seconds"],
            "peak_rss_kib": r["maxrss_kib"], "vmhwm_kib": out["vmhwm_kib"],
            "rss_imported_kib": out["rss_imported_kib"], "check": out["check"]}


READERS = ("nntrain", "nntrain, no pandas", "pandas", "pandas+numpy")
NNTRAIN_READS = ("nntrain", "nntrain, no pandas")
VALIDATES = ("nntrain validate", "nntrain validate, no pandas")


def jobs_for(files: dict, config: Path) -> list[dict]:
    jobs = []
    for name, f in files.items():
        for reader in READERS:
            jobs.append({"name": name, "file": f, "reader": reader})
        if name == "mnist-9MB":
            jobs += [{"name": name, "file": f, "reader": reader, "config": config} for reader in VALIDATES]
    return jobs


def check_agreement(results: list[dict]) -> list[str]:
    """nntrain's X and y against pandas+numpy's: the same shape, the same sums. A list of disagreements."""
    problems = []
    by = {(r["name"], r["reader"]): r for r in results}
    for r in results:
        if r["reader"] not in NNTRAIN_READS:
            continue
        a, b = r["check"], by[(r["name"], "pandas+numpy")]["check"]
        if a["shape"] != b["shape"] or a["X_nan"] != b["X_nan"]:
            problems.append(
                f"{r['name']}: {r['reader']} X {a['shape']} ({a['X_nan']} NaN), pandas {b['shape']} ({b['X_nan']} NaN)"
            )
        for key in ("X_sum", "y_sum"):
            if not np.isclose(a[key], b[key], rtol=1e-9, atol=1e-6):
                problems.append(f"{r['name']}: {key} {r['reader']} {a[key]!r}, pandas {b[key]!r}")
    return problems


# ---------------------------------------------------------------- profile


def profile_nntrain(job: dict, top: int = 15) -> dict:
    """One nntrain read of `job`'s file under cProfile: nntrain/ functions by cumulative time, all by own time."""
    import pstats

    folder = Path(tempfile.mkdtemp(prefix="nntrain-ingest-prof-"))
    try:
        stats_file = folder / "read.prof"
        m = measure(job, profile=str(stats_file))
        st = pstats.Stats(str(stats_file))
        rows = []
        for (file, line, func), (cc, nc, tt, ct, _) in st.stats.items():
            rows.append({"function": _where(file, line, func), "calls": nc, "own_s": round(tt, 4),
                         "cumulative_s": round(ct, 4), "nntrain": f"{os.sep}nntrain{os.sep}" in file})
        total = st.total_tt
        imports = sum(ct for (file, _, func), (_, _, _, ct, _) in st.stats.items()
                      if func == "_find_and_load" and "importlib._bootstrap" in file and "external" not in file)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    ours = sorted((r for r in rows if r["nntrain"]), key=lambda r: -r["cumulative_s"])[:top]
    own = sorted(rows, key=lambda r: -r["own_s"])[:top]
    return {"file": job["name"], "reader": job["reader"], "seconds_profiled": round(m["seconds"], 3),
            "total_own_s": round(total, 3), "imports_s": round(imports, 3),
            "nntrain_by_cumulative": ours, "all_by_own": own}


def _where(file: str, line: int, func: str) -> str:
    if file == "~":
        return func  # a builtin: '<built-in method ...>' or "<method '...' of ... objects>"
    p = Path(file)
    try:
        p = p.relative_to(ROOT)
    except ValueError:
        parts = p.parts
        p = Path(*parts[parts.index("site-packages") + 1 :]) if "site-packages" in parts else Path(p.name)
    return f"{p}:{line} {func}"


# ---------------------------------------------------------------- report


def machine() -> dict:
    import pandas
    import pyarrow

    import nntrain

    mem = next(line for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))
    return {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "mem_total_gib": round(int(mem.split()[1]) / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pandas": pandas.__version__,
        "pyarrow": pyarrow.__version__,
        "nntrain": nntrain.__version__,
        "git": _git(),
        "loadavg_start": Path("/proc/loadavg").read_text().split()[0],
    }


def _git() -> str | None:
    """The checkout's commit, with "+dirty" when nntrain/ has changes (figures depend on both)."""
    try:
        git = lambda *a, check: subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True, check=check)
        head = git("rev-parse", "--short", "HEAD", check=True)
        dirty = git("status", "--porcelain", "--", "nntrain", check=False)
    except (OSError, subprocess.CalledProcessError):
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def summarise(job: dict, runs: list[dict]) -> dict:
    secs = [r["seconds"] for r in runs]
    proc = [r["process_seconds"] for r in runs]
    rss = [r["peak_rss_kib"] / 1024 for r in runs]
    out = {
        "name": job["name"], "reader": job["reader"], "format": job["file"]["format"], "bytes": job["file"]["bytes"],
        "rows": job["file"]["rows"], "columns": job["file"]["columns"],
        "median_s": statistics.median(secs), "min_s": min(secs), "max_s": max(secs),
        "process_median_s": statistics.median(proc),
        "peak_rss_mib": statistics.median(rss), "peak_rss_max_mib": max(rss),
        "runs": runs,
    }
    if "rss_imported_kib" in runs[0]:
        out["rss_imported_mib"] = statistics.median(r["rss_imported_kib"] / 1024 for r in runs)
        out["import_median_s"] = statistics.median(r["import_seconds"] for r in runs)
        out["vmhwm_max_mib"] = max(r["vmhwm_kib"] / 1024 for r in runs)
        out["check"] = runs[0]["check"]
    return out


def ratios(results: list[dict]) -> None:
    """nntrain / pandas (read only) and nntrain / pandas+numpy, per file; validate against a pandas child's whole time.

    `ratio_*`: of the medians; `paired_ratio_*`: the median over the rounds of the ratio within each round (the two
    measured a few seconds apart), which drifting load on the machine skews less.
    """
    by = {(r["name"], r["reader"]): r for r in results}
    for r in results:
        if r["reader"] not in (*NNTRAIN_READS, *VALIDATES):
            continue
        key = "median_s" if r["reader"] in NNTRAIN_READS else "process_median_s"
        run_key = "seconds" if r["reader"] in NNTRAIN_READS else "process_seconds"
        for suffix, other in (("pandas", "pandas"), ("pandas_numpy", "pandas+numpy")):
            o = by[(r["name"], other)]
            r[f"ratio_{suffix}"] = r["median_s"] / o[key]
            r[f"paired_ratio_{suffix}"] = statistics.median(
                a["seconds"] / b[run_key] for a, b in zip(r["runs"], o["runs"])
            )


def describe(reader: str, fmt: str) -> str:
    load = "read_parquet" if fmt == "parquet" else "read_csv"
    return {
        "nntrain": "nntrain `read_table` (read + encode)",
        "nntrain, no pandas": "nntrain `read_table`, pandas not importable",
        "pandas": f"pandas `{load}`",
        "pandas+numpy": f"pandas `{load}` + `.to_numpy(float64)`",
        "nntrain validate": "`nntrain validate` (whole process)",
        "nntrain validate, no pandas": "`nntrain validate`, pandas not importable",
    }[reader]


def table(results: list[dict]) -> str:
    lines = [
        "| file | size | reader | median s (min-max) | nntrain / pandas | nntrain / pandas+numpy | process s"
        " | peak RSS MiB (after imports) |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        ratio = lambda k: f"{r[k]:.2f}x ({r['paired_' + k]:.2f}x)" if k in r else ""
        after = f" ({r['rss_imported_mib']:.0f})" if "rss_imported_mib" in r else ""
        lines.append(
            f"| {r['name']} | {r['bytes'] / 1e6:.1f} MB | {describe(r['reader'], r['format'])} | "
            f"{r['median_s']:.3f} ({r['min_s']:.3f}-{r['max_s']:.3f}) | {ratio('ratio_pandas')}"
            f" | {ratio('ratio_pandas_numpy')} | "
            f"{r['process_median_s']:.2f} | {r['peak_rss_mib']:.0f}{after} |"
        )
    return "\n".join(lines)


def profile_md(p: dict) -> str:
    lines = [
        f"cProfile of one {describe(p['reader'], 'csv')} of {p['file']}: {p['seconds_profiled']:.3f} s under the"
        f" profiler, of which {p['imports_s']:.3f} s importing modules the read needed (`import` statements run"
        " inside it).",
        "",
        "| nntrain/ function | calls | own s | cumulative s |",
        "|---|---:|---:|---:|",
    ]
    row = lambda r: f"| `{r['function']}` | {r['calls']} | {r['own_s']:.3f} | {r['cumulative_s']:.3f} |"
    lines += [row(r) for r in p["nntrain_by_cumulative"]]
    lines += ["", "| any function, by own time | calls | own s | cumulative s |", "|---|---:|---:|---:|"]
    lines += [row(r) for r in p["all_by_own"]]
    return "\n".join(lines)


# ---------------------------------------------------------------- main


def _args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=5, help="measurements per file and reader (default 5)")
    p.add_argument("--quick", action="store_true", help="smoke run: 2 rounds, the wide file 100,000 rows (~20 MB)")
    p.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "nntrain-bench-ingest",
                   help="where the generated files are kept and reused (default: TMPDIR/nntrain-bench-ingest)")
    p.add_argument("--profile", choices=("auto", "always", "never"), default="auto",
                   help="cProfile an nntrain read of mnist-9MB: auto (if the 1.5x target is missed), always, never")
    p.add_argument("--out", default=None, help="results path without suffix (default benchmarks/results/ingest)")
    p.add_argument("--no-save", action="store_true", help="print only; write no results files")
    args = p.parse_args(argv)
    if args.quick:
        args.rounds = min(args.rounds, 2)
    return args


def main(argv=None) -> int:
    args = _args(argv)
    wide_rows = WIDE_ROWS_QUICK if args.quick else WIDE_ROWS
    print(f"files in {args.dir}:", file=sys.stderr)
    files = make_files(args.dir, wide_rows)
    config = args.dir / "mnist-validate.yaml"
    config.write_text(VALIDATE_CONFIG.format(path=files["mnist-9MB"]["path"]))
    for f in files.values():  # into the page cache: every measured read finds the file there
        with open(f["path"], "rb") as fh:
            while fh.read(16 * MiB):
                pass
    info = machine()
    print(f"machine: {info}", file=sys.stderr)

    jobs = jobs_for(files, config)
    runs: dict[int, list[dict]] = {i: [] for i in range(len(jobs))}
    for k in range(args.rounds):
        order = list(range(len(jobs)))
        order = order[k % len(order):] + order[: k % len(order)]
        for i in order:
            m = measure(jobs[i])
            runs[i].append(m)
            print(f"  round {k + 1}/{args.rounds}: {jobs[i]['name']:<22} {jobs[i]['reader']:<28} {m['seconds']:7.3f}s"
                  f"  peak {m['peak_rss_kib'] / 1024:6.0f} MiB", file=sys.stderr, flush=True)
    results = [summarise(job, runs[i]) for i, job in enumerate(jobs)]
    ratios(results)
    problems = check_agreement(results)

    mnist = next(r for r in results if r["name"] == "mnist-9MB" and r["reader"] == "nntrain")
    met = mnist["ratio_pandas"] <= TARGET_RATIO
    notes = [
        f"- Target: nntrain `read_table` of mnist-9MB (read + encode) within {TARGET_RATIO}x of `pandas.read_csv`:"
        f" {mnist['ratio_pandas']:.2f}x (within rounds {mnist['paired_ratio_pandas']:.2f}x),"
        f" {'met' if met else 'NOT met'}.",
        "- nntrain / pandas: the median read of nntrain over that of pandas' reader alone; nntrain / pandas+numpy: over"
        " pandas' read and conversion to float64 arrays; in brackets the median over the rounds of the ratio within"
        " each round (less skewed by load that drifts during the run). For `nntrain validate` the ratios are to the"
        " whole pandas child process (start, `import pandas`, read), whose median is the 'process s' of that row.",
        "- peak RSS: the child's ru_maxrss, median over the rounds; in brackets its RSS after the imports, before the"
        " read.",
    ]
    if problems:
        notes.append("- DISAGREEMENT between nntrain and pandas+numpy: " + "; ".join(problems))
    for reader in NNTRAIN_READS:  # what the read itself imported (pyarrow's pandas shim: pandas and what it needs)
        seen = {tuple(r["check"]["imported_by_read"]): None for r in results if r["reader"] == reader}
        shown = "; ".join(", ".join(s) or "nothing" for s in seen)
        shown += " (by file)" if len(seen) > 1 else " (every file)"
        notes.append(f"- Packages the read itself imported, {describe(reader, 'csv')}: {shown}.")
    prof = []
    if args.profile == "always" or (args.profile == "auto" and not met):
        for reader in NNTRAIN_READS:
            print(f"profiling {reader} read_table on mnist-9MB ...", file=sys.stderr)
            prof.append(profile_nntrain(next(j for j in jobs if j["name"] == "mnist-9MB" and j["reader"] == reader)))
    info["loadavg_end"] = Path("/proc/loadavg").read_text().split()[0]

    header = (
        f"# nntrain ingest benchmark\n\n"
        f"{info['date']} · {info['nproc']} CPUs, {info['mem_total_gib']} GiB RAM · Linux {info['kernel']} · Python"
        f" {info['python']}, numpy {info['numpy']}, pandas {info['pandas']}, pyarrow {info['pyarrow']}, nntrain"
        f" {info['nntrain']} (git {info['git']}) · load average {info['loadavg_start']} at the start,"
        f" {info['loadavg_end']} at the end\n\n"
        f"{args.rounds} interleaved rounds, each reader in a fresh child process per round, files in the page cache."
        f" Seconds are the read call alone (imports done before it).\n\n"
    )
    md = table(results) + "\n\n" + "\n".join(notes) + "".join("\n\n" + profile_md(p) for p in prof)
    print(md)
    if not args.no_save:
        if args.out:
            out = Path(args.out)
        else:
            out = Path(tempfile.mkdtemp(prefix="nntrain-ingest-")) / "ingest" if args.quick else RESULTS / "ingest"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".md").write_text(header + md + "\n")
        for r in results:
            r["runs"] = [{k: v for k, v in m.items() if k != "check"} for m in r["runs"]]
        payload = {"machine": info, "command": sys.argv, "rounds": args.rounds, "target_ratio": TARGET_RATIO,
                   "target_met": met, "disagreements": problems, "results": results, "profile": prof}
        out.with_suffix(".json").write_text(json.dumps(payload, indent=1, default=str) + "\n")
        print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.json').name}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
