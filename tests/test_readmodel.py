"""The read model mapped to the write fields, and reads sent through the run's retrier
(aioresponses on virtual time: retries, the REAL_ID header, and the shared rate limit)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aioresponses import CallbackResult, aioresponses
from hypothesis import given
from hypothesis import strategies as st
from yarl import URL

from bulk_update.auth import Credentials, TokenMinter
from bulk_update.client import ComeetClient, Kind
from bulk_update.limiter import SlidingWindowLimiter
from bulk_update.models import Outcome, Patch, Rate
from bulk_update.pool import run_pool
from bulk_update.readmodel import (
    RESUME_LINK_TTL_S,
    CandidateRead,
    NotReadable,
    ResumeLink,
    holds_same,
    normalised,
    parse_candidate,
    read_candidate,
)
from bulk_update.retrying import Retrier, RetryPolicy, Tries
from bulk_update.schema import PROSPECT_STATUSES

from .test_client import CompatResponse
from .virtual_time import VirtualClock, run_virtual

BASE = "https://api.example.test"

# -- the mapping ---------------------------------------------------------------------------

ANSWER = {
    "uid": "AE.17934",
    "person_uid": "P.1",
    "first_name": "Dana",
    "middle_name": None,
    "last_name": "Levi",
    "email": "dana@example.com",
    "phone": "+972501234567",
    "mobile_phone": "",
    "linkedin_url": "https://www.linkedin.com/in/dana",
    "prospect_status": "Contacted",
    "id_number": "012345678",
    "status": "Active",
    "URL": "https://app.comeet.co/app/can/61459710",
    "source_contact": {
        "uid": "SC.1",
        "first_name": "Noa",
        "last_name": "Cohen",
        "email": "noa@agency.example",
    },
    "resume": {"name": "dana.pdf", "url": "https://files.example/abc?sig=1"},
}

NOT_IN_THE_READ_MODEL = [
    "custom_fields.Team",
    "address.city",
    "address.country",
    "salary_expectations",
    "partner_candidate_id",
    "picture",
    "links",
    "files",
    "note",
]


def test_a_full_answer_maps_to_the_write_fields() -> None:
    read = parse_candidate(ANSWER, read_at=1000.0)
    held = read.holds(
        [
            "first_name",
            "middle_name",
            "last_name",
            "email",
            "phone",
            "mobile_phone",
            "linkedin_url",
            "prospect_status",
            "national_id",
            "source_contact.full_name",
            "source_contact.email",
            "resume",
        ]
    )
    assert held == {
        "first_name": "Dana",
        "middle_name": None,  # null: was empty
        "last_name": "Levi",
        "email": "dana@example.com",
        "phone": "+972501234567",
        "mobile_phone": None,  # "": was empty
        "linkedin_url": "https://www.linkedin.com/in/dana",
        "prospect_status": "Contacted",
        "national_id": "012345678",  # read as id_number
        "source_contact.full_name": "Noa Cohen",  # first and last joined by a space
        "source_contact.email": "noa@agency.example",
        "resume": ResumeLink("dana.pdf", "https://files.example/abc?sig=1", 1000.0),
    }
    assert read.uid == "AE.17934"
    assert not read.deleted


def test_holds_keeps_the_order_of_the_fields_asked() -> None:
    paths = ["note", "email", "custom_fields.Team", "first_name"]
    assert list(parse_candidate(ANSWER).holds(paths)) == paths


@pytest.mark.parametrize("path", NOT_IN_THE_READ_MODEL)
def test_fields_the_read_model_lacks_are_not_readable_with_the_reason(path: str) -> None:
    held = parse_candidate(ANSWER).held(path)
    assert isinstance(held, NotReadable)
    assert "not return" in held.reason


def test_each_missing_field_gives_its_own_reason() -> None:
    read = parse_candidate(ANSWER)
    reasons = {p: read.held(p) for p in NOT_IN_THE_READ_MODEL}
    assert reasons["custom_fields.Team"] == NotReadable(
        "Comeet does not return custom fields when a candidate is read"
    )
    assert reasons["address.city"] == reasons["address.country"]
    assert "the address" in str(reasons["address.city"])
    assert "added, never replaced" in str(reasons["note"])
    assert read.held("source_contact.phone") == NotReadable(
        "Comeet returns no phone for the source contact when read"
    )
    assert isinstance(read.held("updated_by.name"), NotReadable)
    assert read.held("favourite_colour") == NotReadable(
        "'favourite_colour' is not a field Comeet's read model has"
    )


def test_a_field_the_answer_does_not_carry_is_not_readable_never_empty() -> None:
    read = parse_candidate({"uid": "AE.1", "first_name": "Dana"})
    assert read.held("first_name") == "Dana"
    assert read.held("mobile_phone") == NotReadable("the answer did not carry mobile_phone")
    assert read.held("national_id") == NotReadable("the answer did not carry id_number")
    for path in ("source_contact.full_name", "source_contact.email", "resume"):
        held = read.held(path)
        assert isinstance(held, NotReadable)
        assert "permission" in held.reason, path


def test_null_source_contact_and_resume_were_empty() -> None:
    read = parse_candidate({"uid": "AE.1", "source_contact": None, "resume": None})
    assert read.holds(["source_contact.full_name", "source_contact.email", "resume"]) == {
        "source_contact.full_name": None,
        "source_contact.email": None,
        "resume": None,
    }


@pytest.mark.parametrize(
    ("contact", "full_name"),
    [
        ({"first_name": "Noa", "last_name": ""}, "Noa"),
        ({"first_name": None, "last_name": "Cohen"}, "Cohen"),
        ({"first_name": "", "last_name": None}, None),
    ],
)
def test_a_source_contact_with_one_name_is_that_name(
    contact: dict[str, Any], full_name: str | None
) -> None:
    read = parse_candidate({"uid": "AE.1", "source_contact": contact})
    assert read.held("source_contact.full_name") == full_name
    assert isinstance(read.held("source_contact.email"), NotReadable)  # no email key


def test_a_deleted_candidate_carries_only_its_uid() -> None:
    read = parse_candidate({"uid": "AE.1", "deleted": True})
    assert read == CandidateRead("AE.1", deleted=True)
    held = read.held("first_name")
    assert isinstance(held, NotReadable)
    assert "deleted" in held.reason


def test_values_of_an_unknown_shape_are_not_guessed() -> None:
    read = parse_candidate(
        {"uid": 17934, "phone": {"number": "1"}, "mobile_phone": 972501234567, "resume": "x"}
    )
    assert read.uid == "17934"
    assert read.held("mobile_phone") == "972501234567"
    for path in ("phone", "resume"):
        held = read.held(path)
        assert isinstance(held, NotReadable)
        assert "form" in held.reason


def test_a_resume_link_expires_about_15_minutes_after_the_read() -> None:
    link = parse_candidate(ANSWER, read_at=5000.0).held("resume")
    assert isinstance(link, ResumeLink)
    assert link.expires_at == 5000.0 + RESUME_LINK_TTL_S == 5900.0
    assert "sig=1" not in repr(link)  # the link is a key to the file: never in a log


# -- normalisation and comparison ----------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "held", "sent", "same"),
    [
        ("prospect_status", "not  INTERESTED", "Not interested", True),
        ("prospect_status", "Contacted", "Responded", False),
        ("first_name", " Dana\u200b", "Dana", True),  # trimmed like a cell
        ("first_name", "dana", "Dana", False),  # names keep their case
        ("email", "Dana@example.com", "dana@example.com", False),  # sent as written
        ("national_id", "012345678", "12345678", False),  # leading zeros matter
        ("first_name", None, "Dana", False),  # was empty
        ("custom_fields.Team", NotReadable("x"), "Core", False),  # never compared
    ],
)
def test_holds_same_after_the_patch_normalisation(
    path: str, held: Any, sent: str, same: bool
) -> None:
    assert holds_same(path, held, sent) is same


def test_a_resume_link_is_never_the_same_as_a_file() -> None:
    link = ResumeLink("cv.pdf", "https://files.example/cv", 0.0)
    assert not holds_same("resume", link, {"name": "cv.pdf", "file": "AAAA"})


@given(st.sampled_from(PROSPECT_STATUSES), st.sampled_from([str.lower, str.upper, str.title]))
def test_a_prospect_status_in_any_case_normalises_to_its_canonical_spelling(
    status: str, case: Any
) -> None:
    assert normalised("prospect_status", f"  {case(status)} ") == status


@given(st.text())
def test_normalised_is_idempotent(text: str) -> None:
    once = normalised("prospect_status", text)
    assert normalised("prospect_status", once) == once
    assert normalised("first_name", normalised("first_name", text)) == normalised(
        "first_name", text
    )


# -- reads through the retrier, on virtual time --------------------------------------------


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    start: float
    end: float = -1.0


class Server:
    """aioresponses callbacks answering from a script, each request lasting `duration`."""

    def __init__(
        self,
        clock: VirtualClock,
        script: Sequence[Any],
        duration: float = 0.2,
        method: str = "GET",
    ) -> None:
        self.clock = clock
        self.method = method
        self.script = list(script)
        self.duration = duration
        self.seen: list[Seen] = []

    async def respond(self, url: URL, **kwargs: Any) -> CallbackResult:
        seen = Seen(self.method, url.raw_path, kwargs["headers"], self.clock.now)
        self.seen.append(seen)
        await asyncio.sleep(self.duration)
        seen.end = self.clock.now
        step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(step, BaseException):
            raise step
        return step


def ok(body: dict[str, Any]) -> CallbackResult:
    return CallbackResult(status=200, payload=body, response_class=CompatResponse)


def answer(status: int, error: str = "", headers: dict[str, str] | None = None) -> CallbackResult:
    body = {"status": status, "error": error, "message": f"said {status}"}
    return CallbackResult(
        status=status, payload=body, headers=headers or {}, response_class=CompatResponse
    )


class CountingTokens:
    def __init__(self, client: ComeetClient) -> None:
        self.client = client
        self.refreshes = 0

    def refresh_token(self) -> None:
        self.refreshes += 1
        self.client.refresh_token()


@dataclass
class ReadRun:
    reading: Any
    server: Server
    refreshes: int
    retrier: Retrier
    end: float


ROOMY = Rate(100, 60.0)


def read_with(
    script: Sequence[Any],
    *,
    uid: str = "AE.1",
    real_id: bool = False,
    retry: RetryPolicy = RetryPolicy(max_attempts=4, base_s=1.0, max_s=1.0),
    rate: Rate = ROOMY,
) -> ReadRun:
    async def main(clock: VirtualClock) -> ReadRun:
        server = Server(clock, script)
        async with aiohttp.ClientSession() as session:
            tokens = TokenMinter(Credentials("key", "secret" * 6), ttl_s=600, clock=clock.clock)
            client = ComeetClient(session, BASE, tokens, user_agent="t", clock=lambda: 1e9)
            counting = CountingTokens(client)
            limiter = SlidingWindowLimiter(rate, clock=clock.clock)
            retrier = Retrier(counting, limiter, retry, rng=random.Random(3))
            with aioresponses() as mock:
                mock.get(f"{BASE}/candidates/{uid}", callback=server.respond, repeat=True)
                reading = await read_candidate(
                    retrier, client, uid, real_id=real_id, clock=clock.clock
                )
        return ReadRun(reading, server, counting.refreshes, retrier, clock.now)

    return run_virtual(main)


def test_a_read_retries_server_errors_and_dropped_connections() -> None:
    run = read_with([answer(503), aiohttp.ServerDisconnectedError(), ok({"uid": "AE.1"})])
    assert run.reading.candidate == CandidateRead("AE.1")
    assert run.reading.attempts == 3
    assert len(run.server.seen) == 3


def test_a_read_429_waits_for_retry_after() -> None:
    run = read_with([answer(429, "too_many_requests", {"Retry-After": "30"}), ok(ANSWER)])
    first, second = run.server.seen
    assert second.start >= first.end + 30
    assert run.reading.candidate.held("first_name") == "Dana"


def test_a_read_401_mints_a_new_token_once_then_a_second_halts() -> None:
    run = read_with([answer(401, "unauthorized"), ok({"uid": "AE.1"})])
    assert (run.refreshes, run.reading.attempts) == (1, 2)
    assert run.reading.candidate is not None
    refused = read_with([answer(401, "unauthorized")])
    assert refused.reading.response is None and refused.reading.candidate is None
    assert refused.retrier.abort_reason.startswith("the API refused the credentials twice")


def test_a_read_out_of_attempts_has_no_candidate_and_the_last_answer() -> None:
    run = read_with([answer(503)], retry=RetryPolicy(max_attempts=2, base_s=0, max_s=0))
    assert run.reading.candidate is None
    assert (run.reading.response.kind, run.reading.attempts) == (Kind.RETRY, 2)


@pytest.mark.parametrize(("status", "kind"), [(404, Kind.NOT_FOUND), (403, Kind.REJECTED)])
def test_a_read_refused_is_final_at_once(status: int, kind: Kind) -> None:
    run = read_with([answer(status, "x")])
    assert (run.reading.response.kind, run.reading.attempts) == (kind, 1)


def test_a_read_by_the_web_page_number_carries_the_header_and_the_real_uid() -> None:
    run = read_with([ok({"uid": "B4.B5F21"})], uid="61459710", real_id=True)
    [seen] = run.server.seen
    assert (seen.path, seen.headers["IDENTIFIER_TYPE"]) == ("/candidates/61459710", "REAL_ID")
    assert run.reading.asked == "61459710"
    assert run.reading.candidate.uid == "B4.B5F21"


def test_a_row_s_tries_count_its_read() -> None:
    async def main(clock: VirtualClock) -> Tries:
        tries = Tries(attempts=1)
        async with aiohttp.ClientSession() as session:
            tokens = TokenMinter(Credentials("key", "secret" * 6), ttl_s=600, clock=clock.clock)
            client = ComeetClient(session, BASE, tokens, user_agent="t")
            retrier = Retrier(client, SlidingWindowLimiter(Rate(5, 1.0), clock=clock.clock))
            with aioresponses() as mock:
                mock.get(
                    f"{BASE}/candidates/AE.1", callback=Server(clock, [ok({"uid": "AE.1"})]).respond
                )
                await read_candidate(retrier, client, "AE.1", tries=tries)
        return tries

    assert run_virtual(main).attempts == 2


def test_reads_and_patches_together_never_exceed_the_limit_in_any_window() -> None:
    rate = Rate(5, 10.0)
    uids = [f"AE.{i}" for i in range(12)]
    rows = list(enumerate(uids, start=2))

    async def main(clock: VirtualClock) -> list[Seen]:
        # Some reads and patches are throttled or fail once: retries count as well.
        reads = Server(clock, [answer(503), ok({"uid": "AE.0"})], duration=0.3)
        patches = Server(clock, [answer(502), ok({})], duration=0.7, method="PATCH")
        async with aiohttp.ClientSession() as session:
            tokens = TokenMinter(Credentials("key", "secret" * 6), ttl_s=600, clock=clock.clock)
            client = ComeetClient(session, BASE, tokens, user_agent="t")
            limiter = SlidingWindowLimiter(rate, clock=clock.clock)
            retry = RetryPolicy(max_attempts=3, base_s=0.1, max_s=0.1)
            retrier = Retrier(client, limiter, retry, rng=random.Random(1))
            with aioresponses() as mock:
                for uid in uids:
                    mock.get(f"{BASE}/candidates/{uid}", callback=reads.respond, repeat=True)
                    mock.patch(f"{BASE}/candidates/{uid}", callback=patches.respond, repeat=True)
                pool = asyncio.create_task(
                    run_pool(
                        [Patch(i, uid, {"first_name": "x"}, ("first_name",)) for i, uid in rows],
                        sender=client,
                        limiter=limiter,
                        concurrency=3,
                        retry=retry,
                        rng=random.Random(2),
                    )
                )
                readings = await asyncio.gather(
                    *(read_candidate(retrier, client, uid) for uid in uids)
                )
                result = await pool
        assert all(r.candidate is not None for r in readings)
        assert {r.outcome for r in result.results} == {Outcome.UPDATED}
        return reads.seen + patches.seen

    seen = run_virtual(main)
    assert {s.method for s in seen} == {"GET", "PATCH"}
    assert len(seen) >= 24 + 2  # every read and patch, and the retries
    # The worst window [t, t + period) holds every request that started before t + period
    # and ended at or after t; it is fullest just after some request ends.
    for t in (s.end for s in seen):
        inside = [s for s in seen if s.start < t + rate.period - 1e-9 and s.end >= t]
        assert len(inside) <= rate.limit, (t, len(inside))
    # And the budget is used: 26+ requests at 5 per 10 s need five more windows, not many.
    assert max(s.end for s in seen) < 6 * rate.period
