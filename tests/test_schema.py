"""Column matching and per-row validation (contract sections 4 and 5)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from bulk_update.errors import ConfigError, InputError, UnknownColumnError
from bulk_update.models import REPORT_COLUMNS, Column, Patch, SheetRow, is_results_sheet
from bulk_update.patch import build_patch
from bulk_update.schema import (
    DIGIT_FIELDS,
    FIELDS,
    ISO_COUNTRY_CODES,
    MAX_FILE_BYTES,
    PROSPECT_STATUSES,
    UPDATED_BY_TYPES,
    InvalidRow,
    UidTally,
    ValidRow,
    escape_invisible,
    find_duplicate_uids,
    normalize_header,
    resolve_columns,
    validate_row,
)
from tests.api_body import CandidatePatch

# --- normalize_header -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("First Name", "first_name"),
        ("  first-name ", "first_name"),
        ("FIRST__NAME", "first_name"),
        ("FirstName", "first_name"),
        ("E-mail", "email"),
        ("LinkedIn URL", "linkedin_url"),
        ("Address.Country", "address.country"),
        ("Updated By.Type", "updated_by.type"),
        ("source-contact . full name", "source_contact.full_name"),
        ("custom_fields.Team Size", "custom_fields.Team Size"),
        ("Custom Fields.Team Size", "custom_fields.Team Size"),
        ("CUSTOM-FIELDS. Team.Size ", "custom_fields.Team.Size"),
        ("Internal notes", "internal_notes"),
    ],
)
def test_normalize_header(header: str, expected: str) -> None:
    assert normalize_header(header) == expected


_SEPARATOR = st.sampled_from([" ", "-", "_", "  ", " - "])


@st.composite
def _respelled(draw: st.DrawFn, field: str) -> str:
    """`field` with random letter case and each '_' swapped for another separator."""
    cased = "".join(c.upper() if draw(st.booleans()) else c.lower() for c in field)
    parts = cased.split("_")
    out = parts[0]
    for part in parts[1:]:
        out += draw(_SEPARATOR) + part
    return out


@given(st.sampled_from(sorted(FIELDS)).flatmap(lambda f: st.tuples(st.just(f), _respelled(f))))
def test_normalize_header_ignores_case_and_separators(pair: tuple[str, str]) -> None:
    field, spelled = pair
    assert normalize_header(spelled) == field


@given(st.text(max_size=30))
def test_normalize_header_is_idempotent(header: str) -> None:
    once = normalize_header(header)
    assert normalize_header(once) == once


@given(st.text(min_size=1, max_size=20).filter(lambda s: s.strip()))
def test_custom_field_name_is_kept_as_written(name: str) -> None:
    assert normalize_header(f"Custom Fields.{name}") == f"custom_fields.{name.strip()}"


# --- resolve_columns ------------------------------------------------------------------------


def _fields(columns: tuple[Column, ...]) -> list[str | None]:
    return [c.field for c in columns]


def test_resolve_columns_matches_fields_and_keeps_headers() -> None:
    columns = resolve_columns(["UID", "E-mail", "Address.Country", "Custom Fields.Team Size"])
    assert columns == (
        Column(0, "UID", "uid"),
        Column(1, "E-mail", "email"),
        Column(2, "Address.Country", "address.country"),
        Column(3, "Custom Fields.Team Size", "custom_fields.Team Size"),
    )


def test_report_columns_of_a_reuploaded_results_sheet_are_ignored() -> None:
    columns = resolve_columns([*REPORT_COLUMNS, "uid", "email"])
    assert _fields(columns) == [None] * len(REPORT_COLUMNS) + ["uid", "email"]


def test_report_prefix_must_match_exactly() -> None:
    headers = ["Row", *REPORT_COLUMNS[1:], "email"]  # 'Row' is not the report's 'row'
    with pytest.raises(UnknownColumnError):
        resolve_columns(headers)


def test_a_results_sheet_is_known_by_its_first_headers_alone() -> None:
    assert is_results_sheet((*REPORT_COLUMNS, "uid"))
    assert is_results_sheet(list(REPORT_COLUMNS))
    assert not is_results_sheet(("Row", *REPORT_COLUMNS[1:], "uid"))
    assert not is_results_sheet(REPORT_COLUMNS[:-1])
    assert not is_results_sheet(("uid", *REPORT_COLUMNS))


def test_mapping_and_ignore() -> None:
    columns = resolve_columns(
        ["Candidate UID", "Team", "Internal notes", "note"],
        mapping={"candidate uid": "uid", "TEAM": "custom_fields.Team"},
        ignore=["internal-notes"],
    )
    assert _fields(columns) == ["uid", "custom_fields.Team", None, "note"]


def test_mapping_wins_over_a_field_name_and_ignore_wins_over_mapping() -> None:
    columns = resolve_columns(
        ["uid", "email", "phone"],
        mapping={"email": "source_contact.email", "phone": "mobile_phone"},
        ignore=["Phone"],
    )
    assert _fields(columns) == ["uid", "source_contact.email", None]


def test_mapping_to_an_unknown_field_names_the_columns_key() -> None:
    with pytest.raises(ConfigError) as info:
        resolve_columns(["uid", "Mail"], mapping={"Mail": "emial"})
    assert '[columns] "Mail"' in str(info.value)
    assert "email" in str(info.value)  # the suggestion


def test_every_problem_of_the_header_row_is_said_at_once() -> None:
    # The uid column renamed from the header the config maps; two other unknown headers.
    mapping = {"Candidate UID": "uid", "Team": "custom_fields.Team"}
    with pytest.raises(UnknownColumnError) as info:
        resolve_columns(["Candidate", "Emial", "Team", "Zqxwv"], mapping=mapping)
    error = info.value
    assert error.unknown == (
        ("Candidate", "partner_candidate_id"),
        ("Emial", "email"),
        ("Zqxwv", None),
    )
    assert (error.header, error.suggestion) == ("Candidate", "partner_candidate_id")
    assert error.message.splitlines() == [
        "Column 'Candidate' is not a Comeet field. Did you mean 'partner_candidate_id'?",
        "Column 'Emial' is not a Comeet field. Did you mean 'email'?",
        "Column 'Zqxwv' is not a Comeet field.",
        "the sheet has no uid column",
        "config maps 'Candidate UID' to uid, but the sheet has no such column; "
        "did you mean 'Candidate'?",
    ]
    assert error.fix and "add a 'uid' column" in error.fix
    # A [columns] entry that matches no header is said only beside another problem: a
    # config may serve several sheets.
    columns = resolve_columns(["uid", "email"], mapping=mapping)
    assert [c.field for c in columns] == ["uid", "email"]


@pytest.mark.parametrize(
    ("header", "suggestion"),
    [
        ("Emial", "email"),
        ("First nam", "first_name"),
        ("linkedin", "linkedin_url"),
        ("Custom field.Team", "custom_fields.Team"),
        ("zzzzqqqq", None),
    ],
)
def test_unknown_column_names_the_closest_field(header: str, suggestion: str | None) -> None:
    with pytest.raises(UnknownColumnError) as info:
        resolve_columns(["uid", header])
    assert info.value.header == header
    assert info.value.suggestion == suggestion
    assert f"'{header}'" in str(info.value)


def test_bare_object_name_is_unknown_and_suggests_a_leaf() -> None:
    with pytest.raises(UnknownColumnError) as info:
        resolve_columns(["uid", "address"])
    assert info.value.suggestion is not None
    assert info.value.suggestion.startswith("address.")


@pytest.mark.parametrize("header", ["custom_fields", "custom_fields.", "custom_fields.  "])
def test_custom_fields_without_a_name_is_unknown(header: str) -> None:
    with pytest.raises(UnknownColumnError):
        resolve_columns(["uid", header])


def test_two_columns_feeding_one_field_names_both() -> None:
    with pytest.raises(InputError) as info:
        resolve_columns(["uid", "E-mail", "Email"])
    assert "'E-mail'" in str(info.value)
    assert "'Email'" in str(info.value)


def test_missing_uid_column_says_how_to_fix() -> None:
    with pytest.raises(InputError) as info:
        resolve_columns(["email", "phone"])
    assert info.value.fix is not None
    assert "[columns]" in info.value.fix


def test_header_less_column_is_named_by_its_letter() -> None:
    with pytest.raises(InputError, match="column C has no header"):
        resolve_columns(["uid", "email", " "])


# --- validate_row ---------------------------------------------------------------------------


def _check(
    cells: dict[str, str],
    tmp_path: Path,
    *,
    numeric: frozenset[int] = frozenset(),
    duplicates: frozenset[str] = frozenset(),
    default_updated_by: dict[str, str] | None = None,
) -> ValidRow | InvalidRow:
    """Validate one row given as header -> cell (uid 'AE.17934' unless a uid column is given)."""
    if not any(normalize_header(h) == "uid" for h in cells):
        cells = {"uid": "AE.17934", **cells}
    columns = resolve_columns(list(cells))
    return validate_row(
        SheetRow(2, tuple(cells.values()), numeric),
        columns,
        base_dir=tmp_path,
        duplicate_uids=duplicates,
        default_updated_by=default_updated_by or {},
    )


def _problems(result: ValidRow | InvalidRow) -> list[tuple[str | None, str]]:
    assert isinstance(result, InvalidRow), result
    return [(p.column, p.message) for p in result.problems]


@pytest.mark.parametrize(
    ("header", "cell", "expected"),
    [
        ("E-mail", "jane@", "is not an email address"),
        ("email", "jane doe@example.com", "is not an email address"),
        ("email", "jane@example", "is not an email address"),
        ("email", "a@b@example.com", "is not an email address"),
        ("Updated By.Email", "nobody", "is not an email address"),
        ("Prospect Status", "Hired", "Sourced, Contacted, Responded, Interested, Not interested"),
        ("updated_by.type", "robot", "user, source_contact, other, app"),
        ("LinkedIn URL", "www.linkedin.com/in/jane", "is not a LinkedIn URL"),
        ("linkedin_url", "https://linkedin.com.evil.example/in/jane", "is not a LinkedIn URL"),
        ("linkedin_url", "https://facebook.com/jane", "is not a LinkedIn URL"),
        ("linkedin_url", "ftp://www.linkedin.com/in/jane", "is not a LinkedIn URL"),
        ("Address.Country", "Israel", "e.g. IL, US, GB"),
        ("address.country", "XX", "e.g. IL, US, GB"),
        ("address.country", "UK", "e.g. IL, US, GB"),
        ("Links", "https://ok.example notaurl", "'notaurl' is not a web address"),
        ("links", "javascript:alert(1)", "is not a web address"),
        ("links", "https://", "is not a web address"),
    ],
)
def test_bad_cell_gives_a_problem_on_the_column_as_spelled(
    header: str, cell: str, expected: str, tmp_path: Path
) -> None:
    defaults = {"type": "app", "name": "Sync"}
    problems = _problems(_check({header: cell}, tmp_path, default_updated_by=defaults))
    assert len(problems) == 1
    column, message = problems[0]
    assert column == header
    assert expected in message
    assert "pydantic" not in message.lower()
    assert "validation error" not in message.lower()


@pytest.mark.parametrize(
    ("header", "cell", "field", "value"),
    [
        ("Prospect Status", "  not   INTERESTED ", "prospect_status", "Not interested"),
        ("prospect_status", "do not contact", "prospect_status", "Do not contact"),
        ("updated_by.type", "APP", "updated_by.type", "app"),
        ("Address.Country", "il", "address.country", "IL"),
        ("email", "jane.doe+x@mail.example.co.uk", "email", "jane.doe+x@mail.example.co.uk"),
        ("linkedin_url", "https://il.linkedin.com/in/jane", "linkedin_url", None),
        ("linkedin_url", "http://linkedin.com/in/jane", "linkedin_url", None),
        ("phone", "+972 50-123-4567", "phone", None),
        ("note", "line 1\nline 2", "note", None),
        ("Custom Fields.Team Size", "12", "custom_fields.Team Size", "12"),
        (
            "links",
            "https://a.example/x\nhttp://b.example  https://c.example",
            "links",
            [
                {"url": "https://a.example/x"},
                {"url": "http://b.example"},
                {"url": "https://c.example"},
            ],
        ),
    ],
)
def test_good_cell_becomes_an_api_value(
    header: str, cell: str, field: str, value: Any, tmp_path: Path
) -> None:
    result = _check({header: cell}, tmp_path, default_updated_by={"type": "app", "name": "Sync"})
    assert isinstance(result, ValidRow), result
    assert result.values[field] == (cell if value is None else value)


def test_every_prospect_status_and_updated_by_type_is_accepted(tmp_path: Path) -> None:
    for status in PROSPECT_STATUSES:
        result = _check({"prospect_status": status.upper()}, tmp_path)
        assert isinstance(result, ValidRow)
        assert result.values["prospect_status"] == status
    for kind in UPDATED_BY_TYPES:
        result = _check({"updated_by.type": kind, "updated_by.name": "n"}, tmp_path)
        assert isinstance(result, ValidRow)


def test_country_codes_are_the_249_assigned_ones() -> None:
    assert len(ISO_COUNTRY_CODES) == 249
    assert {"IL", "US", "GB", "AX", "SS", "XK"} & ISO_COUNTRY_CODES == {
        "IL",
        "US",
        "GB",
        "AX",
        "SS",
    }
    assert all(len(c) == 2 and c.isupper() for c in ISO_COUNTRY_CODES)


def test_empty_cells_are_dropped_and_values_keep_column_order(tmp_path: Path) -> None:
    result = _check({"last_name": "Doe", "email": "", "first_name": "Jane", "note": ""}, tmp_path)
    assert isinstance(result, ValidRow)
    assert list(result.values) == ["last_name", "first_name"]
    assert "uid" not in result.values
    assert result.uid == "AE.17934"


def test_every_problem_of_a_row_is_reported_together(tmp_path: Path) -> None:
    headers = ["Candidate", "E-mail", "Prospect Status", "Country", "LinkedIn", "first_name"]
    columns = resolve_columns(
        headers,
        mapping={"Candidate": "uid", "Country": "address.country", "LinkedIn": "linkedin_url"},
    )
    row = SheetRow(2, ("12345", "nope", "maybe", "Israel", "x", "Jane"))
    result = validate_row(row, columns, base_dir=tmp_path)
    assert isinstance(result, InvalidRow)
    # Each problem names the column as the sheet spells it, mapped or not, in sheet order.
    assert [p.column for p in result.problems] == headers[:5]
    assert result.uid == "12345"
    assert str(result.problems[1]).startswith("E-mail: 'nope' is not an email address")


@pytest.mark.parametrize(
    ("uid", "expected"),
    [
        ("", "the uid is missing"),
        ("61459710", "the number in the Comeet web page URL is not the API uid"),
        ("AE17934", "is not a Comeet uid"),
        ("AE.", "is not a Comeet uid"),
        ("../positions", "is not a Comeet uid"),
        ("%2e%2e", "is not a Comeet uid"),
        ("a/b", "is not a Comeet uid"),
        ("AE.17934/../x", "is not a Comeet uid"),
        ("AE.17934?x=1", "is not a Comeet uid"),
        ("AE 17934", "is not a Comeet uid"),
    ],
)
def test_bad_uid(uid: str, expected: str, tmp_path: Path) -> None:
    problems = _problems(_check({"Uid": uid, "first_name": "Jane"}, tmp_path))
    assert [(c, expected in m) for c, m in problems] == [("Uid", True)]


@pytest.mark.parametrize("uid", ["AE.17934", "00.AAA", "B4.B5F21", "FC.C9A3E", "1.2.3"])
def test_good_uid(uid: str, tmp_path: Path) -> None:
    result = _check({"uid": uid, "first_name": "Jane"}, tmp_path)
    assert isinstance(result, ValidRow)
    assert result.uid == uid


def test_uid_stored_as_a_number_is_invalid(tmp_path: Path) -> None:
    result = _check({"uid": "1.1", "first_name": "Jane"}, tmp_path, numeric=frozenset({0}))
    [(column, message)] = _problems(result)
    assert column == "uid"
    assert "stored this uid as a number" in message
    assert "format the column as text" in message


def test_numeric_flag_on_another_cell_is_fine(tmp_path: Path) -> None:
    result = _check(
        {"uid": "AE.1", "salary_expectations": "5000"}, tmp_path, numeric=frozenset({1})
    )
    assert isinstance(result, ValidRow)


def test_duplicate_uids_make_every_such_row_invalid(tmp_path: Path) -> None:
    columns = resolve_columns(["email", "UID"])
    rows = [
        SheetRow(2, ("a@x.io", "AE.1")),
        SheetRow(3, ("b@x.io", "AE.2")),
        SheetRow(4, ("c@x.io", "AE.1")),
        SheetRow(5, ("d@x.io", "")),
        SheetRow(6, ("e@x.io", "")),
        SheetRow(7, ("e@x.io",)),  # a short row: the uid cell is empty
    ]
    duplicates = find_duplicate_uids(rows, columns)
    assert duplicates == frozenset({"AE.1"})
    results = [
        validate_row(r, columns, base_dir=tmp_path, duplicate_uids=duplicates) for r in rows[:3]
    ]
    assert [type(r) for r in results] == [InvalidRow, ValidRow, InvalidRow]
    [(column, message)] = _problems(results[0])
    assert column == "UID"
    assert "appears on more than one row" in message


def test_uid_tally_counts_rows_as_they_go_by_or_counts_added_whole() -> None:
    rows = [SheetRow(2, ("AE.1",)), SheetRow(3, (" AE.2",)), SheetRow(4, ("",)), SheetRow(5, ("",))]
    tally = UidTally()
    assert list(tally.counting(rows, 0)) == rows
    assert tally.duplicates == frozenset()  # two empty uid cells are no duplicate
    tally.add([("AE.2", 1), ("AE.3", 1)])
    assert tally.duplicates == frozenset({"AE.2"})


def test_updated_by_defaults_fill_in_the_row(tmp_path: Path) -> None:
    result = _check(
        {"updated_by.email": "me@x.io", "note": "hi"},
        tmp_path,
        default_updated_by={"type": "app", "name": "Sync"},
    )
    assert isinstance(result, ValidRow)
    # Defaults are merged by patch building, not stored in the row's values.
    assert dict(result.values) == {"updated_by.email": "me@x.io", "note": "hi"}


def test_updated_by_without_a_name_column(tmp_path: Path) -> None:
    result = _check({"Updated By.Type": "user", "note": "hi"}, tmp_path)
    [(column, message)] = _problems(result)
    assert column == "updated_by.name"
    assert "required when updated_by is sent" in message
    assert "add the column or set [defaults.updated_by] name" in message


def test_updated_by_name_column_empty_on_this_row(tmp_path: Path) -> None:
    result = _check(
        {"Updated By.Name": "", "note": "hi"}, tmp_path, default_updated_by={"type": "app"}
    )
    [(column, message)] = _problems(result)
    assert column == "Updated By.Name"
    assert "fill it in on this row" in message


def test_updated_by_type_missing_with_name_default(tmp_path: Path) -> None:
    result = _check({"note": "hi"}, tmp_path, default_updated_by={"name": "Sync"})
    assert [c for c, _ in _problems(result)] == ["updated_by.type"]


def test_no_updated_by_at_all_is_fine(tmp_path: Path) -> None:
    assert isinstance(_check({"note": "hi"}, tmp_path), ValidRow)


def test_source_contact_needs_full_name_and_email(tmp_path: Path) -> None:
    result = _check({"Source Contact.Phone": "555", "source_contact.email": ""}, tmp_path)
    problems = _problems(result)
    assert [c for c, _ in problems] == ["source_contact.full_name", "source_contact.email"]
    assert "fill it in on this row" in problems[1][1]
    complete = _check(
        {
            "source_contact.full_name": "Michael Rosen",
            "source_contact.email": "m@hunters.example",
            "source_contact.phone": "555",
        },
        tmp_path,
    )
    assert isinstance(complete, ValidRow)


# --- file cells -----------------------------------------------------------------------------


def _write(path: Path, data: bytes = b"%PDF-1.4 hello") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_resume_and_picture_are_sent_inline(tmp_path: Path) -> None:
    _write(tmp_path / "cvs" / "jane.pdf", b"%PDF jane")
    _write(tmp_path / "jane.png", b"\x89PNG")
    result = _check({"Resume": "cvs/jane.pdf", "picture": "jane.png"}, tmp_path)
    assert isinstance(result, ValidRow), result
    assert result.values["resume"] == {
        "name": "jane.pdf",
        "file": base64.b64encode(b"%PDF jane").decode(),
    }
    assert result.values["picture"]["name"] == "jane.png"


def test_windows_separators_in_a_path(tmp_path: Path) -> None:
    _write(tmp_path / "cvs" / "jane.docx")
    result = _check({"resume": "cvs\\jane.docx"}, tmp_path)
    assert isinstance(result, ValidRow)
    assert result.values["resume"]["name"] == "jane.docx"


def test_files_take_several_paths(tmp_path: Path) -> None:
    for name in ("a.txt", "b.csv", "c.zip"):
        _write(tmp_path / name, name.encode())
    result = _check({"Files": "a.txt; b.csv\nc.zip;"}, tmp_path)
    assert isinstance(result, ValidRow)
    assert [f["name"] for f in result.values["files"]] == ["a.txt", "b.csv", "c.zip"]
    assert base64.b64decode(result.values["files"][1]["file"]) == b"b.csv"


@pytest.mark.parametrize("name", ["cv.txt", "cv.png", "cv.pdf.exe", "cv"])
def test_resume_extension_must_be_pdf_doc_docx(name: str, tmp_path: Path) -> None:
    _write(tmp_path / name)
    [(column, message)] = _problems(_check({"Resume": name}, tmp_path))
    assert column == "Resume"
    assert ".pdf, .doc or .docx" in message


def test_resume_takes_one_path(tmp_path: Path) -> None:
    _write(tmp_path / "a.pdf")
    _write(tmp_path / "b.pdf")
    [(_, message)] = _problems(_check({"resume": "a.pdf; b.pdf"}, tmp_path))
    assert "takes one file" in message


def test_missing_files_are_each_named(tmp_path: Path) -> None:
    _write(tmp_path / "here.txt")
    problems = _problems(_check({"files": "here.txt;gone.txt;lost.txt"}, tmp_path))
    assert [c for c, _ in problems] == ["files", "files"]
    assert "'gone.txt' was not found" in problems[0][1]
    assert "'lost.txt' was not found" in problems[1][1]


def test_a_folder_and_an_empty_file_are_refused(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    _write(tmp_path / "empty.txt", b"")
    messages = [m for _, m in _problems(_check({"files": "dir;empty.txt"}, tmp_path))]
    assert "is not a file" in messages[0]
    assert "is empty" in messages[1]


@pytest.mark.parametrize("path", ["/etc/passwd", "C:\\secrets\\cv.pdf", "\\\\server\\share\\x"])
def test_absolute_paths_are_refused(path: str, tmp_path: Path) -> None:
    [(column, message)] = _problems(_check({"Picture": path}, tmp_path))
    assert column == "Picture"
    assert "absolute path" in message


def test_dotdot_escape_is_refused(tmp_path: Path) -> None:
    sheet_dir = tmp_path / "sheet"
    sheet_dir.mkdir()
    _write(tmp_path / "secret.pdf")
    result = validate_row(
        SheetRow(2, ("AE.1", "../secret.pdf")),
        resolve_columns(["uid", "resume"]),
        base_dir=sheet_dir,
    )
    [(_, message)] = _problems(result)
    assert "outside the sheet's folder" in message


def test_dotdot_that_stays_inside_is_fine(tmp_path: Path) -> None:
    _write(tmp_path / "cv.pdf")
    (tmp_path / "sub").mkdir()
    assert isinstance(_check({"resume": "sub/../cv.pdf"}, tmp_path), ValidRow)


def test_symlink_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    sheet_dir = tmp_path / "sheet"
    outside = _write(tmp_path / "outside" / "passwd.pdf")
    sheet_dir.mkdir()
    (sheet_dir / "cv.pdf").symlink_to(outside)
    (sheet_dir / "docs").symlink_to(outside.parent, target_is_directory=True)
    for cell in ("cv.pdf", "docs/passwd.pdf"):
        result = validate_row(
            SheetRow(2, ("AE.1", cell)), resolve_columns(["uid", "resume"]), base_dir=sheet_dir
        )
        [(_, message)] = _problems(result)
        assert "outside the sheet's folder" in message


def test_symlink_inside_the_folder_is_fine(tmp_path: Path) -> None:
    _write(tmp_path / "real" / "cv.pdf")
    (tmp_path / "cv.pdf").symlink_to(tmp_path / "real" / "cv.pdf")
    assert isinstance(_check({"resume": "cv.pdf"}, tmp_path), ValidRow)


def test_six_megabytes_is_the_limit(tmp_path: Path) -> None:
    with (tmp_path / "max.pdf").open("wb") as fh:
        fh.truncate(MAX_FILE_BYTES)
    with (tmp_path / "big.pdf").open("wb") as fh:
        fh.truncate(MAX_FILE_BYTES + 1)
    ok = _check({"resume": "max.pdf"}, tmp_path)
    assert isinstance(ok, ValidRow)
    assert len(base64.b64decode(ok.values["resume"]["file"])) == 6 * 1024 * 1024
    [(column, message)] = _problems(_check({"resume": "big.pdf"}, tmp_path))
    assert column == "resume"
    assert "larger than 6 MB" in message


def test_unreadable_file_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Simulated: chmod 0 does not stop root, and tests may run as root in a container.
    _write(tmp_path / "locked.pdf")
    real_open = Path.open

    def refuse(self: Path, *args: Any, **kwargs: Any) -> Any:
        if self.name == "locked.pdf":
            raise PermissionError(13, "Permission denied")
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", refuse)
    [(column, message)] = _problems(_check({"Resume": "locked.pdf"}, tmp_path))
    assert column == "Resume"
    assert "'locked.pdf' cannot be read (Permission denied)" in message


# --- the body model -------------------------------------------------------------------------


def test_a_validated_row_builds_a_body_the_model_accepts(tmp_path: Path) -> None:
    _write(tmp_path / "cv.docx")
    _write(tmp_path / "a.txt")
    cells = {
        "first_name": "Jane",
        "E-mail": "jane@example.com",
        "prospect_status": "contacted",
        "linkedin_url": "https://www.linkedin.com/in/jane",
        "address.country": "gb",
        "address.city": "London",
        "source_contact.full_name": "M R",
        "source_contact.email": "m@r.example",
        "custom_fields.Team": "Core",
        "resume": "cv.docx",
        "files": "a.txt",
        "links": "https://jane.example",
        "updated_by.name": "Kelly",
    }
    defaults = {"type": "app", "name": "Sync"}
    result = _check(cells, tmp_path, default_updated_by=defaults)
    assert isinstance(result, ValidRow), result
    patch = build_patch(2, result.uid, result.values, default_updated_by=defaults)
    assert isinstance(patch, Patch)
    model = CandidatePatch.model_validate(patch.body)
    assert model.address is not None
    assert model.address.country == "GB"
    assert model.updated_by is not None
    assert model.updated_by.name == "Kelly"


@pytest.mark.parametrize(
    "body",
    [
        {"email": ""},
        {"email": None},
        {"address": {}},
        {"address": {"country": "il"}},
        {"prospect_status": "not interested"},
        {"updated_by": {"type": "app"}},
        {"source_contact": {"phone": "555"}},
        {"resume": {"name": "cv.txt", "file": "eA=="}},
        {"links": [{"url": "not a url"}]},
        {"uid": "AE.1"},
        {"surname": "Doe"},
        {"phone": 972501234567},
    ],
)
def test_candidate_patch_refuses_what_the_api_would(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        CandidatePatch.model_validate(body)


def test_a_row_validator_remembers_conversions_and_gives_what_validate_row_gives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bulk_update import schema
    from bulk_update.schema import RowValidator, validate_row

    monkeypatch.setattr(schema.rows, "_MEMO_SIZE", 3)
    columns = resolve_columns(["uid", "Prospect Status", "Address.Country", "Email", "Note"])
    statuses = ["interested", "Contacted", "nope", "NOT INTERESTED", "sourced"]
    rows = [
        SheetRow(
            n + 2,
            (
                f"AE.{n}",
                statuses[n % 5],
                ["il", "US", "XX"][n % 3],
                f"a{n}@example.com" if n % 4 else "bad@",
                "hi",
            ),
        )
        for n in range(40)
    ]
    validate = RowValidator(columns, base_dir=tmp_path)
    got = [validate(row) for row in rows]
    assert got == [validate_row(row, columns, base_dir=tmp_path) for row in rows]
    assert any(isinstance(g, InvalidRow) for g in got)
    assert any(isinstance(g, ValidRow) and g.values["prospect_status"] == "Interested" for g in got)
    memos = [memo for *_, memo in validate.data if memo is not None]
    assert len(memos) == 3  # status, country and email have rules; a note has none
    assert all(len(memo) <= 3 for memo in memos)


# --- what a spreadsheet shows but must not be sent (issue 12) --------------------------------

_ERRORS = ("#N/A", "#VALUE!", "#REF!", "#DIV/0!", "#NUM!", "#NAME?", "#NULL!", "#SPILL!", "#CALC!")


@pytest.mark.parametrize("error", [*_ERRORS, "#n/a", "#GETTING_DATA", "#ERROR!", "Err:502"])
@pytest.mark.parametrize("header", ["First Name", "Note", "Phone", "Email", "custom_fields.Team"])
def test_a_spreadsheet_error_is_a_problem_not_a_value(
    tmp_path: Path, error: str, header: str
) -> None:
    [(column, message)] = _problems(_check({header: error, "last_name": "Cohen"}, tmp_path))
    assert column == header
    assert message.startswith(f"'{error}' is a spreadsheet error")
    assert "fix the formula or type the value" in message


def test_a_spreadsheet_error_in_the_uid_says_so(tmp_path: Path) -> None:
    [(column, message)] = _problems(_check({"uid": "#N/A", "first_name": "Jane"}, tmp_path))
    assert column == "uid"
    assert message.startswith("'#N/A' is a spreadsheet error")


def test_text_that_merely_mentions_an_error_is_text(tmp_path: Path) -> None:
    result = _check({"note": "VLOOKUP gave #N/A here", "first_name": "#1 pick"}, tmp_path)
    assert isinstance(result, ValidRow)
    assert result.values == {"note": "VLOOKUP gave #N/A here", "first_name": "#1 pick"}


@pytest.mark.parametrize("field", sorted(DIGIT_FIELDS))
def test_digits_stored_as_a_number_are_refused(tmp_path: Path, field: str) -> None:
    cells = {"uid": "AE.1", field: "525550177"}
    if field == "source_contact.phone":
        cells |= {"source_contact.full_name": "Head Hunter", "source_contact.email": "h@x.co"}
    result = _check(cells, tmp_path, numeric=frozenset({1}))
    [(column, message)] = _problems(result)
    assert column == field
    assert message == (
        "'525550177' was stored as a number, which loses a leading 0 or +; format the column "
        "as text and type the value again"
    )
    # The same digits typed as text are sent as they are.
    valid = _check(cells, tmp_path)
    assert isinstance(valid, ValidRow)


@pytest.mark.parametrize("text", ["9.72E+11", "9,72E+11", "1e5", "-2.5E-3", "4.2e+07"])
@pytest.mark.parametrize("field", sorted(DIGIT_FIELDS - {"source_contact.phone"}))
def test_scientific_notation_is_refused_in_digit_fields(
    tmp_path: Path, field: str, text: str
) -> None:
    [(column, message)] = _problems(_check({field: text}, tmp_path))
    assert column == field
    assert message == (
        f"'{text}': Excel turned this number into scientific notation, which loses its "
        "digits; format the column as text and type the number again"
    )


def test_scientific_notation_elsewhere_and_in_the_uid(tmp_path: Path) -> None:
    fine = _check({"salary_expectations": "1E5", "phone": "+1E5 ext 2"}, tmp_path)
    assert isinstance(fine, ValidRow)
    [(column, message)] = _problems(_check({"uid": "1.23E+11", "note": "x"}, tmp_path))
    assert (column, message.split(";")[0]) == (
        "uid",
        "'1.23E+11': Excel turned this number into scientific notation",
    )


@pytest.mark.parametrize("char", ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad"])
@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("uid", "B4.B{}5F21"),
        ("email", "jane@exa{}mple.com"),
        ("source_contact.email", "h{}h@agency.com"),
        ("linkedin_url", "https://www.linkedin.com/in/ja{}ne"),
        ("links", "https://a.example/{}x"),
        ("phone", "+972{}501234567"),
        ("mobile_phone", "054{}1234567"),
    ],
)
def test_an_invisible_character_inside_a_uid_email_url_or_phone_is_refused(
    tmp_path: Path, char: str, header: str, value: str
) -> None:
    cells = {"uid": "AE.1", header: value.format(char)}
    if header == "source_contact.email":
        cells["source_contact.full_name"] = "Head Hunter"
    shown = value.format(f"\\u{ord(char):04x}")
    assert _problems(_check(cells, tmp_path)) == [
        (
            header,
            f"'{shown}' holds an invisible character that a spreadsheet does not show; "
            "delete the cell's content and type the value again",
        )
    ]


def test_invisible_characters_in_free_text_are_kept(tmp_path: Path) -> None:
    # A zero-width joiner inside a name or an emoji is part of the text a person sees.
    result = _check({"first_name": "Noa\u200dh", "note": "ok 👍\u200d"}, tmp_path)
    assert isinstance(result, ValidRow)
    assert result.values == {"first_name": "Noa\u200dh", "note": "ok 👍\u200d"}


def test_every_message_shows_invisible_characters_escaped(tmp_path: Path) -> None:
    [(_, message)] = _problems(_check({"prospect_status": "Sour\u200bced"}, tmp_path))
    assert message.startswith("'Sour\\u200bced' is not a prospect status")
    assert escape_invisible("a\u200fb\u00ad") == "a\\u200fb\\u00ad"
