"""Results -> the results sheet (XLSX or CSV) and its summary; formula-safe.

The sheet starts with the report's own columns (models.REPORT_COLUMNS), then every input
column under its original header with the row's cells as read, so a person can fix rows in
place and upload the sheet again (the tool ignores its own leading columns on input).

`report_table` is the pure part (the lines of the sheet); `write_report` only lays them out
in a file, atomically: a temp file beside the target, then os.replace, so an interrupted
write never leaves half a report (reportfile.py: where a report goes and how it gets there;
its names are offered here too).

Formula safety (OWASP "CSV Injection"): XLSX cells are typed as text, so nothing is ever a
formula there. A CSV has no types: a cell that starts with `=` `+` `-` `@` tab or CR is
*defused* with a leading apostrophe (`defuse_csv_cell`). So that a re-uploaded report sends
the value as first typed, `restore_cell` takes exactly one apostrophe off again; to keep
that exact for a cell that really began with apostrophes before such a character, both
formats give that cell one apostrophe more (`'=x` is written `''=x` and read back `'=x`).
These cell rules live in `reportcells` (re-exported here), each beside its column form.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import io
import itertools
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import suppress
from pathlib import Path
from typing import TypeVar

from . import xlsx
from .models import (
    BEFORE_COLUMN,
    REPORT_COLUMNS,
    Outcome,
    RowResult,
    RunSummary,
    SheetRow,
    own_columns,
)
from .reportcells import (
    _CSV_QUOTING,
    FORMULA_STARTS,
    LINE_BREAKS,
    MAX_WIDTH,
    MIN_WIDTH,
    _defused_line,
    bounded_widths,
    csv_header,
    csv_lines,
    defuse_csv_cell,
    defuse_csv_column,
    longest_line,
    may_hold,
    restore_cell,
    table_widths,
    widen_column,
    xlsx_text,
    xlsx_text_column,
)
from .reportfile import (
    XLSX_MAX_ROWS,
    check_report_path,
    create_temp,
    default_report_path,
    fits_in_excel,
    fitting_report,
    put_in_place,
)
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

_OUTCOME_COLUMN = REPORT_COLUMNS.index("outcome")
_Value = str | int | None
_T = TypeVar("_T")
#: Makes a fresh iterator over the report's lines (the XLSX writer walks them twice).
_TableFactory = Callable[[], Iterator[list[_Value]]]


def report_table(
    headers: Sequence[str],
    rows: Sequence[SheetRow],
    results: Sequence[RowResult],
    *,
    before: bool = False,
) -> Iterator[list[_Value]]:
    """The header line, then one line per result in sheet-row order. Pure.

    A result is matched to its input row by `RowResult.row == SheetRow.number`; a result
    with no such row still gets a line, its input cells empty. `rows` come in sheet order
    (as the reader gives them) and are walked once beside the sorted results, so a
    million-row sheet is never held as objects. When the input is itself a results sheet,
    its old result columns are left out (the new ones replace them), so the
    fix-and-upload-again loop can go round any number of times. `before` adds the
    `before` column after `fields` (a --compare run: each field sent, old -> new).
    """
    # The same test as schema.resolve_columns, which ignores exactly these columns on input.
    skip = own_columns(headers)
    extra = (BEFORE_COLUMN,) if before else ()
    yield [*REPORT_COLUMNS, *extra, *headers[skip:]]
    blank = ("",) * (len(headers) - skip)
    numbered: Iterator[tuple[int, tuple[str, ...]]] = (
        rows.numbered() if isinstance(rows, RowStore) else ((r.number, r.values) for r in rows)
    )
    number, values = next(numbered, (None, blank))
    for result in sorted(results, key=_by_row):
        while number is not None and number < result.row:
            number, values = next(numbered, (None, blank))
        cells = values[skip:] if number == result.row else blank
        yield report_line(
            result.row,
            result.uid,
            result.outcome,  # a StrEnum: written as its value
            result.http_status,
            result.error,
            result.message,
            result.attempts,
            ",".join(result.fields),
            # a --compare report's `before` cell goes first, right after `fields`
            (result.before, *cells) if before else cells,
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
            _write_csv(tmp, report_table(headers, rows, results, before=summary.compared))
        else:
            table = functools.partial(report_table, headers, rows, results, before=summary.compared)
            _write_xlsx(tmp, table, summary, source)
        return put_in_place(tmp, path)
    finally:
        with suppress(FileNotFoundError):
            tmp.unlink()


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


def _write_xlsx(
    path: Path,
    table: _TableFactory,
    summary: RunSummary,
    source: Path | None,
) -> None:
    # The writer streams rows to disk and wants column widths before the first row, so the
    # (pure, cheap) table is walked twice rather than holding a million cells in memory.
    widths = table_widths(table())

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
