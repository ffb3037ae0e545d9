"""The confirmations and notes store: per uid, the fingerprints of the values last applied,
and the notes added (or about to be sent), written from the records of the log of
confirmations (`confirmlog`) and read a bounded number of uids per query."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..confirmlog import Record, fields_json

__all__ = ["NoteEntry", "has_json_patch", "select_uids", "write_records"]

#: uids per `IN (...)` query: far below SQLite's variable limit, large enough to be few.
_UIDS_PER_QUERY = 500


@dataclass(frozen=True, slots=True)
class NoteEntry:
    """A note the journal knows for a uid: 'applied', or 'pending' (sent, never confirmed),
    and the run and time (aware, UTC) it was added or sent."""

    state: str
    run: int
    at: datetime


def has_json_patch(conn: sqlite3.Connection) -> bool:
    """Whether this SQLite has JSON functions (built in since 3.38): recording a row then
    merges its fingerprints in one statement instead of reading them first."""
    try:
        merged = conn.execute("""SELECT json_patch('{"a":"1"}', '{"b":"2"}')""").fetchone()
    except sqlite3.OperationalError:  # no such function
        return False
    return bool(merged[0] == '{"a":"1","b":"2"}')


def select_uids(
    conn: sqlite3.Connection, scope: int, select: str, uids: list[str]
) -> Iterator[tuple[Any, ...]]:
    """The rows of `select` for these uids of this scope, a chunk of uids per query."""
    for start in range(0, len(uids), _UIDS_PER_QUERY):
        chunk = uids[start : start + _UIDS_PER_QUERY]
        marks = ",".join("?" * len(chunk))
        yield from conn.execute(
            f"{select} WHERE scope = ? AND uid IN ({marks})", (scope, *chunk)
        ).fetchall()


def write_records(
    conn: sqlite3.Connection, scope: int, records: Sequence[Record], *, json_patch: bool
) -> None:
    """Store logged records, in order (a later row's field wins), in the open transaction.

    A record is [uid, fields, note fingerprint or None, run id, unix time]: a confirmed
    row, or, with fields None, a note about to be sent.
    """
    # uid -> (its fields, their JSON when one record wrote them, run, time)
    merged: dict[str, tuple[Mapping[str, str], str | None, int, int]] = {}
    notes: list[tuple[int, str, bytes, int, int]] = []
    pending: list[tuple[int, str, bytes, int, int]] = []
    for record in records:
        uid, fields, note_fp, run_id, at = record[:5]
        if fields is None:
            pending.append((scope, uid, bytes.fromhex(note_fp), run_id, at))
            continue
        if fields:
            known = merged.get(uid)
            if known:
                merged[uid] = ({**known[0], **fields}, None, run_id, at)
            else:
                merged[uid] = (fields, record[5] if len(record) > 5 else None, run_id, at)
        if note_fp is not None:
            notes.append((scope, uid, bytes.fromhex(note_fp), run_id, at))
    if pending:  # before the confirmations: a note confirmed in the same batch wins
        conn.executemany(
            "INSERT OR IGNORE INTO notes (scope, uid, note_fp, state, run, at)"
            " VALUES (?, ?, ?, 'pending', ?, ?)",
            pending,
        )
    if merged and json_patch:
        # The merge in SQLite itself: one statement however many rows.
        conn.executemany(
            "INSERT INTO applied (scope, uid, fps, run, at) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (scope, uid) DO UPDATE SET"
            " fps = json_patch(fps, excluded.fps), run = excluded.run, at = excluded.at",
            [
                (scope, uid, text or fields_json(f), run_id, at)
                for uid, (f, text, run_id, at) in merged.items()
            ],
        )
    elif merged:
        # An SQLite without JSON functions: read, merge, write back.
        for uid, fps in select_uids(conn, scope, "SELECT uid, fps FROM applied", list(merged)):
            fields, _, run_id, at = merged[uid]
            merged[uid] = ({**json.loads(fps), **fields}, None, run_id, at)
        conn.executemany(
            "INSERT OR REPLACE INTO applied (scope, uid, fps, run, at) VALUES (?, ?, ?, ?, ?)",
            [
                (scope, uid, text or fields_json(f), run_id, at)
                for uid, (f, text, run_id, at) in merged.items()
            ],
        )
    if notes:
        conn.executemany(
            "INSERT INTO notes (scope, uid, note_fp, state, run, at)"
            " VALUES (?, ?, ?, 'applied', ?, ?) ON CONFLICT (scope, uid, note_fp)"
            " DO UPDATE SET state = 'applied', run = excluded.run, at = excluded.at",
            notes,
        )
