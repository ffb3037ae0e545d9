"""--compare and --resolve-ids (contract section 11): the pure comparison, the pool's reads
on a fake clock, and the command line against the sandbox."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from openpyxl import load_workbook

from bulk_update import Settings, load
from bulk_update.auth import Credentials
from bulk_update.client import Kind, Response
from bulk_update.compare import compare_patch
from bulk_update.limiter import SlidingWindowLimiter, estimate_duration
from bulk_update.models import Outcome, Patch, Rate
from bulk_update.patch import build_patch
from bulk_update.pool import run_pool
from bulk_update.readmodel import parse_candidate
from bulk_update.sandbox import DEMO_API_KEY, DEMO_SECRET, ThreadedSandbox
from bulk_update.wiring import dry_run

from .conftest import run_cli
from .test_e2e import CREDS, make_state, max_in_window, report_rows, write_csv
from .virtual_time import VirtualClock, run_virtual


def patch_of(values: Mapping[str, Any], uid: str = "AE.1") -> Patch:
    built = build_patch(2, uid, values, default_updated_by={"type": "user", "name": "Rita"})
    assert isinstance(built, Patch)
    return built


HELD = parse_candidate(
    {
        "uid": "AE.1",
        "first_name": "Dana",
        "last_name": None,
        "email": "old@example.com",
        "prospect_status": "Sourced",
        "source_contact": {"first_name": "Rita", "last_name": "Levi", "email": "r@x.com"},
    }
)


# -- the comparison, pure --------------------------------------------------------------------


def test_fields_comeet_holds_are_left_out_and_before_shows_the_rest() -> None:
    compared = compare_patch(
        patch_of(
            {"first_name": " Dana ", "email": "dana@example.com", "prospect_status": "sourced"}
        ),
        HELD,
    )
    assert compared.patch is not None
    assert compared.patch.fields == ("email",)
    assert compared.patch.body == {
        "email": "dana@example.com",
        "updated_by": {"type": "user", "name": "Rita"},
    }
    assert compared.before == "email: old@example.com → dana@example.com"


def test_fields_the_read_model_lacks_are_always_sent_and_said_not_compared() -> None:
    compared = compare_patch(
        patch_of({"first_name": "Dana", "address.city": "Haifa", "note": "hi", "last_name": "C"}),
        HELD,
    )
    assert compared.patch is not None
    assert compared.patch.fields == ("address.city", "note", "last_name")
    assert compared.before == (
        "address.city: not compared (Comeet does not return the address when a candidate is "
        "read); note: not compared (notes are added, never replaced, and Comeet does not "
        "return them when read); last_name: (empty) → C"
    )


def test_an_object_goes_whole_when_one_of_its_leaves_differs() -> None:
    same = compare_patch(
        patch_of({"source_contact.full_name": "Rita Levi", "source_contact.email": "r@x.com"}),
        HELD,
    )
    assert same.patch is None  # every value held: nothing to send
    changed = compare_patch(
        patch_of({"source_contact.full_name": "Rita Levi", "source_contact.email": "n@x.com"}),
        HELD,
    )
    assert changed.patch is not None
    assert changed.patch.body["source_contact"] == {"full_name": "Rita Levi", "email": "n@x.com"}
    assert changed.patch.fields == ("source_contact.full_name", "source_contact.email")


# -- the pool: reads and patches share the limit (fake clock) ---------------------------------


class ReadingSender:
    """Answers reads from `held` (404 for others) and patches OK; each call lasts 0.1 s."""

    def __init__(self, clock: VirtualClock, held: Mapping[str, Mapping[str, Any]]) -> None:
        self.clock, self.held = clock, held
        self.calls: list[tuple[str, str, float]] = []  # (method, uid, time)
        self.bodies: dict[str, Mapping[str, Any]] = {}

    async def read(self, uid: str, *, real_id: bool = False) -> Response:
        self.calls.append(("GET", uid, self.clock.now))
        await asyncio.sleep(0.1)
        if uid not in self.held:
            return Response(Kind.NOT_FOUND, 404, "not_found", "Candidate not found")
        return Response(Kind.OK, 200, body={"uid": uid, **self.held[uid]})

    async def patch(self, uid: str, body: Mapping[str, Any]) -> Response:
        self.calls.append(("PATCH", uid, self.clock.now))
        self.bodies[uid] = body
        await asyncio.sleep(0.1)
        return Response(Kind.OK, 200)

    def refresh_token(self) -> None:
        pass


def test_reads_and_patches_together_never_exceed_the_limit_in_any_window() -> None:
    rate = Rate(10, 5.0)
    uids = [f"AE.{i}" for i in range(40)]
    # Every third candidate holds the new name already: read, not patched.
    held = {uid: {"first_name": uid if i % 3 == 0 else "Old"} for i, uid in enumerate(uids)}

    async def main(clock: VirtualClock) -> tuple[ReadingSender, list[Any], float]:
        sender = ReadingSender(clock, held)
        patches = [
            Patch(i + 2, uid, {"first_name": uid}, ("first_name",)) for i, uid in enumerate(uids)
        ]
        result = await run_pool(
            patches,
            sender=sender,
            limiter=SlidingWindowLimiter(rate, clock=clock.clock),
            concurrency=4,
            rng=random.Random(1),
            compare=True,
        )
        return sender, list(result.results), clock.now

    sender, results, end = run_virtual(main)
    methods = Counter(method for method, _, _ in sender.calls)
    unchanged = sum(i % 3 == 0 for i in range(40))
    assert methods == {"GET": 40, "PATCH": 40 - unchanged}
    assert max_in_window([t for _, _, t in sender.calls], rate.period) <= rate.limit
    # ...and the limit is used: about the fastest legal schedule of every request.
    assert end <= estimate_duration(len(sender.calls), rate) + 1.0
    outcomes = Counter(r.outcome for r in results)
    assert outcomes == {Outcome.UPDATED: 40 - unchanged, Outcome.UNCHANGED: unchanged}
    assert all(r.attempts == (1 if r.outcome is Outcome.UNCHANGED else 2) for r in results)


def test_a_preview_reads_and_never_patches() -> None:
    async def main(clock: VirtualClock) -> tuple[ReadingSender, list[Any]]:
        sender = ReadingSender(clock, {"AE.1": {"first_name": "Old"}})
        patches = [
            Patch(2, "AE.1", {"first_name": "New"}, ("first_name",)),
            Patch(3, "AE.2", {"first_name": "New"}, ("first_name",)),
        ]
        result = await run_pool(
            patches,
            sender=sender,
            limiter=SlidingWindowLimiter(Rate(10, 1.0), clock=clock.clock),
            compare=True,
            send=False,
        )
        return sender, list(result.results)

    sender, results = run_virtual(main)
    assert [m for m, _, _ in sender.calls] == ["GET", "GET"]
    assert [(r.outcome, r.before) for r in results] == [
        (Outcome.WOULD_UPDATE, "first_name: Old → New"),
        (Outcome.NOT_FOUND, ""),
    ]


# -- the command line against the sandbox ----------------------------------------------------


def compare_state(uids: list[str]) -> Any:
    state = make_state(uids)  # first_name Old, last_name Name
    for i, uid in enumerate(uids):
        state.candidates[uid]["email"] = f"old{i}@example.com"
        state.candidates[uid]["URL"] = f"https://app.comeet.co/app/can/{61000 + i}"
    return state


def cli(tmp_path: Path, sheet: Path, base_url: str, *flags: str) -> Any:
    return run_cli(
        "run",
        sheet,
        "--base-url",
        base_url,
        "--rate",
        "1000/1",
        "--state-dir",
        tmp_path / "state",
        "--report",
        tmp_path / "out.xlsx",
        *flags,
        env=CREDS,
        cwd=tmp_path,
    )


def by_row(path: Path) -> dict[int, dict[str, Any]]:
    """The report's rows by sheet row; each header's first column (the report's `uid`,
    not the input's)."""
    sheet = list(load_workbook(path)["Results"].iter_rows(values_only=True))
    header = [str(h) for h in sheet[0]]
    rows = {}
    for line in sheet[1:]:
        cells: dict[str, Any] = {}
        for name, value in zip(header, line, strict=False):
            cells.setdefault(name, value)
        rows[int(cells["row"])] = cells
    return rows


def test_compare_dry_run_reads_only_and_shows_what_comeet_held(tmp_path: Path) -> None:
    uids = [f"AE.{i}" for i in range(6)]
    state = compare_state(uids)
    state.candidates["AE.1"].update(first_name="Dana", email="dana@example.com")  # applied
    rows = [["uid", "first_name", "email", "custom_fields.Team"]]
    rows += [[uid, "Dana", "dana@example.com", ""] for uid in uids[:4]]
    rows += [["AE.4", "", "", "R&D"], ["AE.99", "Zed", "", ""], ["bad uid", "X", "", ""]]
    sheet = write_csv(tmp_path / "s.csv", rows)
    with ThreadedSandbox(state) as sb:
        res = cli(tmp_path, sheet, sb.base_url, "--compare", "--dry-run")
    assert res.code == 1, res.err  # AE.99 not found, the bad uid invalid
    methods = Counter(r.method for r in state.requests)
    assert methods == {"GET": 6}  # one read per row to send, no PATCH
    assert state.applied == []
    report = by_row(tmp_path / "out.xlsx")
    assert list(report[2])[:9][-1] == "before"  # the column after `fields`
    assert report[2]["outcome"] == "would_update"
    assert report[2]["before"] == (
        "first_name: Old → Dana; email: old0@example.com → dana@example.com"
    )
    assert report[3]["outcome"] == "unchanged"  # already in Comeet's state
    assert report[6]["outcome"] == "would_update"
    assert report[6]["before"].startswith("custom_fields.Team: not compared (Comeet does")
    assert report[7]["outcome"] == "not_found"
    assert report[8]["outcome"] == "invalid"
    # The preview uploaded again as a sheet: its `before` column is the report's, ignored.
    again = load(tmp_path / "out.xlsx")
    assert [c.field for c in again.columns if c.header == "before"] == [None]
    assert [c.field for c in again.columns if c.field] == [
        "uid",
        "first_name",
        "email",
        "custom_fields.Team",
    ]
    assert "Compared 6 row(s) with Comeet; would send 4: 1 unchanged, 4 would_update" in res.out
    printed = res.out.splitlines()
    at = printed.index(
        'row 2 PATCH /candidates/AE.0 {"first_name": "Dana", "email": "dana@example.com"}'
    )
    assert printed[at + 1] == "    before: " + report[2]["before"]
    assert not any(line.startswith("row 3 PATCH") for line in printed)  # unchanged


def test_a_compare_run_sends_only_the_fields_that_differ_and_journals_unchanged_rows(
    tmp_path: Path,
) -> None:
    uids = ["AE.1", "AE.2", "AE.3"]
    state = compare_state(uids)
    state.candidates["AE.2"].update(first_name="Dana", email="dana@example.com")
    rows = [["uid", "first_name", "email"]] + [[u, "Dana", "dana@example.com"] for u in uids]
    rows[3][1] = "Old"  # AE.3 keeps its name: only the email goes
    sheet = write_csv(tmp_path / "s.csv", rows)
    missing = write_csv(tmp_path / "missing.csv", [["uid", "first_name"], ["AE.404", "X"]])
    with ThreadedSandbox(state) as sb:
        res = cli(tmp_path, missing, sb.base_url, "--compare")
        assert res.code == 1
        assert by_row(tmp_path / "out.xlsx")[2]["outcome"] == "not_found"
        assert [(r.method, r.uid) for r in state.requests] == [("GET", "AE.404")]  # no PATCH
        res = cli(tmp_path, sheet, sb.base_url, "--compare")
        assert res.code == 0, res.err
        sent = dict(state.applied)
        assert {
            uid: {k: v for k, v in body.items() if k != "updated_by"} for uid, body in sent.items()
        } == {
            "AE.1": {"first_name": "Dana", "email": "dana@example.com"},
            "AE.3": {"email": "dana@example.com"},
        }
        report = by_row(tmp_path / "out.xlsx")
        assert [report[r]["outcome"] for r in (2, 3, 4)] == ["updated", "unchanged", "updated"]
        assert report[4]["fields"] == "email"
        # The unchanged row is in the journal as applied: run again without --compare,
        # nothing is sent.
        before = len(state.requests)
        res = cli(tmp_path, sheet, sb.base_url)
    assert res.code == 0, res.err
    assert len(state.requests) == before
    assert {r["outcome"] for r in report_rows(tmp_path / "out.xlsx")} == {"unchanged"}


def test_resolve_ids_sends_to_the_uid_a_web_page_number_stands_for(tmp_path: Path) -> None:
    uids = ["AE.1", "AE.2", "AE.3"]
    state = compare_state(uids)  # web page numbers 61000, 61001, 61002
    rows = [["uid", "first_name", "note"], ["61000", "Dana", "Met"], ["61001", "Noa", ""]]
    rows += [["99999", "X", ""], ["AE.3", "Yossi", ""], ["61002", "Twice", ""]]
    sheet = write_csv(tmp_path / "s.csv", rows)
    with ThreadedSandbox(state) as sb:
        res = cli(tmp_path, sheet, sb.base_url)  # without the flag: invalid as today
        assert res.code == 1
        report = by_row(tmp_path / "out.xlsx")
        assert [report[r]["outcome"] for r in (2, 3, 4)] == ["invalid"] * 3
        assert "web page URL is not the API uid" in report[2]["message"]
        res = cli(tmp_path, sheet, sb.base_url, "--resolve-ids")
        assert res.code == 1, res.err
        report = by_row(tmp_path / "out.xlsx")
        assert (report[2]["uid"], report[2]["outcome"]) == ("AE.1", "updated")
        assert report[2]["message"] == "uid resolved from the web page number 61000"
        assert (report[3]["uid"], report[3]["outcome"]) == ("AE.2", "updated")
        assert report[4]["outcome"] == "not_found"
        assert "99999 is unknown to Comeet" in report[4]["message"]
        assert report[5]["outcome"] == "unchanged"  # sent by the first run
        # 61002 is AE.3, which row 5 names: one row per candidate, this one not sent.
        assert report[6]["outcome"] == "invalid"
        assert "row 5" in report[6]["message"]
        assert state.candidates["AE.1"]["first_name"] == "Dana"
        assert state.candidates["AE.3"]["first_name"] == "Yossi"
        assert state.notes["AE.1"] == ["Met"]
        reals = [r for r in state.requests if r.method == "GET"]
        assert sorted(r.uid for r in reals) == ["61000", "61001", "61002", "99999"]
        # Journaled under the resolved uid: the same sheet again sends nothing to AE.1,
        # its note least of all.
        res = cli(tmp_path, sheet, sb.base_url, "--resolve-ids")
    report = by_row(tmp_path / "out.xlsx")
    assert (report[2]["uid"], report[2]["outcome"]) == ("AE.1", "unchanged")
    assert "note not sent: the same note was added" in report[2]["message"]
    assert state.notes["AE.1"] == ["Met"]


def test_a_number_comeet_knows_but_refuses_to_read_is_not_called_unknown(tmp_path: Path) -> None:
    # Only a 404 means Comeet does not know the number; a candidate merged away is known.
    state = compare_state(["AE.1", "AE.2"])  # web page numbers 61000, 61001
    state.merged.add("AE.2")
    rows = [["uid", "first_name"], ["61001", "Noa"], ["99999", "X"]]
    sheet = write_csv(tmp_path / "s.csv", rows)
    with ThreadedSandbox(state) as sb:
        res = cli(tmp_path, sheet, sb.base_url, "--resolve-ids")
    assert res.code == 1, res.err
    report = by_row(tmp_path / "out.xlsx")
    assert (report[2]["outcome"], report[2]["error"]) == ("rejected", "duplicate_candidate")
    assert report[2]["message"] == "The candidate was merged into another candidate as a duplicate"
    assert report[3]["outcome"] == "not_found"
    assert (
        report[3]["message"]
        == "the web page number 99999 is unknown to Comeet; Candidate not found"
    )
    assert state.applied == []


def test_the_estimate_counts_the_reads(tmp_path: Path) -> None:
    # Ten rows at 10 requests per 5 s: the dry runs' reads go at once (nine at most, in the
    # first window), while sending 11 requests or more needs a second window.
    uids = [f"AE.{i}" for i in range(10)]
    state = compare_state(uids)
    rows = [["uid", "first_name"]] + [[uid, "New"] for uid in uids]
    rows[1][0] = "61000"  # AE.0 by its web page number
    sheet = write_csv(tmp_path / "s.csv", rows)
    rate = Rate(10, 5.0)
    settings = Settings(rate=rate, state_dir=tmp_path / "state")
    creds = Credentials(DEMO_API_KEY, DEMO_SECRET)
    plain = dry_run(sheet, settings, report_path=False)
    assert plain.summary.estimate_s == estimate_duration(9, rate) == 0  # the number: invalid
    with ThreadedSandbox(state, rate=Rate(1000, 1.0)) as sb:
        live = settings.with_overrides(base_url=sb.base_url)
        compared = dry_run(
            sheet, live.with_overrides(compare=True), report_path=False, credentials=creds
        )
        resolved = dry_run(
            sheet, live.with_overrides(resolve_ids=True), report_path=False, credentials=creds
        )
    assert compared.summary.estimate_s == estimate_duration(2 * 9, rate) == 5.0
    assert resolved.summary.estimate_s == estimate_duration(10 + 1, rate) == 5.0


def test_run_compare_in_the_config_file_is_the_flag(tmp_path: Path) -> None:
    uids = [f"AE.{i}" for i in range(3)]
    state = compare_state(uids)
    state.candidates["AE.1"].update(first_name="Dana")
    rows = [["uid", "first_name"]] + [[uid, "Dana"] for uid in uids]
    sheet = write_csv(tmp_path / "s.csv", rows)
    (tmp_path / "bulk_update.toml").write_text("[run]\ncompare = true\n", encoding="utf-8")
    with ThreadedSandbox(state) as sb:
        res = cli(tmp_path, sheet, sb.base_url, "--dry-run")
    assert res.code == 0, res.err
    assert Counter(r.method for r in state.requests) == {"GET": 3}
    report = by_row(tmp_path / "out.xlsx")
    assert [report[n]["outcome"] for n in (2, 3, 4)] == [
        "would_update",
        "unchanged",
        "would_update",
    ]


def test_a_resume_is_sent_whatever_comeet_holds_and_before_says_it_was_not_compared() -> None:
    patch = Patch(
        2,
        "AE.1",
        {"first_name": "Dana", "resume": {"name": "cv.pdf", "file": "JVBERi0="}},
        ("first_name", "resume"),
    )
    held = parse_candidate(
        {
            "uid": "AE.1",
            "first_name": "Dana",
            "resume": {"name": "cv.pdf", "url": "http://127.0.0.1/cv"},
        },
        read_at=0.0,
    )
    compared = compare_patch(patch, held)
    assert compared.patch is not None and compared.patch.fields == ("resume",)
    assert compared.before == (
        "resume: cv.pdf → cv.pdf (not compared: Comeet returns a link, not the file; always sent)"
    )
