"""CSV files: encoding, delimiter, records read a line at a time with bounded sizes."""

from __future__ import annotations

import codecs
import contextlib
import csv
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO

from ..errors import ConfigError, InputError
from .cells import STRIPPED
from .encoding import EXCEL_CODEPAGES, detect
from .guard import (
    _MB,
    _XLSX_ERRORS,
    MAX_CELL_CHARS,
    SCAN_BYTES,
    _magic_kind,
    _mislabelled,
    _open_zip,
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

#: How many bytes of lines holding non-ASCII bytes the encoding is detected from: enough
#: for hundreds of rows, bounded however large the file.
_SAMPLE_BYTES = 1 << 16
#: A line longer than this is left out of the sample (its cut would break a character).
_SAMPLE_LINE = 1 << 12
#: Undecodable bytes are read as lone surrogates (U+DC80-U+DCFF), which no decoded text
#: holds, so that the record they are in can be named.
_UNDECODABLE = re.compile("[\udc80-\udcff]")
_SAVE_UTF8 = (
    'open it in Excel and save it as "CSV UTF-8 (Comma delimited)" (File > Save As; in '
    'LibreOffice: Character set "Unicode (UTF-8)")'
)


# --------------------------------------------------------------------------- CSV


@dataclass(frozen=True, slots=True)
class CsvFormat:
    """How a CSV file is read: its text encoding (with the decoding errors policy) and delimiter.

    `given`: the encoding is the one `--encoding` / `[input] encoding` named, not found in
    the file (by its BOM, as UTF-8, or by detection).
    """

    encoding: str
    errors: str
    delimiter: str
    given: bool = False

    @property
    def label(self) -> str:
        """The encoding as the dry run and the log show it: `cp1255 (detected)`."""
        return f"{self.encoding} ({'given' if self.given else 'detected'})"


def sniff_csv(path: Path, encoding: str | None = None) -> CsvFormat:
    """The encoding and the delimiter of a CSV file.

    The encoding: the BOM's; else UTF-8 if every byte is valid; else `encoding` when given
    (`--encoding`, `[input] encoding`); else the one detected (reader/encoding.py), only
    when the detection is sure. Raises InputError for a file that is not text (a workbook,
    a picture, binary data) and for one whose encoding cannot be told.
    """
    if encoding is not None:
        try:
            b"a".decode(encoding, "replace")
        except LookupError:
            raise ConfigError(
                f"--encoding '{encoding}' is not an encoding Python knows",
                fix="use a name such as cp1255, cp1253, cp1251, cp1252, shift_jis or gb18030",
            ) from None
    name, given = _csv_encoding(path, encoding)
    # UTF-16 and UTF-32 go wrong only where a file is cut short: no byte to escape there.
    wide = codecs.lookup(name).name.startswith(("utf-16", "utf-32"))
    errors = "strict" if wide else "surrogateescape"
    with path.open(encoding=name, errors=errors, newline="") as handle:
        try:
            delimiter = _detect_delimiter(_Lines(handle))
        except UnicodeDecodeError:
            delimiter = ","  # the reading that follows names the row
    return CsvFormat(name, errors, delimiter, given)


@contextlib.contextmanager
def _open_csv(path: Path, encoding: str | None = None) -> Iterator[SheetStream]:
    fmt = sniff_csv(path, encoding)
    with (
        path.open(encoding=fmt.encoding, errors=fmt.errors, newline="") as handle,
        _field_size_limit(MAX_CELL_CHARS),
    ):
        lines = _Lines(handle)
        reader = csv.reader(lines, delimiter=fmt.delimiter)
        records = _csv_records(path, reader, lines, fmt)
        stream = _start(path, records, _csv_column, None)
        yield replace(stream, encoding=fmt.label)


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
        self.undecodable = False  # a line held bytes the encoding does not decode
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
        if not line.isascii() and _UNDECODABLE.search(line):
            self.undecodable = True
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
    path: Path, reader: Iterator[list[str]], lines: _Lines, fmt: CsvFormat
) -> Iterator[_Record]:
    delimiter = fmt.delimiter
    number = 0
    while True:
        number += 1
        lines.record = []
        try:
            record = next(reader)
        except StopIteration:
            return
        except UnicodeDecodeError:
            raise _undecodable(path, number, fmt) from None
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
        if lines.undecodable:
            raise _undecodable(path, number, fmt)
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


def _csv_encoding(path: Path, given: str | None) -> tuple[str, bool]:
    """(encoding, whether it is `given`): see `sniff_csv`.

    Files that are not text (a workbook, a picture, binary data) are refused here. A BOM,
    or bytes valid as UTF-8, say what the file is more surely than a standing setting: a
    `[input] encoding` for the old exports must not garble a file saved as CSV UTF-8.
    """
    with path.open("rb") as handle:
        head = handle.read(8192)
        if head.startswith(codecs.BOM_UTF8):
            return "utf-8-sig", False
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return "utf-16", False
        if head.startswith(b"PK\x03\x04"):
            try:
                with _open_zip(handle, path) as archive:
                    kind = _zip_kind(archive)
            except _XLSX_ERRORS:
                kind = "a zip archive"
            raise _mislabelled(path, kind, "a CSV file")
        known = _magic_kind(head)
        if known:
            raise _mislabelled(path, known, "a CSV file")
        if given and codecs.lookup(given).name.startswith(("utf-16", "utf-32")):
            return given, True  # BOM-less UTF-16 holds NUL bytes: said to be text
        if b"\x00" in head:
            # Text holds no NUL byte; binary files and BOM-less UTF-16 do.
            raise _binary(path)
        utf8, sample = _scan(handle, head, sample=not given)
    if utf8:
        return "utf-8", False
    if given:
        return given, True
    found = detect(sample)
    if found.encoding:
        return found.encoding, False
    if not found.likely:
        raise _binary(path)  # no code page reads it as text
    likely = found.likely
    named = ", ".join(likely[:-1]) + f" or {likely[-1]}" if len(likely) > 1 else likely[0]
    raise InputError(
        f"{path.name} is not UTF-8 and its encoding cannot be told for sure: it may be {named}",
        fix=(
            f"{_SAVE_UTF8}; or, if you know it, name the encoding with --encoding NAME "
            f"(or [input] encoding), e.g. --encoding {likely[0]}"
        ),
    )


def _scan(handle: IO[bytes], head: bytes, *, sample: bool) -> tuple[bool, bytes]:
    """(whether the file is UTF-8, the sample of its lines holding non-ASCII bytes).

    UTF-8 is checked chunk by chunk: the incremental decoder keeps a sequence split across
    two chunks whole, and no more than one chunk is in memory. The sample takes whole lines
    only (a cut could break a character of two bytes) and stops at _SAMPLE_BYTES: once the
    file is known not to be UTF-8 and the sample is full, the rest is not read.
    """
    decoder = codecs.getincrementaldecoder("utf-8")()
    utf8 = True
    taken = bytearray()
    partial = b""  # the start of a line that goes on in the next chunk
    chunk = head
    while chunk:
        if utf8:
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError:
                utf8 = False
        full = not sample or len(taken) >= _SAMPLE_BYTES
        if not utf8 and full:
            break
        if full:
            pass
        elif not chunk.isascii():
            *lines, partial = (partial + chunk).split(b"\n")
            taken += b"".join(
                line + b"\n" for line in lines if len(line) <= _SAMPLE_LINE and not line.isascii()
            )
        else:
            partial = (partial + chunk).rpartition(b"\n")[2]
        if len(partial) > _SAMPLE_LINE:
            partial = b"\xff" * (_SAMPLE_LINE + 1)  # too long to sample; bounded in memory
        chunk = handle.read(SCAN_BYTES)
    else:
        if utf8:
            try:
                decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                utf8 = False
        if len(partial) <= _SAMPLE_LINE and not partial.isascii():
            taken += partial
    # Every line with a non-ASCII byte too long to take whole: the file's start, then.
    return utf8, bytes(taken[: _SAMPLE_BYTES + _SAMPLE_LINE]) or head


def _binary(path: Path) -> InputError:
    return InputError(
        f"{path.name} is not a text CSV file (it holds binary data)",
        fix="save the sheet as CSV UTF-8 (or as .xlsx) and pass that file",
    )


def _undecodable(path: Path, number: int, fmt: CsvFormat) -> InputError:
    if fmt.given:
        how = " (as --encoding or [input] encoding says)"
        fix = f"name the file's real encoding with --encoding NAME, or {_SAVE_UTF8}"
    else:
        how = " (the encoding found in its first rows)" if fmt.encoding in EXCEL_CODEPAGES else ""
        fix = f"{_SAVE_UTF8}, or name its encoding with --encoding NAME"
    return InputError(f"{path.name}, row {number}: not valid {fmt.encoding} text{how}", fix=fix)


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
