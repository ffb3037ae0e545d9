"""Reading a CSV with pyarrow, a block at a time, as the reader reads it (columnar's input)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..reader import HeaderLayout, header_layout
from ..reader.cells import PY_SPACE, STRIPPED, strip_cell

#: Bytes of the file parsed per block: a few tens of thousands of rows.
BLOCK_BYTES = 4 << 20


class Unsupported(Exception):
    """The sheet has something this path does not do exactly: the general path takes it."""


def re2(pattern: str) -> str:
    r"""A Python `re` pattern for `fullmatch` as an anchored RE2 pattern.

    Python's `\s` is Unicode white space, RE2's ASCII only, so it is spelled out; other
    classes whose meaning differs (\d \w \b and their negations) are refused.
    """
    out: list[str] = []
    in_class = False
    chars = iter(pattern)
    for char in chars:
        if char == "\\":
            escaped = next(chars)
            if escaped == "s":
                spelled = "".join(f"\\x{{{ord(c):04x}}}" for c in PY_SPACE)
                out.append(spelled if in_class else f"[{spelled}]")
                continue
            if escaped in "SdDwWbB":
                raise ValueError(f"\\{escaped} has another meaning in RE2: {pattern!r}")
            out.append(char + escaped)
            continue
        if char == "[" and not in_class:
            in_class = True
        elif char == "]" and in_class:
            in_class = False
        out.append(char)
    return f"^(?:{''.join(out)})$"


def _csv_options(
    delimiter: str, names: Sequence[str] | None, include: Sequence[str] | None = None
) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.csv as pv

    def refuse(row: Any) -> str:
        return "error"  # fewer or more cells than headers: the general path pads or refuses

    return {
        "read_options": pv.ReadOptions(block_size=BLOCK_BYTES, use_threads=True),
        "parse_options": pv.ParseOptions(
            delimiter=delimiter,
            newlines_in_values=True,
            ignore_empty_lines=False,  # an empty line still counts as a row, as in Excel
            invalid_row_handler=refuse,
        ),
        "convert_options": pv.ConvertOptions(
            column_types=dict.fromkeys(names or (), pa.string()),
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
            null_values=[],
            include_columns=list(include) if include else None,
        ),
    }


def read_layout(path: Path, delimiter: str) -> tuple[tuple[str, ...], HeaderLayout]:
    """The first line's cells as pyarrow names its columns, and the reader's layout of them.

    The reader looks further down for a header under blank lines; pyarrow takes the first
    line as the header, so such a sheet is Unsupported here.
    """
    import pyarrow.csv as pv

    with pv.open_csv(path, **_csv_options(delimiter, None)) as reader:
        raw = tuple(reader.schema.names)
    stripped = [strip_cell(h) for h in raw]  # as the reader strips every cell
    if not any(stripped):
        raise Unsupported("a blank first line: the header is further down")
    return raw, header_layout(path.name, stripped)


def stripped_column(path: Path, delimiter: str, names: Sequence[str], name: str) -> Any:
    """The column `name` alone, its cells stripped as the reader strips them (chunked)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pv

    with pv.open_csv(path, **_csv_options(delimiter, names, [name])) as reader:
        chunks = [pc.utf8_trim(batch.column(0), characters=STRIPPED) for batch in reader]
    return pa.chunked_array(chunks, pa.string())


def batches(path: Path, delimiter: str, names: Sequence[str]) -> Iterator[Any]:
    """The file's rows, a block (a pyarrow RecordBatch of strings) at a time."""
    import pyarrow.csv as pv

    with pv.open_csv(path, **_csv_options(delimiter, names)) as reader:
        yield from reader


def joined(strings: Any) -> memoryview:
    """A string array's values back to back, as arrow holds them (no copy)."""
    import pyarrow as pa

    if isinstance(strings, pa.ChunkedArray):
        strings = strings.combine_chunks()
    _, offsets, data = strings.buffers()
    if data is None:
        return memoryview(b"")
    at = memoryview(offsets).cast("i")  # int32 offsets
    return memoryview(data)[at[strings.offset] : at[strings.offset + len(strings)]]


def may_end_in_open_quote(path: Path, last_cell: str, delimiter: str) -> bool:
    """True when the file may end inside a quoted cell (the reader refuses that; the
    general path then says so): pyarrow reads the rest of the file into the last cell,
    as the csv module does, so the file ends with that cell, quotes doubled, after a quote
    that starts a cell.
    """
    tail = ('"' + last_cell.replace('"', '""')).encode("utf-8")
    with path.open("rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        if size < len(tail):
            return False
        fh.seek(max(size - len(tail) - 1, 0))
        end = fh.read()
    if not end.endswith(tail):
        return False
    return len(end) == len(tail) or end[:1] in (delimiter.encode(), b"\r", b"\n")
