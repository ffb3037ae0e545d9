"""What Comeet holds: the read model of `GET /candidates/{uid}` mapped to the fields a patch
writes (contract section 11; comeet-api.md section 10).

The read model is not the PATCH body's shape. `id_number` is what a patch calls
`national_id`; `source_contact` reads as `{uid, first_name, last_name, email}` and writes as
`{full_name, email, phone}` (full_name is first and last name joined by a space; a read
gives no phone); `resume` reads as `{name, url}`, a public link that expires about 15
minutes after the read. Custom fields, the address, salary expectations, the partner id,
the picture, links, files and notes are not in it at all; a deleted candidate comes back
as its uid alone. A field the answer does not carry is `NotReadable`, with the reason, and
never guessed: what --backup cannot put back and what --compare cannot compare.

`read_candidate` sends one read through a run's `Retrier`, so reads and patches share the
limiter, the token and the retry rules.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from .client import Kind, Response
from .reader.cells import strip_cell
from .retrying import Retrier, Tries
from .schema import normalised_text

__all__ = [
    "RESUME_LINK_TTL_S",
    "CandidateRead",
    "Held",
    "NotReadable",
    "Reading",
    "ResumeLink",
    "holds_same",
    "normalised",
    "parse_candidate",
    "read_candidate",
]

#: About how long a read resume link stays valid (comeet-api.md section 10): read again after.
RESUME_LINK_TTL_S = 15 * 60.0


@dataclass(frozen=True, slots=True)
class NotReadable:
    """A field whose value Comeet does not tell: its earlier value cannot be known."""

    reason: str


@dataclass(frozen=True, slots=True)
class ResumeLink:
    """The resume as a read returns it: its file name and a public link that expires."""

    name: str
    #: Public and short-lived: anyone holding it can download the file until it expires.
    url: str = field(repr=False)
    #: When it was read (Unix seconds, the reader's clock).
    read_at: float = 0.0

    @property
    def expires_at(self) -> float:
        """About when the link stops working (Unix seconds)."""
        return self.read_at + RESUME_LINK_TTL_S


#: What Comeet holds for one write field: its text, the resume's link, None when it was
#: empty, or NotReadable with the reason when a read cannot say.
Held = str | ResumeLink | NotReadable | None

#: Write fields read under the same name, as text.
_SAME_NAME = (
    "first_name",
    "middle_name",
    "last_name",
    "email",
    "phone",
    "mobile_phone",
    "linkedin_url",
    "prospect_status",
)
#: Write fields whose read name differs.
_RENAMED = {"national_id": "id_number"}
_NOT_RETURNED = "Comeet does not return {} when a candidate is read"
#: Write fields (top-level names; objects by their name) the read model lacks, and why.
_NOT_IN_READ_MODEL = {
    "custom_fields": _NOT_RETURNED.format("custom fields"),
    "address": _NOT_RETURNED.format("the address"),
    "salary_expectations": _NOT_RETURNED.format("salary expectations"),
    "partner_candidate_id": _NOT_RETURNED.format("the partner candidate id"),
    "picture": _NOT_RETURNED.format("the picture"),
    "links": _NOT_RETURNED.format("links"),
    "files": _NOT_RETURNED.format("files"),
    "note": "notes are added, never replaced, and Comeet does not return them when read",
    "updated_by": "who made a change is said with each patch, not held by the candidate",
}
_NO_CONTACT_PHONE = "Comeet returns no phone for the source contact when read"
_DELETED = "the candidate is deleted: Comeet returns only its uid"
#: Read fields whose absence may mean the API key lacks the permission to read them.
_NEEDS_PERMISSION = frozenset({"source_contact", "resume"})


@dataclass(frozen=True, slots=True)
class CandidateRead:
    """One candidate as read, keyed by write field: what `holds` answers from.

    `uid` is the API uid the answer carries ("" if it carries none): after a read by the
    web page's number (`IDENTIFIER_TYPE: REAL_ID`), the uid to patch. `values` maps each
    write field the answer carries to its value (None: empty); `absent` maps each read
    field the answer lacks to why that matters.
    """

    uid: str
    deleted: bool = False
    values: Mapping[str, str | ResumeLink | None] = field(default_factory=dict)
    absent: Mapping[str, str] = field(default_factory=dict)

    def held(self, path: str) -> Held:
        """What Comeet holds for the write field `path` (a `Patch.fields` path)."""
        if self.deleted:
            return NotReadable(_DELETED)
        head = path.split(".", 1)[0]
        if head in _NOT_IN_READ_MODEL:
            return NotReadable(_NOT_IN_READ_MODEL[head])
        if path == "source_contact.phone":
            return NotReadable(_NO_CONTACT_PHONE)
        if path in self.values:
            return self.values[path]
        read_name = _read_name(path)
        if read_name is None:
            return NotReadable(f"'{path}' is not a field Comeet's read model has")
        return NotReadable(self.absent.get(read_name) or _absent_reason(read_name))

    def holds(self, paths: Iterable[str]) -> dict[str, Held]:
        """What Comeet holds for each write field of `paths`, in their order."""
        return {path: self.held(path) for path in paths}


def _read_name(path: str) -> str | None:
    """The read model's top-level name for a readable write field; None if it has none."""
    if path in _SAME_NAME:
        return path
    if path in _RENAMED:
        return _RENAMED[path]
    if path in ("source_contact.full_name", "source_contact.email"):
        return "source_contact"
    if path == "resume":
        return "resume"
    return None


def _absent_reason(read_name: str) -> str:
    reason = f"the answer did not carry {read_name}"
    if read_name in _NEEDS_PERMISSION:
        reason += " (reading it needs a permission the API key may lack)"
    return reason


def parse_candidate(data: Mapping[str, Any], *, read_at: float = 0.0) -> CandidateRead:
    """Map a read's candidate object to the write fields. Pure.

    `read_at` (Unix seconds) dates a resume link. A value of a shape the write field cannot
    hold (an object where text belongs) is not guessed at: that field is absent, with why.
    """
    uid = data.get("uid")
    uid = uid if isinstance(uid, str) else "" if uid is None else str(uid)
    if data.get("deleted") is True:
        return CandidateRead(uid, deleted=True)
    values: dict[str, str | ResumeLink | None] = {}
    absent: dict[str, str] = {}
    for path in (*_SAME_NAME, *_RENAMED):
        name = _RENAMED.get(path, path)
        if name in data:
            _put(values, absent, path, name, data[name])
    contact = data.get("source_contact", ...)
    if contact is None:
        values["source_contact.full_name"] = values["source_contact.email"] = None
    elif isinstance(contact, Mapping):
        names = [_text(contact[k]) for k in ("first_name", "last_name") if k in contact]
        if any(isinstance(n, NotReadable) for n in names):
            absent["source_contact"] = _odd("source_contact")
        elif names:  # first and last name joined by a space, as the write's full_name
            full_name = " ".join(n for n in names if isinstance(n, str))
            values["source_contact.full_name"] = full_name or None
        if "email" in contact:
            _put(values, absent, "source_contact.email", "source_contact", contact["email"])
    elif contact is not ...:
        absent["source_contact"] = _odd("source_contact")
    resume = data.get("resume", ...)
    if resume is None or resume == {}:
        values["resume"] = None
    elif isinstance(resume, Mapping) and isinstance(resume.get("url"), str):
        file_name = resume.get("name")
        file_name = file_name if isinstance(file_name, str) else ""
        values["resume"] = ResumeLink(file_name, resume["url"], read_at)
    elif resume is not ...:
        absent["resume"] = _odd("resume")
    return CandidateRead(uid, values=values, absent=absent)


def _text(value: Any) -> str | NotReadable | None:
    """A read value as text: None when empty, NotReadable when it is not a scalar."""
    if value is None or (isinstance(value, str) and not strip_cell(value)):
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return NotReadable("")


def _put(
    values: dict[str, str | ResumeLink | None],
    absent: dict[str, str],
    path: str,
    read_name: str,
    value: Any,
) -> None:
    text = _text(value)
    if isinstance(text, NotReadable):
        absent[read_name] = _odd(read_name)
    else:
        values[path] = text


def _odd(read_name: str) -> str:
    return f"the answer carried {read_name} in a form this tool does not know"


def normalised(path: str, value: Any) -> Any:
    """`value` as a patch would send it for the field `path`: text stripped like every cell,
    a prospect status in its canonical spelling (schema's own rule); other values as they
    are. Compare a held value with a sent one only after this. Pure.
    """
    if not isinstance(value, str):
        return value
    return normalised_text(path, strip_cell(value))


def holds_same(path: str, held: Held, sent: Any) -> bool:
    """Whether Comeet already holds `sent` for `path`, after the patch's normalisation.

    False when the held value is not readable, empty, or a resume link (a link cannot be
    compared with a file): such a field is sent. Pure.
    """
    if not isinstance(held, str):
        return False
    return bool(normalised(path, held) == normalised(path, sent))


class Reader(Protocol):
    """What `read_candidate` needs from a client (`ComeetClient` is one)."""

    async def read(self, uid: str, *, real_id: bool = False) -> Response:
        """Read one candidate; never raise for HTTP or network trouble."""
        ...


@dataclass(frozen=True, slots=True)
class Reading:
    """The end of one read: the candidate when found, else the last answer.

    `response` is None when a halt caught the read before any final answer; a response
    whose kind is not OK says why there is no candidate (NOT_FOUND, REJECTED; a retriable
    kind: out of attempts).
    """

    asked: str
    candidate: CandidateRead | None
    response: Response | None
    attempts: int


async def read_candidate(
    retrier: Retrier,
    reader: Reader,
    uid: str,
    *,
    real_id: bool = False,
    tries: Tries | None = None,
    clock: Callable[[], float] = time.time,
) -> Reading:
    """Read the candidate `uid` (with `real_id`: the web page's number) through `retrier`:
    the same limiter, token and retry rules as a patch, counted in the same budget.

    Pass a row's `tries` to count the read among the row's attempts.
    """
    tries = tries if tries is not None else Tries()
    label = f"reading {'number ' if real_id else ''}{uid}"
    response = await retrier.call(lambda: reader.read(uid, real_id=real_id), tries, label)
    candidate = None
    if response is not None and response.kind is Kind.OK and response.body is not None:
        candidate = parse_candidate(response.body, read_at=clock())
    return Reading(uid, candidate, response, tries.attempts)
