"""Dev check: `export --format safetensors` loads into the documented torch.nn.Sequential and computes what nntrain does.

    python benchmarks/torch_export_check.py            # trains small runs in a temporary folder

For each case it trains a run for an epoch or two, exports it, executes the Sequential's source
(the file's `torch_module` metadata), loads the tensors with `load_state_dict(strict=True)`, and
prints the largest difference between torch's outputs and nntrain's on scaled inputs (the
Sequential takes the network's input: scaling stays outside, as docs/export.md says). torch is a
dev dependency only: nntrain never imports it, and the test suite does not either.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nntrain.api import fit, load_run  # noqa: E402
from nntrain.report.export import export_run  # noqa: E402

CONFIGS = ROOT / "configs"
SEQUENCE_STACK = """name: seq
data: {{dataset: {data}, split: {{val: 0.2, test: 0.2}}, scale: standardize}}
model:
  layers:
    - conv1d: {{filters: 4, kernel_size: 3, padding: same}}
    - batch_norm
    - leaky_relu
    - max_pool1d: {{kernel_size: 2, stride: 1}}
    - lstm: {{units: 5, bidirectional: true}}
    - layer_norm
    - rnn: {{units: 3, activation: relu}}
    - avg_pool1d: 2
    - time_pool: {{mode: mean}}
    - linear: 2
loss: cross_entropy
optimizer: {{name: adam, lr: 0.01}}
train: {{epochs: 2, batch_size: 16}}
"""
CASES = {
    "quickstart": (CONFIGS / "quickstart.yaml", ["train.epochs=2"]),
    "spirals (softmax in the Sequential)": (CONFIGS / "spirals.yaml", ["train.epochs=2"]),
    "breast_cancer (sigmoid)": (CONFIGS / "breast_cancer.yaml", ["train.epochs=2"]),
    "lenet_digits (conv2d, batch_norm, max_pool2d)": (CONFIGS / "lenet_digits.yaml", ["train.epochs=1"]),
    "image_folder (same padding, global_avg_pool)": (CONFIGS / "image_folder.yaml", ["train.epochs=2"]),
    "adding_lstm (lstm, output last)": (CONFIGS / "adding_lstm.yaml", ["train.epochs=1", "data.options.samples=300"]),
    "sine_forecast (gru, output last)": (CONFIGS / "sine_forecast.yaml", ["train.epochs=1", "data.options.samples=300"]),
    "text_reviews (embedding, gru; whole sequences)": (CONFIGS / "text_reviews.yaml", ["train.epochs=2"]),
    "conv1d, sequence batch_norm, pools, bidirectional lstm, relu rnn, time_pool": (None, []),
}


def sequence_config(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 10, 3)).astype(np.float32)
    np.savez(folder / "seq.npz", X=X, y=(X[:, :, 0].sum(axis=1) > 0).astype(np.int64))
    path = folder / "seq.yaml"
    path.write_text(SEQUENCE_STACK.format(data=folder / "seq.npz"))
    return path


def check(name: str, config: Path, overrides: list[str], folder: Path) -> float:
    runs = folder / "runs" / str(abs(hash(name)))
    fit(config, overrides=overrides, runs_root=runs)
    run = next(runs.iterdir())
    result = export_run(run, "safetensors", out=folder / f"{run.name}.safetensors")
    with safe_open(result["path"], "pt") as f:
        source = f.metadata()["torch_module"]
    scope: dict = {}
    exec(source, scope)  # the documented snippet, as the file carries it
    model = scope["model"]
    model.load_state_dict(load_file(result["path"]), strict=True)
    model.eval()
    exp = load_run(run, with_data=True)
    network = exp.network
    rows = exp.splits["test"] if len(exp.splits["test"]) else exp.splits["val"]
    x = network.as_samples(np.asarray(exp.dataset.X[rows[:64]]))  # scaled already, as the Sequential takes them
    expected = network.forward(x)
    if network.fused:  # the Sequential ends with the activation the loss fused
        expected = network.loss.predict(expected)
    inputs = torch.from_numpy(x.astype(np.int64) if network.layers[0].integer_input else x)
    with torch.no_grad():
        out = model(inputs).numpy()
    assert out.shape == expected.shape, (out.shape, expected.shape)
    return float(np.abs(out - expected).max())


def main() -> None:
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name, (config, overrides) in CASES.items():
            difference = check(name, config or sequence_config(folder), overrides, folder)
            print(f"{name:78s} max |torch - nntrain| = {difference:.2e}")


if __name__ == "__main__":
    main()
