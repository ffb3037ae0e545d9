"""XLSX workbooks: worksheets picked and listed, rows read with openpyxl (read-only)."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol, TypeVar

from openpyxl import load_workbook
from openpyxl.utils import get_column_letter
from openpyxl.workbook.workbook import Workbook
from openpyxl.worksheet._read_only import ReadOnlyWorksheet

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
from .layout import SheetStream, _Record, _start

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
    if isinstance(worksheet, ReadOnlyWorksheet):
        # The <dimension> record is written by the producing program and is sometimes
        # wrong; trusting it could cut rows off. Without it every row is read.
        worksheet.reset_dimensions()
    rows = worksheet.iter_rows(min_row=1, min_col=1, values_only=True)
    try:
        return _start(path, _xlsx_records(path, rows), _letter, worksheet.title)
    except _XLSX_ERRORS as exc:
        raise _xlsx_error(path, exc) from None


@dataclass(frozen=True, slots=True)
class WorksheetInfo:
    """One worksheet of a workbook: its name and its header row (empty if it has none)."""

    name: str
    headers: tuple[str, ...]


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
            found.append(WorksheetInfo(worksheet.title, headers))
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


def _xlsx_records(path: Path, rows: Iterable[tuple[object, ...]]) -> Iterator[_Record]:
    for number, row in enumerate(rows, 1):
        texts: list[str] = []
        numeric: list[int] = []
        for index, value in enumerate(row):
            text, is_number = cell_text(value)
            if len(text) > MAX_CELL_CHARS:
                # Only rich text (many runs, each under the limit _scan_part checks) gets here.
                raise InputError(
                    f"{path.name}, row {number} has a cell larger than {_MB} ({_letter(index)})",
                    fix="check that this is the right file; if it is, empty that cell",
                )
            texts.append(text)
            if is_number:
                numeric.append(index)
        yield number, texts, frozenset(numeric)


class _Titled(Protocol):
    @property
    def title(self) -> str: ...


_W = TypeVar("_W", bound=_Titled)


def _pick_worksheet(
    worksheets: list[_W], names: list[str], wanted: str | None, file_name: str
) -> _W:
    titles = [w.title for w in worksheets]
    if wanted is None:
        if not worksheets:
            raise InputError(
                f"{file_name} has no worksheet", fix="add a worksheet holding the candidates"
            )
        return worksheets[0]
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


def _letter(index: int) -> str:
    return f"column {get_column_letter(index + 1)}"
