"""The sandbox: a real server on 127.0.0.1, spoken to with aiohttp and hand-minted tokens."""

from __future__ import annotations

import asyncio
import base64
import csv
import email.utils
import json
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest

from bulk_update.errors import CannotStartError, ConfigError
from bulk_update.models import Rate
from bulk_update.sandbox import (
    DEMO_API_KEY,
    DEMO_SECRET,
    Faults,
    SandboxServer,
    SandboxState,
    ThreadedSandbox,
    load_seed,
)
from bulk_update.sandbox.read import web_page_id

from .conftest import ROOT, SAMPLE

DOTTED_UID = re.compile(r"[A-Za-z0-9]+(?:\.[A-Za-z0-9]+)+")
PDF = base64.b64encode(b"%PDF-1.4 a tiny cv").decode()


def token(*, iss: str = DEMO_API_KEY, secret: str = DEMO_SECRET, exp_in: float | None = 600) -> str:
    claims: dict[str, Any] = {"iss": iss}
    if exp_in is not None:
        claims["exp"] = int(time.time() + exp_in)
    return jwt.encode(claims, secret, algorithm="HS256")


def auth(tok: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok or token()}"}


def make_state() -> SandboxState:
    state = SandboxState()
    state.candidates["AE.1"] = {
        "uid": "AE.1",
        "position_uid": "11.11",
        "status": "In progress",
        "first_name": "Dana",
        "address": {"country": "IL"},
        "custom_fields": {"Notice period": "30 days"},
        "links": [{"url": "https://old.example.com"}],
    }
    state.candidates["AE.2"] = {"uid": "AE.2", "first_name": "Noa"}
    state.candidates["FL.1"] = {"uid": "FL.1", "first_name": "Failing"}
    state.merged.add("MG.1")
    state.always_failing.add("FL.1")
    state.custom_fields.update({"Team", "Notice period"})
    return state


@pytest.fixture
def state() -> SandboxState:
    return make_state()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s:
        yield s


@pytest.fixture
async def server(state: SandboxState) -> AsyncIterator[SandboxServer]:
    async with SandboxServer(state) as srv:
        yield srv


async def patch(
    session: aiohttp.ClientSession,
    base_url: str,
    uid: str,
    body: Any,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any, aiohttp.ClientResponse]:
    async with session.patch(
        f"{base_url}/candidates/{uid}", json=body, headers=auth() if headers is None else headers
    ) as resp:
        return resp.status, await resp.json(content_type=None), resp


# --- authentication -----------------------------------------------------------------------


async def test_a_good_token_is_accepted(
    server: SandboxServer, session: aiohttp.ClientSession, state: SandboxState
) -> None:
    status, body, _ = await patch(session, server.base_url, "AE.1", {"first_name": "Dana"})
    assert status == 200 and body["uid"] == "AE.1"
    assert [(r.uid, r.status, r.token_ok) for r in state.requests] == [("AE.1", 200, True)]


@pytest.mark.parametrize(
    ("headers", "says"),
    [
        (auth(token(exp_in=-30)), "expired"),
        (auth(token(secret="some-other-secret-of-32-bytes-or-more")), "signature"),
        (auth(token(iss="another-account")), "issuer"),
        (auth(token(exp_in=None)), "'exp'"),
        (auth("not.a.jwt"), "not a valid"),
        ({}, "missing"),
        ({"Authorization": "Basic dXNlcjpwdw=="}, "missing"),
    ],
    ids=["expired", "wrong-secret", "wrong-iss", "no-exp", "garbage", "no-header", "basic"],
)
async def test_a_bad_token_is_refused_and_says_why(
    server: SandboxServer,
    session: aiohttp.ClientSession,
    state: SandboxState,
    headers: dict[str, str],
    says: str,
) -> None:
    status, body, _ = await patch(session, server.base_url, "AE.1", {"first_name": "X"}, headers)
    assert status == 401
    assert body["status"] == 401 and body["error"] == "unauthorized"
    assert says in body["message"]
    assert DEMO_SECRET not in body["message"]
    assert [(r.status, r.token_ok) for r in state.requests] == [(401, False)]
    assert state.applied == [] and state.candidates["AE.1"]["first_name"] == "Dana"


@pytest.mark.parametrize("ahead_s", [900.0, 0.0, -900.0])
async def test_a_clock_set_wrong_shows_in_date_and_in_token_checks(
    state: SandboxState, session: aiohttp.ClientSession, ahead_s: float
) -> None:
    # A 10-minute token minted now: expired for a server 15 minutes ahead, fine otherwise.
    async with SandboxServer(state, faults=Faults(clock_ahead_s=ahead_s)) as srv:
        before = time.time()
        status, body, resp = await patch(session, srv.base_url, "AE.1", {"first_name": "X"})
        after = time.time()
    date = email.utils.parsedate_to_datetime(resp.headers["Date"]).timestamp()
    assert before + ahead_s - 1 <= date <= after + ahead_s  # Date has whole seconds
    if ahead_s > 600:
        assert status == 401
        assert body["message"] == "the token has expired (exp is in the past); sign a new one"
        assert state.applied == []
    else:
        assert status == 200


async def test_custom_credentials_and_no_secret_in_repr(
    state: SandboxState, session: aiohttp.ClientSession
) -> None:
    secret = "a-custom-secret-value-long-enough-for-hs256"
    async with SandboxServer(state, api_key="acme", secret=secret) as srv:
        assert secret not in repr(srv)
        good = auth(token(iss="acme", secret=secret))
        assert (await patch(session, srv.base_url, "AE.1", {"last_name": "C"}, good))[0] == 200
        demo = await patch(session, srv.base_url, "AE.1", {"last_name": "C"})
        assert demo[0] == 401 and "signature" in demo[1]["message"]


# --- per-candidate answers ----------------------------------------------------------------


async def test_unknown_uid_gets_the_documented_404(
    server: SandboxServer, session: aiohttp.ClientSession, state: SandboxState
) -> None:
    status, body, _ = await patch(session, server.base_url, "ZZ.404", {"first_name": "X"})
    assert status == 404
    assert body == {"status": 404, "error": "candidate_not_found", "message": "Candidate not found"}
    assert state.requests[0].status == 404 and state.applied == []


async def test_merged_uid_is_a_duplicate_candidate(
    server: SandboxServer, session: aiohttp.ClientSession
) -> None:
    status, body, _ = await patch(session, server.base_url, "MG.1", {"first_name": "X"})
    assert status == 401
    assert body["error"] == "duplicate_candidate" and body["status"] == 401 and body["message"]


async def test_always_failing_uid_gets_503_every_time(
    server: SandboxServer, session: aiohttp.ClientSession, state: SandboxState
) -> None:
    for _ in range(3):
        status, body, _ = await patch(session, server.base_url, "FL.1", {"first_name": "X"})
        assert status == 503 and body["status"] == 503
    assert [r.status for r in state.requests] == [503, 503, 503]
    assert state.applied == [] and state.candidates["FL.1"]["first_name"] == "Failing"


# --- body validation ----------------------------------------------------------------------

INVALID_BODIES: list[tuple[str, Any, int, str]] = [
    ("unknown-field", {"favourite_colour": "blue"}, 400, "invalid_field"),
    ("not-an-object", [{"first_name": "X"}], 400, "invalid_body"),
    ("text-not-string", {"first_name": 5}, 400, "invalid_field"),
    ("empty-string", {"last_name": "  "}, 400, "required_field"),
    ("status-wrong-case", {"prospect_status": "not interested"}, 400, "invalid_field"),
    ("status-unknown", {"prospect_status": "Hot lead"}, 400, "invalid_field"),
    ("country-lower", {"address": {"country": "il"}}, 400, "incorrect_country_code"),
    ("country-unknown", {"address": {"country": "XX"}}, 400, "incorrect_country_code"),
    ("address-unknown-key", {"address": {"planet": "Earth"}}, 400, "invalid_field"),
    ("address-not-object", {"address": "Tel Aviv"}, 400, "invalid_field"),
    ("custom-unknown", {"custom_fields": {"Hiring source": "x"}},
     400, "invalid_custom_candidate_field"),
    ("updated-by-no-name", {"updated_by": {"type": "user"}}, 400, "required_field"),
    ("updated-by-bad-type", {"updated_by": {"type": "robot", "name": "R"}}, 400, "required_field"),
    ("source-no-email", {"source_contact": {"full_name": "H H"}}, 400, "required_field"),
    ("bad-email", {"email": "dana@"}, 400, "invalid_email"),
    ("bad-nested-email", {"updated_by": {"type": "app", "name": "A", "email": "x"}},
     400, "invalid_email"),
    ("not-linkedin", {"linkedin_url": "https://facebook.com/dana"}, 400, "invalid_linkedin_url"),
    ("bad-link", {"links": [{"url": "not a url"}]}, 400, "invalid_url"),
    ("links-not-objects", {"links": ["https://a.example.com"]}, 400, "invalid_field"),
    ("files-not-array", {"files": {"name": "a.pdf", "file": PDF}}, 400, "invalid_field"),
    ("resume-bad-base64", {"resume": {"name": "cv.pdf", "file": "***not base64***"}},
     400, "invalid_field"),
    ("file-bad-base64", {"files": [{"name": "a.txt", "file": "abc"}]}, 400, "invalid_field"),
    ("resume-no-name", {"resume": {"file": PDF}}, 400, "invalid_field"),
    ("resume-wrong-type", {"resume": {"name": "cv.exe", "file": PDF}}, 403, "malicious_file"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [case[1:] for case in INVALID_BODIES],
    ids=[case[0] for case in INVALID_BODIES],
)
async def test_invalid_bodies_are_refused_and_never_applied(
    server: SandboxServer,
    session: aiohttp.ClientSession,
    state: SandboxState,
    body: Any,
    status: int,
    error: str,
) -> None:
    before = json.dumps(state.candidates["AE.1"], sort_keys=True)
    got, answer, _ = await patch(session, server.base_url, "AE.1", body)
    assert (got, answer["error"], answer["status"]) == (status, error, status)
    assert answer["message"]
    assert state.applied == [] and state.notes == {}
    assert json.dumps(state.candidates["AE.1"], sort_keys=True) == before
    assert state.requests[0].body == body and state.requests[0].status == status


async def test_body_that_is_not_json_is_refused(
    server: SandboxServer, session: aiohttp.ClientSession, state: SandboxState
) -> None:
    async with session.patch(
        f"{server.base_url}/candidates/AE.1", data=b"first_name=Dana", headers=auth()
    ) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"] == "invalid_body"
    assert state.requests[0].body == "first_name=Dana"


async def test_a_file_over_6_mb_is_refused_but_the_body_is_read(
    server: SandboxServer, session: aiohttp.ClientSession
) -> None:
    # 6 MB + 1 byte: above aiohttp's default 1 MB body limit, so this also proves the
    # sandbox reads big bodies instead of answering 413.
    big = base64.b64encode(b"x" * (6 * 1024 * 1024 + 1)).decode()
    status, body, _ = await patch(
        session, server.base_url, "AE.1", {"files": [{"name": "big.pdf", "file": big}]}
    )
    assert (status, body["error"]) == (403, "file_size_limit")
    ok = base64.b64encode(b"x" * (3 * 1024 * 1024)).decode()
    status, _, _ = await patch(
        session, server.base_url, "AE.1", {"resume": {"name": "cv.pdf", "file": ok}}
    )
    assert status == 200


# --- a successful update ------------------------------------------------------------------


async def test_success_merges_into_the_candidate_and_is_recorded(
    server: SandboxServer, session: aiohttp.ClientSession, state: SandboxState
) -> None:
    first = {
        "first_name": "Dana",
        "last_name": "Cohen",
        "prospect_status": "Not interested",
        "address": {"city": "Tel Aviv"},
        "custom_fields": {"Team": "R&D"},
        "note": "Met at a meetup,\nliked her talk",
        "links": [{"url": "https://github.com/dana"}],
        "resume": {"name": "old.pdf", "file": PDF},
        "files": [{"name": "a.txt", "file": "YQ=="}],
        "updated_by": {"type": "app", "name": "Spreadsheet sync", "email": "ops@example.com"},
    }
    status, answer, resp = await patch(session, server.base_url, "AE.1", first)
    assert status == 200 and resp.content_type == "application/json"
    assert answer["uid"] == "AE.1" and answer["position_uid"] == "11.11"
    assert answer["status"] == "In progress"
    assert answer["resume"] == {"name": "old.pdf"}  # by name, not the whole file back
    second: dict[str, Any] = {
        "note": "Second call",
        "resume": {"name": "new.pdf", "file": PDF},
        "links": [{"url": "https://dana.example.com"}],
    }
    assert (await patch(session, server.base_url, "AE.1", second))[0] == 200

    candidate = state.candidates["AE.1"]
    assert candidate["address"] == {"country": "IL", "city": "Tel Aviv"}  # merged key by key
    assert candidate["custom_fields"] == {"Notice period": "30 days", "Team": "R&D"}
    assert candidate["prospect_status"] == "Not interested"
    assert candidate["resume"] == {"name": "new.pdf", "file": PDF}  # replaced
    assert [link["url"] for link in candidate["links"]] == [
        "https://old.example.com",
        "https://github.com/dana",
        "https://dana.example.com",
    ]  # appended
    assert candidate["files"] == [{"name": "a.txt", "file": "YQ=="}]
    assert "note" not in candidate and "updated_by" not in candidate
    assert state.notes == {"AE.1": ["Met at a meetup,\nliked her talk", "Second call"]}
    assert state.applied == [("AE.1", first), ("AE.1", second)]
    assert [(r.uid, r.status, r.body) for r in state.requests] == [
        ("AE.1", 200, first),
        ("AE.1", 200, second),
    ]
    assert state.requests[0].time <= state.requests[1].time


# --- the rate window ----------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_rate_window_refuses_with_429_without_retry_after(
    state: SandboxState, session: aiohttp.ClientSession
) -> None:
    clock = FakeClock()
    async with SandboxServer(state, rate=Rate(3, 10.0), clock=clock) as srv:

        async def at(t: float, headers: dict[str, str] | None = None) -> int:
            clock.now = 1000.0 + t
            status, body, resp = await patch(session, srv.base_url, "AE.2", {"note": "n"}, headers)
            if status == 429:
                assert body == {
                    "status": 429,
                    "error": "too_many_requests",
                    "message": body["message"],
                }
                assert "Retry-After" not in resp.headers
            return status

        assert [await at(0), await at(1), await at(2)] == [200, 200, 200]
        assert await at(3) == 429  # the fourth in 10 s
        # a refused request still counts: 1, 2, 3 and 10.5 are four in (0.5, 10.5]
        assert await at(10.5) == 429
        assert await at(13.5) == 200  # (3.5, 13.5] holds 10.5 and this one
        # a request refused for its token counts too
        assert await at(13.75, {"Authorization": "Bearer nope"}) == 401
        assert await at(14) == 429
        assert await at(24) == 200  # the window is (14, 24]: the arrival at 14 has left
        async with session.get(f"{srv.base_url}/_sandbox/stats") as resp:
            stats = await resp.json()
    assert state.over_limit == 3
    assert stats == {"requests": 9, "applied": 5, "over_limit": 3}
    assert [r.time - 1000.0 for r in state.requests] == [0, 1, 2, 3, 10.5, 13.5, 13.75, 14, 24]
    assert [r.status for r in state.requests] == [200, 200, 200, 429, 429, 200, 401, 429, 200]
    assert len(state.notes["AE.2"]) == 5


async def test_no_rate_means_no_limit(
    server: SandboxServer, session: aiohttp.ClientSession, state: SandboxState
) -> None:
    statuses = await asyncio.gather(
        *(patch(session, server.base_url, "AE.2", {"note": str(i)}) for i in range(150))
    )
    assert {s for s, _, _ in statuses} == {200}
    assert state.over_limit == 0 and len(state.applied) == 150


# --- injected faults ----------------------------------------------------------------------


async def test_drop_closes_the_connection_without_an_answer(
    state: SandboxState, session: aiohttp.ClientSession
) -> None:
    async with SandboxServer(state, faults=Faults(drop=1.0)) as srv:
        with pytest.raises(aiohttp.ClientConnectionError):
            await patch(session, srv.base_url, "AE.1", {"first_name": "X"})
    assert [(r.uid, r.status) for r in state.requests] == [("AE.1", 0)]
    assert state.applied == [] and state.candidates["AE.1"]["first_name"] == "Dana"


async def test_5xx_fault_answers_json_and_applies_nothing(
    state: SandboxState, session: aiohttp.ClientSession
) -> None:
    async with SandboxServer(state, faults=Faults(error_5xx=1.0, seed=3)) as srv:
        answers = [await patch(session, srv.base_url, "AE.1", {"note": "n"}) for _ in range(12)]
    assert {status for status, _, _ in answers} <= {500, 502, 503}
    assert len({status for status, _, _ in answers}) > 1
    for status, body, _ in answers:
        assert body["status"] == status and body["error"] and body["message"]
    assert state.applied == [] and state.notes == {}


@pytest.mark.parametrize(("retry_after", "header"), [(2.5, "2.5"), (30.0, "30"), (None, None)])
async def test_429_fault_sends_retry_after_only_when_set(
    state: SandboxState,
    session: aiohttp.ClientSession,
    retry_after: float | None,
    header: str | None,
) -> None:
    async with SandboxServer(state, faults=Faults(rate_429=1.0, retry_after=retry_after)) as srv:
        status, body, resp = await patch(session, srv.base_url, "AE.1", {"note": "n"})
    assert (status, body["error"]) == (429, "too_many_requests")
    assert resp.headers.get("Retry-After") == header
    assert state.applied == [] and state.over_limit == 0


async def test_slow_fault_delays_the_answer_and_still_applies(
    state: SandboxState, session: aiohttp.ClientSession
) -> None:
    async with SandboxServer(state, faults=Faults(slow=1.0, slow_s=0.2)) as srv:
        started = time.monotonic()
        status, _, _ = await patch(session, srv.base_url, "AE.1", {"first_name": "Slow"})
        elapsed = time.monotonic() - started
    assert status == 200 and elapsed >= 0.2
    assert state.candidates["AE.1"]["first_name"] == "Slow"
    assert state.requests[0].time < started + 0.2  # stamped on arrival, not on answer


async def test_a_held_patch_is_applied_at_once_and_answered_later(
    state: SandboxState, session: aiohttp.ClientSession
) -> None:
    async with SandboxServer(state, faults=Faults(hold_patch_s=0.3)) as srv:
        held = asyncio.create_task(patch(session, srv.base_url, "AE.1", {"first_name": "Held"}))
        started = time.monotonic()
        while not state.applied:
            await asyncio.sleep(0.005)
        # Applied, and its answer not given yet: a client killed now never hears of it.
        assert state.candidates["AE.1"]["first_name"] == "Held"
        assert state.requests == [] and not held.done()
        status, _, _ = await held
        assert status == 200 and time.monotonic() - started >= 0.25
        assert [(r.uid, r.status, r.method) for r in state.requests] == [("AE.1", 200, "PATCH")]


async def test_slow_answers_are_recorded_in_arrival_order(
    session: aiohttp.ClientSession,
) -> None:
    # With slow=0.5 some answers are slow and some are not; whatever the draw, the
    # record must stay in arrival order even though answers come back out of order.
    state = make_state()
    async with SandboxServer(state, faults=Faults(slow=0.5, slow_s=0.15, seed=5)) as srv:
        tasks = []
        for i in range(10):
            tasks.append(
                asyncio.create_task(patch(session, srv.base_url, "AE.2", {"note": str(i)}))
            )
            await asyncio.sleep(0.01)
        await asyncio.gather(*tasks)
    times = [r.time for r in state.requests]
    assert times == sorted(times) and len(times) == 10
    # answers overtook one another, yet the record is by arrival
    assert state.notes["AE.2"] != [r.body["note"] for r in state.requests]


async def test_faults_are_deterministic_for_a_seed(session: aiohttp.ClientSession) -> None:
    async def statuses(seed: int) -> list[int]:
        faults = Faults(error_5xx=0.3, rate_429=0.2, seed=seed)
        async with SandboxServer(make_state(), faults=faults) as srv:
            return [
                (await patch(session, srv.base_url, "AE.2", {"note": "n"}))[0] for _ in range(25)
            ]

    first = await statuses(42)
    assert first == await statuses(42)
    assert 200 in first and 429 in first and any(s >= 500 for s in first)
    assert first != await statuses(43)


def test_fault_probabilities_are_checked() -> None:
    with pytest.raises(ValueError, match="drop"):
        Faults(drop=1.5)
    with pytest.raises(ValueError, match="error_5xx"):
        Faults(error_5xx=-0.1)


# --- the threaded server ------------------------------------------------------------------


def sync_patch(base_url: str, uid: str, body: Any) -> int:
    request = urllib.request.Request(
        f"{base_url}/candidates/{uid}",
        data=json.dumps(body).encode(),
        method="PATCH",
        headers={**auth(), "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_threaded_sandbox_starts_serves_and_stops() -> None:
    state = make_state()
    sandbox = ThreadedSandbox(state, rate=Rate(100, 60.0))
    base_url = sandbox.start()
    try:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", base_url)
        assert sandbox.base_url == base_url and sandbox.state is state
        assert sync_patch(base_url, "AE.2", {"first_name": "Noa B"}) == 200
        assert sync_patch(base_url, "ZZ.9", {"first_name": "X"}) == 404
        copy = sandbox.snapshot()
        assert copy is not state and copy.applied == state.applied
        copy.candidates["AE.2"]["first_name"] = "changed in the copy"
        assert state.candidates["AE.2"]["first_name"] == "Noa B"
    finally:
        sandbox.stop()
    sandbox.stop()  # idempotent
    with pytest.raises(urllib.error.URLError):
        sync_patch(base_url, "AE.2", {"first_name": "after stop"})
    assert [r.status for r in state.requests] == [200, 404]


def test_threaded_sandbox_as_context_manager_with_faults() -> None:
    with ThreadedSandbox(make_state(), faults=Faults(error_5xx=1.0)) as sb:
        assert sync_patch(sb.base_url, "AE.2", {"note": "n"}) in (500, 502, 503)
    assert sb.state.applied == []


def test_threaded_sandbox_reports_a_port_in_use() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(OSError):
            ThreadedSandbox(make_state(), port=port).start()


# --- serve() ------------------------------------------------------------------------------


def test_serve_prints_url_and_credentials_and_stops_on_ctrl_c() -> None:
    code = "from bulk_update.sandbox import serve; serve(port=0)"
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        for line in proc.stdout:
            lines.append(line)
            if "Ctrl-C" in line:
                break
        text = "".join(lines)
        match = re.search(r"http://127\.0\.0\.1:\d+", text)
        assert match, text
        assert f"export COMEET_API_KEY={DEMO_API_KEY}" in text
        assert f"export COMEET_SECRET={DEMO_SECRET}" in text
        assert "100 requests per 60 s" in text
        with urllib.request.urlopen(f"{match.group(0)}/_sandbox/stats", timeout=5) as resp:
            assert json.load(resp) == {"requests": 0, "applied": 0, "over_limit": 0}
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)  # a loaded machine is slow to stop
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "Sandbox stopped." in out and "Traceback" not in err


def test_serve_on_a_busy_port_cannot_start() -> None:
    from bulk_update.sandbox import serve

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(CannotStartError, match="--port") as info:
            serve(port=port)
    assert str(port) in info.value.message


# --- the seed and the demo sheet ----------------------------------------------------------


def test_load_seed_finds_the_sample_seed() -> None:
    state = load_seed()
    on_disk = load_seed(SAMPLE / "sandbox_candidates.json")
    assert state.candidates == on_disk.candidates
    assert 40 <= len(state.candidates) <= 50
    assert all(DOTTED_UID.fullmatch(uid) for uid in state.candidates)
    assert {"Team", "Notice period", "Referral"} <= state.custom_fields
    assert len(state.merged) == 2 and not state.merged & set(state.candidates)
    assert len(state.always_failing) == 1 and state.always_failing <= set(state.candidates)
    for uid, candidate in state.candidates.items():
        assert candidate["uid"] == uid
        assert candidate["first_name"] and candidate["last_name"]
        assert "@" in candidate["email"] and candidate["phone"]
        assert candidate["position_uid"] and candidate["status"]
        assert set(candidate["custom_fields"]) <= state.custom_fields
        assert DOTTED_UID.fullmatch(candidate["person_uid"])
    # each one's web-page number (IDENTIFIER_TYPE: REAL_ID) ends its URL, and is its own
    pages = [web_page_id(candidate) for candidate in state.candidates.values()]
    assert all(page and page.isdigit() for page in pages) and len(set(pages)) == len(pages)
    assert {uid for uid, c in state.candidates.items() if "resume" in c} == {
        "AE.17934", "FC.C9A3E", "3A.1F07B"
    }  # fmt: skip
    assert state.requests == [] and state.applied == []


def test_load_seed_gives_fresh_state_each_time() -> None:
    one, two = load_seed(), load_seed()
    uid = next(iter(one.candidates))
    one.candidates[uid]["first_name"] = "Changed"
    assert two.candidates[uid]["first_name"] != "Changed"


@pytest.mark.parametrize(
    "content", ["not json", "[1, 2]", '{"candidates": [{"name": "no uid"}]}'], ids=str
)
def test_load_seed_rejects_a_bad_file(tmp_path: Path, content: str) -> None:
    path = tmp_path / "seed.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match="not a candidates file"):
        load_seed(path)
    with pytest.raises(ConfigError, match="cannot be read"):
        load_seed(tmp_path / "missing.json")


def read_sample_sheet() -> list[dict[str, str]]:
    with (SAMPLE / "candidates.csv").open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def column(rows: list[dict[str, str]], uid: str, header: str) -> str:
    (row,) = [r for r in rows if r["UID"] == uid]
    return row[header]


def test_the_sample_sheet_holds_every_planned_case() -> None:
    seed = load_seed()
    rows = read_sample_sheet()
    assert 35 <= len(rows) <= 45
    uids = [r["UID"] for r in rows]
    headers = list(rows[0])
    data_headers = [h for h in headers if h not in ("UID",) and not h.startswith("updated_by")]

    # skipped: only the uid and updated_by.* filled in
    skipped = [r["UID"] for r in rows if not any(r[h] for h in data_headers)]
    assert len(skipped) == 1 and skipped[0] in seed.candidates
    # invalid
    assert any(u.isdigit() for u in uids)
    assert any(n > 1 for n in map(uids.count, set(uids)))
    assert any(r["Email"] and not re.fullmatch(r"[^@]+@[^@]+\.[^@]+", r["Email"]) for r in rows)
    statuses = {r["Prospect Status"] for r in rows if r["Prospect Status"]}
    assert "Hot lead" in statuses and "not   INTERESTED" in statuses
    assert any(len(r["Address.Country"]) > 2 for r in rows)
    assert any(r["LinkedIn URL"] and "linkedin.com" not in r["LinkedIn URL"] for r in rows)
    files = [
        p.strip() for r in rows for h in ("Resume", "Picture", "Files") for p in r[h].split(";")
    ]
    missing = [p for p in files if p and not (SAMPLE / p).is_file()]
    assert missing == ["files/emma-wilson-cv.pdf"]
    # answered by the API
    well_formed = [u for u in uids if DOTTED_UID.fullmatch(u)]
    assert [u for u in well_formed if u not in seed.candidates and u not in seed.merged]
    assert any(u in seed.merged for u in uids)
    assert any(u in seed.always_failing for u in uids)
    unknown_custom = [
        h for h in headers if h.startswith("custom_fields.") and h[14:] not in seed.custom_fields
    ]
    assert len(unknown_custom) == 1 and sum(bool(r[unknown_custom[0]]) for r in rows) == 1
    # a note with a comma and a new line inside quotes; empty cells here and there
    assert any("," in r["Note"] and "\n" in r["Note"] for r in rows)
    assert sum(v == "" for r in rows for v in r.values()) > len(rows)
    # most rows are meant to be updated: well-formed, known, unique
    updatable = [u for u in well_formed if u in seed.candidates and uids.count(u) == 1]
    assert len(updatable) >= 25


def test_the_sample_files_are_small_and_real() -> None:
    files = sorted((SAMPLE / "files").iterdir())
    assert files
    for path in files:
        data = path.read_bytes()
        assert 0 < len(data) <= 50 * 1024, path.name
        if path.suffix == ".pdf":
            assert data.startswith(b"%PDF-1.") and data.rstrip().endswith(b"%%EOF"), path.name
        elif path.suffix == ".png":
            assert data.startswith(b"\x89PNG\r\n\x1a\n"), path.name
        else:
            pytest.fail(f"unexpected demo file {path.name}")
    assert any(p.suffix == ".png" for p in files)


def test_the_sample_readme_names_every_file() -> None:
    text = (SAMPLE / "README.md").read_text(encoding="utf-8")
    for name in ("candidates.csv", "sandbox_candidates.json", "files/"):
        assert name in text
    rows = read_sample_sheet()
    for outcome in ("updated", "skipped", "invalid", "not_found", "rejected", "failed"):
        assert f"`{outcome}`" in text
    assert column(rows, "AE.18210", "Prospect Status") == "not   INTERESTED"
