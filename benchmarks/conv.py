"""Seconds per training epoch of convolutional networks: nntrain against PyTorch CPU, and nntrain's peak memory.

    pip install -e . torch threadpoolctl   # PyTorch CPU: benchmark only
    python benchmarks/conv.py              # about 5 minutes on 2 idle cores (busy rounds are repeated); results/conv.md, .json
    python benchmarks/conv.py --quick      # smoke run: 2000 rows, 2 rounds, results to a temporary directory
    python benchmarks/conv.py --only lenet --rows 60000 --rounds 5

The problem: MNIST-shaped synthetic images (rows x 1 x 28 x 28 float32 in [0, 1), 10 classes, see
make_images; generated from a seed, nothing is downloaded), softmax cross-entropy, SGD lr 0.01
momentum 0.9, batch 128, float32 throughout, two networks (NETWORKS):

- lenet: conv2d 6@5x5, relu, max_pool2d 2, conv2d 16@5x5, relu, max_pool2d 2, flatten,
  linear 120, relu, linear 84, relu, linear 10. Target: nntrain's epoch <= 1.0 x PyTorch's.
- keras (the Keras MNIST CNN example): conv2d 32@3x3, relu, conv2d 64@3x3, relu, max_pool2d 2,
  dropout 0.25, flatten, linear 128, relu, dropout 0.5, linear 10. Target: <= 1.25 x PyTorch.
  It needs about 50 times LeNet's arithmetic, so by default it trains on the first 20000 rows
  (--keras-rows); the ratio does not depend on the row count (an epoch is batches of 128).

Contenders
- nntrain: `nntrain.api.fit` with a config, as in benchmarks/epoch.py: the data is an .npz whose
  X has shape (rows, 1, 28, 28) (the fit's network must see samples of shape (1, 28, 28): checked),
  no validation split, no scaling, training metrics, metrics.csv and the default checkpoints
  (best.npz, last.npz, fsynced). The fit runs in a worker thread that its `on_epoch` hook parks
  between epochs; an epoch's time is from the hook's release to the next `on_epoch`, checkpoint
  writes included. The fit's first epoch is the warm-up.
- PyTorch CPU: nn.Sequential of the same layers (Conv2d, ReLU, MaxPool2d, Dropout, Flatten,
  Linear; NCHW, oneDNN as torch picks it), F.cross_entropy, torch.optim.SGD, batches sliced from
  a tensor gathered with index_select once per epoch, torch.set_num_threads(threads).
There is no bare-NumPy contender here (nobody hand-writes a CNN loop for a benchmark).

Both start from the same weights (nntrain's He initialization, copied: conv2d weights are
(out, in, kh, kw) in both, nntrain's linear weight is torch's weight.T) and visit the rows in the
same order (torch's loop copies nntrain's training generator and draws the same permutation per
epoch). Dropout masks are each library's own.

What is checked (a failure makes the exit status 1):
1. agreement: a separate short fit of each network with every dropout at p = 0 (so nothing
   random but the shared row order) on the first --check-rows rows (default 4096: 32 steps), one
   epoch for each contender from the same weights, and one more of PyTorch in float64 as the
   reference; nntrain's final training loss (all those rows, eval mode, the final parameters)
   must be within CHECK_RTOL = 1e-3 relative of the reference's, or within CHECK_FACTOR = 10
   times PyTorch float32's own distance from it, and the largest parameter differences are
   reported. This catches a wrong convolution, pooling or gradient; correct float32
   implementations differ by rounding, 1e-6..1e-5 after 32 steps, but where a network sits near
   a kink (a ReLU unit about to die, a tie in a pool) rounding alone can move a float32 loss by
   1e-3: the float64 reference tells that apart from a bug, as torch's float32 is then as far.
2. after the timed epochs, the final training losses (eval mode, so without dropout) must agree
   within LOSS_RTOL (lenet 0.1, keras 0.5) relative: loosely, because over several epochs of
   SGD with momentum float32 rounding differences grow (two correct implementations drift apart
   by a few per cent in loss on this problem) and keras's dropout masks differ.

Memory (lenet, unless --no-rss): one more LeNet fit of one epoch on the same .npz runs alone in a
child process (no torch there) and reads its own peak RSS, VmHWM in /proc/self/status (the
high-water mark of its own address space: unlike ru_maxrss it does not inherit this process's peak
through exec, see benchmarks/memory.py), and its RSS after the imports. Reported: peak RSS = data
(the .npz's size) + the rest; target: the rest <= 150 MB.

Fairness: OMP_NUM_THREADS, OPENBLAS_NUM_THREADS and MKL_NUM_THREADS are set to --threads before
numpy or torch is imported, and torch.set_num_threads(--threads). Rounds are interleaved and
rotated after one warm-up epoch each; each figure is the median with min-max over the rounds,
and the ratio also as the median of the per-round ratios. A shared machine: the CPU time other
processes take during each epoch is measured (/proc/stat's busy time minus this process's own,
class Others); before each round the script waits (up to --max-wait s) for a quiet second, and a
round during which others took more than --max-others (default 10 %) of the CPUs is repeated, up
to --max-retries times (the repeated rounds are kept in the JSON). With 2 threads on 2 cores, one
core taken by someone else makes an epoch 5-8 times slower, for both libraries but not alike. A float32 GEMM probe (2048^3 and the
im2col product of keras's second convolution at batch 128) at the start and the end reports the
machine's state; GFLOP/s are the convolutions' and linear layers' FLOPs (forward, weight
gradients, input gradients except for the first layer) over the median epoch.

Layer times (unless --no-layer-times): after the timed epochs, --layer-steps training steps of
nntrain's network at batch 128 with each layer's forward and backward (and the loss) timed
separately: where nntrain's time goes.

Results: a Markdown table on stdout and in benchmarks/results/conv.md, everything in
benchmarks/results/conv.json (--quick writes to a temporary directory unless --out is given),
with the CPU model and the BLAS kernels (benchmarks/machine.py).
"""

from __future__ import annotations

import argparse
import os
import sys

# Run as a script, this folder is sys.path[0], where benchmarks/profile.py would shadow the standard
# library's `profile` (which torch imports through cProfile): take the folder off the path.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

ROWS = {"lenet": 60000, "keras": 20000}  # default training rows per network


def _args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", default="lenet,keras", help="networks, comma-separated (lenet,keras; default both)")
    p.add_argument("--rounds", type=int, default=3, help="timed epochs per contender and network (default 3)")
    p.add_argument("--rows", type=int, default=None, help=f"training rows for every network (default {ROWS})")
    p.add_argument("--keras-rows", type=int, default=None, help="training rows for keras (default 20000, or --rows)")
    p.add_argument("--batch", type=int, default=128, help="batch size (default 128)")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="BLAS / OpenMP threads for all (default: OMP_NUM_THREADS or the CPU count)",
    )
    p.add_argument("--check-rows", type=int, default=4096, help="rows of the short agreement check (default 4096)")
    p.add_argument("--no-rss", action="store_true", help="skip the peak-RSS child of lenet")
    p.add_argument("--no-layer-times", action="store_true", help="skip timing nntrain's layers one by one")
    p.add_argument("--layer-steps", type=int, default=30, help="training steps of the layer timing (default 30)")
    p.add_argument(
        "--max-others",
        type=float,
        default=0.1,
        help="repeat a round during which other processes used more than this share of the CPUs (default 0.1)",
    )
    p.add_argument(
        "--max-retries", type=int, default=None, help="rounds repeated at most, per network (default 2 x rounds)"
    )
    p.add_argument(
        "--max-wait", type=float, default=60.0, help="seconds to wait for a quiet machine before a round (default 60)"
    )
    p.add_argument(
        "--quick", action="store_true", help="smoke run: 2000 rows, 2 rounds, results to a temporary directory"
    )
    p.add_argument("--out", default=None, help="results path without suffix (default benchmarks/results/conv)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rss-child", default=None, help=argparse.SUPPRESS)  # internal: DATA.npz of the memory child
    args = p.parse_args(argv)
    args.networks = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = sorted(set(args.networks) - set(ROWS))
    if unknown:
        p.error(f"--only: unknown networks {unknown} (choose from {sorted(ROWS)})")
    args.rows_for = {n: args.rows or ROWS[n] for n in ROWS}
    if args.keras_rows:
        args.rows_for["keras"] = args.keras_rows
    if args.quick:
        args.rows_for = {n: min(r, 2000) for n, r in args.rows_for.items()}
        args.rounds = min(args.rounds, 2)
        args.check_rows = min(args.check_rows, 1024)
        args.layer_steps = min(args.layer_steps, 10)
    if args.max_retries is None:
        args.max_retries = 2 * args.rounds
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
import math
import platform
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(_HERE).parent
if ROOT.as_posix() not in sys.path:
    sys.path.append(ROOT.as_posix())  # a checkout without `pip install -e .`: the installed nntrain still comes first


def _load(module: str):
    """benchmarks/<module>.py (shared with the other benchmarks), by path: this folder is off sys.path."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"nntrain_bench_{module}", Path(_HERE) / f"{module}.py")
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


_machine = _load("machine")
_parked = _load("parked_fit")

SHAPE = (1, 28, 28)
CLASSES = 10
LR, MOMENTUM = 0.01, 0.9
RESULTS = Path(_HERE) / "results"
CHECK_RTOL = 1e-3  # the short dropout-free agreement check: final training loss, relative
CHECK_FACTOR = 10.0  # ... or this many times PyTorch float32's own distance from the float64 reference
LOSS_RTOL = {"lenet": 0.1, "keras": 0.5}  # after the timed epochs (drift of SGD; keras: different dropout masks)
TARGETS = {"lenet": 1.0, "keras": 1.25}  # nntrain epoch / PyTorch epoch, at most
RSS_TARGET_MB = 150.0  # LeNet epoch: peak RSS minus the data's size, at most

NETWORKS = {
    "lenet": [
        ("conv2d", {"filters": 6, "kernel_size": 5}),
        ("relu", {}),
        ("max_pool2d", {"kernel_size": 2}),
        ("conv2d", {"filters": 16, "kernel_size": 5}),
        ("relu", {}),
        ("max_pool2d", {"kernel_size": 2}),
        ("flatten", {}),
        ("linear", {"units": 120}),
        ("relu", {}),
        ("linear", {"units": 84}),
        ("relu", {}),
        ("linear", {"units": CLASSES}),
    ],
    "keras": [
        ("conv2d", {"filters": 32, "kernel_size": 3}),
        ("relu", {}),
        ("conv2d", {"filters": 64, "kernel_size": 3}),
        ("relu", {}),
        ("max_pool2d", {"kernel_size": 2}),
        ("dropout", {"p": 0.25}),
        ("flatten", {}),
        ("linear", {"units": 128}),
        ("relu", {}),
        ("dropout", {"p": 0.5}),
        ("linear", {"units": CLASSES}),
    ],
}


def without_dropout(layers):
    """The same layers with every dropout at p = 0 (the agreement check: nothing random but the row order)."""
    return [(name, {**opts, "p": 0.0} if name == "dropout" else opts) for name, opts in layers]


def describe(layers) -> str:
    parts = []
    for name, o in layers:
        if name == "conv2d":
            parts.append(f"conv {o['filters']}@{o['kernel_size']}x{o['kernel_size']}")
        elif name == "max_pool2d":
            parts.append(f"maxpool {o['kernel_size']}")
        elif name == "linear":
            parts.append(f"linear {o['units']}")
        elif name == "dropout":
            parts.append(f"dropout {o['p']:g}")
        else:
            parts.append(name)
    return ", ".join(parts)


# ---------------------------------------------------------------- data and machine


def make_images(rows: int, seed: int):
    """X: (rows, 1, 28, 28) float32 in [0, 1), y: (rows,) int64 in 0..9: MNIST-shaped sparse "ink" images.

    Like epoch.py's make_data, with spatial structure for the convolutions to find: each class has
    an ink-probability map, 0.08 everywhere plus 0.2 on the top fifth of a smoothed random field
    over the central 24 x 24 pixels (blobs and strokes); each image shifts its class's map by up
    to 2 pixels either way on both axes and inks a pixel with that probability, with intensity
    uniform in [0.5, 1). Hard enough that the loss stays well above zero for several epochs
    (a near-zero loss is dominated by a few samples, and two correct float32 trainers drift apart
    on it), easy enough that LeNet learns it smoothly at these settings.
    """
    rng = np.random.default_rng([seed, 28, 28])
    y = rng.integers(0, CLASSES, rows)
    field = rng.standard_normal((CLASSES, 24, 24))
    box = np.ones(5) / 5
    for axis in (1, 2):
        field = np.apply_along_axis(lambda v: np.convolve(v, box, mode="same"), axis, field)
    top = np.quantile(field.reshape(CLASSES, -1), 0.8, axis=1)[:, None, None]
    padded = np.full((CLASSES, 32, 32), np.float32(0.08), np.float32)  # the 28 x 28 maps with 2 pixels to shift into
    padded[:, 4:28, 4:28] += np.float32(0.2) * (field > top)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (28, 28), axis=(1, 2))  # (10, 5, 5, 28, 28)
    shift = rng.integers(0, 5, (rows, 2))
    X = np.empty((rows, *SHAPE), np.float32)
    for s in range(0, rows, 4096):
        e = min(rows, s + 4096)
        p = windows[y[s:e], shift[s:e, 0], shift[s:e, 1]]  # (chunk, 28, 28): each image's shifted map
        ink = rng.random(p.shape, dtype=np.float32) < p
        value = rng.random(p.shape, dtype=np.float32)
        value *= np.float32(0.5)
        value += np.float32(0.5)
        value *= ink
        X[s:e, 0] = value
    return X, y.astype(np.int64)


def shapes(layers) -> list[tuple]:
    """(name, options, input shape, output shape) per layer, for one sample."""
    out, shape = [], SHAPE
    for name, o in layers:
        if name == "conv2d":
            k = o["kernel_size"]
            new = (o["filters"], shape[1] - k + 1, shape[2] - k + 1)
        elif name == "max_pool2d":
            k = o["kernel_size"]
            new = (shape[0], shape[1] // k, shape[2] // k)
        elif name == "flatten":
            new = (math.prod(shape),)
        elif name == "linear":
            new = (o["units"],)
        else:
            new = shape
        out.append((name, o, shape, new))
        shape = new
    return out


def network_flops(layers, rows: int) -> float:
    """FLOPs of one epoch in the convolutions and linear layers: forward, weight gradients, input gradients (not the first)."""
    per_sample, first = 0, True
    for name, o, shape_in, shape_out in shapes(layers):
        if name == "conv2d":
            forward = 2 * math.prod(shape_out) * shape_in[0] * o["kernel_size"] ** 2
        elif name == "linear":
            forward = 2 * shape_in[0] * o["units"]
        else:
            continue
        per_sample += forward * (2 if first else 3)
        first = False
    return float(per_sample) * rows


def gemm_probe(batch: int = 128, repeats: int = 5) -> dict:
    """Best float32 GFLOP/s of a 2048^2 product and of keras's second convolution as im2col at `batch` (64 x 288 x 24*24*batch)."""
    rng = np.random.default_rng(1)
    out = {}
    for name, (m, k, n) in {
        "2048x2048x2048": (2048, 2048, 2048),
        f"64x288x{576 * batch}": (64, 288, 576 * batch),
    }.items():
        a = rng.random((m, k), dtype=np.float32)
        b = rng.random((k, n), dtype=np.float32)
        c = np.empty((m, n), dtype=np.float32)
        np.matmul(a, b, out=c)  # wake the thread pool
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            np.matmul(a, b, out=c)
            best = min(best, time.perf_counter() - t)
        out[name] = 2.0 * m * k * n / best / 1e9
    out["peak"] = max(out.values())
    return out


def machine(threads: int) -> dict:
    info = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
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
        "blas": _machine.blas_info(),  # torch is imported by then: its BLAS is listed too
    }
    try:
        import torch

        info["torch"] = torch.__version__
        import nntrain

        info["nntrain"] = nntrain.__version__
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "nntrain"], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout
        info["git"] = sha + ("+dirty" if dirty.strip() else "")
        info["engine_sources_sha256"] = source_digest()
    except Exception as e:  # noqa: BLE001 - informational only
        info["versions_error"] = repr(e)
    return info


class Others:
    """CPU time that processes other than this one (and its children) used since the last reading, as a share of the machine.

    /proc/stat's busy ticks of all CPUs minus this process's own CPU time (os.times): on a shared
    machine the other work during a round is what its seconds mean least without.
    """

    def __init__(self):
        self.hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.last = self._read()

    def _read(self):
        try:
            fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        except (OSError, ValueError):
            return None
        busy = sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0)  # all but idle and iowait
        t = os.times()
        return busy / self.hz, t.user + t.system + t.children_user + t.children_system, time.monotonic()

    def share(self) -> float | None:
        now = self._read()
        then, self.last = self.last, now
        if now is None or then is None or now[2] <= then[2]:
            return None
        others = (now[0] - then[0]) - (now[1] - then[1])
        return max(0.0, others / ((now[2] - then[2]) * (os.cpu_count() or 1)))


def source_digest() -> str:
    """A short hash of nntrain's engine sources (layers included): which version of the layers was measured."""
    import hashlib

    h = hashlib.sha256()
    for f in sorted((ROOT / "nntrain" / "engine").rglob("*.py")):
        h.update(f.relative_to(ROOT).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:12]


# ---------------------------------------------------------------- contenders


class Start:
    """What nntrain and PyTorch share: training rows, labels, initial parameters, the shuffling generator."""

    def __init__(self, X, y, params, rng):
        self.X, self.y, self.params, self.rng = X, y, params, rng

    def generator(self) -> np.random.Generator:
        return copy.deepcopy(self.rng)


def nntrain_config(layers, data_file: Path, batch: int, epochs: int, seed: int, name: str) -> dict:
    return {
        "name": name,
        "seed": seed,
        "dtype": "float32",
        "data": {"dataset": str(data_file), "split": {"val": 0, "test": 0}, "scale": "none"},
        "model": {"layers": [n if not o else {n: dict(o)} for n, o in layers]},
        "loss": "cross_entropy",
        "optimizer": {"name": "sgd", "lr": LR, "momentum": MOMENTUM},
        "train": {"epochs": epochs, "batch_size": batch},
    }


class Nntrain(_parked.ParkedFit):
    """nntrain.api.fit in a worker thread, parked by its on_epoch hook between epochs (benchmarks/parked_fit.py)."""

    name = "nntrain"

    def __init__(self, layers, data_file: Path, batch: int, epochs: int, runs_root: Path, seed: int, name: str):
        from nntrain import config as cfg

        self.raw = nntrain_config(layers, data_file, batch, epochs, seed, name)
        super().__init__(cfg.validate(self.raw), runs_root)

    def start(self) -> Start:
        """Run the fit up to its first epoch; what PyTorch needs to start from the same point."""
        self.begin()
        net = self.exp.network
        if tuple(net.in_shape) != SHAPE:
            raise RuntimeError(f"nntrain's network sees samples of shape {tuple(net.in_shape)}, not {SHAPE}")
        X, y, _ = self.exp.arrays("train")
        params = [(layer.name, {k: v.copy() for k, v in layer.params.items()}) for layer in net.layers if layer.params]
        return Start(X, y, params, copy.deepcopy(self.exp.rngs["train"]))

    def finish(self) -> float:
        """End the fit after the epoch it is parked at; the final training loss (all training rows, eval mode).

        The fit may have epochs left (room for rounds repeated on a busy machine): the hooks'
        stop request ends it where a Ctrl-C after that epoch would, so the summary says
        "interrupted"; the loss is evaluated here, with the network's final parameters.
        """
        self.end(stop=True)
        return float(self.exp.evaluate_split("train")["loss"])

    def parameters(self) -> list[np.ndarray]:
        return [v for layer in self.exp.network.layers for v in layer.params.values()]


class Torch:
    """PyTorch CPU: the same layers, weights and row order."""

    name = "PyTorch CPU"

    def __init__(self, layers, start: Start, batch: int, threads: int, dtype: str = "float32"):
        import torch
        import torch.nn.functional as F
        from torch import nn

        torch.set_num_threads(threads)
        self.torch, self.F = torch, F
        modules, shape = [], (1, *SHAPE)
        with torch.no_grad():
            probe = torch.zeros(shape)
            for name, o in layers:
                if name == "conv2d":
                    m = nn.Conv2d(probe.shape[1], o["filters"], o["kernel_size"])
                elif name == "relu":
                    m = nn.ReLU()
                elif name == "max_pool2d":
                    m = nn.MaxPool2d(o["kernel_size"])
                elif name == "dropout":
                    m = nn.Dropout(o["p"])
                elif name == "flatten":
                    m = nn.Flatten()
                elif name == "linear":
                    m = nn.Linear(probe.shape[1], o["units"])
                else:
                    raise ValueError(f"no PyTorch counterpart for {name}")
                probe = m(probe)
                modules.append(m)
            self.model = nn.Sequential(*modules).to(getattr(torch, dtype))
            weighted = [m for m in self.model if isinstance(m, (nn.Conv2d, nn.Linear))]
            if len(weighted) != len(start.params):
                raise RuntimeError(f"{len(weighted)} torch layers with weights, nntrain has {len(start.params)}")
            for m, (name, p) in zip(weighted, start.params):
                w = p["weight"].T if name == "linear" else p["weight"]
                if tuple(m.weight.shape) != w.shape:
                    raise RuntimeError(f"{name}: torch weight {tuple(m.weight.shape)}, nntrain's {w.shape}")
                m.weight.copy_(torch.from_numpy(np.ascontiguousarray(w)))  # copy_ converts a dtype
                m.bias.copy_(torch.from_numpy(p["bias"]))
        self.weighted = weighted
        self.opt = torch.optim.SGD(self.model.parameters(), lr=LR, momentum=MOMENTUM)
        self.X = torch.from_numpy(np.ascontiguousarray(start.X, dtype=dtype).reshape(-1, *SHAPE))
        self.y = torch.from_numpy(start.y)
        self.Xs, self.ys = torch.empty_like(self.X), torch.empty_like(self.y)
        self.rng, self.batch = start.generator(), batch

    def epoch(self) -> float:
        torch, F = self.torch, self.F
        t0 = time.perf_counter()
        self.model.train()
        order = torch.from_numpy(self.rng.permutation(len(self.X)))
        torch.index_select(self.X, 0, order, out=self.Xs)
        torch.index_select(self.y, 0, order, out=self.ys)
        for s in range(0, len(self.Xs), self.batch):
            xb, yb = self.Xs[s : s + self.batch], self.ys[s : s + self.batch]
            self.opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(self.model(xb), yb)
            loss.backward()
            self.opt.step()
            loss.item()  # the running loss, as every training loop keeps (and nntrain's metrics do)
        return time.perf_counter() - t0

    def loss(self) -> float:
        """Mean cross-entropy over all training rows, eval mode, in batches of 1000."""
        self.model.eval()
        total = 0.0
        with self.torch.inference_mode():
            for s in range(0, len(self.X), 1000):
                z = self.model(self.X[s : s + 1000])
                total += float(self.F.cross_entropy(z, self.y[s : s + 1000], reduction="sum"))
        return total / len(self.X)

    def parameters(self) -> list[np.ndarray]:
        out = []
        for m in self.weighted:
            w = m.weight.detach().numpy()
            out += [w.T if isinstance(m, self.torch.nn.Linear) else w, m.bias.detach().numpy()]
        return out


def _pct(x: float | None) -> str:
    return "?" if x is None else f"{x:.0%}"


def param_diff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    """Largest |a - b| over each parameter, relative to the largest |b| of that parameter; the maximum."""
    return max(float(np.max(np.abs(x - y)) / (np.max(np.abs(y)) or 1.0)) for x, y in zip(a, b))


# ---------------------------------------------------------------- layer times


def layer_times(nn: Nntrain, steps: int, batch: int) -> list[dict]:
    """Seconds per training step in each layer's forward and backward (and the loss), over `steps` batches.

    The live network after the fit, with its array reuse on, as in the trainer's loop; the
    methods are wrapped on the instances and unwrapped after. The optimizer step is not included.
    """
    exp, net = nn.exp, nn.exp.network
    n = len(exp.splits["train"])
    times: dict[tuple[int, str], float] = {}

    def wrap(obj, attr, key):
        fn = getattr(obj, attr)

        def timed(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                times[key] = times.get(key, 0.0) + time.perf_counter() - t

        setattr(obj, attr, timed)

    parts = list(enumerate(net.chain)) + [(len(net.chain), net.loss)]
    for i, part in parts:
        wrap(part, "forward", (i, "forward"))
        wrap(part, "backward", (i, "backward"))
    net.reuse_arrays(True)
    rng = np.random.default_rng(0)
    try:
        for step in range(steps + 2):
            if step == 2:  # two warm-up steps (arrays allocated, caches warm)
                times.clear()
            X, _, t = exp.rows("train", rng.integers(0, n, batch))
            net.loss_and_grad(X, t)
    finally:
        net.reuse_arrays(False)
        for _, part in parts:
            for attr in ("forward", "backward"):
                part.__dict__.pop(attr, None)
    rows = []
    for i, part in parts:
        label = "loss (cross_entropy)" if part is net.loss else f"{i} {part.name}"
        if part is not net.loss and getattr(part, "filters", None):
            label += f" {part.filters}@{part.kernel[0]}x{part.kernel[1]}"
        elif part is not net.loss and getattr(part, "units", None):
            label += f" {part.units}"
        f, b = times.get((i, "forward"), 0.0) / steps, times.get((i, "backward"), 0.0) / steps
        rows.append({"layer": label, "forward_ms": 1e3 * f, "backward_ms": 1e3 * b})
    return rows


# ---------------------------------------------------------------- memory child


def rss_child(data_file: str, args) -> None:
    """One LeNet epoch through api.fit alone in this process; print its VmHWM and RSS after the imports, as JSON."""

    def status():
        out = {}
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                out[key] = int(value.split()[0])  # KiB
        return out

    from nntrain import api
    from nntrain import config as cfg
    from nntrain.train.trainer import Hooks

    after_imports = status()
    phases = {}
    hooks = Hooks(
        on_start=lambda run, exp, done: phases.setdefault("start_kib", status()),  # data loaded, network built
        on_epoch=lambda row: phases.setdefault("epoch_kib", status()),  # the epoch done, checkpoints written
    )
    with tempfile.TemporaryDirectory(prefix="nntrain-conv-rss-") as tmp:
        raw = nntrain_config(NETWORKS["lenet"], Path(data_file), args.batch, 1, args.seed, "conv-bench-rss")
        t0 = time.perf_counter()
        summary = api.fit(cfg.validate(raw), runs_root=Path(tmp), hooks=hooks)
        seconds = time.perf_counter() - t0
    end = status()
    print(
        json.dumps(
            {
                "after_imports_kib": after_imports,
                **phases,
                "end_kib": end,  # after the fit's final evaluation too
                "peak_rss_kib": phases["epoch_kib"]["VmHWM"],  # the high-water mark up to the end of the epoch
                "fit_peak_rss_kib": end["VmHWM"],
                "fit_seconds": seconds,
                "final_train_loss": summary["final"]["train"]["loss"],
            }
        )
    )


def measure_rss(data_file: Path, args) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--rss-child", str(data_file), "--threads", str(args.threads)]
    cmd += ["--batch", str(args.batch), "--seed", str(args.seed)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the memory child failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    m = json.loads(done.stdout.strip().splitlines()[-1])
    size = data_file.stat().st_size
    m["data_bytes"] = size
    m["over_data_mb"] = (m["peak_rss_kib"] * 1024 - size) / 1e6
    m["after_imports_mb"] = m["after_imports_kib"]["VmRSS"] * 1024 / 1e6
    m["start_hwm_mb"] = m["start_kib"]["VmHWM"] * 1024 / 1e6
    m["fit_over_data_mb"] = (m["fit_peak_rss_kib"] * 1024 - size) / 1e6
    m["target_mb"] = RSS_TARGET_MB
    m["ok"] = m["over_data_mb"] <= RSS_TARGET_MB
    return m


# ---------------------------------------------------------------- the run


def agreement(net: str, args, data_file: Path, runs_root: Path) -> dict:
    """The short check: one epoch of --check-rows rows, every dropout at p = 0, from the same weights:
    nntrain and PyTorch in float32, PyTorch in float64 as the reference."""
    layers = without_dropout(NETWORKS[net])
    nn = Nntrain(layers, data_file, args.batch, 1, runs_root, args.seed, f"conv-bench-{net}-check")
    start = nn.start()
    torch_side = Torch(layers, start, args.batch, args.threads)
    reference = Torch(layers, start, args.batch, args.threads, dtype="float64")
    torch_side.epoch()
    reference.epoch()
    nn.epoch()  # the fit's only epoch, then its end
    loss_nn = nn.finish()
    loss_torch, loss_ref = torch_side.loss(), reference.loss()
    rel, rel_torch = abs(loss_nn - loss_ref) / abs(loss_ref), abs(loss_torch - loss_ref) / abs(loss_ref)
    return {
        "rows": len(start.y),
        "steps": math.ceil(len(start.y) / args.batch),
        "loss_nntrain": loss_nn,
        "loss_torch": loss_torch,
        "loss_torch_float64": loss_ref,
        "relative_difference": rel,  # nntrain from the float64 reference
        "torch_relative_difference": rel_torch,  # PyTorch float32 from the same
        "nntrain_torch_relative_difference": abs(loss_nn - loss_torch) / abs(loss_torch),
        "tolerance": CHECK_RTOL,
        "factor": CHECK_FACTOR,
        "max_param_rel_diff": param_diff(reference.parameters(), nn.parameters()),
        "torch_max_param_rel_diff": param_diff(reference.parameters(), torch_side.parameters()),
        "ok": rel <= max(CHECK_RTOL, CHECK_FACTOR * rel_torch),
    }


def wait_quiet(meter: Others, limit: float, max_wait: float) -> float:
    """Wait (up to max_wait seconds) until other processes use at most `limit` of the CPUs over one second; the wait."""
    t0 = time.monotonic()
    meter.share()
    while time.monotonic() - t0 < max_wait:
        time.sleep(1.0)
        share = meter.share()
        if share is not None and share <= limit:
            break
    return time.monotonic() - t0


def run_network(net: str, args, data_file: Path, runs_root: Path) -> dict:
    layers = NETWORKS[net]
    epochs = 1 + args.rounds + args.max_retries  # the fit stops (finish) when enough rounds are done
    nn = Nntrain(layers, data_file, args.batch, epochs, runs_root, args.seed, f"conv-bench-{net}")
    start = nn.start()
    contenders = {"nntrain": nn, "torch": Torch(layers, start, args.batch, args.threads)}
    keys = list(contenders)
    warmup = {k: contenders[k].epoch() for k in keys}
    print(f"  {net} warm-up: " + "  ".join(f"{k} {warmup[k]:.2f}s" for k in keys), flush=True)
    times = {k: [] for k in keys}
    others = {k: [] for k in keys}
    orders, discarded, waited = [], [], 0.0
    meter = Others()
    while len(orders) < args.rounds:
        waited += wait_quiet(meter, args.max_others, args.max_wait)
        r = len(orders)
        order = keys[r % len(keys) :] + keys[: r % len(keys)]
        seconds, share = {}, {}
        for k in order:
            meter.share()
            seconds[k] = contenders[k].epoch()
            share[k] = meter.share()
        busy = max((v for v in share.values() if v is not None), default=0.0)
        text = "  ".join(f"{k} {seconds[k]:.2f}s" for k in keys)
        text += "  (other processes: " + ", ".join(f"{k} {_pct(share[k])}" for k in keys) + " of the CPUs)"
        if busy > args.max_others and len(discarded) < args.max_retries:
            discarded.append({"order": order, "seconds": seconds, "other_processes_cpu_share": share})
            print(f"  {net} round {r + 1}/{args.rounds} repeated, the machine was busy: {text}", flush=True)
            continue
        orders.append(order)
        for k in keys:
            times[k].append(seconds[k])
            others[k].append(share[k])
        print(f"  {net} round {r + 1}/{args.rounds}: {text}", flush=True)
    losses = {"nntrain": nn.finish(), "torch": contenders["torch"].loss()}
    rel = abs(losses["torch"] - losses["nntrain"]) / abs(losses["nntrain"])
    result = {
        "network": net,
        "layers": [[n, o] for n, o in layers],
        "rows": len(start.y),
        "batch": args.batch,
        "warmup_seconds": warmup,
        "seconds": times,
        "orders": orders,
        "other_processes_cpu_share": others,  # per epoch: CPU the machine's other processes used meanwhile
        "discarded_rounds": discarded,  # rounds repeated because other processes used more than --max-others
        "seconds_waited_for_quiet": waited,
        "median": {k: statistics.median(v) for k, v in times.items()},
        "min": {k: min(v) for k, v in times.items()},
        "max": {k: max(v) for k, v in times.items()},
        "ratio_of_medians": statistics.median(times["nntrain"]) / statistics.median(times["torch"]),
        "median_of_round_ratios": statistics.median(a / b for a, b in zip(times["nntrain"], times["torch"])),
        "target_ratio": TARGETS[net],
        "flops_per_epoch": network_flops(layers, len(start.y)),
        "final_train_loss": losses,
        "loss_check": {
            "relative_difference": rel,
            "tolerance": LOSS_RTOL[net],
            "ok": rel <= LOSS_RTOL[net],
            "max_param_rel_diff": param_diff(contenders["torch"].parameters(), nn.parameters()),
        },
        "csv_seconds": [
            float(row["seconds"]) for row in nn.rows[1:]
        ],  # every epoch after the warm-up, repeated rounds too
        "nntrain_train_accuracy": nn.rows[-1].get("train_accuracy"),
        "nntrain_in_shape": list(nn.exp.network.in_shape),
    }
    result["target_met"] = result["ratio_of_medians"] <= TARGETS[net]
    if not args.no_layer_times:
        wait_quiet(meter, args.max_others, args.max_wait)
        meter.share()
        result["layer_times"] = layer_times(nn, args.layer_steps, args.batch)
        result["layer_times_other_processes_cpu_share"] = meter.share()
    return result


def report_tail(info: dict, results: list[dict], args) -> list[str]:
    """The lines every side-by-side report ends with: the machine's load, the engine sources measured, and
    nntrain's per-layer times (rnn.py's report too)."""
    lines = []
    for r in results:
        o = [v for k in ("nntrain", "torch") for v in r["other_processes_cpu_share"][k] if v is not None]
        if o:
            lines.append(
                f"- {r['network']}: other processes on the machine used {statistics.median(o):.0%} of the CPUs (median over the"
                f" timed epochs; {min(o):.0%}-{max(o):.0%}); {len(r['discarded_rounds'])} rounds repeated because they used more"
                f" than {args.max_others:.0%}; {r['seconds_waited_for_quiet']:.0f} s waited for a quiet machine"
            )
    if info.get("other_processes_cpu_share") is not None:
        lines.append(f"- the whole run: other processes used {info['other_processes_cpu_share']:.0%} of the CPUs")
    if info.get("engine_sources_sha256"):
        lines.append(
            f"- nntrain/engine sources measured: sha256 {info['engine_sources_sha256']} (of the files' paths and contents)"
        )
    for r in results:
        if r.get("layer_times"):
            total = sum(t["forward_ms"] + t["backward_ms"] for t in r["layer_times"])
            lines += [
                "",
                (
                    f"nntrain's layers, {r['network']}, batch {args.batch}: milliseconds per training step over"
                    f" {args.layer_steps} steps (the optimizer step not included; total {total:.1f} ms; other processes used"
                    f" {_pct(r.get('layer_times_other_processes_cpu_share'))} of the CPUs meanwhile)"
                ),
                "",
                "| layer | forward (ms) | backward (ms) | share |",
                "|---|---:|---:|---:|",
            ]
            for t in r["layer_times"]:
                both = t["forward_ms"] + t["backward_ms"]
                lines.append(f"| {t['layer']} | {t['forward_ms']:.2f} | {t['backward_ms']:.2f} | {both / total:.0%} |")
    return lines


def report(info: dict, probes: tuple[dict, dict], results: list[dict], checks: dict, rss: dict | None, args) -> str:
    peak = max(probes[0]["peak"], probes[1]["peak"])
    flags = " ".join(info.get("cpu_flags") or []) or "not listed"
    names = list(probes[0])[:2]
    lines = [
        "# nntrain convolution benchmark",
        "",
        f"CPU: {info['cpu']} ({info['cpus']} CPUs; vector extensions: {flags})",
        "",
        (
            f"{info['date']} · {info['platform']} · Python {info['python']}, numpy {info['numpy']}, torch"
            f" {info.get('torch', '?')}, nntrain {info.get('nntrain', '?')} (git {info.get('git', '?')}) ·"
            f" {args.threads} threads for all · load average {info['load_average']:.2f} at the start,"
            f" {info.get('load_average_end', float('nan')):.2f} at the end"
        ),
        "",
        (
            f"BLAS: {_machine.blas_text(info.get('blas'))}. OPENBLAS_CORETYPE={info['OPENBLAS_CORETYPE']},"
            f" OPENBLAS_L2_SIZE={info['OPENBLAS_L2_SIZE']}."
        ),
        "",
        (
            f"MNIST-shaped synthetic images (rows x 1 x 28 x 28 float32, seeded), softmax cross-entropy, SGD lr {LR}"
            f" momentum {MOMENTUM}, batch {args.batch}. Seconds per epoch: median (min-max) of {args.rounds} interleaved"
            " rounds after one warm-up epoch each. nntrain runs through `nntrain.api.fit` on an .npz of (rows, 1, 28, 28)"
            " with training metrics, metrics.csv and its default checkpoints; its time is from one epoch's end to the"
            " next (the on_epoch hook), checkpoints included. PyTorch CPU: nn.Sequential of the same layers, same initial"
            " weights and row order."
        ),
        "",
        (
            f"float32 GEMM probe: start {probes[0]['peak']:.0f} GFLOP/s ({names[0]} {probes[0][names[0]]:.0f},"
            f" {names[1]} {probes[0][names[1]]:.0f}), end {probes[1]['peak']:.0f} GFLOP/s ({names[0]}"
            f" {probes[1][names[0]]:.0f}, {names[1]} {probes[1][names[1]]:.0f})."
        ),
        "",
        (
            "| network | rows | nntrain (s) | PyTorch CPU (s) | nntrain / PyTorch (median of rounds) | target |"
            " nntrain GFLOP/s (share of peak) | PyTorch GFLOP/s | final loss nntrain / PyTorch | nntrain train acc. |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        med, lo, hi = r["median"], r["min"], r["max"]
        cells = [f"{med[k]:.2f} ({lo[k]:.2f}-{hi[k]:.2f})" for k in ("nntrain", "torch")]
        g_nn = r["flops_per_epoch"] / med["nntrain"] / 1e9
        g_t = r["flops_per_epoch"] / med["torch"] / 1e9
        lt = r["final_train_loss"]
        acc = r.get("nntrain_train_accuracy")
        lines.append(
            f"| {r['network']} | {r['rows']} | {cells[0]} | {cells[1]} | {r['ratio_of_medians']:.2f}"
            f" ({r['median_of_round_ratios']:.2f}) | <= {r['target_ratio']:g}: {'met' if r['target_met'] else 'NOT met'} |"
            f" {g_nn:.0f} ({g_nn / peak:.0%}) | {g_t:.0f} | {lt['nntrain']:.4f} / {lt['torch']:.4f}"
            f" ({'ok' if r['loss_check']['ok'] else 'MISMATCH'}) | {f'{acc:.3f}' if acc is not None else '-'} |"
        )
    lines.append("")
    for r in results:
        lines.append(
            f"- {r['network']}: {describe(NETWORKS[r['network']])}; {r['flops_per_epoch'] / 1e9:.1f} GFLOP per"
            f" epoch ({r['flops_per_epoch'] / r['rows'] / 1e6:.2f} MFLOP per sample); nntrain's network saw"
            f" samples of shape {tuple(r['nntrain_in_shape'])}"
        )
    for net, c in checks.items():
        lines.append(
            f"- agreement check, {net} with every dropout at p = 0, {c['rows']} rows ({c['steps']} steps), same weights"
            f" and order: final training loss PyTorch float64 {c['loss_torch_float64']:.6f}, nntrain"
            f" {c['loss_nntrain']:.6f} (relative difference {c['relative_difference']:.1e}), PyTorch float32"
            f" {c['loss_torch']:.6f} ({c['torch_relative_difference']:.1e}); tolerance {c['tolerance']:g} or"
            f" {c['factor']:g} x PyTorch float32's; largest parameter difference from float64 {c['max_param_rel_diff']:.1e}"
            f" (PyTorch float32: {c['torch_max_param_rel_diff']:.1e}) of the parameter's largest value:"
            f" {'ok' if c['ok'] else 'MISMATCH'}"
        )
    for r in results:
        c = r["loss_check"]
        why = "float32 drift over the epochs" + (", different dropout masks" if r["network"] == "keras" else "")
        lines.append(
            f"- {r['network']} after {args.rounds + 1} epochs: final training loss relative difference"
            f" {c['relative_difference']:.1e} (loose tolerance {c['tolerance']:g}: {why}; largest parameter difference"
            f" {c['max_param_rel_diff']:.1e}): {'ok' if c['ok'] else 'MISMATCH'}"
        )
    if rss is not None:
        lines.append(
            f"- memory, one LeNet epoch of nntrain alone in a child process ({rss['rows']} rows, batch {args.batch}): peak"
            f" RSS (VmHWM) up to the end of the epoch {rss['peak_rss_kib'] / 1024:.0f} MiB = the data"
            f" ({rss['data_bytes'] / 1e6:.1f} MB .npz) + {rss['over_data_mb']:.1f} MB (target: + {rss['target_mb']:g} MB at"
            f" most: {'met' if rss['ok'] else 'NOT met'}); RSS after `import nntrain.api` {rss['after_imports_mb']:.0f} MB,"
            f" peak when training starts (data loaded, network built) {rss['start_hwm_mb']:.0f} MB; the whole fit, with"
            f" its final evaluation of the training rows, peaks at {rss['fit_peak_rss_kib'] / 1024:.0f} MiB = the data +"
            f" {rss['fit_over_data_mb']:.1f} MB; the fit took {rss['fit_seconds']:.1f} s"
        )
    lines += report_tail(info, results, args)
    return "\n".join(lines) + "\n"


def main():
    args = ARGS
    if args.rss_child:
        rss_child(args.rss_child, args)
        return 0
    try:
        import torch  # noqa: F401 - the other contender; its BLAS goes into the machine info
    except ImportError as e:
        print(
            f"conv.py compares against PyTorch CPU, which is not importable ({e}): pip install torch", file=sys.stderr
        )
        return 2
    if args.out:
        out = Path(args.out)
    elif args.quick:
        out = Path(tempfile.mkdtemp(prefix="nntrain-conv-quick-")) / "conv"
    else:
        out = RESULTS / "conv"
    whole = Others()
    info = machine(args.threads)
    print(f"CPU: {info['cpu']}; BLAS: {_machine.blas_text(info['blas'])}", flush=True)
    print(
        f"threads {args.threads}, networks {args.networks}, rows { {n: args.rows_for[n] for n in args.networks} },"
        f" rounds {args.rounds}, batch {args.batch}",
        flush=True,
    )
    wait_quiet(Others(), args.max_others, args.max_wait)
    start_probe = gemm_probe(args.batch)
    print(f"GEMM probe at the start: {start_probe['peak']:.0f} GFLOP/s", flush=True)
    results, checks, rss = [], {}, None
    with tempfile.TemporaryDirectory(prefix="nntrain-conv-") as tmp:
        most = max(max(args.rows_for[n] for n in args.networks), args.check_rows)
        X, y = make_images(most, args.seed)
        files = {}
        for n in sorted({args.rows_for[k] for k in args.networks} | {args.check_rows}):
            files[n] = Path(tmp) / f"images-{n}.npz"
            np.savez(files[n], X=X[:n], y=y[:n])
        del X, y
        for net in args.networks:
            print(f"{net}: agreement check ({args.check_rows} rows, dropout p = 0)", flush=True)
            checks[net] = agreement(net, args, files[args.check_rows], Path(tmp) / "runs")
            c = checks[net]
            print(
                f"  relative loss difference from PyTorch float64: nntrain {c['relative_difference']:.1e}, PyTorch"
                f" float32 {c['torch_relative_difference']:.1e}: {'ok' if c['ok'] else 'MISMATCH'}",
                flush=True,
            )
            print(f"{net}: {args.rows_for[net]} rows", flush=True)
            results.append(run_network(net, args, files[args.rows_for[net]], Path(tmp) / "runs"))
        if "lenet" in args.networks and not args.no_rss:
            print("lenet: peak RSS of one nntrain epoch in a child process", flush=True)
            rss = measure_rss(files[args.rows_for["lenet"]], args) | {"rows": args.rows_for["lenet"]}
    wait_quiet(Others(), args.max_others, args.max_wait)
    end_probe = gemm_probe(args.batch)
    print(f"GEMM probe at the end: {end_probe['peak']:.0f} GFLOP/s", flush=True)
    info["load_average_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    info["other_processes_cpu_share"] = whole.share()
    text = report(info, (start_probe, end_probe), results, checks, rss, args)
    print()
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(text)
    payload = {
        "machine": info,
        "command": sys.argv,
        "settings": {
            k: getattr(args, k) for k in ("rounds", "batch", "threads", "quick", "seed", "check_rows", "layer_steps")
        }
        | {"rows": {n: args.rows_for[n] for n in args.networks}, "lr": LR, "momentum": MOMENTUM},
        "targets": {"epoch_ratio": TARGETS, "rss_over_data_mb": RSS_TARGET_MB},
        "gemm_probe": {"start": start_probe, "end": end_probe},
        "agreement_checks": checks,
        "results": results,
        "memory": rss,
    }
    out.with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.json')}")
    failed = [f"{n} (agreement check)" for n, c in checks.items() if not c["ok"]]
    failed += [f"{r['network']} (final loss)" for r in results if not r["loss_check"]["ok"]]
    if failed:
        print(f"LOSS MISMATCH: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
