"""Tests of bulk_update.report: results -> the XLSX/CSV results sheet (contract section 8)."""

from __future__ import annotations

import csv
import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

from bulk_update import report, reportcells, xlsx
from bulk_update.errors import ConfigError
from bulk_update.models import REPORT_COLUMNS, Outcome, RowResult, RunSummary, SheetRow
from bulk_update.pipeline import load, plan
from bulk_update.reader import read_sheet
from bulk_update.reader.cells import strip_cell
from bulk_update.report import (
    FORMULA_STARTS,
    OUTCOME_COLOURS,
    XLSX_MAX_ROWS,
    check_report_path,
    default_report_path,
    defuse_csv_cell,
    report_table,
    restore_cell,
    write_report,
)
from bulk_update.schema import resolve_columns

HEADERS = ("uid", "Email")

# --------------------------------------------------------------------------- helpers


def summary_of(results: list[RowResult], **kwargs: Any) -> RunSummary:
    counts: dict[Outcome, int] = {}
    for result in results:
        counts[result.outcome] = counts.get(result.outcome, 0) + 1
    return RunSummary(counts=counts, duration_s=1.25, report_path=None, **kwargs)


def sample() -> tuple[list[SheetRow], list[RowResult]]:
    rows = [
        SheetRow(2, ("u1", "a@example.com")),
        SheetRow(3, ("u2", "bad-email")),
        SheetRow(5, ("u3", "c@example.com")),
    ]
    results = [
        RowResult(5, "u3", Outcome.NOT_SENT),
        RowResult(2, "u1", Outcome.UPDATED, 200, attempts=1, fields=("email", "first_name")),
        RowResult(3, "u2", Outcome.INVALID, error="invalid", message="Email: not an email"),
    ]
    return rows, results


def write(path: Path, rows: list[SheetRow], results: list[RowResult], **kwargs: Any) -> Path:
    kwargs.setdefault("headers", HEADERS)
    kwargs.setdefault("summary", summary_of(results))
    return write_report(path, rows=rows, results=results, **kwargs)


def results_lines(path: Path) -> list[tuple[Any, ...]]:
    wb = openpyxl.load_workbook(path)
    return list(wb["Results"].iter_rows(values_only=True))


def summary_lines(path: Path) -> dict[str, Any]:
    wb = openpyxl.load_workbook(path)
    return {str(k): v for k, v in wb["Summary"].iter_rows(values_only=True) if k is not None}


def all_cells(path: Path) -> Iterator[Any]:
    wb = openpyxl.load_workbook(path)
    for ws in wb.worksheets:
        for line in ws.iter_rows():
            yield from line


def one_text_cell(tmp_path: Path, text: str) -> Any:
    """Write a report whose single input cell holds `text`; return that cell read back."""
    path = write(
        tmp_path / "r.xlsx",
        [SheetRow(2, ("u1", text))],
        [RowResult(2, "u1", Outcome.UPDATED, 200)],
    )
    return openpyxl.load_workbook(path)["Results"].cell(row=2, column=len(REPORT_COLUMNS) + 2)


# --------------------------------------------------------------------------- report_table


def test_table_header_is_report_columns_then_input_headers() -> None:
    lines = list(report_table(HEADERS, [], []))
    assert lines == [[*REPORT_COLUMNS, "uid", "Email"]]
    assert lines[0][:8] == [
        "row",
        "uid",
        "outcome",
        "http_status",
        "error",
        "message",
        "attempts",
        "fields",
    ]


def test_table_lines_follow_sheet_rows_whatever_the_results_order() -> None:
    rows, results = sample()
    forward = list(report_table(HEADERS, rows, results))
    backward = list(report_table(HEADERS, rows, results[::-1]))
    assert [line[0] for line in forward[1:]] == [2, 3, 5]
    assert forward == backward


def test_table_cells() -> None:
    rows, results = sample()
    _, updated, invalid, not_sent = report_table(HEADERS, rows, results)
    email = "a@example.com"
    assert updated == [2, "u1", "updated", 200, "", "", 1, "email,first_name", "u1", email]
    assert invalid == [
        3,
        "u2",
        "invalid",
        None,
        "invalid",
        "Email: not an email",
        0,
        "",
        "u2",
        "bad-email",
    ]
    assert not_sent == [5, "u3", "not_sent", None, "", "", 0, "", "u3", "c@example.com"]


def test_table_result_without_sheet_row_gets_empty_input_cells() -> None:
    rows = [SheetRow(2, ("u1", "a@example.com"))]
    results = [RowResult(9, "u9", Outcome.FAILED, 503, attempts=4)]
    _, line = report_table(HEADERS, rows, results)
    assert line == [9, "u9", "failed", 503, "", "", 4, "", "", ""]


def test_table_is_pure() -> None:
    rows, results = sample()
    before = list(results)
    assert list(report_table(HEADERS, rows, results)) == list(report_table(HEADERS, rows, results))
    assert results == before


# --------------------------------------------------------------------------- XLSX


def test_xlsx_sheets_header_freeze_filter_bold(tmp_path: Path) -> None:
    rows, results = sample()
    path = write(tmp_path / "r.xlsx", rows, results)
    assert path == tmp_path / "r.xlsx"
    wb = openpyxl.load_workbook(path)
    assert wb.sheetnames == ["Results", "Summary"]
    ws = wb["Results"]
    assert [c.value for c in ws[1]] == [*REPORT_COLUMNS, *HEADERS]
    assert ws.freeze_panes == "A2"
    assert ws.auto_filter.ref == "A1:J4"
    assert all(c.font.b for c in ws[1])
    assert not ws["A2"].font.b
    assert ws.max_row == 4


def test_xlsx_lines_equal_report_table(tmp_path: Path) -> None:
    rows, results = sample()
    path = write(tmp_path / "r.xlsx", rows, results)
    expected = [
        tuple(None if v == "" else v for v in line)  # an empty text cell reads back as None
        for line in report_table(HEADERS, rows, results)
    ]
    assert results_lines(path) == expected


def test_xlsx_filter_with_no_results_covers_the_header(tmp_path: Path) -> None:
    path = write(tmp_path / "r.xlsx", [], [])
    ws = openpyxl.load_workbook(path)["Results"]
    assert ws.auto_filter.ref == "A1:J1"


def test_xlsx_outcome_cell_is_coloured(tmp_path: Path) -> None:
    outcomes = list(Outcome)
    rows = [SheetRow(n, (f"u{n}", "")) for n in range(2, 2 + len(outcomes))]
    results = [RowResult(n, f"u{n}", o) for n, o in zip(range(2, 20), outcomes, strict=False)]
    path = write(tmp_path / "r.xlsx", rows, results)
    ws = openpyxl.load_workbook(path)["Results"]
    for number, outcome in enumerate(outcomes, start=2):
        cell = ws.cell(row=number, column=3)
        assert cell.value == outcome.value
        assert cell.fill.fill_type == "solid"
        assert cell.fill.fgColor.rgb.upper().endswith(OUTCOME_COLOURS[outcome].upper())
        # Only the outcome cell is coloured.
        assert ws.cell(row=number, column=1).fill.fill_type is None


def rgb(hex_rgb: str) -> tuple[int, int, int]:
    r, g, b = (int(hex_rgb[i : i + 2], 16) for i in (0, 2, 4))
    return r, g, b


@pytest.mark.parametrize("outcome", list(Outcome))
def test_outcome_colour_families(outcome: Outcome) -> None:
    r, g, b = rgb(OUTCOME_COLOURS[outcome])
    if outcome in {Outcome.UPDATED, Outcome.WOULD_UPDATE, Outcome.UNCHANGED}:
        assert g > r and g > b  # green-ish
    elif outcome is Outcome.SKIPPED:
        assert r == g == b  # grey
    elif outcome is Outcome.INVALID:
        assert r > g > b and g - b >= 24  # orange
    elif outcome is Outcome.NOT_SENT:
        assert r >= g and g - b > 60 and r - g < 24  # yellow
    else:
        assert r - max(g, b) > 40 and abs(g - b) < 16  # red-ish


def test_column_widths_fit_the_text_within_a_cap(tmp_path: Path) -> None:
    rows = [SheetRow(2, ("u1", "x" * 300)), SheetRow(3, ("u2", "short\n" + "y" * 30))]
    results = [
        RowResult(2, "u1", Outcome.UPDATED, message="m" * 20),
        RowResult(3, "u2", Outcome.UPDATED),
    ]
    ws = openpyxl.load_workbook(write(tmp_path / "r.xlsx", rows, results))["Results"]
    # Stored as Excel stores a width in characters: plus 5 pixels of padding, in 1/256ths
    # of the 7-pixel digit (xlsx._column); a whole number of characters gains 0.7109375.
    width = {c: ws.column_dimensions[c].width - 0.7109375 for c in "ABCDEFGHIJ"}
    assert width["J"] == 60  # 300 characters, capped
    assert width["F"] == 22  # the message, plus a margin
    assert width["I"] == 8  # 'uid' and 'u1' are short: the minimum
    assert width["C"] == len("outcome") + 2
    assert all(8 <= w <= 60 for w in width.values())


@pytest.mark.parametrize(
    "text",
    [
        "=1+2",
        '=HYPERLINK("http://x","y")',
        "+41 22 000",
        "-5",
        "-1+1",
        "@SUM(A1)",
        "\t=1+2",
        "#N/A",
        "#DIV/0!",
    ],
)
def test_xlsx_formula_text_stays_text(tmp_path: Path, text: str) -> None:
    cell = one_text_cell(tmp_path, text)
    assert cell.data_type == "s"
    assert cell.value == text


def test_xlsx_writes_line_breaks_as_newlines(tmp_path: Path) -> None:
    """XML readers turn a raw CR into LF anyway; the report says so up front, consistently."""
    cell = one_text_cell(tmp_path, "\r=1+2")
    assert cell.data_type == "s"
    assert cell.value == "\n=1+2"
    assert one_text_cell(tmp_path, "a\r\nb\rc").value == "a\nb\nc"


def test_report_file_follows_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        path = write(tmp_path / "r.xlsx", [], [], summary=summary_of([]))
        assert path.stat().st_mode & 0o777 == 0o644
        os.umask(0o077)
        private = write(tmp_path / "p.csv", [], [], summary=summary_of([]))
        assert private.stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)


def test_xlsx_has_no_formula_anywhere(tmp_path: Path) -> None:
    rows = [SheetRow(2, ("=u1", "=1+1")), SheetRow(3, ("@u2", "-2"))]
    results = [
        RowResult(2, "=u1", Outcome.REJECTED, 422, error="=ERR()", message="+bad", fields=("=x",)),
        RowResult(3, "@u2", Outcome.FAILED, message="-oops"),
    ]
    summary = summary_of(results, aborted=True, abort_reason="=CMD()")
    path = write(tmp_path / "r.xlsx", rows, results, summary=summary, source=Path("=evil.csv"))
    cells = list(all_cells(path))
    assert cells
    assert [c.coordinate for c in cells if c.data_type == "f"] == []
    texts = {c.value for c in cells}
    assert {"=u1", "=1+1", "@u2", "-2", "=ERR()", "+bad", "-oops", "=x", "=CMD()"} <= texts


def test_xlsx_drops_illegal_control_characters(tmp_path: Path) -> None:
    rows = [SheetRow(2, ("u1", "a\x01b\x1fc"))]
    results = [RowResult(2, "u1", Outcome.INVALID, error="x\x00", message="m\x0bn")]
    summary = summary_of(results, aborted=True, abort_reason="stop\x02ped")
    path = write(tmp_path / "r.xlsx", rows, results, summary=summary)
    line = results_lines(path)[1]
    assert line[4:6] == ("x", "mn")
    assert line[-1] == "abc"
    assert summary_lines(path)["abort reason"] == "stopped"


def test_xlsx_keeps_unicode_and_multiline_text(tmp_path: Path) -> None:
    text = '  Zoë 日本語\nline two, "quoted"  '
    assert one_text_cell(tmp_path, text).value == text


def _utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def test_a_cell_longer_than_excel_holds_is_cut_with_a_mark_the_csv_keeps_it_whole(
    tmp_path: Path,
) -> None:
    note = "Left voicemail. " * 2500  # 40,000 characters
    rows = [SheetRow(2, ("u1", note))]
    results = [RowResult(2, "u1", Outcome.UPDATED, 200)]
    cell = results_lines(write(tmp_path / "r.xlsx", rows, results))[1][-1]
    assert len(cell) == xlsx.EXCEL_CELL_CHARS
    assert cell.endswith(
        "… [cut: 40,000 characters, more than Excel holds; what is sent is never cut]"
    )
    assert note.startswith(cell.split("…")[0])
    with write(tmp_path / "r.csv", rows, results).open(encoding="utf-8-sig", newline="") as fh:
        assert list(csv.reader(fh))[1][-1] == note


@pytest.mark.parametrize(
    ("text", "cut"),
    [
        ("x" * 32_767, False),
        ("x" * 32_768, True),
        ("😀" * 16_383, False),  # 32,766 UTF-16 units: Excel counts a 😀 as two
        ("😀" * 16_384, True),
        ("a" + "😀" * 20_000, True),
        ("'=" + "y" * 40_000, True),  # the apostrophe added counts too
    ],
)
def test_excel_cell_is_cut_by_utf16_units_as_excel_counts(text: str, cut: bool) -> None:
    stored = report.xlsx_text(text)
    assert _utf16_units(stored) <= xlsx.EXCEL_CELL_CHARS
    assert ("… [cut: " in stored) is cut
    if cut:
        total = len(text) + text.startswith("'")
        assert stored.endswith(xlsx.CUT_MARK.format(total=total))
        # As much of the text as fits: one character more would not.
        kept = stored[: -len(xlsx.CUT_MARK.format(total=total))]
        assert _utf16_units(kept + xlsx.CUT_MARK.format(total=total)) >= 32_765
    else:
        assert stored == text


@settings(max_examples=30)
@given(st.text(alphabet=st.sampled_from("=+-@ \tab\n,\"'\x01é"), max_size=12))
def test_xlsx_text_round_trips(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    cell = one_text_cell(tmp_path_factory.mktemp("rt"), text)
    expected = ILLEGAL_CHARACTERS_RE.sub("", text)
    # Only `'=...` (apostrophes, then a formula start) is stored with one apostrophe more.
    assert restore_cell(cell.value or "") == expected
    assert cell.data_type != "f"


@pytest.mark.parametrize(
    ("text", "stored"),
    [("'=1+2", "''=1+2"), ("''@x", "'''@x"), ("'-5", "''-5"), ("'abc", "'abc"), ("'", "'")],
)
def test_xlsx_apostrophe_before_a_formula_start_gets_one_more(
    tmp_path: Path, text: str, stored: str
) -> None:
    """So that a re-upload, which takes one apostrophe off, gets back what was typed."""
    cell = one_text_cell(tmp_path, text)
    assert (cell.value, cell.data_type) == (stored, "s")


def test_summary_sheet(tmp_path: Path) -> None:
    results = [
        RowResult(2, "u1", Outcome.UPDATED),
        RowResult(3, "u2", Outcome.UPDATED),
        RowResult(4, "u3", Outcome.FAILED),
    ]
    rows = [SheetRow(n, (f"u{n - 1}", "")) for n in (2, 3, 4)]
    source = tmp_path / "cands.csv"
    path = write(tmp_path / "r.xlsx", rows, results, source=source)
    ws = openpyxl.load_workbook(path)["Summary"]
    lines = [line for line in ws.iter_rows(values_only=True) if line[0] is not None]
    labels = [line[0] for line in lines]
    outcome_lines = [line for line in lines if line[0] in {o.value for o in Outcome}]
    assert outcome_lines == [
        (o.value, {Outcome.UPDATED: 2, Outcome.FAILED: 1}.get(o, 0)) for o in Outcome
    ]
    values = {line[0]: line[1] for line in lines}
    assert values["total"] == 3
    assert values["dry run"] == "no"
    assert values["input"] == str(source)
    assert "aborted" not in values
    assert labels.index("total") > labels.index(Outcome.NOT_SENT.value)


def test_summary_dry_run_and_aborted(tmp_path: Path) -> None:
    results = [RowResult(2, "u1", Outcome.WOULD_UPDATE), RowResult(3, "u2", Outcome.NOT_SENT)]
    summary = summary_of(
        results, dry_run=True, aborted=True, abort_reason="interrupted (Ctrl-C)", estimate_s=12.0
    )
    path = write(tmp_path / "r.xlsx", [], results, summary=summary)
    values = summary_lines(path)
    assert values["dry run"] == "yes"
    assert values["aborted"] == "yes"
    assert values["abort reason"] == "interrupted (Ctrl-C)"
    assert values["estimate (s)"] == 12.0
    assert values["duration (s)"] == 1.2  # 1.25 rounded to a tenth
    assert values["would_update"] == 1
    assert values["not_sent"] == 1
    assert values["total"] == 2


def test_summary_aborted_without_reason_says_yes(tmp_path: Path) -> None:
    results = [RowResult(2, "u1", Outcome.NOT_SENT)]
    path = write(tmp_path / "r.xlsx", [], results, summary=summary_of(results, aborted=True))
    values = summary_lines(path)
    assert values["aborted"] == "yes"
    assert "abort reason" not in values


def test_summary_estimate_only_for_dry_runs(tmp_path: Path) -> None:
    results = [RowResult(2, "u1", Outcome.UPDATED)]
    summary = summary_of(results, estimate_s=3.0)
    values = summary_lines(write(tmp_path / "r.xlsx", [], results, summary=summary))
    assert "estimate (s)" not in values
    assert values["duration (s)"] == 1.2


def test_summary_generated_at_is_utc_iso_time(tmp_path: Path) -> None:
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    path = write(tmp_path / "r.xlsx", [], [], summary=summary_of([]))
    after = dt.datetime.now(dt.UTC)
    stamp = dt.datetime.fromisoformat(summary_lines(path)["generated at"])
    assert stamp.utcoffset() == dt.timedelta(0)
    assert before <= stamp <= after


def test_xlsx_report_can_be_uploaded_again(tmp_path: Path) -> None:
    rows = [
        SheetRow(2, ("u1", "a@example.com")),
        SheetRow(3, ("=u2", "-b@example.com")),
    ]
    results = [
        RowResult(2, "u1", Outcome.UPDATED, 200, attempts=1, fields=("email",)),
        RowResult(3, "=u2", Outcome.INVALID, error="invalid", message="uid: bad"),
    ]
    path = write(tmp_path / "cands.results.xlsx", rows, results)
    sheet = read_sheet(path)
    assert sheet.headers == (*REPORT_COLUMNS, *HEADERS)
    assert sheet.headers.count("uid") == 2
    columns = resolve_columns(sheet.headers)
    assert [c.field for c in columns[: len(REPORT_COLUMNS)]] == [None] * len(REPORT_COLUMNS)
    assert [(c.index, c.header, c.field) for c in columns[len(REPORT_COLUMNS) :]] == [
        (8, "uid", "uid"),
        (9, "Email", "email"),
    ]
    assert [r.number for r in sheet.rows] == [2, 3]
    assert [r.values[8:] for r in sheet.rows] == [row.values for row in rows]


# --------------------------------------------------------------------------- CSV


def test_csv_has_bom_and_equals_report_table(tmp_path: Path) -> None:
    rows = [
        SheetRow(2, ("u1", "line one\nline two")),
        SheetRow(3, ("u2", 'a, "quoted", value')),
        SheetRow(4, ("u3", "=1+1")),
    ]
    results = [
        RowResult(4, "u3", Outcome.UNCHANGED),
        RowResult(3, "u2", Outcome.REJECTED, 422, error="rejected", message='bad "x",\r\ny'),
        RowResult(2, "u1", Outcome.UPDATED, 200, attempts=2, fields=("email", "phone")),
    ]
    path = write(tmp_path / "r.csv", rows, results)
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    with path.open(encoding="utf-8-sig", newline="") as fh:
        got = list(csv.reader(fh))
    expected = [
        ["" if v is None else defuse_csv_cell(v) if isinstance(v, str) else str(v) for v in line]
        for line in report_table(HEADERS, rows, results)
    ]
    assert got == expected
    assert got[3][-1] == "'=1+1"
    assert got[2][-1] == 'a, "quoted", value'
    assert got[2][5] == 'bad "x",\r\ny'
    assert got[1][-1] == "line one\nline two"


def csv_lines(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8-sig", newline="") as fh:
        return list(csv.reader(fh))


@pytest.mark.parametrize(
    ("text", "written"),
    [
        ("=1+2", "'=1+2"),
        ('=HYPERLINK("http://evil","click")', '\'=HYPERLINK("http://evil","click")'),
        ("+972-52-555-0101", "'+972-52-555-0101"),
        ("-5", "'-5"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1+2", "'\t=1+2"),
        ("\r=1+2", "'\r=1+2"),
        ("'=1+2", "''=1+2"),  # one more, so that the re-upload's one-off gives it back
        ("''+1", "'''+1"),
        ("a=1", "a=1"),
        (" =1", " =1"),
        ("'abc", "'abc"),
        ("", ""),
    ],
)
def test_csv_defuses_formula_starts(tmp_path: Path, text: str, written: str) -> None:
    rows = [SheetRow(2, ("u1", text))]
    results = [RowResult(2, "u1", Outcome.UPDATED, 200)]
    assert csv_lines(write(tmp_path / "r.csv", rows, results))[1][-1] == written
    assert defuse_csv_cell(text) == written
    assert restore_cell(written) == text


def test_csv_defuses_every_column_the_header_and_never_a_number(tmp_path: Path) -> None:
    rows = [SheetRow(2, ("=u1", "@x"))]
    results = [
        RowResult(2, "=u1", Outcome.REJECTED, 422, error="-e", message="+m", fields=("=f",)),
    ]
    path = write(tmp_path / "r.csv", rows, results, headers=("uid", "=Team"))
    header, line = csv_lines(path)
    assert header[-1] == "'=Team"
    assert line == ["2", "'=u1", "rejected", "422", "'-e", "'+m", "0", "'=f", "'=u1", "'@x"]
    for cell in (c for row in csv_lines(path) for c in row):
        assert not cell.startswith(tuple(FORMULA_STARTS)), cell


@given(st.text())
def test_defuse_then_restore_is_the_identity(text: str) -> None:
    defused = defuse_csv_cell(text)
    assert restore_cell(defused) == text
    assert not defused.startswith(tuple(FORMULA_STARTS))
    # Text that needs nothing is left alone, and so is text that was never defused.
    if not text.lstrip("'").startswith(tuple(FORMULA_STARTS)):
        assert defused == text
        assert restore_cell(text) == text


# Every character that matters to the rule or to CSV, and any other text.
_CELL_TEXT = st.text(
    alphabet=st.sampled_from("'=+-@\t\r\n \",;aZ0é日\u00a0"), max_size=10
) | st.text(max_size=10)


@settings(max_examples=40)
@given(st.lists(_CELL_TEXT, min_size=1, max_size=3))
def test_csv_report_uploaded_again_gives_back_the_cells_as_typed(
    tmp_path_factory: pytest.TempPathFactory, cells: list[str]
) -> None:
    # What the reader could have produced: stripped text without NUL (not a text file).
    values = tuple(strip_cell(c.replace("\x00", "")) for c in cells)
    headers = ("uid", *(f"custom_fields.C{i}" for i in range(len(values))))
    rows = [SheetRow(2, ("AE.1", *values))]
    path = write(
        tmp_path_factory.mktemp("csv") / "r.csv",
        rows,
        [RowResult(2, "AE.1", Outcome.UPDATED, 200)],
        headers=headers,
    )
    sheet = load(path)
    assert sheet.headers[len(REPORT_COLUMNS) :] == headers
    assert [r.values[len(REPORT_COLUMNS) :] for r in sheet.rows] == [rows[0].values]


@pytest.mark.parametrize("name", ["r.csv", "r.xlsx"])
def test_reuploaded_report_sends_the_values_as_typed(tmp_path: Path, name: str) -> None:
    headers = ("uid", "Phone", "Note", "custom_fields.Team", "custom_fields.Code")
    typed = ("AE.1", "+972-52-555-0101", "=SUM(A1:A2)", "-5", "'=literal")
    path = write(
        tmp_path / name,
        [SheetRow(2, typed)],
        [RowResult(2, "AE.1", Outcome.FAILED)],
        headers=headers,
    )
    sheet = load(path)
    assert [c.field for c in sheet.columns[: len(REPORT_COLUMNS)]] == [None] * len(REPORT_COLUMNS)
    (planned,) = plan(sheet).rows
    assert planned.patch is not None
    body = planned.patch.body
    assert body["phone"] == "+972-52-555-0101"
    assert body["note"] == "=SUM(A1:A2)"
    assert body["custom_fields"] == {"Team": "-5", "Code": "'=literal"}


def test_table_of_a_results_sheet_replaces_its_old_result_columns() -> None:
    headers = (*REPORT_COLUMNS, *HEADERS)
    rows = [SheetRow(2, ("2", "u1", "failed", "503", "", "", "6", "email", "u1", "a@b.co"))]
    header, line = report_table(headers, rows, [RowResult(2, "u1", Outcome.UPDATED, 200)])
    assert header == [*REPORT_COLUMNS, *HEADERS]
    assert line == [2, "u1", "updated", 200, "", "", 0, "", "u1", "a@b.co"]
    # Only the report's own leading columns are dropped, never a sheet's lookalike.
    (header,) = report_table(("uid", *REPORT_COLUMNS), [], [])
    assert header == [*REPORT_COLUMNS, "uid", *REPORT_COLUMNS]


@pytest.mark.parametrize("name", ["r.csv", "r.xlsx"])
def test_fix_and_upload_again_goes_round_any_number_of_times(tmp_path: Path, name: str) -> None:
    headers = ("uid", "Note", "Phone")
    typed = ("AE.1", "=1+2", "'+972")
    path = write(
        tmp_path / f"1{name}",
        [SheetRow(2, typed)],
        [RowResult(2, "AE.1", Outcome.FAILED)],
        headers=headers,
    )
    for generation in range(2, 5):
        sheet = load(path)
        assert sheet.headers == (*REPORT_COLUMNS, *headers)
        assert [r.values[len(REPORT_COLUMNS) :] for r in sheet.rows] == [typed]
        results = [RowResult(2, "AE.1", Outcome.FAILED)]
        path = write(
            tmp_path / f"{generation}{name}", list(sheet.rows), results, headers=sheet.headers
        )


def test_apostrophes_are_only_taken_off_a_reuploaded_report(tmp_path: Path) -> None:
    """An ordinary sheet's `'=x` is sent as typed: only a report was defused."""
    path = tmp_path / "in.csv"
    path.write_text("uid,note\nAE.1,'=x\n", encoding="utf-8")
    (planned,) = plan(load(path)).rows
    assert planned.patch is not None
    assert planned.patch.body["note"] == "'=x"


# --------------------------------------------------------------------------- paths, atomicity


@pytest.mark.parametrize("name", ["r.xlsx", "r.csv", "R.XLSX", "R.Csv"])
def test_write_leaves_only_the_report(tmp_path: Path, name: str) -> None:
    rows, results = sample()
    path = write(tmp_path / name, rows, results)
    assert path == tmp_path / name
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_upper_case_xlsx_is_an_xlsx(tmp_path: Path) -> None:
    rows, results = sample()
    path = write(tmp_path / "R.XLSX", rows, results)
    assert openpyxl.load_workbook(path).sheetnames == ["Results", "Summary"]


@pytest.mark.parametrize(("name", "writer"), [("r.xlsx", "_write_xlsx"), ("r.csv", "_write_csv")])
def test_failure_mid_write_keeps_the_old_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, writer: str
) -> None:
    target = tmp_path / name
    target.write_bytes(b"older report")

    def half_written(path: Path, *args: Any) -> None:
        path.write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(report, writer, half_written)
    rows, results = sample()
    with pytest.raises(OSError, match="disk full"):
        write(target, rows, results)
    assert target.read_bytes() == b"older report"
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_replaces_an_existing_report(tmp_path: Path) -> None:
    target = tmp_path / "r.csv"
    target.write_text("old\n", encoding="utf-8")
    rows, results = sample()
    write(target, rows, results)
    assert target.read_text(encoding="utf-8-sig").startswith("row,uid,outcome")


@pytest.mark.parametrize("name", ["r.txt", "r", "r.xls", "r.tsv"])
def test_other_extension_is_a_config_error(tmp_path: Path, name: str) -> None:
    rows, results = sample()
    with pytest.raises(ConfigError, match=r"\.xlsx or \.csv"):
        write(tmp_path / name, rows, results)
    assert list(tmp_path.iterdir()) == []


def test_missing_folder_is_a_config_error(tmp_path: Path) -> None:
    rows, results = sample()
    with pytest.raises(ConfigError, match="does not exist") as info:
        write(tmp_path / "nope" / "r.xlsx", rows, results)
    assert "nope" in str(info.value)
    assert info.value.fix
    assert list(tmp_path.iterdir()) == []


def test_check_report_path_before_anything_is_sent(tmp_path: Path) -> None:
    check_report_path(tmp_path / "r.xlsx", XLSX_MAX_ROWS)
    check_report_path(tmp_path / "r.csv", XLSX_MAX_ROWS + 1)
    check_report_path(tmp_path / "r.xlsx")
    with pytest.raises(ConfigError, match=r"\.csv") as info:
        check_report_path(tmp_path / "r.xlsx", XLSX_MAX_ROWS + 1)
    assert "1,048,576 rows" in info.value.message
    assert list(tmp_path.iterdir()) == []


def test_folder_that_is_a_file_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "out").write_text("", encoding="utf-8")
    with pytest.raises(ConfigError, match="is not a folder"):
        check_report_path(tmp_path / "out" / "r.csv")


def test_report_path_that_is_a_folder_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "r.xlsx").mkdir()
    rows, results = sample()
    with pytest.raises(ConfigError, match="is a folder"):
        write(tmp_path / "r.xlsx", rows, results)
    assert [p.name for p in tmp_path.iterdir()] == ["r.xlsx"]


def test_too_many_rows_for_excel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("bulk_update.reportfile.XLSX_MAX_ROWS", 2)
    rows, results = sample()
    with pytest.raises(ConfigError, match=r"\.csv"):
        write(tmp_path / "r.xlsx", rows, results)
    assert list(tmp_path.iterdir()) == []
    write(tmp_path / "r.csv", rows, results)  # a CSV has no such limit


def test_a_folder_that_takes_no_files_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[tuple[object, int]] = []

    def access(path: object, mode: int) -> bool:
        asked.append((path, mode))
        return False

    monkeypatch.setattr(os, "access", access)  # chmod does not stop root
    with pytest.raises(ConfigError, match="is not writable") as caught:
        check_report_path(tmp_path / "r.xlsx")
    assert asked == [(tmp_path, os.W_OK | os.X_OK)]
    assert caught.value.fix and "--report" in caught.value.fix


def test_a_report_never_replaces_the_input_sheet(tmp_path: Path) -> None:
    sheet = tmp_path / "s.csv"
    sheet.write_text("uid\nAE.1\n", encoding="utf-8")
    (tmp_path / "link.csv").symlink_to(sheet)
    for report_path in (sheet, tmp_path / "." / "s.csv", tmp_path / "link.csv"):
        with pytest.raises(ConfigError, match="would replace the input sheet") as caught:
            check_report_path(report_path, source=sheet)
        assert caught.value.fix and caught.value.fix.endswith("s.results.xlsx")
    check_report_path(tmp_path / "s.results.csv", source=sheet)
    check_report_path(tmp_path / "other.csv", source=tmp_path / "missing.csv")
    with pytest.raises(ConfigError):  # neither exists yet: where they would be
        check_report_path(tmp_path / "n.csv", source=tmp_path / "sub" / ".." / "n.csv")


def test_default_report_path() -> None:
    assert default_report_path(Path("/x/cands.csv")) == Path("/x/cands.results.xlsx")
    assert default_report_path(Path("/x/cands.xlsx")) == Path("/x/cands.results.xlsx")
    assert default_report_path(Path("cands.v2.csv")) == Path("cands.v2.results.xlsx")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=6) | st.sampled_from(["+1", "'=x", "\x00=", "a\x00b", "-"])))
def test_a_line_is_defused_like_cell_by_cell(cells: list[str]) -> None:
    from bulk_update.report import _defused_line

    line: list[str | int | None] = [2, "=u", "updated", None, "", "-m", 1, "email", *cells]
    assert _defused_line(line) == [defuse_csv_cell(v) if isinstance(v, str) else v for v in line]


def test_table_walks_a_row_store_like_a_list() -> None:
    from bulk_update.rowstore import RowStore

    rows, results = sample()
    assert list(report_table(HEADERS, RowStore(2, rows), results)) == list(
        report_table(HEADERS, rows, results)
    )


# --- the column forms (the columnar dry run's) beside the cell forms -------------------------

_COLUMN_TEXT = st.text(
    alphabet=st.sampled_from(
        [*"ab '=+-@\t\r\n\"',&<>", "\x00", "\x01", "\x0b", "\x1c", "\x85", "\u2028", "é", "😀"]
    ),
    max_size=12,
)


def test_report_line_names_its_parts_as_the_report_columns() -> None:
    import inspect

    names = list(inspect.signature(report.report_line).parameters)
    assert names == [*REPORT_COLUMNS, "cells"]
    assert report.report_line(*range(8), cells=["x"]) == [*range(8), "x"]


def test_line_breaks_are_what_splitlines_splits_at() -> None:
    breaks = [chr(c) for c in range(0x110000) if len(f"a{chr(c)}b".splitlines()) == 2]
    assert "".join(breaks) == report.LINE_BREAKS


@settings(deadline=None)
@given(st.lists(_COLUMN_TEXT, min_size=1, max_size=20))
def test_column_forms_give_what_the_cell_forms_give(texts: list[str]) -> None:
    """defusing, XLSX text, XML escaping, CSV quoting and widths: a column at a time, the
    same as a cell at a time (the columnar dry run's reports rest on it)."""
    import io

    import pyarrow as pa

    col = pa.array(texts, pa.string())
    assert report.defuse_csv_column(col).to_pylist() == [report.defuse_csv_cell(t) for t in texts]
    assert report.xlsx_text_column(col).to_pylist() == [report.xlsx_text(t) for t in texts]
    assert xlsx.escape_column(col).to_pylist() == [xlsx.escape(t) for t in texts]
    written = io.StringIO()
    csv.writer(written).writerows([t, t] for t in texts)
    assert "".join(report.csv_lines([col, col]).to_pylist()) == written.getvalue()
    widths = [report.MIN_WIDTH]
    report.widen_column(widths, 0, col)
    assert report.bounded_widths(widths) == reportcells.table_widths([[t] for t in ["", *texts]])


def test_csv_header_is_the_first_line_write_report_writes(tmp_path: Path) -> None:
    header = ["row", "=uid", "a,b"]
    report._write_csv(tmp_path / "r.csv", iter([header]))
    assert (tmp_path / "r.csv").read_bytes() == report.csv_header(header)
