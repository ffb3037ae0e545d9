"""The journal's log of confirmations: its lines, its replay, its one writer."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from bulk_update.confirmlog import ConfirmLog, fields_json

_FP = st.binary(min_size=32, max_size=32).map(bytes.hex)


@given(st.dictionaries(st.text(), _FP, max_size=12))
def test_fields_json_is_json_dumps(fields: dict[str, str]) -> None:
    expected = json.dumps(fields, separators=(",", ":"), ensure_ascii=False)
    assert fields_json(fields) == expected
    assert fields_json(fields) == expected  # the remembered keys give the same text


@given(
    st.lists(
        st.tuples(
            st.text(),
            st.none() | st.dictionaries(st.text(), _FP, max_size=5),
            _FP,
            st.booleans(),
            st.integers(0, 2**40),
            st.integers(0, 2**40),
        ),
        max_size=20,
    )
)
def test_what_is_appended_is_recovered_in_order(
    rows: list[tuple[str, dict[str, str] | None, str, bool, int, int]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        records = [
            [uid, fields, note if (fields is None or with_note) else None, run, at]
            for uid, fields, note, with_note, run, at in rows
        ]
        writer = ConfirmLog(Path(tmp) / "confirmed-1.log")
        assert writer.take()
        # Half with the fields' JSON already made (as the journal passes them), half without.
        writer.append(
            [[*r, fields_json(r[1])] if r[1] and i % 2 else r for i, r in enumerate(records)]
        )
        writer.close()
        reader = ConfirmLog(Path(tmp) / "confirmed-1.log")
        assert reader.recover() == records
        reader.clear()
        assert reader.recover() == []
        reader.close()


def test_one_writer_at_a_time(tmp_path: Path) -> None:
    path = tmp_path / "confirmed-1.log"
    first, second = ConfirmLog(path), ConfirmLog(path)
    assert first.take() and first.writing
    assert not second.take() and not second.writing
    assert second.recover() is None  # a live writer's log is left alone
    first.close()
    assert second.recover() == [] and second.writing
    second.close()
