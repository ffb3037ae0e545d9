"""Safe to re-run and to kill: the journal, resume, the run lock (against 127.0.0.1).

Every run here is the real command line in a subprocess; the sandbox server lives across
runs, so what it received and applied over all of them is checked from its side.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook

from bulk_update.sandbox import DEMO_API_KEY, DEMO_SECRET, Faults, SandboxState, ThreadedSandbox

from .conftest import ROOT, run_cli

CREDS = {"COMEET_API_KEY": DEMO_API_KEY, "COMEET_SECRET": DEMO_SECRET}
HEADER = ["uid", "First Name", "Email", "Phone", "Address.City", "Note"]


def people(n: int, prefix: str = "RR") -> list[list[str]]:
    return [
        [
            f"{prefix}.{i}",
            f"Person{i}",
            f"person{i}@mail.example",
            f"+97250{i:07d}",
            f"City{i}",
            f"Called on day {i}, all good",
        ]
        for i in range(n)
    ]


def write_sheet(path: Path, rows: Sequence[Sequence[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([HEADER, *rows])
    return path


def make_state(rows: Sequence[Sequence[str]]) -> SandboxState:
    state = SandboxState()
    for row in rows:
        state.candidates[row[0]] = {"uid": row[0]}
    return state


def outcomes(path: Path) -> list[str]:
    ws = load_workbook(path)["Results"]
    return [str(r[2]) for r in ws.iter_rows(min_row=2, values_only=True)]


def assert_in_sheet_state(state: SandboxState, rows: Sequence[Sequence[str]]) -> None:
    snap = state.snapshot()
    for uid, first, email, phone, city, note in rows:
        candidate = snap.candidates[uid]
        assert candidate["first_name"] == first, uid
        assert candidate["email"] == email, uid
        assert candidate["phone"] == phone, uid
        assert candidate["address"]["city"] == city, uid
        assert snap.notes.get(uid) == [note], uid  # added once, never twice


def cli_env(state_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMEET_")}
    env.update(CREDS, PYTHONPATH=str(ROOT), XDG_STATE_HOME=str(state_dir))
    return env


def start_run(
    sheet: Path, sb: ThreadedSandbox, state_dir: Path, *extra: str
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bulk_update", "run", str(sheet), "--base-url", sb.base_url,
         "--report", str(sheet.with_suffix(".out.xlsx")), *extra],
        env=cli_env(state_dir), cwd=sheet.parent, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def wait_for(predicate: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_second_run_sends_nothing_and_a_changed_cell_sends_only_that_field(
    tmp_path: Path,
) -> None:
    rows = people(12)
    sheet = write_sheet(tmp_path / "s.csv", rows)
    state = make_state(rows)
    env = {**CREDS, "XDG_STATE_HOME": str(tmp_path / "state")}
    with ThreadedSandbox(state) as sb:
        first = run_cli("run", sheet, "--base-url", sb.base_url, env=env, cwd=tmp_path)
        assert first.code == 0, first.err
        assert len(state.requests) == 12

        again = run_cli("run", sheet, "--base-url", sb.base_url, env=env, cwd=tmp_path)
        assert again.code == 0, again.err
        assert len(state.requests) == 12  # not one more request
        assert outcomes(tmp_path / "s.results.xlsx") == ["unchanged"] * 12
        assert "12 unchanged" in again.out

        rows[3][3] = "+972509999999"
        write_sheet(sheet, rows)
        changed = run_cli("run", sheet, "--base-url", sb.base_url, env=env, cwd=tmp_path)
        assert changed.code == 0, changed.err
        assert len(state.requests) == 13
        assert state.requests[-1].uid == "RR.3"
        assert state.requests[-1].body == {"phone": "+972509999999"}
        assert outcomes(tmp_path / "s.results.xlsx").count("updated") == 1

        full = run_cli("run", sheet, "--base-url", sb.base_url, "--full", env=env, cwd=tmp_path)
        assert full.code == 0, full.err
        assert len(state.requests) == 25
        # --full sends every field again, but a note already added never goes twice
        assert all("note" not in r.body for r in state.requests[13:])
        assert all("email" in r.body for r in state.requests[13:])
    assert_in_sheet_state(state, rows)


def test_a_fixed_results_sheet_sends_only_what_is_not_applied_yet(tmp_path: Path) -> None:
    rows = people(6)
    rows[2][2] = "broken@"  # invalid: not sent
    sheet = write_sheet(tmp_path / "s.csv", rows)
    state = make_state(rows)
    env = {**CREDS, "XDG_STATE_HOME": str(tmp_path / "state")}
    with ThreadedSandbox(state) as sb:
        res = run_cli("run", sheet, "--base-url", sb.base_url, env=env, cwd=tmp_path)
        assert res.code == 1
        report = tmp_path / "s.results.xlsx"
        wb = load_workbook(report)
        ws = wb["Results"]
        header = [c.value for c in ws[1]]
        email = header.index("Email", 8) + 1
        assert ws.cell(4, 3).value == "invalid"
        ws.cell(4, email).value = "person2@mail.example"  # the recruiter fixes the cell
        fixed = tmp_path / "fixed.xlsx"
        wb.save(fixed)
        res = run_cli("run", fixed, "--base-url", sb.base_url, env=env, cwd=tmp_path)
        assert res.code == 0, res.err
        sent = [r.uid for r in state.requests]
        # the first run's workers may answer in any order; the re-run sends only the fixed row
        assert sorted(sent[:5]) == [f"RR.{i}" for i in (0, 1, 3, 4, 5)]
        assert sent[5:] == ["RR.2"]
    rows[2][2] = "person2@mail.example"
    assert_in_sheet_state(state, rows)


#: A re-run through the slow sandbox need not wait on four workers: what it sends is tested.
RERUN = ("--concurrency", "16")


@pytest.mark.parametrize("after", [1, 9, 22])
def test_sigterm_then_rerun_finishes_the_job_without_sending_anything_twice(
    tmp_path: Path, after: int
) -> None:
    rows = people(30)
    sheet = write_sheet(tmp_path / "s.csv", rows)
    state = make_state(rows)
    state_dir = tmp_path / "state"
    with ThreadedSandbox(state, faults=Faults(slow=1.0, slow_s=0.15)) as sb:
        proc = start_run(sheet, sb, state_dir, "--rate", "20/1")
        wait_for(lambda: len(state.applied) >= after)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 3, err
        assert "not_sent" in out.strip().splitlines()[-1]
        first = {uid for uid, _ in state.applied}
        assert after <= len(first) < 30

        res = run_cli("run", sheet, "--base-url", sb.base_url, "--report", tmp_path / "2.xlsx",
                      *RERUN, env={**CREDS, "XDG_STATE_HOME": str(state_dir)},
                      cwd=tmp_path)  # fmt: skip
        assert res.code == 0, res.err
    applied = Counter(uid for uid, _ in state.applied)
    assert applied == Counter(row[0] for row in rows)  # every row applied exactly once
    second = outcomes(tmp_path / "2.xlsx")
    assert second.count("unchanged") == len(first)
    assert second.count("updated") == 30 - len(first)
    assert_in_sheet_state(state, rows)


@pytest.mark.parametrize("after", [0, 7, 18])
def test_sigkill_then_rerun_leaves_the_sheets_state_and_no_note_twice(
    tmp_path: Path, after: int
) -> None:
    rows = people(24)
    sheet = write_sheet(tmp_path / "s.csv", rows)
    state = make_state(rows)
    state_dir = tmp_path / "state"
    with ThreadedSandbox(state, faults=Faults(slow=1.0, slow_s=0.3)) as sb:
        proc = start_run(sheet, sb, state_dir, "--rate", "1000/1", "--concurrency", "4")
        # kill while every worker has a request in the server's hands
        wait_for(lambda: len(state.applied) >= after and state.arrived - len(state.requests) >= 4)
        proc.kill()
        proc.communicate(timeout=30)
        res = run_cli("run", sheet, "--base-url", sb.base_url, "--report", tmp_path / "2.xlsx",
                      *RERUN, env={**CREDS, "XDG_STATE_HOME": str(state_dir)},
                      cwd=tmp_path)  # fmt: skip
        assert res.code == 0, res.err
        wait_for(lambda: state.arrived == len(state.requests))  # the killed run's last answers
    assert_in_sheet_state(state, rows)
    report = load_workbook(tmp_path / "2.xlsx")["Results"]
    messages = [str(r[5]) for r in report.iter_rows(min_row=2, values_only=True)]
    held_back = [m for m in messages if m.startswith("note not sent again")]
    assert len(held_back) == 4  # the notes in flight at the kill: reported, not sent again
    # The notes the killed run added: each row says so (issue 13).
    assert sum("the same note was added on" in m for m in messages) >= max(after - 4, 0)


def test_the_journal_holds_no_personal_data(tmp_path: Path) -> None:
    rows = people(5)
    sheet = write_sheet(tmp_path / "s.csv", rows)
    state = make_state(rows)
    state_dir = tmp_path / "state"
    with ThreadedSandbox(state) as sb:
        res = run_cli("run", sheet, "--base-url", sb.base_url,
                      env={**CREDS, "XDG_STATE_HOME": str(state_dir)}, cwd=tmp_path)  # fmt: skip
    assert res.code == 0
    files = list((state_dir / "bulk-update").iterdir())
    assert any(f.name.endswith(".sqlite3") for f in files)
    blob = b"".join(f.read_bytes() for f in files if f.is_file())
    for row in rows:
        for value in row[1:]:
            assert value.encode() not in blob, value
    assert DEMO_API_KEY.encode() not in blob and DEMO_SECRET.encode() not in blob


def test_two_runs_at_once_the_second_exits_2_naming_the_first(tmp_path: Path) -> None:
    rows = people(10)
    sheet = write_sheet(tmp_path / "s.csv", rows)
    state = make_state(rows)
    state_dir = tmp_path / "state"
    with ThreadedSandbox(state) as sb:
        proc = start_run(sheet, sb, state_dir, "--rate", "2/1")
        try:
            wait_for(lambda: len(state.applied) >= 1)
            env = {**CREDS, "XDG_STATE_HOME": str(state_dir)}
            res = run_cli("run", sheet, "--base-url", sb.base_url, env=env, cwd=tmp_path)
            assert res.code == 2
            assert f"process {proc.pid}" in res.err
            assert "Traceback" not in res.err
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=30)
        requests_of_second = [r for r in state.requests if r.time > 0]
        assert len(requests_of_second) == len(state.requests)  # nothing beyond the first run


def test_a_stale_lock_is_taken_over_with_a_message(tmp_path: Path) -> None:
    rows = people(3)
    sheet = write_sheet(tmp_path / "s.csv", rows)
    state = make_state(rows)
    state_dir = tmp_path / "state"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    import hashlib

    lock_dir = state_dir / "bulk-update"
    lock_dir.mkdir(parents=True)
    digest = hashlib.sha256(DEMO_API_KEY.encode()).hexdigest()[:16]
    (lock_dir / f"run-{digest}.pid").write_text(str(dead.pid))  # the holder's pid
    with ThreadedSandbox(state) as sb:
        res = run_cli("run", sheet, "--base-url", sb.base_url,
                      env={**CREDS, "XDG_STATE_HOME": str(state_dir)}, cwd=tmp_path)  # fmt: skip
    assert res.code == 0, res.err
    assert f"process {dead.pid}" in res.err and "no longer running" in res.err
    assert_in_sheet_state(state, rows)


def test_history_lists_recent_runs(tmp_path: Path) -> None:
    rows = people(4)
    sheet = write_sheet(tmp_path / "s.csv", rows)
    state = make_state(rows)
    env = {**CREDS, "XDG_STATE_HOME": str(tmp_path / "state")}
    with ThreadedSandbox(state) as sb:
        run_cli("run", sheet, "--base-url", sb.base_url, env=env, cwd=tmp_path)
        run_cli("run", sheet, "--base-url", sb.base_url, env=env, cwd=tmp_path)
    res = run_cli("history", env=env, cwd=tmp_path)
    assert res.code == 0, res.err
    lines = res.out.strip().splitlines()
    assert "s.csv" in res.out and "s.results.xlsx" in res.out
    newest = next(line for line in lines if "unchanged" in line)
    oldest = next(line for line in lines if "4 updated" in line)
    assert lines.index(newest) < lines.index(oldest)


def test_dry_run_consults_the_journal_when_the_key_is_known(tmp_path: Path) -> None:
    rows = people(3)
    sheet = write_sheet(tmp_path / "s.csv", rows)
    state = make_state(rows)
    env = {**CREDS, "XDG_STATE_HOME": str(tmp_path / "state")}
    with ThreadedSandbox(state) as sb:
        assert run_cli("run", sheet, "--base-url", sb.base_url, env=env, cwd=tmp_path).code == 0
        rows[1][1] = "Renamed"
        write_sheet(sheet, rows)
        preview = run_cli(
            "run", sheet, "--base-url", sb.base_url, "--dry-run", env=env, cwd=tmp_path
        )
        assert preview.code == 0, preview.err
        assert "1 would_update" in preview.out and "2 unchanged" in preview.out
        assert 'row 3 PATCH /candidates/RR.1 {"first_name": "Renamed"}' in preview.out
        blind = run_cli(
            "run", sheet, "--base-url", sb.base_url, "--dry-run",
            env={"XDG_STATE_HOME": str(tmp_path / "state")}, cwd=tmp_path,
        )  # fmt: skip
        assert "3 would_update" in blind.out and "does not consult the journal" in blind.err
    assert len(state.requests) == 3
