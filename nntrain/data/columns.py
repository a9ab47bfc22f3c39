"""What each column of a table is for, and how the feature columns become the network's input.

`plan_columns` gives every column a role (feature, target, id, ignored) from `data.columns`
and refuses the columns that would let a wrong model through silently: an unnamed column, an
ID-like text column, a column of dates, a number column that is the row number. The
`FeatureEncoder` is fitted on the training file and saved with the run: numbers pass through,
categories are one-hot encoded, missing cells are NaN until the `Imputer` (fitted on the
training split) fills them, and unknown categories are refused or encoded as all zeros.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from ..engine.registry import did_you_mean
from ..errors import NntrainError, short_repr, shorten
from .table import NUMBER, Column, Table, bools, float64s, ints, numbers_of, strings

# A text column with more distinct values than this is refused unless declared (data.columns.max_categories).
MAX_CATEGORIES = 50
# ... and so is one whose values are nearly all distinct (an ID, free text), once there are enough rows to tell.
DISTINCT_SHARE, DISTINCT_MIN_ROWS = 0.9, 20
# A number column equal to the row number is refused from this many rows on (fewer could be chance).
ROW_NUMBER_MIN_ROWS = 10
ID_NAME = re.compile(r"(^|[\s_.\-])(id|ids|index|idx|key|row|rownum|row_?number|sample_?number|number|no)$|[a-z]ID$|^ID", re.IGNORECASE)
DATE = re.compile(r"^\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$")
KNOWN_SHOWN = 10  # known categories listed in a message about an unknown one


@dataclass
class Roles:
    """data.columns as plain values: which columns are features, which the id, which ignored, which categorical."""

    features: list[str] | None = None
    ignore: list[str] = field(default_factory=list)
    id: str | None = None
    categorical: list[str] = field(default_factory=list)
    max_categories: int = MAX_CATEGORIES

    @classmethod
    def of(cls, config) -> "Roles":
        """From a DataConfig's `columns` section (or its absence)."""
        c = config.columns
        if c is None:
            return cls()
        return cls(c.features, list(c.ignore), c.id, list(c.categorical), c.max_categories)

    def declared(self, name: str) -> bool:
        return name in self.ignore or name == self.id or name in self.categorical or name in (self.features or ())


@dataclass
class ColumnPlan:
    """One column of a table and what nntrain does with it (the `validate` report)."""

    name: str
    role: str  # "feature" | "target" | "id" | "ignored"
    kind: str  # "number" | "category" | "text" | "date" | ...
    missing: int = 0
    categories: int | None = None
    why: str = ""  # why a column is ignored when nobody said so

    def describe(self) -> str:
        kind = f"category ({self.categories} values)" if self.kind == "category" else self.kind
        missing = f", {self.missing} missing" if self.missing else ""
        why = f" ({self.why})" if self.why else ""
        return f"{self.role}: {kind}{missing}{why}"


def _check_names(table: Table, roles: Roles, target: str | None) -> None:
    """Every column a role names exists, and no column has two roles."""
    names = table.names
    given = [("data.columns.ignore", n) for n in roles.ignore] + [("data.columns.categorical", n) for n in roles.categorical]
    given += [("data.columns.features", n) for n in roles.features or ()]
    if roles.id is not None:
        given.append(("data.columns.id", roles.id))
    for key, name in given:
        if name not in names:
            raise NntrainError(f"no column named '{name}' in {table.path}{did_you_mean(name, names)}; columns: {', '.join(names)}", key)
    exclusive = {"data.columns.ignore": set(roles.ignore), "data.columns.id": {roles.id} - {None}, "data.columns.features": set(roles.features or ())}
    if target is not None:
        exclusive["data.target"] = {target}
    keys = list(exclusive)
    for i, a in enumerate(keys):
        for b in keys[i + 1 :]:
            both = sorted(exclusive[a] & exclusive[b])
            if both:
                raise NntrainError(f"column '{both[0]}' is in both {a} and {b}; a column has one role", b)
    for name in roles.categorical:
        if name == target:
            raise NntrainError(f"column '{name}' is data.target; a target is not a feature", "data.columns.categorical")
        if name in exclusive["data.columns.ignore"] | exclusive["data.columns.id"]:
            raise NntrainError(f"column '{name}' is categorical but also ignored or the id; a column has one role", "data.columns.categorical")


def plan_columns(table: Table, target: str | None, roles: Roles) -> list[ColumnPlan]:
    """Each column's role and kind; NntrainError for a column that must not become a feature unasked."""
    _check_names(table, roles, target)
    plans, refused = [], []
    for column in table.columns:
        missing = int(column.missing.sum())
        name = column.name
        if name == target:
            plans.append(_target_plan(column, missing))
            continue
        if name == roles.id:
            plans.append(ColumnPlan(name, "id", "number" if _all_numbers(column) else "text", missing))
            continue
        if name in roles.ignore:
            plans.append(ColumnPlan(name, "ignored", _shown_kind(column), missing))
            continue
        if roles.features is not None and name not in roles.features and name not in roles.categorical:
            plans.append(ColumnPlan(name, "ignored", _shown_kind(column), missing, why="not in data.columns.features"))
            continue
        asked = roles.declared(name)
        if column.unnamed and not asked:
            plans.append(ColumnPlan(name, "ignored", _shown_kind(column), missing, why="no name in the header: row names?"))
            continue
        if name in roles.categorical:
            count = _distinct(column)
            plans.append(ColumnPlan(name, "feature", "category", missing, count))
            continue
        try:
            plans.append(_guarded_feature(table, column, missing, roles, asked))
        except Refused as e:
            refused.append(str(e))
    if len(refused) == 1:
        raise NntrainError(f"{table.path}: {refused[0]}", "data.columns")
    if refused:  # every such column at once: the user declares them in one go
        lines = "\n".join(f"  {r}" for r in refused)
        raise NntrainError(f"{table.path}: {len(refused)} columns must not become features unasked:\n{lines}", "data.columns")
    if not any(p.role == "feature" for p in plans):
        raise NntrainError(f"{table.path}: no column is a feature ({_summary(plans)})", "data.columns")
    return plans


def _target_plan(column: Column, missing: int) -> ColumnPlan:
    """The target: numbers, or class labels (with their count)."""
    if not _all_numbers(column):
        return ColumnPlan(column.name, "target", "category", missing, _distinct(column))
    return ColumnPlan(column.name, "target", "number", missing)


def _all_numbers(column: Column) -> bool:
    """Whether every present cell of a column is a number (a column read as text for exactness, too)."""
    import pyarrow.compute as pc

    if column.kind == "number":
        return True
    if column.kind not in ("text", "text-number"):
        return False
    values = column.values.drop_null()
    return bool(pc.all(pc.match_substring_regex(values, NUMBER.pattern, ignore_case=True)).as_py() or False)


def _summary(plans: list[ColumnPlan]) -> str:
    return "; ".join(f"{p.name}: {p.role}" for p in plans[:10]) + (" ..." if len(plans) > 10 else "")


class Refused(Exception):
    """A column a guard keeps from becoming a feature (the message names it and the keys that decide)."""


def _declare_hint(name: str, what: str) -> str:
    return f"list '{name}' in data.columns.ignore (or make it data.columns.id){what}"


def _guarded_feature(table: Table, column: Column, missing: int, roles: Roles, asked: bool) -> ColumnPlan:
    """A column that would become a feature by default, if none of the guards refuses it."""
    name, n = column.name, len(table)
    if column.kind in ("date", "other"):
        what = "dates" if column.kind == "date" else f"values of type {column.type_name}"
        raise Refused(
            f"column '{name}' holds {what}, which nntrain does not turn into features;"
            f" {_declare_hint(name, ', or in data.columns.categorical to use each value as a category')}"
        )
    if column.kind == "text":
        count = _distinct(column)
        present = n - missing
        sample = column.values.drop_null()
        if len(sample) and _all_dates(sample):
            raise Refused(
                f"column '{name}' holds dates (e.g. '{sample[0].as_py()}'), which nntrain does not turn"
                f" into features; {_declare_hint(name, ', or in data.columns.categorical to use each date as a category')}"
            )
        nearly_all = present >= DISTINCT_MIN_ROWS and count >= DISTINCT_SHARE * present
        if not asked and (count > roles.max_categories or nearly_all):
            why = "nearly every row has its own value: an ID? free text?" if nearly_all else f"more than data.columns.max_categories: {roles.max_categories}"
            raise Refused(
                f"text column '{name}' has {count} distinct values in {present} rows ({why});"
                f" {_declare_hint(name, f', or in data.columns.categorical to one-hot encode its {count} values')}"
            )
        return ColumnPlan(name, "feature", "category", missing, count)
    values = numbers_of(table, column)
    if not asked and n >= ROW_NUMBER_MIN_ROWS:
        flagged = _row_number(values) or _id_like(name, values)
        if flagged:
            raise Refused(
                f"column '{name}' {flagged}; a model would learn the row order or the IDs, not the data:"
                f" {_declare_hint(name, ', or in data.columns.features if it is meant as a feature')}"
            )
    return ColumnPlan(name, "feature", "number", missing)


def _shown_kind(column: Column) -> str:
    """The kind the report shows for a column left out: a text column of dates (as CSV gives them) is "date"."""
    if column.kind == "text":
        sample = column.values.drop_null()
        if len(sample) and _all_dates(sample):
            return "date"
    return column.kind.replace("text-", "")


def _distinct(column: Column) -> int:
    import pyarrow.compute as pc

    values = column.text() if column.kind != "text" else column.values
    return len(pc.unique(values.drop_null()))


def _all_dates(sample) -> bool:
    import pyarrow.compute as pc

    head = sample.slice(0, 1000)
    return bool(pc.all(pc.match_substring_regex(head, DATE.pattern)).as_py())


def _row_number(values: np.ndarray) -> str:
    n = len(values)
    for start in (0, 1):  # the first and last values settle nearly every column
        if values[0] == start and values[-1] == start + n - 1 and np.array_equal(values, np.arange(start, start + n)):
            return f"is the row number ({start}, {start + 1}, {start + 2}, ... {start + n - 1})"
    return ""


def _id_like(name: str, values: np.ndarray) -> str:
    if not ID_NAME.search(name) or np.isnan(values).any() or not np.all(np.mod(values, 1) == 0):
        return ""
    if len(np.unique(values)) == len(values):
        return f"looks like an ID (its name, and {len(values)} distinct whole numbers, one per row)"
    return ""


# --- the encoder -----------------------------------------------------------------------------------


@dataclass
class FeatureEncoder:
    """How a table's feature columns become the network's input.

    Number columns pass through; category columns are one-hot encoded over their sorted
    categories (`col=value`); a column listed in `indicators` gets one more input, `col:missing`,
    1 where its cell was missing. Missing cells are NaN in the output until an `Imputer` fills
    them. A category not seen in training is an error, or with `unknown = "ignore"` all zeros.
    Fitted on the training file and saved with the run, so eval and predict encode new files
    exactly the same way.
    """

    columns: list[str]  # raw feature column names, in input order
    categories: dict[str, list[str]] = field(default_factory=dict)  # category column -> categories
    indicators: list[str] = field(default_factory=list)  # columns with a missing-value indicator input
    unknown: str = "error"  # "error" | "ignore"

    @property
    def names(self) -> list[str]:
        """Input feature names after encoding: `col`, `col=category`, `col:missing`."""
        out = []
        for c in self.columns:
            out += [f"{c}={v}" for v in self.categories[c]] if c in self.categories else [c]
            if c in self.indicators:
                out.append(f"{c}:missing")
        return out

    def blocks(self) -> list[tuple[str, slice, bool]]:
        """(column, its inputs (without the indicator), whether it is a category column) for each column."""
        out, start = [], 0
        for c in self.columns:
            width = len(self.categories[c]) if c in self.categories else 1
            out.append((c, slice(start, start + width), c in self.categories))
            start += width + (c in self.indicators)
        return out

    @property
    def unnamed(self) -> bool:
        """Columns named x0, x1, ... by nntrain (generators, .npz), not by the user."""
        return self.columns == [f"x{j}" for j in range(len(self.columns))]

    @classmethod
    def fit(cls, table: Table, plans: list[ColumnPlan], indicators: bool = False, constants: dict | None = None,
            unknown: str = "error") -> "FeatureEncoder":
        """From the training table: the feature columns of `plans`, the categories of each category column.

        `constants`: column -> the constant that fills its missing cells (a category is added for it).
        """
        features = [p for p in plans if p.role == "feature"]
        categories = {}
        for p in features:
            if p.kind == "category":
                import pyarrow.compute as pc

                column = table.column(p.name)
                values = column.text() if column.kind != "text" else column.values
                found = {str(v) for v in pc.unique(values.drop_null()).to_pylist()}
                if constants and p.name in constants:
                    found.add(str(constants[p.name]))
                categories[p.name] = sorted(found)
        with_gaps = [p.name for p in features if indicators and p.missing]
        return cls([p.name for p in features], categories, with_gaps, unknown)

    def text_columns(self) -> list[str]:
        """The columns a file must be read as text for (categories keep their spelling: '04' is not 4)."""
        return list(self.categories)

    def encode(self, table: Table, problems: dict | None = None) -> np.ndarray:
        """(rows, len(names)) float64, NaN where a cell is missing.

        A cell that cannot be encoded (text in a number column, an unknown category under
        unknown = "error") is an NntrainError naming its line, or, with `problems` (a dict),
        recorded there as {row: message} and its row left as NaN.
        """
        import pyarrow.compute as pc

        if not table.has(self.columns):
            raise NntrainError(f"{table.path} has columns {table.names}; the model needs the features {self.columns}")
        n = len(table)
        X = np.empty((n, len(self.names)))
        copied = self._copy_number_runs(table, X)
        for (name, cols, is_category), column in zip(self.blocks(), (table.column(c) for c in self.columns)):
            gaps = column.missing
            if name in copied:
                pass
            elif is_category:
                values = column.text() if column.kind != "text" else column.values
                known = self.categories[name]
                code = ints(pc.index_in(values, value_set=strings(known)), null=-1)
                unknown = (code < 0) & ~gaps
                block = X[:, cols]
                block[...] = 0.0
                block[np.flatnonzero(code >= 0), code[code >= 0]] = 1.0
                block[gaps] = np.nan
                if unknown.any() and self.unknown == "error":
                    for r in np.flatnonzero(unknown)[: None if problems is not None else 1]:
                        message = self._unknown_message(table, int(r), name, values[int(r)].as_py(), problems is not None)
                        if problems is None:
                            raise NntrainError(message, "data.unknown")
                        problems.setdefault(int(r), message)
                        block[r] = np.nan
                X[:, cols] = block
            else:
                try:
                    X[:, cols.start] = numbers_of(table, column)
                except NntrainError:
                    if problems is None:
                        raise
                    X[:, cols.start] = self._numbers_by_row(table, column, problems)
            if name in self.indicators:
                X[:, cols.stop] = gaps
        return X

    def _copy_number_runs(self, table: Table, X: np.ndarray) -> set[str]:
        """Copy runs of number columns that are adjacent both in X and in their table's shared array; their names.

        A wide table of numbers is then one 2-D copy instead of a strided one per column.
        """
        done, run = set(), []  # run: (column, position in X) of the current run

        def flush():
            if len(run) > 1:
                first, start = run[0]
                X[:, start : start + len(run)] = first.block[:, first.index : first.index + len(run)]
                done.update(c.name for c, _ in run)
            run.clear()

        for name, cols, is_category in self.blocks():
            column = table.column(name)
            finite = column.__dict__.get("_finite")
            usable = not is_category and name not in self.indicators and column.block is not None and finite
            if usable and run and column.block is run[-1][0].block and column.index == run[-1][0].index + 1:
                run.append((column, cols.start))
                continue
            flush()
            if usable:
                run.append((column, cols.start))
        flush()
        return done

    def _numbers_by_row(self, table: Table, column: Column, problems: dict) -> np.ndarray:
        """A number column's values with every cell that is not a finite number recorded as a problem (NaN)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        if column.kind == "number":  # read as numbers: only infinities can be wrong
            values = np.array(column.values, dtype=np.float64)
        elif column.kind in ("date", "other"):  # dates, lists, structs: no cell is a number
            for r in np.flatnonzero(~column.missing):
                problems.setdefault(int(r), f"column '{column.name}' holds values of type {column.type_name}, not numbers")
            return np.full(len(table), np.nan)
        else:
            text = column.values
            parses = pc.match_substring_regex(text, NUMBER.pattern, ignore_case=True)
            for r in np.flatnonzero(~bools(parses, null=True)):
                problems.setdefault(int(r), f"column '{column.name}': {short_repr(text[int(r)].as_py(), 60)} is not a number")
            values = float64s(pc.cast(pc.if_else(parses, text, pa.nulls(len(text), pa.string())), pa.float64()))
        for r in np.flatnonzero(np.isinf(values)):
            problems.setdefault(int(r), f"column '{column.name}': '{values[r]}' is not a finite number")
        values[np.isinf(values)] = np.nan
        return values

    def _unknown_message(self, table: Table, row: int, column: str, value, per_row: bool) -> str:
        known = self.categories[column]
        shown = ", ".join(shorten(k, 40) for k in known[:KNOWN_SHOWN]) + (f", ... ({len(known)} in all)" if len(known) > KNOWN_SHOWN else "")
        where = "" if per_row else f"{table.where(row)}, "
        return (
            f"{where}column '{column}': category {short_repr(value, 60)} was not in the training data (known: {shown});"
            " set data.unknown: ignore to encode unknown categories as all zeros"
        )

    def state_dict(self) -> dict[str, np.ndarray]:
        state = {"data.columns": np.array(self.columns, dtype=np.str_)}
        for j, column in enumerate(self.columns):
            if column in self.categories:
                state[f"data.categories.{j}"] = np.array(self.categories[column], dtype=np.str_)
        if self.indicators:
            state["data.indicators"] = np.array(self.indicators, dtype=np.str_)
        return state

    @classmethod
    def from_state(cls, state: dict, unknown: str = "error") -> "FeatureEncoder":
        columns = [str(c) for c in state["data.columns"]]
        categories = {
            c: [str(v) for v in state[f"data.categories.{j}"]] for j, c in enumerate(columns) if f"data.categories.{j}" in state
        }
        indicators = [str(c) for c in state["data.indicators"]] if "data.indicators" in state else []
        return cls(columns, categories, indicators, unknown)


# --- imputation ------------------------------------------------------------------------------------


@dataclass
class Rule:
    """How one column's missing cells are filled: mean | median | most_frequent | constant (with `value`)."""

    strategy: str
    value: object = None


@dataclass
class Imputer:
    """x[missing] = fill[input]: one fill value per encoded input, fitted on the training split.

    Numbers: the mean or median of the column's present training values, its most frequent
    value (the smallest among ties), or a constant. Categories: the one-hot row of the most
    frequent training category (the first in sorted order among ties), or of a constant
    category. Indicator inputs are never missing.
    """

    fill: np.ndarray | None = None  # (features,) float64; None: nothing is imputed

    @classmethod
    def fitted(cls, encoder: FeatureEncoder, X, rows: np.ndarray, rules: dict[str, Rule]) -> "Imputer":
        """Fitted on X[rows] (the training split); `rules`: column -> Rule for every feature column."""
        part = np.asarray(X[rows], dtype=np.float64)
        fill = np.zeros(X.shape[1])
        for name, cols, is_category in encoder.blocks():
            rule = rules[name]
            values = part[:, cols]
            present = values[~np.isnan(values).any(axis=1)]
            if rule.strategy == "constant":
                fill[cols] = _constant(encoder, name, cols, is_category, rule.value)
                continue
            if not len(present):
                raise NntrainError(
                    f"column '{name}' has no values in the {len(rows)} training rows to compute its {rule.strategy} from;"
                    " fill it with a constant (data.impute.columns) or ignore it (data.columns.ignore)",
                    "data.impute",
                )
            if is_category:  # most_frequent: the category with the most ones
                counts = present.sum(axis=0)
                fill[cols] = np.eye(cols.stop - cols.start)[int(np.argmax(counts))]
            elif rule.strategy == "mean":
                fill[cols.start] = present[:, 0].mean()
            elif rule.strategy == "median":
                fill[cols.start] = np.median(present[:, 0])
            else:
                distinct, counts = np.unique(present[:, 0], return_counts=True)
                fill[cols.start] = distinct[int(np.argmax(counts))]
        return cls(fill)

    def transform(self, X: np.ndarray) -> np.ndarray:
        """X with its NaN cells filled, in place."""
        if self.fill is None:
            return X
        gaps = np.isnan(X)
        if gaps.any():
            X[gaps] = np.broadcast_to(self.fill, X.shape)[gaps]
        return X

    def state_dict(self) -> dict[str, np.ndarray]:
        return {} if self.fill is None else {"data.impute.fill": self.fill}

    @classmethod
    def from_state(cls, state: dict) -> "Imputer":
        return cls(state.get("data.impute.fill"))


def _constant(encoder: FeatureEncoder, name: str, cols: slice, is_category: bool, value) -> np.ndarray:
    if is_category:
        categories = encoder.categories[name]
        return np.eye(len(categories))[categories.index(str(value))]
    return np.array([float(value)])


def impute_rules(encoder: FeatureEncoder, impute) -> dict[str, Rule]:
    """Each feature column's Rule from data.impute (an ImputeConfig): its own entry, else numeric / categorical."""
    unknown = [n for n in impute.columns if n not in encoder.columns]
    if unknown:
        name = unknown[0]
        raise NntrainError(
            f"'{name}' is not a feature column{did_you_mean(name, encoder.columns)}; features: {', '.join(encoder.columns)}",
            f"data.impute.columns.{name}",
        )
    rules = {}
    for name in encoder.columns:
        given = impute.columns.get(name)
        is_category = name in encoder.categories
        spec = given or (impute.categorical if is_category else impute.numeric)
        key = f"data.impute.columns.{name}" if given else ("data.impute.categorical" if is_category else "data.impute.numeric")
        if is_category and spec.strategy in ("mean", "median"):
            raise NntrainError(f"column '{name}' holds categories, which have no {spec.strategy}; use most_frequent or constant", key)
        value = spec.value
        if spec.strategy == "constant":
            if value is None:
                value = "missing" if is_category else 0.0
            elif not is_category:
                try:
                    value = float(value)
                except ValueError:
                    raise NntrainError(f"column '{name}' holds numbers; the constant must be a number, got {value!r}", key) from None
        rules[name] = Rule(spec.strategy, value)
    return rules


REPORT_COLUMNS = 50  # columns `validate` lists one by one; the others are counted by role and kind


def column_report(plans: list[ColumnPlan]) -> list[str]:
    """One line per column: its name and what nntrain does with it (`nntrain validate`).

    Past REPORT_COLUMNS (tables may have 10,000s of columns) the rest are counted by role and kind.
    """
    shown = plans if len(plans) <= REPORT_COLUMNS + 10 else plans[:REPORT_COLUMNS]
    width = min(30, max((len(p.name) for p in shown), default=0))
    lines = [f"  {p.name:<{width}}  {p.describe()}" for p in shown]
    rest = plans[len(shown) :]
    if rest:
        counts = Counter(f"{p.role}: {p.kind}" for p in rest)
        lines.append(f"  ... and {len(rest):,} more: " + ", ".join(f"{n:,} {what}" for what, n in counts.most_common()))
    return lines
