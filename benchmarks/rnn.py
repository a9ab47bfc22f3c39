"""Seconds per training epoch of recurrent networks (LSTM, GRU, vanilla RNN): nntrain against PyTorch CPU.

    pip install -e . torch threadpoolctl   # PyTorch CPU: benchmark only
    python benchmarks/rnn.py               # about 3 minutes on 2 idle cores (busy rounds are repeated); results/rnn.md, .json
    python benchmarks/rnn.py --quick       # smoke run (under a minute): 2048 rows, 2 rounds, to a temporary directory
    python benchmarks/rnn.py --only lstm --rows 16384 --rounds 9

The problem: many-to-one classification of synthetic sequences (rows x 50 steps x 32 features
float32, 10 classes, see make_sequences; generated from a seed, nothing is downloaded): one
recurrent layer of 128 units whose last hidden state goes to a linear layer of 10 units, softmax
cross-entropy, Adam lr 1e-3 (torch's defaults otherwise), batch 64, float32 throughout. Three
networks (NETWORKS): lstm (target: nntrain's epoch <= 1.25 x PyTorch's), gru and rnn (tanh),
whose 1.25 is shown as information only.

This is benchmarks/conv.py for sequences, and reuses its pieces (loaded by path): the machine
description, the quiet-machine meter (Others, wait_quiet), the parked fit, the epoch loop and the
loss of its PyTorch contender, layer_times. What differs is here.

Contenders
- nntrain: `nntrain.api.fit` with a config `[{lstm: {units: 128, output: last}}, {linear: 10}]`
  on an .npz whose X is (rows, 50, 32): nntrain reads samples (1, 50, 32), which its recurrent
  first layer sees as the sequence (50, 32) (checked), no validation split, no scaling (the
  features are N(0, 1) already), training metrics, metrics.csv and the default checkpoints. The
  fit runs in a worker thread parked by its hooks between epochs (benchmarks/parked_fit.py); an
  epoch is from the hook's release to the next on_epoch, checkpoints included. Its first epoch is
  the warm-up.
- PyTorch CPU: nn.LSTM / nn.GRU / nn.RNN (batch_first=True, one layer) whose h_n[-1] goes to
  nn.Linear, F.cross_entropy, torch.optim.Adam, batches sliced from a tensor gathered with
  index_select once per epoch (conv.py's loop), torch.set_num_threads(threads).

Both start from the same weights (nntrain's initialization, copied: weight_ih, weight_hh, bias_ih,
bias_hh are torch's *_l0 in torch's layout; nntrain's linear weight is torch's weight.T) and visit
the rows in the same order (torch copies nntrain's training generator). Nothing else is random.

What is checked (a failure makes the exit status 1):
1. agreement: a separate fit of each network on the first --check-rows rows (default 2048: 32
   steps), one epoch for each contender from the same weights: the training loss at the initial
   weights (the forward alone) and after the epoch (all those rows, the final parameters) must
   agree within CHECK_RTOL = 1e-3 relative; the largest parameter difference is reported.
2. after the timed epochs, the final training losses must agree within LOSS_RTOL = 0.1 relative
   (loosely: float32 rounding differences grow over several epochs of Adam).

Fairness as in conv.py: OMP / OPENBLAS / MKL threads set to --threads before numpy and torch are
imported, torch.set_num_threads(--threads); rounds interleaved and rotated after one warm-up epoch
each; medians with min-max; a round during which other processes took more than --max-others of
the CPUs is repeated (up to --max-retries); a float32 GEMM probe (2048^3 and the recurrent
product batch x 128 x 512 of one LSTM step) at the start and the end. GFLOP/s are the recurrent
and linear products' FLOPs (forward; weight and hidden-state gradients; no input gradients of
the first layer) over the median epoch.

Layer times (unless --no-layer-times): conv.py's layer_times, --layer-steps training steps at
the batch size with each layer's forward and backward (and the loss) timed separately.

Results: a Markdown table on stdout and in benchmarks/results/rnn.md, everything in
benchmarks/results/rnn.json (--quick writes to a temporary directory unless --out is given).
"""

from __future__ import annotations

import argparse
import os
import sys

# Run as a script, this folder is sys.path[0], where benchmarks/profile.py would shadow the standard
# library's `profile` (which torch imports through cProfile): take the folder off the path.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

NETWORKS = {"lstm": 4, "gru": 3, "rnn": 1}  # layer type -> gates (weight rows per unit)


def _args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", default="lstm,gru,rnn", help="networks, comma-separated (default lstm,gru,rnn)")
    p.add_argument("--rounds", type=int, default=7, help="timed epochs per contender and network (default 7)")
    p.add_argument("--rows", type=int, default=8192, help="training rows (default 8192: 128 steps at batch 64)")
    p.add_argument("--batch", type=int, default=64, help="batch size (default 64)")
    p.add_argument(
        "--threads", type=int, default=None, help="threads for all (default: OMP_NUM_THREADS or the CPU count)"
    )
    p.add_argument("--check-rows", type=int, default=2048, help="rows of the agreement check (default 2048)")
    p.add_argument("--no-layer-times", action="store_true", help="skip timing nntrain's layers one by one")
    p.add_argument("--layer-steps", type=int, default=20, help="training steps of the layer timing (default 20)")
    p.add_argument("--max-others", type=float, default=0.1, help="repeat a round where others used more of the CPUs")
    p.add_argument("--max-retries", type=int, default=None, help="rounds repeated at most, per network (2 x rounds)")
    p.add_argument("--max-wait", type=float, default=60.0, help="seconds to wait for a quiet machine before a round")
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 2048 rows, 2 rounds, --max-wait 5, results to a temporary directory",
    )
    p.add_argument("--out", default=None, help="results path without suffix (default benchmarks/results/rnn)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    args.networks = [n.strip() for n in args.only.split(",") if n.strip()]
    if set(args.networks) - set(NETWORKS):
        p.error(f"--only: unknown networks {sorted(set(args.networks) - set(NETWORKS))} (choose from {list(NETWORKS)})")
    if args.quick:
        args.rows, args.rounds = min(args.rows, 2048), min(args.rounds, 2)
        args.check_rows, args.layer_steps = min(args.check_rows, 512), min(args.layer_steps, 5)
        args.max_wait = min(args.max_wait, 5.0)  # a smoke run does not wait a minute for a quiet machine
    args.check_rows = min(args.check_rows, args.rows)
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
import importlib.util
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

# benchmarks/conv.py by path (this folder is off sys.path); as a module its argument parsing does not run.
_spec = importlib.util.spec_from_file_location("nntrain_bench_conv", Path(_HERE) / "conv.py")
_conv = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_conv)
_machine, _parked, _pct = _conv._machine, _conv._parked, _conv._pct

STEPS, FEATURES, UNITS, CLASSES = 50, 32, 128, 10
KEY_STEPS = (30, 36, 42, 48)  # the steps whose projections' signs are the label's bits
LR = 1e-3
RESULTS = Path(_HERE) / "results"
CHECK_RTOL = 1e-3  # the agreement check: training loss before and after one epoch, relative
LOSS_RTOL = 0.1  # after the timed epochs (float32 drift of Adam)
TARGET = 1.25  # nntrain epoch / PyTorch epoch, at most: lstm's target; gru's and rnn's for information
TARGETED = ("lstm",)


def make_sequences(rows: int, seed: int):
    """X: (rows, 50, 32) float32, y: (rows,) int64 in 0..9, the class written in the signs of four steps.

    The features are N(0, 1) noise, except that at each step of KEY_STEPS the component along one
    random unit direction u is moved to +-(|x . u| + 0.5), its sign the label's bit k (0..9 in
    binary). A recurrent network must find u and keep the signs over up to 20 steps; it is
    learnable at these settings (in a trial, PyTorch's LSTM from its own initialization had a mean
    training loss of 1.93 in its first epoch of 16384 rows and 1.13 in its fourth).
    """
    rng = np.random.default_rng([seed, STEPS, FEATURES])
    y = rng.integers(0, CLASSES, rows)
    X = rng.standard_normal((rows, STEPS, FEATURES), dtype=np.float32)
    u = rng.standard_normal(FEATURES).astype(np.float32)
    u /= np.linalg.norm(u)
    for k, s in enumerate(KEY_STEPS):
        proj = X[:, s] @ u
        sign = np.where((y >> k) & 1, np.float32(1), np.float32(-1))
        X[:, s] += (sign * (np.abs(proj) + np.float32(0.5)) - proj)[:, None] * u
    return X, y.astype(np.int64)


def layer_spec(net: str) -> list:
    rec = {"units": UNITS, "output": "last"} | ({"activation": "tanh"} if net == "rnn" else {})
    return [{net: rec}, {"linear": CLASSES}]


def network_flops(net: str, rows: int) -> float:
    """FLOPs of one epoch in the matrix products: per step forward 2GH(D+H), weight gradients as much,
    hidden-state gradients 2GHH (no input gradients: the first layer); the linear layer 6HC."""
    g = NETWORKS[net] * UNITS
    per_sample = STEPS * (4 * g * (FEATURES + UNITS) + 2 * g * UNITS) + 6 * UNITS * CLASSES
    return float(per_sample) * rows


def gemm_probe(batch: int) -> dict:
    """Best float32 GFLOP/s of a 2048^3 product and of an LSTM step's recurrent product (batch x 128 x 512)."""
    rng = np.random.default_rng(1)
    out = {}
    for (m, k, n), repeats in (((2048, 2048, 2048), 5), ((batch, UNITS, 4 * UNITS), 500)):
        a, b = rng.random((m, k), dtype=np.float32), rng.random((k, n), dtype=np.float32)
        c = a @ b  # wake the thread pool
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            np.matmul(a, b, out=c)
            best = min(best, time.perf_counter() - t)
        out[f"{m}x{k}x{n}"] = 2.0 * m * k * n / best / 1e9
    out["peak"] = max(out.values())
    return out


class Nntrain(_conv.Nntrain):
    """conv.py's parked nntrain fit (finish) with the recurrent config and Adam."""

    def __init__(self, net: str, data_file: Path, batch: int, epochs: int, runs_root: Path, seed: int, name: str):
        from nntrain import config as cfg

        self.raw = {
            "name": name,
            "seed": seed,
            "dtype": "float32",
            "data": {"dataset": str(data_file), "split": {"val": 0, "test": 0}, "scale": "none"},
            "model": {"layers": layer_spec(net)},
            "loss": "cross_entropy",
            "optimizer": {"name": "adam", "lr": LR},
            "train": {"epochs": epochs, "batch_size": batch},
        }
        _parked.ParkedFit.__init__(self, cfg.validate(self.raw), runs_root)

    def start(self) -> _conv.Start:
        """Run the fit up to its first epoch; the rows, the parameters by key and the shuffling generator."""
        self.begin()
        net = self.exp.network
        if tuple(net.in_shape) != (STEPS, FEATURES):
            raise RuntimeError(
                f"nntrain's network sees samples of shape {tuple(net.in_shape)}, not {(STEPS, FEATURES)}"
            )
        X, y, _ = self.exp.arrays("train")
        params = {p.key: p.value.copy() for p in net.params}
        return _conv.Start(X, y, params, copy.deepcopy(self.exp.rngs["train"]))

    def parameters(self) -> dict[str, np.ndarray]:
        return {p.key: p.value for p in self.exp.network.params}


class Torch(_conv.Torch):
    """PyTorch CPU: nn.LSTM / GRU / RNN and nn.Linear from nntrain's weights; conv.py's epoch loop and loss."""

    def __init__(self, net: str, start: _conv.Start, batch: int, threads: int):
        import torch
        import torch.nn.functional as F
        from torch import nn

        class Model(nn.Module):
            def __init__(self):
                super().__init__()
                self.rnn = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[net](FEATURES, UNITS, batch_first=True)
                self.head = nn.Linear(UNITS, CLASSES)

            def forward(self, x):
                _, h = self.rnn(x)
                return self.head((h[0] if isinstance(h, tuple) else h)[-1])  # LSTM: (h_n, c_n); h_n[-1]

        torch.set_num_threads(threads)
        self.torch, self.F, self.model = torch, F, Model()
        mine = self.named()
        if set(mine) != set(start.params):
            raise RuntimeError(f"parameters: torch {sorted(mine)}, nntrain {sorted(start.params)}")
        with torch.no_grad():
            for key, p in mine.items():
                w = start.params[key].T if key == "layers.1.weight" else start.params[key]
                if tuple(p.shape) != w.shape:
                    raise RuntimeError(f"{key}: torch {tuple(p.shape)}, nntrain {w.shape}")
                p.copy_(torch.from_numpy(np.ascontiguousarray(w)))
        self.opt = torch.optim.Adam(self.model.parameters(), lr=LR)
        self.X = torch.from_numpy(np.ascontiguousarray(start.X).reshape(-1, STEPS, FEATURES))
        self.y = torch.from_numpy(start.y)
        self.Xs, self.ys = torch.empty_like(self.X), torch.empty_like(self.y)
        self.rng, self.batch = start.generator(), batch

    def named(self) -> dict:
        """torch's parameters under nntrain's keys (weight_ih_l0 -> layers.0.weight_ih, head -> layers.1)."""
        out = {f"layers.0.{k.removesuffix('_l0')}": p for k, p in self.model.rnn.named_parameters()}
        return out | {"layers.1.weight": self.model.head.weight, "layers.1.bias": self.model.head.bias}

    def parameters(self) -> dict[str, np.ndarray]:
        return {
            k: (p.detach().numpy().T if k == "layers.1.weight" else p.detach().numpy()) for k, p in self.named().items()
        }


def param_diff(a: dict, b: dict) -> float:
    return _conv.param_diff([a[k] for k in sorted(b)], [b[k] for k in sorted(b)])


def rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


def agreement(net: str, args, data_file: Path, runs_root: Path) -> dict:
    """One epoch of --check-rows rows, nntrain and PyTorch from the same weights: the loss before and after."""
    nn = Nntrain(net, data_file, args.batch, 1, runs_root, args.seed, f"rnn-bench-{net}-check")
    start = nn.start()
    torch_side = Torch(net, start, args.batch, args.threads)
    before = {"nntrain": float(nn.exp.evaluate_split("train")["loss"]), "torch": torch_side.loss()}
    torch_side.epoch()
    nn.epoch()  # the fit's only epoch, then its end
    after = {"nntrain": nn.finish(), "torch": torch_side.loss()}
    c = {
        "rows": len(start.y),
        "steps": -(-len(start.y) // args.batch),
        "initial_loss": before,
        "initial_relative_difference": rel(before["torch"], before["nntrain"]),
        "loss": after,
        "relative_difference": rel(after["torch"], after["nntrain"]),
        "tolerance": CHECK_RTOL,
        "max_param_rel_diff": param_diff(torch_side.parameters(), nn.parameters()),
    }
    c["ok"] = max(c["initial_relative_difference"], c["relative_difference"]) <= CHECK_RTOL
    return c


def run_network(net: str, args, data_file: Path, runs_root: Path) -> dict:
    """Warm-up, then interleaved rounds (repeated while the machine is busy), as conv.py's run_network."""
    epochs = 1 + args.rounds + args.max_retries  # the fit stops (finish) when enough rounds are done
    nn = Nntrain(net, data_file, args.batch, epochs, runs_root, args.seed, f"rnn-bench-{net}")
    start = nn.start()
    contenders = {"nntrain": nn, "torch": Torch(net, start, args.batch, args.threads)}
    keys = list(contenders)
    warmup = {k: contenders[k].epoch() for k in keys}
    print(f"  {net} warm-up: " + "  ".join(f"{k} {warmup[k]:.2f}s" for k in keys), flush=True)
    times, others = {k: [] for k in keys}, {k: [] for k in keys}
    orders, discarded, waited = [], [], 0.0
    meter = _conv.Others()
    while len(orders) < args.rounds:
        waited += _conv.wait_quiet(meter, args.max_others, args.max_wait)
        r = len(orders)
        order = keys[r % 2 :] + keys[: r % 2]
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
    ratio = statistics.median(times["nntrain"]) / statistics.median(times["torch"])
    result = {
        "network": net,
        "layers": layer_spec(net),
        "rows": len(start.y),
        "batch": args.batch,
        "warmup_seconds": warmup,
        "seconds": times,
        "orders": orders,
        "other_processes_cpu_share": others,
        "discarded_rounds": discarded,
        "seconds_waited_for_quiet": waited,
        "median": {k: statistics.median(v) for k, v in times.items()},
        "min": {k: min(v) for k, v in times.items()},
        "max": {k: max(v) for k, v in times.items()},
        "ratio_of_medians": ratio,
        "median_of_round_ratios": statistics.median(a / b for a, b in zip(times["nntrain"], times["torch"])),
        "target_ratio": TARGET,
        "target_is_informational": net not in TARGETED,
        "target_met": ratio <= TARGET,
        "flops_per_epoch": network_flops(net, len(start.y)),
        "final_train_loss": losses,
        "loss_check": {
            "relative_difference": rel(losses["torch"], losses["nntrain"]),
            "tolerance": LOSS_RTOL,
            "ok": rel(losses["torch"], losses["nntrain"]) <= LOSS_RTOL,
            "max_param_rel_diff": param_diff(contenders["torch"].parameters(), nn.parameters()),
        },
        "csv_seconds": [float(row["seconds"]) for row in nn.rows[1:]],
        "nntrain_train_accuracy": nn.rows[-1].get("train_accuracy"),
        "nntrain_in_shape": list(nn.exp.network.in_shape),
    }
    if not args.no_layer_times:
        _conv.wait_quiet(meter, args.max_others, args.max_wait)
        meter.share()
        result["layer_times"] = _conv.layer_times(nn, args.layer_steps, args.batch)
        result["layer_times_other_processes_cpu_share"] = meter.share()
    return result


def report(info: dict, probes: tuple[dict, dict], results: list[dict], checks: dict, args) -> str:
    flags = " ".join(info.get("cpu_flags") or []) or "not listed"
    probe = [", ".join(f"{k} {v:.0f}" for k, v in p.items() if k != "peak") for p in probes]
    lines = [
        "# nntrain recurrent-network benchmark",
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
            f"Synthetic sequences (rows x {STEPS} steps x {FEATURES} features float32, 10 classes, seeded), one recurrent"
            f" layer of {UNITS} units (output: last) -> linear {CLASSES}, softmax cross-entropy, Adam lr {LR:g}, batch"
            f" {args.batch}. Seconds per epoch: median (min-max) of {args.rounds} interleaved rounds after one warm-up"
            " epoch each. nntrain runs through `nntrain.api.fit` on an .npz of (rows, 50, 32) with training metrics,"
            " metrics.csv and its default checkpoints; its time is from one epoch's end to the next (the on_epoch"
            " hook), checkpoints included. PyTorch CPU: nn.LSTM / nn.GRU / nn.RNN (batch_first) and nn.Linear, same"
            " initial weights and row order."
        ),
        "",
        f"float32 GEMM probe: start {probes[0]['peak']:.0f} GFLOP/s ({probe[0]}), end {probes[1]['peak']:.0f} GFLOP/s ({probe[1]}).",
        "",
        (
            "| network | rows | nntrain (s) | PyTorch CPU (s) | nntrain / PyTorch (median of rounds) | target |"
            " nntrain GFLOP/s | PyTorch GFLOP/s | final loss nntrain / PyTorch | nntrain train acc. |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        med, lo, hi = r["median"], r["min"], r["max"]
        cells = [f"{med[k]:.2f} ({lo[k]:.2f}-{hi[k]:.2f})" for k in ("nntrain", "torch")]
        target = f"<= {r['target_ratio']:g}: {'met' if r['target_met'] else 'NOT met'}"
        if r["target_is_informational"]:
            target = f"({target}, for information)"
        lt, acc = r["final_train_loss"], r.get("nntrain_train_accuracy")
        lines.append(
            f"| {r['network']} {UNITS} | {r['rows']} | {cells[0]} | {cells[1]} | {r['ratio_of_medians']:.2f}"
            f" ({r['median_of_round_ratios']:.2f}) | {target} | {r['flops_per_epoch'] / med['nntrain'] / 1e9:.0f} |"
            f" {r['flops_per_epoch'] / med['torch'] / 1e9:.0f} | {lt['nntrain']:.4f} / {lt['torch']:.4f}"
            f" ({'ok' if r['loss_check']['ok'] else 'MISMATCH'}) | {f'{acc:.3f}' if acc is not None else '-'} |"
        )
    lines.append("")
    for r in results:
        lines.append(
            f"- {r['network']}: {r['flops_per_epoch'] / 1e9:.1f} GFLOP per epoch; nntrain's network saw samples of"
            f" shape {tuple(r['nntrain_in_shape'])}"
        )
    for net, c in checks.items():
        lines.append(
            f"- agreement check, {net}, {c['rows']} rows ({c['steps']} steps), same weights and order: training loss"
            f" at the initial weights PyTorch {c['initial_loss']['torch']:.6f} vs nntrain {c['initial_loss']['nntrain']:.6f}"
            f" (relative difference {c['initial_relative_difference']:.1e}), after the epoch PyTorch"
            f" {c['loss']['torch']:.6f} vs nntrain {c['loss']['nntrain']:.6f} (relative difference"
            f" {c['relative_difference']:.1e}; tolerance {c['tolerance']:g}; largest parameter difference"
            f" {c['max_param_rel_diff']:.1e} of the parameter's largest value): {'ok' if c['ok'] else 'MISMATCH'}"
        )
    for r in results:
        c = r["loss_check"]
        lines.append(
            f"- {r['network']} after {args.rounds + 1 + len(r['discarded_rounds'])} epochs: final training loss relative"
            f" difference {c['relative_difference']:.1e} (loose tolerance {c['tolerance']:g}: float32 drift; largest"
            f" parameter difference {c['max_param_rel_diff']:.1e}): {'ok' if c['ok'] else 'MISMATCH'}"
        )
    lines += _conv.report_tail(info, results, args)
    return "\n".join(lines) + "\n"


def main():
    args = ARGS
    try:
        import torch  # noqa: F401 - the other contender; its BLAS goes into the machine info
    except ImportError as e:
        print(f"rnn.py compares against PyTorch CPU, which is not importable ({e}): pip install torch", file=sys.stderr)
        return 2
    from nntrain.engine.layers import LAYERS

    missing = [n for n in args.networks if n not in LAYERS]
    if missing:
        print(f"nntrain has no layer types {missing} (nntrain/engine/layers/recurrent.py)", file=sys.stderr)
        return 2
    if args.out:
        out = Path(args.out)
    elif args.quick:
        out = Path(tempfile.mkdtemp(prefix="nntrain-rnn-quick-")) / "rnn"
    else:
        out = RESULTS / "rnn"
    whole = _conv.Others()
    info = _conv.machine(args.threads)
    print(f"CPU: {info['cpu']}; BLAS: {_machine.blas_text(info['blas'])}", flush=True)
    print(
        f"threads {args.threads}, networks {args.networks}, rows {args.rows}, rounds {args.rounds}, batch {args.batch}"
    )
    _conv.wait_quiet(_conv.Others(), args.max_others, args.max_wait)
    start_probe = gemm_probe(args.batch)
    print(f"GEMM probe at the start: {start_probe['peak']:.0f} GFLOP/s", flush=True)
    results, checks = [], {}
    with tempfile.TemporaryDirectory(prefix="nntrain-rnn-") as tmp:
        X, y = make_sequences(args.rows, args.seed)
        files = {n: Path(tmp) / f"sequences-{n}.npz" for n in sorted({args.rows, args.check_rows})}
        for n, f in files.items():
            np.savez(f, X=X[:n], y=y[:n])
        del X, y
        for net in args.networks:
            print(f"{net}: agreement check ({args.check_rows} rows)", flush=True)
            c = checks[net] = agreement(net, args, files[args.check_rows], Path(tmp) / "runs")
            print(
                f"  relative loss difference {c['initial_relative_difference']:.1e} at the start,"
                f" {c['relative_difference']:.1e} after {c['steps']} steps: {'ok' if c['ok'] else 'MISMATCH'}",
                flush=True,
            )
            print(f"{net}: {args.rows} rows", flush=True)
            results.append(run_network(net, args, files[args.rows], Path(tmp) / "runs"))
    _conv.wait_quiet(_conv.Others(), args.max_others, args.max_wait)
    end_probe = gemm_probe(args.batch)
    print(f"GEMM probe at the end: {end_probe['peak']:.0f} GFLOP/s", flush=True)
    info["load_average_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    info["other_processes_cpu_share"] = whole.share()
    text = report(info, (start_probe, end_probe), results, checks, args)
    print()
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(text)
    payload = {
        "machine": info,
        "command": sys.argv,
        "settings": {
            k: getattr(args, k)
            for k in ("rows", "rounds", "batch", "threads", "quick", "seed", "check_rows", "layer_steps")
        }
        | {"steps": STEPS, "features": FEATURES, "units": UNITS, "classes": CLASSES, "lr": LR, "key_steps": KEY_STEPS},
        "targets": {"epoch_ratio": TARGET, "targeted": TARGETED},
        "gemm_probe": {"start": start_probe, "end": end_probe},
        "agreement_checks": checks,
        "results": results,
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
