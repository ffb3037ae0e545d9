"""Loading a sheet: read it from disk and match its columns to API fields (the first step).

A CSV or XLSX is read as a stream into a compact RowStore, its duplicate uids counted on
the way; a workbook's worksheet read by default that does not hold the candidates is
refused with a fix naming the one that does.
"""

from __future__ import annotations

import contextlib
import logging
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from .config import Settings
from .errors import InputError
from .models import Column, HiddenContent, SheetContents, SheetRow, reads_back_as_typed
from .reader import HiddenTally, SheetStream, counting_hidden, list_worksheets, open_sheet
from .report import restore_cell
from .rowstore import RowStore
from .schema import UidTally, names_uid, resolve_columns

log = logging.getLogger("bulk_update")


@dataclass(frozen=True, slots=True)
class LoadedSheet:
    """A sheet read from disk with its columns matched to API fields.

    Its rows are kept compactly (a RowStore), so even a million-row sheet costs about its
    file's size in memory.
    """

    raw: SheetContents
    columns: tuple[Column, ...]
    #: The uids typed on more than one row, when counted as the sheet was read.
    duplicate_uids: frozenset[str] | None = None

    @property
    def path(self) -> Path:
        return self.raw.path

    @property
    def headers(self) -> tuple[str, ...]:
        return self.raw.headers

    @property
    def rows(self) -> Sequence[SheetRow]:
        return self.raw.rows

    @property
    def hidden(self) -> HiddenContent:
        """The rows hidden or filtered out of view, and the hidden columns that feed a field."""
        fed = {c.index for c in self.columns if c.field is not None}
        return HiddenContent(
            rows=self.raw.hidden_rows,
            columns=tuple(self.headers[i] for i in self.raw.hidden_columns if i in fed),
        )


def load(
    path: str | Path, settings: Settings | None = None, *, sheet: str | None = None
) -> LoadedSheet:
    """Read a CSV or XLSX and match its headers to API fields (raises InputError).

    The file is read as a stream into a compact RowStore. A sheet the tool wrote itself, a
    re-uploaded results sheet or an undo sheet (models.reads_back_as_typed), gets its cells
    back as first typed: the apostrophe it put before `=` `+` `-` `@` is taken off
    (report.restore_cell), so the API receives the value the person typed, or Comeet held.
    """
    settings = settings or Settings()
    wanted = sheet or settings.sheet
    with contextlib.ExitStack() as stack:
        stream = _open(stack, Path(path), wanted, settings)
        if len(stream.worksheets) > 1 and not wanted:
            skipped = stream.sheet_name != stream.worksheets[0]  # hidden ones before it
            log.info(
                "%s has %d worksheets (%s): reading the first%s, '%s'; --sheet NAME (or [input] "
                "sheet) reads another",
                stream.path.name,
                len(stream.worksheets),
                ", ".join(f"'{name}'" for name in stream.worksheets),
                " visible one" if skipped else "",
                stream.sheet_name,
                extra={"event": "worksheet"},
            )
        headers, rows = stream.headers, stream.rows
        if reads_back_as_typed(headers):
            headers, rows = tuple(map(restore_cell, headers)), map(_restored, rows)
        # Columns are matched before the rows are read: a wrong header stops at once.
        try:
            columns = resolve_columns(
                headers, mapping=settings.columns, ignore=settings.ignore_columns
            )
        except InputError as exc:
            if len(stream.worksheets) > 1 and not wanted:
                raise _pointing_elsewhere(exc, stream.path, stream.sheet_name, settings) from None
            raise
        uid_index = next((c.index for c in columns if c.field == "uid"), None)
        uids = UidTally()
        if uid_index is not None:
            rows = uids.counting(rows, uid_index)
        tally = HiddenTally(set(stream.hidden_columns))
        if stream.worksheets:  # only a workbook hides rows and columns
            rows = counting_hidden(rows, tally)
        raw = SheetContents(
            path=stream.path,
            headers=headers,
            header_row=stream.header_row,
            rows=RowStore(len(headers), rows),
            sheet_name=stream.sheet_name,
            hidden_rows=tally.rows,
            hidden_columns=tuple(sorted(tally.holding)),
            encoding=stream.encoding,
        )
    return LoadedSheet(raw=raw, columns=columns, duplicate_uids=uids.duplicates)


def _open(
    stack: contextlib.ExitStack, path: Path, wanted: str | None, settings: Settings
) -> SheetStream:
    """The sheet opened in `stack`; a worksheet read by default that cannot be (empty, or
    no header row) is refused with a fix naming the worksheets that have a uid column."""
    try:
        return stack.enter_context(open_sheet(path, sheet=wanted, encoding=settings.encoding))
    except InputError as exc:
        if wanted:
            raise
        raise _pointing_elsewhere(exc, path, None, settings) from None


def _pointing_elsewhere(
    exc: InputError, path: Path, read: str | None, settings: Settings
) -> InputError:
    """`exc`, its fix naming the workbook's other visible worksheets that have a uid column.

    `read` is the worksheet read by default (None: the first visible one). A file that is
    no workbook, or that cannot be opened, leaves `exc` as it is.
    """
    try:
        worksheets = list_worksheets(path)
    except InputError:
        return exc
    visible = [w for w in worksheets if not w.hidden]
    if not visible:
        return exc
    read = read or visible[0].name
    others = [w.name for w in visible if w.name != read and names_uid(w.headers, settings.columns)]
    if not others:
        return exc
    named = " or ".join(f"'{name}'" for name in others[:3])
    otherwise = f"; else {exc.fix}" if exc.fix else ""
    first = "first" if worksheets[0].name == read else "first visible"
    exc.with_fix(
        f"the {first} worksheet, '{read}', was read; {named} has a uid column: "
        f"read it with --sheet {shlex.quote(others[0])} (or [input] sheet){otherwise}"
    )
    return exc


def _restored(row: SheetRow) -> SheetRow:
    """A defused sheet's row with every cell as first typed (see report.restore_cell)."""
    # Only rows with an apostrophe-led cell are rebuilt: a large sheet has few or none.
    if any(value.startswith("'") for value in row.values):
        return replace(row, values=tuple(map(restore_cell, row.values)))
    return row


#: The name `load`'s result had before (kept: `bulk_update.Sheet` is public).
Sheet = LoadedSheet
