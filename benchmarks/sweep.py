"""Sweep executors: the Ray executor against the local one, and TPE + pruning against a grid.

    pip install -e ".[ray]"                    # ".[ray,search]" for part 2 (TPE needs optuna)
    python benchmarks/sweep.py                 # 3 rounds: about 1 minute on 2 idle cores; results/sweep.md, .json
    python benchmarks/sweep.py --quick         # 1 round, results to a temporary directory
    python benchmarks/sweep.py --part 1        # only the executors (2: only the search)

Part 1, overhead of the Ray executor (target: at most 0.3 s per trial over the local executor).
16 trials of configs/quickstart.yaml as it is (spirals, 1500 rows, 64 hidden units, 20 epochs),
the grid optimizer.lr=0.3,0.1,0.03,0.01 x model.layers.0.units=16,32,64,128, on
LocalExecutor(jobs=2) (two spawned worker processes, 1 BLAS thread each) and on
RayExecutor(jobs=2) (a local Ray instance with 2 CPUs, cpus_per_trial=1: 1 BLAS thread each, the
run directories returned through the object store as archives). Each round measures, in a
rotated order, for each executor: its start (construction: worker processes started, nntrain
imported in them; for Ray also the Ray instance), the sweep (run_sweep with the executor
already started: what every trial costs) and close. The per-trial overhead is
(Ray sweep - local sweep) / 16, from the medians over the rounds (and the median of the
per-round differences); start and close are reported apart, since they are paid once per
sweep, not per trial. Both sweeps must give the same sweep.csv except for the seconds (checked).
Before each round the script waits (up to --max-wait s) for a second in which other processes
used at most --max-others of the CPUs (benchmarks/conv.py's meter); the load average at the
start and the end is in the header.

Part 2, how many trials TPE + pruning needs to reach the grid's best (runs only where the sweep
spec has `search`, `trials` and `prune`, i.e. sweep_options accepts them; otherwise it is
reported as not run). The documented search: configs/quickstart.yaml, 20 epochs, the grid
optimizer.lr in 8 log-spaced values from 1 to 0.003 x model.layers.0.units=8,16,32,64 (32 trials)
against TPE over log_uniform optimizer.lr=0.003:1 and choice model.layers.0.units=8,16,32,64 with
median pruning, 96 trials at most (3 x the grid's), on the local executor (jobs 1, so that each trial sees the
previous ones). Reported: the grid's best val_loss, the TPE trial (counted from 1, in the order
trials were made) that first reached it or better, TPE's best within the grid's 32 trials, how many of TPE's trials were pruned, the
epochs trained in total by each (pruning's saving) and the wall time.
"""

from __future__ import annotations

import argparse
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]  # benchmarks/profile.py shadows `profile`

import csv
import datetime as dt
import importlib.util
import inspect
import json
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(_HERE).parent
RESULTS = Path(_HERE) / "results"
QUICKSTART = ROOT / "configs" / "quickstart.yaml"
GRID = ["optimizer.lr=0.3,0.1,0.03,0.01", "model.layers.0.units=16,32,64,128"]
TRIALS = 16
TARGET = 0.3  # seconds per trial, Ray over local
SEARCH_LRS = [1.0, 0.44, 0.19, 0.083, 0.036, 0.016, 0.0069, 0.003]
SEARCH_UNITS = [8, 16, 32, 64]
TPE_BUDGET = 3  # TPE may run up to 3 x the grid's trials, to count how many it needs


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"nntrain_bench_{name}", Path(_HERE) / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds of part 1 (default 3)")
    p.add_argument("--part", choices=["1", "2", "both"], default="both")
    p.add_argument("--max-others", type=float, default=0.10, help="other processes' CPU share that counts as quiet")
    p.add_argument("--max-wait", type=float, default=30.0, help="seconds to wait for a quiet second before a round")
    p.add_argument("--quick", action="store_true", help="1 round, results to a temporary directory")
    p.add_argument("--out", default=None, help="results path without suffix (default benchmarks/results/sweep)")
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.max_wait = 1, min(args.max_wait, 5.0)
    return args


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return [{k: v for k, v in row.items() if k not in ("seconds", "attempts")} for row in csv.DictReader(f)]


def machine_info() -> dict:
    m = _load("machine")
    import numpy as np

    import nntrain

    try:
        git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except OSError:
        git = "?"
    try:
        import ray

        ray_version = ray.__version__
    except ImportError:
        ray_version = None
    return {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "cpu": m.cpu_text(),
        "cpus": os.cpu_count(),
        "blas": m.blas_text(m.blas_info()),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "nntrain": getattr(nntrain, "__version__", "?"),
        "ray": ray_version,
        "git": git or "?",
        "load_average": os.getloadavg()[0],
    }


# --- part 1 ----------------------------------------------------------------------------------------


def one_sweep(kind: str, work: Path, r: int) -> dict:
    from nntrain.sweep import LocalExecutor, run_sweep, sweep_options

    t0 = time.perf_counter()
    if kind == "local":
        executor = LocalExecutor(jobs=2)
    else:
        from nntrain.sweep.ray_executor import RayExecutor

        executor = RayExecutor(jobs=2, cpus_per_trial=1)
    t1 = time.perf_counter()
    sweep_dir = work / f"{kind}-{r}"
    try:
        result = run_sweep(str(QUICKSTART), (), sweep_options(grid=GRID), sweep_dir=sweep_dir, executor=executor)
        t2 = time.perf_counter()
    finally:
        executor.close()
    t3 = time.perf_counter()
    if result["status"] != "completed" or len(result["trials"]) != TRIALS:
        raise RuntimeError(f"{kind} sweep: {result['status']}, {[t['status'] for t in result['trials']]}")
    return {"start": t1 - t0, "sweep": t2 - t1, "close": t3 - t2, "rows": read_rows(sweep_dir / "sweep.csv"),
            "run_seconds": sum(t["seconds"] or 0 for t in result["trials"])}


def part1(args, work: Path) -> dict:
    meter = _load("conv").Others()
    conv = _load("conv")
    kinds = ["local", "ray"]
    seconds = {k: {"start": [], "sweep": [], "close": [], "run_seconds": []} for k in kinds}
    rows, waited, orders = {}, 0.0, []
    for r in range(args.rounds):
        waited += conv.wait_quiet(meter, args.max_others, args.max_wait)
        order = kinds[r % 2:] + kinds[: r % 2]
        orders.append(order)
        for k in order:
            m = one_sweep(k, work, r)
            rows.setdefault(k, m["rows"])
            if m["rows"] != rows[k]:
                raise RuntimeError(f"{k}: round {r + 1} gave another sweep.csv than round 1")
            for part in seconds[k]:
                seconds[k][part].append(m[part])
            print(f"  round {r + 1} {k}: start {m['start']:.2f}s, sweep {m['sweep']:.2f}s, close {m['close']:.2f}s", flush=True)
    same = rows["local"] == rows["ray"]
    med = {k: {p: statistics.median(v) for p, v in parts.items()} for k, parts in seconds.items()}
    per_trial = (med["ray"]["sweep"] - med["local"]["sweep"]) / TRIALS
    per_round = [(a - b) / TRIALS for a, b in zip(seconds["ray"]["sweep"], seconds["local"]["sweep"])]
    return {
        "trials": TRIALS, "grid": GRID, "rounds": args.rounds, "orders": orders, "seconds": seconds, "median": med,
        "overhead_per_trial": per_trial, "overhead_per_trial_median_of_rounds": statistics.median(per_round),
        "target_per_trial": TARGET, "target_met": per_trial <= TARGET, "same_sweep_csv": same,
        "seconds_waited_for_quiet": waited,
    }


# --- part 2 ----------------------------------------------------------------------------------------


def search_supported() -> str | None:
    """None when sweep_options takes search=, trials= and prune=; else why part 2 cannot run."""
    from nntrain.sweep import sweep_options

    missing = [k for k in ("search", "trials", "prune") if k not in inspect.signature(sweep_options).parameters]
    return f"sweep_options has no {', '.join(missing)} (TPE search and pruning are not in this nntrain yet)" if missing else None


def part2(args, work: Path) -> dict:
    reason = search_supported()
    if reason:
        return {"run": False, "reason": reason}
    from nntrain.sweep import run_sweep, sweep_options

    grid_spec = sweep_options(grid=["optimizer.lr=" + ",".join(map(str, SEARCH_LRS)), "model.layers.0.units=" + ",".join(map(str, SEARCH_UNITS))])
    tpe_spec = sweep_options(
        search="tpe", trials=TPE_BUDGET * len(SEARCH_LRS) * len(SEARCH_UNITS), prune="median",
        log_uniform=[f"optimizer.lr={min(SEARCH_LRS)}:{max(SEARCH_LRS)}"], choice=["model.layers.0.units=" + ",".join(map(str, SEARCH_UNITS))],
    )
    out = {"run": True, "grid_spec": grid_spec, "tpe_spec": tpe_spec}
    for name, spec in (("grid", grid_spec), ("tpe", tpe_spec)):
        t0 = time.perf_counter()
        result = run_sweep(str(QUICKSTART), (), spec, sweep_dir=work / f"search-{name}")
        trials = sorted(result["trials"], key=lambda t: t["trial"])
        out[name] = {
            "seconds": time.perf_counter() - t0,
            "trials": len(trials),
            "statuses": [t["status"] for t in trials],
            "values": [t["mean"] for t in trials],
            "epochs": sum(r["epochs"] or 0 for t in trials for r in t["runs"]),
            "best": result["best"]["mean"] if result.get("best") else None,
        }
    target = out["grid"]["best"]
    reached = [i + 1 for i, v in enumerate(out["tpe"]["values"]) if v is not None and v <= target]
    out["target"] = target
    out["tpe_trials_to_reach_grid_best"] = reached[0] if reached else None
    out["tpe_pruned"] = out["tpe"]["statuses"].count("pruned")
    same_budget = [v for v in out["tpe"]["values"][: out["grid"]["trials"]] if v is not None]
    out["tpe_best_within_grid_budget"] = min(same_budget) if same_budget else None
    return out


# --- report ----------------------------------------------------------------------------------------


def report(info: dict, p1: dict | None, p2: dict | None) -> str:
    lines = [
        "# nntrain sweep benchmark",
        "",
        f"CPU: {info['cpu']} ({info['cpus']} CPUs)",
        "",
        f"{info['date']} · {info['platform']} · Python {info['python']}, numpy {info['numpy']}, Ray {info['ray']},"
        f" nntrain {info['nntrain']} (git {info['git']}) · load average {info['load_average']:.2f} at the start,"
        f" {info.get('load_average_end', float('nan')):.2f} at the end",
        "",
        f"BLAS: {info['blas']}.",
        "",
    ]
    if p1:
        med = p1["median"]
        lines += [
            f"## Part 1: Ray executor against the local one ({p1['trials']} trials, jobs 2 / 2 CPUs)",
            "",
            f"configs/quickstart.yaml, grid {' x '.join(p1['grid'])}; median (min-max) of {p1['rounds']} interleaved rounds.",
            "",
            "| executor | start (s) | sweep (s) | close (s) | sum of the runs' own seconds |",
            "|---|---:|---:|---:|---:|",
        ]
        for k, label in (("local", "LocalExecutor(jobs=2)"), ("ray", "RayExecutor(jobs=2), local instance")):
            s = p1["seconds"][k]
            cells = [f"{med[k][p]:.2f} ({min(s[p]):.2f}-{max(s[p]):.2f})" for p in ("start", "sweep", "close")]
            lines.append(f"| {label} | " + " | ".join(cells) + f" | {med[k]['run_seconds']:.2f} |")
        lines += [
            "",
            f"Ray's overhead per trial: **{p1['overhead_per_trial']:.3f} s** (median of the rounds' own figures"
            f" {p1['overhead_per_trial_median_of_rounds']:.3f} s); target ≤ {p1['target_per_trial']} s:"
            f" {'met' if p1['target_met'] else 'missed'}. Same sweep.csv on both (except seconds): {p1['same_sweep_csv']}.",
            "",
        ]
    if p2:
        lines += ["## Part 2: TPE + pruning against the grid", ""]
        if not p2["run"]:
            lines += [f"Not run: {p2['reason']}.", ""]
        else:
            g, t = p2["grid"], p2["tpe"]
            lines += [
                "| search | trials | best val_loss | epochs trained | seconds |",
                "|---|---:|---:|---:|---:|",
                f"| grid | {g['trials']} | {g['best']:.4f} | {g['epochs']} | {g['seconds']:.1f} |",
                f"| TPE + median pruning | {t['trials']} ({p2['tpe_pruned']} pruned) | {t['best']:.4f} | {t['epochs']} | {t['seconds']:.1f} |",
                "",
                (f"TPE reached the grid's best ({p2['target']:.4f}) at trial {p2['tpe_trials_to_reach_grid_best']}"
                 if p2["tpe_trials_to_reach_grid_best"] else f"TPE did not reach the grid's best ({p2['target']:.4f}) within {t['trials']} trials")
                + f" (the grid needs its {g['trials']} trials to know its best); TPE's best within the grid's"
                f" {g['trials']} trials: {p2['tpe_best_within_grid_budget']:.4f}.",
                "",
            ]
    return "\n".join(lines)


def main(argv=None) -> int:
    args = _args(argv)
    info = machine_info()
    print(f"CPU: {info['cpu']}; {info['blas']}; load average {info['load_average']:.2f}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="nntrain-bench-sweep-"))
    try:
        p1 = part1(args, work) if args.part in ("1", "both") else None
        p2 = part2(args, work) if args.part in ("2", "both") else None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    info["load_average_end"] = os.getloadavg()[0]
    text = report(info, p1, p2)
    print(text)
    out = Path(args.out) if args.out else (Path(tempfile.mkdtemp()) / "sweep" if args.quick else RESULTS / "sweep")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(text + "\n")
    for part in (p1 or {}).get("seconds", {}).values():
        part.pop("rows", None)
    out.with_suffix(".json").write_text(json.dumps({"machine": info, "part1": p1, "part2": p2}, indent=2, default=str) + "\n")
    print(f"results: {out.with_suffix('.md')}, {out.with_suffix('.json')}")
    return 0 if (p1 is None or (p1["same_sweep_csv"])) else 1


if __name__ == "__main__":
    sys.exit(main())
