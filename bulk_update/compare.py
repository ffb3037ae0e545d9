"""Pure: a row's patch and what Comeet holds -> the patch without what is there already
(`--compare`, contract section 11).

Each field sent is compared with the value a read returned, after the same normalisation
the patch gets (readmodel.holds_same): a field Comeet already holds is left out. A field
the read model does not return (custom fields, the address, notes, ...) cannot be
compared: it is always sent, and the `before` text says so. An object (`source_contact`)
goes whole when any of its leaves is sent: the API wants its parts together.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from typing import Any

from .models import Patch
from .patch import value_at
from .readmodel import CandidateRead, Held, NotReadable, ResumeLink, holds_same

__all__ = ["Compared", "before_text", "compare_patch", "only"]

ARROW = " → "
#: What `before` shows for a field Comeet held nothing in.
EMPTY = "(empty)"
#: After a resume's `old → new`: Comeet returns a link to its file, not the file itself.
FILE_NOT_COMPARED = "not compared: Comeet returns a link, not the file; always sent"


@dataclass(frozen=True, slots=True)
class Compared:
    """A patch after comparison: what is left to send (None: nothing), and the `before` text."""

    patch: Patch | None
    before: str


def compare_patch(patch: Patch, candidate: CandidateRead) -> Compared:
    """`patch` without the fields `candidate` holds already, and what it held for the rest."""
    held = candidate.holds(patch.fields)
    sent = {path for path in patch.fields if not holds_same(path, held[path], _value(patch, path))}
    heads = {path.partition(".")[0] for path in sent if "." in path}
    sent |= {path for path in patch.fields if path.partition(".")[0] in heads}
    if not sent:
        return Compared(None, "")
    trimmed = only(patch, sent)
    return Compared(trimmed, before_text({p: held[p] for p in trimmed.fields}, trimmed.body))


def only(patch: Patch, paths: Collection[str]) -> Patch:
    """`patch` sending only the fields `paths` (each whole object they touch) and who made
    the change. Pure."""
    fields = tuple(path for path in patch.fields if path in paths)
    if len(fields) == len(patch.fields):
        return patch
    keys = {path.partition(".")[0] for path in fields} | {"updated_by"}
    body = {key: value for key, value in patch.body.items() if key in keys}
    return replace(patch, body=body, fields=fields, fingerprints=None)


def before_text(held: Mapping[str, Held], body: Mapping[str, Any]) -> str:
    """`first_name: Old → Dana; address.city: not compared (why)`: the `before` cell; a
    resume Comeet held shows its name and `(not compared: ...)`. Pure."""
    parts = []
    for path, was in held.items():
        if isinstance(was, NotReadable):
            parts.append(f"{path}: not compared ({was.reason})")
            continue
        change = f"{path}: {_shown(was)}{ARROW}{_shown(value_at(body, path))}"
        # A file is sent whole, whatever Comeet holds (holds_same): say it was not compared.
        parts.append(f"{change} ({FILE_NOT_COMPARED})" if isinstance(was, ResumeLink) else change)
    return "; ".join(parts)


def _value(patch: Patch, path: str) -> Any:
    return value_at(patch.body, path)


def _shown(value: Any) -> str:
    if value is None or value == "":
        return EMPTY
    if isinstance(value, ResumeLink):
        return value.name or "a file"
    if isinstance(value, Mapping):  # a file object as sent: its name, never its bytes
        name = value.get("name")
        return name if isinstance(name, str) and name else "a file"
    if isinstance(value, list | tuple):
        return ", ".join(map(_shown, value))
    return str(value)
