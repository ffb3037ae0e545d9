"""The journal itself: open it for an account, look up what was applied, record what the
API confirmed (contract section 6). The package's docstring says what the file holds.

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
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

from ..accounts import account, find_account, legacy_scopes
from ..confirmlog import ConfirmLog, Record, fields_json
from . import history
from .confirmations import NoteEntry, has_json_patch, select_uids, write_records
from .fingerprints import check_fields, fingerprint_bytes, hashed
from .history import RunRecord
from .lock import process_alive
from .migrations import migrate
from .statedir import JOURNAL_FILE, closed_on_error, connect, private_dir

logger = logging.getLogger(__name__)

__all__ = ["Journal"]

#: The log of confirmations is folded into SQLite when it holds this many rows, or when the
#: last fold is this old (seconds): a few milliseconds of work at a time, a few hundred
#: rows per transaction instead of one or two.
_FOLD_ROWS = 500
_FOLD_S = 1.0


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Journal:
    """SQLite journal in `state_dir/journal.sqlite3` (WAL mode: `statedir.connect`).

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
        self.json_patch = has_json_patch(conn)

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
        state_dir = private_dir(Path(state_dir))
        path = state_dir / JOURNAL_FILE
        conn = connect(path)
        with closed_on_error(conn.close, path):
            migrate(conn, path)
            base_url, name = base_url.rstrip("/"), journal_scope or ""
            found = find_account(conn, base_url, name)
            if found is None:
                # Adopting copies the per-key journals: first fold in what a process killed
                # before the upgrade left in their logs of confirmations.
                for legacy, salt in legacy_scopes(conn, base_url):
                    if (state_dir / f"confirmed-{legacy}.log").exists():
                        cls(conn, path=path, scope=legacy, salt=salt, clock=clock)._recover()
                found = account(conn, base_url, name, history.iso(clock()))
                if found.adopted:
                    logger.info("%s", found.adopted, extra={"event": "journal_adopted_per_key"})
        journal = cls(
            conn,
            path=path,
            scope=found.scope,
            salt=found.salt,
            clock=clock,
            older_salts=found.older_salts,
        )
        with closed_on_error(journal.close, path):
            journal._recover()
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

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- fingerprints and lookups -------------------------------------------------------

    def fingerprint(self, value: Any) -> str:
        """Keyed BLAKE2b (this scope's salt) of the value, as hex.

        A re-run of a large sheet fingerprints every cell, and keyed BLAKE2b is a MAC at
        a third of HMAC-SHA256's cost. What is hashed: `fingerprints.hashed`.
        """
        hasher = self._keyed.copy()
        hasher.update(hashed(value))
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
        data = hashed(value)
        fps = []
        for keyed in self._older:
            hasher = keyed.copy()
            hasher.update(data)
            fps.append(hasher.hexdigest())
        return fps

    def _select(self, select: str, uids: list[str]) -> Iterator[tuple[Any, ...]]:
        """The rows of `select` for these uids of this scope (`confirmations.select_uids`)."""
        return select_uids(self._conn, self._scope, select, uids)

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
            return history.insert_run(
                conn,
                self._scope,
                self._clock(),
                sheet=sheet,
                report=report,
                dry_run=dry_run,
                full=full,
                config=config,
            )

    def note_pending(self, uid: str, note_fp: str, run_id: int) -> None:
        """Record that a note is about to be sent: durable before the request goes out.

        Never downgrades a note already 'applied'. Like a confirmation, it goes to the log.
        """
        fingerprint_bytes(note_fp)
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
                check_fields(fields)
            if note_fp is not None:
                fingerprint_bytes(note_fp)
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
        write_records(conn, self._scope, records, json_patch=self.json_patch)

    def forget_pending(self, uid: str, note_fp: str) -> None:
        """The API surely refused the row (4xx): the pending note was not added."""
        self.flush()  # its 'pending' may still be in the log
        with self._transaction() as conn:
            conn.execute(
                "DELETE FROM notes WHERE scope = ? AND uid = ? AND note_fp = ?"
                " AND state = 'pending'",
                (self._scope, uid, fingerprint_bytes(note_fp)),
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
        self.flush()
        with self._transaction() as conn:
            history.close_run(
                conn,
                run_id,
                self._clock(),
                counts=counts,
                status=status,
                duration_s=duration_s,
            )

    def record_report(self, run_id: int, report: Path) -> None:
        """Where a run's report went, when not where asked (report.put_in_place)."""
        with self._transaction() as conn:
            history.set_report(conn, run_id, report)

    def mark_stale_runs(self, pid_alive: Callable[[int], bool] = process_alive) -> int:
        """Mark 'killed' every 'running' run (of any scope) whose process is gone; how many."""
        with self._lock:
            stale = history.stale_runs(self._conn, pid_alive)
        if stale:
            with self._transaction() as conn:
                history.mark_killed(conn, stale)
        return len(stale)

    def runs(self, limit: int = 20) -> list[RunRecord]:
        """The most recent runs first, of every scope in this file."""
        with self._lock:
            return history.select_runs(self._conn, limit, self.path.parent)

    def _now_s(self) -> int:
        return int(self._clock().timestamp())
