"""Wires the stages together: load a sheet, plan its patches, run them, write the report.

Each step is usable alone::

    sheet = load("candidates.csv")                 # reader + column matching
    plan_ = plan(sheet, settings)                  # validation + minimal patches
    summary = run(plan_, settings, credentials)    # rate-limited PATCHes + results sheet
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import shlex
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp

from . import __version__
from .auth import Credentials, TokenMinter
from .backup import Backup, default_undo_path
from .client import ComeetClient, Kind, Response
from .config import Settings
from .errors import ConfigError, InputError, RunInterrupted
from .hidden import HIDDEN_ROW_SKIPPED, check_hidden, without_hidden
from .journal import Journal, NoteEntry
from .limiter import SlidingWindowLimiter, estimate_duration
from .models import (
    REPORT_COLUMNS,
    Column,
    HiddenContent,
    Outcome,
    Patch,
    PlannedRow,
    Problem,
    RawSheet,
    RowResult,
    RunSummary,
    SheetRow,
)
from .network import client_session
from .patch import build_patch, fingerprint, value_at
from .pool import INTERRUPTED, RetryPolicy, Sender, run_pool
from .reader import HiddenTally, SheetStream, counting_hidden, list_worksheets, open_sheet
from .records import keep_report, private_folder
from .report import (
    check_report_path,
    default_report_path,
    fitting_report,
    restore_cell,
    write_report,
)
from .rowstore import CHUNK_ROWS, RowStore, Shared
from .schema import (
    OBJECT_FIELDS,
    InvalidRow,
    RowValidator,
    find_duplicate_uids,
    names_uid,
    resolve_columns,
)
from .undo import finish_backup, start_backup

USER_AGENT = f"bulk-update/{__version__}"
log = logging.getLogger("bulk_update")


NOTE_RETRY_WARNING = (
    "note not sent again: an attempt that carried it got no clear answer (a timeout, a "
    "dropped connection or a server error), so it may have been added; check the candidate "
    "in Comeet and add it by hand if missing"
)
JOURNAL_WARNING = (
    "applied, but the journal could not record it: a re-run would send this row again "
    "(its note too); check the candidate in Comeet before running the sheet again"
)
JOURNAL_ABORT_REASON = (
    "the journal could not record confirmed rows ({error}); sending stopped so that a "
    "re-run does not send them twice: fix the state dir (free space, permissions) and "
    "check the rows the report says were not recorded before running again"
)
PENDING_NOTE_WARNING = (
    "note not sent again: an earlier run was stopped while sending it and Comeet cannot be "
    "asked whether it arrived; check the candidate in Comeet and add it by hand if missing"
)
NOTE_ADDED_WARNING = (
    "note not sent: the same note was added on {date} (run {run}); change its text to add it again"
)


def note_not_sent(entry: NoteEntry) -> str:
    """Why a row's note is left out: added already (when, by which run), or maybe added."""
    if entry.state == "pending":
        return PENDING_NOTE_WARNING
    return NOTE_ADDED_WARNING.format(date=f"{entry.at:%Y-%m-%d}", run=entry.run)


@dataclass(frozen=True, slots=True)
class Sheet:
    """A sheet read from disk with its columns matched to API fields.

    Its rows are kept compactly (a RowStore), so even a million-row sheet costs about its
    file's size in memory.
    """

    raw: RawSheet
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


@dataclass(frozen=True, slots=True)
class Plan:
    """Every row of a sheet with its patch, or the reason it will not be sent."""

    sheet: Sheet
    rows: tuple[PlannedRow, ...]
    full: bool = False
    #: The journal the patches' fingerprints were computed with (they hold only for it).
    journal: Journal | None = field(default=None, compare=False, repr=False)

    @property
    def patches(self) -> tuple[Patch, ...]:
        """The bodies to send (only the first few when planned with `bodies=` a number)."""
        return tuple(r.patch for r in self.rows if r.patch is not None)

    @property
    def sends(self) -> int:
        """How many rows are to be sent."""
        return sum(r.outcome is None for r in self.rows)

    def counts(self, *, dry_run: bool = True) -> Counter[Outcome]:
        """Outcome counts as a dry run would report them."""
        counts: Counter[Outcome] = Counter()
        for r in self.rows:
            if r.outcome is not None:
                counts[r.outcome] += 1
            else:
                counts[Outcome.WOULD_UPDATE if dry_run else Outcome.NOT_SENT] += 1
        return counts


def load(path: str | Path, settings: Settings | None = None, *, sheet: str | None = None) -> Sheet:
    """Read a CSV or XLSX and match its headers to API fields (raises InputError).

    The file is read as a stream into a compact RowStore. A re-uploaded results sheet (its
    first headers are the report's own columns) gets its cells back as first typed: the
    apostrophe a report puts before `=` `+` `-` `@` is taken off (report.restore_cell), so
    the API receives the value the person typed.
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
        if headers[: len(REPORT_COLUMNS)] == REPORT_COLUMNS:
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
        uids: Counter[str] = Counter()
        if uid_index is not None:
            rows = _counting(rows, uid_index, uids)
        tally = HiddenTally(set(stream.hidden_columns))
        if stream.worksheets:  # only a workbook hides rows and columns
            rows = counting_hidden(rows, tally)
        raw = RawSheet(
            path=stream.path,
            headers=headers,
            header_row=stream.header_row,
            rows=RowStore(len(headers), rows),
            sheet_name=stream.sheet_name,
            hidden_rows=tally.rows,
            hidden_columns=tuple(sorted(tally.holding)),
            encoding=stream.encoding,
        )
    duplicates = frozenset(uid for uid, n in uids.items() if uid and n > 1)
    return Sheet(raw=raw, columns=columns, duplicate_uids=duplicates)


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


def _counting(rows: Iterable[SheetRow], index: int, uids: Counter[str]) -> Iterator[SheetRow]:
    """`rows`, counting the uid of each in `uids` on the way (schema.find_duplicate_uids)."""
    for row in rows:
        uids[row.values[index].strip()] += 1
        yield row


def _restored(row: SheetRow) -> SheetRow:
    """A results sheet's row with every cell as first typed (see report.restore_cell)."""
    # Only rows with an apostrophe-led cell are rebuilt: a large sheet has few or none.
    if any(value.startswith("'") for value in row.values):
        return replace(row, values=tuple(map(restore_cell, row.values)))
    return row


def plan(
    sheet: Sheet,
    settings: Settings | None = None,
    *,
    journal: Journal | None = None,
    full: bool = False,
    bodies: int | None = None,
) -> Plan:
    """Validate every row and build its minimal patch.

    With a `journal`, a field whose value equals the one last applied to that uid is left
    out, and a row left with nothing is `unchanged`; `full=True` sends every field again,
    but a note already added (or whose sending an earlier run could not confirm) is never
    sent twice. `bodies=N` keeps the PATCH bodies of the first N rows to send only (a dry
    run shows a few and needs no more; a million bodies would not fit in memory); the
    default keeps them all, as a real run needs.

    With `settings.hidden == "skip"`, rows hidden or filtered out of view are `skipped`
    and hidden columns send nothing (a hidden uid column still says which candidate a
    row is); otherwise they are planned like any other (see `check_hidden`).
    """
    settings = settings or Settings()
    base_dir = sheet.path.resolve().parent
    skip_hidden = settings.hidden == "skip"
    columns = (
        without_hidden(sheet.columns, sheet.raw.hidden_columns) if skip_hidden else sheet.columns
    )
    uid_index = next((c.index for c in columns if c.field == "uid"), None)
    validate = RowValidator(
        columns,
        base_dir=base_dir,
        duplicate_uids=(
            find_duplicate_uids(sheet.rows, sheet.columns)
            if sheet.duplicate_uids is None
            else sheet.duplicate_uids
        ),
        default_updated_by=settings.updated_by,
    )
    planned: list[PlannedRow] = []
    shapes: dict[tuple[str, ...], Outcome | tuple[str, ...]] = {}
    # Invalid rows that say the same (a million web-page numbers as uids) share their
    # problems, as rows of one shape share their fields.
    shared = Shared[tuple[Problem, ...]]()
    kept = 0
    for chunk in _chunks(sheet.rows):
        checked = list(map(validate, chunk))
        valid_uids = [c.uid for c in checked if not isinstance(c, InvalidRow)]
        applied = journal.applied_many(valid_uids) if journal and not full else {}
        notes = journal.note_entries_many(valid_uids) if journal else {}
        for row, check in zip(chunk, checked, strict=True):
            if skip_hidden and row.hidden:
                uid = row.values[uid_index].strip() if uid_index is not None else ""
                planned.append(
                    PlannedRow(
                        row.number, uid, None, Outcome.SKIPPED, warnings=(HIDDEN_ROW_SKIPPED,)
                    )
                )
                continue
            if isinstance(check, InvalidRow):
                problems = shared(check.problems)
                planned.append(PlannedRow(row.number, check.uid, None, Outcome.INVALID, problems))
                continue
            last: dict[str, str] | None = None
            warnings: tuple[str, ...] = ()
            if journal is not None:
                last = journal.rekey(dict(applied.get(check.uid, {})), check.values)
                note = check.values.get("note")
                if note:
                    note_fp, entry = journal.note_entry(notes.get(check.uid, {}), note)
                    if entry is not None:
                        last["note"] = note_fp
                        warnings = (note_not_sent(entry),)
            keep = bodies is None or kept < bodies
            if not keep and journal is None:
                # No body to keep and nothing to compare: what is sent follows from which
                # fields the row fills in, so build_patch runs once per such shape.
                shape = tuple(check.values)
                outcome = shapes.get(shape)
                if outcome is None:
                    built = build_patch(
                        row.number,
                        check.uid,
                        check.values,
                        default_updated_by=settings.updated_by,
                    )
                    outcome = built if isinstance(built, Outcome) else built.fields
                    if OBJECT_FIELDS.isdisjoint(shape) and len(shapes) < _SHAPES_KEPT:
                        shapes[shape] = outcome
                if isinstance(outcome, Outcome):
                    planned.append(PlannedRow(row.number, check.uid, None, outcome))
                else:
                    planned.append(PlannedRow(row.number, check.uid, None, fields=outcome))
                continue
            built = build_patch(
                row.number,
                check.uid,
                check.values,
                default_updated_by=settings.updated_by,
                last_applied=last,
                fingerprint_of=journal.fingerprint if journal else fingerprint,
            )
            if isinstance(built, Outcome):
                planned.append(PlannedRow(row.number, check.uid, None, built, warnings=warnings))
                continue
            kept += keep
            planned.append(
                PlannedRow(
                    row.number,
                    check.uid,
                    built if keep else None,
                    warnings=warnings,
                    fields=built.fields,
                )
            )
    return Plan(sheet=sheet, rows=tuple(planned), full=full, journal=journal)


#: Row shapes remembered by a dry run's plan; a sheet has a handful, a hostile one many.
_SHAPES_KEPT = 10_000


def _chunks(rows: Sequence[SheetRow]) -> Iterator[Sequence[SheetRow]]:
    """The rows a chunk at a time: the journal is asked once per chunk, not once per row."""
    if isinstance(rows, RowStore):
        yield from rows.chunks()
        return
    for start in range(0, len(rows), CHUNK_ROWS):
        yield rows[start : start + CHUNK_ROWS]


def _settled_result(planned: PlannedRow, shared: Shared[str]) -> RowResult:
    assert planned.outcome is not None
    return RowResult(
        row=planned.row,
        uid=planned.uid,
        outcome=planned.outcome,
        message=shared("; ".join([*planned.warnings, *(str(p) for p in planned.problems)])),
    )


def _summary(
    the_plan: Plan,
    results: Sequence[RowResult],
    *,
    started: float,
    report_path: Path | None,
    settings: Settings,
    dry_run: bool,
    aborted: bool = False,
    abort_reason: str = "",
) -> RunSummary:
    counts = Counter(r.outcome for r in results)
    return RunSummary(
        counts={o: counts.get(o, 0) for o in Outcome},
        duration_s=time.monotonic() - started,
        report_path=report_path,
        dry_run=dry_run,
        aborted=aborted,
        abort_reason=abort_reason,
        estimate_s=estimate_duration(the_plan.sends, settings.rate),
        results=tuple(sorted(results, key=lambda r: r.row)),
        hidden=replace(the_plan.sheet.hidden, choice=settings.hidden),
        config_path=settings.config_path,
    )


def _write(
    the_plan: Plan, summary: RunSummary, report_path: Path | None, keep: tuple[Path, int] | None
) -> tuple[Path | None, Path | None]:
    """Write the report, and keep a copy of it in the state dir when `keep` says where
    (the state dir and the run's number: records.py). Returns where the report went (the
    next free name when the path asked was locked: report.put_in_place) and the copy.

    A folder that takes no report at all (gone, or made read-only while the run went on)
    leaves it in the state dir alone, when there is a place for it: results are never
    dropped. Keeping the copy may fail (a full state dir): the report beside the input is
    then the only one, and the log says so.
    """
    if report_path is None:
        return None, None

    def write(path: Path) -> Path:
        return write_report(
            path,
            headers=the_plan.sheet.headers,
            rows=the_plan.sheet.rows,
            results=summary.results,
            summary=summary,
            source=the_plan.sheet.path,
        )

    try:
        written = write(report_path)
    except (OSError, ConfigError) as exc:
        if keep is None:
            raise
        written = write(private_folder(*keep) / report_path.name)
        os.chmod(written, 0o600)
        log.error(
            "the report could not be written to %s (%s): it is in %s",
            report_path,
            getattr(exc, "strerror", None) or exc,
            written,
            extra={"event": "report_elsewhere", "fields": {"asked": str(report_path)}},
        )
        return written, written
    if keep is None:
        return written, None
    try:
        return written, keep_report(written, *keep)
    except OSError as exc:
        log.error(
            "the results sheet could not be kept in the state dir (%s): %s is its only copy",
            exc.strerror or exc,
            written,
            extra={"event": "report_not_kept"},
        )
        return written, None


class _NoteSender:
    """Sends each row's note at most once.

    Before a note goes out, it is marked `pending` in the journal (when there is one),
    durably. After an attempt with a note that may have been applied without saying so
    (`Response.unclear`: a timeout, a dropped connection, a server error), the row's
    retries go without the note (the row is then reported with NOTE_RETRY_WARNING), and a
    row that carried nothing else fails at once: its note may be there already.
    """

    def __init__(
        self,
        client: Sender,
        journal: Journal | None,
        run_id: int | None,
        notes: Mapping[str, str],
        held_back: set[str],
    ) -> None:
        self.client, self.journal, self.run_id, self.notes = client, journal, run_id, notes
        #: uids whose note is not sent again in this run (added to as answers come).
        self.held_back = held_back

    async def patch(self, uid: str, body: Mapping[str, Any]) -> Response:
        if "note" in body:
            if uid in self.held_back:
                body = {key: value for key, value in body.items() if key != "note"}
                if body.keys() <= {"updated_by"}:
                    return Response(Kind.GIVE_UP, None, "note_not_resent", NOTE_RETRY_WARNING)
            elif self.journal is not None and self.run_id is not None:
                self.journal.note_pending(uid, self.notes[uid], self.run_id)
        response = await self.client.patch(uid, body)
        if "note" in body and response.unclear:
            self.held_back.add(uid)
        return response

    def refresh_token(self) -> None:
        self.client.refresh_token()


def _journal_results(
    journal: Journal,
    run_id: int,
    results: Iterable[RowResult],
    patches: Mapping[int, Patch],
    notes: Mapping[str, str],
    *,
    planned_with: Journal | None,
    held_back: Collection[str] = frozenset(),
) -> None:
    """Record what the API confirmed (the fields applied, the notes added or surely not).

    The note of a uid in `held_back` went out with an attempt that got no clear answer and
    was left out of the next ones: it stays `pending` whatever the row's outcome.
    """
    confirmed: list[tuple[str, Mapping[str, str], str | None]] = []
    fingerprint = journal.fingerprint
    for result in results:
        patch = patches[result.row]
        note_fp = None if patch.uid in held_back else notes.get(patch.uid)
        if result.outcome is Outcome.UPDATED:
            fields = patch.fingerprints if planned_with is journal else None
            if fields is None:  # planned without this journal, or a file object's leaves
                body = patch.body
                fields = {
                    path: fingerprint(value_at(body, path))
                    for path in patch.fields
                    if path != "note"
                }
            confirmed.append((patch.uid, fields, note_fp))
        elif note_fp is not None and (
            result.outcome in (Outcome.NOT_FOUND, Outcome.REJECTED) or result.attempts == 0
        ):
            # Refused for sure, or never sent: the note was not added. Anything else (a
            # timeout, a dropped connection) may have added it, so it stays pending and is
            # not re-sent.
            journal.forget_pending(patch.uid, note_fp)
    if confirmed:
        journal.record_applied_many(confirmed, run_id)


def _with_warnings(result: RowResult, warnings: Sequence[str]) -> RowResult:
    if not warnings:
        return result
    return replace(
        result, message="; ".join([*warnings, *([result.message] * bool(result.message))])
    )


async def run_async(
    the_plan: Plan,
    settings: Settings | None = None,
    credentials: Credentials | None = None,
    *,
    dry_run: bool = False,
    report_path: Path | bool = True,
    session: aiohttp.ClientSession | None = None,
    on_result: Callable[[RowResult], None] | None = None,
    stop: asyncio.Event | None = None,
    rng: random.Random | None = None,
    journal: Journal | None = None,
    started: float | None = None,
    backup: bool = False,
    undo_sheet: Path | None = None,
) -> RunSummary:
    """Send the plan's patches at the rate limit and write the results sheet.

    `report_path=True` writes `<input stem>.results.xlsx` beside the input (a dry run:
    `<input stem>.preview.xlsx`); False writes none. A report path that is locked (open in
    Excel) leaves the report at the next free name, `<stem> (2).xlsx`: the summary's
    `report_path` says where it went. With a `journal` (the one the plan was made with),
    every confirmed row is recorded the moment the API confirms it, the run is listed in
    the journal's history, and a real run's report is also kept in the state dir under the
    run's number (records.py; the summary's `kept_report`). The report is
    written even when the run is stopped: rows not sent are `not_sent`. A real run of a sheet
    with hidden rows or columns needs `settings.hidden` (InputError, see `check_hidden`).
    A graceful stop (the
    `stop` event) returns an aborted summary; cancelling the task raises RunInterrupted (with
    the summary) once the report is safe on disk. `started` (a time.monotonic() reading)
    lets the summary's duration include reading and planning. `backup` (a real run) reads
    each candidate before its patch and keeps what the patch replaces (backup.py); the
    run then writes the undo sheet at `undo_sheet`, default `<input stem>.undo.xlsx`
    beside the input (undo.py; the summary's `undo_sheet`).
    """
    settings = settings or Settings()
    if not dry_run:
        check_hidden(the_plan.sheet, settings)
    started = time.monotonic() if started is None else started
    path: Path | None
    path = (
        default_report_path(the_plan.sheet.path, dry_run=dry_run)
        if report_path is True
        else report_path or None
    )
    if path is not None:  # a report that cannot be written must stop the run before it starts
        path = fitting_report(path, len(the_plan.rows))
        check_report_path(path, len(the_plan.rows), source=the_plan.sheet.path)
    warnings = {r.row: r.warnings for r in the_plan.rows if r.warnings}
    to_send = [r for r in the_plan.rows if r.outcome is None]
    patches = the_plan.patches
    if not dry_run and len(patches) != len(to_send):
        raise ValueError("this plan was made without every body (plan(bodies=N)): plan again")
    if not dry_run and credentials is None:
        credentials = Credentials.from_env()
    run_id = (
        journal.start_run(
            sheet=the_plan.sheet.path,
            report=path,
            dry_run=dry_run,
            full=the_plan.full,
            config=settings.config_path,
        )
        if journal
        else None
    )
    done: dict[int, RowResult] = {}
    held_back: set[str] = set()  # uids whose note this run does not send again
    journal_failed: list[str] = []  # why the journal stopped the run, if it did
    halt = stop if stop is not None else asyncio.Event()  # the caller's stop, or our own
    backing_up = contextlib.ExitStack()
    kept_before: list[Backup] = []  # the run's backup, once opened

    def record(result: RowResult) -> None:
        said = warnings.get(result.row, ())
        if result.uid in held_back and result.error != "note_not_resent":
            said = (*said, NOTE_RETRY_WARNING)  # whatever came of the rest of the row
        result = _with_warnings(result, said)
        done[result.row] = result
        if on_result:
            on_result(result)

    def finish(aborted: bool = False, reason: str = "") -> RunSummary:
        results = [
            done.get(r.row) or RowResult(r.row, r.uid, Outcome.NOT_SENT, fields=r.fields)
            for r in to_send
        ]
        summary = _summary(
            the_plan,
            [*settled, *results],
            started=started,
            report_path=path,
            settings=settings,
            dry_run=dry_run,
            aborted=aborted,
            abort_reason=reason,
        )
        if journal is not None and run_id is not None:
            status = (
                "interrupted" if reason == INTERRUPTED else "aborted" if aborted else "finished"
            )
            try:
                journal.finish_run(
                    run_id,
                    counts={o.value: n for o, n in summary.counts.items() if n},
                    status=status,
                    duration_s=summary.duration_s,
                )
            except (OSError, sqlite3.Error) as exc:
                # The report matters more than the run's line in the history.
                log.error("the journal could not close this run: %s", exc)
        keep = None
        if journal is not None and run_id is not None and not dry_run:
            keep = (journal.path.parent, run_id)
        written, kept = _write(the_plan, summary, path, keep)
        if journal is not None and run_id is not None and written is not None and written != path:
            try:
                journal.record_report(run_id, written)
            except (OSError, sqlite3.Error) as exc:
                log.error("the journal could not close this run: %s", exc)
        undo = finish_backup(kept_before[0], run_id) if kept_before else None
        backing_up.close()
        # The time the summary line shows includes writing the report (a third of a
        # million-row dry run); the report itself can only hold the time before it.
        return replace(
            summary,
            undo_sheet=undo,
            duration_s=time.monotonic() - started,
            report_path=written,
            kept_report=kept,
            report_asked=path if written != path else None,
        )

    shared = Shared[str]()  # one message for the rows that say the same
    settled = [_settled_result(r, shared) for r in the_plan.rows if r.outcome is not None]
    for result in settled:
        if on_result:
            on_result(result)
    if dry_run:
        for r in to_send:
            record(RowResult(r.row, r.uid, Outcome.WOULD_UPDATE, fields=r.fields))
        return finish()

    assert credentials is not None
    sender: Sender
    own_session = session is None
    http = session or client_session(settings.proxy, settings.ca_bundle, direct=settings.direct)
    try:
        sender = ComeetClient(
            http,
            settings.base_url,
            TokenMinter(credentials, ttl_s=settings.token_ttl_s),
            timeout_s=settings.timeout_s,
            user_agent=USER_AGENT,
        )
        reader = sender
        if backup:
            state_dir = journal.path.parent if journal is not None else None
            where = undo_sheet or default_undo_path(the_plan.sheet.path)
            kept_before.append(start_backup(state_dir, run_id, where, http, backing_up))
        on_pool_result: Callable[[RowResult], None] | None = record
        on_pool_results: Callable[[Sequence[RowResult]], None] | None = None
        notes: dict[str, str] = {}
        if journal is not None:
            notes = {
                p.uid: journal.fingerprint(p.body["note"]) for p in patches if "note" in p.body
            }
        if any("note" in p.body for p in patches):
            sender = _NoteSender(sender, journal, run_id, notes, held_back)
        if journal is not None and run_id is not None:
            by_row = {p.row: p for p in patches}

            def journal_then_record(results: Sequence[RowResult]) -> None:
                # The rows that finished in one turn of the event loop are journaled with one
                # write, and reported only once it is done: a row the report calls updated
                # is in the journal.
                assert journal is not None and run_id is not None
                try:
                    _journal_results(
                        journal,
                        run_id,
                        results,
                        by_row,
                        notes,
                        planned_with=the_plan.journal,
                        held_back=held_back,
                    )
                except (OSError, sqlite3.Error) as exc:
                    # A full disk, say: rows applied now could not be remembered, so a
                    # re-run would send them again. Stop sending; say which rows.
                    if not journal_failed:
                        journal_failed.append(JOURNAL_ABORT_REASON.format(error=exc))
                        log.error("%s", journal_failed[0], extra={"event": "journal_failed"})
                        halt.set()
                    for result in results:
                        unrecorded = result.outcome is Outcome.UPDATED
                        record(_with_warnings(result, (JOURNAL_WARNING,) * unrecorded))
                    return
                for result in results:
                    record(result)

            on_pool_result, on_pool_results = None, journal_then_record

        pool = await run_pool(
            patches,
            sender=sender,
            limiter=SlidingWindowLimiter(settings.rate),
            concurrency=settings.concurrency,
            retry=RetryPolicy(settings.max_attempts, settings.retry_base_s, settings.retry_max_s),
            rng=rng,
            on_result=on_pool_result,
            stop=halt,
            on_results=on_pool_results,
            stop_after_rejected=settings.stop_after_rejected,
            backup=kept_before[0] if kept_before else None,
            reader=reader,
        )
    except asyncio.CancelledError:
        # Stopped at once (a second Ctrl-C): the report is still written.
        stopped = RunInterrupted("the run was stopped at once; rows not sent are 'not_sent'")
        stopped.summary = finish(aborted=True, reason=INTERRUPTED)
        raise stopped from None
    finally:
        if own_session:
            await http.close()
    if journal_failed:
        return finish(aborted=True, reason=journal_failed[0])
    return finish(aborted=pool.aborted, reason=pool.abort_reason)


def run(
    the_plan: Plan,
    settings: Settings | None = None,
    credentials: Credentials | None = None,
    *,
    dry_run: bool = False,
    report_path: Path | bool = True,
    on_result: Callable[[RowResult], None] | None = None,
    journal: Journal | None = None,
) -> RunSummary:
    """Synchronous `run_async` for scripts (starts and closes its own event loop)."""
    return asyncio.run(
        run_async(
            the_plan,
            settings,
            credentials,
            dry_run=dry_run,
            report_path=report_path,
            on_result=on_result,
            journal=journal,
        )
    )
