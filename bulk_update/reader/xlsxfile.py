"""XLSX workbooks: worksheets picked and listed, rows read with openpyxl (read-only)."""

from __future__ import annotations

import contextlib
import itertools
import logging
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol, TypeVar

from openpyxl import load_workbook
from openpyxl.workbook.workbook import Workbook
from openpyxl.worksheet._reader import WorkSheetParser

from ..errors import InputError
from ..models import SheetRow
from .cells import cell_text
from .guard import (
    _MB,
    _XLSX_ERRORS,
    MAX_CELL_CHARS,
    XLSX_EXTENSIONS,
    _bad_xlsx,
    _check_workbook,
    _os_errors,
    _xml_bomb,
)
from .layout import SheetStream, _Record, _start, column_letter

log = logging.getLogger("bulk_update")

#: Worksheet states (`<sheet state=...>`) a person does not see in the workbook's tabs.
_HIDDEN_STATES = frozenset({"hidden", "veryHidden"})
#: The XML booleans that say true (`<row hidden="1">`, `<col hidden="true">`).
_TRUE = frozenset({"1", "true"})
#: Rows read between two looks for library warnings (a look costs as much as many rows).
_WARNING_BATCH = 2048
#: Library warnings logged per worksheet; the rest are counted in one line.
_WARNINGS_SHOWN = 20

# --------------------------------------------------------------------------- XLSX


@contextlib.contextmanager
def _open_xlsx(path: Path, sheet: str | None) -> Iterator[SheetStream]:
    with _workbook(path) as workbook:

        def checked(rows: Iterator[SheetRow]) -> Iterator[SheetRow]:
            try:
                yield from rows
            except _XLSX_ERRORS as exc:
                raise _xlsx_error(path, exc) from None

        worksheet = _pick_worksheet(workbook.worksheets, workbook.sheetnames, sheet, path.name)
        if _is_hidden(worksheet):
            log.info(
                "%s: worksheet '%s' is hidden in the workbook; read because it was asked for "
                "by name",
                path.name,
                worksheet.title,
                extra={"event": "hidden_worksheet"},
            )
        stream = _worksheet_stream(path, worksheet)
        yield replace(stream, rows=checked(stream.rows), worksheets=tuple(workbook.sheetnames))


@contextlib.contextmanager
def _workbook(path: Path) -> Iterator[Workbook]:
    """The workbook at `path`, checked for hostile content, opened read-only."""
    with path.open("rb") as handle:
        try:
            _check_workbook(handle, path)
            handle.seek(0)
            # openpyxl warns about features it drops (data validation, conditional
            # formatting...); they do not matter for reading values and would only alarm.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                workbook = load_workbook(handle, read_only=True, data_only=True)
        except _XLSX_ERRORS as exc:
            raise _xlsx_error(path, exc) from None
        try:
            yield workbook
        finally:
            workbook.close()


def _worksheet_stream(path: Path, worksheet: Any) -> SheetStream:  # a read-only worksheet
    """A worksheet's header, found and checked, and its rows (read as iterated)."""
    hidden_columns: set[int] = set()
    rows = _quietly(_worksheet_rows(worksheet, hidden_columns), path.name, worksheet.title)
    try:
        return _start(
            path, _xlsx_records(path, rows), _xlsx_column, worksheet.title, lambda: hidden_columns
        )
    except _XLSX_ERRORS as exc:
        raise _xlsx_error(path, exc) from None


def _worksheet_rows(
    worksheet: Any,  # a ReadOnlyWorksheet: its private parts, which the stubs do not list
    hidden_columns: set[int],
) -> Iterator[tuple[int, tuple[object, ...], bool]]:
    """(row number, values, hidden) of every row the worksheet's XML holds, in order.

    `ReadOnlyWorksheet.iter_rows(values_only=True)` as openpyxl 3.1 does it (its
    `_cells_by_row`), plus what iter_rows drops: whether each row is hidden (`<row
    hidden="1">`, also how a filter hides the rows it filters out) and, in
    `hidden_columns`, the 0-based indexes of hidden columns (`<col hidden="1">`, listed
    before the rows). Rows missing from the XML are blank: they are not given at all. No
    <dimension> is trusted (the producing program sometimes writes a wrong one, which
    could cut rows off): every row is read.
    """
    workbook: Any = worksheet.parent
    with worksheet._get_source() as source:
        parser = WorkSheetParser(
            source,
            worksheet._shared_strings,
            data_only=workbook.data_only,
            epoch=workbook.epoch,
            date_formats=workbook._date_formats,
            timedelta_formats=workbook._timedelta_formats,
        )
        # A row with attributes beyond its number and spans (height, style, hidden) is
        # kept by the parser in row_dimensions: taken out as each row comes, which also
        # keeps a large sheet's many styled rows from piling up there.
        dimensions = parser.row_dimensions
        values_of = worksheet._get_row
        following = 1  # the lowest row number still to come (openpyxl skips lower ones)
        columns_seen = False
        for number, cells in parser.parse():
            hidden = False
            if dimensions:
                hidden = dimensions.popitem()[1].get("hidden") in _TRUE
            if not columns_seen:
                columns_seen = True
                hidden_columns.update(_hidden_columns(parser.column_dimensions))
            if number < following:
                continue
            following = number + 1
            yield number, values_of(cells, 1, None, True), hidden


def _hidden_columns(dimensions: dict[str, dict[str, str]]) -> Iterator[int]:
    """The 0-based indexes of the columns a worksheet's `<col>` records hide."""
    for attributes in dimensions.values():
        if attributes.get("hidden") not in _TRUE:
            continue
        try:
            first, last = int(attributes["min"]), int(attributes.get("max", attributes["min"]))
        except (KeyError, ValueError):
            continue
        # Hiding every unused column to the right of the data is common (max=16384): only
        # the columns a header could stand in are of interest.
        yield from range(max(first, 1) - 1, min(last, _MAX_COLUMN))


#: The last column of an XLSX worksheet (XFD).
_MAX_COLUMN = 16_384


def _quietly(rows: Iterator[_T], name: str, title: str) -> Iterator[_T]:
    """`rows`, the library's warnings while reading them turned into the tool's log lines.

    openpyxl warns about cells it cannot read as they say (a date past year 9999 becomes
    "#VALUE!", which the row then reports); a raw UserWarning on stderr would only confuse,
    and break JSON log lines. Warnings are caught around batches of rows, not each row,
    which would cost as much as reading it; never while a row is handed out, so nothing
    the caller does between rows is caught here.
    """
    logged = 0
    size = 64  # small at first: the header alone is often all that is wanted
    while True:
        with warnings.catch_warnings(record=True) as caught:
            # Each cell's warning, not only the first from that line of openpyxl; other
            # kinds (DeprecationWarning...) as the filters in force say.
            warnings.simplefilter("always", UserWarning)
            batch = list(itertools.islice(rows, size))
        size = min(size * 2, _WARNING_BATCH)
        for warning in caught:
            logged += 1
            if logged <= _WARNINGS_SHOWN:
                log.warning(
                    "%s, worksheet '%s': %s",
                    name,
                    title,
                    warning.message,
                    extra={
                        "event": "library_warning",
                        "fields": {"file": name, "worksheet": title},
                    },
                )
        if not batch:
            break
        yield from batch
    if logged > _WARNINGS_SHOWN:
        log.warning(
            "%s, worksheet '%s': %d more warnings like these while reading",
            name,
            title,
            logged - _WARNINGS_SHOWN,
            extra={"event": "library_warning", "fields": {"file": name, "worksheet": title}},
        )


@dataclass(frozen=True, slots=True)
class WorksheetInfo:
    """One worksheet of a workbook: its name, its header row (empty if it has none), and
    whether it is hidden in the workbook (never read unless asked for by name)."""

    name: str
    headers: tuple[str, ...]
    hidden: bool = False


def list_worksheets(path: Path) -> tuple[WorksheetInfo, ...]:
    """The worksheets of an XLSX workbook in order, each with its header row; () otherwise.

    For choosing which one to read (`read_sheet(path, sheet=name)`). Raises InputError for
    a workbook that cannot be read, as `read_sheet` does.
    """
    path = Path(path)
    if path.suffix.lower() not in XLSX_EXTENSIONS:
        return ()
    found = []
    with _os_errors(path.name), _workbook(path) as workbook:
        for worksheet in workbook.worksheets:
            try:
                headers = _worksheet_stream(path, worksheet).headers
            except InputError:  # no header row (an empty worksheet), or one not usable
                headers = ()
            hidden = _is_hidden(worksheet)
            found.append(WorksheetInfo(worksheet.title, headers, hidden))
    return tuple(found)


def _xlsx_error(path: Path, exc: Exception) -> InputError:
    # defusedxml (the second line of defence, after _scan_part) refuses with ValueErrors
    # of its own, which openpyxl wraps in a ValueError of its own; defusedxml is imported
    # by openpyxl, not here, so its exceptions are known by their module.
    cause: BaseException | None = exc
    for _ in range(8):  # a chain of a few links at most; never loop on a cycle
        if cause is None:
            break
        if type(cause).__module__.startswith("defusedxml"):
            return _xml_bomb(path, None)
        cause = cause.__cause__ or cause.__context__
    return _bad_xlsx(path)


def _xlsx_records(
    path: Path, rows: Iterable[tuple[int, tuple[object, ...], bool]]
) -> Iterator[_Record]:
    for number, row, hidden in rows:
        texts: list[str] = []
        numeric: list[int] = []
        for index, value in enumerate(row):
            text, is_number = cell_text(value)
            if len(text) > MAX_CELL_CHARS:
                # Only rich text (many runs, each under the limit _scan_part checks) gets here.
                raise InputError(
                    f"{path.name}, row {number} has a cell larger than {_MB} "
                    f"({_xlsx_column(index)})",
                    fix="check that this is the right file; if it is, empty that cell",
                )
            texts.append(text)
            if is_number:
                numeric.append(index)
        yield number, texts, frozenset(numeric), hidden


class _Titled(Protocol):
    @property
    def title(self) -> str: ...


_W = TypeVar("_W", bound=_Titled)
_T = TypeVar("_T")


def _pick_worksheet(
    worksheets: list[_W], names: list[str], wanted: str | None, file_name: str
) -> _W:
    titles = [w.title for w in worksheets]
    if wanted is None:
        if not worksheets:
            raise InputError(
                f"{file_name} has no worksheet", fix="add a worksheet holding the candidates"
            )
        # A hidden worksheet (an old export, lookup tables) is never read unseen.
        visible = [w for w in worksheets if not _is_hidden(w)]
        if not visible:
            listed = ", ".join(f"'{t}'" for t in titles)
            raise InputError(
                f"{file_name}: every worksheet is hidden ({listed})",
                fix="unhide the one with the candidates, or name it with --sheet "
                "(or [input] sheet)",
            )
        return visible[0]
    if wanted in titles:
        return worksheets[titles.index(wanted)]
    # Excel itself treats sheet names without regard to case.
    folded = [t.casefold() for t in titles]
    if wanted.strip().casefold() in folded:
        return worksheets[folded.index(wanted.strip().casefold())]
    listed = ", ".join(f"'{n}'" for n in names)
    raise InputError(
        f"{file_name} has no worksheet '{wanted}'; its sheets are: {listed}",
        fix="pass one of those names with --sheet (or [input] sheet in the config file)",
    )


def _is_hidden(worksheet: object) -> bool:
    return getattr(worksheet, "sheet_state", "visible") in _HIDDEN_STATES


def _xlsx_column(index: int) -> str:
    return f"column {column_letter(index)}"
