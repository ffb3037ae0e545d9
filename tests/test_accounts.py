"""The journal belongs to the Comeet account, not the API key; a note left out says why.

Issue 13, parts 2 and 3: a rotated key keeps the journal (and never adds a note again); the
journals that versions before 3 kept per API key are adopted; `[journal] scope` separates
companies on one base URL; a row whose note is not sent says when and by which run it was.
"""

from __future__ import annotations

import csv
import logging
import re
import sqlite3
import textwrap
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import bulk_update as bu
from bulk_update import accounts
from bulk_update.config import parse_config
from bulk_update.errors import ConfigError
from bulk_update.journal import JOURNAL_FILE, Journal
from bulk_update.models import Outcome
from bulk_update.sandbox import (
    DEMO_API_KEY,
    DEMO_SECRET,
    SandboxServer,
    SandboxState,
    ThreadedSandbox,
)

from .conftest import run_cli
from .test_journal import _child, per_key_journal

BASE = "https://api.comeet.co"
CREDS = bu.Credentials(DEMO_API_KEY, DEMO_SECRET)
ADDED = re.compile(
    r"note not sent: the same note was added on (\d{4}-\d{2}-\d{2}) \(run (\d+)\); "
    r"change its text to add it again"
)


def write_csv(path: Path, rows: Sequence[Sequence[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)
    return path


def read_report(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8-sig") as fh:
        return list(csv.DictReader(fh))


class Day:
    """A clock stuck on one day (the journal's dates), a second later at each call."""

    def __init__(self, day: str) -> None:
        self.now = datetime.fromisoformat(f"{day}T09:00:00+00:00")

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


# -- a rotated key ---------------------------------------------------------------------------


def test_a_new_key_on_the_same_base_url_keeps_the_journal_and_adds_no_note_again(
    tmp_path: Path,
) -> None:
    sheet = write_csv(
        tmp_path / "day.csv", [["uid", "first_name", "note"], ["AE.1", "Ann", "Left voicemail"]]
    )
    state = SandboxState(candidates={"AE.1": {"uid": "AE.1"}})
    state_dir = tmp_path / "state"

    def run(key: str, report: str, port: int = 0) -> tuple[int, str]:
        # The same Comeet (same base URL) that now accepts only this key.
        with ThreadedSandbox(state, port=port, api_key=key) as sandbox:
            done = run_cli(
                "run", sheet, "--base-url", sandbox.base_url, "--state-dir", state_dir,
                "--report", tmp_path / report, "--full",
                env={"COMEET_API_KEY": key, "COMEET_SECRET": DEMO_SECRET},
            )  # fmt: skip
            assert done.code == 0, done.err
            return int(sandbox.base_url.rsplit(":", 1)[1]), sandbox.base_url

    port, base_url = run("key-A", "a.csv")
    assert run("key-B", "b.csv", port) == (port, base_url)
    assert state.notes == {"AE.1": ["Left voicemail"]}  # once, not twice
    (row,) = read_report(tmp_path / "b.csv")
    assert (row["outcome"], row["fields"]) == ("updated", "first_name")  # --full: sent again
    said = ADDED.fullmatch(row["message"])
    assert said is not None, row["message"]
    assert said[1] == f"{datetime.now(UTC):%Y-%m-%d}" and said[2] == "1"


# -- the journals kept per API key (versions 1 and 2) --------------------------------------


def test_a_per_key_journal_is_adopted_once_whatever_the_key(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state_dir = tmp_path / "state"
    conn, old = per_key_journal(state_dir, "old-key")
    run = old.start_run(sheet=Path("s.csv"), report=None, dry_run=False, full=False)
    note = old.fingerprint("Left voicemail")
    old.record_applied("AE.1", {"email": old.fingerprint("a@b.co")}, run, note_fp=note)
    old.note_pending("AE.2", old.fingerprint("Call back"), run)
    old.flush()
    old._log.close()
    conn.close()
    with (
        caplog.at_level(logging.INFO, logger="bulk_update"),
        Journal.open(state_dir, base_url=BASE + "/", api_key="a-new-key") as j,
    ):
        assert j.applied("AE.1") == {"email": j.fingerprint("a@b.co")}
        assert j.notes("AE.1") == {note: "applied"}
        assert j.notes("AE.2") == {j.fingerprint("Call back"): "pending"}
        _, entry = j.note_entry(j.note_entries_many(["AE.1"])["AE.1"], "Left voicemail")
        assert entry is not None and entry.run == run
    said = [r.getMessage() for r in caplog.records if "per API key" in r.getMessage()]
    assert said == [
        f"the journal now belongs to the account ({BASE}), not to an API key: adopted the "
        "entries of 1 journal(s) kept per API key (candidates with applied fields: 1, notes: 2)"
    ]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="bulk_update"):
        Journal.open(state_dir, base_url=BASE).close()
    assert not [r for r in caplog.records if "per API key" in r.getMessage()]  # once


def test_two_old_keys_are_merged_keeping_the_latest_field_and_every_note(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    first_conn, first = per_key_journal(state_dir, "key-1")
    first_conn.close()
    conn, second = per_key_journal(state_dir, "key-2")
    first = Journal(
        conn, path=first.path, scope=first._scope, salt=first._salt, clock=Day("2026-11-01")
    )
    second = Journal(
        conn, path=second.path, scope=second._scope, salt=second._salt, clock=Day("2026-12-01")
    )
    # Key 1, in November: email, phone and a note. Key 2 (rotated), in December: a new
    # email, and the same note added again (the bug this fixes).
    first.record_applied(
        "AE.1",
        {"email": first.fingerprint("old@b.co"), "phone": first.fingerprint("+972501")},
        1,
        note_fp=first.fingerprint("Left voicemail"),
    )
    first.record_applied("AE.2", {"email": first.fingerprint("two@b.co")}, 1)
    second.record_applied(
        "AE.1",
        {"email": second.fingerprint("new@b.co")},
        2,
        note_fp=second.fingerprint("Left voicemail"),
    )
    # A killed process of key 2 left its last confirmation in the log, not in SQLite yet.
    second.record_applied("AE.3", {"phone": second.fingerprint("+1")}, 2)
    first.flush()
    first._log.close()
    second._log.close()
    conn.close()
    settings = bu.Settings(base_url=BASE)
    sheet = write_csv(
        tmp_path / "s.csv",
        [
            ["uid", "email", "phone", "note"],
            ["AE.1", "new@b.co", "+972501", "Left voicemail"],
            ["AE.2", "two@b.co", "", ""],
            ["AE.3", "", "+1", ""],
            ["AE.4", "four@b.co", "", "Left voicemail"],
        ],
    )
    with Journal.open(state_dir, base_url=BASE, api_key="key-3") as j:
        the_plan = bu.plan(bu.load(sheet), settings, journal=j)
        assert len(j.notes("AE.1")) == 2  # both notes kept
        assert j.fingerprint("new@b.co") == second.fingerprint("new@b.co")  # the latest salt
    rows = {r.uid: r for r in the_plan.rows}
    assert [rows[u].outcome for u in ("AE.1", "AE.2", "AE.3")] == [Outcome.UNCHANGED] * 3
    assert rows["AE.4"].fields == ("email", "note")
    (message,) = rows["AE.1"].warnings
    said = ADDED.fullmatch(message)
    assert said is not None and said.groups() == ("2026-11-01", "1")  # the first time


def test_a_killed_adoption_is_done_again_by_the_next_open(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    conns = []
    for key in ("key-1", "key-2"):
        conn, old = per_key_journal(state_dir, key)
        old.record_applied("AE.1", {key: old.fingerprint(key)}, 1)
        old.flush()
        old._log.close()
        conns.append(conn)
    for conn in conns:
        conn.close()
    # Killed (os._exit: no cleanup at all) after copying the first old journal.
    child = _child(
        """
        import os, sys
        from pathlib import Path
        from bulk_update import accounts
        from bulk_update.journal import Journal
        merge, calls = accounts._merge_applied, []
        def dying(*args):
            calls.append(merge(*args))
            if len(calls) == 2:
                os._exit(9)
            return calls[-1]
        accounts._merge_applied = dying
        Journal.open(Path(sys.argv[1]), base_url=sys.argv[2])
        """,
        str(state_dir),
        BASE,
    )
    child.communicate(timeout=60)
    assert child.returncode == 9
    with Journal.open(state_dir, base_url=BASE) as j:
        assert set(j.applied("AE.1")) == {"key-1", "key-2"}
    conn = sqlite3.connect(state_dir / JOURNAL_FILE)
    assert conn.execute("SELECT count(*) FROM scopes WHERE name IS NOT NULL").fetchone() == (1,)
    conn.close()


# -- [journal] scope --------------------------------------------------------------------------


async def test_journal_scope_separates_two_companies_on_one_base_url(tmp_path: Path) -> None:
    sheet = write_csv(tmp_path / "s.csv", [["uid", "note"], ["AE.1", "Welcome"]])
    state = SandboxState(candidates={"AE.1": {"uid": "AE.1"}})
    async with SandboxServer(state) as server:
        for company in ("acme", "globex", "acme"):
            settings = parse_config(
                {"api": {"base_url": server.base_url}, "journal": {"scope": company}}
            )
            assert settings.journal_scope == company
            with Journal.open(
                tmp_path / "st", base_url=settings.base_url, journal_scope=settings.journal_scope
            ) as j:
                the_plan = bu.plan(bu.load(sheet), settings, journal=j)
                await bu.run_async(the_plan, settings, CREDS, report_path=False, journal=j)
    # acme adds it, globex (its own journal) adds it, acme again does not.
    assert state.notes == {"AE.1": ["Welcome", "Welcome"]}


@pytest.mark.parametrize("value", ["", " acme", "acme corp", "a/b", "x" * 65, 3])
def test_an_invalid_journal_scope_is_a_config_error_naming_the_key(value: object) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"journal": {"scope": value}}, source="config file 'bulk_update.toml'")
    assert "journal.scope" in info.value.message
    with pytest.raises(ConfigError, match=r"journal\.bogus: unknown key"):
        parse_config({"journal": {"bogus": 1}})


def test_the_example_config_shows_journal_scope_commented_out() -> None:
    from .conftest import ROOT

    text = (ROOT / "config.example.toml").read_text(encoding="utf-8")
    # The table's header as the others' (a table without keys changes nothing), its value not.
    assert "\n[journal]\n" in text and '\n# scope = "acme"' in text
    section = textwrap.dedent(
        "\n".join(line.removeprefix("# ") for line in text.split("[journal]")[1].splitlines())
    )
    assert parse_config({"journal": {"scope": section.split('"')[1]}}).journal_scope == "acme"


# -- a note left out says why -----------------------------------------------------------------


async def test_day_two_says_when_and_by_which_run_the_note_was_added(tmp_path: Path) -> None:
    sheet = write_csv(
        tmp_path / "s.csv",
        [["uid", "prospect_status", "note"], ["AE.1", "Contacted", "Left voicemail"]],
    )
    state = SandboxState(candidates={"AE.1": {"uid": "AE.1"}})
    results = {}
    async with SandboxServer(state) as server:
        settings = bu.Settings(base_url=server.base_url)
        for day, full in (("2026-12-07", False), ("2026-12-08", False), ("2026-12-09", True)):
            with Journal.open(tmp_path / "st", base_url=server.base_url, clock=Day(day)) as j:
                the_plan = bu.plan(bu.load(sheet), settings, journal=j, full=full)
                summary = await bu.run_async(
                    the_plan, settings, CREDS, report_path=False, journal=j
                )
            (results[day],) = summary.results
    assert state.notes == {"AE.1": ["Left voicemail"]}
    assert (results["2026-12-07"].outcome, results["2026-12-07"].message) == (Outcome.UPDATED, "")
    unchanged, full = results["2026-12-08"], results["2026-12-09"]
    assert unchanged.outcome is Outcome.UNCHANGED
    assert (full.outcome, full.fields) == (Outcome.UPDATED, ("prospect_status",))
    for result in (unchanged, full):
        said = ADDED.fullmatch(result.message)
        assert said is not None and said.groups() == ("2026-12-07", "1"), result.message


def test_adopting_needs_no_table_of_the_old_layout_to_be_rebuilt(tmp_path: Path) -> None:
    # The schema script of version 3 keeps every old scope's id, key hash and salt.
    conn, old = per_key_journal(tmp_path / "st", "k")
    conn.execute("BEGIN")
    for statement in accounts.SCHEMA_V3.split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute("COMMIT")
    assert conn.execute("SELECT id, key_sha256 IS NOT NULL, name, salt FROM scopes").fetchall() == [
        (old._scope, 1, None, old._salt)
    ]
    conn.close()
