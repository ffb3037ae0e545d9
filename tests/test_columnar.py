"""The column-at-a-time dry run of a CSV (bulk_update/columnar/) against the general path.

The general path (load -> plan -> run_async(dry_run=True)) is the reference: on every sheet
the columnar path takes, it must give the same report byte for byte, the same counts,
preview bodies and problem rows; on every sheet it cannot do exactly it must step aside
(None) without leaving a file behind.
"""

from __future__ import annotations

import asyncio
import codecs
import csv
import logging
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bulk_update import cli, columnar, schema, wiring, xlsx
from bulk_update.columnar import PY_SPACE, CsvDryRun, dry_run_csv
from bulk_update.columnar.arrow import re2 as _re2
from bulk_update.columnar.checks import _Each
from bulk_update.config import Settings
from bulk_update.models import Column, Outcome, Patch, RowResult, SheetRow
from bulk_update.pipeline import load, plan, run_async
from bulk_update.reader.cells import strip_cell
from bulk_update.schema import (
    FIELDS,
    ISO_COUNTRY_CODES,
    PROSPECT_STATUSES,
    RowValidator,
    ValidRow,
    cells,
    column_check,
    uid_check,
)

# --- the general path, as the reference ----------------------------------------------------


def general(
    path: Path, report_path: Path, settings: Settings | None = None
) -> tuple[Any, int, tuple[Patch, ...], tuple[RowResult, ...]]:
    """The general path's dry run: (counts, sends, first 5 bodies, problem rows)."""
    settings = settings or Settings()
    the_plan = plan(load(path, settings), settings, bodies=5)
    summary = asyncio.run(run_async(the_plan, settings, dry_run=True, report_path=report_path))
    problems = tuple(r for r in summary.results if r.outcome.is_problem)
    return summary.counts, the_plan.sends, the_plan.patches[:5], problems


def assert_same(
    path: Path, tmp: Path, settings: Settings | None = None, suffix: str = ".csv"
) -> CsvDryRun | None:
    """Both paths on `path`: the columnar one is None or gives exactly what the other gives."""
    fast_report, slow_report = tmp / f"fast{suffix}", tmp / f"slow{suffix}"
    for old in (fast_report, slow_report):
        old.unlink(missing_ok=True)
    fast = dry_run_csv(path, settings, report_path=fast_report)
    try:
        expected = general(path, slow_report, settings)
    except Exception:
        assert fast is None, "the columnar path read a sheet the general path refuses"
        raise
    if fast is None:
        assert not fast_report.exists()
        assert not [p for p in tmp.iterdir() if p.name.startswith(f".fast{suffix}")]
        return None
    counts, sends, patches, problems = expected
    assert fast.summary.counts == counts
    assert fast.sends == sends
    assert fast.patches == patches
    assert fast.summary.results == problems
    assert fast.summary.exit_code == (1 if problems else 0)
    if suffix == ".xlsx":
        assert_same_workbooks(fast_report, slow_report)
    else:
        assert fast_report.read_bytes() == slow_report.read_bytes()
    return fast


_MOMENTS = re.compile(rb"(duration \(s\)|generated at)(.*?</row>)")


def assert_same_workbooks(got: Path, expected: Path) -> None:
    """Every part of the two workbooks the same, byte for byte, but the Summary's time and
    duration (which differ from one run to the next)."""
    with zipfile.ZipFile(got) as a, zipfile.ZipFile(expected) as b:
        assert a.namelist() == b.namelist()
        for name in a.namelist():
            left, right = a.read(name), b.read(name)
            if name == "xl/worksheets/sheet2.xml":
                left, right = (_MOMENTS.sub(rb"\1", x) for x in (left, right))
            assert left == right, name


def write(path: Path, text: str, *, bom: bool = False) -> Path:
    path.write_bytes((codecs.BOM_UTF8 if bom else b"") + text.encode("utf-8"))
    return path


# --- pieces ---------------------------------------------------------------------------------


def test_py_space_is_what_str_isspace_accepts() -> None:
    assert "".join(chr(c) for c in range(0x110000) if chr(c).isspace()) == PY_SPACE


def test_re2_spells_out_unicode_white_space_and_refuses_other_classes() -> None:
    translated = _re2(r"[^@\s]+@x\sy")
    assert translated.startswith("^(?:") and translated.endswith(")$")
    assert "\\s" not in translated and "\\x{3000}" in translated
    for other in (r"\d+", r"\w", r"a\b", r"\S"):
        with pytest.raises(ValueError, match="another meaning in RE2"):
            _re2(other)


def _re2_matches(pattern: str, texts: list[str]) -> list[bool]:
    found = pc.match_substring_regex(pa.array(texts, pa.string()), _re2(pattern))
    return [bool(x) for x in found.to_pylist()]


_TRICKY = st.lists(
    st.sampled_from(
        [
            *"aZ09.@-_/:?#%+ \t\r\n\"',;=!E",
            *("\u00a0", "\u3000", "\x85", "é", "\x1c", "\u200b", "\ufeff", "\u00ad", "\u200f"),
            *("#N/A", "Err:502", "9.7E+11"),
        ]
    ),
    max_size=30,
).map("".join)
_PATTERNS = (
    [uid_check.pattern]
    + [column_check(f).pattern for f in sorted(FIELDS) if column_check(f).kind == "pattern"]
    + sorted({column_check(f).refuse for f in FIELDS} - {""})
)


@given(st.lists(_TRICKY, min_size=1, max_size=20))
def test_re2_patterns_match_as_python_fullmatch(texts: list[str]) -> None:
    for pattern in _PATTERNS:
        assert _re2_matches(pattern, texts) == [bool(re.fullmatch(pattern, t)) for t in texts], (
            pattern
        )


def _valid_value(field: str, text: str) -> Any:
    """The value RowValidator gives a row holding `text` under `field`, or None if invalid."""
    columns = (Column(0, "uid", "uid"), Column(1, field, field))
    checked = RowValidator(columns, base_dir=Path("."))(SheetRow(2, ("AE.1", text)))
    return checked.values.get(field) if isinstance(checked, ValidRow) else None


_LINKEDIN_LIKE = st.builds(
    lambda scheme, host, path: f"{scheme}://{host}{path}",
    st.sampled_from(["http", "https", "HTTPS", "ftp", "https:"]),
    st.sampled_from(
        [
            *("linkedin.com", "www.linkedin.com", "il.linkedin.com", "linkedin.com.evil.io"),
            *("x..linkedin.com", "LinkedIn.com", "linkedin.com:443", "a@linkedin.com"),
            "-.linkedin.com",
        ]
    ),
    st.one_of(st.just(""), _TRICKY.map(lambda t: "/" + t)),
)
_CELL_TEXTS = st.one_of(
    _TRICKY,
    st.sampled_from(PROSPECT_STATUSES + tuple(sorted(ISO_COUNTRY_CODES))[:20]),
    _LINKEDIN_LIKE,
    st.from_regex(r"[a-z.]{1,8}@[a-z]{1,5}(\.[a-z]{1,3}){1,2}", fullmatch=True),
)


@given(_CELL_TEXTS)
def test_every_column_check_accepts_only_what_the_validator_accepts(text: str) -> None:
    """The column forms may send a good cell to the validator, never pass a bad one; what
    `any` and `pattern` accept is sent as it is, what `each` accepts the validator did."""
    text = strip_cell(text)
    assume(text)
    for field in sorted(FIELDS - {"uid"}):
        check = column_check(field)
        if check.kind == "row":
            continue
        if check.kind == "each":
            columns = (Column(0, "uid", "uid"), Column(1, field, field))
            each = _Each(RowValidator(columns, base_dir=Path(".")), 2, 0, 1)
            taken = each(pa.array([text], pa.string())).to_pylist() == [True]
            assert taken == (_valid_value(field, text) is not None), (field, text)
            continue
        accepted = (
            check.kind == "any"
            or (check.kind == "pattern" and bool(re.fullmatch(check.pattern, text)))
        ) and not (check.refuse and re.fullmatch(check.refuse, text))
        if accepted:
            assert _valid_value(field, text) == text, (field, text)


def test_statuses_and_countries_as_typed_are_taken_a_column_at_a_time() -> None:
    """What the validator normalises (case, spacing) is accepted by the column form too."""
    assert column_check("prospect_status").kind == "each"
    assert column_check("address.country").kind == "each"
    for field, typed, bad in (
        ("prospect_status", ["contacted", "NOT INTERESTED", "Not  interested", "Sourced"], "x"),
        ("address.country", ["il", "Us", "GB"], "U S"),
    ):
        columns = (Column(0, "uid", "uid"), Column(1, field, field))
        each = _Each(RowValidator(columns, base_dir=Path(".")), 2, 0, 1)
        got = each(pa.array([*typed, bad, *typed], pa.string())).to_pylist()
        assert got == [True] * len(typed) + [False] + [True] * len(typed), field


def test_linkedin_addresses_the_plain_pattern_takes_are_taken_by_the_cell_rule_first() -> None:
    """One LinkedIn rule: the cell form tries the column form's pattern before urlsplit."""
    rule = cells._CELL_RULES["linkedin_url"]
    assert rule.plain == column_check("linkedin_url").pattern
    with patch.object(cells, "_host", side_effect=AssertionError("urlsplit asked")):
        assert rule.convert("https://www.linkedin.com/in/dana") == (
            "https://www.linkedin.com/in/dana",
            [],
        )
    assert rule.convert("HTTPS://LinkedIn.com/in/dana") == ("HTTPS://LinkedIn.com/in/dana", [])
    assert rule.convert("https://evil.io/linkedin.com")[1]


@given(_CELL_TEXTS)
def test_every_refused_cell_holds_a_mark_of_its_check(text: str) -> None:
    """A column without any of a check's marks may skip its refusal: never wrongly."""
    for field in sorted(FIELDS - {"uid"}):
        check = column_check(field)
        if check.refuse and re.fullmatch(check.refuse, text):
            assert any(mark in text.encode() for mark in check.refuse_marks), (field, text)


def test_the_invisible_characters_marks_cover_them() -> None:
    invisible = [chr(c) for c in range(0x110000) if schema.escape_invisible(chr(c)) != chr(c)]
    assert len(invisible) == 32
    check = column_check("email")
    for char in invisible:
        assert any(char.encode().startswith(m) for m in check.refuse_marks), hex(ord(char))


def test_custom_fields_are_free_text_and_the_uid_is_required() -> None:
    assert column_check("custom_fields.Team Size").kind == "any"
    assert column_check("updated_by.type").kind == "row"
    assert column_check("source_contact.email").kind == "row"
    assert column_check("resume").kind == "row"
    assert uid_check.required and not column_check("email").required


# --- the same dry run -----------------------------------------------------------------------

_HEADERS = {
    "uid": "UID",
    "first_name": "First Name",
    "email": "Email",
    "phone": "Phone",
    "prospect_status": "Prospect Status",
    "address.country": "Address.Country",
    "linkedin_url": "LinkedIn URL",
    "note": "Note",
    "custom_fields.Team": "custom_fields.Team",
    "updated_by.type": "Updated By.Type",
    "updated_by.name": "Updated By.Name",
    "source_contact.full_name": "Source Contact.Full Name",
    "source_contact.email": "Source Contact.Email",
    "links": "Links",
}
_GOOD = {
    "first_name": st.sampled_from(["Dana", "José", "  Noa ", "=1+2", "-", "'@x", "+972"]),
    "email": st.sampled_from(
        ["dana@example.com", "a.b@x.co.il", "bad@", "a @b.c", "x@y", "d@x.co\u200b", "#N/A"]
    ),
    "phone": st.sampled_from(
        ["+972-54-000", "054 000", "=cmd|' /C calc'!A0", "@SUM(1)", "9.72E+11", "05\u200b4"]
    ),
    # As people type them: any case, padded, spaced: the validator takes them, so must
    # the column-at-a-time path (test_as_typed_sheets_stay_on_the_column_path).
    "prospect_status": st.sampled_from(
        [
            *PROSPECT_STATUSES,
            "sourced",
            " CONTACTED ",
            "Maybe",
            "Not  interested",
            "contacted",
            "NOT INTERESTED",
            "\tResponded\u00a0",
            "not\u3000interested",
            "Sourced.",
        ]
    ),
    "address.country": st.sampled_from(["IL", "US", "il", "XX", " GB ", "U S", "us", "Gb", "il."]),
    "linkedin_url": st.one_of(
        _LINKEDIN_LIKE, st.just("https://www.linkedin.com/in/dana-cohen-123")
    ),
    "note": st.sampled_from(
        ["Called", 'said "hi", twice', "line one\nline two", "a\r\nb", "#n/a", "Err:502", "1E5"]
    ),
    "custom_fields.Team": st.sampled_from(
        ["R&D", "Sales; EU", "\t+tab", "\u00a0x\u3000", "\ufeffR&D\u200b", "#VALUE!"]
    ),
    "updated_by.type": st.sampled_from(["user", "USER", "robot"]),
    "updated_by.name": st.sampled_from(["Avi", "Tamar"]),
    "source_contact.full_name": st.sampled_from(["Head Hunter"]),
    "source_contact.email": st.sampled_from(["hh@agency.com", "nope"]),
    "links": st.sampled_from(["https://a.example https://b.example", "not a link"]),
}
_UIDS = st.sampled_from(
    [
        *("AE.1", "AE.2", "AE.3", "BX.17934", "SZ.9.1", "1234", "AE 1", "", " AE.4 ", "=AE.5"),
        *("ae.6", "\u200bAE.7\u00ad", "AE.\u200b8", "#REF!", "1.2E+5"),
    ]
)
_NOISE = st.text(
    alphabet=st.sampled_from([*" ,;\t\"'=+-@\r\nxé#", "\u00a0", "\x85", "\u200b", "\ufeff"]),
    max_size=6,
)


@st.composite
def sheets(draw: st.DrawFn) -> tuple[list[str], list[list[str]]]:
    fields = draw(st.lists(st.sampled_from(sorted(_GOOD)), min_size=1, max_size=7, unique=True))
    # "" is a column without a header (left empty, as a spreadsheet program leaves one).
    order = draw(st.permutations(["uid", *fields, *[""] * draw(st.integers(0, 2))]))
    padding = draw(st.sampled_from(["", " ", "\u00a0"]))
    headers = [draw(st.sampled_from(["", " "])) if not f else padding + _HEADERS[f] + padding
               for f in order]  # fmt: skip
    rows = []
    for _ in range(draw(st.integers(0, 30))):
        row = []
        for field in order:
            if not field:
                row.append(draw(st.sampled_from(["", " "])))
                continue
            strategy = _UIDS if field == "uid" else _GOOD[field]
            row.append(draw(st.one_of(strategy, strategy, st.just(""), st.just(" "), _NOISE)))
        rows.append(row)
    return headers, rows


def _csv_text(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    delimiter: str,
    quote_all: bool,
    line_end: str,
    last_newline: bool,
    blank_every: int,
) -> str:
    """A CSV as spreadsheet programs write it: a cell with the delimiter, a quote, CR or LF
    is quoted (csv.writer would leave a CR bare with LF line ends), quotes doubled."""

    def cell(text: str) -> str:
        if quote_all or any(c in text for c in (delimiter, '"', "\r", "\n")):
            return '"' + text.replace('"', '""') + '"'
        return text

    lines = [delimiter.join(map(cell, headers))]
    for i, row in enumerate(rows):
        if blank_every and i % blank_every == 1:
            lines.append("")  # an empty line: a row number, no report line
        lines.append(delimiter.join(map(cell, row)))
    return line_end.join(lines) + (line_end if last_newline else "")


_REPORTS = st.sampled_from([".csv", ".xlsx"])
_WRITING = st.tuples(
    st.sampled_from([",", ",", ";", "\t"]),
    st.booleans(),
    st.sampled_from(["\r\n", "\n"]),
    st.booleans(),
    st.sampled_from([0, 0, 3]),
    st.booleans(),
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sheets(), _WRITING, _REPORTS)
def test_well_formed_sheets_give_the_same_dry_run(
    tmp_path_factory: pytest.TempPathFactory,
    sheet: tuple[list[str], list[list[str]]],
    writing: tuple[str, bool, str, bool, int, bool],
    suffix: str,
) -> None:
    """Any sheet a spreadsheet program writes: the columnar path takes it, same results."""
    headers, rows = sheet
    delimiter, quote_all, line_end, last_newline, blank_every, bom = writing
    tmp = tmp_path_factory.mktemp("same")
    text = _csv_text(headers, rows, delimiter, quote_all, line_end, last_newline, blank_every)
    path = write(tmp / "sheet.csv", text, bom=bom)
    fast = assert_same(path, tmp, suffix=suffix)
    # pyarrow cannot read a header alone without a line end; such a sheet is no work.
    if rows or last_newline:
        assert fast is not None, "a well-formed sheet must not need the general path"


_RAW_CELL = st.text(alphabet=st.sampled_from([*'ab",; \r\n\t=', "\u00a0"]), max_size=8)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.lists(_RAW_CELL, min_size=1, max_size=4), max_size=8),
    st.sampled_from(["\n", "\r\n", "\r"]),
    st.booleans(),
    _REPORTS,
)
def test_malformed_csv_gives_the_same_dry_run_or_none(
    tmp_path_factory: pytest.TempPathFactory,
    rows: list[list[str]],
    line_end: str,
    last_newline: bool,
    suffix: str,
) -> None:
    """Cells joined without quoting rules (stray and unclosed quotes, short rows, CRs)."""
    tmp = tmp_path_factory.mktemp("raw")
    lines = ["uid,Note,First Name"] + [",".join(r) for r in rows]
    text = line_end.join(lines) + (line_end if last_newline else "")
    path = write(tmp / "sheet.csv", text)
    try:
        assert_same(path, tmp, suffix=suffix)
    except Exception as exc:  # the general path refused it: so did the columnar one
        if type(exc).__name__ != "InputError":
            raise


def _block_sheet(tmp: Path, rows: int) -> Path:
    lines = ["UID,First Name,Email,Prospect Status,Address.Country,Note"]
    for i in range(rows):
        uid = "AE.7" if i in (5, rows - 3) else f"AE.{1000 + i}"  # a duplicate far apart
        status = "Sourced" if i % 7 else "sourced"  # lower case: to the validator
        email = f"p{i}@example.com" if i % 11 else "nobody"
        note = '"a note, with a comma"' if i % 5 == 0 else ""
        lines.append(f"{uid},Dana {i},{email},{status},IL,{note}")
        if i % 97 == 0:
            lines.append(",,,,,")  # a row of empty cells
    return write(tmp / "big.csv", "\n".join(lines) + "\n")


def test_many_blocks_give_the_same_dry_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of 4 kB: duplicates across blocks, first bodies, blank rows, row numbers."""
    monkeypatch.setattr(columnar.arrow, "BLOCK_BYTES", 4096)
    assert assert_same(_block_sheet(tmp_path, 3000), tmp_path, suffix=".xlsx") is not None
    fast = assert_same(_block_sheet(tmp_path, 3000), tmp_path)
    assert fast is not None and fast.rows == 3000
    assert fast.summary.counts[Outcome.INVALID] > 250
    # a bad email, a duplicate uid, a bad email
    assert [r.row for r in fast.summary.results][:3] == [2, 8, 14]


_AS_TYPED = st.tuples(
    st.sampled_from(
        ["contacted", " Sourced", "NOT INTERESTED", "Not  interested ", "", "Responded"]
    ),
    st.sampled_from(["il", " US", "gb", "", "IL"]),
    st.sampled_from(["", "", "Dana", " Noa  "]),
    st.sampled_from(["", "a@example.com", " b@x.co.il "]),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_AS_TYPED, min_size=1, max_size=40), _REPORTS)
def test_as_typed_sheets_stay_on_the_column_path(
    tmp_path_factory: pytest.TempPathFactory,
    rows: list[tuple[str, str, str, str]],
    suffix: str,
) -> None:
    """Statuses and countries in any case, padded cells, mostly empty columns (as ATS
    exports are): every row valid, none goes to the row validator, the same reports."""
    tmp = tmp_path_factory.mktemp("typed")
    lines = ["UID,Prospect Status,Address.Country,First Name,Email"]
    lines += [f"AE.{i},{','.join(r)}" for i, r in enumerate(rows, start=1)]
    path = write(tmp / "typed.csv", "\r\n".join(lines) + "\r\n")
    asked: list[int] = []
    of_row = columnar.checks.Outcomes.of_row

    def spy(self: Any, number: int, values: Sequence[str]) -> tuple[str, str, str]:
        asked.append(number)
        return of_row(self, number, values)

    with pytest.MonkeyPatch.context() as m:
        m.setattr(columnar.checks.Outcomes, "of_row", spy)
        fast = assert_same(path, tmp, suffix=suffix)
    assert fast is not None and not fast.summary.results
    assert asked == []


def test_a_cell_longer_than_excel_holds_is_cut_alike_on_both_paths(tmp_path: Path) -> None:
    """Both XLSX writers cut a cell at Excel's limit with the same mark; the CSV keeps it."""
    note = "Voicemail." * 4000  # 40,000 characters
    text = f"uid,First Name,Note\nAE.1,Dana,{note}\nAE.2,Noa,short\nAE.3,{'😀' * 17_000},\n"
    path = write(tmp_path / "s.csv", text)
    fast = assert_same(path, tmp_path, suffix=".xlsx")
    assert fast is not None and fast.patches[0].body["note"] == note
    from openpyxl import load_workbook

    lines = list(load_workbook(tmp_path / "fast.xlsx")["Results"].iter_rows(values_only=True))
    assert len(lines[1][-1]) == xlsx.EXCEL_CELL_CHARS
    assert lines[1][-1].endswith(xlsx.CUT_MARK.format(total=40_000))
    assert lines[3][-2].endswith(xlsx.CUT_MARK.format(total=17_000))
    assert lines[2][-1] == "short"
    assert assert_same(path, tmp_path) is not None
    with (tmp_path / "fast.csv").open(encoding="utf-8-sig", newline="") as fh:
        assert list(csv.reader(fh))[1][-1] == note


def test_config_mapping_ignore_and_updated_by_defaults(tmp_path: Path) -> None:
    path = write(
        tmp_path / "s.csv",
        "Candidate,Mail,Internal,Note\nAE.1,a@example.com,x,hi\nAE.2,nope,,\nAE.3,,,\n",
    )
    mapped = Settings(
        columns={"Candidate": "uid", "Mail": "email"},
        ignore_columns=("Internal",),
        updated_by={"type": "app", "name": "bulk-update"},
    )
    fast = assert_same(path, tmp_path, mapped)
    assert fast is not None
    assert fast.patches[0].body["updated_by"] == {"type": "app", "name": "bulk-update"}
    assert fast.summary.counts[Outcome.SKIPPED] == 1


# --- where it steps aside ---------------------------------------------------------------


_ASIDE = {
    "cp1252 text": "uid,First Name\nAE.1,Jos\xe9\n",
    "data under an empty header": "uid,,First Name\nAE.1,x,Dana\n",
    "data past the last header": "uid,First Name,\nAE.1,Dana,x\n",
    "a blank line before the header": "\nuid,First Name\nAE.1,Dana\n",
    "a short row": "uid,First Name\nAE.1\nAE.2,Dana\n",
    "a row with a cell past the headers": "uid,First Name\nAE.1,Dana,x\n",
    "a row with an empty cell past the headers": "uid,First Name\nAE.1,Dana,\n",
    "a quote open at the end": 'uid,First Name\nAE.1,"Dana\nAE.2,Noa\n',
    "a quote open in the last line": 'uid,First Name\nAE.1,"Dana',
    "a re-uploaded results sheet": (
        "row,uid,outcome,http_status,error,message,attempts,fields,uid,First Name\n"
        "2,AE.1,invalid,,,,0,,AE.1,'=Dana\n"
    ),
    "an unknown column": "uid,Favourite Colour\nAE.1,red\n",
    "no uid column": "First Name\nDana\n",
}


@pytest.mark.parametrize("case", sorted(_ASIDE))
def test_sheets_it_cannot_do_exactly_go_to_the_general_path(tmp_path: Path, case: str) -> None:
    text = _ASIDE[case]
    path = tmp_path / "s.csv"
    path.write_bytes(text.encode("cp1252" if case == "cp1252 text" else "utf-8"))
    assert dry_run_csv(path, report_path=tmp_path / "fast.csv") is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.csv"]
    try:
        assert_same(path, tmp_path)
    except Exception as exc:
        assert type(exc).__name__ in ("InputError", "UnknownColumnError")


def test_padded_and_empty_headers_are_read_as_the_reader_reads_them(tmp_path: Path) -> None:
    text = " UID ,,First Name,\u3000,\nAE.1,,Dana,,\nAE.2, ,,\u00a0,\n"
    fast = assert_same(write(tmp_path / "s.csv", text), tmp_path)
    assert fast is not None and fast.summary.counts[Outcome.SKIPPED] == 1
    with (tmp_path / "fast.csv").open(encoding="utf-8-sig", newline="") as fh:
        assert next(csv.reader(fh))[-2:] == ["UID", "First Name"]


def test_a_row_near_the_size_limits_goes_to_the_general_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(columnar, "MAX_LINE_CHARS", 110)  # the longer row: 2 x 49 + 2 x 3
    path = write(tmp_path / "s.csv", f"uid,Note\nAE.1,{'x' * 30}\nAE.2,{'y' * 45}\n")
    assert dry_run_csv(path, report_path=tmp_path / "a.csv") is not None
    monkeypatch.setattr(columnar, "MAX_LINE_CHARS", 104)
    assert dry_run_csv(path, report_path=tmp_path / "b.csv") is None


def test_more_than_62_data_columns_go_to_the_general_path(tmp_path: Path) -> None:
    headers = ["uid", *(f"custom_fields.F{i}" for i in range(63))]
    path = write(tmp_path / "s.csv", ",".join(headers) + "\nAE.1" + ",x" * 63 + "\n")
    assert dry_run_csv(path, report_path=tmp_path / "a.csv") is None
    path.write_text(",".join(headers[:63]) + "\nAE.1" + ",x" * 62 + "\n", encoding="utf-8")
    assert assert_same(path, tmp_path) is not None


def test_updated_by_defaults_that_leave_rows_invalid_go_to_the_general_path(
    tmp_path: Path,
) -> None:
    path = write(tmp_path / "s.csv", "uid,Note\nAE.1,hi\n")
    half = Settings(updated_by={"name": "bulk-update"})  # no type: every row is invalid
    assert dry_run_csv(path, half, report_path=tmp_path / "a.csv") is None
    assert assert_same(path, tmp_path, half) is None


def test_an_excel_report_too_long_for_excel_is_written_as_csv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path / "s.csv", "uid,Note\nAE.1,a\nAE.2,b\n\nAE.3,c\n")
    monkeypatch.setattr("bulk_update.reportfile.XLSX_MAX_ROWS", 2)
    with caplog.at_level(logging.WARNING, logger="bulk_update"):
        done = dry_run_csv(path, report_path=tmp_path / "r.xlsx")
    assert done is not None and done.summary.report_path == tmp_path / "r.csv"
    assert "3 rows do not fit in an Excel sheet (at most 2)" in caplog.text
    # 4 lines, one blank: 3 rows fit after all, which only the whole pass can tell.
    monkeypatch.setattr("bulk_update.reportfile.XLSX_MAX_ROWS", 3)
    assert dry_run_csv(path, report_path=tmp_path / "t.xlsx") is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.csv", "s.csv"]
    # They fit: an XLSX report as asked.
    monkeypatch.setattr("bulk_update.reportfile.XLSX_MAX_ROWS", 4)
    assert assert_same(path, tmp_path, suffix=".xlsx") is not None


def test_xlsx_input_and_a_missing_file_go_to_the_general_path(tmp_path: Path) -> None:
    assert dry_run_csv(tmp_path / "none.csv", report_path=tmp_path / "r.csv") is None
    assert dry_run_csv(tmp_path / "s.xlsx", report_path=tmp_path / "r.csv") is None


# --- the command line -----------------------------------------------------------------------


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(args)
    out, err = capsys.readouterr()
    timings = r"in \d+\.\d+s|\"(duration_s|time)\": [^,]+|^\S+ \S+ (?=INFO|WARNING)"
    return code, re.sub(timings, "T", out, flags=re.M), re.sub(timings, "T", err, flags=re.M)


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_the_command_line_prints_the_same_dry_run_either_way(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    log_format: str,
) -> None:
    monkeypatch.delenv("COMEET_API_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    sheet = _block_sheet(tmp_path, 200)
    used: list[CsvDryRun | None] = []

    def spy(*args: Any, **kwargs: Any) -> CsvDryRun | None:
        used.append(dry_run_csv(*args, **kwargs))
        return used[-1]

    monkeypatch.setattr(wiring, "dry_run_csv", spy)
    argv = ["run", str(sheet), "--dry-run", "--log-format", log_format, "--state-dir", "st"]
    fast = _cli([*argv, "--report", "fast.csv"], capsys)
    assert used and used[-1] is not None
    monkeypatch.setattr(wiring, "dry_run_csv", lambda *a, **k: None)
    slow = _cli([*argv, "--report", "slow.csv"], capsys)
    assert fast[0] == slow[0] == 1  # invalid rows
    assert fast[1].replace("fast.csv", "slow.csv") == slow[1]
    assert fast[2].replace("fast.csv", "slow.csv") == slow[2]
    assert "Would send" in fast[1] or log_format == "json"
    assert "row 8 (uid AE.7): invalid" in fast[2] or log_format == "json"
    assert (tmp_path / "fast.csv").read_bytes() == (tmp_path / "slow.csv").read_bytes()


def test_a_dry_run_with_a_journal_takes_the_general_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COMEET_API_KEY", "key")
    monkeypatch.chdir(tmp_path)
    sheet = write(tmp_path / "s.csv", "uid,Note\nAE.1,hi\n")
    monkeypatch.setattr(wiring, "dry_run_csv", lambda *a, **k: pytest.fail("a journal is open"))
    code, out, _ = _cli(["run", str(sheet), "--dry-run", "--report", "r.csv",
                         "--state-dir", "st"], capsys)  # fmt: skip
    assert code == 0 and "Would send 1 request" in out


def test_the_demo_sheet_gives_the_same_dry_run(tmp_path: Path) -> None:
    """The sample sheet (files, links, every kind of mistake) is taken, with the same results."""
    demo = Path(__file__).resolve().parents[1] / "sample_data" / "candidates.csv"
    assert assert_same(demo, tmp_path, suffix=".xlsx") is not None
    fast = assert_same(demo, tmp_path)
    assert fast is not None
    assert fast.summary.counts[Outcome.INVALID] > 0 and fast.sends > 0


def test_a_report_that_would_replace_the_input_goes_to_the_general_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "s.csv", "uid,Note\nAE.1,a\nAE.2,b\n")
    before = path.read_bytes()
    assert dry_run_csv(path, report_path=path) is None
    monkeypatch.setattr("bulk_update.reportfile.XLSX_MAX_ROWS", 1)
    assert dry_run_csv(path, report_path=path.with_suffix(".xlsx")) is None
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.csv"]


def test_rows_that_say_the_same_share_one_message(tmp_path: Path) -> None:
    """Web-page numbers as uids (issue 12): every row invalid, its message kept once.

    The message does not repeat the uid (the report's uid column shows it), so a million
    such rows hold one message, in either path, and the reports stay the same.
    """
    lines = [f"{10000 + n},a{n}@example.com" for n in range(300)]
    sheet = write(tmp_path / "s.csv", "\n".join(["uid,email", *lines, "12345,", "12345,"]))
    for suffix in (".csv", ".xlsx"):
        fast = assert_same(sheet, tmp_path, suffix=suffix)
        assert fast is not None
        results = fast.summary.results
        assert len(results) == 302 and {r.uid for r in results[:2]} == {"10000", "10001"}
        assert len({id(r.message) for r in results[:300]}) == 1
        assert len({id(r.message) for r in results[300:]}) == 1  # a duplicate too: one again
    the_plan = plan(load(sheet), bodies=5)
    assert len({id(r.problems) for r in the_plan.rows[:300]}) == 1
    summary = asyncio.run(run_async(the_plan, dry_run=True, report_path=False))
    assert len({id(r.message) for r in summary.results[:300]}) == 1
    assert summary.results[0].message == (
        "uid: the number in the Comeet web page URL is not the API uid; use the dotted uid, "
        "e.g. AE.17934"
    )
