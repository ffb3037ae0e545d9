"""Hostile input: what a file really is, zip and XML bombs, size limits, OS errors.

Before openpyxl sees a workbook its zip directory is checked (how many parts, how large
unpacked, how well they compress) and every XML part is streamed once looking for a
document type declaration (XML entity bombs) and for a cell over MAX_CELL_CHARS.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import struct
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO
from xml.etree.ElementTree import ParseError

from openpyxl.utils.exceptions import InvalidFileException

from ..errors import InputError
from .encoding import detect

CSV_EXTENSIONS = frozenset({".csv", ".tsv", ".txt"})
XLSX_EXTENSIONS = frozenset({".xlsx", ".xlsm"})

#: The largest cell read, in characters ("1 MB"): a candidate's data is never near it.
MAX_CELL_CHARS = 1 << 20
#: The most columns a header row may span.
MAX_COLUMNS = 2000
#: A workbook unpacking to more than this is refused as a zip bomb.
MAX_UNPACKED_BYTES = 512 << 20
#: A part packed more than this many times over, and larger than _RATIO_FLOOR unpacked, is
#: a zip bomb: sheet XML packs about 10:1, LibreOffice's wordier XML about 20:1.
_MAX_RATIO = 100
_RATIO_FLOOR = 4 << 20
#: Zip directory limits, checked before zipfile reads the directory into memory.
_MAX_PARTS = 10_000
_MAX_DIRECTORY_BYTES = 4 << 20


#: Bytes read at a time when a file's raw bytes are scanned (zip parts, a CSV's sample).
SCAN_BYTES = 1 << 20

_MB = f"{MAX_CELL_CHARS >> 20} MB"


_UNTRUSTED_FIX = (
    "do not open it; ask whoever sent it for the sheet again, saved by Excel, LibreOffice "
    "or Google Sheets as .xlsx or CSV"
)
_OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_XLSX_KIND = "an Excel workbook (.xlsx)"
_TEXT_KIND = "a text file (a CSV?)"
#: File signatures worth naming when a file is not what its extension says.
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (_OLE2, "an old Excel .xls workbook (or a password-protected one)"),
    (b"%PDF-", "a PDF document"),
    (b"\x89PNG", "a picture (PNG)"),
    (b"\xff\xd8\xff", "a picture (JPEG)"),
    (b"GIF8", "a picture (GIF)"),
)

#: What openpyxl and zipfile raise on a damaged workbook. Read-only mode parses lazily, so
#: these can come from the row loop as well as from load_workbook. defusedxml's refusals
#: are ValueErrors.
_XLSX_ERRORS: tuple[type[Exception], ...] = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    InvalidFileException,
    KeyError,
    ValueError,
    TypeError,
    IndexError,
    AttributeError,
    ParseError,
    EOFError,
    zlib.error,
    NotImplementedError,  # a compression method zipfile lacks
    RuntimeError,  # an encrypted zip part
)


@contextlib.contextmanager
def _os_errors(name: str) -> Iterator[None]:
    try:
        yield
    except PermissionError:
        raise InputError(
            f"{name}: permission denied",
            fix="check the file's permissions, or close it in the program that has it open",
        ) from None
    except OSError as exc:
        raise InputError(
            f"{name} cannot be read: {exc.strerror or exc}",
            fix="check that the file is readable and try again",
        ) from None


# --------------------------------------------------------------------------- what a file is


def _is_text(head: bytes) -> bool:
    """True when the first bytes of a file are text: what they hold decides, not how many.

    UTF-16 (by its BOM); else no NUL byte, and UTF-8 (a character cut at the end of `head`
    aside) or some code page's text (reader/encoding.py). Control characters (a vertical
    tab or form feed in a cell) are text.
    """
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return True
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.reason != "unexpected end of data":
            return bool(detect(head).likely)
    return True


def _magic_kind(head: bytes) -> str | None:
    """What a file with these first bytes is, for the formats worth naming; else None."""
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    return None


def _zip_kind(archive: zipfile.ZipFile) -> str:
    """What a zip archive holds: an XLSX, an ODS, a DOCX, or nothing we know."""
    names = archive.namelist()
    if "mimetype" in names:
        with archive.open("mimetype") as part:
            # The OpenDocument type is the first bytes; read no more (the part may lie).
            mimetype = part.read(100)
        if mimetype.startswith(b"application/vnd.oasis.opendocument.spreadsheet"):
            return "an OpenDocument spreadsheet (.ods)"
        if mimetype.startswith(b"application/vnd.oasis.opendocument"):
            return "an OpenDocument file"
    if any(n.startswith("xl/") for n in names):
        return _XLSX_KIND
    if any(n.startswith("word/") for n in names):
        return "a Word document (.docx)"
    return "a zip archive"


def _text_kind(head: bytes) -> str:
    start = head.lstrip(codecs.BOM_UTF8 + b" \t\r\n").lower()
    if start.startswith((b"<!doctype html", b"<html")):
        return "a web page (HTML)"
    if start.startswith(b"<"):
        return "an XML file"
    return _TEXT_KIND


def _mislabelled(path: Path, kind: str, expected: str) -> InputError:
    """The error for a file whose content (`kind`) is not what its extension promises."""
    if kind == _XLSX_KIND:
        fix = f"rename it to {path.stem}.xlsx"
    elif kind == _TEXT_KIND:
        fix = f"rename it to {path.stem}.csv"
    elif "Excel" in kind or "spreadsheet" in kind or kind == "an XML file":
        fix = "open it in Excel or LibreOffice and save it as .xlsx (without a password)"
    else:
        fix = "pass the spreadsheet itself, saved as .xlsx or as CSV UTF-8"
    return InputError(f"{path.name} is really {kind}, not {expected}", fix=fix)


def _bomb(path: Path, detail: str) -> InputError:
    return InputError(f"{path.name} looks like a zip bomb ({detail})", fix=_UNTRUSTED_FIX)


def _size(count: int) -> str:
    if count >= 1 << 30:
        return f"{count / (1 << 30):.1f} GB"
    return f"{count / (1 << 20):,.0f} MB"


def _open_zip(handle: BinaryIO, path: Path) -> zipfile.ZipFile:
    """Open a zip archive whose directory is small enough to hold in memory.

    zipfile reads the whole directory into a ZipInfo per part; a hostile file can list a
    million parts in a few tens of MB. The end record says how large the directory is, so
    that is checked first, from the file's last 64 kB.
    """
    handle.seek(0, os.SEEK_END)
    size = handle.tell()
    tail_size = min(size, 22 + 0xFFFF)  # the end record, and a comment of at most 64 kB
    handle.seek(size - tail_size)
    tail = handle.read(tail_size)
    at = tail.rfind(b"PK\x05\x06")
    if at >= 0 and at + 22 <= len(tail):
        parts, directory = struct.unpack_from("<HI", tail, at + 10)
        located = at >= 20 and tail[at - 20 : at - 16] == b"PK\x06\x07"
        if (parts == 0xFFFF or directory == 0xFFFFFFFF) and located:
            # "See the ZIP64 record", whose place the ZIP64 locator just before gives.
            (offset,) = struct.unpack_from("<Q", tail, at - 12)
            handle.seek(offset)
            record = handle.read(56)
            if record[:4] == b"PK\x06\x06" and len(record) == 56:
                parts, directory = struct.unpack_from("<QQ", record, 32)
        if parts > _MAX_PARTS:
            raise _bomb(path, f"its directory lists {parts:,} parts") from None
        if directory > _MAX_DIRECTORY_BYTES:
            raise _bomb(path, f"its directory takes {_size(directory)}") from None
    handle.seek(0)
    return zipfile.ZipFile(handle)


def _check_workbook(handle: BinaryIO, path: Path) -> None:
    """Refuse what openpyxl should not be given: non-workbooks, zip bombs, XML bombs."""
    head = handle.read(8192)
    if head[:4] not in (b"PK\x03\x04", b"PK\x05\x06"):  # a zip's first part, or an empty zip
        if not head:
            raise InputError(
                f"{path.name} is empty (0 bytes)",
                fix="open the sheet in Excel or LibreOffice and save it again as .xlsx",
            ) from None
        kind = _magic_kind(head)
        if kind is None and _is_text(head):
            kind = _text_kind(head)
        if kind is None:
            raise _bad_xlsx(path) from None
        raise _mislabelled(path, kind, "an .xlsx workbook") from None
    with _open_zip(handle, path) as archive:
        parts = archive.infolist()
        holds = _zip_kind(archive)
        if holds not in (_XLSX_KIND, "a zip archive"):
            raise _mislabelled(path, holds, "an .xlsx workbook") from None
        # zipfile never unpacks more than a part's stated size (it stops there and fails
        # the CRC), so the stated sizes are the ones to check.
        total = sum(part.file_size for part in parts)
        if total > MAX_UNPACKED_BYTES:
            raise _bomb(path, f"it would unpack to {_size(total)}") from None
        for part in parts:
            packed = max(part.compress_size, 1)
            if part.file_size > _RATIO_FLOOR and part.file_size > _MAX_RATIO * packed:
                ratio = part.file_size // packed
                raise _bomb(
                    path,
                    f"{part.filename} would unpack {ratio:,} times larger, to "
                    f"{_size(part.file_size)}",
                ) from None
        for part in parts:
            _scan_part(archive, part, path)


def _scan_part(archive: zipfile.ZipFile, part: zipfile.ZipInfo, path: Path) -> None:
    """Stream one part: refuse a DTD (entity bombs) and a text run over MAX_CELL_CHARS.

    Cell text never holds a literal `<` (XML escapes it), so a cell over the limit is a run
    of more than MAX_CELL_CHARS bytes without one. Parts that do not start like XML
    (pictures, printer settings) are not parsed by openpyxl and are passed over.
    """
    # A run inside one chunk is shorter than the chunk: chunks no longer than the limit
    # make checking the runs that cross chunk boundaries enough.
    size = min(SCAN_BYTES, MAX_CELL_CHARS)
    with archive.open(part) as stream:
        chunk = stream.read(size)
        start = chunk.lstrip(codecs.BOM_UTF8 + b" \t\r\n")[:1]
        if start != b"<" and not chunk.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return
        run = 0  # bytes since the last '<'
        tail = b""
        while chunk:
            # ENTITY declarations live inside a DOCTYPE: finding that one is enough.
            if b"<!DOCTYPE" in chunk or b"<!DOCTYPE" in tail + chunk[:9]:
                raise _xml_bomb(path, part.filename) from None
            first = chunk.find(b"<")
            if first < 0:
                run += len(chunk)
            else:
                run += first
                if run <= MAX_CELL_CHARS:
                    run = len(chunk) - 1 - chunk.rfind(b"<")
            if run > MAX_CELL_CHARS:
                raise InputError(
                    f"{path.name} has a cell larger than {_MB} (in {part.filename})",
                    fix=(
                        "check that this is the right file: a candidate's cell is never that "
                        "large; if it is, delete the content of that cell"
                    ),
                ) from None
            tail = chunk[-9:]
            chunk = stream.read(size)


def _xml_bomb(path: Path, part: str | None) -> InputError:
    where = f" (in {part})" if part else ""
    return InputError(
        f"{path.name} holds an XML document type declaration{where}, which spreadsheet "
        "programs never write: it may be an XML bomb",
        fix=_UNTRUSTED_FIX,
    )


def _bad_xlsx(path: Path) -> InputError:
    return InputError(
        f"{path.name} is not a readable .xlsx workbook",
        fix=(
            "open it in Excel or LibreOffice and save it again as .xlsx (a password-protected "
            "file or an old .xls renamed to .xlsx cannot be read)"
        ),
    )
