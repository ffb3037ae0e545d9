"""The command line: arguments -> library call -> exit status.

A run is opened and dry-run by the library (`wiring.open_run`, `wiring.dry_run_async`),
as the web page does; what is printed is formatted by `output`. What stays here is the
command line's own: which credentials (the environment's, or the in-process sandbox's),
Ctrl-C and SIGTERM, the garbage collector's tuning for a large sheet, the exit status.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import sqlite3
import sys
import time
from collections.abc import Iterator, Sequence

from .arguments import build_parser
from .auth import Credentials
from .config import Settings, default_state_dir, load_config
from .errors import AbortedError, BulkUpdateError, RunInterrupted
from .journal import Journal, read_runs
from .models import Rate, RunSummary
from .output import (
    ProgressDisplay,
    log_config,
    log_hidden,
    log_planned,
    print_dry_run,
    print_error,
    print_history,
    print_outcome,
    setup_logging,
    summary_line,
)
from .pipeline import Plan, run_async
from .planning import reads_first
from .reader import check_sheet_path
from .report import default_report_path
from .signals import on_stop_signals
from .streams import closable_standard_streams
from .undo import check_undo_sheet, undo_sheet_of_run
from .warnlog import warnings_logged
from .wiring import dry_run_async, open_journal, open_run

__all__ = ["build_parser", "main", "summary_line"]

log = logging.getLogger("bulk_update")

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
        compare=args.compare or None,
        resolve_ids=args.resolve_ids or None,
        backup=args.backup or None,
    )
    log_config(settings)
    if args.dry_run:
        # A preview writes no undo sheet, so where one would go is not checked; asked for
        # without --backup it is the command's mistake all the same (exit 2).
        check_undo_sheet(
            args.undo_sheet, backup=settings.backup, source=args.input, report=None, dry_run=True
        )
        return await _dry_run(args, settings)
    credentials: Credentials
    if args.sandbox:
        from .sandbox import DEMO_API_KEY, DEMO_SECRET

        credentials = Credentials(DEMO_API_KEY, DEMO_SECRET)
    else:
        credentials = Credentials.from_env()  # before reading the input further
    # Before the state dir and the rows: an undo sheet that cannot be written, or asked for
    # without --backup, is the command's mistake (exit 2). After the input's own checks: a
    # missing input is named, not the undo sheet's folder beside it.
    check_sheet_path(args.input)
    real_report = args.report or default_report_path(args.input)
    check_undo_sheet(args.undo_sheet, backup=settings.backup, source=args.input, report=real_report)
    # The in-process sandbox forgets everything when the run ends: a journal of it would
    # only mislead the next run, so `--sandbox` runs keep none (and take no lock).
    with open_run(
        args.input, settings, credentials, journal=not args.sandbox, full=args.full
    ) as opened:
        sheet = opened.plan.sheet
        if sheet.hidden and settings.hidden:
            log_hidden(args.input.name, sheet.hidden, settings.hidden)
        log_planned(args.input.name, len(sheet.rows), opened.plan.sends, sheet.raw.encoding)
        return await _send(opened.plan, args, settings, credentials, opened.journal)


async def _dry_run(args: argparse.Namespace, settings: Settings) -> int:
    """A dry run takes no lock, and reads the journal only when COMEET_API_KEY is set (a
    preview without credentials reads no state); never with `--sandbox`."""
    async with contextlib.AsyncExitStack() as stack:
        journal: Journal | None = None
        credentials: Credentials | None = None
        if reads_first(settings):  # a preview against live data: it reads
            if args.sandbox:
                credentials, settings = await _sandbox(stack, settings)
            else:
                credentials = Credentials.from_env()
        if os.environ.get("COMEET_API_KEY") and not args.sandbox:
            journal = stack.enter_context(open_journal(settings))
        elif not args.sandbox:
            log.info(
                "no COMEET_API_KEY: the preview does not consult the journal",
                extra={"event": "no_journal"},
            )
        done = await dry_run_async(
            args.input,
            settings,
            journal=journal,
            full=args.full,
            report_path=args.report or True,
            started=args.started,
            credentials=credentials,
        )
    if done.summary.hidden:
        log_hidden(args.input.name, done.summary.hidden, settings.hidden)
    log_planned(args.input.name, done.rows, done.sends, done.encoding)
    if not args.quiet and args.log_format == "text":
        print_dry_run(done, settings)
    return print_outcome(done.summary, args.log_format)


async def _send(
    the_plan: Plan,
    args: argparse.Namespace,
    settings: Settings,
    credentials: Credentials,
    journal: Journal | None,
) -> int:
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
            _, settings = await _sandbox(stack, settings)
        progress = stack.enter_context(ProgressDisplay(the_plan.sends, bar=bar))
        # The sheet and the plan live until the end: take them out of the garbage
        # collector's full passes, which would otherwise walk them again and again while
        # the requests' short-lived objects come and go (a fifth of a fast run's time).
        gc.freeze()
        summary = await run_async(
            the_plan,
            settings,
            credentials,
            report_path=args.report if args.report else True,
            on_result=progress.update,
            stop=stop,
            journal=journal,
            started=args.started,
            undo_sheet=args.undo_sheet,
        )
    return print_outcome(summary, args.log_format)


async def _sandbox(
    stack: contextlib.AsyncExitStack[bool | None], settings: Settings
) -> tuple[Credentials, Settings]:
    """Start the sandbox in `stack`: its credentials, and `settings` pointing at it."""
    from .sandbox import DEMO_API_KEY, DEMO_SECRET, SandboxServer, load_seed

    server = await stack.enter_async_context(SandboxServer(load_seed(), rate=settings.rate))
    log.info("sandbox API at %s", server.base_url, extra={"event": "sandbox"})
    settings = settings.with_overrides(base_url=server.base_url, direct=True)
    return Credentials(DEMO_API_KEY, DEMO_SECRET), settings


def _history_command(args: argparse.Namespace) -> int:
    state_dir = args.state_dir or default_state_dir()
    print_history(read_runs(state_dir, limit=args.limit), state_dir, args.log_format)
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
    setup_logging(getattr(args, "log_format", "text"), quiet, sys.stderr)
    with warnings_logged():
        return _dispatch(args)


def _dispatch(args: argparse.Namespace) -> int:
    log_format = getattr(args, "log_format", "text")
    try:
        if args.command == "sandbox":
            return _sandbox_command(args)
        if args.command == "history":
            return _history_command(args)
        if args.command == "undo-sheet":
            state_dir = args.state_dir or default_state_dir()
            print(f"undo sheet: {undo_sheet_of_run(state_dir, args.run, args.undo_sheet)}")
            return 0
        if args.command == "serve":
            return _serve_command(args)
        return asyncio.run(_run_command(args))
    except RunInterrupted as exc:
        if isinstance(exc.summary, RunSummary):
            return print_outcome(exc.summary, log_format)
        print(f"bulk-update: {exc}", file=sys.stderr)
        return exc.exit_code
    except BulkUpdateError as exc:
        return print_error(exc, log_format)
    except (OSError, sqlite3.OperationalError) as exc:
        # The system said no (a full disk, a file gone, the journal's disk): not a bug.
        filename = getattr(exc, "filename", None)
        where = f" ({filename})" if filename else ""
        return print_error(
            AbortedError(
                f"the system refused: {getattr(exc, 'strerror', None) or exc}{where}",
                fix="free some space or fix the permissions, then run the same command again",
            ),
            log_format,
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
