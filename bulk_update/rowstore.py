"""Rows kept compactly in memory: a chunk of rows is one string, decoded when read.

A million rows as SheetRow objects cost about a gigabyte (a tuple and a str per cell); the
same rows joined into one string per chunk cost about the file's own size. The pipeline
reads a sheet once into a RowStore, plans it, and walks it again to write the report.
What is said about the rows is kept once for all the rows that say it (`Shared`).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from typing import Generic, TypeVar, overload

from .models import SheetRow

__all__ = ["RowStore", "Shared"]

_T = TypeVar("_T")

#: Rows per chunk: large enough that a chunk's bookkeeping is nothing, small enough that
#: decoding one for a single row (`store[i]`) stays cheap.
CHUNK_ROWS = 4096
_CELL = "\x1f"  # ASCII unit separator
_ROW = "\x1e"  # ASCII record separator


class _Chunk:
    __slots__ = ("blob", "numbers", "plain", "size")

    def __init__(self, rows: list[tuple[str, ...]], numbers: array[int], width: int) -> None:
        self.numbers = numbers
        self.size = len(rows)
        blob = _ROW.join(_CELL.join(values) for values in rows)
        # A cell holding a separator itself (nothing a person types) would split wrongly:
        # such a chunk is kept as plain tuples instead.
        exact = blob.count(_CELL) == self.size * (width - 1) and blob.count(_ROW) == self.size - 1
        self.blob: str | None = blob if exact else None
        self.plain: tuple[tuple[str, ...], ...] | None = None if exact else tuple(rows)

    def values(self) -> list[tuple[str, ...]] | tuple[tuple[str, ...], ...]:
        if self.blob is None:
            assert self.plain is not None
            return self.plain
        return [tuple(line.split(_CELL)) for line in self.blob.split(_ROW)]


class RowStore(Sequence[SheetRow]):
    """An append-only sequence of SheetRow, all with `width` cells, stored compactly."""

    def __init__(self, width: int, rows: Iterable[SheetRow] = ()) -> None:
        self.width = width
        self._chunks: list[_Chunk] = []
        self._numeric: dict[int, frozenset[int]] = {}  # by index; only XLSX rows have any
        self._hidden: set[int] = set()  # indexes of rows hidden in an XLSX (few, or none)
        self._pending: list[tuple[str, ...]] = []
        self._pending_numbers: array[int] = array("q")
        self._len = 0
        self._cache: tuple[int, list[SheetRow]] | None = None
        self.extend(rows)

    def append(self, row: SheetRow) -> None:
        if len(row.values) != self.width:
            raise ValueError(f"row {row.number} has {len(row.values)} cells, not {self.width}")
        if row.numeric:
            self._numeric[self._len] = row.numeric
        if row.hidden:
            self._hidden.add(self._len)
        self._pending.append(row.values)
        self._pending_numbers.append(row.number)
        self._len += 1
        if len(self._pending) >= CHUNK_ROWS:
            self._seal()

    def extend(self, rows: Iterable[SheetRow]) -> None:
        for row in rows:
            self.append(row)

    def _seal(self) -> None:
        if self._pending:
            self._chunks.append(_Chunk(self._pending, self._pending_numbers, self.width))
            self._pending, self._pending_numbers = [], array("q")
            self._cache = None

    def __len__(self) -> int:
        return self._len

    def _chunk_rows(self, index: int) -> list[SheetRow]:
        if self._cache is not None and self._cache[0] == index:
            return self._cache[1]
        if index == len(self._chunks):
            values: Sequence[tuple[str, ...]] = self._pending
            numbers: Sequence[int] = self._pending_numbers
        else:
            chunk = self._chunks[index]
            values, numbers = chunk.values(), chunk.numbers
        start = index * CHUNK_ROWS
        numeric = self._numeric
        rows = [
            SheetRow(number, cells, numeric.get(start + i, frozenset()))
            for i, (number, cells) in enumerate(zip(numbers, values, strict=True))
        ]
        if self._hidden:
            rows = [
                replace(row, hidden=True) if start + i in self._hidden else row
                for i, row in enumerate(rows)
            ]
        self._cache = (index, rows)
        return rows

    def numbered(self) -> Iterator[tuple[int, tuple[str, ...]]]:
        """(row number, cells) of every row, without making SheetRow objects (the report)."""
        for index, chunk in enumerate(self._chunks):
            if self._cache is not None and self._cache[0] == index:
                yield from ((row.number, row.values) for row in self._cache[1])
            else:
                yield from zip(chunk.numbers, chunk.values(), strict=True)
        yield from zip(self._pending_numbers, self._pending, strict=True)

    def chunks(self) -> Iterator[list[SheetRow]]:
        """The rows, a chunk at a time (the fastest way through them)."""
        for index in range(len(self._chunks) + bool(self._pending)):
            yield self._chunk_rows(index)

    def __iter__(self) -> Iterator[SheetRow]:
        for rows in self.chunks():
            yield from rows

    @overload
    def __getitem__(self, index: int) -> SheetRow: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[SheetRow]: ...
    def __getitem__(self, index: int | slice) -> SheetRow | Sequence[SheetRow]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._len))]
        if index < 0:
            index += self._len
        if not 0 <= index < self._len:
            raise IndexError("row index out of range")
        return self._chunk_rows(index // CHUNK_ROWS)[index % CHUNK_ROWS]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, str):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"RowStore({self._len} rows of {self.width} cells)"


class Shared(Generic[_T]):
    """One object for equal values: a million rows that say the same thing hold it once.

    Calling it with a value returns the equal value it was first given (or the value
    itself, remembered). It remembers at most `limit` values and then starts afresh: on a
    sheet whose every row says something else, sharing gains nothing and a table of a
    million values must not pile up.
    """

    def __init__(self, limit: int = 4096) -> None:
        self.limit = limit
        self._known: dict[_T, _T] = {}

    def __call__(self, value: _T) -> _T:
        known = self._known.get(value)
        if known is not None:
            return known
        if len(self._known) >= self.limit:
            self._known.clear()
        self._known[value] = value
        return value
