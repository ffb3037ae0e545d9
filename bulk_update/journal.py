"""SQLite: what was applied, for re-runs and resume; and the run lock (contract section 6).

The journal lives in `state_dir/journal.sqlite3`. Everything in it belongs to a *scope*: one
Comeet account, that is a base URL plus the `[journal] scope` name, whatever the API key
(`accounts` says why, and how the scopes per API key of schema version 2 are adopted). Per
scope and uid it keeps one row: for each field, a keyed fingerprint of the value last
applied (a JSON object, so that confirming a row writes one row, not one per field); per uid
the notes added (with the run and time, for the row that leaves one out to say when); and
one row per run for `history`.

Privacy: the file holds no candidate data. Values are stored only as keyed BLAKE2b hashes
(a MAC) under a random salt of the scope: a plain hash of a phone number or an email could
be reversed by trying every candidate value, and the salt also defeats tables computed in
advance. What remains is uids, field paths, fingerprints, times, sheet, report and config
paths and the base URL.

Crash safety: every write is durable before the method returns. Confirmed rows
(`record_applied_many`) are appended to the scope's log of confirmations (`confirmlog`) with
one write, and folded into SQLite a few hundred at a time, before any read and when the
journal closes; a log left by a killed process is folded in by the next one to open the
journal. Everything else is its own SQLite transaction.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import filelock

from .accounts import SCHEMA_V3, account, find_account, legacy_scopes
from .confirmlog import ConfirmLog, Record, fields_json, is_fingerprint
from .errors import CannotStartError, LockError
from .records import kept_report

logger = logging.getLogger(__name__)

__all__ = [
    "JOURNAL_FILE",
    "Journal",
    "NoteEntry",
    "RunLock",
    "RunRecord",
    "process_alive",
    "read_runs",
]

JOURNAL_FILE = "journal.sqlite3"
SCHEMA_VERSION = 3
#: uids per `IN (...)` query: far below SQLite's variable limit, large enough to be few.
_CHUNK = 500
#: The log of confirmations is folded into SQLite when it holds this many rows, or when the
#: last fold is this old (seconds): a few milliseconds of work at a time, a few hundred
#: rows per transaction instead of one or two.
_FOLD_ROWS = 500
_FOLD_S = 1.0
#: Canonical JSON: json.dumps(value, sort_keys=True, separators=(",", ":"),
#: ensure_ascii=False), with the encoder built once rather than per call.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
_FINAL_STATUSES = frozenset({"finished", "aborted", "interrupted"})

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


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    # One fixed format in UTC, so that the text sorts in time order (ORDER BY started).
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def _key_sha256(api_key: str) -> str:
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()


#: Any number of fingerprints (Journal.fingerprint: 64 lowercase hex digits), end to end.
_HEX64S = re.compile(r"(?:[0-9a-f]{64})*")


def _check_fps(fields: Mapping[str, str]) -> None:
    for fp in fields.values():
        _fp_bytes(fp)


def _fp_bytes(fingerprint: str) -> bytes:
    if not is_fingerprint(fingerprint):
        raise ValueError("a fingerprint is 64 lowercase hex digits (Journal.fingerprint)")
    return bytes.fromhex(fingerprint)


def process_alive(pid: int) -> bool:
    """True when a process with this pid exists (possibly owned by another user)."""
    if pid <= 0:
        return False  # os.kill(0, ...) would signal our own process group
    if sys.platform == "win32":
        return _windows_process_alive(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists; we may just not signal it
    return True


if sys.platform == "win32":

    def _windows_process_alive(pid: int) -> bool:
        # On Windows os.kill(pid, 0) would end the process (TerminateProcess): ask the system.
        import ctypes

        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
        handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return ctypes.get_last_error() == 5  # ERROR_ACCESS_DENIED: it exists, not ours
        try:
            code = ctypes.c_ulong()
            if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
                return True
            return code.value == 259  # STILL_ACTIVE
        finally:
            kernel32.CloseHandle(handle)


@dataclass(frozen=True, slots=True)
class NoteEntry:
    """A note the journal knows for a uid: 'applied', or 'pending' (sent, never confirmed),
    and the run and time (aware, UTC) it was added or sent."""

    state: str
    run: int
    at: datetime


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One run as the journal remembers it (for `history`). Times are aware, in UTC."""

    id: int
    started: datetime
    finished: datetime | None
    sheet: Path
    report: Path | None
    dry_run: bool
    full: bool
    status: str  # running | finished | aborted | interrupted | killed
    counts: dict[str, int] = field(default_factory=dict)
    duration_s: float | None = None
    base_url: str = ""
    pid: int = 0
    #: The config file the run read; "" none (the defaults); None: not recorded (a run
    #: recorded before the journal kept it).
    config: str | None = None
    #: The copy of a real run's results sheet kept in the state dir (records.py), if any:
    #: the record of what was sent, whatever became of `report` since.
    kept_report: Path | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (times as ISO 8601, paths as text)."""
        return {
            "id": self.id,
            "started": self.started.isoformat(),
            "finished": None if self.finished is None else self.finished.isoformat(),
            "sheet": str(self.sheet),
            "report": None if self.report is None else str(self.report),
            "dry_run": self.dry_run,
            "full": self.full,
            "status": self.status,
            "counts": dict(self.counts),
            "duration_s": self.duration_s,
            "base_url": self.base_url,
            "pid": self.pid,
            "config": self.config,
            "kept_report": None if self.kept_report is None else str(self.kept_report),
        }


class Journal:
    """SQLite journal in `state_dir/journal.sqlite3`.

    WAL mode, synchronous=NORMAL, busy_timeout 5000 ms.

    Open it with `Journal.open(...)`; one instance serves one scope (an account: base URL
    and `[journal] scope`).
    Calls are synchronous and cheap enough for the event loop: recording a row takes tens of
    microseconds, and the fold that follows every few hundred rows a few milliseconds.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        *,
        path: Path,
        scope: int,
        salt: bytes,
        clock: Callable[[], datetime] = _utcnow,
        older_salts: Sequence[bytes] = (),
    ) -> None:
        self._conn = conn
        self._lock = threading.RLock()
        self._scope = scope
        self._salt = salt
        # Keying BLAKE2b costs a whole compression of the key block; copying a hasher that
        # has done it once halves the cost of each fingerprint (8 per confirmed row).
        self._keyed = hashlib.blake2b(key=salt, digest_size=32)
        #: The salts of the per-key journals this account adopted (see `rekey`).
        self._older = tuple(hashlib.blake2b(key=s, digest_size=32) for s in older_salts)
        self._clock = clock
        self.path = path
        self._log = ConfirmLog(path.parent / f"confirmed-{scope}.log")
        self._unfolded: list[Record] = []  # in the log, not yet in SQLite
        self._folded_at = time.monotonic()
        #: Whether this SQLite has JSON functions (built in since 3.38): recording a row
        #: then merges its fingerprints in one statement instead of reading them first.
        self.json_patch = _has_json_patch(conn)

    @classmethod
    def open(
        cls,
        state_dir: Path,
        *,
        base_url: str,
        journal_scope: str | None = None,
        api_key: str | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> Journal:
        """Open (creating when needed) the journal of `state_dir` for this Comeet account.

        The account is the base URL plus `journal_scope` (`[journal] scope`, for several
        companies on one machine). `api_key` is no longer used (the journal does not depend
        on the key since schema version 3); it is accepted for callers written before.
        The first open of an account adopts what the journals kept per API key held for its
        base URL (`accounts`) and logs what it adopted.
        Creates the dir (mode 0700) and the file (0600). Raises CannotStartError when the
        file is not a journal this version can read.
        """
        del api_key
        state_dir = _private_dir(Path(state_dir))
        path = state_dir / JOURNAL_FILE
        # Create the file ourselves so that it is private from the first byte; SQLite gives
        # the -wal and -shm files the same permissions as the database file.
        try:
            with contextlib.suppress(FileExistsError):
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
                os.chmod(path, 0o600)
        except OSError as exc:
            raise _unusable(state_dir, exc) from None
        try:
            conn = sqlite3.connect(path, timeout=5.0, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise _unreadable(path, exc) from None
        try:
            conn.execute("PRAGMA busy_timeout = 5000")
            conn.execute("PRAGMA journal_mode = WAL")
            # With WAL, NORMAL writes each commit to the WAL file (the OS page cache) before
            # returning and skips only the fsync: a crash of the process, however abrupt
            # (SIGKILL, os._exit), loses no committed transaction; only a power cut or an OS
            # crash may lose the last ones, and even then the file stays consistent.
            conn.execute("PRAGMA synchronous = NORMAL")
            # A checkpoint (folding the WAL into the file) syncs the disk twice: every 10,000
            # pages (40 MB of WAL) rather than SQLite's 1,000, it costs a fast run a fifth
            # as much. The last connection to close checkpoints and removes the WAL.
            conn.execute("PRAGMA wal_autocheckpoint = 10000")
            _migrate(conn, path)
            base_url, name = base_url.rstrip("/"), journal_scope or ""
            found = find_account(conn, base_url, name)
            if found is None:
                # Adopting copies the per-key journals: first fold in what a process killed
                # before the upgrade left in their logs of confirmations.
                for legacy, salt in legacy_scopes(conn, base_url):
                    if (state_dir / f"confirmed-{legacy}.log").exists():
                        cls(conn, path=path, scope=legacy, salt=salt, clock=clock)._recover()
                found = account(conn, base_url, name, _iso(clock()))
                if found.adopted:
                    logger.info("%s", found.adopted, extra={"event": "journal_adopted_per_key"})
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise _unreadable(path, exc) from None
        except OSError as exc:
            conn.close()
            raise _unusable(state_dir, exc) from None
        except BaseException:
            conn.close()
            raise
        journal = cls(
            conn,
            path=path,
            scope=found.scope,
            salt=found.salt,
            clock=clock,
            older_salts=found.older_salts,
        )
        try:
            journal._recover()
        except sqlite3.Error as exc:
            journal.close()
            raise _unreadable(path, exc) from None
        except OSError as exc:
            journal.close()
            raise _unusable(state_dir, exc) from None
        return journal

    def close(self) -> None:
        """Fold the log in and close (the last connection to close folds the WAL in)."""
        with self._lock:
            try:
                self._fold()
            finally:
                self._log.close()
                self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- fingerprints and lookups -------------------------------------------------------

    def fingerprint(self, value: Any) -> str:
        """Keyed BLAKE2b (this scope's salt) of the value, as hex.

        A re-run of a large sheet fingerprints every cell, and keyed BLAKE2b is a MAC at
        a third of HMAC-SHA256's cost. Text (nearly every cell) is hashed as its UTF-8
        bytes behind a 0 byte; anything else as canonical JSON behind a 1 byte, so the two
        forms can never collide.
        """
        if isinstance(value, str):
            data = b"\x00" + value.encode("utf-8")
        else:
            data = b"\x01" + _CANONICAL.encode(value).encode("utf-8")
        hasher = self._keyed.copy()
        hasher.update(data)
        return hasher.hexdigest()

    def applied(self, uid: str) -> dict[str, str]:
        """Dotted field path -> fingerprint last applied to this uid (notes not included)."""
        return self.applied_many([uid])[uid]

    def applied_many(self, uids: Iterable[str]) -> dict[str, dict[str, str]]:
        """`applied` for many uids in few queries; every uid asked for is a key."""
        wanted = list(dict.fromkeys(uids))
        found: dict[str, dict[str, str]] = {uid: {} for uid in wanted}
        loads = json.loads
        with self._lock:
            self._fold()
            for uid, fps in self._select("SELECT uid, fps FROM applied", wanted):
                found[uid] = loads(fps)
        return found

    def notes(self, uid: str) -> dict[str, str]:
        """Note fingerprint -> 'applied', or 'pending' (sent, never confirmed)."""
        return self.notes_many([uid])[uid]

    def notes_many(self, uids: Iterable[str]) -> dict[str, dict[str, str]]:
        """`notes` for many uids in few queries; every uid asked for is a key."""
        wanted = list(dict.fromkeys(uids))
        found: dict[str, dict[str, str]] = {uid: {} for uid in wanted}
        with self._lock:
            self._fold()
            for uid, note_fp, state in self._select(
                "SELECT uid, note_fp, state FROM notes", wanted
            ):
                found[uid][note_fp.hex()] = state
        return found

    def note_entries_many(self, uids: Iterable[str]) -> dict[str, dict[str, NoteEntry]]:
        """`notes_many` with the run and time of each note; every uid asked for is a key."""
        wanted = list(dict.fromkeys(uids))
        found: dict[str, dict[str, NoteEntry]] = {uid: {} for uid in wanted}
        with self._lock:
            self._fold()
            for uid, note_fp, state, run, at in self._select(
                "SELECT uid, note_fp, state, run, at FROM notes", wanted
            ):
                found[uid][note_fp.hex()] = NoteEntry(state, run, datetime.fromtimestamp(at, UTC))
        return found

    def note_entry(
        self, entries: Mapping[str, NoteEntry], note: str
    ) -> tuple[str, NoteEntry | None]:
        """The note's fingerprint, and what `entries` (one uid's) know of it: the first time
        it was added, else its pending send, else None.

        Recognises the note under the salts of the per-key journals this one adopted too
        (a rotated key had added the note again: both are known, the first one counts).
        """
        own = self.fingerprint(note)
        known = [e for fp in (own, *self._older_fps(note)) if (e := entries.get(fp))]
        if not known:
            return own, None
        applied = [e for e in known if e.state == "applied"]
        return own, min(applied or known, key=lambda e: (e.at, e.run))

    def rekey(self, last: dict[str, str], values: Mapping[str, Any]) -> dict[str, str]:
        """`last` (a uid's `applied`) with each fingerprint that an adopted per-key journal
        took of the row's value (under its own salt) replaced by this journal's own.

        So a field applied with an old key compares equal to the same value now. Nothing to
        do (and no cost) unless this account adopted several per-key journals.
        """
        if self._older:
            for path, fp in last.items():
                value = values.get(path)
                if value is not None and fp in self._older_fps(value):
                    last[path] = self.fingerprint(value)
        return last

    def _older_fps(self, value: Any) -> list[str]:
        """The value's fingerprints under the adopted journals' salts (see `fingerprint`)."""
        if not self._older:
            return []
        if isinstance(value, str):
            data = b"\x00" + value.encode("utf-8")
        else:
            data = b"\x01" + _CANONICAL.encode(value).encode("utf-8")
        fps = []
        for keyed in self._older:
            hasher = keyed.copy()
            hasher.update(data)
            fps.append(hasher.hexdigest())
        return fps

    def _select(self, select: str, uids: list[str]) -> Iterator[tuple[Any, ...]]:
        """The rows of `select` for these uids of this scope, a chunk of uids per query."""
        for start in range(0, len(uids), _CHUNK):
            chunk = uids[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            yield from self._conn.execute(
                f"{select} WHERE scope = ? AND uid IN ({marks})", (self._scope, *chunk)
            ).fetchall()

    # -- recording ------------------------------------------------------------------------
    # Each method is one transaction, committed before it returns (see `open` on why a
    # committed transaction survives the process being killed), or one write to the log.

    def _end(self, verb: str) -> None:
        # An I/O error (disk full) may have made SQLite roll the transaction back already.
        if self._conn.in_transaction:
            self._conn.execute(verb)

    def _commit(self) -> None:
        # No `in_transaction` check here: if SQLite rolled back behind our back, COMMIT
        # must fail loudly rather than let the caller report rows that were not kept.
        try:
            self._conn.execute("COMMIT")
        except BaseException:
            self._end("ROLLBACK")  # leave the connection usable for the next transaction
            raise

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            # IMMEDIATE takes the write lock up front, so busy_timeout applies to it instead
            # of a deferred transaction failing half way when another process writes.
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._end("ROLLBACK")
                raise
            self._commit()

    def start_run(
        self,
        *,
        sheet: Path,
        report: Path | None,
        dry_run: bool,
        full: bool,
        config: Path | None = None,
    ) -> int:
        """Record a run as 'running' (with our pid) and return its id.

        `config`: the config file the run read, None for none (the defaults).
        """
        with self._transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO runs"
                " (scope, started, sheet, report, dry_run, full, pid, status, config)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, 'running', ?)",
                (
                    self._scope,
                    _iso(self._clock()),
                    str(Path(sheet).resolve()),
                    None if report is None else str(Path(report).resolve()),
                    int(dry_run),
                    int(full),
                    os.getpid(),
                    "" if config is None else str(Path(config).resolve()),
                ),
            )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def note_pending(self, uid: str, note_fp: str, run_id: int) -> None:
        """Record that a note is about to be sent: durable before the request goes out.

        Never downgrades a note already 'applied'. Like a confirmation, it goes to the log.
        """
        _fp_bytes(note_fp)
        self._record([[uid, None, note_fp, run_id, self._now_s()]])

    def record_applied(
        self, uid: str, fields: Mapping[str, str], run_id: int, *, note_fp: str | None = None
    ) -> None:
        """The API confirmed a patch: store field -> fingerprint and mark the note applied.

        The fields not in `fields` keep what they had.
        """
        self.record_applied_many([(uid, fields, note_fp)], run_id)

    def record_applied_many(
        self, confirmed: Iterable[tuple[str, Mapping[str, str], str | None]], run_id: int
    ) -> None:
        """`record_applied` for many (uid, fields, note_fp): durable when it returns.

        They go to the log with one write, and into SQLite with the next fold: when the
        log holds `_FOLD_ROWS` rows or the last fold is `_FOLD_S` old, before any read, when
        the run finishes and when the journal closes. (When another live process writes
        this scope's log, they go straight to SQLite, in one transaction.) A uid given
        twice gets both, in order.
        """
        now = self._now_s()
        records: list[Record] = []
        for uid, fields, note_fp in confirmed:
            if fields:
                # Checked together (lengths, then one regex); one by one only to say which
                # is wrong.
                fps = fields.values()
                if not (set(map(len, fps)) == {64} and _HEX64S.fullmatch("".join(fps))):
                    _check_fps(fields)
            if note_fp is not None:
                _fp_bytes(note_fp)
            records.append([uid, dict(fields), note_fp, run_id, now, fields_json(fields)])
        if records:
            self._record(records)

    def _record(self, records: list[Record]) -> None:
        """Log the records (durable on return) and fold when it is time; or, when another
        live process writes this scope's log, write them to SQLite at once."""
        with self._lock:
            if self._log.writing or self._log.take():
                self._log.append(records)
                self._unfolded += records
                if (
                    len(self._unfolded) >= _FOLD_ROWS
                    or time.monotonic() - self._folded_at >= _FOLD_S
                ):
                    try:
                        self._fold()
                    except sqlite3.Error as exc:
                        # The records are safe in the log: the next fold tries again, and
                        # a read, the run's end or closing says so if it fails too.
                        logger.warning("the journal could not fold its log in yet: %s", exc)
            else:
                with self._transaction() as conn:
                    self._write(conn, records)

    def flush(self) -> None:
        """Fold the log into SQLite now (other connections then see every confirmed row)."""
        with self._lock:
            self._fold()

    def _fold(self) -> None:
        if self._unfolded:
            with self._transaction() as conn:
                self._write(conn, self._unfolded)
            self._unfolded = []
            self._log.clear()
        self._folded_at = time.monotonic()

    def _recover(self) -> None:
        """Fold in the log a killed process left (unless its writer is alive)."""
        with self._lock:
            records = self._log.recover()
            if records:
                with self._transaction() as conn:
                    self._write(conn, records)
            if records is not None:
                self._log.clear()
                self._log.close()  # taken again by the first append

    def _write(self, conn: sqlite3.Connection, records: Sequence[Record]) -> None:
        """Store logged records, in order (a later row's field wins), in the open transaction.

        A record is [uid, fields, note fingerprint or None, run id, unix time]: a confirmed
        row, or, with fields None, a note about to be sent.
        """
        # uid -> (its fields, their JSON when one record wrote them, run, time)
        merged: dict[str, tuple[Mapping[str, str], str | None, int, int]] = {}
        notes: list[tuple[int, str, bytes, int, int]] = []
        pending: list[tuple[int, str, bytes, int, int]] = []
        scope = self._scope
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
        if merged and self.json_patch:
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
            for uid, fps in self._select("SELECT uid, fps FROM applied", list(merged)):
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

    def forget_pending(self, uid: str, note_fp: str) -> None:
        """The API surely refused the row (4xx): the pending note was not added."""
        self.flush()  # its 'pending' may still be in the log
        with self._transaction() as conn:
            conn.execute(
                "DELETE FROM notes WHERE scope = ? AND uid = ? AND note_fp = ?"
                " AND state = 'pending'",
                (self._scope, uid, _fp_bytes(note_fp)),
            )

    def finish_run(
        self,
        run_id: int,
        *,
        counts: Mapping[str, int],
        status: str,
        duration_s: float,
    ) -> None:
        """Close a run: status 'finished' | 'aborted' | 'interrupted', counts per outcome."""
        if status not in _FINAL_STATUSES:
            raise ValueError(f"status must be one of {sorted(_FINAL_STATUSES)}, not {status!r}")
        self.flush()
        with self._transaction() as conn:
            conn.execute(
                "UPDATE runs SET finished = ?, status = ?, counts = ?, duration_s = ? WHERE id = ?",
                (
                    _iso(self._clock()),
                    status,
                    json.dumps({str(k): int(v) for k, v in counts.items()}),
                    float(duration_s),
                    run_id,
                ),
            )

    def record_report(self, run_id: int, report: Path) -> None:
        """Where a run's report went, when not where asked (report.put_in_place)."""
        with self._transaction() as conn:
            conn.execute(
                "UPDATE runs SET report = ? WHERE id = ?", (str(Path(report).resolve()), run_id)
            )

    def mark_stale_runs(self, pid_alive: Callable[[int], bool] = process_alive) -> int:
        """Mark 'killed' every 'running' run (of any scope) whose process is gone; how many."""
        with self._lock:
            running = self._conn.execute(
                "SELECT id, pid FROM runs WHERE status = 'running'"
            ).fetchall()
        stale = [(run_id,) for run_id, pid in running if not pid_alive(pid)]
        if stale:
            with self._transaction() as conn:
                conn.executemany(
                    "UPDATE runs SET status = 'killed' WHERE id = ? AND status = 'running'", stale
                )
        return len(stale)

    def runs(self, limit: int = 20) -> list[RunRecord]:
        """The most recent runs first, of every scope in this file."""
        with self._lock:
            return _select_runs(self._conn, limit, self.path.parent)

    def _now_s(self) -> int:
        return int(self._clock().timestamp())


def read_runs(state_dir: Path, *, limit: int = 20) -> list[RunRecord]:
    """The most recent runs recorded in `state_dir`, without credentials (for `history`).

    Opens the journal read-only: a state dir without one gives [] and stays untouched.
    Raises CannotStartError when the file is not a journal this version can read.
    """
    path = Path(state_dir) / JOURNAL_FILE
    if not path.exists():
        return []
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5.0)
    except sqlite3.Error as exc:
        raise _unreadable(path, exc) from None
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == 0:
            return []  # created but never set up: a run that stopped at once
        if version > SCHEMA_VERSION:
            raise _too_new(path, version)
        return _select_runs(conn, limit, Path(state_dir))
    except sqlite3.DatabaseError as exc:
        raise _unreadable(path, exc) from None
    finally:
        conn.close()


def _select_runs(conn: sqlite3.Connection, limit: int, state_dir: Path) -> list[RunRecord]:
    # A journal only read (`history`) may predate the config column.
    config = "r.config" if _has_run_config(conn) else "NULL"
    rows = conn.execute(
        "SELECT r.id, r.started, r.finished, r.sheet, r.report, r.dry_run, r.full,"
        f" r.status, r.counts, r.duration_s, s.base_url, r.pid, {config}"
        " FROM runs r LEFT JOIN scopes s ON s.id = r.scope"
        " ORDER BY r.started DESC, r.id DESC LIMIT ?",
        (limit,),
    ).fetchall()
    return [
        RunRecord(
            id=row[0],
            started=datetime.fromisoformat(row[1]),
            finished=None if row[2] is None else datetime.fromisoformat(row[2]),
            sheet=Path(row[3]),
            report=None if row[4] is None else Path(row[4]),
            dry_run=bool(row[5]),
            full=bool(row[6]),
            status=row[7],
            counts={str(k): int(v) for k, v in json.loads(row[8]).items()},
            duration_s=row[9],
            base_url=row[10] or "",
            pid=row[11],
            config=row[12],
            kept_report=None if row[5] else kept_report(state_dir, row[0]),
        )
        for row in rows
    ]


def _too_new(path: Path, version: int) -> CannotStartError:
    return CannotStartError(
        f"the journal {path} was written by a newer bulk-update "
        f"(schema {version}, this one reads {SCHEMA_VERSION})",
        fix="upgrade bulk-update, or use another --state-dir",
    )


def _unusable(state_dir: Path, exc: OSError) -> CannotStartError:
    return CannotStartError(
        f"the state dir '{state_dir}' cannot be used: {exc.strerror or exc}",
        fix="give a folder you can write to with --state-dir",
    )


def _private_dir(state_dir: Path) -> Path:
    """The state dir, created private (0700) when missing; CannotStartError if unusable."""
    try:
        if not state_dir.exists():
            state_dir.mkdir(parents=True, mode=0o700)
            os.chmod(state_dir, 0o700)  # mkdir's mode is filtered by the umask
        if not state_dir.is_dir():
            raise NotADirectoryError(20, "not a folder")
    except OSError as exc:
        raise _unusable(state_dir, exc) from None
    return state_dir


def _unreadable(path: Path, exc: sqlite3.Error) -> CannotStartError:
    return CannotStartError(
        f"the journal {path} cannot be opened ({exc})",
        fix="move that file away (the next run then sends every row again), "
        "or use another --state-dir",
    )


def _has_json_patch(conn: sqlite3.Connection) -> bool:
    try:
        merged = conn.execute("""SELECT json_patch('{"a":"1"}', '{"b":"2"}')""").fetchone()
    except sqlite3.OperationalError:  # no such function
        return False
    return bool(merged[0] == '{"a":"1","b":"2"}')


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Bring the schema to SCHEMA_VERSION, in one transaction (safe against a parallel open)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise _too_new(path, version)
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
        if not _has_run_config(conn):
            # A column added, not a new version: a nullable column that older versions
            # never name leaves them able to read and write the file, so they should not
            # refuse it as "newer". Runs recorded before it say NULL: not recorded.
            conn.execute("ALTER TABLE runs ADD COLUMN config TEXT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _has_run_config(conn: sqlite3.Connection) -> bool:
    """Whether the runs table has its `config` column (the config file each run read)."""
    return any(row[1] == "config" for row in conn.execute("PRAGMA table_info(runs)"))


class RunLock:
    """One run at a time per state dir and API key.

    A `filelock.FileLock` on `state_dir/run-<sha256(key)[:16]>.lock` (an advisory `flock` on
    Linux and macOS, `LockFileEx` on Windows: the OS drops it when the holder dies, however it
    dies). The holder's pid goes into `run-<…>.pid` beside it, since Windows lets no other
    process read a locked file; a stale lock is only a pid file naming a dead process.
    """

    def __init__(self, state_dir: Path, *, api_key: str) -> None:
        self.state_dir = Path(state_dir)
        name = f"run-{_key_sha256(api_key)[:16]}"
        self.path = self.state_dir / f"{name}.lock"
        self.pid_path = self.state_dir / f"{name}.pid"
        self.took_over: str | None = None
        # Not thread-local: the web page may take the lock in one thread and drop it in another.
        self._lock = filelock.FileLock(self.path, timeout=0, mode=0o600, thread_local=False)
        self._held = False

    def acquire(self) -> str | None:
        """Take the lock, or raise LockError naming the process that holds it.

        Returns a message when the lock was left behind by a process no longer running.
        """
        if self._held:
            raise RuntimeError("this RunLock is already held")
        _private_dir(self.state_dir)
        try:
            self._lock.acquire()
        except filelock.Timeout:
            raise _lock_error(_holder_pid(self.pid_path, patient=True)) from None
        except OSError as exc:
            raise _unusable(self.state_dir, exc) from None
        try:
            previous = _holder_pid(self.pid_path)
            _write_pid(self.pid_path, f"{os.getpid()}\n")
        except OSError as exc:
            self._lock.release()
            raise _unusable(self.state_dir, exc) from None
        except BaseException:
            self._lock.release()
            raise
        self._held = True
        if previous is not None and previous != os.getpid() and not process_alive(previous):
            return f"took over the lock left by process {previous}, which is no longer running"
        return None

    def release(self) -> None:
        """Let the next run in (empties the pid file, so it names no one)."""
        if not self._held:
            return
        self._held = False
        try:
            with contextlib.suppress(OSError):
                _write_pid(self.pid_path, "")  # while still locked: nobody reads it half-cleared
        finally:
            self._lock.release()

    def __enter__(self) -> Self:
        self.took_over = self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _write_pid(path: Path, text: str) -> None:
    # O_BINARY: Windows would otherwise open in text mode; a no-op elsewhere.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0), 0o600)
    try:
        os.write(fd, text.encode("ascii"))  # a few bytes: written whole
    finally:
        os.close(fd)


def _holder_pid(path: Path, *, patient: bool = False) -> int | None:
    # The holder writes its pid just after locking: a reader may catch the file empty for
    # an instant, so when asked, look again a few times before giving up.
    for attempt in range(5 if patient else 1):
        try:
            text = path.read_bytes()[:32].decode("ascii", "replace").strip()
        except OSError:  # not there (yet), or being rewritten on Windows
            text = ""
        if text.isdigit():
            return int(text)
        if attempt < 4 and patient:
            time.sleep(0.01)
    return None


def _lock_error(pid: int | None) -> LockError:
    if pid is None:
        return LockError(
            "another run is using this state dir and API key",
            fix="wait for it to finish; use another --state-dir to run in parallel",
        )
    return LockError(
        f"another run (process {pid}) is using this state dir and API key",
        fix=f"wait for it to finish, or stop it (kill {pid}); "
        "use another --state-dir to run in parallel",
    )
