"""Results -> the results sheet (XLSX or CSV) and its summary; formula-safe.

The sheet starts with the report's own columns (models.REPORT_COLUMNS), then every input
column under its original header with the row's cells as read, so a person can fix rows in
place and upload the sheet again (the tool ignores its own leading columns on input).
"""

from __future__ import annotations

import csv
import datetime as dt
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import suppress
from pathlib import Path

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE, Cell
from openpyxl.styles import Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet._write_only import WriteOnlyWorksheet

from .errors import ConfigError
from .models import REPORT_COLUMNS, Outcome, RowResult, RunSummary, SheetRow

__all__ = ["OUTCOME_COLOURS", "default_report_path", "report_table", "write_report"]

#: Fill colour (hex RGB) of each outcome's cell; the web page uses the same colours.
OUTCOME_COLOURS: Mapping[Outcome, str] = {
    Outcome.UPDATED: "C6EFCE",
    Outcome.WOULD_UPDATE: "DDEBF7",
    Outcome.UNCHANGED: "E2EFDA",
    Outcome.SKIPPED: "EDEDED",
    Outcome.INVALID: "F8CBAD",
    Outcome.NOT_FOUND: "FFC7CE",
    Outcome.REJECTED: "FFC7CE",
    Outcome.FAILED: "FF9999",
    Outcome.NOT_SENT: "FFEB9C",
}

#: Excel's last row is 1,048,576; one is the header.
XLSX_MAX_ROWS = 1_048_575
_MAX_WIDTH = 60
_Cell = str | int | None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def default_report_path(input_path: Path) -> Path:
    """`<input stem>.results.xlsx` beside the input."""
    return input_path.with_name(f"{input_path.stem}.results.xlsx")


def report_table(
    headers: Sequence[str], rows: Sequence[SheetRow], results: Sequence[RowResult]
) -> Iterator[list[_Cell]]:
    """The header line, then one line per result in sheet-row order. Pure."""
    yield [*REPORT_COLUMNS, *headers]
    by_number = {row.number: row for row in rows}
    blank = ("",) * len(headers)
    for result in sorted(results, key=lambda r: r.row):
        row = by_number.get(result.row)
        cells = row.values if row is not None else blank
        yield [
            result.row,
            result.uid,
            result.outcome.value,
            result.http_status,
            result.error,
            result.message,
            result.attempts,
            ",".join(result.fields),
            *cells,
        ]


def write_report(
    path: Path,
    *,
    headers: Sequence[str],
    rows: Sequence[SheetRow],
    results: Sequence[RowResult],
    summary: RunSummary,
    source: Path | None = None,
) -> Path:
    """Write the results sheet atomically; the format follows the extension."""
    suffix = path.suffix.lower()
    if suffix not in (".xlsx", ".csv"):
        raise ConfigError(
            f"the report '{path.name}' must end in .xlsx or .csv",
            fix="use a .xlsx or .csv report path",
        )
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise ConfigError(
            f"the report's folder '{folder}' does not exist",
            fix="create the folder or choose another --report path",
        )
    if suffix == ".xlsx" and len(results) > XLSX_MAX_ROWS:
        raise ConfigError(
            f"{len(results):,} rows do not fit in an Excel sheet",
            fix="use a .csv report (--report results.csv)",
        )
    table = report_table(headers, rows, results)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.chmod(0o666 & ~_umask())  # mkstemp makes it private; a report is an ordinary file
    try:
        if suffix == ".csv":
            _write_csv(tmp, table)
        else:
            _write_xlsx(tmp, table, summary, source)
        os.replace(tmp, path)
    finally:
        with suppress(FileNotFoundError):
            tmp.unlink()
    return path


def _write_csv(path: Path, table: Iterator[list[_Cell]]) -> None:
    # A BOM so that Excel opens the UTF-8 file with the right characters.
    with path.open("w", encoding="utf-8-sig", newline="") as fh:
        writer = csv.writer(fh)
        for line in table:
            writer.writerow("" if v is None else v for v in line)


def _text_cell(ws: WriteOnlyWorksheet, value: _Cell) -> Cell:
    if isinstance(value, str):
        # XML readers (Excel included) read a raw CR as LF: write line breaks as LF up front.
        text = ILLEGAL_CHARACTERS_RE.sub("", value.replace("\r\n", "\n").replace("\r", "\n"))
        cell = WriteOnlyCell(ws, value=text)
        # openpyxl turns text starting with '=' into a formula; a sheet must never run one.
        cell.data_type = "s"
        return cell
    return WriteOnlyCell(ws, value=value)


def _write_xlsx(
    path: Path, table: Iterator[list[_Cell]], summary: RunSummary, source: Path | None
) -> None:
    wb = Workbook(write_only=True)
    ws = wb.create_sheet("Results")
    header = next(table)
    widths = [min(_MAX_WIDTH, max(8, len(str(h)) + 2)) for h in header]
    ws.freeze_panes = "A2"
    fills = {o.value: PatternFill("solid", fgColor=c) for o, c in OUTCOME_COLOURS.items()}
    bold = Font(bold=True)
    head_cells = []
    for value in header:
        cell = _text_cell(ws, value)
        cell.font = bold
        head_cells.append(cell)
    count = 0
    body: list[list[Cell]] = []
    for line in table:
        cells = [_text_cell(ws, v) for v in line]
        outcome = line[2]
        if isinstance(outcome, str) and outcome in fills:
            cells[2].fill = fills[outcome]
        for i, v in enumerate(line):
            if isinstance(v, str) and v:
                longest = max(len(part) for part in v.splitlines() or [v])
                widths[i] = min(_MAX_WIDTH, max(widths[i], longest + 2))
        body.append(cells)
        count += 1
    for i, width in enumerate(widths, start=1):
        ws.column_dimensions[get_column_letter(i)].width = width
    ws.auto_filter.ref = f"A1:{get_column_letter(len(header))}{count + 1}"
    # Widths go before the first row in a write-only sheet, hence the buffered body.
    ws.append(head_cells)
    for cells in body:
        ws.append(cells)
    _write_summary(wb, summary, source)
    wb.save(path)


def _write_summary(wb: Workbook, summary: RunSummary, source: Path | None) -> None:
    ws = wb.create_sheet("Summary")
    bold = Font(bold=True)

    def put(label: str, value: str | int | float | None) -> None:
        key = WriteOnlyCell(ws, value=label)
        key.font = bold
        ws.append([key, _text_cell(ws, value) if isinstance(value, str) else value])

    ws.column_dimensions["A"].width = 16
    ws.column_dimensions["B"].width = 40
    put("outcome", "rows")
    for outcome in Outcome:
        put(outcome.value, summary.counts.get(outcome, 0))
    put("total", summary.total)
    ws.append([])
    put("input", str(source) if source else "")
    put("dry run", "yes" if summary.dry_run else "no")
    put("duration (s)", round(summary.duration_s, 1))
    if summary.dry_run and summary.estimate_s is not None:
        put("estimate (s)", round(summary.estimate_s, 1))
    if summary.aborted:
        put("aborted", summary.abort_reason or "yes")
    put("generated at", dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
