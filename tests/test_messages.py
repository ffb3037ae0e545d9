"""The README's message catalogue (`## Messages`) says what the tool really says.

Each message is triggered for real, through the library or the command line, and must match
an entry of the catalogue, where `<...>` stands for any text. A message reworded in the code
and not in the README, or the other way round, fails here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import aiohttp
import filelock
import pytest
from aiohttp import web
from openpyxl import Workbook

import bulk_update as bu
from bulk_update import cli, wiring
from bulk_update.auth import Credentials, TokenMinter
from bulk_update.client import ComeetClient, Kind, Response, classify
from bulk_update.config import Settings, load_config, parse_config
from bulk_update.errors import BulkUpdateError
from bulk_update.journal import Journal, RunLock
from bulk_update.limiter import SlidingWindowLimiter
from bulk_update.models import Column, Patch, Rate, RowResult, SheetRow
from bulk_update.pipeline import (
    JOURNAL_ABORT_REASON,
    JOURNAL_WARNING,
    NOTE_RETRY_WARNING,
    PENDING_NOTE_WARNING,
    load,
    plan,
)
from bulk_update.pool import PoolResult, RetryPolicy, run_pool
from bulk_update.report import check_report_path
from bulk_update.sandbox import (
    DEMO_API_KEY,
    DEMO_SECRET,
    SandboxServer,
    SandboxState,
    ThreadedSandbox,
    load_seed,
    serve,
)
from bulk_update.schema import InvalidRow, resolve_columns, validate_row
from bulk_update.undo import check_undo_sheet
from bulk_update.web.security import public_url_warning

from .conftest import ROOT

# --------------------------------------------------------------------------- the catalogue


@cache
def catalogue() -> tuple[re.Pattern[str], ...]:
    """Every message of the README's `## Messages`, as a pattern (`<...>`: any text).

    The messages are the backquoted spans of the first cell of each table row. A span that
    is nearly all placeholders (`<error type>: <detail>`) would match anything, so it is
    left out: what it stands for is checked by the tests one by one.
    """
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Messages\n", 1)[1].split("\n## ", 1)[0]
    patterns = []
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        first = line.split(" | ", 1)[0]
        for span in re.findall(r"`([^`]+)`", first):
            parts = re.split(r"<[^<>]+>", span)
            if sum(ch.isalnum() for part in parts for ch in part) < 4:
                continue
            patterns.append(re.compile(".+?".join(map(re.escape, parts)), re.DOTALL))
    return tuple(patterns)


def catalogued(message: str) -> bool:
    return any(p.fullmatch(message) for p in catalogue())


def check(*messages: str) -> None:
    """Every message given is in the catalogue (each line of a multi-line message)."""
    for message in messages:
        for line in message.splitlines():
            assert catalogued(line.strip()), f"not in README ## Messages: {line.strip()!r}"


def check_error(action: Callable[[], object], kind: type[BulkUpdateError] = BulkUpdateError) -> str:
    """Run `action`, which must raise `kind`; check its message; return it."""
    with pytest.raises(kind) as info:
        action()
    assert info.value.fix, "every error says how to fix it"
    check(info.value.message)
    return info.value.message


def test_the_catalogue_is_read() -> None:
    patterns = catalogue()
    assert len(patterns) > 80
    assert catalogued("Column 'Emial' is not a Comeet field. Did you mean 'email'?")
    assert not catalogued("Column 'Emial' is not a Comeet field, did you mean 'email'?")
    assert not catalogued("something the tool never says")


# --------------------------------------------------------------------------- configuration

SOURCE = "config file 'bulk_update.toml'"  # as load_config names the file


def test_configuration_messages(tmp_path: Path) -> None:
    check_error(lambda: load_config(tmp_path / "nope.toml"))
    check_error(lambda: load_config(tmp_path))  # a folder: cannot be read
    bad = tmp_path / "bad.toml"
    bad.write_text("[api\n", encoding="utf-8")
    check_error(lambda: load_config(bad))
    problems = check_error(
        lambda: parse_config(
            {"limits": {"bogus": 1, "concurrency": 0}, "api": {"timeout_s": "x"}},
            source=SOURCE,
        )
    )
    assert problems.count("\n") == 3 and "limits.bogus: unknown key" in problems
    for base_url in ("ftp://example.com", "http://example.com"):
        check_error(lambda u=base_url: parse_config({"api": {"base_url": u}}, source=SOURCE))  # type: ignore[misc]
    check_error(lambda: parse_config({"limits": {"rate": "fast"}}, source=SOURCE))
    for site in ("ftp://bulk.example.com", "https://bulk.example.com/bulk"):
        check_error(lambda s=site: parse_config({"web": {"public_url": s}}, source=SOURCE))  # type: ignore[misc]
        check_error(lambda s=site: Settings().with_overrides(public_url=s))  # type: ignore[misc]
    check(str(public_url_warning("https://bulk.example.com", None)))
    check_error(lambda: Rate.parse("fast"))
    check_error(lambda: Settings().with_overrides(concurrency=0))
    check_error(lambda: Settings(max_attempts=0).with_overrides())
    check_error(lambda: RetryPolicy(max_attempts=0))
    check_error(lambda: RetryPolicy(base_s=-1))
    check_error(lambda: TokenMinter(Credentials("k", "s"), ttl_s=0))
    limiter = SlidingWindowLimiter(Rate(1, 1))
    check_error(lambda: asyncio.run(run_pool([], sender=_Never(), limiter=limiter, concurrency=0)))


def test_columns_section_of_the_config(tmp_path: Path) -> None:
    for mapping in ({"Team": "emial"}, {"Team": "zzzzzz"}, {"A B": "email", "a-b": "phone"}):
        check_error(lambda m=mapping: resolve_columns(["uid"], mapping=m))  # type: ignore[misc]


def test_report_path_messages(tmp_path: Path) -> None:
    check_error(lambda: check_report_path(tmp_path / "r.txt"))
    check_error(lambda: check_report_path(tmp_path / "s.csv", source=tmp_path / "s.csv"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "access", lambda *args: False)  # as root, chmod would not do
        check_error(lambda: check_report_path(tmp_path / "r.csv"))
    check_error(lambda: check_report_path(tmp_path / "missing" / "r.csv"))
    (tmp_path / "file").write_text("", encoding="utf-8")
    check_error(lambda: check_report_path(tmp_path / "file" / "r.csv"))
    (tmp_path / "dir.xlsx").mkdir()
    check_error(lambda: check_report_path(tmp_path / "dir.xlsx"))
    check_error(lambda: check_report_path(tmp_path / "r.xlsx", 2_000_000))


def test_undo_sheet_path_messages(tmp_path: Path) -> None:
    sheet = tmp_path / "s.csv"

    def undo(path: Path, *, backup: bool = True) -> Callable[[], object]:
        report = tmp_path / "r.xlsx"
        return lambda: check_undo_sheet(path, backup=backup, source=sheet, report=report)

    check_error(undo(tmp_path / "u.txt"))
    check_error(undo(sheet))
    check_error(undo(tmp_path / "r.xlsx"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "access", lambda *args: False)  # as root, chmod would not do
        check_error(undo(tmp_path / "u.csv"))
    check_error(undo(tmp_path / "missing" / "u.csv"))
    (tmp_path / "file").write_text("", encoding="utf-8")
    check_error(undo(tmp_path / "file" / "u.csv"))
    (tmp_path / "dir.xlsx").mkdir()
    check_error(undo(tmp_path / "dir.xlsx"))
    check_error(undo(tmp_path / "u.xlsx", backup=False))


def test_a_report_too_long_for_excel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from bulk_update import pipeline

    monkeypatch.setattr("bulk_update.reportfile.XLSX_MAX_ROWS", 1)
    sheet = tmp_path / "s.csv"
    sheet.write_text("uid,email\nAE.1,a@example.com\nAE.2,b@example.com\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="bulk_update"):
        pipeline.run(pipeline.plan(pipeline.load(sheet)), dry_run=True)
    assert (tmp_path / "s.preview.csv").exists()
    check(*(r.getMessage() for r in caplog.records))


def test_where_the_report_goes_when_it_cannot_go_where_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from bulk_update import pipeline, report

    sheet = tmp_path / "s.csv"
    sheet.write_text("uid,email\nAE.1,a@example.com\n", encoding="utf-8")
    the_plan = plan(load(sheet))
    summary = bu.run(the_plan, dry_run=True, report_path=False)
    asked = tmp_path / "r.xlsx"
    replace, create_temp = os.replace, report.create_temp

    def locked(src: Any, dst: Any) -> None:
        if Path(dst) == asked:  # open in Excel on Windows
            raise PermissionError(13, "Permission denied", str(dst))
        replace(src, dst)

    def full(*args: Any) -> Path:
        raise OSError(28, "No space left on device")

    def read_only(path: Path) -> Path:
        if path.parent == tmp_path:
            raise PermissionError(13, "Permission denied", str(path))
        return create_temp(path)

    monkeypatch.setattr(os, "replace", locked)
    with caplog.at_level(logging.WARNING, logger="bulk_update"):
        assert pipeline._write(the_plan, summary, asked, None)[0] == tmp_path / "r (2).xlsx"
        monkeypatch.setattr(pipeline, "keep_report", full)
        assert (
            pipeline._write(the_plan, summary, tmp_path / "k.xlsx", (tmp_path / "st", 1))[1] is None
        )
        monkeypatch.setattr(report, "create_temp", read_only)
        written, kept = pipeline._write(
            the_plan, summary, tmp_path / "x.xlsx", (tmp_path / "st", 2)
        )
        assert written == kept == tmp_path / "st" / "runs" / "2" / "x.xlsx"
    assert len(caplog.records) == 3
    check(*(r.getMessage() for r in caplog.records))


def test_a_workbook_of_several_worksheets(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    workbook = Workbook()
    first = workbook.active
    assert first is not None
    first.append(["uid"])
    first.append(["AE.1"])
    workbook.create_sheet("Old")
    workbook.save(tmp_path / "two.xlsx")
    with caplog.at_level(logging.INFO, logger="bulk_update"):
        load(tmp_path / "two.xlsx")
    check(*(r.getMessage() for r in caplog.records))


def test_sandbox_messages(tmp_path: Path) -> None:
    check_error(lambda: load_seed(tmp_path / "missing.json"))
    seed = tmp_path / "seed.json"
    seed.write_text("[1, 2]", encoding="utf-8")
    check_error(lambda: load_seed(seed))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        check_error(lambda: serve(port=taken.getsockname()[1], rate=None))


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The command line run in-process from an empty folder, without credentials."""
    monkeypatch.chdir(tmp_path)
    for name in ("COMEET_API_KEY", "COMEET_SECRET", "BULK_UPDATE_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return tmp_path


def cli_error(stderr: str) -> str:
    """The message of `bulk-update: <message>\\n  Fix: <fix>`."""
    line = next(ln for ln in stderr.splitlines() if ln.startswith("bulk-update: "))
    return line.removeprefix("bulk-update: ")


def test_a_file_system_refusal_is_no_bug(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from bulk_update import report

    def full(path: Path, *args: object) -> None:
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(wiring, "dry_run_csv", lambda *args, **kwargs: None)
    monkeypatch.setattr(report, "_write_csv", full)
    (in_tmp / "s.csv").write_text("uid,Note\nAE.1,hi\n", encoding="utf-8")
    assert cli.main(["run", "s.csv", "--dry-run", "--report", "r.csv"]) == 3
    err = capsys.readouterr().err
    assert "No space left on device" in err and "unexpected error" not in err
    check(cli_error(err))
    # The journal's SQLite saying so is the same kind of refusal.
    (in_tmp / "p.csv").write_text("uid,Note\nAE.1,hi\n", encoding="utf-8")

    def disk_full(*args: object, **kwargs: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(wiring, "load", disk_full)
    assert cli.main(["run", "p.csv", "--dry-run", "--report", "p.out.csv"]) == 3
    err = capsys.readouterr().err
    assert "the system refused: database or disk is full" in err
    check(cli_error(err))


def test_usage_error(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["run"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: ")
    check(err.strip().splitlines()[-1])


# --------------------------------------------------------------------------- credentials


def test_credentials_messages(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", "cands.csv"]) == 2
    message = cli_error(capsys.readouterr().err)
    assert "COMEET_API_KEY and COMEET_SECRET" in message
    check(message)
    for env in ({"COMEET_SECRET": "s"}, {"COMEET_API_KEY": "k", "COMEET_SECRET": " "}):
        check_error(lambda e=env: Credentials.from_env(e))  # type: ignore[misc]


# --------------------------------------------------------------------------- input file


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def write_xlsx(path: Path, rows: list[list[Any]]) -> None:
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    for row in rows:
        sheet.append(row)
    workbook.save(path)


def test_input_file_messages(tmp_path: Path) -> None:
    check_error(lambda: load(tmp_path / "cands.pdf"))
    check_error(lambda: load(tmp_path / "cands"))
    check_error(lambda: load(tmp_path / "missing.csv"))
    (tmp_path / "folder.csv").mkdir()
    check_error(lambda: load(tmp_path / "folder.csv"))
    check_error(lambda: load(write_csv(tmp_path / "empty.csv", "\n\n")))
    check_error(lambda: load(write_csv(tmp_path / "unnamed.csv", "uid,,x\nAE.1,oops,\n")))
    check_error(lambda: load(write_csv(tmp_path / "long.csv", "uid,email\nAE.1,a@b.co,extra\n")))
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"uid\x00\x01\x02" * 50)
    check_error(lambda: load(binary))
    write_xlsx(tmp_path / "book.xlsx", [["uid"]])
    (tmp_path / "book.csv").write_bytes((tmp_path / "book.xlsx").read_bytes())
    check_error(lambda: load(tmp_path / "book.csv"))
    check_error(lambda: load(tmp_path / "book.xlsx", sheet="Candidates"))
    (tmp_path / "garbage.xlsx").write_bytes(b"not a zip at all" * 10)
    check_error(lambda: load(tmp_path / "garbage.xlsx"))
    check_error(lambda: load(write_csv(tmp_path / "quote.csv", 'uid\n"AE.1\n' + "x" * 2_000_000)))
    check_error(lambda: load(write_csv(tmp_path / "open.csv", 'uid,note\nAE.1,"open\nAE.2,x\n')))
    utf16 = tmp_path / "utf16.csv"
    utf16.write_bytes(b"\xff\xfeu\x00i\x00d\x00\n\x00\x00\xd8")  # a lone surrogate half
    check_error(lambda: load(utf16))


# --------------------------------------------------------------------------- columns


def test_column_messages(tmp_path: Path) -> None:
    for i, header in enumerate(("uid,Emial", "uid,Zqxwv", "uid,Email,e-mail", "Email")):
        sheet = write_csv(tmp_path / f"c{i}.csv", f"{header}\n")
        check_error(lambda s=sheet: load(s))  # type: ignore[misc]
    check_error(lambda: resolve_columns(["uid", ""]))
    # Every problem of the header row at once (issue 14).
    mapping = {"Candidate UID": "uid", "Old column": "email"}
    check_error(lambda: resolve_columns(["Candidate", "Emial", "Team"], mapping=mapping))


# --------------------------------------------------------------------------- row problems


MAIN_HEADER = (
    "uid,prospect_status,updated_by.type,updated_by.name,email,linkedin_url,address.country,"
    "links,resume,picture,files,source_contact.full_name,source_contact.email"
)
_ROWS = [
    ",Sourced",  # missing uid
    "61459710,Sourced",
    "../positions,Sourced",
    "AE.1,Hot lead",
    "AE.1,Sourced",  # a duplicate of the row above
    "AE.2,,boss,Rita",
    "AE.3,,user",  # updated_by.name missing
    "AE.4,,,,jane@example,https://www.facebook.com/jane,Portugal,not-a-url",
    "AE.5,,,,,,,,/etc/passwd.pdf,../outside.png,missing.pdf;dir.pdf;a.txt/b.pdf",
    "AE.6,,,,,,,,cv.txt,a.png;b.png,;",
    "AE.7,,,,,,,,big.pdf,empty.png,loop",
    "AE.8,,,,,,,,,,,Dana Cohen",  # source_contact.email missing
]


def test_row_problem_messages(tmp_path: Path) -> None:
    (tmp_path / "dir.pdf").mkdir()
    (tmp_path / "a.txt").write_text("x", encoding="utf-8")
    (tmp_path / "empty.png").write_bytes(b"")
    with (tmp_path / "big.pdf").open("wb") as fh:
        fh.truncate(6 * 1024 * 1024 + 1)
    (tmp_path / "loop").symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(tmp_path / "loop")
    sheet = write_csv(tmp_path / "rows.csv", "\n".join([MAIN_HEADER, *_ROWS]) + "\n")
    other = write_csv(
        tmp_path / "other.csv", "uid,updated_by.type,source_contact.full_name\nAE.9,user,Dana\n"
    )
    planned = [*plan(load(sheet)).rows, *plan(load(other)).rows]
    problems = [p for row in planned for p in row.problems]
    assert all(row.patch is None for row in planned)
    check(*(p.message for p in problems))
    said = "\n".join(str(p) for p in problems)
    for fragment in (
        "uid: the uid is missing",
        "uid: the number in the Comeet web page URL",
        "uid: '../positions' is not a Comeet uid",
        "uid: this uid appears on more than one row",
        "prospect_status: 'Hot lead' is not a prospect status",
        "updated_by.type: 'boss' is not an updated_by type",
        "updated_by.name: required when updated_by is sent; fill it in on this row",
        "updated_by.name: required when updated_by is sent; add the column",
        "email: 'jane@example' is not an email address",
        "linkedin_url: 'https://www.facebook.com/jane' is not a LinkedIn URL",
        "address.country: 'Portugal' is not an ISO 3166-1",
        "links: 'not-a-url' is not a web address",
        "resume: '/etc/passwd.pdf' is an absolute path",
        "picture: '../outside.png' points outside the sheet's folder",
        "files: file 'missing.pdf' was not found",
        "files: 'dir.pdf' is not a file",
        "files: file 'a.txt/b.pdf' cannot be read (",
        "resume: 'cv.txt' is not a resume file",
        "picture: holds 2 paths; picture takes one file",
        "files: ';' holds no file path",
        "resume: file 'big.pdf' is larger than 6 MB",
        "picture: file 'empty.png' is empty",
        "files: file 'loop' cannot be opened",
        "source_contact.email: required when source_contact is sent; fill it in on this row",
        "source_contact.email: required when source_contact is sent; add the column",
    ):
        assert fragment in said, fragment


def test_a_uid_stored_as_a_number(tmp_path: Path) -> None:
    write_xlsx(tmp_path / "n.xlsx", [["uid", "first_name"], [1.1, "Ann"]])
    (row,) = plan(load(tmp_path / "n.xlsx")).rows
    assert [p.message for p in row.problems] and "as a number" in row.problems[0].message
    check(*(p.message for p in row.problems))


def test_what_a_spreadsheet_hid_or_lost(tmp_path: Path) -> None:
    write_xlsx(
        tmp_path / "lost.xlsx",
        [
            ["uid", "phone", "address.zip", "email", "note"],
            ["AE.1", 972501234567, "02134", "a@b.co", "#N/A"],
            ["1.2E+11", "9.72E+11", 2134, "a\u200b@b.co", ""],
            ["AE.\u200b3", "", "", "", ""],
        ],
    )
    rows = plan(load(tmp_path / "lost.xlsx")).rows
    said = [str(p) for row in rows for p in row.problems]
    check(*(p.message for row in rows for p in row.problems))
    assert [s.split(":")[0] for s in said] == [
        *("phone", "note"),
        *("uid", "phone", "address.zip", "email"),
        "uid",
    ]


def test_validate_row_without_a_uid_column(tmp_path: Path) -> None:
    checked = validate_row(SheetRow(2, ("x",)), [Column(0, "Email", "email")], base_dir=tmp_path)
    assert isinstance(checked, InvalidRow)
    check(*(p.message for p in checked.problems))


def test_the_pending_note_warning(tmp_path: Path) -> None:
    sheet = write_csv(tmp_path / "n.csv", "uid,note\nAE.1,call back\n")
    with Journal.open(tmp_path / "state", base_url="http://127.0.0.1:1", api_key="k") as journal:
        run_id = journal.start_run(sheet=sheet, report=None, dry_run=False, full=False)
        journal.note_pending("AE.1", journal.fingerprint("call back"), run_id)
        (row,) = plan(load(sheet), journal=journal).rows
    assert row.warnings == (PENDING_NOTE_WARNING,)
    check(*row.warnings)
    check(NOTE_RETRY_WARNING)  # its run-time sibling: tests/test_note_retry.py
    # A journal that cannot record (tests/test_pipeline.py makes its disk full):
    check(JOURNAL_WARNING, JOURNAL_ABORT_REASON.format(error="[Errno 28] No space left"))
    check("the journal could not close this run: [Errno 28] No space left")


def test_the_note_added_warning_and_the_adoption_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sheet = write_csv(tmp_path / "n.csv", "uid,note\nAE.1,call back\n")
    state = tmp_path / "state"
    with Journal.open(state, base_url="http://127.0.0.1:1") as journal:
        run_id = journal.start_run(sheet=sheet, report=None, dry_run=False, full=False)
        journal.record_applied("AE.1", {}, run_id, note_fp=journal.fingerprint("call back"))
        (row,) = plan(load(sheet), journal=journal).rows
    check(*row.warnings)
    # A journal kept per API key (schema version 2), adopted by the account.
    conn = sqlite3.connect(state / "journal.sqlite3")
    with conn:
        conn.execute("UPDATE scopes SET key_sha256 = 'ab', name = NULL")
    conn.close()
    with caplog.at_level(logging.INFO, logger="bulk_update"):
        Journal.open(state, base_url="http://127.0.0.1:1", journal_scope="acme").close()
    (adopted,) = [r.getMessage() for r in caplog.records if "API key" in r.getMessage()]
    check(adopted)
    check_error(lambda: parse_config({"journal": {"scope": "a b"}}, source=SOURCE))


# --------------------------------------------------------------------------- API outcomes


class _Never:
    async def patch(self, uid: str, body: Mapping[str, Any]) -> Response:
        raise AssertionError("never sent")

    def refresh_token(self) -> None:
        pass


class _Answers:
    """A sender that answers every request with `make()`."""

    def __init__(self, make: Callable[[], Awaitable[Response]]) -> None:
        self.make = make

    async def patch(self, uid: str, body: Mapping[str, Any]) -> Response:
        return await self.make()

    def refresh_token(self) -> None:
        pass


async def _no_sleep(seconds: float) -> None:
    pass


async def pool_of(sender: Any, *, stop: asyncio.Event | None = None) -> PoolResult:
    return await run_pool(
        [Patch(2, "AE.1", {"first_name": "A"}, ("first_name",))],
        sender=sender,
        limiter=SlidingWindowLimiter(Rate(100, 1)),
        retry=RetryPolicy(max_attempts=2),
        sleep=_no_sleep,
        stop=stop,
    )


def test_answers_without_a_body() -> None:
    check(classify(502, {}, b"").message)
    check(classify(301, {"Location": "https://elsewhere.example"}, b"").message)
    assert classify(302, {}, b"").message == "HTTP 302 Found, not followed"


@pytest.fixture
async def silent_server() -> AsyncIterator[str]:
    """127.0.0.1: a server that answers after a second; the port after it is closed."""

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(1)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_route("PATCH", "/candidates/{uid}", slow)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_timeout_and_connection_errors(silent_server: str) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    tokens = TokenMinter(Credentials("k", "s"))
    async with aiohttp.ClientSession() as session:
        slow = ComeetClient(session, silent_server, tokens, timeout_s=0.05, user_agent="t")
        timeout = await slow.patch("AE.1", {})
        refused = await ComeetClient(session, closed, tokens, user_agent="t").patch("AE.1", {})
    assert (timeout.kind, timeout.error) == (Kind.RETRY, "timeout")
    assert (refused.kind, refused.error) == (Kind.RETRY, "connection_error")
    check(timeout.error, timeout.message, refused.error)
    # `<error type>: <detail>`, too loose for the catalogue's matcher: checked here.
    assert re.fullmatch(r"\w+: .+", refused.message), refused.message


async def test_a_bug_while_sending(caplog: pytest.LogCaptureFixture) -> None:
    async def boom() -> Response:
        raise ValueError("boom")

    with caplog.at_level(logging.ERROR, logger="bulk_update"):
        result = await pool_of(_Answers(boom))
    (row,) = result.results
    assert (row.outcome, row.error) == (bu.Outcome.FAILED, "internal_error")
    assert row.message == "ValueError: boom"  # `<error type>: <detail>`
    check(row.error, *(r.getMessage() for r in caplog.records))


async def test_a_failing_on_result_callback(caplog: pytest.LogCaptureFixture) -> None:
    async def ok() -> Response:
        return Response(Kind.OK, 200)

    def callback(result: RowResult) -> None:
        raise RuntimeError("callback bug")

    with caplog.at_level(logging.ERROR, logger="bulk_update"):
        await run_pool(
            [Patch(2, "AE.1", {"first_name": "A"}, ("first_name",))],
            sender=_Answers(ok),
            limiter=SlidingWindowLimiter(Rate(100, 1)),
            on_result=callback,
        )
    assert caplog.records
    check(*(r.getMessage() for r in caplog.records))


async def test_outcomes_of_api_answers(tmp_path: Path) -> None:
    sheet = write_csv(
        tmp_path / "s.csv",
        "uid,first_name,custom_fields.Nope\nAE.1,A,\nAE.404,B,\nAE.2,C,\nAE.3,,x\nAE.4,D,\n",
    )
    state = SandboxState(candidates={f"AE.{i}": {} for i in range(1, 5)})
    state.merged.add("AE.2")
    state.always_failing.add("AE.4")
    async with SandboxServer(state) as server:
        settings = Settings(
            base_url=server.base_url, rate=Rate(100, 1.0), max_attempts=2, retry_base_s=0
        )
        creds = Credentials(DEMO_API_KEY, DEMO_SECRET)
        summary = await bu.run_async(
            plan(load(sheet), settings), settings, creds, report_path=False
        )
    by_uid = {r.uid: r for r in summary.results}
    assert {uid: r.outcome.value for uid, r in by_uid.items()} == {
        "AE.1": "updated",
        "AE.404": "not_found",
        "AE.2": "rejected",
        "AE.3": "rejected",
        "AE.4": "failed",
    }
    for uid in ("AE.404", "AE.2", "AE.3"):
        check(by_uid[uid].outcome.value, by_uid[uid].error)
    assert by_uid["AE.4"].http_status == 503
    check(by_uid["AE.4"].outcome.value)


# --------------------------------------------------------------------------- run control


@pytest.mark.parametrize("clock_offset_s", [None, 900.0, -7200.0])
async def test_refused_credentials_abort(
    caplog: pytest.LogCaptureFixture, clock_offset_s: float | None
) -> None:
    async def refused() -> Response:
        message = "bad token signature" if clock_offset_s is None else "the token has expired"
        return Response(Kind.AUTH, 401, "unauthorized", message, clock_offset_s=clock_offset_s)

    with caplog.at_level(logging.WARNING, logger="bulk_update"):
        result = await pool_of(_Answers(refused))
    assert result.aborted
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 + (clock_offset_s is not None)  # the clock's warning, the row's line
    check(f"Run aborted: {result.abort_reason}", *said)


async def test_a_stop_before_sending() -> None:
    stop = asyncio.Event()
    stop.set()
    result = await pool_of(_Never(), stop=stop)
    assert result.aborted
    check(f"Run aborted: {result.abort_reason}")


async def test_stopped_at_once(tmp_path: Path) -> None:
    sheet = write_csv(tmp_path / "s.csv", "uid,first_name\n" + "AE.1,A\nAE.2,B\nAE.3,C\n")
    state = SandboxState(candidates={f"AE.{i}": {} for i in range(1, 4)})
    async with SandboxServer(state) as server:
        settings = Settings(base_url=server.base_url, rate=Rate(1, 60.0))
        creds = Credentials(DEMO_API_KEY, DEMO_SECRET)
        task = asyncio.create_task(
            bu.run_async(plan(load(sheet), settings), settings, creds, report_path=False)
        )
        while not state.applied:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(bu.RunInterrupted) as info:
            await task
    check(info.value.message)


def test_lock_messages(tmp_path: Path) -> None:
    with RunLock(tmp_path, api_key="k"):
        check_error(lambda: RunLock(tmp_path, api_key="k").acquire(), bu.LockError)
    # A holder that has not written its pid (yet): the message cannot name it.
    with filelock.FileLock(RunLock(tmp_path, api_key="k").path, timeout=0):
        check_error(lambda: RunLock(tmp_path, api_key="k").acquire(), bu.LockError)
    lock = RunLock(tmp_path, api_key="k")
    lock.pid_path.write_text("99999999\n", encoding="ascii")  # above any pid_max: not running
    with lock:
        assert lock.took_over is not None
        check(lock.took_over)


def test_journal_messages(tmp_path: Path) -> None:
    newer, damaged = tmp_path / "newer", tmp_path / "damaged"
    newer.mkdir()
    with contextlib.closing(sqlite3.connect(newer / "journal.sqlite3")) as conn:
        conn.execute("PRAGMA user_version = 999")
    damaged.mkdir()
    (damaged / "journal.sqlite3").write_bytes(b"not a database, not at all" * 100)
    for state_dir in (newer, damaged):
        check_error(lambda d=state_dir: Journal.open(d, base_url="http://x", api_key="k"))  # type: ignore[misc]


def test_cli_run_control_lines(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sheet = write_csv(in_tmp / "s.csv", "uid,first_name\nAE.1,Ann\n")
    assert cli.main(["run", str(sheet), "--dry-run", "--log-format", "json"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    (info,) = [e["message"] for e in events if e["event"] == "no_journal"]
    (config,) = [e["message"] for e in events if e["event"] == "config"]
    (in_tmp / "bulk_update.toml").write_text("")
    assert cli.main(["run", str(sheet), "--dry-run", "--log-format", "json"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    (config_file,) = [e["message"] for e in events if e["event"] == "config"]
    check(info, config, config_file)


@pytest.mark.parametrize("raised", [ZeroDivisionError("x"), KeyboardInterrupt()])
def test_cli_unexpected_error_and_interrupt(
    in_tmp: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    raised: BaseException,
) -> None:
    def load_fails(*args: object, **kwargs: object) -> object:
        raise raised

    monkeypatch.setattr(wiring, "load", load_fails)
    assert cli.main(["run", "s.csv", "--dry-run"]) == 3
    err = capsys.readouterr().err
    (line,) = [ln for ln in err.splitlines() if ln.startswith("bulk-update: ")]
    check(line if isinstance(raised, KeyboardInterrupt) else cli_error(err))


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMEET_", "BULK_UPDATE"))}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def test_ctrl_c_on_the_command_line(tmp_path: Path) -> None:
    sheet = write_csv(tmp_path / "s.csv", "uid,first_name\n" + "AE.1,A\nAE.2,B\nAE.3,C\n")
    state = SandboxState(candidates={f"AE.{i}": {} for i in range(1, 4)})
    with ThreadedSandbox(state) as sb:
        args = ["run", str(sheet), "--base-url", sb.base_url, "--rate", "1/60"]
        proc = subprocess.Popen(
            [sys.executable, "-m", "bulk_update", *args, "--state-dir", str(tmp_path / "state")],
            env=_env(COMEET_API_KEY=DEMO_API_KEY, COMEET_SECRET=DEMO_SECRET),
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 20
        while not sb.snapshot().applied and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 3, err
    lines = err.splitlines()
    (stopping,) = [ln for ln in lines if "SIGINT: " in ln]
    check(stopping.split(" WARNING ", 1)[1])
    check(next(ln for ln in lines if ln.startswith("Run aborted: ")))
