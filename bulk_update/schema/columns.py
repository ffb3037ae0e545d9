"""Column matching: which API field each header of a sheet feeds (contract section 4)."""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from types import MappingProxyType

from ..errors import ConfigError, InputError, UnknownColumnError
from ..models import NOT_RESTORABLE, Column, own_columns
from ..reader.layout import column_letter
from .fields import _ORDERED_FIELDS, CUSTOM_FIELDS_PREFIX, FIELDS

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

    A re-uploaded results sheet's own leading columns are ignored, and so is an undo
    sheet's `Not restorable` column (models.NOT_RESTORABLE). Raises
    UnknownColumnError for headers that are neither a field, nor mapped, nor ignored (every
    one of them, with the header row's other problems: a missing uid column, [columns]
    entries that match no header); InputError for two columns feeding one field, a column
    without a header, or a missing uid column alone; ConfigError for a [columns] entry that
    maps to no field.
    """
    mapped = _mapped_fields(mapping)
    ignored = {normalize_header(name) for name in (*ignore, NOT_RESTORABLE)}
    skip = own_columns(headers)
    columns: list[Column] = []
    feeding: dict[str, str] = {}
    unknown: list[tuple[str, str | None]] = []
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
                f"column {column_letter(index)} has no header",
                fix="type the API field it feeds in its first row, or delete the column",
            )
        else:
            unknown.append((header, _closest(header)))
            continue
        if field is not None:
            if field in feeding:
                raise InputError(
                    f"columns '{feeding[field]}' and '{header}' both feed the field {field}",
                    fix="keep one of them, or list the other in [input] ignore_columns",
                )
            feeding[field] = header
        columns.append(Column(index=index, header=header, field=field))
    no_uid_fix = (
        "add a 'uid' column with each candidate's Comeet uid, or map your column to uid "
        'under [columns] in the config file (e.g. "Candidate UID" = "uid")'
    )
    if unknown:
        others: list[str] = []
        fixes: list[str] = []
        if "uid" not in feeding:
            others.append("the sheet has no uid column")
            fixes.append(no_uid_fix)
        others += _unmatched_mappings(mapping, headers)
        first, *more = unknown
        raise UnknownColumnError(*first, more=tuple(more), others=tuple(others), fixes=tuple(fixes))
    if "uid" not in feeding:
        raise InputError("the sheet has no uid column", fix=no_uid_fix)
    return tuple(columns)


def _unmatched_mappings(mapping: Mapping[str, str], headers: Sequence[str]) -> list[str]:
    """A message for each [columns] entry that matches no header, naming the closest one."""
    present = {normalize_header(h): h for h in headers if h.strip()}
    said = []
    for key, value in mapping.items():
        if normalize_header(key) in present:
            continue
        close = difflib.get_close_matches(key, list(present.values()), n=1, cutoff=0.4)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        said.append(f"config maps '{key}' to {value}, but the sheet has no such column{hint}")
    return said
