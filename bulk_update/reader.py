"""CSV/XLSX -> rows of text with their sheet row numbers (contract section 4).

The only module that knows file formats. Everything it returns is text as a person typed
it: numbers as plain decimals, dates as ISO 8601, booleans as TRUE/FALSE, stripped of white
space. Rows are numbered as a spreadsheet program shows them (1-based, blank rows counted;
a CSV record whose quoted cell spans several lines is one row). Headers are returned as
written: matching them to API fields is schema.py's job.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import math
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import IO, Protocol, TypeAlias, TypeVar
from xml.etree.ElementTree import ParseError

from openpyxl import load_workbook
from openpyxl.utils import get_column_letter
from openpyxl.utils.exceptions import InvalidFileException
from openpyxl.worksheet._read_only import ReadOnlyWorksheet

from .errors import InputError
from .models import RawSheet, SheetRow

__all__ = ["CSV_EXTENSIONS", "XLSX_EXTENSIONS", "cell_text", "read_sheet"]

CSV_EXTENSIONS = frozenset({".csv", ".tsv", ".txt"})
XLSX_EXTENSIONS = frozenset({".xlsx", ".xlsm"})
_SUPPORTED = ", ".join(sorted(CSV_EXTENSIONS | XLSX_EXTENSIONS))

#: Candidate delimiters, in the order that breaks ties.
_DELIMITERS = (",", ";", "\t")
_CHUNK = 1 << 20

#: One source row: its sheet row number, its cells as stripped text, and the indexes of the
#: cells stored as numbers.
_Record: TypeAlias = tuple[int, list[str], frozenset[int]]
#: Names a column by its 0-based index, the way the file's users see it.
_ColumnNamer: TypeAlias = Callable[[int], str]

#: What openpyxl raises on a damaged workbook. Read-only mode parses lazily, so these can
#: come from the row loop as well as from load_workbook.
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


def read_sheet(path: Path, *, sheet: str | None = None) -> RawSheet:
    """Read a CSV or XLSX file into its header row and data rows, all as text.

    `sheet` picks a worksheet of an XLSX file by name (default: the first); it is ignored
    for CSV. Raises InputError, naming the file, row and column, for anything that stops
    the sheet from being read.
    """
    path = Path(path)
    name = path.name
    suffix = path.suffix.lower()
    if suffix not in CSV_EXTENSIONS and suffix not in XLSX_EXTENSIONS:
        shown = f"'{path.suffix}'" if path.suffix else "no extension"
        raise InputError(
            f"{name}: cannot read a file with {shown}; supported: {_SUPPORTED}",
            fix="save the sheet as .xlsx or .csv (UTF-8) and pass that file",
        )
    try:
        if not path.exists():
            raise InputError(
                f"{name}: file not found ({path})", fix="check the path and the file name"
            )
        if path.is_dir():
            raise InputError(f"{name} is a folder, not a file", fix="pass the sheet file itself")
        if suffix in XLSX_EXTENSIONS:
            return _read_xlsx(path, sheet)
        return _read_csv(path)
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


# --------------------------------------------------------------------------- CSV


def _read_csv(path: Path) -> RawSheet:
    name = path.name
    encoding, errors = _csv_encoding(path)
    with path.open(encoding=encoding, errors=errors, newline="") as handle:
        delimiter = _detect_delimiter(handle)
    with path.open(encoding=encoding, errors=errors, newline="") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        try:
            records: Iterator[_Record] = (
                (n, [c.strip() for c in rec], frozenset()) for n, rec in enumerate(reader, 1)
            )
            return _build(path, records, lambda i: f"column {i + 1}", None)
        except csv.Error as exc:
            raise InputError(
                f"{name}, line {reader.line_num}: not valid CSV ({exc})",
                fix="check the quotes around that line, or save the sheet again as CSV",
            ) from None
        except UnicodeDecodeError:
            raise InputError(
                f"{name} is not valid {encoding} text",
                fix="save the sheet again as CSV UTF-8",
            ) from None


def _csv_encoding(path: Path) -> tuple[str, str]:
    """Pick (encoding, errors) from the BOM, else UTF-8 if every byte is valid, else cp1252."""
    name = path.name
    with path.open("rb") as handle:
        head = handle.read(8192)
        if head.startswith(codecs.BOM_UTF8):
            return "utf-8-sig", "strict"
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return "utf-16", "strict"
        if head.startswith(b"PK\x03\x04"):
            raise InputError(
                f"{name} is an Excel workbook (zip), not a CSV file",
                fix=f"rename it to {path.stem}.xlsx, or save it from Excel as CSV",
            )
        if b"\x00" in head:
            # Text files hold no NUL bytes; binary files and BOM-less UTF-16 do.
            raise InputError(
                f"{name} is not a text CSV file (it holds binary data)",
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


def _detect_delimiter(lines: IO[str]) -> str:
    """Pick `,` `;` or tab: the one found most often outside quotes in the header record.

    The header record is the first one with any content; blank records before it (perhaps
    just delimiters) are passed over. Default `,`.
    """
    counts = dict.fromkeys(_DELIMITERS, 0)
    in_quotes = False
    content = False
    for line in lines:
        for char in line:
            if char == '"':
                in_quotes = not in_quotes
            elif in_quotes:
                content = content or not char.isspace()
            elif char in counts:
                counts[char] += 1
            elif not char.isspace():
                content = True
        if in_quotes:
            continue  # the record goes on over the next line
        if content:
            break
        counts = dict.fromkeys(_DELIMITERS, 0)
    best = max(_DELIMITERS, key=lambda d: counts[d])  # max keeps the first of equals
    return best if counts[best] else ","


# --------------------------------------------------------------------------- XLSX


def _read_xlsx(path: Path, sheet: str | None) -> RawSheet:
    name = path.name
    with path.open("rb") as handle:
        try:
            # openpyxl warns about features it drops (data validation, conditional
            # formatting...); they do not matter for reading values and would only alarm.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                workbook = load_workbook(handle, read_only=True, data_only=True)
        except _XLSX_ERRORS:
            raise _bad_xlsx(path) from None
        try:
            worksheet = _pick_worksheet(workbook.worksheets, workbook.sheetnames, sheet, name)
            if isinstance(worksheet, ReadOnlyWorksheet):
                # The <dimension> record is written by the producing program and is sometimes
                # wrong; trusting it could cut rows off. Without it every row is read.
                worksheet.reset_dimensions()
            rows = worksheet.iter_rows(min_row=1, min_col=1, values_only=True)
            try:
                return _build(path, _xlsx_records(rows), _letter, worksheet.title)
            except _XLSX_ERRORS:
                raise _bad_xlsx(path) from None
        finally:
            workbook.close()


def _xlsx_records(rows: Iterable[tuple[object, ...]]) -> Iterator[_Record]:
    for number, row in enumerate(rows, 1):
        texts: list[str] = []
        numeric: list[int] = []
        for index, value in enumerate(row):
            text, is_number = cell_text(value)
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


def _build(
    path: Path,
    records: Iterable[_Record],
    column_name: _ColumnNamer,
    sheet_name: str | None,
) -> RawSheet:
    """Turn numbered records into a RawSheet: find the header, check and align the rows."""
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
    width = len(header_cells)
    # Columns without a header are dropped when they hold no data (spreadsheet programs
    # leave such columns behind); data in one is an error, found in row order below.
    keep = [i for i, h in enumerate(header_cells) if h]
    unnamed = [i for i, h in enumerate(header_cells) if not h]
    last_header = header_cells[keep[-1]]
    headers = tuple(header_cells[i] for i in keep)
    plain = not unnamed  # the fast path: nothing to drop
    remap = {old: new for new, old in enumerate(keep)}

    rows: list[SheetRow] = []
    for number, cells, numeric in iterator:
        if not any(cells):
            continue
        for index in unnamed:
            if index < len(cells) and cells[index]:
                raise InputError(
                    f"{name}, row {number}: {column_name(index)} has data but no header",
                    fix=f"give {column_name(index)} a header in row {header_row}, or delete it",
                )
        if len(cells) > width:
            for index in range(width, len(cells)):
                if cells[index]:
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
            rows.append(SheetRow(number, tuple(cells), numeric))
            continue
        values = tuple(cells[i] if i < len(cells) else "" for i in keep)
        if numeric and not plain:
            numeric = frozenset(remap[i] for i in numeric if i in remap)
        elif numeric:
            numeric = frozenset(i for i in numeric if i < width)
        rows.append(SheetRow(number, values, numeric))
    return RawSheet(
        path=path,
        headers=headers,
        header_row=header_row,
        rows=tuple(rows),
        sheet_name=sheet_name,
    )
