"""The sliding-window limiter, on virtual time: every test runs in milliseconds.

The fake clock is an event loop whose clock jumps straight to the next timer whenever every
task is waiting. `asyncio.sleep`, locks and futures keep their real ordering, so concurrent
acquirers interleave exactly as they would in real time, only without the waiting.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import pytest
from aiolimiter import AsyncLimiter
from hypothesis import given, settings
from hypothesis import strategies as st

from bulk_update.limiter import SlidingWindowLimiter, estimate_duration
from bulk_update.models import Rate

from .virtual_time import VirtualClock, run_virtual

TOL = 1e-6


@dataclass
class Call:
    asked: float  # when the task asked for a slot
    order: int  # in which order it asked (ties in `asked` happen)
    granted: float = math.nan
    released: float = math.nan


async def acquire_all(
    clock: VirtualClock,
    limiter: SlidingWindowLimiter,
    durations: Sequence[float],
    gaps: Sequence[float] | None = None,
    concurrency: int | None = None,
) -> list[Call]:
    """Send len(durations) requests through `limiter`; request i holds its slot durations[i].

    Arrivals are spaced by `gaps` (default: all at once); at most `concurrency` tasks hold
    or wait for a slot at a time (default: no bound).
    """
    calls: list[Call] = []
    order = itertools.count()
    gate = asyncio.Semaphore(concurrency or len(durations) or 1)

    async def one(duration: float) -> None:
        async with gate:
            call = Call(asked=clock.now, order=next(order))
            calls.append(call)
            async with limiter.slot():
                call.granted = clock.now
                await asyncio.sleep(duration)
            call.released = clock.now

    tasks = []
    for i, duration in enumerate(durations):
        if gaps is not None and i:
            await asyncio.sleep(gaps[i - 1])
        tasks.append(asyncio.create_task(one(duration)))
    await asyncio.gather(*tasks)
    return calls


def assert_never_over(calls: Sequence[Call], rate: Rate) -> None:
    """No window of `period`, as the server may see it, holds more than `limit` requests.

    The server received request i at some moment in [granted_i, released_i]. The worst
    window [t, t + period) holds every request with granted < t + period and released >= t;
    that count only drops just after some release, so checking t = each release suffices.
    Also the enforced invariant in its direct form: the j-th grant (in time order) comes
    no earlier than the (j - limit)-th release (in time order) plus the period.
    """
    n, period = rate.limit, rate.period
    for t in (call.released for call in calls):
        inside = [c for c in calls if c.granted < t + period - TOL and c.released >= t]
        assert len(inside) <= n, f"{len(inside)} requests may share the window at {t}"
    grants = sorted(c.granted for c in calls)
    releases = sorted(c.released for c in calls)
    for j in range(n, len(grants)):
        assert grants[j] >= releases[j - n] + period - TOL, (j, grants[j], releases[j - n])


def assert_tight(calls: Sequence[Call], rate: Rate, paused_until: float = -math.inf) -> None:
    """The limiter wastes no budget: each slot goes the moment it may (first come first)."""
    by_order = sorted(calls, key=lambda c: c.order)
    releases = sorted(c.released for c in calls)
    previous = -math.inf
    for j, call in enumerate(by_order):
        earliest = max(call.asked, previous, paused_until)
        if j >= rate.limit:
            earliest = max(earliest, releases[j - rate.limit] + rate.period)
        assert call.granted == pytest.approx(earliest, abs=TOL), (j, call)
        previous = call.granted


def finish_time(calls: Sequence[Call]) -> float:
    return max(c.released for c in calls)


# -- the idle budget is used, the window is never exceeded --------------------------------


def test_two_n_quick_requests_take_one_period_not_two() -> None:
    rate = Rate(5, 10.0)

    async def main(clock: VirtualClock) -> list[Call]:
        limiter = SlidingWindowLimiter(rate, clock=clock.clock, sleep=clock.sleep)
        calls = await acquire_all(clock, limiter, [0.0] * 10)
        assert list(limiter.sends) == [0.0] * 5 + [10.0] * 5
        return calls

    calls = run_virtual(main)
    assert finish_time(calls) == pytest.approx(10.0)
    assert_never_over(calls, rate)


def test_400_requests_at_100_per_5_take_15_seconds() -> None:
    rate = Rate(100, 5.0)

    async def main(clock: VirtualClock) -> list[Call]:
        limiter = SlidingWindowLimiter(rate, clock=clock.clock, sleep=clock.sleep)
        return await acquire_all(clock, limiter, [0.01] * 400, concurrency=8)

    calls = run_virtual(main)
    # 4 batches, each one period after the previous batch's releases (0.01 s later each).
    assert 15.0 <= finish_time(calls) < 15.2
    assert finish_time(calls) == pytest.approx(estimate_duration(400, rate), abs=0.2)
    assert_never_over(calls, rate)
    assert_tight(calls, rate)


@pytest.mark.parametrize("count", [6, 10, 20])  # N + 1, 2N, 4N at N = 5
@pytest.mark.parametrize("concurrency", [1, 3, None])
@pytest.mark.parametrize("duration", [0.0, 0.5, 3.0, 12.0])
def test_no_window_holds_more_than_n(count: int, concurrency: int | None, duration: float) -> None:
    rate = Rate(5, 10.0)

    async def main(clock: VirtualClock) -> list[Call]:
        limiter = SlidingWindowLimiter(rate, clock=clock.clock, sleep=clock.sleep)
        return await acquire_all(clock, limiter, [duration] * count, concurrency=concurrency)

    calls = run_virtual(main)
    assert len(calls) == count
    assert_never_over(calls, rate)
    assert_tight(calls, rate)
    if duration == 0.0 and concurrency is None:
        assert finish_time(calls) == pytest.approx(estimate_duration(count, rate))


def test_a_slot_in_flight_occupies_the_window_until_released_plus_period() -> None:
    # Granted at 0, the first two reach the server at some moment before 4 s; a third at
    # 10 s could share a window with both, so it must wait until 4 + 10.
    rate = Rate(2, 10.0)

    async def main(clock: VirtualClock) -> list[Call]:
        limiter = SlidingWindowLimiter(rate, clock=clock.clock, sleep=clock.sleep)
        return await acquire_all(clock, limiter, [4.0, 4.0, 0.0])

    calls = run_virtual(main)
    assert [c.granted for c in calls] == [0.0, 0.0, pytest.approx(14.0)]


def test_released_slot_frees_exactly_one_period_after_release() -> None:
    rate = Rate(1, 3.0)

    async def main(clock: VirtualClock) -> list[Call]:
        limiter = SlidingWindowLimiter(rate, clock=clock.clock, sleep=clock.sleep)
        return await acquire_all(clock, limiter, [1.0, 2.0, 0.0])

    calls = run_virtual(main)
    assert [c.granted for c in calls] == [0.0, pytest.approx(4.0), pytest.approx(9.0)]


def test_waiters_are_served_first_come_first_served() -> None:
    rate = Rate(1, 1.0)

    async def main(clock: VirtualClock) -> list[Call]:
        limiter = SlidingWindowLimiter(rate, clock=clock.clock, sleep=clock.sleep)
        return await acquire_all(clock, limiter, [0.0] * 6, gaps=[0.1] * 5)

    calls = run_virtual(main)
    by_grant = sorted(calls, key=lambda c: c.granted)
    assert [c.order for c in by_grant] == list(range(6))
    assert [c.granted for c in calls] == pytest.approx([0, 1, 2, 3, 4, 5])


def test_a_cancelled_waiter_takes_no_slot_and_blocks_nobody() -> None:
    rate = Rate(1, 5.0)

    async def main(clock: VirtualClock) -> tuple[float, Sequence[float]]:
        limiter = SlidingWindowLimiter(rate, clock=clock.clock, sleep=clock.sleep)
        async with limiter.slot():
            pass

        async def wait_for_slot() -> None:
            async with limiter.slot():
                pass

        doomed = asyncio.create_task(wait_for_slot())
        await asyncio.sleep(1)
        doomed.cancel()
        with pytest.raises(asyncio.CancelledError):
            await doomed
        await wait_for_slot()
        return clock.now, limiter.sends

    now, sends = run_virtual(main)
    assert now == pytest.approx(5.0)
    assert list(sends) == [0.0, pytest.approx(5.0)]


def test_an_exception_in_the_body_still_releases_the_slot() -> None:
    rate = Rate(1, 2.0)

    async def main(clock: VirtualClock) -> Sequence[float]:
        limiter = SlidingWindowLimiter(rate, clock=clock.clock, sleep=clock.sleep)
        with pytest.raises(ValueError):
            async with limiter.slot():
                await asyncio.sleep(1)
                raise ValueError("boom")
        async with limiter.slot():
            pass
        return limiter.sends

    assert list(run_virtual(main)) == [0.0, pytest.approx(3.0)]


# -- pause after a 429 ---------------------------------------------------------------------


def test_pause_with_retry_after_holds_every_acquirer_until_then() -> None:
    rate = Rate(100, 10.0)  # plenty of room: only the pause can hold anyone back

    async def main(clock: VirtualClock) -> list[Call]:
        limiter = SlidingWindowLimiter(rate, clock=clock.clock, sleep=clock.sleep)
        async with limiter.slot():
            await asyncio.sleep(1)
        limiter.pause(20)
        assert limiter.paused_until == pytest.approx(21.0)
        return await acquire_all(clock, limiter, [0.0] * 4, gaps=[5.0] * 3)

    calls = run_virtual(main)
    assert [c.asked for c in calls] == [1.0, 6.0, 11.0, 16.0]
    assert all(c.granted == pytest.approx(21.0) for c in calls)


def test_pause_reaches_a_waiter_already_sleeping_for_room() -> None:
    rate = Rate(1, 10.0)

    async def main(clock: VirtualClock) -> Sequence[float]:
        limiter = SlidingWindowLimiter(rate, clock=clock.clock, sleep=clock.sleep)
        async with limiter.slot():
            pass

        async def late() -> None:
            async with limiter.slot():
                pass

        waiter = asyncio.create_task(late())  # sleeps toward 10 s
        await asyncio.sleep(2)
        limiter.pause(30)  # a 429 elsewhere: nobody goes before 32 s
        await waiter
        return limiter.sends

    assert list(run_virtual(main)) == [0.0, pytest.approx(32.0)]


def test_pause_never_shortens_an_earlier_pause() -> None:
    async def main(clock: VirtualClock) -> float:
        limiter = SlidingWindowLimiter(Rate(5, 10.0), clock=clock.clock, sleep=clock.sleep)
        limiter.pause(30)
        limiter.pause(5)
        limiter.pause(None)
        async with limiter.slot():
            return clock.now

    assert run_virtual(main) == pytest.approx(30.0)


def test_pause_without_retry_after_waits_until_the_window_has_room() -> None:
    # Window: releases at 2 and 3. A 429 without Retry-After at 4: treat the window as
    # full, so the earliest entry (2) must leave it first: nobody goes before 2 + 10.
    rate = Rate(5, 10.0)

    async def main(clock: VirtualClock) -> list[Call]:
        limiter = SlidingWindowLimiter(rate, clock=clock.clock, sleep=clock.sleep)
        await asyncio.sleep(2)
        async with limiter.slot():
            pass
        await asyncio.sleep(1)
        async with limiter.slot():
            pass
        await asyncio.sleep(1)
        limiter.pause(None)
        assert limiter.paused_until == pytest.approx(12.0)
        return await acquire_all(clock, limiter, [0.0] * 3)

    calls = run_virtual(main)
    assert [c.granted for c in calls] == pytest.approx([12.0] * 3)


def test_pause_without_retry_after_on_an_empty_window_waits_one_period() -> None:
    async def main(clock: VirtualClock) -> float:
        limiter = SlidingWindowLimiter(Rate(5, 10.0), clock=clock.clock, sleep=clock.sleep)
        async with limiter.slot():
            pass
        await asyncio.sleep(15)  # the one entry has left the window
        limiter.pause(None)
        async with limiter.slot():
            return clock.now

    assert run_virtual(main) == pytest.approx(25.0)


# -- the fastest legal schedule ------------------------------------------------------------


@pytest.mark.parametrize(
    ("requests", "rate", "expected"),
    [
        (0, Rate(100, 60), 0.0),
        (1, Rate(100, 60), 0.0),
        (100, Rate(100, 60), 0.0),
        (101, Rate(100, 60), 60.0),
        (200, Rate(100, 60), 60.0),
        (201, Rate(100, 60), 120.0),
        (400, Rate(100, 5), 15.0),
        (1000, Rate(20, 1), 49.0),
        (3, Rate(1, 0.5), 1.0),
    ],
)
def test_estimate_duration(requests: int, rate: Rate, expected: float) -> None:
    assert estimate_duration(requests, rate) == pytest.approx(expected)


# -- property: random durations and arrivals -----------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    limit=st.integers(1, 5),
    period=st.sampled_from([0.5, 1.0, 3.0, 10.0]),
    durations=st.lists(st.floats(0, 8, allow_nan=False), min_size=1, max_size=25),
    gaps=st.lists(st.floats(0, 4, allow_nan=False), min_size=25, max_size=25),
    concurrency=st.one_of(st.none(), st.integers(1, 6)),
)
def test_property_never_more_than_n_per_window(
    limit: int,
    period: float,
    durations: list[float],
    gaps: list[float],
    concurrency: int | None,
) -> None:
    rate = Rate(limit, period)

    async def main(clock: VirtualClock) -> list[Call]:
        limiter = SlidingWindowLimiter(rate, clock=clock.clock, sleep=clock.sleep)
        calls = await acquire_all(clock, limiter, durations, gaps, concurrency)
        assert list(limiter.sends) == sorted(c.granted for c in calls)
        return calls

    calls = run_virtual(main)
    assert_never_over(calls, rate)
    assert_tight(calls, rate)


# -- why not aiolimiter ---------------------------------------------------------------------


def test_a_leaky_bucket_lets_nearly_2n_into_one_window_where_this_limiter_lets_n() -> None:
    # aiolimiter reads the loop's clock, so it runs on the same virtual time.
    limit, period = 10, 10.0

    async def main(clock: VirtualClock) -> tuple[list[float], list[float]]:
        bucket = AsyncLimiter(limit, period)
        bucket_grants: list[float] = []
        for _ in range(2 * limit):
            async with bucket:
                bucket_grants.append(clock.now)
        start = clock.now
        ours = SlidingWindowLimiter(Rate(limit, period), clock=clock.clock, sleep=clock.sleep)
        for _ in range(2 * limit):
            async with ours.slot():
                pass
        return bucket_grants, [t - start for t in ours.sends]

    bucket_grants, our_grants = run_virtual(main)
    in_first_window = sum(1 for t in bucket_grants if t < period)
    assert in_first_window > limit  # 19 of 20 within [0, 10): over the API's limit
    assert sum(1 for t in our_grants if t < period) == limit


def test_a_newcomer_never_takes_the_slot_of_a_waiter_whose_turn_has_come() -> None:
    """The fast path (no lock when nobody waits) must not let a newcomer jump the queue."""
    rate = Rate(1, 1.0)
    granted: list[str] = []

    async def main(clock: VirtualClock) -> Sequence[float]:
        newcomer: list[asyncio.Task[None]] = []

        async def take(name: str) -> None:
            async with limiter.slot():
                granted.append(name)

        async def sleep(seconds: float) -> None:
            await asyncio.sleep(seconds)
            if not newcomer:
                # The window has room again; a newcomer arrives before the waiter goes on.
                newcomer.append(asyncio.create_task(take("C")))
                await asyncio.sleep(0)

        limiter = SlidingWindowLimiter(rate, clock=clock.clock, sleep=sleep)
        await take("A")
        await take("B")  # waits for A's slot to leave the window, then meets C
        await newcomer[0]
        return limiter.sends

    sends = run_virtual(main)
    assert granted == ["A", "B", "C"]
    assert list(sends) == [0.0, pytest.approx(1.0), pytest.approx(2.0)]
