"""What the person does not see is never sent unasked (issue 12, parts 4, 5 and 10).

Hidden worksheets, rows hidden or filtered out of view, hidden columns; a worksheet read by
default that cannot be read points to the ones that can; library warnings become log lines.
Every workbook is made here with openpyxl.
"""

from __future__ import annotations

import json
import logging
import warnings
import zipfile
from pathlib import Path

import pytest
from openpyxl import Workbook, load_workbook

import bulk_update as bu
from bulk_update import errors
from bulk_update.auth import Credentials
from bulk_update.hidden import HIDDEN_ROW_SKIPPED, check_hidden
from bulk_update.models import SheetRow
from bulk_update.reader import list_worksheets, read_sheet
from bulk_update.rowstore import RowStore
from bulk_update.sandbox import ThreadedSandbox
from bulk_update.warnlog import warnings_logged

from .conftest import run_cli
from .test_e2e import CREDS, make_state, report_rows

UIDS = ["AE.1", "AE.2", "AE.3", "AE.4"]


def hidden_workbook(path: Path) -> Path:
    """A hidden old export first; then the candidates, rows 3 and 5 filtered out of view
    (an autoFilter and hidden rows, as Excel saves a filter) and column C hidden."""
    workbook = Workbook()
    old = workbook.active
    assert old is not None
    old.title = "Old export"
    old.append(["uid", "first_name"])
    old.append(["AE.9999", "Stale"])
    old.sheet_state = "hidden"
    sheet = workbook.create_sheet("Candidates")
    sheet.append(["uid", "first_name", "custom_fields.Team"])
    sheet.append(["AE.1", "Dana", "Red"])
    sheet.append(["AE.2", "Noa", "Blue"])
    sheet.append(["AE.3", "Maya", "Green"])
    sheet.append(["AE.4", "Avi", ""])
    sheet.auto_filter.ref = "A1:C5"
    sheet.row_dimensions[3].hidden = True
    sheet.row_dimensions[5].hidden = True
    sheet.column_dimensions["C"].hidden = True
    workbook.active = 1
    workbook.save(path)
    return path


# --- the reader ---------------------------------------------------------------------------


def test_the_reader_sees_hidden_rows_and_columns_and_skips_hidden_worksheets(
    tmp_path: Path,
) -> None:
    raw = read_sheet(hidden_workbook(tmp_path / "book.xlsx"))
    assert raw.sheet_name == "Candidates"  # not the hidden first worksheet
    assert [(r.number, r.values[0], r.hidden) for r in raw.rows] == [
        (2, "AE.1", False),
        (3, "AE.2", True),
        (4, "AE.3", False),
        (5, "AE.4", True),
    ]
    assert (raw.hidden_rows, raw.hidden_columns) == (2, (2,))
    assert [(w.name, w.hidden) for w in list_worksheets(tmp_path / "book.xlsx")] == [
        ("Old export", True),
        ("Candidates", False),
    ]


def test_a_hidden_worksheet_is_read_when_named_and_the_log_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = hidden_workbook(tmp_path / "book.xlsx")
    with caplog.at_level("INFO", logger="bulk_update"):
        sheet = bu.load(path, bu.Settings(sheet="Old export"))
    assert [r.values for r in sheet.rows] == [("AE.9999", "Stale")]
    assert "worksheet 'Old export' is hidden in the workbook; read because it was asked" in (
        caplog.text
    )


def test_a_workbook_whose_every_worksheet_is_hidden_is_refused(tmp_path: Path) -> None:
    workbook = Workbook()
    first = workbook.active
    assert first is not None
    first.append(["uid"])
    workbook.save(tmp_path / "saved.xlsx")
    # Excel (and openpyxl) keep one worksheet visible; another program may not.
    with (
        zipfile.ZipFile(tmp_path / "saved.xlsx") as source,
        zipfile.ZipFile(tmp_path / "book.xlsx", "w") as target,
    ):
        for item in source.infolist():
            data = source.read(item)
            if item.filename == "xl/workbook.xml":
                assert b'state="visible"' in data
                data = data.replace(b'state="visible"', b'state="veryHidden"')
            target.writestr(item, data)
    with pytest.raises(errors.InputError, match="every worksheet is hidden") as caught:
        read_sheet(tmp_path / "book.xlsx")
    assert "--sheet" in (caught.value.fix or "")


def test_only_hidden_columns_that_hold_data_and_feed_a_field_are_counted(tmp_path: Path) -> None:
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(["uid", "first_name", "last_name", "Internal notes", "email"])
    sheet.append(["AE.1", "Dana", "", "private", "dana@example.com"])
    for letter in "CDE":  # C: hidden but empty; D: hidden but ignored; E: hidden, sent
        sheet.column_dimensions[letter].hidden = True
    workbook.save(tmp_path / "book.xlsx")
    loaded = bu.load(tmp_path / "book.xlsx", bu.Settings(ignore_columns=("Internal notes",)))
    assert loaded.hidden == bu.models.HiddenContent(rows=0, columns=("email",))
    assert not loaded.rows[0].hidden


def test_the_row_store_keeps_which_rows_are_hidden() -> None:
    rows = [SheetRow(n, (str(n),), hidden=n % 3 == 0) for n in range(2, 9000)]
    store = RowStore(1, rows)
    assert list(store) == rows
    assert store[1].hidden and not store[0].hidden


# --- planning and the library's run ---------------------------------------------------------


def test_skip_plans_hidden_rows_as_skipped_and_sends_no_hidden_column(tmp_path: Path) -> None:
    sheet = bu.load(hidden_workbook(tmp_path / "book.xlsx"))
    sent = bu.plan(sheet, bu.Settings(hidden="send"))
    assert [p.body for p in sent.patches] == [
        {"first_name": "Dana", "custom_fields": {"Team": "Red"}},
        {"first_name": "Noa", "custom_fields": {"Team": "Blue"}},
        {"first_name": "Maya", "custom_fields": {"Team": "Green"}},
        {"first_name": "Avi"},
    ]
    skipped = bu.plan(sheet, bu.Settings(hidden="skip"))
    assert [(p.row, p.body) for p in skipped.patches] == [
        (2, {"first_name": "Dana"}),
        (4, {"first_name": "Maya"}),
    ]
    assert [(r.row, r.uid, r.outcome) for r in skipped.rows if r.outcome] == [
        (3, "AE.2", bu.Outcome.SKIPPED),
        (5, "AE.4", bu.Outcome.SKIPPED),
    ]
    assert "hidden or filtered out of view" in skipped.rows[1].warnings[0]


def test_the_library_refuses_a_real_run_nobody_decided_about(tmp_path: Path) -> None:
    sheet = bu.load(hidden_workbook(tmp_path / "book.xlsx"))
    with pytest.raises(errors.InputError, match="2 rows hidden or filtered out") as caught:
        bu.run(bu.plan(sheet), credentials=Credentials("key", "secret"), report_path=False)
    assert caught.value.exit_code == 2
    assert "--hidden send" in (caught.value.fix or "")
    assert "--hidden skip" in (caught.value.fix or "")


def test_the_pages_run_manager_refuses_too(tmp_path: Path) -> None:
    from bulk_update.web.runs import RunManager

    sheet = bu.load(hidden_workbook(tmp_path / "book.xlsx"))
    manager = RunManager(
        settings=bu.Settings(),
        credentials=Credentials("key", "secret"),
        use_journal=False,
        reports_dir=tmp_path / "reports",
    )
    with pytest.raises(errors.InputError, match="hidden or filtered out"):
        manager.start(sheet, "book.xlsx")
    assert manager.recent() == []


def test_hidden_in_the_config_file_and_a_wrong_value_names_the_key(tmp_path: Path) -> None:
    from bulk_update.config import parse_config

    assert parse_config({"input": {"hidden": "skip"}}).hidden == "skip"
    with pytest.raises(errors.ConfigError, match=r"input\.hidden"):
        parse_config({"input": {"hidden": "maybe"}})


# --- the command line -----------------------------------------------------------------------


def _summary(path: Path) -> dict[str, object]:
    return {row[0]: row[1] for row in load_workbook(path)["Summary"].values if row and row[0]}


def test_the_dry_run_counts_what_is_hidden_and_says_a_real_run_must_decide(
    tmp_path: Path,
) -> None:
    book = hidden_workbook(tmp_path / "book.xlsx")
    res = run_cli("run", book, "--dry-run", "--report", tmp_path / "p.xlsx", cwd=tmp_path)
    assert res.code == 0, res.err
    assert (
        "Hidden in the sheet: 2 rows hidden or filtered out of view and 1 hidden column "
        "('custom_fields.Team'): previewed as sent; a real run stops unless --hidden send or "
        "--hidden skip says what to do with them." in res.out
    )
    assert "row 3 PATCH /candidates/AE.2" in res.out  # previewed as sent
    summary = _summary(tmp_path / "p.xlsx")
    assert summary["hidden rows"] == 2
    assert summary["hidden columns"] == "custom_fields.Team"
    assert "a real run needs --hidden" in str(summary["hidden rows and columns"])
    skip = run_cli(
        "run", book, "--dry-run", "--hidden", "skip", "--report", tmp_path / "s.xlsx", cwd=tmp_path
    )
    assert "left out (--hidden skip)" in skip.out
    assert "row 3 PATCH" not in skip.out
    assert _summary(tmp_path / "s.xlsx")["skipped"] == 2


def test_a_real_run_without_hidden_stops_before_sending(tmp_path: Path) -> None:
    book = hidden_workbook(tmp_path / "book.xlsx")
    state = make_state(UIDS)
    with ThreadedSandbox(state) as sb:
        res = run_cli("run", book, "--base-url", sb.base_url, env=CREDS, cwd=tmp_path)
    assert res.code == 2, res.err
    assert state.requests == []
    assert "2 rows hidden or filtered out of view and 1 hidden column" in res.err
    assert "--hidden send" in res.err


@pytest.mark.parametrize("choice", ["send", "skip"])
def test_hidden_send_and_skip_send_exactly_that(tmp_path: Path, choice: str) -> None:
    book = hidden_workbook(tmp_path / "book.xlsx")
    state = make_state(UIDS, custom_fields=("Team",))
    report = tmp_path / "r.xlsx"
    with ThreadedSandbox(state) as sb:
        res = run_cli(
            "run", book, "--base-url", sb.base_url, "--hidden", choice, "--report", report,
            env=CREDS, cwd=tmp_path,
        )  # fmt: skip
    assert res.code == 0, res.err
    bodies = {r.uid: r.body for r in state.requests}
    if choice == "send":
        assert bodies == {
            "AE.1": {"first_name": "Dana", "custom_fields": {"Team": "Red"}},
            "AE.2": {"first_name": "Noa", "custom_fields": {"Team": "Blue"}},
            "AE.3": {"first_name": "Maya", "custom_fields": {"Team": "Green"}},
            "AE.4": {"first_name": "Avi"},
        }
    else:
        assert bodies == {"AE.1": {"first_name": "Dana"}, "AE.3": {"first_name": "Maya"}}
        rows = {r["uid"]: r for r in report_rows(report)}
        assert rows["AE.2"]["outcome"] == "skipped"
        assert "--hidden skip" in str(rows["AE.2"]["message"])
        assert rows["AE.1"]["custom_fields.Team"] == "Red"  # shown, not sent
    summary = _summary(report)
    assert summary["hidden rows"] == 2
    assert str(summary["hidden rows and columns"]).endswith(f"(--hidden {choice})")


# --- part 4: the worksheet read by default ----------------------------------------------------


def test_an_empty_first_worksheet_points_to_the_one_with_uids(tmp_path: Path) -> None:
    workbook = Workbook()
    first = workbook.active
    assert first is not None
    first.title = "Cover"
    workbook.create_sheet("Notes").append(["Text"])
    workbook.create_sheet("Candidates").append(["uid", "first_name"])
    workbook.save(tmp_path / "book.xlsx")
    with pytest.raises(errors.InputError, match="no header row") as caught:
        bu.load(tmp_path / "book.xlsx")
    fix = caught.value.fix or ""
    assert fix.startswith(
        "the first worksheet, 'Cover', was read; 'Candidates' has a uid column: read it with "
        "--sheet Candidates (or [input] sheet); else put the column names"
    )
    res = run_cli("run", tmp_path / "book.xlsx", "--dry-run", cwd=tmp_path)
    assert res.code == 2
    assert "--sheet Candidates" in res.err
    # Named, the empty worksheet gets the usual fix.
    with pytest.raises(errors.InputError) as caught:
        bu.load(tmp_path / "book.xlsx", sheet="Cover")
    assert "uid column" not in (caught.value.fix or "")


# --- part 5: warnings -----------------------------------------------------------------------


def _warning_workbook(path: Path) -> Path:
    """A date-formatted cell whose serial is past year 9999: openpyxl warns reading it."""
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(["uid", "custom_fields.Start date"])
    sheet.append(["AE.1", 3_000_000])
    sheet["B2"].number_format = "yyyy-mm-dd"
    sheet.append(["AE.2", "2024-03-01"])
    workbook.save(path)
    return path


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_library_warnings_become_log_lines(tmp_path: Path, log_format: str) -> None:
    book = _warning_workbook(tmp_path / "book.xlsx")
    res = run_cli("run", book, "--dry-run", "--log-format", log_format, cwd=tmp_path)
    assert "UserWarning" not in res.err
    assert "site-packages" not in res.err and ".py:" not in res.err
    assert "Cell B2 is marked as a date" in res.err
    assert "book.xlsx, worksheet 'Sheet'" in res.err
    if log_format == "json":
        lines = [json.loads(line) for line in res.err.splitlines()]  # each must be JSON
        assert any(line["event"] == "library_warning" for line in lines)


def test_every_other_warning_goes_to_the_log(caplog: pytest.LogCaptureFixture) -> None:
    shown = warnings.showwarning
    with caplog.at_level(logging.WARNING, logger="bulk_update"), warnings_logged():
        warnings.warn("something a library says", DeprecationWarning, stacklevel=1)
    assert warnings.showwarning is shown  # put back as it was
    assert "a library warns: something a library says (DeprecationWarning)" in caplog.text


# --- the README's message catalogue -----------------------------------------------------------


def test_every_new_message_is_in_the_readme(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from bulk_update.config import parse_config

    from .test_messages import check, check_error

    book = hidden_workbook(tmp_path / "book.xlsx")
    sheet = bu.load(book)
    check_error(lambda: check_hidden(sheet, bu.Settings()), errors.InputError)
    check(HIDDEN_ROW_SKIPPED)
    problems = check_error(
        lambda: parse_config({"input": {"hidden": "maybe"}}, source="config file 'x.toml'")
    )
    assert "input.hidden" in problems
    with caplog.at_level(logging.INFO, logger="bulk_update"):
        bu.load(book, sheet="Old export")
        bu.load(_warning_workbook(tmp_path / "warns.xlsx"))
        with warnings_logged():
            warnings.warn("a library says", UserWarning, stacklevel=1)
    check(*(r.getMessage() for r in caplog.records))
    res = run_cli("run", book, "--dry-run", "--log-format", "json", cwd=tmp_path)
    logged = [json.loads(line) for line in res.err.splitlines()]
    check(*(line["message"] for line in logged if line["event"] == "hidden"))
    empty = Workbook()
    empty.create_sheet("Candidates").append(["uid"])
    empty.save(tmp_path / "empty.xlsx")
    check_error(lambda: bu.load(tmp_path / "empty.xlsx"), errors.InputError)


def test_warnings_of_many_cells_are_capped_with_a_count(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(["uid", "custom_fields.Start date"])
    for number in range(2, 27):  # 25 cells openpyxl cannot read as dates
        sheet.append([f"AE.{number}", 3_000_000])
        sheet.cell(row=number, column=2).number_format = "yyyy-mm-dd"
    workbook.save(tmp_path / "many.xlsx")
    with caplog.at_level(logging.WARNING, logger="bulk_update"), warnings.catch_warnings():
        warnings.simplefilter("error")  # none may escape as a warning
        bu.load(tmp_path / "many.xlsx")
    lines = [r.getMessage() for r in caplog.records]
    assert sum("is marked as a date" in line for line in lines) == 20
    assert "many.xlsx, worksheet 'Sheet': 5 more warnings like these while reading" in lines
