"""Virtual time for async tests: an event loop whose clock jumps to the next timer.

Nothing sleeps for real: when every task waits, `now` moves straight to the next timer, so
tests of the limiter and the pool keep real asyncio ordering and take no wall time.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


class _JumpSelector(selectors.DefaultSelector):
    """Never blocks: a wait for the next timer moves the virtual clock there instead."""

    clock: VirtualClock

    def select(self, timeout: float | None = None) -> list[Any]:
        events = super().select(0)
        if events or timeout == 0:
            return events
        if timeout is None:
            raise RuntimeError("deadlock: every task waits and no timer is set")
        self.clock.now += timeout
        return events


class VirtualClock(asyncio.SelectorEventLoop):
    """An event loop on a fake clock: `now` only moves when every task is waiting."""

    def __init__(self) -> None:
        self.now = 0.0
        selector = _JumpSelector()
        selector.clock = self
        super().__init__(selector)

    def time(self) -> float:
        return self.now

    def clock(self) -> float:
        """Injected into the limiter as its clock."""
        return self.now

    async def sleep(self, seconds: float) -> None:
        """Injected as the limiter's sleep: advances `now` (when all else waits) and yields."""
        await asyncio.sleep(seconds)


def run_virtual(main: Callable[[VirtualClock], Awaitable[T]]) -> T:
    """Run `main(clock)` on a fresh virtual-time loop and return its result."""
    loop = VirtualClock()
    try:
        return loop.run_until_complete(main(loop))
    finally:
        loop.close()
