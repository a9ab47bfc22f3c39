"""Table files read into named columns, through pyarrow: CSV (.csv, .csv.gz, .tsv), Parquet, Feather / Arrow IPC.

A column comes out as numbers (float64, NaN where a cell is missing) or as text (a pyarrow
string array, null where a cell is missing); `Table.where(i)` names the line (CSV) or row
(Parquet, Feather) of data row i, for messages. Reading fails only with an NntrainError that
names the file, and the line where it is known.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
import zlib
from collections import Counter
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import NntrainError, short_repr

CSV_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".tsv.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")
FEATHER_SUFFIXES = (".feather", ".arrow", ".ipc")
TABLE_SUFFIXES = (*CSV_SUFFIXES, *PARQUET_SUFFIXES, *FEATHER_SUFFIXES)
DELIMITERS = (",", ";", "\t", "|")  # what `delimiter: auto` chooses among
MISSING = ("", "na", "n/a", "nan", "null", "none", "?")  # cells read as missing, case-insensitive
MISSING_CELL = "^(" + "|".join(re.escape(m) for m in MISSING) + ")$"
SNIFF_BYTES = 64 * 1024
WIDE = 200  # columns from which a CSV is first read as all numbers, without looking at its types


def _case_variants(word: str) -> list[str]:
    """Every upper/lower-case spelling of a short word: pyarrow matches missing-value markers exactly."""
    variants = [""]
    for ch in word:
        variants = [v + c for v in variants for c in {ch.lower(), ch.upper()}]
    return variants


NULL_VALUES = sorted({v for word in MISSING for v in _case_variants(word)})
# The usual spellings only: each marker costs pyarrow time on every cell. A file with another
# spelling (nULL) fails the fast read and is read again with NULL_VALUES.
COMMON_NULLS = sorted({v for word in MISSING for v in (word, word.upper(), word.capitalize())} | {"NaN", "N/A"})


def is_table_file(path) -> bool:
    return str(path).lower().endswith(TABLE_SUFFIXES)


def file_format(path) -> str:
    name = str(path).lower()
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if name.endswith(FEATHER_SUFFIXES):
        return "feather"
    return "csv"


@dataclass
class Column:
    """One column: numbers (float64, NaN = missing) or text (pyarrow strings, null = missing), or dates."""

    name: str
    kind: str  # "number" | "text" | "date" | "other"
    values: object  # np.ndarray (number) or pyarrow.Array (text, date, other)
    type_name: str = ""  # the file's own type, for messages about "other" columns
    unnamed: bool = False  # the header gave it no name (nntrain named it unnamed_J)
    # Number columns of a table share one (rows, k) array (`stack_numbers`): values is column
    # `index` of `block`, so that encoding copies runs of columns at once.
    block: np.ndarray | None = None
    index: int = -1

    @property
    def missing(self) -> np.ndarray:
        """True where a cell is missing (computed once: guards, reports and encoding all ask)."""
        cached = self.__dict__.get("_missing")
        if cached is None:
            cached = self._missing = np.isnan(self.values) if self.kind == "number" else bools(self.values.is_null())
        return cached

    def text(self):
        """The column as pyarrow strings (numbers as the shortest text that reads back as the same float)."""
        import pyarrow as pa

        import pyarrow.compute as pc

        if self.kind == "number":
            values = self.values
            present = values[~np.isnan(values)]
            if np.all(np.mod(present, 1) == 0) and (not len(present) or np.abs(present).max() < 2**53):
                text = pc.cast(indices(np.nan_to_num(values).astype(np.int64)), pa.string())
            else:  # fractions: the shortest text that reads back as the same float
                text = strings([_number_text(v) for v in values.tolist()])
            gaps = np.isnan(values)
            return pc.if_else(_bool_array(gaps), pa.nulls(len(values), pa.string()), text) if gaps.any() else text
        return pc.cast(self.values, pa.string()) if self.values.type != pa.string() else self.values


def _number_text(v: float) -> str:
    return str(int(v)) if v.is_integer() and abs(v) < 2**53 else repr(v)


@dataclass
class Table:
    """A table file's columns, in file order, and where each data row is in the file."""

    path: Path
    format: str  # "csv" | "parquet" | "feather"
    columns: list[Column]
    rows: np.ndarray  # position of each data row among the file's records after the header (CSV), or row index
    delimiter: str | None = None

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def __len__(self) -> int:
        return len(self.rows)

    def column(self, name: str) -> Column:
        """The column named `name` (a dict lookup: tables may have 10,000s of columns)."""
        index = self.__dict__.get("_index")
        if index is None or name not in index or index[name].name != name:  # built again after a rename
            index = self._index = {c.name: c for c in self.columns}
        return index[name]

    def has(self, names) -> bool:
        present = {c.name for c in self.columns}
        return all(n in present for n in names)

    def select(self, keep: np.ndarray) -> "Table":
        """The rows where `keep` is true (a boolean mask over the rows)."""
        index = indices(np.flatnonzero(keep))
        columns = [
            Column(c.name, c.kind, c.values[keep] if c.kind == "number" else c.values.take(index), c.type_name, c.unnamed)
            for c in self.columns
        ]
        return Table(self.path, self.format, columns, self.rows[keep], self.delimiter)

    def lines(self, rows) -> list[int]:
        """The line (CSV, 1-based, where the row starts) or row number (1-based) of data rows `rows`."""
        positions = self.rows[np.asarray(rows, dtype=np.int64)]
        if self.format != "csv":
            return [int(p) + 1 for p in positions]
        wanted = {int(p) for p in positions}
        found, record = {}, -1
        with closing(_csv_rows(self.path, self.delimiter)) as reader:
            _header(reader, self.path, self.delimiter)
            for line, start, row in reader:
                if not row:
                    continue
                record += 1
                if record in wanted:
                    found[record] = start
                    if len(found) == len(wanted):
                        break
        return [found.get(int(p), 0) for p in positions]

    def where(self, row: int) -> str:
        """'FILE, line N' or 'FILE, row N' of data row `row`."""
        unit = "line" if self.format == "csv" else "row"
        return f"{self.path}, {unit} {self.lines([row])[0]}"


def read(path: Path, delimiter: str | None = None, text_columns=()) -> Table:
    """A table file's columns. `delimiter`: CSV only, None to detect it; `text_columns` are kept as text."""
    fmt = file_format(path)
    if fmt == "csv":
        return _read_csv(path, delimiter, set(text_columns))
    return _read_columnar(path, fmt, set(text_columns))


# --- CSV -------------------------------------------------------------------------------------------


def _open_text(path: Path):
    """A CSV file for reading, gzip-compressed or not."""
    if str(path).lower().endswith(".gz"):
        return gzip.open(path, "rt", newline="", encoding="utf-8-sig")
    return open(path, newline="", encoding="utf-8-sig")


def sniff_delimiter(path: Path) -> str:
    """The delimiter among `DELIMITERS` that splits the first lines into the most columns, the same number on each.

    A file of one column (no delimiter found) reads with ','.
    """
    try:
        with _open_text(path) as f:
            sample = f.read(SNIFF_BYTES)
    except (OSError, UnicodeDecodeError, EOFError, zlib.error, gzip.BadGzipFile):
        return ","  # the full read reports what is wrong
    lines = [ln for ln in sample.splitlines()[:21] if ln.strip()]
    if len(sample) == SNIFF_BYTES and len(lines) > 1:
        lines = lines[:-1]  # the last line may be cut short
    best, best_width = ",", 1
    for d in DELIMITERS:
        try:
            widths = {len(r) for r in csv.reader(io.StringIO("\n".join(lines)), delimiter=d)}
        except csv.Error:
            continue
        if len(widths) == 1 and (w := widths.pop()) > best_width:
            best, best_width = d, w
    return best


def _csv_rows(path: Path, delimiter: str | None):
    """(line, first line, fields) of every record of a CSV file, as csv.reader parses it.

    The one place where the Python reading of a file can fail: a damaged gzip stream, text
    that is not UTF-8, a NUL byte, a field beyond the csv module's limit, a refused read.
    Each becomes an NntrainError that names the file, and the line where it is known.
    """
    line = 0  # lines handed to the csv reader so far

    def lines(f):
        nonlocal line
        for text in f:
            line += 1
            if "\0" in text:
                raise NntrainError(
                    f"{path}, line {line}: a NUL byte, which UTF-8 text does not hold (a UTF-16 file? not a CSV file?);"
                    " save the file as UTF-8"
                )
            yield text

    try:
        with _open_text(path) as f:
            reader = csv.reader(lines(f), delimiter=delimiter or ",")
            last = 0
            for row in reader:
                yield reader.line_num, last + 1, row
                last = reader.line_num
    except UnicodeDecodeError as e:
        where = _undecodable_line(path)
        raise NntrainError(
            f"{path}{f', line {where}' if where else ''}: not UTF-8 text (byte 0x{e.object[e.start]:02x}: {e.reason});"
            " save the file as UTF-8"
        ) from None
    except (zlib.error, gzip.BadGzipFile, EOFError) as e:
        raise NntrainError(f"{path}: the gzip data is damaged or truncated ({e}); a .csv.gz file must be gzip-compressed CSV text") from None
    except csv.Error as e:
        reason = str(e)
        if "field limit" in reason:
            reason = (
                f"a field is longer than {csv.field_size_limit():,} characters"
                " (a quote \" that opens a field and is never closed?)"
            )
        raise NntrainError(f"{path}, line {line}: {reason}") from None
    except OSError as e:
        raise NntrainError(f"cannot read {path}: {e.strerror or e}") from None


def _undecodable_line(path: Path) -> int | None:
    """The line (1-based, as an editor counts) holding the first byte that is not UTF-8; None if it cannot be told."""
    try:
        opener = gzip.open if str(path).lower().endswith(".gz") else open
        with opener(path, "rb") as f:
            for number, raw in enumerate(f, 1):  # a UTF-8 sequence never holds a newline byte
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError:
                    return number
    except (OSError, EOFError, zlib.error):
        pass
    return None


def _header(rows, path, delimiter: str) -> tuple[list[str], set[str]]:
    """The first record that is not a blank line, stripped: column names, each once, and those nntrain gave.

    An empty name becomes `unnamed_J` (J: the column's 1-based position), which column roles
    can name; such a column is never a feature unless asked for (`columns`).
    """
    for line, _, row in rows:
        if len(row) <= 1 and not "".join(row).strip():
            continue
        header = [h.strip() for h in row]
        if not any(header):
            raise NntrainError(f"{path}, line {line}: the header row has no column names; a CSV needs a header row naming every column")
        if len(header) == 1 and delimiter == ",":
            other = [d for d in DELIMITERS if d != "," and d in header[0]]
            if other:
                shown = {"\t": "\\t"}.get(other[0], other[0])
                raise NntrainError(
                    f"{path}: the header is one column, '{header[0][:60]}', which holds '{shown}':"
                    f" set data.delimiter: \"{shown}\" (or auto)"
                )
        return _names(header, path)
    raise NntrainError(f"{path} is empty; a CSV needs a header row and data rows")


def _names(header: list[str], path) -> tuple[list[str], set[str]]:
    names = [h if h else f"unnamed_{j + 1}" for j, h in enumerate(header)]
    repeated = sorted(h for h, n in Counter(names).items() if n > 1)
    if repeated:
        raise NntrainError(f"{path}: the header names {repeated} more than once; column names must be unique")
    return names, {n for n, h in zip(names, header) if not h}


def _mark_unnamed(columns: list[Column], unnamed: set[str]) -> list[Column]:
    for c in columns:
        c.unnamed = c.name in unnamed
    return columns


def _read_csv(path: Path, delimiter: str | None, text_columns: set[str]) -> Table:
    delimiter = delimiter or sniff_delimiter(path)
    with closing(_csv_rows(path, delimiter)) as records:
        names, unnamed = _header(records, path, delimiter)  # read by Python: the names, and clear errors on the first line

    import pyarrow as pa
    import pyarrow.csv as pcsv

    skip = _header_records(path, delimiter)
    options = dict(
        read_options=pcsv.ReadOptions(column_names=names, skip_rows=skip),
        parse_options=pcsv.ParseOptions(delimiter=delimiter),
    )

    def convert(types: dict, nulls=NULL_VALUES):
        return pcsv.ConvertOptions(
            null_values=nulls, strings_can_be_null=True, quoted_strings_can_be_null=True,
            true_values=[], false_values=[], column_types=types,
        )

    def numbers_in_first_block() -> dict:
        with pcsv.open_csv(path, convert_options=convert(text), **options) as first:
            return {f.name: pa.float64() for f in first.schema if f.name not in text and _numeric_type(f.type)}

    text = {n: pa.string() for n in names if n in text_columns}
    try:
        # Type inference costs ~0.1 ms per column, so columns are typed float64 where that can be
        # told: all of them first (most wide tables), else those that are numbers in the first
        # block; only when text turns up later in such a column is every column inferred.
        arrow = None
        every = lambda: {n: pa.float64() for n in names}  # noqa: E731
        # Inferring even one block's types is slow for 10,000s of columns; a failed full read is
        # slow for many rows (pyarrow reports it after parsing blocks in parallel).
        for guess in (every, numbers_in_first_block) if len(names) > WIDE else (numbers_in_first_block,):
            try:
                arrow = pcsv.read_csv(path, convert_options=convert({**guess(), **text}, COMMON_NULLS), **options)
                break
            except pa.ArrowInvalid as e:
                if "conversion error" not in str(e):
                    raise
        if arrow is None:
            arrow = pcsv.read_csv(path, convert_options=convert(text), **options)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError, EOFError, zlib.error, gzip.BadGzipFile):
        # pyarrow says little of where; the Python reader finds the line, or reads what pyarrow could not
        # (a line of spaces), slowly.
        return _read_csv_python(path, delimiter, names, unnamed, text_columns)
    rows, held = arrow.num_rows, [arrow]
    del arrow  # _normalise_all gets the only reference, and frees the table column by column
    columns = stack_numbers(_normalise_all(held.pop(), names, text_columns))
    return _table(path, "csv", _mark_unnamed(columns, unnamed), np.arange(rows), delimiter)


def _normalise_all(arrow, names: list[str], text_columns: set[str], infer: bool = True) -> list[Column]:
    """Every column of a pyarrow table normalised, each column's chunks let go once it is done.

    The table is emptied as it goes, so that the file's data is held about once, not as the
    table's chunks and the columns' arrays at the same time (then stack_numbers frees each
    number column's array once it is in the block).
    """
    chunked = [arrow.column(j) for j in range(arrow.num_columns)]
    del arrow  # the caller passed its only reference: now each column's chunks are held once, by `chunked`
    columns = []
    for j, name in enumerate(names):
        columns.append(_normalise(name, chunked[j], name in text_columns, infer))
        chunked[j] = None
    return columns


def _numeric_type(t) -> bool:
    import pyarrow as pa

    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_null(t)


def _header_records(path: Path, delimiter: str) -> int:
    """Records before the first data row: blank lines before the header, and the header (for pyarrow's skip_rows)."""
    skipped = 0
    with closing(_csv_rows(path, delimiter)) as records:
        for _, _, row in records:
            skipped += 1
            if not (len(row) <= 1 and not "".join(row).strip()):
                break
    return skipped


def _data_records(path: Path, delimiter: str, width: int):
    """(position, fields) of each data row, read by Python's csv module, with precise errors (line, fields)."""
    record = -1
    with closing(_csv_rows(path, delimiter)) as reader:
        _header(reader, path, delimiter)
        for line, first, row in reader:
            if not row:
                continue
            record += 1
            if all(not c.strip() for c in row):
                continue
            if len(row) != width:
                if line > first and any("\n" in c or "\r" in c for c in row):
                    raise NntrainError(
                        f"{path}, line {first}: {len(row)} fields, the header has {width}; a quoted field runs from"
                        f" there to line {line} (a quote \" that opens a field and is never closed?)"
                    )
                raise NntrainError(f"{path}, line {line}: {len(row)} fields, the header has {width}")
            yield record, row


def _read_csv_python(path: Path, delimiter: str, names: list[str], unnamed: set[str], text_columns: set[str]) -> Table:
    """The CSV read by Python's csv module: precise errors (line, number of fields), and files pyarrow refuses."""
    import pyarrow as pa

    rows, positions = [], []
    for record, row in _data_records(path, delimiter, len(names)):
        rows.append(row)
        positions.append(record)
    if not rows:
        raise NntrainError(f"{path} has a header but no data rows")
    columns = []
    for j, name in enumerate(names):
        cells = strings([r[j] for r in rows])
        columns.append(_normalise(name, pa.chunked_array([cells]), name in text_columns))
    return _table(path, "csv", _mark_unnamed(columns, unnamed), np.array(positions, dtype=np.int64), delimiter)


def batches(path: Path, delimiter: str | None = None, text_columns=(), rows: int = 65536):
    """The table file as a sequence of Tables of about `rows` rows each, read in a bounded amount of memory.

    Every cell of a CSV is read as text and typed per batch (as `read` types a whole file);
    a row pyarrow cannot parse is found again by Python's csv module, which names its line.
    """
    import pyarrow as pa

    fmt, text_columns = file_format(path), set(text_columns)
    names, unnamed = header_names(path, delimiter)
    if fmt == "csv":
        delimiter = delimiter or sniff_delimiter(path)
        source = _csv_batches(path, delimiter, names, rows)
    else:
        source = _columnar_batches(path, fmt, rows)
    start = 0
    try:
        for batch in source:
            n = batch.num_rows
            columns = [_normalise(name, batch.column(j), name in text_columns) for j, name in enumerate(names)]
            positions = np.arange(start, start + n)
            start += n
            if n:
                try:
                    yield _table(path, fmt, _mark_unnamed(columns, unnamed), positions, delimiter)
                except NntrainError:  # a batch of blank rows only
                    continue
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        if fmt == "csv":
            for _ in _data_records(path, delimiter, len(names)):
                pass  # raises at the row pyarrow stumbled on
        raise NntrainError(f"cannot read {path}: {str(e).splitlines()[0]}") from None


def _csv_batches(path: Path, delimiter: str, names: list[str], rows: int):
    import pyarrow as pa
    import pyarrow.csv as pcsv

    reader = pcsv.open_csv(
        path,
        # Small blocks, one thread: pyarrow's read-ahead and allocator otherwise hold several blocks' worth
        # of strings per thread, and peak memory grows with the file (measured: 281 MB for 167 MB of CSV).
        read_options=pcsv.ReadOptions(
            column_names=names, skip_rows=_header_records(path, delimiter), block_size=1 << 20, use_threads=False
        ),
        parse_options=pcsv.ParseOptions(delimiter=delimiter),
        convert_options=pcsv.ConvertOptions(
            column_types={n: pa.string() for n in names}, null_values=NULL_VALUES,
            strings_can_be_null=True, quoted_strings_can_be_null=True,
        ),
    )
    yield from reader


def _columnar_batches(path: Path, fmt: str, rows: int):
    import pyarrow as pa

    if fmt == "parquet":
        import pyarrow.parquet as pq

        yield from pq.ParquetFile(path).iter_batches(batch_size=rows)
        return
    import pyarrow.ipc as ipc

    with pa.memory_map(str(path)) as source:
        try:
            reader = ipc.open_file(source)
            for i in range(reader.num_record_batches):
                yield reader.get_batch(i)
        except pa.ArrowInvalid:
            source.seek(0)
            yield from ipc.open_stream(source)


# --- Parquet, Feather ------------------------------------------------------------------------------


def _read_columnar(path: Path, fmt: str, text_columns: set[str]) -> Table:
    import pyarrow as pa

    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            arrow = pq.ParquetFile(path).read()  # pq.read_table goes through pyarrow's pandas shim (imports pandas)
        else:
            arrow = _read_ipc(path)
    except (pa.ArrowException, OSError, ValueError) as e:
        what = "Parquet" if fmt == "parquet" else "Feather / Arrow IPC"
        raise NntrainError(f"cannot read {path} as a {what} file: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    names, unnamed = _names([str(n).strip() for n in arrow.column_names], path)
    if not names:
        raise NntrainError(f"{path} has no columns")
    rows, held = arrow.num_rows, [arrow]
    del arrow  # as in _read_csv
    columns = stack_numbers(_normalise_all(held.pop(), names, text_columns, infer=False))
    return _table(path, fmt, _mark_unnamed(columns, unnamed), np.arange(rows), None)


def _read_ipc(path: Path):
    """A Feather v2 / Arrow IPC file, or an Arrow IPC stream; Feather v1 through pyarrow.feather."""
    import pyarrow as pa
    import pyarrow.ipc as ipc

    with pa.OSFile(str(path)) as source:  # read, not mapped: the table outlives the open file
        for opener in (ipc.open_file, ipc.open_stream):
            try:
                source.seek(0)
                return opener(source).read_all()
            except pa.ArrowInvalid:
                continue
    import pyarrow.feather as feather

    return feather.read_table(path)


def header_names(path: Path, delimiter: str | None = None) -> tuple[list[str], set[str]]:
    """A table file's column names (the header of a CSV, the schema of Parquet / Feather), without reading its rows.

    Also the names nntrain gave to columns the header left unnamed.
    """
    fmt = file_format(path)
    if fmt == "csv":
        with closing(_csv_rows(path, delimiter or sniff_delimiter(path))) as records:
            return _header(records, path, delimiter or sniff_delimiter(path))
    import pyarrow as pa

    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            schema = pq.read_schema(path)
        else:
            import pyarrow.ipc as ipc

            with pa.memory_map(str(path)) as source:
                try:
                    schema = ipc.open_file(source).schema
                except pa.ArrowInvalid:
                    source.seek(0)
                    schema = ipc.open_stream(source).schema
    except (pa.ArrowException, OSError, ValueError) as e:
        raise NntrainError(f"cannot read {path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    return _names([str(n).strip() for n in schema.names], path)


# --- columns ---------------------------------------------------------------------------------------

NUMBER = re.compile(r"^[+-]?(\d+\.?\d*([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?|inf|infinity|nan)$", re.IGNORECASE)


def _normalise(name: str, chunked, as_text: bool, infer: bool = True) -> Column:
    """A pyarrow column as a Column: numbers as float64, text trimmed with missing markers as null.

    A text column of which at least half the cells are numbers is a column of numbers (with
    `infer`): its other cells are errors, reported when the column is used (`bad_numbers`).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    array = chunked.combine_chunks() if isinstance(chunked, pa.ChunkedArray) else chunked
    t = array.type
    if pa.types.is_dictionary(t):
        array = array.cast(t.value_type) if not pa.types.is_null(t.value_type) else array.dictionary_decode()
        t = array.type
    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        array, t = array.cast(pa.string()), pa.string()
    if pa.types.is_null(t):
        return Column(name, "number", np.full(len(array), np.nan))
    if as_text and not pa.types.is_string(t):
        if pa.types.is_floating(t):  # the shortest text that reads back as the same float
            return Column(name, "text", Column(name, "number", _floats(array)).text())
        return Column(name, "text", pc.cast(array, pa.string()))  # integers digit for digit, however large
    if pa.types.is_string(t):
        array = _clean_text(array)
        if as_text or not infer:
            return Column(name, "text", array)
        present = array.drop_null()
        if len(present) and pc.sum(pc.match_substring_regex(present, NUMBER.pattern, ignore_case=True)).as_py() * 2 >= len(present):
            return Column(name, "text-number", array)
        return Column(name, "text", array)
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t) or pa.types.is_decimal(t):
        return Column(name, "number", _floats(array))
    if pa.types.is_temporal(t):
        return Column(name, "date", array, str(t))
    return Column(name, "other", array, str(t))


def _floats(array) -> np.ndarray:
    import pyarrow as pa

    if pa.types.is_boolean(array.type) or pa.types.is_decimal(array.type):
        array = array.cast(pa.float64())
    return float64s(array)


def _clean_text(array):
    """Cells trimmed of surrounding spaces; the missing markers (`MISSING`, any case) null."""
    import pyarrow as pa
    import pyarrow.compute as pc

    trimmed = pc.utf8_trim_whitespace(array)
    marker = pc.match_substring_regex(trimmed, MISSING_CELL, ignore_case=True)
    return pc.if_else(marker, pa.nulls(len(trimmed), pa.string()), trimmed)


def _table(path: Path, fmt: str, columns: list[Column], rows: np.ndarray, delimiter) -> Table:
    """The table, without rows whose every cell is missing (as blank lines are skipped)."""
    n = len(rows)
    if n:
        empty = np.ones(n, dtype=bool)
        for c in columns:
            empty &= c.missing
            if not empty.any():
                break
        table = Table(path, fmt, columns, rows, delimiter)
        if empty.any():
            table = table.select(~empty)
    else:
        table = Table(path, fmt, columns, rows, delimiter)
    if not len(table):
        raise NntrainError(f"{path} has a header but no data rows" if fmt == "csv" else f"{path} has no rows")
    return table


def stack_numbers(columns: list[Column]) -> list[Column]:
    """The number columns' values gathered into one (rows, k) array, each column a view of it.

    One pass over the data instead of one per column: its missing cells and infinities are
    found for all columns at once, and `FeatureEncoder.encode` copies runs of columns.
    """
    import pyarrow as pa

    numbers = [c for c in columns if c.kind == "number"]
    if len(numbers) < 2:
        return columns
    # Filled column by column as rows of its transpose (contiguous writes); block[:, i] is then contiguous too.
    # Each column's own array is let go as soon as it is copied: with the caller's table dropped
    # (see _read_csv), the file's data and the block are not held at once.
    transposed = np.empty((len(numbers), len(numbers[0].values)))
    block = transposed.T
    for i, c in enumerate(numbers):
        transposed[i] = c.values
        c.values = block[:, i]
    gaps, infinite = np.isnan(block), np.isinf(transposed).any(axis=1)
    for i, c in enumerate(numbers):
        c.block, c.index, c._missing = block, i, gaps[:, i]
        c._finite = not infinite[i]
    pa.default_memory_pool().release_unused()  # pyarrow's allocator keeps freed pages unless asked
    return columns


def numbers_of(table: Table, column: Column) -> np.ndarray:
    """A number column's values, float64 with NaN where missing; NntrainError at the first cell that is not a number."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if column.kind == "number":
        values = column.values
    elif column.kind == "text-number":
        ok = bools(pc.match_substring_regex(column.values, NUMBER.pattern, ignore_case=True), null=True)
        if not ok.all():
            r = int(np.argmin(ok))
            raise NntrainError(f"{table.where(r)}, column '{column.name}': {short_repr(column.values[r].as_py(), 60)} is not a number")
        values = float64s(pc.cast(column.values, pa.float64()))
    else:
        raise NntrainError(f"{table.path}: column '{column.name}' is {column.kind}, not numbers")
    if column.__dict__.get("_finite"):
        return values
    infinite = np.isinf(values)
    if infinite.any():
        r = int(np.argmax(infinite))
        raise NntrainError(f"{table.where(r)}, column '{column.name}': '{values[r]}' is not a finite number")
    return values


def cells_of(column: Column) -> np.ndarray:
    """A column's cells as text (numpy str array; '' where missing): for target labels."""
    text = column.text() if column.kind in ("number", "date", "other") else column.values
    import pyarrow.compute as pc

    if text.null_count:
        text = pc.if_else(pc.is_null(text), _empty_strings(len(text)), text)
    return np.array(text.to_pylist(), dtype=np.str_)


# --- arrow <-> numpy -------------------------------------------------------------------------------
# Built from the arrays' buffers: pyarrow's own conversions (pa.array, pa.scalar, Array.to_numpy)
# import pandas when it is installed, which costs ~0.2 s, more than reading a 9 MB table.


def _validity(array) -> np.ndarray | None:
    """True where a (non-chunked) array has a value; None when it has no nulls."""
    if not array.null_count:
        return None
    bits = np.frombuffer(array.buffers()[0], dtype=np.uint8)
    return np.unpackbits(bits, bitorder="little", count=array.offset + len(array))[array.offset :].astype(bool)


def float64s(array) -> np.ndarray:
    """A numeric array as float64, NaN where it is null."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if array.type != pa.float64():
        array = pc.cast(array, pa.float64(), safe=False)  # integers beyond 2**53 round, as numpy's would
    values = np.frombuffer(array.buffers()[1], dtype=np.float64, count=array.offset + len(array))[array.offset :]
    valid = _validity(array)
    if valid is None:
        return values
    values = values.copy()
    values[~valid] = np.nan
    return values


def bools(array, null: bool = False) -> np.ndarray:
    """A boolean array as numpy, `null` where it is null."""
    bits = np.frombuffer(array.buffers()[1], dtype=np.uint8)
    values = np.unpackbits(bits, bitorder="little", count=array.offset + len(array))[array.offset :].astype(bool)
    valid = _validity(array)
    if valid is not None:
        values[~valid] = null
    return values


def ints(array, null: int = -1) -> np.ndarray:
    """An integer array as int64, `null` where it is null."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if array.type != pa.int64():
        array = pc.cast(array, pa.int64())
    values = np.frombuffer(array.buffers()[1], dtype=np.int64, count=array.offset + len(array))[array.offset :].copy()
    valid = _validity(array)
    if valid is not None:
        values[~valid] = null
    return values


def strings(values) -> "pa.StringArray":
    """A pyarrow string array of Python strings (no nulls)."""
    import pyarrow as pa

    encoded = [v.encode("utf-8", "surrogatepass") for v in values]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int32)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    return pa.StringArray.from_buffers(len(encoded), pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded)))


def indices(rows: np.ndarray):
    """A pyarrow int64 array of row indices (for take)."""
    import pyarrow as pa

    rows = np.ascontiguousarray(rows, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), len(rows), [None, pa.py_buffer(rows)])


def _empty_strings(n: int):
    import pyarrow as pa

    return pa.StringArray.from_buffers(n, pa.py_buffer(np.zeros(n + 1, dtype=np.int32)), pa.py_buffer(b""))


def _bool_array(mask: np.ndarray):
    """A numpy boolean mask as a pyarrow boolean array."""
    import pyarrow as pa

    bits = np.packbits(np.ascontiguousarray(mask, dtype=bool), bitorder="little")
    return pa.Array.from_buffers(pa.bool_(), len(mask), [None, pa.py_buffer(bits)])
