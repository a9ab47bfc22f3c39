#!/usr/bin/env python
"""Fault injection and fuzzing of the `nntrain` command line, run as real subprocesses.

    python benchmarks/faults.py --quick                  # a small sample of every category (< 1 min)
    python benchmarks/faults.py                          # the full campaign
    python benchmarks/faults.py --only configs,files --configs 0 --files 0   # every generated case

Categories (--only kills,disks,configs,files):

  kills    `fit` of small configs (plain; dropout + adam + plateau + early stopping; batch_norm +
           diagnostics + cosine warm-up) killed with SIGKILL at random instants (some uniform over the
           whole run, most uniform over its training phase, so some land inside checkpoint writes),
           a few stopped with SIGTERM / SIGINT, then `fit --resume`, some resumes killed again, until
           it completes. The finished run directory must equal an uninterrupted run's: the same files
           in checkpoints/, every array of every checkpoint bit-identical, metrics.csv equal except
           `seconds`, diagnostics.csv and config.yaml equal, summary.json `completed`, no temp files.
  disks    a tmpfs of 4 KB .. 4 MB as the run directory's parent (every file of a run fails once),
           a tmpfs filled up to a few KB before `fit --resume` and `predict -o`, and a tmpfs remounted
           read-only before `fit --resume`, `fit`, `sweep`, `predict -o` (and `eval` / `predict`, which
           only read and must work). Expected: exit 74 (or 2) with "cannot write", never 70 or a
           traceback; the newest readable checkpoint's epoch equals summary.json's epochs_completed and
           metrics.csv's last row; no temp files; after the space comes back, `fit --resume` finishes
           the run bit-identically to an uninterrupted one. Needs root (mount); otherwise "not run".
  configs  hostile configs from a seed: alias bombs, deep nesting, complex keys, a wrong type at
           every key, lone surrogates, >64-bit and huge integers, long and 10 MB strings, a 10 MB
           config, syntax oddities (tabs, BOM, CRLF, empty, binary, several documents, duplicate
           keys, python tags), and hostile `--set` values. `validate` on each, then `fit` (1 epoch)
           on those that validate.
  files    hostile CSV / .npz / .npy data files (`validate`, `fit`, `eval --data`, `predict`),
           mutated checkpoints of a real run (`eval --checkpoint`, `predict --checkpoint`,
           `fit --weights`, and as the only checkpoint for `fit --resume`), and mutated run-directory
           files (metrics.csv, splits.npz, config.yaml, summary.json) before `--resume` / `eval`.
           Pickle payloads would create a marker file if anything ever unpickled them.

A failure of nntrain is: a traceback on stderr, exit 70 / "internal error", an exit code outside the
command's documented set, a command still running after --timeout seconds (hang), an invalid input
accepted with exit 0, a valid input refused, stderr over 10 KB, a command slower than its case allows
(times the machine's pace: how much longer than 0.5 s it takes to validate a small config),
more than --max-rss MiB of memory, an executed pickle, and for kills / disks a resumed run that differs
from an uninterrupted one, leftover `.*.tmp-*` files, a run directory `--resume` cannot continue, or
files that disagree about the last finished epoch. The script prints a table of counts, then each
distinct failure (grouped by category, kind and last stderr line) with a reproducer folder
(`repro.sh` + the input files), writes --out JSON, and exits 1 when anything failed.

The case generators are importable (tests/test_faults.py): `Campaign(work, keep).run_category(name, n)`.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import io
import json
import os
import pickle
import random
import re
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
NNTRAIN = [sys.executable, "-m", "nntrain.cli"]
CATEGORIES = ("kills", "disks", "configs", "files")

TIMEOUT = 30.0  # seconds before a command counts as hung
SLOW = 5.0  # seconds a validate / eval / predict may take (cases can say otherwise)
# The slow limits are for a machine where `nntrain validate` of a small config takes this long;
# a slower (or busier) machine's limits grow by its measured factor (Campaign.pace).
PACE_VALIDATE_S = 0.5
MAX_STDERR = 10_000  # bytes
MAX_RSS_MB = 1024.0  # peak resident memory of one command
MEM_LIMIT = 6 << 30  # RLIMIT_AS of every command, so a runaway allocation cannot take the machine down
EXIT_CODES = {0, 1, 2, 74, 130, 143}

KINDS = [
    ("traceback", "tracebacks"),
    ("internal", "internal errors (70)"),
    ("hang", "hangs"),
    ("wrong_exit", "wrong exit codes"),
    ("invalid_accepted", "invalid inputs accepted"),
    ("valid_refused", "valid inputs refused"),
    ("resume_mismatch", "resume mismatches"),
    ("leftover_tmp", "leftover temp files"),
    ("unreadable_run_dir", "unreadable run dirs"),
    ("inconsistent", "inconsistent run dirs"),
    ("no_message", "no 'cannot write' message"),
    ("python_warning", "Python warnings"),
    ("long_stderr", "stderr > 10 KB"),
    ("slow", "slow"),
    ("memory", "memory > limit"),
    ("pickle_executed", "pickles executed"),
]
KIND_NAMES = [k for k, _ in KINDS]
TMP_RE = re.compile(r"^\..*\.tmp-\d+$")


def env(cache: Path) -> dict:
    e = dict(os.environ)
    e.update(
        OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1",
        NNTRAIN_DATA=str(cache), COLUMNS="120", NO_COLOR="1", TERM="dumb",
        PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
    )
    e.pop("PYTHONWARNINGS", None)
    return e


# --------------------------------------------------------------------------------------------
# Running one command


@dataclass
class Result:
    args: list
    cwd: str
    rc: int | None
    seconds: float
    maxrss_mb: float
    stdout: bytes
    stderr: str
    stderr_bytes: int
    timed_out: bool = False
    sent: int | None = None  # the signal we sent, if any
    sent_at: float | None = None
    watched_at: float | None = None  # when the watched path first existed
    timeout: float = TIMEOUT

    def last_line(self) -> str:
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        return lines[-1][:300] if lines else ""

    def command(self) -> str:
        return "nntrain " + " ".join(sh(a) for a in self.args)


def _read_capped(f, limit: int) -> tuple[bytes, int]:
    f.seek(0, 2)
    size = f.tell()
    f.seek(0)
    if size <= limit:
        return f.read(), size
    head = f.read(limit - 4096)
    f.seek(size - 4096)
    return head + b"\n[...]\n" + f.read(), size


def run(args, cwd, environ, timeout=TIMEOUT, kill_at=None, kill_signal=signal.SIGKILL, watch=None,
        signal_after_watch=None, stdout_to=None) -> Result:
    """Run `nntrain *args` in `cwd`; optionally send `kill_signal` at `kill_at` seconds after the start,
    or `signal_after_watch` seconds after `watch` (a path, or "stdout": the first output) first exists.
    `stdout_to`: a path (e.g. /dev/full) that receives stdout instead of the captured file.
    Never raises for the child."""
    argv = [*NNTRAIN, *(a if isinstance(a, bytes) else str(a) for a in args)]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            open(stdout_to or os.devnull, "wb") as redirected:
        t0 = time.monotonic()
        p = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=redirected if stdout_to else out,
                             stderr=err, env=environ, start_new_session=True)
        try:
            resource.prlimit(p.pid, resource.RLIMIT_AS, (MEM_LIMIT, MEM_LIMIT))
        except (OSError, ValueError, AttributeError):
            pass
        sent = sent_at = watched = None
        timed_out = False
        hwm = 0  # peak RSS of the nntrain process itself, KiB (ru_maxrss would count this harness's pages at fork)
        status_file = f"/proc/{p.pid}/status"
        while True:
            pid, status, usage = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            hwm = max(hwm, _vm_hwm(status_file))
            now = time.monotonic() - t0
            if watch is not None and watched is None and (
                    os.fstat(out.fileno()).st_size > 0 if watch == "stdout" else os.path.exists(watch)):
                watched = now
            due = kill_at
            if signal_after_watch is not None and watched is not None:
                due = watched + signal_after_watch
            if due is not None and sent is None and now >= due:
                try:
                    os.kill(p.pid, kill_signal)
                    sent, sent_at = kill_signal, now
                except ProcessLookupError:
                    pass
            limit = timeout if sent is None or sent == signal.SIGKILL else min(timeout, sent_at + 15.0)
            if now > limit:
                timed_out = True
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                pid, status, usage = os.wait4(p.pid, 0)
                break
            wait = 0.004
            if due is not None and sent is None:
                wait = min(wait, max(due - now, 0.0002))
            time.sleep(wait)
        seconds = time.monotonic() - t0
        rc = os.waitstatus_to_exitcode(status)
        p.returncode = rc
        if sent == signal.SIGKILL or timed_out:
            try:  # a worker process of a killed parent
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        stdout, _ = _read_capped(out, 1 << 20)
        stderr, stderr_bytes = _read_capped(err, 64 << 10)
    return Result(list(args), str(cwd), rc, seconds, (hwm or usage.ru_maxrss) / 1024.0, stdout,
                  stderr.decode("utf-8", "replace"), stderr_bytes, timed_out, sent, sent_at, watched, timeout)


def _vm_hwm(status_file: str) -> int:
    try:
        with open(status_file, "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


WARNING_RE = re.compile(r"^\S.*:\d+: \w*Warning: ", re.M)


def problems(r: Result, allowed=EXIT_CODES, expect: str = "any", slow: float | None = SLOW) -> list[tuple[str, str]]:
    """(kind, detail) for everything wrong with a finished command. expect: refuse | accept | any."""
    if r.timed_out:
        return [("hang", f"still running after {r.timeout:.0f} s" + (f" (signal {r.sent} sent)" if r.sent else ""))]
    if r.sent == signal.SIGKILL:
        return []
    out = []
    if "Traceback (most recent call last)" in r.stderr:
        out.append(("traceback", "traceback on stderr"))
    if r.rc == 70 or "internal error" in r.stderr:
        out.append(("internal", f"exit {r.rc}"))
    if not out and r.rc not in allowed:
        what = f"killed by signal {-r.rc}" if r.rc is not None and r.rc < 0 else f"exit {r.rc}"
        out.append(("wrong_exit", f"{what}; expected one of {sorted(allowed)}"))
    if expect == "refuse" and r.rc == 0:
        out.append(("invalid_accepted", "exit 0 for an input that must be refused"))
    if expect == "accept" and r.rc not in (0, None) and not out:
        out.append(("valid_refused", f"exit {r.rc} for a valid input"))
    if WARNING_RE.search(r.stderr):
        out.append(("python_warning", "a Python warning on stderr: " + WARNING_RE.search(r.stderr).group(0)[-60:].strip()))
    if r.stderr_bytes > MAX_STDERR:
        out.append(("long_stderr", f"{r.stderr_bytes:,} bytes on stderr"))
    if slow is not None and r.seconds > slow:
        out.append(("slow", f"{r.seconds:.1f} s (limit {slow:.3g} s)"))
    if r.maxrss_mb > MAX_RSS_MB:
        out.append(("memory", f"peak RSS {r.maxrss_mb:,.0f} MiB"))
    return out


def sh(arg) -> str:
    """Shell quoting that survives bytes that are not UTF-8 and lone surrogates (as $'\\xNN')."""
    if isinstance(arg, str):
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            arg = arg.encode("utf-8", "surrogateescape") if all(
                not 0xD800 <= ord(c) < 0xDC80 for c in arg) else arg.encode("utf-8", "surrogatepass")
    if isinstance(arg, bytes):
        try:
            text = arg.decode("utf-8")
            if text.isprintable():
                return shlex.quote(text)
        except UnicodeDecodeError:
            pass
        return "$'" + "".join(chr(b) if 32 <= b < 127 and b not in b"'\\" else f"\\x{b:02x}" for b in arg) + "'"
    return shlex.quote(str(arg))


# --------------------------------------------------------------------------------------------
# Reports


@dataclass
class Failure:
    category: str
    case: str
    family: str
    kind: str
    detail: str
    command: str
    rc: int | None
    stderr_last: str
    repro: str | None = None

    def signature(self) -> str:
        text = self.stderr_last or self.detail
        text = re.sub(r"'[^']{0,400}'", "'…'", text)
        text = re.sub(r'"[^"]{0,400}"', '"…"', text)
        text = re.sub(r"(/[\w.\-]+)+", "/…", text)
        text = re.sub(r"\d+", "N", text)
        return text[:200]


@dataclass
class CategoryReport:
    name: str
    status: str = "run"
    inputs: int = 0
    commands: int = 0
    seconds: float = 0.0
    failures: list = field(default_factory=list)
    families: Counter = field(default_factory=Counter)
    notes: list = field(default_factory=list)
    records: list = field(default_factory=list, repr=False)  # one per command: case, command, rc, seconds, MiB, stderr
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def counts(self) -> Counter:
        return Counter(f.kind for f in self.failures)

    def to_dict(self) -> dict:
        return {
            "status": self.status, "inputs": self.inputs, "commands": self.commands,
            "seconds": round(self.seconds, 2), "families": dict(self.families),
            "counts": {k: self.counts().get(k, 0) for k in KIND_NAMES}, "notes": self.notes,
            "failures": [{k: v for k, v in vars(f).items()} for f in self.failures],
            "records": self.records,
        }


def group_failures(failures: list[Failure]) -> list[tuple[tuple, list[Failure]]]:
    groups = defaultdict(list)
    for f in failures:
        groups[(f.category, f.kind, f.signature())].append(f)
    return sorted(groups.items(), key=lambda kv: (CATEGORIES.index(kv[0][0]), KIND_NAMES.index(kv[0][1]), -len(kv[1])))


def format_table(reports: list[CategoryReport]) -> str:
    cols = [r.name for r in reports]
    rows = [("inputs tried", [str(r.inputs) if r.status == "run" else "-" for r in reports]),
            ("commands run", [str(r.commands) if r.status == "run" else "-" for r in reports]),
            ("seconds", [f"{r.seconds:.0f}" if r.status == "run" else "-" for r in reports])]
    for kind, label in KINDS:
        rows.append((label, [str(r.counts().get(kind, 0)) if r.status == "run" else "-" for r in reports]))
    width = max(len(label) for label, _ in rows) + 2
    cw = max(10, *(len(c) + 2 for c in cols))
    lines = [" " * width + "".join(f"{c:>{cw}}" for c in cols)]
    lines += [f"{label:<{width}}" + "".join(f"{v:>{cw}}" for v in values) for label, values in rows]
    for r in reports:
        if r.status != "run":
            lines.append(f"{r.name}: {r.status}")
        for note in r.notes:
            lines.append(f"{r.name} note: {note}")
    return "\n".join(lines)


def format_failures(failures: list[Failure], limit: int | None = None) -> str:
    lines = []
    for (category, kind, sig), group in group_failures(failures)[:limit]:
        families = sorted({f.family for f in group})
        first = group[0]
        lines.append(f"[{category}] {kind}: {len(group)} x  (families: {', '.join(families)})")
        lines.append(f"    stderr: {first.stderr_last or '(empty)'}")
        lines.append(f"    detail: {first.detail}")
        shown = set()
        for f in group:
            if f.family in shown or len(shown) >= 3:
                continue
            shown.add(f.family)
            cmd = f.command if len(f.command) < 300 else f.command[:280] + " ..."
            lines.append(f"    e.g. {f.case}: {cmd}  -> exit {f.rc}" + (f"\n         reproducer: {f.repro}" if f.repro else ""))
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Configs shared by the categories


def spirals_config(name="fz", samples=200, epochs=2, layers=None, optimizer=None, train=None, **extra) -> dict:
    config = {
        "name": name,
        "seed": 0,
        "data": {"dataset": "spirals", "options": {"samples": samples, "classes": 3, "noise": 0.2},
                 "split": {"val": 0.2, "test": 0.2}},
        "model": {"layers": layers or [{"linear": 8}, "relu", {"linear": 3}]},
        "loss": "cross_entropy",
        "optimizer": optimizer or {"name": "sgd", "lr": 0.1, "momentum": 0.9},
        "train": {"epochs": epochs, "batch_size": 32, **(train or {})},
    }
    config.update(extra)
    return config


KILL_CONFIGS = {
    "plain": spirals_config("kplain", samples=300, epochs=120, layers=[{"linear": 16}, "relu", {"linear": 3}],
                            train={"checkpoint_every": 3}),
    "dropout": spirals_config(
        "kdrop", samples=300, epochs=120,
        layers=[{"linear": 16}, "relu", {"dropout": 0.3}, {"linear": 3}],
        optimizer={"name": "adam", "lr": 0.01, "schedule": {"name": "plateau", "factor": 0.5, "patience": 2}},
        train={"checkpoint_every": 4, "early_stopping": {"patience": 40}},
    ),
    "diagnostics": spirals_config(
        "kdiag", samples=300, epochs=60,
        layers=[{"linear": 16}, "batch_norm", "tanh", {"gaussian_noise": 0.05}, {"linear": 3}],
        optimizer={"name": "adam", "lr": 0.01, "schedule": {"name": "cosine", "T_max": 60, "warmup_epochs": 2}},
        train={"checkpoint_every": 5, "diagnostics": True, "batch_size": 16},
    ),
}

DISK_CONFIG = spirals_config(
    "disk", samples=300, epochs=6, layers=[{"linear": 16}, "relu", {"dropout": 0.2}, {"linear": 3}],
    train={"checkpoint_every": 2, "diagnostics": True},
)

CKPT_CONFIG = spirals_config(
    "ck", samples=200, epochs=3,
    optimizer={"name": "sgd", "lr": 0.1, "momentum": 0.9, "schedule": {"name": "multistep", "milestones": [2]}},
    loss={"name": "cross_entropy", "class_weights": "balanced"},
    train={"checkpoint_every": 1},
)


def dump(config: dict) -> bytes:
    return yaml.safe_dump(config, sort_keys=False).encode()


# --------------------------------------------------------------------------------------------
# Comparing run directories


def npz_arrays(path: Path) -> dict | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception:
        return None


def array_differences(a: dict, b: dict) -> list[str]:
    out = [f"{k} missing" for k in sorted(set(a) - set(b))] + [f"{k} extra" for k in sorted(set(b) - set(a))]
    for k in sorted(set(a) & set(b)):
        x, y = a[k], b[k]
        if x.dtype != y.dtype or x.shape != y.shape or x.tobytes() != y.tobytes():
            out.append(k)
    return out


def temp_files(path: Path) -> list[str]:
    if not path.exists():
        return []
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if TMP_RE.match(p.name))


def csv_rows(path: Path, drop=("seconds",)) -> list | None:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return [{k: v for k, v in row.items() if k not in drop} for row in csv.DictReader(f)]
    except (OSError, UnicodeDecodeError, csv.Error):
        return None


def _listing(path: Path, limit: int = 12) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))[:limit] if path.exists() else []


def snapshot(path: Path) -> dict:
    """What is in a run directory: relative path -> sha256 of the bytes."""
    out = {}
    for p in sorted(path.rglob("*")) if path.exists() else []:
        if p.is_file():
            out[str(p.relative_to(path))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def compare_runs(run: Path, ref: Path) -> list[tuple[str, str]]:
    """(kind, detail) for every way the finished run `run` differs from the uninterrupted `ref`."""
    out = []
    leftovers = temp_files(run)
    if leftovers:
        out.append(("leftover_tmp", f"temp files left: {', '.join(leftovers[:5])}"))
    names = lambda d: sorted(p.name for p in (d / "checkpoints").glob("*") if not TMP_RE.match(p.name))
    got, want = names(run), names(ref)
    if got != want:
        missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
        out.append(("resume_mismatch", f"checkpoints/ differs: missing {missing}, extra {extra}"))
    for name in sorted(set(got) & set(want)):
        a, b = npz_arrays(run / "checkpoints" / name), npz_arrays(ref / "checkpoints" / name)
        if a is None:
            out.append(("resume_mismatch", f"checkpoints/{name} is unreadable"))
            continue
        diff = array_differences(b, a)
        if diff:
            out.append(("resume_mismatch", f"checkpoints/{name} differs in {', '.join(diff[:6])}"))
    for name in ("metrics.csv", "diagnostics.csv"):
        if (ref / name).exists():
            a, b = csv_rows(run / name), csv_rows(ref / name)
            if a != b:
                n = 0 if a is None else len(a)
                out.append(("resume_mismatch", f"{name} differs ({n} rows vs {len(b)} in the uninterrupted run)"))
    if (run / "config.yaml").read_bytes() != (ref / "config.yaml").read_bytes():
        out.append(("resume_mismatch", "config.yaml differs"))
    try:
        summary = json.loads((run / "summary.json").read_text())
        want_summary = json.loads((ref / "summary.json").read_text())
        if summary.get("status") != "completed" or summary.get("epochs_completed") != want_summary["epochs_completed"]:
            out.append(("resume_mismatch", f"summary.json: status {summary.get('status')}, "
                                           f"epochs_completed {summary.get('epochs_completed')}"))
        elif summary.get("final") != want_summary.get("final"):
            out.append(("resume_mismatch", "summary.json: final metrics differ"))
    except (OSError, ValueError) as e:
        out.append(("resume_mismatch", f"summary.json unreadable: {e}"))
    return out


def consistency(run: Path) -> list[tuple[str, str]]:
    """After a failed write: the newest readable checkpoint, summary.json and metrics.csv agree on the epoch."""
    out = []
    leftovers = temp_files(run)
    if leftovers:
        out.append(("leftover_tmp", f"temp files left: {', '.join(leftovers[:5])}"))
    if not (run / "checkpoints").is_dir():
        return out
    epochs = {}
    for p in sorted((run / "checkpoints").glob("*.npz")):
        arrays = npz_arrays(p)
        if arrays is not None and "meta.epoch" in arrays:
            epochs[p.name] = int(arrays["meta.epoch"])
    if not epochs:
        return out
    epoch = epochs.get("last.npz", max(epochs.values()))
    if max(epochs.values()) > epoch:
        out.append(("inconsistent", f"last.npz holds epoch {epoch} but {max(epochs, key=epochs.get)} holds {max(epochs.values())}"))
    if (run / "summary.json").exists():
        try:
            done = json.loads((run / "summary.json").read_text()).get("epochs_completed")
            if done != epoch:
                out.append(("inconsistent", f"summary.json says epochs_completed {done}, the last checkpoint holds epoch {epoch}"))
        except (OSError, ValueError):
            out.append(("inconsistent", "summary.json is unreadable"))
    if (run / "metrics.csv").exists():
        rows = csv_rows(run / "metrics.csv")
        if rows is None:
            out.append(("inconsistent", "metrics.csv is unreadable"))
        else:
            last = int(rows[-1]["epoch"]) if rows and (rows[-1].get("epoch") or "").isdigit() else 0
            if last != epoch:
                out.append(("inconsistent", f"metrics.csv's last row is epoch {last}, the last checkpoint holds epoch {epoch}"))
    return out


# --------------------------------------------------------------------------------------------
# Hostile configs


@dataclass
class ConfigCase:
    id: str
    family: str
    text: bytes
    sets: list = field(default_factory=list)
    expect: str = "refuse"  # what validate must do: refuse | accept | any
    fit: bool = True  # run `fit` (1 epoch) when validate accepts
    fit_epochs: int = 1
    slow: float = SLOW
    filename: str | bytes = "config.yaml"
    note: str = ""


def _set_path(config, path: str, value):
    keys = path.split(".")
    node = config
    for k in keys[:-1]:
        node = node[int(k)] if isinstance(node, list) else node[k]
    last = keys[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


def with_raw(config: dict, path: str, raw: str) -> bytes:
    """The YAML of `config` with the value at `path` replaced by the YAML text `raw` (one line)."""
    c = json.loads(json.dumps(config))
    _set_path(c, path, "RAWxVALUE")
    text = yaml.safe_dump(c, sort_keys=False, width=1 << 30)
    assert text.count("RAWxVALUE") == 1, path
    return text.replace("RAWxVALUE", raw).encode("utf-8", "surrogatepass")


def with_raw_key(config: dict, section: str | None, raw_key: str, raw_value: str = "1") -> bytes:
    c = json.loads(json.dumps(config))
    target = c
    if section:
        for k in section.split("."):
            target = target[k]
    target["RAWxKEY"] = "RAWxVAL"
    text = yaml.safe_dump(c, sort_keys=False, width=1 << 30)
    return text.replace("RAWxKEY", raw_key).replace("RAWxVAL", raw_value).encode("utf-8", "surrogatepass")


BASE = {
    "name": "fz",
    "seed": 0,
    "dtype": "float32",
    "data": {"dataset": "spirals", "options": {"samples": 200, "classes": 3, "noise": 0.2},
             "split": {"val": 0.2, "test": 0.2}, "scale": "standardize"},
    "model": {"layers": [{"linear": 8}, "relu", {"linear": 3}]},
    "loss": {"name": "cross_entropy", "class_weights": None},
    "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "schedule": {"name": "multistep", "milestones": [1, 2]}},
    "train": {"epochs": 2, "batch_size": 32, "checkpoint_every": 1, "metrics": ["accuracy"], "shuffle": True,
              "diagnostics": False},
}

LEAVES = {
    "name": "name", "seed": "int", "dtype": "enum", "data": "section", "data.dataset": "source",
    "data.options": "section", "data.options.samples": "int", "data.options.classes": "int",
    "data.options.noise": "float", "data.split": "section", "data.split.val": "float", "data.split.test": "float",
    "data.scale": "scale", "model": "section", "model.layers": "layers", "model.layers.0": "layer",
    "model.layers.0.linear": "int", "model.layers.1": "layer", "loss": "section_or_name", "loss.name": "enum",
    "loss.class_weights": "weights", "optimizer": "section_or_name", "optimizer.name": "enum",
    "optimizer.lr": "float", "optimizer.momentum": "float", "optimizer.schedule": "section",
    "optimizer.schedule.name": "enum", "optimizer.schedule.milestones": "list_int",
    "optimizer.schedule.milestones.0": "int", "train": "section", "train.epochs": "int",
    "train.batch_size": "batch", "train.checkpoint_every": "int", "train.metrics": "list_name",
    "train.metrics.0": "enum", "train.shuffle": "bool", "train.diagnostics": "bool",
}

WRONG = {
    "int": ["'7'", "1.5", "[1]", "{a: 1}", "true", ".nan", "-3", "''", "0x"],
    "float": ["'0.1'", "[0.1]", "{a: 1}", "true", ".nan", "abc", "''"],
    "bool": ["'true'", "1", "[true]", "{a: 1}", "maybe", "2", "null"],
    "enum": ["{a: 1}", "[x]", "1", "true", "''", "nonexistent_xyz", "null"],
    "name": ["{a: 1}", "[x]", "1", "true", "''", "'-bad'", "'a/b'", "'..'", "'a b'"],
    "source": ["{a: 1}", "[x]", "1", "true", "''", "nonexistent_generator", "{X: 1, y: 2}", "{X: [1], y: {a: 1}}"],
    "scale": ["{a: 1}", "[x]", "1", "true", "{name: minmax, range: [1, 0]}", "{name: minmax, range: [0]}",
              "{name: minmax, range: {a: 1}}", "{name: {a: 1}}"],
    "layers": ["{a: 1}", "1", "x", "[]", "[[relu]]", "[{}]", "[null]", "[{a: 1}]"],
    "layer": ["{a: 1}", "1", "[relu]", "{linear: 8, relu: null}", "{type: {a: 1}}", "{linear: {units: {a: 1}}}",
              "{type: linear}", "null", "true", "{linear: [8]}", "relu_xyz"],
    "section_or_name": ["1", "[x]", "{name: {a: 1}}", "{name: [x]}", "true", "{name: 1}"],
    "section": ["1", "x", "[1]", "true", "[]", "1.5"],
    "weights": ["1", "x", "[1, 2, 3]", "{'0': x}", "{'0': -1}", "{'0': .nan}", "{'0': .inf}", "{'9': 1}",
                "{'0': 0, '1': 0, '2': 0}", "{'0': {a: 1}}", "{'0': [1]}"],
    "list_int": ["{a: 1}", "1", "x", "[]", "[2, 1]", "[0]", "[[1]]", "[1.5]", "[1, 1]"],
    "list_name": ["{a: 1}", "1", "[[accuracy]]", "[{a: 1}]", "[nonexistent]", "[mse]", "[accuracy, {a: 1}]", "[accuracy, accuracy]"],
    "batch": ["'32'", "1.5", "[1]", "{a: 1}", "true", "0", "-1", "half", ".nan"],
}


def _bomb(width: int, depth: int, mapping: bool = False) -> str:
    """A one-line flow list whose last element expands to width**depth leaves (billion laughs)."""
    parts = ["&a0 [" + ", ".join(["lol"] * width) + "]"]
    for i in range(1, depth):
        inner = ", ".join([f"*a{i - 1}"] * width) if not mapping else ", ".join(f"k{j}: *a{i - 1}" for j in range(width))
        parts.append(f"&a{i} " + (f"{{{inner}}}" if mapping else f"[{inner}]"))
    return "[" + ", ".join(parts) + "]"


def _nest(depth: int, mapping: bool) -> str:
    return ("{a: " * depth + "1" + "}" * depth) if mapping else ("[" * depth + "]" * depth)


def config_cases(seed: int = 0) -> list[ConfigCase]:
    rng = random.Random(seed)
    cases: list[ConfigCase] = []
    add = cases.append
    base = dump(BASE)

    # controls: valid configs must validate and train
    add(ConfigCase("control-base", "control", base, expect="accept"))
    add(ConfigCase("control-crlf", "control", base.replace(b"\n", b"\r\n"), expect="accept"))
    add(ConfigCase("control-bom", "control", b"\xef\xbb\xbf" + base, expect="accept"))
    add(ConfigCase("control-json", "control", json.dumps(BASE).encode(), expect="accept"))
    add(ConfigCase("control-unicode-comment", "control", "# ünïcødé ☃ \u202e\n".encode() + base, expect="accept"))
    add(ConfigCase("control-merge-key", "control",
                   b"defaults: &d {epochs: 2, batch_size: 32}\n" + base, expect="refuse",
                   note="an anchor under an unknown top-level key"))
    add(ConfigCase("control-sweep", "control", base + b"sweep: {grid: {optimizer.lr: [0.1, 0.01]}}\n", expect="any",
                   note="fit/validate ignore a sweep: section (intended)"))

    # alias bombs ("billion laughs")
    places = ["train.metrics", "model.layers", "loss.class_weights", "optimizer.schedule.milestones",
              "data.options.samples", "name"]
    for place in places:
        for width, depth, mapping in [(9, 9, False), (2, 40, False), (9, 9, True), (3, 3, False)]:
            add(ConfigCase(f"bomb-{place}-{width}x{depth}{'-map' if mapping else ''}", "alias_bomb",
                           with_raw(BASE, place, _bomb(width, depth, mapping)), slow=SLOW))
    add(ConfigCase("bomb-top-level", "alias_bomb", base + f"bomb: {_bomb(9, 9)}\n".encode()))
    add(ConfigCase("bomb-top-level-map", "alias_bomb", base + f"bomb: {_bomb(9, 9, True)}\n".encode()))
    add(ConfigCase("bomb-as-key-path", "alias_bomb", base + f"x: {_bomb(2, 60)}\n".encode()))
    add(ConfigCase("bomb-self-reference", "alias_bomb", base + b"x: &a [*a]\n"))
    add(ConfigCase("bomb-set-metrics", "alias_bomb", base, sets=["--set", f"train.metrics={_bomb(9, 9)}"]))
    add(ConfigCase("bomb-set-layers", "alias_bomb", base, sets=["--set", f"model.layers={_bomb(2, 40)}"]))

    # deep nesting
    for depth in (50, 100, 1000, 10_000, 100_000):
        for mapping in (False, True):
            tag = f"{depth}-{'map' if mapping else 'list'}"
            add(ConfigCase(f"deep-metrics-{tag}", "deep_nesting", with_raw(BASE, "train.metrics", _nest(depth, mapping))))
            add(ConfigCase(f"deep-layers-{tag}", "deep_nesting", with_raw(BASE, "model.layers.0", _nest(depth, mapping))))
            add(ConfigCase(f"deep-top-{tag}", "deep_nesting", base + f"deep: {_nest(depth, mapping)}\n".encode()))
            add(ConfigCase(f"deep-document-{tag}", "deep_nesting", _nest(depth, mapping).encode()))
        add(ConfigCase(f"deep-block-{depth}", "deep_nesting",
                       base + b"deep:\n" + b"".join(b" " * (i + 1) + b"a:\n" for i in range(min(depth, 3000))) + b" " * 3002 + b"1\n"))
        # one argument may hold at most 128 KiB (Linux's MAX_ARG_STRLEN)
        add(ConfigCase(f"deep-set-{depth}", "deep_nesting", base, sets=["--set", f"train.metrics={_nest(min(depth, 60_000), False)}"]))
    add(ConfigCase("deep-set-keypath", "deep_nesting", base, sets=["--set", "a" + ".a" * 20_000 + "=1"]))

    # complex / non-string keys
    for section in (None, "train", "data", "model", "optimizer"):
        pre = f"{section}." if section else ""
        for raw in ("? [a, b]\n", "? {a: 1}\n", "[1, 2]", "{a: 1}", "1", "null", "true", "1.5", "2001-01-01"):
            if raw.startswith("?"):
                if section:
                    continue
                text = base + raw.encode() + b": 1\n"
            else:
                text = with_raw_key(BASE, section, raw)
            add(ConfigCase(f"key-{pre or 'top.'}{re.sub(r'[^a-z0-9]', '', raw) or 'x'}", "complex_keys", text))
    add(ConfigCase("key-complex-in-class-weights", "complex_keys", with_raw(BASE, "loss.class_weights", "{[0, 1]: 2.0}")))
    add(ConfigCase("key-int-in-class-weights", "complex_keys", with_raw(BASE, "loss.class_weights", "{0: 2.0}"),
                   expect="accept", note="documented: numbers are read as names"))
    add(ConfigCase("key-complex-in-layer", "complex_keys", with_raw(BASE, "model.layers.1", "{[relu]: 1}")))
    add(ConfigCase("key-complex-in-options", "complex_keys", with_raw(BASE, "data.options", "{[a]: 1}")))

    # a wrong type at every key
    for path, kind in LEAVES.items():
        for value in WRONG[kind]:
            expect = "any" if value == "null" and kind in ("enum", "bool") else "refuse"
            add(ConfigCase(f"type-{path}={value}", "wrong_types", with_raw(BASE, path, value), expect=expect))
    for extra in ("optimizer: {name: {a: 1}}", "loss: {name: {a: 1}}", "optimizer: {name: [sgd]}",
                  "optimizer: {name: sgd, schedule: {name: {a: 1}}}", "model: {layers: {a: 1}}",
                  "model: {layers: [{type: {a: 1}}]}", "model: {init: {a: 1}, layers: [linear: 3]}",
                  "train: {early_stopping: {patience: {a: 1}}}", "train: {early_stopping: [1]}",
                  "train: {monitor: {a: 1}}", "train: {clip_grad_norm: {a: 1}}", "data: {dataset: spirals, options: [1]}",
                  "data: {dataset: spirals, target: {a: 1}}", "data: {dataset: spirals, task: {a: 1}}",
                  "data: {dataset: spirals, missing: [drop]}", "data: {dataset: spirals, split: {folds: {a: 1}}}",
                  "regularization: {l2: {a: 1}}", "regularization: [1]", "dtype: float16", "dtype: {a: 1}"):
        key = extra.split(":", 1)[0]
        doc = dict(BASE)
        doc.pop(key, None)
        add(ConfigCase(f"type-{extra}", "wrong_types", dump(doc) + extra.encode() + b"\n"))

    # lone surrogates and other odd characters
    for raw, expect in (('"\\ud800"', "refuse"), ('"\\udfff"', "refuse"), ('"\\udcff.csv"', "refuse"),
                        ('"a\\x00b"', "refuse"), ('"\\u202eevil"', "refuse"), ('"\\U0010ffff"', "refuse")):
        for path in ("name", "data.dataset", "model.layers.1", "train.metrics.0", "loss.name", "optimizer.name",
                     "optimizer.schedule.name", "dtype"):
            add(ConfigCase(f"char-{path}-{raw}", "surrogates", with_raw(BASE, path, raw), expect=expect))
        add(ConfigCase(f"char-key-{raw}", "surrogates", with_raw_key(BASE, None, raw)))
        add(ConfigCase(f"char-train-key-{raw}", "surrogates", with_raw_key(BASE, "train", raw)))
        add(ConfigCase(f"char-class-weights-{raw}", "surrogates", with_raw(BASE, "loss.class_weights", f"{{{raw}: 2.0}}")))
        add(ConfigCase(f"char-target-{raw}", "surrogates", with_raw_key(BASE, "data", "target", raw)))
    for raw in (b"\xed\xa0\x80", b"\xff\xfe", b"\xc3", b"\x80abc"):
        add(ConfigCase(f"bytes-name-{raw.hex()}", "surrogates", base.replace(b"name: fz", b"name: fz" + raw)))
        add(ConfigCase(f"bytes-set-{raw.hex()}", "surrogates", base, sets=["--set", b"name=fz" + raw]))
        add(ConfigCase(f"bytes-setkey-{raw.hex()}", "surrogates", base, sets=["--set", b"train." + raw + b"=1"]))
        add(ConfigCase(f"bytes-filename-{raw.hex()}", "surrogates", base, expect="accept", filename=b"c" + raw + b".yaml"))
    add(ConfigCase("bytes-set-dataset", "surrogates", base, sets=["--set", b"data.dataset=\xed\xa0\x80.csv"]))
    add(ConfigCase("utf16-config", "surrogates", base.decode().encode("utf-16")))

    # integers beyond 64 bits and huge ones
    big = {"2**63": str(2**63), "2**64": str(2**64), "10**30": str(10**30), "10**15": str(10**15),
           "-2**64": str(-(2**64)), "10**5000": "1" + "0" * 5000, "1e400": "1.0e+400", "-0": "-0"}
    at_least_one = {"data.split.folds", "data.options.samples", "data.options.classes", "train.epochs",
                    "train.batch_size", "model.layers.0.linear", "optimizer.schedule.milestones.0"}
    for path in ("data.split.folds", "data.split.fold", "data.options.samples", "data.options.classes",
                 "train.epochs", "train.batch_size", "model.layers.0.linear", "seed", "train.checkpoint_every",
                 "optimizer.schedule.milestones.0", "train.early_stopping.patience"):
        for label, raw in big.items():
            doc = json.loads(json.dumps(BASE))
            if path.startswith("data.split.fold"):
                doc["data"]["split"] = {"test": 0.2, "folds": 3, "fold": 0}
            if path.startswith("train.early_stopping"):
                doc["train"]["early_stopping"] = {"patience": 3}
            if label in ("-2**64", "1e400"):
                expect = "refuse"  # negative, or not an integer
            elif label == "-0":
                expect = "refuse" if path in at_least_one else "any"
            elif path in ("data.split.folds", "data.split.fold", "data.options.classes", "optimizer.schedule.milestones.0"):
                expect = "refuse"  # more folds / classes than rows; milestones [huge, 2] do not increase
            else:
                expect = "any"
            add(ConfigCase(f"int-{path}={label}", "big_ints", with_raw(doc, path, raw), expect=expect, slow=10.0))
        add(ConfigCase(f"int-set-{path}", "big_ints", base, sets=["--set", f"{path}={10**30}"], expect="any", slow=10.0))
    add(ConfigCase("int-set-epochs-2**64", "big_ints", base, sets=["--set", f"train.epochs={2**64}"], expect="any"))
    add(ConfigCase("int-lr-1e309", "big_ints", with_raw(BASE, "optimizer.lr", "1e309"), expect="refuse"))
    add(ConfigCase("int-noise-1e308", "big_ints", with_raw(BASE, "data.options.noise", "1e308"), expect="any"))

    # long strings
    for n in (300, 5000):
        add(ConfigCase(f"long-name-{n}", "long_strings", with_raw(BASE, "name", "a" * n), expect="any"))
        add(ConfigCase(f"long-path-{n}", "long_strings", with_raw(BASE, "data.dataset", "a" * n + ".csv")))
        add(ConfigCase(f"long-deep-path-{n}", "long_strings", with_raw(BASE, "data.dataset", "a/" * (n // 2) + "x.csv")))
        add(ConfigCase(f"long-npy-path-{n}", "long_strings", with_raw(BASE, "data.dataset", f"{{X: {'b' * n}.npy, y: y.npy}}")))
        add(ConfigCase(f"long-metric-{n}", "long_strings", with_raw(BASE, "train.metrics.0", "m" * n)))
        add(ConfigCase(f"long-key-{n}", "long_strings", with_raw_key(BASE, "train", "k" * n)))
        add(ConfigCase(f"long-set-{n}", "long_strings", base, sets=["--set", "name=" + "a" * n], expect="any"))
    ten = 10 << 20
    for path in ("name", "data.dataset", "loss.name", "optimizer.name", "train.metrics.0", "model.layers.1", "dtype"):
        add(ConfigCase(f"huge-value-{path}", "huge_strings", with_raw(BASE, path, "x" * ten),
                       expect="any" if path == "name" else "refuse", fit=False))
    add(ConfigCase("huge-quoted-value", "huge_strings", with_raw(BASE, "loss.name", '"' + "é" * (ten // 2) + '"'), fit=False))
    add(ConfigCase("huge-key", "huge_strings", with_raw_key(BASE, None, "k" * ten), fit=False))
    add(ConfigCase("huge-unknown-value", "huge_strings", with_raw_key(BASE, "train", "junk", "v" * ten), fit=False))
    add(ConfigCase("huge-set-value", "huge_strings", base, sets=["--set", "loss.name=" + "x" * 100_000], fit=False))

    # 10 MB configs
    unknown = "".join(f"k{i:07d}: {i}\n" for i in range(ten // 14)).encode()
    add(ConfigCase("big-unknown-top", "big_config", base + unknown, fit=False, slow=3.0))
    add(ConfigCase("big-unknown-train", "big_config",
                   base + b"extra:\n" + unknown.replace(b"\nk", b"\n  k").replace(b"k0000000", b"  k0000000", 1),
                   fit=False, slow=3.0))
    add(ConfigCase("big-flow-list", "big_config", base + b"junk: [" + b"1, " * (ten // 3) + b"1]\n", fit=False, slow=3.0))
    add(ConfigCase("big-comments", "big_config", b"#" * ten + b"\n" + base, expect="any", fit=False, slow=3.0,
                   note="valid, but over a config size limit is fine"))
    add(ConfigCase("big-metrics-list", "big_config",
                   with_raw(BASE, "train.metrics", "[" + "accuracy, " * 200_000 + "accuracy]"), expect="any", fit=False, slow=5.0))
    add(ConfigCase("big-many-layers", "big_config",
                   with_raw(BASE, "model.layers", "[linear: 8, " + "relu, " * 5000 + "linear: 3]"), expect="any", slow=15.0))

    # just under a 1 MB config size limit: the bounds after the size check (values, keys, strings)
    k900 = 900_000
    add(ConfigCase("big900k-unknown-keys", "big_config", base + "".join(f"k{i:07d}: {i}\n" for i in range(k900 // 14)).encode(),
                   fit=False, slow=3.0))
    add(ConfigCase("big900k-flow-list", "big_config", base + b"junk: [" + b"1, " * (k900 // 3) + b"1]\n", fit=False, slow=3.0))
    add(ConfigCase("big900k-name", "big_config", with_raw(BASE, "name", "a" * k900), expect="any", fit=False, slow=3.0))
    add(ConfigCase("big900k-loss-name", "big_config", with_raw(BASE, "loss.name", "x" * k900), fit=False, slow=3.0))
    add(ConfigCase("big900k-key", "big_config", with_raw_key(BASE, "train", "k" * k900), fit=False, slow=3.0))
    add(ConfigCase("big900k-metrics", "big_config", with_raw(BASE, "train.metrics", "[" + "accuracy, " * (k900 // 10) + "accuracy]"),
                   expect="any", fit=False, slow=3.0))
    add(ConfigCase("big900k-layers", "big_config", with_raw(BASE, "model.layers", "[linear: 8, " + "relu, " * (k900 // 6) + "linear: 3]"),
                   expect="any", slow=20.0))
    add(ConfigCase("big900k-comment", "big_config", b"#" + b"x" * k900 + b"\n" + base, expect="accept", fit=False, slow=3.0))

    # syntax
    rnd = random.Random(seed + 1)
    for i in range(4):
        add(ConfigCase(f"syntax-binary-{i}", "syntax", bytes(rnd.getrandbits(8) for _ in range(rnd.choice([16, 1000, 100_000])))))
    add(ConfigCase("syntax-nul", "syntax", base.replace(b"fz", b"f\x00z")))
    add(ConfigCase("syntax-tabs", "syntax", base.replace(b"  ", b"\t")))
    add(ConfigCase("syntax-tab-after-colon", "syntax", base.replace(b"epochs: 2", b"epochs:\t2"), expect="any"))
    add(ConfigCase("syntax-empty", "syntax", b""))
    add(ConfigCase("syntax-whitespace", "syntax", b"   \n\n\t\n"))
    add(ConfigCase("syntax-comment-only", "syntax", b"# nothing\n"))
    add(ConfigCase("syntax-document-marker", "syntax", b"---\n"))
    add(ConfigCase("syntax-two-documents", "syntax", base + b"---\n" + base))
    add(ConfigCase("syntax-document-end", "syntax", base + b"...\n", expect="accept"))
    add(ConfigCase("syntax-python-tag", "syntax", b"!!python/object/apply:os.system [\"touch PWNED\"]\n"))
    add(ConfigCase("syntax-python-tag-value", "syntax", with_raw(BASE, "name", "!!python/object/apply:os.getcwd []")))
    add(ConfigCase("syntax-binary-tag", "syntax", with_raw(BASE, "name", "!!binary aGVsbG8=")))
    add(ConfigCase("syntax-set-tag", "syntax", with_raw(BASE, "train.metrics", "!!set {accuracy: null}")))
    add(ConfigCase("syntax-timestamp-seed", "syntax", with_raw(BASE, "seed", "2001-12-14")))
    add(ConfigCase("syntax-custom-tag", "syntax", with_raw(BASE, "name", "!foo bar")))
    for top in ("[1, 2]", "42", "hello", "null", "[]", "{}", "~", "'a: 1'", "!!str x"):
        add(ConfigCase(f"syntax-top-{top}", "syntax", top.encode() + b"\n"))
    add(ConfigCase("syntax-dup-top", "syntax", base + b"seed: 1\n"))
    add(ConfigCase("syntax-dup-nested", "syntax", base.replace(b"  epochs: 2\n", b"  epochs: 2\n  epochs: 3\n")))
    add(ConfigCase("syntax-dup-flow", "syntax", with_raw(BASE, "data.options", "{samples: 200, samples: 300}")))
    add(ConfigCase("syntax-block-scalar-name", "syntax", with_raw(BASE, "name", "|") .replace(b"name: |", b"name: |\n  a\n  b")))
    add(ConfigCase("syntax-unterminated-quote", "syntax", base.replace(b"name: fz", b"name: \"fz")))
    add(ConfigCase("syntax-unterminated-flow", "syntax", base.replace(b"- accuracy", b"- [accuracy")))
    add(ConfigCase("syntax-bad-indent", "syntax", base.replace(b"  epochs", b"   epochs")))
    add(ConfigCase("syntax-undefined-alias", "syntax", with_raw(BASE, "name", "*nothing")))
    add(ConfigCase("syntax-cr-only", "syntax", base.replace(b"\n", b"\r"), expect="any"))
    add(ConfigCase("syntax-nel-line-sep", "syntax", base.replace(b"\n", "\u2028".encode()), expect="any"))
    add(ConfigCase("syntax-directory", "syntax", b"", filename="conf.d", note="CONFIG is a directory"))
    add(ConfigCase("syntax-missing-file", "syntax", b"", filename="absent.yaml", note="CONFIG does not exist"))

    # valid types, extreme values: they validate, and then train (two epochs) without a crash
    def edge(cid, expect="any", **sections):
        doc = json.loads(json.dumps(BASE))
        for path, value in sections.items():
            node = doc
            keys = path.split("__")
            for k in keys[:-1]:
                node = node.setdefault(k, {}) if isinstance(node, dict) else node[int(k)]
            node[keys[-1]] = value
        add(ConfigCase(f"edge-{cid}", "edge_values", dump(doc), expect=expect, fit_epochs=2))

    edge("min-samples", data__options__samples=4)
    edge("min-samples-folds", data__options__samples=4, data__split={"test": 0.0, "folds": 2})
    edge("folds-equal-rows", data__options__samples=10, data__split={"test": 0.0, "folds": 10})
    edge("five-samples-batch1", data__options__samples=5, train__batch_size=1)
    edge("classes-more-than-train-rows", data__options__samples=8, data__options__classes=6,
         model__layers=[{"linear": 8}, "relu", {"linear": 6}])
    edge("no-val-no-test", data__split={"val": 0.0, "test": 0.0})
    edge("val-almost-all", data__split={"val": 0.98, "test": 0.0})
    edge("val-plus-test-almost-all", data__split={"val": 0.5, "test": 0.499})
    edge("monitor-val-without-val", "refuse", data__split={"val": 0.0, "test": 0.2}, train__monitor="val_loss")
    edge("monitor-unknown-metric", "refuse", train__monitor="val_f1")
    edge("batch-full", train__batch_size="full")
    edge("batch-huge", train__batch_size=10**9)
    edge("lr-huge", optimizer__lr=1e308)
    edge("lr-tiny", optimizer__lr=5e-324)
    edge("lr-inf", "refuse", optimizer__lr=float("inf"))
    edge("momentum-edge", optimizer__momentum=0.9999999)
    edge("noise-huge", data__options__noise=1e308)
    edge("noise-zero", data__options__noise=0.0)
    edge("minmax-huge-range", data__scale={"name": "minmax", "range": [-1e308, 1e308]})
    edge("minmax-tiny-range", data__scale={"name": "minmax", "range": [0.0, 5e-324]})
    edge("scale-none", data__scale="none")
    edge("clip-tiny", train__clip_grad_norm=5e-324)
    edge("clip-huge", train__clip_grad_norm=1e308)
    edge("l1-huge", regularization={"l1": 1e308, "l2": 0.0})
    edge("l2-huge", regularization={"l1": 0.0, "l2": 1e308})
    edge("weight-decay-huge", optimizer__weight_decay=1e308)
    edge("class-weights-tiny", loss__class_weights={"0": 5e-324, "1": 0.0, "2": 0.0})
    edge("class-weights-huge", loss__class_weights={"0": 1e308, "1": 1e308, "2": 1e308})
    edge("class-weights-all-zero", "refuse", loss__class_weights={"0": 0.0, "1": 0.0, "2": 0.0})
    edge("class-weights-balanced-missing-class", data__options__samples=4, loss__class_weights="balanced")
    edge("early-stopping-patience-1", train__early_stopping={"patience": 1, "min_delta": 1e308})
    edge("early-stopping-restore-best-no-improve", train__early_stopping={"patience": 1, "min_delta": 1e308, "restore_best": True},
         train__monitor="val_accuracy")
    edge("schedule-step-1", optimizer__schedule={"name": "step", "step_size": 1, "gamma": 1e-300})
    edge("schedule-gamma-huge", optimizer__schedule={"name": "exponential", "gamma": 1e308})
    edge("schedule-cosine-tmax-1", optimizer__schedule={"name": "cosine", "T_max": 1, "warmup_epochs": 10**6})
    edge("schedule-plateau-huge-patience", optimizer__schedule={"name": "plateau", "patience": 10**15, "factor": 1e-300})
    edge("schedule-warmup-huge", optimizer__schedule={"name": "step", "step_size": 10**15, "warmup_epochs": 10**15})
    edge("milestones-huge", optimizer__schedule={"name": "multistep", "milestones": [1, 10**15, 2**62]})
    edge("width-1-cross-entropy", "refuse", model__layers=[{"linear": 1}])
    edge("only-softmax", "refuse", model__layers=["softmax"])
    edge("dropout-0.999999", model__layers=[{"linear": 8}, {"dropout": 0.999999}, {"linear": 3}])
    edge("noise-std-huge", model__layers=[{"linear": 8}, {"gaussian_noise": 1e308}, {"linear": 3}])
    edge("batch-norm-batch-1", model__layers=[{"linear": 8}, "batch_norm", {"linear": 3}], train__batch_size=1)
    edge("batch-norm-eps-tiny", model__layers=[{"linear": 8}, {"batch_norm": {"eps": 5e-324, "momentum": 1.0}}, {"linear": 3}])
    edge("layer-norm-one-unit", model__layers=[{"linear": 1}, "layer_norm", {"linear": 3}])
    edge("init-scale-huge", model={"init": "normal", "init_scale": 1e308, "layers": [{"linear": 8}, {"linear": 3}]})
    edge("deep-network", model__layers=[{"linear": 4}, "tanh"] * 200 + [{"linear": 3}])
    edge("wide-layer", model__layers=[{"linear": 20000}, "relu", {"linear": 3}])
    # convolutional networks on the digits images (1, 8, 8): shapes at their limits, and shapes that do not fit
    digits = {"dataset": "digits", "split": {"val": 0.2, "test": 0.2}, "scale": "standardize"}

    def conv(cid, expect, *layers, **sections):
        edge(f"cnn-{cid}", expect, data=digits, model__layers=list(layers), **sections)

    conv("kernel-equals-image", "any", {"conv2d": {"filters": 2, "kernel_size": 8}}, "flatten", {"linear": 10})
    conv("kernel-larger-than-image", "refuse", {"conv2d": {"filters": 2, "kernel_size": 9}}, "flatten", {"linear": 10})
    conv("dilation-to-the-edge", "any", {"conv2d": {"filters": 2, "kernel_size": 3, "dilation": 3}}, "flatten", {"linear": 10})
    conv("stride-huge", "any", {"conv2d": {"filters": 2, "kernel_size": 2, "stride": 100000}}, "flatten", {"linear": 10})
    conv("same-with-stride", "refuse", {"conv2d": {"filters": 2, "kernel_size": 3, "stride": 2, "padding": "same"}},
         "flatten", {"linear": 10})
    conv("pair-entry-zero", "refuse", {"conv2d": {"filters": 2, "kernel_size": [3, 0]}}, "flatten", {"linear": 10})
    conv("no-flatten", "refuse", {"conv2d": {"filters": 2, "kernel_size": 3}}, {"linear": 10})
    conv("pool-padding-over-half", "refuse", {"max_pool2d": {"kernel_size": 2, "padding": 2}}, "flatten", {"linear": 10})
    conv("pool-overlapping-padded", "any", {"max_pool2d": {"kernel_size": 3, "stride": 1, "padding": 1}},
         {"avg_pool2d": {"kernel_size": 3, "stride": 2, "padding": 1}}, "flatten", {"linear": 10})
    conv("batch-norm-batch-1", "any", {"conv2d": {"filters": 2, "kernel_size": 3}}, "batch_norm", "relu",
         "global_avg_pool", {"linear": 10}, train__batch_size=1)
    conv("global-pool-first", "any", "global_avg_pool", {"linear": 10})
    edge("cnn-on-flat-rows", "refuse", model__layers=[{"conv2d": {"filters": 2, "kernel_size": 1}}, "flatten", {"linear": 3}])
    edge("lbfgs-dropout-batch-1", optimizer={"name": "lbfgs"}, train__batch_size=1,
         model__layers=[{"linear": 8}, {"dropout": 0.5}, {"linear": 3}])
    edge("lbfgs-full-batch", optimizer={"name": "lbfgs", "lr": 1.0}, train__batch_size="full")
    edge("adam-eps-tiny", optimizer={"name": "adam", "lr": 0.01, "eps": 5e-324})
    edge("float64-huge-lr", dtype="float64", optimizer__lr=1e300)
    edge("regression-on-classes", "any", data__task="regression", loss="mse", model__layers=[{"linear": 8}, {"linear": 1}],
         train__metrics=["mse"])
    edge("binary-ce-3-classes", "refuse", loss="binary_cross_entropy", model__layers=[{"linear": 1}])
    edge("hinge-3-classes", "refuse", loss="hinge", model__layers=[{"linear": 1}])
    edge("diagnostics-on-deep", train__diagnostics=True, model__layers=[{"linear": 4}, "sigmoid"] * 30 + [{"linear": 3}])
    edge("seed-2**64", seed=2**64)
    edge("seed-10**30", seed=10**30)
    edge("sine-regression-scale-target", data={"dataset": "sine", "options": {"samples": 50, "noise": 0.0},
                                               "scale_target": True},
         loss="mse", model__layers=[{"linear": 8}, "tanh", {"linear": 1}], train__metrics=["mse", "r2"])
    edge("sine-constant-target", data={"dataset": "sine", "options": {"samples": 4, "noise": 0.0}, "scale_target": True},
         loss="mae", model__layers=[{"linear": 1}], train__metrics=["r2"])
    edge("blobs-noise-zero", data={"dataset": "blobs", "options": {"samples": 30, "classes": 2, "noise": 0.0}},
         model__layers=[{"linear": 2}], loss={"name": "squared_hinge"}, train__metrics=["balanced_accuracy", "f1"])

    # hostile --set values
    for sets, expect in [
        (["--set", f"train.epochs={2**64}"], "any"),
        (["--set", "train.epochs=1e400"], "refuse"),
        (["--set", "model.layers.0={a: 1}"], "refuse"),
        (["--set", "model.layers.0=[[[[[[[[[[]]]]]]]]]]"], "refuse"),
        (["--set", f"model.layers.{10**30}=relu"], "refuse"),
        (["--set", f"model.layers.-{10**30}=relu"], "refuse"),
        (["--set", "model.layers.0.units.x=1"], "refuse"),
        (["--set", "model.layers=null"], "refuse"),
        (["--set", "model=null"], "refuse"),
        (["--set", "data=[]"], "refuse"),
        (["--set", "=1"], "refuse"),
        (["--set", ".=1"], "refuse"),
        (["--set", "a..b=1"], "refuse"),
        (["--set", "train.epochs"], "refuse"),
        (["--set", ""], "refuse"),
        (["--set", "name=&a [*a]"], "refuse"),
        (["--set", "name=*undefined"], "refuse"),
        (["--set", "name=[unclosed"], "refuse"),
        (["--set", "seed.x=1"], "refuse"),
        (["--set", "train.metrics.0.x=1"], "refuse"),
        (["--set", "train.metrics.5=f1"], "refuse"),
        (["--set", "optimizer.name={a: 1}"], "refuse"),
        (["--set", "optimizer={name: {a: 1}}"], "refuse"),
        (["--set", "data.options=null"], "any"),
        (["--set", "? [a, b]\n: 1"], "refuse"),
        (["--set", "train={? [a]: 1}"], "refuse"),
        (["--set", "name=---\na: 1\n---\nb: 2"], "refuse"),
        (["--set", "train.epochs=!!python/object/apply:os.getcwd []"], "refuse"),
        (["--set", "train.epochs=3"] * 3000, "accept"),
        (["--set", "model.layers.-1.units=3"], "accept"),
    ]:
        add(ConfigCase("set-" + "_".join(s for s in sets[1::2][:1])[:80] + (f"-x{len(sets) // 2}" if len(sets) > 2 else ""),
                       "set_hostile", base, sets=sets, expect=expect))
    ids = Counter(c.id for c in cases)
    seen = Counter()
    for c in cases:  # unique ids
        if ids[c.id] > 1:
            seen[c.id] += 1
            c.id = f"{c.id}#{seen[c.id]}"
    rng.shuffle(cases)
    return cases


# --------------------------------------------------------------------------------------------
# Hostile files


@dataclass
class Cmd:
    args: list
    expect: str = "any"
    allowed: frozenset = frozenset({0, 1, 2})
    slow: float | None = SLOW
    then: "Cmd | None" = None  # run when this one exits 0
    stdout_to: str | None = None  # e.g. /dev/full
    message: str | None = None  # text stderr must hold when the exit code is not 0


@dataclass
class FileCase:
    id: str
    family: str
    files: dict  # relative path -> bytes (a bytes value), or None for a directory
    commands: list
    run_from_base: dict | None = None  # copy the base run to run/, with these relative files replaced (None: deleted)
    note: str = ""
    runs: dict = field(default_factory=dict)  # more copies of the base run: folder -> replacements, as run_from_base


class _Marker:
    """Unpickling this creates `path`: the proof that something unpickled untrusted data."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _savez(compressed=False, **arrays) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return buf.getvalue()


def _npy(array, allow_pickle=False) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=allow_pickle)
    return buf.getvalue()


def _npy_header(header: str | bytes, body: bytes = b"", version=(1, 0), magic=b"\x93NUMPY", length=None) -> bytes:
    header = header.encode("latin1") if isinstance(header, str) else header
    n = len(header) if length is None else length
    return magic + bytes(version) + n.to_bytes(2 if version[0] == 1 else 4, "little") + header + body


def _zip(members: dict) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def _flip_compressed(data: bytes, rng: random.Random, flips: int = 3) -> bytes:
    """Flip bytes inside the compressed data of the members of a zip (not in headers)."""
    out = bytearray(data)
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        infos = z.infolist()
    for info in infos:  # the local header's name and extra lengths may differ from the central directory's
        name_len = int.from_bytes(out[info.header_offset + 26: info.header_offset + 28], "little")
        extra_len = int.from_bytes(out[info.header_offset + 28: info.header_offset + 30], "little")
        start = info.header_offset + 30 + name_len + extra_len
        size = info.compress_size
        if size <= 2:
            continue
        for _ in range(flips):
            i = start + rng.randrange(size // 4 + 1, size)
            out[i] ^= 1 << rng.randrange(8)
    return bytes(out)


def _points(n=5) -> bytes:
    return ("x0,x1\n" + "".join(f"{0.1 * i:.2f},{-0.05 * i:.2f}\n" for i in range(n))).encode()


def _data_csv(rows=60, rng=None) -> list[list[str]]:
    rng = rng or random.Random(0)
    return [["x0", "x1", "label"]] + [[f"{rng.uniform(-1, 1):.4f}", f"{rng.uniform(-1, 1):.4f}", str(i % 3)]
                                      for i in range(rows)]


def _csv(rows, sep=",", end="\n") -> bytes:
    return "".join(sep.join(r) + end for r in rows).encode()


def file_cases(base_run: Path, marker_dir: Path, seed: int = 0) -> list[FileCase]:
    """Hostile data files, mutated checkpoints and run-dir files; `base_run` is a finished run of CKPT_CONFIG."""
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    cases: list[FileCase] = []
    add = cases.append
    mark = lambda name: str(marker_dir / f"PWNED-{name}")

    def data_config(source) -> bytes:
        c = spirals_config("fd", epochs=1)
        c["data"] = {"dataset": source, "split": {"val": 0.2, "test": 0.2}}
        return dump(c)

    def data_commands(path: str, expect: str, eval_expect="any", predict_expect="any", predict=True, evaluate=True):
        fit = Cmd(["fit", "data.yaml", "--run-dir", "fitrun", "-q"], allowed=frozenset({0, 1, 2}), slow=None)
        cmds = [Cmd(["validate", "data.yaml"], expect=expect, allowed=frozenset({0, 2}), then=fit)]
        if evaluate:
            cmds.append(Cmd(["eval", "run", "--data", path], expect=eval_expect))
        if predict:
            cmds.append(Cmd(["predict", "run", path], expect=predict_expect, allowed=frozenset({0, 2})))
        return cmds

    # ---- CSV files (validate/fit as data.dataset, eval --data, predict input)
    rows = _data_csv(60)
    good = _csv(rows)

    def csv_case(cid, data, expect, eval_expect=None, predict_expect=None, name="data.csv", note=""):
        add(FileCase(f"csv-{cid}", "csv", {name: data, "data.yaml": data_config(name)},
                     data_commands(name, expect, eval_expect or expect, predict_expect or expect), run_from_base={},
                     note=note))

    csv_case("valid", good, "accept")
    csv_case("bom-crlf", b"\xef\xbb\xbf" + good.replace(b"\n", b"\r\n"), "accept")
    csv_case("empty-header-cell", _csv([["", "x1", "label"]] + rows[1:]), "accept", eval_expect="any", predict_expect="any",
             note="a column with no name is unnamed_1, ignored")
    csv_case("all-empty-header", _csv([["", "", ""]] + rows[1:]), "any", note="a row of empty cells is blank")
    csv_case("duplicate-header", _csv([["x0", "x0", "label"]] + rows[1:]), "refuse")
    csv_case("ragged-short", _csv(rows[:10] + [["0.1", "1"]] + rows[10:]), "refuse")
    csv_case("ragged-long", _csv(rows[:10] + [["0.1", "0.2", "1", "9"]] + rows[10:]), "refuse")
    csv_case("nul-cell", good.replace(b"0.", b"\x000.", 1).replace(b"\n0", b"\n\x000", 3), "refuse")
    csv_case("nul-header", b"x\x000,x1,label\n" + good.split(b"\n", 1)[1], "any")
    csv_case("nul-everywhere", bytes(b if rng.random() > 0.05 else 0 for b in good), "any")
    csv_case("latin1-cell", good.replace(b"\n0", b"\n\xe90", 1), "refuse")
    csv_case("latin1-header", b"x\xe90,x1,label\n" + good.split(b"\n", 1)[1], "refuse", predict_expect="any")
    csv_case("utf16", good.decode().encode("utf-16"), "refuse")
    csv_case("surrogate-bytes", good.replace(b"label", b"lab\xed\xa0\x80el"), "refuse", predict_expect="any")
    csv_case("huge-field", _csv(rows[:5] + [["1" * (10 << 20), "0.1", "1"]] + rows[5:]), "refuse")
    csv_case("huge-text-field", _csv(rows[:5] + [["x" * (10 << 20), "0.1", "1"]] + rows[5:]), "refuse")
    csv_case("huge-header", _csv([["h" * (1 << 20), "x1", "label"]] + rows[1:]), "any")
    csv_case("huge-line-no-newline", b"x0,x1,label\n" + b"1," * (5 << 20), "refuse")
    csv_case("many-columns", _csv([[f"c{i}" for i in range(20000)] + ["label"]] +
                                  [["0"] * 20000 + [str(i % 3)] for i in range(20)]), "any")
    csv_case("one-row", _csv(rows[:2]), "refuse", eval_expect="any", predict_expect="any")
    csv_case("header-only", _csv(rows[:1]), "refuse", eval_expect="refuse", predict_expect="any")
    csv_case("empty", b"", "refuse")
    csv_case("blank-lines", b"\n\n  \n\n", "refuse")
    csv_case("semicolons", _csv(rows, sep=";"), "accept", note="the delimiter is detected among , ; tab |")
    csv_case("tabs", _csv(rows, sep="\t"), "accept", note="the delimiter is detected among , ; tab |")
    csv_case("unterminated-quote", good.replace(b"\n0", b"\n\"0", 1), "refuse", predict_expect="any")
    csv_case("quoted-newlines", good.replace(b"\n0", b"\n\"0\n\n\"", 3), "any")
    csv_case("inf-1e999", _csv(rows[:4] + [["1e999", "0.1", "1"]] + rows[4:]), "refuse")
    csv_case("minus-inf", _csv(rows[:4] + [["-inf", "0.1", "1"]] + rows[4:]), "refuse")
    csv_case("nan-cell", _csv(rows[:4] + [["nan", "0.1", "1"]] + rows[4:]), "refuse")
    csv_case("hex-underscore-numbers", _csv(rows[:4] + [["1_000", "0x10", "1"]] + rows[4:]), "any")
    csv_case("text-in-numeric", _csv(rows[:4] + [["large", "0.1", "1"]] + rows[4:]), "refuse")
    csv_case("huge-int-labels", _csv([rows[0]] + [[r[0], r[1], str(10**30 + j % 3)] for j, r in enumerate(rows[1:])]), "any")
    csv_case("distinct-labels", _csv([rows[0]] + [[r[0], r[1], f"c{i}"] for i, r in enumerate(rows[1:])]), "any")
    csv_case("cr-only", good.replace(b"\n", b"\r"), "any")
    csv_case("only-target", _csv([["label"]] + [[str(i % 3)] for i in range(60)]), "refuse", predict_expect="refuse")
    csv_case("gz-truncated", gzip.compress(good)[:-30], "refuse", name="data.csv.gz")
    csv_case("gz-not-gzip", good, "refuse", name="data.csv.gz")
    csv_case("gz-garbage-after", gzip.compress(good) + b"\x00garbage", "refuse", name="data.csv.gz")
    csv_case("gz-flipped", bytes(b ^ (1 if i == 40 else 0) for i, b in enumerate(gzip.compress(good))), "refuse",
             name="data.csv.gz")
    csv_case("gz-concatenated", gzip.compress(good[:200]) + gzip.compress(good[200:]), "accept", name="data.csv.gz")
    add(FileCase("csv-is-directory", "csv", {"data.csv": None, "data.yaml": data_config("data.csv")},
                 data_commands("data.csv", "refuse", "refuse", "refuse"), run_from_base={}))
    for i in range(3):  # random byte garbage
        blob = bytes(rng.getrandbits(8) for _ in range(rng.choice([10, 500, 50_000])))
        csv_case(f"garbage-{i}", blob, "refuse", eval_expect="refuse", predict_expect="refuse")

    # ---- Parquet and Feather / Arrow IPC files (read through pyarrow)
    import pyarrow as pa
    import pyarrow.feather as feather
    import pyarrow.ipc as ipc
    import pyarrow.parquet as pq

    columns = {"x0": [float(r[0]) for r in rows[1:]], "x1": [float(r[1]) for r in rows[1:]], "label": [r[2] for r in rows[1:]]}

    def arrow_bytes(table, kind="parquet") -> bytes:
        sink = io.BytesIO()
        if kind == "parquet":
            pq.write_table(table, sink)
        elif kind == "feather":
            feather.write_feather(table, sink)
        else:  # an Arrow IPC stream
            with ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table)
        return sink.getvalue()

    def table_of(**changes):
        return pa.table({**columns, **changes})

    def arrow_case(cid, data, expect, name="data.parquet", note=""):
        add(FileCase(f"arrow-{cid}", "arrow", {name: data, "data.yaml": data_config(name)},
                     data_commands(name, expect, "any", "any"), run_from_base={}, note=note))

    n = len(columns["x0"])
    parquet = arrow_bytes(table_of())
    arrow_case("parquet-valid", parquet, "accept")
    arrow_case("feather-valid", arrow_bytes(table_of(), "feather"), "accept", name="data.feather")
    arrow_case("ipc-stream-valid", arrow_bytes(table_of(), "stream"), "accept", name="data.arrow")
    arrow_case("parquet-dictionary-labels", arrow_bytes(pa.table({**columns, "label": pa.array(columns["label"]).dictionary_encode()})), "accept")
    for cut in sorted({0, 4, 12, len(parquet) // 2, len(parquet) - 8, len(parquet) - 1}):
        arrow_case(f"parquet-truncated-{cut}", parquet[:cut], "refuse")
    for i in range(4):
        flipped = bytearray(parquet)
        for _ in range(1 + 2 * i):
            flipped[rng.randrange(8, len(flipped) - 8)] ^= 1 << rng.randrange(8)
        arrow_case(f"parquet-flipped-{i}", bytes(flipped), "any")
    arrow_case("parquet-garbage", bytes(rng.getrandbits(8) for _ in range(5000)), "refuse")
    arrow_case("feather-truncated", arrow_bytes(table_of(), "feather")[:300], "refuse", name="data.feather")
    arrow_case("feather-garbage", bytes(rng.getrandbits(8) for _ in range(5000)), "refuse", name="data.feather")
    arrow_case("parquet-no-rows", arrow_bytes(table_of().slice(0, 0)), "refuse")
    arrow_case("parquet-list-column", arrow_bytes(table_of(x1=[[1.0, 2.0]] * n)), "refuse")
    arrow_case("parquet-struct-column", arrow_bytes(table_of(x1=[{"a": 1}] * n)), "refuse")
    arrow_case("parquet-binary-column", arrow_bytes(table_of(x1=[b"\x00\xff"] * n)), "refuse")
    arrow_case("parquet-timestamps", arrow_bytes(table_of(x1=pa.array(np.arange(n).astype("datetime64[s]")))), "refuse")
    arrow_case("parquet-all-null-column", arrow_bytes(table_of(x1=pa.nulls(n, pa.float64()))), "refuse")
    arrow_case("parquet-nan-and-inf", arrow_bytes(table_of(x0=[float("nan"), float("inf")] + columns["x0"][2:])), "refuse")
    arrow_case("parquet-huge-string", arrow_bytes(table_of(x1=["x" * (10 << 20)] + ["a"] * (n - 1))), "any")
    arrow_case("parquet-uint64-labels", arrow_bytes(table_of(label=pa.array([2**64 - 1 - i % 3 for i in range(n)], pa.uint64()))), "any")
    arrow_case("parquet-duplicate-names", arrow_bytes(pa.Table.from_arrays([pa.array(columns["x0"])] * 2 + [pa.array(columns["label"])],
                                                                            names=["x0", "x0", "label"])), "refuse")
    arrow_case("parquet-is-csv", good, "refuse")

    # ---- .npz data files
    X = nrng.normal(size=(80, 2))
    y = np.arange(80) % 3
    valid = _savez(X=X, y=y)
    valid_c = _savez(True, X=X, y=y)
    obj = np.empty(3, dtype=object)

    def npz_case(cid, data, expect, eval_expect=None, note=""):
        add(FileCase(f"npz-{cid}", "npz", {"data.npz": data, "data.yaml": data_config("data.npz")},
                     data_commands("data.npz", expect, eval_expect or expect, predict=False), run_from_base={}, note=note))

    npz_case("valid", valid, "accept")
    npz_case("valid-compressed", valid_c, "accept")
    for n in sorted({0, 1, 22, 100, len(valid) // 2, len(valid) - 1, *(rng.randrange(len(valid)) for _ in range(4))}):
        npz_case(f"truncated-{n}", valid[:n], "refuse")
    for n in sorted({len(valid_c) // 2, len(valid_c) - 10, *(rng.randrange(len(valid_c)) for _ in range(3))}):
        npz_case(f"truncated-compressed-{n}", valid_c[:n], "refuse")
    for i in range(6):
        npz_case(f"flipped-compressed-{i}", _flip_compressed(valid_c, rng, flips=1 + i), "refuse")
        npz_case(f"flipped-stored-{i}", _flip_compressed(valid, rng, flips=1 + i), "refuse")
    npz_case("member-not-npy", _zip({"X.npy": b"hello, not an array", "y.npy": _npy(y)}), "refuse")
    npz_case("member-txt", _zip({"X.txt": b"1,2", "y.txt": b"0"}), "refuse")
    npz_case("member-empty", _zip({"X.npy": b"", "y.npy": _npy(y)}), "refuse")
    npz_case("member-garbage-header", _zip({"X.npy": _npy_header("{garbage}\n", b"\x00" * 1280), "y.npy": _npy(y)}), "refuse")
    npz_case("member-dir-traversal", _zip({"../X.npy": _npy(X), "y.npy": _npy(y)}), "refuse")
    obj[:] = [_Marker(mark("npz-object-X"))] * 3
    npz_case("object-X-pickle", _savez(X=obj, y=y[:3]), "refuse")
    obj2 = np.empty(80, dtype=object)
    obj2[:] = [_Marker(mark("npz-object-y"))] * 80
    npz_case("object-y-pickle", _savez(X=X, y=obj2), "refuse")
    npz_case("raw-pickle-member", _zip({"X.npy": pickle.dumps(_Marker(mark("npz-raw-pickle"))), "y.npy": _npy(y)}), "refuse")
    npz_case("complex-X", _savez(X=X.astype(np.complex128), y=y), "refuse")
    npz_case("complex-y", _savez(X=X, y=y.astype(np.complex64)), "refuse")
    npz_case("string-X", _savez(X=X.astype(str), y=y), "refuse")
    npz_case("bytes-X", _savez(X=X.astype("S8"), y=y), "refuse")
    npz_case("datetime-X", _savez(X=np.zeros((80, 2), "datetime64[s]"), y=y), "refuse")
    npz_case("structured-X", _savez(X=np.zeros(80, dtype=[("a", "f8"), ("b", "f8")]), y=y), "refuse")
    npz_case("void-X", _savez(X=np.zeros((80, 2), "V8"), y=y), "refuse")
    npz_case("bool-X", _savez(X=X > 0, y=y), "any")
    npz_case("float16-X", _savez(X=X.astype(np.float16), y=y), "any")
    npz_case("big-endian-X", _savez(X=X.astype(">f8"), y=y), "accept")
    npz_case("fortran-X", _savez(X=np.asfortranarray(X), y=y), "accept")
    npz_case("X-1d", _savez(X=X[:, 0], y=y), "refuse")
    npz_case("X-3d", _savez(X=X.reshape(80, 2, 1), y=y), "any", note="image-like arrays may be flattened")
    npz_case("X-0d", _savez(X=np.array(1.0), y=y), "refuse")
    npz_case("X-no-rows", _savez(X=np.zeros((0, 2)), y=np.zeros(0, int)), "refuse")
    npz_case("X-no-features", _savez(X=np.zeros((80, 0)), y=y), "refuse")
    npz_case("rows-mismatch", _savez(X=X, y=y[:50]), "refuse")
    npz_case("y-3d", _savez(X=X, y=y.reshape(80, 1, 1)), "refuse")
    npz_case("y-onehot", _savez(X=X, y=np.eye(3)[y]), "any")
    npz_case("X-nan", _savez(X=np.where(nrng.random(X.shape) < 0.05, np.nan, X), y=y), "refuse")
    npz_case("X-inf", _savez(X=np.where(nrng.random(X.shape) < 0.05, np.inf, X), y=y), "refuse")
    npz_case("y-nan", _savez(X=X, y=np.where(np.arange(80) == 3, np.nan, y.astype(float))), "refuse")
    npz_case("y-strings", _savez(X=X, y=np.array(["a", "b", "c"] * 26 + ["a", "b"])), "accept", eval_expect="refuse")
    npz_case("missing-y", _savez(X=X), "refuse")
    npz_case("missing-X", _savez(y=y), "refuse")
    npz_case("extra-members", _savez(X=X, y=y, Z=X), "any")
    npz_case("a-npy-renamed", _npy(X), "refuse")
    npz_case("empty-file", b"", "refuse")
    npz_case("empty-zip", _zip({}), "refuse")
    npz_case("shape-lie", _zip({"X.npy": _npy_header("{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000000, 2), }".ljust(117) + "\n", X.tobytes()),
                                "y.npy": _npy(y)}), "refuse")
    npz_case("negative-shape", _zip({"X.npy": _npy_header("{'descr': '<f8', 'fortran_order': False, 'shape': (-80, 2), }".ljust(117) + "\n", X.tobytes()),
                                     "y.npy": _npy(y)}), "refuse")

    # ---- .npy pairs
    def npy_case(cid, xdata, ydata, expect, note=""):
        files = {"X.npy": xdata, "y.npy": ydata, "data.yaml": data_config({"X": "X.npy", "y": "y.npy"})}
        add(FileCase(f"npy-{cid}", "npy_pair", files, data_commands("X.npy", expect, predict=False, evaluate=False),
                     note=note))

    good_x, good_y = _npy(X), _npy(y)
    hdr = lambda d, fo="False", shape="(80, 2)": (f"{{'descr': {d!r}, 'fortran_order': {fo}, 'shape': {shape}, }}".ljust(117) + "\n")
    npy_case("valid", good_x, good_y, "accept")
    npy_case("garbage-header", _npy_header("garbage garbage\n", X.tobytes()), good_y, "refuse")
    npy_case("python-header", _npy_header(f"__import__('os').system('touch {mark('npy-header')}')\n".ljust(117) + "\n", X.tobytes()), good_y, "refuse")
    npy_case("empty-header", _npy_header("", X.tobytes()), good_y, "refuse")
    npy_case("header-length-lies", _npy_header(hdr("<f8"), X.tobytes(), length=60000), good_y, "refuse")
    npy_case("version-9", _npy_header(hdr("<f8"), X.tobytes(), version=(9, 9)), good_y, "refuse")
    npy_case("version-2", _npy_header(hdr("<f8"), X.tobytes(), version=(2, 0)), good_y, "accept")
    npy_case("bad-magic", _npy_header(hdr("<f8"), X.tobytes(), magic=b"\x93NUMPX"), good_y, "refuse")
    npy_case("object-descr", _npy(np.array([_Marker(mark("npy-object"))] * 160, dtype=object).reshape(80, 2), allow_pickle=True), good_y, "refuse")
    npy_case("object-y", good_x, _npy(obj2, allow_pickle=True), "refuse")
    npy_case("complex-descr", _npy_header(hdr("<c16", shape="(40, 2)"), X.tobytes()), good_y, "refuse")
    npy_case("string-descr", _npy_header(hdr("<U2"), X.tobytes()[:80 * 2 * 8]), good_y, "refuse")
    npy_case("weird-descr", _npy_header(hdr("<f7"), X.tobytes()), good_y, "refuse")
    npy_case("descr-list", _npy_header("{'descr': [('a', '<f8')], 'fortran_order': False, 'shape': (80,), }".ljust(117) + "\n", X.tobytes()[:640]), good_y, "refuse")
    npy_case("shape-huge", _npy_header(hdr("<f8", shape=f"({10**15}, 2)"), X.tobytes()), good_y, "refuse")
    npy_case("shape-too-big-for-file", _npy_header(hdr("<f8", shape="(8000, 2)"), X.tobytes()), good_y, "refuse")
    npy_case("shape-negative", _npy_header(hdr("<f8", shape="(-1, 2)"), X.tobytes()), good_y, "refuse")
    npy_case("shape-2**64", _npy_header(hdr("<f8", shape=f"({2**64}, 2)"), X.tobytes()), good_y, "refuse")
    npy_case("shape-0d", _npy_header(hdr("<f8", shape="()"), X.tobytes()[:8]), good_y, "refuse")
    npy_case("shape-3d", _npy_header(hdr("<f8", shape="(80, 2, 1)"), X.tobytes()), good_y, "any")
    npy_case("fortran-order", _npy(np.asfortranarray(X)), good_y, "any", note="refused with a hint: rows are read from disk")
    npy_case("fortran-order-garbage", _npy_header(hdr("<f8", fo="'yes'"), X.tobytes()), good_y, "refuse")
    npy_case("truncated-X", good_x[: len(good_x) // 2], good_y, "refuse")
    npy_case("truncated-header", good_x[:40], good_y, "refuse")
    npy_case("garbage-y", good_x, b"not a npy file at all", "refuse")
    npy_case("rows-mismatch", good_x, _npy(y[:10]), "refuse")
    npy_case("X-nan", _npy(np.where(nrng.random(X.shape) < 0.05, np.nan, X)), good_y, "refuse")
    npy_case("X-int8", _npy(X.astype(np.int8)), good_y, "any")
    npy_case("empty-X", b"", good_y, "refuse")
    add(FileCase("npy-X-is-directory", "npy_pair", {"X.npy": None, "y.npy": good_y,
                                                   "data.yaml": data_config({"X": "X.npy", "y": "y.npy"})},
                 data_commands("X.npy", "refuse", predict=False, evaluate=False)))

    # ---- checkpoints of a real run, mutated
    last = npz_arrays(base_run / "checkpoints" / "last.npz")
    assert last is not None

    def ckpt_commands(key: str, how: str) -> list[Cmd]:
        layer = key.startswith("layers.")
        invalid_value = how in ("delete", "complex", "str", "object", "shape+1", "shape-2d", "scalar", "empty", "nonjson",
                                "sha-mismatch", "surrogate", "config-list", "config-deep", "config-seed", "config-units",
                                "rng-garbage", "negative", "float-epoch")
        def expect(command):
            if how == "valid":
                return "accept"
            if how in ("truncated", "flipped", "nan", "huge", "bool", "float64", "int", "rng-garbage") and not (
                    how == "rng-garbage" and command == "resume"):
                return "any"
            if layer:
                return "refuse" if invalid_value and how not in ("nonjson",) else "any"
            if command == "weights":
                return "any"
            if key in ("meta.config", "meta.config_sha256", "meta.epoch", "data.classes") and invalid_value:
                if key == "data.classes" and how == "str":
                    return "any"
                return "refuse" if how != "negative" else ("refuse" if command == "resume" else "any")
            if key.startswith("data.scale.") and how in ("delete", "complex", "str", "object", "shape+1", "shape-2d",
                                                         "scalar", "empty"):
                return "refuse"
            if command == "resume" and (key.startswith(("optim.", "schedule.", "meta.best", "meta.rng", "loss.weights"))
                                        and invalid_value):
                return "refuse"
            if key == "loss.weights" and how in ("complex", "str", "object", "shape+1", "shape-2d", "empty") and command == "eval":
                return "refuse"
            return "any"

        epochs = str(CKPT_CONFIG["train"]["epochs"] + 1)
        return [
            Cmd(["eval", "run", "--checkpoint", "ck.npz"], expect=expect("eval")),
            Cmd(["predict", "run", "points.csv", "--checkpoint", "ck.npz"], expect=expect("predict"), allowed=frozenset({0, 2})),
            Cmd(["fit", "ck.yaml", "--weights", "ck.npz", "--set", "train.epochs=1", "--run-dir", "wrun", "-q"],
                expect=expect("weights"), slow=None),
            Cmd(["fit", "--resume", "rrun", "--set", f"train.epochs={epochs}", "-q"], expect=expect("resume"), slow=None),
        ]

    def ckpt_case(cid, data: bytes, key="", how=""):
        replace = {f"checkpoints/{p.name}": None for p in (base_run / "checkpoints").glob("*.npz")}
        replace["checkpoints/last.npz"] = data
        # run/ is the pristine run (eval / predict --checkpoint ck.npz compare ck.npz with its last.npz);
        # rrun/ holds ck.npz as its only checkpoint, for --resume
        add(FileCase(f"ckpt-{cid}", "checkpoint", {"ck.npz": data, "ck.yaml": dump(CKPT_CONFIG), "points.csv": _points()},
                     ckpt_commands(key, how), run_from_base={}, runs={"rrun": replace}))

    def with_key(key, value=None, delete=False, **more):
        a = dict(last)
        if delete:
            a.pop(key)
        else:
            a[key] = value
        a.update(more)
        return a

    def save(arrays, pickle_ok=False):
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return buf.getvalue()

    def sha(text: str) -> np.ndarray:
        return np.array(hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest())

    ckpt_case("valid", save(last), "", "valid")
    for key, value in last.items():
        o = np.empty(max(value.size, 1), dtype=object)
        o[:] = [_Marker(mark(f"ckpt-{key}"))] * o.size
        mutations = {
            "delete": None,
            "complex": value.astype(np.complex128) if value.dtype.kind in "fiu" else np.array([1 + 2j]),
            "str": value.astype(str) if value.dtype.kind in "fiu" else np.array(["x"] * max(value.size, 1)).reshape(value.shape or ()),
            "object": o,
            "shape+1": np.concatenate([value.ravel(), value.ravel()[:1]]) if value.size else np.zeros(1, value.dtype),
            "shape-2d": value.reshape(1, -1, 1) if value.size else np.zeros((1, 1, 1), value.dtype),
            "empty": np.zeros((0,), value.dtype),
        }
        if value.ndim:
            mutations["scalar"] = value.ravel()[:1].reshape(())
        if value.dtype.kind == "f":
            mutations["nan"] = np.full_like(value, np.nan)
            mutations["huge"] = np.full_like(value, np.finfo(value.dtype).max)
            mutations["float64" if value.dtype != np.float64 else "float32"] = value.astype(
                np.float64 if value.dtype != np.float64 else np.float32)
        if value.dtype.kind in "iu":
            mutations["negative"] = -np.abs(value) - 1
            mutations["huge"] = np.full_like(value, np.iinfo(np.int64).max)
            mutations["float-epoch"] = value.astype(np.float64) + 0.5
        for how, new in mutations.items():
            if how == "object":
                buf = io.BytesIO()
                np.savez(buf, **with_key(key, new))
                data = buf.getvalue()
            else:
                data = save(with_key(key, new, delete=how == "delete"))
            ckpt_case(f"{key}-{how}", data, key, how)
    text = str(last["meta.config"])
    config = json.loads(text)
    for how, new_text in [
        ("nonjson", "this is { not json"),
        ("nonjson", text[: len(text) // 2]),
        ("config-list", "[]"),
        ("config-list", "null"),
        ("config-list", '"spirals"'),
        ("config-list", "{}"),
        ("config-deep", "[" * 100_000 + "]" * 100_000),
        ("config-deep", '{"a": ' * 5000 + "1" + "}" * 5000),
        ("surrogate", text.replace('"ck"', '"\ud800"')),
        ("config-seed", json.dumps({**config, "seed": 7})),
        ("config-units", text.replace('"units": 8', '"units": 9', 1)),
        ("config-units", json.dumps({**config, "model": {**config["model"], "layers": []}})),
        ("config-units", text.replace("cross_entropy", "mse", 1)),
        ("config-bigint", json.dumps({**config, "seed": 10**30})),
        ("config-bigint", text.replace('"epochs": 3', '"epochs": ' + "9" * 5000, 1)),
        ("config-sweep", json.dumps({**config, "sweep": {"grid": {"optimizer.lr": [0.1]}}})),
        ("config-nan", text.replace('"lr": 0.1', '"lr": NaN', 1)),
    ]:
        arrays = with_key("meta.config", np.array(new_text), **{"meta.config_sha256": sha(new_text)})
        ckpt_case(f"meta.config-{how}-{hashlib.md5(new_text.encode('utf-8', 'surrogatepass')).hexdigest()[:6]}",
                  save(arrays), "meta.config", how if how not in ("config-bigint", "config-sweep", "config-nan") else "any")
    ckpt_case("meta.config_sha256-mismatch", save(with_key("meta.config_sha256", np.array("0" * 64))), "meta.config_sha256", "sha-mismatch")
    for i, rng_text in enumerate(["not json", "{}", "[]", '{"bit_generator": "MT19937", "state": {}}',
                                  json.dumps({**json.loads(str(last["meta.rng"])), "bit_generator": "Nope"}),
                                  "[" * 100_000 + "]" * 100_000]):
        ckpt_case(f"meta.rng-garbage-{i}", save(with_key("meta.rng", np.array(rng_text))), "meta.rng", "rng-garbage")
    raw = save(last)
    for n in sorted({0, 10, 100, len(raw) // 3, len(raw) // 2, len(raw) - 22, len(raw) - 1,
                     *(rng.randrange(len(raw)) for _ in range(4))}):
        ckpt_case(f"truncated-{n}", raw[:n], "", "truncated")
    for i in range(6):
        data = bytearray(raw)
        for _ in range(1 + i):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        ckpt_case(f"flipped-{i}", bytes(data), "", "flipped")
    comp = _savez(True, **last)
    for i in range(3):
        ckpt_case(f"flipped-compressed-{i}", _flip_compressed(comp, rng, flips=1 + i), "", "flipped")
    ckpt_case("member-not-npy", _zip({**{f"{k}.npy": _npy(v) for k, v in last.items() if k != "layers.0.weight"},
                                      "layers.0.weight.npy": b"junk"}), "layers.0.weight", "str")
    ckpt_case("pickle-member", _zip({**{f"{k}.npy": _npy(v) for k, v in last.items() if k != "meta.epoch"},
                                     "meta.epoch.npy": pickle.dumps(_Marker(mark("ckpt-pickle-member")))}), "meta.epoch", "object")

    # ---- run-directory files before --resume, eval and predict
    rows_text = (base_run / "metrics.csv").read_bytes()
    splits = npz_arrays(base_run / "splits.npz")

    def rundir_case(cid, replace: dict, resume="any", evaluate="any", note=""):
        cmds = [Cmd(["fit", "--resume", "run", "--set", f"train.epochs={CKPT_CONFIG['train']['epochs'] + 1}", "-q"],
                    expect=resume, slow=None),
                Cmd(["eval", "run"], expect=evaluate),
                Cmd(["predict", "run", "points.csv"], allowed=frozenset({0, 2}))]
        add(FileCase(f"rundir-{cid}", "run_dir", {"points.csv": _points()}, cmds, run_from_base=replace, note=note))

    rundir_case("metrics-latin1", {"metrics.csv": rows_text.replace(b"epoch", b"\xe9poch", 1)}, "any")
    rundir_case("metrics-latin1-row", {"metrics.csv": rows_text + b"4,\xff\xfe\n"}, "any")
    rundir_case("metrics-nul", {"metrics.csv": rows_text.replace(b",", b"\x00,", 3)}, "any")
    rundir_case("metrics-missing", {"metrics.csv": None}, "any")
    rundir_case("metrics-empty", {"metrics.csv": b""}, "any")
    rundir_case("metrics-huge-line", {"metrics.csv": rows_text + b"9" * (10 << 20) + b"\n"}, "any")
    rundir_case("metrics-directory", {"metrics.csv": "DIR"}, "any")
    rundir_case("summary-garbage", {"summary.json": b"\xff{not json"}, "any")
    rundir_case("summary-directory", {"summary.json": "DIR"}, "any")
    rundir_case("config-latin1", {"config.yaml": b"name: \xe9\n"}, "refuse")
    rundir_case("config-bomb", {"config.yaml": (base_run / "config.yaml").read_bytes() + f"x: {_bomb(9, 9)}\n".encode()}, "refuse")
    rundir_case("config-deep", {"config.yaml": b"x: " + _nest(100_000, False).encode()}, "refuse")
    rundir_case("config-changed-lr", {"config.yaml": (base_run / "config.yaml").read_bytes().replace(b"lr: 0.1", b"lr: 0.2")},
                "refuse")
    rundir_case("config-missing", {"config.yaml": None}, "refuse", "refuse")
    rundir_case("config-empty", {"config.yaml": b""}, "refuse")
    for cid, new in [
        ("truncated", (base_run / "splits.npz").read_bytes()[:100]),
        ("missing-val", save({k: v for k, v in splits.items() if k != "val"})),
        ("out-of-range", save({**splits, "test": splits["test"] + 10**6})),
        ("negative", save({**splits, "train": -splits["train"] - 1})),
        ("float", save({k: v.astype(float) + 0.5 for k, v in splits.items()})),
        ("complex", save({k: v.astype(complex) for k, v in splits.items()})),
        ("overlap", save({**splits, "test": splits["train"][:10]})),
        ("duplicates", save({**splits, "train": np.repeat(splits["train"][:5], 20)})),
        ("2d", save({k: v.reshape(1, -1) for k, v in splits.items()})),
        ("huge-int", save({**splits, "val": np.full_like(splits["val"], np.iinfo(np.int64).max)})),
        ("strings", save({k: v.astype(str) for k, v in splits.items()})),
        ("empty-train", save({**splits, "train": splits["train"][:0]})),
    ]:
        rundir_case(f"splits-{cid}", {"splits.npz": new}, "refuse" if cid not in ("duplicates", "overlap", "truncated", "missing-val") else "any",
                    "refuse" if cid in ("out-of-range", "negative", "float", "complex", "2d", "huge-int", "strings") else "any")
    rundir_case("checkpoints-dir-missing", {"checkpoints": None}, "refuse", "refuse")
    rundir_case("checkpoints-only-tmp", {**{f"checkpoints/{p.name}": None for p in (base_run / "checkpoints").glob("*.npz")},
                                        "checkpoints/.last.npz.tmp-1": raw[:500]}, "refuse", "refuse")
    rundir_case("best-is-directory", {"checkpoints/best.npz": "DIR"}, "any", "any")
    # ---- outputs nntrain cannot write: /dev/full, a directory, a long name, a missing folder
    full = "/dev/full"
    outputs = [
        ("predict-o-devfull", Cmd(["predict", "run", "points.csv", "-o", full], allowed=frozenset({74}), message="cannot write")),
        ("predict-stdout-devfull", Cmd(["predict", "run", "points.csv"], allowed=frozenset({74}), stdout_to=full)),
        ("validate-stdout-devfull", Cmd(["validate", "ck.yaml"], allowed=frozenset({74}), stdout_to=full)),
        ("eval-json-stdout-devfull", Cmd(["eval", "run", "--json"], allowed=frozenset({74}), stdout_to=full)),
        ("schema-stdout-devfull", Cmd(["schema"], allowed=frozenset({74}), stdout_to=full)),
        ("datasets-stdout-devfull", Cmd(["datasets"], allowed=frozenset({74}), stdout_to=full)),
        ("fit-stdout-devfull", Cmd(["fit", "ck.yaml", "--run-dir", "out", "--set", "train.epochs=1"], allowed=frozenset({74}),
                                   stdout_to=full, slow=None)),
        ("gradcheck-stdout-devfull", Cmd(["gradcheck", "ck.yaml"], allowed=frozenset({74}), stdout_to=full)),
        ("predict-o-directory", Cmd(["predict", "run", "points.csv", "-o", "outdir"], allowed=frozenset({2, 74}), message="cannot write")),
        ("predict-o-long-name", Cmd(["predict", "run", "points.csv", "-o", "p" * 300 + ".csv"], allowed=frozenset({2}), message="cannot write")),
        ("predict-o-missing-folder", Cmd(["predict", "run", "points.csv", "-o", "nowhere/p.csv"], allowed=frozenset({2}), message="cannot write")),
        ("predict-o-under-a-file", Cmd(["predict", "run", "points.csv", "-o", "points.csv/p.csv"], allowed=frozenset({2}))),
        ("fit-run-dir-under-devfull", Cmd(["fit", "ck.yaml", "--run-dir", "/dev/full/x", "-q"], allowed=frozenset({2, 74}), slow=None)),
        ("fit-runs-root-is-a-file", Cmd(["fit", "ck.yaml", "--runs-root", "points.csv", "-q"], allowed=frozenset({2}), slow=None)),
        ("fit-run-dir-long", Cmd(["fit", "ck.yaml", "--run-dir", "r" * 5000, "-q"], allowed=frozenset({2}), slow=None)),
        ("fit-run-dir-long-component", Cmd(["fit", "ck.yaml", "--run-dir", "r" * 300, "-q"], allowed=frozenset({2}), slow=None)),
        ("sweep-dir-exists", Cmd(["sweep", "ck.yaml", "--sweep-dir", "outdir", "--grid", "optimizer.lr=0.1"], allowed=frozenset({2}))),
        ("sweep-dir-long", Cmd(["sweep", "ck.yaml", "--sweep-dir", "s" * 300, "--grid", "optimizer.lr=0.1"], allowed=frozenset({2}))),
        ("eval-checkpoint-directory", Cmd(["eval", "run", "--checkpoint", "outdir"], allowed=frozenset({2}))),
        ("eval-checkpoint-devnull", Cmd(["eval", "run", "--checkpoint", "/dev/null"], allowed=frozenset({2}))),
        ("eval-checkpoint-long", Cmd(["eval", "run", "--checkpoint", "c" * 5000 + ".npz"], allowed=frozenset({2}))),
        ("predict-input-directory", Cmd(["predict", "run", "outdir"], allowed=frozenset({2}))),
        ("predict-input-devnull", Cmd(["predict", "run", "/dev/null"], allowed=frozenset({2}))),
        ("eval-data-long", Cmd(["eval", "run", "--data", "d" * 5000 + ".csv"], allowed=frozenset({2}))),
        ("resume-long", Cmd(["fit", "--resume", "r" * 5000], allowed=frozenset({2}))),
        ("weights-directory", Cmd(["fit", "ck.yaml", "--weights", "outdir", "--run-dir", "w", "-q"], allowed=frozenset({2}), slow=None)),
    ]
    for cid, cmd in outputs:
        add(FileCase(f"out-{cid}", "outputs", {"outdir": None, "ck.yaml": dump(CKPT_CONFIG), "points.csv": _points()},
                     [cmd], run_from_base={}))

    ids = Counter(c.id for c in cases)
    assert all(v == 1 for v in ids.values()), [k for k, v in ids.items() if v > 1]
    rng.shuffle(cases)
    return cases


def stratified(cases: list, n: int | None, seed: int) -> list:
    """n cases drawn round-robin over the families (each family's order shuffled by `seed`); all when n is falsy."""
    if not n or n >= len(cases):
        return list(cases)
    rng = random.Random(seed)
    groups = defaultdict(list)
    for c in cases:
        groups[c.family].append(c)
    families = sorted(groups)
    rng.shuffle(families)
    for f in families:
        groups[f].sort(key=lambda c: c.id)
        rng.shuffle(groups[f])
    out = []
    while len(out) < n:
        for f in families:
            if groups[f] and len(out) < n:
                out.append(groups[f].pop(0))
    return out


# --------------------------------------------------------------------------------------------
# The campaign


class Campaign:
    def __init__(self, work: Path, keep: Path, seed: int = 0, jobs: int = 2, log=print, timeout: float = TIMEOUT):
        self.work, self.keep, self.seed, self.jobs, self.log, self.timeout = Path(work), Path(keep), seed, jobs, log, timeout
        self.work.mkdir(parents=True, exist_ok=True)
        self.env = env(self.work / "cache")
        self.markers = self.work / "markers"
        self.markers.mkdir(exist_ok=True)
        self._fixtures: dict = {}
        self.families: set[str] = set()  # configs / files: only these families (or case ids, as regexes)
        self._lock = threading.Lock()
        self._pace: float | None = None

    # ---- helpers
    def run(self, report: CategoryReport, args, cwd, **kw) -> Result:
        kw.setdefault("timeout", self.timeout)
        r = run(args, cwd, self.env, **kw)
        with report.lock:
            report.commands += 1
            report.records.append({
                "case": Path(cwd).name, "command": r.command()[:300], "rc": r.rc, "seconds": round(r.seconds, 3),
                "rss_mb": round(r.maxrss_mb), "stderr_bytes": r.stderr_bytes, "stderr_last": r.last_line()[:300],
                "signal": r.sent, "signal_at": None if r.sent_at is None else round(r.sent_at, 4),
            })
        return r

    def fail(self, report: CategoryReport, case: str, family: str, kind: str, detail: str, r: Result | None,
             case_dir: Path | None = None, script: list[str] | None = None) -> None:
        command = r.command() if r else (script[-1] if script else "")
        repro = None
        if case_dir is not None:
            repro = self.keep_case(report.name, case, case_dir, script or [command], r)
        with report.lock:
            report.failures.append(Failure(report.name, case, family, kind, detail, command, r.rc if r else None,
                                           r.last_line() if r else "", repro))

    def keep_case(self, category: str, case: str, case_dir: Path, script: list[str], r: Result | None) -> str:
        dest = self.keep / category / re.sub(r"[^\w.=+-]", "_", case)[:120]
        with self._lock:
            if not dest.exists():
                dest.mkdir(parents=True)
                for p in sorted(Path(case_dir).iterdir()) if Path(case_dir).is_dir() else []:
                    target = dest / p.name
                    try:
                        if p.is_dir() and not p.is_symlink():
                            shutil.copytree(p, target, symlinks=True)
                        elif p.stat().st_size < (50 << 20):
                            shutil.copy2(p, target)
                    except OSError:
                        pass
                (dest / "repro.sh").write_text("#!/bin/sh\n# Run from this folder; needs nntrain installed.\ncd \"$(dirname \"$0\")\"\n"
                                               + "\n".join(script) + "\n")
            if r is not None:
                with open(dest / "stderr.txt", "a", encoding="utf-8", errors="replace") as f:
                    f.write(f"$ {r.command()[:2000]}\n(exit {r.rc}, {r.seconds:.2f} s, {r.maxrss_mb:.0f} MiB)\n{r.stderr[-20000:]}\n")
        return str(dest)

    @property
    def pace(self) -> float:
        """How much slower than PACE_VALIDATE_S this machine validates a small config now (at least 1):
        the median of 3 runs, measured once. The slow limits are multiplied by it."""
        if self._pace is None:
            d = self.work / "pace"
            d.mkdir(exist_ok=True)
            (d / "config.yaml").write_bytes(dump(BASE))
            times = sorted(run(["validate", "config.yaml"], d, self.env, timeout=self.timeout).seconds for _ in range(3))
            self._pace = max(1.0, times[1] / PACE_VALIDATE_S)
        return self._pace

    def check(self, report, case, family, r: Result, case_dir, allowed=EXIT_CODES, expect="any", slow=SLOW, script=None):
        found = problems(r, allowed, expect, None if slow is None else slow * self.pace)
        for kind, detail in found:
            self.fail(report, case, family, kind, detail, r, case_dir, script)
        markers = list(self.markers.iterdir())
        if markers:
            for m in markers:
                self.fail(report, case, family, "pickle_executed", f"{m.name} was created", r, case_dir, script)
                m.unlink()
        return found

    def _only(self, cases: list) -> list:
        if not self.families:
            return cases
        return [c for c in cases if c.family in self.families or any(re.fullmatch(f, c.id) for f in self.families)]

    def parallel(self, report: CategoryReport, fn, items):
        """fn(item) for every item, `jobs` at a time; a bug of this harness is noted, never fatal."""
        def guarded(item):
            try:
                return fn(item)
            except Exception as e:  # noqa: BLE001 - the campaign goes on
                with report.lock:
                    report.notes.append(f"harness error on {getattr(item, 'id', item)!s:.100}: {type(e).__name__}: {e}")
                self.log(f"harness error: {type(e).__name__}: {e}", file=sys.stderr)

        with ThreadPoolExecutor(max(1, self.jobs)) as pool:
            return list(pool.map(guarded, items))

    def fresh(self, *parts) -> Path:
        d = self.work.joinpath(*parts)
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
        return d

    def reference(self, name: str, config: dict, resume_to: int | None = None) -> dict:
        """An uninterrupted run of `config` (optionally resumed once, cleanly, to `resume_to` epochs), cached."""
        key = (name, resume_to)
        with self._lock:
            if key in self._fixtures:
                return self._fixtures[key]
        d = self.fresh("refs", f"{name}-{resume_to or 0}")
        (d / "config.yaml").write_bytes(dump(config))
        r = run(["fit", "config.yaml", "--run-dir", "run"], d, self.env, timeout=120, watch="stdout")
        if r.rc != 0:
            raise RuntimeError(f"reference run of {name} failed (exit {r.rc}): {r.stderr[-2000:]}")
        if resume_to:
            r2 = run(["fit", "--resume", "run", "--set", f"train.epochs={resume_to}", "-q"], d, self.env, timeout=120)
            if r2.rc != 0:
                raise RuntimeError(f"reference resume of {name} failed (exit {r2.rc}): {r2.stderr[-2000:]}")
        info = {"dir": d, "run": d / "run", "seconds": r.seconds, "train_start": r.watched_at or 0.0, "config": config}
        with self._lock:
            self._fixtures[key] = info
        return info

    def run_category(self, name: str, n: int | None = None, **kw) -> CategoryReport:
        _ = self.pace  # measured now, alone, not later beside the cases that run in parallel
        t0 = time.monotonic()
        report = getattr(self, f"category_{name}")(n, **kw)
        report.seconds = time.monotonic() - t0
        return report

    # ---- 1. kills
    def category_kills(self, n: int | None, max_kills: int = 3) -> CategoryReport:
        report = CategoryReport("kills")
        n = n or 30
        rng = random.Random(self.seed)
        names = list(KILL_CONFIGS)
        refs = {}
        for name in names:
            refs[name] = self.reference(name, KILL_CONFIGS[name])
        plans = []
        for i in range(n):
            name = names[i % len(names)]
            sig = signal.SIGKILL
            u = rng.random()
            if u < 0.1:
                sig = signal.SIGTERM
            elif u < 0.2:
                sig = signal.SIGINT
            plans.append((i, name, sig, rng.random() < 0.3, random.Random(rng.getrandbits(64)), max_kills))
        report.inputs = n
        for p in plans:
            report.families[f"{p[1]}/{signal.Signals(p[2]).name}"] += 1
        self.parallel(report, lambda plan: self._kill_trial(report, refs[plan[1]], *plan), plans)
        return report

    def _kill_plan(self, ref: dict, anywhere: bool, sig: int, rng: random.Random) -> dict:
        """When to send `sig`: uniform over the whole run, or over its training phase (from the first output
        line, `run directory: ...`, printed when training starts, to the end of the reference run)."""
        d, start = ref["seconds"], ref["train_start"] or 0.0
        if anywhere and sig == signal.SIGKILL:
            return dict(kill_at=rng.uniform(0, d))
        return dict(kill_signal=sig, watch="stdout", signal_after_watch=rng.uniform(0, max(d - start, 0.05)))

    def _kill_trial(self, report, ref, i, name, sig, anywhere, rng, max_kills):
        case = f"kill-{i:03d}-{name}"
        d = self.fresh("kills", case)
        (d / "config.yaml").write_bytes(dump(ref["config"]))
        run_dir = d / "run"
        script = [f"# {name}: uninterrupted reference = `nntrain fit config.yaml --run-dir ref`"]
        kills = 0
        history = []
        for step in range(4 + max_kills * 2):
            resume = run_dir.exists()
            args = ["fit", "--resume", "run"] if resume else ["fit", "config.yaml", "--run-dir", "run"]
            kw = {}
            if kills < max_kills and (step == 0 or rng.random() < 0.6):
                kw = self._kill_plan(ref, anywhere, sig if step == 0 else signal.SIGKILL, rng)
            r = self.run(report, args, d, **kw)
            sent = f"  # {signal.Signals(r.sent).name} at {r.sent_at:.3f} s" if r.sent else ""
            if r.sent and r.watched_at is not None:
                sent += f" ({r.sent_at - r.watched_at:.3f} s after the first output)"
            script.append("nntrain " + " ".join(sh(a) for a in args) + sent + f"  # -> exit {r.rc}")
            history.append(r)
            if r.sent:
                kills += 1
            if r.sent == signal.SIGKILL:
                # evidence that kills land inside atomic writes: the temp files they leave behind
                for name in temp_files(run_dir):
                    stem = re.sub(r"^\.(.*)\.tmp-\d+$", r"\1", Path(name).name)
                    with report.lock:
                        report.families["killed inside a write of " + re.sub(r"epoch-\d+", "epoch-NNNN", stem)] += 1
                continue
            expected = EXIT_CODES
            if r.sent == signal.SIGTERM:
                expected = {0, 143}
            elif r.sent == signal.SIGINT:
                expected = {0, 130}
            if self.check(report, case, name, r, d, allowed=expected, slow=None, script=script):
                return
            if r.rc == 0:
                break
            if r.rc in (130, 143):
                continue
            # a run directory that --resume cannot continue
            self.fail(report, case, name, "unreadable_run_dir",
                      f"exit {r.rc} after {kills} kill(s); the run dir holds {_listing(run_dir)}", r, d, script)
            return
        else:
            self.fail(report, case, name, "unreadable_run_dir", f"not finished after {len(history)} commands", history[-1], d, script)
            return
        for kind, detail in compare_runs(run_dir, ref["run"]):
            self.fail(report, case, name, kind, detail + f" (after {kills} kill(s))", history[-1], d, script)

    # ---- 2. disks
    def mount_permitted(self) -> bool:
        return mount_permitted(self.work)

    def category_disks(self, n: int | None, quick: bool = False) -> CategoryReport:
        report = CategoryReport("disks")
        if not self.mount_permitted():
            report.status = "not run (mount not permitted)"
            return report
        ref = self.reference("disk", DISK_CONFIG)
        ref_resumed = self.reference("disk", DISK_CONFIG, resume_to=9)
        sizes = [4, 8, 12, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 128, 192, 256, 512, 1024, 4096]
        fills = [0, 512, 2048, 4096, 6144, 8192, 12288, 16384, 24576, 32768, 49152, 65536, 98304]
        jobs = [("size", s) for s in sizes] + [("fill", f) for f in fills] + [("predict-full", 0), ("readonly", 0)]
        if n:
            rng = random.Random(self.seed)
            keep = [j for j in jobs if j[0] in ("readonly", "predict-full")]
            rest = [j for j in jobs if j not in keep]
            rng.shuffle(rest)
            jobs = keep + rest[: max(0, n - len(keep))]
        report.inputs = len(jobs)
        for kind, _ in jobs:
            report.families[kind] += 1
        self.parallel(report, lambda job: self._disk_job(report, ref, ref_resumed, *job), jobs)
        return report

    def _disk_job(self, report, ref, ref_resumed, kind, value):
        case = f"disk-{kind}-{value}"
        d = self.fresh("disks", case)
        mnt = d / "mnt"
        mnt.mkdir()
        (d / "config.yaml").write_bytes(dump(DISK_CONFIG))
        (d / "points.csv").write_bytes(_points(3000))
        size = f"{value}k" if kind == "size" else "8m"
        script = [f"mkdir -p mnt && mount -t tmpfs -o size={size} tmpfs mnt"]
        try:
            subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], check=True, capture_output=True)
        except (subprocess.CalledProcessError, OSError) as e:
            report.notes.append(f"{case}: mount failed: {e}")
            return
        try:
            if kind == "size":
                self._disk_size(report, case, d, mnt, ref, script)
            elif kind == "fill":
                self._disk_fill(report, case, d, mnt, value, ref_resumed, script)
            elif kind == "predict-full":
                self._disk_predict_full(report, case, d, mnt, script)
            else:
                self._disk_readonly(report, case, d, mnt, script)
        finally:
            for _ in range(20):
                if subprocess.run(["umount", str(mnt)], capture_output=True).returncode == 0:
                    break
                time.sleep(0.2)

    def _write_failure_checks(self, report, case, family, r, d, script, run_dir, write_expected=True):
        """A command that may fail for lack of space: 0, or 74 / 2 with 'cannot write'."""
        found = self.check(report, case, family, r, d, allowed={0, 2, 74}, slow=None, script=script)
        if not found and r.rc != 0 and "cannot write" not in r.stderr:
            self.fail(report, case, family, "no_message", f"exit {r.rc} without 'cannot write'", r, d, script)
        if run_dir is not None:
            for kind, detail in consistency(run_dir):
                self.fail(report, case, family, kind, detail, r, d, script)
        return found

    def _disk_size(self, report, case, d, mnt, ref, script):
        args = ["fit", "config.yaml", "--run-dir", "mnt/run", "-q"]
        r = self.run(report, args, d)
        script.append("nntrain " + " ".join(args) + f"  # -> exit {r.rc}")
        run_dir = mnt / "run"
        if self._write_failure_checks(report, case, "size", r, d, script, run_dir) or r.rc == 0:
            if r.rc == 0:
                for kind, detail in compare_runs(run_dir, ref["run"]):
                    self.fail(report, case, "size", kind, detail, r, d, script)
            return
        # the space comes back: the run must continue to the same end
        subprocess.run(["mount", "-o", "remount,size=16m", str(mnt)], check=True, capture_output=True)
        script.append("mount -o remount,size=16m mnt")
        if not (run_dir / "config.yaml").exists():
            leftover = sorted(str(p.relative_to(mnt)) for p in mnt.rglob("*"))
            if run_dir.exists():
                self.fail(report, case, "size", "unreadable_run_dir",
                          f"the failed fit left {leftover[:8]} (no config.yaml): neither --resume nor --run-dir works", r, d, script)
            return
        r2 = self.run(report, ["fit", "--resume", "mnt/run", "-q"], d)
        script.append(f"nntrain fit --resume mnt/run -q  # -> exit {r2.rc}")
        if self.check(report, case, "size", r2, d, allowed={0, 2}, slow=None, script=script):
            return
        if r2.rc != 0:
            self.fail(report, case, "size", "unreadable_run_dir",
                      f"`fit --resume` refused after the space came back; the failed fit left {_listing(run_dir)}", r2, d, script)
            return
        for kind, detail in compare_runs(run_dir, ref["run"]):
            self.fail(report, case, "size", kind, detail + " (resumed after a full disk)", r2, d, script)

    def _fill(self, mnt: Path, free: int) -> None:
        st = os.statvfs(mnt)
        avail = st.f_bavail * st.f_frsize
        with open(mnt / "filler", "wb") as f:
            try:
                f.write(b"\0" * max(avail - free, 0))
            except OSError:
                pass

    def _disk_fill(self, report, case, d, mnt, free, ref_resumed, script):
        r = self.run(report, ["fit", "config.yaml", "--run-dir", "mnt/run", "-q"], d)
        script.append(f"nntrain fit config.yaml --run-dir mnt/run -q  # -> exit {r.rc}")
        if self.check(report, case, "fill", r, d, allowed={0}, slow=None, script=script):
            return
        self._fill(mnt, free)
        script.append(f"# fill mnt with a file leaving {free} bytes: python -c \"...\"  (mnt/filler)")
        run_dir = mnt / "run"
        args = ["fit", "--resume", "mnt/run", "--set", "train.epochs=9", "-q"]
        r2 = self.run(report, args, d)
        script.append("nntrain " + " ".join(args) + f"  # -> exit {r2.rc}")
        if self._write_failure_checks(report, case, "fill", r2, d, script, run_dir):
            return
        (mnt / "filler").unlink()
        script.append("rm mnt/filler")
        if r2.rc != 0:
            r3 = self.run(report, args, d)
            script.append("nntrain " + " ".join(args) + f"  # -> exit {r3.rc}")
            if self.check(report, case, "fill", r3, d, allowed={0, 2}, slow=None, script=script):
                return
            if r3.rc != 0:
                self.fail(report, case, "fill", "unreadable_run_dir",
                          f"`fit --resume` refused after the space came back; the run dir holds {_listing(run_dir)}", r3, d, script)
                return
        for kind, detail in compare_runs(run_dir, ref_resumed["run"]):
            self.fail(report, case, "fill", kind, detail + " (resumed after a full disk)", r2, d, script)

    def _disk_predict_full(self, report, case, d, mnt, script):
        r = self.run(report, ["fit", "config.yaml", "--run-dir", "run", "-q"], d)
        if r.rc != 0:
            return
        self._fill(mnt, 1024)
        for out in ("mnt/pred.csv", "mnt/sub/pred.csv"):
            args = ["predict", "run", "points.csv", "-o", out]
            r2 = self.run(report, args, d)
            script.append("nntrain " + " ".join(args) + f"  # -> exit {r2.rc}")
            self._write_failure_checks(report, case, "predict-full", r2, d, script, None)
        for name in temp_files(mnt):
            self.fail(report, case, "predict-full", "leftover_tmp", f"temp file {name}", r2, d, script)

    def _disk_readonly(self, report, case, d, mnt, script):
        r = self.run(report, ["fit", "config.yaml", "--run-dir", "mnt/run", "-q"], d)
        script.append(f"nntrain fit config.yaml --run-dir mnt/run -q  # -> exit {r.rc}")
        if self.check(report, case, "readonly", r, d, allowed={0}, slow=None, script=script):
            return
        before = snapshot(mnt)
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True, capture_output=True)
        script.append("mount -o remount,ro mnt")
        try:
            must_fail = [
                ["fit", "--resume", "mnt/run", "--set", "train.epochs=9", "-q"],
                ["fit", "--resume", "mnt/run", "-q"],
                ["fit", "config.yaml", "--run-dir", "mnt/new", "-q"],
                ["fit", "config.yaml", "--runs-root", "mnt", "-q"],
                ["sweep", "config.yaml", "--runs-root", "mnt", "--grid", "optimizer.lr=0.1,0.05"],
                ["predict", "mnt/run", "points.csv", "-o", "mnt/pred.csv"],
                ["predict", "mnt/run", "points.csv", "-o", "mnt/run/pred.csv"],
                ["datasets", "download", "mnist", "--dir", "mnt/cache", "--mirror", "file:///nonexistent"],
            ]
            for args in must_fail:
                r2 = self.run(report, args, d)
                script.append("nntrain " + " ".join(args) + f"  # -> exit {r2.rc}")
                allowed = {1, 2, 74} if args[0] in ("sweep", "datasets") else {2, 74}
                found = self.check(report, case, "readonly", r2, d, allowed=allowed, slow=None, script=script)
                if not found and args[0] not in ("datasets",) and "cannot write" not in r2.stderr and not (
                        args[0] == "sweep" and r2.rc == 1):
                    self.fail(report, case, "readonly", "no_message", f"exit {r2.rc} without 'cannot write'", r2, d, script)
            for args in (["eval", "mnt/run"], ["predict", "mnt/run", "points.csv"], ["gradcheck", "mnt/run"],
                         ["eval", "mnt/run", "--checkpoint", "last", "--split", "val"]):
                r2 = self.run(report, args, d)
                script.append("nntrain " + " ".join(args) + f"  # -> exit {r2.rc} (only reads: must work)")
                self.check(report, case, "readonly", r2, d, allowed={0, 1}, expect="accept", script=script)
            if snapshot(mnt) != before:
                self.fail(report, case, "readonly", "inconsistent", "a read-only run directory changed", None, d, script)
        finally:
            subprocess.run(["mount", "-o", "remount,rw", str(mnt)], capture_output=True)

    # ---- 3. configs
    def category_configs(self, n: int | None) -> CategoryReport:
        report = CategoryReport("configs")
        cases = stratified(self._only(config_cases(self.seed)), n, self.seed)
        report.inputs = len(cases)
        for c in cases:
            report.families[c.family] += 1
        self.parallel(report, lambda c: self._config_case(report, c), cases)
        return report

    def _config_case(self, report, c: ConfigCase):
        d = self.fresh("configs", re.sub(r"[^\w.=+-]", "_", c.id)[:100])
        if c.filename == "conf.d":
            (d / "conf.d").mkdir()
        elif c.filename != "absent.yaml":
            (d / os.fsdecode(c.filename)).write_bytes(c.text)
        args = ["validate", c.filename, *c.sets]
        script = ["nntrain " + " ".join(sh(a) for a in args)]
        r = self.run(report, args, d)
        found = self.check(report, c.id, c.family, r, d, allowed={0, 2}, expect=c.expect, slow=c.slow, script=script)
        if (d / "PWNED").exists():
            self.fail(report, c.id, c.family, "pickle_executed", "a YAML python tag ran", r, d, script)
        if r.rc == 0 and c.fit and not found:
            fit = ["fit", c.filename, *c.sets, "--set", f"train.epochs={c.fit_epochs}", "--run-dir", "run", "-q"]
            script.append("nntrain " + " ".join(sh(a) for a in fit))
            r2 = self.run(report, fit, d)
            self.check(report, c.id, c.family, r2, d, allowed={0, 1, 2, 74}, slow=max(c.slow, 20.0), script=script)

    # ---- 4. files
    def base_run(self) -> Path:
        return self.reference("ckpt", CKPT_CONFIG)["run"]

    def category_files(self, n: int | None) -> CategoryReport:
        report = CategoryReport("files")
        base = self.base_run()
        cases = stratified(self._only(file_cases(base, self.markers, self.seed)), n, self.seed)
        report.inputs = len(cases)
        for c in cases:
            report.families[c.family] += 1
        self.parallel(report, lambda c: self._file_case(report, base, c), cases)
        return report

    def _file_case(self, report, base: Path, c: FileCase):
        d = self.fresh("files", re.sub(r"[^\w.=+-]", "_", c.id)[:100])
        for rel, data in c.files.items():
            p = d / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            if data is None:
                p.mkdir()
            else:
                p.write_bytes(data)
        runs = {**({"run": c.run_from_base} if c.run_from_base is not None else {}), **c.runs}
        for folder, replace in runs.items():
            shutil.copytree(base, d / folder)
            for rel, data in replace.items():
                p = d / folder / rel
                if p.is_dir():
                    shutil.rmtree(p)
                elif p.exists():
                    p.unlink()
                if data == "DIR":
                    p.mkdir(parents=True)
                elif data is not None:
                    p.parent.mkdir(parents=True, exist_ok=True)
                    p.write_bytes(data)
        pristine = d.parent / (d.name + ".inputs")
        if pristine.exists():
            shutil.rmtree(pristine)
        shutil.copytree(d, pristine, symlinks=True)
        script = []
        queue = list(c.commands)
        while queue:
            cmd = queue.pop(0)
            script.append("nntrain " + " ".join(sh(a) for a in cmd.args))
            if cmd.stdout_to:
                script[-1] += f" > {cmd.stdout_to}"
            r = self.run(report, cmd.args, d, stdout_to=cmd.stdout_to)
            found = self.check(report, c.id, c.family, r, pristine, allowed=cmd.allowed, expect=cmd.expect,
                               slow=cmd.slow, script=script)
            if not found and cmd.message and r.rc != 0 and cmd.message not in r.stderr:
                self.fail(report, c.id, c.family, "no_message", f"exit {r.rc} without {cmd.message!r}", r, pristine, script)
            if r.rc == 0 and cmd.then is not None and not found:
                queue.insert(0, cmd.then)
        shutil.rmtree(pristine, ignore_errors=True)


def mount_permitted(where: Path) -> bool:
    probe = Path(tempfile.mkdtemp(prefix="mount-probe-", dir=where))
    try:
        ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)], capture_output=True).returncode == 0
        if ok:
            subprocess.run(["umount", str(probe)], capture_output=True)
        return ok
    except OSError:
        return False
    finally:
        try:
            probe.rmdir()
        except OSError:
            pass


# --------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=30, help="kill trials (default 30)")
    ap.add_argument("--configs", type=int, default=0, help="hostile configs, drawn evenly over the families (0: all)")
    ap.add_argument("--files", type=int, default=0, help="hostile files, drawn evenly over the families (0: all)")
    ap.add_argument("--disks", type=int, default=0, help="disk scenarios (0: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=2, help="commands at once (default 2)")
    ap.add_argument("--timeout", type=float, default=TIMEOUT, help="seconds before a command counts as hung (default 30)")
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    ap.add_argument("--keep", type=Path, help="folder for the reproducers (default: a new folder in the temp dir)")
    ap.add_argument("--keep-work", action="store_true", help="do not delete the work folder")
    ap.add_argument("--only", default=",".join(CATEGORIES), help="comma-separated categories (default: all)")
    ap.add_argument("--families", default="", help="configs / files: only these families or case-id regexes (comma-separated)")
    ap.add_argument("--quick", action="store_true", help="a small sample of every category (well under a minute)")
    ap.add_argument("--show", type=int, default=None, help="distinct failures printed at most (default: all)")
    a = ap.parse_args(argv)
    if a.quick:
        a.kills, a.configs, a.files, a.disks = 3, 24, 24, 5
    only = [c.strip() for c in a.only.split(",") if c.strip()]
    bad = [c for c in only if c not in CATEGORIES]
    if bad:
        ap.error(f"unknown categories {bad}; choose from {', '.join(CATEGORIES)}")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    top = Path(tempfile.gettempdir()) / f"nntrain-faults-{stamp}-{os.getpid()}"
    work, keep = top / "work", a.keep or top / "failures"
    campaign = Campaign(work, keep, seed=a.seed, jobs=a.jobs, timeout=a.timeout)
    campaign.families = {f.strip() for f in a.families.split(",") if f.strip()}
    sizes = {"kills": a.kills, "disks": a.disks, "configs": a.configs, "files": a.files}
    reports = []
    t0 = time.monotonic()
    try:
        for name in only:
            print(f"{name} ...", file=sys.stderr, flush=True)
            report = campaign.run_category(name, sizes[name])
            print(f"{name}: {report.status}, {report.inputs} inputs, {report.commands} commands, "
                  f"{len(report.failures)} failures, {report.seconds:.0f} s", file=sys.stderr, flush=True)
            reports.append(report)
    finally:
        if not a.keep_work:
            shutil.rmtree(work, ignore_errors=True)
            try:
                top.rmdir()  # empty unless it holds the reproducers
            except OSError:
                pass
    failures = [f for r in reports for f in r.failures]
    print(format_table(reports))
    for r in reports:
        if r.families:
            print(f"{r.name} inputs: " + ", ".join(f"{k} {v}" for k, v in sorted(r.families.items())))
    print(f"total: {time.monotonic() - t0:.0f} s, {sum(r.commands for r in reports)} commands, {len(failures)} failures"
          + (f"; slow limits x {campaign._pace:.2f} (the machine's pace)" if campaign._pace else ""))
    if failures:
        print(f"\ndistinct failures ({len(group_failures(failures))}); reproducers in {keep}:")
        print(format_failures(failures, a.show))
    if a.out:
        a.out.write_text(json.dumps({
            "seed": a.seed, "seconds": round(time.monotonic() - t0, 1), "keep": str(keep),
            "categories": {r.name: r.to_dict() for r in reports},
            "distinct": [{"category": k[0], "kind": k[1], "signature": k[2], "count": len(g),
                          "families": sorted({f.family for f in g}), "example": vars(g[0])}
                         for k, g in group_failures(failures)],
        }, indent=2, default=str))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
