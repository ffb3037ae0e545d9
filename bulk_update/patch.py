"""Pure: a valid row (and the journal's last-applied values) -> the smallest PATCH body.

Nothing here reads files, the clock or the network: `schema.validate_row` has already
turned the cells into API values, and the journal hands in fingerprints, never values.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Collection, Mapping
from types import MappingProxyType
from typing import Any

from .models import Outcome, Patch
from .schema import OBJECT_FIELDS

__all__ = [
    "SHAPES_KEPT",
    "PatchShapes",
    "body_fields",
    "build_patch",
    "files_summarised",
    "fingerprint",
    "value_at",
]

_UPDATED_BY = "updated_by"
_UPDATED_BY_DOT = "updated_by."
_UPDATED_BY_ORDER = ("type", "name", "email")
#: Objects the API accepts only with these leaves present.
_REQUIRED_TOGETHER = {"source_contact": ("full_name", "email")}


def fingerprint(value: Any) -> str:
    """A stable hash of one field's value: sha256 hex of its canonical JSON.

    The journal stores these instead of values, so candidates' data never lands on disk.
    """
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _is_empty(value: Any) -> bool:
    if value is None:
        return True
    if value.__class__ is str or isinstance(value, str):
        return not value or value.isspace()
    if isinstance(value, Mapping | list | tuple):
        return not value
    return False


#: The most shapes a PatchShapes remembers: a sheet has a handful, a hostile one many.
SHAPES_KEPT = 10_000


class PatchShapes:
    """What rows send by their shape alone, each shape worked out once.

    A row's shape is the paths it fills in, in column order. With no journal to compare
    with, it alone decides what `build_patch` gives: SKIPPED (no data field, only
    updated_by) or a body whose `fields` follow from it (an object's leaves kept together
    where its first column is). The values never change that, except for a path that names
    a whole object (`{"address": {...}}`, from a library caller, never from a sheet): such a
    shape is worked out every time. One PatchShapes serves one plan or one dry run; at most
    SHAPES_KEPT shapes are kept, then the memory starts again.
    """

    def __init__(self) -> None:
        self._known: dict[tuple[str, ...], tuple[str, ...]] = {}

    def sends(self, values: Mapping[str, Any]) -> Outcome | tuple[str, ...]:
        """SKIPPED, or the `fields` of the body `build_patch` makes of `values` with no
        journal to compare with: the body itself is never built for a shape known already."""
        shape = tuple(values)
        fields = self._known.get(shape)
        if fields is None:
            built = build_patch(0, "", values, shapes=self)
            fields = () if isinstance(built, Outcome) else built.fields
            self._keep(shape, fields)
        return fields or Outcome.SKIPPED

    def fields(self, sent: tuple[str, ...], body: Mapping[str, Any]) -> tuple[str, ...]:
        """`body_fields(body)` for a body that sends the data paths `sent` (column order)."""
        fields = self._known.get(sent)
        if fields is None:
            fields = body_fields(body)
            self._keep(sent, fields)
        return fields

    def _keep(self, shape: tuple[str, ...], fields: tuple[str, ...]) -> None:
        if not OBJECT_FIELDS.isdisjoint(shape):
            return  # a whole object's leaves are its value's keys: not the shape's alone
        if len(self._known) >= SHAPES_KEPT:
            self._known.clear()
        self._known[shape] = fields


def build_patch(
    row_number: int,
    uid: str,
    values: Mapping[str, Any],
    *,
    default_updated_by: Mapping[str, str] = MappingProxyType({}),
    last_applied: Mapping[str, str] | None = None,
    fingerprint_of: Callable[[Any], str] = fingerprint,
    shapes: PatchShapes | None = None,
) -> Patch | Outcome:
    """The PATCH body for one row, or why nothing is to be sent.

    `values` maps dotted paths to API values in column order (a `uid` key is ignored: the
    uid goes in the URL). Dotted paths nest on their first dot (`custom_fields.Team Size`
    -> `{"custom_fields": {"Team Size": ...}}`); empty values are never sent. `updated_by`
    is `default_updated_by` overridden key by key by the row's `updated_by.*` values, and
    comes last in the body. A data field whose fingerprint equals `last_applied[path]` was
    already applied and is left out (so the same `note` is never added twice), except the
    parts of `source_contact` the API requires whenever any of it is sent.

    `fingerprint_of` is how `last_applied` was computed (the journal's keyed hash).
    `shapes` remembers the `fields` of each shape (rows of a sheet share a handful).

    Returns SKIPPED when the row carries no data field (only updated_by), UNCHANGED when
    every data field was left out as already applied, else the Patch.
    """
    data: dict[str, Any] = {}
    row_updated_by: dict[str, Any] = {}
    for path, value in values.items():
        if path == "uid" or _is_empty(value):
            continue
        if path.startswith(_UPDATED_BY_DOT):
            row_updated_by[path[len(_UPDATED_BY_DOT) :]] = value
        else:
            data[path] = value
    if not data:
        return Outcome.SKIPPED
    send: Collection[str] = data
    fps: dict[str, str] | None = None
    if last_applied is not None:
        fps = {path: fingerprint_of(value) for path, value in data.items()}
        send = {path for path, fp in fps.items() if last_applied.get(path) != fp}
        if not send:
            return Outcome.UNCHANGED
        # The API refuses a source_contact without full_name and email, so when any part of
        # it changed, its required parts go along even though they were applied before.
        for head, required in _REQUIRED_TOGETHER.items():
            if any(p.partition(".")[0] == head for p in send):
                send.update(p for p in (f"{head}.{leaf}" for leaf in required) if p in data)
    body: dict[str, Any] = {}
    shape: list[str] = []
    for path, value in data.items():  # column order
        if send is not data and path not in send:
            continue
        shape.append(path)
        head, dot, leaf = path.partition(".")
        if dot:
            body.setdefault(head, {})[leaf] = value
        else:
            body[path] = value
    merged = {k: v for k, v in default_updated_by.items() if not _is_empty(v)}
    merged.update(row_updated_by)
    if merged:
        # type, name, email first: the order the API documents, easier to read in a dry run.
        known = [k for k in _UPDATED_BY_ORDER if k in merged]
        order = known + [k for k in merged if k not in known]
        body[_UPDATED_BY] = {k: merged[k] for k in order}
    # body order: column order, an object's leaves kept together where its first column is.
    fields = body_fields(body) if shapes is None else shapes.fields(tuple(shape), body)
    # Kept for the journal when each field is a column (a file object's leaves are not).
    kept = (
        {path: fps[path] for path in fields if path != "note"}
        if fps is not None and all(path in fps for path in fields)
        else None
    )
    return Patch(row=row_number, uid=uid, body=body, fields=fields, fingerprints=kept)


def value_at(body: Mapping[str, Any], path: str) -> Any:
    """The value a body carries for one of its `fields` paths."""
    head, dot, leaf = path.partition(".")
    if dot and isinstance(body.get(head), Mapping) and leaf in body[head]:
        return body[head][leaf]
    return body[path]


def body_fields(body: Mapping[str, Any]) -> tuple[str, ...]:
    """The dotted leaf paths of a body's data (no `updated_by.*`), in body order.

    Objects of fields (`address`, `source_contact`, `custom_fields`) give one path per
    leaf; file and link objects (`resume`, `files`, ...) count as their top-level name.
    """
    paths: list[str] = []
    for key, value in body.items():
        if key == _UPDATED_BY:
            continue
        if key in OBJECT_FIELDS and isinstance(value, Mapping):
            paths.extend(f"{key}.{leaf}" for leaf in value)
        else:
            paths.append(key)
    return tuple(paths)


def files_summarised(value: Any) -> Any:
    """A body as a preview shows it: each file's content summed up as its size, not dumped
    as base64."""
    if isinstance(value, Mapping):
        return {
            k: (
                f"<{len(v) * 3 // 4 - v.count('='):,} bytes, base64>"
                if k == "file" and isinstance(v, str)
                else files_summarised(v)
            )
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [files_summarised(v) for v in value]
    return value
