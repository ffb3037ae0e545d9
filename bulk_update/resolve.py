"""`--resolve-ids`: a row keyed by the number in Comeet's web page address, sent to the
candidate's real uid (contract section 11).

The pool reads such a row with `IDENTIFIER_TYPE: REAL_ID` (`_Run.read_first`); the answer
carries the uid. The row is then planned again under that uid, against the journal, as
`pipeline.plan` plans a row typed with its uid: fields already applied to it are left
out, and a note it was given already is never sent twice. The journal records the row
under the resolved uid.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from .journal import Journal, NoteEntry
from .models import Outcome, Patch
from .patch import build_patch, value_at

__all__ = [
    "RESOLVED",
    "Replan",
    "is_number",
    "journal_replan",
    "resolved_message",
    "run_replan",
    "unplanned",
]

#: The message of a row sent to the uid its web page number stands for.
RESOLVED = "uid resolved from the web page number {number}"

#: A row's patch planned again under its resolved uid: the patch (None: everything in it
#: was applied to that uid already) and the warnings to show with the row.
Replan = Callable[[Patch, str], tuple[Patch | None, tuple[str, ...]]]


def is_number(uid: str) -> bool:
    """Whether a uid cell holds the web page's number (digits alone), not an API uid. Pure."""
    return uid.isdigit()


def resolved_message(number: str) -> str:
    """What the report's `message` says of a resolved row. Pure."""
    return RESOLVED.format(number=number)


def unplanned(patch: Patch, uid: str) -> tuple[Patch | None, tuple[str, ...]]:
    """A run without a journal: the same patch, sent to `uid`."""
    return replace(patch, uid=uid), ()


def journal_replan(
    journal: Journal,
    *,
    full: bool,
    updated_by: Mapping[str, str],
    note_warning: Callable[[NoteEntry], str],
) -> Replan:
    """The `Replan` of a run with `journal` (planned with `full`, `updated_by` the config's
    default): the row planned as if its uid had been typed; `note_warning` says why a
    note is left out."""

    def replan(patch: Patch, uid: str) -> tuple[Patch | None, tuple[str, ...]]:
        values = _values(patch)
        last = {} if full else dict(journal.applied_many([uid])[uid])
        last = journal.rekey(last, values)
        warnings: tuple[str, ...] = ()
        note = values.get("note")
        if isinstance(note, str):
            notes = journal.note_entries_many([uid])[uid]
            note_fp, entry = journal.note_entry(notes, note)
            if entry is not None:
                last["note"] = note_fp
                warnings = (note_warning(entry),)
        built = build_patch(
            patch.row,
            uid,
            values,
            default_updated_by=updated_by,
            last_applied=last,
            fingerprint_of=journal.fingerprint,
        )
        if isinstance(built, Outcome):  # UNCHANGED: all of it applied to that uid already
            return None, warnings
        return built, warnings

    return replan


def run_replan(
    journal: Journal | None,
    *,
    full: bool,
    updated_by: Mapping[str, str],
    note_warning: Callable[[NoteEntry], str],
    notes: dict[str, str],
) -> Replan:
    """A run's `Replan`: against the `journal` its plan was made with (None: `unplanned`);
    `notes` (uid -> the fingerprint of the note sent to it) follows the row to its uid."""
    if journal is None:
        return unplanned
    replan = journal_replan(journal, full=full, updated_by=updated_by, note_warning=note_warning)

    def followed(patch: Patch, uid: str) -> tuple[Patch | None, tuple[str, ...]]:
        notes.pop(patch.uid, None)
        planned, warnings = replan(patch, uid)
        if planned is not None and "note" in planned.body:
            notes[uid] = journal.fingerprint(planned.body["note"])
        return planned, warnings

    return followed


def _values(patch: Patch) -> dict[str, Any]:
    """The row's values as `build_patch` takes them, from the patch built of them."""
    values = {path: value_at(patch.body, path) for path in patch.fields}
    updated_by = patch.body.get("updated_by")
    if isinstance(updated_by, Mapping):
        values.update({f"updated_by.{key}": value for key, value in updated_by.items()})
    return values
