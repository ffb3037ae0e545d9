"""One `PATCH` or `GET /candidates/{uid}` on an injected aiohttp session, and what the
answer means.

`classify` is pure (status, headers, body -> `Response`) so the status table of contract
section 7 is tested without HTTP. It also reads every answer's `Date`: a clock off by
minutes makes every token look expired to Comeet, and only the answers can tell.
`ComeetClient.patch` and `.read` never raise for network trouble: a timeout or a dropped
connection is a `Response` of kind RETRY like a 503, and the retrier (retrying.py) decides
what to do with it.
"""

from __future__ import annotations

import datetime
import email.utils
import functools
import http
import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any
from urllib.parse import quote

import aiohttp
import yarl

from .auth import TokenMinter

__all__ = [
    "CLOCK_OFFSET_LIMIT_S",
    "MESSAGE_LIMIT",
    "ComeetClient",
    "Kind",
    "Response",
    "classify",
    "clock_offset",
    "clock_problem",
]

#: Raw bodies (anything but the API's JSON error shape) are cut to this many characters.
MESSAGE_LIMIT = 500
#: A clock off by more than this (seconds) is said. `Date` has whole seconds and the answer
#: takes a while to arrive, so a few seconds mean nothing; a minute is a clock set wrong.
CLOCK_OFFSET_LIMIT_S = 60.0


class Kind(Enum):
    """What the pool should do with an answer."""

    OK = "ok"  # 2xx: the row is updated
    NOT_FOUND = "not_found"  # 404: no such candidate
    REJECTED = "rejected"  # the API refused this row; sending again would not help
    AUTH = "auth"  # 401 other than duplicate_candidate: mint a new token, retry once
    RATE_LIMITED = "rate_limited"  # 429: pause every worker, then retry
    RETRY = "retry"  # 5xx, 3xx, 408, timeouts, connection errors: back off and retry
    GIVE_UP = "give_up"  # never from the API: sending again could do harm, the row fails


@dataclass(frozen=True, slots=True)
class Response:
    """The classified answer to one attempt.

    `status` is None when no HTTP answer came back (timeout, connection error). `error`
    and `message` come from the API's JSON error body, or `message` holds the raw body.
    `unsent` is True when the request surely never reached the server (the connection could
    not be made), so sending it again cannot apply it twice. `clock_offset_s` is how far
    the server's clock was ahead of ours (negative: behind), from the answer's `Date`; None
    without one. It is a reading, not part of what the answer means: equality ignores it.
    `body` is a read's candidate object.
    """

    kind: Kind
    status: int | None
    error: str = ""
    message: str = ""
    retry_after: float | None = None
    unsent: bool = False
    clock_offset_s: float | None = field(default=None, compare=False)
    #: A read's answer: the candidate object (readmodel.py). None for patches, whose
    #: answers are not needed. Like the clock, not part of what the answer means.
    body: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)

    @property
    def unclear(self) -> bool:
        """Whether the attempt may have been applied though no answer said so.

        A timeout, a connection dropped after the request went out, or a server error: the
        server may have done the work before failing to say so. A 429, 408, 3xx or refused
        connection did not apply anything.
        """
        if self.kind is not Kind.RETRY or self.unsent:
            return False
        return self.status is None or self.status >= 500


def classify(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float | None = None,
) -> Response:
    """Map an HTTP answer to a `Response` (contract section 7). Pure: no I/O.

    `now` (Unix seconds, default the current time) turns an HTTP-date `Retry-After` into
    seconds from now, and the `Date` header into `clock_offset_s`.
    """
    current = time.time() if now is None else now
    offset = clock_offset(_header(headers, "Date"), current)
    if 200 <= status < 300:
        return Response(Kind.OK, status, clock_offset_s=offset)
    error, message = _parse_body(body)
    if not error and not message:
        message = _describe_empty(status, headers)
    if status == 404:
        kind = Kind.NOT_FOUND
    elif status == 401:
        # A duplicate_candidate 401 is about the record (merged away), not the token.
        kind = Kind.REJECTED if error == "duplicate_candidate" else Kind.AUTH
    elif status == 429:
        retry_after = _parse_retry_after(_header(headers, "Retry-After"), current)
        return Response(
            Kind.RATE_LIMITED, status, error, message, retry_after, clock_offset_s=offset
        )
    elif status == 408 or not 400 <= status < 500:
        # 408, 5xx, a 3xx gateway bounce and anything unexpected may clear on a retry.
        kind = Kind.RETRY
    else:
        kind = Kind.REJECTED
    return Response(kind, status, error, message, clock_offset_s=offset)


def clock_offset(date: str | None, now: float) -> float | None:
    """Seconds the clock that wrote the HTTP date `date` is ahead of `now`. Pure.

    Negative when it is behind; None when there is no date or it is not an HTTP date.
    """
    when = _http_date(date) if date else None
    return None if when is None else when - now


def clock_problem(offset_s: float | None) -> str:
    """What a server clock `offset_s` seconds ahead of ours does to tokens; "" if nothing.

    Behind Comeet's clock, a token's `exp` (our clock plus its lifetime) is already past
    when it arrives; ahead, tokens come from Comeet's future.
    """
    if offset_s is None or abs(offset_s) <= CLOCK_OFFSET_LIMIT_S:
        return ""
    if offset_s > 0:
        side, effect = "behind", "expired"
    else:
        side, effect = "ahead of", "not yet valid"
    return (
        f"this machine's clock is {_duration(abs(offset_s))} {side} Comeet's: tokens look "
        f"{effect}; set the clock right (NTP)"
    )


def _duration(seconds: float) -> str:
    """`15 min`, `3 h`, `2 days`: as precise as an HTTP date and a clock set wrong deserve."""
    minutes = round(seconds / 60)
    if minutes < 120:
        return f"{max(minutes, 1)} min"
    hours = round(seconds / 3600)
    return f"{hours} h" if hours < 48 else f"{round(seconds / 86400)} days"


@functools.lru_cache(maxsize=8)
def _http_date(value: str) -> float | None:
    """Unix seconds of an HTTP date; None if it is not one.

    Cached: a server's `Date` changes once a second, and every answer carries one.
    """
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000" parses zone-less; HTTP dates are GMT anyway
        when = when.replace(tzinfo=datetime.UTC)
    return when.timestamp()


def _parse_body(body: bytes) -> tuple[str, str]:
    """(error, message) from the API's `{"status", "error", "message"}`, else ("", raw)."""
    try:
        data = json.loads(body)
    except ValueError:  # not JSON, or not UTF-8 at all
        data = None
    if isinstance(data, dict) and "error" in data and "message" in data:
        return _text(data["error"]), _cut(_text(data["message"]))
    return "", _cut(_raw(body))


def _raw(body: bytes) -> str:
    return body.decode("utf-8", errors="replace").strip()


def _text(value: object) -> str:
    return "" if value is None else value if isinstance(value, str) else json.dumps(value)


def _cut(text: str) -> str:
    return text[:MESSAGE_LIMIT]


def _describe_empty(status: int, headers: Mapping[str, str]) -> str:
    """A message for an answer without a body, so the report is never blank."""
    try:
        text = f"HTTP {status} {http.HTTPStatus(status).phrase}"
    except ValueError:
        text = f"HTTP {status}"
    if 300 <= status < 400:
        location = _header(headers, "Location")
        text += f", redirect to {location} not followed" if location else ", not followed"
    return _cut(text)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive lookup: aiohttp's headers are, a plain dict in a test is not."""
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    return next((v for k, v in headers.items() if k.lower() == lowered), None)


def _parse_retry_after(value: str | None, now: float | None) -> float | None:
    """Seconds to wait from `Retry-After`: delta seconds or an HTTP date; None if invalid."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if seconds >= 0 and seconds != float("inf") else None
    when = _http_date(value)
    if when is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, when - current)


class ComeetClient:
    """Send one candidate update or read at a time over an injected `aiohttp.ClientSession`."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        tokens: TokenMinter,
        *,
        timeout_s: float = 30,
        user_agent: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._session = session
        self._clock = clock  # this machine's clock, compared with the answers' `Date`
        self._base_url = base_url.rstrip("/")
        self._tokens = tokens
        self._timeout_s = timeout_s
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._headers = {
            "User-Agent": user_agent,
            "Content-Type": "application/json",
            "Accept": "application/json",
        }

    def url_for(self, uid: str) -> yarl.URL:
        """The candidate's URL, the uid percent-encoded as one path segment."""
        # encoded=True: without it yarl would decode %2F back into a path separator.
        # Most uids need no quoting at all: one regex is cheaper than quote().
        segment = uid if _UNRESERVED.fullmatch(uid) else quote(uid, safe="")
        return yarl.URL(f"{self._base_url}/candidates/{segment}", encoded=True)

    async def patch(self, uid: str, body: Mapping[str, Any]) -> Response:
        """PATCH the candidate `uid` with `body`; network failures come back as RETRY."""
        response, _ = await self._exchange("PATCH", self.url_for(uid), payload=dict(body))
        return response

    async def read(self, uid: str, *, real_id: bool = False) -> Response:
        """GET the candidate `uid` (contract section 11); network failures come back as RETRY.

        With `real_id`, `uid` is the number in the candidate's Comeet web page address,
        sent with the header `IDENTIFIER_TYPE: REAL_ID`; the answer carries the real uid.
        A 2xx answer's candidate object is the response's `body` (readmodel.py maps it to
        the write fields); a 2xx without a JSON object is RETRY (`invalid_answer`): a read
        can be sent again safely, and an answer we cannot read is no answer.
        """
        extra = {"IDENTIFIER_TYPE": "REAL_ID"} if real_id else None
        response, raw = await self._exchange("GET", self.url_for(uid), extra_headers=extra)
        if response.kind is not Kind.OK:
            return response
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            message = _cut(f"the answer to a read is not a candidate object: {_raw(raw)}")
            return replace(response, kind=Kind.RETRY, error="invalid_answer", message=message)
        return replace(response, body=data)

    async def _exchange(
        self,
        method: str,
        url: yarl.URL,
        *,
        payload: dict[str, Any] | None = None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> tuple[Response, bytes]:
        """Send one request; its classified answer and raw body (b"" without an answer)."""
        # Fetched right before sending so a long wait in the limiter cannot stale it.
        token = self._tokens.token()
        headers = {"Authorization": f"Bearer {token}", **self._headers, **(extra_headers or {})}
        try:
            # session.patch / session.get, not session.request(method): fakes of the session
            # in tests (and elsewhere) provide the verbs.
            send = self._session.patch if method == "PATCH" else self._session.get
            async with send(
                url,
                json=payload,
                headers=headers,
                timeout=self._timeout,
                allow_redirects=False,
            ) as answer:
                raw = await answer.read()
                response = classify(answer.status, answer.headers, raw, now=self._clock())
        except TimeoutError:  # asyncio.TimeoutError is this builtin since 3.11
            message = f"no answer within {self._timeout_s:g} seconds"
            return Response(Kind.RETRY, None, "timeout", message), b""
        except aiohttp.ClientConnectorCertificateError as exc:  # no CA here vouches for it
            return Response(Kind.RETRY, None, "tls_untrusted", _untrusted(exc), unsent=True), b""
        except aiohttp.ClientConnectorError as exc:  # no connection: nothing was sent
            message = _scrub(exc, token)
            return Response(Kind.RETRY, None, "connection_error", message, unsent=True), b""
        except (aiohttp.ClientError, OSError) as exc:
            return Response(Kind.RETRY, None, "connection_error", _scrub(exc, token)), b""
        if not (response.error or response.message):
            return response, raw  # nothing to redact (every 2xx): spare the copy
        # A server or proxy that echoes the request into its error body must not carry the
        # token (and with it the API key) into the report and the logs.
        redacted = replace(
            response,
            error=_redact(response.error, token),
            message=_redact(response.message, token),
        )
        return redacted, raw

    def refresh_token(self) -> None:
        """Mint a new token for the next request (after a 401)."""
        self._tokens.refresh()


#: Characters quote() leaves as they are (RFC 3986 unreserved); one or more.
_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]+")
_SECRETISH = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_.-]*|Bearer\s+\S+", re.IGNORECASE)


def _redact(text: str, token: str) -> str:
    """`text` with the token, any JWT and any bearer credential replaced by a marker."""
    if not text:
        return text
    return _SECRETISH.sub("<redacted>", text.replace(token, "<redacted>"))


def _untrusted(exc: aiohttp.ClientConnectorCertificateError) -> str:
    """What to do when the server's certificate is not trusted: on a company network that
    inspects https, the company's CA is missing."""
    reason = getattr(exc.certificate_error, "verify_message", "") or "certificate verify failed"
    return (
        f"the TLS certificate of {exc.host} is not trusted ({reason}); on a network that "
        "inspects https, set [api] ca_bundle (or SSL_CERT_FILE) to your company's CA file"
    )


def _scrub(exc: BaseException, token: str) -> str:
    """A short description of a network error that cannot carry the token."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    # aiohttp's messages name the host, not headers; this is belt and braces.
    text = text.replace(token, "<token>")
    if "Bearer" in text or "Authorization" in text:
        text = type(exc).__name__
    return _cut(text)
