"""The run wired once (wiring.py): opening a real run, the dry run and its engine, and the
README's Python API held to the package's exports."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import bulk_update as bu
from bulk_update import wiring
from bulk_update.columnar import CsvDryRun, dry_run_csv
from bulk_update.journal import JOURNAL_FILE
from bulk_update.models import Outcome, RowResult
from bulk_update.web.preview import load_upload, make_preview

from .conftest import ROOT, SAMPLE

KEY = "wiring-test-key"


def _settings(tmp_path: Path, **changes: Any) -> bu.Settings:
    return bu.Settings(base_url="http://127.0.0.1:9", state_dir=tmp_path / "state", **changes)


def _csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _workbook(path: Path, rows: list[list[str]], *, hidden_row: int | None = None) -> Path:
    from openpyxl import Workbook

    book = Workbook()
    ws = book.active
    assert ws is not None
    for row in rows:
        ws.append(row)
    if hidden_row is not None:
        ws.row_dimensions[hidden_row].hidden = True
    book.save(path)
    return path


SHEET = (
    "uid,first_name,email,prospect_status\n"
    "AE.1,Ada,ada@example.com,Contacted\n"
    "AE.2,Bob,not an email,Sourced\n"
    "AE.3,Cy,,contacted\n"
    "AE.4,,,\n"
    "AE.2,Dup,,\n"
    "12345,Num,,\n"
)


# --- the README ---------------------------------------------------------------------------


def test_the_readme_python_api_lists_exactly_what_the_package_exports() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Python API\n", 1)[1].split("\n### ", 1)[0]
    listed = section.split("The package exports", 1)[1].split("(tests/", 1)[0]
    names = re.findall(r"`([A-Za-z_]\w*)`", listed)
    assert sorted(names) == sorted(bu.__all__)
    assert len(names) == len(set(names))
    used = set(re.findall(r"\bbu\.([A-Za-z_]\w*)", section))
    assert used and used <= set(bu.__all__), used - set(bu.__all__)
    for name in bu.__all__:
        assert hasattr(bu, name), name


# --- open_run -----------------------------------------------------------------------------


def _a_dead_run_and_an_applied_row(settings: bu.Settings) -> int:
    """A journal with a run whose process is gone, and AE.1's first_name applied as Ada."""
    with wiring.open_journal(settings) as journal:
        run_id = journal.start_run(sheet=Path("old.csv"), report=None, dry_run=False, full=False)
        journal.record_applied("AE.1", {"first_name": journal.fingerprint("Ada")}, run_id)
    conn = sqlite3.connect(settings.state_dir / JOURNAL_FILE)
    with conn:
        conn.execute("UPDATE runs SET pid = 424242 WHERE id = ?", (run_id,))
    conn.close()
    return run_id


def test_open_run_takes_the_lock_marks_stale_runs_and_plans_against_the_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wiring, "process_alive", lambda pid: pid != 424242)
    settings = _settings(tmp_path)
    dead = _a_dead_run_and_an_applied_row(settings)
    sheet = _csv(tmp_path / "s.csv", "uid,first_name\nAE.1,Ada\nAE.2,Bob\n")
    with bu.open_run(sheet, settings, bu.Credentials(KEY, "secret")) as opened:
        with pytest.raises(bu.LockError):
            bu.RunLock(settings.state_dir, api_key=KEY).acquire()
        assert opened.journal is not None and opened.plan.journal is opened.journal
        assert {r.id: r.status for r in opened.journal.runs()}[dead] == "killed"
        outcomes = {r.uid: r.outcome for r in opened.plan.rows}
        assert outcomes == {"AE.1": Outcome.UNCHANGED, "AE.2": None}
        assert len(opened.plan.patches) == 1  # every body kept: a real run sends them
    with bu.RunLock(settings.state_dir, api_key=KEY):  # released at the end
        pass
    # full=True sends every valid row again.
    with bu.open_run(sheet, settings, bu.Credentials(KEY, "s"), full=True) as opened:
        assert opened.plan.sends == 2 and opened.plan.full


def test_open_run_without_a_journal_takes_no_lock(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    sheet = bu.load(_csv(tmp_path / "s.csv", "uid,first_name\nAE.1,Ada\n"), settings)
    with bu.open_run(sheet, settings, journal=False) as opened:
        assert opened.journal is None and opened.plan.sheet is sheet
        with bu.RunLock(settings.state_dir, api_key=KEY):
            pass
    assert not (settings.state_dir / JOURNAL_FILE).exists()


def test_open_run_releases_a_lock_it_was_given_whatever_happens(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    lock = wiring.take_run_lock(settings, KEY)
    with pytest.raises(bu.InputError), bu.open_run(tmp_path / "missing.csv", settings, lock=lock):
        pytest.fail("a sheet that cannot be read opens no run")
    with bu.RunLock(settings.state_dir, api_key=KEY):
        pass


def test_open_run_refuses_hidden_rows_nobody_decided_about_before_planning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = [["uid", "first_name"], ["AE.1", "Ada"], ["AE.2", "Bob"]]
    book = _workbook(tmp_path / "h.xlsx", rows, hidden_row=3)
    monkeypatch.setattr(wiring, "plan", lambda *a, **k: pytest.fail("planned"))
    with (
        pytest.raises(bu.InputError, match="hidden"),
        bu.open_run(book, _settings(tmp_path), journal=False),
    ):
        pytest.fail("not opened")


# --- dry_run ------------------------------------------------------------------------------


def _without_timing(done: wiring.DryRun) -> wiring.DryRun:
    summary = replace(done.summary, duration_s=0.0, report_path=None)
    return replace(done, summary=summary, columnar=False)


def test_a_dry_run_of_a_csv_goes_a_column_at_a_time_with_the_general_engines_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sheet = _csv(tmp_path / "s.csv", SHEET)
    settings = _settings(tmp_path)
    fast = bu.dry_run(sheet, settings, report_path=tmp_path / "fast.csv")
    assert fast.columnar
    monkeypatch.setattr(wiring, "dry_run_csv", lambda *a, **k: None)
    slow = bu.dry_run(sheet, settings, report_path=tmp_path / "slow.csv")
    assert not slow.columnar
    assert _without_timing(fast) == _without_timing(slow)
    assert (tmp_path / "fast.csv").read_bytes() == (tmp_path / "slow.csv").read_bytes()
    # Only the rows with a problem are kept, in sheet order, from either engine.
    assert [r.row for r in fast.summary.results] == [3, 6, 7]
    assert {r.outcome for r in fast.summary.results} == {Outcome.INVALID}
    assert fast.summary.counts[Outcome.WOULD_UPDATE] == fast.sends == 2
    assert [p.uid for p in fast.patches] == ["AE.1", "AE.3"]


def test_a_dry_run_with_a_journal_or_of_a_workbook_takes_the_general_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wiring, "dry_run_csv", lambda *a, **k: pytest.fail("column engine"))
    settings = _settings(tmp_path)
    _a_dead_run_and_an_applied_row(settings)
    sheet = _csv(tmp_path / "s.csv", "uid,first_name\nAE.1,Ada\nAE.2,Bob\n")
    with wiring.open_journal(settings) as journal:
        done = bu.dry_run(sheet, settings, journal=journal, report_path=tmp_path / "r.csv")
        assert done.summary.counts[Outcome.UNCHANGED] == 1 and done.sends == 1
        # Listed in the history as a dry run, unless asked not to be.
        assert journal.runs()[0].dry_run
        before = len(journal.runs())
        bu.dry_run(sheet, settings, journal=journal, report_path=False, in_history=False)
        assert len(journal.runs()) == before
    monkeypatch.undo()  # the engine asks: a workbook is not its
    book = _workbook(tmp_path / "w.xlsx", [["uid", "first_name"], ["AE.1", "Ada"]])
    assert not bu.dry_run(book, settings, report_path=tmp_path / "w.csv").columnar


async def test_dry_run_async_is_the_same_dry_run(tmp_path: Path) -> None:
    sheet = _csv(tmp_path / "s.csv", SHEET)
    settings = _settings(tmp_path)
    done = await bu.dry_run_async(sheet, settings, report_path=tmp_path / "a.csv")
    again = await asyncio.to_thread(bu.dry_run, sheet, settings, report_path=tmp_path / "b.csv")
    assert _without_timing(done) == _without_timing(again)


# --- the web page's preview ----------------------------------------------------------------


@pytest.fixture
def used(monkeypatch: pytest.MonkeyPatch) -> list[CsvDryRun | None]:
    """What each call of the column-at-a-time engine gave (None: it did not take the sheet)."""
    calls: list[CsvDryRun | None] = []

    def spy(*args: Any, **kwargs: Any) -> CsvDryRun | None:
        calls.append(dry_run_csv(*args, **kwargs))
        return calls[-1]

    monkeypatch.setattr(wiring, "dry_run_csv", spy)
    return calls


def test_the_web_preview_goes_a_column_at_a_time_with_the_same_preview(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, used: list[CsvDryRun | None]
) -> None:
    (tmp_path / "upload").mkdir()
    upload = _csv(tmp_path / "upload" / "s.csv", SHEET)
    settings = _settings(tmp_path)
    files = tmp_path / "files"
    files.mkdir()
    sheet = load_upload(upload, settings, files)
    fast = make_preview(sheet, settings, path=upload, journal=None, report_path=tmp_path / "f.csv")
    assert used and used[-1] is not None
    monkeypatch.setattr(wiring, "dry_run_csv", lambda *a, **k: None)
    slow = make_preview(sheet, settings, path=upload, journal=None, report_path=tmp_path / "s.csv")
    assert replace(fast, report=None) == replace(slow, report=None)
    assert (tmp_path / "f.csv").read_bytes() == (tmp_path / "s.csv").read_bytes()
    assert fast.invalid_total == 3 and fast.invalid[0].row == 3
    assert fast.invalid[0].problems == (  # a problem a line, as the row validator gives them
        "uid: this uid appears on more than one row of the sheet; keep one row per candidate",
        "email: 'not an email' is not an email address; write it like jane@example.com",
    )


def test_the_web_preview_lists_each_invalid_rows_problems_as_the_plan_has_them(
    tmp_path: Path, used: list[CsvDryRun | None]
) -> None:
    demo = SAMPLE / "candidates.csv"  # every kind of mistake
    settings = _settings(tmp_path)
    sheet = load_upload(demo, settings, SAMPLE)
    report = tmp_path / "p.csv"
    preview = make_preview(sheet, settings, path=demo, journal=None, report_path=report)
    assert used and used[0] is not None  # the column-at-a-time engine made it
    planned = [r for r in bu.plan(bu.load(demo, settings), settings).rows if r.problems]
    assert len(planned) == preview.invalid_total > 0
    for line, row in zip(preview.invalid, planned, strict=True):
        assert (line.row, line.problems) == (row.row, tuple(str(p) for p in row.problems))


def test_the_web_preview_of_a_sheet_with_files_looks_them_up_where_the_page_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The page places its uploads in its files folder: the column-at-a-time engine, which
    would look beside the uploaded file, is not used for a sheet with file cells."""
    (tmp_path / "upload").mkdir()
    upload = _csv(tmp_path / "upload" / "s.csv", "uid,resume\nAE.1,cv.pdf\n")
    files = tmp_path / "files"
    files.mkdir()
    (files / "cv.pdf").write_bytes(b"%PDF-1.4\n")
    settings = _settings(tmp_path)
    sheet = load_upload(upload, settings, files)
    monkeypatch.setattr(wiring, "dry_run_csv", lambda *a, **k: pytest.fail("column engine"))
    preview = make_preview(sheet, settings, path=upload, journal=None, report_path=None)
    assert preview.count(Outcome.WOULD_UPDATE) == 1 and preview.invalid_total == 0


def test_progress_counts_the_rows_a_request_was_made_for() -> None:
    # Settled by the plan (no request): not progress of the sending.
    for outcome in (Outcome.INVALID, Outcome.SKIPPED, Outcome.UNCHANGED):
        assert not wiring.is_progress(RowResult(2, "AE.1", outcome))
    # --compare read it and found Comeet holding it all: a row the run took to send.
    assert wiring.is_progress(RowResult(2, "AE.1", Outcome.UNCHANGED, attempts=1))
    for outcome in (Outcome.UPDATED, Outcome.REJECTED, Outcome.FAILED, Outcome.NOT_FOUND):
        assert wiring.is_progress(RowResult(2, "AE.1", outcome, attempts=1))
    # A stop left it unsent, no request made: the run did not get that far.
    assert not wiring.is_progress(RowResult(2, "AE.1", Outcome.NOT_SENT))
