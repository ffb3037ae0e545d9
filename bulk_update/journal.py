"""SQLite: what was applied, for re-runs and resume; and the run lock (contract section 6).

The journal lives in `state_dir/journal.sqlite3`. Everything in it belongs to a *scope*: one
base URL and one API key (stored as a sha256 of the key, never the key). Per scope, per uid,
per field it keeps a keyed fingerprint of the value last applied, and per uid the notes
added; plus one row per run for `history`.

Privacy: the file holds no candidate data. Values are stored only as keyed BLAKE2b hashes
(a MAC) under a random salt of the scope: a plain hash of a phone number or an email could
be reversed by trying every candidate value, and the salt also defeats tables computed in
advance. What
remains is uids, field paths, fingerprints, times, sheet and report paths and the base URL.

Crash safety: every write is its own transaction, committed before the method returns.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from .errors import CannotStartError, LockError

__all__ = ["JOURNAL_FILE", "Journal", "RunLock", "RunRecord", "process_alive", "read_runs"]

JOURNAL_FILE = "journal.sqlite3"
SCHEMA_VERSION = 1
#: uids per `IN (...)` query: far below SQLite's variable limit, large enough to be few.
_CHUNK = 500
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
#: user_version -> the script that brings the file from the previous version to it.
_MIGRATIONS = {1: _SCHEMA_V1}


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    # One fixed format in UTC, so that the text sorts in time order (ORDER BY started).
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def _key_sha256(api_key: str) -> str:
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()


def _fp_bytes(fingerprint: str) -> bytes:
    raw = bytes.fromhex(fingerprint)
    if len(raw) != 32:
        raise ValueError("a fingerprint is 64 hex digits (Journal.fingerprint)")
    return raw


def process_alive(pid: int) -> bool:
    """True when a process with this pid exists (possibly owned by another user)."""
    if pid <= 0:
        return False  # os.kill(0, ...) would signal our own process group
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists; we may just not signal it
    return True


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
        }


class Journal:
    """SQLite journal in `state_dir/journal.sqlite3`.

    WAL mode, synchronous=NORMAL, busy_timeout 5000 ms.

    Open it with `Journal.open(...)`; one instance serves one scope (base URL + API key).
    Calls are synchronous: each is well under a millisecond, cheap enough for the event loop.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        *,
        path: Path,
        scope: int,
        salt: bytes,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._conn = conn
        self._lock = threading.RLock()
        self._scope = scope
        self._salt = salt
        self._clock = clock
        self.path = path

    @classmethod
    def open(
        cls,
        state_dir: Path,
        *,
        base_url: str,
        api_key: str,
        clock: Callable[[], datetime] = _utcnow,
    ) -> Journal:
        """Open (creating when needed) the journal of `state_dir` for this base URL and key.

        Creates the dir (mode 0700) and the file (0600). Raises CannotStartError when the
        file is not a journal this version can read.
        """
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
            _migrate(conn, path)
            scope, salt = _scope(conn, base_url.rstrip("/"), _key_sha256(api_key), clock())
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise _unreadable(path, exc) from None
        except BaseException:
            conn.close()
            raise
        return cls(conn, path=path, scope=scope, salt=salt, clock=clock)

    def close(self) -> None:
        """Close the connection (the last one to close folds the WAL into the file)."""
        with self._lock:
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
        return hashlib.blake2b(data, key=self._salt, digest_size=32).hexdigest()

    def applied(self, uid: str) -> dict[str, str]:
        """Dotted field path -> fingerprint last applied to this uid (notes not included)."""
        return self.applied_many([uid])[uid]

    def applied_many(self, uids: Iterable[str]) -> dict[str, dict[str, str]]:
        """`applied` for many uids in few queries; every uid asked for is a key."""
        return self._many("SELECT uid, field, fp FROM applied", uids)

    def notes(self, uid: str) -> dict[str, str]:
        """Note fingerprint -> 'applied', or 'pending' (sent, never confirmed)."""
        return self.notes_many([uid])[uid]

    def notes_many(self, uids: Iterable[str]) -> dict[str, dict[str, str]]:
        """`notes` for many uids in few queries; every uid asked for is a key."""
        return self._many("SELECT uid, note_fp, state FROM notes", uids, hex_value=False)

    def _many(
        self, select: str, uids: Iterable[str], *, hex_value: bool = True
    ) -> dict[str, dict[str, str]]:
        wanted = list(dict.fromkeys(uids))
        found: dict[str, dict[str, str]] = {uid: {} for uid in wanted}
        with self._lock:
            for start in range(0, len(wanted), _CHUNK):
                chunk = wanted[start : start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = self._conn.execute(
                    f"{select} WHERE scope = ? AND uid IN ({marks})", (self._scope, *chunk)
                ).fetchall()
                if hex_value:
                    for uid, key, value in rows:
                        found[uid][key] = value.hex()
                else:
                    for uid, key, value in rows:
                        found[uid][key.hex()] = value
        return found

    # -- recording ------------------------------------------------------------------------
    # Each method is one transaction, committed before it returns (see `open` on why a
    # committed transaction survives the process being killed).

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            # IMMEDIATE takes the write lock up front, so busy_timeout applies to it instead
            # of a deferred transaction failing half way when another process writes.
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def start_run(self, *, sheet: Path, report: Path | None, dry_run: bool, full: bool) -> int:
        """Record a run as 'running' (with our pid) and return its id."""
        with self._transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO runs (scope, started, sheet, report, dry_run, full, pid, status)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, 'running')",
                (
                    self._scope,
                    _iso(self._clock()),
                    str(Path(sheet).resolve()),
                    None if report is None else str(Path(report).resolve()),
                    int(dry_run),
                    int(full),
                    os.getpid(),
                ),
            )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def note_pending(self, uid: str, note_fp: str, run_id: int) -> None:
        """Record that a note is about to be sent (committed before the request goes out).

        Never downgrades a note already 'applied'.
        """
        with self._transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO notes (scope, uid, note_fp, state, run, at)"
                " VALUES (?, ?, ?, 'pending', ?, ?)",
                (self._scope, uid, _fp_bytes(note_fp), run_id, self._now_s()),
            )

    def record_applied(
        self, uid: str, fields: Mapping[str, str], run_id: int, *, note_fp: str | None = None
    ) -> None:
        """The API confirmed a patch: store field -> fingerprint and mark the note applied."""
        now = self._now_s()
        rows = [(self._scope, uid, f, _fp_bytes(fp), run_id, now) for f, fp in fields.items()]
        note = None if note_fp is None else _fp_bytes(note_fp)
        with self._transaction() as conn:
            conn.executemany(
                "INSERT INTO applied (scope, uid, field, fp, run, at) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (scope, uid, field)"
                " DO UPDATE SET fp = excluded.fp, run = excluded.run, at = excluded.at",
                rows,
            )
            if note is not None:
                conn.execute(
                    "INSERT INTO notes (scope, uid, note_fp, state, run, at)"
                    " VALUES (?, ?, ?, 'applied', ?, ?) ON CONFLICT (scope, uid, note_fp)"
                    " DO UPDATE SET state = 'applied', run = excluded.run, at = excluded.at",
                    (self._scope, uid, note, run_id, now),
                )

    def forget_pending(self, uid: str, note_fp: str) -> None:
        """The API surely refused the row (4xx): the pending note was not added."""
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
            return _select_runs(self._conn, limit)

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
        return _select_runs(conn, limit)
    except sqlite3.DatabaseError as exc:
        raise _unreadable(path, exc) from None
    finally:
        conn.close()


def _select_runs(conn: sqlite3.Connection, limit: int) -> list[RunRecord]:
    rows = conn.execute(
        "SELECT r.id, r.started, r.finished, r.sheet, r.report, r.dry_run, r.full,"
        " r.status, r.counts, r.duration_s, s.base_url, r.pid"
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


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Bring the schema to SCHEMA_VERSION, in one transaction (safe against a parallel open)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise _too_new(path, version)
        for target in range(version + 1, SCHEMA_VERSION + 1):
            # executescript would COMMIT first; run the statements one by one instead.
            for statement in _MIGRATIONS[target].split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {target}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _scope(
    conn: sqlite3.Connection, base_url: str, key_sha256: str, now: datetime
) -> tuple[int, bytes]:
    """The scope's id and salt, created (with a fresh random salt) on first use."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            "INSERT OR IGNORE INTO scopes (base_url, key_sha256, salt, created)"
            " VALUES (?, ?, ?, ?)",
            (base_url, key_sha256, os.urandom(32), _iso(now)),
        )
        scope, salt = conn.execute(
            "SELECT id, salt FROM scopes WHERE base_url = ? AND key_sha256 = ?",
            (base_url, key_sha256),
        ).fetchone()
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return int(scope), bytes(salt)


class RunLock:
    """One run at a time per state dir and API key.

    An advisory `flock` on `state_dir/run-<sha256(key)[:16]>.lock`. The OS drops it when the
    holder dies, however it dies, so a stale lock is only a file naming a dead pid. The
    file is never deleted: unlinking a lock file lets a waiter lock the old inode while a
    newcomer locks a new one, and both would run.
    """

    def __init__(self, state_dir: Path, *, api_key: str) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / f"run-{_key_sha256(api_key)[:16]}.lock"
        self.took_over: str | None = None
        self._fd: int | None = None

    def acquire(self) -> str | None:
        """Take the lock, or raise LockError naming the process that holds it.

        Returns a message when the lock was left behind by a process no longer running.
        """
        if self._fd is not None:
            raise RuntimeError("this RunLock is already held")
        _private_dir(self.state_dir)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise _unusable(self.state_dir, exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder_pid(fd, patient=True)
            os.close(fd)
            raise _lock_error(holder) from None
        except BaseException:
            os.close(fd)
            raise
        previous = _holder_pid(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)  # unbuffered: nothing left to flush
        self._fd = fd
        if previous is not None and previous != os.getpid() and not process_alive(previous):
            return f"took over the lock left by process {previous}, which is no longer running"
        return None

    def release(self) -> None:
        """Let the next run in (empties the file, so it names no one)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)  # while still locked: nobody reads a half-cleared file
        finally:
            os.close(fd)  # closing the only descriptor releases the flock

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


def _holder_pid(fd: int, *, patient: bool = False) -> int | None:
    # The holder writes its pid just after locking: a reader may catch the file empty for
    # an instant, so when asked, look again a few times before giving up.
    for attempt in range(5 if patient else 1):
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
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
