"""A local stand-in for the Comeet API, for the demo, the tests and the benchmarks.

It answers `PATCH /candidates/{uid}` (and `GET`) as the API documents: it checks the bearer
token (HS256, `iss`, `exp`), validates the body field by field, answers 404 for unknown
uids, 401 `duplicate_candidate` for merged ones, 429 `too_many_requests` past its own
sliding window, and can inject faults (5xx, 429, dropped connections, slow answers). Faults
are decided before anything is applied, so a retried request is never applied twice.

It binds 127.0.0.1 only and keeps everything in memory: `SandboxState` is what tests read
to check, from the server's side, what arrived and what was applied.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import importlib.resources
import json
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from aiohttp import web

from .models import Rate
from .schema import ISO_COUNTRY_CODES, PROSPECT_STATUSES, UPDATED_BY_TYPES

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

DEMO_API_KEY = "sandbox-api-key"
DEMO_SECRET = "sandbox-secret-not-for-production"
SEED_NAME = "sandbox_candidates.json"
COMEET_RATE = Rate(100, 60.0)  # what Comeet documents; the sandbox enforces it by default

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
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_LINKEDIN = re.compile(r"https?://([a-z0-9-]+\.)*linkedin\.com(/.*)?", re.IGNORECASE)
_URL = re.compile(r"https?://[^\s/]+\S*", re.IGNORECASE)


@dataclass
class Faults:
    """Per-request probabilities (0..1) of each injected fault; deterministic per seed."""

    error_5xx: float = 0.0
    rate_429: float = 0.0
    retry_after: float | None = None
    drop: float = 0.0
    slow: float = 0.0
    slow_s: float = 0.0
    seed: int = 0


@dataclass(frozen=True)
class ReceivedRequest:
    """One request as the server saw it. `status` 0 means the connection was dropped."""

    time: float
    uid: str
    body: Any
    status: int
    token_ok: bool


@dataclass
class SandboxState:
    """Everything the sandbox knows; tests inspect it from the server's side."""

    candidates: dict[str, dict[str, Any]] = field(default_factory=dict)
    merged: set[str] = field(default_factory=set)
    custom_fields: set[str] = field(default_factory=set)
    always_failing: set[str] = field(default_factory=set)
    requests: list[ReceivedRequest] = field(default_factory=list)
    applied: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    notes: dict[str, list[str]] = field(default_factory=dict)
    over_limit: int = 0


def _seed_text(path: Path | None) -> str:
    if path is not None:
        return path.read_text(encoding="utf-8")
    packaged = importlib.resources.files("bulk_update") / SEED_NAME
    if packaged.is_file():  # an installed wheel
        return packaged.read_text(encoding="utf-8")
    # a source checkout or an editable install
    return (Path(__file__).resolve().parent.parent / "sample_data" / SEED_NAME).read_text(
        encoding="utf-8"
    )


def load_seed(path: Path | None = None) -> SandboxState:
    """A fresh state from a seed JSON file (default: the sample candidates)."""
    data = json.loads(_seed_text(path))
    return SandboxState(
        candidates={c["uid"]: dict(c) for c in data.get("candidates", [])},
        merged=set(data.get("merged", [])),
        custom_fields=set(data.get("custom_fields", [])),
        always_failing=set(data.get("always_failing", [])),
    )


# --- body validation, as the API documents it -------------------------------------------


class _Refused(Exception):
    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error, self.message = status, error, message


def _bad(error: str, message: str, status: int = 400) -> _Refused:
    return _Refused(status, error, message)


def _check_text(name: str, value: Any) -> None:
    if not isinstance(value, str):
        raise _bad("invalid_type", f"{name} must be a string")
    if not value.strip():
        raise _bad("required_field", f"{name} must not be empty")
    if name.endswith("email") and not _EMAIL.fullmatch(value):
        raise _bad("invalid_email", f"{name} is not a valid email address")


def _check_file(name: str, value: Any) -> None:
    if not isinstance(value, dict) or set(value) != {"name", "file"}:
        raise _bad("invalid_type", f"{name} must be an object with name and file")
    _check_text(f"{name}.name", value["name"])
    try:
        base64.b64decode(value["file"], validate=True)
    except (binascii.Error, TypeError, ValueError):
        raise _bad("invalid_file", f"{name}.file is not base64") from None


def validate_body(body: Any, custom_fields: set[str]) -> None:
    """Raise _Refused for anything the API would refuse."""
    if not isinstance(body, dict):
        raise _bad("invalid_body", "the body must be a JSON object")
    for name, value in body.items():
        if name in _TEXT_FIELDS:
            _check_text(name, value)
        elif name in _OBJECT_KEYS:
            if not isinstance(value, dict):
                raise _bad("invalid_type", f"{name} must be an object")
            unknown = set(value) - _OBJECT_KEYS[name]
            if unknown:
                raise _bad("invalid_field", f"{name} has no field {sorted(unknown)[0]}")
            for key, item in value.items():
                _check_text(f"{name}.{key}", item)
        elif name in _FILE_FIELDS:
            _check_file(name, value)
        elif name in _LIST_FIELDS:
            if not isinstance(value, list) or not value:
                raise _bad("invalid_type", f"{name} must be a non-empty array of objects")
            for item in value:
                if name == "files":
                    _check_file("files[]", item)
                elif not isinstance(item, dict) or set(item) != {"url"}:
                    raise _bad("invalid_type", "links[] must be objects with a url")
                elif not isinstance(item["url"], str) or not _URL.fullmatch(item["url"]):
                    raise _bad("invalid_url", "links[].url is not a valid URL")
        elif name == "custom_fields":
            if not isinstance(value, dict):
                raise _bad("invalid_type", "custom_fields must be an object")
            for key, item in value.items():
                if key not in custom_fields:
                    raise _bad(
                        "invalid_custom_candidate_field",
                        f"There is no custom candidate field named '{key}'",
                    )
                _check_text(f"custom_fields.{key}", item)
        else:
            raise _bad("invalid_field", f"Unknown field '{name}'")
    if "prospect_status" in body and body["prospect_status"] not in PROSPECT_STATUSES:
        raise _bad(
            "invalid_value", "prospect_status must be one of " + ", ".join(PROSPECT_STATUSES)
        )
    if "linkedin_url" in body and not _LINKEDIN.fullmatch(body["linkedin_url"]):
        raise _bad("invalid_linkedin_url", "linkedin_url is not a LinkedIn URL")
    updated_by = body.get("updated_by")
    if updated_by is not None:
        if "type" not in updated_by or "name" not in updated_by:
            raise _bad("required_field", "updated_by requires type and name")
        if updated_by["type"] not in UPDATED_BY_TYPES:
            raise _bad(
                "invalid_value", "updated_by.type must be one of " + ", ".join(UPDATED_BY_TYPES)
            )
    source = body.get("source_contact")
    if source is not None and ("full_name" not in source or "email" not in source):
        raise _bad("required_field", "source_contact requires full_name and email")
    country = body.get("address", {}).get("country")
    if country is not None and country not in ISO_COUNTRY_CODES:
        raise _bad("incorrect_country_code", "address.country must be an ISO 3166 code")


def _apply(state: SandboxState, uid: str, body: dict[str, Any]) -> dict[str, Any]:
    candidate = state.candidates[uid]
    for name, value in body.items():
        if name == "note":
            state.notes.setdefault(uid, []).append(value)
        elif name in _LIST_FIELDS:
            candidate.setdefault(name, []).extend(value)
        elif isinstance(value, dict) and name not in _FILE_FIELDS:
            candidate.setdefault(name, {}).update(value)
        else:
            candidate[name] = value
    state.applied.append((uid, body))
    return candidate


# --- the application ----------------------------------------------------------------------


def _error(status: int, error: str, message: str) -> web.Response:
    return web.json_response({"status": status, "error": error, "message": message}, status=status)


def make_app(
    state: SandboxState,
    *,
    api_key: str = DEMO_API_KEY,
    secret: str = DEMO_SECRET,
    rate: Rate | None = None,
    faults: Faults | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> web.Application:
    """The sandbox as an aiohttp application over `state`."""
    faults = faults or Faults()
    rng = random.Random(faults.seed)
    arrivals: deque[float] = deque()

    def token_problem(request: web.Request) -> str | None:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return "missing bearer token"
        try:
            claims = jwt.decode(
                header[7:], secret, algorithms=["HS256"], options={"require": ["exp", "iss"]}
            )
        except jwt.ExpiredSignatureError:
            return "token expired"
        except jwt.InvalidSignatureError:
            return "bad token signature"
        except jwt.InvalidTokenError as exc:
            return f"invalid token ({type(exc).__name__})"
        if claims.get("iss") != api_key:
            return "wrong token issuer"
        return None

    def over_limit(now: float) -> bool:
        if rate is None:
            return False
        arrivals.append(now)
        while arrivals and arrivals[0] <= now - rate.period:
            arrivals.popleft()
        return len(arrivals) > rate.limit

    async def candidate(request: web.Request) -> web.StreamResponse:
        now = clock()
        uid = request.match_info["uid"]
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")

        def answer(
            status: int, response: web.StreamResponse, token_ok: bool = True
        ) -> web.StreamResponse:
            if request.method == "PATCH":
                state.requests.append(ReceivedRequest(now, uid, body, status, token_ok))
            return response

        if over_limit(now):
            state.over_limit += 1
            return answer(429, _error(429, "too_many_requests", "Too many requests"))
        problem = token_problem(request)
        if problem:
            return answer(401, _error(401, "unauthorized", problem), token_ok=False)
        if rng.random() < faults.drop:
            answer(0, web.Response())
            assert request.transport is not None
            request.transport.close()
            raise ConnectionResetError("sandbox: dropped the connection on purpose")
        if rng.random() < faults.error_5xx:
            status = rng.choice((500, 502, 503))
            return answer(status, _error(status, "server_error", "Injected server error"))
        if rng.random() < faults.rate_429:
            response = _error(429, "too_many_requests", "Too many requests")
            if faults.retry_after is not None:
                response.headers["Retry-After"] = f"{faults.retry_after:g}"
            return answer(429, response)
        if rng.random() < faults.slow:
            await asyncio.sleep(faults.slow_s)
        if uid in state.merged:
            return answer(
                401,
                _error(401, "duplicate_candidate", "The candidate was merged into another one"),
            )
        if uid in state.always_failing:
            return answer(503, _error(503, "service_unavailable", "Service unavailable"))
        if uid not in state.candidates:
            return answer(404, _error(404, "candidate_not_found", "Candidate not found"))
        if request.method == "GET":
            return web.json_response(state.candidates[uid])
        try:
            validate_body(body, state.custom_fields)
        except _Refused as refused:
            return answer(refused.status, _error(refused.status, refused.error, refused.message))
        return answer(200, web.json_response(_apply(state, uid, body)))

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "requests": len(state.requests),
                "applied": len(state.applied),
                "over_limit": state.over_limit,
            }
        )

    app = web.Application()
    app.router.add_route("PATCH", "/candidates/{uid}", candidate)
    app.router.add_route("GET", "/candidates/{uid}", candidate)
    app.router.add_get("/_sandbox/stats", stats)
    return app


class SandboxServer:
    """`async with SandboxServer(state) as server:` serves on 127.0.0.1 (`server.base_url`)."""

    def __init__(self, state: SandboxState | None = None, *, port: int = 0, **options: Any):
        self.state = state if state is not None else load_seed()
        self.port = port
        self.options = options
        self.base_url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> str:
        app = make_app(self.state, **self.options)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> SandboxServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


class ThreadedSandbox:
    """The sandbox in a background thread with its own event loop.

    For synchronous tests and for driving the command line in a subprocess:
    `with ThreadedSandbox(state, rate=Rate(100, 5)) as sb: ... sb.base_url ... sb.state`.
    """

    def __init__(self, state: SandboxState | None = None, **options: Any) -> None:
        self.server = SandboxServer(state, **options)
        self.state = self.server.state
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self.server.start())
        except BaseException as exc:  # pragma: no cover - reported to start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        loop.run_forever()
        loop.run_until_complete(self.server.stop())
        loop.close()

    def start(self) -> str:
        self._thread = threading.Thread(target=self._main, name="sandbox", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error
        return self.base_url

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._thread = None

    def __enter__(self) -> ThreadedSandbox:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(port: int = 8765, seed: Path | None = None, rate: Rate | None = COMEET_RATE) -> None:
    """Serve the sandbox on 127.0.0.1 until Ctrl-C, printing how to use it."""

    async def main() -> None:
        async with SandboxServer(load_seed(seed), port=port, rate=rate) as server:
            print(f"Sandbox Comeet API at {server.base_url} (limit {rate or 'none'})")
            print("Demo credentials (for this sandbox only):")
            print(f"  export COMEET_API_KEY={DEMO_API_KEY}")
            print(f"  export COMEET_SECRET={DEMO_SECRET}")
            print(f"Then: bulk-update run sample_data/candidates.csv --base-url {server.base_url}")
            print("Press Ctrl-C to stop.", flush=True)
            await asyncio.Event().wait()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        print("Sandbox stopped.")
