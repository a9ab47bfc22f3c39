"""Rebuild the bundled dataset files in this folder from an unpacked scikit-learn wheel.

    pip download --no-deps -d /tmp/skl scikit-learn
    unzip -q /tmp/skl/scikit_learn-*.whl 'sklearn/datasets/*' -d /tmp/skl/unz
    python datasets/build.py /tmp/skl/unz            # or the .whl itself, or .../sklearn/datasets

scikit-learn ships the five classic datasets as CSV files under sklearn/datasets/data/. This
script rewrites them as gzip CSV files with a header row of snake_case feature names and the
target as the last column, named `target`. Numbers are copied as the source's text, never
parsed and printed again, so no digit changes (the diabetes target, written by NumPy as
1.510000000000000000e+02, becomes 151 after a check that every value is a whole number). Files
are gzipped with mtime 0 and no file name in the header, so the same input gives the same
bytes and the same SHA-256.

This script is for maintainers only: nntrain never imports it, and scikit-learn is not a
dependency of nntrain. Run it with --check to compare the written hashes with the registry
in nntrain/data/bundled.py.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import io
import math
import sys
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

IRIS_FEATURES = ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"]
WINE_FEATURES = [
    "alcohol",
    "malic_acid",
    "ash",
    "alcalinity_of_ash",
    "magnesium",
    "total_phenols",
    "flavanoids",
    "nonflavanoid_phenols",
    "proanthocyanins",
    "color_intensity",
    "hue",
    "od280_od315_of_diluted_wines",
    "proline",
]
_CELL = [
    "radius",
    "texture",
    "perimeter",
    "area",
    "smoothness",
    "compactness",
    "concavity",
    "concave_points",
    "symmetry",
    "fractal_dimension",
]
# Columns 0-9 are the means, 10-19 the standard errors, 20-29 the "worst" values (descr/breast_cancer.rst).
BREAST_CANCER_FEATURES = [f"{c}_{kind}" for kind in ("mean", "se", "worst") for c in _CELL]
DIGITS_FEATURES = [f"pixel_{r}_{c}" for r in range(8) for c in range(8)]
DIABETES_FEATURES = ["age", "sex", "bmi", "bp", "s1_tc", "s2_ldl", "s3_hdl", "s4_tch", "s5_ltg", "s6_glu"]


class Source:
    """The files of sklearn/datasets/data, from a directory or straight from a .whl."""

    def __init__(self, path: Path):
        self.path = path
        self.zip = zipfile.ZipFile(path) if path.is_file() else None
        if self.zip is None:
            for base in (path / "sklearn" / "datasets" / "data", path / "datasets" / "data", path / "data", path):
                if (base / "iris.csv").is_file():
                    self.base = base
                    break
            else:
                raise SystemExit(f"{path}: no sklearn/datasets/data/iris.csv below it; give the unpacked wheel's root")

    def read(self, name: str) -> str:
        if self.zip is not None:
            raw = self.zip.read(f"sklearn/datasets/data/{name}")
        else:
            raw = (self.base / name).read_bytes()
        if name.endswith(".gz"):
            raw = gzip.decompress(raw)
        return raw.decode("utf-8")


def _rows(text: str) -> list[list[str]]:
    return [[c.strip() for c in row] for row in csv.reader(io.StringIO(text)) if row and any(c.strip() for c in row)]


def _check_number(cell: str, where: str) -> str:
    """`cell` unchanged, after checking that it is a finite number."""
    value = float(cell)
    assert math.isfinite(value), (where, cell)
    return cell


def labelled(source: Source, file: str, features: list[str]):
    """iris, wine, breast_cancer: a first line 'rows,features,class names...', then rows ending in a class index."""
    rows = _rows(source.read(file))
    head, body = rows[0], rows[1:]
    n_rows, n_features, names = int(head[0]), int(head[1]), head[2:]
    assert n_features == len(features), (file, n_features, len(features))
    assert len(body) == n_rows, (file, len(body), n_rows)
    out = []
    for i, row in enumerate(body):
        assert len(row) == n_features + 1, (file, i, len(row))
        values = [_check_number(c, f"{file} row {i}") for c in row[:-1]]
        out.append([*values, names[int(row[-1])]])
    return features, out


def digits(source: Source):
    rows = _rows(source.read("digits.csv.gz"))
    out = []
    for i, row in enumerate(rows):
        assert len(row) == 65, ("digits", i, len(row))
        assert all(c.isdigit() and 0 <= int(c) <= 16 for c in row[:-1]), ("digits", i)
        assert row[-1].isdigit() and 0 <= int(row[-1]) <= 9, ("digits", i)
        out.append(row)
    assert len(out) == 1797, len(out)
    return DIGITS_FEATURES, out


def diabetes(source: Source):
    """The unscaled data (diabetes_data_raw.csv.gz, space separated) and its target."""
    data = [line.split() for line in source.read("diabetes_data_raw.csv.gz").splitlines() if line.strip()]
    target = [line.strip() for line in source.read("diabetes_target.csv.gz").splitlines() if line.strip()]
    assert len(data) == len(target) == 442, (len(data), len(target))
    out = []
    for i, (row, t) in enumerate(zip(data, target)):
        assert len(row) == 10, ("diabetes", i, len(row))
        value = float(t)
        assert value == int(value), ("diabetes target is not a whole number", i, t)
        out.append([*(_check_number(c, f"diabetes row {i}") for c in row), str(int(value))])
    return DIABETES_FEATURES, out


BUILDERS = {
    "iris": lambda s: labelled(s, "iris.csv", IRIS_FEATURES),
    "wine": lambda s: labelled(s, "wine_data.csv", WINE_FEATURES),
    "breast_cancer": lambda s: labelled(s, "breast_cancer.csv", BREAST_CANCER_FEATURES),
    "digits": digits,
    "diabetes": diabetes,
}


def gzip_csv(header: list[str], rows: list[list[str]]) -> bytes:
    """Deterministic bytes: LF line ends, gzip level 9, mtime 0, no file name in the gzip header."""
    text = "".join(",".join(r) + "\n" for r in [[*header, "target"], *rows])
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as f:
        f.write(text.encode("utf-8"))
    return buf.getvalue()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="unpacked scikit-learn wheel (or the .whl file)")
    parser.add_argument(
        "--out", type=Path, default=HERE, help="where to write the .csv.gz files (default: this folder)"
    )
    parser.add_argument(
        "--check", action="store_true", help="compare the hashes with nntrain's registry; exit 1 on a difference"
    )
    args = parser.parse_args(argv)
    source = Source(args.source)
    args.out.mkdir(parents=True, exist_ok=True)
    registry = {}
    if args.check:
        from nntrain.data.bundled import BUNDLED

        registry = BUNDLED
    status = 0
    for name, build in BUILDERS.items():
        header, rows = build(source)
        data = gzip_csv(header, rows)
        path = args.out / f"{name}.csv.gz"
        path.write_bytes(data)
        digest = hashlib.sha256(data).hexdigest()
        line = f"{path.name:<22} {len(rows):>5} x {len(header):<3} sha256 {digest}"
        if args.check:
            info = registry.get(name)
            ok = info is not None and info.sha256 == digest and (info.rows, info.features) == (len(rows), len(header))
            line += "  ok" if ok else "  DIFFERS from nntrain/data/bundled.py"
            status |= not ok
        print(line)
    return status


if __name__ == "__main__":
    sys.exit(main())
