"""Regenerate the small data files of configs/classic/ (deterministic: same bytes on every run).

    python datasets/classic/make.py            # writes the four CSV files next to this script
    python datasets/classic/make.py --check    # exit 1 if a file on disk differs from what it would write

Files (all plain CSV, a header row, the target as the last column):

outliers_train.csv   400 rows, regression: y = 3 x0 - 2 x1 + 1 + N(0, 0.3^2), x uniform in [-2, 2]^2;
                     60 rows (15 %) are gross errors: y += U(15, 30), all upwards (a sensor that
                     sometimes reports a spike). Used by huber_outliers.yaml / huber_mse_outliers.
outliers_test.csv    200 clean rows of the same line, no outliers: the test split.
imbalanced_train.csv 2000 rows, two classes 95 / 5: common ~ N((0, 0), I), rare ~ N((1.5, 1.5), I).
                     The classes overlap, so a plain classifier almost never predicts `rare`.
imbalanced_test.csv  2000 rows drawn the same way (1900 common, 100 rare): a test split large
                     enough that the minority class's recall is measured on 100 rows, not a handful.

Only numpy is needed. Numbers are written with 4 decimals, so the files are small (< 100 KB).
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SEED = 20240505


def _csv(header: list[str], columns: list) -> bytes:
    out = io.StringIO()
    out.write(",".join(header) + "\n")
    for row in zip(*columns):
        out.write(",".join(v if isinstance(v, str) else f"{v:.4f}" for v in row) + "\n")
    return out.getvalue().encode()


def outliers(rng: np.random.Generator, rows: int, fraction: float) -> bytes:
    X = rng.uniform(-2, 2, size=(rows, 2))
    y = 3 * X[:, 0] - 2 * X[:, 1] + 1 + 0.3 * rng.standard_normal(rows)
    n_out = round(fraction * rows)
    if n_out:
        which = rng.choice(rows, size=n_out, replace=False)
        y[which] += rng.uniform(15, 30, size=n_out)
    return _csv(["x0", "x1", "y"], [X[:, 0], X[:, 1], y])


def imbalanced(rng: np.random.Generator, common: int, rare: int) -> bytes:
    X = np.concatenate([rng.standard_normal((common, 2)), rng.standard_normal((rare, 2)) + 1.5])
    label = np.array(["common"] * common + ["rare"] * rare)
    order = rng.permutation(common + rare)  # interleave the classes, as real data would be
    X, label = X[order], label[order]
    return _csv(["x0", "x1", "label"], [X[:, 0], X[:, 1], label])


def files() -> dict[str, bytes]:
    # One child stream per file, so changing one file's recipe does not change the others.
    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(SEED).spawn(4)]
    return {
        "outliers_train.csv": outliers(rngs[0], 400, 0.15),
        "outliers_test.csv": outliers(rngs[1], 200, 0.0),
        "imbalanced_train.csv": imbalanced(rngs[2], 1900, 100),
        "imbalanced_test.csv": imbalanced(rngs[3], 1900, 100),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the files on disk instead of writing")
    args = parser.parse_args(argv)
    differ = []
    for name, data in files().items():
        path = HERE / name
        if args.check:
            if not path.exists() or path.read_bytes() != data:
                differ.append(name)
        else:
            path.write_bytes(data)
            print(f"{path.relative_to(HERE.parent.parent)}: {len(data)} bytes")
    if differ:
        print("differ from make.py's output: " + ", ".join(differ), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
