"""Tests of bulk_update.reader: CSV/XLSX -> rows of text with sheet row numbers."""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import math
import re
import time
import zipfile
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path

import openpyxl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bulk_update import reader
from bulk_update.errors import InputError
from bulk_update.models import SheetContents
from bulk_update.reader import cell_text, read_sheet
from tests.data import make_corpus

# --------------------------------------------------------------------------- helpers


def write_bytes(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def write_xlsx(
    tmp_path: Path,
    rows: Sequence[Sequence[object]],
    *,
    name: str = "sheet.xlsx",
    title: str = "Candidates",
    at: dict[str, str | float | None] | None = None,
    extra_sheets: Sequence[str] = (),
) -> Path:
    """A workbook made by openpyxl: `rows` appended from row 1, then `at` cells set."""
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = title
    for row in rows:
        sheet.append(list(row))
    for ref, value in (at or {}).items():
        sheet[ref] = value
    for extra in extra_sheets:
        workbook.create_sheet(extra).append(["uid", "from"])
    path = tmp_path / name
    workbook.save(path)
    return path


def rewrite_member(path: Path, member: str, edit: Callable[[str], str]) -> None:
    """Edit one XML part of a workbook in place (for things openpyxl cannot write)."""
    with zipfile.ZipFile(path) as archive:
        parts = {info.filename: archive.read(info) for info in archive.infolist()}
    parts[member] = edit(parts[member].decode()).encode()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for filename, data in parts.items():
            archive.writestr(filename, data)


def numbered(sheet: SheetContents) -> list[tuple[int, tuple[str, ...]]]:
    return [(row.number, row.values) for row in sheet.rows]


def input_error(path: Path, **kwargs: str | None) -> InputError:
    with pytest.raises(InputError) as caught:
        read_sheet(path, **kwargs)
    return caught.value


# --------------------------------------------------------------------------- cell_text


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, ("", False)),
        ("  AE.17934 ", ("AE.17934", False)),
        ("007", ("007", False)),
        ("+972501234567", ("+972501234567", False)),
        ("\t\n", ("", False)),
        (True, ("TRUE", False)),
        (False, ("FALSE", False)),
        (0, ("0", True)),
        (972501234567, ("972501234567", True)),
        (-42, ("-42", True)),
        (972501234567.0, ("972501234567", True)),
        (1.5, ("1.5", True)),
        (1e20, ("100000000000000000000", True)),
        (0.1, ("0.1", True)),
        (1e-7, ("0.0000001", True)),
        (-0.0, ("0", True)),
        (2.50, ("2.5", True)),
        (float("nan"), ("", False)),
        (dt.datetime(2024, 3, 1), ("2024-03-01", False)),
        (dt.datetime(2024, 3, 1, 10, 30), ("2024-03-01T10:30:00", False)),
        (dt.datetime(2024, 3, 1, 10, 30, 0, 250000), ("2024-03-01T10:30:00.250000", False)),
        (dt.date(2024, 3, 1), ("2024-03-01", False)),
        (dt.time(10, 30), ("10:30:00", False)),
        (dt.timedelta(hours=26), ("26:00:00", False)),  # as Excel's [h]:mm:ss shows it
        (dt.timedelta(minutes=-90), ("-1:30:00", False)),
        (dt.timedelta(seconds=59.6), ("0:01:00", False)),
        # Excel's float noise: what it stores, and what it shows
        (0.1 + 0.2, ("0.3", True)),
        (274.65999999999997, ("274.66", True)),
        (1 / 3, ("0.333333333333333", True)),
        (12345678901234567.0, ("12345678901234568", True)),  # whole: exactly, as today
        # invisible characters at the edges go like white space; inside, they stay
        ("\u200b AE.17934\ufeff", ("AE.17934", False)),
        ("\u00ad\u2060jane@example.com\u200c\u200d ", ("jane@example.com", False)),
        ("a\u200bb", ("a\u200bb", False)),
        (Decimal("1.50"), ("1.50", False)),
    ],
)
def test_cell_text(value: object, expected: tuple[str, bool]) -> None:
    assert cell_text(value) == expected


@given(st.one_of(st.integers(), st.floats(allow_nan=False, allow_infinity=False)))
def test_cell_text_numbers_are_plain_decimals(value: float) -> None:
    text, stored_as_number = cell_text(value)
    assert stored_as_number
    assert "e" not in text.lower()
    assert "nan" not in text.lower() and "inf" not in text.lower()
    assert text == text.strip()
    assert not text.endswith(".0")
    if isinstance(value, int) or value.is_integer():
        # exact: an int keeps every digit (float() would round 2**53 + 1), a whole float too
        assert Decimal(text) == (Decimal(value) if isinstance(value, int) else Decimal(repr(value)))
        return
    # as Excel shows it: at most 15 significant digits, the nearest such number
    digits = text.lstrip("-").replace(".", "").lstrip("0").rstrip("0")
    assert len(digits) <= 15
    assert abs(Decimal(text) - Decimal(value)) <= abs(Decimal(value)) * Decimal("5e-15")


@given(st.integers(min_value=-(2**53), max_value=2**53))
def test_cell_text_whole_numbers_exact(value: int) -> None:
    # Whole numbers a float holds exactly come out digit for digit, stored either way.
    assert cell_text(value)[0] == str(value)
    text, _ = cell_text(float(value))
    assert "." not in text
    assert Decimal(text) == Decimal(value)


@given(st.integers(min_value=-(10**9), max_value=10**9), st.integers(min_value=0, max_value=6))
def test_cell_text_short_decimals_exact(mantissa: int, places: int) -> None:
    # A number typed with a few decimals comes back as typed (trailing zeros aside).
    typed = Decimal(mantissa).scaleb(-places)
    text, _ = cell_text(float(typed))
    assert Decimal(text) == typed


# --------------------------------------------------------------------------- CSV acid test

#: The kinds of record csv-spectrum (max-mapper's acid test for CSV readers) checks, written
#: here anew: (file text, header, rows as the reader must give them). Each text is written
#: with LF and again with CRLF line ends.
_ACID: dict[str, tuple[str, tuple[str, ...], list[tuple[str, ...]]]] = {
    "simple": ("a,b,c\n1,2,3\n", ("a", "b", "c"), [("1", "2", "3")]),
    "comma_in_quotes": (
        'first,last,address,city\nAda,Lovelace,"12 St James\'s Square, London",London\n'
        '"Grace ""Amazing""",Hopper,"1 Navy Way, Arlington",Arlington\n',
        ("first", "last", "address", "city"),
        [
            ("Ada", "Lovelace", "12 St James's Square, London", "London"),
            ('Grace "Amazing"', "Hopper", "1 Navy Way, Arlington", "Arlington"),
        ],
    ),
    "empty_fields": (
        'a,b,c\n1,"",""\n2,3,4\n,,5\n',
        ("a", "b", "c"),
        [("1", "", ""), ("2", "3", "4"), ("", "", "5")],
    ),
    "escaped_quotes": (
        'a,b\n1,"ha ""ha"" ha"\n3,4\n"""",x\n',
        ("a", "b"),
        [("1", 'ha "ha" ha'), ("3", "4"), ('"', "x")],
    ),
    "json_in_a_cell": (
        'key,val\n1,"{""type"": ""Point"", ""coordinates"": [102.0, 0.5]}"\n',
        ("key", "val"),
        [("1", '{"type": "Point", "coordinates": [102.0, 0.5]}')],
    ),
    "newlines_in_quotes": (
        'a,b,c\n1,2,3\n"Once upon \na time",5,6\n7,8,9\n',
        ("a", "b", "c"),
        [("1", "2", "3"), ("Once upon \na time", "5", "6"), ("7", "8", "9")],
    ),
    "quotes_and_newlines": (
        'a,b\n1,"ha \n""ha"" \nha"\n3,4\n',
        ("a", "b"),
        [("1", 'ha \n"ha" \nha'), ("3", "4")],
    ),
    "utf8": (
        "a,b,c\n1,2,3\n4,5,ʤ\n6,ש,7\n",
        ("a", "b", "c"),
        [("1", "2", "3"), ("4", "5", "ʤ"), ("6", "ש", "7")],
    ),
    "coordinates": (
        "Contact Phone Number,Cities,Latitude,Longitude\n"
        '9175551234,"New York, NY","40.71",-74.00\n',
        ("Contact Phone Number", "Cities", "Latitude", "Longitude"),
        [("9175551234", "New York, NY", "40.71", "-74.00")],
    ),
}


@pytest.mark.parametrize("line_end", ["\n", "\r\n"])
@pytest.mark.parametrize("case", sorted(_ACID))
def test_csv_acid(tmp_path: Path, case: str, line_end: str) -> None:
    text, headers, rows = _ACID[case]
    data = text.replace("\n", line_end).encode("utf-8")
    sheet = read_sheet(write_bytes(tmp_path, f"{case}.csv", data))
    assert sheet.headers == headers
    assert sheet.header_row == 1
    # A line end inside a quoted cell is kept as the file has it.
    assert [row.values for row in sheet.rows] == [
        tuple(v.replace("\n", line_end) for v in row) for row in rows
    ]
    assert all(row.numeric == frozenset() for row in sheet.rows)


def test_csv_multiline_records_are_one_row_each(tmp_path: Path) -> None:
    text, _, _ = _ACID["newlines_in_quotes"]
    sheet = read_sheet(write_bytes(tmp_path, "n.csv", text.encode()))
    # Lines 3-4 of the file are one record: the next record is row 4, not row 5.
    assert [row.number for row in sheet.rows] == [2, 3, 4]


def test_csv_header_only_and_empty(tmp_path: Path) -> None:
    sheet = read_sheet(write_bytes(tmp_path, "h.csv", b"a,b,c\r\n"))
    assert (sheet.headers, list(sheet.rows)) == (("a", "b", "c"), [])
    assert "has no header row" in input_error(write_bytes(tmp_path, "e.csv", b"")).message


# --------------------------------------------------------------------------- CSV encodings


def test_utf8_bom(tmp_path: Path) -> None:
    path = write_bytes(tmp_path, "bom.csv", codecs.BOM_UTF8 + "uid,name\nAE.1,José\n".encode())
    sheet = read_sheet(path)
    assert sheet.headers == ("uid", "name")  # no \ufeff glued to the first header
    assert numbered(sheet) == [(2, ("AE.1", "José"))]
    assert sheet.sheet_name is None


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
def test_utf16_tab_separated(tmp_path: Path, encoding: str) -> None:
    # Excel's "Unicode text": UTF-16 with a BOM, tab-separated, CRLF.
    bom = codecs.BOM_UTF16_LE if encoding.endswith("le") else codecs.BOM_UTF16_BE
    text = 'uid\tfirst name\tcity\r\nAE.1\tDana\tתל אביב\r\nAE.2\t"a\tb"\t\r\n'
    path = write_bytes(tmp_path, "unicode.txt", bom + text.encode(encoding))
    sheet = read_sheet(path)
    assert sheet.headers == ("uid", "first name", "city")
    assert numbered(sheet) == [(2, ("AE.1", "Dana", "תל אביב")), (3, ("AE.2", "a\tb", ""))]


def test_cp1252_when_not_utf8(tmp_path: Path) -> None:
    # 0xE9 is é and 0x80 is € in Windows-1252, 0x93 and 0x94 its curly quotes; a few
    # names whose letters other code pages read differently (ø is ř in cp1250, ë is ė in
    # cp1257) are enough to tell.
    names = ["Zo\xeb", "No\xebl", "S\xf8ren", "Nu\xf1ez", "H\xe9l\xe8ne", "\xc5sa"]
    rows = b"".join(
        b"AE.%d;%s Caf\xe9;\x80 5 \x93na\xefve\x94\r\n" % (i, n.encode("latin-1"))
        for i, n in enumerate(names)
    )
    sheet = read_sheet(write_bytes(tmp_path, "win.csv", b"uid;name;note\r\n" + rows))
    assert sheet.headers == ("uid", "name", "note")
    assert sheet.encoding == "cp1252 (detected)"
    assert numbered(sheet)[0] == (2, ("AE.0", "Zoë Café", "€ 5 \u201cnaïve\u201d"))
    assert [row.values[1] for row in sheet.rows][1:3] == ["Noël Café", "Søren Café"]


def test_utf8_checked_across_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reader.csvfile, "SCAN_BYTES", 7)
    # Multi-byte characters straddle many chunk boundaries; the file is still UTF-8.
    body = "".join(f"AE.{i},Zoë Ünal ✓\n" for i in range(2000))
    path = write_bytes(tmp_path, "long.csv", ("uid,name\n" + body).encode())
    sheet = read_sheet(path)
    assert len(sheet.rows) == 2000
    assert sheet.rows[-1].values == ("AE.1999", "Zoë Ünal ✓")


def test_one_bad_byte_far_down_means_cp1252(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reader.csvfile, "SCAN_BYTES", 64)
    body = b"".join(b"AE.%d,plain\n" % i for i in range(3000))
    path = write_bytes(tmp_path, "late.csv", b"uid,name\n" + body + b"AE.x,Caf\xe9\n")
    sheet = read_sheet(path)
    assert sheet.rows[-1].values == ("AE.x", "Café")
    assert sheet.rows[-1].number == 3002


# --------------------------------------------------------------------------- CSV delimiters


@pytest.mark.parametrize(
    ("data", "headers", "values"),
    [
        (b"uid;email\nAE.1;a@x.io\n", ("uid", "email"), ("AE.1", "a@x.io")),
        (b"uid\temail\nAE.1\ta@x.io\n", ("uid", "email"), ("AE.1", "a@x.io")),
        (b"uid,email\nAE.1,a@x.io\n", ("uid", "email"), ("AE.1", "a@x.io")),
        # Commas inside the quoted header do not count: the delimiter is ';'.
        (b'"Name, full";"a,b,c";uid\nDana;x;AE.1\n', ("Name, full", "a,b,c", "uid"), None),
        # One column: the default ',' (a ';' in a cell of a data row is text).
        (b"uid\nAE.1;AE.2\n", ("uid",), ("AE.1;AE.2",)),
        # Detection uses the header, not the blank delimiter-only records above it.
        (b",,,\n\nuid,note\nAE.1,a;b\n", ("uid", "note"), ("AE.1", "a;b")),
        (b";;;;\n\nuid;note\nAE.1;a,b\n", ("uid", "note"), ("AE.1", "a,b")),
        # A quoted header cell spanning lines: the header record is both lines.
        (b'"first\nname";uid\nDana;AE.1\n', ("first\nname", "uid"), ("Dana", "AE.1")),
    ],
)
def test_delimiter_detection(
    tmp_path: Path, data: bytes, headers: tuple[str, ...], values: tuple[str, ...] | None
) -> None:
    sheet = read_sheet(write_bytes(tmp_path, "d.csv", data))
    assert sheet.headers == headers
    if values is not None:
        assert sheet.rows[0].values == values


def test_quoted_cells_hold_delimiters_quotes_and_newlines(tmp_path: Path) -> None:
    data = b'uid;note;links\r\nAE.1;"a;b ""c""\r\nsecond line";"https://a.io\nhttps://b.io"\r\n'
    sheet = read_sheet(write_bytes(tmp_path, "q.csv", data))
    assert numbered(sheet) == [
        (2, ("AE.1", 'a;b "c"\r\nsecond line', "https://a.io\nhttps://b.io"))
    ]


def test_crlf_numbering_blank_rows_and_multiline_records(tmp_path: Path) -> None:
    data = (
        b"\r\n"  # row 1 blank
        b",,\r\n"  # row 2 blank (only delimiters)
        b"uid,first_name,note\r\n"  # row 3: the header
        b"AE.1,Dana,one\r\n"  # row 4
        b"\r\n"  # row 5 blank
        b'AE.2,Noa,"two\r\nlines"\r\n'  # row 6 (one record over two lines)
        b" , ,  \r\n"  # row 7 blank (white space only)
        b"AE.3,Lior,three\r\n"  # row 8
    )
    sheet = read_sheet(write_bytes(tmp_path, "crlf.csv", data))
    assert sheet.header_row == 3
    assert sheet.headers == ("uid", "first_name", "note")
    assert numbered(sheet) == [
        (4, ("AE.1", "Dana", "one")),
        (6, ("AE.2", "Noa", "two\r\nlines")),
        (8, ("AE.3", "Lior", "three")),
    ]
    assert not any("\r" in v for row in sheet.rows[::2] for v in row.values)


def test_cells_and_headers_are_stripped_and_kept_as_written(tmp_path: Path) -> None:
    data = b" uid , First Name ,phone,phone\n AE.1 ,  Dana , +972501234567 ,007\n"
    sheet = read_sheet(write_bytes(tmp_path, "s.csv", data))
    # Duplicate headers are the schema's business: returned as written.
    assert sheet.headers == ("uid", "First Name", "phone", "phone")
    assert sheet.rows[0].values == ("AE.1", "Dana", "+972501234567", "007")


def test_upper_case_extension_and_tsv(tmp_path: Path) -> None:
    assert read_sheet(write_bytes(tmp_path, "A.CSV", b"uid\nAE.1\n")).headers == ("uid",)
    assert read_sheet(write_bytes(tmp_path, "b.tsv", b"uid\tx\nAE.1\t2\n")).rows[0].values == (
        "AE.1",
        "2",
    )


# --------------------------------------------------------------------------- columns


def test_short_rows_padded_and_trailing_unnamed_empty_columns_dropped(tmp_path: Path) -> None:
    data = b"uid,name,,\nAE.1,Dana,,\nAE.2\nAE.3,Noa, ,\n"
    sheet = read_sheet(write_bytes(tmp_path, "t.csv", data))
    assert sheet.headers == ("uid", "name")
    assert numbered(sheet) == [(2, ("AE.1", "Dana")), (3, ("AE.2", "")), (4, ("AE.3", "Noa"))]
    assert all(len(row.values) == len(sheet.headers) for row in sheet.rows)


def test_unnamed_empty_column_in_the_middle_is_dropped(tmp_path: Path) -> None:
    sheet = read_sheet(write_bytes(tmp_path, "m.csv", b"uid,,name\nAE.1,,Dana\n"))
    assert sheet.headers == ("uid", "name")
    assert sheet.rows[0].values == ("AE.1", "Dana")


def test_unnamed_column_with_data_is_an_error_csv(tmp_path: Path) -> None:
    data = b"uid,name,,\nAE.1,Dana,,\n\nAE.2,Noa,,oops\nAE.3,Lior,,more\n"
    error = input_error(write_bytes(tmp_path, "u.csv", data))
    assert "u.csv" in str(error)
    assert "row 4" in error.message and "column 4" in error.message
    assert error.fix and "header" in error.fix


def test_value_beyond_last_header_is_an_error(tmp_path: Path) -> None:
    # An unquoted comma in a cell shifts the row to the right.
    data = b"uid,name\nAE.1,Dana\nAE.2,Cohen, Noa\n"
    error = input_error(write_bytes(tmp_path, "b.csv", data))
    assert "row 3" in error.message and "column 3" in error.message
    assert "'name'" in error.message
    assert error.fix and "quote" in error.fix


def test_empty_cells_beyond_last_header_are_fine(tmp_path: Path) -> None:
    sheet = read_sheet(write_bytes(tmp_path, "e.csv", b"uid,name\nAE.1,Dana,,  ,\n"))
    assert sheet.rows[0].values == ("AE.1", "Dana")


@pytest.mark.parametrize(
    "data", [b"", b"\n\n\n", b"\r\n , ,\r\n,,,\r\n", b"\t\t\n", codecs.BOM_UTF8, b'"",""\n']
)
def test_no_header_row(tmp_path: Path, data: bytes) -> None:
    error = input_error(write_bytes(tmp_path, "empty.csv", data))
    assert "empty.csv has no header row" in error.message
    assert error.fix


def test_header_only_gives_no_rows(tmp_path: Path) -> None:
    sheet = read_sheet(write_bytes(tmp_path, "h.csv", b"\nuid,name\n\n"))
    assert (sheet.header_row, sheet.headers, sheet.rows) == (2, ("uid", "name"), ())


# --------------------------------------------------------------------------- XLSX


def test_xlsx_values_as_text(tmp_path: Path) -> None:
    path = write_xlsx(
        tmp_path,
        [
            ["uid", "phone", "phone2", "score", "date", "when", "active", "zip", "mobile"],
            [
                "AE.1",
                972501234567,
                972501234567.0,
                1.5,
                dt.date(2024, 3, 1),
                dt.datetime(2024, 3, 1, 10, 30),
                True,
                "01234",
                "+972501234567",
            ],
            ["AE.2", 0, 1e20, 0.1, None, dt.datetime(2024, 3, 2), False, " 007 ", None],
        ],
    )
    sheet = read_sheet(path)
    assert sheet.sheet_name == "Candidates"
    assert sheet.headers[:3] == ("uid", "phone", "phone2")
    assert numbered(sheet) == [
        (
            2,
            (
                "AE.1",
                "972501234567",
                "972501234567",
                "1.5",
                "2024-03-01",
                "2024-03-01T10:30:00",
                "TRUE",
                "01234",
                "+972501234567",
            ),
        ),
        (
            3,
            ("AE.2", "0", "100000000000000000000", "0.1", "", "2024-03-02", "FALSE", "007", ""),
        ),
    ]
    assert sheet.rows[0].numeric == frozenset({1, 2, 3})
    assert sheet.rows[1].numeric == frozenset({1, 2, 3})


def test_xlsx_formula_is_never_its_text(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path, [["uid", "total", "name"], ["AE.1", "=1+1", '=CONCAT("a","b")']])
    sheet = read_sheet(path)
    # openpyxl stores no computed value, so the cells are empty, never the formula text.
    assert sheet.rows[0].values == ("AE.1", "", "")


def test_xlsx_formula_gives_its_cached_value(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path, [["uid", "total", "name"], ["AE.1", "=1+1", '=CONCAT("a","b")']])

    # Put in the values Excel would have cached when it last computed the sheet.
    def cache(xml: str) -> str:
        xml = xml.replace("<f>1+1</f><v />", "<f>1+1</f><v>2</v>")
        xml = xml.replace('<c r="C2">', '<c r="C2" t="str">')
        return xml.replace("</f><v /></c></row>", "</f><v>ab</v></c></row>")

    rewrite_member(path, "xl/worksheets/sheet1.xml", cache)
    sheet = read_sheet(path)
    assert sheet.rows[0].values == ("AE.1", "2", "ab")
    assert sheet.rows[0].numeric == frozenset({1})


def _cells_xml(path: Path, cells: dict[str, str]) -> None:
    """Replace placeholder number cells (by reference) with hand-written <c> XML."""

    def edit(xml: str) -> str:
        for ref, cell in cells.items():
            xml, found = re.subn(rf'<c r="{ref}"[^>]*>.*?</c>', cell, xml, count=1)
            assert found, ref
        return xml

    rewrite_member(path, "xl/worksheets/sheet1.xml", edit)


def test_xlsx_float_noise_reads_as_excel_shows_it(tmp_path: Path) -> None:
    # The <v> text as Excel stores these numbers, written by hand (openpyxl would round-trip).
    path = write_xlsx(tmp_path, [["uid", "a", "b", "c", "d"], ["AE.1", 1, 2, 3, 4]])
    _cells_xml(
        path,
        {
            "B2": '<c r="B2"><v>0.30000000000000004</v></c>',
            "C2": '<c r="C2"><v>274.65999999999997</v></c>',
            "D2": '<c r="D2"><v>972501234567</v></c>',
            "E2": '<c r="E2"><v>1.0000000000000002E-3</v></c>',
        },
    )
    row = read_sheet(path).rows[0]
    assert row.values == ("AE.1", "0.3", "274.66", "972501234567", "0.001")
    assert row.numeric == frozenset({1, 2, 3, 4})


_EXCEL_ERRORS = ("#N/A", "#VALUE!", "#REF!", "#DIV/0!", "#NUM!", "#NAME?", "#NULL!", "#SPILL!")


@pytest.mark.parametrize("error", [*_EXCEL_ERRORS, "#CALC!"])
def test_xlsx_cached_error_cells_read_as_the_error(tmp_path: Path, error: str) -> None:
    # A failed VLOOKUP as Excel saves it: the formula and its cached error value.
    path = write_xlsx(tmp_path, [["uid", "phone", "note"], ["AE.1", 1, "ok"]])
    formula = "<f>VLOOKUP(A2,Other!A:B,2,FALSE)</f>"
    _cells_xml(path, {"B2": f'<c r="B2" t="e">{formula}<v>{error}</v></c>'})
    row = read_sheet(path).rows[0]
    assert row.values == ("AE.1", error, "ok")
    assert row.numeric == frozenset()


def test_csv_invisible_characters_at_the_edges_are_stripped(tmp_path: Path) -> None:
    text = "\ufeffuid,email\r\n\u200bAE.1\u00ad,jane@example.com\u200b\r\nAE.\u200b2,x\r\n"
    sheet = read_sheet(write_bytes(tmp_path, "z.csv", text.encode("utf-8")))
    assert sheet.headers == ("uid", "email")
    assert numbered(sheet) == [(2, ("AE.1", "jane@example.com")), (3, ("AE.\u200b2", "x"))]


def test_xlsx_blank_rows_count_and_header_after_blank_rows(tmp_path: Path) -> None:
    path = write_xlsx(
        tmp_path,
        [],
        at={
            "A3": "uid",
            "B3": "name",
            "A4": "AE.1",
            "B4": "Dana",
            "A5": "   ",  # white space only: blank
            "A7": "AE.2",
            "B7": 5,
        },
    )
    sheet = read_sheet(path)
    assert sheet.header_row == 3
    assert numbered(sheet) == [(4, ("AE.1", "Dana")), (7, ("AE.2", "5"))]
    assert sheet.rows[1].numeric == frozenset({1})


def test_xlsx_wrong_dimension_record_loses_no_rows(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path, [["uid", "name"], ["AE.1", "Dana"], ["AE.2", "Noa"]])
    rewrite_member(
        path,
        "xl/worksheets/sheet1.xml",
        lambda xml: xml.replace('<dimension ref="A1:B3" />', '<dimension ref="A1:A2" />'),
    )
    sheet = read_sheet(path)
    assert sheet.headers == ("uid", "name")
    assert numbered(sheet) == [(2, ("AE.1", "Dana")), (3, ("AE.2", "Noa"))]


def test_xlsx_leading_empty_columns_are_dropped(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path, [], at={"C2": "uid", "D2": "name", "C3": "AE.1", "D3": "Dana"})
    sheet = read_sheet(path)
    assert (sheet.header_row, sheet.headers) == (2, ("uid", "name"))
    assert numbered(sheet) == [(3, ("AE.1", "Dana"))]


def test_xlsx_unnamed_column_with_data_names_the_letter(tmp_path: Path) -> None:
    path = write_xlsx(
        tmp_path, [["uid", "name", "email"], ["AE.1", "Dana", "d@x.io"]], at={"E6": "stray"}
    )
    error = input_error(path)
    assert "sheet.xlsx" in error.message
    assert "row 6" in error.message and "column E" in error.message


def test_xlsx_sheet_selection(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path, [["uid"], ["AE.1"]], title="First", extra_sheets=["Second"])
    assert read_sheet(path).sheet_name == "First"
    second = read_sheet(path, sheet="Second")
    assert (second.sheet_name, second.headers) == ("Second", ("uid", "from"))
    # Excel treats sheet names without regard to case.
    assert read_sheet(path, sheet="second").sheet_name == "Second"


def test_list_worksheets_gives_each_name_and_header_row(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path, [["Notes"]], title="Read me", extra_sheets=["Candidates", "Old"])
    workbook = openpyxl.load_workbook(path)
    workbook.create_sheet("Empty")
    workbook.save(path)
    found = reader.list_worksheets(path)
    assert [(w.name, w.headers) for w in found] == [
        ("Read me", ("Notes",)),
        ("Candidates", ("uid", "from")),
        ("Old", ("uid", "from")),
        ("Empty", ()),
    ]
    assert reader.list_worksheets(write_bytes(tmp_path, "s.csv", b"uid\nAE.1\n")) == ()
    bad = write_bytes(tmp_path, "bad.xlsx", b"uid\nAE.1\n")
    with pytest.raises(InputError, match="really a text file"):
        reader.list_worksheets(bad)


def test_xlsx_unknown_sheet_lists_the_sheets(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path, [["uid"]], title="First", extra_sheets=["Second"])
    error = input_error(path, sheet="Candidates")
    assert "'Candidates'" in error.message
    assert "'First'" in error.message and "'Second'" in error.message
    assert error.fix and "--sheet" in error.fix


def test_xlsm_and_upper_case_extension(tmp_path: Path) -> None:
    for name in ("macro.xlsm", "UPPER.XLSX"):
        path = write_xlsx(tmp_path, [["uid"], ["AE.1"]], name=name)
        assert numbered(read_sheet(path)) == [(2, ("AE.1",))]


def test_xlsx_empty_sheet_has_no_header_row(tmp_path: Path) -> None:
    error = input_error(write_xlsx(tmp_path, [], name="blank.xlsx"))
    assert "blank.xlsx has no header row" in error.message


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("name", ["people.xls", "people.pdf", "people", "people.json"])
def test_unknown_extension(tmp_path: Path, name: str) -> None:
    error = input_error(write_bytes(tmp_path, name, b"uid\nAE.1\n"))
    assert name in error.message
    assert ".csv" in error.message and ".xlsx" in error.message
    assert error.fix


def test_missing_file(tmp_path: Path) -> None:
    error = input_error(tmp_path / "nope.csv")
    assert "nope.csv" in error.message and "not found" in error.message
    assert error.fix


def test_directory(tmp_path: Path) -> None:
    folder = tmp_path / "folder.xlsx"
    folder.mkdir()
    error = input_error(folder)
    assert "folder" in error.message
    assert error.fix


@pytest.mark.parametrize("name", ["locked.csv", "locked.xlsx"])
def test_permission_denied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    path = write_bytes(tmp_path, name, b"uid\n")

    def denied(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    # chmod does not stop root, who may run these tests: refuse the open itself.
    monkeypatch.setattr(Path, "open", denied)
    error = input_error(path)
    assert name in error.message and "permission denied" in error.message
    assert error.__cause__ is None and error.__suppress_context__


@pytest.mark.parametrize(
    "data",
    [
        bytes(range(256)) * 8,  # binary garbage (with NUL bytes)
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",  # a picture
        "uid\tname\n".encode("utf-16-le"),  # UTF-16 without its BOM
    ],
)
def test_binary_named_csv(tmp_path: Path, data: bytes) -> None:
    error = input_error(write_bytes(tmp_path, "garbage.csv", data))
    assert "garbage.csv" in error.message
    assert error.fix
    assert error.__cause__ is None


def test_workbook_named_csv(tmp_path: Path) -> None:
    workbook = write_xlsx(tmp_path, [["uid"]])
    path = write_bytes(tmp_path, "export.csv", workbook.read_bytes())
    error = input_error(path)
    assert "Excel workbook" in error.message
    assert error.fix and "export.xlsx" in error.fix


@pytest.mark.parametrize("end", ["\n", "", "\r\n"])
def test_csv_unclosed_quote_that_runs_to_the_end_of_the_file(tmp_path: Path, end: str) -> None:
    data = f'uid,note\nAE.1,ok\nAE.2,"Dana, call back\nAE.3,Noa\nAE.4,Avi{end}'
    error = input_error(write_bytes(tmp_path, "q.csv", data.encode()))
    assert error.message == (
        "q.csv, row 3: a quote opened in this row is never closed, so the rest of the file "
        "would be read as one cell"
    )
    assert error.fix and "close the quote" in error.fix


@pytest.mark.parametrize(
    "data",
    [
        'uid,note\nAE.1,"two\nlines"\nAE.2,"last\nrecord"',  # no newline at the end
        'uid,note\nAE.1,"two\nlines"\nAE.2,"last\nrecord"\n',
        'uid,note\nAE.1,say "hi"\n',  # a quote inside an unquoted cell is text
        'uid;note\nAE.1;"a;\nb"\n',
    ],
)
def test_csv_quotes_that_close_are_not_mistaken_for_unclosed(tmp_path: Path, data: str) -> None:
    sheet = read_sheet(write_bytes(tmp_path, "ok.csv", data.encode()))
    assert sheet.rows and all(len(row.values) == 2 for row in sheet.rows)


def test_csv_unclosed_quote_running_past_the_cell_limit(tmp_path: Path) -> None:
    data = b'uid,note\nAE.1,"' + b"x" * (reader.MAX_CELL_CHARS + 10)  # runs to the end
    error = input_error(write_bytes(tmp_path, "quote.csv", data))
    assert error.message == "quote.csv, row 2 has a cell larger than 1 MB"
    assert error.fix and "quote" in error.fix
    assert error.__cause__ is None and error.__suppress_context__


def test_csv_cell_at_the_limit_is_read(tmp_path: Path) -> None:
    limit = reader.MAX_CELL_CHARS
    fits = write_bytes(tmp_path, "fits.csv", b"uid,note\nAE.1," + b"x" * limit + b"\nAE.2,y\n")
    sheet = read_sheet(fits)
    assert len(sheet.rows[0].values[1]) == limit
    assert numbered(sheet)[1] == (3, ("AE.2", "y"))
    over = write_bytes(tmp_path, "over.csv", b"uid,note\nAE.1,ok\nAE.2," + b"x" * (limit + 1))
    assert input_error(over).message == "over.csv, row 3 has a cell larger than 1 MB"


def test_csv_records_over_many_lines_are_numbered_in_cell_limit_errors(tmp_path: Path) -> None:
    big = b"y" * (reader.MAX_CELL_CHARS // 2)
    data = b'uid,note\nAE.1,"a\nb\nc"\n\nAE.2,"' + big + b"\n" + big + b"\n" + big + b'"\n'
    error = input_error(write_bytes(tmp_path, "multi.csv", data))
    assert error.message == "multi.csv, row 4 has a cell larger than 1 MB"


def test_csv_long_line_of_many_cells(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reader.csvfile, "MAX_LINE_CHARS", 40)
    ok = write_bytes(tmp_path, "ok.csv", b"uid,a,b\r\nAE.1," + b"x" * 20 + b",y\r\n")
    assert read_sheet(ok).rows[0].values == ("AE.1", "x" * 20, "y")
    long = write_bytes(tmp_path, "long.csv", b"uid,a,b\nAE.1,x\n" + b"AE.2" + b",abcdefgh" * 6)
    error = input_error(long)
    assert error.message.startswith("long.csv, row 3 is larger than ")
    # A CR at the very end of a cut piece may be half a CRLF: cut, not a blank row.
    crlf = write_bytes(tmp_path, "crlf.csv", b"uid\r\n" + b"x" * 39 + b"\r\nAE.2\r\n")
    assert input_error(crlf).message.startswith("crlf.csv, row 2 is larger than ")


def test_csv_field_size_limit_is_put_back(tmp_path: Path) -> None:
    before = csv.field_size_limit()
    read_sheet(write_bytes(tmp_path, "a.csv", b"uid\nAE.1\n"))
    with pytest.raises(InputError):
        read_sheet(write_bytes(tmp_path, "b.csv", b"uid\n" + b"x" * (2 << 20)))
    assert csv.field_size_limit() == before


def test_csv_delimiter_guess_stops_early(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reader.csvfile, "_SNIFF_CHARS", 16)
    # Only the first 16 characters count: the ';' later on the header line do not.
    data = b"uid,name,email,;;;;;;;;;;;;;;;;;;\nAE.1,Dana,d@x.io,\n"
    sheet = read_sheet(write_bytes(tmp_path, "s.csv", data))
    assert sheet.headers == ("uid", "name", "email", ";;;;;;;;;;;;;;;;;;")


@pytest.mark.parametrize(
    ("columns", "refused"), [(reader.MAX_COLUMNS, False), (reader.MAX_COLUMNS + 1, True)]
)
def test_column_cap(tmp_path: Path, columns: int, refused: bool) -> None:
    header = ",".join(["uid", *(f"c{i}" for i in range(columns - 1))]) + ",,,,\n"
    path = write_bytes(tmp_path, "wide.csv", (header + "AE.1\n").encode())
    if refused:
        error = input_error(path)
        assert error.message == (
            f"wide.csv: the sheet has {columns:,} columns; at most 2,000 are read — "
            "is this the right file?"
        )
        assert error.fix
    else:
        assert len(read_sheet(path).headers) == columns


def test_trailing_empty_header_cells_do_not_count_as_columns(tmp_path: Path) -> None:
    # Spreadsheet programs leave thousands of empty cells after the last header.
    path = write_bytes(tmp_path, "t.csv", b"uid,name" + b"," * 20_000 + b"\nAE.1,Dana,,,\n")
    assert numbered(read_sheet(path)) == [(2, ("AE.1", "Dana"))]


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100, "an old Excel .xls workbook"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "a PDF document"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "a picture (JPEG)"),
    ],
)
def test_csv_that_is_really_something_else(tmp_path: Path, data: bytes, kind: str) -> None:
    error = input_error(write_bytes(tmp_path, "x.csv", data))
    assert error.message.startswith(f"x.csv is really {kind}")
    assert error.message.endswith("not a CSV file")


def test_csv_with_many_control_bytes_is_text(tmp_path: Path) -> None:
    # No NUL byte, and UTF-8: what a file holds decides, not how many control bytes.
    data = b"uid,name\n" + b"AE.1,abcdefgh\x02\n" * 200
    assert read_sheet(write_bytes(tmp_path, "ctl.csv", data)).rows[0].values[1] == "abcdefgh\x02"


def test_zip_bomb_named_csv_is_refused_as_a_bomb(tmp_path: Path) -> None:
    make_corpus.many_parts_xlsx(tmp_path / "bomb.csv")
    assert "bomb.csv looks like a zip bomb" in input_error(tmp_path / "bomb.csv").message


def test_zip64_workbook_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Some writers always end the zip with ZIP64 records: the counts are read from there.
    monkeypatch.setattr(zipfile, "ZIP_FILECOUNT_LIMIT", 1)
    path = write_xlsx(tmp_path, [["uid"], ["AE.1"]], name="zip64.xlsx")
    monkeypatch.undo()
    assert b"PK\x06\x06" in path.read_bytes()
    assert numbered(read_sheet(path)) == [(2, ("AE.1",))]


def test_zip_directory_too_large(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_xlsx(tmp_path, [["uid"], ["AE.1"]], name="dir.xlsx")
    monkeypatch.setattr(reader.guard, "_MAX_DIRECTORY_BYTES", 100)
    assert "dir.xlsx looks like a zip bomb (its directory takes " in input_error(path).message


def test_other_zip_named_csv(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "a.csv", "w") as archive:
        archive.writestr("hello.txt", "hi")
    error = input_error(tmp_path / "a.csv")
    assert error.message == "a.csv is really a zip archive, not a CSV file"


def _not_a_workbook_zip(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("hello.txt", "not a workbook")


def _truncated_workbook(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _broken_sheet_xml(path: Path) -> None:
    rewrite_member(path, "xl/worksheets/sheet1.xml", lambda xml: xml[: len(xml) // 2])


@pytest.mark.parametrize(
    "spoil",
    [
        lambda p: p.write_bytes(b"\x00\x01garbage\xff" * 100),
        _not_a_workbook_zip,
        _truncated_workbook,
        _broken_sheet_xml,
    ],
    ids=["garbage", "zip", "truncated", "broken-xml"],
)
def test_unreadable_xlsx(tmp_path: Path, spoil: Callable[[Path], None]) -> None:
    path = write_xlsx(tmp_path, [["uid"], ["AE.1"]], name="bad.xlsx")
    spoil(path)
    error = input_error(path)
    assert error.message == "bad.xlsx is not a readable .xlsx workbook"
    assert error.fix and "save it again" in error.fix
    assert error.__cause__ is None and error.__suppress_context__


@pytest.mark.parametrize(
    ("data", "message", "fix"),
    [
        (b"", "bad.xlsx is empty (0 bytes)", "save it again as .xlsx"),
        (
            b"uid,name\nAE.1,Dana\n",
            "bad.xlsx is really a text file (a CSV?), not an .xlsx workbook",
            "rename it to bad.csv",
        ),
        (
            codecs.BOM_UTF16_LE + "uid\tname\r\n".encode("utf-16-le"),
            "bad.xlsx is really a text file (a CSV?), not an .xlsx workbook",
            "rename it to bad.csv",
        ),
        (
            b'<?xml version="1.0"?>\n<?mso-application progid="Excel.Sheet"?>\n<Workbook/>',
            "bad.xlsx is really an XML file, not an .xlsx workbook",
            "save it as .xlsx",
        ),
    ],
    ids=["empty", "csv", "utf16-text", "xml-2003"],
)
def test_xlsx_that_is_really_something_else(
    tmp_path: Path, data: bytes, message: str, fix: str
) -> None:
    error = input_error(write_bytes(tmp_path, "bad.xlsx", data))
    assert error.message == message
    assert error.fix and fix in error.fix
    assert error.__cause__ is None and error.__suppress_context__


def test_xlsx_entity_bombs_are_refused_by_defusedxml_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The reader's own scan is the first line of defence; without it, defusedxml (which
    # openpyxl uses when it is installed) must still refuse, with the same explanation.
    assert openpyxl.xml.DEFUSEDXML
    monkeypatch.setattr(reader.guard, "_scan_part", lambda *args: None)
    for maker in (make_corpus.entity_bomb_xlsx, make_corpus.entity_bomb_shared_xlsx):
        path = tmp_path / f"{maker.__name__}.xlsx"
        maker(path)
        error = input_error(path)
        assert error.message == (
            f"{path.name} holds an XML document type declaration, which spreadsheet "
            "programs never write: it may be an XML bomb"
        )
        assert error.fix and "do not open it" in error.fix


def test_xlsx_external_entity_is_refused(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path, [["uid"], ["AE.1"]], name="xxe.xlsx")
    doctype = '<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
    rewrite_member(path, "xl/worksheets/sheet1.xml", lambda xml: doctype + xml)
    error = input_error(path)
    assert "xxe.xlsx holds an XML document type declaration (in xl/worksheets/sheet1.xml)" in (
        error.message
    )
    assert "root:" not in str(error)


@pytest.mark.parametrize("chunk", [7, 64, 1 << 20])
def test_xlsx_scan_across_chunk_boundaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    # The limit counts bytes between two '<': a cell's text, or a tag and its attributes
    # (a root tag's namespaces take a few hundred bytes).
    monkeypatch.setattr(reader.guard, "SCAN_BYTES", chunk)
    monkeypatch.setattr(reader.guard, "MAX_CELL_CHARS", 2000)
    fine = write_xlsx(tmp_path, [["uid", "note"], ["AE.1", "n" * 1900]], name="fine.xlsx")
    assert read_sheet(fine).rows[0].values == ("AE.1", "n" * 1900)
    long = write_xlsx(tmp_path, [["uid", "note"], ["AE.1", "n" * 2100]], name="long.xlsx")
    assert input_error(long).message == (
        "long.xlsx has a cell larger than 1 MB (in xl/worksheets/sheet1.xml)"
    )
    bomb = write_xlsx(tmp_path, [["uid"]], name="dtd.xlsx")
    rewrite_member(bomb, "xl/worksheets/sheet1.xml", lambda xml: " " * 5 + "<!DOCTYPE x>" + xml)
    assert "dtd.xlsx holds an XML document type declaration" in input_error(bomb).message


def test_xlsx_cell_over_the_limit_after_parsing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Rich text is many runs, each under the scan's limit, joined by openpyxl.
    monkeypatch.setattr(reader.guard, "_scan_part", lambda *args: None)
    monkeypatch.setattr(reader.xlsxfile, "MAX_CELL_CHARS", 10)
    path = write_xlsx(tmp_path, [["uid", "note"], ["AE.1", "short"], ["AE.2", "x" * 11]])
    error = input_error(path)
    assert error.message == "sheet.xlsx, row 3 has a cell larger than 1 MB (column B)"


def test_xlsx_zip_with_a_picture_is_not_scanned_as_xml(tmp_path: Path) -> None:
    # A picture holds long runs without '<': it is not XML and must not count as a cell.
    path = write_xlsx(tmp_path, [["uid"], ["AE.1"]], name="pic.xlsx")
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("xl/media/image1.bmp", b"BM" + b"\xff" * (3 << 20))
    assert numbered(read_sheet(path)) == [(2, ("AE.1",))]


def test_xlsx_compressing_well_below_the_floor_is_read(tmp_path: Path) -> None:
    # A sheet of one repeated value packs far over 100:1, but it is small: no bomb.
    rows = [["uid", "status"], *[[f"AE.{i}", "Sourced"] for i in range(2000)]]
    path = write_xlsx(tmp_path, rows)
    assert len(read_sheet(path).rows) == 2000


@pytest.mark.parametrize("name", ["people.xls", "people.ods", "people.xlsb", "people.numbers"])
def test_other_spreadsheet_formats_are_named(tmp_path: Path, name: str) -> None:
    error = input_error(write_bytes(tmp_path, name, b"whatever"))
    suffix = name.split(".")[1]
    assert error.message == f"{name}: .{suffix} files are not read; save the sheet as .xlsx or .csv"
    assert error.fix and "LibreOffice" in error.fix


# --------------------------------------------------------------------------- speed


def test_100k_row_csv_reads_fast(tmp_path: Path) -> None:
    lines = ["uid,first_name,last_name,email,phone"]
    lines += [f"AE.{i},First{i},Last{i},p{i}@example.com,+97250{i:07d}" for i in range(100_000)]
    path = write_bytes(tmp_path, "big.csv", ("\n".join(lines) + "\n").encode())
    # This process's CPU time, not the clock's: other processes (the suite's other worker,
    # a loaded CI machine) take turns on the same cores and would count against the reader.
    started = time.process_time()
    sheet = read_sheet(path)
    elapsed = time.process_time() - started
    assert len(sheet.rows) == 100_000
    assert sheet.rows[-1].number == 100_001
    assert sheet.rows[-1].values[0] == "AE.99999"
    # About a second on a laptop; generous headroom for a slow CI machine.
    assert elapsed < 5, f"100k rows took {elapsed:.2f} s"


def test_nan_never_comes_through() -> None:
    assert cell_text(math.nan)[0] == ""
    assert "nan" not in cell_text(float("-nan"))[0]


def test_open_sheet_reads_rows_only_as_they_are_asked_for(tmp_path: Path) -> None:
    from bulk_update.reader import open_sheet

    path = tmp_path / "s.csv"
    lines = ["uid,name"] + [f"AE.{n},x" for n in range(3000)] + ["AE.y,x,beyond"]
    path.write_text("\n".join(lines) + "\n")
    with open_sheet(path) as stream:
        assert stream.headers == ("uid", "name") and stream.header_row == 1
        first = next(stream.rows)  # the header is checked, the bad row not yet reached
        assert first.number == 2 and first.values == ("AE.0", "x")
        with pytest.raises(InputError, match="row 3002"):
            list(stream.rows)


def test_open_sheet_gives_what_read_sheet_gives(tmp_path: Path) -> None:
    from bulk_update.reader import open_sheet

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["uid", "n"])
    ws.append(["AE.1", 2])
    ws.append([None, None])
    ws.append(["AE.2", "x"])
    wb.save(tmp_path / "s.xlsx")
    sheet = read_sheet(tmp_path / "s.xlsx")
    with open_sheet(tmp_path / "s.xlsx") as stream:
        assert (stream.headers, stream.sheet_name, tuple(stream.rows)) == (
            sheet.headers,
            sheet.sheet_name,
            sheet.rows,
        )


@given(st.integers(min_value=0, max_value=18_277))
def test_column_letters_are_excels(index: int) -> None:
    from openpyxl.utils import get_column_letter

    from bulk_update.reader.layout import column_letter

    assert column_letter(index) == get_column_letter(index + 1)
