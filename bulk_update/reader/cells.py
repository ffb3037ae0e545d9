"""One cell value as openpyxl gives it -> the text a person sees in a spreadsheet program.

Also the characters every cell is stripped of, CSV or XLSX: white space as `str.strip`
takes it, and the invisible characters a paste from a web page or a chat leaves at a cell's
edges (contract section 4). Inside a cell they are kept: the schema refuses them where they
would make a value wrong (a uid, an email, a URL, a phone).
"""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal

__all__ = ["EDGE_INVISIBLE", "PY_SPACE", "STRIPPED", "cell_text", "strip_cell"]

#: Every character `str.isspace` accepts, hence what `str.strip` and `re`'s \s take
#: (tests/test_columnar.py checks this against Python itself).
PY_SPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005"
    "\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
#: Invisible characters stripped at a cell's edges like white space: zero-width space,
#: non-joiner and joiner, word joiner, the byte order mark (zero-width no-break space) and
#: the soft hyphen. A spreadsheet program shows none of them.
EDGE_INVISIBLE = "\u200b\u200c\u200d\u2060\ufeff\u00ad"
#: What a cell is stripped of at both ends.
STRIPPED = PY_SPACE + EDGE_INVISIBLE


def strip_cell(text: str) -> str:
    """`text` without white space and invisible characters at its ends."""
    return text.strip(STRIPPED)


# --------------------------------------------------------------------------- cell values


def cell_text(value: object) -> tuple[str, bool]:
    """Turn one cell value (as openpyxl gives it) into `(text, stored_as_number)`.

    Text is what a person would have typed: numbers as plain decimals without `.0` or an
    exponent, at most 15 significant digits as Excel shows them (`0.30000000000000004`
    stored, `0.3` shown), whole ones exactly; dates as ISO 8601; times as `HH:MM:SS`;
    durations as Excel's `[h]:mm:ss`; booleans as TRUE/FALSE, None as "". Always stripped
    (`strip_cell`); never `nan` or `None`. `stored_as_number` is True for int and float
    (not bool).
    """
    if value is None:
        return "", False
    if isinstance(value, str):
        return strip_cell(value), False
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
    if isinstance(value, dt.timedelta):
        return _duration_text(value), False
    return strip_cell(str(value)), False


def _float_text(value: float) -> str:
    if math.isnan(value):
        # A spreadsheet cannot hold NaN; if one shows up, the cell is as good as empty.
        return ""
    if math.isinf(value):
        return "-inf" if value < 0 else "inf"
    # Excel keeps 15 significant digits and shows no more: 0.1 + 0.2 is stored as
    # 0.30000000000000004 and shown as 0.3. A whole number is spelled exactly (repr is the
    # shortest text that round-trips); Decimal + 'f' spells either without an exponent.
    shown = repr(value) if value.is_integer() else format(value, ".15g")
    text = format(Decimal(shown), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _duration_text(value: dt.timedelta) -> str:
    """A duration as Excel's `[h]:mm:ss` shows it: hours past 24 kept, seconds rounded."""
    seconds = round(value.total_seconds())
    sign = "-" if seconds < 0 else ""
    minutes, second = divmod(abs(seconds), 60)
    hours, minute = divmod(minutes, 60)
    return f"{sign}{hours}:{minute:02d}:{second:02d}"
