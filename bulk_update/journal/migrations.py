"""The journal file's schema and its migrations: every version this one reads, brought to
the current one (`SCHEMA_VERSION`) in one transaction when the journal opens.

The version is SQLite's `user_version`. A file of a newer version is refused (it may hold
what this version would not keep); a column that older versions never name is added without
a new version, so that they can still use the file.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from ..accounts import SCHEMA_V3
from ..confirmlog import fields_json
from ..errors import CannotStartError

__all__ = ["SCHEMA_VERSION", "has_run_config", "migrate", "too_new"]

SCHEMA_VERSION = 3

# WITHOUT ROWID: the primary key is the table's only b-tree, so each entry is stored once
# (a rowid table would store it twice, in the table and in the key's index). Fingerprints
# are raw 32-byte blobs (half the size of hex) and `at` is unix seconds, for the same reason.
_SCHEMA_V1 = """
CREATE TABLE scopes (
    id INTEGER PRIMARY KEY,
    base_url TEXT NOT NULL,
    key_sha256 TEXT NOT NULL,
    salt BLOB NOT NULL,
    created TEXT NOT NULL,
    UNIQUE (base_url, key_sha256)
);
CREATE TABLE applied (
    scope INTEGER NOT NULL,
    uid TEXT NOT NULL,
    field TEXT NOT NULL,
    fp BLOB NOT NULL,
    run INTEGER NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (scope, uid, field)
) WITHOUT ROWID;
CREATE TABLE notes (
    scope INTEGER NOT NULL,
    uid TEXT NOT NULL,
    note_fp BLOB NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'applied')),
    run INTEGER NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (scope, uid, note_fp)
) WITHOUT ROWID;
CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    scope INTEGER NOT NULL,
    started TEXT NOT NULL,
    finished TEXT,
    sheet TEXT NOT NULL,
    report TEXT,
    dry_run INTEGER NOT NULL,
    full INTEGER NOT NULL,
    pid INTEGER NOT NULL,
    status TEXT NOT NULL,
    counts TEXT NOT NULL DEFAULT '{}',
    duration_s REAL
);
CREATE INDEX runs_started ON runs (started);
"""
# Version 2: one row per uid, its fields' fingerprints in one JSON object (dotted path ->
# 64 hex digits). Confirming a row writes one row instead of one per field (a third of the
# time), and a re-run reads one row per uid. The file is about a quarter larger (hex text
# instead of 32-byte blobs, less the scope and uid that version 1 repeated per field).
_SCHEMA_V2 = """
CREATE TABLE applied_v2 (
    scope INTEGER NOT NULL,
    uid TEXT NOT NULL,
    fps TEXT NOT NULL,
    run INTEGER NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (scope, uid)
) WITHOUT ROWID
"""


def _to_v2(conn: sqlite3.Connection) -> None:
    """Version 1's rows per field become one row per uid (in Python: no JSON1 needed)."""
    conn.execute(_SCHEMA_V2)
    rows = conn.execute(
        "SELECT scope, uid, field, fp, run, at FROM applied ORDER BY scope, uid"
    )  # the primary key's order: no sort
    batch: list[tuple[int, str, str, int, int]] = []
    key: tuple[int, str] | None = None
    fps: dict[str, str] = {}
    run = at = 0

    def flush() -> None:
        if key is not None:
            batch.append((*key, fields_json(fps), run, at))

    for scope, uid, field_path, fp, field_run, field_at in rows:
        if (scope, uid) != key:
            flush()
            if len(batch) >= 10_000:
                conn.executemany("INSERT INTO applied_v2 VALUES (?, ?, ?, ?, ?)", batch)
                batch.clear()
            key, fps, run, at = (scope, uid), {}, 0, 0
        fps[field_path] = bytes(fp).hex()
        run, at = max(run, field_run), max(at, field_at)
    flush()
    conn.executemany("INSERT INTO applied_v2 VALUES (?, ?, ?, ?, ?)", batch)
    conn.execute("DROP TABLE applied")
    conn.execute("ALTER TABLE applied_v2 RENAME TO applied")


#: user_version -> what brings the file from the previous version to it (a script or a
#: function of the connection, run inside the migration's transaction).
_MIGRATIONS: dict[int, str | Callable[[sqlite3.Connection], None]] = {
    1: _SCHEMA_V1,
    2: _to_v2,
    3: SCHEMA_V3,
}


def migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Bring the schema to SCHEMA_VERSION, in one transaction (safe against a parallel open)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise too_new(path, version)
        for target in range(version + 1, SCHEMA_VERSION + 1):
            migration = _MIGRATIONS[target]
            if callable(migration):
                migration(conn)
            else:
                # executescript would COMMIT first; run the statements one by one instead.
                for statement in migration.split(";"):
                    if statement.strip():
                        conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {target}")
        if not has_run_config(conn):
            # A column added, not a new version: a nullable column that older versions
            # never name leaves them able to read and write the file, so they should not
            # refuse it as "newer". Runs recorded before it say NULL: not recorded.
            conn.execute("ALTER TABLE runs ADD COLUMN config TEXT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def has_run_config(conn: sqlite3.Connection) -> bool:
    """Whether the runs table has its `config` column (the config file each run read)."""
    return any(row[1] == "config" for row in conn.execute("PRAGMA table_info(runs)"))


def too_new(path: Path, version: int) -> CannotStartError:
    return CannotStartError(
        f"the journal {path} was written by a newer bulk-update "
        f"(schema {version}, this one reads {SCHEMA_VERSION})",
        fix="upgrade bulk-update, or use another --state-dir",
    )
