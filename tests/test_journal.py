"""The journal (SQLite storage of what was applied) and the run lock."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bulk_update import journal as journal_module
from bulk_update.errors import CannotStartError, LockError
from bulk_update.journal import (
    JOURNAL_FILE,
    Journal,
    RunLock,
    RunRecord,
    migrations,
    process_alive,
    read_runs,
)

ROOT = Path(__file__).resolve().parents[1]
BASE = "https://api.comeet.co"
KEY = "api-key-7f3a9c1e5b"


class FakeClock:
    """Starts at a fixed moment and moves a minute per call, so runs sort by time."""

    def __init__(self) -> None:
        self.now = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(minutes=1)
        return self.now


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state" / "bulk-update"


@pytest.fixture
def jnl(state: Path) -> Iterator[Journal]:
    with Journal.open(state, base_url=BASE, api_key=KEY, clock=FakeClock()) as j:
        yield j


def _child(code: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# -- opening ---------------------------------------------------------------------------------


def test_open_creates_private_dir_and_file_in_wal_mode(state: Path) -> None:
    with Journal.open(state, base_url=BASE, api_key=KEY) as j:
        run = j.start_run(sheet=Path("s.csv"), report=None, dry_run=False, full=False)
        j.record_applied("AE.1", {"email": j.fingerprint("a@b.co")}, run)
        assert stat.S_IMODE(state.stat().st_mode) == 0o700
        assert stat.S_IMODE((state / JOURNAL_FILE).stat().st_mode) == 0o600
        wal = state / f"{JOURNAL_FILE}-wal"
        assert wal.exists()
        assert stat.S_IMODE(wal.stat().st_mode) == 0o600
        assert j._conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert j._conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
    other = sqlite3.connect(state / JOURNAL_FILE)
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert other.execute("PRAGMA user_version").fetchone()[0] == journal_module.SCHEMA_VERSION
    other.close()


def test_a_file_that_is_not_a_journal_cannot_start(state: Path) -> None:
    state.mkdir(parents=True)
    (state / JOURNAL_FILE).write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(CannotStartError, match="cannot be opened") as info:
        Journal.open(state, base_url=BASE, api_key=KEY)
    assert info.value.fix and "--state-dir" in info.value.fix


def test_a_journal_from_a_newer_version_cannot_start(state: Path) -> None:
    Journal.open(state, base_url=BASE, api_key=KEY).close()
    conn = sqlite3.connect(state / JOURNAL_FILE)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(CannotStartError, match="newer bulk-update"):
        Journal.open(state, base_url=BASE, api_key=KEY)


def test_a_version_1_journal_is_brought_to_version_3_keeping_what_was_applied(
    state: Path,
) -> None:
    # A journal as version 1 wrote it: one row per uid and field, scoped by the API key.
    conn, old = per_key_journal(state, KEY, version=1)
    email, team, phone = old.fingerprint("a@b.co"), old.fingerprint("Core"), old.fingerprint("1")
    scope = old._scope
    with conn:
        conn.executemany(
            "INSERT INTO applied (scope, uid, field, fp, run, at) VALUES (?, ?, ?, ?, ?, ?)",
            [
                (scope, "AE.1", "email", bytes.fromhex(email), 1, 100),
                (scope, "AE.1", "custom_fields.Team", bytes.fromhex(team), 2, 200),
                (scope, "AE.2", "phone", bytes.fromhex(phone), 1, 100),
                (scope + 1, "AE.1", "phone", bytes.fromhex(phone), 1, 100),  # another scope
            ],
        )
    conn.close()
    with Journal.open(state, base_url=BASE, api_key="a-new-key") as j:
        assert j.applied_many(["AE.1", "AE.2", "AE.3"]) == {
            "AE.1": {"email": email, "custom_fields.Team": team},
            "AE.2": {"phone": phone},
            "AE.3": {},
        }
        j.record_applied("AE.1", {"email": j.fingerprint("new@b.co")}, 3)
        assert j.applied("AE.1") == {"email": j.fingerprint("new@b.co"), "custom_fields.Team": team}
    conn = sqlite3.connect(state / JOURNAL_FILE)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 3
    rows = conn.execute("SELECT scope, uid, run, at FROM applied ORDER BY scope, uid").fetchall()
    conn.close()
    # The per-key scope is kept as it was; the account (a new scope) adopted it.
    assert rows[:2] == [(scope, "AE.1", 2, 200), (scope, "AE.2", 1, 100)]
    assert rows[2][:2] == (scope + 1, "AE.1")
    assert rows[3:] == [(scope + 2, "AE.1", 3, rows[3][3]), (scope + 2, "AE.2", 1, 100)]


def per_key_journal(
    state: Path, key: str, *, base_url: str = BASE, version: int = 2
) -> tuple[sqlite3.Connection, Journal]:
    """A journal as versions 1 and 2 kept it, per base URL and API key: the file (made with
    those versions' schema, or brought to it), and a Journal of that key's scope, which
    writes entries as those versions did (their writing code is today's)."""
    state.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(state / JOURNAL_FILE, isolation_level=None, check_same_thread=False)
    if conn.execute("PRAGMA user_version").fetchone()[0] == 0:
        for statement in migrations._SCHEMA_V1.split(";"):
            if statement.strip():
                conn.execute(statement)
        if version == 2:
            migrations._to_v2(conn)
        conn.execute(f"PRAGMA user_version = {version}")
        # Today's writing code names the runs' config column (added without a new version).
        conn.execute("ALTER TABLE runs ADD COLUMN config TEXT")
    salt = os.urandom(32)
    scope = conn.execute(
        "INSERT INTO scopes (base_url, key_sha256, salt, created) VALUES (?, ?, ?, ?)",
        (base_url, hashlib.sha256(key.encode()).hexdigest(), salt, "2026-01-01T00:00:00+00:00"),
    ).lastrowid
    assert scope is not None
    return conn, Journal(conn, path=state / JOURNAL_FILE, scope=scope, salt=salt)


@pytest.mark.parametrize("json_patch", [True, False], ids=["json_patch", "read-merge-write"])
def test_record_applied_keeps_the_fields_it_is_not_given(jnl: Journal, json_patch: bool) -> None:
    assert jnl.json_patch  # this machine's SQLite has JSON functions; both ways are tested
    jnl.json_patch = json_patch
    first = {"email": jnl.fingerprint("a@b.co"), "phone": jnl.fingerprint("1")}
    jnl.record_applied("AE.1", first, 1)
    jnl.record_applied("AE.1", {"phone": jnl.fingerprint("2")}, 2)
    jnl.record_applied("AE.1", {}, 3)  # a note-only row changes no field
    assert jnl.applied("AE.1") == {"email": first["email"], "phone": jnl.fingerprint("2")}
    jnl.record_applied_many(
        [
            ("AE.2", {"email": jnl.fingerprint("x")}, None),
            ("AE.1", {"email": jnl.fingerprint("y"), "team": jnl.fingerprint("z")}, None),
            ("AE.2", {"phone": jnl.fingerprint("3")}, None),  # the same uid twice: both
        ],
        4,
    )
    assert jnl.applied_many(["AE.1", "AE.2"]) == {
        "AE.1": {
            "email": jnl.fingerprint("y"),
            "phone": jnl.fingerprint("2"),
            "team": jnl.fingerprint("z"),
        },
        "AE.2": {"email": jnl.fingerprint("x"), "phone": jnl.fingerprint("3")},
    }
    with pytest.raises(ValueError, match="fingerprint"):
        jnl.record_applied("AE.1", {"email": "a@b.co"}, 4)  # a value, not its fingerprint
    with pytest.raises(ValueError, match="fingerprint"):  # 63 and 65 digits: 128 in all
        jnl.record_applied("AE.1", {"email": "a" * 63, "phone": "b" * 65}, 4)
    assert jnl.applied("AE.1")["email"] == jnl.fingerprint("y")


# -- fingerprints ----------------------------------------------------------------------------


def test_fingerprint_is_a_keyed_hash(jnl: Journal, state: Path) -> None:
    value = {"b": ["é", 1], "a": None}
    fp = jnl.fingerprint(value)
    assert fp == jnl.fingerprint({"a": None, "b": ["é", 1]})  # key order does not matter
    assert len(fp) == 64 and int(fp, 16) >= 0
    assert fp != jnl.fingerprint({"a": None, "b": ["e", 1]})
    conn = sqlite3.connect(state / JOURNAL_FILE)
    (salt,) = conn.execute("SELECT salt FROM scopes").fetchone()
    conn.close()
    assert len(salt) == 32
    canonical = '{"a":null,"b":["é",1]}'.encode()
    assert fp == hashlib.blake2b(b"\x01" + canonical, key=salt, digest_size=32).hexdigest()
    assert fp != hashlib.sha256(canonical).hexdigest()
    text = jnl.fingerprint("dana@example.com")
    assert text == hashlib.blake2b(b"\x00dana@example.com", key=salt, digest_size=32).hexdigest()
    assert text != jnl.fingerprint(["dana@example.com"]) != jnl.fingerprint('"dana@example.com"')


def test_fingerprint_differs_between_scopes_and_survives_reopening(state: Path) -> None:
    with Journal.open(state, base_url=BASE, api_key=KEY) as j:
        first = j.fingerprint("+972501234567")
    with Journal.open(state, base_url=BASE, api_key="another-key") as j:  # same account
        assert j.fingerprint("+972501234567") == first
    with Journal.open(state, base_url=BASE, journal_scope="acme") as j:
        assert j.fingerprint("+972501234567") != first
    with Journal.open(state, base_url="https://eu.comeet.co", api_key=KEY) as j:
        assert j.fingerprint("+972501234567") != first
    with Journal.open(state, base_url=BASE + "/", api_key=KEY) as j:  # same scope
        assert j.fingerprint("+972501234567") == first


# -- applied fields --------------------------------------------------------------------------


def test_record_applied_then_applied_and_applied_many(jnl: Journal) -> None:
    run = jnl.start_run(sheet=Path("s.csv"), report=None, dry_run=False, full=False)
    fps = {"email": jnl.fingerprint("dana@example.com"), "address.city": jnl.fingerprint("Haifa")}
    jnl.record_applied("AE.1", fps, run)
    assert jnl.applied("AE.1") == fps
    assert jnl.applied("AE.2") == {}
    assert jnl.applied_many(["AE.1", "AE.2", "AE.1"]) == {"AE.1": fps, "AE.2": {}}

    newer = jnl.fingerprint("dana.cohen@example.com")
    jnl.record_applied("AE.1", {"email": newer}, run)  # upsert: replaces, keeps the rest
    assert jnl.applied("AE.1") == {"email": newer, "address.city": fps["address.city"]}
    assert jnl.notes("AE.1") == {}  # no note given


def test_record_applied_refuses_what_is_not_a_fingerprint(jnl: Journal) -> None:
    with pytest.raises(ValueError):
        jnl.record_applied("AE.1", {"email": "dana@example.com"}, 1)
    with pytest.raises(ValueError):
        jnl.record_applied("AE.1", {"email": "abcd"}, 1)
    assert jnl.applied("AE.1") == {}


def test_scopes_are_isolated(state: Path) -> None:
    with Journal.open(state, base_url=BASE, api_key=KEY) as j:
        run = j.start_run(sheet=Path("s.csv"), report=None, dry_run=False, full=False)
        j.record_applied("AE.1", {"email": j.fingerprint("x")}, run, note_fp=j.fingerprint("n"))
    for base_url, name in [(BASE, "acme"), ("https://eu.comeet.co", None)]:
        with Journal.open(state, base_url=base_url, journal_scope=name) as j:
            assert j.applied("AE.1") == {}
            assert j.applied_many(["AE.1"]) == {"AE.1": {}}
            assert j.notes("AE.1") == {}
    with Journal.open(state, base_url=BASE, api_key="another-key") as j:
        assert set(j.applied("AE.1")) == {"email"}


def test_applied_many_for_100000_uids(jnl: Journal, state: Path) -> None:
    fields = ("first_name", "last_name", "email", "phone", "custom_fields.Team")
    # Filled in one statement: 500,000 record_applied calls would take the test's whole budget.
    conn = sqlite3.connect(state / JOURNAL_FILE)
    with conn:
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 99999)"
            " INSERT INTO applied (scope, uid, fps, run, at)"
            " SELECT 1, 'AE.' || i, '{' || ? || '}', 1, 0 FROM n",
            (",".join(f'"{name}":"{"ab" * 32}"' for name in fields),),
        )
    conn.close()
    jnl.record_applied("AE.77", {"email": jnl.fingerprint("known")}, 1)
    uids = [f"AE.{i}" for i in range(100_000)]
    started = time.process_time()  # CPU time: other processes on the cores do not count
    found = jnl.applied_many(uids)
    elapsed = time.process_time() - started
    assert elapsed < 10, elapsed
    assert len(found) == 100_000
    assert all(set(found[uid]) == set(fields) for uid in uids)
    assert found["AE.77"]["email"] == jnl.fingerprint("known")
    assert sum(len(v) for v in found.values()) == 500_000


# -- notes -----------------------------------------------------------------------------------


def test_note_pending_then_applied_and_never_downgraded(jnl: Journal) -> None:
    run = jnl.start_run(sheet=Path("s.csv"), report=None, dry_run=False, full=False)
    note = jnl.fingerprint("Called on Monday")
    jnl.note_pending("AE.1", note, run)
    assert jnl.notes("AE.1") == {note: "pending"}
    jnl.record_applied("AE.1", {"email": jnl.fingerprint("x")}, run, note_fp=note)
    assert jnl.notes("AE.1") == {note: "applied"}
    assert "note" not in jnl.applied("AE.1")
    jnl.note_pending("AE.1", note, run)  # a later run sends it again: stays applied
    assert jnl.notes("AE.1") == {note: "applied"}
    jnl.forget_pending("AE.1", note)  # only a pending note is forgotten
    assert jnl.notes("AE.1") == {note: "applied"}


def test_record_applied_marks_a_note_never_seen_pending(jnl: Journal) -> None:
    note = jnl.fingerprint("hello")
    jnl.record_applied("AE.1", {}, 1, note_fp=note)
    assert jnl.notes_many(["AE.1", "AE.2"]) == {"AE.1": {note: "applied"}, "AE.2": {}}


def test_forget_pending(jnl: Journal) -> None:
    first, second = jnl.fingerprint("first"), jnl.fingerprint("second")
    jnl.note_pending("AE.1", first, 1)
    jnl.note_pending("AE.1", second, 1)
    jnl.forget_pending("AE.1", first)
    assert jnl.notes("AE.1") == {second: "pending"}


# -- the log of confirmations ---------------------------------------------------------------


def _applied_rows(state: Path) -> int:
    """Rows of `applied` as another connection (another process) sees them."""
    conn = sqlite3.connect(state / JOURNAL_FILE)
    try:
        return int(conn.execute("SELECT count(*) FROM applied").fetchone()[0])
    finally:
        conn.close()


def _log(state: Path) -> Path:
    (path,) = state.glob("confirmed-*.log")
    return path


def test_confirmed_rows_go_to_the_log_and_into_sqlite_by_the_hundred(
    jnl: Journal, state: Path
) -> None:
    run = jnl.start_run(sheet=Path("s.csv"), report=None, dry_run=False, full=False)
    fps = {f"AE.{i}": {"email": jnl.fingerprint(f"{i}@example.com")} for i in range(3)}
    note = jnl.fingerprint("Called on Monday")
    jnl.record_applied_many([(uid, f, note) for uid, f in fps.items()], run)
    assert _applied_rows(state) == 0  # in the log only
    assert len(_log(state).read_bytes().splitlines()) == 3
    assert stat.S_IMODE(_log(state).stat().st_mode) == 0o600
    assert jnl.applied_many(fps) == fps  # a read folds the log in first
    assert _applied_rows(state) == 3 and _log(state).stat().st_size == 0
    assert jnl.notes("AE.2") == {note: "applied"}
    many = [(f"AE.{i}", {"email": jnl.fingerprint(str(i))}, None) for i in range(10, 510)]
    jnl.record_applied_many(many[:-1], run)
    assert _applied_rows(state) == 3
    jnl.record_applied_many(many[-1:], run)  # the 500th row: folded without being asked
    assert _applied_rows(state) == 503 and _log(state).stat().st_size == 0
    jnl.record_applied("AE.9", {"email": jnl.fingerprint("x")}, run)
    jnl.finish_run(run, counts={"updated": 504}, status="finished", duration_s=1)
    assert _applied_rows(state) == 504  # a finished run is all in SQLite


def test_a_log_with_a_live_writer_is_left_alone(jnl: Journal, state: Path) -> None:
    jnl.record_applied("AE.1", {"email": jnl.fingerprint("x")}, 1)  # jnl writes the log
    with Journal.open(state, base_url=BASE, api_key=KEY) as other:
        assert _log(state).stat().st_size > 0  # not taken over: jnl is alive
        other.record_applied("AE.2", {"email": other.fingerprint("y")}, 1)
        assert _applied_rows(state) == 1  # straight to SQLite, the log being jnl's
    assert jnl.applied_many(["AE.1", "AE.2"]) == {
        "AE.1": {"email": jnl.fingerprint("x")},
        "AE.2": {"email": jnl.fingerprint("y")},
    }


def test_a_torn_or_damaged_tail_of_the_log_is_not_replayed(state: Path) -> None:
    with Journal.open(state, base_url=BASE, api_key=KEY) as j:
        good = [[f"AE.{i}", {"email": j.fingerprint(str(i))}, None, 1, 0] for i in range(3)]
        path = state / f"confirmed-{j._scope}.log"
    lines = [json.dumps(r).encode() + b"\n" for r in good]
    path.write_bytes(lines[0] + lines[1] + b"\x00" * 100 + b"\n" + lines[2] + lines[2][:30])
    with Journal.open(state, base_url=BASE, api_key=KEY) as j:
        assert path.stat().st_size == 0  # folded in, then emptied
        assert j.applied_many(["AE.0", "AE.1", "AE.2"]) == {
            "AE.0": {"email": j.fingerprint("0")},
            "AE.1": {"email": j.fingerprint("1")},
            "AE.2": {},  # after the damage: not trusted
        }
    path.write_bytes(json.dumps(["AE.3", {"email": "not a fingerprint"}, None, 1, 0]).encode())
    path.write_bytes(path.read_bytes() + b"\n")
    with Journal.open(state, base_url=BASE, api_key=KEY) as j:
        assert j.applied("AE.3") == {}


def test_a_fold_that_fails_keeps_the_rows_in_the_log_and_tries_again(
    jnl: Journal, state: Path, caplog: pytest.LogCaptureFixture
) -> None:
    conn = sqlite3.connect(state / JOURNAL_FILE)
    with conn:
        conn.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON applied"
            " BEGIN SELECT RAISE(ABORT, 'disk trouble'); END"
        )
    rows = [(f"AE.{i}", {"email": jnl.fingerprint(str(i))}, None) for i in range(500)]
    jnl.record_applied_many(rows, 1)  # the fold fails: the rows are in the log all the same
    assert "could not fold" in caplog.text
    with pytest.raises(sqlite3.IntegrityError):
        jnl.applied("AE.1")  # a read says so
    with conn:
        conn.execute("DROP TRIGGER refuse")
    conn.close()
    assert jnl.applied("AE.499") == {"email": jnl.fingerprint("499")}
    assert _applied_rows(state) == 500


LOGGING_CHILD = """
    import os, signal, sys
    from pathlib import Path
    from bulk_update.journal import Journal

    state, base, key = Path(sys.argv[1]), "https://api.comeet.co", "api-key-7f3a9c1e5b"
    j = Journal.open(state, base_url=base, api_key=key)
    for start in range(0, 1200, 7):  # two folds on the way, the rest in the log
        rows = range(start, min(start + 7, 1200))
        confirmed = [(f"AE.{i}", {"email": j.fingerprint(f"c{i}")}, None) for i in rows]
        j.record_applied_many(confirmed, 1)
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_killed_process_keeps_every_row_it_logged(state: Path) -> None:
    child = _child(LOGGING_CHILD, str(state))
    _, err = child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL, err
    assert 0 < _applied_rows(state) < 1200 and _log(state).stat().st_size > 0
    with Journal.open(state, base_url=BASE, api_key=KEY) as j:
        assert _applied_rows(state) == 1200  # the next journal to open folds the log in
        found = j.applied_many(f"AE.{i}" for i in range(1200))
        assert found == {f"AE.{i}": {"email": j.fingerprint(f"c{i}")} for i in range(1200)}


# -- runs ------------------------------------------------------------------------------------


def test_runs_record_start_and_finish_most_recent_first(state: Path, tmp_path: Path) -> None:
    clock = FakeClock()
    with Journal.open(state, base_url=BASE, api_key=KEY, clock=clock) as j:
        first = j.start_run(
            sheet=tmp_path / "a" / ".." / "night.csv",
            report=None,
            dry_run=True,
            full=False,
            config=tmp_path / "etc" / ".." / "bulk_update.toml",
        )
        j.finish_run(first, counts={"would_update": 3}, status="finished", duration_s=1.5)
        second = j.start_run(
            sheet=Path("night.xlsx"), report=tmp_path / "out.csv", dry_run=False, full=True
        )
    with Journal.open(state, base_url="http://127.0.0.1:8080", api_key="k2", clock=clock) as j:
        third = j.start_run(sheet=Path("x.csv"), report=None, dry_run=False, full=False)
        j.finish_run(third, counts={"updated": 2, "failed": 1}, status="aborted", duration_s=9)
        with pytest.raises(ValueError, match="status"):
            j.finish_run(third, counts={}, status="done", duration_s=1)
        runs = j.runs()
        assert [r.id for r in j.runs(limit=2)] == [third, second]

    assert [r.id for r in runs] == [third, second, first]
    assert runs[0] == RunRecord(
        id=third,
        started=datetime(2024, 3, 1, 12, 6, tzinfo=UTC),
        finished=datetime(2024, 3, 1, 12, 7, tzinfo=UTC),
        sheet=Path("x.csv").resolve(),
        report=None,
        dry_run=False,
        full=False,
        status="aborted",
        counts={"updated": 2, "failed": 1},
        duration_s=9.0,
        base_url="http://127.0.0.1:8080",
        pid=os.getpid(),
        config="",  # none: the defaults
        scope="",  # the account's: no `[journal] scope` named
    )
    running = runs[1]
    assert (running.status, running.finished, running.counts, running.duration_s) == (
        "running",
        None,
        {},
        None,
    )
    assert running.report == tmp_path / "out.csv"
    assert (running.full, running.dry_run, running.base_url) == (True, False, BASE)
    assert runs[2].sheet == tmp_path / "night.csv"  # resolved
    assert runs[2].counts == {"would_update": 3}
    assert runs[2].duration_s == 1.5
    assert runs[2].config == str(tmp_path / "bulk_update.toml")  # resolved


def test_read_runs_needs_no_credentials_and_creates_nothing(state: Path) -> None:
    assert read_runs(state) == []
    assert not state.exists()
    with Journal.open(state, base_url=BASE, api_key=KEY, clock=FakeClock()) as j:
        first = j.start_run(
            sheet=Path("a.csv"),
            report=Path("a.xlsx"),
            dry_run=False,
            full=False,
            config=Path("c.toml"),
        )
        j.finish_run(first, counts={"updated": 4}, status="finished", duration_s=2.25)
        second = j.start_run(sheet=Path("b.csv"), report=None, dry_run=True, full=False)
        assert read_runs(state) == j.runs()  # while open: the WAL's rows are seen too
    runs = read_runs(state, limit=5)
    assert [r.id for r in runs] == [second, first]
    assert read_runs(state, limit=1) == runs[:1]
    assert json.loads(json.dumps(runs[1].as_dict())) == {
        "id": first,
        "started": "2024-03-01T12:02:00+00:00",
        "finished": "2024-03-01T12:03:00+00:00",
        "sheet": str(Path("a.csv").resolve()),
        "report": str(Path("a.xlsx").resolve()),
        "dry_run": False,
        "full": False,
        "status": "finished",
        "counts": {"updated": 4},
        "duration_s": 2.25,
        "base_url": BASE,
        "pid": os.getpid(),
        "config": str(Path("c.toml").resolve()),
        "kept_report": None,  # the run wrote no report for records.py to keep
    }
    for leftover in state.iterdir():  # a read-only reader may leave an empty -wal and -shm
        assert stat.S_IMODE(leftover.stat().st_mode) == 0o600, leftover
    (state / JOURNAL_FILE).write_bytes(b"garbage" * 1000)
    with pytest.raises(CannotStartError, match="cannot be opened"):
        read_runs(state)


def test_a_journal_from_before_runs_kept_their_config_is_read_and_gains_the_column(
    state: Path,
) -> None:
    with Journal.open(state, base_url=BASE, api_key=KEY, clock=FakeClock()) as j:
        old = j.start_run(sheet=Path("a.csv"), report=None, dry_run=False, full=False)
    with contextlib.closing(sqlite3.connect(state / JOURNAL_FILE)) as conn:
        conn.execute("ALTER TABLE runs DROP COLUMN config")  # as the previous version wrote it
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    (before,) = read_runs(state)  # read-only, as `history` reads it
    assert (before.id, before.config) == (old, None)
    with Journal.open(state, base_url=BASE, api_key=KEY, clock=FakeClock()) as j:
        new = j.start_run(
            sheet=Path("b.csv"), report=None, dry_run=False, full=False, config=Path("c.toml")
        )
        assert {r.id: r.config for r in j.runs()} == {old: None, new: str(Path("c.toml").resolve())}
    with contextlib.closing(sqlite3.connect(state / JOURNAL_FILE)) as conn:
        # A column, not a new version: the previous version still reads and writes the file.
        assert conn.execute("PRAGMA user_version").fetchone()[0] == version


def test_mark_stale_runs(jnl: Journal, state: Path) -> None:
    ids = [jnl.start_run(sheet=Path("s.csv"), report=None, dry_run=False, full=False)]
    ids += [jnl.start_run(sheet=Path("s.csv"), report=None, dry_run=False, full=False)]
    done = jnl.start_run(sheet=Path("s.csv"), report=None, dry_run=False, full=False)
    jnl.finish_run(done, counts={}, status="interrupted", duration_s=0)
    conn = sqlite3.connect(state / JOURNAL_FILE)
    with conn:
        conn.execute("UPDATE runs SET pid = 424242 WHERE id = ?", (ids[0],))
    conn.close()

    assert jnl.mark_stale_runs(lambda pid: pid != 424242) == 1
    status = {r.id: r.status for r in jnl.runs()}
    assert status == {ids[0]: "killed", ids[1]: "running", done: "interrupted"}
    assert jnl.mark_stale_runs(lambda pid: False) == 1  # finished runs are left alone
    assert {r.id: r.status for r in jnl.runs()}[ids[1]] == "killed"
    assert jnl.mark_stale_runs() == 0


# -- crash safety and privacy ----------------------------------------------------------------

CRASHING_CHILD = """
    import os, signal, sys
    from pathlib import Path
    from bulk_update.journal import Journal

    state, base, key = Path(sys.argv[1]), "https://api.comeet.co", "api-key-7f3a9c1e5b"
    j = Journal.open(state, base_url=base, api_key=key)
    run = j.start_run(sheet=Path("s.csv"), report=None, dry_run=False, full=False)
    for i in range(int(sys.argv[2])):
        fields = {"email": j.fingerprint(f"c{i}@example.com"), "phone": j.fingerprint(str(i))}
        j.record_applied(f"AE.{i}", fields, run, note_fp=j.fingerprint(f"note {i}"))
    j.note_pending("AE.last", j.fingerprint("pending note"), run)
    if sys.argv[3] == "exit":
        os._exit(1)
    os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("how", ["exit", "sigkill"])
def test_a_killed_process_loses_no_recorded_row(state: Path, how: str) -> None:
    n = 300
    child = _child(CRASHING_CHILD, str(state), str(n), how)
    _, err = child.communicate(timeout=60)
    assert child.returncode == (1 if how == "exit" else -signal.SIGKILL), err
    assert (state / f"{JOURNAL_FILE}-wal").stat().st_size > 0  # never folded into the file

    with Journal.open(state, base_url=BASE, api_key=KEY) as j:
        found = j.applied_many(f"AE.{i}" for i in range(n))
        for i in range(n):
            assert found[f"AE.{i}"] == {
                "email": j.fingerprint(f"c{i}@example.com"),
                "phone": j.fingerprint(str(i)),
            }
        assert j.notes(f"AE.{n - 1}") == {j.fingerprint(f"note {n - 1}"): "applied"}
        assert j.notes("AE.last") == {j.fingerprint("pending note"): "pending"}
        (run,) = j.runs()
        assert (run.status, run.pid) == ("running", child.pid)
        assert j.mark_stale_runs() == 1
        assert j.runs()[0].status == "killed"


def test_the_journal_holds_no_personal_data_nor_the_key(state: Path) -> None:
    secrets = ["dana.cohen@example.com", "+972-50-123-4567", "Dana Cohen", "Haifa Street 7", KEY]
    with Journal.open(state, base_url=BASE, api_key=KEY) as j:
        run = j.start_run(sheet=Path("candidates.csv"), report=None, dry_run=False, full=False)
        for i in range(50):
            values = {
                "email": "dana.cohen@example.com",
                "phone": "+972-50-123-4567",
                "first_name": "Dana Cohen",
                "address.street": "Haifa Street 7",
            }
            fields = {path: j.fingerprint(value) for path, value in values.items()}
            note = j.fingerprint(f"Called Dana Cohen about {KEY}")
            j.note_pending(f"AE.{i}", note, run)
            j.record_applied(f"AE.{i}", fields, run, note_fp=note)
        logged = _log(state).read_bytes()  # the log of confirmations, before it is folded in
        assert b"AE.49" in logged
        j.finish_run(run, counts={"updated": 50}, status="finished", duration_s=1)
        raw = (state / JOURNAL_FILE).read_bytes() + (state / f"{JOURNAL_FILE}-wal").read_bytes()
        raw += logged
        assert b"AE.49" in raw  # the bytes do hold what was written
    raw += (state / JOURNAL_FILE).read_bytes()  # after closing: the WAL folded into the file
    for secret in secrets:
        for encoding in ("utf-8", "utf-16-le", "utf-16-be"):
            assert secret.encode(encoding) not in raw, secret
    # nor plain (unkeyed) hashes that a dictionary attack could reverse
    plain = hashlib.sha256(json.dumps("dana.cohen@example.com").encode()).digest()
    assert plain not in raw and plain.hex().encode() not in raw


# -- the run lock ----------------------------------------------------------------------------


def test_lock_file_is_named_by_a_hash_of_the_key(state: Path) -> None:
    lock = RunLock(state, api_key=KEY)
    assert lock.path.parent == state
    assert lock.path.name == f"run-{hashlib.sha256(KEY.encode()).hexdigest()[:16]}.lock"
    assert lock.pid_path == lock.path.with_suffix(".pid")
    assert KEY not in str(lock.path) and KEY not in repr(vars(lock))


def test_a_second_lock_in_the_same_process_conflicts(state: Path) -> None:
    first, second = RunLock(state, api_key=KEY), RunLock(state, api_key=KEY)
    assert first.acquire() is None
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert first.pid_path.read_text().strip() == str(os.getpid())
    with pytest.raises(LockError) as info:
        second.acquire()
    assert info.value.message == (
        f"another run (process {os.getpid()}) is using this state dir and API key"
    )
    assert info.value.fix == (
        f"wait for it to finish, or stop it (kill {os.getpid()}); "
        "use another --state-dir to run in parallel"
    )
    assert info.value.exit_code == 2
    assert RunLock(state, api_key="another-key").acquire() is None  # another key: its own lock
    first.release()
    assert first.pid_path.read_text() == ""
    assert second.acquire() is None  # a clean release: no takeover message
    second.release()


def test_context_manager_acquires_and_releases(state: Path) -> None:
    with RunLock(state, api_key=KEY) as lock:
        assert lock.took_over is None
        with pytest.raises(LockError), RunLock(state, api_key=KEY):
            pass
    with RunLock(state, api_key=KEY):
        pass


HOLDING_CHILD = """
    import sys
    from pathlib import Path
    from bulk_update.journal import RunLock

    lock = RunLock(Path(sys.argv[1]), api_key="api-key-7f3a9c1e5b")
    lock.acquire()
    print("locked", flush=True)
    sys.stdin.read()  # hold until the parent closes our stdin
    lock.release()
"""


def test_a_lock_held_by_another_process_then_left_by_it(state: Path) -> None:
    child = _child(HOLDING_CHILD, str(state))
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "locked"
        with pytest.raises(LockError, match=rf"process {child.pid}\)"):
            RunLock(state, api_key=KEY).acquire()
    finally:
        child.kill()  # dies holding the lock: the OS drops it, the pid file stays
        child.communicate(timeout=30)
    lock = RunLock(state, api_key=KEY)
    message = lock.acquire()
    assert message == (
        f"took over the lock left by process {child.pid}, which is no longer running"
    )
    assert lock.pid_path.read_text().strip() == str(os.getpid())
    lock.release()


def test_a_stale_pid_is_taken_over(state: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    state.mkdir(parents=True)
    lock = RunLock(state, api_key=KEY)
    lock.pid_path.write_text(f"{gone.pid}\n")
    with lock:
        assert lock.took_over == (
            f"took over the lock left by process {gone.pid}, which is no longer running"
        )


def test_a_pid_we_may_not_signal_is_alive(state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(pid: int, sig: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    state.mkdir(parents=True)
    lock = RunLock(state, api_key=KEY)
    lock.pid_path.write_text("1\n")
    monkeypatch.setattr(os, "kill", refuse)  # the os module journal/lock.py calls
    assert process_alive(4321) is True
    assert lock.acquire() is None  # not a dead process: no takeover message
    lock.release()


def test_process_alive() -> None:
    assert process_alive(os.getpid())
    assert not process_alive(0) and not process_alive(-1)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert not process_alive(gone.pid)


def test_an_unusable_state_dir_is_a_clear_start_error(tmp_path: Path) -> None:
    from bulk_update.errors import CannotStartError

    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(CannotStartError, match="cannot be used") as info:
        Journal.open(blocker / "state", base_url="https://x", api_key="k")
    assert info.value.exit_code == 2
    with pytest.raises(CannotStartError, match="cannot be used"):
        RunLock(blocker, api_key="k").acquire()
