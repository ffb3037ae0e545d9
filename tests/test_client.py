"""The response classifier as a status table (no HTTP), and one PATCH through aiohttp."""

from __future__ import annotations

import email.utils
import inspect
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import aiohttp
import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aioresponses import aioresponses
from hypothesis import given, settings
from hypothesis import strategies as st
from yarl import URL

from bulk_update.auth import Credentials, TokenMinter
from bulk_update.client import ComeetClient, Kind, Response, classify, clock_offset

BASE = "https://api.example.test"
KEY = "ak_test_0123456789"
SECRET = "partner-secret-for-tests-0123456789abcdef"
UA = "bulk-update/9.9.9"
NOW = 1_445_412_480.0  # Wed, 21 Oct 2015 07:28:00 GMT


def err(status: int, error: str, message: str, **extra: Any) -> bytes:
    return json.dumps({"status": status, "error": error, "message": message, **extra}).encode()


LONG = "x" * 1200

TABLE: list[tuple[str, int, dict[str, str], bytes, Response]] = [
    ("200 empty body", 200, {}, b"", Response(Kind.OK, 200)),
    ("201 json", 201, {}, b'{"uid": "AE.1"}', Response(Kind.OK, 201)),
    ("204", 204, {}, b"", Response(Kind.OK, 204)),
    ("200 not json", 200, {}, b"<html>ok</html>", Response(Kind.OK, 200)),
    (
        "404 not_found",
        404,
        {},
        err(404, "not_found", "The provided ID could not be found"),
        Response(Kind.NOT_FOUND, 404, "not_found", "The provided ID could not be found"),
    ),
    (
        "404 candidate_not_found, keys reordered",
        404,
        {},
        b'{"error":"candidate_not_found","message":"Candidate not found","status":404}',
        Response(Kind.NOT_FOUND, 404, "candidate_not_found", "Candidate not found"),
    ),
    (
        "401 duplicate_candidate",
        401,
        {},
        err(401, "duplicate_candidate", "Candidate was merged"),
        Response(Kind.REJECTED, 401, "duplicate_candidate", "Candidate was merged"),
    ),
    (
        "401 other",
        401,
        {},
        err(401, "unauthorized", "Invalid token"),
        Response(Kind.AUTH, 401, "unauthorized", "Invalid token"),
    ),
    ("401 no body", 401, {}, b"", Response(Kind.AUTH, 401, "", "HTTP 401 Unauthorized")),
    (
        "400 error body",
        400,
        {},
        err(400, "invalid_email", "email is not valid"),
        Response(Kind.REJECTED, 400, "invalid_email", "email is not valid"),
    ),
    (
        "403",
        403,
        {},
        err(403, "no_permission", "No permission"),
        Response(Kind.REJECTED, 403, "no_permission", "No permission"),
    ),
    (
        "409 with an extra key",
        409,
        {},
        err(409, "candidate_post_conflict", "Conflict", candidate_uid="AE.2"),
        Response(Kind.REJECTED, 409, "candidate_post_conflict", "Conflict"),
    ),
    (
        "422 raw text cut to 500",
        422,
        {},
        LONG.encode(),
        Response(Kind.REJECTED, 422, "", "x" * 500),
    ),
    (
        "400 json of another shape is raw",
        400,
        {},
        b'{"detail": "bad"}',
        Response(Kind.REJECTED, 400, "", '{"detail": "bad"}'),
    ),
    (
        "400 json list is raw",
        400,
        {},
        b'["a", "b"]',
        Response(Kind.REJECTED, 400, "", '["a", "b"]'),
    ),
    (
        "400 bytes that are not utf-8",
        400,
        {},
        b"bad \xff byte",
        Response(Kind.REJECTED, 400, "", "bad \ufffd byte"),
    ),
    (
        "429 Retry-After seconds",
        429,
        {"Retry-After": "17"},
        err(429, "too_many_requests", "Slow down"),
        Response(Kind.RATE_LIMITED, 429, "too_many_requests", "Slow down", 17.0),
    ),
    (
        "429 retry-after in lower case",
        429,
        {"retry-after": "3"},
        b"",
        Response(Kind.RATE_LIMITED, 429, "", "HTTP 429 Too Many Requests", 3.0),
    ),
    (
        "429 Retry-After HTTP date",
        429,
        {"Retry-After": email.utils.formatdate(NOW + 42, usegmt=True)},
        b"",
        Response(Kind.RATE_LIMITED, 429, "", "HTTP 429 Too Many Requests", 42.0),
    ),
    (
        "429 Retry-After date in the past",
        429,
        {"Retry-After": email.utils.formatdate(NOW - 42, usegmt=True)},
        b"",
        Response(Kind.RATE_LIMITED, 429, "", "HTTP 429 Too Many Requests", 0.0),
    ),
    (
        "429 Retry-After invalid",
        429,
        {"Retry-After": "soon"},
        b"",
        Response(Kind.RATE_LIMITED, 429, "", "HTTP 429 Too Many Requests", None),
    ),
    (
        "429 Retry-After negative",
        429,
        {"Retry-After": "-5"},
        b"",
        Response(Kind.RATE_LIMITED, 429, "", "HTTP 429 Too Many Requests", None),
    ),
    (
        "429 no Retry-After",
        429,
        {},
        err(429, "too_many_requests", "Slow down"),
        Response(Kind.RATE_LIMITED, 429, "too_many_requests", "Slow down", None),
    ),
    ("500", 500, {}, err(500, "internal", "Oops"), Response(Kind.RETRY, 500, "internal", "Oops")),
    (
        "500 not json",
        500,
        {},
        b"<html>Internal Server Error</html>",
        Response(Kind.RETRY, 500, "", "<html>Internal Server Error</html>"),
    ),
    ("502", 502, {}, b"Bad Gateway", Response(Kind.RETRY, 502, "", "Bad Gateway")),
    ("503 empty", 503, {}, b"", Response(Kind.RETRY, 503, "", "HTTP 503 Service Unavailable")),
    (
        "302 not followed",
        302,
        {"Location": "https://www.comeet.com/"},
        b"",
        Response(
            Kind.RETRY, 302, "", "HTTP 302 Found, redirect to https://www.comeet.com/ not followed"
        ),
    ),
    ("408", 408, {}, b"", Response(Kind.RETRY, 408, "", "HTTP 408 Request Timeout")),
]


@pytest.mark.parametrize(
    ("status", "headers", "body", "expected"),
    [case[1:] for case in TABLE],
    ids=[case[0] for case in TABLE],
)
def test_classify(status: int, headers: dict[str, str], body: bytes, expected: Response) -> None:
    assert classify(status, headers, body, now=NOW) == expected


def test_retry_after_date_uses_the_current_time_without_now() -> None:
    response = classify(429, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, b"")
    assert response.retry_after == 0.0  # long past


# -- the clock: every answer's Date against this machine's ---------------------------------


@pytest.mark.parametrize(
    ("date", "offset"),
    [
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
        ("Wed, 21 Oct 2015 07:43:00 GMT", 900.0),  # Comeet's clock 15 min ahead of ours
        ("Wed, 21 Oct 2015 07:27:30 GMT", -30.0),
        ("Wed, 21 Oct 2015 07:28:00 -0000", 0.0),  # zone-less: GMT anyway
        ("Wednesday, 21-Oct-15 07:43:00 GMT", 900.0),  # RFC 850, obsolete but allowed
        ("yesterday", None),
        ("", None),
        (None, None),
    ],
)
def test_clock_offset(date: str | None, offset: float | None) -> None:
    assert clock_offset(date, NOW) == offset


def test_classify_reads_the_date_of_every_answer() -> None:
    ahead = {"Date": "Wed, 21 Oct 2015 07:43:00 GMT"}
    for status, body in [(200, b""), (401, err(401, "unauthorized", "expired")), (429, b"")]:
        assert classify(status, ahead, body, now=NOW).clock_offset_s == 900.0
    # Lower-case, as a plain dict or a proxy may give it.
    assert classify(503, {"date": ahead["Date"]}, b"", now=NOW).clock_offset_s == 900.0
    assert classify(200, {}, b"", now=NOW).clock_offset_s is None


# -- ComeetClient over aiohttp ---------------------------------------------------------------


class _SentWriter:
    """Stands in for the request writer of a request already sent."""

    output_size = 0


class CompatResponse(aiohttp.ClientResponse):
    """aioresponses 0.7.9 builds responses without the `stream_writer` aiohttp 3.14 requires
    (pnuckowski/aioresponses#289); supply one so mocked responses can be built."""

    def __init__(self, method: str, url: URL, **kwargs: Any) -> None:
        if "stream_writer" in _RESPONSE_PARAMS:
            kwargs.setdefault("stream_writer", _SentWriter())
        super().__init__(method, url, **kwargs)


_RESPONSE_PARAMS = inspect.signature(aiohttp.ClientResponse.__init__).parameters


def mock_patch(mock: aioresponses, url: str | URL, **kwargs: Any) -> None:
    mock.patch(url, response_class=CompatResponse, **kwargs)


class FixedClock:
    now = 2_000_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def tokens() -> TokenMinter:
    return TokenMinter(Credentials(KEY, SECRET), ttl_s=600, clock=FixedClock())


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def client_for(
    session: aiohttp.ClientSession, tokens: TokenMinter, base: str = BASE
) -> ComeetClient:
    return ComeetClient(session, base, tokens, timeout_s=7, user_agent=UA)


async def test_patch_sends_json_with_bearer_token_and_headers(
    session: aiohttp.ClientSession, tokens: TokenMinter
) -> None:
    body = {"first_name": "Dana", "custom_fields": {"Team": "Núcleo"}}
    with aioresponses() as mock:
        mock_patch(mock, f"{BASE}/candidates/AE.17934", status=200, payload={"uid": "AE.17934"})
        response = await client_for(session, tokens, BASE + "/").patch("AE.17934", body)
    assert response == Response(Kind.OK, 200)
    [(key, calls)] = mock.requests.items()
    assert key == ("PATCH", URL(f"{BASE}/candidates/AE.17934"))
    kwargs = calls[0].kwargs
    assert kwargs["json"] == body
    assert kwargs["allow_redirects"] is False
    assert kwargs["timeout"] == aiohttp.ClientTimeout(total=7)
    headers = kwargs["headers"]
    assert headers["User-Agent"] == UA
    assert headers["Content-Type"] == "application/json"
    assert headers["Accept"] == "application/json"
    scheme, token = headers["Authorization"].split(" ")
    assert scheme == "Bearer"
    decoded = jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_exp": False})
    assert decoded == {"iss": KEY, "exp": 2_000_000_600}


async def test_patch_compares_the_answers_date_with_the_injected_clock(
    session: aiohttp.ClientSession, tokens: TokenMinter
) -> None:
    client = ComeetClient(session, BASE, tokens, user_agent=UA, clock=lambda: NOW)
    expired = err(401, "unauthorized", "the token has expired")
    with aioresponses() as mock:
        date = {"Date": "Wed, 21 Oct 2015 07:43:00 GMT"}  # NOW + 15 min
        mock_patch(mock, f"{BASE}/candidates/AE.1", status=401, body=expired, headers=date)
        response = await client.patch("AE.1", {})
    assert response == Response(Kind.AUTH, 401, "unauthorized", "the token has expired")
    assert response.clock_offset_s == 900.0


async def test_patch_takes_the_token_right_before_sending(
    session: aiohttp.ClientSession, tokens: TokenMinter
) -> None:
    client = client_for(session, tokens)
    with aioresponses() as mock:
        mock_patch(mock, f"{BASE}/candidates/AE.1", status=204, repeat=True)
        await client.patch("AE.1", {})
        FixedClock.now += 590  # the cached token is now within its last minute
        try:
            await client.patch("AE.1", {})
        finally:
            FixedClock.now -= 590
    [calls] = mock.requests.values()
    tokens_sent = [c.kwargs["headers"]["Authorization"] for c in calls]
    assert tokens_sent[0] != tokens_sent[1]


async def test_refresh_token_forces_a_new_token(
    session: aiohttp.ClientSession, tokens: TokenMinter
) -> None:
    client = client_for(session, tokens)
    before = tokens.token()
    FixedClock.now += 10
    try:
        client.refresh_token()
        assert tokens.token() != before
    finally:
        FixedClock.now -= 10


@pytest.mark.parametrize(
    ("uid", "segment"),
    [("A/B%C.D", "A%2FB%25C.D"), ("AE 1?x#y", "AE%201%3Fx%23y"), ("AE.17934", "AE.17934")],
)
async def test_uid_is_one_percent_encoded_path_segment(
    session: aiohttp.ClientSession, tokens: TokenMinter, uid: str, segment: str
) -> None:
    client = client_for(session, tokens)
    assert client.url_for(uid).raw_path == f"/candidates/{segment}"
    with aioresponses() as mock:
        mock_patch(mock, URL(f"{BASE}/candidates/{segment}", encoded=True), status=404)
        response = await client.patch(uid, {"a": 1})
    assert response.kind is Kind.NOT_FOUND
    [(_method, url)] = mock.requests
    assert url.raw_path == f"/candidates/{segment}"


@settings(max_examples=300, deadline=None)
@given(uid=st.text(min_size=1))
def test_url_for_quotes_exactly_as_quote_does(uid: str) -> None:
    # url_for skips quote() for uids it would leave alone: the result must not change.
    client = ComeetClient(None, BASE, None, timeout_s=1, user_agent="t")  # type: ignore[arg-type]
    assert client.url_for(uid).raw_path == f"/candidates/{quote(uid, safe='')}"


async def test_the_encoded_uid_reaches_a_real_server_unchanged(tokens: TokenMinter) -> None:
    seen: list[tuple[str, str, Any]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append((request.raw_path, request.headers["User-Agent"], await request.json()))
        return web.json_response(
            {"status": 400, "message": "bad email", "error": "invalid_email"}, status=400
        )

    app = web.Application()
    app.router.add_route("PATCH", "/{tail:.*}", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            client = client_for(session, tokens, str(server.make_url("/")))
            response = await client.patch("A/B%C.D", {"email": "nope"})
    finally:
        await server.close()
    assert seen == [("/candidates/A%2FB%25C.D", UA, {"email": "nope"})]
    assert response == Response(Kind.REJECTED, 400, "invalid_email", "bad email")


async def test_a_redirect_is_not_followed(
    session: aiohttp.ClientSession, tokens: TokenMinter
) -> None:
    with aioresponses() as mock:
        mock_patch(mock, f"{BASE}/candidates/AE.1", status=302, headers={"Location": f"{BASE}/x"})
        mock_patch(mock, f"{BASE}/x", status=200)
        response = await client_for(session, tokens).patch("AE.1", {})
    assert (response.kind, response.status) == (Kind.RETRY, 302)


@pytest.mark.parametrize(
    ("exception", "error"),
    [
        (TimeoutError(), "timeout"),  # what asyncio.TimeoutError is since 3.11
        (aiohttp.ServerTimeoutError("read timed out"), "timeout"),
        (aiohttp.ClientConnectionError("Connection refused"), "connection_error"),
        (aiohttp.ServerDisconnectedError(), "connection_error"),
        (ConnectionResetError(104, "Connection reset by peer"), "connection_error"),
    ],
)
async def test_network_failures_are_retry_without_status(
    session: aiohttp.ClientSession,
    tokens: TokenMinter,
    exception: BaseException,
    error: str,
) -> None:
    with aioresponses() as mock:
        mock_patch(mock, f"{BASE}/candidates/AE.1", exception=exception)
        response = await client_for(session, tokens).patch("AE.1", {})
    assert (response.kind, response.status, response.error) == (Kind.RETRY, None, error)
    assert response.message


async def test_no_message_ever_carries_the_token(
    session: aiohttp.ClientSession, tokens: TokenMinter
) -> None:
    token = tokens.token()
    leaky = [
        aiohttp.ClientConnectionError(f"failed sending Authorization: Bearer {token}"),
        aiohttp.ClientPayloadError(f"token {token} rejected"),
    ]
    for exception in leaky:
        with aioresponses() as mock:
            mock_patch(mock, f"{BASE}/candidates/AE.1", exception=exception)
            response = await client_for(session, tokens).patch("AE.1", {})
        assert response.kind is Kind.RETRY
        assert token not in response.message
        assert "Bearer" not in response.message


# -- reads (contract section 11) -----------------------------------------------------------


def mock_get(mock: aioresponses, url: str | URL, **kwargs: Any) -> None:
    mock.get(url, response_class=CompatResponse, **kwargs)


async def test_read_gets_the_candidate_with_the_token_and_no_identifier_type(
    session: aiohttp.ClientSession, tokens: TokenMinter
) -> None:
    candidate = {"uid": "AE.17934", "first_name": "Dana", "id_number": "012345678"}
    with aioresponses() as mock:
        mock_get(mock, f"{BASE}/candidates/AE.17934", status=200, payload=candidate)
        response = await client_for(session, tokens).read("AE.17934")
    assert response == Response(Kind.OK, 200)
    assert response.body == candidate
    [(key, calls)] = mock.requests.items()
    assert key == ("GET", URL(f"{BASE}/candidates/AE.17934"))
    kwargs = calls[0].kwargs
    assert kwargs["json"] is None
    assert kwargs["allow_redirects"] is False
    headers = kwargs["headers"]
    assert "IDENTIFIER_TYPE" not in headers
    assert headers["User-Agent"] == UA
    decoded = jwt.decode(
        headers["Authorization"].split(" ")[1],
        SECRET,
        algorithms=["HS256"],
        options={"verify_exp": False},
    )
    assert decoded["iss"] == KEY


async def test_read_by_real_id_sends_the_number_with_identifier_type(
    session: aiohttp.ClientSession, tokens: TokenMinter
) -> None:
    with aioresponses() as mock:
        mock_get(mock, f"{BASE}/candidates/61459710", status=200, payload={"uid": "B4.B5F21"})
        response = await client_for(session, tokens).read("61459710", real_id=True)
    assert response.body == {"uid": "B4.B5F21"}
    [calls] = mock.requests.values()
    assert calls[0].kwargs["headers"]["IDENTIFIER_TYPE"] == "REAL_ID"


@pytest.mark.parametrize("body", [b"<html>proxy login</html>", b"[1, 2]", b"", b'"AE.1"'])
async def test_a_read_answer_that_is_not_a_candidate_object_is_retried(
    session: aiohttp.ClientSession, tokens: TokenMinter, body: bytes
) -> None:
    with aioresponses() as mock:
        mock_get(mock, f"{BASE}/candidates/AE.1", status=200, body=body)
        response = await client_for(session, tokens).read("AE.1")
    assert (response.kind, response.status, response.error) == (Kind.RETRY, 200, "invalid_answer")
    assert response.body is None
    assert body.decode()[:20] in response.message


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (404, err(404, "not_found", "The provided ID could not be found"), Kind.NOT_FOUND),
        (403, err(403, "no_permission", "no permission"), Kind.REJECTED),
        (401, err(401, "unauthorized", "bad token"), Kind.AUTH),
        (429, err(429, "too_many_requests", "slow down"), Kind.RATE_LIMITED),
        (503, b"", Kind.RETRY),
    ],
)
async def test_a_read_is_classified_like_a_patch(
    session: aiohttp.ClientSession, tokens: TokenMinter, status: int, body: bytes, kind: Kind
) -> None:
    with aioresponses() as mock:
        mock_get(mock, f"{BASE}/candidates/AE.1", status=status, body=body)
        response = await client_for(session, tokens).read("AE.1")
    assert (response.kind, response.status, response.body) == (kind, status, None)


async def test_a_dropped_read_is_retry_without_status(
    session: aiohttp.ClientSession, tokens: TokenMinter
) -> None:
    with aioresponses() as mock:
        mock_get(mock, f"{BASE}/candidates/AE.1", exception=aiohttp.ServerDisconnectedError())
        response = await client_for(session, tokens).read("AE.1")
    assert (response.kind, response.status, response.error) == (
        Kind.RETRY,
        None,
        "connection_error",
    )
