"""A local stand-in for the Comeet API, for the demo, the tests and the benchmarks.

It answers `PATCH /candidates/{uid}` (and `GET`) as the API documents: it checks the bearer
token (HS256, `iss`, `exp`), validates the body field by field, answers 404 for unknown
uids, 401 `duplicate_candidate` for merged ones, 429 `too_many_requests` past its own
sliding window, and can inject faults (5xx, 429, dropped connections, slow answers, a clock
set wrong). Faults are decided before anything is applied, so a retried request is never
applied twice.

The rules are written here again rather than imported from `schema`: a stand-in that shared
the client's checks could never catch a mistake in them.

It binds 127.0.0.1 only and keeps everything in memory: `SandboxState` is what tests read
to check, from the server's side, what arrived and what was applied.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import bisect
import copy
import email.utils
import importlib.resources
import json
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt
from aiohttp import web

from .errors import CannotStartError, ConfigError
from .models import Rate

__all__ = [
    "DEMO_API_KEY",
    "DEMO_SECRET",
    "Faults",
    "ReceivedRequest",
    "SandboxServer",
    "SandboxState",
    "ThreadedSandbox",
    "load_seed",
    "make_app",
    "serve",
]

#: Credentials the sandbox accepts by default. Public on purpose: they open nothing else.
DEMO_API_KEY = "sandbox-api-key"
DEMO_SECRET = "sandbox-secret-not-for-production"
SEED_NAME = "sandbox_candidates.json"
COMEET_RATE = Rate(100, 60.0)  # Comeet's documented limit: what `serve` enforces by default

_PROSPECT_STATUSES = (
    "Sourced", "Contacted", "Responded", "Interested", "Not interested", "Do not contact"
)  # fmt: skip
_UPDATED_BY_TYPES = ("user", "source_contact", "other", "app")
# ISO 3166-1 alpha-2, the officially assigned codes.
_COUNTRIES = frozenset(
    """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO
    BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ
    DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP
    GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG
    KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML
    MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE
    PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL
    SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM
    US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW
    """.split()  # noqa: SIM905 (a grid of codes reads better than 249 quoted strings)
)
_TEXT_FIELDS = frozenset(
    {
        "partner_candidate_id", "first_name", "middle_name", "last_name", "email", "phone",
        "mobile_phone", "national_id", "linkedin_url", "salary_expectations",
        "prospect_status", "note",
    }
)  # fmt: skip
_OBJECT_KEYS: Mapping[str, frozenset[str]] = {
    "updated_by": frozenset({"type", "name", "email"}),
    "source_contact": frozenset({"full_name", "email", "phone"}),
    "address": frozenset({"country", "city", "state", "zip", "street"}),
}
_FILE_FIELDS = frozenset({"resume", "picture"})
_LIST_FIELDS = frozenset({"links", "files"})
_RESUME_EXTENSIONS = (".pdf", ".doc", ".docx")
_MAX_FILE_BYTES = 6 * 1024 * 1024
# Room for several 6 MB files in base64; aiohttp's default (1 MB) would answer 413 first.
_MAX_BODY_BYTES = 64 * 1024 * 1024


@dataclass
class Faults:
    """Per-request probabilities (0..1) of each injected fault; deterministic per seed."""

    error_5xx: float = 0.0
    rate_429: float = 0.0
    retry_after: float | None = None  # the Retry-After header of injected 429s, if any
    drop: float = 0.0
    slow: float = 0.0
    slow_s: float = 0.0
    seed: int = 0
    #: The server's clock this many seconds ahead of this machine's (negative: behind): its
    #: `Date` header and its token checks, so 900 makes every 10-minute token expired.
    clock_ahead_s: float = 0.0

    def __post_init__(self) -> None:
        for name in ("error_5xx", "rate_429", "drop", "slow"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"Faults.{name} is a probability between 0 and 1")


@dataclass(frozen=True)
class ReceivedRequest:
    """One PATCH as the server saw it. `status` 0 means the connection was dropped."""

    time: float
    uid: str
    body: Any
    status: int
    token_ok: bool


@dataclass
class SandboxState:
    """Everything the sandbox knows; tests inspect it from the server's side.

    The server changes it only while holding `lock`, so another thread can take a
    consistent copy with `snapshot()` while the server runs.
    """

    candidates: dict[str, dict[str, Any]] = field(default_factory=dict)
    merged: set[str] = field(default_factory=set)
    custom_fields: set[str] = field(default_factory=set)
    always_failing: set[str] = field(default_factory=set)
    requests: list[ReceivedRequest] = field(default_factory=list)  # PATCHes, by arrival
    applied: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    notes: dict[str, list[str]] = field(default_factory=dict)
    over_limit: int = 0  # requests refused by the sandbox's own rate window
    arrived: int = 0  # PATCHes whose handling has begun, answered or not (in flight: - requests)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def snapshot(self) -> SandboxState:
        """A deep copy taken under the lock, safe to read from any thread."""
        with self.lock:
            return SandboxState(
                candidates=copy.deepcopy(self.candidates),
                merged=set(self.merged),
                custom_fields=set(self.custom_fields),
                always_failing=set(self.always_failing),
                requests=list(self.requests),
                applied=copy.deepcopy(self.applied),
                notes={uid: list(texts) for uid, texts in self.notes.items()},
                over_limit=self.over_limit,
                arrived=self.arrived,
            )


# --- the seed -------------------------------------------------------------------------------


def _seed_text(path: Path | None) -> tuple[str, str]:
    if path is not None:
        return path.read_text(encoding="utf-8"), str(path)
    packaged = importlib.resources.files("bulk_update") / SEED_NAME
    if packaged.is_file():  # an installed wheel carries the seed inside the package
        return packaged.read_text(encoding="utf-8"), str(packaged)
    # a source checkout or an editable install
    source = Path(__file__).resolve().parent.parent / "sample_data" / SEED_NAME
    return source.read_text(encoding="utf-8"), str(source)


def load_seed(path: Path | None = None) -> SandboxState:
    """A fresh state from a seed JSON file (default: the packaged sample candidates).

    The file holds `custom_fields` (names), `candidates` (objects with a `uid`), `merged`
    (uids merged away: 401 duplicate_candidate) and `always_failing` (uids that get 503).
    """
    try:
        text, where = _seed_text(path)
    except OSError as exc:
        raise ConfigError(
            f"the sandbox seed {path or SEED_NAME} cannot be read ({exc.strerror})",
            fix="give the path of a candidates JSON file, like sample_data/sandbox_candidates.json",
        ) from None
    try:
        data = json.loads(text)
        candidates = {str(c["uid"]): dict(c) for c in data.get("candidates", [])}
        return SandboxState(
            candidates=candidates,
            merged={str(u) for u in data.get("merged", [])},
            custom_fields={str(n) for n in data.get("custom_fields", [])},
            always_failing={str(u) for u in data.get("always_failing", [])},
        )
    except (ValueError, TypeError, KeyError, AttributeError):
        raise ConfigError(
            f"the sandbox seed {where} is not a candidates file",
            fix='write {"custom_fields": [...], "candidates": [{"uid": ...}, ...], '
            '"merged": [...], "always_failing": [...]}',
        ) from None


# --- body validation, as the API documents it -------------------------------------------


class _Refused(Exception):
    """What the API would answer instead of applying the body."""

    def __init__(self, error: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status, self.error, self.message = status, error, message


def _is_email(value: str) -> bool:
    local, at, domain = value.partition("@")
    return bool(local and at and "." in domain.strip(".")) and not any(
        ch.isspace() or ch == "@" for ch in local + domain
    )


def _host(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not host or any(c.isspace() for c in url):
        return None
    return host


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise _Refused("invalid_field", f"{name} must be a string")
    if not value.strip():
        raise _Refused("required_field", f"{name} must not be empty")
    if name.endswith("email") and not _is_email(value):
        raise _Refused("invalid_email", f"{name} is not a valid email address")
    return value


def _file(name: str, value: Any) -> None:
    if not isinstance(value, dict) or set(value) != {"name", "file"}:
        raise _Refused("invalid_field", f"{name} must be an object with name and file")
    file_name = _text(f"{name}.name", value["name"])
    try:
        size = len(base64.b64decode(_text(f"{name}.file", value["file"]), validate=True))
    except (binascii.Error, ValueError):
        raise _Refused("invalid_field", f"{name}.file is not valid base64") from None
    if size > _MAX_FILE_BYTES:
        raise _Refused("file_size_limit", f"{name} is larger than 6 MB", status=403)
    if name == "resume" and not file_name.lower().endswith(_RESUME_EXTENSIONS):
        raise _Refused("malicious_file", "a resume must be a .pdf, .doc or .docx file", 403)


def _object(name: str, value: Any, custom_fields: set[str]) -> None:
    if not isinstance(value, dict):
        raise _Refused("invalid_field", f"{name} must be an object")
    for key, item in value.items():
        if name == "custom_fields" and key not in custom_fields:
            raise _Refused(
                "invalid_custom_candidate_field",
                f"There is no custom candidate field named '{key}'",
            )
        if name != "custom_fields" and key not in _OBJECT_KEYS[name]:
            raise _Refused("invalid_field", f"{name} has no field '{key}'")
        _text(f"{name}.{key}", item)
    required = {"updated_by": ("type", "name"), "source_contact": ("full_name", "email")}
    for key in required.get(name, ()):
        if key not in value:
            raise _Refused("required_field", f"{name}.{key} is required when {name} is sent")
    if name == "updated_by" and value["type"] not in _UPDATED_BY_TYPES:
        raise _Refused(
            "required_field", "updated_by.type must be one of " + ", ".join(_UPDATED_BY_TYPES)
        )
    if name == "address" and "country" in value and value["country"] not in _COUNTRIES:
        raise _Refused(
            "incorrect_country_code",
            f"'{value['country']}' is not an ISO 3166-1 alpha-2 country code (upper case)",
        )


def _list(name: str, value: Any) -> None:
    if not isinstance(value, list) or not value:
        raise _Refused("invalid_field", f"{name} must be a non-empty array of objects")
    for item in value:
        if name == "files":
            _file("files[]", item)
        elif not isinstance(item, dict) or set(item) != {"url"}:
            raise _Refused("invalid_field", "links[] must be objects with a url")
        elif _host(_text("links[].url", item["url"])) is None:
            raise _Refused("invalid_url", f"'{item['url']}' is not a valid URL")


def validate_body(body: Any, custom_fields: set[str]) -> None:
    """Raise `_Refused` with the API's error for anything it would refuse."""
    if not isinstance(body, dict):
        raise _Refused("invalid_body", "the body must be a JSON object")
    for name, value in body.items():
        if name in _TEXT_FIELDS:
            _text(name, value)
        elif name in _OBJECT_KEYS or name == "custom_fields":
            _object(name, value, custom_fields)
        elif name in _FILE_FIELDS:
            _file(name, value)
        elif name in _LIST_FIELDS:
            _list(name, value)
        else:
            raise _Refused("invalid_field", f"Unknown field '{name}'")
    # The API compares the status exactly: "not interested" is refused.
    if "prospect_status" in body and body["prospect_status"] not in _PROSPECT_STATUSES:
        raise _Refused(
            "invalid_field", "prospect_status must be one of " + ", ".join(_PROSPECT_STATUSES)
        )
    if "linkedin_url" in body:
        host = _host(body["linkedin_url"])
        if host is None or not (host == "linkedin.com" or host.endswith(".linkedin.com")):
            raise _Refused("invalid_linkedin_url", "linkedin_url is not a LinkedIn URL")


def _apply(state: SandboxState, uid: str, body: dict[str, Any]) -> dict[str, Any]:
    """Merge a valid body into the candidate; the caller holds the lock."""
    candidate = state.candidates[uid]
    for name, value in copy.deepcopy(body).items():
        if name == "updated_by":
            continue  # who made the change: kept in `applied`, not a candidate property
        if name == "note":
            state.notes.setdefault(uid, []).append(value)
        elif name in _LIST_FIELDS:
            candidate.setdefault(name, []).extend(value)
        elif name in _OBJECT_KEYS or name == "custom_fields":
            candidate.setdefault(name, {}).update(value)
        else:  # text fields; resume and picture are replaced whole
            candidate[name] = value
    state.applied.append((uid, copy.deepcopy(body)))
    return _public(candidate)


def _public(candidate: Mapping[str, Any]) -> dict[str, Any]:
    """The candidate as the API returns it: files by name, not their contents."""
    shown = copy.deepcopy(dict(candidate))
    for name in ("resume", "picture"):
        if isinstance(shown.get(name), dict):
            shown[name] = {"name": shown[name].get("name")}
    if isinstance(shown.get("files"), list):
        shown["files"] = [{"name": f.get("name")} for f in shown["files"]]
    return shown


# --- the application ----------------------------------------------------------------------


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

    def _record(self, request: web.Request, item: ReceivedRequest) -> None:
        if request.method == "PATCH":
            with self.state.lock:
                # A slow answer is recorded late: insert by arrival time to keep the order.
                bisect.insort(self.state.requests, item, key=lambda r: r.time)

    async def candidate(self, request: web.Request) -> web.StreamResponse:
        now = self.clock()
        over = self.window.arrive(now)
        uid = request.match_info["uid"]
        if request.method == "PATCH":
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
            self._record(request, ReceivedRequest(now, uid, body, status, problem is None))
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
        return answer(*self._answer(request.method, uid, body))

    def _answer(self, method: str, uid: str, body: Any) -> tuple[int, web.Response]:
        state = self.state
        if uid in state.merged:
            message = "The candidate was merged into another candidate as a duplicate"
            return 401, _error(401, "duplicate_candidate", message)
        if uid in state.always_failing:
            return 503, _error(503, "service_unavailable", "Service temporarily unavailable")
        with state.lock:
            if uid not in state.candidates:
                return 404, _error(404, "candidate_not_found", "Candidate not found")
            if method == "GET":
                return 200, web.json_response(_public(state.candidates[uid]))
            try:
                validate_body(body, state.custom_fields)
            except _Refused as refused:
                return refused.status, _error(refused.status, refused.error, refused.message)
            return 200, web.json_response(_apply(state, uid, body))

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
    failures; `clock` stamps arrivals (the window and `ReceivedRequest.time`).
    """
    handler = _Handler(state, api_key, secret, rate, faults or Faults(), clock)
    app = web.Application(client_max_size=_MAX_BODY_BYTES)
    app.router.add_route("PATCH", "/candidates/{uid}", handler.candidate)
    app.router.add_route("GET", "/candidates/{uid}", handler.candidate)
    app.router.add_get("/_sandbox/stats", handler.stats)
    return app


class SandboxServer:
    """`async with SandboxServer(state) as server:` serves on 127.0.0.1 (`server.base_url`).

    `port=0` picks a free port. The other options are those of `make_app`.
    """

    def __init__(
        self,
        state: SandboxState | None = None,
        *,
        port: int = 0,
        api_key: str = DEMO_API_KEY,
        secret: str = DEMO_SECRET,
        rate: Rate | None = None,
        faults: Faults | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.state = state if state is not None else load_seed()
        self.port = port
        self.base_url = ""
        self._app_options: dict[str, Any] = {
            "api_key": api_key,
            "secret": secret,
            "rate": rate,
            "faults": faults,
            "clock": clock,
        }
        self._runner: web.AppRunner | None = None

    def __repr__(self) -> str:  # never the secret
        return f"SandboxServer(base_url={self.base_url!r})"

    async def start(self) -> str:
        """Bind and serve; returns the base URL."""
        app = make_app(self.state, **self._app_options)
        # A short shutdown: a slow answer still in flight must not hold stop() for a minute.
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", self.port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        return self.base_url

    async def stop(self) -> None:
        """Stop serving (idempotent)."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> SandboxServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


class ThreadedSandbox:
    """The sandbox in a background thread with its own event loop.

    For synchronous tests and for driving the command line in a subprocess::

        with ThreadedSandbox(state, rate=Rate(100, 5)) as sb:
            ... sb.base_url ...
        sb.state  # safe to read once stopped; while running use sb.snapshot()
    """

    def __init__(
        self,
        state: SandboxState | None = None,
        *,
        port: int = 0,
        api_key: str = DEMO_API_KEY,
        secret: str = DEMO_SECRET,
        rate: Rate | None = None,
        faults: Faults | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.server = SandboxServer(
            state, port=port, api_key=api_key, secret=secret, rate=rate, faults=faults, clock=clock
        )
        self.state = self.server.state
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def __repr__(self) -> str:
        return f"ThreadedSandbox(base_url={self.base_url!r})"

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:<port>` once started."""
        return self.server.base_url

    def snapshot(self) -> SandboxState:
        """A consistent copy of the state, safe to take while the server runs."""
        return self.state.snapshot()

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self.server.start())
        except BaseException as exc:  # handed to start() in the caller's thread
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self.server.stop())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def start(self, timeout: float = 10.0) -> str:
        """Start the server thread; returns the base URL once it accepts connections."""
        if self._thread is not None:
            return self.base_url
        self._ready.clear()
        self._error = None
        self._thread = threading.Thread(target=self._main, name="bulk-update-sandbox", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError(f"the sandbox did not start within {timeout:g} s")
        if self._error is not None:
            self._thread.join()
            self._thread = None
            raise self._error
        return self.base_url

    def stop(self) -> None:
        """Stop the server and join its thread (idempotent)."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(15)
        self._thread = None

    def __enter__(self) -> ThreadedSandbox:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(port: int = 8765, seed: Path | None = None, rate: Rate | None = COMEET_RATE) -> None:
    """Serve the sandbox on 127.0.0.1 until Ctrl-C, printing its URL and demo credentials."""
    state = load_seed(seed)

    async def main() -> None:
        server = SandboxServer(state, port=port, rate=rate)
        try:
            await server.start()
        except OSError as exc:
            raise CannotStartError(
                f"the sandbox cannot listen on 127.0.0.1:{port} ({exc.strerror})",
                fix="choose another port with --port N (or stop what is using this one)",
            ) from None
        try:
            print(f"Sandbox Comeet API at {server.base_url}")
            limit = f"{rate.limit} requests per {rate.period:g} s" if rate else "none"
            print(f"{len(state.candidates)} candidates; rate limit: {limit}")
            print("Demo credentials (they open this sandbox only):")
            print(f"  export COMEET_API_KEY={DEMO_API_KEY}")
            print(f"  export COMEET_SECRET={DEMO_SECRET}")
            print(f"Then: bulk-update run sample_data/candidates.csv --base-url {server.base_url}")
            print("Press Ctrl-C to stop.", flush=True)
            await asyncio.Event().wait()
        finally:
            await server.stop()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        print("Sandbox stopped.")
