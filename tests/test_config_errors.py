"""Bad configs: exit code 2, a message that names the key, no traceback, and no run directory.
Also `nntrain validate` (the resolved config) and `nntrain schema`."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest
import yaml

from conftest import small_config


def with_layers(*layers):
    return lambda c: c["model"].__setitem__("layers", list(layers))


def setter(*path_and_value):
    *path, key, value = path_and_value

    def apply(c):
        node = c
        for part in path:
            node = node[part]
        node[key] = value

    return apply


def sine(c):
    c["data"] = {"dataset": "sine", "options": {"samples": 100}}
    c["model"]["layers"] = [{"linear": 8}, "tanh", {"linear": 1}]


# id -> (change to small_config, strings the message must contain)
BAD_CONFIGS = {
    "unknown top-level key": (
        lambda c: c.__setitem__("optimiser", c.pop("optimizer")),
        ["optimiser", "did you mean 'optimizer'"],
    ),
    "unknown nested key": (
        with_layers({"linear": {"unit": 16}}, "relu", {"linear": 3}),
        ["model.layers.0", "unit", "did you mean 'units'"],
    ),
    "unknown nested key, full form": (
        with_layers({"linear": 16}, "relu", {"type": "linear", "units": 3, "unit": 3}),
        ["model.layers.2", "'unit'", "did you mean 'units'"],
    ),
    "unknown layer type": (
        with_layers({"linear": 16}, "rleu", {"linear": 3}),
        ["model.layers.1", "rleu", "did you mean 'relu'"],
    ),
    "unknown loss": (setter("loss", "cross_entropi"), ["loss", "cross_entropi", "did you mean 'cross_entropy'"]),
    "unknown optimizer": (setter("optimizer", "name", "sdg"), ["optimizer", "sdg", "did you mean 'sgd'"]),
    "lr not a number": (setter("optimizer", "lr", "abc"), ["optimizer.lr", "abc"]),
    "units not an integer": (with_layers({"linear": 2.5}, "relu", {"linear": 3}), ["model.layers.0.units", "2.5"]),
    "epochs a boolean": (setter("train", "epochs", True), ["train.epochs", "True"]),
    "batch_size misspelt": (setter("train", "batch_size", "ful"), ["train.batch_size", "did you mean 'full'"]),
    "negative lr": (setter("optimizer", "lr", -0.1), ["optimizer.lr", "greater than 0"]),
    "units 0": (with_layers({"linear": 0}, "relu", {"linear": 3}), ["model.layers.0.units", "greater than or equal to 1"]),
    "negative momentum": (setter("optimizer", "momentum", -1), ["optimizer.momentum", "greater than or equal to 0"]),
    "split leaves no training rows": (setter("data", "split", {"val": 0.5, "test": 0.5}), ["data.split", "val + test"]),
    "negative split": (setter("data", "split", {"val": -0.1}), ["data.split.val"]),
    "nesterov without momentum": (
        setter("optimizer", {"name": "sgd", "lr": 0.1, "nesterov": True}),
        ["optimizer", "nesterov", "momentum"],
    ),
    "classification loss on regression data": (sine, ["loss", "cross_entropy", "regression", "mse"]),
    "last layer too wide": (with_layers({"linear": 16}, "relu", {"linear": 5}), ["model.layers.2.units", "3 classes"]),
    "last layer too wide after an activation": (
        with_layers({"linear": 16}, "relu", {"linear": 5}, "softmax"),
        ["model.layers.2.units"],
    ),
    "binary cross entropy on 3 classes": (
        lambda c: (c.__setitem__("loss", "binary_cross_entropy"), with_layers({"linear": 16}, "relu", {"linear": 1})(c)),
        ["loss", "binary_cross_entropy", "3"],
    ),
    "monitor val_loss without a val split": (
        lambda c: (setter("data", "split", {"val": 0, "test": 0.2})(c), setter("train", "monitor", "val_loss")(c)),
        ["train.monitor", "val_loss", "no validation split"],
    ),
    "unknown monitor": (setter("train", "monitor", "val_acc"), ["train.monitor", "did you mean 'val_accuracy'"]),
    "unknown metric": (setter("train", "metrics", ["accuracyy"]), ["train.metrics", "accuracyy", "did you mean 'accuracy'"]),
    "regression metric on classification": (setter("train", "metrics", ["r2"]), ["train.metrics", "r2", "accuracy"]),
    "unknown dataset": (
        lambda c: c.__setitem__("data", {"dataset": "spiral"}),
        ["data.dataset", "spiral", "did you mean 'spirals'"],
    ),
    "unknown dataset option": (
        setter("data", "options", {"samples": 300, "clases": 3}),
        ["data.options", "clases", "did you mean 'classes'"],
    ),
    "missing data file": (lambda c: c.__setitem__("data", {"dataset": "nope.csv"}), ["data.dataset", "nope.csv"]),
    "missing model": (lambda c: c.pop("model"), ["model", "required"]),
    "optimizer name a mapping": (setter("optimizer", {"name": {"a": 1}}), ["optimizer.name", "not a name", "allowed: sgd"]),
    "loss name a list": (setter("loss", {"name": [1]}), ["loss.name", "not a name", "allowed: mse"]),
    "name too long for a directory": (setter("name", "n" * 300), ["name", "at most 100 characters", "(300 characters)"]),
    "units beyond any machine": (with_layers({"linear": 2**62}, "relu", {"linear": 3}), ["model.layers.0.units", "1000000"]),
    "a metric listed twice": (setter("train", "metrics", ["accuracy", "f1", "accuracy"]), ["train.metrics", "accuracy more than once"]),
    "more folds than rows": (setter("data", "split", {"folds": 2**62}), ["data.split.folds", "at most 255"]),
    "samples beyond any machine": (setter("data", "options", {"samples": 2**62}), ["data.options.samples", "100000000"]),
}


def bad_config(tmp_path, change):
    config = copy.deepcopy(small_config())
    change(config)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def assert_clean_error(result, *needles):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.stderr.startswith("error: ")
    for needle in needles:
        assert needle in result.stderr, f"{needle!r} not in {result.stderr!r}"


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_bad_config_fit(cli, tmp_path, case):
    change, needles = BAD_CONFIGS[case]
    result = cli("fit", bad_config(tmp_path, change), "--runs-root", tmp_path / "runs")
    assert_clean_error(result, *needles)
    assert not (tmp_path / "runs").exists()  # nothing is created for a config that cannot run


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_bad_config_validate(cli, tmp_path, case):
    change, needles = BAD_CONFIGS[case]
    assert_clean_error(cli("validate", bad_config(tmp_path, change)), *needles)


def test_unknown_dataset_with_options_still_suggests_the_name(cli, write_config):
    """A typo in the dataset name of a config that has data.options (like configs/quickstart.yaml)."""
    path = write_config(data={"dataset": "spiral"})  # options {samples, classes, noise} kept
    result = cli("validate", path)
    assert_clean_error(result, "data.dataset", "spiral", "did you mean 'spirals'")


@pytest.mark.parametrize(
    "override, needles",
    [
        ("optimizer.lr", ["--set", "KEY=VALUE"]),
        ("=3", ["--set", "KEY=VALUE"]),
        ("optimizer.lr=abc", ["optimizer.lr", "abc"]),
        ("model.layers.7.units=3", ["model.layers", "7"]),
        ("seed.x=1", ["seed"]),
        ("model.layers.0.unit=3", ["model.layers.0", "did you mean 'units'"]),
    ],
)
def test_bad_set(cli, write_config, tmp_path, override, needles):
    result = cli("fit", write_config(), "--runs-root", tmp_path / "runs", "--set", override)
    assert_clean_error(result, *needles)
    assert not (tmp_path / "runs").exists()


def test_yaml_syntax_error(cli, tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("seed: 0\ndata: {dataset: spirals\nmodel:\n  layers: [relu\n")
    assert_clean_error(cli("fit", path, "--runs-root", tmp_path / "runs"), "broken.yaml", "not valid YAML", "line")


def test_missing_config_file(cli, tmp_path):
    assert_clean_error(cli("fit", tmp_path / "nope.yaml", "--runs-root", tmp_path / "runs"), "nope.yaml", "does not exist")
    assert_clean_error(cli("validate", tmp_path / "nope.yaml"), "nope.yaml", "does not exist")


def test_empty_config_file(cli, tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert_clean_error(cli("fit", path, "--runs-root", tmp_path / "runs"), "data", "model", "required")


def test_config_that_is_not_a_mapping(cli, tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    assert_clean_error(cli("validate", path), "mapping")


def test_every_problem_is_listed(cli, write_config):
    path = write_config(optimizer={"lr": -1, "momentum": -1}, train={"epochs": 0})
    assert_clean_error(cli("validate", path), "optimizer.lr", "optimizer.momentum", "train.epochs")


def test_debug_shows_the_traceback(cli, tmp_path):
    path = bad_config(tmp_path, setter("optimizer", "lr", "abc"))
    result = cli("validate", path, "--debug")
    assert result.exit_code == 2
    assert "Traceback" in result.output
    assert "optimizer.lr" in result.stderr
    result = cli("fit", path, "--debug", "--runs-root", tmp_path / "runs")
    assert result.exit_code == 2
    assert "Traceback" in result.output


# --- validate and schema --------------------------------------------------------------------


def test_validate_prints_the_resolved_config(cli, tmp_path):
    path = bad_config(tmp_path, setter("optimizer", {"name": "sgd", "lr": 0.1}))  # a good config: defaults to fill
    result = cli("validate", path)
    assert result.exit_code == 0, result.output
    resolved = yaml.safe_load(result.stdout)
    assert resolved["optimizer"] == {"name": "sgd", "lr": 0.1, "momentum": 0.0, "nesterov": False, "weight_decay": 0.0, "schedule": None}
    assert resolved["train"]["batch_size"] == 32
    assert resolved["train"]["monitor"] == "val_loss"
    assert resolved["train"]["metrics"] == ["accuracy"]
    assert resolved["train"]["checkpoint_every"] == 10
    assert resolved["data"]["task"] == "classification"
    assert resolved["data"]["split"] == {"val": 0.15, "test": 0.15, "folds": None, "fold": 0}
    assert resolved["data"]["options"] == {"samples": 300, "classes": 3, "noise": 0.2}
    assert resolved["model"]["layers"][2] == {"type": "linear", "units": 3, "init": None, "init_scale": None}
    assert "monitor: val_loss" in result.stdout and "momentum:" in result.stdout


def test_validate_fills_regression_defaults_and_applies_sets(cli, tmp_path):
    path = bad_config(tmp_path, sine)  # cross_entropy on sine: fixed by --set
    result = cli("validate", path, "--set", "loss=mse", "--set", "data.split.val=0")
    assert result.exit_code == 0, result.output
    resolved = yaml.safe_load(result.stdout)
    assert resolved["loss"] == {"name": "mse"}
    assert resolved["data"]["task"] == "regression"
    assert resolved["train"]["metrics"] == ["mse"]
    assert resolved["train"]["monitor"] == "train_loss"


def test_validate_minimal_config_gets_the_documented_defaults(cli, tmp_path):
    path = tmp_path / "minimal.yaml"
    path.write_text("data: {dataset: xor}\nmodel: {layers: [{linear: 2}]}\n")
    result = cli("validate", path)
    assert result.exit_code == 0, result.output
    resolved = yaml.safe_load(result.stdout)
    assert resolved["name"] == "minimal"
    assert resolved["seed"] == 0 and resolved["dtype"] == "float32"
    assert resolved["loss"] == {"name": "cross_entropy", "class_weights": None}
    assert resolved["optimizer"]["name"] == "adam" and resolved["optimizer"]["lr"] == 0.001
    assert resolved["train"]["epochs"] == 20


def test_schema_is_json_schema(cli):
    result = cli("schema")
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert {"data", "model", "optimizer", "train", "loss"} <= set(schema["properties"])
    assert set(schema["required"]) == {"data", "model"}
    assert schema["additionalProperties"] is False
    text = json.dumps(schema)
    for name in ("nesterov", "momentum", "batch_size", "checkpoint_every", "units"):
        assert name in text


def test_schema_has_every_component_option_model(cli):
    # Option models are built on first use; the schema must still offer every one of them.
    from nntrain.engine.layers import LAYERS
    from nntrain.engine.losses import LOSSES
    from nntrain.engine.optim import OPTIMIZERS
    from nntrain.engine.schedules import SCHEDULES

    schema = json.loads(cli("schema").stdout)
    for registry in (LAYERS, LOSSES, OPTIMIZERS, SCHEDULES):
        for cls in registry.values():
            assert f"{cls.__name__}Options" in schema["$defs"]
    layer = schema["$defs"]["ModelConfig"]["properties"]["layers"]["items"]
    assert set(layer["anyOf"][0]["discriminator"]["mapping"]) == set(LAYERS)
    assert layer["anyOf"][1] == {"enum": list(LAYERS)}


def test_checking_a_config_builds_only_its_models_and_no_downloader():
    # What keeps `nntrain validate` quick to start: no HTTP client, and option models only for what the config names.
    code = (
        "import sys\n"
        "import nntrain.cli, nntrain.config as cfg\n"
        "cfg.validate({'data': {'dataset': 'xor'}, 'model': {'layers': [{'linear': 4}, 'tanh', {'linear': 2}]},"
        " 'optimizer': {'name': 'sgd', 'schedule': {'step': 2}}})\n"
        "print(sorted(cfg.LAYER_MODELS.built), sorted(cfg.LOSS_MODELS.built), sorted(cfg.OPTIMIZER_MODELS.built),"
        " sorted(cfg.SCHEDULE_MODELS.built), sorted(m for m in ('http.client', 'urllib.request') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[0] == "['linear', 'tanh'] ['cross_entropy'] ['sgd'] ['step'] []"


# --- hostile YAML: refused fast, in a few lines, by every command that reads a config -----------

def alias_bomb(under: str) -> str:
    """~400 bytes whose aliases expand to 9^9 values, placed under the list-valued key `under`."""
    lines = ['l0: &l0 ["x","x","x","x","x","x","x","x","x"]']
    lines += [f"l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 9)]
    return "\n".join(lines) + "\n"


BOMB_KEYS = {
    "train.metrics": "train:\n  metrics: *l8\n",
    "model.layers": "model:\n  layers: *l8\n",
    "loss.class_weights": "loss: {name: cross_entropy, class_weights: *l8}\n",
    "schedule milestones": "optimizer: {name: sgd, lr: 0.1, schedule: {name: step, milestones: *l8}}\n",
}


@pytest.mark.parametrize("key", list(BOMB_KEYS))
@pytest.mark.parametrize("command", ["validate", "fit"])
def test_alias_bomb_is_refused_quickly(cli, tmp_path, key, command):
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb(key) + BOMB_KEYS[key])
    args = ["--runs-root", tmp_path / "runs"] if command == "fit" else []
    result = cli(command, path, *args)
    assert_clean_error(result, "bomb.yaml", "more than 100,000 values")
    assert len(result.stderr) < 300


def test_alias_bomb_in_a_runs_config_is_refused_on_resume(cli, write_config, tmp_path):
    run = tmp_path / "run"
    assert cli("fit", write_config(train={"epochs": 1}), "--run-dir", run, "-q").exit_code == 0
    (run / "config.yaml").write_text(alias_bomb("train.metrics") + (run / "config.yaml").read_text().replace(
        "  metrics:\n  - accuracy\n", "  metrics: *l8\n"))
    assert "*l8" in (run / "config.yaml").read_text()
    assert_clean_error(cli("fit", "--resume", run, "--set", "train.epochs=2"), "config.yaml", "more than 100,000 values")


@pytest.mark.parametrize(
    "value, needles",
    [
        ("[" * 5000 + "]" * 5000, ["--set model.layers", "nested more than 64 levels"]),
        ("&a [1,1,1,1,1,1,1,1,1,1]", ["model.layers"]),  # a plain anchor is fine YAML, then a bad layer list
    ],
)
def test_hostile_set_values(cli, write_config, tmp_path, value, needles):
    assert_clean_error(cli("validate", write_config(), "--set", f"model.layers={value}"), *needles)


@pytest.mark.parametrize("text", ["seed: 0\n" + "a: " * 2000 + "1\n", "[" * 2000 + "]" * 2000, "? [a, b]\n: 1\n"])
def test_odd_yaml_is_refused(cli, tmp_path, text):
    path = tmp_path / "odd.yaml"
    path.write_text(text)
    result = cli("validate", path)
    assert result.exit_code == 2 and result.stderr.startswith("error: ") and "Traceback" not in result.output


def test_huge_values_are_shortened_in_messages(cli, write_config, tmp_path):
    huge = "x" * 10_000_000
    for args in (["--set", f"train.epochs={huge}"], ["--set", f"name={huge}"], ["--set", f"data.dataset={huge}.csv"]):
        result = cli("validate", write_config(), *args)
        assert result.exit_code == 2 and "Traceback" not in result.output, result.stderr[:500]
        assert len(result.stderr) < 2000 and "characters" in result.stderr


def test_a_large_config_file_is_refused_without_parsing(cli, tmp_path):
    path = tmp_path / "large.yaml"
    path.write_text("".join(f"key{i}: {i}\n" for i in range(1_000_000)))
    assert_clean_error(cli("validate", path), "large.yaml", "larger than 1,048,576 bytes")


def test_validate_checks_the_sweep_section(cli, write_config):
    good = cli("validate", write_config(sweep={"grid": {"optimizer.lr": [0.1, 0.01]}}))
    assert good.exit_code == 0 and "sweep: 2 trials, each config valid" in good.stderr
    assert_clean_error(cli("validate", write_config(sweep={"grdi": {}})), "sweep", "did you mean 'grid'")
    assert_clean_error(cli("validate", write_config(sweep={"grid": {"optimizer.lr": [0.1, -1]}})), "trial-001", "optimizer.lr")


def test_a_set_key_that_is_not_utf8_is_refused(cli, write_config):
    # What Python makes of `--set $'train.\xc3=1'`: the byte becomes a lone surrogate.
    assert_clean_error(cli("validate", write_config(), "--set", "train.\udcc3=1"), "--set train.\\udcc3", "not valid UTF-8")
