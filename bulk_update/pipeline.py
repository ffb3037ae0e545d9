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
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import aiohttp

from . import __version__
from .auth import Credentials, TokenMinter
from .client import ComeetClient
from .config import Settings
from .errors import RunInterrupted
from .limiter import SlidingWindowLimiter, estimate_duration
from .models import (
    Column,
    Outcome,
    Patch,
    PlannedRow,
    RawSheet,
    RowResult,
    RunSummary,
    SheetRow,
)
from .patch import build_patch
from .pool import RetryPolicy, run_pool
from .reader import read_sheet
from .report import default_report_path, write_report
from .schema import InvalidRow, find_duplicate_uids, resolve_columns, validate_row

USER_AGENT = f"bulk-update/{__version__}"


class LastApplied(Protocol):
    """What the journal knows: per uid, the fingerprint of each field's last applied value."""

    def get(self, uid: str) -> Mapping[str, str]: ...


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

    @property
    def patches(self) -> tuple[Patch, ...]:
        return tuple(r.patch for r in self.rows if r.patch is not None)

    def settled(self) -> list[RowResult]:
        """Results of the rows that need no request (invalid, skipped, unchanged)."""
        return [_settled_result(r) for r in self.rows if r.patch is None]

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
    """Read a CSV or XLSX and match its headers to API fields (raises InputError)."""
    settings = settings or Settings()
    raw = read_sheet(Path(path), sheet=sheet or settings.sheet)
    columns = resolve_columns(raw.headers, mapping=settings.columns, ignore=settings.ignore_columns)
    return Sheet(raw=raw, columns=columns)


def plan(
    sheet: Sheet, settings: Settings | None = None, *, last_applied: LastApplied | None = None
) -> Plan:
    """Validate every row and build its minimal patch. Pure apart from reading file cells."""
    settings = settings or Settings()
    base_dir = sheet.path.resolve().parent
    duplicates = find_duplicate_uids(sheet.rows, sheet.columns)
    planned: list[PlannedRow] = []
    for row in sheet.rows:
        checked = validate_row(
            row,
            sheet.columns,
            base_dir=base_dir,
            duplicate_uids=duplicates,
            default_updated_by=settings.updated_by,
        )
        if isinstance(checked, InvalidRow):
            planned.append(PlannedRow(row, checked.uid, None, Outcome.INVALID, checked.problems))
            continue
        built = build_patch(
            row.number,
            checked.uid,
            checked.values,
            default_updated_by=settings.updated_by,
            last_applied=last_applied.get(checked.uid) if last_applied else None,
        )
        if isinstance(built, Outcome):
            planned.append(PlannedRow(row, checked.uid, None, built))
        else:
            planned.append(PlannedRow(row, checked.uid, built))
    return Plan(sheet=sheet, rows=tuple(planned))


def _settled_result(planned: PlannedRow) -> RowResult:
    assert planned.outcome is not None
    return RowResult(
        row=planned.row.number,
        uid=planned.uid,
        outcome=planned.outcome,
        message="; ".join(str(p) for p in planned.problems),
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


async def run_async(
    the_plan: Plan,
    settings: Settings | None = None,
    credentials: Credentials | None = None,
    *,
    dry_run: bool = False,
    report_path: Path | bool | None = True,
    session: aiohttp.ClientSession | None = None,
    on_result: Callable[[RowResult], None] | None = None,
    stop: asyncio.Event | None = None,
    rng: random.Random | None = None,
) -> RunSummary:
    """Send the plan's patches at the rate limit and write the results sheet.

    `report_path=True` writes `<input stem>.results.xlsx` beside the input; False writes none.
    The report is written even when the run is interrupted or cancelled: rows that were not
    sent are `not_sent`, and RunInterrupted is raised after the report is safe on disk when
    the task itself was cancelled.
    """
    settings = settings or Settings()
    started = time.monotonic()
    path: Path | None
    if report_path is True:
        path = default_report_path(the_plan.sheet.path)
    elif report_path is False:
        path = None
    else:
        path = report_path
    settled = the_plan.settled()
    for result in settled:
        if on_result:
            on_result(result)

    if dry_run:
        sent = [
            RowResult(row=p.row, uid=p.uid, outcome=Outcome.WOULD_UPDATE, fields=p.fields)
            for p in the_plan.patches
        ]
        for result in sent:
            if on_result:
                on_result(result)
        summary = _summary(
            the_plan,
            settled + sent,
            started=started,
            report_path=path,
            settings=settings,
            dry_run=True,
        )
        _write(the_plan, summary, path)
        return summary

    if credentials is None:
        credentials = Credentials.from_env()
    done: dict[int, RowResult] = {}

    def record(result: RowResult) -> None:
        done[result.row] = result
        if on_result:
            on_result(result)

    patches = the_plan.patches
    own_session = session is None
    http = session or aiohttp.ClientSession()
    try:
        client = ComeetClient(
            http,
            settings.base_url,
            TokenMinter(credentials, ttl_s=settings.token_ttl_s),
            timeout_s=settings.timeout_s,
            user_agent=USER_AGENT,
        )
        pool = await run_pool(
            patches,
            sender=client,
            limiter=SlidingWindowLimiter(settings.rate),
            concurrency=settings.concurrency,
            retry=RetryPolicy(settings.max_attempts, settings.retry_base_s, settings.retry_max_s),
            rng=rng,
            on_result=record,
            stop=stop,
        )
    except asyncio.CancelledError:
        # A second Ctrl-C: stop at once, but the report is still written.
        results = settled + [
            done.get(p.row) or RowResult(p.row, p.uid, Outcome.NOT_SENT, fields=p.fields)
            for p in patches
        ]
        summary = _summary(
            the_plan,
            results,
            started=started,
            report_path=path,
            settings=settings,
            dry_run=False,
            aborted=True,
            abort_reason="interrupted",
        )
        _write(the_plan, summary, path)
        stopped = RunInterrupted("the run was stopped at once; rows not sent are 'not_sent'")
        stopped.summary = summary
        raise stopped from None
    finally:
        if own_session:
            await http.close()
    summary = _summary(
        the_plan,
        settled + list(pool.results),
        started=started,
        report_path=path,
        settings=settings,
        dry_run=False,
        aborted=pool.aborted,
        abort_reason=pool.abort_reason,
    )
    _write(the_plan, summary, path)
    return summary


def run(
    the_plan: Plan,
    settings: Settings | None = None,
    credentials: Credentials | None = None,
    *,
    dry_run: bool = False,
    report_path: Path | bool = True,
    on_result: Callable[[RowResult], None] | None = None,
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
        )
    )
