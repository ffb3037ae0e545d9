"""The journal's log of confirmations: durable in one write, folded into SQLite in groups.

Writing a confirmed row to SQLite costs a transaction (about 80 µs, most of it the commit),
and with no rate limit to wait for, answers come faster than that. So the journal appends
the rows confirmed in one turn of the event loop to this file with one `write()` (a few
microseconds) and folds the file into SQLite a few hundred rows at a time.

Durability is SQLite's with synchronous=NORMAL: once `write()` returns, the bytes are in
the operating system's cache, so a killed process (SIGKILL included) loses none of them; a
power cut may lose the last ones. A write is never torn by a killed process; after a power
cut a line may be, so only whole lines (JSON, ending with a newline) are replayed, up to the
first that is not.

One writer at a time: the writer holds a `filelock` on `<log>.lock` (beside the log, as
Windows lets no other process read a locked file) from its first append until it closes.
Whoever opens the journal later replays what a dead writer left (the OS dropped its lock);
a live writer's log is left alone. The file holds what the journal holds (uids, field
paths, keyed fingerprints, run ids, times), never candidates' data; it is created private
(0600) in the private state dir and never deleted, only emptied.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import filelock

__all__ = ["ConfirmLog", "Record", "fields_json", "is_fingerprint"]

#: A confirmed row: [uid, {field path: fingerprint}, note fingerprint or None, run id, unix
#: time]; a note about to be sent: [uid, None, note fingerprint, run id, unix time]. In
#: memory a confirmed row may carry a sixth item, `fields_json(fields)`, written once.
Record = list[Any]

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
#: Field paths as JSON strings: a sheet has a handful of columns, a journal a few sheets.
_KEYS: dict[str, str] = {}


def fields_json(fields: Mapping[str, str]) -> str:
    """`{field path: fingerprint}` as compact JSON, the same text as json.dumps gives.

    Three times faster than json.dumps: the paths' JSON is remembered and fingerprints (hex
    digits, checked by the journal) need no escaping.
    """
    parts = []
    for key, fp in fields.items():
        text = _KEYS.get(key)
        if text is None:
            if len(_KEYS) >= 4096:
                _KEYS.clear()
            text = _KEYS[key] = _dumps(key)
        parts.append(f'{text}:"{fp}"')
    return "{" + ",".join(parts) + "}"


def _line(record: Record) -> str:
    uid, fields, note, run, at = record[:5]
    text = record[5] if len(record) > 5 else "null" if fields is None else fields_json(fields)
    note_text = "null" if note is None else f'"{note}"'
    return f"[{_dumps(uid)},{text},{note_text},{int(run)},{int(at)}]\n"


class ConfirmLog:
    """One scope's log file. Not thread-safe: the journal calls it under its own lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # The lock is a file of its own: Windows lets no other process read a locked file.
        self._lock = filelock.FileLock(
            path.with_name(path.name + ".lock"), timeout=0, mode=0o600, thread_local=False
        )
        self._fd: int | None = None  # open and locked: we are the writer

    @property
    def writing(self) -> bool:
        return self._fd is not None

    def take(self) -> bool:
        """Become the writer (lock and open the file); False if another one is alive."""
        if self._fd is None:
            try:
                self._lock.acquire()
            except filelock.Timeout:
                return False
            try:
                self._fd = os.open(self.path, _FLAGS, 0o600)
            except BaseException:
                self._lock.release()
                raise
        return True

    def append(self, records: Sequence[Record]) -> None:
        """Append records with one write(): on disk (the OS's cache) when this returns."""
        assert self._fd is not None, "take() first"
        data = memoryview("".join(map(_line, records)).encode("utf-8"))
        while data:  # a regular file takes it all at once; the loop is for the odd case
            data = data[os.write(self._fd, data) :]

    def clear(self) -> None:
        """Empty the file (after its records were committed to SQLite)."""
        assert self._fd is not None
        os.ftruncate(self._fd, 0)

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.close(fd)
            finally:
                self._lock.release()

    def recover(self) -> list[Record] | None:
        """A dead writer's records, in order, taking over as the writer; None if it lives.

        The caller commits them, then calls `clear()`.
        """
        if not self.take():
            return None
        assert self._fd is not None
        chunks = []
        os.lseek(self._fd, 0, os.SEEK_SET)  # appends go to the end whatever the offset
        while chunk := os.read(self._fd, 1 << 20):
            chunks.append(chunk)
        return _records(b"".join(chunks))


#: O_BINARY: Windows would otherwise open in text mode (and write CRLF); 0 elsewhere. Every
#: descriptor Python opens is already not inherited by child processes (PEP 446).
_FLAGS = os.O_RDWR | os.O_CREAT | os.O_APPEND | getattr(os, "O_BINARY", 0)


def _records(data: bytes) -> list[Record]:
    """The whole, well-formed lines of `data`, up to the first that is not."""
    records: list[Record] = []
    for line in data.split(b"\n")[:-1]:  # the last piece has no newline: torn or empty
        try:
            record = json.loads(line)
        except ValueError:
            break
        if not _well_formed(record):
            break
        records.append(record)
    return records


def _well_formed(record: Any) -> bool:
    if not (isinstance(record, list) and len(record) == 5):
        return False
    uid, fields, note, run, at = record
    return (
        isinstance(uid, str)
        and (
            (fields is None and is_fingerprint(note))
            or (
                isinstance(fields, dict)
                and all(isinstance(k, str) and is_fingerprint(v) for k, v in fields.items())
                and (note is None or is_fingerprint(note))
            )
        )
        and isinstance(run, int)
        and isinstance(at, int)
    )


def is_fingerprint(value: Any) -> bool:
    """Whether `value` is a journal fingerprint: 64 lowercase hex digits."""
    return isinstance(value, str) and _FP.fullmatch(value) is not None


_FP = re.compile(r"[0-9a-f]{64}")
