"""A note is never sent twice within a run: not after an attempt that got no clear answer."""

from __future__ import annotations

import asyncio
import csv
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

import bulk_update as bu
from bulk_update.auth import Credentials, TokenMinter
from bulk_update.client import ComeetClient, Kind, Response
from bulk_update.models import Outcome
from bulk_update.notes import NOTE_RETRY_WARNING, NoteSender

CREDS = bu.Credentials("key", "secret")


def _sheet(tmp_path: Path, rows: list[list[str]]) -> Path:
    path = tmp_path / "s.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)
    return path


Answer = Callable[[int], web.StreamResponse]  # the attempt's number (1, 2, ...) -> answer


@pytest.fixture
async def api() -> AsyncIterator[tuple[str, list[dict[str, Any]], dict[str, Answer]]]:
    """A stand-in API: answers per uid and attempt, and every body it received."""
    bodies: list[dict[str, Any]] = []
    answers: dict[str, Answer] = {}
    attempts: dict[str, int] = {}

    async def handler(request: web.Request) -> web.StreamResponse:
        uid = request.match_info["uid"]
        bodies.append({"uid": uid, **await request.json()})
        attempts[uid] = attempts.get(uid, 0) + 1
        answer = answers[uid](attempts[uid])
        if isinstance(answer, _Hang):
            await asyncio.sleep(5)  # the client gives up long before
        return answer

    app = web.Application()
    app.router.add_patch("/candidates/{uid}", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/"), bodies, answers
    finally:
        await server.close()


class _Hang(web.Response):
    """An answer that never comes (the client times out)."""


def _ok(attempt: int) -> web.StreamResponse:
    return web.json_response({"uid": "x"})


def _hang_then_ok(attempt: int) -> web.StreamResponse:
    return _Hang() if attempt == 1 else web.json_response({"uid": "x"})


def _error_then_ok(attempt: int) -> web.StreamResponse:
    if attempt == 1:
        return web.json_response({"error": "server_error", "message": "boom"}, status=500)
    return web.json_response({"uid": "x"})


def _always_error(attempt: int) -> web.StreamResponse:
    return web.json_response({"error": "server_error", "message": "boom"}, status=503)


def _throttled_then_ok(attempt: int) -> web.StreamResponse:
    if attempt == 1:
        return web.json_response(
            {"error": "too_many_requests", "message": "slow down"},
            status=429,
            headers={"Retry-After": "0"},
        )
    return web.json_response({"uid": "x"})


def _settings(base_url: str) -> bu.Settings:
    return bu.Settings(base_url=base_url, timeout_s=0.3, retry_base_s=0.0, retry_max_s=0.0)


async def test_after_a_timeout_the_row_is_retried_without_its_note(
    tmp_path: Path, api: tuple[str, list[dict[str, Any]], dict[str, Answer]]
) -> None:
    base_url, bodies, answers = api
    answers.update(
        {
            "AE.1": _hang_then_ok,
            "AE.2": _error_then_ok,
            "AE.3": _throttled_then_ok,
            "AE.4": _always_error,
        }
    )
    path = _sheet(
        tmp_path,
        [
            ["uid", "email", "note"],
            ["AE.1", "a@example.com", "Called"],  # timeout, then without the note
            ["AE.2", "b@example.com", "Called"],  # 500, then without the note
            ["AE.3", "c@example.com", "Called"],  # 429 applied nothing: the note goes again
            ["AE.4", "d@example.com", "Called"],  # 503 every time: failed, and it says why
        ],
    )
    settings = _settings(base_url)
    with bu.Journal.open(tmp_path / "state", base_url=base_url, api_key="key") as journal:
        the_plan = bu.plan(bu.load(path), settings, journal=journal)
        summary = await bu.run_async(the_plan, settings, CREDS, report_path=False, journal=journal)
        by_uid = {r.uid: r for r in summary.results}
        note = journal.fingerprint("Called")
        assert journal.notes_many(["AE.1", "AE.2", "AE.3", "AE.4"]) == {
            "AE.1": {note: "pending"},  # it may be there: never sent again, by any run
            "AE.2": {note: "pending"},
            "AE.3": {note: "applied"},
            "AE.4": {note: "pending"},
        }
        assert journal.applied("AE.1") == {"email": journal.fingerprint("a@example.com")}
    sent = {uid: [b for b in bodies if b["uid"] == uid] for uid in ("AE.1", "AE.2", "AE.3")}
    for uid in ("AE.1", "AE.2"):
        first, second = sent[uid]
        assert first["note"] == "Called" and "note" not in second
        assert second["email"] == first["email"]
        assert by_uid[uid].outcome is Outcome.UPDATED
        assert NOTE_RETRY_WARNING in by_uid[uid].message
    assert [b["note"] for b in sent["AE.3"]] == ["Called", "Called"]
    assert by_uid["AE.3"].outcome is Outcome.UPDATED and not by_uid["AE.3"].message
    failed = by_uid["AE.4"]
    assert failed.outcome is Outcome.FAILED and failed.attempts == settings.max_attempts
    assert NOTE_RETRY_WARNING in failed.message and "boom" in failed.message
    assert [("note" in b) for b in bodies if b["uid"] == "AE.4"] == [True] + [False] * (
        settings.max_attempts - 1
    )


async def test_a_row_with_only_a_note_fails_rather_than_send_it_again(
    tmp_path: Path, api: tuple[str, list[dict[str, Any]], dict[str, Answer]]
) -> None:
    base_url, bodies, answers = api
    answers.update({"AE.1": _hang_then_ok, "AE.2": _ok})
    path = _sheet(tmp_path, [["uid", "note"], ["AE.1", "Called"], ["AE.2", "Called"]])
    settings = _settings(base_url)
    summary = await bu.run_async(
        bu.plan(bu.load(path), settings), settings, CREDS, report_path=False
    )
    by_uid = {r.uid: r for r in summary.results}
    assert [b["uid"] for b in bodies].count("AE.1") == 1  # no second attempt
    failed = by_uid["AE.1"]
    assert (failed.outcome, failed.error, failed.attempts) == (
        Outcome.FAILED,
        "note_not_resent",
        2,
    )
    assert "may have been added" in failed.message
    assert by_uid["AE.2"].outcome is Outcome.UPDATED


class _Scripted:
    """A sender answering from a script, recording the bodies it was given."""

    def __init__(self, *responses: Response) -> None:
        self.responses = list(responses)
        self.bodies: list[dict[str, Any]] = []

    async def patch(self, uid: str, body: Any) -> Response:
        self.bodies.append(dict(body))
        return self.responses.pop(0)

    def refresh_token(self) -> None:
        pass


@pytest.mark.parametrize(
    ("first", "held_back"),
    [
        (Response(Kind.RETRY, None, "timeout"), True),
        (Response(Kind.RETRY, None, "connection_error"), True),  # dropped after sending
        (Response(Kind.RETRY, None, "connection_error", unsent=True), False),
        (Response(Kind.RETRY, 502, "", "HTTP 502 Bad Gateway"), True),
        (Response(Kind.RETRY, 408), False),
        (Response(Kind.RETRY, 307), False),
        (Response(Kind.RATE_LIMITED, 429), False),
        (Response(Kind.AUTH, 401), False),
    ],
)
async def test_which_answers_hold_the_note_back(first: Response, held_back: bool) -> None:
    client = _Scripted(first, Response(Kind.OK, 200))
    sender = NoteSender(client, None, None, {}, set())
    await sender.patch("AE.1", {"email": "a@b.co", "note": "hi"})
    await sender.patch("AE.1", {"email": "a@b.co", "note": "hi"})
    assert ("note" in client.bodies[1]) is not held_back
    assert (sender.held_back == {"AE.1"}) is held_back


async def test_a_refused_connection_is_known_to_have_sent_nothing() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    async with aiohttp.ClientSession() as session:
        client = ComeetClient(session, closed, TokenMinter(Credentials("k", "s")), user_agent="t")
        refused = await client.patch("AE.1", {"note": "hi"})
    assert refused.kind is Kind.RETRY and refused.unsent and not refused.unclear
