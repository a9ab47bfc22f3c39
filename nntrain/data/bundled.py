"""Small classic datasets shipped as gzip CSV files in the repository's datasets/ folder.

Each file has a header row; the target is the column named in `target`. Every read checks
the file's SHA-256, so a damaged or replaced file is an error, never silently other data.
"""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import NntrainError
from .files import read_csv


def datasets_dir() -> Path:
    """Where the bundled files live: $NNTRAIN_DATASETS, else the source tree's datasets/ folder
    (an editable install), else <prefix>/share/nntrain/datasets (where a wheel puts them)."""
    if os.environ.get("NNTRAIN_DATASETS"):
        return Path(os.environ["NNTRAIN_DATASETS"])
    source_tree = Path(__file__).resolve().parents[2] / "datasets"
    return source_tree if source_tree.is_dir() else Path(sys.prefix) / "share" / "nntrain" / "datasets"


@dataclass(frozen=True)
class BundledDataset:
    name: str
    file: str  # name of the .csv.gz in datasets_dir()
    sha256: str
    rows: int
    features: int
    task: str  # classification | regression
    target: str  # the target column's name
    description: str
    source: str
    license: str
    citation: str
    sample_shape: tuple[int, ...] | None = None  # images: (channels, height, width), which a row holds in C order


_UCI_LICENSE = "CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/), as stated by the UCI Machine Learning Repository"

BUNDLED: dict[str, BundledDataset] = {
    d.name: d
    for d in [
        BundledDataset(
            name="iris",
            file="iris.csv.gz",
            sha256="ec07055f8dc74cdf71ce0d4c8d40fdcdcef27865d312ae0185ddfd8787744d5c",
            rows=150,
            features=4,
            task="classification",
            target="target",
            description="Fisher's iris flowers: sepal and petal length and width in cm; 3 species, 50 each.",
            source="https://archive.ics.uci.edu/dataset/53/iris",
            license=_UCI_LICENSE,
            citation=(
                "Fisher, R. A. (1936). The use of multiple measurements in taxonomic problems. Annals of Eugenics, 7(2),"
                " 179-188. Data: Fisher, R. A. Iris [Dataset]. UCI Machine Learning Repository."
                " https://doi.org/10.24432/C56C76"
            ),
        ),
        BundledDataset(
            name="wine",
            file="wine.csv.gz",
            sha256="07c630f2d8478b892d07532a15d54e0a09381012f82656f8c7ea72333838a14f",
            rows=178,
            features=13,
            task="classification",
            target="target",
            description="Chemical analysis of wines from three cultivars in one Italian region; 13 measurements.",
            source="https://archive.ics.uci.edu/dataset/109/wine",
            license=_UCI_LICENSE,
            citation=(
                "Aeberhard, S. & Forina, M. (1991). Wine [Dataset]. UCI Machine Learning Repository."
                " https://doi.org/10.24432/C5PC7J"
            ),
        ),
        BundledDataset(
            name="breast_cancer",
            file="breast_cancer.csv.gz",
            sha256="db1d8010ba74608af626b501672b58208c2b6095f0adeae837aabaf9bbb4dd3e",
            rows=569,
            features=30,
            task="classification",
            target="target",
            description="Wisconsin diagnostic breast cancer: 30 cell-nucleus features of a needle aspirate; malignant or benign.",
            source="https://archive.ics.uci.edu/dataset/17/breast+cancer+wisconsin+diagnostic",
            license=_UCI_LICENSE,
            citation=(
                "Wolberg, W., Mangasarian, O., Street, N. & Street, W. (1995). Breast Cancer Wisconsin (Diagnostic)"
                " [Dataset]. UCI Machine Learning Repository. https://doi.org/10.24432/C5DW2B"
            ),
        ),
        BundledDataset(
            name="digits",
            file="digits.csv.gz",
            sha256="b6ce6e38dc5438f106778c12b17f0d53813b688da30c388275f202398676741e",
            rows=1797,
            features=64,
            task="classification",
            target="target",
            description="8x8 handwritten digits 0-9 (UCI optical digits, test part); pixels are counts 0-16.",
            source="https://archive.ics.uci.edu/dataset/80/optical+recognition+of+handwritten+digits",
            license=_UCI_LICENSE,
            citation=(
                "Alpaydin, E. & Kaynak, C. (1998). Optical Recognition of Handwritten Digits [Dataset]."
                " UCI Machine Learning Repository. https://doi.org/10.24432/C50P49"
            ),
            sample_shape=(1, 8, 8),  # pixel_<row>_<column>, row by row
        ),
        BundledDataset(
            name="diabetes",
            file="diabetes.csv.gz",
            sha256="b6b9c230c1b6be197d2ff5fa8f20ab9922f4f3238aeff51427870d370f66836d",
            rows=442,
            features=10,
            task="regression",
            target="target",
            description="Diabetes progression one year after baseline from age, sex, BMI, blood pressure and 6 serum values (unscaled).",
            source="https://www4.stat.ncsu.edu/~boos/var.select/diabetes.html",
            license=(
                "None known: scikit-learn's description names none, and the source page was not checked."
                " Redistributed in scikit-learn (a BSD-3-Clause package) and the R package lars."
            ),
            citation=(
                "Efron, B., Hastie, T., Johnstone, I. & Tibshirani, R. (2004). Least angle regression."
                " The Annals of Statistics, 32(2), 407-499. https://doi.org/10.1214/009053604000000067"
            ),
        ),
    ]
}


def read_bundled(name: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(X, y, feature names) of bundled dataset `name`, after checking the file's hash and shape."""
    info = BUNDLED[name]
    path = datasets_dir() / info.file
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as e:
        raise NntrainError(f"bundled dataset '{name}' is missing: cannot read {path} ({e})") from None
    if digest != info.sha256:
        raise NntrainError(f"bundled dataset file {path} is damaged or replaced: SHA-256 {digest}, expected {info.sha256}")
    X, y, features = read_csv(path, info.target)
    if X.shape != (info.rows, info.features):
        raise NntrainError(f"bundled dataset {path} has shape {X.shape}, expected {(info.rows, info.features)}")
    return X, y, features
