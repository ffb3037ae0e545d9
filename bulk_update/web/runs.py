"""Runs started from the page: each in its own thread, going on when the page is closed.

A run is opened by the library as the command line's is (`wiring.open_run`: the lock, the
journal, stale runs, the sheet planned again against the journal), then the rows are sent
by `run_async`. The lock is taken first (`wiring.take_run_lock`), before the page says
"started", so that a second run, from the page or from a terminal, is refused at once with
the holder's pid.
It runs on an event loop of its own in a worker thread, so that the page stays quick while
the library reads files, writes the journal and writes the results sheet.

The page reads a run's progress as `RunProgress` snapshots (thread-safe).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..auth import Credentials
from ..brake import brake_words
from ..config import Settings
from ..errors import BulkUpdateError, CredentialsError, LockError, RunInterrupted
from ..hidden import check_hidden
from ..journal import RunLock
from ..limiter import estimate_duration
from ..models import Outcome, RowResult, RunSummary
from ..pipeline import Sheet, run_async
from ..wiring import OpenRun, is_progress, open_run, take_run_lock
from .uploads import safe_name

__all__ = ["RunManager", "RunProgress", "WebRun"]

log = logging.getLogger("bulk_update.web")

_KEPT_RUNS = 50


@dataclass(frozen=True, slots=True)
class RunProgress:
    """A run as the page shows it at one moment.

    `state`: planning | sending | stopping | finished | stopped | failed. `done` counts the
    rows sent and answered, out of `total` to send; `counts` every outcome so far.
    """

    id: str
    name: str
    started: datetime
    state: str
    total: int
    done: int
    counts: dict[str, int]
    elapsed_s: float
    rate_per_min: float
    left_s: float | None
    error: str
    exit_code: int | None
    abort_reason: str
    #: The brake's stop in a recruiter's words (brake.brake_words); "" when it did not stop.
    brake_stop: str
    has_report: bool
    #: The run kept an undo sheet and it is on disk (run_views.run_undo_sheet serves it).
    has_undo_sheet: bool
    version: int

    @property
    def over(self) -> bool:
        """True once the run has ended, however it ended."""
        return self.state in ("finished", "stopped", "failed")

    @property
    def percent(self) -> int:
        """Rows sent, in percent of the rows to send."""
        if not self.total:
            return 100 if self.over else 0
        return min(100, 100 * self.done // self.total)

    def as_event(self) -> dict[str, object]:
        """The JSON of a server-sent progress event (nothing secret in it)."""
        return {
            "state": self.state,
            "total": self.total,
            "done": self.done,
            "percent": self.percent,
            "counts": self.counts,
            "elapsed_s": round(self.elapsed_s, 1),
            "rate_per_min": round(self.rate_per_min, 1),
            "left_s": None if self.left_s is None else round(self.left_s),
            "error": self.error,
            "over": self.over,
            "version": self.version,
        }


class WebRun:
    """One run of a sheet, in a worker thread; its report is written to `report_path`."""

    def __init__(
        self,
        *,
        sheet: Sheet,
        name: str,
        settings: Settings,
        credentials: Credentials,
        report_path: Path,
        undo_path: Path | None = None,
        use_journal: bool,
        lock: RunLock | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.id = secrets.token_urlsafe(9)
        self.name = name
        self.report_path = report_path
        #: Where a run with "Keep an undo sheet" writes it; None: no backup.
        self.undo_path = undo_path
        self.started = datetime.now(UTC)
        self._sheet, self._settings, self._credentials = sheet, settings, credentials
        self._use_journal, self._lock_file = use_journal, lock
        self._clock = clock
        self._t0 = clock()
        self._lock = threading.Lock()
        self._state = "planning"
        self._total = 0
        self._done = 0
        self._counts: Counter[str] = Counter()
        self._sending_since: float | None = None
        self._ended_at: float | None = None
        self._error = ""
        self._summary: RunSummary | None = None
        self._version = 0
        self._stop_asked = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._task: asyncio.Task[Any] | None = None
        self._thread = threading.Thread(target=self._main, name=f"bulk-update-run-{self.id}")

    def __repr__(self) -> str:  # never the credentials
        return f"WebRun(id={self.id!r}, name={self.name!r}, state={self._state!r})"

    # -- the worker thread ---------------------------------------------------------------

    def start(self) -> None:
        """Start the worker thread."""
        self._thread.start()

    def _main(self) -> None:
        try:
            # Planned again against the journal, now that the lock is held: what another
            # run applied since the preview is not sent twice.
            with open_run(
                self._sheet,
                self._settings,
                self._credentials,
                journal=self._use_journal,
                lock=self._lock_file,
            ) as opened:
                summary = asyncio.run(self._send(opened))
            self._end(summary=summary)
        except BulkUpdateError as exc:
            self._end(error=str(exc))
        except Exception:  # a bug: the page says so, the log has the traceback
            log.exception("run %s failed", self.id)
            self._end(error="unexpected error: this is a bug in bulk-update; see the log")

    async def _send(self, opened: OpenRun) -> RunSummary:
        with self._lock:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            if self._stop_asked:
                self._stop.set()
            self._total = opened.plan.sends
            self._state = "stopping" if self._stop_asked else "sending"
            self._sending_since = self._clock()
            self._version += 1
        self._task = asyncio.current_task()
        log.info("run %s: sending %d rows of %s", self.id, self._total, self.name)
        try:
            return await run_async(
                opened.plan,
                self._settings,
                self._credentials,
                report_path=self.report_path,
                undo_sheet=self.undo_path,
                on_result=self._on_result,
                stop=self._stop,
                journal=opened.journal,
                started=self._t0,
            )
        except RunInterrupted as exc:
            if isinstance(exc.summary, RunSummary):
                return exc.summary
            raise

    def _on_result(self, result: RowResult) -> None:
        with self._lock:
            self._counts[result.outcome.value] += 1
            if is_progress(result):
                self._done += 1
            self._version += 1

    def _end(self, *, summary: RunSummary | None = None, error: str = "") -> None:
        with self._lock:
            self._summary = summary
            self._error = error
            if summary is not None:
                self._counts = Counter({o.value: n for o, n in summary.counts.items() if n})
                self._state = "stopped" if summary.aborted else "finished"
            else:
                self._state = "failed"
            self._ended_at = self._clock()
            self._version += 1
        log.info("run %s: %s", self.id, self._state)

    # -- from the page -------------------------------------------------------------------

    def request_stop(self) -> None:
        """Finish the requests in flight, then stop; the rest is `not_sent` in the report."""
        with self._lock:
            self._stop_asked = True
            if self._state in ("planning", "sending"):
                self._state = "stopping"
                self._version += 1
            loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nothing to stop
                loop.call_soon_threadsafe(stop.set)

    def interrupt(self) -> None:
        """Stop at once (requests in flight are cut); the report is still written."""
        loop, task = self._loop, self._task
        if loop is not None and task is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(task.cancel)

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread; True when it has ended."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def summary(self) -> RunSummary | None:
        """The run's summary once it has ended (None if it failed to start)."""
        with self._lock:
            return self._summary

    @property
    def report_file(self) -> Path:
        """Where the report is: the copy kept in the state dir once there is one (the
        record, records.py), else where it was written (the next free name when the path
        asked was locked), else the path asked for."""
        return self._report_file(self.summary)

    @property
    def undo_sheet(self) -> Path | None:
        """The undo sheet the run wrote, when it kept one and it is on disk."""
        return self._undo_sheet(self.summary)

    @staticmethod
    def _undo_sheet(summary: RunSummary | None) -> Path | None:
        undo = summary.undo_sheet if summary is not None else None
        return undo if undo is not None and undo.is_file() else None

    def _report_file(self, summary: RunSummary | None) -> Path:
        if summary is None:
            return self.report_path
        return summary.kept_report or summary.report_path or self.report_path

    def _brake_words(self, summary: RunSummary) -> str:
        limit = self._settings.stop_after_rejected
        return brake_words(summary, limit, resumes=self._use_journal)

    def progress(self) -> RunProgress:
        """A consistent snapshot of the run for the page."""
        with self._lock:
            now = self._ended_at if self._ended_at is not None else self._clock()
            sending = now - self._sending_since if self._sending_since is not None else 0.0
            # Over at least a second: the first answers come in a burst, not at the rate.
            rate = self._done / max(sending, 1.0) if self._done else 0.0
            left_rows = self._total - self._done
            left: float | None
            if self._state not in ("sending", "stopping") or not left_rows:
                left = None if self._state == "planning" else 0.0
            elif rate:
                left = left_rows / rate
            else:
                left = estimate_duration(left_rows, self._settings.rate)
            summary = self._summary
            return RunProgress(
                id=self.id,
                name=self.name,
                started=self.started,
                state=self._state,
                total=self._total,
                done=self._done,
                counts={o.value: self._counts[o.value] for o in Outcome if self._counts[o.value]},
                elapsed_s=now - self._t0,
                rate_per_min=rate * 60,
                left_s=left,
                error=self._error,
                exit_code=None if summary is None else summary.exit_code,
                abort_reason="" if summary is None else summary.abort_reason,
                brake_stop="" if summary is None else self._brake_words(summary),
                # self._lock is held: the summary taken above, not self.summary (no re-entry).
                has_report=summary is not None and self._report_file(summary).is_file(),
                has_undo_sheet=self._undo_sheet(summary) is not None,
                version=self._version,
            )


@dataclass(kw_only=True, eq=False, repr=False)
class RunManager:
    """The runs of this server: at most one sending at a time (and one per API key).

    `credentials`: None when the server has none (previews only); `use_journal`: False in
    sandbox mode (no lock, no journal); `reports_dir`: where the runs' results sheets go.
    """

    settings: Settings
    credentials: Credentials | None
    use_journal: bool
    reports_dir: Path
    clock: Callable[[], float] = time.monotonic
    _runs: dict[str, WebRun] = field(default_factory=dict, init=False)
    _guard: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __repr__(self) -> str:
        return f"RunManager(runs={len(self._runs)}, journal={self.use_journal})"

    @property
    def can_send(self) -> bool:
        """False when the server has no credentials (previews only)."""
        return self.credentials is not None

    def get(self, run_id: str) -> WebRun | None:
        """A run of this server by id."""
        return self._runs.get(run_id)

    def recent(self) -> list[WebRun]:
        """This server's runs, the newest first."""
        return list(reversed(self._runs.values()))

    def active(self) -> WebRun | None:
        """The run that has not ended yet, if any."""
        for run in self._runs.values():
            if not run.progress().over:
                return run
        return None

    def start(
        self,
        sheet: Sheet,
        name: str,
        *,
        hidden: str | None = None,
        backup: bool = False,
        compare: bool = False,
    ) -> WebRun:
        """Take the lock and start sending; raises CredentialsError, LockError, or
        InputError for hidden rows or columns nobody said what to do with (`hidden`).
        `backup`: keep an undo sheet (the page's checkbox decides, whatever the config
        file's `[run] backup`); it goes beside the results sheet, not beside the upload
        (the upload's folder is deleted once the run starts). `compare`: the preview
        compared with Comeet, so the run does too (fields Comeet holds are not sent)."""
        settings = replace(
            self.settings.with_overrides(hidden=hidden), backup=backup, compare=compare
        )
        check_hidden(sheet, settings)
        if self.credentials is None:
            raise CredentialsError(
                "this page was started without COMEET_API_KEY and COMEET_SECRET, so it can "
                "preview sheets but not send them",
                fix="stop the page, export COMEET_API_KEY and COMEET_SECRET, start it again",
            )
        with self._guard:
            busy = self.active()
            if busy is not None:
                raise LockError(
                    f"another run ({busy.name}, started {busy.started:%H:%M} UTC) is still sending",
                    fix="wait for it to finish, or stop it from its page, then confirm again",
                )
            lock: RunLock | None = None
            if self.use_journal:  # LockError names the process holding it
                lock = take_run_lock(self.settings, self.credentials.api_key)
            try:
                self.reports_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
                stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
                stem = Path(safe_name(name)).stem
                base = f"{stem}.{stamp}.{secrets.token_hex(2)}"
                report = self.reports_dir / f"{base}.results.xlsx"
                run = WebRun(
                    sheet=sheet,
                    name=name,
                    settings=settings,
                    credentials=self.credentials,
                    report_path=report,
                    undo_path=self.reports_dir / f"{base}.undo.xlsx" if backup else None,
                    use_journal=self.use_journal,
                    lock=lock,
                    clock=self.clock,
                )
                run.start()
            except BaseException:
                if lock is not None:
                    lock.release()
                raise
            self._runs[run.id] = run
            for old in list(self._runs.values())[:-_KEPT_RUNS]:
                if old.progress().over:
                    del self._runs[old.id]
            return run

    def shutdown(self, timeout: float = 60.0) -> None:
        """Ask every run to stop gracefully and wait for their reports (blocking)."""
        runs = list(self._runs.values())
        for run in runs:
            run.request_stop()
        deadline = self.clock() + timeout
        for run in runs:
            if not run.join(max(0.0, deadline - self.clock())):
                run.interrupt()
                run.join(10)
