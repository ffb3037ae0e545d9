"""The streaming XLSX writer (bulk_update/xlsx.py), read back by openpyxl in full mode."""

from __future__ import annotations

import io
import struct
import zipfile
from collections.abc import Iterator
from pathlib import Path

import openpyxl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bulk_update import xlsx
from bulk_update.xlsx import BOLD, SheetSpec, fill_style, write_workbook


def test_values_styles_and_layout(tmp_path: Path) -> None:
    path = tmp_path / "w.xlsx"
    rows: list[list[xlsx.Cell]] = [
        [("name", BOLD), ("count", BOLD), ("state", BOLD)],
        ["a & <b>", 3, ("red", fill_style(0))],
        [None, 2.5, ("green", fill_style(1))],
        ["", -7, "  padded\nlines  "],
    ]
    write_workbook(
        path,
        [
            SheetSpec("Data & more", rows, (12, 30.5, 8), freeze_header=True, autofilter=True),
            SheetSpec("Other 'one' too", [["x", True]]),
        ],
        fills=["ff0000", "00FF00"],
    )
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None
        book = archive.read("xl/workbook.xml").decode()
        # No ZIP64 extension (extra field id 1) where the sizes do not need it, in the
        # local headers either (Excel is particular about those).
        raw = path.read_bytes()
        for info in archive.infolist():
            at = info.header_offset
            name_len, extra_len = struct.unpack("<HH", raw[at + 26 : at + 30])
            extra = raw[at + 30 + name_len : at + 30 + name_len + extra_len]
            i = 0
            while i + 4 <= len(extra):  # each field: its id, its size, its data
                field, size = struct.unpack("<HH", extra[i : i + 4])
                assert field != 1, info.filename
                i += 4 + size
        assert archive.getinfo("xl/worksheets/sheet1.xml").compress_type == zipfile.ZIP_DEFLATED
    # Excel keeps a filter's range under a hidden name too (openpyxl drops it on reading).
    assert (
        '<definedName name="_xlnm._FilterDatabase" localSheetId="0" hidden="1">'
        "'Data &amp; more'!$A$1:$C$4</definedName>" in book
    )
    wb = openpyxl.load_workbook(path)
    assert wb.sheetnames == ["Data & more", "Other 'one' too"]
    ws = wb["Data & more"]
    assert [[c.value for c in row] for row in ws.iter_rows()] == [
        ["name", "count", "state"],
        ["a & <b>", 3, "red"],
        [None, 2.5, "green"],
        [None, -7, "  padded\nlines  "],
    ]
    assert all(c.font.b for c in ws[1]) and not ws["A2"].font.b
    assert ws["C2"].fill.fill_type == "solid" and ws["C2"].fill.fgColor.rgb == "FFFF0000"
    assert ws["C3"].fill.fgColor.rgb == "FF00FF00" and ws["B3"].fill.fill_type is None
    assert ws.freeze_panes == "A2"
    assert ws.auto_filter.ref == "A1:C4"
    # Stored as Excel stores a column that many characters wide (the padding added):
    # 12 characters are 89 pixels, 89 * 256 // 7 / 256 = 12.7109375.
    assert [ws.column_dimensions[c].width for c in "ABC"] == [12.7109375, 31.28515625, 8.7109375]
    other = wb["Other 'one' too"]
    assert [c.value for c in other[1]] == ["x", 1]
    assert other.freeze_panes is None and other.auto_filter.ref is None


@pytest.mark.parametrize("name", ["", "'quoted'", "a/b", "a[1]", "why?", "x" * 32])
def test_a_sheet_name_excel_refuses_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="Excel cannot name a sheet"):
        write_workbook(tmp_path / "w.xlsx", [SheetSpec(name, [["x"]])])


def test_rows_without_cells_are_left_out_and_a_one_cell_filter_is_that_cell(
    tmp_path: Path,
) -> None:
    path = tmp_path / "w.xlsx"
    write_workbook(path, [SheetSpec("S", [["a"], [None], ["b"]], autofilter=True)])
    with zipfile.ZipFile(path) as archive:
        sheet = archive.read("xl/worksheets/sheet1.xml").decode()
    assert '<row r="2">' not in sheet and '<row r="3">' in sheet
    assert '<autoFilter ref="A1:A3"/>' in sheet
    write_workbook(path, [SheetSpec("S", [["a"]], autofilter=True)])
    with zipfile.ZipFile(path) as archive:
        sheet = archive.read("xl/worksheets/sheet1.xml").decode()
        book = archive.read("xl/workbook.xml").decode()
    assert '<autoFilter ref="A1"/>' in sheet and "'S'!$A$1</definedName>" in book


def test_text_is_never_a_formula_or_an_error_value(tmp_path: Path) -> None:
    path = tmp_path / "w.xlsx"
    texts = ["=1+2", "#N/A", "@SUM(A1)", "-5", "TRUE", "1e5", "_x0041_"]
    write_workbook(path, [SheetSpec("S", [texts])])
    cells = openpyxl.load_workbook(path)["S"][1]
    assert [c.data_type for c in cells] == ["s"] * len(texts)
    assert [c.value for c in cells][:6] == texts[:6]


def test_rows_stream_in_batches_and_keep_their_numbers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(xlsx, "_ROWS_PER_WRITE", 7)
    path = tmp_path / "w.xlsx"
    write_workbook(path, [SheetSpec("S", ([f"r{n}", n] for n in range(1, 101)), autofilter=True)])
    ws = openpyxl.load_workbook(path, read_only=True)["S"]
    assert [tuple(r) for r in ws.iter_rows(values_only=True)] == [
        (f"r{n}", n) for n in range(1, 101)
    ]


def test_an_empty_sheet_has_no_filter(tmp_path: Path) -> None:
    path = tmp_path / "w.xlsx"
    write_workbook(path, [SheetSpec("S", [], autofilter=True, freeze_header=True)])
    ws = openpyxl.load_workbook(path)["S"]
    assert ws.max_row == 1 and ws["A1"].value is None and ws.auto_filter.ref is None


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.lists(
            st.one_of(
                st.text(
                    alphabet=st.characters(
                        blacklist_categories=("Cs",),
                        blacklist_characters="\x00\x01\x02\x03\x04\x05\x06\x07\x08\x0b\x0c"
                        "\x0e\x0f\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d"
                        "\x1e\x1f\r\ufffe\uffff",
                    ),
                    max_size=20,
                ),
                st.integers(-(2**40), 2**40),
            ),
            max_size=6,
        ),
        max_size=6,
    )
)
def test_what_is_written_reads_back(
    tmp_path_factory: pytest.TempPathFactory, rows: list[list[str | int]]
) -> None:
    path = tmp_path_factory.mktemp("rt") / "w.xlsx"
    write_workbook(path, [SheetSpec("S", rows)])
    ws = openpyxl.load_workbook(path)["S"]
    width = max((len(r) for r in rows), default=0)
    for number, row in enumerate(rows, start=1):
        got = [ws.cell(row=number, column=i + 1).value for i in range(width)]
        expected = [None if v == "" else v for v in row] + [None] * (width - len(row))
        assert got == expected


def test_rendered_rows_are_written_as_they_come() -> None:
    """A block of rendered rows may be tens of MB: none is held while the next is read."""
    stream = io.BytesIO()
    seen: list[int] = []

    def rows() -> Iterator[list[xlsx.Cell] | xlsx.Rendered]:
        yield [("h", BOLD)]
        for n in range(2, 6):
            if n > 2:  # the block before this one is in the stream already
                assert stream.getvalue().endswith(f'<row r="{n - 1}">x</row>'.encode())
            seen.append(n)
            yield xlsx.Rendered(f'<row r="{n}">x</row>'.encode(), 1, 1)
        yield ["last"]

    ref = xlsx._write_sheet(stream, SheetSpec("S", rows(), autofilter=True))
    assert seen == [2, 3, 4, 5] and ref == "A1:A6"
    assert stream.getvalue().count(b"<row ") == 6
