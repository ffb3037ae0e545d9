"""The sandbox as an aiohttp application: token checks, its rate window, injected faults.

Faults are decided before anything is applied, so a retried request is never applied twice.
"""

from __future__ import annotations

import asyncio
import bisect
import email.utils
import json
import random
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import jwt
from aiohttp import web

from ..models import Rate
from .read import FILES_PATH, RealIds, ResumeLinks, read_view
from .rules import Refused, apply_body, validate_body
from .state import DEMO_API_KEY, DEMO_SECRET, Faults, ReceivedRequest, SandboxState

__all__ = ["make_app"]

# Room for several 6 MB files in base64; aiohttp's default (1 MB) would answer 413 first.
_MAX_BODY_BYTES = 64 * 1024 * 1024


def _error(status: int, error: str, message: str) -> web.Response:
    return web.json_response({"status": status, "error": error, "message": message}, status=status)


class _Window:
    """Arrival times of the last `rate.period` seconds; every request counts, refused or not."""

    def __init__(self, rate: Rate | None) -> None:
        self.rate = rate
        self.arrivals: deque[float] = deque()

    def arrive(self, now: float) -> bool:
        """Count an arrival; True when it makes more than `rate.limit` in the window."""
        if self.rate is None:
            return False
        self.arrivals.append(now)
        while self.arrivals and self.arrivals[0] <= now - self.rate.period:
            self.arrivals.popleft()
        return len(self.arrivals) > self.rate.limit


def _token_problem(header: str, api_key: str, secret: str, now: float) -> str | None:
    """Why the Authorization header is refused, or None. Never echoes the token.

    `now` is the server's time (Unix seconds): `exp` is checked against it, not PyJWT's clock,
    so that a sandbox with its clock ahead refuses tokens as Comeet would.
    """
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return "missing bearer token: send 'Authorization: Bearer <JWT>'"
    try:
        claims = jwt.decode(
            token.strip(),
            secret,
            algorithms=["HS256"],
            options={"require": ["exp", "iss"], "verify_exp": False},
        )
    except jwt.InvalidSignatureError:
        return "bad token signature: the token was not signed with this account's secret"
    except jwt.MissingRequiredClaimError as exc:
        return f"the token has no '{exc.claim}' claim"
    except jwt.InvalidTokenError:
        return "the token is not a valid HS256 JWT"
    exp = claims["exp"]
    if not isinstance(exp, int) or isinstance(exp, bool):
        return "the token is not a valid HS256 JWT"
    if exp <= now:
        return "the token has expired (exp is in the past); sign a new one"
    if claims.get("iss") != api_key:
        return "wrong token issuer: iss must be the account's API key"
    return None


class _Handler:
    """The request handlers over one state; faults drawn from one seeded generator."""

    def __init__(
        self,
        state: SandboxState,
        api_key: str,
        secret: str,
        rate: Rate | None,
        faults: Faults,
        clock: Callable[[], float],
    ) -> None:
        self.state, self.api_key, self.secret = state, api_key, secret
        self.faults, self.clock = faults, clock
        self.window = _Window(rate)
        self.rng = random.Random(faults.seed)
        self.real_ids = RealIds()
        self.links = ResumeLinks(clock)

    def _record(self, item: ReceivedRequest) -> None:
        with self.state.lock:
            # A slow answer is recorded late: insert by arrival time to keep the order.
            bisect.insort(self.state.requests, item, key=lambda r: r.time)

    async def candidate(self, request: web.Request) -> web.StreamResponse:
        now = self.clock()
        over = self.window.arrive(now)
        uid, method = request.match_info["uid"], request.method
        with self.state.lock:
            self.state.arrived += 1
        wall = time.time() + self.faults.clock_ahead_s  # the server's idea of the time
        problem = _token_problem(
            request.headers.get("Authorization", ""), self.api_key, self.secret, wall
        )
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")

        def answer(status: int, response: web.StreamResponse) -> web.StreamResponse:
            self._record(ReceivedRequest(now, uid, body, status, problem is None, method))
            # aiohttp would stamp its own Date; this one follows the sandbox's clock.
            response.headers["Date"] = email.utils.formatdate(wall, usegmt=True)
            return response

        if over:
            with self.state.lock:
                self.state.over_limit += 1
            rate = self.window.rate
            assert rate is not None
            message = f"Over the limit of {rate.limit} requests per {rate.period:g} seconds"
            return answer(429, _error(429, "too_many_requests", message))
        if problem is not None:
            return answer(401, _error(401, "unauthorized", problem))
        # Every fault is drawn for every request, so the sequence depends on the seed only.
        drop, error, throttle, slow = (self.rng.random() for _ in range(4))
        status_5xx = self.rng.choice((500, 502, 503))
        faults = self.faults
        if drop < faults.drop:
            if request.transport is not None:
                request.transport.close()  # no answer at all: the client sees a disconnect
            return answer(0, web.Response())
        if error < faults.error_5xx:
            return answer(status_5xx, _error(status_5xx, "server_error", "Injected server error"))
        if throttle < faults.rate_429:
            response = _error(429, "too_many_requests", "Too many requests")
            if faults.retry_after is not None:
                after = faults.retry_after
                response.headers["Retry-After"] = str(int(after) if after == int(after) else after)
            return answer(429, response)
        if slow < faults.slow:
            await asyncio.sleep(faults.slow_s)
        if method == "GET":
            by_page = request.headers.get("IDENTIFIER_TYPE", "").strip().upper() == "REAL_ID"
            return answer(*self._read(uid, by_page, str(request.url.origin()), now))
        patched = self._patch(uid, body)
        if faults.hold_patch_s:
            await asyncio.sleep(faults.hold_patch_s)
        return answer(*patched)

    def _candidate(self, uid: str | None) -> dict[str, Any] | tuple[int, web.Response]:
        """The candidate, or what the uid gets whatever the method: merged, failing, unknown.

        The caller holds the lock.
        """
        state = self.state
        if uid in state.merged:
            message = "The candidate was merged into another candidate as a duplicate"
            return 401, _error(401, "duplicate_candidate", message)
        if uid in state.always_failing:
            return 503, _error(503, "service_unavailable", "Service temporarily unavailable")
        if uid is None or uid not in state.candidates:
            return 404, _error(404, "candidate_not_found", "Candidate not found")
        return state.candidates[uid]

    def _read(self, uid: str, by_page: bool, origin: str, now: float) -> tuple[int, web.Response]:
        """A GET: the read model; `by_page` (IDENTIFIER_TYPE: REAL_ID) takes a web-page number."""
        with self.state.lock:
            found = self.real_ids.uid(self.state.candidates, uid) if by_page else uid
            candidate = self._candidate(found)
            if isinstance(candidate, tuple):
                return candidate
            resume = candidate.get("resume")
            url = None  # a deleted candidate answers its uid alone: no link is issued
            if isinstance(resume, dict) and candidate.get("deleted") is not True:
                url = self.links.issue(resume, origin, now)
            return 200, web.json_response(read_view(candidate, url))

    def _patch(self, uid: str, body: Any) -> tuple[int, web.Response]:
        state = self.state
        with state.lock:
            candidate = self._candidate(uid)
            if isinstance(candidate, tuple):
                return candidate
            try:
                validate_body(body, state.custom_fields)
            except Refused as refused:
                return refused.status, _error(refused.status, refused.error, refused.message)
            return 200, web.json_response(apply_body(state, uid, body))

    async def stats(self, request: web.Request) -> web.Response:
        with self.state.lock:
            counts = {
                "requests": len(self.state.requests),
                "applied": len(self.state.applied),
                "over_limit": self.state.over_limit,
            }
        return web.json_response(counts)


def make_app(
    state: SandboxState,
    *,
    api_key: str = DEMO_API_KEY,
    secret: str = DEMO_SECRET,
    rate: Rate | None = None,
    faults: Faults | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> web.Application:
    """The sandbox as an aiohttp application over `state`.

    `rate` enforces the sandbox's own sliding window (None: no limit); `faults` injects
    failures; `clock` stamps arrivals (the window and `ReceivedRequest.time`) and times the
    resume links a read hands out.
    """
    handler = _Handler(state, api_key, secret, rate, faults or Faults(), clock)
    app = web.Application(client_max_size=_MAX_BODY_BYTES)
    app.router.add_route("PATCH", "/candidates/{uid}", handler.candidate)
    app.router.add_route("GET", "/candidates/{uid}", handler.candidate)
    app.router.add_get("/_sandbox/stats", handler.stats)
    app.router.add_get(FILES_PATH + "/{token}", handler.links.download)
    return app
