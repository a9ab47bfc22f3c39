"""Where an nntrain epoch's time goes: data batching, forward and backward per layer, loss,
optimizer update, metrics, evaluation, metrics.csv and checkpoint writing.

    python benchmarks/profile.py                  # batch 128, 10000 validation rows
    python benchmarks/profile.py --batch 32 --val 0

The setup is benchmarks/epoch.py's: MNIST-shaped synthetic data (60000 x 784 float32),
784-256-relu-128-relu-10, softmax cross-entropy, SGD lr 0.01 momentum 0.9, float32, trained
through `nntrain.api.fit` with the default checkpointing; --val adds a validation file of that
many rows (evaluated after every epoch, as `nntrain fit` does with a validation split).

The fit runs --epochs epochs (default 3). The first is a warm-up; the second is timed plainly
(from one epoch's end to the next, as benchmarks/epoch.py does); during the third every phase
is timed by wrappers installed on the live objects (the layers' forward / backward, the loss,
the optimizer, the metrics accumulator, the trainer's batch source, evaluation, the metrics
log and checkpoint saving). Each phase's time is its own, without the phases it calls (a
stack of timers), so the rows add up to the profiled epoch; "loop and hooks" is what is left
(the trainer's own Python, finiteness checks, hooks). Wrapping costs about a microsecond per
call, which the difference between the plain and the profiled epoch shows.
"""

from __future__ import annotations

import argparse
import os
import sys

# Run as a script, this folder is sys.path[0], and this file would stand in for the standard
# library's `profile` module for anything that imports it: take the folder off the path.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]


def _args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--val", type=int, default=10000, help="validation rows (0: none)")
    p.add_argument("--rows", type=int, default=60000)
    p.add_argument("--epochs", type=int, default=3, help="epochs of the fit (>= 3): warm-up, plain, ..., profiled")
    p.add_argument(
        "--threads", type=int, default=None, help="BLAS / OpenMP threads (default: OMP_NUM_THREADS or the CPU count)"
    )
    p.add_argument("--json", default=None, help="also write the table as JSON to this file")
    args = p.parse_args(argv)
    if args.threads is None:
        args.threads = int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1)
    args.epochs = max(3, args.epochs)
    return args


ARGS = _args() if __name__ == "__main__" else None
if ARGS is not None:
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = str(ARGS.threads)

import functools
import importlib.util
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def _load_epoch_module():
    """benchmarks/epoch.py (the shared setup), loaded by path: this folder is not a package."""
    spec = importlib.util.spec_from_file_location("nntrain_bench_epoch", Path(_HERE) / "epoch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_epoch = _load_epoch_module()
CLASSES, HIDDEN, LR, MOMENTUM, make_data = _epoch.CLASSES, _epoch.HIDDEN, _epoch.LR, _epoch.MOMENTUM, _epoch.make_data


class Timers:
    """Exclusive timers: time spent in a wrapped call, minus the wrapped calls it makes."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.order: list[str] = []
        self.stack: list[list] = []  # [name, start, time of children]
        self.active = False

    def wrap(self, name: str, fn):
        if name not in self.seconds:
            self.seconds[name], self.calls[name] = 0.0, 0
            self.order.append(name)

        @functools.wraps(fn)
        def timed(*args, **kwargs):
            if not self.active:
                return fn(*args, **kwargs)
            frame = [name, time.perf_counter(), 0.0]
            self.stack.append(frame)
            try:
                return fn(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - frame[1]
                self.stack.pop()
                self.seconds[name] += elapsed - frame[2]
                self.calls[name] += 1
                if self.stack:
                    self.stack[-1][2] += elapsed

        return timed


def describe(layer, width_in: int) -> tuple[str, int]:
    if layer.name == "linear":
        return f"linear {width_in}->{layer.units}", layer.units
    return layer.name, width_in


def instrument(exp, trainer, timers: Timers) -> None:
    """Install timing wrappers on the experiment's live objects and the trainer."""
    from nntrain.train import checkpoint, rundir

    net = exp.network
    width = net.in_features
    for i, layer in enumerate(net.chain):
        label, width = describe(layer, width)
        layer.forward = timers.wrap(f"forward   L{i} {label}", layer.forward)
        layer.backward = timers.wrap(f"backward  L{i} {label}", layer.backward)
    net.loss.forward = timers.wrap(
        f"loss forward ({net.loss.name}{', fused softmax' if net.fused else ''})", net.loss.forward
    )
    net.loss.backward = timers.wrap("loss backward", net.loss.backward)
    exp.optimizer.step = timers.wrap(f"optimizer step ({exp.optimizer.name})", exp.optimizer.step)

    make_metrics = exp.metrics

    def metrics():
        m = make_metrics()
        m.add = timers.wrap("training metrics (Metrics.add)", m.add)
        return m

    exp.metrics = metrics
    # Evaluation: everything inside it (forward passes, its own metrics) counts as evaluation.
    evaluate_split = exp.evaluate_split

    def evaluation(*args, **kwargs):
        was, timers.active = timers.active, False
        start = time.perf_counter()
        try:
            return evaluate_split(*args, **kwargs)
        finally:
            timers.active = was
            if was:
                _add(timers, "evaluation (validation split)", time.perf_counter() - start)

    exp.evaluate_split = evaluation
    # Data batching: the permutation of the epoch, then each batch's rows.
    trainer.epoch_order = timers.wrap("data batching (shuffle order)", trainer.epoch_order)
    train_epoch = trainer._train_epoch

    def train_epoch_timed(batch_rows, n):
        return train_epoch(timers.wrap("data batching (gather batches)", batch_rows), n)

    trainer._train_epoch = train_epoch_timed
    checkpoint.save = timers.wrap("checkpoint writing (checkpoint.save)", checkpoint.save)
    rundir.MetricsLog.write = timers.wrap("metrics.csv row", rundir.MetricsLog.write)


def _add(timers: Timers, name: str, seconds: float) -> None:
    if name not in timers.seconds:
        timers.seconds[name], timers.calls[name] = 0.0, 0
        timers.order.append(name)
    timers.seconds[name] += seconds
    timers.calls[name] += 1
    if timers.stack:
        timers.stack[-1][2] += seconds


def main():
    args = ARGS
    from nntrain import config as cfg
    from nntrain.train import trainer as trainer_module
    from nntrain.train.trainer import Hooks

    timers = Timers()
    marks = []  # perf_counter at each on_epoch
    state = {}

    def on_start(run, exp, epochs_done):
        marks.append(time.perf_counter())
        state["exp"] = exp

    def on_epoch(row):
        now = time.perf_counter()
        marks.append(now)
        epoch = row["epoch"]
        if epoch == args.epochs - 1:  # the next (last) epoch is profiled
            timers.active = True
        else:
            timers.active = False
        state.setdefault("rows", []).append(row)
        marks[-1] = time.perf_counter()  # the hook's own work is not part of the next epoch

    # The trainer object is created inside api.fit: catch it when it is built.
    original_init = trainer_module.Trainer.__init__

    def init(self, exp, run, hooks=None):
        original_init(self, exp, run, hooks)
        instrument(exp, self, timers)

    trainer_module.Trainer.__init__ = init

    with tempfile.TemporaryDirectory(prefix="nntrain-profile-") as tmp:
        X, y = make_data(args.rows + args.val, 0)
        data = {"train": str(Path(tmp) / "train.npz")}
        np.savez(data["train"], X=X[: args.rows], y=y[: args.rows])
        if args.val:
            data["val"] = str(Path(tmp) / "val.npz")
            np.savez(data["val"], X=X[args.rows :], y=y[args.rows :])
        del X, y
        raw = {
            "name": "profile",
            "seed": 0,
            "dtype": "float32",
            "data": {**data, "split": {"val": 0}, "scale": "none"} if not args.val else {**data, "scale": "none"},
            "model": {"layers": [{"linear": HIDDEN[0]}, "relu", {"linear": HIDDEN[1]}, "relu", {"linear": CLASSES}]},
            "loss": "cross_entropy",
            "optimizer": {"name": "sgd", "lr": LR, "momentum": MOMENTUM},
            "train": {"epochs": args.epochs, "batch_size": args.batch},
        }
        from nntrain import api

        api.fit(cfg.validate(raw), runs_root=Path(tmp) / "runs", hooks=Hooks(on_start=on_start, on_epoch=on_epoch))
    epochs = np.diff(marks)
    plain, profiled = float(epochs[-2]), float(epochs[-1])
    accounted = sum(timers.seconds.values())
    rows = [(name, timers.seconds[name], timers.calls[name]) for name in timers.order]
    rows.append(("loop and hooks (the rest)", profiled - accounted, None))
    print(
        f"nntrain, batch {args.batch}, {args.rows} training rows,"
        f" {args.val} validation rows, {args.threads} threads, numpy {np.__version__}"
    )
    print(
        f"plain epoch {plain:.3f} s; profiled epoch {profiled:.3f} s (wrapping adds about {profiled - plain:+.3f} s)\n"
    )
    print(f"| {'phase':<44} | {'seconds':>8} | {'share':>6} | {'calls':>6} | {'us/call':>8} |")
    print(f"|{'-' * 46}|{'-' * 9}:|{'-' * 7}:|{'-' * 7}:|{'-' * 9}:|")
    for name, seconds, calls in rows:
        per = f"{seconds / calls * 1e6:8.1f}" if calls else f"{'':>8}"
        print(
            f"| {name:<44} | {seconds:8.4f} | {seconds / profiled:6.1%} | {calls if calls is not None else '':>6} | {per} |"
        )
    print(f"| {'epoch (profiled)':<44} | {profiled:8.4f} | {1:6.1%} | {'':>6} | {'':>8} |")
    groups = {
        "forward (all layers)": [r for r in rows if r[0].startswith("forward")],
        "backward (all layers)": [r for r in rows if r[0].startswith("backward")],
        "loss forward + backward": [r for r in rows if r[0].startswith("loss")],
    }
    print()
    for name, members in groups.items():
        total = sum(r[1] for r in members)
        print(f"{name}: {total:.4f} s ({total / profiled:.1%})")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "batch": args.batch,
                    "rows": args.rows,
                    "val": args.val,
                    "threads": args.threads,
                    "plain_epoch": plain,
                    "profiled_epoch": profiled,
                    "phases": [{"phase": n, "seconds": s, "calls": c} for n, s, c in rows],
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
