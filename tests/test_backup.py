"""--backup and the undo sheet (contract section 11), against the sandbox on 127.0.0.1.

The round trip: a sheet run with --backup, then its undo sheet run: every field that had a
value before is back, every other one is listed with its reason, the resume byte for byte.
A backup run killed (SIGKILL) part way: `bulk-update undo-sheet --run N` covers every
candidate the sandbox shows as patched.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import csv
import errno
import json
import os
import signal
import stat
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from openpyxl import Workbook, load_workbook

import bulk_update as bu
from bulk_update.backup import EMPTY_BEFORE, Backup, private_file, read_backup
from bulk_update.client import Kind, Response
from bulk_update.limiter import SlidingWindowLimiter
from bulk_update.models import NOT_RESTORABLE, Outcome, Patch, Rate
from bulk_update.pool import run_pool
from bulk_update.readmodel import parse_candidate
from bulk_update.report import defuse_csv_cell, xlsx_text
from bulk_update.sandbox import (
    DEMO_API_KEY,
    DEMO_SECRET,
    Faults,
    SandboxServer,
    SandboxState,
    ThreadedSandbox,
)
from bulk_update.undo import backup_path, start_backup, undo_sheet_of_run, write_undo_sheet

from .conftest import run_cli
from .test_resume import CREDS, start_run, wait_for
from .test_sandbox_read import read
from .test_web import KEY, SECRET, _config, _counts, _settings, page_for

OLD_CV = b"%PDF-1.4 the old cv \x00\x01\xff"
NEW_CV = b"%PDF-1.4 the new cv"
HEADER = [
    "uid", "First Name", "Last Name", "Email", "Phone", "Mobile Phone", "Prospect Status",
    "LinkedIn URL", "National ID", "custom_fields.Team", "Note", "Resume",
]  # fmt: skip
BEFORE: dict[str, dict[str, Any]] = {
    "AE.1": {
        "uid": "AE.1", "first_name": "Dana", "last_name": "Cohen", "email": "dana@old.example",
        "phone": "+972-3-555-0100", "mobile_phone": "054-555-0101", "prospect_status": "Sourced",
        "linkedin_url": "https://www.linkedin.com/in/dana-old", "national_id": "012345678",
        "custom_fields": {"Team": "R&D"},
        "resume": {"name": "dana-cv.pdf", "file": base64.b64encode(OLD_CV).decode()},
    },
    "AE.2": {  # empty before: mobile phone (null), no resume
        "uid": "AE.2", "first_name": "Avi", "last_name": "Levi", "email": "avi@old.example",
        "phone": "03-555-0200", "mobile_phone": None, "prospect_status": "Contacted",
        "linkedin_url": "https://www.linkedin.com/in/avi-old", "national_id": "000000018",
    },
}  # fmt: skip
ROWS = [
    ["AE.1", "Dina", "Kahn", "dina@new.example", "+972-3-555-0999", "054-555-0999",
     "interested", "https://www.linkedin.com/in/dina", "098765432", "Sales", "Renamed", "new.pdf"],
    ["AE.2", "Avraham", "Levy", "avraham@new.example", "03-555-0299", "052-555-0299",
     "Responded", "https://www.linkedin.com/in/avraham", "000000026", "Ops", "Hello", ""],
]  # fmt: skip
READABLE = (
    "first_name", "last_name", "email", "phone", "mobile_phone", "prospect_status",
    "linkedin_url", "national_id",
)  # fmt: skip


def make_state() -> SandboxState:
    state = SandboxState(custom_fields={"Team"})
    state.candidates.update(copy.deepcopy(BEFORE))
    return state


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([header, *rows])
    return path


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def sheet_rows(path: Path) -> list[dict[str, str]]:
    if path.suffix == ".csv":
        with path.open(encoding="utf-8-sig", newline="") as fh:
            return list(csv.DictReader(fh))
    ws = load_workbook(path).worksheets[0]
    lines = [["" if v is None else str(v) for v in r] for r in ws.iter_rows(values_only=True)]
    return [dict(zip(lines[0], line, strict=True)) for line in lines[1:]]


@pytest.mark.parametrize("suffix", [".xlsx", ".csv"])
def test_the_undo_sheet_puts_back_every_field_that_had_a_value(tmp_path: Path, suffix: str) -> None:
    (tmp_path / "new.pdf").write_bytes(NEW_CV)
    sheet = write_csv(tmp_path / "people.csv", HEADER, ROWS)
    undo = tmp_path / f"people.undo{suffix}"
    env = {**CREDS, "XDG_STATE_HOME": str(tmp_path / "state")}
    state = make_state()
    with ThreadedSandbox(state) as sb:
        args = ("--base-url", sb.base_url, "--rate", "1000/1")
        extra = ("--undo-sheet", undo) if suffix == ".csv" else ()
        res = run_cli("run", sheet, *args, "--backup", *extra, env=env, cwd=tmp_path)
        assert res.code == 0, res.err
        assert f"undo sheet: {undo}" in res.out
        changed = sb.snapshot().candidates
        assert changed["AE.1"]["first_name"] == "Dina"
        assert base64.b64decode(changed["AE.1"]["resume"]["file"]) == NEW_CV
        # Reads first: a GET before each PATCH.
        assert [r.method for r in sb.snapshot().requests].count("GET") == 2

        lines = {line["uid"]: line for line in sheet_rows(undo)}
        # As a report holds values: a CSV's defused (the phone's +), an XLSX's as text.
        held_as = defuse_csv_cell if suffix == ".csv" else xlsx_text
        for uid, before in BEFORE.items():
            for path in READABLE:
                if before.get(path):
                    assert lines[uid][path] == held_as(before[path]), (uid, path)
        assert lines["AE.2"]["mobile_phone"] == ""
        said = lines["AE.2"][NOT_RESTORABLE]
        assert f"mobile_phone: {EMPTY_BEFORE}" in said
        assert "note: notes are added, never replaced" in lines["AE.1"][NOT_RESTORABLE]
        assert "custom_fields.Team: Comeet does not return custom fields" in said
        resume = tmp_path / lines["AE.1"]["resume"]
        assert resume.read_bytes() == OLD_CV and resume.name == "dana-cv.pdf"
        assert mode(undo) == 0o600 and mode(resume) == 0o600
        resumes = tmp_path / "people.undo resumes"
        assert resume.parent == resumes / "run 1" / "row 2"  # a later run: beside it
        assert {mode(resume.parent), mode(resumes / "run 1"), mode(resumes)} == {0o700}
        if suffix == ".xlsx":
            listed = list(load_workbook(undo)["Not restorable"].iter_rows(values_only=True))
            assert listed[0] == ("row", "uid", "field", "why it cannot be put back")
            assert (3, "AE.2", "mobile_phone", EMPTY_BEFORE) in listed
            assert {(r[1], r[2]) for r in listed[1:]} == {
                ("AE.1", "custom_fields.Team"), ("AE.1", "note"),
                ("AE.2", "mobile_phone"), ("AE.2", "custom_fields.Team"), ("AE.2", "note"),
            }  # fmt: skip

        # Written again elsewhere: the resume is copied beside it.
        (tmp_path / "elsewhere").mkdir()
        again = tmp_path / "elsewhere" / f"again{suffix}"
        res = run_cli("undo-sheet", "--run", "1", "--undo-sheet", again, env=env, cwd=tmp_path)
        assert res.code == 0, res.err
        copied = again.parent / sheet_rows(again)[0]["resume"]
        assert copied.read_bytes() == OLD_CV and copied.parent.parent.name == "run 1"
        assert mode(copied) == 0o600 and mode(again) == 0o600

        history = run_cli("history", env=env, cwd=tmp_path)
        assert f"undo sheet: {again}" in history.out
        history = run_cli("history", "--log-format", "json", env=env, cwd=tmp_path)
        assert json.loads(history.out.splitlines()[0])["undo_sheet"] == str(again)

        # Running the undo sheet puts every readable field back, and never the column
        # saying what cannot be.
        res = run_cli("run", undo, *args, "--report", tmp_path / "undo.out.xlsx", env=env)
        assert res.code == 0, res.err + res.out
        back = sb.snapshot().candidates
    for uid, before in BEFORE.items():
        for path in READABLE:
            if before.get(path):
                assert back[uid][path] == before[path], (uid, path)
    assert base64.b64decode(back["AE.1"]["resume"]["file"]) == OLD_CV
    assert back["AE.1"]["resume"]["name"] == "dana-cv.pdf"
    assert back["AE.2"]["mobile_phone"] == "052-555-0299"  # empty before: cannot be cleared
    assert back["AE.1"]["custom_fields"] == {"Team": "Sales"}  # not readable: stays
    sent = [body for _, body in sb.state.applied[2:]]
    assert all(NOT_RESTORABLE not in str(body) and "note" not in body for body in sent)


def test_a_row_whose_read_fails_is_not_patched(tmp_path: Path) -> None:
    sheet = write_csv(tmp_path / "s.csv", ["uid", "First Name"], [["AE.1", "X"], ["ZZ.9", "Y"]])
    env = {**CREDS, "XDG_STATE_HOME": str(tmp_path / "state")}
    with ThreadedSandbox(make_state()) as sb:
        res = run_cli("run", sheet, "--base-url", sb.base_url, "--backup", env=env, cwd=tmp_path)
        assert res.code == 1
        patched = [uid for uid, _ in sb.state.applied]
        assert patched == ["AE.1"]
    assert "row 3 (uid ZZ.9): not_found" in res.err
    lines = sheet_rows(tmp_path / "s.undo.xlsx")
    assert [line["uid"] for line in lines] == ["AE.1"]  # the unknown uid: nothing to undo


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
@pytest.mark.parametrize("answered", [0, 5, 13])
def test_a_backup_run_killed_with_patches_in_flight_has_them_in_its_undo_sheet(
    tmp_path: Path, answered: int
) -> None:
    rows = [[f"RR.{i}", f"New{i}"] for i in range(30)]
    sheet = write_csv(tmp_path / "s.csv", ["uid", "First Name"], rows)
    state = SandboxState()
    for i in range(30):
        state.candidates[f"RR.{i}"] = {"uid": f"RR.{i}", "first_name": f"Old{i}"}
    state_dir = tmp_path / "state"

    def patches_answered() -> int:
        with state.lock:
            return sum(r.method == "PATCH" for r in state.requests)

    # Each PATCH is applied as it arrives and answered 0.15 s later (reads at once): the
    # kill lands once `answered` answers went back and at least one more PATCH is applied
    # and waiting for its answer, in the middle of that PATCH.
    with ThreadedSandbox(state, faults=Faults(hold_patch_s=0.15)) as sb:
        proc = start_run(sheet, sb, state_dir, "--rate", "1000/1", "--backup")
        wait_for(lambda: answered <= patches_answered() < len(state.applied))
        proc.kill()
        proc.communicate(timeout=30)
        wait_for(lambda: state.arrived == len(state.requests))  # the killed run's last ones
        patched = {uid for uid, _ in sb.snapshot().applied}
    kept = read_backup(backup_path(state_dir / "bulk-update", 1))
    heard = {row.uid for row in kept.rows if row.outcome is not None}
    unheard = patched - heard  # applied by Comeet; the run never got the answer
    assert unheard and answered < len(patched) < 30
    env = {"XDG_STATE_HOME": str(state_dir)}
    assert "bulk-update undo-sheet --run 1" in run_cli("history", env=env).out
    res = run_cli("undo-sheet", "--run", "1", env=env, cwd=tmp_path)
    assert res.code == 0, res.err
    undo = tmp_path / "s.undo.xlsx"
    assert f"undo sheet: {undo}" in res.out
    lines = {line["uid"]: line["first_name"] for line in sheet_rows(undo)}
    assert patched <= lines.keys()
    assert all(lines[uid] == f"Old{uid.split('.')[1]}" for uid in lines)
    assert mode(undo) == 0o600


class Reads:
    """A reader and sender: each patch checks that its row's backup is on disk already."""

    def __init__(self, backup_file: Path) -> None:
        self.backup_file = backup_file
        self.seen_before_patch: list[bool] = []

    async def read(self, uid: str, *, real_id: bool = False) -> Response:
        body = {"uid": uid, "first_name": f"was {uid}", "resume": None}
        return Response(Kind.OK, 200, body=body)

    async def patch(self, uid: str, body: Mapping[str, Any]) -> Response:
        lines = [json.loads(line) for line in self.backup_file.read_text().splitlines()]
        self.seen_before_patch.append(
            any(line.get("uid") == uid and "before" in line for line in lines)
        )
        return Response(Kind.OK, 200)

    def refresh_token(self) -> None:
        pass


async def test_each_rows_backup_is_on_disk_before_its_patch_leaves(tmp_path: Path) -> None:
    path = tmp_path / "run" / "backup.jsonl"
    backup = Backup(path, undo_sheet=tmp_path / "s.undo.xlsx", session=None)
    client = Reads(path)
    patches = [
        Patch(row, f"AE.{row}", {"first_name": "X", "resume": {}}, ("first_name", "resume"))
        for row in range(2, 12)
    ]
    result = await run_pool(
        patches, sender=client, backup=backup,
        limiter=SlidingWindowLimiter(Rate(1000, 1)), concurrency=3,
    )  # fmt: skip
    backup.close()
    assert [r.outcome for r in result.results] == [Outcome.UPDATED] * 10
    assert client.seen_before_patch == [True] * 10
    record = read_backup(path)
    assert [(r.uid, r.before, r.outcome) for r in record.rows] == [
        (f"AE.{row}", {"first_name": f"was AE.{row}"}, "updated") for row in range(2, 12)
    ]
    assert record.rows[0].lost == {"resume": EMPTY_BEFORE}
    assert mode(path) == 0o600 and mode(path.parent) == 0o700


def test_a_line_cut_short_by_a_kill_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "backup.jsonl"
    Backup(path, undo_sheet=tmp_path / "u.csv", session=None).close()
    with path.open("a") as fh:
        fh.write('{"row": 2, "uid": "AE.2", "before": {"email": "a@b.c"}, "lost": {}}\n')
        fh.write('{"row": 3, "uid": "AE.3", "bef')
    record = read_backup(path)
    assert [r.uid for r in record.rows] == ["AE.2"]
    assert write_undo_sheet(record, tmp_path / "u.csv") == tmp_path / "u.csv"
    assert sheet_rows(tmp_path / "u.csv") == [{"uid": "AE.2", "email": "a@b.c", NOT_RESTORABLE: ""}]


def identity(path: Path) -> tuple[int, int]:
    info = path.stat()
    return info.st_dev, info.st_ino


@pytest.fixture
def synced_folders(monkeypatch: pytest.MonkeyPatch) -> set[tuple[int, int]]:
    """The folders fsynced from now on (device, inode): os.fsync watched."""
    synced: set[tuple[int, int]] = set()
    fsync = os.fsync

    def watched(fd: int) -> None:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            synced.add((info.st_dev, info.st_ino))
        fsync(fd)

    monkeypatch.setattr(os, "fsync", watched)
    return synced


@pytest.mark.skipif(sys.platform == "win32", reason="a folder is fsynced on POSIX only")
async def test_a_new_backup_file_and_resume_have_their_names_synced_to_disk(
    tmp_path: Path, synced_folders: set[tuple[int, int]]
) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    with contextlib.ExitStack() as stack:
        async with SandboxServer(make_state()) as sb, aiohttp.ClientSession() as session:
            backup = start_backup(state_dir, 3, tmp_path / "s.undo.xlsx", session, stack)
            # runs/3/backup/backup.jsonl: the file's name in its folder, and each new
            # folder's name in its parent, up to the state dir that held none of them.
            folders = backup.path.parents[:4]
            assert folders[3] == state_dir
            assert {identity(folder) for folder in folders} <= synced_folders
            status, body = await read(session, sb.base_url, "AE.1")
            assert status == 200
            resume = Patch(2, "AE.1", {"resume": {"name": "n.pdf", "file": ""}}, ("resume",))
            await backup.keep(resume, parse_candidate(body))
    (row,) = read_backup(backup.path).rows
    kept = Path(row.before["resume"]["file"])
    assert kept.read_bytes() == OLD_CV
    assert kept.parent.parent == tmp_path / "s.undo resumes" / "run 3"
    assert {identity(f) for f in kept.parents[:4]} <= synced_folders  # up to tmp_path


def test_on_windows_a_backups_folder_is_not_opened_to_be_synced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, synced_folders: set[tuple[int, int]]
) -> None:
    # As on Windows: sys.platform says so, and os.open refuses a folder.
    monkeypatch.setattr(sys, "platform", "win32")
    open_file = os.open

    def as_on_windows(path: Any, flags: int, mode: int = 0o777) -> int:
        if Path(path).is_dir():
            raise PermissionError(13, "Permission denied", str(path))
        return open_file(path, flags, mode)

    monkeypatch.setattr(os, "open", as_on_windows)
    path = tmp_path / "run" / "backup.jsonl"
    backup = Backup(path, undo_sheet=tmp_path / "u.xlsx", session=None)
    backup.close()
    assert read_backup(path).undo_sheet == tmp_path / "u.xlsx"
    assert synced_folders == set()


class ResumeReads(Reads):
    """Every candidate holds a resume whose link is `url`."""

    def __init__(self, backup_file: Path, url: str) -> None:
        super().__init__(backup_file)
        self.url = url

    async def read(self, uid: str, *, real_id: bool = False) -> Response:
        body = {"uid": uid, "resume": {"name": "cv.pdf", "url": self.url}}
        return Response(Kind.OK, 200, body=body)


async def test_a_resume_that_cannot_be_downloaded_keeps_its_row_from_being_sent(
    tmp_path: Path,
) -> None:
    path = tmp_path / "backup.jsonl"
    patches = [Patch(2, "AE.1", {"resume": {"name": "n.pdf", "file": ""}}, ("resume",))]
    async with SandboxServer(make_state()) as sb, aiohttp.ClientSession() as session:
        backup = Backup(path, undo_sheet=tmp_path / "u.xlsx", session=session)
        client = ResumeReads(path, f"{sb.base_url}/_sandbox/files/expired")
        result = await run_pool(
            patches, sender=client, backup=backup,
            limiter=SlidingWindowLimiter(Rate(1000, 1)),
        )  # fmt: skip
    backup.close()
    (row,) = result.results
    assert (row.outcome, row.error) == (Outcome.FAILED, "backup_failed")
    assert "the resume could not be downloaded" in row.message
    assert client.seen_before_patch == []  # never sent
    assert read_backup(path).rows == []


async def test_a_backup_the_disk_refuses_stops_the_run_before_any_patch(tmp_path: Path) -> None:
    path = tmp_path / "backup.jsonl"
    backup = Backup(path, undo_sheet=tmp_path / "u.xlsx", session=None)
    backup.close()  # every write now fails, as on a full disk
    client = Reads(path)
    patches = [Patch(r, f"AE.{r}", {"first_name": "X"}, ("first_name",)) for r in range(2, 6)]
    result = await run_pool(
        patches, sender=client, backup=backup,
        limiter=SlidingWindowLimiter(Rate(1000, 1)), concurrency=2,
    )  # fmt: skip
    assert client.seen_before_patch == []
    assert result.aborted and "the backup could not be written" in result.abort_reason
    assert {r.outcome for r in result.results} == {Outcome.NOT_SENT}


def test_the_library_runs_with_a_backup_and_says_where_the_undo_sheet_went(
    tmp_path: Path,
) -> None:
    sheet = write_csv(tmp_path / "s.csv", ["uid", "Email"], [["AE.1", "x@new.example"]])
    with ThreadedSandbox(make_state()) as sb:
        settings = bu.Settings(base_url=sb.base_url, state_dir=tmp_path / "state")
        creds = bu.Credentials(DEMO_API_KEY, DEMO_SECRET)
        with bu.open_run(sheet, settings, creds) as opened:
            summary = bu.run(
                opened.plan, settings, creds, journal=opened.journal,
                backup=True, undo_sheet=tmp_path / "back.csv",
            )  # fmt: skip
    assert summary.undo_sheet == tmp_path / "back.csv"
    assert sheet_rows(tmp_path / "back.csv") == [
        {"uid": "AE.1", "email": "dana@old.example", NOT_RESTORABLE: ""}
    ]
    assert undo_sheet_of_run(tmp_path / "state", 1, tmp_path / "again.xlsx").is_file()


async def test_the_librarys_backup_argument_counts_its_reads_in_the_estimate(
    tmp_path: Path,
) -> None:
    sheet = write_csv(
        tmp_path / "s.csv", ["uid", "Email"], [["AE.1", "a@new.io"], ["AE.2", "b@new.io"]]
    )
    rate = Rate(1, 0.1)
    async with SandboxServer(make_state()) as sb:
        settings = bu.Settings(base_url=sb.base_url, rate=rate)  # backup not in the settings
        the_plan = bu.plan(bu.load(sheet), settings)
        summary = await bu.run_async(
            the_plan, settings, bu.Credentials(DEMO_API_KEY, DEMO_SECRET), report_path=False,
            backup=True, undo_sheet=tmp_path / "u.csv",
        )  # fmt: skip
    assert summary.counts[Outcome.UPDATED] == 2 and summary.undo_sheet == tmp_path / "u.csv"
    # Two reads and two patches at one request per 0.1 s, as a run with --backup says.
    assert summary.estimate_s == pytest.approx(0.3)


def test_undo_sheet_of_a_run_never_writes_over_the_runs_input_sheet(tmp_path: Path) -> None:
    sheet = write_csv(tmp_path / "people.csv", ["uid", "First Name"], [["AE.1", "Dina"]])
    env = {**CREDS, "XDG_STATE_HOME": str(tmp_path / "state")}
    with ThreadedSandbox(make_state()) as sb:
        res = run_cli(
            "run", sheet, "--base-url", sb.base_url, "--rate", "1000/1", "--backup",
            env=env, cwd=tmp_path,
        )  # fmt: skip
        assert res.code == 0, res.err
    typed = sheet.read_bytes()
    res = run_cli("undo-sheet", "--run", "1", "--undo-sheet", sheet, env=env, cwd=tmp_path)
    assert res.code == 2
    assert f"the undo sheet '{sheet}' would replace the input sheet" in res.err
    assert sheet.read_bytes() == typed
    assert read_backup(backup_path(tmp_path / "state" / "bulk-update", 1)).source == sheet


def test_undo_sheet_of_a_run_without_a_backup_says_so(tmp_path: Path) -> None:
    res = run_cli("undo-sheet", "--run", "7", "--state-dir", tmp_path, cwd=tmp_path)
    assert res.code == 2
    assert "run #7 kept no backup" in res.err and "--backup" in res.err


@pytest.mark.parametrize(
    ("flags", "said", "fix"),
    [
        (["--backup", "--undo-sheet", "u.txt"],
         "the undo sheet 'u.txt' must end in .xlsx or .csv", "a .xlsx or .csv undo sheet"),
        (["--backup", "--undo-sheet", "s.csv"], "the undo sheet 's.csv' would replace the "
         "input sheet", "another file for the undo sheet (--undo-sheet), e.g. "),
        (["--backup", "--undo-sheet", "r.xlsx", "--report", "r.xlsx"],
         "the undo sheet 'r.xlsx' would replace the results sheet", "(--undo-sheet), e.g. "),
        (["--backup", "--undo-sheet", "s.results.xlsx"],  # the report's default name
         "would replace the results sheet", "another file for the undo sheet"),
        (["--backup", "--undo-sheet", "ro/u.xlsx"],
         "the undo sheet's folder 'ro' is not writable", "a folder you can write to (--undo"),
        (["--backup", "--undo-sheet", "gone/u.xlsx"],
         "the undo sheet's folder 'gone' does not exist", "create the folder or choose"),
        (["--backup", "--undo-sheet", "ro/d.xlsx"], "the undo sheet path 'ro/d.xlsx' is a "
         "folder", "a file name ending in .xlsx or .csv (--undo-sheet)"),
        (["--undo-sheet", "u.xlsx"], "--undo-sheet 'u.xlsx' was given without --backup",
         "add --backup"),
        (["--undo-sheet", "u.xlsx", "--dry-run"], "given without --backup", "add --backup"),
    ],
)  # fmt: skip
def test_an_undo_sheet_that_cannot_be_written_stops_the_run_before_it_sends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flags: list[str], said: str, fix: str
) -> None:
    sheet = write_csv(tmp_path / "s.csv", ["uid", "Email"], [["AE.1", "x@new.example"]])
    before = sheet.read_bytes()
    (tmp_path / "ro" / "d.xlsx").mkdir(parents=True)
    access = os.access
    # A folder that takes no files (chmod does not stop root).
    monkeypatch.setattr(os, "access", lambda p, m: Path(p).name != "ro" and access(p, m))
    env = {**CREDS, "XDG_STATE_HOME": str(tmp_path / "state")}
    with ThreadedSandbox(make_state()) as sb:
        res = run_cli("run", sheet, "--base-url", sb.base_url, *flags, env=env, cwd=tmp_path)
        assert sb.state.requests == []  # not even a read
    assert res.code == 2, res.err
    message, _, given = res.err.partition("\n  Fix: ")
    assert said in message and fix in given and "Traceback" not in res.err
    assert sheet.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ro", "s.csv"]  # nothing written


@pytest.mark.parametrize("reads", [(), ("--compare", "--sandbox")])
def test_a_dry_run_neither_checks_nor_writes_an_undo_sheet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reads: tuple[str, ...]
) -> None:
    # AE.17934: a candidate the in-process sandbox holds (sample_data).
    sheet = write_csv(tmp_path / "s.csv", ["uid", "Email"], [["AE.17934", "x@new.example"]])
    (tmp_path / "ro").mkdir()
    access = os.access
    monkeypatch.setattr(os, "access", lambda p, m: Path(p).name != "ro" and access(p, m))
    kept = tmp_path / "s.undo.xlsx"  # a real run's undo sheet, where the preview's would go
    kept.write_bytes(b"the real run's")
    for where in (["--undo-sheet", "ro/u.xlsx"], []):
        res = run_cli("run", sheet, "--dry-run", "--backup", *reads, *where, cwd=tmp_path)
        assert res.code == 0, res.err
        assert "undo sheet" not in res.out + res.err
    assert kept.read_bytes() == b"the real run's" and not any((tmp_path / "ro").iterdir())


async def test_the_web_pages_preview_with_backup_checks_no_undo_sheet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The page reads an upload as if in its files folder, and its run writes the undo sheet
    # among its reports: a files folder it cannot write to is no reason to refuse a preview.
    files = tmp_path / "ro"
    files.mkdir()
    access = os.access
    monkeypatch.setattr(os, "access", lambda p, m: Path(p).name != "ro" and access(p, m))
    book = Workbook()
    book.active.append(["uid", "First Name"])
    book.active.append(["AE.1", "Dina"])
    upload = BytesIO()
    book.save(upload)
    with ThreadedSandbox(make_state(), api_key=KEY, secret=SECRET) as sb:
        settings = _settings(tmp_path, sb.base_url, backup=True)
        async with page_for(_config(tmp_path, sb, files_dir=files, settings=settings)) as page:
            status, where, _ = await page.upload("names.xlsx", upload.getvalue())
            assert status == 303, where
            status, html = await page.get(where)
    assert status == 200 and "undo sheet's folder" not in html
    assert _counts(html, "preview-counts") == {"would_update": 1}


def test_a_missing_input_is_named_before_the_undo_sheets_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "ro").mkdir()
    access = os.access
    monkeypatch.setattr(os, "access", lambda p, m: Path(p).name != "ro" and access(p, m))
    for missing in ("gone/missing.csv", "ro/missing.csv"):
        res = run_cli("run", missing, "--backup", "--sandbox", cwd=tmp_path)
        assert res.code == 2
        message, _, fix = res.err.partition("\n  Fix: ")
        assert f"missing.csv: file not found ({missing})" in message, res.err
        assert "undo sheet" not in res.err and "check the path and the file name" in fix


def test_backup_in_the_config_file_takes_an_undo_sheet_and_checks_it(tmp_path: Path) -> None:
    sheet = write_csv(tmp_path / "s.csv", ["uid", "Email"], [["AE.1", "x@new.example"]])
    config = tmp_path / "bulk_update.toml"
    config.write_text("[run]\nbackup = true\n", encoding="utf-8")
    env = {**CREDS, "XDG_STATE_HOME": str(tmp_path / "state")}
    with ThreadedSandbox(make_state()) as sb:
        run = ["run", sheet, "--base-url", sb.base_url, "--config", config]
        refused = run_cli(*run, "--undo-sheet", "s.csv", env=env, cwd=tmp_path)
        assert refused.code == 2 and "would replace the input sheet" in refused.err
        assert sb.state.requests == []
        res = run_cli(*run, "--undo-sheet", "back.csv", env=env, cwd=tmp_path)
        assert res.code == 0, res.err
    assert sheet_rows(tmp_path / "back.csv")[0]["email"] == "dana@old.example"
    # The command that writes it later checks the path it is given alike.
    later = run_cli("undo-sheet", "--run", "1", "--undo-sheet", "b.txt", env=env, cwd=tmp_path)
    assert later.code == 2 and "the undo sheet 'b.txt' must end in .xlsx or .csv" in later.err
    assert not (tmp_path / "b.txt").exists()


async def test_the_library_checks_the_undo_sheet_before_it_sends(tmp_path: Path) -> None:
    sheet = write_csv(tmp_path / "s.csv", ["uid", "Email"], [["AE.1", "x@new.example"]])
    creds = bu.Credentials(DEMO_API_KEY, DEMO_SECRET)
    async with SandboxServer(make_state()) as sb:
        settings = bu.Settings(base_url=sb.base_url)
        the_plan = bu.plan(bu.load(sheet), settings)
        with pytest.raises(bu.ConfigError, match="given without --backup"):
            await bu.run_async(the_plan, settings, creds, undo_sheet=tmp_path / "u.csv")
        with pytest.raises(bu.ConfigError, match="would replace the input sheet"):
            await bu.run_async(the_plan, settings, creds, backup=True, undo_sheet=sheet)
        report = tmp_path / "r.csv"
        with pytest.raises(bu.ConfigError, match="would replace the results sheet"):
            await bu.run_async(
                the_plan, settings, creds, backup=True, undo_sheet=report, report_path=report
            )
        assert sb.state.requests == []


async def test_with_compare_one_read_serves_both_and_only_what_is_sent_is_kept(
    tmp_path: Path,
) -> None:
    path = tmp_path / "backup.jsonl"
    backup = Backup(path, undo_sheet=tmp_path / "u.xlsx", session=None)
    client = Reads(path)
    reads: list[str] = []
    read = client.read

    async def counted(uid: str, *, real_id: bool = False) -> Response:
        reads.append(uid)
        return await read(uid, real_id=real_id)

    client.read = counted  # type: ignore[method-assign]
    body = {"first_name": "was AE.2", "last_name": "New"}
    result = await run_pool(
        [Patch(2, "AE.2", body, ("first_name", "last_name"))], sender=client, backup=backup,
        limiter=SlidingWindowLimiter(Rate(1000, 1)), compare=True,
    )  # fmt: skip
    backup.close()
    assert [r.outcome for r in result.results] == [Outcome.UPDATED] and reads == ["AE.2"]
    (row,) = read_backup(path).rows
    assert row.before == {} and set(row.lost) == {"last_name"}  # first_name was not sent


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM is POSIX")
def test_a_stopped_backup_run_writes_its_undo_sheet_itself(tmp_path: Path) -> None:
    rows = [[f"RR.{i}", f"New{i}"] for i in range(40)]
    sheet = write_csv(tmp_path / "s.csv", ["uid", "First Name"], rows)
    state = SandboxState()
    for i in range(40):
        state.candidates[f"RR.{i}"] = {"uid": f"RR.{i}", "first_name": f"Old{i}"}
    with ThreadedSandbox(state, faults=Faults(slow=1.0, slow_s=0.1)) as sb:
        proc = start_run(sheet, sb, tmp_path / "state", "--rate", "1000/1", "--backup")
        wait_for(lambda: len(state.applied) >= 4)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 3, err
        patched = {uid for uid, _ in sb.snapshot().applied}
    undo = tmp_path / "s.undo.xlsx"
    assert f"undo sheet: {undo}" in out
    lines = {line["uid"]: line["first_name"] for line in sheet_rows(undo)}
    assert patched <= lines.keys() and len(patched) < 40
    assert all(lines[uid] == f"Old{uid.split('.')[1]}" for uid in lines)


def test_the_dry_runs_estimate_counts_the_reads_of_a_backup(tmp_path: Path) -> None:
    rows = [[f"AE.{i}", f"N{i}"] for i in range(1, 9)]
    sheet = write_csv(tmp_path / "s.csv", ["uid", "First Name"], rows)
    said = {}
    for flags in ((), ("--backup",)):
        res = run_cli("run", sheet, "--dry-run", "--rate", "4/60", *flags, cwd=tmp_path)
        assert res.code == 0, res.err
        said[flags] = next(line for line in res.out.splitlines() if "would take" in line)
    # 8 patches at 4 a minute: the last two windows start at 60 s; 16 requests: at 180 s.
    assert said[()].endswith("about 1m 00s.") and said[("--backup",)].endswith("about 3m 00s.")


@pytest.mark.parametrize("refusal", [errno.EINVAL, errno.ENOTSUP])
def test_a_file_system_that_cannot_sync_a_folder_still_keeps_a_backup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, refusal: int
) -> None:
    # Some network and FUSE file systems sync files, not folders.
    fsync = os.fsync

    def files_only(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(refusal, os.strerror(refusal))
        fsync(fd)

    monkeypatch.setattr(os, "fsync", files_only)
    path = tmp_path / "run" / "backup.jsonl"
    Backup(path, undo_sheet=tmp_path / "u.xlsx", session=None).close()
    assert read_backup(path).undo_sheet == tmp_path / "u.xlsx"


def test_a_folder_sync_that_fails_for_another_reason_stops_the_backup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(OSError, match="Input/output error"):
        Backup(tmp_path / "run" / "backup.jsonl", undo_sheet=tmp_path / "u.xlsx", session=None)


@dataclass
class Descriptors:
    """The file descriptors os.open gave and os.close took back, from now on."""

    opened: list[int] = field(default_factory=list)
    closed: list[int] = field(default_factory=list)


@pytest.fixture
def descriptors(monkeypatch: pytest.MonkeyPatch) -> Descriptors:
    seen = Descriptors()
    os_open, os_close = os.open, os.close

    def counted_open(*args: Any, **kwargs: Any) -> int:
        seen.opened.append(os_open(*args, **kwargs))
        return seen.opened[-1]

    def counted_close(fd: int) -> None:
        seen.closed.append(fd)
        os_close(fd)

    monkeypatch.setattr(os, "open", counted_open)
    monkeypatch.setattr(os, "close", counted_close)
    return seen


@pytest.mark.parametrize("failing", ["folder", "file"])
def test_a_backup_that_cannot_start_closes_its_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str, descriptors: Descriptors
) -> None:
    # The web page serves run after run: each refused backup must not keep its descriptor.
    fsync = os.fsync

    def broken(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode) == (failing == "folder"):
            raise OSError(errno.EIO, "Input/output error")
        fsync(fd)

    (tmp_path / "run").mkdir()  # the folder that fails to sync is the one the file is in
    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(OSError, match="Input/output error"):
        Backup(tmp_path / "run" / "backup.jsonl", undo_sheet=tmp_path / "u.xlsx", session=None)
    assert (tmp_path / "run" / "backup.jsonl").is_file()  # it had been opened
    assert descriptors.opened and sorted(descriptors.opened) == sorted(descriptors.closed)


def test_a_private_file_whose_permissions_cannot_be_set_is_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, descriptors: Descriptors
) -> None:
    def refused(*args: Any, **kwargs: Any) -> None:
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "chmod", refused)
    with pytest.raises(PermissionError):
        private_file(tmp_path / "backup.jsonl")
    assert descriptors.opened and sorted(descriptors.opened) == sorted(descriptors.closed)
