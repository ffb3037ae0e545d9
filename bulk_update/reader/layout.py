"""Header layout: the header row found among numbered records, the rows below aligned to it."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeAlias

from ..errors import InputError
from ..models import SheetRow

#: The most columns a header row may span.
MAX_COLUMNS = 2000

#: One source row: its sheet row number, its cells as stripped text, the indexes of the
#: cells stored as numbers, and whether the row is hidden or filtered out of view.
_Record: TypeAlias = tuple[int, list[str], frozenset[int], bool]
#: Names a column by its 0-based index, the way the file's users see it.
_ColumnNamer: TypeAlias = Callable[[int], str]


def column_letter(index: int) -> str:
    """A 0-based column index as a spreadsheet shows it (0 -> A, 26 -> AA)."""
    letters = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(ord("A") + rem) + letters
    return letters


@dataclass(frozen=True, slots=True)
class SheetStream:
    """An open sheet: its header, found and checked, and its data rows, read as iterated.

    `rows` reads the file lazily, so a sheet of a million rows never has to be in memory
    at once; a problem further down the file is raised (as InputError) while iterating.
    Only valid inside the `open_sheet` block that gave it.
    """

    path: Path
    headers: tuple[str, ...]
    header_row: int
    rows: Iterator[SheetRow]
    sheet_name: str | None = None
    #: Every worksheet of a workbook, by name, in order (empty for a CSV).
    worksheets: tuple[str, ...] = ()
    #: The indexes (into `headers`) of the columns hidden in the workbook.
    hidden_columns: tuple[int, ...] = ()
    #: A CSV's text encoding and how it was chosen, as shown: `cp1255 (detected)`,
    #: `cp1255 (given)`; None for a workbook.
    encoding: str | None = None


# --------------------------------------------------------------------------- hidden


@dataclass(slots=True)
class HiddenTally:
    """Counted while a workbook's rows are read: hidden rows, hidden columns holding data."""

    pending: set[int]  # hidden columns with no data seen yet
    holding: set[int] = field(default_factory=set)
    rows: int = 0


def counting_hidden(rows: Iterable[SheetRow], tally: HiddenTally) -> Iterator[SheetRow]:
    """`rows`, counting the hidden ones and the hidden columns that hold data in `tally`."""
    for row in rows:
        if row.hidden:
            tally.rows += 1
        if tally.pending:
            found = {i for i in tally.pending if row.values[i]}
            tally.pending -= found
            tally.holding |= found
        yield row


# --------------------------------------------------------------------------- rows


@dataclass(frozen=True, slots=True)
class HeaderLayout:
    """The header row's columns, as the rows below it are read.

    `cells`: the header record up to its last header (empty cells after it are no
    columns: spreadsheet programs leave them). `keep`: the indices of the columns that
    have a header; the others (`unnamed`) are dropped, and must hold no data.
    """

    cells: tuple[str, ...]
    keep: tuple[int, ...]
    unnamed: tuple[int, ...]

    @property
    def headers(self) -> tuple[str, ...]:
        return tuple(self.cells[i] for i in self.keep)


def header_layout(name: str, cells: Sequence[str]) -> HeaderLayout:
    """The layout of a header record (stripped cells, at least one not empty).

    Raises InputError, naming the file `name`, for more than MAX_COLUMNS columns.
    """
    width = max(i for i, h in enumerate(cells) if h) + 1
    if width > MAX_COLUMNS:
        raise InputError(
            f"{name}: the sheet has {width:,} columns; at most {MAX_COLUMNS:,} are read — "
            "is this the right file?",
            fix=f"keep only the candidates' columns (at most {MAX_COLUMNS:,}) and save again",
        )
    kept = tuple(cells[:width])
    return HeaderLayout(
        kept,
        tuple(i for i, h in enumerate(kept) if h),
        tuple(i for i, h in enumerate(kept) if not h),
    )


def _start(
    path: Path,
    records: Iterable[_Record],
    column_name: _ColumnNamer,
    sheet_name: str | None,
    hidden_columns: Callable[[], Collection[int]] | None = None,
) -> SheetStream:
    """Find and check the header among numbered records; the rows below come lazily.

    `hidden_columns` gives the 0-based indexes of the source's hidden columns once the
    header has been read (a workbook lists them before its rows).
    """
    name = path.name
    iterator = iter(records)
    header_row, header_cells = 0, []
    for number, cells, _, _ in iterator:
        if any(cells):
            header_row, header_cells = number, cells
            break
    if not header_row:
        raise InputError(
            f"{name} has no header row (it is empty)",
            fix="put the column names in the first row and one candidate per row below",
        )
    layout = header_layout(name, header_cells)
    hidden = hidden_columns() if hidden_columns is not None else ()
    return SheetStream(
        path=path,
        headers=layout.headers,
        header_row=header_row,
        rows=_rows(name, iterator, layout, header_row, column_name),
        sheet_name=sheet_name,
        hidden_columns=tuple(new for new, old in enumerate(layout.keep) if old in hidden),
    )


def _rows(
    name: str,
    records: Iterator[_Record],
    layout: HeaderLayout,
    header_row: int,
    column_name: _ColumnNamer,
) -> Iterator[SheetRow]:
    """The non-blank rows under the header, checked and aligned with the headers."""
    width = len(layout.cells)
    # Columns without a header are dropped when they hold no data (spreadsheet programs
    # leave such columns behind); data in one is an error, found in row order below.
    keep, unnamed = layout.keep, layout.unnamed
    last_header = layout.cells[keep[-1]]
    plain = not unnamed  # the fast path: nothing to drop
    remap = {old: new for new, old in enumerate(keep)}
    for number, cells, numeric, hidden in records:
        if not any(cells):
            continue
        for index in unnamed:
            if index < len(cells) and cells[index]:
                raise InputError(
                    f"{name}, row {number}: {column_name(index)} has data but no header",
                    fix=f"give {column_name(index)} a header in row {header_row}, or delete it",
                )
        if len(cells) > width and any(cells[width:]):
            index = next(i for i in range(width, len(cells)) if cells[i])
            raise InputError(
                f"{name}, row {number}: {column_name(index)} has a value beyond the "
                f"last header ('{last_header}', {column_name(keep[-1])})",
                fix=(
                    f"give {column_name(index)} a header in row {header_row}, or "
                    "delete the value (in a CSV file, quote cells that hold the "
                    "delimiter)"
                ),
            )
        if plain and len(cells) == width:
            yield SheetRow(number, tuple(cells), numeric, hidden)
            continue
        values = tuple(cells[i] if i < len(cells) else "" for i in keep)
        if numeric and not plain:
            numeric = frozenset(remap[i] for i in numeric if i in remap)
        elif numeric:
            numeric = frozenset(i for i in numeric if i < width)
        yield SheetRow(number, values, numeric, hidden)
