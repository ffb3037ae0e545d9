"""CSV/XLSX -> rows of text with their sheet row numbers (contract section 4).

The only module that knows file formats. Everything it returns is text as a person typed
it: numbers as plain decimals, dates as ISO 8601, booleans as TRUE/FALSE, stripped of white
space. Rows are numbered as a spreadsheet program shows them (1-based, blank rows counted;
a CSV record whose quoted cell spans several lines is one row). Headers are returned as
written: matching them to API fields is schema.py's job.

A merged range of an XLSX sheet gives its value to its top-left cell; its other cells are
empty (what Excel itself keeps). Hidden rows and columns are read like any other.

Input may be hostile. Before openpyxl sees a workbook, its zip directory is checked (how
many parts, how large unpacked, how well they compress) and every XML part is streamed
once looking for a document type declaration (XML entity bombs) and for a cell over
MAX_CELL_CHARS; defusedxml stays the second line of defence. A CSV file is read a line at a
time with a bounded line length and cell size. So every file is answered within seconds and
a few hundred MB of memory, with an InputError that says what is wrong.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import datetime as dt
import math
import os
import struct
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, BinaryIO, Protocol, TypeAlias, TypeVar
from xml.etree.ElementTree import ParseError

from openpyxl import load_workbook
from openpyxl.utils import get_column_letter
from openpyxl.utils.exceptions import InvalidFileException
from openpyxl.workbook.workbook import Workbook
from openpyxl.worksheet._read_only import ReadOnlyWorksheet

from .errors import InputError
from .models import RawSheet, SheetRow

__all__ = [
    "CSV_EXTENSIONS",
    "MAX_CELL_CHARS",
    "MAX_COLUMNS",
    "MAX_LINE_CHARS",
    "MAX_UNPACKED_BYTES",
    "XLSX_EXTENSIONS",
    "CsvFormat",
    "SheetStream",
    "WorksheetInfo",
    "cell_text",
    "list_worksheets",
    "open_sheet",
    "read_sheet",
    "sniff_csv",
]

CSV_EXTENSIONS = frozenset({".csv", ".tsv", ".txt"})
XLSX_EXTENSIONS = frozenset({".xlsx", ".xlsm"})
#: Spreadsheet formats openpyxl cannot read; named in their own message.
_OTHER_SHEETS = frozenset({".xls", ".xlsb", ".ods", ".fods", ".numbers"})
_SUPPORTED = ", ".join(sorted(CSV_EXTENSIONS | XLSX_EXTENSIONS))

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

#: Candidate delimiters, in the order that breaks ties.
_DELIMITERS = (",", ";", "\t")
#: Bytes read at a time when scanning a file.
_CHUNK = 1 << 20
#: A CSV line is read at most this many characters at a time. Twice the cell limit: a cell
#: over the limit after any shorter start of its line still makes the csv module refuse it.
MAX_LINE_CHARS = 2 * MAX_CELL_CHARS
#: How much of a CSV file's start the delimiter is guessed from: a header is never longer.
_SNIFF_CHARS = 1 << 16
_MB = f"{MAX_CELL_CHARS >> 20} MB"
_LINE_MB = f"{MAX_LINE_CHARS >> 20} MB"

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
#: C0 control bytes that text (UTF-8 or Windows-1252) does not hold; tab, LF, FF, CR do.
_CONTROLS = bytes(b for b in range(32) if b not in (9, 10, 12, 13)) + b"\x7f"

#: One source row: its sheet row number, its cells as stripped text, and the indexes of the
#: cells stored as numbers.
_Record: TypeAlias = tuple[int, list[str], frozenset[int]]
#: Names a column by its 0-based index, the way the file's users see it.
_ColumnNamer: TypeAlias = Callable[[int], str]

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


def _cp1252_fallback(exc: UnicodeError) -> tuple[str, int]:
    # cp1252 leaves 0x81, 0x8D, 0x8F, 0x90 and 0x9D undefined; Windows itself maps them to
    # the C1 control characters of the same code, which is what latin-1 gives.
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    bad = exc.object[exc.start : exc.end]
    return bytes(bad).decode("latin-1"), exc.end


_CP1252_ERRORS = "bulk_update.cp1252_fallback"
codecs.register_error(_CP1252_ERRORS, _cp1252_fallback)


# --------------------------------------------------------------------------- cell values


def cell_text(value: object) -> tuple[str, bool]:
    """Turn one cell value (as openpyxl gives it) into `(text, stored_as_number)`.

    Text is what a person would have typed: numbers as plain decimals without `.0` or an
    exponent, dates as ISO 8601, booleans as TRUE/FALSE, None as "". Always stripped;
    never `nan` or `None`. `stored_as_number` is True for int and float (not bool).
    """
    if value is None:
        return "", False
    if isinstance(value, str):
        return value.strip(), False
    # bool is a subclass of int: test it first.
    if isinstance(value, bool):
        return ("TRUE" if value else "FALSE"), False
    if isinstance(value, int):
        return str(value), True
    if isinstance(value, float):
        text = _float_text(value)
        return text, bool(text)
    # datetime is a subclass of date: test it first.
    if isinstance(value, dt.datetime):
        if value.time() == dt.time(0, 0):
            return value.date().isoformat(), False
        return value.isoformat(), False
    if isinstance(value, dt.date | dt.time):
        return value.isoformat(), False
    return str(value).strip(), False


def _float_text(value: float) -> str:
    if math.isnan(value):
        # A spreadsheet cannot hold NaN; if one shows up, the cell is as good as empty.
        return ""
    if math.isinf(value):
        return "-inf" if value < 0 else "inf"
    # repr is the shortest text that round-trips; Decimal + 'f' spells it without exponent.
    text = format(Decimal(repr(value)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


# --------------------------------------------------------------------------- entry point


@dataclass(frozen=True, slots=True)
class SheetStream:
    """An open sheet: its header, found and checked, and its data rows, read as iterated.

    `rows` reads the file lazily, so a sheet of a million rows never has to be in memory
    at once; a problem further down the file is raised (as InputError) while iterating.
    Only valid inside the `open_sheet` block that gave it.
    """

    path: Path
    headers: tuple[str, ...]
    header_row: int
    rows: Iterator[SheetRow]
    sheet_name: str | None = None
    #: Every worksheet of a workbook, by name, in order (empty for a CSV).
    worksheets: tuple[str, ...] = ()


def read_sheet(path: Path, *, sheet: str | None = None) -> RawSheet:
    """Read a CSV or XLSX file into its header row and data rows, all as text.

    `sheet` picks a worksheet of an XLSX file by name (default: the first); it is ignored
    for CSV. Raises InputError, naming the file, row and column, for anything that stops
    the sheet from being read, hostile files included (see the module's docstring).
    """
    with open_sheet(path, sheet=sheet) as stream:
        return RawSheet(
            path=stream.path,
            headers=stream.headers,
            header_row=stream.header_row,
            rows=tuple(stream.rows),
            sheet_name=stream.sheet_name,
        )


@contextlib.contextmanager
def open_sheet(path: Path, *, sheet: str | None = None) -> Iterator[SheetStream]:
    """`read_sheet`, streaming: the header at once, the rows as `SheetStream.rows` is iterated."""
    path = Path(path)
    name = path.name
    suffix = path.suffix.lower()
    if suffix in _OTHER_SHEETS:
        raise InputError(
            f"{name}: {suffix} files are not read; save the sheet as .xlsx or .csv",
            fix="open it in Excel or LibreOffice and save it as .xlsx (or as CSV UTF-8)",
        )
    if suffix not in CSV_EXTENSIONS and suffix not in XLSX_EXTENSIONS:
        shown = f"'{path.suffix}'" if path.suffix else "no extension"
        raise InputError(
            f"{name}: cannot read a file with {shown}; supported: {_SUPPORTED}",
            fix="save the sheet as .xlsx or .csv (UTF-8) and pass that file",
        )
    with _os_errors(name):
        if not path.exists():
            raise InputError(
                f"{name}: file not found ({path})", fix="check the path and the file name"
            )
        if path.is_dir():
            raise InputError(f"{name} is a folder, not a file", fix="pass the sheet file itself")
        opener = _open_xlsx(path, sheet) if suffix in XLSX_EXTENSIONS else _open_csv(path)
        with opener as stream:
            yield replace(stream, rows=_guarded(stream.rows, name))


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


def _guarded(rows: Iterator[SheetRow], name: str) -> Iterator[SheetRow]:
    # Rows are read while the caller iterates, outside open_sheet's own try.
    with _os_errors(name):
        yield from rows


# --------------------------------------------------------------------------- what a file is


def _is_text(head: bytes) -> bool:
    """True when the first bytes of a file look like text: no NUL, few control bytes."""
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return True
    if b"\x00" in head:
        return False
    controls = len(head) - len(head.translate(None, _CONTROLS))
    return controls * 20 <= len(head)


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


def _really(path: Path, kind: str, expected: str) -> InputError:
    """The error for a file whose content is not what its extension promises."""
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


# --------------------------------------------------------------------------- CSV


@dataclass(frozen=True, slots=True)
class CsvFormat:
    """How a CSV file is read: its text encoding (with the decoding errors policy) and delimiter."""

    encoding: str
    errors: str
    delimiter: str


def sniff_csv(path: Path) -> CsvFormat:
    """The encoding (BOM, else UTF-8 if every byte is valid, else cp1252) and the delimiter.

    Raises InputError for a file that is not text (a workbook, a picture, binary data).
    """
    encoding, errors = _csv_encoding(path)
    with path.open(encoding=encoding, errors=errors, newline="") as handle:
        delimiter = _detect_delimiter(_Lines(handle))
    return CsvFormat(encoding, errors, delimiter)


@contextlib.contextmanager
def _open_csv(path: Path) -> Iterator[SheetStream]:
    name = path.name
    fmt = sniff_csv(path)
    encoding, errors, delimiter = fmt.encoding, fmt.errors, fmt.delimiter

    def not_text() -> InputError:
        return InputError(
            f"{name} is not valid {encoding} text", fix="save the sheet again as CSV UTF-8"
        )

    def decoded(rows: Iterator[SheetRow]) -> Iterator[SheetRow]:
        try:
            yield from rows
        except UnicodeDecodeError:
            raise not_text() from None

    with (
        path.open(encoding=encoding, errors=errors, newline="") as handle,
        _field_size_limit(MAX_CELL_CHARS),
    ):
        lines = _Lines(handle)
        reader = csv.reader(lines, delimiter=delimiter)
        try:
            records = _csv_records(path, reader, lines, delimiter)
            stream = _start(path, records, _csv_column, None)
        except UnicodeDecodeError:
            raise not_text() from None
        yield replace(stream, rows=decoded(stream.rows))


def _csv_column(index: int) -> str:
    return f"column {index + 1}"


class _Lines:
    """The physical lines of a text file, each read at most MAX_LINE_CHARS characters at a time.

    A file of one 100 MB line would otherwise be read whole by the csv module before its
    cell size limit could act. `cut` says a line was longer than that.
    """

    def __init__(self, handle: IO[str]) -> None:
        self._handle = handle
        self.cut = False
        self.ended = False  # the end of the file was reached
        self.record: list[str] = []  # the lines read since the caller last emptied it

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = self._handle.readline(MAX_LINE_CHARS)
        if not line:
            self.ended = True
            raise StopIteration
        # A CR at the very limit may be the first half of a CRLF: that counts as cut too.
        if len(line) >= MAX_LINE_CHARS and not line.endswith("\n"):
            self.cut = True
        self.record.append(line)
        return line


@contextlib.contextmanager
def _field_size_limit(limit: int) -> Iterator[None]:
    # The limit is the csv module's global state: put back what was there.
    previous = csv.field_size_limit(limit)
    try:
        yield
    finally:
        csv.field_size_limit(previous)


def _csv_records(
    path: Path, reader: Iterator[list[str]], lines: _Lines, delimiter: str
) -> Iterator[_Record]:
    number = 0
    while True:
        number += 1
        lines.record = []
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            if "field limit" in str(exc):
                raise InputError(
                    f"{path.name}, row {number} has a cell larger than {_MB}",
                    fix=(
                        "check that this is the right file; if it is, look for a quote that "
                        "is opened and never closed, which runs the rest of the file into "
                        "one cell"
                    ),
                ) from None
            raise InputError(
                f"{path.name}, row {number}: not valid CSV ({exc})",
                fix="check the quotes around that row, or save the sheet again as CSV",
            ) from None
        if lines.cut:
            # The line broke off at MAX_LINE_CHARS with no cell over the limit: many cells.
            raise InputError(
                f"{path.name}, row {number} is larger than {_LINE_MB}",
                fix="check that this is the right file: a candidate's row is never that long",
            )
        if lines.ended and _unclosed_quote(lines.record, delimiter):
            raise InputError(
                f"{path.name}, row {number}: a quote opened in this row is never closed, so "
                "the rest of the file would be read as one cell",
                fix="close the quote in that row (or remove it), or save the sheet again as CSV",
            )
        yield number, [c.strip() for c in record], frozenset()


def _unclosed_quote(record: list[str], delimiter: str) -> bool:
    """True when a record that ran into the end of the file is inside a quoted cell there.

    The csv module, lenient, reads such a quote as a cell running to the end of the file;
    parsed again strictly, the record says so. Only the file's last record can be one.
    """
    try:
        next(csv.reader(record, delimiter=delimiter, strict=True), None)
    except csv.Error as exc:
        return "unexpected end of data" in str(exc)
    return False


def _csv_encoding(path: Path) -> tuple[str, str]:
    """Pick (encoding, errors) from the BOM, else UTF-8 if every byte is valid, else cp1252.

    Files that are not text (a workbook, a picture, binary data) are refused here.
    """
    with path.open("rb") as handle:
        head = handle.read(8192)
        if head.startswith(codecs.BOM_UTF8):
            return "utf-8-sig", "strict"
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return "utf-16", "strict"
        if head.startswith(b"PK\x03\x04"):
            try:
                with _open_zip(handle, path) as archive:
                    kind = _zip_kind(archive)
            except _XLSX_ERRORS:
                kind = "a zip archive"
            raise _really(path, kind, "a CSV file")
        known = _magic_kind(head)
        if known:
            raise _really(path, known, "a CSV file")
        if not _is_text(head):
            # Text files hold no NUL bytes; binary files and BOM-less UTF-16 do.
            raise InputError(
                f"{path.name} is not a text CSV file (it holds binary data)",
                fix="save the sheet as CSV UTF-8 (or as .xlsx) and pass that file",
            )
        # Validate UTF-8 chunk by chunk: the incremental decoder keeps a sequence split
        # across two chunks whole, and no more than one chunk is in memory.
        decoder = codecs.getincrementaldecoder("utf-8")()
        chunk = head
        try:
            while chunk:
                decoder.decode(chunk)
                chunk = handle.read(_CHUNK)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return "cp1252", _CP1252_ERRORS
    return "utf-8", "strict"


def _detect_delimiter(lines: Iterable[str]) -> str:
    """Pick `,` `;` or tab: the one found most often outside quotes in the header record.

    The header record is the first one with any content; blank records before it (perhaps
    just delimiters) are passed over. Default `,`. At most _SNIFF_CHARS characters are
    looked at, so an unclosed quote does not send this through the whole file.
    """
    counts = dict.fromkeys(_DELIMITERS, 0)
    in_quotes = False
    content = False
    budget = _SNIFF_CHARS
    for line in lines:
        line = line[:budget]
        budget -= len(line)
        for char in line:
            if char == '"':
                in_quotes = not in_quotes
            elif in_quotes:
                content = content or not char.isspace()
            elif char in counts:
                counts[char] += 1
            elif not char.isspace():
                content = True
        if not budget:
            break
        if in_quotes:
            continue  # the record goes on over the next line
        if content:
            break
        counts = dict.fromkeys(_DELIMITERS, 0)
    best = max(_DELIMITERS, key=lambda d: counts[d])  # max keeps the first of equals
    return best if counts[best] else ","


# --------------------------------------------------------------------------- XLSX


@contextlib.contextmanager
def _open_xlsx(path: Path, sheet: str | None) -> Iterator[SheetStream]:
    with _workbook(path) as workbook:

        def checked(rows: Iterator[SheetRow]) -> Iterator[SheetRow]:
            try:
                yield from rows
            except _XLSX_ERRORS as exc:
                raise _xlsx_error(path, exc) from None

        worksheet = _pick_worksheet(workbook.worksheets, workbook.sheetnames, sheet, path.name)
        stream = _worksheet_stream(path, worksheet)
        yield replace(stream, rows=checked(stream.rows), worksheets=tuple(workbook.sheetnames))


@contextlib.contextmanager
def _workbook(path: Path) -> Iterator[Workbook]:
    """The workbook at `path`, checked for hostile content, opened read-only."""
    with path.open("rb") as handle:
        try:
            _check_workbook(handle, path)
            handle.seek(0)
            # openpyxl warns about features it drops (data validation, conditional
            # formatting...); they do not matter for reading values and would only alarm.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                workbook = load_workbook(handle, read_only=True, data_only=True)
        except _XLSX_ERRORS as exc:
            raise _xlsx_error(path, exc) from None
        try:
            yield workbook
        finally:
            workbook.close()


def _worksheet_stream(path: Path, worksheet: Any) -> SheetStream:  # a read-only worksheet
    """A worksheet's header, found and checked, and its rows (read as iterated)."""
    if isinstance(worksheet, ReadOnlyWorksheet):
        # The <dimension> record is written by the producing program and is sometimes
        # wrong; trusting it could cut rows off. Without it every row is read.
        worksheet.reset_dimensions()
    rows = worksheet.iter_rows(min_row=1, min_col=1, values_only=True)
    try:
        return _start(path, _xlsx_records(path, rows), _letter, worksheet.title)
    except _XLSX_ERRORS as exc:
        raise _xlsx_error(path, exc) from None


@dataclass(frozen=True, slots=True)
class WorksheetInfo:
    """One worksheet of a workbook: its name and its header row (empty if it has none)."""

    name: str
    headers: tuple[str, ...]


def list_worksheets(path: Path) -> tuple[WorksheetInfo, ...]:
    """The worksheets of an XLSX workbook in order, each with its header row; () otherwise.

    For choosing which one to read (`read_sheet(path, sheet=name)`). Raises InputError for
    a workbook that cannot be read, as `read_sheet` does.
    """
    path = Path(path)
    if path.suffix.lower() not in XLSX_EXTENSIONS:
        return ()
    found = []
    with _os_errors(path.name), _workbook(path) as workbook:
        for worksheet in workbook.worksheets:
            try:
                headers = _worksheet_stream(path, worksheet).headers
            except InputError:  # no header row (an empty worksheet), or one not usable
                headers = ()
            found.append(WorksheetInfo(worksheet.title, headers))
    return tuple(found)


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
        raise _really(path, kind, "an .xlsx workbook") from None
    with _open_zip(handle, path) as archive:
        parts = archive.infolist()
        holds = _zip_kind(archive)
        if holds not in (_XLSX_KIND, "a zip archive"):
            raise _really(path, holds, "an .xlsx workbook") from None
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
    size = min(_CHUNK, MAX_CELL_CHARS)
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


def _xlsx_error(path: Path, exc: Exception) -> InputError:
    # defusedxml (the second line of defence, after _scan_part) refuses with ValueErrors
    # of its own, which openpyxl wraps in a ValueError of its own; defusedxml is imported
    # by openpyxl, not here, so its exceptions are known by their module.
    cause: BaseException | None = exc
    for _ in range(8):  # a chain of a few links at most; never loop on a cycle
        if cause is None:
            break
        if type(cause).__module__.startswith("defusedxml"):
            return _xml_bomb(path, None)
        cause = cause.__cause__ or cause.__context__
    return _bad_xlsx(path)


def _xml_bomb(path: Path, part: str | None) -> InputError:
    where = f" (in {part})" if part else ""
    return InputError(
        f"{path.name} holds an XML document type declaration{where}, which spreadsheet "
        "programs never write: it may be an XML bomb",
        fix=_UNTRUSTED_FIX,
    )


def _xlsx_records(path: Path, rows: Iterable[tuple[object, ...]]) -> Iterator[_Record]:
    for number, row in enumerate(rows, 1):
        texts: list[str] = []
        numeric: list[int] = []
        for index, value in enumerate(row):
            text, is_number = cell_text(value)
            if len(text) > MAX_CELL_CHARS:
                # Only rich text (many runs, each under the limit _scan_part checks) gets here.
                raise InputError(
                    f"{path.name}, row {number} has a cell larger than {_MB} ({_letter(index)})",
                    fix="check that this is the right file; if it is, empty that cell",
                )
            texts.append(text)
            if is_number:
                numeric.append(index)
        yield number, texts, frozenset(numeric)


class _Titled(Protocol):
    @property
    def title(self) -> str: ...


_W = TypeVar("_W", bound=_Titled)


def _pick_worksheet(
    worksheets: list[_W], names: list[str], wanted: str | None, file_name: str
) -> _W:
    titles = [w.title for w in worksheets]
    if wanted is None:
        if not worksheets:
            raise InputError(
                f"{file_name} has no worksheet", fix="add a worksheet holding the candidates"
            )
        return worksheets[0]
    if wanted in titles:
        return worksheets[titles.index(wanted)]
    # Excel itself treats sheet names without regard to case.
    folded = [t.casefold() for t in titles]
    if wanted.strip().casefold() in folded:
        return worksheets[folded.index(wanted.strip().casefold())]
    listed = ", ".join(f"'{n}'" for n in names)
    raise InputError(
        f"{file_name} has no worksheet '{wanted}'; its sheets are: {listed}",
        fix="pass one of those names with --sheet (or [input] sheet in the config file)",
    )


def _bad_xlsx(path: Path) -> InputError:
    return InputError(
        f"{path.name} is not a readable .xlsx workbook",
        fix=(
            "open it in Excel or LibreOffice and save it again as .xlsx (a password-protected "
            "file or an old .xls renamed to .xlsx cannot be read)"
        ),
    )


def _letter(index: int) -> str:
    return f"column {get_column_letter(index + 1)}"


# --------------------------------------------------------------------------- rows


def _start(
    path: Path,
    records: Iterable[_Record],
    column_name: _ColumnNamer,
    sheet_name: str | None,
) -> SheetStream:
    """Find and check the header among numbered records; the rows below come lazily."""
    name = path.name
    iterator = iter(records)
    header_row, header_cells = 0, []
    for number, cells, _ in iterator:
        if any(cells):
            header_row, header_cells = number, cells
            break
    if not header_row:
        raise InputError(
            f"{name} has no header row (it is empty)",
            fix="put the column names in the first row and one candidate per row below",
        )
    # Empty cells after the last header are no columns (spreadsheet programs leave them).
    width = max(i for i, h in enumerate(header_cells) if h) + 1
    if width > MAX_COLUMNS:
        raise InputError(
            f"{name}: the sheet has {width:,} columns; at most {MAX_COLUMNS:,} are read — "
            "is this the right file?",
            fix=f"keep only the candidates' columns (at most {MAX_COLUMNS:,}) and save again",
        )
    header_cells = header_cells[:width]
    keep = [i for i, h in enumerate(header_cells) if h]
    return SheetStream(
        path=path,
        headers=tuple(header_cells[i] for i in keep),
        header_row=header_row,
        rows=_rows(name, iterator, header_cells, header_row, column_name),
        sheet_name=sheet_name,
    )


def _rows(
    name: str,
    records: Iterator[_Record],
    header_cells: list[str],
    header_row: int,
    column_name: _ColumnNamer,
) -> Iterator[SheetRow]:
    """The non-blank rows under the header, checked and aligned with the headers."""
    width = len(header_cells)
    # Columns without a header are dropped when they hold no data (spreadsheet programs
    # leave such columns behind); data in one is an error, found in row order below.
    keep = [i for i, h in enumerate(header_cells) if h]
    unnamed = [i for i, h in enumerate(header_cells) if not h]
    last_header = header_cells[keep[-1]]
    plain = not unnamed  # the fast path: nothing to drop
    remap = {old: new for new, old in enumerate(keep)}
    for number, cells, numeric in records:
        if not any(cells):
            continue
        for index in unnamed:
            if index < len(cells) and cells[index]:
                raise InputError(
                    f"{name}, row {number}: {column_name(index)} has data but no header",
                    fix=f"give {column_name(index)} a header in row {header_row}, or delete it",
                )
        if len(cells) > width and any(cells[width:]):
            index = next(i for i in range(width, len(cells)) if cells[i])
            raise InputError(
                f"{name}, row {number}: {column_name(index)} has a value beyond the "
                f"last header ('{last_header}', {column_name(keep[-1])})",
                fix=(
                    f"give {column_name(index)} a header in row {header_row}, or "
                    "delete the value (in a CSV file, quote cells that hold the "
                    "delimiter)"
                ),
            )
        if plain and len(cells) == width:
            yield SheetRow(number, tuple(cells), numeric)
            continue
        values = tuple(cells[i] if i < len(cells) else "" for i in keep)
        if numeric and not plain:
            numeric = frozenset(remap[i] for i in numeric if i in remap)
        elif numeric:
            numeric = frozenset(i for i in numeric if i < width)
        yield SheetRow(number, values, numeric)
