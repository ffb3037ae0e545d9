"""Benchmark support, not used by bulk-update: what reading XLSX with python-calamine takes.

bulk-update reads XLSX with openpyxl. python-calamine is 3-10x faster (bench/RESULTS.md),
but alone it reads a dozen kinds of workbooks differently and can abort the whole process
on a 2 kB hostile file; this module is the guard that would make it exact and safe, kept
here with its differential test (bench/test_calamine_guard.py) as the evidence for that
decision. Run the test with `python -m pytest bench/test_calamine_guard.py`.

An XLSX worksheet's rows read by python-calamine: openpyxl's values, several times faster.

`calamine_rows(path, sheet)` gives the worksheet's title and its rows as tuples of raw
values (str, int, float, bool, date, datetime, time, timedelta; "" for an empty cell), row 1
first, a row for every sheet row down to the last used one, each cell at its column's index,
so that `reader.cell_text` turns every cell into exactly the text and numeric flag that the
openpyxl read-only path gives. It returns None when calamine must not read the workbook; the
caller then reads it with openpyxl, as before. Call it after `reader._check_workbook`.

Why a guard (`calamine_refusal`) comes first: calamine is not a streaming reader. It builds
the whole used range of the sheet in memory (32 bytes a cell, rows x columns, empty cells
included) and copies a shared string into every cell that uses it. A workbook of a few kB
can therefore ask it for hundreds of GB (one cell at XFD1048576, cells without a reference
after a million empty rows, one 1 MB shared string used by a million cells), and Rust
aborts the whole process when an allocation fails: no exception, no report. The guard reads
the worksheet XML once with byte searches and regular expressions (no XML parser) and bounds
what calamine would allocate, refusing anything over MAX_BYTES or written in a way the bound
does not cover. It also refuses the few things the two readers read differently (see
DIFFERENCES), so that whatever calamine reads, it reads exactly as openpyxl does.
"""

from __future__ import annotations

import io
import posixpath
import re
import warnings
import zipfile
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import openpyxl
from python_calamine import CalamineError, CalamineSheet, CalamineWorkbook, SheetTypeEnum

from bulk_update.reader import cell_text
from bulk_update.reader.xlsxfile import _pick_worksheet

__all__ = [
    "DIFFERENCES",
    "MAX_BYTES",
    "MAX_CELLS",
    "CalamineRows",
    "calamine_refusal",
    "calamine_rows",
]

#: The most cells (rows x columns of the used range, as bounded) calamine is given.
MAX_CELLS = 4 << 20
#: The most memory calamine may be expected to take for one sheet (see _SheetScan.scan).
MAX_BYTES = 400 << 20
#: calamine's memory per cell of the used range: the dense range (32 bytes) and, while it is
#: built, the list of non-empty cells (40 bytes each; there are at most as many).
_BYTES_PER_CELL = 72
#: Per string cell: the String header and the allocator's overhead around its bytes.
_BYTES_PER_STRING = 32
#: The longest stretch of a part read without finding where to cut it (see _chunks).
_MAX_CARRY = 8 << 20
#: More cell styles than this and the styles are not compared (a sheet has tens).
_MAX_STYLES = 4000

#: Where the two readers part: calamine_refusal refuses every one of these workbooks, so
#: that openpyxl reads them. bench/test_calamine_guard.py shows each difference.
DIFFERENCES: dict[str, str] = {
    "error cells": "openpyxl gives the error's text ('#N/A'), calamine an empty cell",
    "ISO date cells (t='d')": (
        "openpyxl cuts microseconds to milliseconds and drops a 'Z'; calamine keeps both"
    ),
    "_xHHHH_ escapes": (
        "calamine decodes Excel's escapes ('_x000D_' is a carriage return), openpyxl keeps "
        "them as written"
    ),
    "integers past 2**53": (
        "openpyxl reads <v>12345678901234567</v> exactly, calamine as the nearest float"
    ),
    "numbers written unusually": (
        "openpyxl reads what Python's int() and float() take (' 5 ', '1_000', other "
        "scripts' digits) as numbers, calamine as text; 'Infinity' the other way round"
    ),
    "booleans written unusually": (
        "openpyxl reads <v>2</v> in a boolean cell as TRUE, calamine refuses it; calamine "
        "reads <v>true</v>, openpyxl refuses it"
    ),
    "rich text runs": (
        "calamine trims the white space at the ends of each run that lacks "
        "xml:space='preserve' ('a ' + 'b' = 'ab'), openpyxl keeps it"
    ),
    "number formats": (
        "calamine takes the locale date formats 27-36 and 50-58 (Chinese, Japanese, Korean, "
        "Thai) for dates, openpyxl for numbers (found by reading a probe workbook with the "
        "workbook's own styles through both readers)"
    ),
    "odd date serials": (
        "a date-formatted cell holding a negative serial, one past 9999-12-31, or a time "
        "within half a millisecond of midnight: openpyxl gives a date in 1899, '#VALUE!' or "
        "the next day, calamine a time of day, the number, or 00:00"
    ),
    "half milliseconds": (
        "a date or time on a half millisecond (500 microseconds): openpyxl rounds it half to "
        "even, from the fraction of the day, calamine half away from zero, from the whole "
        "serial, so the two can be a millisecond apart"
    ),
    "cells calamine places elsewhere": (
        "a second r attribute (calamine takes the last, openpyxl refuses the file), a "
        "reference in another spelling, a cell element with a namespace prefix"
    ),
}

_SST = "xl/sharedStrings.xml"
_STYLES = "xl/styles.xml"
_RELS = "xl/_rels/workbook.xml.rels"
_CHUNK = 1 << 20

# --------------------------------------------------------------------------- patterns
# Each pattern starts with a literal, so that `re` skips ahead with a fast search: a pass
# over the 65 MB sheet of a 100,000-row workbook costs 30-100 ms per pattern, 0.4 s for
# the cell pattern (see _cell_pattern), which looks at every cell.


def _column_letters(column: int) -> str:
    letters = ""
    while column:
        column, rest = divmod(column - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


def _at_most(bound: str, letters: bool) -> str:
    """A regular expression for the column letters (or row digits, no leading zero) that
    come at most to `bound`: shorter, or as long and not after it."""
    first, other = ("A", "A") if letters else ("1", "0")
    last = "Z" if letters else "9"
    options = [f"[{first}-{last}][{other}-{last}]{{0,{len(bound) - 2}}}"] if len(bound) > 1 else []
    for at, symbol in enumerate(bound):
        low = first if at == 0 else other
        if symbol > low:
            rest = len(bound) - at - 1
            tail = f"[{other}-{last}]{{{rest}}}" if rest else ""
            options.append(f"{bound[:at]}[{low}-{chr(ord(symbol) - 1)}]{tail}")
    options.append(bound)
    return "(?:" + "|".join(options) + ")"


#: A plain number as Excel, LibreOffice and openpyxl write it. openpyxl reads more (white
#: space, '_', other scripts' digits: Python's int and float) and makes an exact integer of
#: anything without '.' or 'E', where calamine reads a float: the same text as long as the
#: float is exact, which is sure up to 2**53.
_NUMBER = (
    f"-?(?:0|{_at_most(str(2**53), letters=False)}"
    r"|(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[Ee][+-]?[0-9]+)?|[0-9]+[Ee][+-]?[0-9]+)"
)
#: A date serial both readers turn into the same date or time: from 0 to 999999 (the year
#: 4637), not within a ten-millionth of a day below 1 (openpyxl rounds that to the next
#: day, calamine to 00:00); under 0.1 also with an exponent (openpyxl writes 1e-05).
_DATE_SERIAL = (
    r"(?:[1-9][0-9]{0,5}(?:\.[0-9]+)?|0(?:\.(?!9999999)[0-9]*)?"
    r"|[0-9](?:\.[0-9]*)?[Ee]-(?:0?[2-9]|[1-9][0-9]+))"
)
#: Attributes after the reference, the style and the type (Excel's cm, vm, ph).
_MORE = r'(?: (?![rst]=)[a-z]{1,3}="[^"<]*+")*+'
_FORMULA = r"(?:<f[^>]*+>[^<]*+</f>|<f[^>]*+/>)?"
_END = "(?: ?/>|></c>)"
_NUMBER_OR_DATE = f"(?(1){_DATE_SERIAL}|{_NUMBER})"  # a date when the style (group 1) is one
#: No cached value: openpyxl writes `<v />` for a formula it has not computed.
_NO_V = "(?:<v ?/>)?"
#: The rest of a cell after its reference and style, by type. An error cell (t="e"), an ISO
#: date cell (t="d"), a cell of another type or laid out otherwise matches none of them.
_CELL_BODIES = (
    # A number, or a date when its style is one (group 1).
    rf'(?: t="n")?{_MORE}(?:>{_FORMULA}(?:<v>{_NUMBER_OR_DATE}</v>|{_NO_V})</c>|{_END})',
    rf' t="inlineStr"{_MORE}(?:><is>|{_END})',
    rf' t="s"{_MORE}(?:><v>[0-9]+</v></c>|{_END})',
    rf' t="str"{_MORE}(?:>{_FORMULA}(?:<v>[^<]*+</v>|{_NO_V})</c>|{_END})',
    rf' t="b"{_MORE}(?:>{_FORMULA}(?:<v>[01]</v>|{_NO_V})</c>|{_END})',
)
#: A cell element with a namespace prefix (calamine matches local names; the above do not).
_PREFIXED_CELL = re.compile(rb":c[\s/>]")
#: The cell reference inside a match of the cell pattern.
_REFERENCE = re.compile(rb'<c r="([A-Z]{1,3})([1-9][0-9]{0,6})"')
_ESCAPE = re.compile(rb"_x[0-9A-Fa-f]{4}_")
#: Where rich text may be: the end of a run, `</r>` or `</x:r>`.
_RUN = b"r>"
_UNTRIMMED_RUN_TEXT = re.compile(rb"<(?:\w+:)?t>(?:[\t\n\r ]|[^<]*[\t\n\r ]</)")
_STRING_CELL = b't="s"'
_STRING_INDEX = re.compile(rb'<c r="[A-Z]+[0-9]+"(?: s="[0-9]+")? t="s"[^>]*><v>([0-9]+)</v>')
_SHARED_ITEM = b"<si"
_RELATIONSHIP = re.compile(rb"<(?:\w+:)?Relationship\s[^>]*>")
_ATTRIBUTE = re.compile(rb'\s(Type|Target)="([^"]*)"')
_CELL_XFS = re.compile(rb"<(?:\w+:)?cellXfs\b[^>]*>(.*?)</(?:\w+:)?cellXfs>", re.S)
_XF = re.compile(rb"<(?:\w+:)?xf[\s/>]")


def _cell_pattern(columns: _Bound, rows: _Bound, dates: frozenset[int]) -> re.Pattern[bytes]:
    """A cell that is not laid out as the guard expects, or lies beyond the bounds so far.

    Laid out as expected: `<c r="A1"` (a reference within the bounds; no leading zero),
    then optionally ` s="N"`, the type, short attributes that are not `r`, and a content
    that both readers read alike (see _CELL_BODIES). Anything else could put a cell where
    the bounds do not look (a cell without a reference, a second `r`, other quoting or
    spacing) or be read differently.
    """
    date_styles = "|".join(str(style) for style in sorted(dates)) or "(?!)"
    # Atomic: a date style must not be read again as any style, which would skip group 1.
    style = f'(?: s="(?>({date_styles})"|[0-9]+"))?'
    head = f' r="{columns.within()}{rows.within()}"{style}'
    bodies = "|".join(_CELL_BODIES)
    return re.compile(f"<c(?=[\\s/>])(?!{head}(?:{bodies}))".encode())


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True, slots=True)
class CalamineRows:
    """A worksheet read by calamine: its title and its rows, from row 1 (see the module)."""

    title: str
    rows: Iterator[tuple[object, ...]]


@dataclass(frozen=True, slots=True)
class _Named:
    title: str


def calamine_rows(path: Path, sheet: str | None) -> CalamineRows | None:
    """Read a worksheet with python-calamine, or None when openpyxl must read the workbook.

    The worksheet is picked as `reader._pick_worksheet` picks it (the first by default; by
    name, then ignoring case), with the same InputError when there is no such sheet. None
    when `calamine_refusal` refuses the workbook, or calamine cannot open it (openpyxl then
    gives the usual message for a damaged file). The whole sheet is read here; the rows are
    converted to Python values as they are iterated.
    """
    path = Path(path)
    if calamine_refusal(path) is not None:
        return None
    try:
        workbook = CalamineWorkbook.from_path(path)
    except BaseException as exc:  # CalamineError, or a Rust panic surfaced by pyo3
        _raise_unexpected(exc)
        return None
    with workbook:
        worksheets = [
            _Named(m.name) for m in workbook.sheets_metadata if m.typ == SheetTypeEnum.WorkSheet
        ]
        picked = _pick_worksheet(worksheets, workbook.sheet_names, sheet, path.name)
        try:
            data = workbook.get_sheet_by_name(picked.title)
        except BaseException as exc:
            _raise_unexpected(exc)
            return None
    return CalamineRows(title=picked.title, rows=_rows(data))


def _raise_unexpected(exc: BaseException) -> None:
    # calamine's own errors mean a damaged workbook; pyo3 turns a panic in Rust into a
    # PanicException (a BaseException it defines at run time). Anything else (a bug, or
    # KeyboardInterrupt) goes on up.
    if not isinstance(exc, CalamineError) and type(exc).__name__ != "PanicException":
        raise exc


def _rows(data: CalamineSheet) -> Iterator[tuple[object, ...]]:
    start = data.start
    if start is None:  # no cell with a value
        return
    # iter_rows yields the empty rows above the used range (row 1 first) but starts each row
    # at the range's first column: the columns to its left are put back here.
    pad: tuple[object, ...] = ("",) * start[1]
    if pad:
        for row in data.iter_rows():
            yield pad + tuple(row)
    else:
        yield from map(tuple, data.iter_rows())


# --------------------------------------------------------------------------- the guard


class _Refused(Exception):
    """Raised inside the guard; its message is the refusal."""


def calamine_refusal(path: Path) -> str | None:
    """Why calamine must not read this workbook (openpyxl reads it instead), or None.

    Reads the workbook's relationships, styles, shared strings and worksheet parts once.
    A refusal is either a bound (a sheet would take calamine more than MAX_BYTES, or span
    more than MAX_CELLS) or something the two readers read differently (DIFFERENCES).
    Call it after `reader._check_workbook`: it assumes a zip that is no bomb, XML without
    a DTD, and no run of text over a few MB.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            _check(archive)
    except _Refused as refusal:
        return str(refusal)
    except (OSError, zipfile.BadZipFile, KeyError, ValueError, EOFError, RuntimeError):
        return "the workbook cannot be scanned"
    return None


def _check(archive: zipfile.ZipFile) -> None:
    names = set(archive.namelist())
    # A document type declaration is openpyxl's (defusedxml's) to refuse, in its words.
    for part in ("xl/workbook.xml", _RELS, _STYLES):
        if part in names:
            _no_doctype(archive.read(part), part)
    sheets = _sheet_parts(archive, names)
    dates = _date_styles(archive, names)
    lengths = _shared_lengths(archive) if _SST in names else array("L")
    for part in sheets:
        _SheetScan(lengths, dates).scan(archive, part)


def _sheet_parts(archive: zipfile.ZipFile, names: set[str]) -> list[str]:
    """The worksheet parts the workbook lists.

    calamine looks for the shared strings and the styles at fixed places; openpyxl follows
    the relationships: they must agree.
    """
    if _RELS not in names:
        raise _Refused(f"no {_RELS}")
    sheets = []
    for tag in _RELATIONSHIP.findall(archive.read(_RELS)):
        attributes = dict(_ATTRIBUTE.findall(tag))
        kind = attributes.get(b"Type", b"").rsplit(b"/", 1)[-1]
        target = _resolve(attributes.get(b"Target", b"").decode("utf-8", "replace"))
        if kind == b"worksheet":
            if target not in names:
                raise _Refused(f"the worksheet part {target} is missing")
            sheets.append(target)
        elif kind == b"sharedStrings" and target != _SST:
            raise _Refused(f"the shared strings are at {target}")
        elif kind == b"styles" and target != _STYLES:
            raise _Refused(f"the styles are at {target}")
    return sheets


def _resolve(target: str) -> str:
    if target.startswith("/"):
        return posixpath.normpath(target.lstrip("/"))
    return posixpath.normpath(posixpath.join("xl", target))


def _chunks(archive: zipfile.ZipFile, part: str, cut: bytes) -> Iterator[bytes]:
    """A part's bytes in pieces of about _CHUNK, each ending just before an occurrence of
    `cut`, so that no cell (or string) is split between two pieces."""
    carry = b""
    with archive.open(part) as stream:
        chunk = stream.read(_CHUNK)
        _no_doctype(chunk, part)  # a DTD comes before the root element: in the first chunk
        while chunk:
            buffer = carry + chunk
            chunk = stream.read(_CHUNK)
            at = buffer.rfind(cut)
            if at <= 0:
                if len(buffer) > _MAX_CARRY:
                    raise _Refused(f"{part} has {_MAX_CARRY >> 20} MB without {cut.decode()}")
                carry = buffer
                continue
            carry = buffer[at:]
            yield buffer[:at]
    if carry:
        yield carry


def _no_doctype(head: bytes, part: str) -> None:
    if b"<!DOCTYPE" in head[:_CHUNK]:
        raise _Refused(f"{part} holds a document type declaration")


def _check_text(chunk: bytes, part: str) -> None:
    """Text both readers must read alike: no _xHHHH_ escape, no untrimmed rich text run."""
    if _ESCAPE.search(chunk):
        raise _Refused(f"{part}: text with an _xHHHH_ escape")
    if _RUN in chunk and _UNTRIMMED_RUN_TEXT.search(chunk):
        raise _Refused(f"{part}: rich text with white space not marked to be kept")


def _shared_lengths(archive: zipfile.ZipFile) -> array[int]:
    """Bytes of XML of every shared string, by index: more than its text ever takes."""
    lengths: array[int] = array("L")
    for chunk in _chunks(archive, _SST, _SHARED_ITEM):
        _check_text(chunk, _SST)
        # Each piece but the first starts with an item; the first holds what comes before.
        pieces = chunk.split(_SHARED_ITEM)[1:]
        lengths.extend(len(p) + len(_SHARED_ITEM) for p in pieces)
    return lengths


def _dated_pattern(dates: frozenset[int]) -> re.Pattern[bytes] | None:
    """The value of a date-formatted cell with a fraction of a day."""
    if not dates:
        return None
    styles = "|".join(str(style) for style in sorted(dates))
    return re.compile(
        # From ` s="`, not `<c r="`: a faster start where few cells have a style.
        f' s="(?:{styles})"(?: t="n")?[^>]*+>{_FORMULA}'
        r"<v>([0-9]*\.[0-9]+(?:[Ee][+-]?[0-9]+)?|[0-9]+[Ee]-[0-9]+)</v>".encode()
    )


def _on_a_half_millisecond(dated: re.Pattern[bytes], chunk: bytes) -> bool:
    """A date or time whose milliseconds the readers round differently.

    openpyxl rounds (fraction of the day x 86400) x 1000 half to even, calamine the whole
    serial x 86400000 half away from zero: they part only when the time falls within
    float error (well under 0.05 ms) of half a millisecond, as a time with 500 microseconds
    does. Times Excel keeps (whole seconds, or milliseconds) never come near.
    """
    return any(abs(float(v) * 86_400_000.0 % 1.0 - 0.5) < 0.05 for v in dated.findall(chunk))


class _SheetScan:
    """One pass over a worksheet part: the extent of its cells, their strings, oddities."""

    def __init__(self, lengths: array[int], dates: frozenset[int]) -> None:
        self.lengths = lengths
        self.longest = max(lengths, default=0)
        self.dates = dates
        self.columns = _Bound(letters=True)
        self.rows = _Bound(letters=False)
        self.pattern = _cell_pattern(self.columns, self.rows, dates)
        self.dated = _dated_pattern(dates)
        self.string_bytes = 0

    def scan(self, archive: zipfile.ZipFile, part: str) -> None:
        # Cut before a cell's start tag only: never inside a cell (`<color` in rich text).
        for chunk in _chunks(archive, part, b"<c "):
            self._cells(chunk, part)
            if _PREFIXED_CELL.search(chunk):
                raise _Refused(f"{part}: a cell element with a namespace prefix")
            _check_text(chunk, part)
            if self.dated and _on_a_half_millisecond(self.dated, chunk):
                raise _Refused(f"{part}: a date or time on a half millisecond")
            self._strings(chunk)
        cells = self.rows.value * self.columns.value
        if cells > MAX_CELLS:
            raise _Refused(f"{part}: its cells may span {cells:,} cells of memory")
        estimate = _BYTES_PER_CELL * cells + archive.getinfo(part).file_size + self.string_bytes
        if estimate > MAX_BYTES:
            raise _Refused(f"{part}: calamine would take about {estimate >> 20:,} MB")

    def _cells(self, chunk: bytes, part: str) -> None:
        at = 0
        while match := self.pattern.search(chunk, at):
            at = match.start()
            reference = _REFERENCE.match(chunk, at)
            if reference is None or not self._grow(*reference.groups()):
                shown = chunk[at : at + 80].decode("utf-8", "replace")
                raise _Refused(f"{part}: a cell not laid out as expected: {shown}")
            self.pattern = _cell_pattern(self.columns, self.rows, self.dates)
            if self.pattern.match(chunk, at):
                shown = chunk[at : at + 80].decode("utf-8", "replace")
                raise _Refused(f"{part}: a cell not laid out as expected: {shown}")

    def _grow(self, letters: bytes, digits: bytes) -> bool:
        """Widen the bounds to take in this reference; False if it was within them."""
        grew = self.columns.take(letters)
        return self.rows.take(digits) or grew

    def _strings(self, chunk: bytes) -> None:
        count = chunk.count(_STRING_CELL)
        if not count:
            return
        bound = count * (self.longest + _BYTES_PER_STRING)
        if bound <= 4 * _CHUNK:
            self.string_bytes += bound
            return
        # Long shared strings: add up what each cell really copies.
        lengths, longest = self.lengths, self.longest
        indexes = _STRING_INDEX.findall(chunk)
        total = (count - len(indexes)) * longest  # cells written otherwise: the worst
        for index in map(int, indexes):
            total += lengths[index] if index < len(lengths) else longest
        self.string_bytes += total + count * _BYTES_PER_STRING


class _Bound:
    """An upper bound on the greatest column, or row number, of the cell references.

    It at least doubles when it grows, so that a sheet of 100,000 rows and 16,384 columns
    recompiles the cell pattern some 30 times (a few ms each), and stays under twice the
    truth.
    """

    def __init__(self, *, letters: bool) -> None:
        self.letters = letters
        self.value = 0  # the column (A=1 ... Z=26, AA=27 ...) or the row number
        self.text = ""  # the same, as written in a reference

    def within(self) -> str:
        """A regular expression for the references' column (or row) within the bound."""
        return _at_most(self.text, self.letters) if self.text else "(?!)"

    def take(self, found: bytes) -> bool:
        """Widen the bound to take in `found`; False if it was already within."""
        if self.letters:
            value = 0
            for letter in found:
                value = value * 26 + letter - ord("A") + 1
        else:
            value = int(found)
        if value <= self.value:
            return False
        self.value = max(value, 2 * self.value + 1)
        self.text = _column_letters(self.value) if self.letters else str(self.value)
        return True


# --------------------------------------------------------------------------- styles


def _date_styles(archive: zipfile.ZipFile, names: set[str]) -> frozenset[int]:
    """The cell styles that make a number a date or a time.

    The workbook's own styles are put into a small probe workbook with one row of serials
    per style and read by both readers: a style they turn into different texts is refused.
    """
    if _STYLES not in names:
        return frozenset()
    styles = archive.read(_STYLES)
    found = _CELL_XFS.search(styles)
    count = len(_XF.findall(found.group(1))) if found else 0
    if count > _MAX_STYLES:
        raise _Refused(f"{count:,} cell styles")
    if not count:
        return frozenset()
    probe = _probe_workbook(styles, count)
    try:
        theirs = _texts_by_openpyxl(probe)
        ours = _texts_by_calamine(probe)
    except Exception:  # unreadable styles: openpyxl will say so in its own words
        raise _Refused("the styles cannot be read") from None
    dates = set()
    for style in range(count):
        if theirs[style] != ours[style]:
            raise _Refused(f"cell style {style} turns numbers into different texts")
        if theirs[style] != _PLAIN_PROBE_TEXTS:
            dates.add(style)
    return frozenset(dates)


#: Serials that show a date, a date with a time, a time, and a small number.
_PROBE_VALUES = ("45352", "45352.4375", "0.4375", "1.5", "61.25")
_PLAIN_PROBE_TEXTS = [cell_text(float(v)) for v in _PROBE_VALUES]


def _probe_workbook(styles: bytes, count: int) -> bytes:
    main = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
    relationships = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    package = "http://schemas.openxmlformats.org/package/2006/relationships"
    rows = "".join(
        f'<row r="{style + 1}">'
        + "".join(
            f'<c r="{chr(65 + column)}{style + 1}" s="{style}"><v>{value}</v></c>'
            for column, value in enumerate(_PROBE_VALUES)
        )
        + "</row>"
        for style in range(count)
    )
    parts = {
        "[Content_Types].xml": (
            '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" ContentType="application/'
            'vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/>'
            '<Override PartName="/xl/workbook.xml" ContentType="application/'
            'vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
            '<Override PartName="/xl/styles.xml" ContentType="application/'
            'vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>'
            '<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/'
            'vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>'
        ),
        "_rels/.rels": (
            f'<Relationships xmlns="{package}"><Relationship Id="rId1" '
            f'Type="{relationships}/officeDocument" Target="xl/workbook.xml"/></Relationships>'
        ),
        "xl/workbook.xml": (
            f'<workbook xmlns="{main}" xmlns:r="{relationships}"><sheets>'
            '<sheet name="Probe" sheetId="1" r:id="rId1"/></sheets></workbook>'
        ),
        _RELS: (
            f'<Relationships xmlns="{package}">'
            f'<Relationship Id="rId1" Type="{relationships}/worksheet" '
            'Target="worksheets/sheet1.xml"/>'
            f'<Relationship Id="rId2" Type="{relationships}/styles" Target="styles.xml"/>'
            "</Relationships>"
        ),
        "xl/worksheets/sheet1.xml": (
            f'<worksheet xmlns="{main}"><sheetData>{rows}</sheetData></worksheet>'
        ),
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as probe:
        for name, text in parts.items():
            probe.writestr(name, text)
        probe.writestr(_STYLES, styles)
    return buffer.getvalue()


def _texts_by_openpyxl(probe: bytes) -> list[list[tuple[str, bool]]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        workbook = openpyxl.load_workbook(io.BytesIO(probe), read_only=True, data_only=True)
    try:
        rows = workbook.worksheets[0].iter_rows(values_only=True)
        return [[cell_text(v) for v in row] for row in rows]
    finally:
        workbook.close()


def _texts_by_calamine(probe: bytes) -> list[list[tuple[str, bool]]]:
    with CalamineWorkbook.from_filelike(io.BytesIO(probe)) as workbook:
        rows = workbook.get_sheet_by_index(0).iter_rows()
        return [[cell_text(v) for v in row] for row in rows]
