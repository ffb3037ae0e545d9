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
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import suppress
from pathlib import Path

from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

from . import xlsx
from .models import REPORT_COLUMNS, Outcome, RowResult, RunSummary, SheetRow, is_results_sheet
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
    "MAX_WIDTH",
    "MIN_WIDTH",
    "OUTCOME_COLOURS",
    "OUTCOME_STYLES",
    "XLSX_MAX_ROWS",
    "check_report_path",
    "create_temp",
    "default_report_path",
    "defuse_csv_cell",
    "fits_in_excel",
    "fitting_report",
    "header_cells",
    "longest_line",
    "put_in_place",
    "report_table",
    "restore_cell",
    "write_report",
    "write_xlsx_report",
    "xlsx_text",
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

#: An XLSX report's column widths, in characters: the longest line of a cell, plus 2.
MIN_WIDTH = 8
MAX_WIDTH = 60
_OUTCOME_COLUMN = REPORT_COLUMNS.index("outcome")
_Value = str | int | None
#: Makes a fresh iterator over the report's lines (the XLSX writer walks them twice).
_TableFactory = Callable[[], Iterator[list[_Value]]]

#: First characters that make a spreadsheet program read a CSV cell as a formula (OWASP).
FORMULA_STARTS = "=+-@\t\r"
_START = f"[{re.escape(FORMULA_STARTS)}]"
# A cell that needs an apostrophe more: a formula start, after any apostrophes already there.
_NEEDS_QUOTE = re.compile(f"'*{_START}")
_FIRST = frozenset(FORMULA_STARTS + "'")
# In cells joined by NUL: the start of each cell that needs an apostrophe more.
_DEFUSE_JOINED = re.compile(f"\x00(?='*{_START})")
_REPORT_WIDTH = len(REPORT_COLUMNS)
# A cell as defused: one apostrophe or more, then a formula start.
_QUOTED = re.compile(f"'+{_START}")


def defuse_csv_cell(text: str) -> str:
    """`text` as a CSV report writes it, defused. Pure; `restore_cell` undoes it.

    One more leading `'` when, after any apostrophes, it starts with = + - @ tab or CR.
    """
    # The first-character test settles nearly every cell without the regex.
    if not text or text[0] not in _FIRST:
        return text
    return "'" + text if _NEEDS_QUOTE.match(text) else text


def restore_cell(text: str) -> str:
    """A re-uploaded report's cell as first typed. Pure; the inverse of `defuse_csv_cell`.

    One leading `'` less when apostrophes are followed by = + - @ tab or CR.
    """
    return text[1:] if _QUOTED.match(text) else text


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
    skip = _REPORT_WIDTH if is_results_sheet(headers) else 0
    yield [*REPORT_COLUMNS, *headers[skip:]]
    blank = ("",) * (len(headers) - skip)
    numbered: Iterator[tuple[int, tuple[str, ...]]] = (
        rows.numbered() if isinstance(rows, RowStore) else ((r.number, r.values) for r in rows)
    )
    number, values = next(numbered, (None, blank))
    for result in sorted(results, key=_by_row):
        while number is not None and number < result.row:
            number, values = next(numbered, (None, blank))
        yield [
            result.row,
            result.uid,
            result.outcome,  # a StrEnum: written as its value
            result.http_status,
            result.error,
            result.message,
            result.attempts,
            ",".join(result.fields),
            *(values[skip:] if number == result.row else blank),
        ]


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


def _write_csv(path: Path, table: Iterable[list[_Value]]) -> None:
    # A BOM so that Excel opens the UTF-8 file with the right characters.
    with path.open("w", encoding="utf-8-sig", newline="") as fh:
        # Lines are formatted into memory a few thousand at a time and written in one go:
        # a file write per line costs more than the line's formatting.
        buffer = io.StringIO()
        writer = csv.writer(buffer, quoting=csv.QUOTE_MINIMAL)
        lines = iter(table)
        writer.writerow([defuse_csv_cell(str(v)) for v in next(lines)])
        for batch in iter(lambda: list(itertools.islice(lines, 4096)), []):
            writer.writerows(map(_defused_line, batch))
            fh.write(buffer.getvalue())
            buffer.seek(0)
            buffer.truncate()
        fh.write(buffer.getvalue())


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


def longest_line(text: str) -> int:
    """The length of a cell's longest line: what its column's width in a report follows."""
    return max((len(part) for part in text.splitlines()), default=0)


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
                longest = longest_line(text)
                widths[i] = max(widths[i], longest + 2)
    return [min(w, MAX_WIDTH) for w in widths]


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
