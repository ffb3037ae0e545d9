"""The worker pool against a scripted fake sender, on virtual time (no real waiting)."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pytest

from bulk_update.client import Kind, Response
from bulk_update.errors import ConfigError
from bulk_update.limiter import SlidingWindowLimiter
from bulk_update.models import Outcome, Patch, Rate, RowResult
from bulk_update.pool import PoolResult, RetryPolicy, auth_abort_reason, run_pool

from .virtual_time import VirtualClock, run_virtual

# -- a scripted sender -----------------------------------------------------------------------

OK = Response(Kind.OK, 200)
NOT_FOUND = Response(Kind.NOT_FOUND, 404, "not_found", "The provided ID could not be found")
REJECTED = Response(Kind.REJECTED, 400, "invalid_email", "email is not valid")
AUTH = Response(Kind.AUTH, 401, "unauthorized", "bad token")
AUTH_ABORT_REASON_OF_BAD_TOKEN = (
    'the API refused the credentials twice (401): "bad token"; '
    "check COMEET_API_KEY and COMEET_SECRET"
)
BUSY = Response(Kind.RETRY, 503, "", "HTTP 503 Service Unavailable")
TIMEOUT = Response(Kind.RETRY, None, "timeout", "no answer within 30 seconds")


def limited(retry_after: float | None) -> Response:
    return Response(Kind.RATE_LIMITED, 429, "too_many_requests", "Slow down", retry_after)


Step = Response | BaseException


@dataclass
class Sent:
    uid: str
    body: Mapping[str, Any]
    start: float
    end: float = -1.0


class FakeSender:
    """Answers each uid from its script (the last step repeats); each call lasts `duration`."""

    def __init__(
        self,
        clock: VirtualClock,
        script: Mapping[str, Sequence[Step]],
        duration: float | Mapping[str, float] = 0.1,
    ) -> None:
        self.clock = clock
        self.script = {uid: list(steps) for uid, steps in script.items()}
        self.duration = duration
        self.sent: list[Sent] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.refreshes: list[float] = []

    async def patch(self, uid: str, body: Mapping[str, Any]) -> Response:
        call = Sent(uid, body, self.clock.now)
        self.sent.append(call)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            duration = self.duration if isinstance(self.duration, float) else self.duration[uid]
            await asyncio.sleep(duration)
        finally:
            self.in_flight -= 1
            call.end = self.clock.now
        steps = self.script[uid]
        step = steps.pop(0) if len(steps) > 1 else steps[0]
        if isinstance(step, BaseException):
            raise step
        return step

    def refresh_token(self) -> None:
        self.refreshes.append(self.clock.now)

    def uids_sent(self) -> list[str]:
        return [call.uid for call in self.sent]


class RecordingSleep:
    """Backoff sleep: remembers every delay, then waits it on virtual time."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(seconds)


def patches(*uids: str) -> list[Patch]:
    return [
        Patch(row=i + 2, uid=uid, body={"first_name": uid}, fields=("first_name",))
        for i, uid in enumerate(uids)
    ]


ROOMY = Rate(1000, 1.0)
FOUR_TRIES = RetryPolicy(max_attempts=4)


@dataclass
class Run:
    result: PoolResult
    sender: FakeSender
    limiter: SlidingWindowLimiter
    sleep: RecordingSleep
    reported: list[RowResult]
    end: float

    def outcomes(self) -> list[Outcome]:
        return [r.outcome for r in self.result.results]

    def by_uid(self, uid: str) -> RowResult:
        [result] = [r for r in self.result.results if r.uid == uid]
        return result


def run_script(
    script: Mapping[str, Sequence[Step]],
    *,
    order: Sequence[str] | None = None,
    rate: Rate = ROOMY,
    concurrency: int = 4,
    retry: RetryPolicy = FOUR_TRIES,
    duration: float | Mapping[str, float] = 0.1,
    stop_at: float | None = None,
    stop_after_rejected: int = 0,
) -> Run:
    async def main(clock: VirtualClock) -> Run:
        sender = FakeSender(clock, script, duration)
        limiter = SlidingWindowLimiter(rate, clock=clock.clock)
        sleep = RecordingSleep()
        reported: list[RowResult] = []
        stop = asyncio.Event()
        if stop_at == 0:
            stop.set()
        elif stop_at is not None:
            clock.call_at(stop_at, stop.set)
        result = await run_pool(
            patches(*(order or list(script))),
            sender=sender,
            limiter=limiter,
            concurrency=concurrency,
            retry=retry,
            sleep=sleep,
            rng=random.Random(7),
            on_result=reported.append,
            stop=stop,
            stop_after_rejected=stop_after_rejected,
        )
        return Run(result, sender, limiter, sleep, reported, clock.now)

    return run_virtual(main)


# -- outcomes ------------------------------------------------------------------------------


def test_each_final_answer_maps_to_its_outcome() -> None:
    run = run_script(
        {
            "AE.1": [OK],
            "AE.2": [NOT_FOUND],
            "AE.3": [REJECTED],
            "AE.4": [Response(Kind.REJECTED, 401, "duplicate_candidate", "merged")],
        }
    )
    assert not run.result.aborted and run.result.abort_reason == ""
    assert run.result.results == (
        RowResult(2, "AE.1", Outcome.UPDATED, 200, "", "", 1, ("first_name",)),
        RowResult(3, "AE.2", Outcome.NOT_FOUND, 404, NOT_FOUND.error, NOT_FOUND.message, 1,
                  ("first_name",)),
        RowResult(4, "AE.3", Outcome.REJECTED, 400, "invalid_email", "email is not valid", 1,
                  ("first_name",)),
        RowResult(5, "AE.4", Outcome.REJECTED, 401, "duplicate_candidate", "merged", 1,
                  ("first_name",)),
    )  # fmt: skip
    sent_bodies = [s.body for s in run.sender.sent]
    assert sent_bodies == [{"first_name": uid} for uid in ["AE.1", "AE.2", "AE.3", "AE.4"]]
    assert run.sleep.delays == []


def test_retries_with_backoff_then_success() -> None:
    run = run_script({"AE.1": [BUSY, TIMEOUT, OK]}, retry=RetryPolicy(4, base_s=1, max_s=30))
    row = run.by_uid("AE.1")
    assert (row.outcome, row.attempts, row.http_status) == (Outcome.UPDATED, 3, 200)
    assert len(run.sleep.delays) == 2
    assert 0 <= run.sleep.delays[0] <= 1 and 0 <= run.sleep.delays[1] <= 2
    # Each retry goes out only after its backoff.
    starts = [s.start for s in run.sender.sent]
    assert starts[1] == pytest.approx(starts[0] + 0.1 + run.sleep.delays[0])
    assert starts[2] == pytest.approx(starts[1] + 0.1 + run.sleep.delays[1])


def test_out_of_attempts_is_failed_with_the_last_answer() -> None:
    run = run_script({"AE.1": [TIMEOUT, BUSY]}, retry=RetryPolicy(max_attempts=5))
    row = run.by_uid("AE.1")
    assert (row.outcome, row.attempts) == (Outcome.FAILED, 5)
    assert (row.http_status, row.error, row.message) == (503, "", BUSY.message)
    assert len(run.sender.sent) == 5
    assert len(run.sleep.delays) == 4  # no pointless sleep after the last attempt


def test_a_network_error_that_never_clears_is_failed_without_status() -> None:
    run = run_script({"AE.1": [TIMEOUT]}, retry=RetryPolicy(max_attempts=2))
    row = run.by_uid("AE.1")
    assert (row.outcome, row.http_status, row.error, row.attempts) == (
        Outcome.FAILED, None, "timeout", 2
    )  # fmt: skip


def test_an_unexpected_exception_is_retried_as_internal_error() -> None:
    run = run_script(
        {"AE.1": [RuntimeError("bug"), OK], "AE.2": [ValueError("always")]},
        retry=RetryPolicy(max_attempts=3),
    )
    assert run.by_uid("AE.1").outcome is Outcome.UPDATED
    assert run.by_uid("AE.1").attempts == 2
    failed = run.by_uid("AE.2")
    assert (failed.outcome, failed.error, failed.attempts) == (
        Outcome.FAILED, "internal_error", 3
    )  # fmt: skip
    assert "ValueError: always" in failed.message


# -- 429 -------------------------------------------------------------------------------------


def test_a_429_pauses_every_worker_until_retry_after() -> None:
    # AE.0 gets a 429 asking for 10 s; the other workers are mid-way through their rows.
    script: dict[str, list[Step]] = {"AE.0": [limited(10), OK]}
    script |= {f"AE.{i}": [OK] for i in range(1, 12)}
    run = run_script(script, concurrency=3, duration=1.0)
    first = run.sender.sent[0]
    assert first.uid == "AE.0" and first.end == pytest.approx(1.0)
    pause_end = first.end + 10
    late = [s for s in run.sender.sent if s.start > first.end]
    assert late, "rows after the 429 were sent"
    assert all(s.start >= pause_end - 1e-9 for s in late)
    assert all(t <= first.end or t >= pause_end - 1e-9 for t in run.limiter.sends)
    row = run.by_uid("AE.0")
    assert (row.outcome, row.attempts) == (Outcome.UPDATED, 2)
    assert run.sleep.delays == []  # the pause is the wait; no backoff on top
    assert set(run.outcomes()) == {Outcome.UPDATED}


def test_a_429_without_retry_after_waits_for_room_in_the_window() -> None:
    run = run_script({"AE.0": [limited(None), OK]}, rate=Rate(5, 20.0), duration=1.0)
    assert [s.start for s in run.sender.sent] == [0.0, pytest.approx(21.0)]


def test_429_until_out_of_attempts_is_failed() -> None:
    run = run_script({"AE.0": [limited(1)]}, retry=RetryPolicy(max_attempts=3))
    row = run.by_uid("AE.0")
    assert (row.outcome, row.http_status, row.error, row.attempts) == (
        Outcome.FAILED, 429, "too_many_requests", 3
    )  # fmt: skip


def test_retries_count_against_the_rate_limit() -> None:
    # 2 per 10 s: AE.0's retry and AE.1 cannot both go in the first window.
    run = run_script(
        {"AE.0": [BUSY, OK], "AE.1": [OK]},
        rate=Rate(2, 10.0),
        retry=RetryPolicy(max_attempts=3, base_s=0, max_s=0),
        duration=0.5,
    )
    assert len(run.limiter.sends) == 3 == sum(r.attempts for r in run.result.results)
    assert sorted(s.start for s in run.sender.sent) == [0.0, 0.0, pytest.approx(10.5)]


# -- authentication ------------------------------------------------------------------------


def test_one_401_mints_a_new_token_and_retries() -> None:
    run = run_script({"AE.1": [AUTH, OK]})
    row = run.by_uid("AE.1")
    assert (row.outcome, row.attempts) == (Outcome.UPDATED, 2)
    assert len(run.sender.refreshes) == 1
    assert run.sleep.delays == []
    assert not run.result.aborted


def test_a_second_401_for_a_row_aborts_the_run() -> None:
    script: dict[str, list[Step]] = {"AE.0": [AUTH, AUTH], "AE.1": [OK]}
    script |= {f"AE.{i}": [OK] for i in range(2, 8)}
    # AE.1 is slow: in flight when AE.0's second 401 comes back at 2 s.
    durations = {uid: 1.0 for uid in script} | {"AE.1": 5.0}
    run = run_script(script, concurrency=2, duration=durations)
    assert run.result.aborted
    assert run.result.abort_reason == AUTH_ABORT_REASON_OF_BAD_TOKEN
    assert run.sender.uids_sent() == ["AE.0", "AE.1", "AE.0"]
    assert all(s.start < 2.0 for s in run.sender.sent)  # nothing new after the abort
    assert run.by_uid("AE.1").outcome is Outcome.UPDATED  # in flight: finished, recorded
    refused = run.by_uid("AE.0")
    assert (refused.outcome, refused.http_status, refused.attempts) == (
        Outcome.NOT_SENT, 401, 2
    )  # fmt: skip
    assert run.outcomes()[2:] == [Outcome.NOT_SENT] * 6
    assert all(r.attempts == 0 for r in run.result.results[2:])
    assert run.end == pytest.approx(5.0)


EXPIRED = "the token has expired (exp is in the past); sign a new one"


def with_clock(response: Response, offset_s: float | None) -> Response:
    """`response` as read by a client whose clock is `offset_s` behind the server's."""
    return replace(response, clock_offset_s=offset_s)


def test_the_abort_reason_quotes_the_api_and_names_a_clock_behind() -> None:
    expired = with_clock(Response(Kind.AUTH, 401, "unauthorized", EXPIRED), 899.4)
    run = run_script({"AE.0": [expired, expired], "AE.1": [with_clock(OK, 899.4)]})
    assert run.result.aborted
    assert run.result.abort_reason == (
        f'the API refused the credentials twice (401): "{EXPIRED}"; '
        "this machine's clock is 15 min behind Comeet's: tokens look expired; "
        "set the clock right (NTP)"
    )


def test_a_401_without_a_date_is_judged_by_the_answers_before_it() -> None:
    # AE.0's 200 carried a Date 20 minutes ahead; the 401s (from a proxy, say) carry none.
    run = run_script({"AE.0": [with_clock(OK, 1200.0)], "AE.1": [AUTH, AUTH]}, concurrency=1)
    assert "20 min behind Comeet's: tokens look expired" in run.result.abort_reason
    assert '"bad token"' in run.result.abort_reason


@pytest.mark.parametrize(
    ("offset_s", "cause"),
    [
        (None, "check COMEET_API_KEY and COMEET_SECRET"),
        (59.0, "check COMEET_API_KEY and COMEET_SECRET"),  # a minute or less: the key
        (-60.0, "check COMEET_API_KEY and COMEET_SECRET"),
        (61.0, "this machine's clock is 1 min behind Comeet's: tokens look expired"),
        (-900.0, "this machine's clock is 15 min ahead of Comeet's: tokens look not yet valid"),
        (3 * 3600.0, "this machine's clock is 3 h behind Comeet's"),
        (-5 * 86400.0, "this machine's clock is 5 days ahead of Comeet's"),
    ],
)
def test_auth_abort_reason(offset_s: float | None, cause: str) -> None:
    reason = auth_abort_reason(AUTH, offset_s)
    assert reason.startswith('the API refused the credentials twice (401): "bad token"; ')
    assert cause in reason


def test_an_empty_401_is_quoted_as_its_status() -> None:
    empty = Response(Kind.AUTH, 401, "", "")
    assert '(401): "HTTP 401"; check' in auth_abort_reason(empty, None)


def test_a_clock_off_is_said_once_even_when_every_row_goes_through(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ahead = with_clock(OK, -600.0)
    with caplog.at_level(logging.WARNING, logger="bulk_update"):
        run = run_script({f"AE.{i}": [ahead] for i in range(5)})
    assert run.outcomes() == [Outcome.UPDATED] * 5
    said = [r for r in caplog.records if getattr(r, "event", "") == "clock_offset"]
    assert [r.getMessage() for r in said] == [
        "this machine's clock is 10 min ahead of Comeet's: tokens look not yet valid; "
        "set the clock right (NTP)"
    ]


def test_a_clock_within_a_minute_says_nothing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="bulk_update"):
        run_script({"AE.0": [with_clock(OK, 45.0)], "AE.1": [with_clock(OK, -2.0)]})
    assert not caplog.records


def test_an_abort_stops_workers_waiting_in_backoff_or_for_a_slot() -> None:
    # 5 per 1000 s. At 4 s AE.0's second 401 comes back while AE.1 backs off (up to 100 s)
    # and AE.4 waits for a slot (the window is full until 1001 s): neither may send again.
    script: dict[str, list[Step]] = {"AE.0": [AUTH, AUTH], "AE.1": [BUSY, OK]}
    script |= {f"AE.{i}": [OK] for i in range(2, 6)}
    run = run_script(
        script,
        rate=Rate(5, 1000.0),
        retry=RetryPolicy(max_attempts=3, base_s=100, max_s=100),
        concurrency=3,
        duration={uid: 1.0 for uid in script} | {"AE.0": 2.0},
    )
    assert run.sleep.delays[0] > 3  # AE.1 was still backing off at 4 s (seeded rng)
    assert run.result.abort_reason == AUTH_ABORT_REASON_OF_BAD_TOKEN
    assert run.sender.uids_sent() == ["AE.0", "AE.1", "AE.2", "AE.3", "AE.0"]
    assert run.end == pytest.approx(4.0)  # no one slept through a backoff or a full window
    assert run.outcomes() == [
        Outcome.NOT_SENT, Outcome.NOT_SENT, Outcome.UPDATED, Outcome.UPDATED,
        Outcome.NOT_SENT, Outcome.NOT_SENT,
    ]  # fmt: skip
    backed_off = run.by_uid("AE.1")
    assert (backed_off.http_status, backed_off.error, backed_off.attempts) == (503, "", 1)


# -- stopping ------------------------------------------------------------------------------


def test_stop_lets_in_flight_requests_finish_and_sends_nothing_new() -> None:
    script = {f"AE.{i}": [OK] for i in range(10)}
    run = run_script(script, concurrency=2, duration=1.0, stop_at=2.5)
    assert run.result.aborted and run.result.abort_reason == "interrupted"
    assert all(s.start < 2.5 for s in run.sender.sent)
    assert run.outcomes() == [Outcome.UPDATED] * 6 + [Outcome.NOT_SENT] * 4
    assert run.end == pytest.approx(3.0)
    assert [r.attempts for r in run.result.results] == [1] * 6 + [0] * 4


def test_stop_cuts_a_long_wait_for_a_slot_short() -> None:
    script = {f"AE.{i}": [OK] for i in range(4)}
    run = run_script(script, rate=Rate(1, 600.0), concurrency=2, duration=1.0, stop_at=3.0)
    assert run.outcomes() == [Outcome.UPDATED] + [Outcome.NOT_SENT] * 3
    assert run.end == pytest.approx(3.0)


def test_stop_before_the_start_sends_nothing() -> None:
    run = run_script({"AE.1": [OK], "AE.2": [OK]}, stop_at=0.0)
    assert run.sender.sent == []
    assert run.outcomes() == [Outcome.NOT_SENT] * 2
    assert run.result.aborted


def test_a_stop_signalled_as_an_answer_arrives_sends_nothing_more() -> None:
    # The signal lands in the same step as the answer, before the stop watcher can run.
    async def main(clock: VirtualClock) -> tuple[PoolResult, FakeSender]:
        stop = asyncio.Event()

        class StoppingSender(FakeSender):
            async def patch(self, uid: str, body: Mapping[str, Any]) -> Response:
                response = await super().patch(uid, body)
                stop.set()
                return response

        sender = StoppingSender(clock, {"AE.1": [OK], "AE.2": [OK], "AE.3": [OK]})
        limiter = SlidingWindowLimiter(Rate(10, 1.0), clock=clock.clock)
        result = await run_pool(
            patches("AE.1", "AE.2", "AE.3"), sender=sender, limiter=limiter,
            concurrency=1, stop=stop,
        )  # fmt: skip
        return result, sender

    result, sender = run_virtual(main)
    assert sender.uids_sent() == ["AE.1"]
    assert [r.outcome for r in result.results] == [Outcome.UPDATED] + [Outcome.NOT_SENT] * 2
    assert result.abort_reason == "interrupted"


def test_a_stop_after_every_row_is_done_is_not_an_abort() -> None:
    run = run_script({"AE.1": [OK]}, duration=1.0, stop_at=5.0)
    assert not run.result.aborted and run.outcomes() == [Outcome.UPDATED]


# -- the brake (brake.py) ------------------------------------------------------------------


def test_the_brake_halts_like_a_stop_after_that_many_refusals_in_a_row() -> None:
    uids = [f"AE.{i}" for i in range(10)]
    run = run_script({u: [REJECTED] for u in uids}, concurrency=2, stop_after_rejected=3)
    # The third refusal trips it; the other worker's request in flight then is recorded.
    assert run.outcomes() == [Outcome.REJECTED] * 4 + [Outcome.NOT_SENT] * 6
    assert len(run.sender.sent) == 4
    assert run.result.aborted
    assert run.result.abort_reason.startswith("stopped after 3 rows in a row were rejected")
    assert "invalid_email" in run.result.abort_reason


def test_the_brake_on_the_last_row_loses_nothing_and_is_no_abort() -> None:
    run = run_script(
        {"AE.1": [OK], "AE.2": [NOT_FOUND], "AE.3": [NOT_FOUND]},
        concurrency=1,
        stop_after_rejected=2,
    )
    assert run.outcomes() == [Outcome.UPDATED, Outcome.NOT_FOUND, Outcome.NOT_FOUND]
    assert not run.result.aborted


def test_the_brake_is_off_by_default_in_the_pool() -> None:
    run = run_script({f"AE.{i}": [REJECTED] for i in range(50)})
    assert run.outcomes() == [Outcome.REJECTED] * 50


# -- concurrency, order, reporting -----------------------------------------------------------


@pytest.mark.parametrize("concurrency", [1, 3, 8])
def test_concurrency_is_never_exceeded_and_is_used(concurrency: int) -> None:
    rng = random.Random(concurrency)
    uids = [f"AE.{i}" for i in range(20)]
    durations = {uid: rng.uniform(0.1, 3.0) for uid in uids}
    run = run_script({uid: [OK] for uid in uids}, concurrency=concurrency, duration=durations)
    assert run.sender.max_in_flight == concurrency


def test_results_come_in_input_order_whatever_order_they_finish_in() -> None:
    uids = ["AE.5", "AE.3", "AE.9", "AE.1"]
    durations = {"AE.5": 4.0, "AE.3": 1.0, "AE.9": 3.0, "AE.1": 0.5}
    script: dict[str, list[Step]] = {"AE.5": [OK], "AE.3": [NOT_FOUND], "AE.9": [BUSY, OK]}
    script["AE.1"] = [REJECTED]
    run = run_script(script, order=uids, duration=durations)
    assert [r.uid for r in run.result.results] == uids
    assert [r.row for r in run.result.results] == [2, 3, 4, 5]
    assert [r.uid for r in run.reported] == ["AE.1", "AE.3", "AE.5", "AE.9"]  # as they finish
    assert [r.attempts for r in run.result.results] == [1, 1, 2, 1]


def test_on_result_is_called_once_for_every_row_including_not_sent() -> None:
    script = {f"AE.{i}": [OK] for i in range(6)}
    run = run_script(script, concurrency=1, duration=1.0, stop_at=2.5)
    assert sorted(r.uid for r in run.reported) == sorted(script)
    assert [r.outcome for r in run.reported[-3:]] == [Outcome.NOT_SENT] * 3


def test_a_failing_on_result_does_not_lose_rows() -> None:
    async def main(clock: VirtualClock) -> PoolResult:
        def explode(result: RowResult) -> None:
            raise RuntimeError("progress bar broke")

        sender = FakeSender(clock, {"AE.1": [OK], "AE.2": [OK]})
        return await run_pool(
            patches("AE.1", "AE.2"),
            sender=sender,
            limiter=SlidingWindowLimiter(Rate(10, 1.0), clock=clock.clock),
            on_result=explode,
        )

    result = run_virtual(main)
    assert [r.outcome for r in result.results] == [Outcome.UPDATED] * 2


def test_no_patches_is_an_empty_result() -> None:
    run = run_script({})
    assert run.result == PoolResult((), False, "")


def test_cancelling_the_caller_cancels_requests_and_propagates() -> None:
    async def main(clock: VirtualClock) -> FakeSender:
        sender = FakeSender(clock, {"AE.1": [OK], "AE.2": [OK]}, duration=10.0)
        limiter = SlidingWindowLimiter(Rate(10, 1.0), clock=clock.clock)
        task = asyncio.create_task(run_pool(patches("AE.1", "AE.2"), sender=sender,
                                            limiter=limiter))  # fmt: skip
        await asyncio.sleep(1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert clock.now == pytest.approx(1.0)
        return sender

    sender = run_virtual(main)
    assert sender.in_flight == 0 and len(sender.sent) == 2


def test_concurrency_below_one_is_a_config_error() -> None:
    async def main(clock: VirtualClock) -> None:
        await run_pool(
            patches("AE.1"),
            sender=FakeSender(clock, {"AE.1": [OK]}),
            limiter=SlidingWindowLimiter(Rate(1, 1.0)),
            concurrency=0,
        )

    with pytest.raises(ConfigError, match="concurrency"):
        run_virtual(main)


# -- the retry policy ----------------------------------------------------------------------


def test_delay_is_full_jitter_under_an_exponential_cap() -> None:
    policy = RetryPolicy(max_attempts=6, base_s=0.5, max_s=30.0)
    rng = random.Random(1)
    for attempt, cap in [(1, 0.5), (2, 1.0), (3, 2.0), (6, 16.0), (7, 30.0), (5000, 30.0)]:
        delays = [policy.delay(attempt, rng) for _ in range(200)]
        assert all(0 <= d <= cap for d in delays)
        assert max(delays) > cap * 0.9  # it spreads over the whole range
        assert min(delays) < cap * 0.1


def test_delay_is_pure_given_the_rng() -> None:
    policy = RetryPolicy()
    assert policy.delay(3, random.Random(42)) == policy.delay(3, random.Random(42))
    assert policy.delay(3, random.Random(42)) == random.Random(42).uniform(0, 2.0)


def test_max_attempts_below_one_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="max_attempts"):
        RetryPolicy(max_attempts=0)


# -- results in batches (on_results) ---------------------------------------------------------


@dataclass
class Batched:
    result: PoolResult
    batches: list[tuple[float, list[RowResult]]]  # each with the clock time it came
    single: list[RowResult]  # what on_result got
    delivered_on_return: int  # rows handed to on_results when run_pool returned


def run_batched(
    script: Mapping[str, Sequence[Step]],
    *,
    concurrency: int = 3,
    stop_at: float | None = None,
    on_results: Callable[[Sequence[RowResult]], None] | None = None,
) -> Batched:
    """Run the pool with `on_results` (default: collect), each request lasting 1 s."""
    batches: list[tuple[float, list[RowResult]]] = []
    single: list[RowResult] = []

    async def main(clock: VirtualClock) -> Batched:
        stop = asyncio.Event()
        if stop_at is not None:
            clock.call_at(stop_at, stop.set)
        result = await run_pool(
            patches(*script),
            sender=FakeSender(clock, script, 1.0),
            limiter=SlidingWindowLimiter(ROOMY, clock=clock.clock),
            concurrency=concurrency,
            on_result=single.append,
            on_results=on_results or (lambda batch: batches.append((clock.now, list(batch)))),
            stop=stop,
        )
        delivered = sum(len(batch) for _, batch in batches)
        return Batched(result, batches, single, delivered)

    return run_virtual(main)


def test_on_results_gets_the_rows_that_finished_in_one_turn_together() -> None:
    script = {f"AE.{i}": [OK] for i in range(6)}
    run = run_batched(script, concurrency=3)
    # Three requests end at t=1 in the same turn of the loop, three more at t=2.
    assert [when for when, _ in run.batches] == [pytest.approx(1.0), pytest.approx(2.0)]
    assert [sorted(r.uid for r in batch) for _, batch in run.batches] == [
        ["AE.0", "AE.1", "AE.2"],
        ["AE.3", "AE.4", "AE.5"],
    ]
    # The same results as on_result, in the order they finished.
    assert [r for _, batch in run.batches for r in batch] == run.single
    assert sorted(run.single, key=lambda r: r.row) == list(run.result.results)
    assert run.delivered_on_return == 6


def test_on_results_gets_the_not_sent_rows_before_run_pool_returns() -> None:
    script = {f"AE.{i}": [OK] for i in range(5)}
    run = run_batched(script, concurrency=1, stop_at=1.5)
    assert run.result.aborted
    delivered = [r for _, batch in run.batches for r in batch]
    assert sorted(r.uid for r in delivered) == sorted(script)  # each row exactly once
    assert [r.outcome for r in delivered].count(Outcome.NOT_SENT) == 3
    assert run.delivered_on_return == 5


def test_a_failing_on_results_is_logged_and_later_batches_still_come(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[list[str]] = []

    def flaky(batch: Sequence[RowResult]) -> None:
        seen.append([r.uid for r in batch])
        if len(seen) == 1:
            raise RuntimeError("journal is full")

    script = {f"AE.{i}": [OK] for i in range(4)}
    run = run_batched(script, concurrency=2, on_results=flaky)
    assert [r.outcome for r in run.result.results] == [Outcome.UPDATED] * 4
    assert sorted(uid for batch in seen for uid in batch) == sorted(script)
    assert "on_results callback failed for rows 2, 3" in caplog.text


def test_cancelling_delivers_the_finished_rows_before_propagating() -> None:
    batches: list[list[str]] = []

    async def main(clock: VirtualClock) -> None:
        script = {"AE.1": [OK], "AE.2": [OK]}
        sender = FakeSender(clock, script, duration={"AE.1": 1.0, "AE.2": 10.0})
        task: asyncio.Task[PoolResult]

        def cancel_at_once(result: RowResult) -> None:
            task.cancel()  # in the very turn AE.1 finishes, before its batch is handed over

        task = asyncio.create_task(
            run_pool(
                patches("AE.1", "AE.2"),
                sender=sender,
                limiter=SlidingWindowLimiter(ROOMY, clock=clock.clock),
                on_result=cancel_at_once,
                on_results=lambda batch: batches.append([r.uid for r in batch]),
            )
        )
        with pytest.raises(asyncio.CancelledError):
            await task
        assert batches == [["AE.1"]]  # handed over before the cancellation came out

    run_virtual(main)
