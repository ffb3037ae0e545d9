"""A small streaming XLSX writer: what the results sheet needs, an order of magnitude faster.

openpyxl's write-only mode builds and serializes an object per cell (about 15 µs each: a
100,000-row report took half a minute). Here each row is formatted as SpreadsheetML text,
a few thousand rows at a time, spooled to a temporary file and deflated into the zip, so
memory stays flat whatever the row count. What it writes is what the report needs and no
more:

- text always as an inline string (never a formula, never an error value such as `#N/A`),
  numbers as numbers, an empty or None cell left out;
- a fixed table of styles: `NORMAL`, `BOLD`, and one solid fill per colour asked for
  (`fill_style(i)`);
- per sheet: column widths (in characters, stored as Excel stores them), a frozen header
  row, a filter over the rows written;
- rows may come already rendered (`Rendered`, built with `cell_parts`): the column-at-a-time
  dry run (bulk_update/columnar/) renders its rows with arrow.

Callers pass text XML can hold (report.xlsx_text drops the control characters it cannot)
and Excel can hold (`excel_cell` cuts a cell past Excel's 32,767 characters, with a mark).
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from openpyxl.utils import get_column_letter

__all__ = [
    "BOLD",
    "CUT_MARK",
    "EXCEL_CELL_CHARS",
    "NORMAL",
    "ROW_CLOSE",
    "ROW_MIDDLE",
    "ROW_OPEN",
    "SURELY_FITS",
    "Cell",
    "Rendered",
    "SheetSpec",
    "cell_parts",
    "escape",
    "escape_column",
    "excel_cell",
    "fill_style",
    "write_workbook",
]

#: A cell: its value, or (value, style). None and "" leave the cell out.
Cell = str | int | float | None | tuple[str | int | float | None, int]

NORMAL = 0
BOLD = 1
#: The most characters an Excel cell holds (counted as Excel counts them: UTF-16 units).
EXCEL_CELL_CHARS = 32_767
#: What ends a cell cut to fit (`excel_cell`); {total} is the whole text's length.
CUT_MARK = "… [cut: {total:,} characters, more than Excel holds; what is sent is never cut]"
_ROWS_PER_WRITE = 2000

_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PKG_REL = "http://schemas.openxmlformats.org/package/2006/relationships"
_XML = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
_SHEET_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml"


#: A sheet name Excel takes (at most 31 characters, checked apart).
_EXCEL_SHEET_NAME = re.compile(r"[^\[\]:*?/\\']([^\[\]:*?/\\]*[^\[\]:*?/\\'])?")


def fill_style(index: int) -> int:
    """The style of a cell filled with the `index`-th colour given to `write_workbook`."""
    return 2 + index


@dataclass(frozen=True)
class SheetSpec:
    """One worksheet: its name, its rows (read once, in order) and how it is shown."""

    name: str
    rows: Iterable[Sequence[Cell] | Rendered]
    widths: Sequence[float] = ()
    freeze_header: bool = False
    autofilter: bool = False


def write_workbook(path: Path, sheets: Sequence[SheetSpec], fills: Sequence[str] = ()) -> None:
    """Write the workbook at `path` (replacing it); `fills` are RRGGBB hex colours.

    ValueError for a sheet name Excel refuses (empty, over 31 characters, one of `[]:*?/\\`,
    an apostrophe first or last)."""
    for sheet in sheets:
        if not _EXCEL_SHEET_NAME.fullmatch(sheet.name) or len(sheet.name) > 31:
            raise ValueError(f"Excel cannot name a sheet {sheet.name!r}")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        filters: list[str | None] = []
        for number, sheet in enumerate(sheets, start=1):
            # Spooled first, as openpyxl does: with its size known, the zip part takes the
            # ZIP64 extension only past 4 GB (Excel is particular about ZIP64 headers).
            with tempfile.TemporaryFile(dir=path.parent) as spool:
                filters.append(_write_sheet(spool, sheet))
                part = zipfile.ZipInfo(f"xl/worksheets/sheet{number}.xml", time.localtime()[:6])
                part.compress_type = zipfile.ZIP_DEFLATED
                part.file_size = spool.tell()
                spool.seek(0)
                with archive.open(part, "w") as stream:
                    shutil.copyfileobj(spool, stream, 1 << 20)
        archive.writestr("[Content_Types].xml", _content_types(len(sheets)))
        archive.writestr("_rels/.rels", _ROOT_RELS)
        archive.writestr("xl/workbook.xml", _workbook(sheets, filters))
        archive.writestr("xl/_rels/workbook.xml.rels", _workbook_rels(len(sheets)))
        archive.writestr("xl/styles.xml", _styles(fills))


#: What XML character data cannot hold as it is, and its entity ('&' first).
_ENTITIES = (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"))


def escape(text: str) -> str:
    """`text` as XML character data: `&`, `<` and `>` escaped."""
    for char, entity in _ENTITIES:
        if char in text:
            text = text.replace(char, entity)
    return text


def escape_column(col: Any) -> Any:
    """`escape` on every cell of a pyarrow string array (the columnar dry run's rows)."""
    import pyarrow.compute as pc

    for char, entity in _ENTITIES:
        if pc.any(pc.match_substring(col, char)).as_py():
            col = pc.replace_substring(col, char, entity)
    return col


#: Characters a text may have and surely fit in a cell (each is at most 2 UTF-16 units).
SURELY_FITS = EXCEL_CELL_CHARS // 2


def excel_cell(text: str) -> str:
    """`text`, or when Excel cannot hold it in one cell (over EXCEL_CELL_CHARS UTF-16 units,
    as Excel counts), its start with CUT_MARK, the whole within the limit. Pure.

    Excel refuses to open, or "repairs", a workbook with a longer cell; the value sent and
    a CSV report keep the whole text.
    """
    if len(text) <= SURELY_FITS or _units(text) <= EXCEL_CELL_CHARS:
        return text
    mark = CUT_MARK.format(total=len(text))
    room = EXCEL_CELL_CHARS - _units(mark)
    # Characters outside the BMP take two units: cut by units, never inside a character.
    kept = text[:room]
    excess = _units(kept) - room
    while excess > 0:
        kept = kept[: len(kept) - (excess + 1) // 2]
        excess = _units(kept) - room
    return kept + mark


def _units(text: str) -> int:
    """The length of `text` in UTF-16 code units (how Excel counts a cell's characters)."""
    return len(text.encode("utf-16-le")) // 2


def _quote_attr(text: str) -> str:
    return escape(text).replace('"', "&quot;")


def cell_parts(column: int, style: int, *, text: bool) -> tuple[str, str, str]:
    """A cell's XML around its row number and value: `a + row + b + value + c`.

    For a writer that renders rows itself (the columnar dry run, a column at a time): the same
    bytes as `write_workbook` writes. `column` counts from 0; a text value is escaped
    (`escape`), a number is written as `repr` writes it.
    """
    styled = f' s="{style}"' if style else ""
    start = f'<c r="{get_column_letter(column + 1)}'
    if text:
        return start, f'"{styled} t="inlineStr"><is><t xml:space="preserve">', "</t></is></c>"
    return start, f'"{styled}><v>', "</v></c>"


#: A row's XML around its number and cells: ROW_OPEN + number + ROW_MIDDLE + cells + ROW_CLOSE.
ROW_OPEN, ROW_MIDDLE, ROW_CLOSE = '<row r="', '">', "</row>"


class _Rows:
    """Renders rows; the XML around each kind of cell is worked out once per column."""

    def __init__(self) -> None:
        self.plain: dict[int, tuple[str, str, str]] = {}  # unstyled text, by column
        self.other: dict[tuple[int, int, bool], tuple[str, str, str]] = {}

    def __call__(self, number: int, cells: Sequence[Cell]) -> str:
        n = str(number)
        parts = [ROW_OPEN, n, ROW_MIDDLE]
        for index, cell in enumerate(cells):
            if cell is None or cell == "":
                continue
            if cell.__class__ is str:  # nearly every cell: text without a style
                pieces = self.plain.get(index)
                if pieces is None:
                    pieces = self.plain[index] = cell_parts(index, NORMAL, text=True)
                a, b, c = pieces
                parts.append(f"{a}{n}{b}{escape(cell)}{c}")
                continue
            style = NORMAL
            if isinstance(cell, tuple):
                cell, style = cell
                if cell is None or cell == "":
                    continue
            text = isinstance(cell, str)
            key = (index, style, text)
            known = self.other.get(key)
            if known is None:
                known = self.other[key] = cell_parts(index, style, text=text)
            if isinstance(cell, str):
                value = escape(cell)
            else:  # int or float: repr gives back the same number when read
                value = repr(int(cell) if isinstance(cell, bool) else cell)
            a, b, c = known
            parts.append(f"{a}{n}{b}{value}{c}")
        if len(parts) == 3:
            return ""  # no cell: Excel writes no row either
        parts.append(ROW_CLOSE)
        return "".join(parts)


@dataclass(frozen=True, slots=True)
class Rendered:
    """Rows already rendered as `<row>` XML (with `cell_parts`), to be written as they are.

    `count` rows, numbered from the row after those written before them, at most `width`
    cells wide.
    """

    xml: bytes
    count: int
    width: int


def _write_sheet(stream: IO[bytes], sheet: SheetSpec) -> str | None:
    """Write one worksheet's XML to `stream`; the filter's range if it has one."""
    write = stream.write
    head = [_XML, f'<worksheet xmlns="{_MAIN}" xmlns:r="{_REL}">']
    if sheet.freeze_header:
        head.append(
            '<sheetViews><sheetView workbookViewId="0">'
            '<pane ySplit="1" topLeftCell="A2" activePane="bottomLeft" state="frozen"/>'
            '<selection pane="bottomLeft" activeCell="A2" sqref="A2"/>'
            "</sheetView></sheetViews>"
        )
    else:
        head.append('<sheetViews><sheetView workbookViewId="0"/></sheetViews>')
    head.append('<sheetFormatPr defaultRowHeight="15"/>')
    if sheet.widths:
        head.append("<cols>")
        head.extend(_column(i, w) for i, w in enumerate(sheet.widths, start=1))
        head.append("</cols>")
    head.append("<sheetData>")
    write("".join(head).encode("utf-8"))
    render = _Rows()
    count = width = 0
    text: list[str] = []  # rendered rows not written yet
    for cells in sheet.rows:
        if isinstance(cells, Rendered):  # written at once: a block may be large
            write("".join(text).encode("utf-8"))
            text = []
            write(cells.xml)
            count += cells.count
            width = max(width, cells.width)
            continue
        count += 1
        width = max(width, len(cells))
        text.append(render(count, cells))
        if len(text) >= _ROWS_PER_WRITE:
            write("".join(text).encode("utf-8"))
            text = []
    write("".join(text).encode("utf-8"))
    tail = ["</sheetData>"]
    ref = None
    if sheet.autofilter and width:
        last = f"{get_column_letter(width)}{max(count, 1)}"
        ref = "A1" if last == "A1" else f"A1:{last}"  # one cell: Excel names it alone
        tail.append(f'<autoFilter ref="{ref}"/>')
    tail.append(
        '<pageMargins left="0.75" right="0.75" top="1" bottom="1" header="0.5" footer="0.5"/>'
        "</worksheet>"
    )
    write("".join(tail).encode("utf-8"))
    return ref


#: Excel's default font (Calibri 11): the width of its widest digit and the padding of a
#: column, in pixels, and the default width of a column (8.43 characters).
_DIGIT_PX, _PADDING_PX, _DEFAULT_COLUMN_PX = 7, 5, 64


def _column(number: int, characters: float) -> str:
    """The `<col>` of a column `characters` wide, as Excel stores it (ECMA-376 18.3.1.13):
    whole pixels, the characters' digits plus the padding, in 1/256ths of a digit. So a
    width of 12 is stored as 12.7109375 and shows as 12 in Excel (what XlsxWriter writes)."""
    if characters <= 0:
        pixels = 0
    elif characters < 1:
        pixels = int(characters * (_DIGIT_PX + _PADDING_PX) + 0.5)
    else:
        pixels = int(characters * _DIGIT_PX + 0.5) + _PADDING_PX
    width = f"{pixels * 256 // _DIGIT_PX / 256:.16g}"
    custom = ' customWidth="1"' if pixels != _DEFAULT_COLUMN_PX else ""
    return f'<col min="{number}" max="{number}" width="{width}"{custom}/>'


def _content_types(sheets: int) -> str:
    overrides = "".join(
        f'<Override PartName="/xl/worksheets/sheet{n}.xml" '
        f'ContentType="{_SHEET_TYPE}.worksheet+xml"/>'
        for n in range(1, sheets + 1)
    )
    return (
        f"{_XML}"
        '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="rels" '
        'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        f'<Override PartName="/xl/workbook.xml" ContentType="{_SHEET_TYPE}.sheet.main+xml"/>'
        f'<Override PartName="/xl/styles.xml" ContentType="{_SHEET_TYPE}.styles+xml"/>'
        f"{overrides}</Types>"
    )


_ROOT_RELS = (
    f'{_XML}<Relationships xmlns="{_PKG_REL}">'
    f'<Relationship Id="rId1" Type="{_REL}/officeDocument" Target="xl/workbook.xml"/>'
    "</Relationships>"
)


def _workbook(sheets: Sequence[SheetSpec], filters: Sequence[str | None]) -> str:
    listed = "".join(
        f'<sheet name="{_quote_attr(s.name)}" sheetId="{n}" r:id="rId{n}"/>'
        for n, s in enumerate(sheets, start=1)
    )
    # Excel keeps a sheet's filter range under this hidden name as well.
    names = "".join(
        f'<definedName name="_xlnm._FilterDatabase" localSheetId="{n}" hidden="1">'
        f"{escape(_absolute(sheets[n].name, ref))}</definedName>"
        for n, ref in enumerate(filters)
        if ref
    )
    defined = f"<definedNames>{names}</definedNames>" if names else ""
    return (
        f'{_XML}<workbook xmlns="{_MAIN}" xmlns:r="{_REL}">'
        '<bookViews><workbookView activeTab="0"/></bookViews>'
        f"<sheets>{listed}</sheets>{defined}</workbook>"
    )


def _absolute(sheet: str, ref: str) -> str:
    quoted = sheet.replace("'", "''")

    def dollars(cell: str) -> str:
        letters = cell.rstrip("0123456789")
        return f"${letters}${cell[len(letters) :]}"

    return f"'{quoted}'!" + ":".join(map(dollars, ref.split(":")))


def _workbook_rels(sheets: int) -> str:
    rels = "".join(
        f'<Relationship Id="rId{n}" Type="{_REL}/worksheet" Target="worksheets/sheet{n}.xml"/>'
        for n in range(1, sheets + 1)
    )
    styles = f'<Relationship Id="rId{sheets + 1}" Type="{_REL}/styles" Target="styles.xml"/>'
    return f'{_XML}<Relationships xmlns="{_PKG_REL}">{rels}{styles}</Relationships>'


def _styles(fills: Sequence[str]) -> str:
    font = '<sz val="11"/><name val="Calibri"/><family val="2"/>'
    solid = "".join(
        f'<fill><patternFill patternType="solid"><fgColor rgb="FF{colour.upper()}"/>'
        '<bgColor indexed="64"/></patternFill></fill>'
        for colour in fills
    )
    filled = "".join(
        f'<xf numFmtId="0" fontId="0" fillId="{2 + i}" borderId="0" xfId="0" applyFill="1"/>'
        for i in range(len(fills))
    )
    return (
        f'{_XML}<styleSheet xmlns="{_MAIN}">'
        f'<fonts count="2"><font>{font}</font><font><b/>{font}</font></fonts>'
        f'<fills count="{2 + len(fills)}"><fill><patternFill patternType="none"/></fill>'
        f'<fill><patternFill patternType="gray125"/></fill>{solid}</fills>'
        '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
        '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/>'
        f'</cellStyleXfs><cellXfs count="{2 + len(fills)}">'
        '<xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>'
        '<xf numFmtId="0" fontId="1" fillId="0" borderId="0" xfId="0" applyFont="1"/>'
        f"{filled}</cellXfs>"
        '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>'
        "</styleSheet>"
    )
