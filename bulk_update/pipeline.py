"""Wires the stages together: load a sheet, plan its patches, run them, write the report.

Each step is usable alone::

    sheet = load("candidates.csv")                 # reader + column matching
    plan_ = plan(sheet, settings)                  # validation + minimal patches
    summary = run(plan_, settings, credentials)    # rate-limited PATCHes + results sheet
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp

from . import __version__
from .auth import Credentials, TokenMinter
from .client import ComeetClient, Response
from .config import Settings
from .errors import RunInterrupted
from .journal import Journal
from .limiter import SlidingWindowLimiter, estimate_duration
from .models import (
    REPORT_COLUMNS,
    Column,
    Outcome,
    Patch,
    PlannedRow,
    RawSheet,
    RowResult,
    RunSummary,
    SheetRow,
)
from .patch import build_patch, fingerprint, value_at
from .pool import INTERRUPTED, RetryPolicy, Sender, run_pool
from .reader import read_sheet
from .report import check_report_path, default_report_path, restore_cell, write_report
from .schema import InvalidRow, find_duplicate_uids, resolve_columns, validate_row

USER_AGENT = f"bulk-update/{__version__}"


PENDING_NOTE_WARNING = (
    "note not sent again: an earlier run was stopped while sending it and Comeet cannot be "
    "asked whether it arrived; check the candidate in Comeet and add it by hand if missing"
)


@dataclass(frozen=True, slots=True)
class Sheet:
    """A sheet read from disk with its columns matched to API fields."""

    raw: RawSheet
    columns: tuple[Column, ...]

    @property
    def path(self) -> Path:
        return self.raw.path

    @property
    def headers(self) -> tuple[str, ...]:
        return self.raw.headers

    @property
    def rows(self) -> tuple[SheetRow, ...]:
        return self.raw.rows


@dataclass(frozen=True, slots=True)
class Plan:
    """Every row of a sheet with its patch, or the reason it will not be sent."""

    sheet: Sheet
    rows: tuple[PlannedRow, ...]
    full: bool = False

    @property
    def patches(self) -> tuple[Patch, ...]:
        return tuple(r.patch for r in self.rows if r.patch is not None)

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

    A re-uploaded results sheet (its first headers are the report's own columns) gets its
    cells back as first typed: the apostrophe a report puts before `=` `+` `-` `@` is
    taken off (report.restore_cell), so the API receives the value the person typed.
    """
    settings = settings or Settings()
    raw = read_sheet(Path(path), sheet=sheet or settings.sheet)
    if raw.headers[: len(REPORT_COLUMNS)] == REPORT_COLUMNS:
        raw = _restore_report(raw)
    columns = resolve_columns(raw.headers, mapping=settings.columns, ignore=settings.ignore_columns)
    return Sheet(raw=raw, columns=columns)


def _restore_report(raw: RawSheet) -> RawSheet:
    """`raw` with every cell of a results sheet as first typed (see report.restore_cell)."""
    rows = tuple(
        # Only rows with an apostrophe-led cell are rebuilt: a large sheet has few or none.
        replace(row, values=tuple(map(restore_cell, row.values)))
        if any(value.startswith("'") for value in row.values)
        else row
        for row in raw.rows
    )
    return replace(raw, headers=tuple(map(restore_cell, raw.headers)), rows=rows)


def plan(
    sheet: Sheet,
    settings: Settings | None = None,
    *,
    journal: Journal | None = None,
    full: bool = False,
) -> Plan:
    """Validate every row and build its minimal patch.

    With a `journal`, a field whose value equals the one last applied to that uid is left
    out, and a row left with nothing is `unchanged`; `full=True` sends every field again,
    but a note already added (or whose sending an earlier run could not confirm) is never
    sent twice.
    """
    settings = settings or Settings()
    base_dir = sheet.path.resolve().parent
    duplicates = find_duplicate_uids(sheet.rows, sheet.columns)
    checked = [
        validate_row(
            row,
            sheet.columns,
            base_dir=base_dir,
            duplicate_uids=duplicates,
            default_updated_by=settings.updated_by,
        )
        for row in sheet.rows
    ]
    valid_uids = [c.uid for c in checked if not isinstance(c, InvalidRow)]
    applied = journal.applied_many(valid_uids) if journal and not full else {}
    notes = journal.notes_many(valid_uids) if journal else {}
    planned: list[PlannedRow] = []
    for row, check in zip(sheet.rows, checked, strict=True):
        if isinstance(check, InvalidRow):
            planned.append(PlannedRow(row, check.uid, None, Outcome.INVALID, check.problems))
            continue
        last: dict[str, str] | None = None
        warnings: tuple[str, ...] = ()
        if journal is not None:
            last = dict(applied.get(check.uid, {}))
            note = check.values.get("note")
            if note:
                note_fp = journal.fingerprint(note)
                state = notes.get(check.uid, {}).get(note_fp)
                if state:
                    last["note"] = note_fp
                if state == "pending":
                    warnings = (PENDING_NOTE_WARNING,)
        built = build_patch(
            row.number,
            check.uid,
            check.values,
            default_updated_by=settings.updated_by,
            last_applied=last,
            fingerprint_of=journal.fingerprint if journal else fingerprint,
        )
        if isinstance(built, Outcome):
            planned.append(PlannedRow(row, check.uid, None, built, warnings=warnings))
        else:
            planned.append(PlannedRow(row, check.uid, built, warnings=warnings))
    return Plan(sheet=sheet, rows=tuple(planned), full=full)


def _settled_result(planned: PlannedRow) -> RowResult:
    assert planned.outcome is not None
    return RowResult(
        row=planned.row.number,
        uid=planned.uid,
        outcome=planned.outcome,
        message="; ".join([*planned.warnings, *(str(p) for p in planned.problems)]),
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
        estimate_s=estimate_duration(len(the_plan.patches), settings.rate),
        results=tuple(sorted(results, key=lambda r: r.row)),
    )


def _write(the_plan: Plan, summary: RunSummary, report_path: Path | None) -> None:
    if report_path is None:
        return
    write_report(
        report_path,
        headers=the_plan.sheet.headers,
        rows=the_plan.sheet.rows,
        results=summary.results,
        summary=summary,
        source=the_plan.sheet.path,
    )


class _JournaledSender:
    """Marks a row's note `pending` in the journal, durably, right before it is sent."""

    def __init__(self, client: Sender, journal: Journal, run_id: int, notes: Mapping[str, str]):
        self.client, self.journal, self.run_id, self.notes = client, journal, run_id, notes

    async def patch(self, uid: str, body: Mapping[str, Any]) -> Response:
        note_fp = self.notes.get(uid)
        if note_fp is not None:
            self.journal.note_pending(uid, note_fp, self.run_id)
        return await self.client.patch(uid, body)

    def refresh_token(self) -> None:
        self.client.refresh_token()


def _journal_result(
    journal: Journal, run_id: int, patch: Patch, result: RowResult, note_fp: str | None
) -> None:
    """Record what the API confirmed, the moment it is known."""
    if result.outcome is Outcome.UPDATED:
        fields = {
            path: journal.fingerprint(value_at(patch.body, path))
            for path in patch.fields
            if path != "note"
        }
        journal.record_applied(patch.uid, fields, run_id, note_fp=note_fp)
    elif note_fp is not None and (
        result.outcome in (Outcome.NOT_FOUND, Outcome.REJECTED) or result.attempts == 0
    ):
        # Refused for sure, or never sent: the note was not added. Anything else (a timeout,
        # a dropped connection) may have added it, so it stays pending and is not re-sent.
        journal.forget_pending(patch.uid, note_fp)


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
) -> RunSummary:
    """Send the plan's patches at the rate limit and write the results sheet.

    `report_path=True` writes `<input stem>.results.xlsx` beside the input; False writes none.
    With a `journal` (the one the plan was made with), every confirmed row is recorded the
    moment the API confirms it, and the run is listed in the journal's history. The report is
    written even when the run is stopped: rows not sent are `not_sent`. A graceful stop (the
    `stop` event) returns an aborted summary; cancelling the task raises RunInterrupted (with
    the summary) once the report is safe on disk. `started` (a time.monotonic() reading)
    lets the summary's duration include reading and planning.
    """
    settings = settings or Settings()
    started = time.monotonic() if started is None else started
    path: Path | None
    path = default_report_path(the_plan.sheet.path) if report_path is True else report_path or None
    if path is not None:  # a report that cannot be written must stop the run before it starts
        check_report_path(path, len(the_plan.rows))
    warnings = {r.row.number: r.warnings for r in the_plan.rows if r.warnings}
    patches = the_plan.patches
    if not dry_run and credentials is None:
        credentials = Credentials.from_env()
    run_id = (
        journal.start_run(
            sheet=the_plan.sheet.path, report=path, dry_run=dry_run, full=the_plan.full
        )
        if journal
        else None
    )
    done: dict[int, RowResult] = {}

    def record(result: RowResult) -> None:
        result = _with_warnings(result, warnings.get(result.row, ()))
        done[result.row] = result
        if on_result:
            on_result(result)

    def finish(aborted: bool = False, reason: str = "") -> RunSummary:
        results = [
            done.get(p.row) or RowResult(p.row, p.uid, Outcome.NOT_SENT, fields=p.fields)
            for p in patches
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
            journal.finish_run(
                run_id,
                counts={o.value: n for o, n in summary.counts.items() if n},
                status=status,
                duration_s=summary.duration_s,
            )
        _write(the_plan, summary, path)
        return summary

    settled = [_settled_result(r) for r in the_plan.rows if r.patch is None]
    for result in settled:
        if on_result:
            on_result(result)
    if dry_run:
        for patch in patches:
            record(RowResult(patch.row, patch.uid, Outcome.WOULD_UPDATE, fields=patch.fields))
        return finish()

    assert credentials is not None
    sender: Sender
    own_session = session is None
    http = session or aiohttp.ClientSession()
    try:
        sender = ComeetClient(
            http,
            settings.base_url,
            TokenMinter(credentials, ttl_s=settings.token_ttl_s),
            timeout_s=settings.timeout_s,
            user_agent=USER_AGENT,
        )
        on_pool_result = record
        if journal is not None and run_id is not None:
            notes = {
                p.uid: journal.fingerprint(p.body["note"]) for p in patches if "note" in p.body
            }
            by_row = {p.row: p for p in patches}
            sender = _JournaledSender(sender, journal, run_id, notes)

            def on_pool_result(result: RowResult) -> None:
                assert journal is not None and run_id is not None
                patch = by_row[result.row]
                _journal_result(journal, run_id, patch, result, notes.get(patch.uid))
                record(result)

        pool = await run_pool(
            patches,
            sender=sender,
            limiter=SlidingWindowLimiter(settings.rate),
            concurrency=settings.concurrency,
            retry=RetryPolicy(settings.max_attempts, settings.retry_base_s, settings.retry_max_s),
            rng=rng,
            on_result=on_pool_result,
            stop=stop,
        )
    except asyncio.CancelledError:
        # Stopped at once (a second Ctrl-C): the report is still written.
        stopped = RunInterrupted("the run was stopped at once; rows not sent are 'not_sent'")
        stopped.summary = finish(aborted=True, reason=INTERRUPTED)
        raise stopped from None
    finally:
        if own_session:
            await http.close()
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
