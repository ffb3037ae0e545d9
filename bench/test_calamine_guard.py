"""Tests of bench/calamine_guard.py: calamine's rows against openpyxl's, cell for cell.

Every comparison goes through `reader.cell_text`: each row's texts and numeric flags, row
by row from row 1, must be what the reader's openpyxl read-only path gives. Trailing empty
cells and trailing blank rows are left out on both sides: openpyxl gives them for styled
cells and rows without a value and calamine does not, and the reader ignores them.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import calamine_guard as xlsx_rows
import openpyxl
import pytest
from calamine_guard import DIFFERENCES, calamine_refusal, calamine_rows
from hypothesis import given, settings
from hypothesis import strategies as st
from openpyxl.utils import get_column_letter
from openpyxl.utils.exceptions import IllegalCharacterError
from openpyxl.worksheet._read_only import ReadOnlyWorksheet
from python_calamine import CalamineError, CalamineWorkbook

from bulk_update.errors import InputError
from bulk_update.reader import cell_text
from bulk_update.reader.xlsxfile import _pick_worksheet
from tests.data import make_corpus

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
Texts = list[list[tuple[str, bool]]]
MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"

# --------------------------------------------------------------------------- helpers


def _trimmed(rows: Texts) -> Texts:
    """Rows without their trailing empty cells, and without the blank rows at the end."""
    out = []
    for row in rows:
        while row and row[-1] == ("", False):
            row.pop()
        out.append(row)
    while out and not out[-1]:
        out.pop()
    return out


def openpyxl_texts(path: Path, sheet: str | None = None) -> tuple[str, Texts]:
    """The worksheet as the reader's openpyxl path reads it (reader._open_xlsx)."""
    with warnings.catch_warnings():
        # openpyxl warns about what it drops, and about dates past 9999 (the guard refuses).
        warnings.simplefilter("ignore")
        workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
        try:
            worksheet = _pick_worksheet(workbook.worksheets, workbook.sheetnames, sheet, path.name)
            if isinstance(worksheet, ReadOnlyWorksheet):
                worksheet.reset_dimensions()
            rows = worksheet.iter_rows(min_row=1, min_col=1, values_only=True)
            return worksheet.title, _trimmed([[cell_text(v) for v in row] for row in rows])
        finally:
            workbook.close()


def calamine_texts(path: Path, sheet: str | None = None) -> tuple[str, Texts]:
    """The worksheet through calamine_rows, which must not refuse it."""
    read = calamine_rows(path, sheet)
    assert read is not None, calamine_refusal(path)
    return read.title, _trimmed([[cell_text(v) for v in row] for row in read.rows])


def raw_calamine_texts(path: Path) -> Texts:
    """The first sheet through calamine itself, no guard: only for small, tame files."""
    with CalamineWorkbook.from_path(path) as workbook:
        rows = workbook.get_sheet_by_index(0).iter_rows()
        return _trimmed([[cell_text(v) for v in row] for row in rows])


def raw_workbook(
    path: Path,
    rows: str,
    *,
    shared: list[str] | None = None,
    formats: dict[int, str] | None = None,
    styles: list[int] = [0],  # noqa: B006 (never mutated)
    prefix: str = "",
) -> Path:
    """A workbook written by hand: `rows` is the sheetData's XML; `styles` lists the
    numFmtId of each cell style, `formats` the custom number formats."""
    package = "http://schemas.openxmlformats.org/package/2006/relationships"
    office = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    numbers = "".join(
        f'<numFmt numFmtId="{i}" formatCode={quoteattr(code)}/>'
        for i, code in (formats or {}).items()
    )
    xfs = "".join(f'<xf numFmtId="{i}" fontId="0" fillId="0" borderId="0"/>' for i in styles)
    content = "application/vnd.openxmlformats-officedocument.spreadsheetml"
    parts = {
        "[Content_Types].xml": (
            '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            f'<Default Extension="rels" ContentType="{package.replace("/", "")}"/>'
            '<Default Extension="xml" ContentType="application/xml"/>'
            f'<Override PartName="/xl/workbook.xml" ContentType="{content}.sheet.main+xml"/>'
            f'<Override PartName="/xl/styles.xml" ContentType="{content}.styles+xml"/>'
            '<Override PartName="/xl/worksheets/sheet1.xml" '
            f'ContentType="{content}.worksheet+xml"/>'
            + (
                '<Override PartName="/xl/sharedStrings.xml" '
                f'ContentType="{content}.sharedStrings+xml"/>'
                if shared is not None
                else ""
            )
            + "</Types>"
        ),
        "_rels/.rels": (
            f'<Relationships xmlns="{package}"><Relationship Id="rId1" '
            f'Type="{office}/officeDocument" Target="xl/workbook.xml"/></Relationships>'
        ),
        "xl/workbook.xml": (
            f'<workbook xmlns="{MAIN}" xmlns:r="{office}"><sheets>'
            '<sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>'
        ),
        "xl/_rels/workbook.xml.rels": (
            f'<Relationships xmlns="{package}">'
            f'<Relationship Id="rId1" Type="{office}/worksheet" Target="worksheets/sheet1.xml"/>'
            f'<Relationship Id="rId2" Type="{office}/styles" Target="styles.xml"/>'
            + (
                f'<Relationship Id="rId3" Type="{office}/sharedStrings" '
                'Target="sharedStrings.xml"/>'
                if shared is not None
                else ""
            )
            + "</Relationships>"
        ),
        "xl/styles.xml": (
            f'<styleSheet xmlns="{MAIN}"><numFmts count="{len(formats or {})}">{numbers}'
            '</numFmts><fonts count="1"><font><sz val="11"/><name val="Calibri"/></font>'
            '</fonts><fills count="1"><fill><patternFill patternType="none"/></fill></fills>'
            '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border>'
            '</borders><cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" '
            f'borderId="0"/></cellStyleXfs><cellXfs count="{len(styles)}">{xfs}</cellXfs>'
            "</styleSheet>"
        ),
        "xl/worksheets/sheet1.xml": (
            f'<{prefix}worksheet xmlns{":" + prefix[:-1] if prefix else ""}="{MAIN}">'
            f"<{prefix}sheetData>{rows}</{prefix}sheetData></{prefix}worksheet>"
        ),
    }
    if shared is not None:
        parts["xl/sharedStrings.xml"] = f'<sst xmlns="{MAIN}">{"".join(shared)}</sst>'
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in parts.items():
            archive.writestr(name, text)
    return path


def inline(ref: str, text: str) -> str:
    return f'<c r="{ref}" t="inlineStr"><is><t>{escape(text)}</t></is></c>'


def rewrite_member(path: Path, member: str, edit: Callable[[str], str]) -> None:
    with zipfile.ZipFile(path) as archive:
        parts = {info.filename: archive.read(info) for info in archive.infolist()}
    parts[member] = edit(parts[member].decode()).encode()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in parts.items():
            archive.writestr(name, data)


@pytest.fixture
def no_calamine(monkeypatch: pytest.MonkeyPatch) -> None:
    """calamine must not be given the workbook at all (it could abort the process)."""

    class Refused:
        # The guard's own probe (a workbook it writes itself) may still be read.
        from_filelike = CalamineWorkbook.from_filelike

        @classmethod
        def from_path(cls, *args: object) -> None:
            raise AssertionError("calamine was given a workbook the guard must refuse")

    monkeypatch.setattr(xlsx_rows, "CalamineWorkbook", Refused)


# --------------------------------------------------------------------------- the corpus

CORPUS = [
    pytest.param(
        e["file"], e.get("sheet"), id=e["file"] + (f"[{e['sheet']}]" if "sheet" in e else "")
    )
    for e in json.loads((DATA / "corpus.json").read_text(encoding="utf-8"))["entries"]
    if e["file"].endswith(".xlsx") and "rows" in e
]


@pytest.mark.parametrize(("name", "sheet"), CORPUS)
def test_corpus_workbooks_read_alike(name: str, sheet: str | None) -> None:
    path = DATA / name
    assert calamine_refusal(path) is None
    assert calamine_texts(path, sheet) == openpyxl_texts(path, sheet)


@pytest.mark.parametrize("name", sorted({p.values[0] for p in CORPUS}))
def test_every_sheet_of_the_corpus_reads_alike(name: str) -> None:
    path = DATA / name
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        titles = openpyxl.load_workbook(path, read_only=True).sheetnames
    for title in titles:
        assert calamine_texts(path, title) == openpyxl_texts(path, title)


def test_the_corpus_has_what_the_comparison_needs() -> None:
    # Shared strings, cached formula values, dates, booleans, merged cells, rows above the
    # header: the comparison above is only worth what the corpus holds.
    lo = DATA / "lo_features.xlsx"
    with zipfile.ZipFile(lo) as archive:
        sheet = archive.read("xl/worksheets/sheet1.xml").decode()
        assert "xl/sharedStrings.xml" in archive.namelist()
    assert '<f aca="false">' in sheet and 't="b"' in sheet and "<mergeCell " in sheet
    title, rows = calamine_texts(lo)
    assert title == "Candidates" and rows[:2] == [[], []] and rows[2][0] == ("uid", False)
    assert ("2024-03-01T10:30:00", False) in rows[3] and ("2", True) in rows[3]


def test_many_columns_header(tmp_path: Path) -> None:
    path = tmp_path / "many_columns.xlsx"
    make_corpus.many_columns_xlsx(path)
    assert calamine_texts(path) == openpyxl_texts(path)
    assert len(calamine_texts(path)[1][0]) == 16_384


# --------------------------------------------------------------------------- generated

SAFE_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Cn")) | st.sampled_from(" \t\n\r_"),
    max_size=12,
).filter(lambda s: not s.startswith("=") and not re.search(r"_x[0-9A-Fa-f]{4}_", s))
NUMBER_FORMATS = [
    "General",
    "0.00",
    "0%",
    "0.00%",
    "@",
    "#,##0",
    "0.00E+00",
    "yyyy-mm-dd",
    "mm-dd-yy",
    "d-mmm-yy",
    "h:mm",
    "h:mm:ss AM/PM",
    "[h]:mm:ss",
    "mm:ss.0",
    "yyyy-mm-dd h:mm:ss",
    "[$-409]mmmm d, yyyy;@",
    'yyyy"年"m"月"d"日"',
    "dd/mm/yyyy hh:mm:ss.000",
    "[Red]0.00;[Blue]-0.00",
]
#: Serials a date format turns into the same thing in both readers: not near midnight
#: below 1, nor on a half millisecond (see _DATE_SERIAL and _on_a_half_millisecond), as
#: openpyxl writes them (to 16 significant digits).
SAFE_SERIAL = st.floats(min_value=0, max_value=999_999).filter(
    lambda x: not 0.9999999 <= x < 1 and abs(float(f"{x:.16g}") * 86_400_000 % 1 - 0.5) >= 0.05
)
#: Dates and times to the millisecond, as Excel keeps them (microseconds: see above).
MILLISECONDS = st.integers(0, 999).map(lambda ms: ms * 1000)


@st.composite
def safe_number(draw: st.DrawFn) -> tuple[object, str]:
    """A number and its format: any number unformatted, a safe serial when dated."""
    fmt = draw(st.sampled_from(NUMBER_FORMATS))
    if fmt in ("General", "0.00", "0%", "0.00%", "@", "#,##0", "0.00E+00"):
        # Integers (and whole floats, which openpyxl writes as integers below 1e16) as far
        # as 2**53: past it, calamine's float is not the integer (see DIFFERENCES).
        value: object = draw(
            st.integers(-(2**53), 2**53)
            | st.floats(allow_nan=False, allow_infinity=False).filter(
                lambda x: abs(x) <= 2**53 or abs(x) >= 1e16
            )
        )
    else:
        value = draw(SAFE_SERIAL | st.integers(0, 999_999))
    return value, fmt


#: Formulas and the value a spreadsheet program would have cached (None: none cached).
FORMULAS = st.sampled_from(
    [
        ("=1+1", 2),
        ("=0.1+0.2", 0.30000000000000004),
        ('="a"&"b"', "ab"),
        ('=" padded "', " padded "),
        ("=TRUE()", True),
        ("=1=2", False),
        ("=NOW()", None),
        ("=A1", ""),
    ]
)


SAFE_VALUE = st.one_of(
    SAFE_TEXT,
    safe_number(),
    st.booleans(),
    st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(4600, 12, 31)),
    st.builds(
        lambda d, ms: d.replace(microsecond=ms),
        st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(4600, 12, 31)),
        MILLISECONDS,
    ),
    st.builds(lambda t, ms: t.replace(microsecond=ms), st.times(), MILLISECONDS).filter(
        lambda t: t < dt.time(23, 59, 59, 990_000)
    ),
    FORMULAS,
)
WIDE_VALUE = st.one_of(
    SAFE_VALUE,
    st.integers(),
    st.floats(),
    st.text(max_size=8).filter(lambda s: not s.startswith("=")),
    st.sampled_from(["_x000D_", "a_x0009_b", "#N/A", "  "]),
    st.tuples(st.floats(allow_nan=False), st.sampled_from(NUMBER_FORMATS)),
    st.times(),
    st.dates(),
)
#: Where the cells go: (row, column), with gaps and empty rows and columns before them.
PLACES = st.sets(st.tuples(st.integers(1, 25), st.integers(1, 8)), max_size=30)


@st.composite
def workbook(draw: st.DrawFn, values: st.SearchStrategy[Any]) -> dict[str, Any]:
    """Sheets of cells at random places (gaps, rows above and columns left of the data)."""
    count = draw(st.integers(1, 3))
    titles = draw(
        st.lists(
            st.sampled_from(["Candidates", "Archive", "Notes", "Sheet 2", "Données"]),
            min_size=count,
            max_size=count,
            unique_by=str.casefold,
        )
    )
    sheets = {}
    for title in titles:
        sheets[title] = {place: draw(values) for place in sorted(draw(PLACES))}
    pick = draw(st.none() | st.sampled_from(titles))
    if pick is not None:
        pick = draw(st.sampled_from([pick, pick.upper()]))  # Excel ignores the case
    return {"sheets": sheets, "pick": pick}


def write_workbook(path: Path, spec: dict[str, Any]) -> Path:
    """Save `spec` with openpyxl, then put cached values into the formula cells."""
    book = openpyxl.Workbook()
    first = book.active
    assert first is not None
    book.remove(first)
    cached: dict[str, dict[str, object]] = {}
    for index, (title, cells) in enumerate(spec["sheets"].items(), 1):
        sheet = book.create_sheet(title)
        for (row, column), value in cells.items():
            cell = sheet.cell(row, column)
            if isinstance(value, tuple) and isinstance(value[0], str) and value[0].startswith("="):
                cell.value = value[0]
                if value[1] is not None:
                    cached.setdefault(f"xl/worksheets/sheet{index}.xml", {})[cell.coordinate] = (
                        value[1]
                    )
            elif isinstance(value, tuple):
                cell.value, cell.number_format = value
            else:
                cell.value = value
    book.save(path)
    for member, values in cached.items():
        rewrite_member(path, member, functools.partial(_cache, values=values))
    return path


def _cache(xml: str, values: dict[str, object]) -> str:
    """Give formula cells the value Excel would have cached."""

    def one(match: re.Match[str]) -> str:
        ref, attributes, formula_xml = match.groups()
        if ref not in values:
            return match.group(0)
        value = values[ref]
        if isinstance(value, bool):
            kind, text = ' t="b"', str(int(value))
        elif isinstance(value, str):
            kind, text = ' t="str"', escape(value)
        else:
            kind, text = "", repr(value)
        return f'<c r="{ref}"{attributes}{kind}><f>{formula_xml}</f><v>{text}</v></c>'

    return re.sub(r'<c r="([A-Z]+[0-9]+)"((?: s="[0-9]+")?)><f>([^<]*)</f><v ?/></c>', one, xml)


@settings(max_examples=70)
@given(spec=workbook(SAFE_VALUE))
def test_generated_workbooks_read_alike(
    tmp_path_factory: pytest.TempPathFactory, spec: dict[str, Any]
) -> None:
    path = write_workbook(tmp_path_factory.mktemp("gen") / "book.xlsx", spec)
    # Everything these workbooks hold is read alike: the guard must let every one through.
    assert calamine_refusal(path) is None
    assert calamine_texts(path, spec["pick"]) == openpyxl_texts(path, spec["pick"])


@settings(max_examples=50)
@given(spec=workbook(WIDE_VALUE))
def test_wider_workbooks_are_read_alike_or_refused(
    tmp_path_factory: pytest.TempPathFactory, spec: dict[str, Any]
) -> None:
    path = tmp_path_factory.mktemp("wide") / "book.xlsx"
    try:
        write_workbook(path, spec)
    except (ValueError, TypeError, IllegalCharacterError):  # openpyxl will not write these
        return
    read = calamine_rows(path, spec["pick"])
    if read is not None:
        assert calamine_texts(path, spec["pick"]) == openpyxl_texts(path, spec["pick"])


# --------------------------------------------------------------------------- layout


def test_rows_and_columns_before_the_first_cell(tmp_path: Path) -> None:
    path = raw_workbook(
        tmp_path / "a.xlsx",
        f'<row r="3">{inline("C3", "uid")}</row>'
        f'<row r="6">{inline("D6", "AE.1")}<c r="E6"><v>5</v></c></row>',
    )
    read = calamine_rows(path, None)
    assert read is not None
    rows = list(read.rows)
    assert len(rows) == 6  # row 1 first, down to the last used row
    assert rows[2][2] == "uid" and rows[5][3:5] == ("AE.1", 5.0)
    assert all(cell_text(v) == ("", False) for v in rows[0] + rows[1] + rows[3] + rows[2][:2])
    assert calamine_texts(path) == openpyxl_texts(path)


def test_a_wrong_dimension_record_loses_no_rows(tmp_path: Path) -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    for row in [["uid", "name"], ["AE.1", "Dana"], ["AE.2", "Noa"]]:
        sheet.append(row)
    path = tmp_path / "book.xlsx"
    book.save(path)
    rewrite_member(
        path,
        "xl/worksheets/sheet1.xml",
        lambda xml: xml.replace('<dimension ref="A1:B3" />', '<dimension ref="A1:A2" />'),
    )
    with zipfile.ZipFile(path) as archive:
        assert b'<dimension ref="A1:A2" />' in archive.read("xl/worksheets/sheet1.xml")
    title, rows = calamine_texts(path)
    assert rows == [
        [("uid", False), ("name", False)],
        [("AE.1", False), ("Dana", False)],
        [("AE.2", False), ("Noa", False)],
    ]
    assert (title, rows) == openpyxl_texts(path)


def test_empty_sheet_has_no_rows(tmp_path: Path) -> None:
    path = raw_workbook(tmp_path / "a.xlsx", '<row r="1"><c r="A1" s="0"/></row>')
    read = calamine_rows(path, None)
    assert read is not None and list(read.rows) == []


def test_sheet_picked_as_the_reader_picks_it(tmp_path: Path) -> None:
    book = openpyxl.Workbook()
    first = book.active
    assert first is not None
    first.title = "Data"
    first.append(["uid", "n"])
    first.append(["AE.1", 3])
    chart = openpyxl.chart.BarChart()
    chart.add_data(openpyxl.chart.Reference(first, min_col=2, min_row=1, max_row=2))
    book.create_chartsheet("Chart", 0).add_chart(chart)
    book.create_sheet("Second").append(["uid", "from"])
    path = tmp_path / "book.xlsx"
    book.save(path)
    # The chart sheet comes first in the workbook; the first worksheet is read.
    assert calamine_texts(path)[0] == openpyxl_texts(path)[0] == "Data"
    assert calamine_texts(path, "SECOND") == openpyxl_texts(path, "SECOND")
    with pytest.raises(InputError) as ours:
        calamine_rows(path, "Missing")
    with pytest.raises(InputError) as theirs:
        openpyxl_texts(path, "Missing")
    assert ours.value.message == theirs.value.message
    assert "'Chart', 'Data', 'Second'" in ours.value.message


def test_damaged_workbook_is_left_to_openpyxl(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = raw_workbook(tmp_path / "a.xlsx", f'<row r="1">{inline("A1", "uid")}</row>')
    rewrite_member(path, "xl/workbook.xml", lambda xml: xml[: len(xml) // 2])
    assert calamine_rows(path, None) is None  # calamine's error: openpyxl gives the message

    class Panic(BaseException):
        pass

    Panic.__name__ = "PanicException"

    def panics(*args: object) -> None:
        raise Panic("index out of bounds")

    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt

    fine = raw_workbook(tmp_path / "b.xlsx", f'<row r="1">{inline("A1", "uid")}</row>')
    for raising, expected in ((panics, None), (interrupted, KeyboardInterrupt)):
        # The guard's probe still reads its own workbook with the real calamine.
        stub = {"from_path": staticmethod(raising), "from_filelike": CalamineWorkbook.from_filelike}
        monkeypatch.setattr(xlsx_rows, "CalamineWorkbook", type("Stub", (), stub))
        if expected is None:
            assert calamine_rows(fine, None) is None
        else:
            with pytest.raises(expected):
                calamine_rows(fine, None)


def test_errors_from_calamine_are_its_own(tmp_path: Path) -> None:
    path = raw_workbook(tmp_path / "a.xlsx", '<row r="1"><c r="A1" t="s"><v>7</v></c></row>')
    with pytest.raises(CalamineError):
        raw_calamine_texts(path)
    assert calamine_rows(path, None) is None


# --------------------------------------------------------------------------- differences

#: (what, sheetData, shared strings, custom formats, styles): each read differently.
DIFFERENT: list[tuple[str, str, list[str] | None, dict[int, str], list[int]]] = [
    ("error cells", '<row r="1"><c r="A1" t="e"><f>NA()</f><v>#N/A</v></c></row>', None, {}, [0]),
    (
        "ISO date cells (t='d')",
        '<row r="1"><c r="A1" t="d"><v>2024-03-01T10:30:00.123456</v></c></row>',
        None,
        {},
        [0],
    ),
    (
        "_xHHHH_ escapes",
        '<row r="1"><c r="A1" t="s"><v>0</v></c></row>',
        ["<si><t>a_x000D_b</t></si>"],
        {},
        [0],
    ),
    ("_xHHHH_ escapes", f'<row r="1">{inline("A1", "a_x0009_b")}</row>', None, {}, [0]),
    (
        "integers past 2**53",
        '<row r="1"><c r="A1"><v>12345678901234567</v></c></row>',
        None,
        {},
        [0],
    ),
    ("numbers written unusually", '<row r="1"><c r="A1"><v> 5 </v></c></row>', None, {}, [0]),
    ("numbers written unusually", '<row r="1"><c r="A1"><v>1_000</v></c></row>', None, {}, [0]),
    (
        "booleans written unusually",
        '<row r="1"><c r="A1" t="b"><v>true</v></c></row>',
        None,
        {},
        [0],
    ),
    (
        "rich text runs",
        '<row r="1"><c r="A1" t="s"><v>0</v></c></row>',
        ["<si><r><t>a </t></r><r><rPr><b/></rPr><t>b</t></r></si>"],
        {},
        [0],
    ),
    ("number formats", '<row r="1"><c r="A1" s="1"><v>45352</v></c></row>', None, {}, [0, 31]),
    ("odd date serials", '<row r="1"><c r="A1" s="1"><v>-1</v></c></row>', None, {}, [0, 14]),
    ("odd date serials", '<row r="1"><c r="A1" s="1"><v>3000000</v></c></row>', None, {}, [0, 14]),
    (
        "odd date serials",
        '<row r="1"><c r="A1" s="1"><v>0.99999999999</v></c></row>',
        None,
        {},
        [0, 14],
    ),
    (
        "half milliseconds",
        '<row r="1"><c r="A1" s="1"><v>0.6055469039351852</v></c></row>',
        None,
        {},
        [0, 22],
    ),
    (
        "cells calamine places elsewhere",
        '<row r="1"><c r="A1" t="inlineStr" r="C1"><is><t>x</t></is></c></row>',
        None,
        {},
        [0],
    ),
]


@pytest.mark.parametrize(
    ("what", "rows", "shared", "formats", "styles"), DIFFERENT, ids=[d[0] for d in DIFFERENT]
)
def test_each_difference_is_real_and_refused(
    tmp_path: Path,
    what: str,
    rows: str,
    shared: list[str] | None,
    formats: dict[int, str],
    styles: list[int],
) -> None:
    assert what in DIFFERENCES
    path = raw_workbook(tmp_path / "a.xlsx", rows, shared=shared, formats=formats, styles=styles)
    try:
        theirs: object = openpyxl_texts(path)[1]
    except Exception as exc:  # openpyxl refuses some of these files outright
        theirs = type(exc)
    try:
        ours: object = raw_calamine_texts(path)
    except CalamineError as exc:
        ours = type(exc)
    assert ours != theirs  # if calamine ever agrees, the refusal can go
    assert calamine_refusal(path) is not None
    assert calamine_rows(path, None) is None


def test_booleans_other_than_0_and_1(tmp_path: Path) -> None:
    path = raw_workbook(tmp_path / "a.xlsx", '<row r="1"><c r="A1" t="b"><v>2</v></c></row>')
    assert openpyxl_texts(path)[1] == [[("TRUE", False)]]
    with pytest.raises(CalamineError):
        raw_calamine_texts(path)
    assert calamine_rows(path, None) is None


# --------------------------------------------------------------------------- hostile


def _far(rows: str) -> str:
    return f'<row r="1">{inline("A1", "uid")}</row>{rows}'


LAID_OUT = "a cell not laid out as expected"
HOSTILE = {
    # One cell at Excel's last column and row: calamine allocates 16,384 x 1,048,576 cells.
    "far cell": (
        _far('<row r="1048576"><c r="XFD1048576"><v>1</v></c></row>'),
        "may span 17,179,869,184 cells",
    ),
    "far empty string": (
        _far(f'<row r="1048576">{inline("XFD1048576", "")}</row>'),
        "may span 17,179,869,184 cells",
    ),
    "26 columns by a million rows": (
        _far('<row r="1048576"><c r="Z1048576"><v>1</v></c></row>'),
        "may span 27,262,976 cells",
    ),
    # No references: calamine counts rows and cells instead.
    "no references": (
        _far("<row/>" * 3000 + "<row>" + "<c/>" * 3000 + "<c><v>1</v></c></row>"),
        LAID_OUT,
    ),
    "a second r": ('<row r="1"><c r="A1" r="XFD1048576"><v>1</v></c></row>', LAID_OUT),
    "other spelling": ("<row r=\"1\"><c r = 'XFD1048576'><v>1</v></c></row>", LAID_OUT),
    "leading zero": ('<row r="1"><c r="A01"><v>1</v></c></row>', LAID_OUT),
    "tab": ('<row r="1"><c\tr="XFD1048576"><v>1</v></c></row>', LAID_OUT),
}


@pytest.mark.parametrize(("rows", "reason"), HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_layouts_never_reach_calamine(
    tmp_path: Path, no_calamine: None, rows: str, reason: str
) -> None:
    path = raw_workbook(tmp_path / "a.xlsx", rows)
    assert path.stat().st_size < 10_000
    assert reason in (calamine_refusal(path) or "")
    assert calamine_rows(path, None) is None


def test_prefixed_cells_never_reach_calamine(tmp_path: Path, no_calamine: None) -> None:
    path = raw_workbook(
        tmp_path / "a.xlsx",
        '<x:row r="1"><x:c r="XFD1048576"><x:v>1</x:v></x:c></x:row>',
        prefix="x:",
    )
    assert "namespace prefix" in (calamine_refusal(path) or "")
    assert calamine_rows(path, None) is None


@pytest.mark.parametrize(
    "maker", [make_corpus.entity_bomb_xlsx, make_corpus.entity_bomb_shared_xlsx]
)
def test_entity_bombs_are_left_to_openpyxl(
    tmp_path: Path, no_calamine: None, maker: Callable[[Path], None]
) -> None:
    # The reader refuses them first; if it did not, defusedxml (behind openpyxl) must.
    path = tmp_path / "bomb.xlsx"
    maker(path)
    assert "holds a document type declaration" in (calamine_refusal(path) or "")
    assert calamine_rows(path, None) is None


def test_shared_string_copied_into_many_cells(tmp_path: Path, no_calamine: None) -> None:
    # calamine copies a shared string into every cell that uses it: 200 kB x 3,000 = 600 MB.
    cells = "".join(f'<row r="{i}"><c r="A{i}" t="s"><v>0</v></c></row>' for i in range(1, 3001))
    path = raw_workbook(
        tmp_path / "a.xlsx", cells, shared=["<si><t>" + "x" * 200_000 + "</t></si>"]
    )
    assert path.stat().st_size < 50_000
    assert "calamine would take about" in (calamine_refusal(path) or "")
    assert calamine_rows(path, None) is None


def test_long_shared_strings_used_once_are_fine(tmp_path: Path) -> None:
    # The exact count: 300 strings of 20 kB, each used once, are 6 MB, not 300 x 300 x 20 kB.
    shared = [f"<si><t>{i}{'x' * 20_000}</t></si>" for i in range(300)]
    cells = "".join(
        f'<row r="{i + 1}"><c r="A{i + 1}" t="s"><v>{i}</v></c></row>' for i in range(300)
    )
    path = raw_workbook(tmp_path / "a.xlsx", cells, shared=shared)
    assert calamine_refusal(path) is None
    assert calamine_texts(path) == openpyxl_texts(path)


def test_parts_where_calamine_does_not_look(tmp_path: Path) -> None:
    path = raw_workbook(tmp_path / "a.xlsx", f'<row r="1">{inline("A1", "uid")}</row>')
    rewrite_member(
        path,
        "xl/_rels/workbook.xml.rels",
        lambda xml: xml.replace('Target="styles.xml"', 'Target="Styles2.xml"'),
    )
    assert calamine_refusal(path) == "the styles are at xl/Styles2.xml"
    rewrite_member(
        path,
        "xl/_rels/workbook.xml.rels",
        lambda xml: xml.replace('Target="worksheets/sheet1.xml"', 'Target="/xl/sheets/one.xml"'),
    )
    assert calamine_refusal(path) == "the worksheet part xl/sheets/one.xml is missing"


def test_the_size_bounds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = "".join(
        f'<row r="{i}"><c r="A{i}"><v>{i}</v></c><c r="L{i}"><v>1</v></c></row>'
        for i in range(1, 1001)
    )
    path = raw_workbook(tmp_path / "a.xlsx", rows)
    assert calamine_refusal(path) is None
    monkeypatch.setattr(xlsx_rows, "MAX_CELLS", 12 * 1000 - 1)
    assert "cells of memory" in (calamine_refusal(path) or "")
    monkeypatch.setattr(xlsx_rows, "MAX_CELLS", 12 * 2000)
    monkeypatch.setattr(xlsx_rows, "MAX_BYTES", 100_000)
    assert "calamine would take about" in (calamine_refusal(path) or "")


def _spelled(value: int, letters: bool) -> str:
    return get_column_letter(value) if letters else str(value)


@given(
    taken=st.lists(st.integers(1, 9_000), min_size=1, max_size=12),  # bound + 1 <= XFD
    probes=st.lists(st.integers(1, 18_278), max_size=20),
    letters=st.booleans(),
)
def test_bounds_and_their_patterns_agree(
    taken: list[int], probes: list[int], letters: bool
) -> None:
    limit = xlsx_rows._Bound(letters=letters)
    for value in taken:
        limit.take(_spelled(value, letters).encode())
    assert max(taken) <= limit.value <= 2 * max(taken)
    for value in [*taken, *probes, limit.value, limit.value + 1]:
        matched = re.fullmatch(limit.within(), _spelled(value, letters)) is not None
        assert matched == (value <= limit.value), value


def test_chunks_never_split_a_cell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(xlsx_rows, "_CHUNK", 7)
    rows = "".join(
        f'<row r="{i}">{inline(f"A{i}", "n" * i)}<c r="B{i}" s="1"><v>4535{i}</v></c></row>'
        for i in range(1, 40)
    )
    path = raw_workbook(tmp_path / "a.xlsx", rows, styles=[0, 14])
    assert calamine_refusal(path) is None
    assert calamine_texts(path) == openpyxl_texts(path)


def test_probe_workbook_reads_in_both_readers() -> None:
    probe = xlsx_rows._probe_workbook(
        f'<styleSheet xmlns="{MAIN}"><cellXfs count="2"><xf numFmtId="0"/><xf numFmtId="14"/>'
        "</cellXfs></styleSheet>".encode(),
        2,
    )
    theirs = xlsx_rows._texts_by_openpyxl(probe)
    assert theirs == xlsx_rows._texts_by_calamine(probe)
    assert theirs[0] == xlsx_rows._PLAIN_PROBE_TEXTS
    assert theirs[1][:3] == [
        ("2024-03-01", False),
        ("2024-03-01T10:30:00", False),
        ("10:30:00", False),
    ]
