"""End to end: the command line against the sandbox server on 127.0.0.1.

Every check is made from the server's side: what it received, what it applied, and the
final state of every candidate.
"""

from __future__ import annotations

import base64
import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from openpyxl import Workbook, load_workbook

from bulk_update.models import REPORT_COLUMNS, Rate
from bulk_update.sandbox import (
    DEMO_API_KEY,
    DEMO_SECRET,
    Faults,
    SandboxState,
    ThreadedSandbox,
    load_seed,
)

from .conftest import ROOT, SAMPLE, run_cli, without_backoff

CREDS = {"COMEET_API_KEY": DEMO_API_KEY, "COMEET_SECRET": DEMO_SECRET}


def make_state(
    uids: Sequence[str],
    *,
    merged: Sequence[str] = (),
    failing: Sequence[str] = (),
    custom_fields: Sequence[str] = ("Team", "Start date"),
) -> SandboxState:
    state = SandboxState()
    for uid in uids:
        state.candidates[uid] = {"uid": uid, "first_name": "Old", "last_name": "Name"}
    state.merged.update(merged)
    state.always_failing.update(failing)
    state.custom_fields.update(custom_fields)
    return state


@pytest.fixture
def sandbox() -> Iterator[Any]:
    """A factory: `with sandbox(state, rate=..., faults=...) as sb:`."""

    def factory(state: SandboxState, **kwargs: Any) -> ThreadedSandbox:
        return ThreadedSandbox(state, **kwargs)

    yield factory


def write_csv(path: Path, rows: Sequence[Sequence[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)
    return path


def report_rows(path: Path) -> list[dict[str, Any]]:
    wb = load_workbook(path)
    ws = wb["Results"]
    values = list(ws.iter_rows(values_only=True))
    header = [str(h) for h in values[0]]
    return [dict(zip(header, row, strict=False)) for row in values[1:]]


def outcomes(path: Path) -> dict[str, str]:
    return {str(r["uid"]): str(r["outcome"]) for r in report_rows(path)}


def config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bulk_update.toml"
    path.write_text(text)
    return path


def max_in_window(times: Sequence[float], period: float) -> int:
    """The most arrivals in any sliding window of `period` seconds."""
    ordered = sorted(times)
    best = 0
    start = 0
    for end, t in enumerate(ordered):
        while ordered[start] <= t - period:
            start += 1
        best = max(best, end - start + 1)
    return best


# --- every rule of sections 4 and 5, checked from the server's side ------------------------

RULES_CONFIG = """
[defaults.updated_by]
type = "app"
name = "Spreadsheet sync"
email = "ops@example.com"

[columns]
"Candidate Team" = "custom_fields.Team"

[input]
ignore_columns = ["Internal notes"]
"""


def test_every_column_rule_reaches_the_api_as_the_contract_says(
    tmp_path: Path, sandbox: Any
) -> None:
    (tmp_path / "files").mkdir()
    cv = b"%PDF-1.4 dana's cv"
    (tmp_path / "files" / "dana-cv.pdf").write_bytes(cv)
    (tmp_path / "files" / "cert.txt").write_bytes(b"certificate")
    sheet = write_csv(
        tmp_path / "sheet.csv",
        [
            [
                "UID",
                "First Name",
                "last-name",
                "E-mail",
                "Phone",
                "Prospect Status",
                "Address.Country",
                "address.city",
                "Candidate Team",
                "Note",
                "updated_by.name",
                "Links",
                "Resume",
                "Files",
                "Internal notes",
                "LinkedIn_URL",
            ],
            [
                "AE.1001",
                "  Dana ",
                "Cohen",
                "dana@example.com",
                "+972501234567",
                "not   INTERESTED",
                "il",
                "Tel Aviv",
                "R&D",
                "Met at a meetup, liked\nher talk",
                "Recruiter Rita",
                "https://a.example/x\nhttps://b.example/y",
                "files/dana-cv.pdf",
                "files/cert.txt; files/dana-cv.pdf",
                "private",
                "https://www.linkedin.com/in/dana",
            ],
            # only a uid and updated_by: skipped, nothing sent
            ["AE.1002", "", "", "", "", "", "", "", "", "", "Recruiter Rita", "", "", "", "x", ""],
            # empty cells dropped: only the phone is sent
            ["AE.1003", "", "", "", "0501234567", "", "", "", "", "", "", "", "", "", "", ""],
            [],  # a blank row still counts in the numbering
            ["AE.1004", "Noa", "", "", "", "", "", "", "", "", "", "", "", "", "", ""],
        ],
    )
    state = make_state(["AE.1001", "AE.1002", "AE.1003", "AE.1004"])
    with sandbox(state) as sb:
        res = run_cli(
            "run",
            sheet,
            "--base-url",
            sb.base_url,
            "--config",
            config(tmp_path, RULES_CONFIG),
            "--report",
            tmp_path / "out.xlsx",
            env=CREDS,
            cwd=tmp_path,
        )
    assert res.code == 0, res.err
    bodies = {r.uid: r.body for r in state.requests}
    assert set(bodies) == {"AE.1001", "AE.1003", "AE.1004"}
    pdf = base64.b64encode(cv).decode()
    assert bodies["AE.1001"] == {
        "first_name": "Dana",
        "last_name": "Cohen",
        "email": "dana@example.com",
        "phone": "+972501234567",
        "prospect_status": "Not interested",
        "address": {"country": "IL", "city": "Tel Aviv"},
        "custom_fields": {"Team": "R&D"},
        "note": "Met at a meetup, liked\nher talk",
        "links": [{"url": "https://a.example/x"}, {"url": "https://b.example/y"}],
        "resume": {"name": "dana-cv.pdf", "file": pdf},
        "files": [
            {"name": "cert.txt", "file": base64.b64encode(b"certificate").decode()},
            {"name": "dana-cv.pdf", "file": pdf},
        ],
        "linkedin_url": "https://www.linkedin.com/in/dana",
        "updated_by": {"type": "app", "name": "Recruiter Rita", "email": "ops@example.com"},
    }
    assert bodies["AE.1003"] == {
        "phone": "0501234567",
        "updated_by": {"type": "app", "name": "Spreadsheet sync", "email": "ops@example.com"},
    }
    final = state.candidates["AE.1001"]
    assert final["first_name"] == "Dana"
    assert final["address"]["country"] == "IL"
    assert state.candidates["AE.1004"]["first_name"] == "Noa"
    assert state.candidates["AE.1002"]["first_name"] == "Old"
    rows = {r["uid"]: r for r in report_rows(tmp_path / "out.xlsx")}
    assert rows["AE.1002"]["outcome"] == "skipped"
    assert rows["AE.1004"]["row"] == 6  # the blank row 5 still counts
    assert rows["AE.1001"]["fields"].startswith("first_name,last_name,email,phone")
    assert "Internal notes" in list(rows["AE.1001"])  # input columns kept, even ignored ones


def test_xlsx_cells_arrive_as_typed(tmp_path: Path, sandbox: Any) -> None:
    import datetime as dt

    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.append(
        [
            "uid",
            "phone",
            "national_id",
            "custom_fields.Start date",
            "custom_fields.Team",
            "salary_expectations",
        ]
    )
    ws.append(["AE.2001", "+972501234567", "012345678", dt.datetime(2024, 3, 1), True, 1.5])
    ws.append([1.1, "", "", "", "", ""])  # a uid turned into a number by a spreadsheet
    # A phone and an id stored as numbers have lost their '+' and leading zero: refused.
    ws.append(["AE.2002", 972501234567, 12345678, "", "", 0.1 + 0.2])
    wb.save(tmp_path / "sheet.xlsx")
    state = make_state(["AE.2001", "AE.2002"])
    with sandbox(state) as sb:
        res = run_cli(
            "run",
            tmp_path / "sheet.xlsx",
            "--base-url",
            sb.base_url,
            "--report",
            tmp_path / "out.csv",
            env=CREDS,
            cwd=tmp_path,
        )
    assert res.code == 1, res.err
    assert [r.body for r in state.requests] == [
        {
            "phone": "+972501234567",
            "national_id": "012345678",
            "custom_fields": {"Start date": "2024-03-01", "Team": "TRUE"},
            "salary_expectations": "1.5",
        }
    ]
    with (tmp_path / "out.csv").open(encoding="utf-8-sig", newline="") as fh:
        report = list(csv.DictReader(fh))
    assert report[1]["outcome"] == "invalid"
    assert "as text" in report[1]["message"]
    assert report[2]["outcome"] == "invalid"
    assert report[2]["message"] == (
        "phone: '972501234567' was stored as a number, which loses a leading 0 or +; format "
        "the column as text and type the value again; national_id: '12345678' was stored as "
        "a number, which loses a leading 0 or +; format the column as text and type the "
        "value again"
    )
    assert report[2]["salary_expectations"] == "0.3"  # as Excel shows it


def test_invalid_rows_are_never_sent_and_every_problem_is_named(
    tmp_path: Path, sandbox: Any
) -> None:
    sheet = write_csv(
        tmp_path / "sheet.csv",
        [
            [
                "UID",
                "E-mail",
                "Prospect Status",
                "Address.Country",
                "LinkedIn URL",
                "Resume",
                "updated_by.type",
            ],
            ["61459710", "", "", "", "", "", ""],
            ["AE.3002", "dana@", "Maybe", "Israel", "https://example.com/dana", "", ""],
            ["AE.3003", "", "", "", "", "files/missing.pdf", "robot"],
            ["AE.3004", "a@example.com", "", "", "", "", ""],
            ["AE.3004", "b@example.com", "", "", "", "", ""],
            ["", "c@example.com", "", "", "", "", ""],
            ["../positions", "d@example.com", "", "", "", "", ""],
            ["AE.3005", "ok@example.com", "", "", "", "", ""],
        ],
    )
    state = make_state(["AE.3002", "AE.3003", "AE.3004", "AE.3005"])
    with sandbox(state) as sb:
        res = run_cli(
            "run",
            sheet,
            "--base-url",
            sb.base_url,
            "--report",
            tmp_path / "out.xlsx",
            env=CREDS,
            cwd=tmp_path,
        )
    assert res.code == 1
    assert [r.uid for r in state.requests] == ["AE.3005"]
    rows = {r["row"]: r for r in report_rows(tmp_path / "out.xlsx")}
    assert {n: rows[n]["outcome"] for n in rows} == {
        2: "invalid",
        3: "invalid",
        4: "invalid",
        5: "invalid",
        6: "invalid",
        7: "invalid",
        8: "invalid",
        9: "updated",
    }
    assert "web page" in rows[2]["message"]
    problems = rows[3]["message"]
    for column in ("E-mail", "Prospect Status", "Address.Country", "LinkedIn URL"):
        assert column in problems
    assert "Resume" in rows[4]["message"] and "updated_by.type" in rows[4]["message"]
    assert "more than one row" in rows[5]["message"]
    assert "more than one row" in rows[6]["message"]
    assert "row 3 (uid AE.3002): invalid" in res.err


def test_values_a_spreadsheet_hid_or_lost_are_refused_not_sent(
    tmp_path: Path, sandbox: Any
) -> None:
    """Issue 12: error cells, scientific notation, invisible characters; the rest goes on."""
    sheet = write_csv(
        tmp_path / "sheet.csv",
        [
            ["uid", "Phone", "Email", "Team", "national_id"],
            ["\u200bAE.4001\ufeff", "+972501234567", "a@example.com\u200b", "R&D", "012345678"],
            ["AE.4002", "9.72E+11", "", "", ""],
            ["AE.4003", "", "", "#N/A", ""],
            ["AE.4004", "", "b@exa\u200bmple.com", "", "1.2E+8"],
            ["AE.40\u200b05", "", "", "Sales", ""],
        ],
    )
    (tmp_path / "bulk_update.toml").write_text('[columns]\n"Team" = "custom_fields.Team"\n')
    state = make_state(["AE.4001", "AE.4002", "AE.4003", "AE.4004", "AE.4005"])
    with sandbox(state) as sb:
        res = run_cli(
            "run",
            sheet,
            "--base-url",
            sb.base_url,
            "--report",
            tmp_path / "out.xlsx",
            env=CREDS,
            cwd=tmp_path,
        )
    assert res.code == 1, res.err
    # The invisible characters at the edges are stripped: what the person saw is sent.
    assert [(r.uid, r.body) for r in state.requests] == [
        (
            "AE.4001",
            {
                "phone": "+972501234567",
                "email": "a@example.com",
                "custom_fields": {"Team": "R&D"},
                "national_id": "012345678",
            },
        )
    ]
    rows = {r["row"]: r for r in report_rows(tmp_path / "out.xlsx")}
    assert [rows[n]["outcome"] for n in range(2, 7)] == ["updated", *["invalid"] * 4]
    assert rows[3]["message"].startswith(
        "Phone: '9.72E+11': Excel turned this number into scientific notation"
    )
    assert rows[4]["message"].startswith("Team: '#N/A' is a spreadsheet error")
    assert rows[5]["message"] == (
        "Email: 'b@exa\\u200bmple.com' holds an invisible character that a spreadsheet does "
        "not show; delete the cell's content and type the value again; national_id: '1.2E+8': "
        "Excel turned this number into scientific notation, which loses its digits; format the "
        "column as text and type the number again"
    )
    assert rows[6]["message"].startswith("uid: 'AE.40\\u200b05' holds an invisible character")
    # The dry run (a column at a time, without credentials) says the same.
    dry = run_cli("run", sheet, "--dry-run", "--report", tmp_path / "dry.xlsx", cwd=tmp_path)
    assert dry.code == 1, dry.err
    dry_rows = {r["row"]: r for r in report_rows(tmp_path / "dry.xlsx")}
    assert [dry_rows[n]["outcome"] for n in range(2, 7)] == ["would_update", *["invalid"] * 4]
    assert [dry_rows[n]["message"] for n in range(3, 7)] == [
        rows[n]["message"] for n in range(3, 7)
    ]


def test_unknown_column_stops_before_anything_is_sent(tmp_path: Path, sandbox: Any) -> None:
    sheet = write_csv(tmp_path / "s.csv", [["uid", "Emial"], ["AE.1", "a@example.com"]])
    state = make_state(["AE.1"])
    with sandbox(state) as sb:
        res = run_cli("run", sheet, "--base-url", sb.base_url, env=CREDS, cwd=tmp_path)
    assert res.code == 2
    assert "Emial" in res.err and "email" in res.err and "Fix:" in res.err
    assert "Traceback" not in res.err
    assert state.requests == []
    assert not (tmp_path / "s.results.xlsx").exists()


def test_every_column_problem_is_said_at_once(tmp_path: Path, sandbox: Any) -> None:
    # The config maps a header the sheet renamed: its uid column is gone, among typos.
    sheet = write_csv(tmp_path / "s.csv", [["Candidate", "Emial", "Fone"], ["AE.1", "a@b.co", "1"]])
    (tmp_path / "bulk_update.toml").write_text('[columns]\n"Candidate UID" = "uid"\n')
    state = make_state(["AE.1"])
    with sandbox(state) as sb:
        res = run_cli("run", sheet, "--base-url", sb.base_url, env=CREDS, cwd=tmp_path)
    assert res.code == 2
    for said in (
        "Column 'Candidate' is not a Comeet field.",
        "Column 'Emial' is not a Comeet field. Did you mean 'email'?",
        "Column 'Fone' is not a Comeet field. Did you mean 'phone'?",
        "the sheet has no uid column",
        "config maps 'Candidate UID' to uid, but the sheet has no such column; did you mean "
        "'Candidate'?",
    ):
        assert said in res.err, said
    assert "Traceback" not in res.err
    assert state.requests == []


# --- outcomes from the API ----------------------------------------------------------------


def test_every_api_outcome(tmp_path: Path, sandbox: Any) -> None:
    sheet = write_csv(
        tmp_path / "s.csv",
        [
            ["uid", "first_name", "custom_fields.Nope"],
            ["AE.4001", "Ann", ""],  # updated
            ["AE.4002", "Ben", ""],  # not_found
            ["AE.4003", "Cat", ""],  # rejected: merged away
            ["AE.4004", "", "x"],  # rejected: unknown custom field (400)
            ["AE.4005", "Eve", ""],  # failed: 503 every time
        ],
    )
    state = make_state(
        ["AE.4001", "AE.4003", "AE.4004", "AE.4005"], merged=["AE.4003"], failing=["AE.4005"]
    )
    cfg = config(tmp_path, "[limits]\nmax_attempts = 3\nretry_base_s = 0.01\n")
    with sandbox(state) as sb:
        res = run_cli(
            "run",
            sheet,
            "--base-url",
            sb.base_url,
            "--config",
            cfg,
            "--report",
            tmp_path / "out.xlsx",
            env=CREDS,
            cwd=tmp_path,
        )
    assert res.code == 1
    rows = {r["uid"]: r for r in report_rows(tmp_path / "out.xlsx")}
    assert {u: r["outcome"] for u, r in rows.items()} == {
        "AE.4001": "updated",
        "AE.4002": "not_found",
        "AE.4003": "rejected",
        "AE.4004": "rejected",
        "AE.4005": "failed",
    }
    assert rows["AE.4003"]["error"] == "duplicate_candidate"
    assert rows["AE.4003"]["http_status"] == 401
    assert rows["AE.4004"]["error"] == "invalid_custom_candidate_field"
    assert rows["AE.4005"]["attempts"] == 3 and rows["AE.4005"]["http_status"] == 503
    assert rows["AE.4001"]["attempts"] == 1
    assert Counter(r.uid for r in state.requests)["AE.4005"] == 3
    line = res.out.strip().splitlines()[-1]
    assert "1 updated" in line and "1 not_found" in line and "2 rejected" in line
    assert "1 failed" in line and str(tmp_path / "out.xlsx") in line


def test_dry_run_sends_nothing_and_needs_no_credentials(tmp_path: Path, sandbox: Any) -> None:
    sheet = write_csv(
        tmp_path / "s.csv",
        [["uid", "first_name"]] + [[f"AE.{5000 + i}", f"N{i}"] for i in range(250)],
    )
    state = make_state([f"AE.{5000 + i}" for i in range(250)])
    with sandbox(state) as sb:
        res = run_cli(
            "run", sheet, "--dry-run", "--base-url", sb.base_url, "--rate", "100/60", cwd=tmp_path
        )
    assert res.code == 0, res.err
    assert state.requests == []
    assert "Would send 250 request(s)" in res.out
    assert "2m 00s" in res.out  # 250 rows at 100/60: 100 now, 100 after 60 s, 50 after 120 s
    first = [ln for ln in res.out.splitlines() if ln.startswith("row 2 PATCH")]
    assert first and json.loads(first[0].split(" ", 4)[4]) == {"first_name": "N0"}
    assert set(outcomes(tmp_path / "s.preview.xlsx").values()) == {"would_update"}
    assert res.out.strip().splitlines()[-1].startswith("Dry run in")


def test_a_note_longer_than_an_excel_cell_is_sent_whole_and_cut_in_the_xlsx_only(
    tmp_path: Path, sandbox: Any
) -> None:
    # From a CSV: an XLSX cannot hold such a cell (openpyxl cuts it when saving, as Excel).
    note = "Left voicemail; will call back. " * 1250  # 40,000 characters
    sheet = write_csv(tmp_path / "s.csv", [["uid", "note"], ["AE.3001", note.strip()]])
    state = make_state(["AE.3001"])
    with sandbox(state) as sb:
        res = run_cli("run", sheet, "--base-url", sb.base_url, env=CREDS, cwd=tmp_path)
        assert res.code == 0, res.err
    preview = run_cli("run", sheet, "--dry-run", "--report", tmp_path / "p.csv", cwd=tmp_path)
    assert preview.code == 0, preview.err
    assert [r.body for r in state.requests] == [{"note": note.strip()}]
    cell = report_rows(tmp_path / "s.results.xlsx")[0]["note"]
    assert len(cell) == 32_767
    assert cell.endswith(
        "… [cut: 39,999 characters, more than Excel holds; what is sent is never cut]"
    )
    with (tmp_path / "p.csv").open(encoding="utf-8-sig", newline="") as fh:
        (row,) = csv.DictReader(fh)
        assert row["note"] == note.strip()


def test_missing_credentials_stop_before_reading_the_input(tmp_path: Path) -> None:
    res = run_cli("run", tmp_path / "does-not-exist.csv", cwd=tmp_path)
    assert res.code == 2
    assert "COMEET_API_KEY" in res.err and "Traceback" not in res.err


def test_refused_credentials_abort_with_exit_3(tmp_path: Path, sandbox: Any) -> None:
    sheet = write_csv(
        tmp_path / "s.csv", [["uid", "first_name"]] + [[f"AE.{i}", "X"] for i in range(10)]
    )
    state = make_state([f"AE.{i}" for i in range(10)])
    secret = "the-wrong-secret-value"
    with sandbox(state) as sb:
        res = run_cli(
            "run",
            sheet,
            "--base-url",
            sb.base_url,
            "--report",
            tmp_path / "out.xlsx",
            env={"COMEET_API_KEY": DEMO_API_KEY, "COMEET_SECRET": secret},
            cwd=tmp_path,
        )
    assert res.code == 3
    assert state.applied == []
    assert set(outcomes(tmp_path / "out.xlsx").values()) == {"not_sent"}
    assert secret not in res.out + res.err
    assert "COMEET_SECRET" in res.err


def test_a_clock_15_minutes_behind_aborts_naming_the_expired_token_and_the_clock(
    tmp_path: Path, sandbox: Any
) -> None:
    sheet = write_csv(tmp_path / "s.csv", [["uid", "first_name"], ["AE.1", "X"], ["AE.2", "Y"]])
    state = make_state(["AE.1", "AE.2"])
    # Comeet's clock 15 minutes ahead of this machine's: every 10-minute token is expired.
    with sandbox(state, faults=Faults(clock_ahead_s=900)) as sb:
        res = run_cli(
            "run", sheet, "--base-url", sb.base_url, "--report", tmp_path / "out.xlsx",
            env=CREDS, cwd=tmp_path,
        )  # fmt: skip
    assert res.code == 3, res.err
    assert state.applied == []
    (aborted,) = [line for line in res.err.splitlines() if line.startswith("Run aborted: ")]
    assert aborted == (
        "Run aborted: the API refused the credentials twice (401): "
        '"the token has expired (exp is in the past); sign a new one"; '
        "this machine's clock is 15 min behind Comeet's: tokens look expired; "
        "set the clock right (NTP)"
    )
    assert "WARNING this machine's clock is 15 min behind Comeet's" in res.err  # said early
    summary = dict(load_workbook(tmp_path / "out.xlsx")["Summary"].iter_rows(values_only=True))
    assert summary["abort reason"] == aborted.removeprefix("Run aborted: ")


# --- faults, tokens, the rate limit -------------------------------------------------------


def test_faults_every_row_ends_right_and_none_is_applied_twice(
    tmp_path: Path, sandbox: Any
) -> None:
    uids = [f"FA.{i}" for i in range(80)]
    sheet = write_csv(
        tmp_path / "s.csv",
        [["uid", "first_name", "note"]] + [[u, f"Name {u}", f"note for {u}"] for u in uids],
    )
    state = make_state(uids)
    faults = Faults(
        error_5xx=0.15, rate_429=0.08, retry_after=None, drop=0.1, slow=0.1, slow_s=0.3, seed=11
    )
    cfg = config(
        tmp_path,
        '[api]\ntimeout_s = 5\n[limits]\nrate = "1000/1"\nconcurrency = 8\n'
        "max_attempts = 12\nretry_base_s = 0.02\nretry_max_s = 0.2\n",
    )
    with sandbox(state, faults=faults) as sb:
        res = run_cli(
            "run",
            sheet,
            "--base-url",
            sb.base_url,
            "--config",
            cfg,
            "--report",
            tmp_path / "out.xlsx",
            env=CREDS,
            cwd=tmp_path,
        )
    assert res.code == 0, res.err + res.out
    statuses = Counter(r.status for r in state.requests)
    assert statuses[429] and statuses[200] == 80 and any(s >= 500 for s in statuses)
    assert len(state.requests) + 0 > 80
    applied = Counter(uid for uid, _ in state.applied)
    assert applied == Counter(uids)  # every row applied exactly once
    assert all(state.candidates[u]["first_name"] == f"Name {u}" for u in uids)
    report = {r["uid"]: r for r in report_rows(tmp_path / "out.xlsx")}
    assert {r["outcome"] for r in report.values()} == {"updated"}
    assert max(r["attempts"] for r in report.values()) > 1
    # A note never goes twice: after a 5xx or a dropped connection it may have arrived (not
    # with this sandbox, which fails before applying; with a real server it could), so the
    # row's retries go without it and its message says so. Every other note arrives once.
    held_back = {u for u, r in report.items() if "note not sent again" in (r["message"] or "")}
    assert held_back and len(held_back) < len(uids)
    assert {u: state.notes.get(u, []) for u in uids} == {
        u: [] if u in held_back else [f"note for {u}"] for u in uids
    }


def test_tokens_expire_during_the_run(tmp_path: Path, sandbox: Any) -> None:
    uids = [f"TK.{i}" for i in range(50)]
    sheet = write_csv(tmp_path / "s.csv", [["uid", "first_name"]] + [[u, "T"] for u in uids])
    state = make_state(uids)
    cfg = config(tmp_path, '[api]\ntoken_ttl_s = 2\n[limits]\nrate = "10/1"\n')
    started = time.monotonic()
    with sandbox(state) as sb:
        res = run_cli(
            "run",
            sheet,
            "--base-url",
            sb.base_url,
            "--config",
            cfg,
            "--report",
            tmp_path / "out.xlsx",
            env=CREDS,
            cwd=tmp_path,
        )
    assert res.code == 0, res.err
    assert time.monotonic() - started > 4  # two token lifetimes at least
    assert Counter(uid for uid, _ in state.applied) == Counter(uids)
    # the tool minted new tokens before the old ones ran out: the server never refused one
    assert all(r.token_ok for r in state.requests)


def test_rate_limit_never_exceeded_and_idle_budget_used(tmp_path: Path, sandbox: Any) -> None:
    """The limiter wired into a real run, at a small scale: three windows' worth of rows.

    test_limiter proves the window itself on a fake clock (400 requests at 100/5 take 15 s);
    this run proves the command line sends through it, the server's side agreeing.
    """
    uids = [f"RL.{i}" for i in range(30)]
    sheet = write_csv(tmp_path / "s.csv", [["uid", "first_name"]] + [[u, "R"] for u in uids])
    state = make_state(uids)
    with sandbox(state, rate=Rate(10, 1.0)) as sb:
        res = run_cli(
            "run",
            sheet,
            "--base-url",
            sb.base_url,
            "--rate",
            "10/1",
            "--concurrency",
            "16",  # more workers than the limit: the limiter alone holds them back
            "--report",
            tmp_path / "out.csv",
            env=CREDS,
            cwd=tmp_path,
        )
    assert res.code == 0, res.err
    arrivals = [r.time for r in state.requests]
    assert len(arrivals) == 30
    assert state.over_limit == 0
    assert max_in_window(arrivals, 1.0) <= 10
    span = max(arrivals) - min(arrivals)
    # the fastest legal schedule: 10 now, then 10 a second later, and 10 more -> 2 s; a
    # limiter that wastes the idle budget (or spaces every request out) would take 3 s or more
    assert 1.98 <= span <= 2.7, span


# --- interruption -------------------------------------------------------------------------


def test_sigterm_finishes_in_flight_rows_and_writes_the_report(
    tmp_path: Path, sandbox: Any
) -> None:
    uids = [f"SG.{i}" for i in range(40)]
    sheet = write_csv(tmp_path / "s.csv", [["uid", "first_name"]] + [[u, "S"] for u in uids])
    state = make_state(uids)
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMEET_")}
    env.update(CREDS, PYTHONPATH=str(ROOT))
    env["XDG_STATE_HOME"] = str(tmp_path)  # not the journal of the home folder
    with sandbox(state, faults=Faults(slow=1.0, slow_s=0.2)) as sb:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bulk_update",
                "run",
                str(sheet),
                "--base-url",
                sb.base_url,
                "--rate",
                "5/1",
                "--report",
                str(tmp_path / "out.xlsx"),
            ],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 20
        while len(state.applied) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 3, err
    report = outcomes(tmp_path / "out.xlsx")
    done = {u for u, o in report.items() if o == "updated"}
    assert set(report.values()) == {"updated", "not_sent"}
    assert done == {uid for uid, _ in state.applied}  # every request in flight was recorded
    assert 5 <= len(done) < 40
    assert Counter(uid for uid, _ in state.applied) == Counter(done)
    assert "not_sent" in out.strip().splitlines()[-1]


# --- the demo -----------------------------------------------------------------------------


def test_the_readme_demo_runs_on_the_sandbox(tmp_path: Path) -> None:
    without_backoff(tmp_path)  # its failing row's retries go at once
    res = run_cli(
        "run",
        SAMPLE / "candidates.csv",
        "--sandbox",
        "--report",
        tmp_path / "demo.xlsx",
        cwd=tmp_path,
        timeout=180,
    )
    assert res.code == 1, res.err  # the demo shows every outcome, problems included
    seen = Counter(str(r["outcome"]) for r in report_rows(tmp_path / "demo.xlsx"))
    for outcome in ("updated", "skipped", "invalid", "not_found", "rejected", "failed"):
        assert seen[outcome] >= 1, outcome
    last = res.out.strip().splitlines()[-1]
    for outcome, n in seen.items():
        assert f"{n} {outcome}" in last
    wb = load_workbook(tmp_path / "demo.xlsx")
    header = [c.value for c in wb["Results"][1]]
    assert tuple(header[: len(REPORT_COLUMNS)]) == REPORT_COLUMNS
    assert load_seed() is not None
