"""Bad input found in review: each gives a clear message and the documented exit code, never a traceback."""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
import zipfile

import numpy as np
import pytest
import yaml
from conftest import small_config
from typer.testing import CliRunner

from nntrain.cli import app
from nntrain.engine.losses import MSE
from nntrain.train.metrics import Metrics


@pytest.fixture
def run(cli, write_config, tmp_path):
    path = tmp_path / "run"
    result = cli("fit", write_config(train={"epochs": 2}), "--run-dir", path, "-q")
    assert result.exit_code == 0, result.stderr
    return path


def rewrite_checkpoint(src, dst, compressed=False, **changes):
    """A copy of checkpoint `src` at `dst` with members replaced (key__part: value) or removed (None)."""
    with np.load(src, allow_pickle=False) as npz:
        arrays = dict(npz)
    for key, value in changes.items():
        key = key.replace("__", ".")
        if value is None:
            arrays.pop(key)
        else:
            arrays[key] = value
    (np.savez_compressed if compressed else np.savez)(dst, **arrays)


def test_a_nan_metric_fails_a_gate(cli, run):
    weight = np.load(run / "checkpoints/last.npz")["layers.0.weight"]
    rewrite_checkpoint(run / "checkpoints/last.npz", run / "nan.npz", layers__0__weight=np.full_like(weight, np.nan))
    result = cli("eval", run, "--checkpoint", run / "nan.npz", "--fail-over", "loss=100", "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["failed"]
    assert "RuntimeWarning" not in result.stderr


def test_a_checkpoint_of_another_run_is_refused(cli, write_config, run, tmp_path):
    other = tmp_path / "other"
    assert cli("fit", write_config("o.yaml", seed=5, train={"epochs": 1}), "--run-dir", other, "-q").exit_code == 0
    result = cli("eval", run, "--checkpoint", other / "checkpoints/last.npz")
    assert result.exit_code == 2 and "not a checkpoint of" in result.stderr and "seed" in result.stderr


def test_an_incomplete_checkpoint_cannot_be_resumed(cli, run):
    rewrite_checkpoint(run / "checkpoints/last.npz", run / "checkpoints/last.npz", meta__best_epoch=None)
    for path in run.glob("checkpoints/*.npz"):
        if path.name != "last.npz":
            path.unlink()
    result = cli("fit", "--resume", run, "--set", "train.epochs=3")
    assert result.exit_code == 2 and "incomplete: it has no 'meta.best_epoch'" in result.stderr


def test_optimizer_state_of_the_wrong_shape_is_refused(cli, run):
    buffer = np.zeros((3, 3))
    rewrite_checkpoint(run / "checkpoints/last.npz", run / "checkpoints/last.npz", optim__layers__0__weight__momentum_buffer=buffer)
    for path in run.glob("checkpoints/*.npz"):
        if path.name != "last.npz":
            path.unlink()
    result = cli("fit", "--resume", run, "--set", "train.epochs=3")
    assert result.exit_code == 2 and "momentum_buffer" in result.stderr


@pytest.mark.parametrize("splits", [{"train": np.arange(3), "test": np.arange(2)}, {"train": np.array([0.5]), "val": np.arange(2), "test": np.arange(2)}, {"train": np.array([-1, 2]), "val": np.arange(2), "test": np.arange(2)}])
def test_a_bad_splits_file_is_refused(cli, run, splits):
    np.savez(run / "splits.npz", **splits)
    result = cli("eval", run)
    assert result.exit_code == 2 and "splits.npz" in result.stderr


def test_diverging_without_validation_keeps_finite_checkpoints(cli, write_config, tmp_path):
    config = write_config(
        data={"split": {"val": 0, "test": 0}}, optimizer={"lr": 1e30, "momentum": 0.0}, train={"batch_size": "full", "epochs": 3}
    )
    result = cli("fit", config, "--run-dir", tmp_path / "d", "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["status"] == "diverged"
    for path in (tmp_path / "d/checkpoints").glob("*.npz"):
        with np.load(path) as npz:
            assert np.isfinite(npz["layers.0.weight"]).all(), path.name


def test_a_validation_fraction_that_rounds_to_nothing_is_refused(cli, write_config):
    config = write_config(data={"options": {"samples": 30, "classes": 3, "noise": 0.2}, "split": {"val": 0.01, "test": 0.01}})
    result = cli("validate", config)
    assert result.exit_code == 2 and "data.split.val" in result.stderr


def test_duplicate_yaml_keys_are_refused(cli, tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("data: {dataset: spirals}\nmodel: {layers: [linear: 3]}\ndata: {dataset: moons}\n")
    result = cli("validate", path)
    assert result.exit_code == 2 and "'data' appears twice" in result.stderr


@pytest.mark.parametrize("content, message", [(b"a,a,y\n1,2,0\n", "more than once"), (b"a,y\n\xff\xfe,1\n", "UTF-8")])
def test_bad_csv_headers_and_encodings(cli, write_config, tmp_path, content, message):
    (tmp_path / "bad.csv").write_bytes(content)
    result = cli("validate", write_config(data={"dataset": str(tmp_path / "bad.csv"), "options": {}}))
    assert result.exit_code == 2 and message in result.stderr


def test_unwritable_prediction_output_is_exit_2(cli, run, tmp_path):
    (tmp_path / "in.csv").write_text("x0,x1\n0.1,0.2\n")
    result = cli("predict", run, tmp_path / "in.csv", "--out", tmp_path / "no" / "such" / "dir.csv")
    assert result.exit_code == 2 and "cannot write" in result.stderr and "the predictions" in result.stderr


def test_gradcheck_that_compared_nothing_does_not_pass(cli):
    result = cli("gradcheck", "configs/svm_hinge.yaml", "--eps", "100")
    assert result.exit_code == 1 and "not compared" in result.stdout


def test_r2_keeps_its_precision_with_a_large_offset():
    rng = np.random.default_rng(0)
    y = 1e8 + rng.normal(size=(1000, 1))
    z = y + 0.1 * rng.normal(size=(1000, 1))
    metrics = Metrics(MSE(), ["r2"])
    for start in range(0, 1000, 100):
        metrics.add(0.0, z[start : start + 100], y[start : start + 100])
    exact = 1 - np.sum((z - y) ** 2) / np.sum((y - y.mean()) ** 2)
    assert metrics.result()["r2"] == pytest.approx(exact, abs=1e-6)


# --- every .npz / .npy nntrain reads is validated whole: exit 2 naming the file, never an internal error ---


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Runs trained once for the tests below.

    clf: a CSV with a text column (data.columns, data.categories.2), class weights (loss.weights)
    and a schedule (schedule.*); reg: two scaled targets (data.target_scale.*, 1-D).
    """
    tmp = tmp_path_factory.mktemp("runs")
    rng = np.random.default_rng(0)
    rows = [f"{a:.3f},{b:.3f},{c},{'cat' if a + (c == 'red') > 0.5 else 'dog'}" for a, b, c in
            zip(rng.normal(size=90), rng.normal(size=90), rng.choice(["red", "green", "blue"], 90))]
    (tmp / "pets.csv").write_text("a,b,color,label\n" + "\n".join(rows) + "\n")
    X = rng.normal(size=(80, 3))
    np.savez(tmp / "reg.npz", X=X, y=np.stack([X[:, 0] * 10 + 5, X[:, 1] - 3], axis=1))
    configs = {
        "clf": small_config(
            data={"dataset": str(tmp / "pets.csv"), "options": {}},
            model={"layers": [{"linear": 8}, "relu", {"linear": 2}]},
            loss={"name": "cross_entropy", "class_weights": "balanced"},
            optimizer={"name": "sgd", "lr": 0.1, "schedule": {"name": "step", "step_size": 1}},
            train={"epochs": 2},
        ),
        "reg": small_config(
            data={"dataset": str(tmp / "reg.npz"), "options": {}, "scale_target": True},
            model={"layers": [{"linear": 8}, "relu", {"linear": 2}]},
            loss="mse",
            train={"epochs": 2},
        ),
    }
    for name, config in configs.items():
        (tmp / f"{name}.yaml").write_text(yaml.safe_dump(config))
        result = CliRunner().invoke(app, ["fit", str(tmp / f"{name}.yaml"), "--run-dir", str(tmp / name), "-q"])
        assert result.exit_code == 0, result.output
    (tmp / "pets-in.csv").write_text("a,b,color\n0.1,0.2,red\n")
    (tmp / "reg-in.csv").write_text("x0,x1,x2\n0.1,0.2,0.3\n")
    return tmp


def refused(result, *fragments):
    """Exit code 2 with one clean error naming each fragment (the file, the problem); no traceback."""
    assert result.exit_code == 2, (result.exit_code, result.output)
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)
    assert "internal error" not in result.output and "Traceback" not in result.output
    return True


def corrupt_deflate(path, member: str) -> None:
    """Break the deflate stream of a member of a compressed .npz (its first block gets the reserved type)."""
    data = bytearray(path.read_bytes())
    info = zipfile.ZipFile(path).getinfo(member)
    name_length, extra_length = struct.unpack("<HH", data[info.header_offset + 26 : info.header_offset + 30])
    data[info.header_offset + 30 + name_length + extra_length] = 0xFF
    path.write_bytes(bytes(data))


def crafted(runs, name="clf", compressed=False, **changes):
    """A copy of a run's best.npz with members replaced (key__part: value) or removed (None)."""
    path = runs / f"crafted-{len(list(runs.glob('crafted-*')))}.npz"
    rewrite_checkpoint(runs / name / "checkpoints/best.npz", path, compressed, **changes)
    return path


def with_config(runs, name="clf", text=None, **changes):
    """A crafted checkpoint whose meta.config is `text` (or the config changed by `changes`), its SHA-256 matching."""
    with np.load(runs / name / "checkpoints/best.npz", allow_pickle=False) as npz:
        config = json.loads(str(npz["meta.config"]))
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = config
        for p in parents:
            node = node[p]
        node[last] = value
    text = json.dumps(config, sort_keys=True) if text is None else text
    sha = hashlib.sha256(text.encode()).hexdigest()
    return crafted(runs, name, meta__config=np.array(text), meta__config_sha256=np.array(sha))


@pytest.mark.parametrize("command", ["eval", "predict", "weights"])
def test_a_corrupted_deflate_stream_in_a_checkpoint(cli, runs, tmp_path, command):
    path = crafted(runs, compressed=True)
    corrupt_deflate(path, "layers.0.weight.npy")
    if command == "eval":
        result = cli("eval", runs / "clf", "--checkpoint", path)
    elif command == "predict":
        result = cli("predict", runs / "clf", runs / "pets-in.csv", "--checkpoint", path)
    else:
        result = cli("fit", runs / "clf.yaml", "--run-dir", tmp_path / "w", "--weights", path)
        assert not (tmp_path / "w").exists()
    assert refused(result, path.name, "member 'layers.0.weight.npy'", "zlib.error")


def test_a_corrupted_deflate_stream_in_a_data_file(cli, write_config, tmp_path):
    np.savez_compressed(tmp_path / "d.npz", X=np.random.default_rng(0).normal(size=(60, 2)), y=np.arange(60) % 2)
    corrupt_deflate(tmp_path / "d.npz", "X.npy")
    config = write_config(data={"dataset": str(tmp_path / "d.npz"), "options": {}}, model={"layers": [{"linear": 2}]})
    assert refused(cli("fit", config, "--run-dir", tmp_path / "r"), "data.dataset", "d.npz", "member 'X.npy'", "zlib.error")
    assert refused(cli("validate", config), "d.npz", "zlib.error")


def test_a_member_that_is_not_an_npy(cli, write_config, runs, tmp_path):
    with zipfile.ZipFile(tmp_path / "text.npz", "w") as z:
        z.writestr("X.npy", "random text, not an array\n" * 5)
        z.writestr("y.npy", "more text")
    config = write_config(data={"dataset": str(tmp_path / "text.npz"), "options": {}})
    assert refused(cli("validate", config), "text.npz", "member 'X.npy'", "magic string")
    with zipfile.ZipFile(tmp_path / "ckpt.npz", "w") as z:
        z.writestr("layers.0.weight.npy", "random text")
    assert refused(cli("eval", runs / "clf", "--checkpoint", tmp_path / "ckpt.npz"), "ckpt.npz", "magic string")


@pytest.mark.parametrize("broken", ["X", "y"])
def test_an_npy_with_a_garbage_header(cli, write_config, tmp_path, broken):
    X = np.random.default_rng(0).normal(size=(60, 2))
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", (X[:, 0] > 0).astype(np.int64))
    header = b"{'descr': '<f8', 'fortran_order': False, 'shape': (60,"  # the dict never closes
    header += b" " * ((64 - (10 + len(header) + 1) % 64) % 64) + b"\n"
    (tmp_path / f"{broken}.npy").write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + b"\0" * 480)
    config = write_config(data={"dataset": {"X": "X.npy", "y": "y.npy"}, "options": {}}, model={"layers": [{"linear": 2}]})
    assert refused(cli("validate", config), f"{broken}.npy", "TokenError")
    assert refused(cli("fit", config, "--run-dir", tmp_path / "r"), f"{broken}.npy", "TokenError")


@pytest.mark.parametrize(
    "text, changes, problem",
    [
        ("{not json", {}, "embedded config is not JSON"),
        ("[1, 2]", {}, "embedded config is list, not a mapping"),
        ('"a string"', {}, "not a mapping"),
        (None, {"model": 5}, "invalid embedded config"),
        (None, {"optimizer__lr": -1}, "invalid embedded config"),
        (None, {"data__task": None}, "without data.task"),
    ],
)
def test_an_embedded_config_that_is_not_json_or_not_valid(cli, runs, text, changes, problem):
    path = with_config(runs, text=text, **changes)
    assert refused(cli("eval", runs / "clf", "--checkpoint", path), path.name, problem)
    assert refused(cli("predict", runs / "clf", runs / "pets-in.csv", "--checkpoint", path), path.name, problem)


CLF_CHANGES = [  # (member changes, what the message names)
    ({"data__scale__offset": np.zeros(3)}, "data.scale.offset has 3 features but data.scale.factor has 5"),
    ({"data__scale__offset": np.zeros((1, 5))}, "data.scale.offset must be a 1-D float array"),
    ({"data__scale__offset": np.array(["a"] * 5)}, "data.scale.offset must be a 1-D float array"),
    ({"data__scale__factor": np.zeros(5)}, "data.scale.factor holds 0.0 at index 0"),
    ({"data__scale__factor": None}, "data.scale.offset and .factor must both be there"),
    ({"loss__weights": np.ones(3)}, "loss.weights has 3 classes"),
    ({"loss__weights": np.array([1.0, -1.0])}, "loss.weights holds -1.0"),
    ({"loss__weights": None}, "it lacks loss.weights"),
    ({"data__classes": np.array([[0, 1]])}, "data.classes must be a 1-D text array"),
    ({"data__classes": np.array(["cat", "cat"])}, "not at least 2 distinct class names"),
    ({"data__classes": np.array(["a", "b", "c"]), "loss__weights": np.ones(3)}, "the network has 2"),
    ({"data__features": np.array(["a", "b"])}, "has 5 features but data.features has 2"),
    ({"data__features": np.array(["b", "a", "color=blue", "color=green", "color=red"])}, "data.features are not the inputs"),
    ({"data__columns": np.array(["a", "a", "color"])}, "data.columns names ['a'] more than once"),
    ({"data__categories__2": np.array(["red", "red", "blue"])}, "data.categories.2 names ['red'] more than once"),
    ({"data__categories__2": np.array([1, 2, 3])}, "data.categories.2 must be a 1-D text array"),
    ({"data__categories__7": np.array(["x"])}, "data.categories.7 is not the position"),
    ({"data__image_shape": np.array([3, 3])}, "data.image_shape [3, 3] does not hold its 5 features"),
    ({"data__image_shape": np.array([2.5, 2.0])}, "data.image_shape must be a 1-D integer array of shape (2,)"),
    ({"meta__rng": np.array("{broken")}, "meta.rng is not the JSON state of a PCG64 generator (JSONDecodeError"),
    ({"meta__rng": np.array("[1]")}, "meta.rng is not the JSON state"),
    ({"meta__rng": np.array('{"bit_generator": "PCG64", "state": {"state": -1, "inc": 1}, "has_uint32": 0, "uinteger": 0}')}, "OverflowError"),
    ({"meta__epoch": np.array(np.nan)}, "meta.epoch must be an integer scalar"),
    ({"meta__epoch": np.array(-3)}, "meta.epoch is -3"),
    ({"meta__best_epoch": np.array(7)}, "meta.best_epoch 7 is after meta.epoch"),
    ({"meta__best_value": np.array("low")}, "meta.best_value must be a float scalar"),
    ({"optim__steps": np.array(1.5)}, "optim.steps must be an integer scalar"),
    ({"optim__layers__0__weight__momentum_buffer": np.array(["x"])}, "optim.layers.0.weight.momentum_buffer must be a float array"),
    ({"optim__layers__0__bias__momentum_buffer": np.zeros(3)}, "momentum_buffer has shape (3,), but that of layers.0.bias, (8,)"),
    ({"optim__layers__9__bias__momentum_buffer": np.zeros(3)}, "there is no parameter layers.9.bias"),
    ({"schedule__lr": np.array("fast")}, "schedule.lr must be a float scalar"),
    ({"schedule__epoch": np.array([1, 2])}, "schedule.epoch must be an integer scalar"),
    ({"schedule__surprise": np.array(1.0)}, "a member 'schedule.surprise', which is not one nntrain writes"),
    ({"meta__version": None}, "incomplete: it has no 'meta.version'"),
    ({"layers__0__weight": np.ones((5, 8), dtype=np.complex128)}, "complex numbers"),
    ({"layers__0__weight": np.ones((5, 8), dtype=np.int64)}, "layers.0.weight must be a 1-D to 4-D float array"),
    (
        {"layers__0__weight": np.ones((4, 8), dtype=np.float32), "optim__layers__0__weight__momentum_buffer": np.ones((4, 8))},
        "does not fit the network: layers.0.weight has shape (4, 8)",
    ),
    ({"data__classes": None}, "its config's task is classification, but it lacks data.classes"),
]


@pytest.mark.parametrize("changes, problem", CLF_CHANGES, ids=[problem[:40] for _, problem in CLF_CHANGES])
def test_a_malformed_checkpoint_member_is_refused(cli, runs, changes, problem):
    path = crafted(runs, **changes)
    assert refused(cli("eval", runs / "clf", "--checkpoint", path), path.name, problem)
    assert refused(cli("predict", runs / "clf", runs / "pets-in.csv", "--checkpoint", path), path.name, problem)


def test_complex_or_object_members_are_refused_not_cast(cli, runs, tmp_path):
    weight = np.load(runs / "clf/checkpoints/best.npz")["layers.0.weight"]
    path = crafted(runs, layers__0__weight=weight + 1j)
    result = cli("fit", runs / "clf.yaml", "--run-dir", tmp_path / "w", "--weights", path)
    assert refused(result, path.name, "member 'layers.0.weight.npy'", "complex numbers")
    assert "ComplexWarning" not in result.output
    path = tmp_path / "obj.npz"
    np.savez(path, **{"layers.0.weight": np.array([{}], dtype=object)})
    assert refused(cli("fit", runs / "clf.yaml", "--run-dir", tmp_path / "o", "--weights", path), "obj.npz", "never unpickles")


def test_weights_that_are_not_floats_are_refused(cli, runs, tmp_path):
    path = tmp_path / "ints.npz"
    weight = np.load(runs / "clf/checkpoints/best.npz")["layers.0.weight"]
    np.savez(path, **{"layers.0.weight": weight.astype(np.int32)})
    result = cli("fit", runs / "clf.yaml", "--run-dir", tmp_path / "w", "--weights", path)
    assert refused(result, "ints.npz", "layers.0.weight must be a 1-D to 4-D float array")


def test_predict_without_class_names_is_refused(cli, runs):
    path = crafted(runs, data__classes=None, loss__weights=None)
    assert refused(cli("predict", runs / "clf", runs / "pets-in.csv", "--checkpoint", path), path.name, "lacks data.classes")


@pytest.mark.parametrize("command", ["eval", "predict"])
def test_target_scaling_of_the_wrong_length(cli, runs, command):
    path = crafted(runs, "reg", data__target_scale__offset=np.zeros(3), data__target_scale__factor=np.ones(3))
    args = ("eval", runs / "reg") if command == "eval" else ("predict", runs / "reg", runs / "reg-in.csv")
    assert refused(cli(*args, "--checkpoint", path), path.name, "data.target_scale.offset has 3 entries, but the data has 2 target columns")
    path = crafted(runs, "reg", data__target_scale__factor=np.array([[1.0, 1.0]]))
    assert refused(cli(*args, "--checkpoint", path), path.name, "data.target_scale.factor must be a 0-D or 1-D float array")
    path = crafted(runs, "reg", data__target_scale__offset=None, data__target_scale__factor=None)
    assert refused(cli(*args, "--checkpoint", path), path.name, "data.scale_target: true")


def test_a_damaged_last_checkpoint_still_falls_back(cli, runs, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(runs / "clf", run)
    last = run / "checkpoints/last.npz"
    data = bytearray(last.read_bytes())
    info = zipfile.ZipFile(last).getinfo("layers.0.weight.npy")
    data[info.header_offset + 200] ^= 0x01  # flipped bits in stored data: a CRC error
    last.write_bytes(bytes(data))
    result = cli("fit", "--resume", run, "--set", "train.epochs=3")
    assert result.exit_code == 0, result.output
    assert "warning" in result.stderr and "CRC" in result.stderr and "best.npz" in result.stderr


# --- found by the fault campaign (benchmarks/faults.py): each is exit 2 naming the key, never exit 70 ---


def clean(result):
    """No traceback, internal error or numpy warning reached the user."""
    for bad in ("Traceback", "internal error", "Warning"):
        assert bad not in result.output, result.output
    return True


def only_last(run):
    """Leave last.npz as the run's only checkpoint (no fallback to hide what a test changed)."""
    for path in run.glob("checkpoints/*.npz"):
        if path.name != "last.npz":
            path.unlink()
    return run / "checkpoints/last.npz"


@pytest.mark.parametrize(
    "changes, problem",
    [
        ({"optim__layers__0__weight__momentum_buffer": None}, "has no optim.layers.0.weight.momentum_buffer"),
        ({"optim__layers__2__bias__momentum_buffer": None}, "has no optim.layers.2.bias.momentum_buffer"),
        ({"optim__layers__0__bias__exp_avg": np.zeros(16)}, "unexpected optim.layers.0.bias.exp_avg"),
    ],
)
def test_a_missing_or_extra_optimizer_buffer_is_refused_on_resume(cli, run, changes, problem):
    last = only_last(run)
    rewrite_checkpoint(last, last, **changes)
    result = cli("fit", "--resume", run, "--set", "train.epochs=3")
    assert refused(result, "last.npz", problem) and clean(result)


@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.parametrize(
    "changes, problem",
    [
        ({"optim__steps": np.array(np.iinfo(np.int64).max)}, "optim.steps is 9223372036854775807; it must be an integer from 0 to 2**53"),
        ({"meta__epoch": np.array(np.iinfo(np.int64).max)}, "meta.epoch is 9223372036854775807"),
        ({"meta__epoch": np.array(7), "meta__best_epoch": np.array(7)}, "meta.epoch 7 is beyond its config's train.epochs 2"),
        ({"optim__steps": np.array(3)}, "optim.steps is 3, but 2 epochs of 7 optimizer steps make 14"),
    ],
)
def test_a_step_or_epoch_counter_out_of_range_is_refused(cli, run, changes, problem):
    last = only_last(run)
    rewrite_checkpoint(last, last, **changes)
    result = cli("fit", "--resume", run, "--set", "train.epochs=4")
    assert refused(result, "last.npz", problem) and clean(result)


def test_schedule_counters_must_follow_the_epoch(cli, runs, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(runs / "clf", run)
    last = only_last(run)
    for value, problem in [(np.iinfo(np.int64).max, "it must be an integer from 0 to 2**53"), (5, "schedule.epoch is 5, but meta.epoch is 2")]:
        rewrite_checkpoint(runs / "clf/checkpoints/last.npz", last, schedule__epoch=np.array(value))
        result = cli("fit", "--resume", run, "--set", "train.epochs=4")
        assert refused(result, "last.npz", "schedule.epoch", problem) and clean(result)


@pytest.mark.parametrize(
    "change, problem",
    [
        (lambda s: {**s, "train": s["train"][:0]}, "its 'train' split has no rows"),
        (lambda s: {**s, "val": s["val"][:0]}, "its 'val' split has no rows, but the config has a validation split"),
        (lambda s: {**s, "test": s["train"][:3]}, "is in both 'train' and 'test'"),
        (lambda s: {**s, "train": np.repeat(s["train"][:5], 3)}, "'train' repeats row"),
        (lambda s: {**s, "train": s["train"][::-1]}, "'train' is not sorted at"),
        (lambda s: {**s, "train": s["train"].reshape(1, -1)}, "train must be a 1-D integer array"),
        (lambda s: {**s, "extra": s["train"]}, "a member 'extra'"),
        (lambda s: {k: v for k, v in s.items() if k != "test"}, "it has no 'test'"),
    ],
)
def test_a_damaged_splits_file_is_refused_by_resume_and_eval(cli, run, change, problem):
    with np.load(run / "splits.npz") as npz:
        splits = dict(npz)
    np.savez(run / "splits.npz", **change(splits))
    for command in (("fit", "--resume", run, "--set", "train.epochs=3"), ("eval", run)):
        result = cli(*command)
        assert refused(result, str(run / "splits.npz"), problem) and clean(result)


def test_a_path_too_long_is_an_error_not_a_crash(cli, run, write_config):
    long = "r" * 5000
    for command in (
        ("fit", "--resume", long),
        ("eval", run, "--checkpoint", long + ".npz"),
        ("predict", run, run / "config.yaml", "--checkpoint", long + ".npz"),
        ("fit", write_config(), "--run-dir", run / "w", "--weights", long + ".npz"),
        ("gradcheck", long),
    ):
        result = cli(*command)
        assert refused(result, "File name too long", "rrr") and clean(result)


def test_batch_norm_with_batches_of_one_row_is_refused_at_validation(cli, write_config, tmp_path):
    config = write_config(model={"layers": [{"linear": 8}, "batch_norm", "relu", {"linear": 3}]}, train={"batch_size": 1})
    for command in (("validate", config), ("fit", config, "--run-dir", tmp_path / "r")):
        result = cli(*command)
        assert refused(result, "train.batch_size", "batch_norm") and clean(result)
    assert not (tmp_path / "r").exists()
    config = write_config(model={"layers": [{"linear": 8}, "batch_norm", "relu", {"linear": 3}]})
    result = cli("gradcheck", config, "--samples", "1")
    assert refused(result, "batch_norm needs at least 2 samples", "--samples") and clean(result)


@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.parametrize(
    "model, dtype, key",
    [
        ({"init": "normal", "init_scale": 1e308}, "float32", "model.init_scale"),
        ({"init": "normal", "init_scale": 1e308}, "float64", "model.init_scale"),
        ({"init": "uniform", "init_scale": 1e308}, "float64", "model.init_scale"),
        ({"init": "uniform", "init_scale": 1e39}, "float32", "model.init_scale"),
        ({"layers": [{"linear": 16}, "relu", {"type": "linear", "units": 3, "init": "normal", "init_scale": 1e308}]}, "float32", "model.layers.2.init_scale"),
    ],
)
def test_an_init_scale_that_overflows_is_refused(cli, write_config, tmp_path, model, dtype, key):
    config = write_config(model=model, dtype=dtype)
    for command in (("validate", config), ("fit", config, "--run-dir", tmp_path / "r")):
        result = cli(*command)
        assert refused(result, f"{key}:", "not finite", "use a smaller init_scale") and clean(result)


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_predict_and_eval_of_a_model_whose_outputs_overflow(cli, runs, tmp_path):
    """No numpy warning; predict prints no predictions that are not numbers (the row is reported as not
    scored, its fields left empty), eval reports them and gates fail."""
    with np.load(runs / "clf/checkpoints/best.npz") as npz:
        weight, bias = npz["layers.0.weight"], npz["layers.0.bias"]
    huge = np.finfo(weight.dtype).max
    path = crafted(runs, layers__0__bias=np.full_like(bias, huge))
    result = cli("predict", runs / "clf", runs / "pets-in.csv", "--checkpoint", path)
    assert refused(result, "warning: 1 row could not be scored:", "pets-in.csv, line 2: the model's outputs are not finite",
                   path.name) and clean(result)
    assert result.stdout == "class,p_cat,p_dog\n,,\n"  # one output row per input row, nothing predicted
    result = cli("predict", runs / "clf", runs / "pets-in.csv", "--checkpoint", path, "--json")
    assert refused(result, "pets-in.csv, line 2: the model's outputs are not finite") and clean(result)
    (record,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert record["line"] == 2 and "not finite" in record["error"] and "class" not in record
    for path in (path, crafted(runs, layers__0__weight=np.full_like(weight, huge))):
        result = cli("eval", runs / "clf", "--checkpoint", path, "--fail-over", "loss=100", "--json")
        assert result.exit_code == 1 and clean(result)
        assert json.loads(result.stdout)["failed"]
