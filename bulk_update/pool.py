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
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

from .backup import Backup, BackupError
from .brake import Brake
from .client import Kind, Response
from .compare import compare_patch
from .errors import ConfigError
from .limiter import SlidingWindowLimiter
from .models import Outcome, Patch, RowResult, joined
from .readmodel import CandidateRead, Reading, read_candidate
from .resolve import Replan, is_number, resolved_message, unplanned
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

    async def read(self, uid: str, *, real_id: bool = False) -> Response:
        """Read one candidate (GET); never raise for HTTP or network trouble."""
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
    compare: bool = False,
    send: bool = True,
    resolve_ids: bool = False,
    replan: Replan = unplanned,
    typed_uids: Mapping[str, int] | None = None,
    backup: Backup | None = None,
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
    the error (brake.py). Cancelling the caller cancels every request and propagates.

    `compare` (--compare) reads each row first (`_Run.read_first`) and leaves out of its
    patch what Comeet holds already: a row left with nothing is `unchanged`, sent nothing;
    each result's `before` says what was held. `send=False` with `compare` is the dry run's
    preview: reads only, no PATCH, rows to send are `would_update`. `resolve_ids` reads a
    row whose uid is the web page's number by that number (REAL_ID) and sends it to the uid
    the answer carries, as `replan` plans it again (resolve.py); a uid another row names
    already is not sent twice: the later row is `invalid`. `typed_uids` (uid -> sheet row)
    are the uids the sheet names itself, sent or not (default: those of `patches`).

    With a `backup` (--backup), each row's candidate is read right before its PATCH (the
    same read as compare's) and what the patch replaces is on disk before it leaves
    (backup.py); a row whose resume cannot be downloaded is `failed`, not sent, and a
    backup the disk refuses halts the run.
    """
    if concurrency < 1:
        raise ConfigError(
            f"concurrency must be at least 1, not {concurrency}",
            fix="pass --concurrency 1 or more (4 is the default)",
        )
    run = _Run(patches, sender, on_result, on_results, Brake(stop_after_rejected))
    run.compare, run.send, run.resolve_ids, run.replan = compare, send, resolve_ids, replan
    run.backup = backup if send else None
    if resolve_ids:  # the uids typed: a number resolving to one of them is a duplicate row
        typed = typed_uids if typed_uids is not None else {p.uid: p.row for p in patches}
        run.claimed = {uid: row for uid, row in typed.items() if not is_number(uid)}
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
    #: Read each row before its patch and send only what Comeet does not hold (--compare).
    compare = False
    #: False: a dry run's preview, reads only.
    send = True
    #: Send a row keyed by the web page's number to the uid it stands for (--resolve-ids).
    resolve_ids = False
    replan: Replan = staticmethod(unplanned)
    #: With resolve_ids: uid -> the row sent to it (typed, or resolved first).
    claimed: dict[str, int]
    #: Keep what each patch replaces before it leaves (--backup).
    backup: Backup | None = None

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
        said: tuple[str, ...] = ()  # what the row's message says besides the answer
        before = ""
        if self.compare or self.backup is not None or self.by_number(patch):
            reading = await self.read_first(patch, tries)
            if reading.candidate is None:
                unread = _unread(patch, reading)
                # Only a 404 says Comeet does not know the number (a merged one it knows).
                if (
                    unread is not None
                    and unread.outcome is Outcome.NOT_FOUND
                    and self.by_number(patch)
                ):
                    unread = unread.with_words(
                        f"the web page number {patch.uid} is unknown to Comeet"
                    )
                return unread
            if self.by_number(patch):
                resolved = self._resolve(patch, reading.candidate.uid, tries)
                if isinstance(resolved, RowResult):
                    return resolved
                patch, said = resolved
            if self.compare:
                compared = compare_patch(patch, reading.candidate)
                if compared.patch is None:
                    return RowResult(
                        patch.row,
                        patch.uid,
                        Outcome.UNCHANGED,
                        message=joined(*said, ALL_HELD),
                        attempts=tries.attempts,
                    )
                patch, before = compared.patch, compared.before
            if self.backup is not None:
                kept = await self._keep(patch, reading.candidate, tries, self.backup)
                if kept is not True:
                    return kept
        if not self.send:
            return RowResult(
                patch.row,
                patch.uid,
                Outcome.WOULD_UPDATE,
                message=joined(*said),
                attempts=tries.attempts,
                fields=patch.fields,
                before=before,
            )
        sent = patch
        response = await self.retrier.call(
            lambda: self.sender.patch(sent.uid, sent.body), tries, f"row {patch.row}"
        )
        if response is None:
            return None
        outcome = _FINAL.get(response.kind, Outcome.FAILED)
        if self.backup is not None:
            self.backup.sent(patch, outcome)
        result = _result(patch, outcome, response, tries.attempts)
        if said or before:
            # The answer stays apart from the words before it: the brake judges the answer.
            result = replace(result.with_words(*said), before=before)
        return result

    def by_number(self, patch: Patch) -> bool:
        """Whether the row is keyed by the web page's number, to be resolved."""
        return self.resolve_ids and is_number(patch.uid)

    async def read_first(self, patch: Patch, tries: Tries) -> Reading:
        """Read the row's candidate before its patch: one read, through the run's retrier
        (the same limiter, token, retries and budget), counted among the row's attempts.
        What --compare compares with and --resolve-ids resolves by; one read serves both."""
        return await read_candidate(
            self.retrier, self.sender, patch.uid, real_id=self.by_number(patch), tries=tries
        )

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

    def _resolve(
        self, patch: Patch, uid: str, tries: Tries
    ) -> tuple[Patch, tuple[str, ...]] | RowResult:
        """The row sent to `uid`, the one its number stands for, and what to say of it;
        or its result when it is not to be sent (a duplicate, or planned away)."""
        number = patch.uid
        said = resolved_message(number)
        if not uid or is_number(uid):
            message = f"the answer to the web page number {number} carried no uid"
            return RowResult(patch.row, number, Outcome.FAILED, error="no_uid", message=message)
        other = self.claimed.setdefault(uid, patch.row)
        if other != patch.row:
            message = (
                f"the web page number {number} is the candidate {uid}, which row {other} "
                "names too; keep one row per candidate (this row was not sent)"
            )
            return RowResult(
                patch.row, uid, Outcome.INVALID, message=message, attempts=tries.attempts
            )
        replanned, warnings = self.replan(patch, uid)
        if replanned is None:
            return RowResult(
                patch.row,
                uid,
                Outcome.UNCHANGED,
                message=joined(said, *warnings),
                attempts=tries.attempts,
            )
        return replanned, (said, *warnings)

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


#: The message of a row --compare found already in Comeet's state.
ALL_HELD = "Comeet already holds every value of this row: nothing sent"


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
