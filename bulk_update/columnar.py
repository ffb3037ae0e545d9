"""The dry run of a large CSV a column at a time (pyarrow), for sheets it can do exactly.

The general dry run (reader -> RowValidator -> build_patch -> report) handles each cell of
the sheet in Python: a million rows of twelve cells take half a minute. `dry_run_csv` does
the same dry run with pyarrow's CSV parser and compute kernels, a block of rows at a time:

1. a first pass reads the uid column alone, for the uids typed on more than one row;
2. each block's cells are stripped as the reader strips them (reader.cells.STRIPPED), and
   each column is checked with its `schema.column_check`, which only ever accepts what
   RowValidator accepts unchanged;
3. a row some check does not accept goes to the real RowValidator and build_patch (which
   alone write messages); an accepted row's `fields` follow from which data columns it
   fills in, worked out by build_patch once per such shape;
4. the report is written a block at a time, every cell defused and quoted as
   `report.write_report` writes it: the same file, byte for byte (an XLSX report's sheet
   too; only its Summary's time and duration differ).

It returns None, having written nothing, for a sheet it cannot do exactly, and the caller
takes the general path (which also gives every error message): a file that is not UTF-8,
a header that is not the first line, data in a column without a header, a re-uploaded
results sheet, a row with fewer or more cells than headers, a row near the reader's size
limits, a quote still open at the end of the file, more than 62 data columns,
[defaults.updated_by] settings that leave a row without updated_by invalid. The report is
CSV or XLSX, as asked (XLSX rows rendered by arrow too, laid out by report.write_xlsx_report).
tests/test_columnar.py holds both paths to the same reports.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass, replace
from functools import reduce
from pathlib import Path
from typing import Any

from . import xlsx
from .config import Settings
from .errors import BulkUpdateError
from .limiter import estimate_duration
from .models import REPORT_COLUMNS, Column, Outcome, Patch, RowResult, RunSummary, SheetRow
from .patch import build_patch
from .reader import CSV_EXTENSIONS, MAX_COLUMNS, MAX_LINE_CHARS, sniff_csv
from .reader.cells import PY_SPACE, STRIPPED, strip_cell
from .report import (
    FORMULA_STARTS,
    MAX_WIDTH,
    MIN_WIDTH,
    OUTCOME_STYLES,
    check_report_path,
    create_temp,
    defuse_csv_cell,
    fits_in_excel,
    fitting_report,
    header_cells,
    longest_line,
    put_in_place,
    write_xlsx_report,
)
from .rowstore import Shared
from .schema import ColumnCheck, InvalidRow, RowValidator, column_check, resolve_columns, uid_check

__all__ = ["CsvDryRun", "dry_run_csv"]

log = logging.getLogger("bulk_update")

#: Bytes of the file parsed per block: a few tens of thousands of rows.
BLOCK_BYTES = 4 << 20
#: A row's shape (which data columns it fills in) is a bit mask in an int64.
_MAX_DATA_COLUMNS = 62
# report.defuse_csv_cell in RE2: after any apostrophes, a formula start takes one more.
_FORMULA = "".join(f"\\x{{{ord(c):02x}}}" for c in FORMULA_STARTS)
_DEFUSE = f"^('*[{_FORMULA}])"
_MAY_DEFUSE = f"^['{_FORMULA}]"
# csv.writer (QUOTE_MINIMAL, ',' and CRLF) quotes a cell that holds one of these.
_SPECIAL = (b'"', b",", b"\r", b"\n")


class _Unsupported(Exception):
    """The sheet has something this path does not do exactly: the general path takes it."""


@dataclass(frozen=True, slots=True)
class CsvDryRun:
    """What a dry run of a CSV found: the summary (its `results` hold only the rows with a
    problem), the sheet's data rows, the rows to send and the first few PATCH bodies."""

    summary: RunSummary
    rows: int
    sends: int
    patches: tuple[Patch, ...]
    #: The CSV's encoding as the dry run shows it (`utf-8 (detected)`).
    encoding: str | None = None


def dry_run_csv(
    path: str | Path,
    settings: Settings | None = None,
    *,
    report_path: Path,
    bodies: int = 5,
    started: float | None = None,
) -> CsvDryRun | None:
    """The dry run of the CSV at `path` with its report at `report_path`, or None.

    Gives what `run_async(plan(load(path)), dry_run=True)` gives, the report byte for byte,
    without a journal (a dry run without COMEET_API_KEY). None, having written nothing,
    when the sheet or the report needs the general path (the module's docstring says
    which). `bodies`: how many of the first PATCH bodies to keep for a preview. `started`
    (a time.monotonic() reading) lets the summary's duration include what came before.
    """
    started = time.monotonic() if started is None else started
    path = Path(path)
    if path.suffix.lower() not in CSV_EXTENSIONS or not path.is_file():
        return None
    import pyarrow as pa  # here, not at the top: a command that needs none starts faster

    try:
        return _dry_run(path, settings or Settings(), report_path, bodies, started)
    except (_Unsupported, BulkUpdateError, OSError, pa.ArrowException) as exc:
        log.debug("the column-at-a-time dry run does not take %s: %s", path.name, exc)
        return None


def _re2(pattern: str) -> str:
    r"""A Python `re` pattern for `fullmatch` as an anchored RE2 pattern.

    Python's `\s` is Unicode white space, RE2's ASCII only, so it is spelled out; other
    classes whose meaning differs (\d \w \b and their negations) are refused.
    """
    out: list[str] = []
    in_class = False
    chars = iter(pattern)
    for char in chars:
        if char == "\\":
            escaped = next(chars)
            if escaped == "s":
                spelled = "".join(f"\\x{{{ord(c):04x}}}" for c in PY_SPACE)
                out.append(spelled if in_class else f"[{spelled}]")
                continue
            if escaped in "SdDwWbB":
                raise ValueError(f"\\{escaped} has another meaning in RE2: {pattern!r}")
            out.append(char + escaped)
            continue
        if char == "[" and not in_class:
            in_class = True
        elif char == "]" and in_class:
            in_class = False
        out.append(char)
    return f"^(?:{''.join(out)})$"


def _csv_options(
    delimiter: str, names: Sequence[str] | None, include: Sequence[str] | None = None
) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.csv as pv

    def refuse(row: Any) -> str:
        return "error"  # fewer or more cells than headers: the general path pads or refuses

    return {
        "read_options": pv.ReadOptions(block_size=BLOCK_BYTES, use_threads=True),
        "parse_options": pv.ParseOptions(
            delimiter=delimiter,
            newlines_in_values=True,
            ignore_empty_lines=False,  # an empty line still counts as a row, as in Excel
            invalid_row_handler=refuse,
        ),
        "convert_options": pv.ConvertOptions(
            column_types=dict.fromkeys(names or (), pa.string()),
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
            null_values=[],
            include_columns=list(include) if include else None,
        ),
    }


@dataclass(frozen=True, slots=True)
class _Layout:
    """The header row as the file has it (`raw`, pyarrow's column names) and as the reader
    gives it: `headers`, stripped, for the columns that have one (`named`: their indices
    among the file's columns). The others must stay empty, as the reader demands."""

    raw: tuple[str, ...]
    headers: tuple[str, ...]
    named: tuple[int, ...]

    @property
    def unnamed(self) -> tuple[int, ...]:
        named = set(self.named)
        return tuple(i for i in range(len(self.raw)) if i not in named)


def _layout(path: Path, delimiter: str) -> _Layout:
    import pyarrow.csv as pv

    with pv.open_csv(path, **_csv_options(delimiter, None)) as reader:
        raw = tuple(reader.schema.names)
    stripped = [strip_cell(h) for h in raw]
    if not any(stripped):
        raise _Unsupported("a blank first line: the header is further down")
    # As the reader: columns past the last header are none; one without a header is dropped.
    width = max(i for i, h in enumerate(stripped) if h) + 1
    named = tuple(i for i in range(width) if stripped[i])
    return _Layout(raw, tuple(stripped[i] for i in named), named)


def _duplicates(
    path: Path, delimiter: str, names: Sequence[str], uid: str
) -> tuple[list[str], int]:
    """Pass 1: the uids typed on more than one row, and how many rows the sheet has."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pv

    with pv.open_csv(path, **_csv_options(delimiter, names, [uid])) as reader:
        uids = [pc.utf8_trim(batch.column(0), characters=STRIPPED) for batch in reader]
    rows = sum(len(u) for u in uids)
    if not rows:
        return [], 0
    counts = pc.value_counts(pa.chunked_array(uids))
    many = pc.filter(counts.field("values"), pc.greater(counts.field("counts"), 1))
    return [u for u in many.to_pylist() if u], rows


def _may_hold(col: Any, marks: Sequence[bytes]) -> bool:
    """False when no cell of the column holds any of `marks` (a search of its bytes)."""
    data = col.buffers()[2]
    if data is None:
        return False
    raw = data.to_pybytes()
    return any(raw.find(mark) >= 0 for mark in marks)


def _csv_field(col: Any) -> Any:
    """Cells as csv.writer writes them: quoted, quotes doubled, when holding , " CR or LF."""
    import pyarrow.compute as pc

    # A search of the column's bytes settles nearly every column without a kernel.
    if not _may_hold(col, _SPECIAL):
        return col
    quoted = pc.binary_join_element_wise('"', pc.replace_substring(col, '"', '""'), '"', "")
    return pc.if_else(pc.match_substring_regex(col, '[",\r\n]'), quoted, col)


def _defuse(col: Any) -> Any:
    """`report.defuse_csv_cell` on every cell of a column."""
    import pyarrow.compute as pc

    if not pc.any(pc.match_substring_regex(col, _MAY_DEFUSE)).as_py():
        return col
    return pc.replace_substring_regex(col, pattern=_DEFUSE, replacement="'\\1")


def _joined(strings: Any) -> memoryview:
    """A string array's values back to back, as arrow holds them (no copy)."""
    import pyarrow as pa

    if isinstance(strings, pa.ChunkedArray):
        strings = strings.combine_chunks()
    _, offsets, data = strings.buffers()
    if data is None:
        return memoryview(b"")
    at = memoryview(offsets).cast("i")  # int32 offsets
    return memoryview(data)[at[strings.offset] : at[strings.offset + len(strings)]]


def _csv_lines(cols: list[Any]) -> memoryview:
    """One CSV line per row (csv.writer's quoting, CRLF), joined by arrow."""
    import pyarrow.compute as pc

    cells = [_csv_field(c) for c in cols]
    cells[-1] = pc.binary_join_element_wise(cells[-1], "\r\n", "")
    return _joined(pc.binary_join_element_wise(*cells, ","))


def _checks(columns: Sequence[Column]) -> list[tuple[int, ColumnCheck]]:
    return [
        (c.index, uid_check if c.field == "uid" else column_check(c.field))
        for c in columns
        if c.field is not None
    ]


def _accepted(cells: list[Any], filled: list[Any], checks: list[tuple[int, ColumnCheck]]) -> Any:
    """Per row: True when every check accepts the row's cells (empty cells always pass)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    ok = pa.array([True] * len(cells[0]), pa.bool_())
    for index, check in checks:
        col, empty = cells[index], pc.invert(filled[index])
        if check.kind == "any":
            good = filled[index] if check.required else None
        elif check.kind == "row":
            good = empty  # a filled cell: the row's other cells matter
        else:
            if check.kind == "values":
                good = pc.is_in(col, value_set=pa.array(check.values, pa.string()))
            else:
                good = pc.match_substring_regex(col, _re2(check.pattern))
            if not check.required:
                good = pc.or_(empty, good)
        if check.refuse and check.kind != "row" and _may_hold(col, check.refuse_marks):
            # An empty cell never matches a refusal (each needs a character).
            kept = pc.invert(pc.match_substring_regex(col, _re2(check.refuse)))
            good = kept if good is None else pc.and_(good, kept)
        if good is not None:
            ok = pc.and_(ok, good)
    return ok


class _Outcomes:
    """The rows' outcomes, fields and messages: from their shapes, or from RowValidator."""

    def __init__(
        self, validate: RowValidator, data_cols: Sequence[Column], settings: Settings
    ) -> None:
        self.validate = validate
        self.fields = [c.field for c in data_cols if c.field is not None]
        self.updated_by = settings.updated_by
        self.shapes: dict[int, tuple[str, str]] = {}
        self.problems: list[RowResult] = []
        # Rows that say the same (a million web-page numbers as uids) share one message.
        self.message = Shared[str]()

    def of_shape(self, mask: int) -> tuple[str, str]:
        known = self.shapes.get(mask)
        if known is None:
            values = {field: "x" for i, field in enumerate(self.fields) if mask >> i & 1}
            built = build_patch(0, "x", values, default_updated_by=self.updated_by)
            known = self.shapes[mask] = (
                (str(Outcome.SKIPPED), "")
                if isinstance(built, Outcome)
                else (str(Outcome.WOULD_UPDATE), ",".join(built.fields))
            )
        return known

    def of_row(self, number: int, values: Sequence[str]) -> tuple[str, str, str]:
        check = self.validate(SheetRow(number, tuple(values)))
        if isinstance(check, InvalidRow):
            message = self.message("; ".join(str(p) for p in check.problems))
            self.problems.append(RowResult(number, check.uid, Outcome.INVALID, message=message))
            return str(Outcome.INVALID), "", message
        built = build_patch(number, check.uid, check.values, default_updated_by=self.updated_by)
        if isinstance(built, Outcome):
            return str(built), "", ""
        return str(Outcome.WOULD_UPDATE), ",".join(built.fields), ""

    def patch(self, number: int, values: Sequence[str]) -> Patch:
        check = self.validate(SheetRow(number, tuple(values)))
        assert not isinstance(check, InvalidRow)
        built = build_patch(number, check.uid, check.values, default_updated_by=self.updated_by)
        assert isinstance(built, Patch)
        return built


def _batches(path: Path, delimiter: str, names: Sequence[str]) -> Iterator[Any]:
    import pyarrow.csv as pv

    with pv.open_csv(path, **_csv_options(delimiter, names)) as reader:
        yield from reader


def _ends_in_open_quote(path: Path, last_cell: str, delimiter: str) -> bool:
    """True when the file may end inside a quoted cell, which the general path refuses.

    pyarrow then reads the rest of the file into the last cell, as the csv module does, so
    the file ends with the cell, quotes doubled, after a quote that starts a cell.
    """
    tail = ('"' + last_cell.replace('"', '""')).encode("utf-8")
    with path.open("rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        if size < len(tail):
            return False
        fh.seek(max(size - len(tail) - 1, 0))
        end = fh.read()
    if not end.endswith(tail):
        return False
    return len(end) == len(tail) or end[:1] in (delimiter.encode(), b"\r", b"\n")


@dataclass(frozen=True, slots=True)
class _Block:
    """A block's rows with a report line (blank rows left out): arrays of equal length."""

    numbers: Any
    cells: list[Any]
    outcome: Any
    fields: Any
    message: Any

    def rows(self, picked: Any) -> Iterator[tuple[int, list[str]]]:
        """(row number, stripped cells) of the rows at the indices `picked`."""
        import pyarrow.compute as pc

        columns = [pc.take(c, picked).to_pylist() for c in (self.numbers, *self.cells)]
        for number, *values in zip(*columns, strict=True):
            yield number, values


class _Checker:
    """Checks the blocks of one sheet: the per-sheet set-up done once."""

    def __init__(
        self, columns: Sequence[Column], outcomes: _Outcomes, duplicates: Sequence[str]
    ) -> None:
        import pyarrow as pa

        self.checks = _checks(columns)
        self.uid = next(c.index for c in columns if c.field == "uid")
        self.data = [c.index for c in columns if c.field is not None and c.field != "uid"]
        self.outcomes = outcomes
        self.duplicates = pa.array(duplicates, pa.string())

    def __call__(self, raw: list[Any], first_row: int) -> _Block:
        import pyarrow as pa
        import pyarrow.compute as pc

        n = len(raw[0])
        numbers = pa.array(range(first_row, first_row + n), pa.int64())
        cells = [pc.utf8_trim(c, characters=STRIPPED) for c in raw]
        filled = [pc.greater(pc.binary_length(c), 0) for c in cells]
        ok = pc.and_(
            _accepted(cells, filled, self.checks),
            pc.invert(pc.is_in(cells[self.uid], value_set=self.duplicates)),
        )
        # A row's shape: which data columns it fills in, one bit each.
        shape = pa.array([0] * n, pa.int64())
        for bit, index in enumerate(self.data):
            as_int = pc.cast(filled[index], pa.int64())
            shape = pc.bit_wise_or(shape, pc.shift_left(as_int, bit))
        # A row with no cell at all is no row of the sheet: no report line.
        kept = reduce(pc.or_, filled)
        if not pc.all(kept).as_py():
            cells = [pc.filter(c, kept) for c in cells]
            numbers, shape, ok = (pc.filter(x, kept) for x in (numbers, shape, ok))
        shapes = pc.unique(shape)
        known = [self.outcomes.of_shape(m) for m in shapes.to_pylist()]
        where = pc.index_in(shape, value_set=shapes)
        block = _Block(
            numbers,
            cells,
            outcome=pc.take(pa.array([k[0] for k in known], pa.string()), where),
            fields=pc.take(pa.array([k[1] for k in known], pa.string()), where),
            message=pa.array([""] * len(numbers), pa.string()),
        )
        rejected = pc.invert(ok)
        if not pc.any(rejected).as_py():
            return block
        # The rows a check did not accept: the row validator has the last word.
        picked = pc.indices_nonzero(rejected)
        looked = [self.outcomes.of_row(number, values) for number, values in block.rows(picked)]
        outcome, fields, message = (
            pc.replace_with_mask(column, rejected, pa.array([x[i] for x in looked], pa.string()))
            for i, column in enumerate((block.outcome, block.fields, block.message))
        )
        return _Block(numbers, cells, outcome, fields, message)


class _CsvReport:
    """The report as CSV, written a block at a time (as report._write_csv writes it)."""

    def __init__(self, fh: io.BufferedWriter, headers: Sequence[str], uid: int) -> None:
        self.fh = fh
        self.uid = uid
        line = io.StringIO()
        csv.writer(line).writerow([defuse_csv_cell(h) for h in (*REPORT_COLUMNS, *headers)])
        fh.write(("\ufeff" + line.getvalue()).encode("utf-8"))

    def add(self, block: _Block) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        n = len(block.numbers)
        empty = pa.array([""] * n, pa.string())
        own = [
            pc.cast(block.numbers, pa.string()),
            _defuse(block.cells[self.uid]),
            block.outcome,
            empty,  # http_status: none in a dry run
            empty,  # error
            _defuse(block.message),
            pa.array(["0"] * n, pa.string()),  # attempts
            _defuse(block.fields),
        ]
        self.fh.write(_csv_lines(own + [_defuse(c) for c in block.cells]))


# report.xlsx_text in RE2: control characters XML cannot hold (openpyxl's
# ILLEGAL_CHARACTERS_RE), and one apostrophe more before apostrophes and a formula start.
_ILLEGAL = "[\\x{00}-\\x{08}\\x{0b}\\x{0c}\\x{0e}-\\x{1f}]"
_APOSTROPHES = f"^('+[{_FORMULA}])"
# What str.splitlines splits a cell at (report.longest_line measures a cell's lines).
_LINE_BREAKS = "[\\n\\r\\x{0b}\\x{0c}\\x{1c}\\x{1d}\\x{1e}\\x{85}\\x{2028}\\x{2029}]"


def _xlsx_text(col: Any) -> Any:
    """`report.xlsx_text` on every cell of a column."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pc.any(pc.match_substring(col, "\r")).as_py():
        col = pc.replace_substring(pc.replace_substring(col, "\r\n", "\n"), "\r", "\n")
    if pc.any(pc.match_substring_regex(col, _ILLEGAL)).as_py():
        col = pc.replace_substring_regex(col, _ILLEGAL, "")
    if pc.any(pc.match_substring_regex(col, _APOSTROPHES)).as_py():
        col = pc.replace_substring_regex(col, _APOSTROPHES, "'\\1")
    # A cell Excel cannot hold is cut by xlsx.excel_cell itself: such cells are rare,
    # and one rule in one place keeps the two paths' reports the same byte for byte.
    if (pc.max(pc.utf8_length(col)).as_py() or 0) > xlsx.SURELY_FITS:
        cut = [None if v is None else xlsx.excel_cell(v) for v in col.to_pylist()]
        col = pa.array(cut, col.type)
    return col


def _xml_escaped(col: Any) -> Any:
    """`xlsx.escape` on every cell of a column."""
    import pyarrow.compute as pc

    for char, entity in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;")):
        if pc.any(pc.match_substring(col, char)).as_py():
            col = pc.replace_substring(col, char, entity)
    return col


class _XlsxReport:
    """The report as XLSX: its rows rendered by arrow a block at a time into a spool file,
    then laid out in the workbook (report.write_xlsx_report) once the widths are known.
    The XML is the bytes `xlsx.write_workbook` writes for the general path's rows."""

    def __init__(self, spool: Path, headers: Sequence[str], uid: int) -> None:
        self.spool = spool
        self.fh = spool.open("wb")
        self.uid = uid
        self.header = [*REPORT_COLUMNS, *headers]
        self.widths = [MIN_WIDTH] * len(self.header)
        for i, text in enumerate(self.header):
            self._widen(i, longest_line(text))
        self.chunks: list[tuple[int, int]] = []  # (bytes, rows) per block
        self.written = 1  # the header is the sheet's row 1

    def _widen(self, index: int, longest: int) -> None:
        self.widths[index] = max(self.widths[index], longest + 2)

    def _measure(self, index: int, col: Any) -> None:
        """report._widths on a column: the longest line of any cell."""
        import pyarrow.compute as pc

        lengths = pc.utf8_length(col)
        longest = pc.max(lengths).as_py() or 0
        if longest + 2 <= self.widths[index]:
            return
        broken = pc.match_substring_regex(col, _LINE_BREAKS)
        if pc.any(broken).as_py():
            lines = pc.filter(col, broken).to_pylist()
            longest = max(
                pc.max(pc.if_else(broken, 0, lengths)).as_py() or 0,
                *map(longest_line, lines),
            )
        self._widen(index, longest)

    def add(self, block: _Block) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        n = len(block.numbers)
        at = pc.cast(
            pa.array(range(self.written + 1, self.written + n + 1), pa.int64()), pa.string()
        )
        self.written += n
        numbers = pc.cast(block.numbers, pa.string())

        def number(index: int, value: Any) -> Any:
            a, b, c = xlsx.cell_parts(index, xlsx.NORMAL, text=False)
            return pc.binary_join_element_wise(a, at, b, value, c, "")

        def text(index: int, col: Any, middle: Any = None) -> Any:
            self._measure(index, col)
            shown = _xlsx_text(col)
            a, b, c = xlsx.cell_parts(index, xlsx.NORMAL, text=True)
            xml = pc.binary_join_element_wise(
                a, at, b if middle is None else middle, _xml_escaped(shown), c, ""
            )
            return pc.if_else(pc.greater(pc.binary_length(shown), 0), xml, "")

        self._measure(0, numbers)
        # The outcome cell's style (its colour) follows its value.
        names = list(OUTCOME_STYLES)
        middles = [xlsx.cell_parts(2, OUTCOME_STYLES[o], text=True)[1] for o in names]
        styled = pc.take(pa.array(middles), pc.index_in(block.outcome, value_set=pa.array(names)))
        cells = [
            number(0, numbers),  # row
            text(1, block.cells[self.uid]),
            text(2, block.outcome, styled),
            # http_status and error: empty in a dry run
            text(5, block.message),
            number(6, pa.array(["0"] * n, pa.string())),  # attempts
            text(7, block.fields),
            *(text(8 + i, col) for i, col in enumerate(block.cells)),
        ]
        rows = pc.binary_join_element_wise(
            xlsx.ROW_OPEN, at, xlsx.ROW_MIDDLE, *cells, xlsx.ROW_CLOSE, ""
        )
        xml = _joined(rows)
        self.fh.write(xml)
        self.chunks.append((len(xml), n))

    def finish(self, path: Path, summary: RunSummary, source: Path) -> None:
        self.fh.close()
        width = len(self.header)

        def results() -> Iterator[Sequence[xlsx.Cell] | xlsx.Rendered]:
            yield header_cells(self.header)
            with self.spool.open("rb") as fh:
                for size, count in self.chunks:
                    yield xlsx.Rendered(fh.read(size), count, width)

        widths = [min(w, MAX_WIDTH) for w in self.widths]
        write_xlsx_report(path, results(), widths, summary, source)


def _dry_run(
    path: Path, settings: Settings, report_path: Path, bodies: int, started: float
) -> CsvDryRun:
    import pyarrow.compute as pc

    fmt = sniff_csv(path, settings.encoding)
    if fmt.encoding not in ("utf-8", "utf-8-sig"):
        raise _Unsupported(f"{fmt.encoding} text")
    layout = _layout(path, fmt.delimiter)
    headers = layout.headers
    if len(layout.named) and layout.named[-1] >= MAX_COLUMNS:
        raise _Unsupported(f"{layout.named[-1] + 1} columns")
    if tuple(headers[: len(REPORT_COLUMNS)]) == REPORT_COLUMNS:
        raise _Unsupported("a re-uploaded results sheet (its cells are restored)")
    columns = resolve_columns(headers, mapping=settings.columns, ignore=settings.ignore_columns)
    data_cols = [c for c in columns if c.field is not None and c.field != "uid"]
    if len(data_cols) > _MAX_DATA_COLUMNS:
        raise _Unsupported(f"{len(data_cols)} data columns")
    uid = next(c for c in columns if c.field == "uid")
    check_report_path(report_path, source=path)
    uid_name = layout.raw[layout.named[uid.index]]
    duplicates, total = _duplicates(path, fmt.delimiter, layout.raw, uid_name)
    # An XLSX report too long for Excel is written as CSV, as the general path does.
    as_xlsx = report_path.suffix.lower() == ".xlsx" and fits_in_excel(total)
    if settings.updated_by:
        bare = RowValidator(columns, base_dir=path.parent, default_updated_by=settings.updated_by)
        row = tuple("A.1" if i == uid.index else "" for i in range(len(headers)))
        if isinstance(bare(SheetRow(0, row)), InvalidRow):
            raise _Unsupported("[defaults.updated_by] leaves rows invalid")
    validate = RowValidator(
        columns,
        base_dir=path.resolve().parent,
        duplicate_uids=frozenset(duplicates),
        default_updated_by=settings.updated_by,
    )
    outcomes = _Outcomes(validate, data_cols, settings)
    check = _Checker(columns, outcomes, duplicates)
    counts: Counter[str] = Counter()
    patches: list[Patch] = []
    rows = 0
    next_row = 2  # the header is row 1
    last_cell: str | None = None
    unnamed = layout.unnamed
    tmp = create_temp(report_path)
    spool = create_temp(report_path) if as_xlsx else None  # the XLSX rows, until laid out
    out: _CsvReport | _XlsxReport | None = None
    try:
        with tmp.open("wb") as fh:
            out = (
                _XlsxReport(spool, headers, uid.index)
                if spool is not None
                else _CsvReport(fh, headers, uid.index)
            )
            for batch in _batches(path, fmt.delimiter, layout.raw):
                if not batch.num_rows:
                    continue
                raw = batch.columns
                last_cell = raw[-1][-1].as_py()
                # The general path refuses a cell over 1 MB or a line over 2 MB; a line is
                # at most twice its cells plus a quote pair and a delimiter each.
                longest = pc.max(reduce(pc.add, map(pc.binary_length, raw))).as_py()
                if 2 * longest + 3 * len(raw) >= MAX_LINE_CHARS:
                    raise _Unsupported("a row near the reader's size limits")
                for i in unnamed:
                    if pc.max(pc.binary_length(pc.utf8_trim(raw[i], characters=STRIPPED))).as_py():
                        raise _Unsupported("data in a column without a header")
                block = check([raw[i] for i in layout.named], next_row)
                next_row += batch.num_rows
                if not len(block.numbers):
                    continue
                rows += len(block.numbers)
                counted = pc.value_counts(block.outcome)
                for value, count in zip(
                    counted.field("values").to_pylist(),
                    counted.field("counts").to_pylist(),
                    strict=True,
                ):
                    counts[value] += count
                if len(patches) < bodies:
                    to_send = pc.equal(block.outcome, str(Outcome.WOULD_UPDATE))
                    first = pc.indices_nonzero(to_send).slice(0, bodies - len(patches))
                    patches += [outcomes.patch(n, v) for n, v in block.rows(first)]
                out.add(block)
        if last_cell is not None and _ends_in_open_quote(path, last_cell, fmt.delimiter):
            raise _Unsupported("a quote may be open at the end of the file")
        final = fitting_report(report_path, rows)
        if (final.suffix.lower() == ".xlsx") != as_xlsx:
            raise _Unsupported("blank rows make the sheet fit in Excel after all")
        check_report_path(final, rows, source=path)
        sends = counts.get(str(Outcome.WOULD_UPDATE), 0)
        summary = RunSummary(
            counts={o: counts.get(str(o), 0) for o in Outcome},
            duration_s=time.monotonic() - started,
            report_path=final,
            dry_run=True,
            estimate_s=estimate_duration(sends, settings.rate),
            results=tuple(outcomes.problems),
            config_path=settings.config_path,
        )
        if isinstance(out, _XlsxReport):
            out.finish(tmp, summary, path)
        written = put_in_place(tmp, final)
        if written != final:
            summary = replace(summary, report_path=written, report_asked=final)
    finally:
        if isinstance(out, _XlsxReport):
            out.fh.close()
        for leftover in (tmp, spool):
            if leftover is not None:
                with suppress(FileNotFoundError):
                    leftover.unlink()
    # As the general path's: the time shown includes writing the report.
    summary = replace(summary, duration_s=time.monotonic() - started)
    return CsvDryRun(
        summary=summary, rows=rows, sends=sends, patches=tuple(patches), encoding=fmt.label
    )
