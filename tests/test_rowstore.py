"""RowStore: rows kept as one string per chunk give back exactly the rows put in."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bulk_update import rowstore
from bulk_update.models import SheetRow
from bulk_update.rowstore import RowStore

# Any text, the separators the store uses inside included.
CELL = st.text(alphabet=st.characters(codec="utf-8"), max_size=8) | st.sampled_from(
    ["\x1f", "\x1e", "a\x1fb", "", "AE.1"]
)


def rows_of(width: int, count: int) -> list[SheetRow]:
    return [
        SheetRow(n + 2, tuple(f"r{n}c{c}" for c in range(width)), frozenset({0} if n % 3 else ()))
        for n in range(count)
    ]


@settings(max_examples=60, deadline=None)
@given(
    width=st.integers(1, 5),
    data=st.data(),
    chunk=st.integers(1, 7),
)
def test_gives_back_every_row_exactly(width: int, data: st.DataObject, chunk: int) -> None:
    cells = data.draw(st.lists(st.tuples(*[CELL] * width), max_size=30))
    rows = [
        SheetRow(i * 2 + 3, values, frozenset({i % width}) if i % 2 else frozenset())
        for i, values in enumerate(cells)
    ]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(rowstore, "CHUNK_ROWS", chunk)
        store = RowStore(width, rows)
        assert list(store) == rows
        assert len(store) == len(rows)
        assert [store[i] for i in range(len(rows))] == rows
        assert [store[-i] for i in range(1, len(rows) + 1)] == rows[::-1]
        assert list(store[1:5]) == rows[1:5]
        assert list(store.numbered()) == [(r.number, r.values) for r in rows]
        assert [row for chunk_rows in store.chunks() for row in chunk_rows] == rows
        assert store == rows


def test_a_chunk_with_a_separator_in_a_cell_is_kept_plain() -> None:
    rows = [SheetRow(2, ("AE.1", "a\x1fb")), SheetRow(3, ("AE.2", "c\x1ed"))]
    store = RowStore(2, rows)
    store._seal()  # the pending rows become a chunk
    assert list(store) == rows
    assert list(store.numbered()) == [(2, ("AE.1", "a\x1fb")), (3, ("AE.2", "c\x1ed"))]


def test_rows_are_stored_as_one_string_per_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rowstore, "CHUNK_ROWS", 100)
    store = RowStore(3, rows_of(3, 250))
    assert len(store._chunks) == 2 and len(store._pending) == 50
    assert all(isinstance(c.blob, str) and c.plain is None for c in store._chunks)
    assert store[149] == rows_of(3, 250)[149]
    assert store[249].number == 251


def test_refuses_a_row_of_another_width() -> None:
    store = RowStore(2)
    with pytest.raises(ValueError, match="row 7 has 3 cells, not 2"):
        store.append(SheetRow(7, ("a", "b", "c")))


def test_index_out_of_range() -> None:
    store = RowStore(1, rows_of(1, 3))
    with pytest.raises(IndexError):
        store[3]
    with pytest.raises(IndexError):
        store[-4]


def test_shared_gives_one_object_for_equal_values_and_starts_afresh_past_its_limit() -> None:
    shared = rowstore.Shared[str](limit=2)
    first = shared("".join(["say", " this"]))
    again = "".join(["say", " this"])
    assert again is not first and shared(again) is first
    shared("other")
    shared("a third")  # past the limit: what was kept is forgotten
    assert shared(again) is again
