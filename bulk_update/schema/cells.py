"""Cell rules: cell text -> API value or a problem, and the same rules a column at a time.

The checks a cell gets (emails, URLs, statuses, countries, files, links), what a spreadsheet
shows but must not be sent (its error values, invisible characters, digits it has lost), and
each field's rule in its two forms (`CellRule`: a cell at a time for the row validator, a
column at a time for the columnar dry run, `column_check`).
"""

from __future__ import annotations

import base64
import re
import stat
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BeforeValidator,
    TypeAdapter,
    ValidationError,
)

from .fields import (
    DIGIT_FIELDS,
    ISO_COUNTRY_CODES,
    MAX_FILE_BYTES,
    PROSPECT_STATUSES,
    RESUME_EXTENSIONS,
    UPDATED_BY_TYPES,
    ProspectStatus,
    UpdatedByType,
)

# --- the shapes of values ------------------------------------------------------------------

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
#: so that the class reads the same in Python and in RE2 (bulk_update/columnar/).
_INVISIBLE_CLASS = (
    "\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb"
)
_INVISIBLE = re.compile(f"[{_INVISIBLE_CLASS}]")
#: A number as Excel writes it into a CSV when its column is too narrow: 9.72E+11.
_SCIENTIFIC = re.compile(r"[+-]?[0-9]+(?:[.,][0-9]+)?[eE][+-]?[0-9]+")
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


#: The LinkedIn addresses everyone writes, accepted by a full match alone (in any regex
#: engine, so a column at a time too): a lower-case http(s) scheme, a lower-case host that
#: is linkedin.com or ends in .linkedin.com (non-empty labels), then nothing or a path of
#: printable ASCII without white space. The network location then ends at the first '/',
#: so urlsplit's host is exactly that host: `_linkedin_url` accepts every such address.
_PLAIN_LINKEDIN = r"https?://(?:[a-z0-9-]+\.)*linkedin\.com(?:/[A-Za-z0-9._~%!$&'()*+,;=:@/?#-]*)?"


def _linkedin_url(value: str) -> str:
    host = _host(value)
    if host is None or not (host == "linkedin.com" or host.endswith(".linkedin.com")):
        raise ValueError("not a LinkedIn URL")
    return value


def _country(value: str) -> str:
    if value not in ISO_COUNTRY_CODES:
        raise ValueError("not an ISO 3166-1 alpha-2 code")
    return value


def _collapse(text: str) -> str:
    return " ".join(text.split())


_STATUS_BY_KEY = {s.casefold(): s for s in PROSPECT_STATUSES}

Email = Annotated[str, AfterValidator(_email)]
LinkedInUrl = Annotated[str, AfterValidator(_linkedin_url)]
CountryCode = Annotated[str, AfterValidator(_country)]


@dataclass(frozen=True)
class CellRule:
    """One field's rule, in both forms: a cell at a time, and a column at a time.

    The cell form: `adapter` turns the cell text into the API value, or fails, and `hint`
    (after the cell's text) says how to fix it. The column form is the same rule: when
    `plain` is set, a cell fully matching it is accepted as it is, by both forms (the cell
    form tries it first, so the two cannot differ); a column engine accepts those cells at
    once and hands the rest to the cell form. Without `plain`, the column engine asks the
    cell form about each distinct value of the column (the rule's values are few: statuses,
    countries), so whatever the cell form normalises (case, spacing) it takes too.
    """

    adapter: TypeAdapter[Any]
    hint: str
    #: Cells accepted as they are by a full match (Python `re` syntax any RE2 reads too).
    plain: str | None = None

    @cached_property
    def _plain(self) -> re.Pattern[str] | None:
        return None if self.plain is None else re.compile(self.plain)

    def convert(self, text: str) -> tuple[Any, list[str]]:
        """Cell text -> (API value, problems)."""
        plain = self._plain
        if plain is not None and plain.fullmatch(text):
            return text, []
        try:
            return self.adapter.validate_python(text), []
        except ValidationError:  # our message, never pydantic's
            return None, [f"'{_show(text)}' {self.hint}"]


_EMAIL_RULE = CellRule(
    TypeAdapter(Email), "is not an email address; write it like jane@example.com", _EMAIL.pattern
)
#: Each field's rule; free text (no rule), files and links (`_CALLED`) are not listed.
_CELL_RULES: dict[str, CellRule] = {
    "prospect_status": CellRule(
        TypeAdapter(
            Annotated[
                ProspectStatus,
                BeforeValidator(lambda v: _STATUS_BY_KEY.get(_collapse(v).casefold(), v)),
            ]
        ),
        "is not a prospect status; use one of: " + ", ".join(PROSPECT_STATUSES),
    ),
    "updated_by.type": CellRule(
        TypeAdapter(Annotated[UpdatedByType, BeforeValidator(lambda v: v.lower())]),
        "is not an updated_by type; use one of: " + ", ".join(UPDATED_BY_TYPES),
    ),
    "linkedin_url": CellRule(
        TypeAdapter(LinkedInUrl),
        "is not a LinkedIn URL; write the full address, e.g. https://www.linkedin.com/in/jane-doe",
        _PLAIN_LINKEDIN,
    ),
    "address.country": CellRule(
        TypeAdapter(Annotated[CountryCode, BeforeValidator(lambda v: v.upper())]),
        "is not an ISO 3166-1 alpha-2 country code; use the two-letter code, e.g. IL, US, GB",
    ),
    "email": _EMAIL_RULE,
    "updated_by.email": _EMAIL_RULE,
    "source_contact.email": _EMAIL_RULE,
}


@dataclass(frozen=True, slots=True)
class ColumnCheck:
    """A column's rule as a column-at-a-time engine applies it (columnar), from `_CELL_RULES`.

    It only ever ACCEPTS cells that `RowValidator` accepts: `kind` is `any` (every non-empty
    cell: free text), `pattern` (a full match of `pattern`, the rule's `CellRule.plain`),
    `each` (each distinct value the cell form accepts, asked of the row validator), or
    `row` (never: the rule reads files, or the row's other cells). A filled cell it does
    not accept, and its whole row, go to `RowValidator`, which has the last word and writes
    the messages. An empty cell is accepted unless `required`. A cell that fully matches
    `refuse` (Python `re` syntax too; empty: none) is never accepted, whatever `kind` says:
    a spreadsheet error, and where the field cares, an invisible character or scientific
    notation: the same patterns `RowValidator` refuses them by.
    """

    kind: Literal["any", "pattern", "each", "row"]
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
    refuse = "|".join(f"(?:{r})" for r in refused)
    rule = _CELL_RULES.get(field)
    if rule is None:
        return ColumnCheck("any", refuse=refuse, refuse_marks=tuple(marks))  # free text
    if rule.plain is None:
        return ColumnCheck("each", refuse=refuse, refuse_marks=tuple(marks))
    return ColumnCheck("pattern", rule.plain, refuse=refuse, refuse_marks=tuple(marks))


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


def _show(text: str, limit: int = 60) -> str:
    one_line = escape_invisible(_collapse(text))
    return one_line if len(one_line) <= limit else one_line[: limit - 1] + "…"


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
    return rule.convert(text)


def normalised_text(field: str, text: str) -> str:
    """The stripped cell text `text` as it would be sent for the text field `field`: the
    field's rule applied (a prospect status in its canonical spelling, a country code in
    upper case); a value the rule refuses is left as it is.

    For comparing what Comeet holds with what a patch sends (readmodel.py).
    """
    rule = _CELL_RULES.get(field)
    if rule is None or not text:
        return text
    value, problems = rule.convert(text)
    return value if not problems and isinstance(value, str) else text


#: Fields whose cells name files: their conversion reads the file system, so it is never
#: remembered (every other rule reads the text alone; a sheet repeats statuses, countries).
_FILE_FIELDS = frozenset({"resume", "picture", "files"})
#: Fields checked by code of their own (files, links) rather than by a _CELL_RULES rule.
_CALLED = _FILE_FIELDS | {"links"}
