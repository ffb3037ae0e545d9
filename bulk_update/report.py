"""Results -> the results sheet (XLSX or CSV) and its summary; formula-safe.

The sheet starts with the report's own columns (models.REPORT_COLUMNS), then every input
column under its original header with the row's cells as read, so a person can fix rows in
place and upload the sheet again (the tool ignores its own leading columns on input).

`report_table` is the pure part (the lines of the sheet); `write_report` only lays them out
in a file, atomically: a temp file beside the target, then os.replace, so an interrupted
write never leaves half a report.

Formula safety (OWASP "CSV Injection"): XLSX cells are typed as text, so nothing is ever a
formula there. A CSV has no types: a cell that starts with `=` `+` `-` `@` tab or CR is
*defused* with a leading apostrophe (`defuse_csv_cell`). So that a re-uploaded report sends
the value as first typed, `restore_cell` takes exactly one apostrophe off again; to keep
that exact for a cell that really began with apostrophes before such a character, both
formats give that cell one apostrophe more (`'=x` is written `''=x` and read back `'=x`).
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import io
import itertools
import logging
import os
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any, Final, TypeVar

from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

from . import xlsx
from .errors import ConfigError
from .models import REPORT_COLUMNS, Outcome, RowResult, RunSummary, SheetRow
from .rowstore import RowStore

__all__ = [
    "FORMULA_STARTS",
    "LINE_BREAKS",
    "MAX_WIDTH",
    "MIN_WIDTH",
    "OUTCOME_COLOURS",
    "OUTCOME_STYLES",
    "XLSX_MAX_ROWS",
    "bounded_widths",
    "check_report_path",
    "create_temp",
    "csv_header",
    "csv_lines",
    "default_report_path",
    "defuse_csv_cell",
    "defuse_csv_column",
    "fits_in_excel",
    "fitting_report",
    "header_cells",
    "longest_line",
    "may_hold",
    "put_in_place",
    "report_line",
    "report_table",
    "restore_cell",
    "widen_column",
    "write_report",
    "write_xlsx_report",
    "xlsx_text",
    "xlsx_text_column",
]

log = logging.getLogger("bulk_update")

#: Fill colour (hex RGB) of each outcome's cell; the web page uses the same colours.
#: Green: done or fine; grey: nothing to do; orange: fix the row; red: the API said no or
#: never answered; yellow: the run stopped before the row.
OUTCOME_COLOURS: Mapping[Outcome, str] = {
    Outcome.UPDATED: "C6EFCE",
    Outcome.UNCHANGED: "E2EFDA",
    Outcome.SKIPPED: "D9D9D9",
    Outcome.WOULD_UPDATE: "D8F0D2",
    Outcome.INVALID: "F8CBAD",
    Outcome.NOT_FOUND: "FFC7CE",
    Outcome.REJECTED: "FFC7CE",
    Outcome.FAILED: "FF9999",
    Outcome.NOT_SENT: "FFEB9C",
}

#: Excel's last row is 1,048,576; one is the header.
XLSX_MAX_ROWS = 1_048_575

_FORMATS = (".xlsx", ".csv")
#: An XLSX report's column widths, in characters: the longest line of a cell, plus 2.
MIN_WIDTH = 8
MAX_WIDTH = 60
_OUTCOME_COLUMN = REPORT_COLUMNS.index("outcome")
_Value = str | int | None
_T = TypeVar("_T")
#: Makes a fresh iterator over the report's lines (the XLSX writer walks them twice).
_TableFactory = Callable[[], Iterator[list[_Value]]]

#: First characters that make a spreadsheet program read a CSV cell as a formula (OWASP).
FORMULA_STARTS = "=+-@\t\r"
# Spelled as hex escapes, so that Python's re and RE2 (a column at a time) read it alike.
_START = "[" + "".join(f"\\x{ord(c):02x}" for c in FORMULA_STARTS) + "]"
# A cell that needs an apostrophe more: a formula start, after any apostrophes already there.
_NEEDS_QUOTE_AT = f"'*{_START}"
_NEEDS_QUOTE = re.compile(_NEEDS_QUOTE_AT)
_FIRST = frozenset(FORMULA_STARTS + "'")
_FIRST_BYTES = tuple(c.encode() for c in sorted(_FIRST))
# In cells joined by NUL: the start of each cell that needs an apostrophe more.
_DEFUSE_JOINED = re.compile(f"\x00(?={_NEEDS_QUOTE_AT})")
_REPORT_WIDTH = len(REPORT_COLUMNS)
# A cell as defused: one apostrophe or more, then a formula start.
_QUOTED_AT = f"'+{_START}"
_QUOTED = re.compile(_QUOTED_AT)


def defuse_csv_cell(text: str) -> str:
    """`text` as a CSV report writes it, defused. Pure; `restore_cell` undoes it.

    One more leading `'` when, after any apostrophes, it starts with = + - @ tab or CR.
    """
    # The first-character test settles nearly every cell without the regex.
    if not text or text[0] not in _FIRST:
        return text
    return "'" + text if _NEEDS_QUOTE.match(text) else text


def defuse_csv_column(col: Any) -> Any:
    """`defuse_csv_cell` on every cell of a pyarrow string array: the same rule, a column
    at a time (the columnar dry run's form)."""
    import pyarrow.compute as pc

    # A search of the column's bytes settles most columns (numbers, uids) without a kernel.
    if (
        not may_hold(col, _FIRST_BYTES)
        or not pc.any(pc.match_substring_regex(col, f"^['{_START[1:]}")).as_py()
    ):
        return col
    return pc.replace_substring_regex(col, pattern=f"^({_NEEDS_QUOTE_AT})", replacement="'\\1")


def restore_cell(text: str) -> str:
    """A re-uploaded report's cell as first typed. Pure; the inverse of `defuse_csv_cell`.

    One leading `'` less when apostrophes are followed by = + - @ tab or CR.
    """
    return text[1:] if _QUOTED.match(text) else text


def _same_file(one: Path, other: Path) -> bool:
    try:
        return os.path.samefile(one, other)
    except OSError:  # one of them does not exist (yet): compare where they would be
        return one.resolve() == other.resolve()


def default_report_path(input_path: Path, *, dry_run: bool = False) -> Path:
    """`<input stem>.results.xlsx` beside the input; a dry run's `<input stem>.preview.xlsx`,
    so that a preview never replaces the record of a real run."""
    kind = "preview" if dry_run else "results"
    return input_path.with_name(f"{input_path.stem}.{kind}.xlsx")


def check_report_path(path: Path, rows: int | None = None, *, source: Path | None = None) -> None:
    """Raise ConfigError if a report of `rows` result lines could not be written at `path`.

    Cheap and side-effect free, so a caller can check before sending anything: a run should
    not apply ten thousand rows and then find it cannot say what it did. With `source`
    (the input sheet), a report that would replace it is refused too.
    """
    suffix = path.suffix.lower()
    if suffix not in _FORMATS:
        raise ConfigError(
            f"the report '{path}' must end in .xlsx or .csv",
            fix="use a .xlsx or .csv report path",
        )
    if source is not None and _same_file(path, source):
        raise ConfigError(
            f"the report '{path}' would replace the input sheet",
            fix="choose another file for the report (--report), e.g. "
            f"{default_report_path(source)}",
        )
    folder = path.parent
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise ConfigError(
            f"the report's folder '{folder}' {what}",
            fix="create the folder or choose another report path (--report)",
        )
    if path.is_dir():
        raise ConfigError(
            f"the report path '{path}' is a folder",
            fix="give a file name ending in .xlsx or .csv (--report)",
        )
    # The report is made beside its path and moved into place: the folder must take files
    # (read-only file systems included: access() says so too).
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(
            f"the report's folder '{folder}' is not writable",
            fix="choose a folder you can write to (--report), or change its permissions",
        )
    if suffix == ".xlsx" and rows is not None and rows > XLSX_MAX_ROWS:
        raise ConfigError(
            f"{rows:,} rows do not fit in an Excel sheet (at most {XLSX_MAX_ROWS:,})",
            fix="use a .csv report (--report results.csv)",
        )


def fits_in_excel(rows: int) -> bool:
    """True when a report of `rows` result lines fits in one Excel sheet."""
    return rows <= XLSX_MAX_ROWS


def fitting_report(path: Path, rows: int) -> Path:
    """`path`, or a CSV beside it when the rows do not fit in an Excel sheet (with a warning)."""
    if path.suffix.lower() != ".xlsx" or fits_in_excel(rows):
        return path
    csv_path = path.with_suffix(".csv")
    log.warning(
        "%s rows do not fit in an Excel sheet (at most %s): the report is written as CSV, %s",
        f"{rows:,}",
        f"{XLSX_MAX_ROWS:,}",
        csv_path,
        extra={"event": "report_as_csv"},
    )
    return csv_path


def report_table(
    headers: Sequence[str], rows: Sequence[SheetRow], results: Sequence[RowResult]
) -> Iterator[list[_Value]]:
    """The header line, then one line per result in sheet-row order. Pure.

    A result is matched to its input row by `RowResult.row == SheetRow.number`; a result
    with no such row still gets a line, its input cells empty. `rows` come in sheet order
    (as the reader gives them) and are walked once beside the sorted results, so a
    million-row sheet is never held as objects. When the input is itself a results sheet,
    its old result columns are left out (the new ones replace them), so the
    fix-and-upload-again loop can go round any number of times.
    """
    # The same test as schema.resolve_columns, which ignores exactly these columns on input.
    skip = len(REPORT_COLUMNS) if tuple(headers[: len(REPORT_COLUMNS)]) == REPORT_COLUMNS else 0
    yield [*REPORT_COLUMNS, *headers[skip:]]
    blank = ("",) * (len(headers) - skip)
    numbered: Iterator[tuple[int, tuple[str, ...]]] = (
        rows.numbered() if isinstance(rows, RowStore) else ((r.number, r.values) for r in rows)
    )
    number, values = next(numbered, (None, blank))
    for result in sorted(results, key=_by_row):
        while number is not None and number < result.row:
            number, values = next(numbered, (None, blank))
        yield report_line(
            result.row,
            result.uid,
            result.outcome,  # a StrEnum: written as its value
            result.http_status,
            result.error,
            result.message,
            result.attempts,
            ",".join(result.fields),
            values[skip:] if number == result.row else blank,
        )


def report_line(
    row: _T,
    uid: _T,
    outcome: _T,
    http_status: _T,
    error: _T,
    message: _T,
    attempts: _T,
    fields: _T,
    cells: Sequence[_T],
) -> list[_T]:
    """A line of the report: its own columns in REPORT_COLUMNS order, then the input cells.

    Its values are a row's cells, or (the columnar dry run) whole columns: one order for
    both, named once (tests/test_report.py holds the names to REPORT_COLUMNS).
    """
    return [row, uid, outcome, http_status, error, message, attempts, fields, *cells]


def _by_row(result: RowResult) -> int:
    return result.row


def write_report(
    path: Path,
    *,
    headers: Sequence[str],
    rows: Sequence[SheetRow],
    results: Sequence[RowResult],
    summary: RunSummary,
    source: Path | None = None,
) -> Path:
    """Write the results sheet atomically and return its path; the extension picks the format.

    XLSX: sheet `Results` (frozen header, filter, coloured outcome) and sheet `Summary`.
    CSV: UTF-8 with a BOM, the same columns, no summary. Raises ConfigError for another
    extension, a missing folder, or more rows than an Excel sheet holds. A `path` that
    cannot be replaced (open in Excel) leaves the report at the next free name, returned
    (`put_in_place`).
    """
    check_report_path(path, len(results))
    tmp = create_temp(path)
    try:
        if path.suffix.lower() == ".csv":
            _write_csv(tmp, report_table(headers, rows, results))
        else:
            _write_xlsx(tmp, lambda: report_table(headers, rows, results), summary, source)
        return put_in_place(tmp, path)
    finally:
        with suppress(FileNotFoundError):
            tmp.unlink()


def put_in_place(tmp: Path, path: Path) -> Path:
    """Move the finished report `tmp` to `path` and return where it went.

    When `path` cannot be replaced (PermissionError: on Windows, a file open in Excel is
    locked), the report goes to the next free name beside it, `<stem> (2).xlsx`, `(3)`...,
    with a warning: results are never dropped for a file someone is reading. When the
    folder takes no new name either, the first error is raised.
    """
    try:
        os.replace(tmp, path)
        return path
    except PermissionError as exc:
        refused = exc
    for number in itertools.count(2):
        other = path.with_name(f"{path.stem} ({number}){path.suffix}")
        if other.exists() or other.is_symlink():
            continue
        try:
            os.replace(tmp, other)
        except PermissionError:
            raise refused from None
        log.warning(
            "%s cannot be replaced (%s; is it open in Excel?): the report was written to %s",
            path,
            refused.strerror or refused,
            other,
            extra={"event": "report_elsewhere", "fields": {"asked": str(path)}},
        )
        return other
    raise AssertionError("unreachable")  # pragma: no cover - itertools.count never ends


def create_temp(path: Path) -> Path:
    """An empty, new file beside `path`, for the atomic replace.

    Made with os.open rather than tempfile.mkstemp: mkstemp's 0600 mode would carry over
    to the report, while 0666 lets the kernel apply the user's umask (no global umask dance).
    """
    while True:
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:  # pragma: no cover - a 48-bit random name collided
            continue
        os.close(fd)
        return tmp


def _write_csv(path: Path, table: Iterable[list[_Value]]) -> None:
    # A BOM so that Excel opens the UTF-8 file with the right characters.
    with path.open("w", encoding="utf-8-sig", newline="") as fh:
        # Lines are formatted into memory a few thousand at a time and written in one go:
        # a file write per line costs more than the line's formatting.
        buffer = io.StringIO()
        writer = csv.writer(buffer, quoting=_CSV_QUOTING)
        lines = iter(table)
        writer.writerow([defuse_csv_cell(str(v)) for v in next(lines)])
        for batch in iter(lambda: list(itertools.islice(lines, 4096)), []):
            writer.writerows(map(_defused_line, batch))
            fh.write(buffer.getvalue())
            buffer.seek(0)
            buffer.truncate()
        fh.write(buffer.getvalue())


#: How a CSV report quotes: csv.writer's QUOTE_MINIMAL, ',' and CRLF line ends...
_CSV_QUOTING: Final = csv.QUOTE_MINIMAL
#: ...which quotes (doubling quotes) exactly the cells holding one of these.
_CSV_SPECIAL = ('"', ",", "\r", "\n")


def csv_header(header: Sequence[str]) -> bytes:
    """A CSV report's first bytes: the BOM and the header line, as `_write_csv` writes them."""
    line = io.StringIO()
    csv.writer(line, quoting=_CSV_QUOTING).writerow([defuse_csv_cell(h) for h in header])
    return ("\ufeff" + line.getvalue()).encode("utf-8")


def csv_lines(columns: Sequence[Any]) -> Any:
    """`_write_csv`'s lines, a column at a time: pyarrow string arrays (cells defused
    already) -> one string per row, csv.writer's quoting, CRLF-ended."""
    import pyarrow.compute as pc

    def field(col: Any) -> Any:
        # A search of the column's bytes settles nearly every column without a kernel.
        if not may_hold(col, [c.encode() for c in _CSV_SPECIAL]):
            return col
        quoted = pc.binary_join_element_wise('"', pc.replace_substring(col, '"', '""'), '"', "")
        special = "[" + "".join(_CSV_SPECIAL) + "]"
        return pc.if_else(pc.match_substring_regex(col, special), quoted, col)

    cells = [field(c) for c in columns]
    cells[-1] = pc.binary_join_element_wise(cells[-1], "\r\n", "")
    return pc.binary_join_element_wise(*cells, ",")


def may_hold(col: Any, marks: Sequence[bytes]) -> bool:
    """False when no cell of a pyarrow string array holds any of `marks` (a byte search)."""
    data = col.buffers()[2]
    return data is not None and _marks(tuple(marks)).search(data) is not None


@functools.lru_cache(maxsize=64)
def _marks(marks: tuple[bytes, ...]) -> re.Pattern[bytes]:
    # re searches arrow's buffer in place (no copy), for all the marks in one pass.
    return re.compile(b"|".join(map(re.escape, marks)))


def _defused_line(line: list[_Value]) -> list[_Value]:
    """`line` with every text cell defused (defuse_csv_cell), as fast as it can be done.

    The input cells (all text, after the report's own columns) are joined with NUL, defused
    by one regex substitution and split again: phone numbers start with `+`, so nearly
    every line of a real sheet has a cell to defuse, and a call per cell costs more than
    the rest of the line's writing. A cell holding a NUL itself takes the slow way.
    """
    own = [defuse_csv_cell(v) if isinstance(v, str) else v for v in line[:_REPORT_WIDTH]]
    cells = line[_REPORT_WIDTH:]
    # Each cell, the first too, is preceded by a NUL: the regex starts with a literal.
    joined = "\x00" + "\x00".join(cells)  # type: ignore[arg-type]  # input cells are all str
    if joined.count("\x00") != len(cells):
        return own + [defuse_csv_cell(v) if isinstance(v, str) else v for v in cells]
    return own + _DEFUSE_JOINED.sub("\x00'", joined).split("\x00")[1:]


def xlsx_text(value: str) -> str:
    """`value` as an XLSX report stores it: line breaks as LF, no control characters XML
    cannot hold, one apostrophe more before `'=x` (as a CSV report does), and no more
    than an Excel cell holds (`xlsx.excel_cell`)."""
    # Nearly every cell is printable text not led by an apostrophe: nothing to change.
    if value.isprintable() and not value.startswith("'"):
        return xlsx.excel_cell(value)
    # XML readers (Excel included) read a raw CR as LF: write line breaks as LF up front.
    # Control characters XML cannot hold are dropped rather than failing the whole report.
    text = ILLEGAL_CHARACTERS_RE.sub("", value.replace("\r\n", "\n").replace("\r", "\n"))
    # A text cell is never a formula, so `=x` stays as is; only `'=x` takes one apostrophe
    # more, because a re-upload takes one off (the same rule as a CSV report's).
    return xlsx.excel_cell("'" + text if _QUOTED.match(text) else text)


def xlsx_text_column(col: Any) -> Any:
    """`xlsx_text` on every cell of a pyarrow string array: the same rule, a column at a
    time (openpyxl's pattern of illegal characters reads the same in RE2)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pc.any(pc.match_substring(col, "\r")).as_py():
        col = pc.replace_substring(pc.replace_substring(col, "\r\n", "\n"), "\r", "\n")
    illegal = ILLEGAL_CHARACTERS_RE.pattern
    if pc.any(pc.match_substring_regex(col, illegal)).as_py():
        col = pc.replace_substring_regex(col, illegal, "")
    if pc.any(pc.match_substring_regex(col, f"^{_QUOTED_AT}")).as_py():
        col = pc.replace_substring_regex(col, f"^({_QUOTED_AT})", "'\\1")
    # A cell Excel cannot hold is cut by xlsx.excel_cell itself: such cells are rare.
    if (pc.max(pc.utf8_length(col)).as_py() or 0) > xlsx.SURELY_FITS:
        col = pa.array([None if v is None else xlsx.excel_cell(v) for v in col.to_pylist()])
    return col


def longest_line(text: str) -> int:
    """The length of a cell's longest line: what its column's width in a report follows."""
    return max((len(part) for part in text.splitlines()), default=0)


#: What str.splitlines splits at (tests/test_report.py checks it against Python itself).
LINE_BREAKS = "\n\x0b\x0c\r\x1c\x1d\x1e\x85\u2028\u2029"


def _widths(table: Iterable[list[_Value]]) -> list[float]:
    """Column widths in characters: the longest line of any cell, within bounds."""
    widths: list[int] = []
    for line in table:
        if not widths:
            widths = [MIN_WIDTH] * len(line)
        for i, value in enumerate(line):
            if value is None or value == "":
                continue
            text = value if isinstance(value, str) else str(value)
            # A cell no longer than the column's width so far cannot widen it: most cells
            # are settled by their length, without splitting them into lines.
            if len(text) + 2 > widths[i]:
                widths[i] = max(widths[i], longest_line(text) + 2)
    return bounded_widths(widths)


def bounded_widths(widths: Iterable[int]) -> list[float]:
    """Widths measured (`widen_column`, `_widths`) as the report sets them: at most MAX_WIDTH."""
    return [min(w, MAX_WIDTH) for w in widths]


def widen_column(widths: list[int], index: int, col: Any) -> None:
    """`_widths` for a whole column (a pyarrow string array): widen `widths[index]` to its
    cells' longest line, plus 2."""
    import pyarrow.compute as pc

    lengths = pc.utf8_length(col)
    longest = pc.max(lengths).as_py() or 0
    # As `_widths`: a column no longer than its width so far cannot widen it.
    if longest + 2 <= widths[index]:
        return
    broken = pc.match_substring_regex(col, f"[{LINE_BREAKS}]")
    if pc.any(broken).as_py():
        lines = pc.filter(col, broken).to_pylist()
        longest = max(
            pc.max(pc.if_else(broken, 0, lengths)).as_py() or 0, *map(longest_line, lines)
        )
    widths[index] = max(widths[index], longest + 2)


def _write_xlsx(
    path: Path,
    table: _TableFactory,
    summary: RunSummary,
    source: Path | None,
) -> None:
    # The writer streams rows to disk and wants column widths before the first row, so the
    # (pure, cheap) table is walked twice rather than holding a million cells in memory.
    widths = _widths(table())

    def results() -> Iterator[list[xlsx.Cell]]:
        lines = table()
        yield header_cells(next(lines))
        for line in lines:
            cells: list[xlsx.Cell] = [xlsx_text(v) if isinstance(v, str) else v for v in line]
            outcome = str(line[_OUTCOME_COLUMN])
            style = OUTCOME_STYLES.get(outcome)
            if style is not None:
                cells[_OUTCOME_COLUMN] = (outcome, style)
            yield cells

    write_xlsx_report(path, results(), widths, summary, source)


#: The style of each outcome's cell in an XLSX report: its colour's fill.
OUTCOME_STYLES = {o.value: xlsx.fill_style(i) for i, o in enumerate(OUTCOME_COLOURS)}


def header_cells(header: Iterable[_Value]) -> list[xlsx.Cell]:
    """The Results sheet's header line as XLSX cells: bold text."""
    return [(xlsx_text(str(v)), xlsx.BOLD) for v in header]


def write_xlsx_report(
    path: Path,
    results: Iterable[Sequence[xlsx.Cell] | xlsx.Rendered],
    widths: Sequence[float],
    summary: RunSummary,
    source: Path | None,
) -> None:
    """The XLSX workbook: `results` (header first) in sheet Results, and sheet Summary."""
    xlsx.write_workbook(
        path,
        [
            xlsx.SheetSpec("Results", results, widths, freeze_header=True, autofilter=True),
            xlsx.SheetSpec("Summary", _summary_lines(summary, source), (16, 40)),
        ],
        fills=list(OUTCOME_COLOURS.values()),
    )


#: The Summary sheet's word for what the run did with hidden rows and columns (`--hidden`).
_HIDDEN_CHOICE_SHOWN = {
    "send": "sent (--hidden send)",
    "skip": "not sent (--hidden skip)",
    None: "not decided: a real run needs --hidden send or --hidden skip",
}


def _summary_lines(summary: RunSummary, source: Path | None) -> Iterator[list[xlsx.Cell]]:
    def put(label: str, value: _Value | float) -> list[xlsx.Cell]:
        shown = xlsx_text(value) if isinstance(value, str) else value
        return [(xlsx_text(label), xlsx.BOLD), shown]

    yield put("outcome", "rows")
    for outcome in Outcome:
        yield put(outcome.value, summary.counts.get(outcome, 0))
    yield put("total", summary.total)
    yield []
    yield put("input", str(source) if source is not None else "")
    yield put("config", str(summary.config_path or "none (defaults)"))
    yield put("dry run", "yes" if summary.dry_run else "no")
    yield put("duration (s)", round(summary.duration_s, 1))
    if summary.dry_run and summary.estimate_s is not None:
        yield put("estimate (s)", round(summary.estimate_s, 1))
    hidden = summary.hidden
    if hidden:
        yield put("hidden rows", hidden.rows)
        yield put("hidden columns", ", ".join(hidden.columns) or "none")
        yield put("hidden rows and columns", _HIDDEN_CHOICE_SHOWN[hidden.choice])
    if summary.aborted:
        yield put("aborted", "yes")
        if summary.abort_reason:
            yield put("abort reason", summary.abort_reason)
    yield put("generated at", dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
