"""CSV/XLSX -> rows of text with their sheet row numbers (contract section 4).

The only module that knows file formats. Everything it returns is text as a person typed
it: numbers as plain decimals, dates as ISO 8601, booleans as TRUE/FALSE, stripped of white
space. Rows are numbered as a spreadsheet program shows them (1-based, blank rows counted;
a CSV record whose quoted cell spans several lines is one row). Headers are returned as
written: matching them to API fields is the schema's job.

A merged range of an XLSX sheet gives its value to its top-left cell; its other cells are
empty (what Excel itself keeps). A hidden worksheet is never read unless named; hidden rows
and columns are read like any other, and said to be hidden (`SheetRow.hidden`,
`SheetStream.hidden_columns`, counted in `SheetContents`): whether to send them is the
pipeline's decision.

Input may be hostile. Before openpyxl sees a workbook, its zip directory is checked (how
many parts, how large unpacked, how well they compress) and every XML part is streamed
once looking for a document type declaration (XML entity bombs) and for a cell over
MAX_CELL_CHARS; defusedxml stays the second line of defence. A CSV file is read a line at a
time with a bounded line length and cell size. So every file is answered within seconds and
a few hundred MB of memory, with an InputError that says what is wrong.

The package's modules: `guard` (what a file really is, bombs, limits), `csvfile` (encoding,
delimiter, records), `encoding` (which legacy code page a CSV is in, when sure), `xlsxfile`
(worksheets, openpyxl), `cells` (a cell value as the text a person sees), `layout` (the
header row and the rows aligned to it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from ..errors import InputError
from ..models import SheetContents, SheetRow
from .cells import cell_text
from .csvfile import MAX_LINE_CHARS, CsvFormat, _open_csv, sniff_csv
from .guard import CSV_EXTENSIONS, MAX_CELL_CHARS, MAX_UNPACKED_BYTES, XLSX_EXTENSIONS, _os_errors
from .layout import (
    MAX_COLUMNS,
    HeaderLayout,
    HiddenTally,
    SheetStream,
    counting_hidden,
    header_layout,
)
from .xlsxfile import WorksheetInfo, _open_xlsx, list_worksheets

__all__ = [
    "CSV_EXTENSIONS",
    "MAX_CELL_CHARS",
    "MAX_COLUMNS",
    "MAX_LINE_CHARS",
    "MAX_UNPACKED_BYTES",
    "XLSX_EXTENSIONS",
    "CsvFormat",
    "HeaderLayout",
    "HiddenTally",
    "SheetStream",
    "WorksheetInfo",
    "cell_text",
    "check_sheet_path",
    "counting_hidden",
    "header_layout",
    "list_worksheets",
    "open_sheet",
    "read_sheet",
    "sniff_csv",
]

#: Spreadsheet formats openpyxl cannot read; named in their own message.
_OTHER_SHEETS = frozenset({".xls", ".xlsb", ".ods", ".fods", ".numbers"})
_SUPPORTED = ", ".join(sorted(CSV_EXTENSIONS | XLSX_EXTENSIONS))


def read_sheet(
    path: Path, *, sheet: str | None = None, encoding: str | None = None
) -> SheetContents:
    """Read a CSV or XLSX file into its header row and data rows, all as text.

    `sheet` picks a worksheet of an XLSX file by name (default: the first); it is ignored
    for CSV. `encoding` names a CSV's encoding where the file does not say (no BOM, not
    UTF-8), in place of detection. Raises InputError, naming the file, row and column, for
    anything that stops the sheet from being read, hostile files included (see the
    module's docstring).
    """
    with open_sheet(path, sheet=sheet, encoding=encoding) as stream:
        tally = HiddenTally(set(stream.hidden_columns))
        return SheetContents(
            path=stream.path,
            headers=stream.headers,
            header_row=stream.header_row,
            rows=tuple(counting_hidden(stream.rows, tally)),
            sheet_name=stream.sheet_name,
            hidden_rows=tally.rows,
            hidden_columns=tuple(sorted(tally.holding)),
            encoding=stream.encoding,
        )


def check_sheet_path(path: Path) -> None:
    """What a sheet's path must be before it is opened (InputError): a .xlsx or .csv, there,
    a file. Reads nothing: the command line checks it before the paths a run will write to
    (an undo sheet's folder beside an input that is not there would be the wrong news)."""
    name = path.name
    suffix = path.suffix.lower()
    if suffix in _OTHER_SHEETS:
        raise InputError(
            f"{name}: {suffix} files are not read; save the sheet as .xlsx or .csv",
            fix="open it in Excel or LibreOffice and save it as .xlsx (or as CSV UTF-8)",
        )
    if suffix not in CSV_EXTENSIONS and suffix not in XLSX_EXTENSIONS:
        shown = f"'{path.suffix}'" if path.suffix else "no extension"
        raise InputError(
            f"{name}: cannot read a file with {shown}; supported: {_SUPPORTED}",
            fix="save the sheet as .xlsx or .csv (UTF-8) and pass that file",
        )
    with _os_errors(name):
        if not path.exists():
            raise InputError(
                f"{name}: file not found ({path})", fix="check the path and the file name"
            )
        if path.is_dir():
            raise InputError(f"{name} is a folder, not a file", fix="pass the sheet file itself")


@contextlib.contextmanager
def open_sheet(
    path: Path, *, sheet: str | None = None, encoding: str | None = None
) -> Iterator[SheetStream]:
    """`read_sheet`, streaming: the header at once, the rows as `SheetStream.rows` is iterated."""
    path = Path(path)
    name = path.name
    check_sheet_path(path)
    with _os_errors(name):
        xlsx = path.suffix.lower() in XLSX_EXTENSIONS
        opener = _open_xlsx(path, sheet) if xlsx else _open_csv(path, encoding)
        with opener as stream:
            yield replace(stream, rows=_guarded(stream.rows, name))


def _guarded(rows: Iterator[SheetRow], name: str) -> Iterator[SheetRow]:
    # Rows are read while the caller iterates, outside open_sheet's own try.
    with _os_errors(name):
        yield from rows
