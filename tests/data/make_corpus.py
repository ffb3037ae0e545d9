"""Write the reader's corpus: tricky and hostile sheets, each with what it must give.

    python tests/data/make_corpus.py     # rewrites tests/data/ (LibreOffice for the lo_* files)

Small files are written into tests/data/ and committed. corpus.json lists every entry: its
file, and either the rows it must give (header -> value, as read_sheet returns them) or a
fragment of the error message it must give. Big or hostile files (bombs, 100 MB cells) are
never committed: an entry with "make" names a function of MAKERS, which tests/test_corpus.py
calls to write the file into a temporary folder at test time.

"made_by" says how a committed file is made: "python" (this script, with openpyxl for
workbooks: they are saved the way Excel lays them out), "soffice" (LibreOffice converts
the sources under lo_src/ to .xlsx in one call; test_corpus.py repeats that when soffice
is installed) or "soffice-legacy" (.xls and .ods made once by this script, for the messages
that refuse those formats).
"""

from __future__ import annotations

import codecs
import datetime as dt
import io
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openpyxl
from openpyxl.utils import get_column_letter

HERE = Path(__file__).resolve().parent
LO_SOURCES = HERE / "lo_src"
MB = 1 << 20

Entry = dict[str, Any]

# --------------------------------------------------------------------------- small files

UTF8 = "uid,first_name,last_name,email,address.city\nAE.1,Zoë,Ünal,zoe@example.com,Tel Aviv\n"
UTF8 += "AE.2,José,Núñez,jose@example.com,תל אביב\n"

#: Excel's "CSV UTF-8" in a locale whose list separator is ';': a BOM, ';' and CRLF.
EXCEL_UTF8_BOM = 'uid;first_name;note\r\nAE.1;Dana;"call back; after 5"\r\nAE.2;Noa;Café ☕\r\n'

#: Excel's "Unicode text": UTF-16 LE with a BOM, tab-separated, CRLF, quotes where needed.
UNICODE_TEXT = (
    'uid\tfirst_name\tnote\r\nAE.1\tDana\t"She said ""hi""\tthen left"\r\n'
    'AE.2\tנועה\t"two\r\nlines"\r\n'
)

WINDOWS_1252 = "uid;first_name;note\r\nAE.1;Café;€ 5 “quoted” – dash\r\nAE.2;Zoë;naïve\r\n"

QUOTED = (
    "uid,note,links\r\n"
    'AE.1,"Cohen, Dana","https://a.example\nhttps://b.example"\r\n'
    'AE.2,"She said ""yes""",\r\n'
    'AE.3,"line one\r\nline two",https://c.example\r\n'
    "AE.4,plain,\r\n"
)

#: A header with empty trailing columns, rows of only commas at the end, a blank line.
TRAILING = "uid,first_name,,,\nAE.1,Dana,,,\nAE.2,Noa,,,\n,,,,\n,,,,\n\n"

BLANK_ABOVE = "\r\n,,\r\n\r\nuid,phone\r\nAE.1,0501234567\r\n\r\nAE.2,+972501234567\r\n"

#: What a download link gives when the session has expired, saved under the sheet's name.
HTML = "<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body>Expired</body></html>\n"


def _png() -> bytes:
    """A 1x1 white PNG picture."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def _save(workbook: openpyxl.Workbook, path: Path) -> None:
    # Fixed document dates: a rerun changes no more than zipfile's own time stamps.
    workbook.properties.created = workbook.properties.modified = dt.datetime(2024, 1, 1)
    workbook.save(path)


def excel_values(path: Path) -> None:
    """Numbers, long numbers, text that looks like numbers, dates, booleans."""
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = "Candidates"
    sheet.append(["uid", "phone", "national_id", "score", "birthday", "interview", "active"])
    sheet.append(
        [
            "AE.1",
            972501234567,
            "012345678",
            1.5,
            dt.date(1990, 5, 17),
            dt.datetime(2024, 3, 1, 10, 30),
            True,
        ]
    )
    # A uid a spreadsheet program turned into a number (01.10 -> 1.1), a phone stored as a
    # float, a national id that lost its leading zero, a whole date.
    sheet.append([1.1, 972501234567.0, 12345678, 2, dt.datetime(2024, 3, 2), None, False])
    sheet.append(["AE.3", "+972501234567", " 007 ", 123456789012345, None, None, None])
    _save(workbook, path)


def excel_layout(path: Path) -> None:
    """Blank rows above the header, merged cells, a hidden column and a hidden row."""
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = "Candidates"
    rows: dict[int, list[object]] = {
        3: ["uid", "address.city", "first_name", "secret", "note", None],
        4: ["AE.1", "Tel Aviv", "Dana", "s1", "call back", None],
        5: ["AE.2", None, "Noa", "s2", None, None],
        6: ["AE.3", "Haifa", "Lior", "s3", "hidden row", None],
        8: ["AE.4", "Eilat", "Omer", None, None, None],
    }
    for number, values in rows.items():
        for column, value in enumerate(values, 1):
            if value is not None:
                sheet.cell(number, column, value)
    sheet.merge_cells("B4:B5")  # one city for two candidates: the value is in B4 only
    sheet.merge_cells("E3:F3")  # a header spread over two columns, the second left empty
    sheet.column_dimensions["D"].hidden = True
    sheet.row_dimensions[6].hidden = True
    _save(workbook, path)


def excel_sheets(path: Path) -> None:
    """Several sheets: instructions first, the candidates second."""
    workbook = openpyxl.Workbook()
    first = workbook.active
    assert first is not None
    first.title = "Instructions"
    first.append(["How to fill this workbook"])
    first.append(["One candidate per row on the Candidates sheet"])
    workbook.create_sheet("Candidates").append(["uid", "email"])
    workbook["Candidates"].append(["AE.1", "dana@example.com"])
    workbook.create_sheet("Archive").append(["uid", "note"])
    workbook["Archive"].append(["AE.9", "left in 2023"])
    _save(workbook, path)


def small_workbook(path: Path) -> None:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(["uid", "first_name"])
    sheet.append(["AE.1", "Dana"])
    _save(workbook, path)


def _text(content: str, encoding: str, bom: bytes = b"") -> Callable[[Path], None]:
    def write(path: Path) -> None:
        path.write_bytes(bom + content.encode(encoding))

    return write


def _bytes(content: Callable[[], bytes]) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        path.write_bytes(content())

    return write


def _copy_of(name: str) -> Callable[[Path], None]:
    """A copy of another corpus file (written before it) under a misleading name."""

    def write(path: Path) -> None:
        source = path.parent / name
        shutil.copyfile(source if source.exists() else HERE / name, path)

    return write


def _workbook_bytes() -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "book.xlsx"
        small_workbook(path)
        return path.read_bytes()


#: Files this script writes itself, in order (a copy comes after its original).
PYTHON_FILES: dict[str, Callable[[Path], None]] = {
    "utf8.csv": _text(UTF8, "utf-8"),
    "excel_utf8_bom.csv": _text(EXCEL_UTF8_BOM, "utf-8", codecs.BOM_UTF8),
    "excel_unicode_text.txt": _text(UNICODE_TEXT, "utf-16-le", codecs.BOM_UTF16_LE),
    "unicode_text_be.txt": _text("uid\tcity\nAE.1\tחיפה\n", "utf-16-be", codecs.BOM_UTF16_BE),
    "windows1252.csv": _text(WINDOWS_1252, "cp1252"),
    "tabs.tsv": _text("uid\temail\tphone\nAE.1\ta@example.com\t+972501234567\n", "utf-8"),
    "quoted.csv": _text(QUOTED, "utf-8"),
    "trailing_blank.csv": _text(TRAILING, "utf-8"),
    "blank_rows_above.csv": _text(BLANK_ABOVE, "utf-8"),
    "excel_values.xlsx": excel_values,
    "excel_layout.xlsx": excel_layout,
    "excel_sheets.xlsx": excel_sheets,
    "garbage.csv": _bytes(lambda: random.Random(4).randbytes(4096)),
    "picture.csv": _bytes(_png),
    "workbook_named.csv": _bytes(_workbook_bytes),
    "text_named.xlsx": _text(UTF8, "utf-8"),
    "html_named.xlsx": _text(HTML, "utf-8"),
    "empty.xlsx": _bytes(lambda: b""),
    # Copies of LibreOffice's .xls and .ods (made by soffice_legacy) under other names.
    "legacy_named.csv": _copy_of("lo_features.xls"),
    "legacy_named.xlsx": _copy_of("lo_features.xls"),
    "ods_named.csv": _copy_of("lo_features.ods"),
    "ods_named.xlsx": _copy_of("lo_features.ods"),
}


# --------------------------------------------------------------------------- LibreOffice


def soffice(sources: list[Path], outdir: Path, fmt: str, *, timeout: float = 120) -> list[Path]:
    """Convert `sources` to `fmt` with LibreOffice, all in one call; return the new files."""
    exe = shutil.which("soffice")
    if exe is None:
        raise RuntimeError("soffice (LibreOffice) is not installed")
    outdir.mkdir(parents=True, exist_ok=True)
    # A private profile: two conversions at once would otherwise clash over ~/.config.
    with tempfile.TemporaryDirectory(prefix="lo-profile-") as profile:
        subprocess.run(
            [
                exe,
                f"-env:UserInstallation={Path(profile).as_uri()}",
                "--headless",
                "--norestore",
                "--convert-to",
                fmt,
                "--outdir",
                str(outdir),
                *map(str, sources),
            ],
            check=True,
            capture_output=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            # The locale decides how LibreOffice reads numbers and dates in a CSV.
            env={**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"},
        )
    made = [outdir / f"{source.stem}.{fmt}" for source in sources]
    missing = [p.name for p in made if not p.exists()]
    if missing:
        raise RuntimeError(f"soffice did not write {', '.join(missing)}")
    return made


def soffice_xlsx(outdir: Path) -> list[Path]:
    """The workbooks "as LibreOffice saves them": every source of lo_src/, one call."""
    return soffice(sorted(LO_SOURCES.iterdir()), outdir, "xlsx")


def soffice_legacy(outdir: Path) -> None:
    """lo_features as .xls and .ods: formats the reader refuses by name and by content."""
    soffice([LO_SOURCES / "lo_features.fods"], outdir, "xls")
    soffice([LO_SOURCES / "lo_features.fods"], outdir, "ods")


# --------------------------------------------------------------------------- hostile files


@dataclass(frozen=True)
class _Part:
    """A zip part given as the bytes to store: `chunks` packed with `method`."""

    method: int  # 0 stored, 8 deflated
    chunks: list[bytes]
    crc: int
    size: int


def _deflated(data: bytes) -> _Part:
    packer = zlib.compressobj(6, zlib.DEFLATED, -15)
    return _Part(8, [packer.compress(data) + packer.flush()], zlib.crc32(data), len(data))


def _repeated(head: bytes, block: bytes, count: int, tail: bytes, *, stored: bool) -> _Part:
    """head + block * count + tail, without ever holding it in memory or packing it all.

    Deflated, each piece ends with a full flush, which starts the compressor afresh: every
    copy of the block packs to the same bytes, so it is packed once and repeated.
    """
    crc = zlib.crc32(head)
    for _ in range(count):
        crc = zlib.crc32(block, crc)
    crc = zlib.crc32(tail, crc)
    size = len(head) + len(block) * count + len(tail)
    if stored:
        return _Part(0, [head, *[block] * count, tail], crc, size)
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = packer.compress(head) + packer.flush(zlib.Z_FULL_FLUSH)
    middle = packer.compress(block) + packer.flush(zlib.Z_FULL_FLUSH)
    last = packer.compress(tail) + packer.flush()
    return _Part(8, [first, *[middle] * count, last], crc, size)


def write_zip(path: Path, parts: Mapping[str, bytes | _Part]) -> None:
    """A zip file written by hand, so that a part can be a bomb made of repeated chunks."""
    directory = []
    with path.open("wb") as out:
        for name, content in parts.items():
            part = _deflated(content) if isinstance(content, bytes) else content
            encoded = name.encode()
            packed = sum(len(c) for c in part.chunks)
            offset = out.tell()
            # version 20, no flags, the method, DOS time 0, date 1980-01-01
            fields = (20, 0, part.method, 0, 0x21, part.crc, packed, part.size, len(encoded))
            out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, *fields, 0) + encoded)
            for chunk in part.chunks:
                out.write(chunk)
            directory.append(
                struct.pack("<IH", 0x02014B50, 20)
                + struct.pack("<HHHHHIIIHHHHHII", *fields, 0, 0, 0, 0, 0, offset)
                + encoded
            )
        start = out.tell()
        for record in directory:
            out.write(record)
        size = out.tell() - start
        count = len(directory)
        out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, count, count, size, start, 0))


def _workbook_parts() -> dict[str, bytes | _Part]:
    with zipfile.ZipFile(io.BytesIO(_workbook_bytes())) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


SHEET = "xl/worksheets/sheet1.xml"
_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"


def _sheet_xml(rows: list[list[str]], *, doctype: str = "") -> bytes:
    """A worksheet of inline strings (what openpyxl writes), with an optional DOCTYPE."""
    lines = [
        f'<?xml version="1.0" encoding="UTF-8"?>\n{doctype}<worksheet xmlns="{_NS}"><sheetData>'
    ]
    for number, row in enumerate(rows, 1):
        cells = "".join(
            f'<c r="{get_column_letter(i)}{number}" t="inlineStr"><is><t>{v}</t></is></c>'
            for i, v in enumerate(row, 1)
        )
        lines.append(f'<row r="{number}">{cells}</row>')
    lines.append("</sheetData></worksheet>")
    return "".join(lines).encode()


#: "Billion laughs": ten entities of ten of the one before, 10^9 'lol's from 1 kB of XML.
LAUGHS = (
    '<!DOCTYPE lolz [<!ENTITY lol "lol">'
    + "".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'
        for i in range(1, 10)
    )
    + "]>\n"
)


def entity_bomb_xlsx(path: Path) -> None:
    """An XML entity bomb in the worksheet."""
    parts = _workbook_parts()
    parts[SHEET] = _sheet_xml([["uid", "note"], ["AE.1", "&lol9;"]], doctype=LAUGHS)
    write_zip(path, parts)


def entity_bomb_shared_xlsx(path: Path) -> None:
    """An XML entity bomb in the shared strings, the way Excel stores text."""
    parts = _workbook_parts()
    types = parts["[Content_Types].xml"]
    assert isinstance(types, bytes)
    parts["[Content_Types].xml"] = types.replace(
        b"</Types>",
        b'<Override PartName="/xl/sharedStrings.xml" ContentType="application/'
        b'vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/></Types>',
    )
    parts["xl/sharedStrings.xml"] = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n{LAUGHS}<sst xmlns="{_NS}" count="2" '
        'uniqueCount="2"><si><t>uid</t></si><si><t>&lol9;</t></si></sst>'
    ).encode()
    parts[SHEET] = (
        f'<worksheet xmlns="{_NS}"><sheetData><row r="1"><c r="A1" t="s"><v>0</v></c></row>'
        '<row r="2"><c r="A2" t="s"><v>1</v></c></row></sheetData></worksheet>'
    ).encode()
    write_zip(path, parts)


def _bomb_sheet(megabytes: int) -> _Part:
    head = _sheet_xml([["uid"]]).split(b"</sheetData>")[0]
    return _repeated(head, b" " * MB, megabytes, b"</sheetData></worksheet>", stored=False)


def zip_bomb_xlsx(path: Path) -> None:
    """A worksheet that unpacks to 1 GB from about 1 MB."""
    parts = _workbook_parts()
    parts[SHEET] = _bomb_sheet(1024)
    write_zip(path, parts)


def ratio_bomb_xlsx(path: Path) -> None:
    """256 MB from 250 kB: under the total cap, far over the ratio."""
    parts = _workbook_parts()
    parts[SHEET] = _bomb_sheet(256)
    write_zip(path, parts)


def many_parts_xlsx(path: Path) -> None:
    """A workbook padded to 12,000 tiny parts (the cap is met long before memory runs out)."""
    parts = _workbook_parts()
    for i in range(12_000 - len(parts)):
        parts[f"xl/media/p{i}.bin"] = b"x"
    write_zip(path, parts)


def huge_cell_xlsx(path: Path) -> None:
    """A 100 MB cell, stored without compression so no ratio check sees it."""
    parts = _workbook_parts()
    head, tail = _sheet_xml([["uid", "note"], ["AE.1", "@"]]).split(b"@")
    parts[SHEET] = _repeated(head, b"x" * MB, 100, tail, stored=True)
    write_zip(path, parts)


def many_columns_xlsx(path: Path) -> None:
    """A header over all 16,384 columns Excel has."""
    parts = _workbook_parts()
    parts[SHEET] = _sheet_xml([[f"c{i}" for i in range(16_384)]])
    write_zip(path, parts)


def _write_repeated(path: Path, head: bytes, block: bytes, count: int, tail: bytes) -> None:
    with path.open("wb") as out:
        out.write(head)
        for _ in range(count):
            out.write(block)
        out.write(tail)


def huge_cell_csv(path: Path) -> None:
    """A 100 MB cell on one line."""
    _write_repeated(path, b"uid,note\nAE.1,", b"x" * MB, 100, b"\nAE.2,ok\n")


def huge_quoted_cell_csv(path: Path) -> None:
    """A 100 MB quoted cell over a million lines."""
    _write_repeated(path, b'uid,note\nAE.1,"', (b"x" * 99 + b"\n") * (MB // 100), 100, b'"\n')


def long_row_csv(path: Path) -> None:
    """A 2.5 MB row of small cells."""
    _write_repeated(path, b"uid,note\nAE.1", b"," + b"x" * 499, 5000, b"\n")


def many_columns_csv(path: Path) -> None:
    """A header of 20,000 columns."""
    path.write_text(",".join(f"c{i}" for i in range(20_000)) + "\nAE.1\n", encoding="utf-8")


#: Makers of the files tests write at test time (hostile or big; never committed).
MAKERS: dict[str, Callable[[Path], None]] = {
    "entity_bomb.xlsx": entity_bomb_xlsx,
    "entity_bomb_shared.xlsx": entity_bomb_shared_xlsx,
    "zip_bomb.xlsx": zip_bomb_xlsx,
    "ratio_bomb.xlsx": ratio_bomb_xlsx,
    "many_parts.xlsx": many_parts_xlsx,
    "huge_cell.xlsx": huge_cell_xlsx,
    "many_columns.xlsx": many_columns_xlsx,
    "huge_cell.csv": huge_cell_csv,
    "huge_quoted_cell.csv": huge_quoted_cell_csv,
    "long_row.csv": long_row_csv,
    "many_columns.csv": many_columns_csv,
}


# --------------------------------------------------------------------------- the corpus

BOMB = "looks like a zip bomb"
XML_BOMB = "holds an XML document type declaration"


def _ok(file: str, made_by: str, rows: list[dict[str, str]], **extra: Any) -> Entry:
    return {"file": file, "made_by": made_by, "rows": rows, **extra}


def _error(file: str, made_by: str, error: str, **extra: Any) -> Entry:
    return {"file": file, "made_by": made_by, "error": error, **extra}


def _hostile(file: str, error: str) -> Entry:
    return {"file": file, "make": file, "error": error, "hostile": True}


LO_CANDIDATES = [
    {
        "uid": "AE.1",
        "phone": "972501234567",
        "city": "Tel Aviv",
        "hidden": "secret",
        "date": "2024-03-01",
        "when": "2024-03-01T10:30:00",
        "active": "TRUE",
        "total": "2",
        "label": "AE.1-x",
    },
    {
        "uid": "AE.2",
        "phone": "+972501234567",
        "city": "",
        "hidden": "",
        "date": "2024-03-02",
        "when": "",
        "active": "FALSE",
        "total": "0.3",
        "label": "",
    },
]

ENTRIES: list[Entry] = [
    # CSV as exported in the wild
    _ok(
        "utf8.csv",
        "python",
        [
            {
                "uid": "AE.1",
                "first_name": "Zoë",
                "last_name": "Ünal",
                "email": "zoe@example.com",
                "address.city": "Tel Aviv",
            },
            {
                "uid": "AE.2",
                "first_name": "José",
                "last_name": "Núñez",
                "email": "jose@example.com",
                "address.city": "תל אביב",
            },
        ],
    ),
    _ok(
        "excel_utf8_bom.csv",
        "python",
        [
            {"uid": "AE.1", "first_name": "Dana", "note": "call back; after 5"},
            {"uid": "AE.2", "first_name": "Noa", "note": "Café ☕"},
        ],
    ),
    _ok(
        "excel_unicode_text.txt",
        "python",
        [
            {"uid": "AE.1", "first_name": "Dana", "note": 'She said "hi"\tthen left'},
            {"uid": "AE.2", "first_name": "נועה", "note": "two\r\nlines"},
        ],
        row_numbers=[2, 3],
    ),
    _ok("unicode_text_be.txt", "python", [{"uid": "AE.1", "city": "חיפה"}]),
    # Two rows of Windows-1252 whose only telling letters (ë, ï) are Lithuanian ė and
    # Latvian ļ in cp1257: too short to tell (a longer Western sheet reads as cp1252).
    _error(
        "windows1252.csv",
        "python",
        "windows1252.csv is not UTF-8 and its encoding cannot be told for sure",
    ),
    _ok(
        "tabs.tsv",
        "python",
        [{"uid": "AE.1", "email": "a@example.com", "phone": "+972501234567"}],
    ),
    _ok(
        "quoted.csv",
        "python",
        [
            {"uid": "AE.1", "note": "Cohen, Dana", "links": "https://a.example\nhttps://b.example"},
            {"uid": "AE.2", "note": 'She said "yes"', "links": ""},
            {"uid": "AE.3", "note": "line one\r\nline two", "links": "https://c.example"},
            {"uid": "AE.4", "note": "plain", "links": ""},
        ],
        row_numbers=[2, 3, 4, 5],
    ),
    _ok(
        "trailing_blank.csv",
        "python",
        [{"uid": "AE.1", "first_name": "Dana"}, {"uid": "AE.2", "first_name": "Noa"}],
        row_numbers=[2, 3],
    ),
    _ok(
        "blank_rows_above.csv",
        "python",
        [{"uid": "AE.1", "phone": "0501234567"}, {"uid": "AE.2", "phone": "+972501234567"}],
        header_row=4,
        row_numbers=[5, 7],
    ),
    # XLSX laid out as Excel saves it (written by openpyxl)
    _ok(
        "excel_values.xlsx",
        "python",
        [
            {
                "uid": "AE.1",
                "phone": "972501234567",
                "national_id": "012345678",
                "score": "1.5",
                "birthday": "1990-05-17",
                "interview": "2024-03-01T10:30:00",
                "active": "TRUE",
            },
            {
                "uid": "1.1",
                "phone": "972501234567",
                "national_id": "12345678",
                "score": "2",
                "birthday": "2024-03-02",
                "interview": "",
                "active": "FALSE",
            },
            {
                "uid": "AE.3",
                "phone": "+972501234567",
                "national_id": "007",
                "score": "123456789012345",
                "birthday": "",
                "interview": "",
                "active": "",
            },
        ],
        numeric=[["phone", "score"], ["uid", "phone", "national_id", "score"], ["score"]],
        sheet_name="Candidates",
    ),
    _ok(
        "excel_layout.xlsx",
        "python",
        [
            {
                "uid": "AE.1",
                "address.city": "Tel Aviv",
                "first_name": "Dana",
                "secret": "s1",
                "note": "call back",
            },
            {"uid": "AE.2", "address.city": "", "first_name": "Noa", "secret": "s2", "note": ""},
            {
                "uid": "AE.3",
                "address.city": "Haifa",
                "first_name": "Lior",
                "secret": "s3",
                "note": "hidden row",
            },
            {
                "uid": "AE.4",
                "address.city": "Eilat",
                "first_name": "Omer",
                "secret": "",
                "note": "",
            },
        ],
        header_row=3,
        row_numbers=[4, 5, 6, 8],
    ),
    _ok(
        "excel_sheets.xlsx",
        "python",
        [{"How to fill this workbook": "One candidate per row on the Candidates sheet"}],
        sheet_name="Instructions",
    ),
    _ok(
        "excel_sheets.xlsx",
        "python",
        [{"uid": "AE.1", "email": "dana@example.com"}],
        sheet="Candidates",
        sheet_name="Candidates",
    ),
    _ok(
        "excel_sheets.xlsx",
        "python",
        [{"uid": "AE.9", "note": "left in 2023"}],
        sheet="archive",
        sheet_name="Archive",
    ),
    _error(
        "excel_sheets.xlsx",
        "python",
        "has no worksheet 'Missing'; its sheets are: 'Instructions', 'Candidates', 'Archive'",
        sheet="Missing",
    ),
    # XLSX as LibreOffice saves it (converted from lo_src/ by soffice)
    _ok(
        "lo_features.xlsx",
        "soffice",
        LO_CANDIDATES,
        header_row=3,
        row_numbers=[4, 5],
        numeric=[["phone", "total"], ["total"]],
        sheet_name="Candidates",
    ),
    _ok(
        "lo_features.xlsx",
        "soffice",
        [{"uid": "1.1", "note": "typed 01.10"}],
        numeric=[["uid"]],
        sheet="Archive",
        sheet_name="Archive",
    ),
    _ok(
        "lo_from_csv.xlsx",
        "soffice",
        [
            {
                "uid": "AE.1",
                "phone": "972501234567",
                "national_id": "12345678",
                "date": "2024-03-01",
                "flag": "TRUE",
                "score": "1.5",
            },
            {
                "uid": "1.1",
                "phone": "972501234567",
                "national_id": "7",
                "date": "2024-03-02 10:30",
                "flag": "false",
                "score": "2",
            },
        ],
        numeric=[["phone", "national_id", "score"], ["uid", "phone", "national_id", "score"]],
    ),
    # Not what the name says
    _error("garbage.csv", "python", "garbage.csv is not a text CSV file (it holds binary data)"),
    _error("picture.csv", "python", "picture.csv is really a picture (PNG), not a CSV file"),
    _error(
        "workbook_named.csv",
        "python",
        "workbook_named.csv is really an Excel workbook (.xlsx), not a CSV file",
        fix="rename it to workbook_named.xlsx",
    ),
    _error(
        "legacy_named.csv",
        "python",
        "is really an old Excel .xls workbook (or a password-protected one), not a CSV file",
    ),
    _error(
        "ods_named.csv",
        "python",
        "is really an OpenDocument spreadsheet (.ods), not a CSV file",
    ),
    _error(
        "text_named.xlsx",
        "python",
        "text_named.xlsx is really a text file (a CSV?), not an .xlsx workbook",
        fix="rename it to text_named.csv",
    ),
    _error("html_named.xlsx", "python", "is really a web page (HTML), not an .xlsx workbook"),
    _error("empty.xlsx", "python", "empty.xlsx is empty (0 bytes)"),
    _error(
        "legacy_named.xlsx",
        "python",
        "is really an old Excel .xls workbook (or a password-protected one), not an .xlsx",
    ),
    _error(
        "ods_named.xlsx",
        "python",
        "is really an OpenDocument spreadsheet (.ods), not an .xlsx workbook",
    ),
    _error(
        "lo_features.xls",
        "soffice-legacy",
        "lo_features.xls: .xls files are not read; save the sheet as .xlsx or .csv",
    ),
    _error(
        "lo_features.ods",
        "soffice-legacy",
        "lo_features.ods: .ods files are not read; save the sheet as .xlsx or .csv",
    ),
    # Hostile, made at test time
    _hostile("entity_bomb.xlsx", XML_BOMB),
    _hostile("entity_bomb_shared.xlsx", XML_BOMB),
    _hostile("zip_bomb.xlsx", f"{BOMB} (it would unpack to 1.0 GB)"),
    _hostile("ratio_bomb.xlsx", f"{BOMB} (xl/worksheets/sheet1.xml would unpack"),
    _hostile("many_parts.xlsx", f"{BOMB} (its directory lists 12,000 parts)"),
    _hostile("huge_cell.xlsx", "has a cell larger than 1 MB (in xl/worksheets/sheet1.xml)"),
    _hostile(
        "many_columns.xlsx",
        "the sheet has 16,384 columns; at most 2,000 are read — is this the right file?",
    ),
    _hostile("huge_cell.csv", "huge_cell.csv, row 2 has a cell larger than 1 MB"),
    _hostile("huge_quoted_cell.csv", "huge_quoted_cell.csv, row 2 has a cell larger than 1 MB"),
    _hostile("long_row.csv", "long_row.csv, row 2 is larger than 2 MB"),
    _hostile(
        "many_columns.csv",
        "the sheet has 20,000 columns; at most 2,000 are read — is this the right file?",
    ),
]


def write_python_files(outdir: Path) -> list[Path]:
    """Write every file of PYTHON_FILES into `outdir` (the .xls/.ods copies need those)."""
    written = []
    for name, write in PYTHON_FILES.items():
        write(outdir / name)
        written.append(outdir / name)
    return written


def write_corpus_json(outdir: Path) -> Path:
    path = outdir / "corpus.json"
    text = json.dumps({"entries": ENTRIES}, ensure_ascii=False, indent=1)
    path.write_text(text + "\n", encoding="utf-8")
    return path


def main() -> int:
    if shutil.which("soffice"):
        soffice_legacy(HERE)
        soffice_xlsx(HERE)
    elif not (HERE / "lo_features.xls").exists():
        print("soffice (LibreOffice) is needed to make the lo_* files", file=sys.stderr)
        return 1
    else:
        print("soffice not found: the lo_* files are left as they are", file=sys.stderr)
    write_python_files(HERE)
    write_corpus_json(HERE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
