"""A report's cells as its CSV and XLSX hold them: each rule in two forms, side by side.

The cell form serves the general path (report.py writes a line at a time); the column form,
on pyarrow string arrays, the columnar dry run (bulk_update/columnar/), which writes a block
of rows at a time. The same rule in both, so the two reports stay the same byte for byte
(tests/test_report.py holds each column form to its cell form): defusing a formula start
(`defuse_csv_cell`, undone by `restore_cell`), CSV quoting, the XLSX text of a cell, and
the column widths an XLSX report gets. report.py re-exports the public names.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from typing import Any, Final

from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

from . import xlsx
from .models import REPORT_WIDTH

_Value = str | int | None

#: An XLSX report's column widths, in characters: the longest line of a cell, plus 2.
MIN_WIDTH = 8
MAX_WIDTH = 60
#: First characters that make a spreadsheet program read a CSV cell as a formula (OWASP).
FORMULA_STARTS = "=+-@\t\r"
# Spelled as hex escapes, so that Python's re and RE2 (a column at a time) read it alike.
_START = "[" + "".join(f"\\x{ord(c):02x}" for c in FORMULA_STARTS) + "]"
# A cell that needs an apostrophe more: a formula start, after any apostrophes already there.
_NEEDS_QUOTE_AT = f"'*{_START}"
_NEEDS_QUOTE = re.compile(_NEEDS_QUOTE_AT)
_FIRST = frozenset(FORMULA_STARTS + "'")
_FIRST_BYTES = tuple(c.encode() for c in sorted(_FIRST))
# In cells joined by NUL: the start of each cell that needs an apostrophe more.
_DEFUSE_JOINED = re.compile(f"\x00(?={_NEEDS_QUOTE_AT})")
# A cell as defused: one apostrophe or more, then a formula start.
_QUOTED_AT = f"'+{_START}"
_QUOTED = re.compile(_QUOTED_AT)


def defuse_csv_cell(text: str) -> str:
    """`text` as a CSV report writes it, defused. Pure; `restore_cell` undoes it.

    One more leading `'` when, after any apostrophes, it starts with = + - @ tab or CR.
    """
    # The first-character test settles nearly every cell without the regex.
    if not text or text[0] not in _FIRST:
        return text
    return "'" + text if _NEEDS_QUOTE.match(text) else text


def defuse_csv_column(col: Any) -> Any:
    """`defuse_csv_cell` on every cell of a pyarrow string array: the same rule, a column
    at a time (the columnar dry run's form)."""
    import pyarrow.compute as pc

    # A search of the column's bytes settles most columns (numbers, uids) without a kernel.
    if (
        not may_hold(col, _FIRST_BYTES)
        or not pc.any(pc.match_substring_regex(col, f"^['{_START[1:]}")).as_py()
    ):
        return col
    return pc.replace_substring_regex(col, pattern=f"^({_NEEDS_QUOTE_AT})", replacement="'\\1")


def restore_cell(text: str) -> str:
    """A re-uploaded report's cell as first typed. Pure; the inverse of `defuse_csv_cell`.

    One leading `'` less when apostrophes are followed by = + - @ tab or CR.
    """
    return text[1:] if _QUOTED.match(text) else text


#: How a CSV report quotes: csv.writer's QUOTE_MINIMAL, ',' and CRLF line ends...
_CSV_QUOTING: Final = csv.QUOTE_MINIMAL
#: ...which quotes (doubling quotes) exactly the cells holding one of these.
_CSV_SPECIAL = ('"', ",", "\r", "\n")


def csv_header(header: Sequence[str]) -> bytes:
    """A CSV report's first bytes: the BOM and the header line, as `_write_csv` writes them."""
    line = io.StringIO()
    csv.writer(line, quoting=_CSV_QUOTING).writerow([defuse_csv_cell(h) for h in header])
    return ("\ufeff" + line.getvalue()).encode("utf-8")


def csv_lines(columns: Sequence[Any]) -> Any:
    """`_write_csv`'s lines, a column at a time: pyarrow string arrays (cells defused
    already) -> one string per row, csv.writer's quoting, CRLF-ended."""
    import pyarrow.compute as pc

    def field(col: Any) -> Any:
        # A search of the column's bytes settles nearly every column without a kernel.
        if not may_hold(col, [c.encode() for c in _CSV_SPECIAL]):
            return col
        quoted = pc.binary_join_element_wise('"', pc.replace_substring(col, '"', '""'), '"', "")
        special = "[" + "".join(_CSV_SPECIAL) + "]"
        return pc.if_else(pc.match_substring_regex(col, special), quoted, col)

    cells = [field(c) for c in columns]
    cells[-1] = pc.binary_join_element_wise(cells[-1], "\r\n", "")
    return pc.binary_join_element_wise(*cells, ",")


def may_hold(col: Any, marks: Sequence[bytes]) -> bool:
    """False when no cell of a pyarrow string array holds any of `marks` (a byte search)."""
    data = col.buffers()[2]
    if data is None:
        return False
    # Copied once (memcpy), then bytes.find per mark: many times faster than re on the buffer.
    raw = data.to_pybytes()
    return any(raw.find(mark) >= 0 for mark in marks)


def _defused_line(line: list[_Value]) -> list[_Value]:
    """`line` with every text cell defused (defuse_csv_cell), as fast as it can be done.

    The input cells (all text, after the report's own columns) are joined with NUL, defused
    by one regex substitution and split again: phone numbers start with `+`, so nearly
    every line of a real sheet has a cell to defuse, and a call per cell costs more than
    the rest of the line's writing. A cell holding a NUL itself takes the slow way.
    """
    own = [defuse_csv_cell(v) if isinstance(v, str) else v for v in line[:REPORT_WIDTH]]
    cells = line[REPORT_WIDTH:]
    # Each cell, the first too, is preceded by a NUL: the regex starts with a literal.
    joined = "\x00" + "\x00".join(cells)  # type: ignore[arg-type]  # input cells are all str
    if joined.count("\x00") != len(cells):
        return own + [defuse_csv_cell(v) if isinstance(v, str) else v for v in cells]
    return own + _DEFUSE_JOINED.sub("\x00'", joined).split("\x00")[1:]


def xlsx_text(value: str) -> str:
    """`value` as an XLSX report stores it: line breaks as LF, no control characters XML
    cannot hold, one apostrophe more before `'=x` (as a CSV report does), and no more
    than an Excel cell holds (`xlsx.excel_cell`)."""
    # Nearly every cell is printable text not led by an apostrophe: nothing to change.
    if value.isprintable() and not value.startswith("'"):
        return xlsx.excel_cell(value)
    # XML readers (Excel included) read a raw CR as LF: write line breaks as LF up front.
    # Control characters XML cannot hold are dropped rather than failing the whole report.
    text = ILLEGAL_CHARACTERS_RE.sub("", value.replace("\r\n", "\n").replace("\r", "\n"))
    # A text cell is never a formula, so `=x` stays as is; only `'=x` takes one apostrophe
    # more, because a re-upload takes one off (the same rule as a CSV report's).
    return xlsx.excel_cell("'" + text if _QUOTED.match(text) else text)


def xlsx_text_column(col: Any) -> Any:
    """`xlsx_text` on every cell of a pyarrow string array: the same rule, a column at a
    time (openpyxl's pattern of illegal characters reads the same in RE2)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pc.any(pc.match_substring(col, "\r")).as_py():
        col = pc.replace_substring(pc.replace_substring(col, "\r\n", "\n"), "\r", "\n")
    illegal = ILLEGAL_CHARACTERS_RE.pattern
    if pc.any(pc.match_substring_regex(col, illegal)).as_py():
        col = pc.replace_substring_regex(col, illegal, "")
    if pc.any(pc.match_substring_regex(col, f"^{_QUOTED_AT}")).as_py():
        col = pc.replace_substring_regex(col, f"^({_QUOTED_AT})", "'\\1")
    # A cell Excel cannot hold is cut by xlsx.excel_cell itself: such cells are rare.
    if (pc.max(pc.utf8_length(col)).as_py() or 0) > xlsx.SURELY_FITS:
        col = pa.array([None if v is None else xlsx.excel_cell(v) for v in col.to_pylist()])
    return col


def longest_line(text: str) -> int:
    """The length of a cell's longest line: what its column's width in a report follows."""
    return max((len(part) for part in text.splitlines()), default=0)


#: What str.splitlines splits at (tests/test_report.py checks it against Python itself).
LINE_BREAKS = "\n\x0b\x0c\r\x1c\x1d\x1e\x85\u2028\u2029"


def table_widths(table: Iterable[list[_Value]]) -> list[float]:
    """Column widths in characters: the longest line of any cell, within bounds."""
    widths: list[int] = []
    for line in table:
        if not widths:
            widths = [MIN_WIDTH] * len(line)
        for i, value in enumerate(line):
            if value is None or value == "":
                continue
            text = value if isinstance(value, str) else str(value)
            # A cell no longer than the column's width so far cannot widen it: most cells
            # are settled by their length, without splitting them into lines.
            if len(text) + 2 > widths[i]:
                widths[i] = max(widths[i], longest_line(text) + 2)
    return bounded_widths(widths)


def bounded_widths(widths: Iterable[int]) -> list[float]:
    """Widths measured (`widen_column`, `_widths`) as the report sets them: at most MAX_WIDTH."""
    return [min(w, MAX_WIDTH) for w in widths]


def widen_column(widths: list[int], index: int, col: Any) -> None:
    """`_widths` for a whole column (a pyarrow string array): widen `widths[index]` to its
    cells' longest line, plus 2."""
    import pyarrow.compute as pc

    lengths = pc.utf8_length(col)
    longest = pc.max(lengths).as_py() or 0
    # As `_widths`: a column no longer than its width so far cannot widen it.
    if longest + 2 <= widths[index]:
        return
    broken = pc.match_substring_regex(col, f"[{LINE_BREAKS}]")
    if pc.any(broken).as_py():
        lines = pc.filter(col, broken).to_pylist()
        longest = max(
            pc.max(pc.if_else(broken, 0, lengths)).as_py() or 0, *map(longest_line, lines)
        )
    widths[index] = max(widths[index], longest + 2)
