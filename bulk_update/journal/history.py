"""Run history: one row per run (started, finished, counts, report, config), for `history`,
the web page's list of runs, and marking the runs of a killed process.

The functions that write take an open transaction's connection (the journal's); `read_runs`
opens the file read-only, without credentials.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..records import kept_report
from .migrations import SCHEMA_VERSION, has_run_config, too_new
from .statedir import JOURNAL_FILE, unreadable

__all__ = [
    "RunRecord",
    "close_run",
    "insert_run",
    "iso",
    "mark_killed",
    "read_runs",
    "select_runs",
    "set_report",
    "stale_runs",
]

_FINAL_STATUSES = frozenset({"finished", "aborted", "interrupted"})


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
    #: The account's `[journal] scope` name ("" none); None for a run recorded under a
    #: scope of the journal's older layout (one per API key), whose account is not known.
    scope: str | None = None

    def of_account(self, base_url: str, journal_scope: str | None) -> bool:
        """Whether the run was sent to the account of `base_url` and `journal_scope` (as
        `Journal.open` names one: the base URL without its trailing slash). Pure."""
        return self.base_url == base_url.rstrip("/") and self.scope == (journal_scope or "")

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


def iso(moment: datetime) -> str:
    """One fixed format in UTC, so that the text sorts in time order (ORDER BY started)."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def insert_run(
    conn: sqlite3.Connection,
    scope: int,
    started: datetime,
    *,
    sheet: Path,
    report: Path | None,
    dry_run: bool,
    full: bool,
    config: Path | None,
) -> int:
    """Record a run as 'running' (with our pid); its id."""
    cursor = conn.execute(
        "INSERT INTO runs (scope, started, sheet, report, dry_run, full, pid, status, config)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, 'running', ?)",
        (
            scope,
            iso(started),
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


def close_run(
    conn: sqlite3.Connection,
    run_id: int,
    finished: datetime,
    *,
    counts: Mapping[str, int],
    status: str,
    duration_s: float,
) -> None:
    """Close a run: status 'finished' | 'aborted' | 'interrupted', counts per outcome."""
    if status not in _FINAL_STATUSES:
        raise ValueError(f"status must be one of {sorted(_FINAL_STATUSES)}, not {status!r}")
    conn.execute(
        "UPDATE runs SET finished = ?, status = ?, counts = ?, duration_s = ? WHERE id = ?",
        (
            iso(finished),
            status,
            json.dumps({str(k): int(v) for k, v in counts.items()}),
            float(duration_s),
            run_id,
        ),
    )


def set_report(conn: sqlite3.Connection, run_id: int, report: Path) -> None:
    """Where a run's report went."""
    conn.execute("UPDATE runs SET report = ? WHERE id = ?", (str(Path(report).resolve()), run_id))


def stale_runs(conn: sqlite3.Connection, pid_alive: Callable[[int], bool]) -> list[int]:
    """The 'running' runs (of any scope) whose process is gone."""
    running = conn.execute("SELECT id, pid FROM runs WHERE status = 'running'").fetchall()
    return [run_id for run_id, pid in running if not pid_alive(pid)]


def mark_killed(conn: sqlite3.Connection, run_ids: list[int]) -> None:
    conn.executemany(
        "UPDATE runs SET status = 'killed' WHERE id = ? AND status = 'running'",
        [(run_id,) for run_id in run_ids],
    )


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
        raise unreadable(path, exc) from None
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == 0:
            return []  # created but never set up: a run that stopped at once
        if version > SCHEMA_VERSION:
            raise too_new(path, version)
        return select_runs(conn, limit, Path(state_dir))
    except sqlite3.DatabaseError as exc:
        raise unreadable(path, exc) from None
    finally:
        conn.close()


def select_runs(conn: sqlite3.Connection, limit: int, state_dir: Path) -> list[RunRecord]:
    """The most recent runs first, of every scope in this file."""
    # A journal only read (`history`) may predate the config column.
    config = "r.config" if has_run_config(conn) else "NULL"
    # ...and the accounts' names (schema 3): before, a scope was a key's, its account unknown.
    named = any(row[1] == "name" for row in conn.execute("PRAGMA table_info(scopes)"))
    rows = conn.execute(
        "SELECT r.id, r.started, r.finished, r.sheet, r.report, r.dry_run, r.full,"
        f" r.status, r.counts, r.duration_s, s.base_url, r.pid, {config},"
        f" {'s.name' if named else 'NULL'}"
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
            scope=row[13],
        )
        for row in rows
    ]
