"""Seconds per training epoch: nntrain against a bare NumPy loop, PyTorch CPU and scikit-learn.

    pip install -e . torch scikit-learn threadpoolctl   # PyTorch CPU, scikit-learn: benchmark only
    python benchmarks/epoch.py         # about 2-3 minutes on 2 cores; --quick for a smoke run

The problem: MNIST-shaped synthetic data (60000 x 784 float32 in [0, 1), sparse "ink" images of
10 classes, see make_data; generated from a seed, nothing is downloaded), the network
784-256-relu-128-relu-10, softmax cross-entropy, SGD lr 0.01 momentum 0.9, float32 throughout,
at batch sizes 32, 128 and 512.

Contenders
- nntrain: `nntrain.api.fit` with a config (the code path of `nntrain fit` without the process
  start): the data is an .npz file that nntrain loads into memory, no validation split, no
  scaling, training metrics (loss, accuracy) per epoch, metrics.csv, and the default
  checkpointing (best.npz when train_loss improves and last.npz after every epoch, each written
  atomically with fsync; epoch-NNNN.npz every 10 epochs). The fit runs in a worker thread that
  the `on_epoch` hook parks at the end of every epoch, so the other contenders run in between
  it and the rest of nntrain's epoch loop stays untouched. An epoch's time is the wall time
  from the hook's release to the next `on_epoch`: shuffling, batches, metrics, the metrics.csv
  row and the checkpoint writes. (metrics.csv's own `seconds` column stops before the
  checkpoints; it is kept in the JSON as `csv_seconds`.) The fit's first epoch, which also
  includes the initial checkpoint, is the warm-up.
- nntrain +val: the same fit with a validation file of --val rows (default 10000, MNIST's test
  size) evaluated after every epoch, as `nntrain fit` does with a validation split; it trains
  exactly like nntrain (checked: the same final parameters), and the column "validation adds"
  is what the validation pass and its metrics cost on top of an epoch.
- bare NumPy: a hand-written loop in this file (below), as someone would write it for exactly
  this network: one gather of the shuffled rows per epoch, matmuls with `@`, in-place bias add,
  ReLU, softmax and momentum update, the running loss.
- PyTorch CPU: nn.Sequential of the same layers, F.cross_entropy, torch.optim.SGD, batches
  sliced from a tensor gathered with index_select once per epoch, torch.set_num_threads(threads).
- scikit-learn: MLPClassifier(hidden_layer_sizes=(256, 128), solver='sgd', momentum 0.9 (plain),
  alpha=0), one `partial_fit` per epoch (its own initial weights and shuffling); skipped if
  scikit-learn is not installed.

nntrain, bare NumPy and PyTorch start from the same weights (nntrain's He initialization,
copied) and visit the rows in the same order (each copies nntrain's training generator at the
start and draws the same permutation per epoch). After the timed epochs the final training
loss of each (over all training rows, with the final parameters) is compared with nntrain's,
relative tolerance LOSS_RTOL: a fast but wrong engine fails the run (exit status 1). Correct
float32 implementations differ only by rounding, which stays at 1e-6..1e-5 here over 8 epochs;
on data where SGD at these settings is chaotic they would drift apart whatever their correctness.

Fairness: OMP_NUM_THREADS, OPENBLAS_NUM_THREADS and MKL_NUM_THREADS are set to --threads before
numpy or torch is imported, and torch.set_num_threads(--threads). Rounds are interleaved and
rotated (A B C D, B C D A, C D A B, ...) after one warm-up epoch each, and each figure is the
median with min-max over the rounds. A float32 GEMM probe (best of several 2048^2 and
network-shaped products) at the start and the end reports the machine's state; efficiency at a
batch size is the FLOPs the network needs per epoch (per sample: forward 2 n_weights, weight
gradients 2 n_weights, input gradients 2 n_weights except for the first layer) over the
median epoch time, as a share of the larger probe.

Results: a Markdown table on stdout and in benchmarks/results/epoch.md, everything in
benchmarks/results/epoch.json (--quick writes to a temporary directory unless --out is given).
OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are not touched here; the results note them, the CPU model and
vector extensions (/proc/cpuinfo) and the BLAS kernels: numpy's as threadpoolctl reports it
(internal_api, version, architecture), torch's from torch.__config__ (its MKL is linked in, out of
threadpoolctl's sight); see benchmarks/machine.py.
"""

from __future__ import annotations

import argparse
import os
import sys

# Run as a script, this folder is sys.path[0], where benchmarks/profile.py would shadow the standard
# library's `profile` (which torch imports through cProfile): take the folder off the path.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]


def _args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=7, help="timed epochs per contender and batch size (default 7)")
    p.add_argument("--batches", default="32,128,512", help="batch sizes, comma-separated (default 32,128,512)")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="BLAS / OpenMP threads for all (default: OMP_NUM_THREADS or the CPU count)",
    )
    p.add_argument("--rows", type=int, default=60000, help="training rows (default 60000)")
    p.add_argument(
        "--quick", action="store_true", help="smoke run: 6000 rows, 2 rounds, results to a temporary directory"
    )
    p.add_argument("--only", default=None, help="contenders besides nntrain, comma-separated (val,bare,torch,sklearn)")
    p.add_argument(
        "--val", type=int, default=10000, help="validation rows of the 'nntrain +val' contender (default 10000)"
    )
    p.add_argument("--out", default=None, help="results path without suffix (default benchmarks/results/epoch)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.quick:
        args.rows = min(args.rows, 6000)
        args.val = min(args.val, 1000)
        args.rounds = min(args.rounds, 2)
    if args.threads is None:
        args.threads = int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1)
    return args


ARGS = _args() if __name__ == "__main__" else None
if ARGS is not None:  # before numpy / torch load their thread pools
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = str(ARGS.threads)

import copy
import datetime as dt
import json
import platform
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np


def _load(module: str):
    """benchmarks/<module>.py (shared with the other benchmarks), by path: this folder is off sys.path."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"nntrain_bench_{module}", Path(_HERE) / f"{module}.py")
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


_machine = _load("machine")
_parked = _load("parked_fit")

HIDDEN = (256, 128)
FEATURES, CLASSES = 784, 10
LR, MOMENTUM = 0.01, 0.9
RESULTS = Path(__file__).resolve().parent / "results"
LOSS_RTOL = 1e-3  # final training loss of bare / PyTorch vs nntrain, relative (float32, same weights and order)


# ---------------------------------------------------------------- data and machine


def make_data(rows: int, seed: int):
    """X: (rows, 784) float32 in [0, 1), y: (rows,) int64 in 0..9: MNIST-shaped sparse "ink" images.

    Each class has an ink-probability map (0.1 everywhere, 0.3 on a random 15 % of its pixels);
    a pixel is inked with its class's probability, with intensity uniform in [0.5, 1). The classes
    are separable but not trivially, and SGD at these settings converges smoothly on them, so two
    correct float32 implementations that start alike stay alike (a noisier problem makes SGD chaotic
    and the final-loss check meaningless).
    """
    rng = np.random.default_rng([seed, 784])
    y = rng.integers(0, CLASSES, rows)
    ink = np.float32(0.1) + np.float32(0.2) * (rng.random((CLASSES, FEATURES), dtype=np.float32) < 0.15)
    X = rng.random((rows, FEATURES), dtype=np.float32)
    inked = X < ink[y]
    rng.random((rows, FEATURES), dtype=np.float32, out=X)
    X *= np.float32(0.5)
    X += np.float32(0.5)
    X *= inked
    return X, y.astype(np.int64)


def network_flops(rows: int) -> float:
    """FLOPs of one epoch: forward, weight gradients, input gradients (none for the first layer)."""
    widths = (FEATURES, *HIDDEN, CLASSES)
    weights = [a * b for a, b in zip(widths, widths[1:])]
    per_sample = 2 * sum(weights) + 2 * sum(weights) + 2 * sum(weights[1:])
    return float(per_sample) * rows


def gemm_probe(repeats: int = 5) -> dict:
    """Best float32 GFLOP/s of a 2048^2 product and of the network's largest product at batch 512."""
    rng = np.random.default_rng(1)
    out = {}
    for name, (m, k, n) in {"2048x2048x2048": (2048, 2048, 2048), "512x784x256": (512, 784, 256)}.items():
        a = rng.random((m, k), dtype=np.float32)
        b = rng.random((k, n), dtype=np.float32)
        c = np.empty((m, n), dtype=np.float32)
        np.matmul(a, b, out=c)  # wake the thread pool
        reps = repeats if m == 2048 else repeats * 20
        best = float("inf")
        for _ in range(reps):
            t = time.perf_counter()
            np.matmul(a, b, out=c)
            best = min(best, time.perf_counter() - t)
        out[name] = 2.0 * m * k * n / best / 1e9
    out["peak"] = max(out.values())
    return out


def machine(threads: int) -> dict:
    info = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "cpu": _machine.cpu_model(),
        "cpu_flags": _machine.cpu_flags(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "threads": threads,
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
        "OPENBLAS_L2_SIZE": os.environ.get("OPENBLAS_L2_SIZE"),
    }
    # threadpoolctl's libraries (numpy's OpenBLAS with its kernel, OpenMP runtimes), each with the package that
    # ships it, and the BLAS linked into torch if it is imported (main() imports it first when it runs).
    info["blas"] = _machine.blas_info()
    try:
        import nntrain

        info["nntrain"] = nntrain.__version__
        root = Path(__file__).resolve().parents[1]
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, check=False
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "nntrain"], cwd=root, capture_output=True, text=True, check=False
        ).stdout
        info["git"] = sha + ("+dirty" if dirty.strip() else "")
    except Exception:  # noqa: BLE001 - informational only
        pass
    return info


# ---------------------------------------------------------------- contenders


class Start:
    """What nntrain/bare/PyTorch share: training rows, labels, initial weights, the shuffling generator."""

    def __init__(self, X, y, weights, biases, rng):
        self.X, self.y, self.weights, self.biases, self.rng = X, y, weights, biases, rng

    def generator(self) -> np.random.Generator:
        return copy.deepcopy(self.rng)


class Nntrain(_parked.ParkedFit):
    """nntrain.api.fit in a worker thread, parked by its on_epoch hook between epochs (benchmarks/parked_fit.py)."""

    name = "nntrain"

    def __init__(
        self, data_file: Path, batch: int, epochs: int, runs_root: Path, seed: int, val_file: Path | None = None
    ):
        from nntrain import config as cfg

        if val_file is None:  # all rows train, no validation
            data = {"dataset": str(data_file), "split": {"val": 0, "test": 0}, "scale": "none"}
        else:  # the same training rows, plus a validation file evaluated after every epoch
            data = {"train": str(data_file), "val": str(val_file), "scale": "none"}
        raw = {
            "name": f"epoch-bench-b{batch}{'-val' if val_file else ''}",
            "seed": seed,
            "dtype": "float32",
            "data": data,
            "model": {"layers": [{"linear": HIDDEN[0]}, "relu", {"linear": HIDDEN[1]}, "relu", {"linear": CLASSES}]},
            "loss": "cross_entropy",
            "optimizer": {"name": "sgd", "lr": LR, "momentum": MOMENTUM},
            "train": {"epochs": epochs, "batch_size": batch},
        }
        super().__init__(cfg.validate(raw), runs_root)
        self.raw = raw

    def start(self) -> Start:
        """Run the fit up to its first epoch; what the others need to start from the same point."""
        self.begin()
        net = self.exp.network
        linears = [layer for layer in net.layers if layer.name == "linear"]
        X, y, _ = self.exp.arrays("train")
        return Start(
            X,
            y,
            [layer.params["weight"].copy() for layer in linears],
            [layer.params["bias"].copy() for layer in linears],
            copy.deepcopy(self.exp.rngs["train"]),
        )

    def finish(self) -> float:
        """Let the fit end (summary, final evaluation); the final training loss."""
        self.end()
        return float(self.summary["final"]["train"]["loss"])

    def parameters(self):
        return [p.value for p in self.exp.network.params]


class Bare:
    """A hand-written NumPy loop for exactly this network."""

    name = "bare NumPy"

    def __init__(self, start: Start, batch: int):
        self.X, self.y, self.batch = start.X, start.y, batch
        self.W = [w.copy() for w in start.weights]
        self.b = [b.copy() for b in start.biases]
        self.vW = [np.zeros_like(w) for w in self.W]
        self.vb = [np.zeros_like(b) for b in self.b]
        self.rng = start.generator()
        self.Xs, self.ys = np.empty_like(self.X), np.empty_like(self.y)
        self.losses = []

    def epoch(self) -> float:
        t0 = time.perf_counter()
        X, y, B = self.Xs, self.ys, self.batch
        n = len(X)
        order = self.rng.permutation(n)
        np.take(self.X, order, axis=0, out=X)
        np.take(self.y, order, out=y)
        (W1, W2, W3), (b1, b2, b3) = self.W, self.b
        lr, mu = np.float32(LR), np.float32(MOMENTUM)
        total = 0.0
        for s in range(0, n, B):
            xb, yb = X[s : s + B], y[s : s + B]
            m = len(xb)
            rows = np.arange(m)
            h1 = xb @ W1
            h1 += b1
            np.maximum(h1, 0, out=h1)
            h2 = h1 @ W2
            h2 += b2
            np.maximum(h2, 0, out=h2)
            z = h2 @ W3
            z += b3
            z -= z.max(axis=1, keepdims=True)
            np.exp(z, out=z)
            z /= z.sum(axis=1, keepdims=True)
            total -= float(np.log(z[rows, yb]).sum())
            z[rows, yb] -= 1  # dL/dlogits = (softmax - onehot) / m
            z *= np.float32(1 / m)
            g = (h2.T @ z, z.sum(axis=0))
            d2 = z @ W3.T
            d2 *= h2 > 0
            g2 = (h1.T @ d2, d2.sum(axis=0))
            d1 = d2 @ W2.T
            d1 *= h1 > 0
            g1 = (xb.T @ d1, d1.sum(axis=0))
            for (gw, gb), W, b, vW, vb in zip((g1, g2, g), self.W, self.b, self.vW, self.vb):
                vW *= mu
                vW += gw
                W -= lr * vW
                vb *= mu
                vb += gb
                b -= lr * vb
        self.losses.append(total / n)
        return time.perf_counter() - t0

    def loss(self) -> float:
        """Mean cross-entropy of the current weights over all training rows."""
        total = 0.0
        for s in range(0, len(self.X), 4096):
            h = self.X[s : s + 4096]
            for i, (W, b) in enumerate(zip(self.W, self.b)):
                h = h @ W + b
                if i < 2:
                    h = np.maximum(h, 0)
            h = h - h.max(axis=1, keepdims=True)
            yb = self.y[s : s + 4096]
            total += float((np.log(np.exp(h).sum(axis=1)) - h[np.arange(len(h)), yb]).sum())
        return total / len(self.X)

    def parameters(self):
        return [a for pair in zip(self.W, self.b) for a in pair]


class Torch:
    """PyTorch CPU with the same weights and row order."""

    name = "PyTorch CPU"

    def __init__(self, start: Start, batch: int, threads: int):
        import torch
        import torch.nn.functional as F

        torch.set_num_threads(threads)
        self.torch, self.F = torch, F
        widths = (FEATURES, *HIDDEN, CLASSES)
        layers = []
        for i, (a, b) in enumerate(zip(widths, widths[1:])):
            linear = torch.nn.Linear(a, b)
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(start.weights[i].T.copy()))
                linear.bias.copy_(torch.from_numpy(start.biases[i]))
            layers += [linear, torch.nn.ReLU()] if i < 2 else [linear]
        self.model = torch.nn.Sequential(*layers)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=LR, momentum=MOMENTUM)
        self.X, self.y = torch.from_numpy(start.X), torch.from_numpy(start.y)
        self.Xs, self.ys = torch.empty_like(self.X), torch.empty_like(self.y)
        self.rng, self.batch = start.generator(), batch

    def epoch(self) -> float:
        torch, F = self.torch, self.F
        t0 = time.perf_counter()
        order = torch.from_numpy(self.rng.permutation(len(self.X)))
        torch.index_select(self.X, 0, order, out=self.Xs)
        torch.index_select(self.y, 0, order, out=self.ys)
        total = 0.0
        for s in range(0, len(self.Xs), self.batch):
            xb, yb = self.Xs[s : s + self.batch], self.ys[s : s + self.batch]
            self.opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(self.model(xb), yb)
            loss.backward()
            self.opt.step()
            total += loss.item() * len(xb)
        return time.perf_counter() - t0

    def loss(self) -> float:
        with self.torch.inference_mode():
            return float(self.F.cross_entropy(self.model(self.X), self.y, reduction="mean"))

    def parameters(self):
        out = []
        for m in self.model:
            if isinstance(m, self.torch.nn.Linear):
                out += [m.weight.detach().numpy().T, m.bias.detach().numpy()]
        return out


class Sklearn:
    """scikit-learn's MLPClassifier, one partial_fit per epoch (its own initialization and shuffling)."""

    name = "scikit-learn"

    def __init__(self, start: Start, batch: int, seed: int):
        from sklearn.neural_network import MLPClassifier

        self.model = MLPClassifier(
            hidden_layer_sizes=HIDDEN,
            activation="relu",
            solver="sgd",
            learning_rate_init=LR,
            momentum=MOMENTUM,
            nesterovs_momentum=False,
            alpha=0.0,
            batch_size=batch,
            shuffle=True,
            random_state=seed,
        )
        self.X, self.y = start.X, start.y
        self.classes = np.arange(CLASSES)

    def epoch(self) -> float:
        t0 = time.perf_counter()
        self.model.partial_fit(self.X, self.y, classes=self.classes)
        return time.perf_counter() - t0

    def loss(self) -> float:
        return float(self.model.loss_)


def available(name: str) -> str | None:
    """None if the contender can run, else why not."""
    module = {"torch": "torch", "sklearn": "sklearn"}.get(name)
    if module is None:
        return None
    try:
        __import__(module)
    except ImportError as e:
        return f"{module} not installed ({e})"
    return None


# ---------------------------------------------------------------- the run


def run_batch(batch: int, args, data_file: Path, val_file: Path | None, runs_root: Path, names: list[str]) -> dict:
    nn = Nntrain(data_file, batch, args.rounds + 1, runs_root, args.seed)
    start = nn.start()
    contenders = {"nntrain": nn}
    if val_file is not None:
        contenders["nntrain_val"] = Nntrain(data_file, batch, args.rounds + 1, runs_root, args.seed, val_file)
        contenders["nntrain_val"].start()
    if "bare" in names:
        contenders["bare"] = Bare(start, batch)
    if "torch" in names:
        contenders["torch"] = Torch(start, batch, args.threads)
    if "sklearn" in names:
        contenders["sklearn"] = Sklearn(start, batch, args.seed)
    keys = list(contenders)
    warmup = {k: contenders[k].epoch() for k in keys}
    times = {k: [] for k in keys}
    orders = []
    for r in range(args.rounds):
        order = keys[r % len(keys) :] + keys[: r % len(keys)]
        orders.append(order)
        for k in order:
            times[k].append(contenders[k].epoch())
        print(
            f"  batch {batch} round {r + 1}/{args.rounds}: " + "  ".join(f"{k} {times[k][-1]:.3f}s" for k in keys),
            flush=True,
        )
    losses = {}
    for k in keys:
        losses[k] = contenders[k].finish() if isinstance(contenders[k], Nntrain) else contenders[k].loss()
    params = {}
    for k in ("bare", "torch"):
        if k in contenders:
            diffs = [
                float(np.max(np.abs(a - b)) / (np.max(np.abs(b)) or 1.0))
                for a, b in zip(contenders[k].parameters(), nn.parameters())
            ]
            params[k] = max(diffs)
    checks = {}
    if "nntrain_val" in contenders:  # the same training; the validation pass must not change it
        same = all(np.array_equal(a, b) for a, b in zip(contenders["nntrain_val"].parameters(), nn.parameters()))
        checks["nntrain_val"] = {
            "loss": losses["nntrain_val"],
            "relative_difference": abs(losses["nntrain_val"] - losses["nntrain"]) / abs(losses["nntrain"]),
            "ok": same,
            "max_param_rel_diff": 0.0 if same else float("nan"),
        }
    for k in ("bare", "torch"):
        if k in losses:
            rel = abs(losses[k] - losses["nntrain"]) / abs(losses["nntrain"])
            checks[k] = {
                "loss": losses[k],
                "relative_difference": rel,
                "ok": rel <= LOSS_RTOL,
                "max_param_rel_diff": params[k],
            }
    result = {
        "batch": batch,
        "warmup_seconds": warmup,
        "seconds": times,
        "orders": orders,
        "median": {k: statistics.median(v) for k, v in times.items()},
        "min": {k: min(v) for k, v in times.items()},
        "max": {k: max(v) for k, v in times.items()},
        "final_train_loss": losses,
        "loss_check": checks,
        "csv_seconds": [float(row["seconds"]) for row in nn.rows[1:]],
        "validation_rows": args.val,
        "nntrain_train_accuracy": nn.rows[-1].get("train_accuracy"),
    }
    return result


def report(info: dict, probes: tuple[dict, dict], results: list[dict], args, names: list[str]) -> str:
    label = {
        "nntrain": "nntrain",
        "nntrain_val": f"nntrain +{args.val} val rows",
        "bare": "bare NumPy",
        "torch": "PyTorch CPU",
        "sklearn": "scikit-learn",
    }
    peak = max(probes[0]["peak"], probes[1]["peak"])
    blas_text = _machine.blas_text(info.get("blas"))
    flags = " ".join(info.get("cpu_flags") or []) or "not listed"
    lines = [
        "# nntrain epoch benchmark",
        "",
        f"CPU: {info['cpu']} ({info['cpus']} CPUs; vector extensions: {flags})",
        "",
        f"{info['date']} · {info['cpus']} CPUs · {info['platform']} · Python {info['python']}, "
        f"numpy {info['numpy']}, nntrain {info.get('nntrain', '?')} (git {info.get('git', '?')}) · "
        f"{args.threads} threads for all · load average {info['load_average']:.2f} at the start",
        "",
        f"BLAS: {blas_text}. OPENBLAS_CORETYPE={info['OPENBLAS_CORETYPE']}, OPENBLAS_L2_SIZE={info['OPENBLAS_L2_SIZE']}.",
        "",
        f"{args.rows} x {FEATURES} float32 rows (synthetic, seeded), network {FEATURES}-{HIDDEN[0]}-relu-{HIDDEN[1]}-relu-{CLASSES},"
        f" softmax cross-entropy, SGD lr {LR} momentum {MOMENTUM}. Seconds per epoch: median (min-max) of {args.rounds}"
        " interleaved rounds after one warm-up epoch each. nntrain runs through `nntrain.api.fit` with training metrics,"
        " metrics.csv and its default checkpoints (best.npz + last.npz every epoch, fsynced); its time is from one epoch's"
        " end to the next (the on_epoch hook), checkpoints included.",
        "",
        f"float32 GEMM probe: start {probes[0]['peak']:.0f} GFLOP/s "
        f"(2048^3 {probes[0]['2048x2048x2048']:.0f}, 512x784x256 {probes[0]['512x784x256']:.0f}), "
        f"end {probes[1]['peak']:.0f} GFLOP/s "
        f"(2048^3 {probes[1]['2048x2048x2048']:.0f}, 512x784x256 {probes[1]['512x784x256']:.0f}).",
        "",
    ]
    flops = network_flops(args.rows)
    cols = [k for k in ("nntrain", "nntrain_val", "bare", "torch", "sklearn") if k in names]
    head = "| batch | " + " | ".join(f"{label[k]} (s)" for k in cols)
    head += " | nntrain / bare | nntrain / PyTorch | nntrain GFLOP/s (share of peak) |"
    head += " validation adds |" if "nntrain_val" in names else ""
    head += " final loss nntrain / PyTorch |"
    lines += [head, "|" + "---:|" * (len(cols) + 5 + ("nntrain_val" in names))]
    for r in results:
        med = r["median"]
        cells = [f"{med[k]:.3f} ({r['min'][k]:.3f}-{r['max'][k]:.3f})" if k in med else "-" for k in cols]
        ratio_bare = f"{med['nntrain'] / med['bare']:.2f}" if "bare" in med else "-"
        ratio_torch = f"{med['nntrain'] / med['torch']:.2f}" if "torch" in med else "-"
        gflops = flops / med["nntrain"] / 1e9
        lt = r["final_train_loss"]
        check = r["loss_check"].get("torch")
        loss_cell = (
            f"{lt['nntrain']:.5f} / {lt['torch']:.5f} ({'ok' if check['ok'] else 'MISMATCH'})"
            if check
            else f"{lt['nntrain']:.5f}"
        )
        val_cell = f" {med['nntrain_val'] / med['nntrain'] - 1:+.1%} |" if "nntrain_val" in med else ""
        lines.append(
            f"| {r['batch']} | "
            + " | ".join(cells)
            + f" | {ratio_bare} | {ratio_torch} | {gflops:.0f} ({gflops / peak:.0%}) |"
            + val_cell
            + f" {loss_cell} |"
        )
    lines += [
        "",
        "Targets (issue 6): nntrain <= 0.75 x PyTorch at batch 128, <= 0.5 x at 32, <= 1.0 x at 512; <= 1.05 x bare"
        " NumPy; >= 65 % of the GEMM peak at batch 512.",
        "",
    ]
    for r in results:
        for k, c in r["loss_check"].items():
            if k == "nntrain_val":
                lines.append(
                    f"- batch {r['batch']}: nntrain with a validation file trained to exactly the same parameters:"
                    f" {'ok' if c['ok'] else 'MISMATCH'}"
                )
                continue
            lines.append(
                f"- batch {r['batch']}: final training loss {label[k]} {c['loss']:.6f} vs nntrain {r['final_train_loss']['nntrain']:.6f}"
                f" (relative difference {c['relative_difference']:.1e}, tolerance {LOSS_RTOL:g}; largest parameter difference"
                f" {c['max_param_rel_diff']:.1e} of the parameter's largest value): {'ok' if c['ok'] else 'MISMATCH'}"
            )
    lines.append(
        f"- FLOPs per epoch the network needs: {flops / 1e9:.1f} GFLOP ({flops / args.rows / 1e6:.3f} MFLOP per sample)"
    )
    if "sklearn" in names:
        lines.append(
            "- scikit-learn starts from its own weights and shuffles its own way: its time is comparable, its loss is not."
        )
    return "\n".join(lines) + "\n"


def main():
    args = ARGS
    wanted = [n.strip() for n in (args.only or "val,bare,torch,sklearn").split(",") if n.strip()]
    names = ["nntrain"]
    if "val" in wanted and args.val > 0:
        names.append("nntrain_val")
    for n in ("bare", "torch", "sklearn"):
        if n in wanted:
            why = available(n)
            if why:
                print(f"skipping {n}: {why}", file=sys.stderr)
            else:
                names.append(n)
    batches = [int(b) for b in args.batches.split(",")]
    if args.out:
        out = Path(args.out)
    elif args.quick:
        out = Path(tempfile.mkdtemp(prefix="nntrain-epoch-quick-")) / "epoch"
    else:
        out = RESULTS / "epoch"
    info = machine(args.threads)
    print(f"CPU: {info['cpu']}; BLAS: {_machine.blas_text(info['blas'])}", flush=True)
    print(
        f"threads {args.threads}, rows {args.rows}, rounds {args.rounds}, batches {batches}, contenders {names}",
        flush=True,
    )
    start_probe = gemm_probe()
    print(f"GEMM probe at the start: {start_probe['peak']:.0f} GFLOP/s", flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="nntrain-epoch-") as tmp:
        X, y = make_data(args.rows + args.val, args.seed)
        data_file = Path(tmp) / "mnist-shaped.npz"
        np.savez(data_file, X=X[: args.rows], y=y[: args.rows])
        val_file = None
        if "nntrain_val" in names:
            val_file = Path(tmp) / "mnist-shaped-val.npz"
            np.savez(val_file, X=X[args.rows :], y=y[args.rows :])
        del X, y
        for batch in batches:
            results.append(run_batch(batch, args, data_file, val_file, Path(tmp) / "runs", names))
    end_probe = gemm_probe()
    print(f"GEMM probe at the end: {end_probe['peak']:.0f} GFLOP/s", flush=True)
    info["load_average_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    text = report(info, (start_probe, end_probe), results, args, names)
    print()
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(text)
    payload = {
        "machine": info,
        "settings": {k: getattr(args, k) for k in ("rounds", "rows", "val", "threads", "quick", "seed")}
        | {"batches": batches},
        "network": {
            "widths": [FEATURES, *HIDDEN, CLASSES],
            "lr": LR,
            "momentum": MOMENTUM,
            "flops_per_epoch": network_flops(args.rows),
        },
        "gemm_probe": {"start": start_probe, "end": end_probe},
        "loss_rtol": LOSS_RTOL,
        "results": results,
    }
    out.with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.json')}")
    failed = [(r["batch"], k) for r in results for k, c in r["loss_check"].items() if not c["ok"]]
    if failed:
        print(f"LOSS MISMATCH: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
