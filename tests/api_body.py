"""The `PATCH /candidates/{uid}` body the API accepts, as pydantic models (no empty values).

A test oracle: every body bulk-update builds must pass it (tests/test_patch.py,
tests/test_schema.py). The product builds bodies from cells it has already checked
(schema.cells), so it never needs these models itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from bulk_update.schema import RESUME_EXTENSIONS
from bulk_update.schema.cells import CountryCode, Email, LinkedInUrl, _host
from bulk_update.schema.fields import ProspectStatus, UpdatedByType


def _web_url(value: str) -> str:
    if _host(value) is None:
        raise ValueError("not an http(s) URL")
    return value


def _resume_name(value: str) -> str:
    if not value.lower().endswith(RESUME_EXTENSIONS):
        raise ValueError("a resume must be .pdf, .doc or .docx")
    return value


Text = Annotated[str, StringConstraints(min_length=1)]
WebUrl = Annotated[str, AfterValidator(_web_url)]

# --- the PATCH body -----------------------------------------------------------------------


def _no_empty_values(data: Any) -> Any:
    # Clearing a field with ""/null is undocumented (comeet-api.md, Unknown 6): we never send one.
    if isinstance(data, Mapping):
        empty = [k for k, v in data.items() if v is None or v == "" or v == [] or v == {}]
        if empty:
            raise ValueError(f"empty values are never sent: {', '.join(map(str, empty))}")
    return data


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _reject_empty(cls, data: Any) -> Any:
        return _no_empty_values(data)


class UpdatedBy(_Body):
    """Who made the change; when sent, the API requires `type` and `name`."""

    type: UpdatedByType
    name: Text
    email: Email | None = None


class SourceContact(_Body):
    """The source (e.g. a headhunter); when sent, `full_name` and `email` are required."""

    full_name: Text
    email: Email
    phone: Text | None = None


class Address(_Body):
    """The candidate's address; `country` is an upper-case ISO 3166-1 alpha-2 code."""

    country: CountryCode | None = None
    city: Text | None = None
    state: Text | None = None
    zip: Text | None = None
    street: Text | None = None


class FileObject(_Body):
    """A file sent inline: its name and its bytes in base64."""

    name: Text
    file: Text


class ResumeFile(FileObject):
    """A resume: a FileObject whose name ends in .pdf, .doc or .docx."""

    name: Annotated[str, AfterValidator(_resume_name)]


class Link(_Body):
    """One entry of `links`."""

    url: WebUrl


class CandidatePatch(_Body):
    """The body of `PATCH /candidates/{uid}` as bulk-update sends it (no empty values)."""

    partner_candidate_id: Text | None = None
    first_name: Text | None = None
    middle_name: Text | None = None
    last_name: Text | None = None
    email: Email | None = None
    phone: Text | None = None
    mobile_phone: Text | None = None
    national_id: Text | None = None
    linkedin_url: LinkedInUrl | None = None
    salary_expectations: Text | None = None
    prospect_status: ProspectStatus | None = None
    note: Text | None = None
    resume: ResumeFile | None = None
    picture: FileObject | None = None
    links: Annotated[list[Link], Field(min_length=1)] | None = None
    files: Annotated[list[FileObject], Field(min_length=1)] | None = None
    source_contact: SourceContact | None = None
    address: Address | None = None
    custom_fields: Annotated[dict[Text, Text], Field(min_length=1)] | None = None
    updated_by: UpdatedBy | None = None
