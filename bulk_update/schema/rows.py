"""Row validation: one row of text -> values ready for the API, or every problem of the row."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..models import Column, Problem, SheetRow
from .cells import (
    _CALLED,
    _CELL_RULES,
    _ERROR,
    _ERROR_STARTS,
    _INVISIBLE,
    _NO_INVISIBLE,
    _SCIENTIFIC,
    _UID,
    _convert,
    _error_problem,
    _hidden_loss,
    _invisible_problem,
    _show,
)
from .fields import DIGIT_FIELDS

# --- rows ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ValidRow:
    """A row ready for patch building: dotted path -> API value, in column order.

    `values` holds the row's own non-empty cells only (never `uid`, never the configured
    updated_by defaults: patch building merges those).
    """

    uid: str
    values: Mapping[str, Any]


@dataclass(frozen=True)
class InvalidRow:
    """A row that must not be sent, with every problem found; `uid` as typed ('' if none)."""

    uid: str
    problems: tuple[Problem, ...]


def _cell(row: SheetRow, index: int) -> str:
    return row.values[index].strip() if index < len(row.values) else ""


def _uid_column(columns: Sequence[Column]) -> Column | None:
    return next((c for c in columns if c.field == "uid"), None)


class UidTally:
    """How many rows of a sheet type each uid: the one count of duplicate uids.

    A uid typed on more than one row makes every such row invalid (none is sent): the rows
    cannot both be right. Uids are counted stripped; an empty cell is no uid. Rows are
    counted as they stream by (`counting`), or counts are added whole (`add`, for an engine
    that counts a column at a time).
    """

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def counting(self, rows: Iterable[SheetRow], index: int) -> Iterator[SheetRow]:
        """`rows`, each one's uid (the cell at `index`) counted as it goes by."""
        counts = self.counts
        for row in rows:
            counts[_cell(row, index)] += 1
            yield row

    def add(self, counts: Iterable[tuple[str, int]]) -> None:
        """Count `(stripped uid, rows typing it)` pairs."""
        for uid, n in counts:
            self.counts[uid] += n

    @property
    def duplicates(self) -> frozenset[str]:
        """The uids typed on more than one row."""
        return frozenset(uid for uid, n in self.counts.items() if uid and n > 1)


def find_duplicate_uids(rows: Iterable[SheetRow], columns: Sequence[Column]) -> frozenset[str]:
    """The uids typed on more than one row: every such row is invalid, none is sent."""
    column = _uid_column(columns)
    if column is None:
        return frozenset()
    tally = UidTally()
    for _ in tally.counting(rows, column.index):
        pass
    return tally.duplicates


def duplicate_uids_of_column(uids: Any) -> frozenset[str]:
    """`find_duplicate_uids` a column at a time: the same rule on a whole uid column (a
    pyarrow string array, chunked or not, its cells stripped), for the columnar dry run."""
    import pyarrow.compute as pc

    if not len(uids):
        return frozenset()
    counts = pc.value_counts(uids)
    # Only the uids seen more than once leave pyarrow (a million distinct ones would cost
    # a second); the tally, the one rule, says which of them are duplicates.
    many = pc.filter(counts, pc.greater(counts.field("counts"), 1))
    tally = UidTally()
    tally.add(zip(many.field("values").to_pylist(), many.field("counts").to_pylist(), strict=True))
    return tally.duplicates


def _uid_problems(
    uid: str, numeric: bool, duplicates: Collection[str], resolve_ids: bool = False
) -> list[str]:
    if not uid:
        return ["the uid is missing; fill in the candidate's Comeet uid (e.g. AE.17934)"]
    problems = []
    if uid[0] in _ERROR_STARTS and _ERROR.fullmatch(uid):
        problems.append(_error_problem(uid))
    elif uid.isdigit() and resolve_ids:
        # The web page's number, to be looked up (--resolve-ids): a whole number stored as
        # a number lost nothing.
        numeric = False
    elif uid.isdigit():
        # The row's uid is beside every message (the report's uid column, the problem
        # lines): said once for all such rows, the message costs a large sheet nothing.
        problems.append(
            "the number in the Comeet web page URL is not the API uid; "
            "use the dotted uid, e.g. AE.17934"
        )
    elif _SCIENTIFIC.fullmatch(uid):
        problems.append(
            f"'{_show(uid)}': Excel turned this number into scientific notation; the API uid "
            "is letters and digits joined by dots, e.g. AE.17934: format the column as text "
            "and type the uid again"
        )
    elif _INVISIBLE.search(uid):
        problems.append(_invisible_problem(uid))
    elif not _UID.fullmatch(uid):
        problems.append(
            f"'{_show(uid)}' is not a Comeet uid; a uid is letters and digits joined by "
            "dots, e.g. AE.17934"
        )
    if numeric:
        problems.append(
            "a spreadsheet program stored this uid as a number (01.10 may have become 1.1); "
            "format the column as text and type the uid again"
        )
    if uid in duplicates:
        problems.append(
            "this uid appears on more than one row of the sheet; keep one row per candidate"
        )
    return problems


def _required(
    group: str,
    keys: Iterable[str],
    present: Collection[str],
    headers: Mapping[str, str],
    fix: str,
) -> list[Problem]:
    """A problem for each key of `group` the API requires but the row does not send."""
    problems = []
    for key in keys:
        path = f"{group}.{key}"
        if key in present:
            continue
        where = "fill it in on this row" if path in headers else "add the column"
        problems.append(
            Problem(
                headers.get(path, path),
                f"required when {group} is sent; {where}{fix.format(key=key)}",
            )
        )
    return problems


#: Conversions remembered per field; past this the memory is cleared (unique values, such
#: as emails, gain nothing from it, and a million of them must not pile up).
_MEMO_SIZE = 4096


class RowValidator:
    """`validate_row` for one sheet: the column layout is worked out once, not per row.

    Calling it on a row gives exactly what `validate_row` gives. Conversions of cells that
    read no file are remembered (a few thousand per field), so the repeated values of a
    large sheet are checked once.
    """

    def __init__(
        self,
        columns: Sequence[Column],
        *,
        base_dir: Path,
        duplicate_uids: Collection[str] = frozenset(),
        default_updated_by: Mapping[str, str] = MappingProxyType({}),
        resolve_ids: bool = False,
    ) -> None:
        self.base_dir = base_dir
        #: --resolve-ids: a uid of digits alone is the web page's number, looked up later.
        self.resolve_ids = resolve_ids
        self.duplicate_uids = duplicate_uids
        self.headers = {c.field: c.header for c in columns if c.field}
        self.uid_column = _uid_column(columns)
        # Per data column: a memo of its conversions when it has a rule and reads no file
        # (the value is then a plain string, safe to share between rows); else None.
        self.data: list[tuple[int, str, str, dict[str, tuple[Any, list[str]]] | None]] = [
            (c.index, c.field, c.header, {} if c.field in _CELL_RULES else None)
            for c in columns
            if c.field is not None and c.field != "uid"
        ]
        # Columns whose cells are checked for what a spreadsheet hides or has lost.
        self.guarded = frozenset(
            c.index for c in columns if c.field in DIGIT_FIELDS or c.field in _NO_INVISIBLE
        )
        self.has_updated_by = any(f.startswith("updated_by.") for f in self.headers)
        self.has_contact = any(f.startswith("source_contact.") for f in self.headers)
        self.default_updated_by = {k for k, v in default_updated_by.items() if v}

    def __call__(self, row: SheetRow) -> ValidRow | InvalidRow:
        problems: list[Problem] = []
        values: dict[str, Any] = {}
        cells = row.values
        width = len(cells)
        uid_column = self.uid_column
        if uid_column is None:
            uid = ""
            problems.append(Problem(None, "the sheet has no uid column; add one"))
        else:
            uid = cells[uid_column.index].strip() if uid_column.index < width else ""
            # The common case, a well-formed uid typed once, needs none of the checks below.
            if not (
                _UID.fullmatch(uid)
                and uid_column.index not in row.numeric
                and uid not in self.duplicate_uids
            ):
                numeric = uid_column.index in row.numeric
                for message in _uid_problems(uid, numeric, self.duplicate_uids, self.resolve_ids):
                    problems.append(Problem(uid_column.header, message))

        sent: list[str] = []  # fields with a non-empty cell, valid or not
        for index, field, header, memo in self.data:
            text = cells[index] if index < width else ""
            if not text:
                continue
            text = text.strip()
            if not text:
                continue
            sent.append(field)
            if text[0] in _ERROR_STARTS and _ERROR.fullmatch(text):
                problems.append(Problem(header, _error_problem(text)))
                continue
            if index in self.guarded:
                lost = _hidden_loss(field, text, index in row.numeric)
                if lost:
                    problems.extend(Problem(header, m) for m in lost)
                    continue
            if memo is None:
                if field not in _CALLED:
                    values[field] = text  # free text: nothing to check
                    continue
                value, messages = _convert(field, text, self.base_dir)
            else:
                known = memo.get(text)
                if known is None:
                    if len(memo) >= _MEMO_SIZE:
                        memo.clear()
                    known = memo[text] = _convert(field, text, self.base_dir)
                value, messages = known
            if messages:
                problems.extend(Problem(header, m) for m in messages)
            else:
                values[field] = value

        if self.has_updated_by or self.default_updated_by:
            row_updated_by = {f.partition(".")[2] for f in sent if f.startswith("updated_by.")}
            merged = row_updated_by | self.default_updated_by
            if merged:
                problems += _required(
                    "updated_by",
                    ("type", "name"),
                    merged,
                    self.headers,
                    " or set [defaults.updated_by] {key}",
                )
        if self.has_contact:
            contact = {f.partition(".")[2] for f in sent if f.startswith("source_contact.")}
            if contact:
                problems += _required(
                    "source_contact", ("full_name", "email"), contact, self.headers, ""
                )

        if problems:
            return InvalidRow(uid=uid, problems=tuple(problems))
        return ValidRow(uid=uid, values=MappingProxyType(values))


def validate_row(
    row: SheetRow,
    columns: Sequence[Column],
    *,
    base_dir: Path,
    duplicate_uids: Collection[str] = frozenset(),
    default_updated_by: Mapping[str, str] = MappingProxyType({}),
) -> ValidRow | InvalidRow:
    """Check one row against the API's rules; every problem of the row is reported.

    File cells are read (relative to `base_dir`, the sheet's folder, and never outside it)
    and sent inline as base64. `default_updated_by` is the config's [defaults.updated_by]:
    it is not put into the values, but the merged updated_by must carry a type and a name.
    For many rows of one sheet, make a `RowValidator` once and call it on each row.
    """
    return RowValidator(
        columns,
        base_dir=base_dir,
        duplicate_uids=duplicate_uids,
        default_updated_by=default_updated_by,
    )(row)
