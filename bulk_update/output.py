"""What the command line prints and logs: log lines, progress, the dry run, the summary.

Formatting only: every figure shown comes from the library (a RunSummary, a DryRun, a
RunRecord); nothing here decides what a run does.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from .config import Settings
from .errors import BulkUpdateError
from .hidden import describe_hidden
from .journal import RunRecord
from .models import HiddenContent, Outcome, RowResult, RunSummary
from .network import redact_url
from .patch import files_summarised
from .undo import backup_path, run_undo_sheet
from .wiring import SHOWN_PATCHES, DryRun, is_progress

__all__ = [
    "ProgressDisplay",
    "duration_parts",
    "log_config",
    "log_hidden",
    "log_planned",
    "print_dry_run",
    "print_error",
    "print_history",
    "print_outcome",
    "setup_logging",
    "summary_line",
]

log = logging.getLogger("bulk_update")

SHOWN_PROBLEMS = 20

#: What a run does with hidden rows and columns, by `--hidden` choice (None: not said).
_HIDDEN_DONE = {
    "send": "sent like the others (--hidden send)",
    "skip": "left out (--hidden skip)",
    None: "previewed as sent; a real run stops unless --hidden send or --hidden skip "
    "says what to do with them",
}


# --- log lines ------------------------------------------------------------------------------


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "event": getattr(record, "event", "log"),
            "message": record.getMessage(),
        }
        event.update(getattr(record, "fields", {}))
        return json.dumps(event, ensure_ascii=False)


def setup_logging(fmt: str, quiet: bool, stream: TextIO) -> None:
    """Log lines of the `bulk_update` logger to `stream`, as text or JSON lines."""
    handler = logging.StreamHandler(stream)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.WARNING if quiet else logging.INFO)
    log.propagate = False


def log_config(settings: Settings) -> None:
    """Say which config file was read: a cron run started elsewhere may not read the one
    meant."""
    path = settings.config_path
    log.info(
        "%s",
        settings.config_said,
        extra={"event": "config", "fields": {"config": str(path) if path else None}},
    )
    if settings.proxy:  # shown without the password it may hold
        log.info("proxy: %s", redact_url(settings.proxy), extra={"event": "proxy"})


def log_hidden(name: str, hidden: HiddenContent, choice: str | None) -> None:
    """What the sheet hides, and what the run does with it (`--hidden` choice)."""
    log.info(
        "%s has %s: %s",
        name,
        describe_hidden(hidden),
        _HIDDEN_DONE[choice],
        extra={
            "event": "hidden",
            "fields": {
                "hidden_rows": hidden.rows,
                "hidden_columns": list(hidden.columns),
                "hidden": choice,
            },
        },
    )


def log_planned(name: str, rows: int, sends: int, encoding: str | None) -> None:
    """The sheet read and planned: its rows, how many to send, a CSV's encoding."""
    log.info(
        "read %s%s: %d rows, %d to send",
        name,
        f" (encoding: {encoding})" if encoding else "",
        rows,
        sends,
        extra={"event": "planned", "fields": {"encoding": encoding}},
    )


# --- durations and progress -------------------------------------------------------------------


def duration_parts(seconds: float) -> tuple[int, int, int]:
    """Hours, minutes and seconds of `seconds`, rounded to the second."""
    hours, rest = divmod(round(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return hours, minutes, secs


def _format_duration(seconds: float) -> str:
    hours, minutes, secs = duration_parts(seconds)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


class ProgressDisplay:
    """Rows sent so far: a rich progress bar on a terminal, else a log line per 10% or minute.

    Rows settled before sending (invalid, skipped, unchanged) are not counted.
    """

    def __init__(
        self, total: int, *, bar: bool, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.total = total
        self.done = 0
        self.clock = clock
        self.started = clock()
        self.last_log = self.started
        self.next_decile = 1
        self.bar: Progress | None = None
        if bar and total:
            self.bar = Progress(
                TextColumn("[bold]sending"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self.task = self.bar.add_task("rows", total=total, rate="")

    def __enter__(self) -> ProgressDisplay:
        if self.bar:
            self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar:
            self.bar.stop()

    def update(self, result: RowResult) -> None:
        """Count one row's result (the run's `on_result`)."""
        if not is_progress(result):  # known before sending
            return
        self.done += 1
        now = self.clock()
        elapsed = max(now - self.started, 1e-9)
        rate = self.done / elapsed
        if self.bar:
            self.bar.update(self.task, completed=self.done, rate=f"{rate * 60:.0f} rows/min")
            return
        if self.total == 0:
            return
        decile_hit = self.done * 10 >= self.next_decile * self.total
        if decile_hit or now - self.last_log >= 60:
            while self.done * 10 >= self.next_decile * self.total:
                self.next_decile += 1
            self.last_log = now
            left = (self.total - self.done) / rate if rate else 0.0
            log.info(
                "%d/%d rows done (%d%%), %.0f rows/min, about %s left",
                self.done,
                self.total,
                100 * self.done // self.total,
                rate * 60,
                _format_duration(left),
                extra={
                    "event": "progress",
                    "fields": {"done": self.done, "total": self.total},
                },
            )


# --- what a run says at the end ----------------------------------------------------------------


def summary_line(summary: RunSummary) -> str:
    """The one line printed last: every outcome's count, the time taken, the report."""
    counts = ", ".join(f"{summary.counts.get(o, 0)} {o.value}" for o in Outcome)
    where = f"; report: {summary.report_path}" if summary.report_path else ""
    if summary.report_asked:
        where += f" ({summary.report_asked.name} could not be replaced)"
    if summary.kept_report and summary.kept_report != summary.report_path:
        where += f"; kept: {summary.kept_report}"
    what = "Dry run" if summary.dry_run else ("Stopped" if summary.aborted else "Done")
    return f"{what} in {summary.duration_s:.1f}s: {counts}{where}"


def _summary_json(summary: RunSummary) -> str:
    return json.dumps(
        {
            "event": "summary",
            "dry_run": summary.dry_run,
            "aborted": summary.aborted,
            "abort_reason": summary.abort_reason,
            "counts": {o.value: summary.counts.get(o, 0) for o in Outcome},
            "duration_s": round(summary.duration_s, 3),
            "estimate_s": summary.estimate_s,
            "report": str(summary.report_path) if summary.report_path else None,
            "config": str(summary.config_path) if summary.config_path else None,
            "report_asked": str(summary.report_asked) if summary.report_asked else None,
            "kept_report": str(summary.kept_report) if summary.kept_report else None,
            "undo_sheet": str(summary.undo_sheet) if summary.undo_sheet else None,
            "exit_code": summary.exit_code,
        }
    )


def _print_problems(summary: RunSummary, out: TextIO) -> None:
    bad = [r for r in summary.results if r.outcome.is_problem]
    for result in bad[:SHOWN_PROBLEMS]:
        uid = f" (uid {result.uid})" if result.uid else ""
        detail = (
            result.message
            or result.error
            or (f"HTTP {result.http_status}" if result.http_status else "")
        )
        print(f"row {result.row}{uid}: {result.outcome.value}: {detail}", file=out)
    if len(bad) > SHOWN_PROBLEMS:
        print(f"... and {len(bad) - SHOWN_PROBLEMS} more: see the report", file=out)


def print_dry_run(done: DryRun, settings: Settings) -> None:
    """The dry run for a person: counts, the time the real run would take, first patches."""
    summary = done.summary
    counts = ", ".join(f"{n} {o.value}" for o, n in summary.counts.items() if n) or "no rows"
    if summary.compared:
        would = summary.counts.get(Outcome.WOULD_UPDATE, 0)
        print(f"Compared {done.sends} row(s) with Comeet; would send {would}: {counts}.")
    else:
        print(f"Would send {done.sends} request(s): {counts}.")
    print(settings.config_said)
    if done.encoding:
        print(f"encoding: {done.encoding}")
    hidden = summary.hidden
    if hidden:
        print(f"Hidden in the sheet: {describe_hidden(hidden)}: {_HIDDEN_DONE[hidden.choice]}.")
    estimate = summary.estimate_s or 0.0
    print(
        f"At the rate limit of {settings.rate.limit} requests per {settings.rate.period:g} s "
        f"the real run would take about {_format_duration(estimate)}."
    )
    for patch in done.patches[:SHOWN_PATCHES]:
        body = json.dumps(files_summarised(patch.body), ensure_ascii=False)
        if len(body) > 600:
            body = body[:600] + "..."
        print(f"row {patch.row} PATCH /candidates/{patch.uid} {body}")
        if patch.row in done.before:
            print(f"    before: {done.before[patch.row]}")
    total = summary.counts.get(Outcome.WOULD_UPDATE, 0) if summary.compared else done.sends
    if total > SHOWN_PATCHES:
        print(f"... and {total - SHOWN_PATCHES} more")


def print_outcome(summary: RunSummary, log_format: str) -> int:
    """The rows with a problem, an abort's reason and the summary line; the exit status."""
    if log_format == "json":
        for result in summary.results:
            if result.outcome.is_problem:
                log.warning(
                    "row %d: %s",
                    result.row,
                    result.outcome.value,
                    extra={
                        "event": "row_problem",
                        "fields": {
                            "row": result.row,
                            "uid": result.uid,
                            "outcome": result.outcome.value,
                            "http_status": result.http_status,
                            "error": result.error,
                            "message": result.message,
                        },
                    },
                )
        print(_summary_json(summary), flush=True)
        return summary.exit_code
    _print_problems(summary, sys.stderr)
    if summary.aborted:
        print(f"Run aborted: {summary.abort_reason}", file=sys.stderr)
    if summary.undo_sheet:
        print(f"undo sheet: {summary.undo_sheet} (run it to put back what this run changed)")
    print(summary_line(summary), flush=True)
    return summary.exit_code


def print_error(exc: BulkUpdateError, log_format: str) -> int:
    """Why the run could not start or was aborted, and the fix; the exit status."""
    if log_format == "json":
        print(
            json.dumps(
                {
                    "event": "error",
                    "message": exc.message,
                    "fix": exc.fix,
                    "exit_code": exc.exit_code,
                }
            ),
            flush=True,
        )
    else:
        print(f"bulk-update: {exc}", file=sys.stderr)
    return exc.exit_code


def print_history(runs: Sequence[RunRecord], state_dir: Path, log_format: str) -> None:
    """The runs of the journal, a table or one JSON object per run."""
    if log_format == "json":
        for run in runs:
            undo = run_undo_sheet(state_dir, run.id)
            print(json.dumps({**run.as_dict(), "undo_sheet": str(undo) if undo else None}))
        return
    if not runs:
        print(f"No runs recorded in {state_dir}.")
        return
    for run in runs:
        counts = ", ".join(f"{n} {o}" for o, n in run.counts.items() if n) or "-"
        kind = " (dry run)" if run.dry_run else " (--full)" if run.full else ""
        took = f"{run.duration_s:.0f}s" if run.duration_s is not None else "-"
        # The kept copy is the record; the report beside the sheet may have been replaced.
        report: Path | str | None = run.report
        if run.kept_report and run.report != run.kept_report.resolve():
            report = f"{run.kept_report} (written to {run.report})"
        print(
            f"#{run.id}  {run.started:%Y-%m-%d %H:%M:%S} UTC  {run.status}{kind}  {took}  "
            f"{run.sheet}\n      {counts}\n      report: {report or '-'}"
        )
        if undo := run_undo_sheet(state_dir, run.id):
            print(f"      undo sheet: {undo}")
        elif backup_path(state_dir, run.id).is_file():
            print(f"      undo sheet: not written yet: bulk-update undo-sheet --run {run.id}")
        if run.config is not None:  # None: recorded before runs kept it
            print(f"      config: {run.config or 'none (defaults)'}")
