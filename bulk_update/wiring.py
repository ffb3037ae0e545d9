"""A run wired once, for the command line and the web page alike.

`open_run` does what a real run must do before it sends anything, in this order: take the
run lock (one run at a time per state dir and API key), open the journal of the account,
mark the runs that died holding it as stale, read the sheet (unless given it read), refuse
hidden rows and columns nobody decided about, and plan against the journal, so that what
another run applied meanwhile is not sent twice.

`dry_run` makes a dry run and chooses its engine: the column-at-a-time one
(`columnar.dry_run_csv`) for a CSV when it can do the sheet exactly and there is no journal
to compare with, else the general one (`load` -> `plan` -> `run_async(dry_run=True)`).
Both give the same report, counts and first patches (tests/test_columnar.py,
tests/test_wiring.py); the caller never needs to know which ran.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from .auth import Credentials
from .columnar import dry_run_csv
from .compare import only
from .config import Settings
from .hidden import check_hidden
from .journal import Journal, RunLock, process_alive
from .models import HiddenContent, Outcome, Patch, RowResult, RunSummary
from .pipeline import Plan, Sheet, load, plan, run_async
from .planning import reads_first
from .report import default_report_path
from .schema import FILE_FIELDS

__all__ = [
    "SETTLED",
    "SHOWN_PATCHES",
    "DryRun",
    "OpenRun",
    "dry_run",
    "dry_run_async",
    "is_progress",
    "open_journal",
    "open_run",
    "take_run_lock",
]

log = logging.getLogger("bulk_update")

#: How many PATCH bodies a dry run keeps to show (a million would not fit in memory).
SHOWN_PATCHES = 5
#: Outcomes a plan settles before anything is sent: not progress of the sending.
SETTLED = frozenset({Outcome.INVALID, Outcome.SKIPPED, Outcome.UNCHANGED})


def is_progress(result: RowResult) -> bool:
    """Whether a row's result counts in a run's progress (rows sent, out of `Plan.sends`):
    a row the run made a request for, `unchanged` included when --compare found it so after
    reading it; not a row settled before sending (SETTLED), nor one a stop left `not_sent`
    before any request (a stopped run shows how far it got). Pure."""
    if result.attempts > 0:
        return True
    return result.outcome not in SETTLED and result.outcome is not Outcome.NOT_SENT


@dataclass(frozen=True, slots=True)
class OpenRun:
    """A run ready to send: its plan, made against `journal` (None: a run without one)."""

    plan: Plan
    journal: Journal | None


@dataclass(frozen=True, slots=True)
class DryRun:
    """What a dry run found, whichever engine made it.

    `summary.results` holds only the rows with a problem (in a dry run: the invalid ones),
    in sheet order; `patches` the first few bodies to send; `encoding` a CSV's encoding as
    the dry run shows it (`utf-8 (detected)`), None for an XLSX.
    """

    summary: RunSummary
    rows: int
    sends: int
    patches: tuple[Patch, ...]
    encoding: str | None
    #: True when the column-at-a-time engine (columnar.py) made it.
    columnar: bool = False
    #: A preview with --compare: each shown patch's `before` text by sheet row (the
    #: patches are then the compared ones, without what Comeet holds already).
    before: Mapping[int, str] = field(default_factory=dict)


def open_journal(settings: Settings) -> Journal:
    """The journal of the account `settings` name (state dir, base URL, journal scope)."""
    return Journal.open(
        settings.state_dir, base_url=settings.base_url, journal_scope=settings.journal_scope
    )


def take_run_lock(settings: Settings, api_key: str) -> RunLock:
    """Take the run lock of `api_key` in the state dir (LockError names the holder).

    The caller releases it, or hands it to `open_run`, which does. A lock left behind by a
    process no longer running is taken over, with a warning in the log.
    """
    lock = RunLock(settings.state_dir, api_key=api_key)
    lock.took_over = lock.acquire()
    if lock.took_over:
        log.warning("%s", lock.took_over, extra={"event": "lock_taken_over"})
    return lock


@contextlib.contextmanager
def open_run(
    source: str | Path | Sheet,
    settings: Settings | None = None,
    credentials: Credentials | None = None,
    *,
    journal: bool = True,
    full: bool = False,
    lock: RunLock | None = None,
) -> Iterator[OpenRun]:
    """Open a real run of `source` (a path, or a sheet already read): see the module's
    docstring for the steps. The lock and the journal are held until the block ends.

    `journal=False` takes no lock and keeps no journal (the in-process sandbox forgets
    everything when the run ends: a journal of it would only mislead the next run). The
    lock is `credentials`' API key's (default: from the environment, CredentialsError
    without), or `lock`, taken already by `take_run_lock` (the web page takes it before
    saying "started"): released here either way. `full` plans every valid row again.
    """
    settings = settings or Settings()
    with contextlib.ExitStack() as stack:
        if lock is not None:
            stack.callback(lock.release)
        the_journal: Journal | None = None
        if journal:
            if lock is None:
                key = (credentials or Credentials.from_env()).api_key
                stack.callback(take_run_lock(settings, key).release)
            the_journal = stack.enter_context(open_journal(settings))
            the_journal.mark_stale_runs(process_alive)
        sheet = source if isinstance(source, Sheet) else load(source, settings)
        check_hidden(sheet, settings)  # before planning: nothing to plan if it stops
        the_plan = plan(sheet, settings, journal=the_journal, full=full)
        yield OpenRun(plan=the_plan, journal=the_journal)


async def dry_run_async(
    path: str | Path,
    settings: Settings | None = None,
    *,
    sheet: Sheet | None = None,
    journal: Journal | None = None,
    full: bool = False,
    report_path: Path | bool = True,
    bodies: int = SHOWN_PATCHES,
    in_history: bool = True,
    started: float | None = None,
    credentials: Credentials | None = None,
) -> DryRun:
    """The dry run of the sheet at `path`, by the engine that fits (module docstring).

    `sheet`: the sheet as already read from `path`, when the caller has it (the general
    engine plans it rather than reading the file again; its file cells are looked up beside
    `sheet.path`). `journal`: fields already applied are left out, as the real run will;
    `in_history=False` keeps the dry run out of the journal's history (the web page's
    previews, whose sheets go with the upload). `report_path`: as `run_async`'s. `bodies`:
    how many PATCH bodies to keep. `started`: a time.monotonic() reading, for the duration.
    With `settings.compare` it is a preview against live data: every row to send is read
    (with `credentials`, default from the environment) and compared; no PATCH is sent.
    """
    settings = settings or Settings()
    path = Path(path)
    where = sheet.path if sheet is not None else path
    reads = reads_first(settings)
    if not reads and journal is None and report_path is not False and _files_alike(sheet, path):
        report = default_report_path(where, dry_run=True) if report_path is True else report_path
        done = dry_run_csv(path, settings, report_path=report, bodies=bodies, started=started)
        if done is not None:
            # A CSV hides nothing; the choice is the settings', as the general engine says.
            summary = replace(done.summary, hidden=HiddenContent(choice=settings.hidden))
            return DryRun(summary, done.rows, done.sends, done.patches, done.encoding, True)
    if sheet is None:
        sheet = load(path, settings)
    # A preview that reads compares every body: all of them are kept.
    the_plan = plan(sheet, settings, journal=journal, full=full, bodies=None if reads else bodies)
    summary = await run_async(
        the_plan,
        settings,
        credentials,
        dry_run=True,
        report_path=report_path,
        journal=journal if in_history else None,
        started=started,
    )
    problems = tuple(r for r in summary.results if r.outcome.is_problem)
    patches = the_plan.patches[:bodies]
    before: dict[int, str] = {}
    if settings.compare:  # show the patches as compared: what will go, and what was there
        planned = {p.row: p for p in the_plan.patches}
        changes = (r for r in summary.results if r.outcome is Outcome.WOULD_UPDATE)
        shown = list(itertools.islice(changes, bodies))
        # (to the uid a web page number stands for, with --resolve-ids)
        patches = tuple(replace(only(planned[r.row], r.fields), uid=r.uid) for r in shown)
        before = {r.row: r.before for r in shown}
    return DryRun(
        summary=replace(summary, results=problems),
        rows=len(the_plan.rows),
        sends=the_plan.sends,
        patches=patches,
        encoding=sheet.raw.encoding,
        before=before,
    )


def dry_run(
    path: str | Path,
    settings: Settings | None = None,
    *,
    sheet: Sheet | None = None,
    journal: Journal | None = None,
    full: bool = False,
    report_path: Path | bool = True,
    bodies: int = SHOWN_PATCHES,
    in_history: bool = True,
    credentials: Credentials | None = None,
) -> DryRun:
    """Synchronous `dry_run_async` for scripts (starts and closes its own event loop)."""
    return asyncio.run(
        dry_run_async(
            path,
            settings,
            sheet=sheet,
            journal=journal,
            full=full,
            report_path=report_path,
            bodies=bodies,
            in_history=in_history,
            credentials=credentials,
        )
    )


def _files_alike(sheet: Sheet | None, path: Path) -> bool:
    """Whether the column-at-a-time engine, which looks file cells up beside `path`, finds
    the files the sheet's own reading would: a sheet read as if elsewhere (the web page
    places its uploads in its files folder) is taken by it only without file columns."""
    if sheet is None or sheet.path.resolve().parent == path.resolve().parent:
        return True
    return not any(c.field in FILE_FIELDS for c in sheet.columns)
