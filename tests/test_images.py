"""Data with a shape: image folders, .npz / .npy images, per-channel scaling, sample shapes in checkpoints."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from nntrain import config as cfg
from nntrain.data.dataset import Scaler, read_raw
from nntrain.data.images import ImageOptions, read_folder
from nntrain.engine.layers import LAYERS
from nntrain.errors import NntrainError
from nntrain.train import checkpoint
from nntrain.train.experiment import load_dataset, prepare, saved_dataset, seed_streams

ROOT = Path(__file__).resolve().parent.parent
SHAPES = ROOT / "datasets" / "images" / "shapes"


def png(path: Path, pixels: np.ndarray, mode: str | None = None) -> Path:
    """Write uint8 pixels (H, W) or (H, W, 3) as a PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(pixels, dtype=np.uint8), mode=mode).save(path)
    return path


def stripes(root: Path, per_class: int = 8, size: int = 8, seed: int = 0) -> Path:
    """A folder of two classes a network tells apart at once: bright rows on top (top/) or at the bottom (bottom/)."""
    rng = np.random.default_rng(seed)
    for k, name in enumerate(("top", "bottom")):
        for i in range(per_class):
            a = rng.integers(0, 60, size=(size, size))
            a[(slice(0, size // 2) if k == 0 else slice(size // 2, size))] += 180
            png(root / name / f"{i:02d}.png", a)
    return root


def folder_config(tmp_path: Path, data: dict, name: str = "c.yaml", layers=None, epochs: int = 20, **extra) -> Path:
    config = {
        "seed": 0,
        "data": {"split": {"val": 0.25, "test": 0}, **data},
        "model": {"layers": layers or ["flatten", {"linear": 8}, "relu", {"linear": 2}]},
        "optimizer": {"name": "adam", "lr": 0.02},
        "train": {"epochs": epochs, "batch_size": 4},
        **extra,
    }
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return path


def refused(result, *fragments) -> bool:
    """Exit 2 with one short error naming every fragment, and no traceback."""
    text = result.stderr
    return result.exit_code == 2 and "Traceback" not in text and all(f in text for f in fragments)


# --- reading a folder ----------------------------------------------------------------------


def test_a_folder_reads_as_channels_first_pixels_in_zero_one(tmp_path):
    rgb = np.zeros((3, 4, 3), dtype=np.uint8)
    rgb[0, 1] = (255, 0, 51)  # red at row 0, column 1, and a little blue
    rgb[2, 3] = (0, 102, 0)
    png(tmp_path / "f" / "b_colour" / "x.png", rgb)
    png(tmp_path / "f" / "a_gray" / "y.png", np.full((3, 4), 204))
    folder = read_folder(tmp_path / "f", ImageOptions())
    assert folder.classes == ["a_gray", "b_colour"] and folder.labels.tolist() == ["a_gray", "b_colour"]
    assert folder.options == ImageOptions((3, 4), "rgb")  # one image has colour, so both are read as RGB
    assert folder.X.dtype == np.float32 and folder.X.shape == (2, 3 * 3 * 4)
    images = folder.X.reshape(2, 3, 3, 4)  # rows are (channels, height, width) in C order
    np.testing.assert_array_equal(images[0], np.full((3, 3, 4), np.float32(204) / 255))
    assert images[1, 0, 0, 1] == 1.0 and images[1, 1, 0, 1] == 0.0 and images[1, 2, 0, 1] == np.float32(51) / 255
    assert images[1, 1, 2, 3] == np.float32(102) / 255 and images[1].sum() == pytest.approx((255 + 51 + 102) / 255)


def test_mode_auto_is_grayscale_when_every_image_is_and_size_resizes(tmp_path):
    stripes(tmp_path / "s", per_class=2, size=8)
    folder = read_folder(tmp_path / "s", ImageOptions())
    assert folder.sample_shape == (1, 8, 8)
    small = read_folder(tmp_path / "s", ImageOptions((4, 2), "auto"))
    assert small.sample_shape == (1, 4, 2)
    # Bilinear resizing keeps the bright half bright: rows 0-1 of a 'top' image, rows 2-3 of a 'bottom' one.
    top, bottom = small.X.reshape(-1, 4, 2)[[small.labels.tolist().index("top"), small.labels.tolist().index("bottom")]]
    assert top[:2].min() > 0.6 > top[2:].max() and bottom[2:].min() > 0.6 > bottom[:2].max()
    colour = read_folder(tmp_path / "s", ImageOptions(None, "rgb"))
    assert colour.sample_shape == (3, 8, 8)
    np.testing.assert_array_equal(colour.X.reshape(-1, 3, 64)[:, 0], folder.X)  # gray as RGB: three equal channels
    np.testing.assert_array_equal(colour.X.reshape(-1, 3, 64)[:, 2], folder.X)


def test_palette_alpha_and_jpeg_images_are_read(tmp_path):
    root = tmp_path / "f"
    (root / "a").mkdir(parents=True)
    Image.fromarray(np.full((5, 5, 4), (10, 20, 30, 0), dtype=np.uint8), mode="RGBA").save(root / "a" / "alpha.png")
    Image.fromarray(np.full((5, 5, 3), 200, dtype=np.uint8)).convert("P").save(root / "a" / "palette.gif")
    Image.fromarray(np.full((5, 5, 3), 90, dtype=np.uint8)).save(root / "a" / "photo.JPG", quality=95)
    Image.fromarray(np.full((5, 5), 255, dtype=np.uint8)).convert("1").save(root / "a" / "bits.bmp")
    folder = read_folder(root, ImageOptions(None, "rgb"))
    by_name = {p.name: row.reshape(3, 5, 5) for p, row in zip(folder.paths, folder.X)}
    np.testing.assert_allclose(by_name["alpha.png"][:, 0, 0], np.array([10, 20, 30]) / 255, rtol=1e-6)  # alpha dropped
    np.testing.assert_allclose(by_name["palette.gif"][:, 2, 2], 204 / 255, rtol=1e-6)  # 200 on the web palette
    np.testing.assert_allclose(by_name["photo.JPG"], 90 / 255, atol=3 / 255)
    assert (by_name["bits.bmp"] == 1.0).all()


def test_jpeg_orientation_is_applied(tmp_path):
    a = np.zeros((4, 8), dtype=np.uint8)
    a[:, :2] = 255  # a bright left edge, 4 high x 8 wide as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned: shown rotated a quarter clockwise
    (tmp_path / "f" / "c").mkdir(parents=True)
    Image.fromarray(a).save(tmp_path / "f" / "c" / "t.jpg", exif=exif, quality=100)
    folder = read_folder(tmp_path / "f", ImageOptions())
    assert folder.sample_shape == (1, 8, 4)  # as it is meant to be seen: 8 high x 4 wide
    shown = folder.X.reshape(8, 4)
    assert shown[:2].mean() > 0.9 and shown[2:].mean() < 0.1  # the left edge is now the top


# --- what a folder may not hold -------------------------------------------------------------


def _break(root: Path, how: str) -> str:
    """Damage a good two-class folder in one way; returns a fragment the message must hold."""
    if how == "text file":
        (root / "top" / "notes.txt").write_text("hello")
        return "notes.txt: not an image file by its name"
    if how == "corrupt":
        (root / "top" / "bad.png").write_bytes(b"this is no png")
        return "bad.png: cannot be read as an image"
    if how == "truncated":
        data = (root / "top" / "00.png").read_bytes()
        (root / "top" / "00.png").write_bytes(data[: len(data) // 2])
        return "00.png: cannot be read as an image"
    if how == "empty class":
        (root / "middle").mkdir()
        return "class folder 'middle' holds no images"
    if how == "loose file":
        png(root / "stray.png", np.zeros((8, 8)))
        return "stray.png: a file directly in the image folder"
    if how == "nested":
        png(root / "top" / "deeper" / "x.png", np.zeros((8, 8)))
        return "deeper: a folder inside class folder 'top'"
    if how == "16-bit":
        Image.fromarray(np.full((8, 8), 40000, dtype=np.uint16)).save(root / "top" / "deep.png")
        return "deep.png: a 16-bit or floating-point image (mode I;16)"
    if how == "no subfolders":
        shutil.rmtree(root)
        png(root / "a.png", np.zeros((8, 8)))
        return "a file directly in the image folder"
    raise AssertionError(how)


BREAKS = ["text file", "corrupt", "truncated", "empty class", "loose file", "nested", "16-bit", "no subfolders"]


@pytest.mark.parametrize("how", BREAKS)
def test_a_folder_with_something_else_in_it_is_exit_2_naming_the_file(cli, tmp_path, how):
    root = stripes(tmp_path / "s")
    fragment = _break(root, how)
    config = folder_config(tmp_path, {"dataset": str(root)})
    result = cli("fit", config, "--runs-root", tmp_path / "runs")
    assert refused(result, fragment, "data.dataset"), result.stderr
    allowed = "8 bits per channel" if how == "16-bit" else "PNG, JPEG, BMP or GIF"  # what is allowed instead
    assert how in ("empty class", "loose file", "nested", "no subfolders") or allowed in result.stderr
    assert not (tmp_path / "runs").exists()


def test_a_folder_without_subfolders_says_what_one_looks_like(cli, tmp_path):
    (tmp_path / "empty").mkdir()
    result = cli("validate", folder_config(tmp_path, {"dataset": str(tmp_path / "empty")}))
    assert refused(result, "has no subfolders", "one subfolder per class")


def test_images_of_several_sizes_need_data_image_size(cli, tmp_path):
    root = stripes(tmp_path / "s", per_class=3)
    png(root / "bottom" / "wide.png", np.zeros((8, 12)))
    result = cli("validate", folder_config(tmp_path, {"dataset": str(root)}))
    assert refused(result, "data.image.size", "s/bottom/00.png is 8 x 8", "s/bottom/wide.png is 8 x 12", "[height, width]")
    resized = cli("validate", folder_config(tmp_path, {"dataset": str(root), "image": {"size": [6, 6]}}))
    assert resized.exit_code == 0, resized.stderr
    assert yaml.safe_load(resized.stdout)["data"]["image"] == {"size": [6, 6], "mode": "grayscale"}
    assert "input    (36,)" in resized.stderr  # the MLP's input: 6 x 6 pixels


def test_data_image_is_for_folders_and_is_recorded_as_read(cli, tmp_path):
    result = cli("validate", folder_config(tmp_path, {"dataset": "digits", "image": {"size": [8, 8]}}))
    assert refused(result, "data.image", "applies only to image folders")
    root = stripes(tmp_path / "s")
    shown = cli("validate", folder_config(tmp_path, {"dataset": str(root)}))
    assert shown.exit_code == 0, shown.stderr
    image = yaml.safe_load(shown.stdout)["data"]["image"]
    assert image == {"size": [8, 8], "mode": "grayscale"}  # what `auto` and the images' own size came to


def test_a_bare_word_is_a_dataset_name_and_a_path_is_a_folder(cli, tmp_path):
    assert refused(cli("validate", folder_config(tmp_path, {"dataset": "spiral"})), "did you mean 'spirals'", "image folder")
    assert refused(cli("validate", folder_config(tmp_path, {"dataset": "no/such/folder"})), "image folder 'no/such/folder' does not exist")


# --- training on a folder, then eval and predict --------------------------------------------


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory):
    """configs/image_folder.yaml trained on datasets/images/shapes (the committed example)."""
    from nntrain.api import fit

    runs = tmp_path_factory.mktemp("runs")
    summary = fit(ROOT / "configs" / "image_folder.yaml", runs_root=runs)
    return Path(summary["run_dir"]), summary


def test_the_example_folder_trains_and_its_run_records_how_images_are_read(shapes_run):
    run, summary = shapes_run
    assert summary["status"] == "completed" and summary["final"]["test"]["accuracy"] >= 0.9
    saved = yaml.safe_load((run / "config.yaml").read_text())["data"]
    assert saved["dataset"] == str(SHAPES) and saved["image"] == {"size": [16, 16], "mode": "grayscale"}
    with np.load(run / "checkpoints" / "last.npz") as ckpt:
        assert ckpt["data.sample_shape"].tolist() == [1, 16, 16]
        assert ckpt["data.classes"].tolist() == ["circle", "square", "triangle"]
        offset, factor = ckpt["data.scale.offset"], ckpt["data.scale.factor"]
    assert offset.shape == (256,) and np.ptp(offset) == 0 and np.ptp(factor) == 0  # one channel: one mean, one std
    with np.load(run / "splits.npz") as splits:
        train = splits["train"]
    X = read_folder(SHAPES, ImageOptions((16, 16), "grayscale")).X.astype(np.float64)[train]
    assert offset[0] == pytest.approx(X.mean(), rel=1e-9) and factor[0] == pytest.approx(X.std(), rel=1e-9)


def test_eval_and_predict_take_the_folder_and_its_arrays(cli, shapes_run, tmp_path):
    run, _ = shapes_run
    evaluated = cli("eval", run, "--data", SHAPES, "--json")
    assert evaluated.exit_code == 0, evaluated.stderr
    on_folder = json.loads(evaluated.stdout)
    assert on_folder["samples"] == 120 and on_folder["classes"] == ["circle", "square", "triangle"]
    assert on_folder["accuracy"] >= 0.9
    predicted = cli("predict", run, SHAPES)
    assert predicted.exit_code == 0, predicted.stderr
    rows = list(csv.reader(io.StringIO(predicted.stdout)))
    assert rows[0] == ["path", "class", "p_circle", "p_square", "p_triangle"]
    files = sorted(str(p) for p in SHAPES.glob("*/*.png"))
    assert [r[0] for r in rows[1:]] == files  # one row per image file, by path
    right = sum(r[1] == Path(r[0]).parent.name for r in rows[1:])
    assert right / 120 == pytest.approx(on_folder["accuracy"])
    # The same images as arrays: (N, 1, H, W) in an .npz and (N, H, W) in an .npy give the same predictions.
    images = np.stack([np.asarray(Image.open(f)) for f in files])
    labels = np.array([Path(f).parent.name for f in files])
    np.savez(tmp_path / "shapes.npz", X=images[:, None].astype(np.float32) / 255, y=labels)
    np.save(tmp_path / "shapes.npy", images.astype(np.float64) / 255)
    on_npz = json.loads(cli("eval", run, "--data", tmp_path / "shapes.npz", "--json").stdout)
    assert on_npz["accuracy"] == on_folder["accuracy"] and on_npz["loss"] == pytest.approx(on_folder["loss"], rel=1e-5)
    from_npy = cli("predict", run, tmp_path / "shapes.npy", "--json")
    assert from_npy.exit_code == 0, from_npy.stderr
    records = [json.loads(line) for line in from_npy.stdout.splitlines()]
    assert [r["index"] for r in records] == list(range(120))
    assert [r["class"] for r in records] == [r[1] for r in rows[1:]]
    np.testing.assert_allclose([r["p_square"] for r in records], [float(r[3]) for r in rows[1:]], rtol=1e-4, atol=1e-6)


def test_predict_resizes_to_the_run_and_names_an_unreadable_image(cli, shapes_run, tmp_path):
    run, _ = shapes_run
    big = Image.open(SHAPES / "square" / "003.png").resize((32, 32), Image.Resampling.NEAREST)
    (tmp_path / "new").mkdir()
    big.save(tmp_path / "new" / "big_square.png")
    (tmp_path / "new" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    result = cli("predict", run, tmp_path / "new", "--json")
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    records = {Path(r["path"]).name: r for r in map(json.loads, result.stdout.splitlines())}
    assert records["big_square.png"]["class"] == "square"  # read at the run's 16 x 16
    assert "cannot be read as an image" in records["broken.png"]["error"]
    assert "broken.png: cannot be read as an image" in result.stderr
    (tmp_path / "new" / "readme.md").write_text("x")
    assert refused(cli("predict", run, tmp_path / "new"), "readme.md: not an image file by its name")


def test_eval_refuses_arrays_of_another_shape_and_an_npy_without_labels(cli, shapes_run, tmp_path):
    run, _ = shapes_run
    np.savez(tmp_path / "wrong.npz", X=np.zeros((4, 1, 8, 32)), y=np.array(["circle"] * 4))
    assert refused(cli("eval", run, "--data", tmp_path / "wrong.npz"), "samples of shape (1, 8, 32)", "(1, 16, 16)")
    np.savez(tmp_path / "rgb.npz", X=np.zeros((4, 3, 16, 16)), y=np.array(["circle"] * 4))
    assert refused(cli("eval", run, "--data", tmp_path / "rgb.npz"), "(3, 16, 16)", "(1, 16, 16)")
    np.save(tmp_path / "x.npy", np.zeros((4, 16, 16)))
    assert refused(cli("eval", run, "--data", tmp_path / "x.npy"), "an .npy holds no labels")
    flat = np.zeros((4, 256))  # flat rows of the right width are the rows nntrain keeps: they fit
    np.savez(tmp_path / "flat.npz", X=flat, y=np.array(["circle"] * 4))
    assert cli("eval", run, "--data", tmp_path / "flat.npz").exit_code == 0


def test_split_folders_train_val_test(cli, tmp_path):
    stripes(tmp_path / "train", per_class=8, seed=0)
    stripes(tmp_path / "val", per_class=3, seed=1)
    stripes(tmp_path / "test", per_class=4, seed=2, size=12)  # resized to the training images' 8 x 8
    config = folder_config(tmp_path, {"train": "./train", "val": "./val", "test": "./test", "split": {}})
    result = cli("fit", config, "--run-dir", tmp_path / "run", "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    with np.load(tmp_path / "run" / "splits.npz") as splits:
        assert [len(splits[k]) for k in ("train", "val", "test")] == [16, 6, 8]
    assert summary["final"]["test"]["accuracy"] == 1.0


# --- arrays with a shape ---------------------------------------------------------------------


def test_npz_and_npy_images_keep_their_shape(tmp_path):
    X4 = np.arange(5 * 2 * 3 * 4, dtype=np.float32).reshape(5, 2, 3, 4)
    np.savez(tmp_path / "c.npz", X=X4, y=np.arange(5) % 2)
    raw = read_raw(str(tmp_path / "c.npz"), {}, None, None)
    assert raw.sample_shape == (2, 3, 4) and raw.X.shape == (5, 24) and raw.X.dtype == np.float32
    np.testing.assert_array_equal(raw.X, X4.reshape(5, -1))
    np.savez(tmp_path / "g.npz", X=X4[:, 0].astype(np.uint8), y=np.arange(5) % 2)
    assert read_raw(str(tmp_path / "g.npz"), {}, None, None).sample_shape == (1, 3, 4)
    np.save(tmp_path / "X.npy", X4[:, 0])
    np.save(tmp_path / "y.npy", np.arange(5) % 2)
    config = cfg.validate({"data": {"dataset": {"X": str(tmp_path / "X.npy"), "y": str(tmp_path / "y.npy")}}, "model": {"layers": ["flatten", {"linear": 2}]}})
    dataset = load_dataset(config, seed_streams(0)["data"], None)
    assert dataset.sample_shape == (1, 3, 4) and not dataset.in_memory
    np.testing.assert_array_equal(dataset.X[np.array([4, 0])], X4[[4, 0], 0].reshape(2, -1))
    np.save(tmp_path / "F.npy", np.asfortranarray(X4))
    config.data.dataset.X = str(tmp_path / "F.npy")
    with pytest.raises(NntrainError, match="Fortran order"):
        load_dataset(config, seed_streams(0)["data"], None)


def test_sources_must_hold_samples_of_one_shape(tmp_path):
    np.savez(tmp_path / "a.npz", X=np.zeros((6, 2, 4, 4)), y=np.arange(6) % 2)
    np.savez(tmp_path / "b.npz", X=np.zeros((4, 2, 2, 8)), y=np.arange(4) % 2)
    config = cfg.validate({"data": {"train": str(tmp_path / "a.npz"), "val": str(tmp_path / "b.npz")}, "model": {"layers": [{"linear": 2}]}})
    with pytest.raises(NntrainError, match=r"data.val: its samples have shape \(2, 2, 8\), but those of data.train have \(2, 4, 4\)"):
        load_dataset(config, seed_streams(0)["data"], None)


def test_digits_are_one_channel_8x8_images(cli):
    raw = read_raw("digits", {}, None, None)
    assert raw.sample_shape == (1, 8, 8) and raw.encoder.names[9] == "pixel_1_1"  # row by row: C order
    shown = json.loads(cli("datasets", "show", "digits", "--json").stdout)
    assert shown["sample_shape"] == [1, 8, 8]
    assert "sample_shape" not in json.loads(cli("datasets", "show", "iris", "--json").stdout)


# --- scaling per channel ---------------------------------------------------------------------


def _scale(**spec):
    return cfg.ScaleConfig.model_validate(spec)


def test_per_channel_statistics_cover_every_pixel_of_the_channel():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 2, 3, 3)) * np.array([1.0, 10.0])[None, :, None, None] + np.array([5.0, -2.0])[None, :, None, None]
    rows = X.reshape(50, -1)
    s = Scaler.of(_scale(name="standardize"), (2, 3, 3)).fit(rows)
    assert s.channels == 2 and s.offset.shape == (18,)
    np.testing.assert_allclose(s.offset, np.repeat([X[:, 0].mean(), X[:, 1].mean()], 9))
    np.testing.assert_allclose(s.factor, np.repeat([X[:, 0].std(), X[:, 1].std()], 9))
    scaled = s.transform(rows, np.float64).reshape(50, 2, 9)
    np.testing.assert_allclose(scaled.mean(axis=(0, 2)), 0, atol=1e-12)
    np.testing.assert_allclose(scaled.std(axis=(0, 2)), 1)
    m = Scaler.of(_scale(name="minmax", range=[-1, 1]), (2, 3, 3)).fit(rows)
    scaled = m.transform(rows, np.float64).reshape(50, 2, 9)
    np.testing.assert_allclose(scaled.min(axis=(0, 2)), -1)
    np.testing.assert_allclose(scaled.max(axis=(0, 2)), 1)
    feature = Scaler.of(_scale(name="standardize", per="feature"), (2, 3, 3)).fit(rows)
    np.testing.assert_allclose(feature.offset, rows.mean(axis=0))


def test_per_channel_fit_in_chunks_equals_fit_at_once():
    rng = np.random.default_rng(1)
    rows = rng.normal(3, 2, size=(400, 3 * 4 * 4))
    at_once = Scaler.of(_scale(name="standardize"), (3, 4, 4)).fit(rows)
    chunked = Scaler.of(_scale(name="standardize"), (3, 4, 4)).fit_rows(rows, np.arange(400), chunk_bytes=8 * 48 * 7)
    np.testing.assert_allclose(chunked.offset, at_once.offset, rtol=1e-12)
    np.testing.assert_allclose(chunked.factor, at_once.factor, rtol=1e-12)


def test_a_constant_channel_is_only_shifted():
    rows = np.concatenate([np.full((10, 4), 7.0), np.arange(40.0).reshape(10, 4)], axis=1)
    s = Scaler.of(_scale(name="standardize"), (2, 2, 2)).fit(rows)
    np.testing.assert_array_equal(s.factor[:4], 1.0)
    np.testing.assert_array_equal(s.transform(rows, np.float64)[:, :4], 0.0)


def test_divide_is_fixed_and_options_are_checked(cli, write_config):
    d = Scaler.of(_scale(name="divide"), (1, 2, 2)).fit(np.full((3, 4), 255.0))
    np.testing.assert_array_equal(d.offset, 0)
    np.testing.assert_array_equal(d.factor, 255.0)
    assert _scale(name="divide", by=16).by == 16
    with pytest.raises(NntrainError, match="per: channel needs samples with channels"):
        Scaler.of(_scale(name="standardize", per="channel"), (5,))
    for scale, fragment in (
        ({"name": "standardize", "by": 2}, "data.scale.by: applies only to divide scaling"),
        ({"name": "none", "per": "channel"}, "data.scale.per: applies only to standardize and minmax"),
        ({"name": "divide", "by": 0}, "data.scale.by"),
    ):
        assert refused(cli("validate", write_config(data={"scale": scale})), fragment)
    assert refused(cli("validate", write_config(data={"scale": {"name": "standardize", "per": "channel"}})), "data.scale.per", "(2,)")


def test_divide_scaling_is_saved_and_applied_by_eval(cli, tmp_path):
    images = np.stack([np.full((4, 4), 200 * (k % 2) + 20, dtype=np.uint8) for k in range(24)])
    np.savez(tmp_path / "px.npz", X=images, y=np.arange(24) % 2)
    config = folder_config(tmp_path, {"dataset": str(tmp_path / "px.npz"), "scale": {"name": "divide", "by": 255}})
    result = cli("fit", config, "--run-dir", tmp_path / "run", "--json")
    assert result.exit_code == 0, result.stderr
    with np.load(tmp_path / "run" / "checkpoints" / "last.npz") as ckpt:
        assert (ckpt["data.scale.offset"] == 0).all() and (ckpt["data.scale.factor"] == 255).all()
        assert ckpt["data.sample_shape"].tolist() == [1, 4, 4]
    exp = prepare(cfg.load_config(tmp_path / "run" / "config.yaml"))
    assert exp.dataset.X.max() == np.float32(220 / 255)


# --- sample shapes in checkpoints --------------------------------------------------------------


def _saved(**arrays) -> dict:
    base = {"data.features": np.array([f"x{j}" for j in range(12)]), "data.classes": np.array(["a", "b"])}
    return {**base, **arrays}


def test_saved_dataset_gives_the_saved_shape_and_reads_old_image_shapes():
    config = cfg.validate({"data": {"dataset": "digits", "task": "classification"}, "model": {"layers": [{"linear": 2}]}})
    assert saved_dataset(config, _saved(**{"data.sample_shape": np.array([3, 2, 2])})).sample_shape == (3, 2, 2)
    assert saved_dataset(config, _saved(**{"data.image_shape": np.array([3, 4])})).sample_shape == (1, 3, 4)
    assert saved_dataset(config, _saved()).sample_shape == (12,)
    config.data.flatten = True  # what the configs of runs from before sample shapes say
    assert saved_dataset(config, _saved(**{"data.image_shape": np.array([3, 4])})).sample_shape == (12,)


def test_a_tabular_run_saves_no_sample_shape_and_an_image_run_does(cli, write_config, tmp_path):
    assert cli("fit", write_config(), "--run-dir", tmp_path / "t").exit_code == 0
    with np.load(tmp_path / "t" / "checkpoints" / "last.npz") as ckpt:
        assert "data.sample_shape" not in ckpt and "data.image_shape" not in ckpt


def _resave(path: Path, **changes) -> Path:
    arrays = dict(np.load(path))
    for key, value in changes.items():
        key = key.replace("__", ".")
        if value is None:
            arrays.pop(key, None)
        else:
            arrays[key] = value
    out = path.with_name("crafted.npz")
    np.savez(out, **arrays)
    return out


@pytest.mark.parametrize(
    "changes, problem",
    [
        ({"data__sample_shape": np.array([1, 4, 5])}, "data.sample_shape [1, 4, 5] does not hold its 16 features"),
        ({"data__sample_shape": np.array([1.0, 4.0, 4.0])}, "data.sample_shape must be a 1-D integer array"),
        ({"data__sample_shape": np.array([1, -4, -4])}, "data.sample_shape holds -4"),
        ({"data__sample_shape": None, "data__image_shape": np.array([4, 5])}, "data.image_shape [4, 5] does not hold its 16 features"),
        ({"data__image_shape": np.array([4, 4])}, "both data.sample_shape and data.image_shape"),
    ],
)
def test_a_malformed_sample_shape_is_refused(cli, tmp_path, changes, problem):
    images = np.stack([np.full((4, 4), 200 * (k % 2) + 20, dtype=np.uint8) for k in range(24)])
    np.savez(tmp_path / "px.npz", X=images, y=np.arange(24) % 2)
    assert cli("fit", folder_config(tmp_path, {"dataset": str(tmp_path / "px.npz")}, epochs=1), "--run-dir", tmp_path / "run").exit_code == 0
    crafted = _resave(tmp_path / "run" / "checkpoints" / "last.npz", **changes)
    with pytest.raises(NntrainError, match="crafted.npz") as e:
        checkpoint.read(crafted)
    assert problem in str(e.value)


def test_an_old_checkpoint_with_image_shape_still_predicts(cli, tmp_path):
    """A run from before sample shapes: data.image_shape (h, w), data.flatten: true in its config."""
    images = np.stack([np.full((4, 4), 200 * (k % 2) + 20, dtype=np.uint8) for k in range(24)])
    np.savez(tmp_path / "px.npz", X=images, y=np.arange(24) % 2)
    config = folder_config(tmp_path, {"dataset": str(tmp_path / "px.npz"), "flatten": True}, layers=[{"linear": 2}])
    assert cli("fit", config, "--run-dir", tmp_path / "run").exit_code == 0
    last = tmp_path / "run" / "checkpoints" / "last.npz"
    with np.load(last) as ckpt:
        assert "data.sample_shape" not in ckpt  # flat samples: nothing to save
    old = _resave(last, data__image_shape=np.array([4, 4]))
    old.replace(last)
    (tmp_path / "run" / "checkpoints" / "best.npz").unlink()
    np.save(tmp_path / "new.npy", images[:6])
    result = cli("predict", tmp_path / "run", tmp_path / "new.npy", "--checkpoint", "last")
    assert result.exit_code == 0, result.stderr
    assert [r[0] for r in csv.reader(io.StringIO(result.stdout))][1:] == ["0", "1"] * 3


# --- the example maker -----------------------------------------------------------------------


def _maker():
    spec = importlib.util.spec_from_file_location("make_shapes", ROOT / "datasets" / "images" / "make.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_example_folder_is_what_make_py_writes(tmp_path):
    files = _maker().make(tmp_path / "shapes")
    assert len(files) == 120
    for path in files:
        committed = SHAPES / path.relative_to(tmp_path / "shapes")
        np.testing.assert_array_equal(np.asarray(Image.open(path)), np.asarray(Image.open(committed)), err_msg=str(committed))
    assert sorted(p.relative_to(SHAPES) for p in SHAPES.rglob("*.png")) == sorted(p.relative_to(tmp_path / "shapes") for p in files)
    other = _maker().make(tmp_path / "other", per_class=2, seed=1)
    assert not np.array_equal(np.asarray(Image.open(other[0])), np.asarray(Image.open(files[0])))


# --- a CNN, once convolutions take image samples ----------------------------------------------


@pytest.mark.skipif(LAYERS["conv2d"].sample_ndim != 3, reason="conv2d does not take (channels, height, width) samples yet")
def test_a_cnn_trains_on_a_folder_and_predicts_from_the_run_directory_alone(cli, tmp_path):
    root = stripes(tmp_path / "s", per_class=8)
    layers = [{"conv2d": {"filters": 4, "kernel_size": 3, "padding": "same"}}, "relu", "global_avg_pool", {"linear": 2}]
    config = folder_config(tmp_path, {"dataset": str(root)}, layers=layers, epochs=30)
    result = cli("fit", config, "--run-dir", tmp_path / "run")
    assert result.exit_code == 0, result.stderr
    moved = tmp_path / "elsewhere"
    root.rename(moved)  # the training data is gone: predict rebuilds the CNN from the checkpoint alone
    predicted = cli("predict", tmp_path / "run", moved)
    assert predicted.exit_code == 0, predicted.stderr
    rows = list(csv.reader(io.StringIO(predicted.stdout)))[1:]
    assert len(rows) == 16 and sum(r[1] == Path(r[0]).parent.name for r in rows) >= 14
