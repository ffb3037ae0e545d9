"""Wires the stages together: load a sheet, plan its patches, run them, write the report.

Loading is loading.py, planning planning.py, the note-once policy notes.py; this module runs
a plan (the rate-limited PATCHes, the journal, the results sheet) and gathers the steps
under one name. Each step is usable alone::

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
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import aiohttp

from .auth import Credentials, TokenMinter
from .backup import Backup
from .client import ComeetClient
from .config import Settings
from .errors import ConfigError, RunInterrupted
from .hidden import check_hidden
from .journal import Journal
from .limiter import SlidingWindowLimiter, estimate_duration
from .loading import LoadedSheet, Sheet, load
from .models import Outcome, Patch, PlannedRow, RowResult, RunSummary
from .network import client_session
from .notes import (
    NOTE_ADDED_WARNING,
    NOTE_RETRY_WARNING,
    PENDING_NOTE_WARNING,
    NoteSender,
    note_not_sent,
)
from .patch import value_at
from .planning import Plan, plan, reads_first, requests_to_send
from .pool import INTERRUPTED, RetryPolicy, Sender, run_pool
from .records import keep_report, run_folder
from .report import check_report_path, default_report_path, fitting_report, write_report
from .resolve import run_replan
from .rowstore import Shared
from .undo import check_undo_sheet, finish_backup, start_backup
from .version import __version__

__all__ = [
    "JOURNAL_ABORT_REASON",
    "JOURNAL_WARNING",
    "NOTE_ADDED_WARNING",
    "NOTE_RETRY_WARNING",
    "PENDING_NOTE_WARNING",
    "USER_AGENT",
    "LoadedSheet",
    "Plan",
    "Sheet",
    "load",
    "note_not_sent",
    "plan",
    "run",
    "run_async",
]

USER_AGENT = f"bulk-update/{__version__}"
log = logging.getLogger("bulk_update")

JOURNAL_WARNING = (
    "applied, but the journal could not record it: a re-run would send this row again "
    "(its note too); check the candidate in Comeet before running the sheet again"
)
JOURNAL_ABORT_REASON = (
    "the journal could not record confirmed rows ({error}); sending stopped so that a "
    "re-run does not send them twice: fix the state dir (free space, permissions) and "
    "check the rows the report says were not recorded before running again"
)


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
        estimate_s=estimate_duration(requests_to_send(the_plan, settings), settings.rate),
        results=tuple(sorted(results, key=lambda r: r.row)),
        hidden=replace(the_plan.sheet.hidden, choice=settings.hidden),
        config_path=settings.config_path,
        compared=settings.compare,
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
        written = write(run_folder(*keep) / report_path.name)
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
        uid = result.uid  # the uid sent to: a web page number's is the one it stands for
        note_fp = None if uid in held_back else notes.get(uid)
        # UNCHANGED here is a row --compare found in Comeet's state: applied, as if sent.
        if result.outcome in (Outcome.UPDATED, Outcome.UNCHANGED):
            fields = patch.fingerprints if planned_with is journal else None
            if fields is None:  # planned without this journal, or a file object's leaves
                body = patch.body
                fields = {
                    path: fingerprint(value_at(body, path))
                    for path in patch.fields
                    if path != "note"
                }
            confirmed.append((uid, fields, note_fp))
        elif note_fp is not None and (
            result.outcome in (Outcome.NOT_FOUND, Outcome.REJECTED) or result.attempts == 0
        ):
            # Refused for sure, or never sent: the note was not added. Anything else (a
            # timeout, a dropped connection) may have added it, so it stays pending and is
            # not re-sent.
            journal.forget_pending(uid, note_fp)
    if confirmed:
        journal.record_applied_many(confirmed, run_id)


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
    lets the summary's duration include reading and planning. `backup` (or
    `settings.backup`; a real run) reads
    each candidate before its patch and keeps what the patch replaces (backup.py); the
    run then writes the undo sheet at `undo_sheet`, default `<input stem>.undo.xlsx`
    beside the input (undo.py; the summary's `undo_sheet`).
    """
    settings = settings or Settings()
    if backup:  # as the setting: the summary's estimate counts the reads too
        settings = replace(settings, backup=True)
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
    undo_sheet = check_undo_sheet(
        undo_sheet, backup=settings.backup, source=the_plan.sheet.path, report=path, dry_run=dry_run
    )
    warnings = {r.row: r.warnings for r in the_plan.rows if r.warnings}
    to_send = [r for r in the_plan.rows if r.outcome is None]
    patches = the_plan.patches
    reads = reads_first(settings)  # a dry run that reads is a preview against live data
    if (reads or not dry_run) and len(patches) != len(to_send):
        raise ValueError("this plan was made without every body (plan(bodies=N)): plan again")
    if (reads or not dry_run) and credentials is None:
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
        result = result.with_words(*said)
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
    if dry_run and not reads:
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
        # A real run with a backup (check_undo_sheet's): a dry run, even one that reads
        # (--compare), keeps no backup and writes no undo sheet over a real run's.
        if undo_sheet is not None:
            state_dir = journal.path.parent if journal is not None else None
            source = the_plan.sheet.path  # recorded: `undo-sheet --run N` never writes over it
            kept_before.append(
                start_backup(state_dir, run_id, undo_sheet, http, backing_up, source=source)
            )
        on_pool_result: Callable[[RowResult], None] | None = record
        on_pool_results: Callable[[Sequence[RowResult]], None] | None = None
        notes: dict[str, str] = {}
        if journal is not None:
            notes = {
                p.uid: journal.fingerprint(p.body["note"]) for p in patches if "note" in p.body
            }
        if not dry_run and any("note" in p.body for p in patches):
            sender = NoteSender(sender, journal, run_id, notes, held_back)
        if journal is not None and run_id is not None and not dry_run:
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
                        record(result.with_words(*(JOURNAL_WARNING,) * unrecorded))
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
            compare=settings.compare,
            send=not dry_run,
            resolve_ids=settings.resolve_ids,
            typed_uids={r.uid: r.row for r in the_plan.rows if r.uid},
            replan=run_replan(
                journal or the_plan.journal,
                full=the_plan.full,
                updated_by=settings.updated_by,
                note_warning=note_not_sent,
                notes=notes,
            ),
            backup=kept_before[0] if kept_before else None,
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
    backup: bool = False,
    undo_sheet: Path | None = None,
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
            backup=backup,
            undo_sheet=undo_sheet,
        )
    )
