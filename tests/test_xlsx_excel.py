"""The results sheet, as bulk_update/xlsx.py writes it, held to XlsxWriter's output for the
same sheet (issue 15, part 7).

Only LibreOffice and openpyxl read our workbooks here, and both forgive what Excel refuses
or "repairs" (elements out of order, an attribute Excel does not know, a part or a content
type missing). XlsxWriter's output is tested against files Excel itself wrote, so each
report is written twice, by xlsx.py and by XlsxWriter (constant-memory mode) from the same
sheets, and the two zips are compared part by part, structurally: the same parts (less the
optional ones XlsxWriter adds), relationships, content types, styles, defined names, pane,
filter, column widths and cells; every element in an order XlsxWriter's schema allows, with
no attribute it does not write (less a few the schema allows, listed below).
"""

from __future__ import annotations

import dataclasses
import re
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import pytest
import xlsxwriter

from bulk_update import report, xlsx
from bulk_update.models import Outcome, RowResult, RunSummary, SheetRow

_MAIN = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_R = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"
_XML_SPACE = "{http://www.w3.org/XML/1998/namespace}space"
#: Parts XlsxWriter adds that a workbook may go without: the document's properties, and the
#: theme (our styles name fonts and colours outright, never through the theme).
_OPTIONAL_PARTS = {"docProps/app.xml", "docProps/core.xml", "xl/theme/theme1.xml"}
#: Attributes xlsx.py writes that XlsxWriter leaves out, each one the schema (ECMA-376
#: part 1) allows there: the active sheet (0, its default), the active cell of the frozen
#: pane, and white space kept in every text.
_OUR_EXTRA_ATTRIBUTES = {
    (f"{_MAIN}workbookView", "activeTab"),
    (f"{_MAIN}selection", "activeCell"),
    (f"{_MAIN}selection", "sqref"),
    (f"{_MAIN}t", _XML_SPACE),
}


def _with_xlsxwriter(path: Path, sheets: Sequence[xlsx.SheetSpec], fills: Sequence[str]) -> None:
    """The same sheets written by XlsxWriter: its styles, widths, pane and filter calls."""
    book = xlsxwriter.Workbook(str(path), {"constant_memory": True})
    formats: dict[int, Any] = {xlsx.NORMAL: None, xlsx.BOLD: book.add_format({"bold": True})}
    for index, colour in enumerate(fills):
        formats[xlsx.fill_style(index)] = book.add_format({"pattern": 1, "bg_color": f"#{colour}"})
    for spec in sheets:
        sheet = book.add_worksheet(spec.name)
        for column, width in enumerate(spec.widths):
            sheet.set_column(column, column, width)
        if spec.freeze_header:
            sheet.freeze_panes(1, 0)
        rows = [list(cells) for cells in spec.rows if not isinstance(cells, xlsx.Rendered)]
        width = max(map(len, rows), default=0)
        if spec.autofilter and width:
            sheet.autofilter(0, 0, max(len(rows), 1) - 1, width - 1)
        for number, cells in enumerate(rows):
            for column, cell in enumerate(cells):
                value, style = cell if isinstance(cell, tuple) else (cell, xlsx.NORMAL)
                if value is None or value == "":
                    continue
                if isinstance(value, str):
                    sheet.write_string(number, column, value, formats[style])
                else:
                    sheet.write_number(number, column, value, formats[style])
    book.close()


def _both(tmp_path: Path, write: Any) -> tuple[zipfile.ZipFile, zipfile.ZipFile]:
    """`write(path)` writes a workbook through xlsx.write_workbook: that file, and the same
    sheets (their rows as written) written by XlsxWriter."""
    seen: list[tuple[list[xlsx.SheetSpec], list[str]]] = []
    real = xlsx.write_workbook

    def keeping(path: Path, sheets: Sequence[xlsx.SheetSpec], fills: Sequence[str] = ()) -> None:
        kept = [dataclasses.replace(s, rows=[list(r) for r in s.rows]) for s in sheets]
        seen.append((kept, list(fills)))
        real(path, kept, fills)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(xlsx, "write_workbook", keeping)
        write(tmp_path / "ours.xlsx")
    ((sheets, fills),) = seen
    _with_xlsxwriter(tmp_path / "theirs.xlsx", sheets, fills)
    return zipfile.ZipFile(tmp_path / "ours.xlsx"), zipfile.ZipFile(tmp_path / "theirs.xlsx")


def _xml(book: zipfile.ZipFile, part: str) -> ET.Element:
    return ET.fromstring(book.read(part))


def _content_type(book: zipfile.ZipFile, part: str) -> str:
    types = _xml(book, "[Content_Types].xml")
    for override in types:
        if override.get("PartName") == f"/{part}":
            return override.get("ContentType", "")
    extension = part.rsplit(".", 1)[-1]
    for default in types:
        if default.get("Extension") == extension:
            return default.get("ContentType", "")
    return "(none)"


def _relationships(book: zipfile.ZipFile, part: str) -> list[tuple[str, str]]:
    """(type, target) of each relationship, less those to the optional parts."""
    folder = part.split("_rels/")[0]
    found = []
    for rel in _xml(book, part):
        target = rel.get("Target", "")
        if f"{folder}{target}" not in _OPTIONAL_PARTS and target not in _OPTIONAL_PARTS:
            found.append((rel.get("Type", ""), target))
    return sorted(found)


def _sheet_parts(book: zipfile.ZipFile) -> dict[str, str]:
    """Sheet name -> its part, through the workbook's relationships."""
    rels = {r.get("Id"): r.get("Target") for r in _xml(book, "xl/_rels/workbook.xml.rels")}
    sheets = _xml(book, "xl/workbook.xml").find(f"{_MAIN}sheets")
    assert sheets is not None
    return {s.get("name", ""): f"xl/{rels[s.get(f'{_R}id')]}" for s in sheets}


def _defined_names(book: zipfile.ZipFile) -> list[tuple[Any, ...]]:
    """Each defined name with its reference parsed (a sheet name quoted or not is one)."""
    names = _xml(book, "xl/workbook.xml").find(f"{_MAIN}definedNames")
    found = []
    for name in [] if names is None else names:
        sheet, _, ref = (name.text or "").rpartition("!")
        if sheet.startswith("'"):
            sheet = sheet[1:-1].replace("''", "'")
        found.append((name.get("name"), name.get("localSheetId"), name.get("hidden"), sheet, ref))
    return found


def _styles(book: zipfile.ZipFile) -> dict[str, Any]:
    """What the styles mean: each cell format as its font (bold, size, name), fill (pattern,
    colour), border and number format, in order (a cell's `s` indexes this list); the cell
    style formats, cell styles and number formats. Indices into the fonts and fills are
    resolved, so two writers that list a repeated fill once or twice compare equal."""
    styles = _xml(book, "xl/styles.xml")

    def listed(tag: str) -> list[ET.Element]:
        found = styles.find(f"{_MAIN}{tag}")
        if found is None:
            return []
        assert found.get("count") == str(len(found)), f"{tag}'s count"
        return list(found)

    def value(element: ET.Element, tag: str) -> str | None:
        child = element.find(f"{_MAIN}{tag}")
        return None if child is None else child.get("val", "")

    fonts = [(value(f, "b"), value(f, "sz"), value(f, "name")) for f in listed("fonts")]
    fills = []
    for fill in listed("fills"):
        pattern = fill.find(f"{_MAIN}patternFill")
        assert pattern is not None
        colour = pattern.find(f"{_MAIN}fgColor")
        fills.append((pattern.get("patternType"), None if colour is None else colour.get("rgb")))
    borders = [[c.tag for c in b] for b in listed("borders")]

    def meaning(xf: ET.Element) -> tuple[Any, ...]:
        return (
            fonts[int(xf.get("fontId", "0"))],
            fills[int(xf.get("fillId", "0"))],
            borders[int(xf.get("borderId", "0"))],
            xf.get("numFmtId", "0"),
            xf.get("xfId"),
            xf.get("applyFont"),
            xf.get("applyFill"),
        )

    return {
        "cellXfs": [meaning(xf) for xf in listed("cellXfs")],
        "cell formats": sorted(set(map(repr, map(meaning, listed("cellXfs"))))),
        "cellStyleXfs": [meaning(xf) for xf in listed("cellStyleXfs")],
        "cellStyles": [dict(x.attrib) for x in listed("cellStyles")],
        "numFmts": [dict(x.attrib) for x in listed("numFmts")],
        "first font and fills": (fonts[:1], fills[:2]),  # the defaults Excel expects first
    }


def _sheet(book: zipfile.ZipFile, part: str) -> dict[str, Any]:
    """A worksheet as Excel shows it: pane, widths (per column), filter, and each cell's
    type, style (what it means) and value (a number compared as a number: `1e+16` and
    `1E+16` are one)."""
    sheet = _xml(book, part)
    formats = _styles(book)["cellXfs"]
    view = sheet.find(f"{_MAIN}sheetViews/{_MAIN}sheetView")
    assert view is not None
    pane = view.find(f"{_MAIN}pane")
    selections = [s.get("pane") for s in view.iter(f"{_MAIN}selection")]
    cells = []
    for cell in sheet.iter(f"{_MAIN}c"):
        kind = cell.get("t", "n")
        if kind == "inlineStr":
            value: Any = "".join(t.text or "" for t in cell.iter(f"{_MAIN}t"))
        else:
            number = cell.find(f"{_MAIN}v")
            value = float(number.text or "") if number is not None else None
        cells.append((cell.get("r"), kind, formats[int(cell.get("s", "0"))], value))
    widths = {}
    for col in sheet.iter(f"{_MAIN}col"):
        for column in range(int(col.get("min", "0")), int(col.get("max", "0")) + 1):
            widths[column] = (col.get("width"), col.get("customWidth"))
    auto = sheet.find(f"{_MAIN}autoFilter")
    return {
        "pane": None if pane is None else dict(pane.attrib),
        "selections": selections,
        "widths": widths,
        "autofilter": None if auto is None else auto.get("ref"),
        "rows": [r.get("r") for r in sheet.iter(f"{_MAIN}row")],
        "cells": cells,
    }


def _order_and_attributes(ours: ET.Element, theirs: ET.Element, where: str) -> Iterator[str]:
    """What is wrong with `ours` against `theirs`, element by element: a child XlsxWriter
    never writes there, children in another order than its (the schema's sequences are
    strict: Excel repairs a workbook whose elements are out of order), an attribute it
    does not write. Children are paired by tag, in order."""
    theirs_tags = [c.tag for c in theirs]
    at = 0
    for child in ours:
        if child.tag not in theirs_tags:
            yield f"{where}: <{child.tag}> is not written by XlsxWriter there"
            continue
        try:
            at = theirs_tags.index(child.tag, at)
        except ValueError:
            yield f"{where}: <{child.tag}> out of XlsxWriter's order {theirs_tags}"
    for name in ours.attrib:
        if name not in theirs.attrib and (ours.tag, name) not in _OUR_EXTRA_ATTRIBUTES:
            yield f"{where}: attribute {name} of <{ours.tag}>, which XlsxWriter does not write"
    # A row or a cell is paired with the one of the same reference, anything else by place.
    pairs: dict[tuple[str, str | int], ET.Element] = {}
    counted: dict[str, int] = {}
    for element, key in ((theirs, pairs), (ours, None)):
        counted.clear()
        for child in element:
            place = counted[child.tag] = counted.get(child.tag, -1) + 1
            pair = (child.tag, child.get("r") or place)
            if key is not None:
                key[pair] = child
            elif pair in pairs:
                yield from _order_and_attributes(child, pairs[pair], f"{where}/{child.tag}")


def _differences(ours: zipfile.ZipFile, theirs: zipfile.ZipFile) -> Iterator[str]:
    """Every structural difference between our workbook and XlsxWriter's."""
    parts = set(ours.namelist())
    if parts != set(theirs.namelist()) - _OPTIONAL_PARTS:
        yield f"parts: ours {sorted(parts)}, XlsxWriter's {sorted(theirs.namelist())}"
    for part in sorted(parts & set(theirs.namelist())):
        if _content_type(ours, part) != _content_type(theirs, part):
            yield f"content type of {part}: {_content_type(ours, part)}"
        if part.endswith(".rels"):
            if _relationships(ours, part) != _relationships(theirs, part):
                yield f"relationships of {part}: {_relationships(ours, part)}"
        elif part.endswith(".xml"):
            yield from _order_and_attributes(_xml(ours, part), _xml(theirs, part), part)
    our_styles, their_styles = _styles(ours), _styles(theirs)
    # The list's order and repeats do not matter: the cells' styles are compared as meanings.
    del our_styles["cellXfs"], their_styles["cellXfs"]
    if our_styles != their_styles:
        yield f"styles: ours {our_styles}, XlsxWriter's {their_styles}"
    if _defined_names(ours) != _defined_names(theirs):
        yield f"defined names: ours {_defined_names(ours)}, theirs {_defined_names(theirs)}"
    sheets, their_sheets = _sheet_parts(ours), _sheet_parts(theirs)
    if list(sheets) != list(their_sheets):
        yield f"sheets: ours {list(sheets)}, XlsxWriter's {list(their_sheets)}"
    for name, part in sheets.items():
        mine, its = _sheet(ours, part), _sheet(theirs, their_sheets[name])
        for key, value in mine.items():
            if value != its[key]:
                yield f"sheet {name}, {key}: ours {value}, XlsxWriter's {its[key]}"


def _every_outcome() -> tuple[list[SheetRow], list[RowResult]]:
    rows, results = [], []
    for number, outcome in enumerate(Outcome, start=2):
        rows.append(SheetRow(number, (f"AE.{number}", f"p{number}@example.com", "=1+2")))
        results.append(
            RowResult(number, f"AE.{number}", outcome, 200, attempts=1, message="a & <b>")
        )
    return rows, results


def test_the_results_sheet_is_what_xlsxwriter_writes(tmp_path: Path) -> None:
    rows, results = _every_outcome()
    summary = RunSummary(counts={r.outcome: 1 for r in results}, duration_s=1.25, report_path=None)

    def write(path: Path) -> None:
        report.write_report(
            path, rows=rows, results=results, headers=("uid", "Email", "Note"), summary=summary
        )

    ours, theirs = _both(tmp_path, write)
    assert list(_differences(ours, theirs)) == []
    # What the comparison covers is really there (a comparison of two empty lists passes).
    results_sheet = _sheet(ours, _sheet_parts(ours)["Results"])
    assert results_sheet["pane"] == {
        "ySplit": "1",
        "topLeftCell": "A2",
        "activePane": "bottomLeft",
        "state": "frozen",
    }
    assert results_sheet["autofilter"] == f"A1:K{len(rows) + 1}"
    outcome_fills = {
        value: style[1] for ref, _, style, value in results_sheet["cells"] if ref[0] == "C"
    }
    assert outcome_fills == {"outcome": ("none", None)} | {
        o.value: ("solid", f"FF{c.upper()}") for o, c in report.OUTCOME_COLOURS.items()
    }
    assert _defined_names(ours)[0][0] == "_xlnm._FilterDatabase"


def test_a_sheet_whose_name_needs_quoting_and_widths_of_every_kind(tmp_path: Path) -> None:
    sheets = [
        xlsx.SheetSpec(
            "Data & more's",
            [[("a", xlsx.BOLD), ("b", xlsx.BOLD)], ["x", ("y", xlsx.fill_style(0))], [1.5, -7]],
            (0.5, 8.43, 12.25, 255),
            freeze_header=True,
            autofilter=True,
        ),
        xlsx.SheetSpec("2024", [[1e16, 0.1, "  padded  "]]),
    ]
    ours, theirs = _both(tmp_path, lambda path: xlsx.write_workbook(path, sheets, ["FF0000"]))
    assert list(_differences(ours, theirs)) == []


def test_the_comparison_finds_what_excel_would_repair(tmp_path: Path) -> None:
    """The comparison itself can fail: elements out of order, an unknown attribute."""
    sheets = [xlsx.SheetSpec("S", [["a"]], (10,), freeze_header=True, autofilter=True)]
    ours, theirs = _both(tmp_path, lambda path: xlsx.write_workbook(path, sheets))
    bad = tmp_path / "bad.xlsx"
    with zipfile.ZipFile(bad, "w") as out:
        for part in ours.namelist():
            data = ours.read(part)
            if part == "xl/worksheets/sheet1.xml":
                data = re.sub(rb"(<sheetFormatPr[^>]*/>)(<cols>.*</cols>)", rb"\2\1", data)
                data = data.replace(b"<sheetFormatPr ", b'<sheetFormatPr zoom="1" ')
            out.writestr(part, data)
    found = list(_differences(zipfile.ZipFile(bad), theirs))
    assert any("out of XlsxWriter's order" in f for f in found), found
    assert any("attribute zoom" in f for f in found), found
