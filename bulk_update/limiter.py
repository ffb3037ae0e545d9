"""The sliding-window rate limit shared by every worker.

Comeet allows N requests in any window of S seconds (contract section 7). A leaky bucket (as
in `aiolimiter`) smooths the rate but lets up to ~2N requests into one window, so this module
keeps an exact log instead: the times of the last N slots.

What is logged is the moment a slot is *released* (the response came back or the attempt
ended), not the moment it was granted: the server received the request somewhere between the
two, and only the release time is a bound we know. A slot still in flight therefore occupies
the window until it is released and for `period` seconds after that. A new slot is granted at
time t only when fewer than N slots are in flight or were released after t - period; that
keeps every window of `period` seconds, as seen by the server, at N requests or fewer, while
an idle budget is spent at once (2N quick requests take about one period, not two).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager

from .models import Rate

__all__ = ["SlidingWindowLimiter", "estimate_duration"]

#: Clocks and sleeps are floats: a sleep of `target - now` may wake a hair early (asyncio
#: itself fires timers up to the clock's resolution early). A nanosecond is far below any
#: network latency, so waking within it counts as on time rather than spinning forever.
_EPSILON = 1e-9


class SlidingWindowLimiter:
    """At most `rate.limit` slots in any sliding window of `rate.period` seconds.

    Use one per run, shared by every worker::

        async with limiter.slot():
            response = await send_one_request()

    Waiters are served first come, first served. `clock` and `sleep` are injected so that
    tests can run on a fake clock without waiting.
    """

    def __init__(
        self,
        rate: Rate,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.rate = rate
        self._clock = clock
        self._sleep = sleep
        # Release times still inside the window, oldest first. Releases happen in clock
        # order, so appending keeps the deque sorted; it never holds more than `limit`.
        self._released: deque[float] = deque()
        self._in_flight = 0
        self._paused_until = -math.inf
        self._sends: list[float] = []
        # One head waiter at a time computes when it may go; asyncio.Lock queues the rest in
        # arrival order, which is what makes the limiter fair.
        self._lock = asyncio.Lock()
        # Acquirers inside the slow path (queued on the lock, or its holder): while there is
        # one, a newcomer must queue too, or it could take a slot ahead of them.
        self._waiting = 0
        self._release_waiter: asyncio.Future[None] | None = None
        # One stateless context manager serves every `slot()`: a class, not a generator
        # (asynccontextmanager), because each request goes through it.
        self._slot = _Slot(self)

    @property
    def sends(self) -> Sequence[float]:
        """Clock times at which slots were granted, in grant order."""
        return tuple(self._sends)

    @property
    def paused_until(self) -> float:
        """Clock time before which no slot is granted (set by `pause`)."""
        return self._paused_until

    def slot(self) -> AbstractAsyncContextManager[None]:
        """Wait for a slot, hold it while the body sends one request, then release it."""
        return self._slot

    def pause(self, retry_after: float | None) -> None:
        """Hold every acquirer back after a 429.

        With `retry_after`, until now + retry_after. Without, the server has told us the
        window is full whatever our log says, so wait until the earliest logged slot leaves
        the window (now + period when the log is empty). A pause never shortens an earlier
        one.
        """
        now = self._clock()
        period = self.rate.period
        if retry_after is not None:
            until = now + max(0.0, retry_after)
        else:
            self._forget(now)
            until = (self._released[0] if self._released else now) + period
        self._paused_until = max(self._paused_until, until)

    def _forget(self, now: float) -> None:
        """Drop release times that have left the window (released at or before now - period)."""
        horizon = now - self.rate.period
        while self._released and self._released[0] <= horizon + _EPSILON:
            self._released.popleft()

    def _wait_time(self, now: float) -> float | None:
        """Seconds until a slot may be granted: 0 now, None until some slot is released."""
        self._forget(now)
        pause = max(0.0, self._paused_until - now)
        # Every slot in flight or released inside the window occupies it; `excess` of them
        # must leave before a new one fits.
        excess = self._in_flight + len(self._released) - self.rate.limit + 1
        if excess <= 0:
            return pause if pause > _EPSILON else 0.0
        if excess > len(self._released):
            # Slots in flight leave the window only `period` after their release, and
            # releasing never frees room at once, so the wait starts at the next release.
            return None
        frees_at = self._released[excess - 1] + self.rate.period
        wait = max(pause, frees_at - now)
        return wait if wait > _EPSILON else 0.0

    async def _acquire(self) -> None:
        if not self._waiting:
            # Fast path, no one ahead: the usual case below the limit.
            now = self._clock()
            if self._wait_time(now) == 0.0:
                self._grant(now)
                return
        self._waiting += 1
        try:
            await self._acquire_in_turn()
        finally:
            self._waiting -= 1

    def _grant(self, now: float) -> None:
        self._in_flight += 1
        self._sends.append(now)

    async def _acquire_in_turn(self) -> None:
        async with self._lock:
            while True:
                # Re-check after every wake-up: a pause may have moved the goal meanwhile.
                now = self._clock()
                wait = self._wait_time(now)
                if wait == 0.0:
                    self._grant(now)
                    return
                if wait is None:
                    waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                    self._release_waiter = waiter
                    try:
                        await waiter
                    finally:
                        self._release_waiter = None
                else:
                    # A release cannot make this wait shorter (it only adds a later entry to
                    # the log), so sleeping straight to the goal is exact.
                    await self._sleep(wait)

    def _release(self) -> None:
        self._in_flight -= 1
        self._released.append(self._clock())
        waiter = self._release_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class _Slot(AbstractAsyncContextManager[None]):
    """`limiter.slot()`: acquire on entry, release on exit (however the body ends)."""

    __slots__ = ("_limiter",)

    def __init__(self, limiter: SlidingWindowLimiter) -> None:
        self._limiter = limiter

    async def __aenter__(self) -> None:
        await self._limiter._acquire()

    async def __aexit__(self, *exc: object) -> None:
        self._limiter._release()


def estimate_duration(requests: int, rate: Rate) -> float:
    """Seconds the fastest legal schedule takes for `requests` instant requests.

    The first `limit` go at once, then one more batch every `period`: 0 for up to `limit`
    requests, `(ceil(requests / limit) - 1) * period` beyond.
    """
    if requests <= rate.limit:
        return 0.0
    return (math.ceil(requests / rate.limit) - 1) * rate.period
