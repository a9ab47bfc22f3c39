"""Regenerate the messy example table of configs/tables/ (deterministic: same bytes on every run).

    python datasets/tables/make.py            # writes customers_raw.csv and customers.csv.gz next to this script
    python datasets/tables/make.py --check    # exit 1 if the file on disk differs from what it would write

customers_raw.csv: 600 customers of a subscription service, written as a spreadsheet export
would be: a first column of row numbers with no name (as R's write.csv and pandas' to_csv
write it), a text ID, a signup date, a number-coded region, a plan, monthly spend, tenure,
support calls, a mostly empty free-text note, and the target `churned` (yes / no).
Churn is more likely with short tenure, many support calls and the basic plan. Gaps: about
5 % of spend, 3 % of plan, 2 % of support calls are empty, and 90 % of notes.

customers.csv.gz: 500 customers as a clean gzip CSV (docs/config.md's first table): age, region
(east / north / south / west, `?` where unknown, in about 7 % of rows), plan, monthly spend, tenure
and `churned`. Churn follows the same rule. Written with a zero gzip time stamp, so its bytes are
the same on every run.

Only numpy is needed.
"""

from __future__ import annotations

import argparse
import gzip
import io
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SEED = 20261201
NOTES = ["asked about discounts", "moved house", "complained about the app", "referred a friend", "billing dispute"]


def customers() -> bytes:
    rng = np.random.default_rng(SEED)
    n = 600
    tenure = rng.integers(1, 73, n)
    calls = rng.poisson(1.5, n)
    plan = rng.choice(["basic", "pro", "team"], n, p=[0.5, 0.3, 0.2])
    region = rng.choice(["01", "02", "03", "04"], n)
    spend = np.where(plan == "basic", 20, np.where(plan == "pro", 45, 80)) + rng.normal(0, 8, n)
    logit = 1.2 - 0.06 * tenure + 0.7 * calls + 0.8 * (plan == "basic") - 0.5 * (region == "03")
    churned = rng.random(n) < 1 / (1 + np.exp(-logit))
    days = rng.integers(0, 1500, n)
    out = io.StringIO()
    out.write(",customer_id,signup_date,region,plan,monthly_spend,tenure_months,support_calls,notes,churned\n")
    for i in range(n):
        date = np.datetime64("2021-01-01") + np.timedelta64(int(days[i]), "D")
        cells = [
            str(i + 1),
            f"c{10000 + 7 * i}",
            str(date),
            region[i],
            "" if rng.random() < 0.03 else plan[i],
            "" if rng.random() < 0.05 else f"{spend[i]:.2f}",
            str(tenure[i]),
            "NA" if rng.random() < 0.02 else str(calls[i]),
            rng.choice(NOTES) if rng.random() < 0.1 else "",
            "yes" if churned[i] else "no",
        ]
        out.write(",".join(cells) + "\n")
    return out.getvalue().encode()


def customers_clean() -> bytes:
    rng = np.random.default_rng(SEED + 1)
    n = 500
    age = rng.integers(18, 80, n)
    tenure = rng.integers(1, 73, n)
    plan = rng.choice(["basic", "pro", "team"], n, p=[0.5, 0.3, 0.2])
    region = rng.choice(["east", "north", "south", "west"], n)
    spend = np.where(plan == "basic", 20, np.where(plan == "pro", 45, 80)) + rng.normal(0, 8, n)
    logit = 1.5 - 0.07 * tenure + 0.9 * (plan == "basic") - 0.6 * (region == "south")
    churned = rng.random(n) < 1 / (1 + np.exp(-logit))
    unknown = rng.random(n) < 0.07
    out = io.StringIO()
    out.write("age,region,plan,monthly_spend,tenure_months,churned\n")
    for i in range(n):
        cells = [str(age[i]), "?" if unknown[i] else region[i], plan[i], f"{spend[i]:.2f}", str(tenure[i]), "yes" if churned[i] else "no"]
        out.write(",".join(cells) + "\n")
    return gzip.compress(out.getvalue().encode(), mtime=0)


FILES = {"customers_raw.csv": customers, "customers.csv.gz": customers_clean}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the files on disk instead of writing")
    args = parser.parse_args()
    differ = []
    for name, make in FILES.items():
        data, path = make(), HERE / name
        if args.check:
            if not path.exists() or path.read_bytes() != data:
                differ.append(name)
        else:
            path.write_bytes(data)
    if differ:
        print(f"differ from what make.py writes: {', '.join(differ)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
