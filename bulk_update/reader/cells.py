"""One cell value as openpyxl gives it -> the text a person sees in a spreadsheet program."""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal

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
