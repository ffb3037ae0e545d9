"""The API's rules for a PATCH body, as Comeet documents them, and how a valid one is applied.

The rules are written here again rather than imported from `schema`: a stand-in that shared
the client's checks could never catch a mistake in them.
"""

from __future__ import annotations

import base64
import binascii
import copy
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from .state import SandboxState

__all__ = ["Refused", "apply_body", "public_view", "validate_body"]

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


class Refused(Exception):
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
        raise Refused("invalid_field", f"{name} must be a string")
    if not value.strip():
        raise Refused("required_field", f"{name} must not be empty")
    if name.endswith("email") and not _is_email(value):
        raise Refused("invalid_email", f"{name} is not a valid email address")
    return value


def _file(name: str, value: Any) -> None:
    if not isinstance(value, dict) or set(value) != {"name", "file"}:
        raise Refused("invalid_field", f"{name} must be an object with name and file")
    file_name = _text(f"{name}.name", value["name"])
    try:
        size = len(base64.b64decode(_text(f"{name}.file", value["file"]), validate=True))
    except (binascii.Error, ValueError):
        raise Refused("invalid_field", f"{name}.file is not valid base64") from None
    if size > _MAX_FILE_BYTES:
        raise Refused("file_size_limit", f"{name} is larger than 6 MB", status=403)
    if name == "resume" and not file_name.lower().endswith(_RESUME_EXTENSIONS):
        raise Refused("malicious_file", "a resume must be a .pdf, .doc or .docx file", 403)


def _object(name: str, value: Any, custom_fields: set[str]) -> None:
    if not isinstance(value, dict):
        raise Refused("invalid_field", f"{name} must be an object")
    for key, item in value.items():
        if name == "custom_fields" and key not in custom_fields:
            raise Refused(
                "invalid_custom_candidate_field",
                f"There is no custom candidate field named '{key}'",
            )
        if name != "custom_fields" and key not in _OBJECT_KEYS[name]:
            raise Refused("invalid_field", f"{name} has no field '{key}'")
        _text(f"{name}.{key}", item)
    required = {"updated_by": ("type", "name"), "source_contact": ("full_name", "email")}
    for key in required.get(name, ()):
        if key not in value:
            raise Refused("required_field", f"{name}.{key} is required when {name} is sent")
    if name == "updated_by" and value["type"] not in _UPDATED_BY_TYPES:
        raise Refused(
            "required_field", "updated_by.type must be one of " + ", ".join(_UPDATED_BY_TYPES)
        )
    if name == "address" and "country" in value and value["country"] not in _COUNTRIES:
        raise Refused(
            "incorrect_country_code",
            f"'{value['country']}' is not an ISO 3166-1 alpha-2 country code (upper case)",
        )


def _list(name: str, value: Any) -> None:
    if not isinstance(value, list) or not value:
        raise Refused("invalid_field", f"{name} must be a non-empty array of objects")
    for item in value:
        if name == "files":
            _file("files[]", item)
        elif not isinstance(item, dict) or set(item) != {"url"}:
            raise Refused("invalid_field", "links[] must be objects with a url")
        elif _host(_text("links[].url", item["url"])) is None:
            raise Refused("invalid_url", f"'{item['url']}' is not a valid URL")


def validate_body(body: Any, custom_fields: set[str]) -> None:
    """Raise `Refused` with the API's error for anything it would refuse."""
    if not isinstance(body, dict):
        raise Refused("invalid_body", "the body must be a JSON object")
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
            raise Refused("invalid_field", f"Unknown field '{name}'")
    # The API compares the status exactly: "not interested" is refused.
    if "prospect_status" in body and body["prospect_status"] not in _PROSPECT_STATUSES:
        raise Refused(
            "invalid_field", "prospect_status must be one of " + ", ".join(_PROSPECT_STATUSES)
        )
    if "linkedin_url" in body:
        host = _host(body["linkedin_url"])
        if host is None or not (host == "linkedin.com" or host.endswith(".linkedin.com")):
            raise Refused("invalid_linkedin_url", "linkedin_url is not a LinkedIn URL")


def apply_body(state: SandboxState, uid: str, body: dict[str, Any]) -> dict[str, Any]:
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
    return public_view(candidate)


def public_view(candidate: Mapping[str, Any]) -> dict[str, Any]:
    """The candidate as the API returns it: files by name, not their contents."""
    shown = copy.deepcopy(dict(candidate))
    for name in ("resume", "picture"):
        if isinstance(shown.get(name), dict):
            shown[name] = {"name": shown[name].get("name")}
    if isinstance(shown.get("files"), list):
        shown["files"] = [{"name": f.get("name")} for f in shown["files"]]
    return shown
