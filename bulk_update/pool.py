"""The async worker pool: queue, workers, retries with backoff, pause on 429, graceful stop.

`concurrency` workers take patches off a shared queue. Every attempt, retries included,
takes a slot of the shared `SlidingWindowLimiter`, so the rate limit holds for the whole run.
A stop (Ctrl-C or SIGTERM, signalled through an `asyncio.Event`) or a second refused token
halts the run: no new request starts, requests already in flight finish and are recorded,
and every row without a final answer is `not_sent`.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .client import MESSAGE_LIMIT, Kind, Response, clock_problem
from .errors import ConfigError
from .limiter import SlidingWindowLimiter
from .models import Outcome, Patch, RowResult

__all__ = [
    "INTERRUPTED",
    "PoolResult",
    "RetryPolicy",
    "Sender",
    "auth_abort_reason",
    "run_pool",
]

logger = logging.getLogger(__name__)

INTERRUPTED = "interrupted"


def auth_abort_reason(refusal: Response, clock_offset_s: float | None) -> str:
    """Why a second 401 stops the run: the API's own words, and this machine's clock
    when the answers' `Date` shows it off by more than a minute (else: the credentials).
    Pure.
    """
    said = refusal.message or refusal.error or f"HTTP {refusal.status}"
    cause = clock_problem(clock_offset_s) or "check COMEET_API_KEY and COMEET_SECRET"
    return f'the API refused the credentials twice (401): "{said}"; {cause}'


_FINAL: Mapping[Kind, Outcome] = {
    Kind.OK: Outcome.UPDATED,
    Kind.NOT_FOUND: Outcome.NOT_FOUND,
    Kind.REJECTED: Outcome.REJECTED,
    Kind.GIVE_UP: Outcome.FAILED,
}


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


class Sender(Protocol):
    """What the pool needs from a client (`ComeetClient` is one)."""

    async def patch(self, uid: str, body: Mapping[str, Any]) -> Response:
        """Send one patch; never raise for HTTP or network trouble."""
        ...

    def refresh_token(self) -> None:
        """Mint a new token for the next request."""
        ...


@dataclass(frozen=True)
class PoolResult:
    """Every row's result in input order, and whether (and why) the run stopped early."""

    results: tuple[RowResult, ...]
    aborted: bool
    abort_reason: str


async def run_pool(
    patches: Sequence[Patch],
    *,
    sender: Sender,
    limiter: SlidingWindowLimiter,
    concurrency: int = 4,
    retry: RetryPolicy = RetryPolicy(),  # frozen, so one shared default is safe
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rng: random.Random | None = None,
    on_result: Callable[[RowResult], None] | None = None,
    stop: asyncio.Event | None = None,
    on_results: Callable[[Sequence[RowResult]], None] | None = None,
) -> PoolResult:
    """Send every patch, at most `concurrency` at a time, and say what happened to each.

    `on_result` is called once per row as soon as its result is known (rows left `not_sent`
    by a halt are reported at the end, in input order). `on_results` gets the same results
    in batches: the rows that finished during one turn of the event loop, in the order
    they finished, at the start of the next turn; so a caller can journal a batch with one
    write, then report its rows. Every result is delivered to both before
    `run_pool` returns or raises, cancellation included. The result is `aborted` when a
    halt left some row `not_sent`; a stop that comes after every row is done changes
    nothing. Cancelling the caller cancels every request and propagates.
    """
    if concurrency < 1:
        raise ConfigError(
            f"concurrency must be at least 1, not {concurrency}",
            fix="pass --concurrency 1 or more (4 is the default)",
        )
    rng = rng if rng is not None else random.Random()
    run = _Run(patches, sender, limiter, retry, sleep, rng, on_result, stop, on_results)
    try:
        return await run.execute(min(concurrency, len(patches)))
    finally:
        run.deliver()


@dataclass
class _Progress:
    """What a row has seen so far, for the NOT_SENT line of a row caught by a halt."""

    attempts: int = 0
    last: Response | None = None


class _Run:
    """State shared by the workers of one `run_pool` call."""

    def __init__(
        self,
        patches: Sequence[Patch],
        sender: Sender,
        limiter: SlidingWindowLimiter,
        retry: RetryPolicy,
        sleep: Callable[[float], Awaitable[None]],
        rng: random.Random,
        on_result: Callable[[RowResult], None] | None,
        stop: asyncio.Event | None,
        on_results: Callable[[Sequence[RowResult]], None] | None = None,
    ) -> None:
        self.patches = patches
        self.sender = sender
        self.limiter = limiter
        self.retry = retry
        self.sleep = sleep
        self.rng = rng
        self.on_result = on_result
        self.on_results = on_results
        self.stop = stop
        # Results not yet handed to `on_results`, and the callback that will hand them over.
        self.batch: list[RowResult] = []
        self.delivery: asyncio.Handle | None = None
        self.queue: deque[int] = deque(range(len(patches)))
        self.results: list[RowResult | None] = [None] * len(patches)
        self.progress = [_Progress() for _ in patches]
        self.abort_reason = ""
        #: The server's clock ahead of ours, from the last answer with a `Date`.
        self.clock_offset_s: float | None = None
        self.clock_said = False
        self.workers: list[asyncio.Task[None]] = []
        # Workers inside sender.patch right now: a halt lets exactly these finish.
        self.sending: set[asyncio.Task[None]] = set()

    @property
    def halted(self) -> bool:
        # Reading the event directly (not only via the watcher task) means no request can
        # start in the gap between `stop.set()` and the watcher running.
        return bool(self.abort_reason) or (self.stop is not None and self.stop.is_set())

    async def execute(self, workers: int) -> PoolResult:
        watcher = asyncio.create_task(self._watch_stop()) if self.stop is not None else None
        self.workers = [asyncio.create_task(self._work()) for _ in range(workers)]
        try:
            if self.workers:
                await asyncio.wait(self.workers)
        except asyncio.CancelledError:
            for task in self.workers:
                task.cancel()
            await asyncio.gather(*self.workers, return_exceptions=True)
            raise
        finally:
            if watcher is not None:
                watcher.cancel()
        for task in self.workers:
            # Workers handle every row-level failure; anything left is a bug, not a halt.
            error = None if task.cancelled() else task.exception()
            if error is not None:
                raise error
        results = self._final_results()
        # A stop that came after the last row finished lost nothing: the run is complete.
        unfinished = any(result.outcome is Outcome.NOT_SENT for result in results)
        reason = (self.abort_reason or INTERRUPTED) if self.halted and unfinished else ""
        return PoolResult(results, bool(reason), reason)

    async def _watch_stop(self) -> None:
        assert self.stop is not None
        await self.stop.wait()
        self._halt(INTERRUPTED)

    def _halt(self, reason: str) -> None:
        """Start no new request: cancel workers that wait (for a slot or a backoff)."""
        if not self.abort_reason:
            self.abort_reason = reason
        current = asyncio.current_task()
        for task in self.workers:
            if task is not current and task not in self.sending:
                task.cancel()

    async def _work(self) -> None:
        while self.queue and not self.halted:
            index = self.queue.popleft()
            result = await self._row(index)
            if result is not None:
                self._record(index, result)

    async def _row(self, index: int) -> RowResult | None:
        """Send one row until it has a final result; None if a halt caught it unfinished."""
        patch = self.patches[index]
        progress = self.progress[index]
        auth_refusals = 0
        while True:
            if self.halted:
                return None
            response = await self._attempt(patch)
            if response is None:  # halted while waiting for the slot
                return None
            progress.attempts += 1
            progress.last = response
            if response.clock_offset_s is not None:
                self._read_clock(response.clock_offset_s)
            outcome = _FINAL.get(response.kind)
            if outcome is not None:
                return _result(patch, outcome, response, progress.attempts)
            if response.kind is Kind.AUTH:
                auth_refusals += 1
                if auth_refusals >= 2:
                    logger.error("row %d: the API refused a fresh token too", patch.row)
                    self._halt(auth_abort_reason(response, self.clock_offset_s))
                    return None
                self.sender.refresh_token()
            elif response.kind is Kind.RATE_LIMITED:
                self.limiter.pause(response.retry_after)
            if progress.attempts >= self.retry.max_attempts:
                return _result(patch, Outcome.FAILED, response, progress.attempts)
            if response.kind is Kind.RETRY and not self.halted:
                await self.sleep(self.retry.delay(progress.attempts, self.rng))

    def _read_clock(self, offset_s: float) -> None:
        """Keep the latest offset; say once when this machine's clock is off."""
        self.clock_offset_s = offset_s
        problem = clock_problem(offset_s)
        if problem and not self.clock_said:
            self.clock_said = True
            logger.warning(
                "%s", problem, extra={"event": "clock_offset", "fields": {"offset_s": offset_s}}
            )

    async def _attempt(self, patch: Patch) -> Response | None:
        task = asyncio.current_task()
        assert task is not None
        async with self.limiter.slot():
            if self.halted:
                return None
            self.sending.add(task)
            try:
                return await self.sender.patch(patch.uid, patch.body)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # One bad row must not kill a worker (and with it a quarter of the run).
                logger.exception("row %d: unexpected error while sending", patch.row)
                message = f"{type(exc).__name__}: {exc}"[:MESSAGE_LIMIT]
                return Response(Kind.RETRY, None, "internal_error", message)
            finally:
                self.sending.discard(task)

    def _record(self, index: int, result: RowResult) -> None:
        self.results[index] = result
        if self.on_result is not None:
            try:
                self.on_result(result)
            except Exception:
                # A failing progress callback must not lose the rows still to come.
                logger.exception("on_result callback failed for row %d", result.row)
        if self.on_results is not None:
            if self.delivery is None:
                # call_soon runs in the next turn of the loop: every answer processed in this
                # turn joins the batch first.
                self.delivery = asyncio.get_running_loop().call_soon(self.deliver)
            self.batch.append(result)

    def deliver(self) -> None:
        """Hand the results gathered so far to `on_results` (a no-op when there are none)."""
        if self.delivery is not None:
            self.delivery.cancel()
            self.delivery = None
        batch, self.batch = self.batch, []
        if batch and self.on_results is not None:
            try:
                self.on_results(batch)
            except Exception:
                logger.exception("on_results callback failed for rows %s", _rows(batch))

    def _final_results(self) -> tuple[RowResult, ...]:
        final: list[RowResult] = []
        for index, patch in enumerate(self.patches):
            result = self.results[index]
            if result is None:
                progress = self.progress[index]
                last = progress.last
                result = RowResult(
                    row=patch.row,
                    uid=patch.uid,
                    outcome=Outcome.NOT_SENT,
                    http_status=last.status if last else None,
                    error=last.error if last else "",
                    message=last.message if last else "",
                    attempts=progress.attempts,
                    fields=patch.fields,
                )
                self._record(index, result)
            final.append(result)
        return tuple(final)


def _result(patch: Patch, outcome: Outcome, response: Response, attempts: int) -> RowResult:
    return RowResult(
        row=patch.row,
        uid=patch.uid,
        outcome=outcome,
        http_status=response.status,
        error=response.error,
        message=response.message,
        attempts=attempts,
        fields=patch.fields,
    )


def _rows(results: Sequence[RowResult]) -> str:
    rows = [str(result.row) for result in results]
    return ", ".join(rows) if len(rows) <= 10 else f"{', '.join(rows[:10])}, ... ({len(rows)})"
