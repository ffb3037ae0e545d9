"""The API's fields, column-name matching and per-row validation.

Three jobs, in the order a run needs them:

1. `resolve_columns` decides, once per sheet, which API field each column feeds
   (contract section 4); a column it cannot place stops the run before anything is sent.
2. `validate_row` turns one row of text into values ready for the API, or into every
   problem of that row, each naming the column as the sheet spells it (section 5).
3. `CandidatePatch` describes the `PATCH /candidates/{uid}` body we send. Its field types
   are the same checks `validate_row` applies to cells, so the rules live in one place.
"""

from __future__ import annotations

import base64
import difflib
import re
import stat
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath, PureWindowsPath
from types import MappingProxyType
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from .errors import ConfigError, InputError, UnknownColumnError
from .models import REPORT_COLUMNS, Column, Problem, SheetRow

__all__ = [
    "CUSTOM_FIELDS_PREFIX",
    "DIGIT_FIELDS",
    "FIELDS",
    "ISO_COUNTRY_CODES",
    "MAX_FILE_BYTES",
    "OBJECT_FIELDS",
    "PROSPECT_STATUSES",
    "RESUME_EXTENSIONS",
    "UPDATED_BY_TYPES",
    "Address",
    "CandidatePatch",
    "ColumnCheck",
    "FileObject",
    "InvalidRow",
    "Link",
    "ResumeFile",
    "RowValidator",
    "SourceContact",
    "UpdatedBy",
    "ValidRow",
    "column_check",
    "escape_invisible",
    "find_duplicate_uids",
    "names_uid",
    "normalize_header",
    "resolve_columns",
    "uid_check",
    "validate_row",
]

# --- the API's vocabulary -----------------------------------------------------------------

ProspectStatus = Literal[
    "Sourced", "Contacted", "Responded", "Interested", "Not interested", "Do not contact"
]
UpdatedByType = Literal["user", "source_contact", "other", "app"]

#: Canonical spellings of `prospect_status` (the API compares them exactly).
PROSPECT_STATUSES: tuple[str, ...] = get_args(ProspectStatus)
#: Allowed `updated_by.type` values.
UPDATED_BY_TYPES: tuple[str, ...] = get_args(UpdatedByType)
#: Custom candidate fields are `custom_fields.<name>`, the name kept as written.
CUSTOM_FIELDS_PREFIX = "custom_fields."
#: Resume files Comeet accepts.
RESUME_EXTENSIONS: tuple[str, ...] = (".pdf", ".doc", ".docx")
#: Comeet refuses files over 6 MB (403 file_size_limit); refusing them here saves a request.
MAX_FILE_BYTES = 6 * 1024 * 1024

_ORDERED_FIELDS: tuple[str, ...] = (
    "uid",
    "partner_candidate_id",
    "first_name",
    "middle_name",
    "last_name",
    "email",
    "phone",
    "mobile_phone",
    "national_id",
    "linkedin_url",
    "salary_expectations",
    "prospect_status",
    "note",
    "resume",
    "picture",
    "links",
    "files",
    "updated_by.type",
    "updated_by.name",
    "updated_by.email",
    "source_contact.full_name",
    "source_contact.email",
    "source_contact.phone",
    "address.country",
    "address.city",
    "address.state",
    "address.zip",
    "address.street",
)
#: Every dotted API path a column may feed, besides `custom_fields.<name>`.
FIELDS: frozenset[str] = frozenset(_ORDERED_FIELDS)
#: Top-level body keys whose dotted leaves nest into an object (`address.country`).
OBJECT_FIELDS: frozenset[str] = frozenset(
    {f.split(".", 1)[0] for f in FIELDS if "." in f} | {"custom_fields"}
)

#: ISO 3166-1 alpha-2: the 249 officially assigned codes (what Comeet checks, 400
#: incorrect_country_code otherwise). Embedded so a run needs no extra package.
ISO_COUNTRY_CODES: frozenset[str] = frozenset(
    """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ
    BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ
    CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ
    DE DJ DK DM DO DZ  EC EE EG EH ER ES ET  FI FJ FK FM FO FR
    GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY  HK HM HN HR HT HU
    ID IE IL IM IN IO IQ IR IS IT  JE JM JO JP  KE KG KH KI KM KN KP KR KW KY KZ
    LA LB LC LI LK LR LS LT LU LV LY
    MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ
    NA NC NE NF NG NI NL NO NP NR NU NZ  OM  PA PE PF PG PH PK PL PM PN PR PS PT PW PY
    QA  RE RO RS RU RW  SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ
    TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ  UA UG UM US UY UZ
    VA VC VE VG VI VN VU  WF WS  YE YT  ZA ZM ZW
    """.split()  # noqa: SIM905 (a grid of codes reads better than 249 quoted strings)
)

# --- checks shared by cells and the body model ----------------------------------------------

# Dotted letters and digits only: this also keeps a uid from leaving /candidates/ in the URL.
_UID = re.compile(r"[A-Za-z0-9]+(?:\.[A-Za-z0-9]+)+")
# Strict enough to catch typos; the API has the last word (400 invalid_email).
_EMAIL = re.compile(r"[^@\s]+@(?:[^@\s.]+\.)+[^@\s.]+")

# --- what a spreadsheet shows but must not be sent --------------------------------------------

#: What a spreadsheet program shows for a formula that failed (Excel; Google Sheets' #ERROR!;
#: LibreOffice's Err:NNN), cached in an XLSX or written into a CSV: never a value to send.
_ERROR_VALUE = (
    r"(?i:#(?:N/A|VALUE!|REF!|DIV/0!|NUM!|NAME\?|NULL!|SPILL!|CALC!|GETTING_DATA|FIELD!"
    r"|BLOCKED!|CONNECT!|BUSY!|UNKNOWN!|PYTHON!|ERROR!)|Err:[0-9]{3})"
)
_ERROR = re.compile(_ERROR_VALUE)
#: The first characters of every _ERROR_VALUE: a cell starting otherwise needs no regex.
_ERROR_STARTS = frozenset("#Ee")
#: Characters no spreadsheet program shows (zero-width spaces and joiners, bidi marks and
#: embeddings, word joiners, the BOM, the soft hyphen): inside a uid, email, URL or phone
#: they make the value another one than the person sees. Literal characters, not escapes,
#: so that the class reads the same in Python and in RE2 (columnar.py).
_INVISIBLE_CLASS = (
    "\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb"
)
_INVISIBLE = re.compile(f"[{_INVISIBLE_CLASS}]")
#: A number as Excel writes it into a CSV when its column is too narrow: 9.72E+11.
_SCIENTIFIC = re.compile(r"[+-]?[0-9]+(?:[.,][0-9]+)?[eE][+-]?[0-9]+")
#: Fields that hold digits as text: a number cell has lost their leading zeros and '+', and
#: scientific notation has lost their last digits (contract section 5).
DIGIT_FIELDS: frozenset[str] = frozenset(
    {
        "phone",
        "mobile_phone",
        "national_id",
        "address.zip",
        "partner_candidate_id",
        "source_contact.phone",
    }
)
#: Fields in which an invisible character makes the value wrong (besides the uid).
_NO_INVISIBLE: frozenset[str] = frozenset(
    {
        "email",
        "updated_by.email",
        "source_contact.email",
        "linkedin_url",
        "links",
        "phone",
        "mobile_phone",
        "source_contact.phone",
    }
)


def escape_invisible(text: str) -> str:
    """`text` with every invisible character spelled as an escape (`\\u200b`), for messages."""
    return _INVISIBLE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _error_problem(text: str) -> str:
    return (
        f"'{text}' is a spreadsheet error (a formula that failed, e.g. a lookup that found "
        "nothing), not a value; fix the formula or type the value, or empty the cell"
    )


def _invisible_problem(text: str) -> str:
    return (
        f"'{_show(text)}' holds an invisible character that a spreadsheet does not show; "
        "delete the cell's content and type the value again"
    )


def _hidden_loss(field: str, text: str, numeric: bool) -> list[str]:
    """Problems of a cell whose text is not what the person sees or typed (else [])."""
    problems = []
    if field in _NO_INVISIBLE and _INVISIBLE.search(text):
        problems.append(_invisible_problem(text))
    if field in DIGIT_FIELDS:
        if numeric:
            problems.append(
                f"'{_show(text)}' was stored as a number, which loses a leading 0 or +; "
                "format the column as text and type the value again"
            )
        elif _SCIENTIFIC.fullmatch(text):
            problems.append(
                f"'{_show(text)}': Excel turned this number into scientific notation, which "
                "loses its digits; format the column as text and type the number again"
            )
    return problems


def _email(value: str) -> str:
    if not _EMAIL.fullmatch(value):
        raise ValueError("not an email address")
    return value


_SPACE = re.compile(r"\s")  # str.isspace's white space, found in C


def _host(value: str) -> str | None:
    """The lower-case host of an http(s) URL with well-formed labels, else None."""
    if _SPACE.search(value):
        return None
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:  # e.g. an unbalanced '[' in the host
        return None
    if parts.scheme.lower() not in ("http", "https") or not host:
        return None
    return host if all(host.split(".")) else None


def _web_url(value: str) -> str:
    if _host(value) is None:
        raise ValueError("not an http(s) URL")
    return value


def _linkedin_url(value: str) -> str:
    host = _host(value)
    if host is None or not (host == "linkedin.com" or host.endswith(".linkedin.com")):
        raise ValueError("not a LinkedIn URL")
    return value


def _country(value: str) -> str:
    if value not in ISO_COUNTRY_CODES:
        raise ValueError("not an ISO 3166-1 alpha-2 code")
    return value


def _resume_name(value: str) -> str:
    if not value.lower().endswith(RESUME_EXTENSIONS):
        raise ValueError("a resume must be .pdf, .doc or .docx")
    return value


def _collapse(text: str) -> str:
    return " ".join(text.split())


_STATUS_BY_KEY = {s.casefold(): s for s in PROSPECT_STATUSES}

Text = Annotated[str, StringConstraints(min_length=1)]
Email = Annotated[str, AfterValidator(_email)]
WebUrl = Annotated[str, AfterValidator(_web_url)]
LinkedInUrl = Annotated[str, AfterValidator(_linkedin_url)]
CountryCode = Annotated[str, AfterValidator(_country)]

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


# Cell text -> API value, by field; the hint after ';' says how to fix a bad cell.
_CELL_RULES: dict[str, tuple[TypeAdapter[Any], str]] = {
    "prospect_status": (
        TypeAdapter(
            Annotated[
                ProspectStatus,
                BeforeValidator(lambda v: _STATUS_BY_KEY.get(_collapse(v).casefold(), v)),
            ]
        ),
        "is not a prospect status; use one of: " + ", ".join(PROSPECT_STATUSES),
    ),
    "updated_by.type": (
        TypeAdapter(Annotated[UpdatedByType, BeforeValidator(lambda v: v.lower())]),
        "is not an updated_by type; use one of: " + ", ".join(UPDATED_BY_TYPES),
    ),
    "linkedin_url": (
        TypeAdapter(LinkedInUrl),
        "is not a LinkedIn URL; write the full address, e.g. https://www.linkedin.com/in/jane-doe",
    ),
    "address.country": (
        TypeAdapter(Annotated[CountryCode, BeforeValidator(lambda v: v.upper())]),
        "is not an ISO 3166-1 alpha-2 country code; use the two-letter code, e.g. IL, US, GB",
    ),
}
_EMAIL_RULE = (TypeAdapter(Email), "is not an email address; write it like jane@example.com")
for _field in ("email", "updated_by.email", "source_contact.email"):
    _CELL_RULES[_field] = _EMAIL_RULE

#: A LinkedIn address `_linkedin_url` accepts as it is, in a form any regex engine reads: a
#: lower-case http(s) scheme, a lower-case host that is linkedin.com or ends in .linkedin.com
#: (non-empty labels), then nothing or a path of printable ASCII without white space. The
#: network location then ends at the first '/', so urlsplit's host is exactly that host.
_PLAIN_LINKEDIN = r"https?://(?:[a-z0-9-]+\.)*linkedin\.com(?:/[A-Za-z0-9._~%!$&'()*+,;=:@/?#-]*)?"


@dataclass(frozen=True, slots=True)
class ColumnCheck:
    """A column's rule in a form a column-at-a-time engine can apply (columnar.py).

    It only ever ACCEPTS cells that `RowValidator` accepts as they are (the API value is the
    stripped cell text): `kind` is `any` (every non-empty cell), `values` (exactly one of
    `values`), `pattern` (a full match of `pattern`, Python `re` syntax), or `row` (never:
    the rule reads files, or the row's other cells). A filled cell it does not accept, and
    its whole row, go to `RowValidator`, which has the last word and writes the messages.
    An empty cell is accepted unless `required`. A cell that fully matches `refuse` (Python
    `re` syntax too; empty: none) is never accepted, whatever `kind` says: a spreadsheet
    error, and where the field cares, an invisible character or scientific notation.
    """

    kind: Literal["any", "values", "pattern", "row"]
    values: tuple[str, ...] = ()
    pattern: str = ""
    required: bool = False
    refuse: str = ""
    #: Every cell `refuse` matches holds one of these (UTF-8): a column holding none of
    #: them anywhere needs no `refuse` check (most columns, most of the time).
    refuse_marks: tuple[bytes, ...] = ()


def column_check(field: str) -> ColumnCheck:
    """The `ColumnCheck` of a data column feeding `field` (the uid column: `uid_check`)."""
    if field.startswith(("updated_by.", "source_contact.")) or field in _CALLED:
        # Required together (updated_by, source_contact), or files and links.
        return ColumnCheck("row")
    refused, marks = [_ERROR_VALUE], [b"#", b":"]
    if field in _NO_INVISIBLE:
        refused.append(f"(?s:.*)[{_INVISIBLE_CLASS}](?s:.*)")
        marks += _INVISIBLE_MARKS
    if field in DIGIT_FIELDS:
        refused.append(_SCIENTIFIC.pattern)
        marks += [b"e", b"E"]
    free = ColumnCheck(
        "any", refuse="|".join(f"(?:{r})" for r in refused), refuse_marks=tuple(marks)
    )
    if field == "email":
        return replace(free, kind="pattern", pattern=_EMAIL.pattern)
    if field == "prospect_status":
        return replace(free, kind="values", values=PROSPECT_STATUSES)
    if field == "address.country":
        return replace(free, kind="values", values=tuple(sorted(ISO_COUNTRY_CODES)))
    if field == "linkedin_url":
        return replace(free, kind="pattern", pattern=_PLAIN_LINKEDIN)
    if field in _CELL_RULES:
        return ColumnCheck("row")  # a rule with no column form (yet)
    return free  # free text


#: The first two bytes (UTF-8) of every character of _INVISIBLE_CLASS.
_INVISIBLE_MARKS = [
    b"\xc2\xad",
    b"\xd8\x9c",
    b"\xe1\xa0",
    b"\xe2\x80",
    b"\xe2\x81",
    b"\xef\xbb",
    b"\xef\xbf",
]


#: The uid cells `RowValidator` accepts in a text file (no cell is a number there), besides
#: being typed on one row only.
uid_check = ColumnCheck("pattern", pattern=_UID.pattern, required=True)


# --- column matching ----------------------------------------------------------------------

_SEPARATORS = re.compile(r"[\s_-]+")


def _fold(part: str) -> str:
    return _SEPARATORS.sub("_", part.strip().lower())


# Separators also count as absent when that names a field: 'E-mail', 'FirstName' are common.
_SQUASHED = {f.replace("_", ""): f for f in FIELDS}


def normalize_header(header: str) -> str:
    """The field a header names: case-insensitive, with spaces, hyphens, underscores alike.

    `First Name` -> `first_name`; `E-mail` -> `email`; `Address.Country` ->
    `address.country`; `Custom Fields.Team Size` -> `custom_fields.Team Size` (a custom
    field's name, after the first dot, is kept as written, only stripped). A header that
    names no field comes back folded (lower case, `_` for separators).
    """
    head, dot, rest = header.strip().partition(".")
    head = _fold(head)
    if dot and head.replace("_", "") == "customfields":
        return CUSTOM_FIELDS_PREFIX + rest.strip()
    folded = f"{head}.{_fold(rest)}" if dot else head
    return _SQUASHED.get(folded.replace("_", ""), folded)


def names_uid(headers: Iterable[str], mapping: Mapping[str, str] = MappingProxyType({})) -> bool:
    """True when one of `headers` feeds the uid: named so, or mapped so under [columns]."""
    mapped = {normalize_header(k) for k, v in mapping.items() if normalize_header(v) == "uid"}
    return any(normalize_header(h) == "uid" or normalize_header(h) in mapped for h in headers)


def _is_field(path: str) -> bool:
    return path in FIELDS or (
        path.startswith(CUSTOM_FIELDS_PREFIX) and bool(path[len(CUSTOM_FIELDS_PREFIX) :].strip())
    )


def _closest(header: str) -> str | None:
    normal = normalize_header(header)
    head, dot, rest = normal.partition(".")
    # 'Custom field.Team' is a near miss of a custom field, which FIELDS cannot list.
    if dot and rest and difflib.get_close_matches(head, ["custom_fields"], n=1):
        return CUSTOM_FIELDS_PREFIX + header.partition(".")[2].strip()
    matches = difflib.get_close_matches(normal, _ORDERED_FIELDS, n=1)
    return matches[0] if matches else None


def _letter(index: int) -> str:
    """A 0-based column index as a spreadsheet shows it (0 -> A, 26 -> AA)."""
    letters = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(ord("A") + rem) + letters
    return letters


def _mapped_fields(mapping: Mapping[str, str]) -> dict[str, str]:
    """Normalized [columns] key -> field; every bad entry reported at once."""
    result: dict[str, str] = {}
    source: dict[str, str] = {}
    problems = []
    for key, value in mapping.items():
        field = normalize_header(value)
        if not _is_field(field):
            hint = _closest(value)
            also = f" (did you mean '{hint}'?)" if hint else ""
            problems.append(f'[columns] "{key}" = "{value}": not a Comeet field{also}')
            continue
        normal = normalize_header(key)
        if normal in result and result[normal] != field:
            problems.append(f'[columns] "{source[normal]}" and "{key}" name the same column')
        result[normal], source[normal] = field, key
    if problems:
        raise ConfigError(
            "; ".join(problems),
            fix="map each header to an API field such as email, address.country "
            "or custom_fields.<name>",
        )
    return result


def resolve_columns(
    headers: Sequence[str],
    *,
    mapping: Mapping[str, str] = MappingProxyType({}),
    ignore: Collection[str] = (),
) -> tuple[Column, ...]:
    """Match every header to the API field it feeds (None: ignored).

    A re-uploaded results sheet's own leading columns are ignored. Raises
    UnknownColumnError for a header that is neither a field, nor mapped, nor ignored;
    InputError for two columns feeding one field or a missing uid column; ConfigError for
    a [columns] entry that maps to no field.
    """
    mapped = _mapped_fields(mapping)
    ignored = {normalize_header(name) for name in ignore}
    skip = len(REPORT_COLUMNS) if tuple(headers[: len(REPORT_COLUMNS)]) == REPORT_COLUMNS else 0
    columns: list[Column] = []
    feeding: dict[str, str] = {}
    for index, header in enumerate(headers):
        normal = normalize_header(header)
        field: str | None
        if index < skip or normal in ignored:
            field = None
        elif normal in mapped:
            field = mapped[normal]
        elif _is_field(normal):
            field = normal
        elif not header.strip():
            raise InputError(
                f"column {_letter(index)} has no header",
                fix="type the API field it feeds in its first row, or delete the column",
            )
        else:
            raise UnknownColumnError(header, _closest(header))
        if field is not None:
            if field in feeding:
                raise InputError(
                    f"columns '{feeding[field]}' and '{header}' both feed the field {field}",
                    fix="keep one of them, or list the other in [input] ignore_columns",
                )
            feeding[field] = header
        columns.append(Column(index=index, header=header, field=field))
    if "uid" not in feeding:
        raise InputError(
            "the sheet has no uid column",
            fix="add a 'uid' column with each candidate's Comeet uid, or map your column to "
            'uid under [columns] in the config file (e.g. "Candidate UID" = "uid")',
        )
    return tuple(columns)


# --- rows ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ValidRow:
    """A row ready for patch building: dotted path -> API value, in column order.

    `values` holds the row's own non-empty cells only (never `uid`, never the configured
    updated_by defaults: patch building merges those).
    """

    uid: str
    values: Mapping[str, Any]


@dataclass(frozen=True)
class InvalidRow:
    """A row that must not be sent, with every problem found; `uid` as typed ('' if none)."""

    uid: str
    problems: tuple[Problem, ...]


def _cell(row: SheetRow, index: int) -> str:
    return row.values[index].strip() if index < len(row.values) else ""


def _uid_column(columns: Sequence[Column]) -> Column | None:
    return next((c for c in columns if c.field == "uid"), None)


def find_duplicate_uids(rows: Iterable[SheetRow], columns: Sequence[Column]) -> frozenset[str]:
    """The uids typed on more than one row: every such row is invalid, none is sent."""
    column = _uid_column(columns)
    if column is None:
        return frozenset()
    counts = Counter(_cell(row, column.index) for row in rows)
    return frozenset(uid for uid, n in counts.items() if uid and n > 1)


def _show(text: str, limit: int = 60) -> str:
    one_line = escape_invisible(_collapse(text))
    return one_line if len(one_line) <= limit else one_line[: limit - 1] + "…"


def _uid_problems(uid: str, numeric: bool, duplicates: Collection[str]) -> list[str]:
    if not uid:
        return ["the uid is missing; fill in the candidate's Comeet uid (e.g. AE.17934)"]
    problems = []
    if uid[0] in _ERROR_STARTS and _ERROR.fullmatch(uid):
        problems.append(_error_problem(uid))
    elif uid.isdigit():
        # The row's uid is beside every message (the report's uid column, the problem
        # lines): said once for all such rows, the message costs a large sheet nothing.
        problems.append(
            "the number in the Comeet web page URL is not the API uid; "
            "use the dotted uid, e.g. AE.17934"
        )
    elif _SCIENTIFIC.fullmatch(uid):
        problems.append(
            f"'{_show(uid)}': Excel turned this number into scientific notation; the API uid "
            "is letters and digits joined by dots, e.g. AE.17934: format the column as text "
            "and type the uid again"
        )
    elif _INVISIBLE.search(uid):
        problems.append(_invisible_problem(uid))
    elif not _UID.fullmatch(uid):
        problems.append(
            f"'{_show(uid)}' is not a Comeet uid; a uid is letters and digits joined by "
            "dots, e.g. AE.17934"
        )
    if numeric:
        problems.append(
            "a spreadsheet program stored this uid as a number (01.10 may have become 1.1); "
            "format the column as text and type the uid again"
        )
    if uid in duplicates:
        problems.append(
            "this uid appears on more than one row of the sheet; keep one row per candidate"
        )
    return problems


def _paths(text: str) -> list[str]:
    return [p.strip() for p in re.split(r"[;\r\n]+", text) if p.strip()]


def _read_file(written: str, base: Path) -> dict[str, str] | str:
    """`{'name', 'file'}` for a path relative to the sheet's folder, or a problem message."""
    relative = written.replace("\\", "/")  # a sheet typed on Windows
    if PurePosixPath(relative).is_absolute() or PureWindowsPath(written).drive:
        return (
            f"'{_show(written)}' is an absolute path; write the path relative to the "
            "sheet's folder, e.g. cvs/jane.pdf"
        )
    try:
        target = (base / relative).resolve()
    except (OSError, RuntimeError):  # a symlink loop
        return f"file '{_show(written)}' cannot be opened; check the path"
    # resolve() follows symlinks and '..', so this is where a sheet trying to send
    # /etc/passwd stops.
    if not target.is_relative_to(base):
        return (
            f"'{_show(written)}' points outside the sheet's folder; put the file in the "
            "sheet's folder (or below it) and give its relative path"
        )
    try:
        info = target.stat()
    except FileNotFoundError:
        return (
            f"file '{_show(written)}' was not found (paths are relative to the sheet's "
            f"folder, {base}); check the path"
        )
    except OSError as exc:
        return f"file '{_show(written)}' cannot be read ({exc.strerror}); check the path"
    if not stat.S_ISREG(info.st_mode):
        return f"'{_show(written)}' is not a file; give the path of a file"
    too_big = (
        f"file '{_show(written)}' is larger than 6 MB, the most Comeet accepts; "
        "make it smaller or leave it out"
    )
    if info.st_size > MAX_FILE_BYTES:
        return too_big
    try:
        with target.open("rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)  # the file may have grown since stat()
    except OSError as exc:
        return f"file '{_show(written)}' cannot be read ({exc.strerror}); check its permissions"
    if len(data) > MAX_FILE_BYTES:
        return too_big
    if not data:
        return f"file '{_show(written)}' is empty; give a file with content"
    return {"name": PurePosixPath(relative).name, "file": base64.b64encode(data).decode("ascii")}


def _file_value(field: str, text: str, base: Path) -> tuple[Any, list[str]]:
    paths = _paths(text)
    if not paths:
        return None, [f"'{_show(text)}' holds no file path; give a path relative to the sheet"]
    if field != "files" and len(paths) > 1:
        return None, [f"holds {len(paths)} paths; {field} takes one file (use 'files' for more)"]
    if field == "resume" and not paths[0].lower().endswith(RESUME_EXTENSIONS):
        return None, [f"'{_show(paths[0])}' is not a resume file; use a .pdf, .doc or .docx file"]
    base = base.resolve()  # here, not per row: only file cells need the real folder
    results = [_read_file(p, base) for p in paths]
    problems = [r for r in results if isinstance(r, str)]
    objects = [r for r in results if not isinstance(r, str)]
    if field == "files":
        return objects, problems
    return (objects[0] if objects else None), problems


def _links_value(text: str) -> tuple[Any, list[str]]:
    urls = text.split()
    bad = [u for u in urls if _host(u) is None]
    problems = [
        f"'{_show(u)}' is not a web address; write full http(s) URLs separated by spaces "
        "or new lines"
        for u in bad
    ]
    return [{"url": u} for u in urls], problems


def _convert(field: str, text: str, base: Path) -> tuple[Any, list[str]]:
    """Cell text -> (API value, problems)."""
    if field in ("resume", "picture", "files"):
        return _file_value(field, text, base)
    if field == "links":
        return _links_value(text)
    rule = _CELL_RULES.get(field)
    if rule is None:
        return text, []
    adapter, hint = rule
    try:
        return adapter.validate_python(text), []
    except ValidationError:  # our message, never pydantic's
        return None, [f"'{_show(text)}' {hint}"]


def _required(
    group: str,
    keys: Iterable[str],
    present: Collection[str],
    headers: Mapping[str, str],
    fix: str,
) -> list[Problem]:
    """A problem for each key of `group` the API requires but the row does not send."""
    problems = []
    for key in keys:
        path = f"{group}.{key}"
        if key in present:
            continue
        where = "fill it in on this row" if path in headers else "add the column"
        problems.append(
            Problem(
                headers.get(path, path),
                f"required when {group} is sent; {where}{fix.format(key=key)}",
            )
        )
    return problems


#: Fields whose cells name files: their conversion reads the file system, so it is never
#: remembered (every other rule reads the text alone; a sheet repeats statuses, countries).
_FILE_FIELDS = frozenset({"resume", "picture", "files"})
#: Fields checked by code of their own (files, links) rather than by a _CELL_RULES rule.
_CALLED = _FILE_FIELDS | {"links"}
#: Conversions remembered per field; past this the memory is cleared (unique values, such
#: as emails, gain nothing from it, and a million of them must not pile up).
_MEMO_SIZE = 4096


class RowValidator:
    """`validate_row` for one sheet: the column layout is worked out once, not per row.

    Calling it on a row gives exactly what `validate_row` gives. Conversions of cells that
    read no file are remembered (a few thousand per field), so the repeated values of a
    large sheet are checked once.
    """

    def __init__(
        self,
        columns: Sequence[Column],
        *,
        base_dir: Path,
        duplicate_uids: Collection[str] = frozenset(),
        default_updated_by: Mapping[str, str] = MappingProxyType({}),
    ) -> None:
        self.base_dir = base_dir
        self.duplicate_uids = duplicate_uids
        self.headers = {c.field: c.header for c in columns if c.field}
        self.uid_column = _uid_column(columns)
        # Per data column: a memo of its conversions when it has a rule and reads no file
        # (the value is then a plain string, safe to share between rows); else None.
        self.data: list[tuple[int, str, str, dict[str, tuple[Any, list[str]]] | None]] = [
            (c.index, c.field, c.header, {} if c.field in _CELL_RULES else None)
            for c in columns
            if c.field is not None and c.field != "uid"
        ]
        # Columns whose cells are checked for what a spreadsheet hides or has lost.
        self.guarded = frozenset(
            c.index for c in columns if c.field in DIGIT_FIELDS or c.field in _NO_INVISIBLE
        )
        self.has_updated_by = any(f.startswith("updated_by.") for f in self.headers)
        self.has_contact = any(f.startswith("source_contact.") for f in self.headers)
        self.default_updated_by = {k for k, v in default_updated_by.items() if v}

    def __call__(self, row: SheetRow) -> ValidRow | InvalidRow:
        problems: list[Problem] = []
        values: dict[str, Any] = {}
        cells = row.values
        width = len(cells)
        uid_column = self.uid_column
        if uid_column is None:
            uid = ""
            problems.append(Problem(None, "the sheet has no uid column; add one"))
        else:
            uid = cells[uid_column.index].strip() if uid_column.index < width else ""
            # The common case, a well-formed uid typed once, needs none of the checks below.
            if not (
                _UID.fullmatch(uid)
                and uid_column.index not in row.numeric
                and uid not in self.duplicate_uids
            ):
                numeric = uid_column.index in row.numeric
                for message in _uid_problems(uid, numeric, self.duplicate_uids):
                    problems.append(Problem(uid_column.header, message))

        sent: list[str] = []  # fields with a non-empty cell, valid or not
        for index, field, header, memo in self.data:
            text = cells[index] if index < width else ""
            if not text:
                continue
            text = text.strip()
            if not text:
                continue
            sent.append(field)
            if text[0] in _ERROR_STARTS and _ERROR.fullmatch(text):
                problems.append(Problem(header, _error_problem(text)))
                continue
            if index in self.guarded:
                lost = _hidden_loss(field, text, index in row.numeric)
                if lost:
                    problems.extend(Problem(header, m) for m in lost)
                    continue
            if memo is None:
                if field not in _CALLED:
                    values[field] = text  # free text: nothing to check
                    continue
                value, messages = _convert(field, text, self.base_dir)
            else:
                known = memo.get(text)
                if known is None:
                    if len(memo) >= _MEMO_SIZE:
                        memo.clear()
                    known = memo[text] = _convert(field, text, self.base_dir)
                value, messages = known
            if messages:
                problems.extend(Problem(header, m) for m in messages)
            else:
                values[field] = value

        if self.has_updated_by or self.default_updated_by:
            row_updated_by = {f.partition(".")[2] for f in sent if f.startswith("updated_by.")}
            merged = row_updated_by | self.default_updated_by
            if merged:
                problems += _required(
                    "updated_by",
                    ("type", "name"),
                    merged,
                    self.headers,
                    " or set [defaults.updated_by] {key}",
                )
        if self.has_contact:
            contact = {f.partition(".")[2] for f in sent if f.startswith("source_contact.")}
            if contact:
                problems += _required(
                    "source_contact", ("full_name", "email"), contact, self.headers, ""
                )

        if problems:
            return InvalidRow(uid=uid, problems=tuple(problems))
        return ValidRow(uid=uid, values=MappingProxyType(values))


def validate_row(
    row: SheetRow,
    columns: Sequence[Column],
    *,
    base_dir: Path,
    duplicate_uids: Collection[str] = frozenset(),
    default_updated_by: Mapping[str, str] = MappingProxyType({}),
) -> ValidRow | InvalidRow:
    """Check one row against the API's rules; every problem of the row is reported.

    File cells are read (relative to `base_dir`, the sheet's folder, and never outside it)
    and sent inline as base64. `default_updated_by` is the config's [defaults.updated_by]:
    it is not put into the values, but the merged updated_by must carry a type and a name.
    For many rows of one sheet, make a `RowValidator` once and call it on each row.
    """
    return RowValidator(
        columns,
        base_dir=base_dir,
        duplicate_uids=duplicate_uids,
        default_updated_by=default_updated_by,
    )(row)
