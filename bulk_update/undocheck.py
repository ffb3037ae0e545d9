"""An undo sheet held to the rules of the run that will take it (contract section 11).

An undo sheet writes back what Comeet held, and Comeet holds values this tool refuses on
input: typed in its web page or sent by another integration (a LinkedIn address without
`https://`, an email the API took but the tool's check does not, a prospect status of the
account's own, a source contact with a name and no email). Running the sheet validates it
as any input sheet, and one refused cell makes its whole row `invalid`: nothing on that row
would be put back, its first name neither. So the sheet is checked as its run will read it,
before it is written: `refused` gives, per row, each cell the run's own validator
(`RowValidator`, on the sheet's own columns, every cell stripped as the reader strips it)
would refuse, with why, so that undo.py leaves that cell empty and lists it in `Not
restorable`, and the rest of the row is put back. A value the run normalises (a prospect
status in lower case) is no refusal: it is sent as that run sends it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from .models import Problem, SheetRow
from .reader.cells import strip_cell
from .reportcells import restore_cell, xlsx_text
from .schema import InvalidRow, RowValidator, resolve_columns, shown_text

__all__ = ["not_in_xlsx", "refused", "xlsx_loses"]


def not_in_xlsx(label: str) -> str:
    """Why a value an XLSX undo sheet cannot hold as it is is not put back; `label` is the
    backup's (`run <n>`, or "" for a run without a journal, which only a re-run can mend)."""
    run = label.removeprefix("run ").strip()
    command = (
        f"bulk-update undo-sheet --run {run} --undo-sheet FILE.csv"
        if run
        else "run the sheet again with --backup --undo-sheet FILE.csv"
    )
    return (
        "Comeet held a value an .xlsx cell cannot hold as it is (a control character, or more "
        f"than an Excel cell holds); to put it back, write the undo sheet as a .csv: {command}"
    )


def refused(table: Sequence[Sequence[str]], base_dir: Path) -> list[dict[str, str]]:
    """For each data line of the input sheet `table` (its header first; file cells are
    relative to `base_dir`, the sheet's folder): each field whose cell the sheet's run would
    refuse, with why in a recruiter's words, such that the line without those cells is
    valid (or invalid for its uid alone, which no cell can mend).

    A cell refused for its own value is said with the rule's message; a cell the run sends
    only together with another (a source contact's name and email) that the line cannot
    give is refused too, saying which. Reads the files file cells name; nothing else.
    """
    header = list(table[0])
    columns = resolve_columns(header)
    field_of = {c.header: c.field for c in columns if c.field}
    index_of = {c.field: c.index for c in columns if c.field}
    validate = RowValidator(columns, base_dir=base_dir)
    found: list[dict[str, str]] = []
    for number, line in enumerate(table[1:], start=2):
        cells = [strip_cell(cell) for cell in line]
        why: dict[str, str] = {}
        # Each pass empties at least one cell, so this ends; a cell emptied may leave a
        # field the row sends alone (an email without its name): the next pass says so.
        while isinstance(check := validate(SheetRow(number, tuple(cells))), InvalidRow):
            more = _refusals(check.problems, cells, field_of, index_of)
            if not more:
                break
            for field, reason in more.items():
                cells[index_of[field]] = ""
                why[field] = reason
        found.append(why)
    return found


def _refusals(
    problems: Sequence[Problem],
    cells: Sequence[str],
    field_of: dict[str, str],
    index_of: dict[str, int],
) -> dict[str, str]:
    """Field -> why, for the filled cells the row's `problems` refuse."""
    more: dict[str, str] = {}
    for problem in problems:
        column = problem.column or ""
        # A problem names the column as the sheet spells it, or the field path when the
        # sheet has no such column (a field required with others).
        field = field_of.get(column, column)
        if field == "uid":
            continue  # the uid Comeet answered to: no cell of the row's values mends it
        if field in index_of and cells[index_of[field]]:
            held = cells[index_of[field]]
            more.setdefault(
                field,
                f"Comeet held '{shown_text(held)}', which bulk-update does not send: "
                f"{problem.message}",
            )
            continue
        # An empty cell the row needs because of others (updated_by, source_contact):
        # those others cannot be sent without it.
        group = field.partition(".")[0] + "."
        for other, index in index_of.items():
            if other.startswith(group) and cells[index] and other not in more:
                more[other] = (
                    f"Comeet held '{shown_text(cells[index])}', which bulk-update does not "
                    f"send without {column} ({problem.message})"
                )
    return more


def xlsx_loses(before: Mapping[str, Any]) -> Iterator[str]:
    """The fields of `before` whose text an XLSX cell cannot hold as it is: read back as
    the undo sheet's run reads it, the text `reportcells.xlsx_text` wrote differs (a CR
    stored as LF, a control character XML cannot hold dropped, more than an Excel cell
    holds cut). Its apostrophe before `'=x` is no loss: the loader takes it off again."""
    for path, value in before.items():
        # The writer's own rule, undone as the loader undoes it: never a second copy of it.
        if isinstance(value, str) and restore_cell(xlsx_text(value)) != value:
            yield path
