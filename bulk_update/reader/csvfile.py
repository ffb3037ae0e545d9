"""CSV files: encoding, delimiter, records read a line at a time with bounded sizes."""

from __future__ import annotations

import codecs
import contextlib
import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO

from ..errors import InputError
from ..models import SheetRow
from .cells import STRIPPED
from .guard import (
    _CHUNK,
    _MB,
    _XLSX_ERRORS,
    MAX_CELL_CHARS,
    _is_text,
    _magic_kind,
    _open_zip,
    _really,
    _zip_kind,
)
from .layout import SheetStream, _Record, _start

#: Candidate delimiters, in the order that breaks ties.
_DELIMITERS = (",", ";", "\t")

#: A CSV line is read at most this many characters at a time. Twice the cell limit: a cell
#: over the limit after any shorter start of its line still makes the csv module refuse it.
MAX_LINE_CHARS = 2 * MAX_CELL_CHARS
#: How much of a CSV file's start the delimiter is guessed from: a header is never longer.
_SNIFF_CHARS = 1 << 16

_LINE_MB = f"{MAX_LINE_CHARS >> 20} MB"


def _cp1252_fallback(exc: UnicodeError) -> tuple[str, int]:
    # cp1252 leaves 0x81, 0x8D, 0x8F, 0x90 and 0x9D undefined; Windows itself maps them to
    # the C1 control characters of the same code, which is what latin-1 gives.
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    bad = exc.object[exc.start : exc.end]
    return bytes(bad).decode("latin-1"), exc.end


_CP1252_ERRORS = "bulk_update.cp1252_fallback"
codecs.register_error(_CP1252_ERRORS, _cp1252_fallback)


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
        yield number, [c.strip(STRIPPED) for c in record], frozenset(), False


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
