"""The state dir and the journal's file: created private, and what to say when they cannot be
used (an error that tells the person how to fix it)."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

from ..errors import CannotStartError

__all__ = ["JOURNAL_FILE", "closed_on_error", "connect", "private_dir", "unreadable", "unusable"]

JOURNAL_FILE = "journal.sqlite3"


def private_dir(state_dir: Path) -> Path:
    """The state dir, created private (0700) when missing; CannotStartError if unusable."""
    try:
        if not state_dir.exists():
            state_dir.mkdir(parents=True, mode=0o700)
            os.chmod(state_dir, 0o700)  # mkdir's mode is filtered by the umask
        if not state_dir.is_dir():
            raise NotADirectoryError(20, "not a folder")
    except OSError as exc:
        raise unusable(state_dir, exc) from None
    return state_dir


def connect(path: Path) -> sqlite3.Connection:
    """The journal file, created private (0600) when missing, connected in WAL mode,
    synchronous=NORMAL, busy_timeout 5000 ms; CannotStartError when that fails."""
    # Created here so that it is private from the first byte; SQLite gives the -wal and
    # -shm files the same permissions as the database file.
    try:
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            os.chmod(path, 0o600)
    except OSError as exc:
        raise unusable(path.parent, exc) from None
    try:
        conn = sqlite3.connect(path, timeout=5.0, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise unreadable(path, exc) from None
    with closed_on_error(conn.close, path):
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
    return conn


@contextlib.contextmanager
def closed_on_error(close: Callable[[], object], path: Path) -> Iterator[None]:
    """Run the block; if it raises, `close` (the journal's connection) and say a database
    error or a refusal of the system as a CannotStartError naming the file or its folder."""
    try:
        yield
    except sqlite3.Error as exc:
        close()
        raise unreadable(path, exc) from None
    except OSError as exc:
        close()
        raise unusable(path.parent, exc) from None
    except BaseException:
        close()
        raise


def unusable(state_dir: Path, exc: OSError) -> CannotStartError:
    return CannotStartError(
        f"the state dir '{state_dir}' cannot be used: {exc.strerror or exc}",
        fix="give a folder you can write to with --state-dir",
    )


def unreadable(path: Path, exc: sqlite3.Error) -> CannotStartError:
    return CannotStartError(
        f"the journal {path} cannot be opened ({exc})",
        fix="move that file away (the next run then sends every row again), "
        "or use another --state-dir",
    )
