"""What `GET /candidates/{uid}` answers: Comeet's read model, not the PATCH body's shape.

The sandbox keeps each candidate in the write shape its PATCHes arrive in; a read turns it
into the documented read model (comeet-api.md, "Reading a candidate"):
- the read fields it holds, as they are; `national_id` reads as `id_number`;
- `source_contact` as `{uid, first_name, last_name, email}`: no phone, the written
  `full_name` split at its first space, a uid derived from the email;
- `resume` as `{name, url}`: a link this sandbox serves, to the bytes the candidate held at
  the read, that expires `LINK_LIFETIME_S` after it on the sandbox's clock;
- a deleted candidate as its uid alone (with `deleted: true`);
- never what the read model lacks (address, custom fields, salary expectations, partner
  id, picture, links, files, notes).

`IDENTIFIER_TYPE: REAL_ID` looks a candidate up by the number of its web page, the last
segment of its `URL` (`https://app.comeet.co/app/can/61450053`).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import mimetypes
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from aiohttp import web

__all__ = ["LINK_LIFETIME_S", "RealIds", "ResumeLinks", "read_view", "web_page_id"]

#: How long a resume link lives after the read that gave it ("about 15 minutes").
LINK_LIFETIME_S = 15 * 60.0
FILES_PATH = "/_sandbox/files"
# The read fields a candidate carries as they were written (or seeded).
_AS_STORED = (
    "uid", "person_uid", "first_name", "middle_name", "last_name", "email", "phone",
    "mobile_phone", "linkedin_url", "prospect_status", "status", "position_uid",
    "time_created", "time_last_status_changed", "URL", "deleted", "tags",
    "completed_steps", "current_steps", "future_steps", "opening",
)  # fmt: skip
_WEB_PAGE_ID = re.compile(r"/can/(\d+)/?$")


def read_view(candidate: Mapping[str, Any], resume_url: str | None) -> dict[str, Any]:
    """The candidate as a read answers it; `resume_url` is the link issued for its resume."""
    if candidate.get("deleted") is True:
        return {"uid": candidate["uid"], "deleted": True}
    shown = {name: copy.deepcopy(candidate[name]) for name in _AS_STORED if name in candidate}
    if "national_id" in candidate:
        shown["id_number"] = candidate["national_id"]
    contact = candidate.get("source_contact")
    if isinstance(contact, Mapping) and "full_name" in contact and "email" in contact:
        first, _, last = str(contact["full_name"]).partition(" ")
        email = str(contact["email"])
        digest = hashlib.sha1(email.lower().encode()).hexdigest().upper()
        shown["source_contact"] = {
            "uid": f"{digest[:2]}.{digest[2:7]}",
            "first_name": first,
            "last_name": last,
            "email": email,
        }
    resume = candidate.get("resume")
    if resume_url is not None and isinstance(resume, Mapping):
        shown["resume"] = {"name": resume.get("name"), "url": resume_url}
    return shown


def web_page_id(candidate: Mapping[str, Any]) -> str | None:
    """The number in the candidate's web page address, or None without one."""
    match = _WEB_PAGE_ID.search(str(candidate.get("URL", "")))
    return match.group(1) if match else None


class RealIds:
    """Web-page numbers to uids, built from the candidates when a number is asked for.

    A page address is never written by a PATCH, so the index only goes stale when a
    candidate is added; a number it does not hold makes it look again once.
    """

    def __init__(self) -> None:
        self._uids: dict[str, str] = {}

    def uid(self, candidates: Mapping[str, Mapping[str, Any]], number: str) -> str | None:
        """The uid of the candidate whose page has this number (the caller holds the lock)."""
        uid = self._uids.get(number)
        if uid is None or uid not in candidates:
            self._uids = {
                page: uid
                for uid, candidate in candidates.items()
                if (page := web_page_id(candidate)) is not None
            }
            uid = self._uids.get(number)
        return uid


@dataclass(frozen=True)
class _Link:
    expires: float
    name: str
    data: str  # base64, as the PATCH (or the seed) gave it


class ResumeLinks:
    """Public links to resumes, each good for `LINK_LIFETIME_S` after the read that made it.

    A link serves the file the candidate held when it was read, as Comeet's stored files do
    (a later upload is another file). The links live in the serving event loop only.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self._links: dict[str, _Link] = {}

    def issue(self, resume: Mapping[str, Any], origin: str, now: float) -> str | None:
        """A fresh link to `resume` ({name, file}) under `origin`; None if it holds no file."""
        name, data = resume.get("name"), resume.get("file")
        if not isinstance(name, str) or not isinstance(data, str):
            return None
        # Issued in time order: the expired ones are at the front.
        while self._links and next(iter(self._links.values())).expires <= now:
            del self._links[next(iter(self._links))]
        token = secrets.token_urlsafe(18)
        self._links[token] = _Link(now + LINK_LIFETIME_S, name, data)
        return f"{origin}{FILES_PATH}/{token}"

    async def download(self, request: web.Request) -> web.Response:
        """The file behind a link; 403 once it has expired (or for a link never issued)."""
        link = self._links.get(request.match_info["token"])
        if link is None or self.clock() >= link.expires:
            message = "The link has expired or was never issued: read the candidate again"
            body = {"status": 403, "error": "link_expired", "message": message}
            return web.json_response(body, status=403)
        kind = mimetypes.guess_type(link.name)[0] or "application/octet-stream"
        return web.Response(
            body=base64.b64decode(link.data),
            content_type=kind,
            headers={"Content-Disposition": f"attachment; filename*=UTF-8''{quote(link.name)}"},
        )
