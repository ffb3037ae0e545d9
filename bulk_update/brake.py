"""The brake: stop a run whose rows keep being refused for the same reason (contract 11).

A wrong custom field name, or a uid column that holds something else, makes every row fail
the same way; at 100 requests a minute, 5,000 such rows burn 50 minutes of the budget. When
`[limits] stop_after_rejected` rows IN A ROW (as their answers arrive) are `rejected` or
`not_found` with the same 4xx error, the run stops like a graceful stop, and the reason
names the error and the API's message.

"The same error" is the same outcome, `error` code and field. The field is the one among
those the row sent that the API's message names (the longest name wins: `mobile_phone`
before `phone`; a custom field by its name); when the message names none of them, the
messages must be equal instead, so that errors quoting each row's own value (`'xx' is not
a country`) still count as one when they name the same field, and different refusals that
share a code (`required_field`) do not. Any other answer breaks the run of rows. The
message is always the API's own (`RowResult.api_message`), never the words the tool puts
before it: with --resolve-ids those name each row's own number.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from .errors import ConfigError
from .models import Outcome, RowResult, RunSummary

__all__ = ["Brake", "brake_reason", "brake_words", "refusal_of"]

_BRAKED = frozenset({Outcome.REJECTED, Outcome.NOT_FOUND})


@dataclass(frozen=True, slots=True)
class Refusal:
    """What makes two refusals "the same": outcome, error code, and field (or message)."""

    outcome: Outcome
    error: str
    field: str
    #: The message, when it names no field the row sent (then it must match too).
    message: str


def refusal_of(result: RowResult) -> Refusal | None:
    """The refusal a row's result counts as, or None when it is not a 4xx refusal. Pure."""
    status = result.http_status
    if result.outcome not in _BRAKED or status is None or not 400 <= status < 500:
        return None
    # The API's own message: not the words the tool puts before it, which name each row's
    # own number or resolved uid and would make no two refusals alike (--resolve-ids).
    said = result.api_message
    field = _named_field(said, result.fields)
    return Refusal(result.outcome, result.error, field, "" if field else said)


def _named_field(message: str, fields: Iterable[str]) -> str:
    """The sent field whose path or last name the message names as a word; "" for none."""
    best, best_length = "", 0
    for path in fields:
        for name in (path, path.split(".", 1)[1] if "." in path else ""):
            if len(name) > best_length and _names(message, name):
                best, best_length = path, len(name)
    return best


def _names(message: str, name: str) -> bool:
    # Not inside a longer identifier: `phone` is not named by `mobile_phone`.
    return bool(re.search(rf"(?<![\w.]){re.escape(name)}(?![\w])", message))


def brake_reason(count: int, result: RowResult, refusal: Refusal) -> str:
    """The abort reason of a run the brake stopped at `result`, the last of `count`. Pure."""
    what = "not found" if refusal.outcome is Outcome.NOT_FOUND else "rejected"
    code = f"{result.error}: " if result.error else ""
    said = result.api_message or f"HTTP {result.http_status}"
    field = f" (field {refusal.field})" if refusal.field else ""
    return (
        f"stopped after {count} rows in a row were {what} with the same error: "
        f'{code}"{said}"{field}; the rest were not sent. Fix the sheet (or the column '
        "mapping) and run it again: rows already applied are not sent twice. "
        "[limits] stop_after_rejected = 0 sends every row whatever the answers"
    )


def brake_words(summary: RunSummary, limit: int, *, resumes: bool) -> str:
    """The brake's stop in a recruiter's words; "" when the brake did not stop this run. Pure.

    Derived from the summary's abort reason: the row whose refusal, through `brake_reason`,
    gives exactly that reason is the one that tripped the brake (no second copy of the rule).
    `resumes`: the run kept a journal, so rows already sent are not sent twice.
    """
    if not summary.aborted or not limit:
        return ""
    for result in summary.results:
        refusal = refusal_of(result)
        if refusal is None or brake_reason(limit, result, refusal) != summary.abort_reason:
            continue
        what = "not found in Comeet" if refusal.outcome is Outcome.NOT_FOUND else "refused"
        said = (result.api_message or f"Comeet answered HTTP {result.http_status}").rstrip(".")
        if refusal.field:
            fix = f"Fix the {refusal.field.split('.')[-1]!r} column and upload the sheet again"
        elif refusal.outcome is Outcome.NOT_FOUND:  # the uids are not Comeet's
            fix = "Check that the uid column holds Comeet's candidate uids, then upload again"
        else:
            fix = "Fix the sheet and upload it again"
        again = "; rows already sent will not be sent twice" if resumes else ""
        return (
            f"Stopped after {limit} rows in a row were {what} for the same reason: {said}. "
            f"{fix}{again}."
        )
    return ""


class Brake:
    """Counts refusals in a row, as results arrive; `see` says when to stop.

    `limit` 0 never stops. Not thread-safe: one pool's workers share one event loop.
    """

    def __init__(self, limit: int) -> None:
        if limit < 0:
            raise ConfigError(
                f"stop_after_rejected must be 0 or more, not {limit}",
                fix="set [limits] stop_after_rejected to 0 (never stop) or more (default 20)",
            )
        self.limit = limit
        self._last: Refusal | None = None
        self._count = 0

    def see(self, result: RowResult) -> str:
        """Count one row's final result; the abort reason when it trips the brake, else ""."""
        if not self.limit:
            return ""
        refusal = refusal_of(result)
        if refusal is None:
            self._last, self._count = None, 0
            return ""
        self._count = self._count + 1 if refusal == self._last else 1
        self._last = refusal
        if self._count == self.limit:
            return brake_reason(self._count, result, refusal)
        return ""
