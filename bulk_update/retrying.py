"""One request, tried until it has a final answer: the rules every request to Comeet follows.

A patch and a read (`GET /candidates/{uid}`) go through the same `Retrier`, so they share
one budget and one set of rules (contract sections 7 and 11): every attempt takes a slot of
the run's `SlidingWindowLimiter`; a 429 pauses every request until `Retry-After` (else until
the window has room); 5xx, timeouts and dropped connections are retried with full-jitter
backoff; a 401 mints a new token once, and a second one halts the run. A halt (a stop
event, a refused token, or whoever calls `halt`: the pool's brake) lets the requests in
flight finish and starts no new one.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from .client import MESSAGE_LIMIT, Kind, Response, clock_problem
from .errors import ConfigError
from .limiter import SlidingWindowLimiter

__all__ = [
    "FINAL_KINDS",
    "INTERRUPTED",
    "Retrier",
    "RetryPolicy",
    "Tokens",
    "Tries",
    "auth_abort_reason",
]

logger = logging.getLogger(__name__)

#: The abort reason of a stop asked for (Ctrl-C, SIGTERM, the page's Stop button).
INTERRUPTED = "interrupted"
#: Answers that end a request: sending it again would not change them.
FINAL_KINDS = frozenset({Kind.OK, Kind.NOT_FOUND, Kind.REJECTED, Kind.GIVE_UP})


def auth_abort_reason(refusal: Response, clock_offset_s: float | None) -> str:
    """Why a second 401 stops the run: the API's own words, and this machine's clock
    when the answers' `Date` shows it off by more than a minute (else: the credentials).
    Pure.
    """
    said = refusal.message or refusal.error or f"HTTP {refusal.status}"
    cause = clock_problem(clock_offset_s) or "check COMEET_API_KEY and COMEET_SECRET"
    return f'the API refused the credentials twice (401): "{said}"; {cause}'


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a row is retried (`[limits] max_attempts`).

    `max_attempts` counts every request sent for a row, the first one included.
    """

    max_attempts: int = 6
    base_s: float = 0.5
    max_s: float = 30.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigError(
                f"max_attempts must be at least 1, not {self.max_attempts}",
                fix="set [limits] max_attempts to 1 or more (6 is the default)",
            )
        if self.base_s < 0 or self.max_s < 0:
            raise ConfigError("retry delays must not be negative", fix="use delays >= 0")

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based). Pure.

        Full jitter: uniform in [0, min(max_s, base_s * 2 ** (attempt - 1))], so workers
        that failed together do not come back together.
        """
        # Clamp the exponent: 2 ** 1100 as a float would overflow long after the cap.
        ceiling = min(self.max_s, self.base_s * 2.0 ** min(max(attempt - 1, 0), 64))
        return rng.uniform(0, ceiling)


class Tokens(Protocol):
    """What the retrier needs from a client besides the request itself (`ComeetClient`)."""

    def refresh_token(self) -> None:
        """Mint a new token for the next request."""
        ...


@dataclass
class Tries:
    """What one row's requests have seen so far: its `attempts` column, and the last
    answer (what a row caught unfinished by a halt reports)."""

    attempts: int = 0
    last: Response | None = None


class Retrier:
    """Send requests under one run's limiter and retry policy; one per run, shared.

    `on_halt` is called (once per `halt`) so that the owner can cancel whatever waits
    for a slot or a backoff; the requests in `sending` (inside `send` right now) are the
    ones a halt lets finish.
    """

    def __init__(
        self,
        tokens: Tokens,
        limiter: SlidingWindowLimiter,
        retry: RetryPolicy = RetryPolicy(),  # frozen, so one shared default is safe
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        stop: asyncio.Event | None = None,
        on_halt: Callable[[], None] | None = None,
    ) -> None:
        self.tokens = tokens
        self.limiter = limiter
        self.retry = retry
        self.sleep = sleep
        self.rng = rng if rng is not None else random.Random()
        self.stop = stop
        self.on_halt = on_halt
        self.abort_reason = ""
        #: The server's clock ahead of ours, from the last answer with a `Date`.
        self.clock_offset_s: float | None = None
        self._clock_said = False
        #: Tasks inside `send` right now: a halt lets exactly these finish.
        self.sending: set[asyncio.Task[object]] = set()

    @property
    def halted(self) -> bool:
        """Whether no new request may start."""
        # Reading the event directly (not only via a watcher task) means no request can
        # start in the gap between `stop.set()` and the watcher running.
        return bool(self.abort_reason) or (self.stop is not None and self.stop.is_set())

    def halt(self, reason: str) -> None:
        """Start no new request; the first reason given is the one kept."""
        if not self.abort_reason:
            self.abort_reason = reason
        if self.on_halt is not None:
            self.on_halt()

    async def call(
        self, send: Callable[[], Awaitable[Response]], tries: Tries, what: str
    ) -> Response | None:
        """`send()` until its answer is final, or the policy's attempts are spent.

        Returns the final answer (a kind in FINAL_KINDS), or the last one when the row is
        out of attempts (its kind is not final: the row failed); None when a halt caught
        the request unfinished (a second 401 halts the run: `abort_reason` says why).
        `tries` counts the attempts across calls (a row's read and patch share it, when
        the caller passes the same); `what` names the request in the log (`row 7`).
        """
        auth_refusals = 0
        while True:
            if self.halted:
                return None
            response = await self._attempt(send, what)
            if response is None:  # halted while waiting for the slot
                return None
            tries.attempts += 1
            tries.last = response
            if response.clock_offset_s is not None:
                self._read_clock(response.clock_offset_s)
            if response.kind in FINAL_KINDS:
                return response
            if response.kind is Kind.AUTH:
                auth_refusals += 1
                if auth_refusals >= 2:
                    logger.error("%s: the API refused a fresh token too", what)
                    self.halt(auth_abort_reason(response, self.clock_offset_s))
                    return None
                self.tokens.refresh_token()
            elif response.kind is Kind.RATE_LIMITED:
                self.limiter.pause(response.retry_after)
            if tries.attempts >= self.retry.max_attempts:
                return response
            if response.kind is Kind.RETRY and not self.halted:
                await self.sleep(self.retry.delay(tries.attempts, self.rng))

    def _read_clock(self, offset_s: float) -> None:
        """Keep the latest offset; say once when this machine's clock is off."""
        self.clock_offset_s = offset_s
        problem = clock_problem(offset_s)
        if problem and not self._clock_said:
            self._clock_said = True
            logger.warning(
                "%s", problem, extra={"event": "clock_offset", "fields": {"offset_s": offset_s}}
            )

    async def _attempt(self, send: Callable[[], Awaitable[Response]], what: str) -> Response | None:
        task = asyncio.current_task()
        assert task is not None
        async with self.limiter.slot():
            if self.halted:
                return None
            self.sending.add(task)
            try:
                return await send()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # One bad row must not kill a worker (and with it a quarter of the run).
                logger.exception("%s: unexpected error while sending", what)
                message = f"{type(exc).__name__}: {exc}"[:MESSAGE_LIMIT]
                return Response(Kind.RETRY, None, "internal_error", message)
            finally:
                self.sending.discard(task)
