"""SQLite: what was applied, for re-runs and resume; and the run lock (contract section 6).

The journal lives in `state_dir/journal.sqlite3`. Everything in it belongs to a *scope*: one
Comeet account, that is a base URL plus the `[journal] scope` name, whatever the API key
(`accounts` says why, and how the scopes per API key of schema version 2 are adopted). Per
scope and uid it keeps one row: for each field, a keyed fingerprint of the value last
applied (a JSON object, so that confirming a row writes one row, not one per field); per uid
the notes added (with the run and time, for the row that leaves one out to say when); and
one row per run for `history`.

Privacy: the file holds no candidate data. Values are stored only as keyed BLAKE2b hashes
(a MAC) under a random salt of the scope (`fingerprints`). What remains is uids, field
paths, fingerprints, times, sheet, report and config paths and the base URL.

The package's modules: `store` (the `Journal`: open for an account, look up, record, crash
safety), `confirmations` (the tables of fields applied and notes added, written from the log
of confirmations), `fingerprints` (what is hashed, and checks), `history` (the runs, for
`history`), `migrations` (the file's schema versions), `lock` (the run lock), `statedir`
(the private state dir and file, and what to say when they cannot be used).
"""

from __future__ import annotations

from .confirmations import NoteEntry
from .history import RunRecord, read_runs
from .lock import RunLock, process_alive
from .migrations import SCHEMA_VERSION as SCHEMA_VERSION
from .statedir import JOURNAL_FILE
from .store import Journal

__all__ = [
    "JOURNAL_FILE",
    "Journal",
    "NoteEntry",
    "RunLock",
    "RunRecord",
    "process_alive",
    "read_runs",
]
