"""The command line: arguments -> library call -> exit status. Printing only, no logic."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import os
import sqlite3
import sys
import time
from collections.abc import Iterator, Sequence
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

from . import __version__
from .auth import Credentials
from .columnar import dry_run_csv
from .config import Settings, default_state_dir, load_config
from .errors import AbortedError, BulkUpdateError, RunInterrupted
from .hidden import check_hidden, describe_hidden
from .journal import Journal, RunLock, process_alive, read_runs
from .models import HIDDEN_CHOICES, HiddenContent, Outcome, Patch, Rate, RowResult, RunSummary
from .network import redact_url
from .patch import summed_up
from .pipeline import Plan, load, plan, run_async
from .report import default_report_path
from .signals import on_stop_signals
from .streams import closable_standard_streams
from .warnlog import warnings_logged

log = logging.getLogger("bulk_update")

EPILOG = """\
exit status:
  0  every row updated, unchanged, skipped or would_update
  1  the run finished but some row is invalid, not_found, rejected or failed
  2  the run could not start (usage, configuration, credentials, input, lock); nothing sent
  3  the run was aborted part way (authentication refused, interrupted)

credentials come from the environment: COMEET_API_KEY and COMEET_SECRET.
"""

SHOWN_PATCHES = 5
SHOWN_PROBLEMS = 20


def _api_options(command: argparse.ArgumentParser) -> None:
    """The options `run` and `serve` share: the config file, the API and its rate limit."""
    command.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="TOML settings (default: ./bulk_update.toml if present)",
    )
    command.add_argument(
        "--base-url", metavar="URL", help="API base URL (default: https://api.comeet.co)"
    )
    command.add_argument(
        "--rate",
        metavar="N/SECONDS",
        help="at most N requests in any SECONDS window, retries included (default: 100/60)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also used by the tests that check every option has help)."""
    parser = argparse.ArgumentParser(
        prog="bulk-update",
        description="Apply a spreadsheet of candidate changes to the Comeet API.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"bulk-update {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="send a sheet's changes to Comeet (or preview them with --dry-run)",
        description="Read INPUT (CSV or XLSX, one row per candidate keyed by uid), build the "
        "smallest PATCH for every row, send them at the API's rate limit and write a results "
        "sheet with the outcome of every row.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("input", metavar="INPUT", type=Path, help="the sheet: .csv or .xlsx")
    _api_options(run)
    run.add_argument("--sheet", metavar="NAME", help="worksheet of an XLSX (default: the first)")
    run.add_argument(
        "--encoding",
        metavar="NAME",
        help="a CSV's encoding when it is not UTF-8 and cannot be detected for sure "
        "(e.g. cp1255; default: detected)",
    )
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="validate and preview: send nothing, need no credentials",
    )
    run.add_argument(
        "--report",
        type=Path,
        metavar="FILE",
        help="results sheet, .xlsx or .csv (default: <input stem>.results.xlsx beside the "
        "input; a dry run's: <input stem>.preview.xlsx)",
    )
    run.add_argument(
        "--concurrency", type=int, metavar="N", help="requests in flight at most (default: 4)"
    )
    run.add_argument(
        "--state-dir",
        type=Path,
        metavar="DIR",
        help="where the journal lives (default: the system's state folder, see the README)",
    )
    run.add_argument("--full", action="store_true", help="ignore the journal; send every valid row")
    run.add_argument(
        "--sandbox",
        action="store_true",
        help="run against a local stand-in for the Comeet API (no credentials needed)",
    )
    run.add_argument(
        "--hidden",
        choices=HIDDEN_CHOICES,
        help="XLSX rows hidden or filtered out of view, and hidden columns: send them like "
        "the others, or skip them (a real run of a sheet that has any needs one)",
    )
    run.add_argument("--quiet", action="store_true", help="print only problems and the summary")
    run.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="log lines as plain text or JSON lines (default: text)",
    )

    history = sub.add_parser(
        "history",
        help="list recent runs from the journal",
        description="List the recent runs recorded in the journal of a state dir: when, "
        "which sheet, the count of every outcome, and the results sheet.",
    )
    history.add_argument(
        "--state-dir",
        type=Path,
        metavar="DIR",
        help="where the journal lives (default: the system's state folder, see the README)",
    )
    history.add_argument(
        "--limit", type=int, default=20, metavar="N", help="how many runs (default: 20)"
    )
    history.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="a table, or one JSON object per run (default: text)",
    )

    sandbox = sub.add_parser(
        "sandbox",
        help="serve the local stand-in for the Comeet API on 127.0.0.1",
        description="Serve the sandbox API on 127.0.0.1 and print its base URL and demo "
        "credentials, for trying the tool by hand.",
    )
    sandbox.add_argument("--port", type=int, default=8765, help="port (default: 8765)")
    sandbox.add_argument(
        "--seed-from",
        type=Path,
        metavar="FILE",
        help="candidates JSON (default: sample_data/sandbox_candidates.json)",
    )
    sandbox.add_argument(
        "--rate",
        metavar="N/SECONDS",
        default="100/60",
        help="the sandbox's own limit (default: 100/60)",
    )

    serve = sub.add_parser(
        "serve",
        help="serve the web page for recruiters (upload, preview, run, download)",
        description="Serve a web page that does what `run` does: upload a CSV or XLSX, map "
        "unknown columns, preview the dry run, confirm, follow the progress and download the "
        "results sheet. It listens on 127.0.0.1 only, unless BULK_UPDATE_WEB_PASSWORD is set.",
    )
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: 127.0.0.1; any other needs BULK_UPDATE_WEB_PASSWORD)",
    )
    serve.add_argument("--port", type=int, default=8080, help="port (default: 8080; 0: any free)")
    serve.add_argument(
        "--public-url",
        metavar="URL",
        help="the address people open behind a reverse proxy, e.g. https://bulk.example.com: "
        "its Host and Origin are accepted, and cookies are Secure when it is https "
        "(default: [web] public_url of the config file; none: loopback only)",
    )
    _api_options(serve)
    serve.add_argument(
        "--state-dir",
        type=Path,
        metavar="DIR",
        help="where the journal and the page's results sheets live "
        "(default: the system's state folder, see the README)",
    )
    serve.add_argument(
        "--files-dir",
        type=Path,
        metavar="DIR",
        help="where the Resume, Picture and Files paths of uploaded sheets are looked up "
        "(default: the current folder; with --sandbox: sample_data)",
    )
    serve.add_argument(
        "--max-upload-mb",
        type=float,
        default=20.0,
        metavar="MB",
        help="largest sheet the page accepts (default: 20)",
    )
    serve.add_argument(
        "--sandbox",
        action="store_true",
        help="send to a local stand-in for the Comeet API (no credentials, no journal)",
    )
    return parser


# --- output -------------------------------------------------------------------------------


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


def _setup_logging(fmt: str, quiet: bool, stream: TextIO) -> None:
    handler = logging.StreamHandler(stream)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.WARNING if quiet else logging.INFO)
    log.propagate = False


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
            "exit_code": summary.exit_code,
        }
    )


def _format_duration(seconds: float) -> str:
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


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


#: What a run does with hidden rows and columns, by `--hidden` choice (None: not said).
_HIDDEN_DONE = {
    "send": "sent like the others (--hidden send)",
    "skip": "left out (--hidden skip)",
    None: "previewed as sent; a real run stops unless --hidden send or --hidden skip "
    "says what to do with them",
}


def _print_dry_run(
    sends: int,
    patches: Sequence[Patch],
    summary: RunSummary,
    settings: Settings,
    encoding: str | None,
) -> None:
    counts = ", ".join(f"{n} {o.value}" for o, n in summary.counts.items() if n) or "no rows"
    print(f"Would send {sends} request(s): {counts}.")
    print(settings.config_said)
    if encoding:
        print(f"encoding: {encoding}")
    hidden: HiddenContent = summary.hidden
    if hidden:
        print(f"Hidden in the sheet: {describe_hidden(hidden)}: {_HIDDEN_DONE[hidden.choice]}.")
    estimate = summary.estimate_s or 0.0
    print(
        f"At the rate limit of {settings.rate.limit} requests per {settings.rate.period:g} s "
        f"the real run would take about {_format_duration(estimate)}."
    )
    for patch in patches[:SHOWN_PATCHES]:
        body = json.dumps(summed_up(patch.body), ensure_ascii=False)
        if len(body) > 600:
            body = body[:600] + "..."
        print(f"row {patch.row} PATCH /candidates/{patch.uid} {body}")
    if sends > SHOWN_PATCHES:
        print(f"... and {sends - SHOWN_PATCHES} more")


_SETTLED = frozenset({Outcome.INVALID, Outcome.SKIPPED, Outcome.UNCHANGED})


class _Progress:
    """Rows sent so far: a rich progress bar on a terminal, else a log line per 10% or minute.

    Rows settled before sending (invalid, skipped, unchanged) are not counted.
    """

    def __init__(self, total: int, *, bar: bool, clock: Any = time.monotonic) -> None:
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

    def __enter__(self) -> _Progress:
        if self.bar:
            self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar:
            self.bar.stop()

    def update(self, result: RowResult) -> None:
        if result.outcome in _SETTLED:  # known before sending: not progress
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


# --- commands -----------------------------------------------------------------------------


async def _run_command(args: argparse.Namespace) -> int:
    args.started = time.monotonic()
    with _collector_tuned():
        return await _run(args)


@contextlib.contextmanager
def _collector_tuned() -> Iterator[None]:
    """The garbage collector tuned for a run, as it was afterwards (for callers in-process).

    A large sheet keeps millions of small objects alive from reading to the report, and the
    collector's default thresholds walk them all again and again (a quarter of a
    million-row dry run). The youngest generation is collected every 200,000 allocations, as
    mypy does for the same reason; nothing here depends on prompt collection of cycles.
    `_send` also freezes the plan before the first request.
    """
    thresholds = gc.get_threshold()
    gc.set_threshold(200_000, 30, 30)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


async def _run(args: argparse.Namespace) -> int:
    settings = load_config(args.config)
    settings = settings.with_overrides(
        base_url=args.base_url,
        rate=args.rate,
        concurrency=args.concurrency,
        state_dir=args.state_dir,
        sheet=args.sheet,
        hidden=args.hidden,
        encoding=args.encoding,
    )
    _log_config(settings)
    credentials: Credentials | None = None
    if args.sandbox:
        from .sandbox import DEMO_API_KEY, DEMO_SECRET

        credentials = Credentials(DEMO_API_KEY, DEMO_SECRET)
    elif not args.dry_run:
        credentials = Credentials.from_env()  # before reading the input further

    async with contextlib.AsyncExitStack() as stack:
        journal = _open_journal(stack, args, settings, credentials)
        if args.dry_run and journal is None:
            done = _dry_run_columnar(args, settings)
            if done is not None:
                return done
        sheet = load(args.input, settings)
        hidden = sheet.hidden
        if hidden and (args.dry_run or settings.hidden):
            log.info(
                "%s has %s: %s",
                args.input.name,
                describe_hidden(hidden),
                _HIDDEN_DONE[settings.hidden],
                extra={
                    "event": "hidden",
                    "fields": {
                        "hidden_rows": hidden.rows,
                        "hidden_columns": list(hidden.columns),
                        "hidden": settings.hidden,
                    },
                },
            )
        if not args.dry_run:
            check_hidden(sheet, settings)  # before planning: nothing to plan if it stops
        # A dry run shows the first few bodies only; it keeps no more (a million would not
        # fit in memory).
        bodies = SHOWN_PATCHES if args.dry_run else None
        the_plan = plan(sheet, settings, journal=journal, full=args.full, bodies=bodies)
        _log_planned(args, len(sheet.rows), the_plan.sends, sheet.raw.encoding)
        return await _send(the_plan, args, settings, credentials, journal)


def _log_config(settings: Settings) -> None:
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


def _log_planned(args: argparse.Namespace, rows: int, sends: int, encoding: str | None) -> None:
    log.info(
        "read %s%s: %d rows, %d to send",
        args.input.name,
        f" (encoding: {encoding})" if encoding else "",
        rows,
        sends,
        extra={"event": "planned", "fields": {"encoding": encoding}},
    )


def _dry_run_columnar(args: argparse.Namespace, settings: Settings) -> int | None:
    """A dry run of a CSV a column at a time (bulk_update/columnar/), or None if it does not apply.

    Same report, counts and preview as the general path, many times faster on a large
    sheet; anything it cannot do exactly (and every error) is left to the general path.
    """
    report = args.report or default_report_path(args.input, dry_run=True)
    done = dry_run_csv(
        args.input, settings, report_path=report, bodies=SHOWN_PATCHES, started=args.started
    )
    if done is None:
        return None
    _log_planned(args, done.rows, done.sends, done.encoding)
    if not args.quiet and args.log_format == "text":
        _print_dry_run(done.sends, done.patches, done.summary, settings, done.encoding)
    return _finish(done.summary, args)


def _open_journal(
    stack: contextlib.AsyncExitStack,
    args: argparse.Namespace,
    settings: Settings,
    credentials: Credentials | None,
) -> Journal | None:
    """Take the run lock (per API key) and open the journal of this state dir and account.

    The in-process sandbox forgets everything when the run ends, so a journal of it would
    only mislead the next run: `--sandbox` runs use none. A dry run takes no lock and uses
    the journal only when COMEET_API_KEY is set (a preview without credentials reads no
    state).
    """
    if args.sandbox:
        return None
    api_key = credentials.api_key if credentials else os.environ.get("COMEET_API_KEY", "")
    if not api_key:
        log.info(
            "no COMEET_API_KEY: the preview does not consult the journal",
            extra={"event": "no_journal"},
        )
        return None
    if not args.dry_run:
        lock = stack.enter_context(RunLock(settings.state_dir, api_key=api_key))
        if lock.took_over:
            log.warning("%s", lock.took_over, extra={"event": "lock_taken_over"})
    journal = stack.enter_context(
        Journal.open(
            settings.state_dir, base_url=settings.base_url, journal_scope=settings.journal_scope
        )
    )
    if not args.dry_run:
        journal.mark_stale_runs(process_alive)
    return journal


async def _send(
    the_plan: Plan,
    args: argparse.Namespace,
    settings: Settings,
    credentials: Credentials | None,
    journal: Journal | None,
) -> int:
    report_path: Path | bool = args.report if args.report else True
    if args.dry_run:
        summary = await run_async(
            the_plan,
            settings,
            dry_run=True,
            report_path=report_path,
            journal=journal,
            started=args.started,
        )
        if not args.quiet and args.log_format == "text":
            _print_dry_run(
                the_plan.sends, the_plan.patches, summary, settings, the_plan.sheet.raw.encoding
            )
        return _finish(summary, args)

    stop = asyncio.Event()
    main_task = asyncio.current_task()
    loop = asyncio.get_running_loop()

    def on_signal(signame: str) -> None:
        if not stop.is_set():
            log.warning(
                "%s: finishing the requests in flight, then stopping (again to stop at once)",
                signame,
                extra={"event": "stopping"},
            )
            stop.set()
        elif main_task:
            main_task.cancel()

    on_stop_signals(loop, on_signal)

    bar = sys.stderr.isatty() and not args.quiet and args.log_format == "text"
    async with contextlib.AsyncExitStack() as stack:
        if args.sandbox:
            from .sandbox import SandboxServer, load_seed

            server = await stack.enter_async_context(SandboxServer(load_seed(), rate=settings.rate))
            log.info("sandbox API at %s", server.base_url, extra={"event": "sandbox"})
            settings = settings.with_overrides(base_url=server.base_url, direct=True)
        progress = stack.enter_context(_Progress(the_plan.sends, bar=bar))
        # The sheet and the plan live until the end: take them out of the garbage
        # collector's full passes, which would otherwise walk them again and again while
        # the requests' short-lived objects come and go (a fifth of a fast run's time).
        gc.freeze()
        summary = await run_async(
            the_plan,
            settings,
            credentials,
            report_path=report_path,
            on_result=progress.update,
            stop=stop,
            journal=journal,
            started=args.started,
        )
    return _finish(summary, args)


def _finish(summary: RunSummary, args: argparse.Namespace) -> int:
    if args.log_format == "json":
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
    print(summary_line(summary), flush=True)
    return summary.exit_code


def _history_command(args: argparse.Namespace) -> int:
    state_dir = args.state_dir or default_state_dir()
    runs = read_runs(state_dir, limit=args.limit)
    if args.log_format == "json":
        for run in runs:
            print(json.dumps(run.as_dict()))
        return 0
    if not runs:
        print(f"No runs recorded in {state_dir}.")
        return 0
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
        if run.config is not None:  # None: recorded before runs kept it
            print(f"      config: {run.config or 'none (defaults)'}")
    return 0


def _sandbox_command(args: argparse.Namespace) -> int:
    from .sandbox import serve

    serve(port=args.port, seed=args.seed_from, rate=Rate.parse(args.rate))
    return 0


def _serve_command(args: argparse.Namespace) -> int:
    from .web import serve

    settings = load_config(args.config).with_overrides(
        base_url=args.base_url,
        rate=args.rate,
        state_dir=args.state_dir,
        public_url=args.public_url,
    )
    serve(
        settings,
        host=args.host,
        port=args.port,
        sandbox=args.sandbox,
        files_dir=args.files_dir,
        max_upload_mb=args.max_upload_mb,
    )
    return 0


def _print_error(exc: BulkUpdateError, args: argparse.Namespace) -> int:
    if getattr(args, "log_format", "text") == "json":
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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `bulk-update` console script; returns the exit status.

    A reader that closes standard output or error early (`| head`) does not stop the run:
    it finishes, and what it prints after that goes nowhere (streams.py).
    """
    with closable_standard_streams():
        return _main(argv)


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    quiet = getattr(args, "quiet", False)
    _setup_logging(getattr(args, "log_format", "text"), quiet, sys.stderr)
    with warnings_logged():
        return _dispatch(args)


def _dispatch(args: argparse.Namespace) -> int:
    try:
        if args.command == "sandbox":
            return _sandbox_command(args)
        if args.command == "history":
            return _history_command(args)
        if args.command == "serve":
            return _serve_command(args)
        return asyncio.run(_run_command(args))
    except RunInterrupted as exc:
        if isinstance(exc.summary, RunSummary):
            return _finish(exc.summary, args)
        print(f"bulk-update: {exc}", file=sys.stderr)
        return exc.exit_code
    except BulkUpdateError as exc:
        return _print_error(exc, args)
    except (OSError, sqlite3.OperationalError) as exc:
        # The system said no (a full disk, a file gone, the journal's disk): not a bug.
        filename = getattr(exc, "filename", None)
        where = f" ({filename})" if filename else ""
        return _print_error(
            AbortedError(
                f"the system refused: {getattr(exc, 'strerror', None) or exc}{where}",
                fix="free some space or fix the permissions, then run the same command again",
            ),
            args,
        )
    except KeyboardInterrupt:
        print("bulk-update: interrupted", file=sys.stderr)
        return 3
    except Exception as exc:  # a bug: say so plainly; the traceback only on request
        if os.environ.get("BULK_UPDATE_DEBUG"):
            raise
        print(
            f"bulk-update: unexpected error ({type(exc).__name__}). This is a bug in "
            "bulk-update; run again with BULK_UPDATE_DEBUG=1 to see the traceback.",
            file=sys.stderr,
        )
        return 3


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
