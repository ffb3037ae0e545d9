"""The brake: rows refused alike, in a row, stop the run (contract section 11).

Pure tests of `Brake`, then the command line against the sandbox on 127.0.0.1.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from openpyxl import load_workbook

from bulk_update.brake import Brake, brake_words, refusal_of
from bulk_update.errors import ConfigError
from bulk_update.models import Outcome, RowResult, RunSummary
from bulk_update.sandbox import SandboxState, ThreadedSandbox

from .conftest import run_cli
from .test_e2e import CREDS, config, make_state, report_rows, write_csv

NO_TEAM = "There is no custom candidate field named 'Teem'"


def refused(
    row: int,
    error: str = "invalid_custom_candidate_field",
    message: str = NO_TEAM,
    fields: tuple[str, ...] = ("first_name", "custom_fields.Teem"),
    outcome: Outcome = Outcome.REJECTED,
    status: int = 400,
) -> RowResult:
    return RowResult(row, f"AE.{row}", outcome, status, error, message, 1, fields)


def updated(row: int) -> RowResult:
    return RowResult(row, f"AE.{row}", Outcome.UPDATED, 200, attempts=1, fields=("first_name",))


def trips(brake: Brake, results: Sequence[RowResult]) -> list[int]:
    """The rows at which the brake said stop."""
    return [r.row for r in results if brake.see(r)]


def test_the_limit_th_refusal_in_a_row_trips_it_once() -> None:
    brake = Brake(20)
    assert trips(brake, [refused(i) for i in range(25)]) == [19]


def test_the_reason_names_the_count_the_error_its_message_and_the_field() -> None:
    brake = Brake(3)
    reasons = [brake.see(refused(i)) for i in range(3)]
    assert reasons[:2] == ["", ""]
    assert reasons[2].startswith(
        "stopped after 3 rows in a row were rejected with the same error: "
        f'invalid_custom_candidate_field: "{NO_TEAM}" (field custom_fields.Teem)'
    )
    assert "run it again" in reasons[2]
    assert "stop_after_rejected = 0" in reasons[2]


def test_brake_words_come_from_the_reason_of_the_row_that_tripped_it() -> None:
    other = refused(0, error="invalid_email", message="email is bad", fields=("email",))
    rows = [other] + [refused(i, outcome=Outcome.NOT_FOUND, status=404) for i in range(1, 4)]
    brake = Brake(3)
    reason = next(r for r in map(brake.see, rows) if r)
    summary = RunSummary({}, 1.0, None, aborted=True, abort_reason=reason, results=tuple(rows))
    assert brake_words(summary, 3, resumes=False) == (
        f"Stopped after 3 rows in a row were not found in Comeet for the same reason: {NO_TEAM}. "
        "Fix the 'Teem' column and upload the sheet again."
    )
    assert brake_words(summary, 3, resumes=True).endswith("will not be sent twice.")
    # Not the brake's stop (a stop asked for, another limit, or not aborted): no words.
    assert brake_words(replace(summary, abort_reason="interrupted"), 3, resumes=True) == ""
    assert brake_words(summary, 4, resumes=True) == ""
    assert brake_words(replace(summary, aborted=False), 3, resumes=True) == ""


def test_alternating_errors_do_not_trip_it() -> None:
    other = {"error": "invalid_email", "message": "email is not a valid email address"}
    rows = [refused(i) if i % 2 else refused(i, **other) for i in range(100)]
    assert trips(Brake(2), rows) == []


def test_any_other_answer_breaks_the_run_of_rows() -> None:
    rows: list[RowResult] = []
    for block in range(10):
        rows += [refused(block * 10 + i) for i in range(4)] + [updated(block * 10 + 9)]
    assert trips(Brake(5), rows) == []
    failed = RowResult(99, "AE.99", Outcome.FAILED, 503, "server_error", "x", 6, ())
    assert trips(Brake(2), [refused(1), failed, refused(2)]) == []


def test_zero_never_stops() -> None:
    assert trips(Brake(0), [refused(i) for i in range(1000)]) == []


def test_a_negative_limit_is_refused() -> None:
    with pytest.raises(ConfigError, match="0 or more"):
        Brake(-1)


def test_the_same_code_for_different_fields_is_not_the_same_error() -> None:
    teem = refused(1)
    tema = refused(
        2, message="There is no custom candidate field named 'Tema'", fields=("custom_fields.Tema",)
    )
    assert trips(Brake(2), [teem, tema, teem, tema]) == []
    assert refusal_of(teem) != refusal_of(tema)


def test_messages_quoting_each_row_s_value_count_as_one_when_they_name_the_field() -> None:
    rows = [
        refused(
            i,
            error="incorrect_country_code",
            message=f"'X{i}' is not an ISO 3166-1 alpha-2 country",
            fields=("first_name", "address.country"),
        )
        for i in range(3)
    ]
    assert trips(Brake(3), rows) == [2]
    assert refusal_of(rows[0]).field == "address.country"  # type: ignore[union-attr]


def test_the_longest_field_name_wins() -> None:
    result = refused(1, "invalid_field", "mobile_phone is too long", ("phone", "mobile_phone"))
    assert refusal_of(result).field == "mobile_phone"  # type: ignore[union-attr]


def test_messages_that_name_no_field_must_be_equal() -> None:
    a = refused(1, "required_field", "something is required", ("first_name",))
    b = refused(2, "required_field", "something else is required", ("first_name",))
    assert trips(Brake(2), [a, b, a, b]) == []
    assert trips(Brake(2), [a, a]) == [1]


def test_not_found_rows_trip_it_too_and_only_4xx_counts() -> None:
    gone = [
        refused(
            i,
            "not_found",
            "The provided ID could not be found",
            ("first_name",),
            Outcome.NOT_FOUND,
            404,
        )
        for i in range(3)
    ]
    brake = Brake(3)
    assert trips(brake, gone) == [2]
    assert "were not found" in Brake(1).see(gone[0])
    assert refusal_of(refused(1, status=500)) is None
    assert refusal_of(refused(1, outcome=Outcome.NOT_SENT)) is None


def unknown_number(i: int) -> RowResult:
    """A --resolve-ids row whose number Comeet does not know: its number, then the answer."""
    gone = refused(
        i, "candidate_not_found", "Candidate not found", ("first_name",), Outcome.NOT_FOUND, 404
    )
    return gone.with_words(f"the web page number {61000 + i} is unknown to Comeet")


def test_the_tool_s_words_before_the_api_s_answer_do_not_count() -> None:
    rows = [unknown_number(i) for i in range(3)]
    assert rows[2].message == "the web page number 61002 is unknown to Comeet; Candidate not found"
    assert rows[2].api_message == "Candidate not found"
    brake = Brake(3)
    reasons = [brake.see(r) for r in rows]
    assert reasons[:2] == ["", ""]
    # The reason quotes Comeet, not one row's number.
    assert reasons[2].startswith(
        "stopped after 3 rows in a row were not found with the same error: "
        'candidate_not_found: "Candidate not found"; the rest were not sent.'
    )
    # Different answers behind the same words are still different errors.
    other = refused(9, "invalid_email", "email is bad", ("email",)).with_words("the same words")
    same = refused(8).with_words("the same words")
    assert trips(Brake(2), [same, other, same, other]) == []


def test_brake_words_find_the_row_whatever_words_the_run_put_before_its_answer() -> None:
    # The pool puts "uid resolved from ..." before each answer and the brake trips; the
    # pipeline then puts a row's warnings before that: the words still come from it.
    rows = [
        refused(i).with_words(f"uid resolved from the web page number {61000 + i}")
        for i in range(3)
    ]
    brake = Brake(3)
    reason = next(r for r in map(brake.see, rows) if r)
    rows[2] = rows[2].with_words("note not sent: the same note was added on 2026-12-01 (run 4)")
    assert rows[2].api_message == NO_TEAM
    summary = RunSummary({}, 1.0, None, aborted=True, abort_reason=reason, results=tuple(rows))
    assert brake_words(summary, 3, resumes=False) == (
        f"Stopped after 3 rows in a row were refused for the same reason: {NO_TEAM}. "
        "Fix the 'Teem' column and upload the sheet again."
    )


# -- the command line against the sandbox ---------------------------------------------------


def brake_sheet(tmp_path: Path, header: str, count: int, clean: int = 0) -> Path:
    """`clean` rows that send no custom field, then `count` that send `header`."""
    rows = [["uid", "first_name", header]]
    rows += [[f"AE.{i}", f"N{i}", ""] for i in range(clean)]
    rows += [[f"AE.{i}", f"N{i}", "Core"] for i in range(clean, clean + count)]
    return write_csv(tmp_path / "s.csv", rows)


def run(
    tmp_path: Path, sheet: Path, base_url: str, limits: str = "", *flags: str
) -> tuple[int, str]:
    cfg = config(tmp_path, f'[limits]\nrate = "1000/1"\n{limits}\n')
    res = run_cli(
        "run",
        sheet,
        "--base-url",
        base_url,
        "--config",
        cfg,
        "--report",
        tmp_path / "out.xlsx",
        *flags,
        env=CREDS,
        cwd=tmp_path,
    )
    return res.code, res.out + res.err


def aborted_line(said: str) -> str:
    """The `Run aborted:` line of a run's output."""
    return next(line for line in said.splitlines() if line.startswith("Run aborted: "))


def summary_sheet(path: Path) -> dict[str, str]:
    ws = load_workbook(path)["Summary"]
    return {str(k): str(v) for k, v, *_ in ws.iter_rows(values_only=True) if k is not None}


def test_a_custom_field_comeet_lacks_stops_the_run_after_20(tmp_path: Path) -> None:
    uids = [f"AE.{i}" for i in range(60)]
    state = make_state(uids)  # custom fields Team and Start date only
    with ThreadedSandbox(state) as sb:
        code, said = run(tmp_path, brake_sheet(tmp_path, "custom_fields.Teem", 60), sb.base_url)
    assert code == 3
    counts = Counter(r["outcome"] for r in report_rows(tmp_path / "out.xlsx"))
    # 20 in a row, plus those in flight then (concurrency 4: at most 3 more).
    assert 20 <= counts["rejected"] <= 23
    assert counts["not_sent"] == 60 - counts["rejected"]
    assert len(state.requests) == counts["rejected"]
    assert state.applied == []
    assert aborted_line(said).startswith(
        "Run aborted: stopped after 20 rows in a row were rejected with the same error: "
        f'invalid_custom_candidate_field: "{NO_TEAM}" (field custom_fields.Teem); '
    )
    reason = summary_sheet(tmp_path / "out.xlsx")["abort reason"]
    assert NO_TEAM in reason


def numbered_state(count: int) -> SandboxState:
    """`count` candidates AE.i, whose web pages have the numbers 61000 + i."""
    state = make_state([f"AE.{i}" for i in range(count)])
    for i in range(count):
        state.candidates[f"AE.{i}"]["URL"] = f"https://app.comeet.co/app/can/{61000 + i}"
    return state


def test_a_column_of_web_page_numbers_comeet_does_not_know_stops_the_run(tmp_path: Path) -> None:
    state = numbered_state(0)  # every number unknown: a uid column holding something else
    rows = [["uid", "first_name"]] + [[str(70000 + i), f"N{i}"] for i in range(40)]
    sheet = write_csv(tmp_path / "s.csv", rows)
    with ThreadedSandbox(state) as sb:
        code, said = run(tmp_path, sheet, sb.base_url, "stop_after_rejected = 20", "--resolve-ids")
    assert code == 3
    report = report_rows(tmp_path / "out.xlsx")
    counts = Counter(r["outcome"] for r in report)
    assert 20 <= counts["not_found"] <= 23
    assert counts["not_sent"] == 40 - counts["not_found"]
    assert len(state.requests) == counts["not_found"]  # one read each, no PATCH
    gone = next(r for r in report if r["outcome"] == "not_found")
    assert "is unknown to Comeet; Candidate not found" in gone["message"]
    assert aborted_line(said).startswith(
        "Run aborted: stopped after 20 rows in a row were not found with the same error: "
        'candidate_not_found: "Candidate not found"; the rest were not sent.'
    )


def test_rows_resolved_from_web_page_numbers_refused_alike_stop_the_run(tmp_path: Path) -> None:
    state = numbered_state(40)  # custom fields Team and Start date only
    rows = [["uid", "first_name", "custom_fields.Teem"]]
    rows += [[str(61000 + i), f"N{i}", "Core"] for i in range(40)]
    sheet = write_csv(tmp_path / "s.csv", rows)
    with ThreadedSandbox(state) as sb:
        code, said = run(tmp_path, sheet, sb.base_url, "", "--resolve-ids")
    assert code == 3
    report = report_rows(tmp_path / "out.xlsx")
    counts = Counter(r["outcome"] for r in report)
    assert 20 <= counts["rejected"] <= 23
    assert counts["not_sent"] == 40 - counts["rejected"]
    assert state.applied == []
    refusal = next(r for r in report if r["outcome"] == "rejected")
    assert refusal["message"].startswith("uid resolved from the web page number 610")
    assert aborted_line(said).startswith(
        "Run aborted: stopped after 20 rows in a row were rejected with the same error: "
        f'invalid_custom_candidate_field: "{NO_TEAM}" (field custom_fields.Teem); '
    )


def test_alternating_refusals_of_web_page_numbers_run_to_the_end(tmp_path: Path) -> None:
    # Every other number is unknown (not_found); the others are resolved and send the
    # unknown custom field (rejected): never two alike in a row.
    state = numbered_state(20)
    rows = [["uid", "first_name", "custom_fields.Teem"]]
    for i in range(20):
        rows += [[str(70000 + i), f"X{i}", "Core"], [str(61000 + i), f"N{i}", "Core"]]
    sheet = write_csv(tmp_path / "s.csv", rows)
    with ThreadedSandbox(state) as sb:
        limits = "stop_after_rejected = 2\nconcurrency = 1"
        code, said = run(tmp_path, sheet, sb.base_url, limits, "--resolve-ids")
    assert code == 1, said
    counts = Counter(r["outcome"] for r in report_rows(tmp_path / "out.xlsx"))
    assert counts == {"rejected": 20, "not_found": 20}


def test_stop_after_rejected_0_sends_every_row(tmp_path: Path) -> None:
    state = make_state([f"AE.{i}" for i in range(30)])
    with ThreadedSandbox(state) as sb:
        sheet = brake_sheet(tmp_path, "custom_fields.Teem", 30)
        code, said = run(tmp_path, sheet, sb.base_url, "stop_after_rejected = 0")
    assert code == 1
    assert Counter(r["outcome"] for r in report_rows(tmp_path / "out.xlsx")) == {"rejected": 30}
    assert len(state.requests) == 30
    assert "aborted" not in said.lower()


def test_alternating_refusals_run_to_the_end(tmp_path: Path) -> None:
    # Every other uid is unknown to the sandbox (not_found); the others send the unknown
    # custom field (rejected): the same count of refusals, never two alike in a row.
    known = [f"AE.{i}" for i in range(0, 40, 2)]
    state = make_state(known)
    with ThreadedSandbox(state) as sb:
        sheet = brake_sheet(tmp_path, "custom_fields.Teem", 40)
        code, _ = run(tmp_path, sheet, sb.base_url, "stop_after_rejected = 2\nconcurrency = 1")
    assert code == 1
    counts = Counter(r["outcome"] for r in report_rows(tmp_path / "out.xlsx"))
    assert counts == {"rejected": 20, "not_found": 20}


def test_the_fixed_sheet_run_again_resumes_through_the_journal(tmp_path: Path) -> None:
    uids = [f"AE.{i}" for i in range(40)]
    state = make_state(uids)
    with ThreadedSandbox(state) as sb:
        sheet = brake_sheet(tmp_path, "custom_fields.Teem", 30, clean=10)
        code, _ = run(tmp_path, sheet, sb.base_url, "concurrency = 1")
        assert code == 3
        first = Counter(r["outcome"] for r in report_rows(tmp_path / "out.xlsx"))
        assert first == {"updated": 10, "rejected": 20, "not_sent": 10}
        # The column fixed: the rows applied before are not sent again.
        fixed = brake_sheet(tmp_path, "custom_fields.Team", 30, clean=10)
        code, _ = run(tmp_path, fixed, sb.base_url, "concurrency = 1")
    assert code == 0
    second = Counter(r["outcome"] for r in report_rows(tmp_path / "out.xlsx"))
    assert second == {"unchanged": 10, "updated": 30}
    sent = Counter(uid for uid, _ in state.applied)
    assert all(sent[f"AE.{i}"] == 1 for i in range(40))
    assert state.candidates["AE.39"]["custom_fields"] == {"Team": "Core"}


@pytest.mark.parametrize(
    ("outcome", "status", "fix"),
    [
        (
            Outcome.NOT_FOUND,
            404,
            "Check that the uid column holds Comeet's candidate uids, then upload again.",
        ),
        (Outcome.REJECTED, 400, "Fix the sheet and upload it again."),
    ],
)
def test_brake_words_without_a_field_say_what_to_check(
    outcome: Outcome, status: int, fix: str
) -> None:
    rows = [
        refused(i, outcome=outcome, status=status, message="Candidate not found", fields=())
        for i in range(3)
    ]
    brake = Brake(3)
    reason = next(r for r in map(brake.see, rows) if r)
    summary = RunSummary({}, 1.0, None, aborted=True, abort_reason=reason, results=tuple(rows))
    assert brake_words(summary, 3, resumes=False).endswith(f"Candidate not found. {fix}")
