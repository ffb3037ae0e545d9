"""Plain typed records that pass between the pipeline's stages.

Every stage takes and returns these (never loose dicts, never exceptions for row-level
problems). They are frozen: a stage makes new records rather than changing old ones.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from .errors import ConfigError


class Outcome(StrEnum):
    """What happened to one row; the `outcome` column of the results sheet."""

    UPDATED = "updated"
    UNCHANGED = "unchanged"
    SKIPPED = "skipped"
    WOULD_UPDATE = "would_update"
    INVALID = "invalid"
    NOT_FOUND = "not_found"
    REJECTED = "rejected"
    FAILED = "failed"
    NOT_SENT = "not_sent"

    @property
    def is_problem(self) -> bool:
        """True for outcomes that make a finished run exit with status 1."""
        return self in _PROBLEMS


#: The results sheet's own columns, in order; followed by every input column. On input, a
#: sheet whose first headers are exactly these is a re-uploaded report and they are ignored.
REPORT_COLUMNS: tuple[str, ...] = (
    "row",
    "uid",
    "outcome",
    "http_status",
    "error",
    "message",
    "attempts",
    "fields",
)
#: The undo sheet's column saying what cannot be put back (undo.py): ignored on input.
NOT_RESTORABLE = "Not restorable"


#: How many columns the report's own are (REPORT_COLUMNS).
REPORT_WIDTH = len(REPORT_COLUMNS)


def is_results_sheet(headers: Sequence[str]) -> bool:
    """True when `headers` start with the report's own columns (REPORT_COLUMNS): a results
    sheet uploaded again. Its leading columns are then ignored on input, replaced in the
    new report, and its cells read back as first typed (report.restore_cell)."""
    return tuple(headers[:REPORT_WIDTH]) == REPORT_COLUMNS


def undo_headers(fields: Sequence[str]) -> list[str]:
    """An undo sheet's header row (undo.py) for the fields it puts back, in order: `uid`,
    the fields, then NOT_RESTORABLE; `is_undo_sheet` knows a sheet by it."""
    return ["uid", *fields, NOT_RESTORABLE]


def is_undo_sheet(headers: Sequence[str]) -> bool:
    """True when `headers` are laid out as `undo_headers` writes them: `uid` first and
    NOT_RESTORABLE last, both exactly. Its cells read back as first typed."""
    return len(headers) >= 2 and headers[0] == "uid" and headers[-1] == NOT_RESTORABLE


def reads_back_as_typed(headers: Sequence[str]) -> bool:
    """True for a sheet the tool wrote with its cells defused against formulas (a results
    sheet or an undo sheet, by its `headers`): on input each cell, header included, is read
    back as first typed (report.restore_cell), so the API receives the value itself."""
    return is_results_sheet(headers) or is_undo_sheet(headers)


#: The column a --compare report adds after `fields` (contract section 11).
BEFORE_COLUMN = "before"


def own_columns(headers: Sequence[str]) -> int:
    """How many leading `headers` are a results sheet's own columns (0: not a report):
    REPORT_COLUMNS, and `before` after them when a --compare run wrote it. Pure."""
    if not is_results_sheet(headers):
        return 0
    with_before = len(headers) > REPORT_WIDTH and headers[REPORT_WIDTH] == BEFORE_COLUMN
    return REPORT_WIDTH + with_before


_PROBLEMS = frozenset({Outcome.INVALID, Outcome.NOT_FOUND, Outcome.REJECTED, Outcome.FAILED})

_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)\s*$")


@dataclass(frozen=True, slots=True)
class Rate:
    """At most `limit` requests in any sliding window of `period` seconds."""

    limit: int
    period: float

    @classmethod
    def parse(cls, text: str) -> Rate:
        """Parse `N/SECONDS`, e.g. `100/60` or `20/1`."""
        match = _RATE.match(text)
        if not match or int(match.group(1)) < 1 or float(match.group(2)) <= 0:
            raise ConfigError(
                f"rate '{text}' is not of the form N/SECONDS",
                fix="write it like 100/60 (100 requests per 60 seconds)",
            )
        return cls(int(match.group(1)), float(match.group(2)))

    def __str__(self) -> str:
        period = int(self.period) if self.period == int(self.period) else self.period
        return f"{self.limit}/{period}"


@dataclass(frozen=True, slots=True)
class SheetRow:
    """One data row of the input, as text, numbered as a spreadsheet program shows it.

    `values` is aligned with the sheet's `headers`: stripped text, "" for an empty cell.
    `numeric` holds the indexes of cells an XLSX file stored as numbers (not text).
    `hidden` is True for an XLSX row hidden or filtered out of view.
    """

    number: int
    values: tuple[str, ...]
    numeric: frozenset[int] = frozenset()
    hidden: bool = False

    @property
    def is_blank(self) -> bool:
        return not any(self.values)


@dataclass(frozen=True, slots=True)
class SheetContents:
    """A sheet's contents as the reader gives them: the header row and the data rows below
    it, all as text, and what a workbook holds out of view."""

    path: Path
    headers: tuple[str, ...]
    header_row: int
    rows: Sequence[SheetRow]
    sheet_name: str | None = None
    #: How many rows are hidden or filtered out of view (XLSX).
    hidden_rows: int = 0
    #: The indexes (into `headers`) of hidden columns that hold data in some row (XLSX).
    hidden_columns: tuple[int, ...] = ()
    #: A CSV's text encoding and how it was chosen (`cp1255 (detected)`); None for XLSX.
    encoding: str | None = None


#: What a run does with hidden rows and columns (`--hidden`, `[input] hidden`).
HIDDEN_CHOICES: tuple[str, ...] = ("send", "skip")


@dataclass(frozen=True, slots=True)
class HiddenContent:
    """What an XLSX sheet holds out of view, and what the run does with it.

    `rows`: rows hidden or filtered out of view; `columns`: the headers of hidden columns
    that hold data; `choice`: "send", "skip", or None when nobody said (a real run stops).
    """

    rows: int = 0
    columns: tuple[str, ...] = ()
    choice: str | None = None

    def __bool__(self) -> bool:
        return bool(self.rows or self.columns)


@dataclass(frozen=True, slots=True)
class Column:
    """One input column and the API field it feeds.

    `field` is a dotted API path (`email`, `address.country`, `custom_fields.Team`), or
    None when the column is ignored (listed in `[input] ignore_columns`, or one of the
    results sheet's own columns on a re-uploaded report).
    """

    index: int
    header: str
    field: str | None


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a row, naming the column as the sheet spells it."""

    column: str | None
    message: str

    def __str__(self) -> str:
        return f"{self.column}: {self.message}" if self.column else self.message


@dataclass(frozen=True, slots=True)
class Patch:
    """The smallest PATCH body for one row.

    `fields` lists the dotted leaf paths of the data sent (without `updated_by.*`), in
    column order: the `fields` column of the results sheet. `fingerprints`, when the plan
    compared the row with the journal, maps each of `fields` but `note` to the journal's
    fingerprint of its value: computed for that comparison, kept so that recording the
    confirmed row does not compute them again.
    """

    row: int
    uid: str
    body: Mapping[str, Any]
    fields: tuple[str, ...]
    fingerprints: Mapping[str, str] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class PlannedRow:
    """A row after validation and patch building, by its sheet row number.

    Either the row is to be sent (`outcome` is None, `fields` names what it sends, and
    `patch` holds the body unless the plan was made without bodies) or `outcome` says why
    nothing will be sent (INVALID with `problems`, SKIPPED, UNCHANGED). `warnings` are
    things the results sheet should say about a row that is otherwise fine.
    """

    row: int
    uid: str
    patch: Patch | None
    outcome: Outcome | None = None
    problems: tuple[Problem, ...] = ()
    warnings: tuple[str, ...] = ()
    fields: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RowResult:
    """The final word on one row: a line of the results sheet."""

    row: int
    uid: str
    outcome: Outcome
    http_status: int | None = None
    error: str = ""
    message: str = ""
    attempts: int = 0
    fields: tuple[str, ...] = ()
    #: With --compare: each field sent with the value Comeet held (compare.before_text).
    before: str = ""
    #: `message` as it was before `with_words` put the tool's words in front of it (for a
    #: row the API answered: the API's own message); None: nothing was put in front.
    answer: str | None = None

    @property
    def api_message(self) -> str:
        """The message without the words the tool put before it: what the API itself said
        of a row it answered. What judges the answer (the brake) reads this, not `message`."""
        return self.message if self.answer is None else self.answer

    def with_words(self, *words: str) -> RowResult:
        """This result with the tool's `words` (a warning, the uid a number resolved to)
        before its message, "; " between; the message itself is kept (`api_message`)."""
        if not any(words):
            return self
        return replace(self, message=joined(*words, self.message), answer=self.api_message)


def joined(*parts: str) -> str:
    """A row's message of several parts: those not empty, in order, "; " between. Pure."""
    return "; ".join(part for part in parts if part)


@dataclass(frozen=True, slots=True)
class RunSummary:
    """Counts and facts of a whole run."""

    counts: Mapping[Outcome, int]
    duration_s: float
    report_path: Path | None
    dry_run: bool = False
    aborted: bool = False
    abort_reason: str = ""
    estimate_s: float | None = None
    results: tuple[RowResult, ...] = field(default=(), repr=False)
    hidden: HiddenContent = HiddenContent()
    #: The config file the run read (`Settings.config_path`); None: the defaults.
    config_path: Path | None = None
    #: The copy of a real run's results sheet kept in the state dir (records.py).
    kept_report: Path | None = None
    #: The report path asked for, when the report had to go elsewhere (report.put_in_place).
    report_asked: Path | None = None
    #: Where a --backup run wrote its undo sheet (undo.py); None: no backup, or not written.
    undo_sheet: Path | None = None
    #: Whether rows were compared with what Comeet holds (--compare): the report's `before`.
    compared: bool = False

    @property
    def exit_code(self) -> int:
        """0 all fine, 1 some row has a problem, 3 aborted part way (contract section 9)."""
        if self.aborted:
            return 3
        if any(self.counts.get(o, 0) for o in _PROBLEMS):
            return 1
        return 0

    @property
    def total(self) -> int:
        return sum(self.counts.values())
