"""What the person does not see in an XLSX: described, refused unasked, or left out.

The reader says which rows are hidden or filtered out of view and which columns are hidden
(`SheetRow.hidden`, `SheetContents.hidden_rows`, `SheetContents.hidden_columns`); a hidden worksheet
is never read by default. Here: how they are named in messages, the refusal of a real run
nobody decided about (`--hidden send|skip`, `[input] hidden`), and the columns a `skip`
run sends.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from .config import Settings
from .errors import InputError
from .models import Column, HiddenContent

if TYPE_CHECKING:
    from .loading import LoadedSheet

__all__ = ["HIDDEN_ROW_SKIPPED", "check_hidden", "describe_hidden", "without_hidden"]

#: The message of a row left out by `--hidden skip` (its outcome is `skipped`).
HIDDEN_ROW_SKIPPED = "hidden or filtered out of view in the sheet: not sent (--hidden skip)"


def describe_hidden(hidden: HiddenContent) -> str:
    """`2 rows hidden or filtered out of view and 1 hidden column ('Notes')`."""
    parts = []
    if hidden.rows:
        rows = "row" if hidden.rows == 1 else "rows"
        parts.append(f"{hidden.rows} {rows} hidden or filtered out of view")
    if hidden.columns:
        named = ", ".join(f"'{c}'" for c in hidden.columns)
        columns = "column" if len(hidden.columns) == 1 else "columns"
        parts.append(f"{len(hidden.columns)} hidden {columns} ({named})")
    return " and ".join(parts)


def check_hidden(sheet: LoadedSheet, settings: Settings) -> None:
    """Refuse (InputError) to send a sheet with hidden rows or columns nobody decided about.

    A person who filtered rows out of view, or hid a column, may not know they are there:
    `--hidden send` or `--hidden skip` (`[input] hidden`) says what to do with them.
    """
    hidden = sheet.hidden
    if not hidden or settings.hidden is not None:
        return
    where = f", worksheet '{sheet.raw.sheet_name}'" if sheet.raw.sheet_name else ""
    raise InputError(
        f"{sheet.path.name}{where} has {describe_hidden(hidden)}; nothing was sent",
        fix="look at them in your spreadsheet program (unhide them, clear the filter), then "
        "run again with --hidden send to send them like the other rows and columns, or "
        "--hidden skip to leave them out (or [input] hidden in the config file)",
    )


def without_hidden(columns: Sequence[Column], hidden: Collection[int]) -> tuple[Column, ...]:
    """`columns`, the hidden ones ignored (as `[input] ignore_columns` would): `skip`.

    A hidden uid column still says which candidate each row is: without it no row could be
    sent, and the uid is the address of the request, not a value written into Comeet.
    """
    return tuple(
        replace(c, field=None) if c.index in hidden and c.field != "uid" else c for c in columns
    )
