"""Every run's record kept (records.py, report.put_in_place): a preview never replaces a
real run's results sheet, every real run's sheet is kept in the state dir under its number
(`history` points there), and a report that cannot be written where asked goes to the next
free name. Runs are the real command line against the sandbox on 127.0.0.1."""

from __future__ import annotations

import csv
import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook

from bulk_update import cli, pipeline, report
from bulk_update.auth import Credentials
from bulk_update.config import Settings
from bulk_update.journal import Journal, read_runs
from bulk_update.records import keep_report, kept_folder, kept_report
from bulk_update.sandbox import DEMO_API_KEY, DEMO_SECRET, SandboxState, ThreadedSandbox

from .conftest import run_cli

CREDS = {"COMEET_API_KEY": DEMO_API_KEY, "COMEET_SECRET": DEMO_SECRET}


def write_sheet(path: Path, rows: Sequence[Sequence[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([["uid", "First Name"], *rows])
    return path


def people(n: int) -> list[list[str]]:
    return [[f"RC.{i}", f"Person{i}"] for i in range(n)]


def state_of(rows: Sequence[Sequence[str]]) -> SandboxState:
    return SandboxState(candidates={row[0]: {"uid": row[0]} for row in rows})


def outcomes(path: Path) -> list[str]:
    sheet = load_workbook(path, read_only=True)["Results"]
    return [str(r[2]) for r in list(sheet.iter_rows(values_only=True))[1:]]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- a real run, then a dry run, then history --------------------------------------------


def test_a_dry_run_after_a_real_run_leaves_the_record(tmp_path: Path) -> None:
    rows = people(4)
    sheet = write_sheet(tmp_path / "s.csv", rows)
    state_dir = tmp_path / "state"
    env = {**CREDS, "XDG_STATE_HOME": str(tmp_path / "xdg")}
    with ThreadedSandbox(state_of(rows)) as sb:
        real = run_cli(
            "run", sheet, "--base-url", sb.base_url, "--state-dir", state_dir, env=env, cwd=tmp_path
        )
        assert real.code == 0, real.err
        # The same sheet previewed afterwards: the journal says every row is applied.
        preview = run_cli(
            "run", sheet, "--base-url", sb.base_url, "--state-dir", state_dir, "--dry-run",
            env=env, cwd=tmp_path,
        )  # fmt: skip
        assert preview.code == 0, preview.err
    results, previewed = tmp_path / "s.results.xlsx", tmp_path / "s.preview.xlsx"
    assert outcomes(results) == ["updated"] * 4  # not replaced by the preview
    assert outcomes(previewed) == ["unchanged"] * 4
    assert str(previewed) in preview.out.splitlines()[-1]
    kept = kept_folder(state_dir, 1) / "s.results.xlsx"
    assert f"kept: {kept}" in real.out.splitlines()[-1]
    # The record outlives whatever becomes of the report beside the sheet.
    results.unlink()
    assert outcomes(kept) == ["updated"] * 4
    assert mode(kept) == 0o600 and mode(kept.parent) == 0o700 and mode(kept.parent.parent) == 0o700

    history = run_cli("history", "--state-dir", state_dir, cwd=tmp_path)
    assert history.code == 0, history.err
    first = history.out.split("#1 ", 1)[1]
    assert first.splitlines()[1].strip() == "4 updated"
    assert f"report: {kept} (written to {results})" in first
    second = history.out.split("#2 ", 1)[1].split("#1 ", 1)[0]
    assert "(dry run)" in second and "4 unchanged" in second and str(previewed) in second
    runs = read_runs(state_dir)
    assert [r.kept_report for r in runs] == [None, kept]


def test_a_dry_run_writes_the_preview_by_default_and_an_explicit_report_is_honoured(
    tmp_path: Path,
) -> None:
    sheet = write_sheet(tmp_path / "s.csv", people(2))
    # Without COMEET_API_KEY a CSV's dry run goes a column at a time (columnar.py).
    fast = run_cli("run", sheet, "--dry-run", cwd=tmp_path)
    assert fast.code == 0, fast.err
    assert outcomes(tmp_path / "s.preview.xlsx") == ["would_update"] * 2
    assert not (tmp_path / "s.results.xlsx").exists()
    (tmp_path / "s.preview.xlsx").unlink()
    # With a journal the general path runs it.
    general = run_cli("run", sheet, "--dry-run", env=CREDS, cwd=tmp_path)
    assert general.code == 0, general.err
    assert "s.preview.xlsx" in general.out.splitlines()[-1]
    assert not (tmp_path / "s.results.xlsx").exists()
    asked = tmp_path / "mine.results.xlsx"
    chosen = run_cli("run", sheet, "--dry-run", "--report", asked, cwd=tmp_path)
    assert chosen.code == 0 and outcomes(asked) == ["would_update"] * 2


# --- a report that cannot be written where asked ------------------------------------------


@pytest.fixture
def locked(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Paths that cannot be replaced, as a file open in Excel on Windows (the list to fill)."""
    paths: list[Path] = []
    replace = os.replace

    def refusing(src: Any, dst: Any, **kwargs: Any) -> None:
        if Path(dst) in paths:
            raise PermissionError(13, "Permission denied", str(dst))
        replace(src, dst, **kwargs)

    monkeypatch.setattr(os, "replace", refusing)
    return paths


def test_a_locked_report_goes_to_the_next_free_name_and_the_run_says_where(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    locked: list[Path],
) -> None:
    rows = people(3)
    sheet = write_sheet(tmp_path / "candidates.csv", rows)
    asked = tmp_path / "candidates.results.xlsx"
    asked.write_bytes(b"the sheet open in Excel")
    (tmp_path / "candidates.results (2).xlsx").write_bytes(b"an earlier one")
    locked.append(asked)
    for name, value in CREDS.items():
        monkeypatch.setenv(name, value)
    with ThreadedSandbox(state_of(rows)) as sb:
        code = cli.main(
            ["run", str(sheet), "--base-url", sb.base_url, "--state-dir", str(tmp_path / "st")]
        )
        assert len(sb.state.applied) == 3
    out, err = capsys.readouterr()
    assert code == 0, err
    moved = tmp_path / "candidates.results (3).xlsx"
    assert outcomes(moved) == ["updated"] * 3
    assert asked.read_bytes() == b"the sheet open in Excel"
    assert (tmp_path / "candidates.results (2).xlsx").read_bytes() == b"an earlier one"
    assert f"{asked} cannot be replaced (Permission denied; is it open in Excel?): " in err
    assert f"the report was written to {moved}" in err
    last = out.strip().splitlines()[-1]
    assert f"report: {moved} (candidates.results.xlsx could not be replaced)" in last
    (run,) = read_runs(tmp_path / "st")
    assert run.report == moved and run.kept_report is not None
    assert outcomes(run.kept_report) == ["updated"] * 3


def test_a_locked_preview_goes_to_the_next_free_name_on_both_dry_run_paths(
    tmp_path: Path, locked: list[Path]
) -> None:
    sheet = write_sheet(tmp_path / "s.csv", people(2))
    asked = tmp_path / "s.preview.xlsx"
    locked.append(asked)
    fast = pipeline_dry_run_columnar(sheet, asked)
    assert fast == tmp_path / "s.preview (2).xlsx" and outcomes(fast) == ["would_update"] * 2
    general = pipeline.run(pipeline.plan(pipeline.load(sheet)), dry_run=True)
    assert general.report_path == tmp_path / "s.preview (3).xlsx"
    assert general.report_asked == asked and not asked.exists()


def pipeline_dry_run_columnar(sheet: Path, report_path: Path) -> Path | None:
    from bulk_update.columnar import dry_run_csv

    done = dry_run_csv(sheet, report_path=report_path)
    assert done is not None
    assert done.summary.report_asked == report_path
    return done.summary.report_path


def test_a_folder_that_refuses_the_report_leaves_it_in_the_state_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    rows = people(2)
    sheet = write_sheet(tmp_path / "s.csv", rows)
    create_temp = report.create_temp

    def refusing(path: Path) -> Path:
        if path.parent == tmp_path:  # the folder was made read-only while the run went on
            raise PermissionError(13, "Permission denied", str(path))
        return create_temp(path)

    monkeypatch.setattr(report, "create_temp", refusing)
    with ThreadedSandbox(state_of(rows)) as sb:
        settings = Settings(base_url=sb.base_url)
        with Journal.open(tmp_path / "st", base_url=sb.base_url, api_key=DEMO_API_KEY) as journal:
            the_plan = pipeline.plan(pipeline.load(sheet), settings, journal=journal)
            summary = pipeline.run(
                the_plan, settings, Credentials(DEMO_API_KEY, DEMO_SECRET), journal=journal
            )
    kept = kept_folder(tmp_path / "st", 1) / "s.results.xlsx"
    assert summary.report_path == kept == summary.kept_report
    assert outcomes(kept) == ["updated"] * 2 and mode(kept) == 0o600
    assert f"the report could not be written to {tmp_path / 's.results.xlsx'}" in caplog.text
    (run,) = read_runs(tmp_path / "st")
    assert run.report == kept.resolve()


# --- the kept copies --------------------------------------------------------------------


def test_a_copy_left_by_a_journal_moved_away_is_set_aside_not_replaced(tmp_path: Path) -> None:
    old = tmp_path / "old.results.xlsx"
    old.write_bytes(b"run 1 of the journal moved away")
    new = tmp_path / "new.results.xlsx"
    new.write_bytes(b"run 1 of the new journal")
    first = keep_report(old, tmp_path / "st", 1)
    second = keep_report(new, tmp_path / "st", 1)
    assert second == kept_folder(tmp_path / "st", 1) / "new.results.xlsx"
    assert kept_report(tmp_path / "st", 1) == second
    assert second.read_bytes() == b"run 1 of the new journal"
    set_aside = tmp_path / "st" / "runs" / "1.earlier" / first.name
    assert set_aside.read_bytes() == b"run 1 of the journal moved away"
    assert kept_report(tmp_path / "st", 2) is None
