"""Whose journal a run uses: the Comeet account, and adopting the journals kept per API key.

Up to schema version 2 the journal kept one scope per base URL *and API key*, so a rotated
key started from nothing and added every note again. Since version 3 a scope is an account:
the base URL (Comeet's uids are unique across the service) plus the `[journal] scope` name
('' when none), whatever the key. The old scopes stay in the file, marked by their key's
hash and never written again.

Adoption: the first time an account is opened on a base URL, it starts from everything the
old scopes of that base URL hold, in one SQLite transaction (a process killed half way
leaves nothing behind, and the next open does it all again). Several old scopes (a key
rotated before the upgrade) are merged: per uid the fields of the later one win, every note
is kept. The old scopes are copied, not moved, so a second account on the same base URL
(another company, `[journal] scope`) starts from them too; uids of one company never match
another's, so the copies cannot mislead.

Each old scope hashed values under its own random salt. The account keeps the salt of the
most recently used one (so that, in the usual case of one key, nothing changes) and lists the
others in `salts`, for the journal to recognise what they hashed (`Journal.rekey`).
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass

__all__ = ["SCHEMA_V3", "Account", "account", "find_account", "legacy_scopes"]

#: Version 3: scopes are accounts (base URL + name); version 2's per-key scopes are kept,
#: marked by `key_sha256`, for adoption. `salts`: the older salts an account's entries may
#: be hashed with (those of the scopes it adopted).
SCHEMA_V3 = """
CREATE TABLE scopes_v3 (
    id INTEGER PRIMARY KEY,
    base_url TEXT NOT NULL,
    key_sha256 TEXT,
    name TEXT,
    salt BLOB NOT NULL,
    created TEXT NOT NULL,
    UNIQUE (base_url, key_sha256),
    UNIQUE (base_url, name)
);
INSERT INTO scopes_v3 (id, base_url, key_sha256, name, salt, created)
    SELECT id, base_url, key_sha256, NULL, salt, created FROM scopes;
DROP TABLE scopes;
ALTER TABLE scopes_v3 RENAME TO scopes;
CREATE TABLE salts (
    scope INTEGER NOT NULL,
    salt BLOB NOT NULL,
    PRIMARY KEY (scope, salt)
) WITHOUT ROWID
"""
_BATCH = 10_000


@dataclass(frozen=True, slots=True)
class Account:
    """An account's scope: its id, its salt, the older salts of what it adopted."""

    scope: int
    salt: bytes
    older_salts: tuple[bytes, ...] = ()
    #: What adopting old per-key journals did on this open, for the log ('' if nothing).
    adopted: str = ""


def legacy_scopes(conn: sqlite3.Connection, base_url: str) -> list[tuple[int, bytes]]:
    """The per-key scopes (schema version 2) of this base URL: (id, salt), least recent first."""
    rows = conn.execute(
        "SELECT s.id, s.salt, (SELECT max(at) FROM applied a WHERE a.scope = s.id),"
        " (SELECT max(at) FROM notes n WHERE n.scope = s.id)"
        " FROM scopes s WHERE s.base_url = ? AND s.key_sha256 IS NOT NULL",
        (base_url,),
    ).fetchall()
    rows.sort(key=lambda r: (max(r[2] or 0, r[3] or 0), r[0]))
    return [(int(r[0]), bytes(r[1])) for r in rows]


def account(conn: sqlite3.Connection, base_url: str, name: str, created: str) -> Account:
    """The account's scope, created on first use (adopting the old per-key scopes).

    Runs in its own transaction. The logs of confirmations of the old scopes must have been
    folded in before (`Journal.open` does it).
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = find_account(conn, base_url, name)
        if found is None:
            found = _create(conn, base_url, name, created)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return found


def find_account(conn: sqlite3.Connection, base_url: str, name: str) -> Account | None:
    """The account's scope, or None when it was never opened."""
    row = conn.execute(
        "SELECT id, salt FROM scopes WHERE base_url = ? AND name = ?", (base_url, name)
    ).fetchone()
    if row is None:
        return None
    older = conn.execute("SELECT salt FROM salts WHERE scope = ? ORDER BY salt", (row[0],))
    return Account(int(row[0]), bytes(row[1]), tuple(bytes(s) for (s,) in older))


def _create(conn: sqlite3.Connection, base_url: str, name: str, created: str) -> Account:
    old = legacy_scopes(conn, base_url)
    # The most recently used old scope's salt: its fingerprints stay this journal's own.
    salt = old[-1][1] if old else os.urandom(32)
    # A number no entry has ever used (SQLite would reuse that of a scope deleted by hand).
    (scope,) = conn.execute(
        "SELECT 1 + max(coalesce((SELECT max(id) FROM scopes), 0),"
        " coalesce((SELECT max(scope) FROM applied), 0),"
        " coalesce((SELECT max(scope) FROM notes), 0),"
        " coalesce((SELECT max(scope) FROM runs), 0))"
    ).fetchone()
    conn.execute(
        "INSERT INTO scopes (id, base_url, key_sha256, name, salt, created)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (scope, base_url, None, name, salt, created),
    )
    older = tuple(dict.fromkeys(s for _, s in old if s != salt))
    conn.executemany("INSERT INTO salts (scope, salt) VALUES (?, ?)", [(scope, s) for s in older])
    uids = notes = 0
    for legacy, _ in old:  # least recent first: a later scope's fields win
        uids += _merge_applied(conn, legacy, scope)
        notes += conn.execute(
            "INSERT INTO notes (scope, uid, note_fp, state, run, at)"
            " SELECT ?, uid, note_fp, state, run, at FROM notes WHERE scope = ? AND true"
            " ON CONFLICT (scope, uid, note_fp) DO UPDATE SET"
            # 'applied' sorts before 'pending'; the first time it was added is kept.
            " state = min(state, excluded.state),"
            " run = CASE WHEN excluded.at < at THEN excluded.run ELSE run END,"
            " at = min(at, excluded.at)",
            (scope, legacy),
        ).rowcount
    adopted = ""
    if old:
        where = f"{base_url}, scope {name!r}" if name else base_url
        adopted = (
            f"the journal now belongs to the account ({where}), not to an API key: adopted "
            f"the entries of {len(old)} journal(s) kept per API key (candidates with applied "
            f"fields: {uids}, notes: {notes})"
        )
    return Account(int(scope), salt, older, adopted)


def _merge_applied(conn: sqlite3.Connection, legacy: int, scope: int) -> int:
    """Copy an old scope's applied fields into the account, merged per uid; how many uids."""
    count, after = 0, ""
    while True:
        # A batch at a time in uid order, each query done before its rows are written.
        batch = conn.execute(
            "SELECT l.uid, l.fps, l.run, l.at, a.fps, a.run, a.at FROM applied l"
            " LEFT JOIN applied a ON a.scope = ? AND a.uid = l.uid"
            " WHERE l.scope = ? AND l.uid > ? ORDER BY l.uid LIMIT ?",
            (scope, legacy, after, _BATCH),
        ).fetchall()
        if not batch:
            return count
        merged = []
        for uid, fps, run, at, had, had_run, had_at in batch:
            if had is not None and had_at > at:  # what the account holds is the later
                fps, run, at = _dumps({**json.loads(fps), **json.loads(had)}), had_run, had_at
            elif had is not None:
                fps = _dumps({**json.loads(had), **json.loads(fps)})
            merged.append((scope, uid, fps, run, at))
        conn.executemany("INSERT OR REPLACE INTO applied VALUES (?, ?, ?, ?, ?)", merged)
        count += len(merged)
        after = batch[-1][0]


def _dumps(fields: dict[str, str]) -> str:
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=False)
