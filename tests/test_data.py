"""The data layer: generators, CSV / NPZ readers, labels, task inference, splits, scaling, and
how `prepare` puts them together (seed streams, train-only scaling, path resolution)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from conftest import small_config

from nntrain.config import load_config
from nntrain.data.dataset import SPLITS, Scaler, encode_labels, infer_task, split_indices
from nntrain.data.files import FeatureEncoder, read_csv, read_npz, read_table
from nntrain.data.generators import GENERATORS
from nntrain.engine.losses import LOSSES
from nntrain.errors import NntrainError
from nntrain.train.experiment import load_dataset, prepare, seed_streams


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def raises(match: str | None = None):
    return pytest.raises(NntrainError, match=match)


# --- generators ---------------------------------------------------------------------------


CLASSIFIERS = ["xor", "spirals", "moons", "circles", "blobs", "linear"]


SEQUENCES = {"adding": "regression", "parity": "classification", "sine_wave": "regression", "copy_memory": "classification"}  # test_generators.py


def test_registry_holds_every_documented_generator():
    assert set(GENERATORS) == {"xor", "spirals", "moons", "circles", "blobs", "linear", "sine", *SEQUENCES}
    for name in CLASSIFIERS:
        assert GENERATORS[name].task == "classification"
    assert GENERATORS["sine"].task == "regression"
    for name, task in SEQUENCES.items():
        assert GENERATORS[name].task == task


@pytest.mark.parametrize("name", CLASSIFIERS + ["sine"])
@pytest.mark.parametrize("samples", [4, 37, 200])
def test_generator_shapes_and_types(name, samples):
    X, y = GENERATORS[name](rng(1), samples=samples)
    width = 1 if name == "sine" else 2
    assert X.shape == (samples, width)
    assert y.shape == (samples,)
    assert X.dtype == np.float64
    assert np.isfinite(X).all() and np.isfinite(y).all()
    if name == "sine":
        assert y.dtype.kind == "f"
    else:
        assert y.dtype.kind in "iu"


@pytest.mark.parametrize("name", ["xor", "moons", "circles", "linear"])
def test_binary_generators_label_range(name):
    _, y = GENERATORS[name](rng(2), samples=400)
    assert set(np.unique(y).tolist()) == {0, 1}


@pytest.mark.parametrize("name, default", [("spirals", 3), ("blobs", 3)])
@pytest.mark.parametrize("classes", [None, 2, 5, 7])
def test_classes_option_is_respected_and_balanced(name, default, classes):
    samples = 353  # not a multiple of any `classes`: counts may differ by one
    kwargs = {"samples": samples} if classes is None else {"samples": samples, "classes": classes}
    _, y = GENERATORS[name](rng(3), **kwargs)
    k = default if classes is None else classes
    assert sorted(np.unique(y).tolist()) == list(range(k))
    counts = np.bincount(y, minlength=k)
    assert counts.sum() == samples
    assert counts.max() - counts.min() <= 1


@pytest.mark.parametrize("name", ["moons", "circles"])
@pytest.mark.parametrize("samples", [400, 401])
def test_two_class_generators_are_balanced(name, samples):
    _, y = GENERATORS[name](rng(4), samples=samples)
    counts = np.bincount(y)
    assert counts.max() - counts.min() <= 1


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_generators_are_deterministic_for_a_seed(name):
    X1, y1 = GENERATORS[name](rng(5), samples=100)
    X2, y2 = GENERATORS[name](rng(5), samples=100)
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(y1, y2)
    X3, y3 = GENERATORS[name](rng(6), samples=100)
    assert not np.array_equal(X1, X3)


def test_generators_draw_only_from_the_given_rng():
    state = np.random.get_state()
    a = GENERATORS["spirals"](rng(7), samples=50)[0]
    np.random.seed(12345)  # the global NumPy RNG must not matter
    b = GENERATORS["spirals"](rng(7), samples=50)[0]
    np.random.set_state(state)
    np.testing.assert_array_equal(a, b)


def test_linear_without_noise_is_separable_by_its_line():
    X, y = GENERATORS["linear"](rng(8), samples=1000, noise=0.0)
    assert ((X >= -1) & (X <= 1)).all()
    side = X[:, 0] - 0.5 * X[:, 1]
    np.testing.assert_array_equal(y, (side > 0).astype(int))
    assert 0 < y.sum() < len(y)


def test_linear_default_noise_is_zero_and_noise_blurs_the_boundary():
    X, y = GENERATORS["linear"](rng(9), samples=1000)
    np.testing.assert_array_equal(y, (X[:, 0] - 0.5 * X[:, 1] > 0).astype(int))
    Xn, yn = GENERATORS["linear"](rng(9), samples=1000, noise=0.5)
    assert not np.array_equal(yn, (Xn[:, 0] - 0.5 * Xn[:, 1] > 0).astype(int))


@pytest.mark.parametrize("factor", [0.3, 0.5, 0.8])
def test_circles_without_noise_have_radius_factor_and_one(factor):
    X, y = GENERATORS["circles"](rng(10), samples=300, noise=0.0, factor=factor)
    radius = np.linalg.norm(X, axis=1)
    np.testing.assert_allclose(radius[y == 1], factor, rtol=1e-12)
    np.testing.assert_allclose(radius[y == 0], 1.0, rtol=1e-12)


def test_circles_noise_moves_points_off_the_circles():
    X, y = GENERATORS["circles"](rng(10), samples=300, noise=0.05)
    radius = np.linalg.norm(X, axis=1)
    assert np.abs(radius[y == 1] - 0.5).max() > 1e-3
    assert abs(radius[y == 1].mean() - 0.5) < 0.05
    assert abs(radius[y == 0].mean() - 1.0) < 0.05


def test_xor_without_noise_labels_opposite_signs():
    X, y = GENERATORS["xor"](rng(11), samples=500, noise=0.0)
    assert set(np.abs(X).ravel().tolist()) == {1.0}
    np.testing.assert_array_equal(y, (np.sign(X[:, 0]) != np.sign(X[:, 1])).astype(int))


def test_moons_without_noise_lie_on_their_half_circles():
    X, y = GENERATORS["moons"](rng(12), samples=400, noise=0.0)
    upper, lower = X[y == 0], X[y == 1]
    np.testing.assert_allclose(np.hypot(upper[:, 0], upper[:, 1]), 1.0)
    assert (upper[:, 1] >= 0).all()
    np.testing.assert_allclose(np.hypot(1 - lower[:, 0], 0.5 - lower[:, 1]), 1.0)
    assert (lower[:, 1] <= 0.5).all()


def test_spirals_radius_in_unit_disk_and_noise_free_arms_are_distinct():
    X, y = GENERATORS["spirals"](rng(13), samples=600, classes=3, noise=0.0)
    assert (np.linalg.norm(X, axis=1) < 1).all()
    # Without noise, angle = 4*y + 4*r with r = |x|: the label is recoverable exactly.
    r = np.linalg.norm(X, axis=1)
    theta = np.arctan2(X[:, 0], X[:, 1])
    predicted = np.sin(4 * y + 4 * r), np.cos(4 * y + 4 * r)
    np.testing.assert_allclose(np.sin(theta), predicted[0], atol=1e-9)
    np.testing.assert_allclose(np.cos(theta), predicted[1], atol=1e-9)


def test_blobs_cluster_around_one_centre_per_class():
    X, y = GENERATORS["blobs"](rng(14), samples=500, classes=4, noise=0.01)
    centres = np.array([X[y == c].mean(axis=0) for c in range(4)])
    assert (np.abs(centres) <= 10.1).all()
    for c in range(4):
        assert np.abs(X[y == c] - centres[c]).max() < 0.1
    spread = np.linalg.norm(centres[:, None] - centres[None], axis=-1)
    assert spread[np.triu_indices(4, 1)].min() > 0.1


def test_sine_without_noise_is_exact():
    X, y = GENERATORS["sine"](rng(15), samples=300, noise=0.0)
    assert ((X >= -np.pi) & (X <= np.pi)).all()
    np.testing.assert_allclose(y, np.sin(X[:, 0]))
    Xn, yn = GENERATORS["sine"](rng(15), samples=300, noise=0.1)
    assert 0.05 < np.std(yn - np.sin(Xn[:, 0])) < 0.2


# --- read_csv -----------------------------------------------------------------------------


def test_read_csv_target_by_name(tmp_path):
    path = write(tmp_path / "d.csv", "a,label,b\n1,0,2\n3,1,4.5\n-1e-3,1,0\n")
    X, y, names = read_csv(path, "label")
    assert names == ["a", "b"]
    assert X.dtype == np.float64
    np.testing.assert_array_equal(X, [[1, 2], [3, 4.5], [-1e-3, 0]])
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y, [0, 1, 1])


@pytest.mark.parametrize("target", [1, -2, "label"])
def test_read_csv_target_by_index_positive_and_negative(tmp_path, target):
    path = write(tmp_path / "d.csv", "a,label,b\n1,7,2\n3,8,4\n")
    X, y, names = read_csv(path, target)
    assert names == ["a", "b"]
    np.testing.assert_array_equal(X, [[1, 2], [3, 4]])
    np.testing.assert_array_equal(y, [7, 8])


def test_read_csv_first_column_by_negative_index(tmp_path):
    path = write(tmp_path / "d.csv", "t,a,b\n5,1,2\n6,3,4\n")
    X, y, names = read_csv(path, -3)
    assert names == ["a", "b"]
    np.testing.assert_array_equal(y, [5, 6])
    np.testing.assert_array_equal(X, [[1, 2], [3, 4]])


def test_read_csv_default_target_is_last_column(tmp_path):
    path = write(tmp_path / "d.csv", " a , b ,y\n1,2,3\n4,5,6\n")
    X, y, names = read_csv(path)
    assert names == ["a", "b"]  # header names are stripped
    np.testing.assert_array_equal(X, [[1, 2], [4, 5]])
    np.testing.assert_array_equal(y, [3, 6])


@pytest.mark.parametrize("target", [3, -4, 10])
def test_read_csv_target_index_out_of_range(tmp_path, target):
    path = write(tmp_path / "d.csv", "a,b,c\n1,2,3\n")
    with raises("out of range") as e:
        read_csv(path, target)
    assert e.value.key == "data.target"


def test_read_csv_string_labels_stay_strings(tmp_path):
    path = write(tmp_path / "d.csv", "x0,x1,species\n1,2,setosa\n3,4, virginica \n5,6,setosa\n")
    X, y, _ = read_csv(path)
    assert y.dtype.kind == "U"
    assert y.tolist() == ["setosa", "virginica", "setosa"]  # whitespace stripped
    assert X.shape == (3, 2)


def test_read_csv_mixed_labels_are_strings(tmp_path):
    path = write(tmp_path / "d.csv", "x,y\n1,1\n2,two\n")
    _, y, _ = read_csv(path)
    assert y.dtype.kind == "U"
    assert y.tolist() == ["1", "two"]


def test_read_csv_handles_bom_and_crlf(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes("\ufeffa,b,t\r\n1,2,3\r\n4,5,6\r\n".encode("utf-8"))
    X, y, names = read_csv(path, "a")
    assert names == ["b", "t"]
    np.testing.assert_array_equal(y, [1, 4])


def test_read_csv_skips_blank_lines(tmp_path):
    path = write(tmp_path / "d.csv", "a,b,t\n\n1,2,0\n   \n , , \n3,4,1\n\n")
    X, y, _ = read_csv(path)
    np.testing.assert_array_equal(X, [[1, 2], [3, 4]])
    np.testing.assert_array_equal(y, [0, 1])


def _error(path, target=None) -> str:
    with pytest.raises(NntrainError) as e:
        read_csv(path, target)
    return str(e.value)


def test_read_csv_non_numeric_cell_names_line_and_column(tmp_path):
    path = write(tmp_path / "d.csv", "a,b,t\n1,2,0\n3,abc,1\n")
    msg = _error(path)
    assert "d.csv" in msg and "line 3" in msg and "'b'" in msg and "'abc'" in msg


def test_read_csv_line_numbers_count_blank_lines_like_an_editor(tmp_path):
    # header = line 1, data on 2, blank 3, data 4, blank 5, blank 6, bad row on line 7
    path = write(tmp_path / "d.csv", "a,b,t\n1,2,0\n\n3,4,1\n\n\n5,x,1\n")
    msg = _error(path)
    assert "line 7" in msg and "'b'" in msg


def test_read_csv_line_numbers_count_quoted_newlines(tmp_path):
    path = write(tmp_path / "d.csv", 'a,b,t\n1,2,"two\nlines"\n3,oops,1\n')
    msg = _error(path)
    assert "line 4" in msg and "'b'" in msg


def test_read_csv_empty_feature_cell(tmp_path):
    path = write(tmp_path / "d.csv", "a,b,t\n1,2,0\n\n,4,1\n")
    msg = _error(path)
    assert "line 4" in msg and "'a'" in msg


def test_read_csv_empty_target_cell(tmp_path):
    path = write(tmp_path / "d.csv", "a,b,t\n1,2,0\n3,4,\n")
    msg = _error(path)
    assert "line 3" in msg and "'t'" in msg and "empty" in msg


@pytest.mark.parametrize("cell, shown", [("inf", "inf"), ("-inf", "-inf"), ("Infinity", "inf"), ("1e999", "inf")])
def test_read_csv_non_finite_feature(tmp_path, cell, shown):
    """An infinite cell is refused, naming the value as it was parsed."""
    path = write(tmp_path / "d.csv", f"a,b,t\n1,2,0\n3,4,1\n5,{cell},1\n")
    msg = _error(path)
    assert "line 4" in msg and "'b'" in msg and f"'{shown}' is not a finite number" in msg


@pytest.mark.parametrize("cell", ["nan", "NaN", "NAN"])
def test_read_csv_nan_is_a_missing_value(tmp_path, cell):
    path = write(tmp_path / "d.csv", f"a,b,t\n1,2,0\n3,4,1\n5,{cell},1\n")
    msg = _error(path)
    assert "line 4, column 'b': missing value (set data.missing: drop" in msg and "missing in b 1 row)" in msg
    assert "not a finite number" not in msg


@pytest.mark.parametrize("row", ["1,2", "1,2,3,4"])
def test_read_csv_ragged_row(tmp_path, row):
    path = write(tmp_path / "d.csv", f"a,b,t\n1,2,0\n{row}\n")
    msg = _error(path)
    fields = len(row.split(","))
    assert "line 3" in msg and f"{fields} fields" in msg and "header has 3" in msg


def test_read_csv_missing_target_name_suggests_a_column(tmp_path):
    path = write(tmp_path / "d.csv", "width,height,label\n1,2,0\n")
    with raises() as e:
        read_csv(path, "lable")
    msg = str(e.value)
    assert e.value.key == "data.target"
    assert "'lable'" in msg and "did you mean 'label'" in msg
    assert "width, height, label" in msg


def test_read_csv_empty_file(tmp_path):
    path = write(tmp_path / "empty.csv", "")
    msg = _error(path)
    assert "empty.csv" in msg and "empty" in msg


def test_read_csv_header_only(tmp_path):
    for text in ["a,b,t\n", "a,b,t\n\n\n"]:
        path = write(tmp_path / "h.csv", text)
        msg = _error(path)
        assert "no data rows" in msg


def refused(result, *parts):
    """A CLI result that is a clean data error: exit 2, every part in the message, no traceback or numpy warning."""
    assert result.exit_code == 2, result.output
    for part in parts:
        assert part in result.stderr, result.stderr
    for bad in ("internal error", "Traceback", "Warning"):
        assert bad not in result.output, result.output


def _points(n=60, labels=("0", "1")) -> str:
    """CSV text: two features that separate len(labels) classes, the label last."""
    X = rng(5).normal(size=(n, 2))
    return "x0,x1,label\n" + "".join(f"{a + 4 * (i % len(labels)):.6f},{b:.6f},{labels[i % len(labels)]}\n" for i, (a, b) in enumerate(X))


def _csv_run(cli, write_config, tmp_path, text: str, run="run"):
    """A run trained for one epoch on a CSV with `text`; its directory."""
    write(tmp_path / "train.csv", text)
    classes = len({line.rsplit(",", 1)[1] for line in text.splitlines()[1:]})
    config = write_config(
        "csv.yaml", data={"dataset": str(tmp_path / "train.csv"), "options": {}},
        model={"layers": [{"linear": 8}, "relu", {"linear": classes}]}, train={"epochs": 1, "batch_size": 16},
    )
    result = cli("fit", config, "--run-dir", tmp_path / run, "-q")
    assert result.exit_code == 0, result.output
    return config, tmp_path / run


@pytest.mark.filterwarnings("error")
def test_corrupt_csv_gz_is_a_data_error_in_validate_eval_and_predict(cli, write_config, tmp_path):
    """One flipped byte in the deflate stream: zlib / gzip errors become `error: FILE: ...`, exit 2."""
    import gzip

    _, run = _csv_run(cli, write_config, tmp_path, _points())
    packed = bytearray(gzip.compress(_points(400).encode(), mtime=0))
    packed[len(packed) // 2] ^= 0x55
    (tmp_path / "bad.csv.gz").write_bytes(bytes(packed))
    config = write_config("bad.yaml", data={"dataset": str(tmp_path / "bad.csv.gz"), "options": {}})
    for args in [("validate", config), ("eval", run, "--data", tmp_path / "bad.csv.gz"), ("predict", run, tmp_path / "bad.csv.gz")]:
        refused(cli(*args), "bad.csv.gz", "gzip data is damaged")


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("cut.csv.gz", lambda text, gz: gz(text)[:-30], "gzip data is damaged or truncated"),
        ("plain.csv.gz", lambda text, gz: text.encode(), "gzip data is damaged or truncated (Not a gzipped file"),
        ("latin1.csv", lambda text, gz: (text + "1,2,caf\xe9\n").encode("latin-1"), "latin1.csv, line 62: not UTF-8 text (byte 0xe9"),
        ("utf16.csv", lambda text, gz: text.encode("utf-16-le"), "utf16.csv, line 1: a NUL byte"),
        ("nul.csv", lambda text, gz: "\n".join(l if i != 3 else "0.5,\0,1" for i, l in enumerate(text.split("\n"))).encode(),
         "nul.csv, line 4: a NUL byte"),
        ("quote.csv", lambda text, gz: (text.replace("\n", '\n"', 1) + text[12:] * 200).encode(),
         "a field is longer than 131,072 characters (a quote \" that opens a field and is never closed?)"),
        ("quote2.csv", lambda text, gz: "\n".join('"' * (i == 2) + l for i, l in enumerate(text.split("\n"))).encode(),
         "quote2.csv, line 3: 1 fields, the header has 3; a quoted field runs from there to line 61 (a quote"),
    ],
)
def test_undecodable_csv_files_are_errors_naming_file_and_line(tmp_path, name, content, message):
    import gzip

    (tmp_path / name).write_bytes(content(_points(), lambda t: gzip.compress(t.encode(), mtime=0)))
    assert message in _error(tmp_path / name)
    with raises(re.escape(message.split(":")[0])):  # predict reads the same way
        read_table(tmp_path / name, encoder=FeatureEncoder(["x0", "x1"]), with_target=False)


def test_wide_header_is_read_in_linear_time(tmp_path):
    """40,000 columns took 27 s with a header.count / header.index per column; a dict makes it instant."""
    import time

    n = 40_000
    header = ",".join(f"c{j}" for j in range(n))
    rows = "".join(",".join(["1.5"] * n) + f",{i % 2}\n" for i in range(20))
    path = write(tmp_path / "wide.csv", f"{header},label\n{rows}")
    start = time.perf_counter()
    table = read_table(path, target="label")
    assert time.perf_counter() - start < 5  # about 0.5 s; the quadratic version took 27 s
    assert table.X.shape == (20, n) and table.encoder.columns[-1] == f"c{n - 1}"
    write(path, f"{header},c7,label\n")
    assert "['c7'] more than once" in _error(path)


def test_labels_beyond_float64_integers_stay_distinct_and_exact(tmp_path):
    """10**30, 10**30 + 1 and 10**30 + 2 are one float64 (and an int64 cast made them -2**63)."""
    big = [10**30, 10**30 + 1, 10**30 + 2]
    path = write(tmp_path / "big.csv", "a,t\n" + "".join(f"{i * 7 % 10},{big[i % 3]}\n" for i in range(9)) + "3,1e30\n")
    _, y, _ = read_csv(path)
    assert y.dtype == object and y.tolist() == [*big * 3, 10**30]  # 1e30 written as a float is 10**30 exactly
    labels, classes = encode_labels(y, "classification")
    assert classes == [str(v) for v in big] and labels.tolist() == [0, 1, 2] * 3 + [0]
    values, _ = encode_labels(y, "regression")
    assert values.dtype == np.float64 and values[0] == 1e30
    assert infer_task(None, None, y, ("regression", "classification")) == "regression"  # numbers, not strings
    # float64, uint64 and int64 labels beyond what the other type holds: never merged or renamed
    _, classes = encode_labels(np.array([1e30, 1e30 * (1 + 2**-52), 1e30]), "classification")
    assert classes == [str(int(1e30)), str(int(1e30 * (1 + 2**-52)))]
    _, classes = encode_labels(np.array([2**64 - 1, 2**64 - 2], dtype=np.uint64), "classification")
    assert classes == [str(2**64 - 2), str(2**64 - 1)]
    np.savez(tmp_path / "i.npz", X=np.zeros((3, 1)), y=np.array([2**53, 2**53 + 1, 2**53], dtype=np.int64))
    _, classes = encode_labels(read_npz(tmp_path / "i.npz")[1], "classification")
    assert classes == [str(2**53), str(2**53 + 1)]


@pytest.mark.filterwarnings("error")
def test_csv_labels_beyond_int64_train_and_predict_by_their_exact_names(cli, write_config, tmp_path):
    big = [str(10**30), str(10**30 + 1), str(10**30 + 2)]
    config, run = _csv_run(cli, write_config, tmp_path, _points(90, big))
    result = cli("validate", config)
    assert result.exit_code == 0 and "Warning" not in result.output, result.output
    predicted = cli("predict", run, tmp_path / "train.csv")
    assert predicted.exit_code == 0, predicted.output
    assert predicted.stdout.splitlines()[0] == "class," + ",".join(f"p_{c}" for c in big)
    assert {line.split(",")[0] for line in predicted.stdout.splitlines()[1:]} <= set(big)


def _unnamed_csv(path: Path, header: str, n: int = 40) -> Path:
    """`header` over n rows: an unnamed column holds R-style row names 1..n (empty cells when it is the
    last one: a trailing comma), x0 and x1 genuine features, label the class."""
    names = header.split(",")
    cell = {"x0": lambda i: f"{i * 7 % 10}", "x1": lambda i: f"{i * 3 % 4}", "label": lambda i: f"{i % 2}"}
    trailing = lambda i: ""
    rows = [",".join(cell.get(name, trailing if j == len(names) - 1 else lambda i: f"{i + 1}")(i) for j, name in enumerate(names))
            for i in range(n)]
    return write(path, f"{header}\n" + "\n".join(rows) + "\n")


@pytest.mark.parametrize(
    "header, unnamed, features, target",
    [
        (",x1,label", "unnamed_1", ["x1"], None),  # R's write.csv / pandas' to_csv row names
        ("x0,,label", "unnamed_2", ["x0"], None),
        ("x0,x1,label,", "unnamed_4", ["x0", "x1"], "label"),  # a comma at the end of the header, the target named
    ],
)
def test_a_column_with_no_name_is_named_by_position_and_ignored(cli, write_config, tmp_path, header, unnamed, features, target):
    """A row-number column (R's write.csv, pandas' to_csv) must not silently become a feature: it is ignored, and said so."""
    _unnamed_csv(tmp_path / "u.csv", header)
    data = {"dataset": str(tmp_path / "u.csv"), "options": {}, **({"target": target} if target else {})}
    model = {"layers": [{"linear": 8}, "relu", {"linear": 2}]}
    result = cli("validate", write_config(data=data, model=model))
    assert result.exit_code == 0, result.output
    assert re.search(rf"^  {unnamed} +ignored: .*\(no name in the header", result.stderr, re.M), result.stderr
    assert f"{len(features)} features, {len(features)} inputs after encoding" in result.stderr, result.stderr
    for name in features:
        assert re.search(rf"^  {name} +feature: number", result.stderr, re.M), result.stderr
    assert re.search(r"^  label +target", result.stderr, re.M), result.stderr
    X, _, names = read_csv(tmp_path / "u.csv", "label")
    assert names == features and X.shape == (40, len(features))


def test_a_column_with_no_name_is_used_when_data_columns_names_it(cli, write_config, tmp_path):
    _unnamed_csv(tmp_path / "u.csv", "x0,,label")
    data = {"dataset": str(tmp_path / "u.csv"), "options": {}, "columns": {"features": ["x0", "unnamed_2"]}}
    result = cli("validate", write_config(data=data, model={"layers": [{"linear": 8}, "relu", {"linear": 2}]}))
    assert result.exit_code == 0, result.output
    assert "2 features, 2 inputs after encoding" in result.stderr, result.stderr
    assert re.search(r"^  unnamed_2 +feature: number", result.stderr, re.M), result.stderr
    data["columns"] = {"ignore": ["unnamed_2"]}  # naming it under another key is fine too
    result = cli("validate", write_config(data=data, model={"layers": [{"linear": 8}, "relu", {"linear": 2}]}))
    assert result.exit_code == 0 and re.search(r"^  unnamed_2 +ignored", result.stderr, re.M), result.output


@pytest.mark.parametrize(
    "header, message",
    [
        ("x0,x1,label,", "u.csv: the target is the last column by default, and it has no name in the header "
                         "(a comma at the end of the header line?); name it, or set data.target"),
        (",,", "u.csv, line 1: the header row has no column names"),
        ("\n \n , , ", "u.csv, line 3: the header row has no column names"),
    ],
)
def test_header_names_that_leave_no_target_are_refused(cli, write_config, tmp_path, header, message):
    """A trailing comma with the default target (the last column) would make an empty column the target."""
    fields = header.splitlines()[-1].count(",") + 1
    rows = "".join(",".join([f"{i * 7 % 10}", f"{i % 2}", f"{i % 2}"] + [""] * (fields - 3)) + "\n" for i in range(40))
    write(tmp_path / "u.csv", f"{header}\n{rows}")
    refused(cli("validate", write_config(data={"dataset": str(tmp_path / "u.csv"), "options": {}})), message)


def test_blank_lines_before_the_header_are_skipped(tmp_path):
    """Documented: the first non-blank row is the header."""
    X, y, names = read_csv(write(tmp_path / "b.csv", "\n   \n\na,b,t\n1,2,0\n3,4,1\n"))
    assert names == ["a", "b"] and y.tolist() == [0, 1]


@pytest.mark.filterwarnings("error")
def test_generator_noise_is_bounded(cli, write_config):
    """noise 1e308 overflowed the generated data (numpy warnings, then infinite features)."""
    result = cli("validate", write_config(data={"options": {"samples": 300, "classes": 3, "noise": 1e308}}))
    refused(result, "data.options.noise", "less than or equal to 1000000")
    assert cli("validate", write_config(data={"options": {"samples": 300, "classes": 3, "noise": 1e6}})).exit_code == 0


# --- read_npz -----------------------------------------------------------------------------


def test_read_npz_reads_X_and_y(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, X=np.arange(6, dtype=np.int32).reshape(3, 2), y=np.array([0, 1, 0]), extra=np.zeros(2))
    X, y, names = read_npz(path)
    assert X.dtype == np.float64 and y.dtype == np.float64
    np.testing.assert_array_equal(X, [[0, 1], [2, 3], [4, 5]])
    np.testing.assert_array_equal(y, [0, 1, 0])
    assert names == ["x0", "x1"]


def test_read_npz_string_labels_and_2d_targets(tmp_path):
    path = tmp_path / "s.npz"
    np.savez(path, X=np.zeros((2, 3)), y=np.array(["cat", "dog"]))
    _, y, names = read_npz(path)
    assert y.dtype.kind == "U" and y.tolist() == ["cat", "dog"]
    assert names == ["x0", "x1", "x2"]
    path = tmp_path / "r.npz"
    np.savez(path, X=np.zeros((4, 1)), y=np.ones((4, 2), dtype=np.float32))
    _, y, _ = read_npz(path)
    assert y.shape == (4, 2) and y.dtype == np.float64


@pytest.mark.parametrize("arrays", [{"X": np.zeros((3, 2))}, {"y": np.zeros(3)}, {"features": np.zeros((3, 2)), "y": np.zeros(3)}])
def test_read_npz_missing_array(tmp_path, arrays):
    path = tmp_path / "d.npz"
    np.savez(path, **arrays)
    with raises("needs 'X' and 'y'"):
        read_npz(path)


class _Tripwire:
    """Unpickling this object creates `path`: proof that something was unpickled."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


@pytest.mark.parametrize("key", ["X", "y"])
def test_read_npz_never_unpickles_object_arrays(tmp_path, key):
    marker = tmp_path / "unpickled"
    arrays = {"X": np.zeros((1, 2)), "y": np.zeros(1)}
    arrays[key] = np.array([_Tripwire(marker)], dtype=object)
    path = tmp_path / "evil.npz"
    np.savez(path, **arrays)
    with raises("evil.npz"):
        read_npz(path)
    assert not marker.exists()
    # The tripwire works: loading with pickles allowed does set it off.
    np.load(path, allow_pickle=True)[key]
    assert marker.exists()


def test_read_npz_plain_object_array_is_an_error(tmp_path):
    path = tmp_path / "obj.npz"
    np.savez(path, X=np.zeros((1, 2)), y=np.array([{"a": 1}], dtype=object))
    with raises("not a readable .npz"):
        read_npz(path)


@pytest.mark.parametrize("content", [b"", b"this is not a zip file\n", b"PK\x03\x04truncated"])
def test_read_npz_not_a_zip(tmp_path, content):
    path = tmp_path / "bad.npz"
    path.write_bytes(content)
    with raises("bad.npz"):
        read_npz(path)


def test_read_npz_a_pickle_is_not_loaded(tmp_path):
    import pickle

    marker = tmp_path / "unpickled"
    path = tmp_path / "pickle.npz"
    path.write_bytes(pickle.dumps(_Tripwire(marker)))
    with raises("pickle.npz"):
        read_npz(path)
    assert not marker.exists()


def test_read_npz_a_single_npy_array_is_an_error(tmp_path):
    # A .npy file (not a zip archive) renamed to .npz: np.load returns a bare array.
    path = tmp_path / "array.npz"
    with open(path, "wb") as f:
        np.save(f, np.zeros((3, 2)))
    with raises("array.npz"):
        read_npz(path)


def test_read_npz_nan_in_X_names_the_row(tmp_path):
    X = np.ones((5, 2))
    X[3, 1] = np.nan
    path = tmp_path / "d.npz"
    np.savez(path, X=X, y=np.zeros(5))
    with raises("row 3"):
        read_npz(path)
    X[3, 1] = 1
    X[1, 0] = -np.inf
    np.savez(path, X=X, y=np.zeros(5))
    with raises("row 1"):
        read_npz(path)


def test_read_npz_mismatched_lengths(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, X=np.zeros((5, 2)), y=np.zeros(4))
    with raises("5 rows but y has 4"):
        read_npz(path)


def test_read_npz_scalar_y_is_an_error(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, X=np.zeros((3, 2)), y=np.float64(1.0))
    with raises("d.npz"):
        read_npz(path)


@pytest.mark.parametrize("X", [np.zeros(4), np.zeros((2, 1, 2, 2, 2)), np.array([["a", "b"], ["c", "d"]])])
def test_read_npz_X_must_be_2d_to_4d_numeric(tmp_path, X):
    path = tmp_path / "d.npz"
    np.savez(path, X=X, y=np.zeros(len(X)))
    with raises(re.escape(f"X must be a 2-D to 4-D numeric array, got shape {X.shape}")):
        read_npz(path)


# --- read_features (predict) ----------------------------------------------------------------


def read_features(path, names):
    """What predict reads: the features of a saved run's (numeric) columns, no target."""
    return read_table(path, encoder=FeatureEncoder(names), with_target=False).X


def test_read_features_by_name_ignores_extras_and_reorders(tmp_path):
    path = write(tmp_path / "p.csv", "label,b,junk,a\nx,2,zzz,1\ny,4,,3\n")
    X = read_features(path, ["a", "b"])
    assert X.dtype == np.float64
    np.testing.assert_array_equal(X, [[1, 2], [3, 4]])


def test_read_features_positional_fallback(tmp_path):
    """Unnamed features (a generator's x0, x1) may come as columns in order, under any header."""
    path = write(tmp_path / "p.csv", "p,q\n1,2\n\n3,4\n")
    np.testing.assert_array_equal(read_features(path, ["x0", "x1"]), [[1, 2], [3, 4]])


def test_read_features_named_features_are_never_taken_by_position(tmp_path):
    """A model trained on named columns refuses a file whose header lacks them (no silent swap)."""
    path = write(tmp_path / "p.csv", "p,q\n1,2\n")
    with raises() as e:
        read_features(path, ["a", "b"])
    assert "['a', 'b']" in str(e.value)


@pytest.mark.parametrize("header", ["a,c,d", "a", "c"])
def test_read_features_wrong_columns(tmp_path, header):
    width = len(header.split(","))
    path = write(tmp_path / "p.csv", header + "\n" + ",".join(["1"] * width) + "\n")
    with raises() as e:
        read_features(path, ["a", "b"])
    assert "p.csv" in str(e.value) and "['a', 'b']" in str(e.value)


def test_read_features_bad_cell_names_the_line(tmp_path):
    path = write(tmp_path / "p.csv", "a,b\n1,2\n\n3,x\n")
    with raises("line 4"):
        read_features(path, ["a", "b"])
    path = write(tmp_path / "p.csv", "a,b\n1,2\n3\n")
    with raises("line 3"):
        read_features(path, ["a", "b"])


def test_read_features_empty_and_header_only(tmp_path):
    with raises("empty"):
        read_features(write(tmp_path / "e.csv", ""), ["a"])
    with raises("no data rows"):
        read_features(write(tmp_path / "h.csv", "a\n"), ["a"])


def test_read_features_rejects_non_finite_values(tmp_path):
    # Training data with NaN/inf is refused (read_csv); predicting on it must be refused too.
    path = write(tmp_path / "p.csv", "a,b\n1,2\n3,nan\n")
    with raises("line 3"):
        read_features(path, ["a", "b"])


# --- encode_labels ------------------------------------------------------------------------


def test_encode_string_labels():
    y, classes = encode_labels(np.array(["dog", "cat", "emu", "cat"]), "classification")
    assert classes == ["cat", "dog", "emu"]
    assert y.dtype == np.int64
    np.testing.assert_array_equal(y, [1, 0, 2, 0])


def test_encode_numeric_labels_sort_as_numbers():
    y, classes = encode_labels(np.array([10.0, 2.0, 0.0, 1.0, 2.0, 10.0]), "classification")
    assert classes == ["0", "1", "2", "10"]
    assert y.dtype == np.int64
    np.testing.assert_array_equal(y, [3, 2, 0, 1, 2, 3])


def test_encode_negative_and_integer_dtype_labels():
    y, classes = encode_labels(np.array([-1, 1, -1, 3]), "classification")
    assert classes == ["-1", "1", "3"]
    np.testing.assert_array_equal(y, [0, 1, 0, 2])


def test_encode_fractional_labels_suggest_regression():
    with raises("regression") as e:
        encode_labels(np.array([0.0, 0.5, 1.0]), "classification")
    assert e.value.key == "data.task"


def test_encode_with_the_runs_classes():
    y, classes = encode_labels(np.array(["b", "a"]), "classification", ["b", "a", "c"])
    assert classes == ["b", "a", "c"]
    np.testing.assert_array_equal(y, [0, 1])
    y, classes = encode_labels(np.array([10.0, 2.0]), "classification", ["0", "1", "2", "10"])
    np.testing.assert_array_equal(y, [3, 2])


def test_encode_unseen_label_is_an_error():
    with raises("'emu'") as e:
        encode_labels(np.array(["cat", "emu"]), "classification", ["cat", "dog"])
    assert "['cat', 'dog']" in str(e.value)
    with raises("'7'"):
        encode_labels(np.array([0.0, 7.0]), "classification", ["0", "1"])


def test_encode_regression():
    y, classes = encode_labels(np.array([0.5, 1.5]), "regression")
    assert classes is None and y.dtype == np.float64
    np.testing.assert_array_equal(y, [0.5, 1.5])
    with raises("non-numeric") as e:
        encode_labels(np.array(["a", "b"]), "regression")
    assert e.value.key == "data.task"


def test_encode_classification_needs_one_column():
    with raises("one column"):
        encode_labels(np.zeros((3, 2)), "classification")


# --- infer_task ---------------------------------------------------------------------------


def test_infer_task():
    numbers, strings = np.array([0.0, 1.0]), np.array(["a", "b"])
    both = LOSSES["mse"].tasks
    assert set(both) == {"classification", "regression"}
    only_classification = LOSSES["cross_entropy"].tasks
    assert only_classification == ("classification",)
    # declared wins over everything
    assert infer_task("regression", "classification", strings, only_classification) == "regression"
    assert infer_task("classification", "regression", numbers, both) == "classification"
    # then the generator's task
    assert infer_task(None, "regression", numbers, only_classification) == "regression"
    assert infer_task(None, "classification", numbers, both) == "classification"
    # then a loss with one task
    assert infer_task(None, None, numbers, only_classification) == "classification"
    assert infer_task(None, None, numbers, LOSSES["hinge"].tasks) == "classification"
    # then the labels
    assert infer_task(None, None, strings, both) == "classification"
    assert infer_task(None, None, numbers, both) == "regression"


# --- split_indices ------------------------------------------------------------------------


def _labels(counts, seed=0):
    y = np.concatenate([np.full(n, c) for c, n in enumerate(counts)])
    return rng(seed).permutation(y)


def _check_partition(splits, n):
    assert set(splits) == set(SPLITS)
    every = np.concatenate([splits[s] for s in SPLITS])
    assert len(every) == n and len(np.unique(every)) == n  # disjoint and complete
    np.testing.assert_array_equal(np.sort(every), np.arange(n))
    for s in SPLITS:
        assert splits[s].dtype == np.int64
        np.testing.assert_array_equal(splits[s], np.sort(splits[s]))


@pytest.mark.parametrize("counts", [[100, 100], [50, 30, 20], [203, 71, 11, 9], [7, 7, 7, 7, 7]])
@pytest.mark.parametrize("val, test", [(0.15, 0.15), (0.2, 0.1), (0.3, 0.0)])
def test_split_stratified(counts, val, test):
    y = _labels(counts)
    n = len(y)
    splits = split_indices(y, "classification", val, test, rng(1))
    _check_partition(splits, n)
    k = len(counts)
    for name, frac in [("val", val), ("test", test), ("train", 1 - val - test)]:
        rows = splits[name]
        assert abs(len(rows) - frac * n) <= k / 2 + 1e-9
        for c, n_c in enumerate(counts):
            in_split = int(np.sum(y[rows] == c))
            assert abs(in_split - frac * n_c) <= 1
            assert abs(in_split - len(rows) * n_c / n) <= 1


def test_split_regression_sizes():
    y = rng(2).normal(size=1000)
    splits = split_indices(y, "regression", 0.2, 0.1, rng(3))
    _check_partition(splits, 1000)
    assert (len(splits["train"]), len(splits["val"]), len(splits["test"])) == (700, 200, 100)


def test_split_is_shuffled_not_contiguous():
    y = np.zeros(1000)
    splits = split_indices(y, "regression", 0.2, 0.2, rng(4))
    assert splits["test"].max() - splits["test"].min() > 500
    assert not np.array_equal(splits["test"], np.arange(200))


def test_split_deterministic_for_a_seed():
    y = _labels([40, 60, 25])
    a = split_indices(y, "classification", 0.2, 0.2, rng(5))
    b = split_indices(y, "classification", 0.2, 0.2, rng(5))
    c = split_indices(y, "classification", 0.2, 0.2, rng(6))
    for s in SPLITS:
        np.testing.assert_array_equal(a[s], b[s])
    assert any(not np.array_equal(a[s], c[s]) for s in SPLITS)


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_split_zero_fractions_give_empty_splits(task):
    y = _labels([30, 20]) if task == "classification" else rng(7).normal(size=50)
    splits = split_indices(y, task, 0.0, 0.0, rng(8))
    assert len(splits["val"]) == 0 and len(splits["test"]) == 0
    np.testing.assert_array_equal(splits["train"], np.arange(50))
    assert splits["val"].dtype == np.int64 and splits["test"].dtype == np.int64
    splits = split_indices(y, task, 0.0, 0.2, rng(8))
    assert len(splits["val"]) == 0 and len(splits["test"]) == 10
    _check_partition(splits, 50)


# --- Scaler -------------------------------------------------------------------------------


def _data(rows=200, seed=9):
    r = rng(seed)
    return r.normal(loc=[5.0, -3.0, 100.0], scale=[2.0, 0.1, 30.0], size=(rows, 3))


def test_standardize_train_rows():
    X = _data()
    Z = Scaler("standardize").fit(X).transform(X, np.float64)
    np.testing.assert_allclose(Z.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(Z.std(axis=0), 1, rtol=1e-12)


def test_minmax_train_rows():
    X = _data()
    Z = Scaler("minmax").fit(X).transform(X, np.float64)
    np.testing.assert_allclose(Z.min(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(Z.max(axis=0), 1, rtol=1e-12)
    assert ((Z >= 0) & (Z <= 1 + 1e-12)).all()


@pytest.mark.parametrize("method", ["standardize", "minmax"])
def test_constant_column_stays_finite(method):
    X = _data()
    X[:, 1] = 4.2
    scaler = Scaler(method).fit(X)
    Z = scaler.transform(X, np.float64)
    assert np.isfinite(Z).all()
    # "a constant column stays as it is": factor 1, so the column becomes x - offset = 0
    assert scaler.factor[1] == 1.0
    np.testing.assert_allclose(Z[:, 1], 0, atol=1e-12)
    # a row outside the training range moves by its distance, not by that over a rounding error
    other = scaler.transform(np.full((2, 3), 5.2), np.float32)
    assert np.isfinite(other).all()
    np.testing.assert_allclose(other[:, 1], 1.0, atol=1e-6)


@pytest.mark.parametrize("method", ["standardize", "minmax"])
def test_scaler_statistics_come_only_from_fitted_rows(method):
    X = _data(300)
    X[200:] += 1000  # rows not fitted on are far away
    fitted = X[:200]
    scaler = Scaler(method).fit(fitted)
    if method == "standardize":
        np.testing.assert_allclose(scaler.offset, fitted.mean(axis=0))
        np.testing.assert_allclose(scaler.factor, fitted.std(axis=0))
    else:
        np.testing.assert_allclose(scaler.offset, fitted.min(axis=0))
        np.testing.assert_allclose(scaler.factor, fitted.max(axis=0) - fitted.min(axis=0))
    Z = scaler.transform(X[200:], np.float64)
    np.testing.assert_allclose(Z, (X[200:] - scaler.offset) / scaler.factor)
    assert (Z > 1).all()


@pytest.mark.parametrize("method", ["standardize", "minmax"])
def test_scaler_state_round_trip(method):
    X = _data()
    scaler = Scaler(method).fit(X)
    state = scaler.state_dict()
    assert set(state) == {"data.scale.offset", "data.scale.factor"}
    # state as saved in a checkpoint: plain arrays, possibly through an npz
    restored = Scaler.from_state(method, {k: np.array(v) for k, v in state.items()})
    np.testing.assert_array_equal(restored.transform(X, np.float64), scaler.transform(X, np.float64))
    Y = _data(10, seed=10)
    np.testing.assert_array_equal(restored.transform(Y, np.float32), scaler.transform(Y, np.float32))


def test_scaler_none():
    X = _data()
    scaler = Scaler("none").fit(X)
    assert scaler.state_dict() == {}
    np.testing.assert_array_equal(scaler.transform(X, np.float64), X)
    Z = scaler.transform(X, np.float32)
    assert Z.dtype == np.float32
    np.testing.assert_array_equal(Z, X.astype(np.float32))
    restored = Scaler.from_state("none", {})
    np.testing.assert_array_equal(restored.transform(X, np.float64), X)


@pytest.mark.parametrize("method", ["none", "standardize", "minmax"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scaler_transform_casts(method, dtype):
    X = _data()
    Z = Scaler(method).fit(X).transform(X, dtype)
    assert Z.dtype == dtype
    assert X.dtype == np.float64  # the input is not modified
    Z2 = Scaler(method).fit(X).transform(X, np.dtype(dtype))
    assert Z2.dtype == dtype


# --- prepare --------------------------------------------------------------------------------


def config(**sections):
    return load_config(None, [], raw=small_config(**sections))


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8, np.float64, bool])
def test_encode_labels_counting_path_equals_sorting_path(dtype):
    """Small non-negative integer labels are encoded by counting; the result is np.unique's."""
    rng = np.random.default_rng(0)
    y = rng.choice([0, 1] if dtype is bool else [0, 3, 7, 12], size=500).astype(dtype)
    for classes in (None, ["0", "1", "3", "5", "7", "12"] if dtype is not bool else ["0", "1"]):
        got, got_classes = encode_labels(y, "classification", classes)
        values, inverse = np.unique(y.astype(np.int64), return_inverse=True)
        want_classes = classes or [str(v) for v in values.tolist()]
        assert got_classes == want_classes and got.dtype == np.int64
        assert [want_classes[i] for i in got] == [str(int(v)) for v in y]


def test_prepare_dtype_float32():
    exp = prepare(config())
    assert exp.dtype == np.float32
    for split in SPLITS:
        X, y, t = exp.arrays(split)
        assert X.dtype == np.float32
        assert y.dtype == np.int64  # cross_entropy's targets are the class indices themselves
        assert len(X) == len(exp.splits[split])
    assert all(p.value.dtype == np.float32 for p in exp.network.params)
    # Held once: the data itself was scaled to float32, and splits are gathered from it.
    raw = load_dataset(exp.config, seed_streams(exp.config.seed)["data"], None)
    assert raw.X.dtype == np.float64 and exp.dataset.X.dtype == np.float32
    np.testing.assert_array_equal(exp.dataset.X, exp.scaler.transform(raw.X, np.float32))
    np.testing.assert_array_equal(exp.arrays("val")[0], exp.dataset.X[exp.splits["val"]])


def test_prepare_dtype_float64():
    exp = prepare(config(dtype="float64", loss="mse"))  # mse on one-hot rows: targets in the dtype
    X, y, t = exp.arrays("train")
    assert X.dtype == np.float64 and t.dtype == np.float64
    assert t.shape == (len(y), 3)
    np.testing.assert_array_equal(t.argmax(axis=1), y)
    assert all(p.value.dtype == np.float64 for p in exp.network.params)


def test_prepare_data_comes_from_the_data_stream():
    exp = prepare(config(seed=11))
    X, y = GENERATORS["spirals"](seed_streams(11)["data"], samples=300, classes=3, noise=0.2)
    np.testing.assert_array_equal(exp.dataset.X, exp.scaler.transform(X, np.float32))
    np.testing.assert_array_equal(exp.dataset.y, y)
    assert exp.dataset.task == "classification"
    assert exp.dataset.classes == ["0", "1", "2"]
    assert exp.dataset.feature_names == ["x0", "x1"]
    assert exp.config.data.task == "classification"


@pytest.mark.parametrize("scale", ["standardize", "minmax"])
def test_prepare_scaler_fitted_on_train_split_only(scale):
    exp = prepare(config(data={"scale": scale, "split": {"val": 0.3, "test": 0.2}}))
    X = load_dataset(exp.config, seed_streams(exp.config.seed)["data"], None).X
    train = X[exp.splits["train"]]
    if scale == "standardize":
        np.testing.assert_allclose(exp.scaler.offset, train.mean(axis=0))
        np.testing.assert_allclose(exp.scaler.factor, train.std(axis=0))
        assert not np.allclose(exp.scaler.offset, X.mean(axis=0), rtol=0, atol=1e-12)
        Xt = exp.arrays("train")[0]
        np.testing.assert_allclose(Xt.mean(axis=0), 0, atol=1e-5)
        np.testing.assert_allclose(Xt.std(axis=0), 1, atol=1e-5)
    else:
        np.testing.assert_allclose(exp.scaler.offset, train.min(axis=0))
        np.testing.assert_allclose(exp.scaler.factor, np.ptp(train, axis=0))
        Xt = exp.arrays("train")[0]
        np.testing.assert_allclose(Xt.min(axis=0), 0, atol=1e-6)
        np.testing.assert_allclose(Xt.max(axis=0), 1, atol=1e-6)
    for split in ("val", "test"):
        expected = ((X[exp.splits[split]] - exp.scaler.offset) / exp.scaler.factor).astype(np.float32)
        np.testing.assert_allclose(exp.arrays(split)[0], expected, rtol=1e-6)


def test_prepare_same_seed_same_splits_and_weights():
    a, b = prepare(config(seed=3)), prepare(config(seed=3))
    for s in SPLITS:
        np.testing.assert_array_equal(a.splits[s], b.splits[s])
    np.testing.assert_array_equal(a.dataset.X, b.dataset.X)
    assert len(a.network.params) == len(b.network.params) > 0
    for p, q in zip(a.network.params, b.network.params):
        assert p.key == q.key
        np.testing.assert_array_equal(p.value, q.value)
    c = prepare(config(seed=4))
    assert not np.array_equal(a.dataset.X, c.dataset.X)
    assert not np.array_equal(a.splits["test"], c.splits["test"])
    assert not np.array_equal(a.network.params[0].value, c.network.params[0].value)


def test_prepare_network_change_does_not_change_data_or_splits():
    a = prepare(config(seed=5))
    b = prepare(config(seed=5, model={"layers": [{"linear": 64}, "tanh", {"linear": 32}, "relu", {"linear": 3}]}))
    np.testing.assert_array_equal(a.dataset.X, b.dataset.X)
    np.testing.assert_array_equal(a.dataset.y, b.dataset.y)
    for s in SPLITS:
        np.testing.assert_array_equal(a.splits[s], b.splits[s])
    np.testing.assert_array_equal(a.scaler.offset, b.scaler.offset)
    assert a.network.params[0].value.shape != b.network.params[0].value.shape


def test_prepare_split_change_does_not_change_data_or_weights():
    a = prepare(config(seed=6))
    b = prepare(config(seed=6, data={"split": {"val": 0.3, "test": 0.1}}))
    raw = [load_dataset(e.config, seed_streams(6)["data"], None).X for e in (a, b)]  # before scaling
    np.testing.assert_array_equal(*raw)
    for p, q in zip(a.network.params, b.network.params):
        np.testing.assert_array_equal(p.value, q.value)


def test_prepare_splits_are_stratified_and_sized():
    exp = prepare(config(data={"split": {"val": 0.2, "test": 0.1}}))
    _check_partition(exp.splits, 300)
    y = exp.dataset.y
    for name, frac in [("val", 0.2), ("test", 0.1)]:
        np.testing.assert_array_equal(np.bincount(y[exp.splits[name]], minlength=3), [round(frac * 100)] * 3)


def _csv(path: Path, rows=40) -> Path:
    r = rng(12)
    X = r.normal(size=(rows, 2))
    labels = np.where(X[:, 0] > 0, "yes", "no")
    lines = ["f1,f2,answer"] + [f"{a:.17g},{b:.17g},{c}" for (a, b), c in zip(X, labels)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


CSV_MODEL = {"layers": [{"linear": 4}, "relu", {"linear": 2}]}


def test_prepare_relative_csv_path_resolves_against_base(tmp_path, monkeypatch):
    project = tmp_path / "project"
    _csv(project / "data" / "points.csv")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = config(data={"dataset": "data/points.csv", "options": {}}, model=CSV_MODEL)
    exp = prepare(cfg, base=project)
    assert exp.dataset.X.shape == (40, 2)
    assert exp.dataset.classes == ["no", "yes"]
    assert exp.dataset.feature_names == ["f1", "f2"]
    # without base, the relative path means nothing from here
    with raises("does not exist") as e:
        prepare(config(data={"dataset": "data/points.csv", "options": {}}, model=CSV_MODEL))
    assert e.value.key == "data.dataset"


def test_prepare_relative_csv_path_from_cwd_and_absolute(tmp_path, monkeypatch):
    path = _csv(tmp_path / "here" / "points.csv")
    monkeypatch.chdir(tmp_path / "here")
    exp = prepare(config(data={"dataset": "points.csv", "options": {}}, model=CSV_MODEL), base=tmp_path / "nowhere")
    assert exp.dataset.X.shape == (40, 2)
    exp = prepare(config(data={"dataset": str(path), "options": {}}, model=CSV_MODEL), base=tmp_path / "nowhere")
    assert exp.dataset.X.shape == (40, 2)


def test_prepare_csv_regression_target(tmp_path):
    r = rng(13)
    X = r.normal(size=(30, 3))
    lines = ["a,b,c,value"] + [",".join(repr(float(v)) for v in (*row, row.sum())) for row in X]
    write(tmp_path / "reg.csv", "\n".join(lines) + "\n")
    cfg = config(
        data={"dataset": "reg.csv", "options": {}}, model={"layers": [{"linear": 1}]}, loss="mse"
    )
    exp = prepare(cfg, base=tmp_path)
    assert exp.dataset.task == "regression" and exp.dataset.classes is None
    np.testing.assert_allclose(exp.dataset.y, X.sum(axis=1))
    _, y, t = exp.arrays("train")
    assert t.shape == (len(y), 1) and t.dtype == np.float32


def test_prepare_csv_regression_rejects_nan_target(tmp_path):
    # A NaN feature is refused with its line number; a NaN target must not slip through
    # and turn every training loss into NaN.
    write(tmp_path / "reg.csv", "a,value\n1,2\n2,nan\n3,4\n4,5\n5,6\n6,7\n7,8\n")
    cfg = config(
        data={"dataset": "reg.csv", "options": {}, "task": "regression"},
        model={"layers": [{"linear": 1}]},
        loss="mse",
    )
    with raises():
        prepare(cfg, base=tmp_path)


def test_prepare_single_class_is_an_error(tmp_path):
    write(tmp_path / "one.csv", "a,b\n1,x\n2,x\n3,x\n")
    with raises("single class"):
        prepare(config(data={"dataset": "one.csv", "options": {}}, model=CSV_MODEL), base=tmp_path)


def test_prepare_with_saved_classes_keeps_the_runs_order(tmp_path):
    _csv(tmp_path / "points.csv")
    saved = {"data.classes": np.array(["yes", "no"])}
    exp = prepare(config(data={"dataset": "points.csv", "options": {}, "scale": "none"}, model=CSV_MODEL),
                  base=tmp_path, saved=saved)
    assert exp.dataset.classes == ["yes", "no"]
    _, answers, _ = read_csv(tmp_path / "points.csv")
    np.testing.assert_array_equal(exp.dataset.y, (answers == "no").astype(int))


@pytest.mark.parametrize("scale", ["standardize", "none"])
def test_in_memory_fit_holds_the_data_once(tmp_path, scale):
    """Scaling happens in place and batches, splits and evaluations are gathered by row: training
    an in-memory float32 dataset allocates little beyond the data itself (tracemalloc sees numpy)."""
    import tracemalloc

    from nntrain.api import fit

    rng = np.random.default_rng(0)
    X = rng.standard_normal((40000, 200), dtype=np.float32)  # 30.5 MiB: a second copy of it would show
    np.savez(tmp_path / "d.npz", X=X, y=(X[:, 0] > 0).astype(np.int64))
    data_bytes = X.nbytes
    del X
    raw = small_config(
        model={"layers": [{"linear": 32}, "relu", {"linear": 2}]},
        train={"epochs": 2, "batch_size": 256},
    )
    raw["data"] = {"dataset": str(tmp_path / "d.npz"), "scale": scale, "split": {"val": 0.1, "test": 0.1}}
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        summary = fit(load_config(None, [], raw=raw), run_dir=tmp_path / "run")
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert summary["status"] == "completed" and summary["final"]["test"]["accuracy"] > 0.9
    # What comes on top is bounded by constants (chunks of a few MiB), not by the data's size.
    assert peak < data_bytes + 15 * 2**20, f"peak {peak / 2**20:.1f} MiB for {data_bytes / 2**20:.1f} MiB of data"


# --- sequences with lengths ------------------------------------------------------------------


def test_npz_lengths_are_read_and_checked(tmp_path):
    from nntrain.data.files import read_arrays

    X, y = np.zeros((4, 5, 2)), np.arange(4.0)
    np.savez(tmp_path / "ok.npz", X=X, y=y, lengths=np.array([1, 5, 3, 2], dtype=np.uint8))
    data = read_arrays(tmp_path / "ok.npz")
    assert data.lengths.tolist() == [1, 5, 3, 2] and data.lengths.dtype == np.int64 and data.sample_shape == (1, 5, 2)
    for lengths, message in ((np.array([1, 6, 3, 2]), "gives row 1 6 steps, but X's sequences have 5"),
                             (np.array([1, 0, 3, 2]), "lengths"), (np.array([1, 2, 3]), "lengths"),
                             (np.array([1.0, 2, 3, 4]), "lengths")):  # fmt: skip
        np.savez(tmp_path / "bad.npz", X=X, y=y, lengths=lengths)
        with pytest.raises(NntrainError, match=message):
            read_arrays(tmp_path / "bad.npz")
    np.savez(tmp_path / "images.npz", X=np.zeros((4, 1, 5, 2)), y=y, lengths=np.ones(4, dtype=np.int64))
    with pytest.raises(NntrainError, match="'lengths' are for sequences"):
        read_arrays(tmp_path / "images.npz")


def test_scaling_statistics_come_from_the_real_steps_alone():
    rng = np.random.default_rng(0)
    rows, steps, features = 50, 6, 2
    X = rng.normal(3.0, 2.0, (rows, steps, features))
    lengths = rng.integers(1, steps, rows)  # no row uses the last step
    real = np.arange(steps)[None, :] < lengths[:, None]
    padded = X.copy()
    padded[~real] = 1e9
    flat = padded.reshape(rows, -1)
    standardize = cfg_scale("standardize", "channel")
    scaler = Scaler.of(standardize, (steps, features)).fit_rows(flat, np.arange(rows), lengths=lengths)
    np.testing.assert_allclose(scaler.offset.reshape(steps, features)[0], X[real].mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(scaler.factor.reshape(steps, features)[3], X[real].std(axis=0), rtol=1e-12)
    per_column = Scaler.of(cfg_scale("standardize", "feature"), (steps, features)).fit_rows(flat, np.arange(rows), lengths=lengths)
    offsets = per_column.offset.reshape(steps, features)
    np.testing.assert_allclose(offsets[2], X[real[:, 2], 2].mean(axis=0), rtol=1e-12)
    assert (offsets[-1] == 0).all() and (per_column.factor.reshape(steps, features)[-1] == 1).all()  # never real
    minmax = Scaler.of(cfg_scale("minmax", "channel"), (steps, features)).fit_rows(flat, np.arange(rows), lengths=lengths)
    scaled = minmax.transform(flat, np.float64).reshape(rows, steps, features)[real]
    assert scaled.min() == pytest.approx(0.0, abs=1e-12) and scaled.max() == pytest.approx(1.0, abs=1e-12)


def cfg_scale(name: str, per: str):
    from nntrain.config import ScaleConfig

    return ScaleConfig(name=name, per=per)


def test_npy_pairs_take_lengths_too(tmp_path):
    """{X: .npy, y: .npy, lengths: .npy}: the sequences stay on disk, their lengths reach the network."""
    rng = np.random.default_rng(0)
    X = rng.uniform(0, 1, (40, 6, 2)).astype(np.float32)
    lengths = rng.integers(1, 7, 40)
    for name, array in (("X", X), ("y", X[:, 0, 0].astype(np.float64)), ("L", lengths), ("bad", lengths + 6)):
        np.save(tmp_path / f"{name}.npy", array)
    raw = small_config(data={"dataset": {"X": str(tmp_path / "X.npy"), "y": str(tmp_path / "y.npy"), "lengths": str(tmp_path / "L.npy")},
                             "options": {}},
                       model={"layers": [{"gru": {"units": 3, "output": "last"}}, {"linear": 1}]}, loss="mse")  # fmt: skip
    exp = prepare(load_config(None, [], raw=raw))
    assert not exp.dataset.in_memory and exp.dataset.lengths.tolist() == lengths.tolist()
    assert exp.lengths_of("train", np.arange(3)).tolist() == lengths[exp.splits["train"][:3]].tolist()
    raw["data"]["dataset"]["lengths"] = str(tmp_path / "bad.npy")
    with pytest.raises(NntrainError, match="lengths must be 1 .. the 6 steps"):
        prepare(load_config(None, [], raw=raw))
