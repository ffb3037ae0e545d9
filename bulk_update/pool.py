"""The async worker pool: queue, workers, retries with backoff, pause on 429, graceful stop.

`concurrency` workers take patches off a shared queue. Every request goes through the run's
`Retrier` (retrying.py): every attempt, retries included, takes a slot of the shared
`SlidingWindowLimiter`, so the rate limit holds for the whole run, reads included. A stop
(Ctrl-C or SIGTERM, signalled through an `asyncio.Event`), a second refused token or the
brake (brake.py: too many rows in a row refused alike) halts the run: no new request
starts, requests already in flight finish and are recorded, and every row without a final
answer is `not_sent`.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from .backup import Backup, BackupError
from .brake import Brake
from .client import Kind, Response
from .errors import ConfigError
from .limiter import SlidingWindowLimiter
from .models import Outcome, Patch, RowResult
from .readmodel import CandidateRead, Reader, Reading, read_candidate
from .retrying import INTERRUPTED, Retrier, RetryPolicy, Tries, auth_abort_reason

__all__ = [
    "INTERRUPTED",
    "PoolResult",
    "RetryPolicy",
    "Sender",
    "auth_abort_reason",
    "run_pool",
]

logger = logging.getLogger(__name__)

_FINAL: Mapping[Kind, Outcome] = {
    Kind.OK: Outcome.UPDATED,
    Kind.NOT_FOUND: Outcome.NOT_FOUND,
    Kind.REJECTED: Outcome.REJECTED,
    Kind.GIVE_UP: Outcome.FAILED,
}


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
    stop_after_rejected: int = 0,
    backup: Backup | None = None,
    reader: Reader | None = None,
) -> PoolResult:
    """Send every patch, at most `concurrency` at a time, and say what happened to each.

    `on_result` is called once per row as soon as its result is known (rows left `not_sent`
    by a halt are reported at the end, in input order). `on_results` gets the same results
    in batches: the rows that finished during one turn of the event loop, in the order
    they finished, at the start of the next turn; so a caller can journal a batch with one
    write, then report its rows. Every result is delivered to both before
    `run_pool` returns or raises, cancellation included. The result is `aborted` when a
    halt left some row `not_sent`; a stop that comes after every row is done changes
    nothing. `stop_after_rejected` (0: never) is the brake: that many rows in a row
    answered with the same 4xx error halt the run like a stop, the abort reason naming
    the error (brake.py). With a `backup` (and the `reader` to read with), each row's
    candidate is read right before its PATCH and what the patch replaces is on disk before
    it leaves (backup.py); a row that cannot be read or backed up is not patched: its read's
    answer or the backup's trouble is its result. Cancelling the caller cancels every
    request and propagates.
    """
    if concurrency < 1:
        raise ConfigError(
            f"concurrency must be at least 1, not {concurrency}",
            fix="pass --concurrency 1 or more (4 is the default)",
        )
    if backup is not None and reader is None:
        raise ValueError("a backup needs a reader to read each candidate with")
    run = _Run(patches, sender, on_result, on_results, Brake(stop_after_rejected))
    run.backup, run.reader = backup, reader
    run.retrier = Retrier(
        sender, limiter, retry, sleep=sleep, rng=rng, stop=stop, on_halt=run.cancel_waiting
    )
    try:
        return await run.execute(min(concurrency, len(patches)))
    finally:
        run.deliver()


class _Run:
    """State shared by the workers of one `run_pool` call."""

    retrier: Retrier
    backup: Backup | None = None
    reader: Reader | None = None

    def __init__(
        self,
        patches: Sequence[Patch],
        sender: Sender,
        on_result: Callable[[RowResult], None] | None,
        on_results: Callable[[Sequence[RowResult]], None] | None,
        brake: Brake,
    ) -> None:
        self.patches = patches
        self.sender = sender
        self.on_result = on_result
        self.on_results = on_results
        self.brake = brake
        # Results not yet handed to `on_results`, and the callback that will hand them over.
        self.batch: list[RowResult] = []
        self.delivery: asyncio.Handle | None = None
        self.queue: deque[int] = deque(range(len(patches)))
        self.results: list[RowResult | None] = [None] * len(patches)
        self.tries = [Tries() for _ in patches]
        self.workers: list[asyncio.Task[None]] = []

    async def execute(self, workers: int) -> PoolResult:
        stop = self.retrier.stop
        watcher = asyncio.create_task(self._watch_stop(stop)) if stop is not None else None
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
        halted = self.retrier.halted
        reason = (self.retrier.abort_reason or INTERRUPTED) if halted and unfinished else ""
        return PoolResult(results, bool(reason), reason)

    async def _watch_stop(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self.retrier.halt(INTERRUPTED)

    def cancel_waiting(self) -> None:
        """After a halt: cancel the workers that wait (for a slot or a backoff)."""
        current = asyncio.current_task()
        for task in self.workers:
            if task is not current and task not in self.retrier.sending:
                task.cancel()

    async def _work(self) -> None:
        while self.queue and not self.retrier.halted:
            index = self.queue.popleft()
            result = await self._row(index)
            if result is not None:
                self._record(index, result)
                reason = self.brake.see(result)
                if reason:
                    logger.error("%s", reason, extra={"event": "brake"})
                    self.retrier.halt(reason)

    async def _row(self, index: int) -> RowResult | None:
        """Send one row until it has a final result; None if a halt caught it unfinished."""
        patch = self.patches[index]
        tries = self.tries[index]
        if self.backup is not None:
            reading = await self.read_first(patch, tries)
            if reading.candidate is None:
                return _unread(patch, reading)
            kept = await self._keep(patch, reading.candidate, tries, self.backup)
            if kept is not True:
                return kept
        response = await self.retrier.call(
            lambda: self.sender.patch(patch.uid, patch.body), tries, f"row {patch.row}"
        )
        if response is None:
            return None
        outcome = _FINAL.get(response.kind, Outcome.FAILED)
        if self.backup is not None:
            self.backup.sent(patch, outcome)
        return _result(patch, outcome, response, tries.attempts)

    async def read_first(self, patch: Patch, tries: Tries) -> Reading:
        """Read the row's candidate before its patch: one read, through the run's retrier
        (the same limiter, token, retries and budget), counted among the row's attempts."""
        assert self.reader is not None
        return await read_candidate(self.retrier, self.reader, patch.uid, tries=tries)

    async def _keep(
        self, patch: Patch, candidate: CandidateRead, tries: Tries, backup: Backup
    ) -> RowResult | Literal[True] | None:
        """Put on disk what the patch replaces (--backup): True to send the row; else its
        result (not sent), None when the disk refused and the run halts."""
        try:
            await backup.keep(patch, candidate)
        except BackupError as exc:
            failed = Response(Kind.GIVE_UP, None, "backup_failed", str(exc))
            return _result(patch, Outcome.FAILED, failed, tries.attempts)
        except OSError as exc:
            # A full disk: no row can be backed up, so none may be sent.
            self.retrier.halt(f"the backup could not be written ({exc}): the run stopped")
            return None
        return True

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
                tries = self.tries[index]
                last = tries.last
                result = RowResult(
                    row=patch.row,
                    uid=patch.uid,
                    outcome=Outcome.NOT_SENT,
                    http_status=last.status if last else None,
                    error=last.error if last else "",
                    message=last.message if last else "",
                    attempts=tries.attempts,
                    fields=patch.fields,
                )
                self._record(index, result)
            final.append(result)
        return tuple(final)


def _unread(patch: Patch, reading: Reading) -> RowResult | None:
    """The result of a row whose read found no candidate; None if a halt caught it."""
    response = reading.response
    if response is None:
        return None
    outcome = _FINAL.get(response.kind, Outcome.FAILED)
    if outcome is Outcome.UPDATED:  # a 2xx that carried no candidate object
        outcome = Outcome.FAILED
    return _result(patch, outcome, response, reading.attempts)


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
