"""The Python API: load, plan and run, each usable alone, with typed results."""

from __future__ import annotations

import asyncio
import csv
import inspect
import time
from pathlib import Path
from typing import Any

import pytest

import bulk_update as bu
from bulk_update import errors
from bulk_update.models import Outcome, PlannedRow, RowResult
from bulk_update.sandbox import DEMO_API_KEY, DEMO_SECRET, SandboxServer, SandboxState

CREDS = bu.Credentials(DEMO_API_KEY, DEMO_SECRET)


def test_public_api_is_pinned() -> None:
    assert sorted(bu.__all__) == [
        "AbortedError",
        "BulkUpdateError",
        "CannotStartError",
        "ConfigError",
        "Credentials",
        "CredentialsError",
        "DryRun",
        "InputError",
        "Journal",
        "LoadedSheet",
        "LockError",
        "OpenRun",
        "Outcome",
        "Patch",
        "Plan",
        "PlannedRow",
        "Problem",
        "Rate",
        "RowResult",
        "RunInterrupted",
        "RunLock",
        "RunSummary",
        "Settings",
        "Sheet",
        "SheetRow",
        "UnknownColumnError",
        "__version__",
        "dry_run",
        "dry_run_async",
        "load",
        "load_config",
        "open_run",
        "plan",
        "run",
        "run_async",
    ]
    for name in bu.__all__:
        assert getattr(bu, name) is not None
        obj = getattr(bu, name)
        if inspect.isfunction(obj) or inspect.isclass(obj):
            assert obj.__doc__, f"{name} has no docstring"
    assert bu.Sheet is bu.LoadedSheet  # the name it had before, kept


def test_one_exception_root_grouped_by_exit_status() -> None:
    classes = [
        obj
        for obj in vars(errors).values()
        if inspect.isclass(obj) and issubclass(obj, Exception) and obj.__module__ == errors.__name__
    ]
    for cls in classes:
        assert issubclass(cls, bu.BulkUpdateError)
        if cls is not bu.BulkUpdateError:
            assert issubclass(cls, bu.CannotStartError | bu.AbortedError), cls
            expected = 2 if issubclass(cls, bu.CannotStartError) else 3
            assert cls.exit_code == expected
        assert cls.__name__ in (errors.__doc__ or "")


def _sheet(tmp_path: Path, rows: list[list[str]]) -> Path:
    path = tmp_path / "s.csv"
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return path


def test_load_and_plan_alone(tmp_path: Path) -> None:
    path = _sheet(
        tmp_path,
        [
            ["uid", "E-mail", "updated_by.name"],
            ["AE.1", "a@example.com", ""],
            ["AE.2", "", "Rita"],
            ["AE.3", "nope", ""],
        ],
    )
    settings = bu.Settings(updated_by={"type": "app", "name": "Sync"})
    sheet = bu.load(path, settings)
    assert [c.field for c in sheet.columns] == ["uid", "email", "updated_by.name"]
    assert [r.number for r in sheet.rows] == [2, 3, 4]
    the_plan = bu.plan(sheet, settings)
    assert all(isinstance(r, PlannedRow) for r in the_plan.rows)
    first, second, third = the_plan.rows
    assert first.patch is not None
    assert first.patch.body == {
        "email": "a@example.com",
        "updated_by": {"type": "app", "name": "Sync"},
    }
    assert second.outcome is Outcome.SKIPPED and second.patch is None
    assert third.outcome is Outcome.INVALID
    assert third.problems and third.problems[0].column == "E-mail"
    assert the_plan.counts() == {Outcome.WOULD_UPDATE: 1, Outcome.SKIPPED: 1, Outcome.INVALID: 1}


def test_plan_with_a_journal_leaves_out_what_was_applied(tmp_path: Path) -> None:
    from bulk_update.journal import Journal

    path = _sheet(
        tmp_path,
        [
            ["uid", "email", "phone", "note"],
            ["AE.1", "a@example.com", "050", "hi"],
            ["AE.2", "", "", "hi"],
        ],
    )
    with Journal.open(tmp_path / "state", base_url="https://x", api_key="k") as journal:
        run_id = journal.start_run(sheet=path, report=None, dry_run=False, full=False)
        journal.record_applied(
            "AE.1",
            {"email": journal.fingerprint("a@example.com")},
            run_id,
            note_fp=journal.fingerprint("hi"),
        )
        journal.note_pending("AE.2", journal.fingerprint("hi"), run_id)
        the_plan = bu.plan(bu.load(path), journal=journal)
        full = bu.plan(bu.load(path), journal=journal, full=True)
    first, second = the_plan.rows
    assert first.patch is not None and first.patch.body == {"phone": "050"}
    assert second.outcome is Outcome.UNCHANGED
    assert second.warnings and "note not sent again" in second.warnings[0]
    # --full sends every field again, except a note that may already be there
    assert full.rows[0].patch is not None
    assert full.rows[0].patch.body == {"email": "a@example.com", "phone": "050"}
    assert full.full and full.rows[1].outcome is Outcome.UNCHANGED


async def test_run_async_against_the_sandbox(tmp_path: Path) -> None:
    path = _sheet(
        tmp_path,
        [["uid", "first_name"], ["AE.1", "Ann"], ["AE.404", "Nobody"], ["1234", "Bad"]],
    )
    state = SandboxState(candidates={"AE.1": {"uid": "AE.1"}})
    seen: list[RowResult] = []
    async with SandboxServer(state) as server:
        settings = bu.Settings(base_url=server.base_url)
        summary = await bu.run_async(
            bu.plan(bu.load(path), settings), settings, CREDS, on_result=seen.append
        )
    assert summary.counts[Outcome.UPDATED] == 1
    assert summary.counts[Outcome.NOT_FOUND] == 1
    assert summary.counts[Outcome.INVALID] == 1
    assert summary.exit_code == 1
    assert sorted(r.row for r in seen) == [2, 3, 4]
    assert summary.report_path == tmp_path / "s.results.xlsx"
    assert summary.report_path.is_file()
    assert state.candidates["AE.1"]["first_name"] == "Ann"


async def test_a_run_journals_with_its_own_journal_even_when_planned_with_another(
    tmp_path: Path,
) -> None:
    # The plan keeps the fingerprints it compared, to record them without hashing again;
    # they hold only for the journal (the scope's salt) that made them.
    from bulk_update.journal import Journal

    path = _sheet(
        tmp_path,
        [["uid", "first_name", "email"], ["AE.1", "Ann", "ann@example.com"], ["AE.2", "Bo", ""]],
    )
    state = SandboxState(candidates={"AE.1": {"uid": "AE.1"}, "AE.2": {"uid": "AE.2"}})
    async with SandboxServer(state) as server:
        settings = bu.Settings(base_url=server.base_url)
        with (
            Journal.open(tmp_path / "a", base_url=server.base_url, api_key="k1") as mine,
            Journal.open(tmp_path / "b", base_url=server.base_url, api_key="k2") as other,
        ):
            own = bu.plan(bu.load(path), settings, journal=mine)
            first = own.rows[0].patch
            assert first is not None and first.fingerprints == {
                "first_name": mine.fingerprint("Ann"),
                "email": mine.fingerprint("ann@example.com"),
            }
            await bu.run_async(own, settings, CREDS, report_path=False, journal=mine)
            foreign = bu.plan(bu.load(path), settings, journal=mine, full=True)
            await bu.run_async(foreign, settings, CREDS, report_path=False, journal=other)
            for journal in (mine, other):
                assert journal.applied_many(["AE.1", "AE.2"]) == {
                    "AE.1": {
                        "first_name": journal.fingerprint("Ann"),
                        "email": journal.fingerprint("ann@example.com"),
                    },
                    "AE.2": {"first_name": journal.fingerprint("Bo")},
                }
            assert mine.fingerprint("Ann") != other.fingerprint("Ann")
            again = bu.plan(bu.load(path), settings, journal=other)
    assert again.counts() == {Outcome.UNCHANGED: 2}


def test_dry_run_needs_no_credentials_and_writes_would_update(tmp_path: Path) -> None:
    path = _sheet(tmp_path, [["uid", "first_name"], ["AE.1", "Ann"]])
    summary = bu.run(bu.plan(bu.load(path)), dry_run=True, report_path=tmp_path / "r.csv")
    assert summary.dry_run and summary.exit_code == 0
    assert summary.counts[Outcome.WOULD_UPDATE] == 1
    assert summary.estimate_s == 0.0
    assert "would_update" in (tmp_path / "r.csv").read_text(encoding="utf-8-sig")


def test_the_summary_time_includes_writing_the_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bulk_update import pipeline

    write = pipeline._write

    def slow_write(*args: object) -> object:
        time.sleep(0.3)
        return write(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(pipeline, "_write", slow_write)
    path = _sheet(tmp_path, [["uid", "first_name"], ["AE.1", "Ann"]])
    summary = bu.run(bu.plan(bu.load(path)), dry_run=True, report_path=tmp_path / "r.csv")
    assert summary.duration_s >= 0.3


def test_run_without_credentials_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COMEET_API_KEY", raising=False)
    monkeypatch.delenv("COMEET_SECRET", raising=False)
    path = _sheet(tmp_path, [["uid", "first_name"], ["AE.1", "Ann"]])
    with pytest.raises(bu.CredentialsError):
        bu.run(bu.plan(bu.load(path)), report_path=False)


async def test_cancelling_still_writes_the_report(tmp_path: Path) -> None:
    """A second Ctrl-C cancels the run: the report is written, rows not sent say so."""
    rows = [["uid", "first_name"]] + [[f"AE.{i}", "X"] for i in range(20)]
    path = _sheet(tmp_path, rows)
    state = SandboxState(candidates={f"AE.{i}": {} for i in range(20)})
    async with SandboxServer(state) as server:
        settings = bu.Settings(base_url=server.base_url, rate=bu.Rate(2, 60.0))
        answered: list[bu.RowResult] = []
        task = asyncio.create_task(
            bu.run_async(
                bu.plan(bu.load(path), settings),
                settings,
                CREDS,
                report_path=tmp_path / "r.csv",
                on_result=answered.append,
            )
        )
        # Two answers received (not only applied by the sandbox: their answers may still be
        # on their way on a loaded machine), then the third waits for the rate limit.
        while len(answered) < 2:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(bu.RunInterrupted) as info:
            await task
    summary = info.value.summary
    assert isinstance(summary, bu.RunSummary)
    assert summary.aborted and summary.exit_code == 3
    assert summary.counts[Outcome.UPDATED] == 2
    assert summary.counts[Outcome.NOT_SENT] == 18
    text = (tmp_path / "r.csv").read_text(encoding="utf-8-sig")
    assert text.count("not_sent") == 18


# --------------------------------------------------------------------------- large sheets


def _varied_sheet(tmp_path: Path) -> Path:
    """Rows of many shapes: valid, invalid, skipped, duplicates, objects, updated_by."""
    header = [
        "uid",
        "First Name",
        "Email",
        "Prospect Status",
        "Address.Country",
        "Address.City",
        "custom_fields.Team",
        "source_contact.full_name",
        "source_contact.email",
        "updated_by.name",
        "Links",
    ]
    rows = [header]
    for n in range(120):
        rows.append(
            [
                f"AE.{n % 97}" if n % 11 else "",
                "Dana" if n % 2 else "",
                f"d{n}@example.com" if n % 3 else ("nope" if n % 9 == 0 else ""),
                ["interested", "Contacted", "", "maybe"][n % 4],
                ["IL", "us", "", "ZZ"][n % 4 if n % 5 else 2],
                "Haifa" if n % 7 else "",
                "R&D" if n % 4 == 1 else "",
                "Hunter" if n % 13 == 0 else "",
                "h@example.com" if n % 26 == 0 else "",
                "Rita" if n % 6 == 0 else "",
                "https://example.com/a https://example.com/b" if n % 10 == 0 else "",
            ]
        )
    return _sheet(tmp_path, rows)


def test_a_plan_without_bodies_says_the_same_as_one_with(tmp_path: Path) -> None:
    settings = bu.Settings(updated_by={"type": "app"})
    sheet = bu.load(_varied_sheet(tmp_path), settings)
    full = bu.plan(sheet, settings)
    lean = bu.plan(sheet, settings, bodies=2)
    assert {r.outcome for r in full.rows} >= {
        Outcome.INVALID,
        Outcome.SKIPPED,
        None,
    }
    assert [(r.row, r.uid, r.outcome, r.problems, r.fields) for r in lean.rows] == [
        (r.row, r.uid, r.outcome, r.problems, r.fields) for r in full.rows
    ]
    assert [r.fields for r in full.rows if r.patch] == [
        r.patch.fields for r in full.rows if r.patch
    ]
    assert lean.patches == full.patches[:2]
    assert lean.sends == full.sends == len(full.patches) > 2
    assert lean.counts() == full.counts()


async def test_a_plan_without_bodies_can_only_be_previewed(tmp_path: Path) -> None:
    sheet = bu.load(_varied_sheet(tmp_path))
    lean = bu.plan(sheet, bodies=0)
    summary = await bu.run_async(lean, dry_run=True, report_path=tmp_path / "r.csv")
    assert summary.counts[Outcome.WOULD_UPDATE] == lean.sends
    with pytest.raises(ValueError, match="without every body"):
        await bu.run_async(lean, credentials=CREDS, report_path=False)


def test_load_counts_duplicate_uids_as_it_reads(tmp_path: Path) -> None:
    from bulk_update.schema import find_duplicate_uids

    sheet = bu.load(_varied_sheet(tmp_path))
    assert sheet.duplicate_uids == find_duplicate_uids(sheet.rows, sheet.columns)
    assert "AE.1" in sheet.duplicate_uids and "" not in sheet.duplicate_uids


def test_load_keeps_rows_compactly(tmp_path: Path) -> None:
    from bulk_update.rowstore import RowStore

    sheet = bu.load(_varied_sheet(tmp_path))
    assert isinstance(sheet.rows, RowStore)
    assert len(sheet.rows) == 120 and sheet.rows[-1].number == 121


def test_an_input_error_far_down_the_sheet_stops_before_anything_is_planned(
    tmp_path: Path,
) -> None:
    rows = [["uid", "email"]] + [[f"AE.{n}", ""] for n in range(5000)]
    rows.append(["AE.x", "", "beyond the last header"])
    with pytest.raises(errors.InputError, match="row 5002"):
        bu.load(_sheet(tmp_path, rows))


async def test_an_xlsx_report_too_long_for_excel_is_written_as_csv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:

    monkeypatch.setattr("bulk_update.reportfile.XLSX_MAX_ROWS", 100)
    sheet = bu.load(_varied_sheet(tmp_path))
    with caplog.at_level("WARNING", logger="bulk_update"):
        summary = await bu.run_async(
            bu.plan(sheet), dry_run=True, report_path=tmp_path / "out.xlsx"
        )
    assert summary.report_path == tmp_path / "out.csv"
    assert (tmp_path / "out.csv").exists() and not (tmp_path / "out.xlsx").exists()
    assert "120 rows do not fit in an Excel sheet (at most 100)" in caplog.text
    assert "written as CSV" in caplog.text
    with (tmp_path / "out.csv").open(encoding="utf-8-sig", newline="") as fh:
        assert len(list(csv.reader(fh))) == 121


def test_loading_a_workbook_of_several_worksheets_says_which_was_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import openpyxl

    workbook = openpyxl.Workbook()
    first = workbook.active
    assert first is not None
    first.title = "Candidates"
    first.append(["uid", "Note"])
    first.append(["AE.1", "hi"])
    workbook.create_sheet("Archive").append(["uid"])
    path = tmp_path / "book.xlsx"
    workbook.save(path)
    with caplog.at_level("INFO", logger="bulk_update"):
        assert bu.load(path).raw.sheet_name == "Candidates"
    assert (
        "book.xlsx has 2 worksheets ('Candidates', 'Archive'): reading the first, 'Candidates'; "
        "--sheet NAME (or [input] sheet) reads another" in caplog.text
    )
    caplog.clear()
    with caplog.at_level("INFO", logger="bulk_update"):
        assert bu.load(path, bu.Settings(sheet="Archive")).raw.sheet_name == "Archive"
    assert "worksheets" not in caplog.text


def test_a_first_worksheet_without_the_candidates_points_to_the_one_with_uids(
    tmp_path: Path,
) -> None:
    import openpyxl

    def book(name: str, first: list[str], others: dict[str, list[str]]) -> Path:
        workbook = openpyxl.Workbook()
        sheet = workbook.active
        assert sheet is not None
        sheet.title = "Read me"
        sheet.append(first)
        for title, header in others.items():
            workbook.create_sheet(title).append(header)
        path = tmp_path / name
        workbook.save(path)
        return path

    unknown = book("a.xlsx", ["Instructions"], {"Notes": ["Text"], "New hires": ["UID", "Email"]})
    with pytest.raises(errors.UnknownColumnError) as caught:
        bu.load(unknown)
    fix = caught.value.fix or ""
    assert fix.startswith(
        "the first worksheet, 'Read me', was read; 'New hires' has a uid column: read it with "
        "--sheet 'New hires' (or [input] sheet); else rename each such column"
    )
    assert fix in str(caught.value)
    no_uid = book("b.xlsx", ["Email"], {"Candidates": ["Candidate"]})
    settings = bu.Settings(columns={"Candidate": "uid"})
    with pytest.raises(errors.InputError, match="no uid column") as caught:
        bu.load(no_uid, settings)
    assert "'Candidates' has a uid column: read it with --sheet Candidates" in (
        caught.value.fix or ""
    )
    # No other worksheet has uids, or the worksheet was named: the fix is the usual one.
    with pytest.raises(errors.InputError) as caught:
        bu.load(no_uid)
    assert caught.value.fix and caught.value.fix.startswith("add a 'uid' column")
    with pytest.raises(errors.UnknownColumnError) as caught:
        bu.load(unknown, bu.Settings(sheet="Notes"))
    assert caught.value.fix and caught.value.fix.startswith("rename each such column")
    # The worksheet read has no uid column either: said at once, with its fix.
    assert (
        caught.value.message == "Column 'Text' is not a Comeet field.\nthe sheet has no uid column"
    )
    assert "add a 'uid' column" in caught.value.fix


async def test_a_report_that_would_replace_the_input_stops_the_run_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:

    sheet = _sheet(tmp_path, [["uid", "email"], ["AE.1", "a@example.com"], ["AE.2", "b@x.io"]])
    before = sheet.read_bytes()
    the_plan = bu.plan(bu.load(sheet))
    with pytest.raises(errors.ConfigError, match="would replace the input sheet"):
        await bu.run_async(the_plan, dry_run=True, report_path=sheet)
    # An XLSX report too long for Excel becomes a CSV beside it: that one is checked too.
    monkeypatch.setattr("bulk_update.reportfile.XLSX_MAX_ROWS", 1)
    with pytest.raises(errors.ConfigError, match="would replace the input sheet"):
        await bu.run_async(the_plan, dry_run=True, report_path=sheet.with_suffix(".xlsx"))
    assert sheet.read_bytes() == before


async def test_a_journal_that_cannot_record_stops_the_sending(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk under the journal: rows applied then could be sent again by a re-run, so
    the run stops sending, says which rows were not recorded, and still writes its report."""
    from bulk_update import pipeline
    from bulk_update.journal import Journal

    uids = [f"AE.{n}" for n in range(1, 21)]
    path = _sheet(tmp_path, [["uid", "first_name"], *([u, f"Name {u}"] for u in uids)])
    state = SandboxState(candidates={u: {"uid": u} for u in uids})
    real = pipeline._journal_results
    calls: list[int] = []

    def full_after_the_first(*args: Any, **kwargs: Any) -> None:
        calls.append(1)
        if len(calls) > 1:
            raise OSError(28, "No space left on device")
        real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "_journal_results", full_after_the_first)
    async with SandboxServer(state) as server:
        settings = bu.Settings(base_url=server.base_url, concurrency=1, rate=bu.Rate(1000, 1))
        with Journal.open(tmp_path / "st", base_url=server.base_url, api_key="k") as journal:
            the_plan = bu.plan(bu.load(path), settings, journal=journal)
            summary = await bu.run_async(
                the_plan, settings, CREDS, report_path=tmp_path / "r.csv", journal=journal
            )
            recorded = {u for u, fps in journal.applied_many(uids).items() if fps}
    assert summary.aborted and summary.exit_code == 3
    assert summary.abort_reason.startswith(
        "the journal could not record confirmed rows ([Errno 28] No space left on device)"
    )
    by_uid = {r.uid: r for r in summary.results}
    updated = [u for u in uids if by_uid[u].outcome is Outcome.UPDATED]
    warned = [u for u in uids if pipeline.JOURNAL_WARNING in by_uid[u].message]
    assert recorded and set(recorded) | set(warned) == set(updated)  # each one or the other
    assert not set(recorded) & set(warned)
    # Sending stopped: the rows after the failure were not sent.
    assert warned and summary.counts[Outcome.NOT_SENT] >= len(uids) - len(updated) > 0
    assert (tmp_path / "r.csv").is_file()


async def test_a_journal_that_cannot_close_the_run_still_gets_the_report_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import sqlite3

    from bulk_update.journal import Journal

    def full(*args: Any, **kwargs: Any) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(Journal, "finish_run", full)
    path = _sheet(tmp_path, [["uid", "first_name"], ["AE.1", "Ann"]])
    with Journal.open(tmp_path / "st", base_url="https://x", api_key="k") as journal:
        the_plan = bu.plan(bu.load(path), journal=journal)
        with caplog.at_level("ERROR", logger="bulk_update"):
            summary = await bu.run_async(
                the_plan, dry_run=True, report_path=tmp_path / "r.csv", journal=journal
            )
    assert summary.counts[Outcome.WOULD_UPDATE] == 1 and (tmp_path / "r.csv").is_file()
    assert "the journal could not close this run: database or disk is full" in caplog.text
