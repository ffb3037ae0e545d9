"""The sandbox's GET: Comeet's read model, web-page numbers, expiring resume links, the window.

A real server on 127.0.0.1, spoken to with aiohttp and hand-minted tokens (test_sandbox's).
"""

from __future__ import annotations

import base64
import json
import re
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from bulk_update.models import Rate
from bulk_update.sandbox import Faults, SandboxServer, SandboxState, ThreadedSandbox, load_seed

from . import test_sandbox
from .test_sandbox import FakeClock, auth, patch

# test_sandbox's fixtures: its candidates and an aiohttp session
state, session = test_sandbox.state, test_sandbox.session

REAL_ID = {"IDENTIFIER_TYPE": "REAL_ID"}
OLD_CV = b"%PDF-1.4 the old cv"
NEW_CV = b"%PDF-1.4 the new cv, replaced"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def server(state: SandboxState, clock: FakeClock) -> AsyncIterator[SandboxServer]:
    async with SandboxServer(state, clock=clock) as srv:
        yield srv


async def read(
    session: aiohttp.ClientSession,
    base_url: str,
    segment: str,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    async with session.get(
        f"{base_url}/candidates/{segment}", headers={**auth(), **(headers or {})}
    ) as resp:
        return resp.status, await resp.json(content_type=None)


async def download(session: aiohttp.ClientSession, url: str) -> tuple[int, bytes, str]:
    async with session.get(url) as resp:  # a public link: no token
        return resp.status, await resp.read(), resp.headers.get("Content-Type", "")


EVERYTHING = {
    "first_name": "Dana",
    "middle_name": "R.",
    "last_name": "Cohen",
    "email": "dana@example.com",
    "phone": "+972-3-555-0100",
    "mobile_phone": "+972-54-555-0101",
    "national_id": "012345678",
    "linkedin_url": "https://www.linkedin.com/in/dana",
    "prospect_status": "Interested",
    "partner_candidate_id": "P-77",
    "salary_expectations": "20000 ILS",
    "source_contact": {"full_name": "Rita van Levi", "email": "rita@example.com", "phone": "1"},
    "address": {"country": "IL", "city": "Haifa"},
    "custom_fields": {"Team": "R&D"},
    "resume": {"name": "dana-cv.pdf", "file": b64(OLD_CV)},
    "picture": {"name": "dana.png", "file": b64(b"\x89PNG")},
    "links": [{"url": "https://dana.example.com"}],
    "files": [{"name": "cert.pdf", "file": b64(b"%PDF cert")}],
    "note": "Met at a meetup",
    "updated_by": {"type": "user", "name": "Rita Levi"},
}


READ_AS_WRITTEN = (
    "first_name", "middle_name", "last_name", "email", "phone", "mobile_phone", "linkedin_url",
    "prospect_status",
)  # fmt: skip


async def test_a_read_answers_the_read_model_of_what_patches_wrote(
    server: SandboxServer, session: aiohttp.ClientSession, state: SandboxState
) -> None:
    state.candidates["AE.1"].update({"person_uid": "P1.1", "URL": "https://x/app/can/615"})
    status, _, _ = await patch(session, server.base_url, "AE.1", EVERYTHING)
    assert status == 200
    status, body = await read(session, server.base_url, "AE.1")
    assert status == 200
    url = body["resume"].pop("url")
    contact_uid = body["source_contact"].pop("uid")
    assert body == {
        "uid": "AE.1",
        "person_uid": "P1.1",
        **{name: EVERYTHING[name] for name in READ_AS_WRITTEN},
        "status": "In progress",
        "position_uid": "11.11",
        "URL": "https://x/app/can/615",
        "id_number": "012345678",  # what the PATCH calls national_id
        # no phone; full_name split at its first space
        "source_contact": {
            "first_name": "Rita",
            "last_name": "van Levi",
            "email": "rita@example.com",
        },
        "resume": {"name": "dana-cv.pdf"},
    }
    # never: address, custom_fields, salary_expectations, partner_candidate_id, picture,
    # links, files, notes, national_id (all asserted by the equality above)
    assert re.fullmatch(r"[0-9A-F]{2}\.[0-9A-F]{5}", contact_uid)
    assert url.startswith(f"{server.base_url}/")
    assert await download(session, url) == (200, OLD_CV, "application/pdf")
    # the same contact reads with the same uid every time
    _, again = await read(session, server.base_url, "AE.1")
    assert again["source_contact"]["uid"] == contact_uid


async def test_a_resume_link_serves_the_file_read_and_expires_after_15_minutes(
    server: SandboxServer, session: aiohttp.ClientSession, state: SandboxState, clock: FakeClock
) -> None:
    await patch(
        session, server.base_url, "AE.2", {"resume": {"name": "a.pdf", "file": b64(OLD_CV)}}
    )
    _, body = await read(session, server.base_url, "AE.2")
    old_link = body["resume"]["url"]
    await patch(
        session, server.base_url, "AE.2", {"resume": {"name": "b.pdf", "file": b64(NEW_CV)}}
    )
    _, body = await read(session, server.base_url, "AE.2")
    assert body["resume"]["name"] == "b.pdf" and body["resume"]["url"] != old_link
    # the link read before the new upload still serves the file it was given for
    assert (await download(session, old_link))[:2] == (200, OLD_CV)
    assert (await download(session, body["resume"]["url"]))[:2] == (200, NEW_CV)
    clock.now += 899.0  # the sandbox's clock, not this machine's
    assert (await download(session, old_link))[0] == 200
    clock.now += 1.0
    status, answer, _ = await download(session, old_link)
    assert status == 403 and json.loads(answer)["error"] == "link_expired"
    assert (await download(session, f"{server.base_url}/_sandbox/files/made-up"))[0] == 403
    # read again: a fresh link
    _, body = await read(session, server.base_url, "AE.2")
    assert (await download(session, body["resume"]["url"]))[:2] == (200, NEW_CV)
    # downloads are not API requests: only the GETs and PATCHes are recorded
    assert [r.method for r in state.requests] == ["PATCH", "GET", "PATCH", "GET", "GET"]


async def test_a_deleted_candidate_answers_its_uid_alone(
    server: SandboxServer, session: aiohttp.ClientSession, state: SandboxState
) -> None:
    state.candidates["DL.1"] = {
        "uid": "DL.1",
        "first_name": "Gone",
        "deleted": True,
        "resume": {"name": "gone.pdf", "file": b64(OLD_CV)},
    }
    assert await read(session, server.base_url, "DL.1") == (200, {"uid": "DL.1", "deleted": True})


async def test_reads_are_recorded_as_gets_and_refused_like_patches(
    server: SandboxServer, session: aiohttp.ClientSession, state: SandboxState
) -> None:
    assert await read(session, server.base_url, "AE.2") == (
        200,
        {"uid": "AE.2", "first_name": "Noa"},
    )
    status, body = await read(session, server.base_url, "ZZ.1")
    assert (status, body["error"]) == (404, "candidate_not_found")
    async with session.get(f"{server.base_url}/candidates/AE.2") as resp:  # no token
        assert resp.status == 401
        assert (await resp.json())["error"] == "unauthorized"
    status, body = await read(session, server.base_url, "MG.1")
    assert (status, body["error"]) == (401, "duplicate_candidate")
    assert (await read(session, server.base_url, "FL.1"))[0] == 503
    seen = [(r.method, r.uid, r.status, r.token_ok) for r in state.requests]
    assert seen == [
        ("GET", "AE.2", 200, True),
        ("GET", "ZZ.1", 404, True),
        ("GET", "AE.2", 401, False),
        ("GET", "MG.1", 401, True),
        ("GET", "FL.1", 503, True),
    ]
    assert state.applied == [] and state.arrived == 5


async def test_real_id_looks_up_the_web_page_number(session: aiohttp.ClientSession) -> None:
    state = load_seed()
    async with SandboxServer(state) as srv:
        status, body = await read(session, srv.base_url, "61459710", REAL_ID)
        assert status == 200 and body["uid"] == "8D.F29B0"
        assert body["URL"].endswith("/can/61459710") and body["person_uid"]
        assert body["first_name"] == "Carlos" and "address" not in body
        # the header's value is not case sensitive; its name never is (HTTP)
        status, lower = await read(
            session, srv.base_url, "61459710", {"identifier_type": "real_id"}
        )
        assert status == 200 and lower["uid"] == "8D.F29B0"
        status, body = await read(session, srv.base_url, "99999999", REAL_ID)
        assert (status, body["error"]) == (404, "candidate_not_found")
        # without the header the number is taken for a uid
        status, body = await read(session, srv.base_url, "61459710")
        assert (status, body["error"]) == (404, "candidate_not_found")
        # a uid is not a web-page number
        assert (await read(session, srv.base_url, "8D.F29B0", REAL_ID))[0] == 404
        # a candidate added while serving is found too
        state.candidates["NW.1"] = {"uid": "NW.1", "URL": "https://app.comeet.co/app/can/7"}
        assert await read(session, srv.base_url, "7", REAL_ID) == (200, state.candidates["NW.1"])
        # the seed's own resumes are served
        _, body = await read(session, srv.base_url, "AE.17934")
        seeded = base64.b64decode(state.candidates["AE.17934"]["resume"]["file"])
        assert body["resume"]["name"] == "dana-cohen-cv-2023.pdf"
        assert (await download(session, body["resume"]["url"]))[:2] == (200, seeded)
    assert [r.uid for r in state.requests][:3] == ["61459710", "61459710", "99999999"]


async def test_reads_count_in_the_same_sliding_window(
    state: SandboxState, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    async with SandboxServer(state, rate=Rate(3, 10.0), clock=clock) as srv:
        statuses = [
            (await read(session, srv.base_url, "AE.2"))[0],
            (await patch(session, srv.base_url, "AE.2", {"note": "n"}))[0],
            (await read(session, srv.base_url, "AE.2"))[0],
        ]
        status, body = await read(session, srv.base_url, "AE.2")  # the fourth in 10 s
        assert statuses == [200, 200, 200]
        assert (status, body["error"]) == (429, "too_many_requests")
        assert (await patch(session, srv.base_url, "AE.2", {"note": "m"}))[0] == 429
        clock.now += 10.0  # the first three have left the window, the two refused remain
        assert (await read(session, srv.base_url, "AE.2"))[0] == 200
    assert state.over_limit == 2
    methods = [(r.method, r.status) for r in state.requests]
    assert methods == [
        ("GET", 200), ("PATCH", 200), ("GET", 200), ("GET", 429), ("PATCH", 429), ("GET", 200)
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("faults", "expected"),
    [(Faults(error_5xx=1.0), "5xx"), (Faults(rate_429=1.0, retry_after=7), "429")],
)
async def test_injected_faults_apply_to_reads(
    state: SandboxState, session: aiohttp.ClientSession, faults: Faults, expected: str
) -> None:
    async with (
        SandboxServer(state, faults=faults) as srv,
        session.get(f"{srv.base_url}/candidates/AE.2", headers=auth()) as resp,
    ):
        status, retry_after = resp.status, resp.headers.get("Retry-After")
    if expected == "5xx":
        assert status in (500, 502, 503)
    else:
        assert (status, retry_after) == (429, "7")
    assert [r.method for r in state.requests] == ["GET"]


async def test_a_dropped_read_gets_no_answer(
    state: SandboxState, session: aiohttp.ClientSession
) -> None:
    async with SandboxServer(state, faults=Faults(drop=1.0)) as srv:
        with pytest.raises(aiohttp.ClientError):
            await read(session, srv.base_url, "AE.2")
    # aiohttp itself asks a GET again once after a disconnect: each arrival is dropped
    seen = [(r.method, r.status) for r in state.requests]
    assert seen and set(seen) == {("GET", 0)}


def test_the_threaded_sandbox_answers_reads_by_web_page_number() -> None:
    with ThreadedSandbox(load_seed()) as sb:
        request = urllib.request.Request(
            f"{sb.base_url}/candidates/61450053", headers={**auth(), **REAL_ID}
        )
        with urllib.request.urlopen(request, timeout=5) as resp:
            body = json.loads(resp.read())
        with urllib.request.urlopen(body["resume"]["url"], timeout=5) as resp:
            cv = resp.read()
    assert body["uid"] == "AE.17934" and body["resume"]["name"] == "dana-cohen-cv-2023.pdf"
    assert cv.startswith(b"%PDF-1.4\n% Dana Cohen")
    assert [(r.method, r.uid) for r in sb.state.requests] == [("GET", "61450053")]
