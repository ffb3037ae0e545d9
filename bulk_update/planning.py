"""Planning: every row of a loaded sheet validated, and its minimal patch built."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from .config import Settings
from .hidden import HIDDEN_ROW_SKIPPED, without_hidden
from .journal import Journal
from .loading import LoadedSheet
from .models import Outcome, Patch, PlannedRow, Problem, SheetRow
from .notes import note_not_sent
from .patch import PatchShapes, build_patch, fingerprint
from .resolve import is_number
from .rowstore import CHUNK_ROWS, RowStore, Shared
from .schema import InvalidRow, RowValidator, find_duplicate_uids


@dataclass(frozen=True, slots=True)
class Plan:
    """Every row of a sheet with its patch, or the reason it will not be sent."""

    sheet: LoadedSheet
    rows: tuple[PlannedRow, ...]
    full: bool = False
    #: The journal the patches' fingerprints were computed with (they hold only for it).
    journal: Journal | None = field(default=None, compare=False, repr=False)

    @property
    def patches(self) -> tuple[Patch, ...]:
        """The bodies to send (only the first few when planned with `bodies=` a number)."""
        return tuple(r.patch for r in self.rows if r.patch is not None)

    @property
    def sends(self) -> int:
        """How many rows are to be sent."""
        return sum(r.outcome is None for r in self.rows)

    def counts(self, *, dry_run: bool = True) -> Counter[Outcome]:
        """Outcome counts as a dry run would report them."""
        counts: Counter[Outcome] = Counter()
        for r in self.rows:
            if r.outcome is not None:
                counts[r.outcome] += 1
            else:
                counts[Outcome.WOULD_UPDATE if dry_run else Outcome.NOT_SENT] += 1
        return counts


def plan(
    sheet: LoadedSheet,
    settings: Settings | None = None,
    *,
    journal: Journal | None = None,
    full: bool = False,
    bodies: int | None = None,
) -> Plan:
    """Validate every row and build its minimal patch.

    With a `journal`, a field whose value equals the one last applied to that uid is left
    out, and a row left with nothing is `unchanged`; `full=True` sends every field again,
    but a note already added (or whose sending an earlier run could not confirm) is never
    sent twice. `bodies=N` keeps the PATCH bodies of the first N rows to send only (a dry
    run shows a few and needs no more; a million bodies would not fit in memory); the
    default keeps them all, as a real run needs.

    With `settings.hidden == "skip"`, rows hidden or filtered out of view are `skipped`
    and hidden columns send nothing (a hidden uid column still says which candidate a
    row is); otherwise they are planned like any other (see `check_hidden`).
    """
    settings = settings or Settings()
    base_dir = sheet.path.resolve().parent
    skip_hidden = settings.hidden == "skip"
    columns = (
        without_hidden(sheet.columns, sheet.raw.hidden_columns) if skip_hidden else sheet.columns
    )
    uid_index = next((c.index for c in columns if c.field == "uid"), None)
    validate = RowValidator(
        columns,
        base_dir=base_dir,
        duplicate_uids=(
            find_duplicate_uids(sheet.rows, sheet.columns)
            if sheet.duplicate_uids is None
            else sheet.duplicate_uids
        ),
        default_updated_by=settings.updated_by,
        resolve_ids=settings.resolve_ids,
    )
    planned: list[PlannedRow] = []
    shapes = PatchShapes()
    # Invalid rows that say the same (a million web-page numbers as uids) share their
    # problems, as rows of one shape share their fields.
    shared = Shared[tuple[Problem, ...]]()
    kept = 0
    for chunk in _chunks(sheet.rows):
        checked = list(map(validate, chunk))
        valid_uids = [c.uid for c in checked if not isinstance(c, InvalidRow)]
        applied = journal.applied_many(valid_uids) if journal and not full else {}
        notes = journal.note_entries_many(valid_uids) if journal else {}
        for row, check in zip(chunk, checked, strict=True):
            if skip_hidden and row.hidden:
                uid = row.values[uid_index].strip() if uid_index is not None else ""
                planned.append(
                    PlannedRow(
                        row.number, uid, None, Outcome.SKIPPED, warnings=(HIDDEN_ROW_SKIPPED,)
                    )
                )
                continue
            if isinstance(check, InvalidRow):
                problems = shared(check.problems)
                planned.append(PlannedRow(row.number, check.uid, None, Outcome.INVALID, problems))
                continue
            last: dict[str, str] | None = None
            warnings: tuple[str, ...] = ()
            if journal is not None:
                last = journal.rekey(dict(applied.get(check.uid, {})), check.values)
                note = check.values.get("note")
                if note:
                    note_fp, entry = journal.note_entry(notes.get(check.uid, {}), note)
                    if entry is not None:
                        last["note"] = note_fp
                        warnings = (note_not_sent(entry),)
            keep = bodies is None or kept < bodies
            if not keep and journal is None:
                # No body to keep and nothing to compare: what is sent follows from which
                # fields the row fills in, so no body is built.
                outcome = shapes.sends(check.values)
                if isinstance(outcome, Outcome):
                    planned.append(PlannedRow(row.number, check.uid, None, outcome))
                else:
                    planned.append(PlannedRow(row.number, check.uid, None, fields=outcome))
                continue
            built = build_patch(
                row.number,
                check.uid,
                check.values,
                default_updated_by=settings.updated_by,
                last_applied=last,
                fingerprint_of=journal.fingerprint if journal else fingerprint,
                shapes=shapes,
            )
            if isinstance(built, Outcome):
                planned.append(PlannedRow(row.number, check.uid, None, built, warnings=warnings))
                continue
            kept += keep
            planned.append(
                PlannedRow(
                    row.number,
                    check.uid,
                    built if keep else None,
                    warnings=warnings,
                    fields=built.fields,
                )
            )
    return Plan(sheet=sheet, rows=tuple(planned), full=full, journal=journal)


def _chunks(rows: Sequence[SheetRow]) -> Iterator[Sequence[SheetRow]]:
    """The rows a chunk at a time: the journal is asked once per chunk, not once per row."""
    if isinstance(rows, RowStore):
        yield from rows.chunks()
        return
    for start in range(0, len(rows), CHUNK_ROWS):
        yield rows[start : start + CHUNK_ROWS]


def reads_first(settings: Settings) -> bool:
    """Whether some rows are read before they are sent (--compare, --resolve-ids)."""
    return settings.compare or settings.resolve_ids


def requests_to_send(the_plan: Plan, settings: Settings) -> int:
    """The requests the plan's real run sends, reads included (the dry run's estimate):
    with --compare two per row (a read, a patch), with --resolve-ids a read more for each
    row keyed by the web page's number; with --backup two per row as well."""
    sends = the_plan.sends
    if settings.compare or settings.backup:
        return 2 * sends
    if settings.resolve_ids:
        return sends + sum(r.outcome is None and is_number(r.uid) for r in the_plan.rows)
    return sends
