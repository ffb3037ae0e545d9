"""The command line's arguments: `build_parser` (every command, option and help text).

cli.py runs what they ask for; the README documents every one (tests/test_cli.py).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .models import HIDDEN_CHOICES
from .version import __version__

__all__ = ["build_parser"]


EPILOG = """\
exit status:
  0  every row updated, unchanged, skipped or would_update
  1  the run finished but some row is invalid, not_found, rejected or failed
  2  the run could not start (usage, configuration, credentials, input, lock); nothing sent
  3  the run was aborted part way (authentication refused, interrupted)

credentials come from the environment: COMEET_API_KEY and COMEET_SECRET.
"""

_STATE_DIR_HELP = "where the journal lives (default: the system's state folder, see the README)"


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


def _state_dir_option(command: argparse.ArgumentParser, help: str) -> None:
    command.add_argument("--state-dir", type=Path, metavar="DIR", help=help)


def _undo_sheet_option(command: argparse.ArgumentParser, default: str) -> None:
    command.add_argument(
        "--undo-sheet", type=Path, metavar="FILE", help=f"the undo sheet, .xlsx or .csv ({default})"
    )


def _log_format_option(command: argparse.ArgumentParser, help: str) -> None:
    command.add_argument("--log-format", choices=("text", "json"), default="text", help=help)


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
    _state_dir_option(run, _STATE_DIR_HELP)
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
    run.add_argument(
        "--backup",
        action="store_true",
        help="read each candidate before its patch, keep what the patch replaces and write "
        "an undo sheet that puts it back",
    )
    _undo_sheet_option(run, "default: <input stem>.undo.xlsx beside the input")
    run.add_argument(
        "--compare",
        action="store_true",
        help="read every row's candidate first and send only what Comeet does not hold "
        "already (the report's 'before' column shows old -> new); with --dry-run: a "
        "preview against live data, reads only",
    )
    run.add_argument(
        "--resolve-ids",
        action="store_true",
        help="a uid cell of digits only (the number in Comeet's web page address) is looked "
        "up and the row sent to the candidate's real uid",
    )
    run.add_argument("--quiet", action="store_true", help="print only problems and the summary")
    _log_format_option(run, "log lines as plain text or JSON lines (default: text)")

    history = sub.add_parser(
        "history",
        help="list recent runs from the journal",
        description="List the recent runs recorded in the journal of a state dir: when, "
        "which sheet, the count of every outcome, and the results sheet.",
    )
    _state_dir_option(history, _STATE_DIR_HELP)
    history.add_argument(
        "--limit", type=int, default=20, metavar="N", help="how many runs (default: 20)"
    )
    _log_format_option(history, "a table, or one JSON object per run (default: text)")

    undo = sub.add_parser(
        "undo-sheet",
        help="write the undo sheet of a --backup run (a killed one too)",
        description="Write the undo sheet of run N (see history) from the values its "
        "--backup kept on disk: every row the run may have changed, a killed run's too.",
    )
    undo.add_argument("--run", type=int, required=True, metavar="N", help="the run's number")
    _undo_sheet_option(undo, "default: where the run meant to write it")
    _state_dir_option(undo, _STATE_DIR_HELP)

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
    _state_dir_option(
        serve,
        "where the journal and the page's results sheets live "
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
