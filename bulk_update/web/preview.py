"""The sheet steps of the page, each a call into the library: read, map columns, preview.

Nothing here decides a rule of its own: reading is `pipeline.load`, column matching is
`schema.resolve_columns`, and the preview is the library's dry run (`wiring.dry_run`, the
column-at-a-time engine where it applies, as on the command line): its counts, invalid
rows, first patches and sheet.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..auth import Credentials
from ..config import Settings
from ..errors import InputError, UnknownColumnError
from ..journal import Journal
from ..limiter import estimate_duration
from ..models import HiddenContent, Outcome, Rate, SheetRow
from ..output import duration_parts
from ..patch import files_summarised
from ..pipeline import Sheet, load
from ..reader import read_sheet
from ..schema import CUSTOM_FIELDS_PREFIX, FIELDS, resolve_columns
from ..wiring import SHOWN_PATCHES, dry_run

__all__ = [
    "FIELD_CHOICES",
    "ChangeLine",
    "InvalidLine",
    "PatchLine",
    "Preview",
    "UnknownColumn",
    "find_unknown_columns",
    "format_duration",
    "load_upload",
    "make_preview",
    "mapped_settings",
    "shown_body",
]

#: The fields a column can be mapped to in the mapping step: uid first, then by name.
FIELD_CHOICES: tuple[str, ...] = ("uid", *sorted(FIELDS - {"uid"}))
SHOWN_INVALID = 100
#: "Keep an undo sheet" starts ticked when the run with it takes less than this (seconds).
BACKUP_BY_DEFAULT_UNDER_S = 600.0
_BODY_CHARS = 1500


@dataclass(frozen=True, slots=True)
class UnknownColumn:
    """A header the library could not place, with its closest field name."""

    header: str
    suggestion: str | None
    examples: tuple[str, ...] = ()

    @property
    def custom_field(self) -> str:
        """The custom field this column would feed if the user says it is one."""
        return CUSTOM_FIELDS_PREFIX + self.header.strip()


@dataclass(frozen=True, slots=True)
class InvalidLine:
    """An invalid row as the preview lists it."""

    row: int
    uid: str
    problems: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PatchLine:
    """One of the first patches, its body as JSON text (file contents summed up)."""

    row: int
    uid: str
    body: str


@dataclass(frozen=True, slots=True)
class ChangeLine:
    """A compared row: each field it will send, `field: old → new; ...` (its `before`)."""

    row: int
    uid: str
    before: str


@dataclass(frozen=True, slots=True)
class Preview:
    """What a dry run of the sheet says: counts, invalid rows, first patches, duration."""

    counts: tuple[tuple[Outcome, int], ...]
    rows: int
    sends: int
    estimate_s: float
    rate: Rate
    invalid: tuple[InvalidLine, ...]
    invalid_total: int
    patches: tuple[PatchLine, ...]
    report: Path | None
    journal_used: bool
    #: What the sheet holds out of view, and what the run will do with it (None: not said).
    hidden: HiddenContent = field(default_factory=HiddenContent)
    #: A CSV's encoding and how it was chosen (`cp1255 (detected)`); None for XLSX.
    encoding: str | None = None
    #: The time sending takes with an undo sheet: each row is read first (twice the requests).
    backup_estimate_s: float = 0.0
    #: "Compare with Comeet" was done: each row to send was read (one read per row), and
    #: `changes` holds the first rows' `field: old → new` (the shown patches', wiring.DryRun).
    compared: bool = False
    changes: tuple[ChangeLine, ...] = ()

    @property
    def backup_by_default(self) -> bool:
        """Whether the confirm step's "Keep an undo sheet" starts ticked: when the run with
        it takes under ten minutes."""
        return self.backup_estimate_s < BACKUP_BY_DEFAULT_UNDER_S

    def count(self, outcome: Outcome) -> int:
        """How many rows end with `outcome` in the dry run."""
        return dict(self.counts).get(outcome, 0)


def mapped_settings(settings: Settings, mapping: dict[str, str], ignored: list[str]) -> Settings:
    """`settings` with the mapping step's choices added to `[columns]` and ignore_columns."""
    return settings.with_overrides(
        columns={**settings.columns, **mapping},
        ignore_columns=(*settings.ignore_columns, *ignored),
    )


def find_unknown_columns(path: Path, settings: Settings) -> list[UnknownColumn]:
    """Every header of the sheet that is neither a field, nor mapped, nor ignored.

    The library names them all at once, so that the mapping step can show every one.
    """
    raw = read_sheet(path, sheet=settings.sheet, encoding=settings.encoding)
    headers = raw.headers
    try:
        resolve_columns(headers, mapping=settings.columns, ignore=settings.ignore_columns)
    except UnknownColumnError as exc:
        return [
            UnknownColumn(header, suggestion, _examples(raw.rows, headers.index(header)))
            for header, suggestion in exc.unknown
        ]
    except InputError:
        pass  # another problem of the sheet: loading it again will say which
    return []


def _examples(rows: Sequence[SheetRow], index: int, count: int = 3) -> tuple[str, ...]:
    """The first few distinct non-empty cells of a column, shortened, to help map it."""
    seen: dict[str, None] = {}
    for row in rows:
        value = row.values[index] if index < len(row.values) else ""
        if value:
            seen[value if len(value) <= 40 else value[:39] + "…"] = None
            if len(seen) == count:
                break
    return tuple(seen)


def load_upload(path: Path, settings: Settings, files_dir: Path) -> Sheet:
    """Read an uploaded sheet (InputError, UnknownColumnError) as if it were in `files_dir`.

    The file itself waits in a private folder, but its Resume, Picture and Files cells give
    paths relative to the sheet's folder: the sheet is placed, by name only, in `files_dir`,
    so that those paths are looked up there (and nowhere outside it, as for any sheet).
    """
    sheet = load(path, settings)
    return Sheet(raw=replace(sheet.raw, path=files_dir / path.name), columns=sheet.columns)


def make_preview(
    sheet: Sheet,
    settings: Settings,
    *,
    path: Path,
    journal: Journal | None,
    report_path: Path | None,
    credentials: Credentials | None = None,
) -> Preview:
    """The dry run of `sheet`, read from the file at `path` (blocking: call it in a worker
    thread). While the file is there, a CSV may be done a column at a time, with the same
    results. With a `journal`, fields already applied are left out, exactly as the run will
    do; the preview is not listed in its history (its sheet goes with the upload).
    """
    done = dry_run(
        path,
        settings,
        sheet=sheet,
        journal=journal,
        report_path=report_path or False,
        in_history=False,
        credentials=credentials,
    )
    summary = done.summary
    # Compared, the rows to send are those Comeet does not hold already (the rest unchanged).
    sends = summary.counts.get(Outcome.WOULD_UPDATE, 0) if summary.compared else done.sends
    invalid = [r for r in summary.results if r.outcome is Outcome.INVALID]
    return Preview(
        counts=tuple((o, n) for o in Outcome if (n := summary.counts.get(o, 0))),
        rows=done.rows,
        sends=sends,
        # A compared run reads each row to send again before its PATCH: twice the requests.
        estimate_s=estimate_duration((1 + summary.compared) * sends, settings.rate),
        backup_estimate_s=estimate_duration(2 * sends, settings.rate),
        compared=summary.compared,
        changes=tuple(
            ChangeLine(p.row, p.uid, done.before[p.row])
            for p in done.patches
            if p.row in done.before
        ),
        rate=settings.rate,
        invalid=tuple(
            InvalidLine(r.row, r.uid, _problem_lines(r.message, sheet.headers))
            for r in invalid[:SHOWN_INVALID]
        ),
        invalid_total=summary.counts.get(Outcome.INVALID, 0),
        patches=tuple(
            PatchLine(p.row, p.uid, shown_body(p.body)) for p in done.patches[:SHOWN_PATCHES]
        ),
        report=summary.report_path,  # the next free name when the path asked was locked
        journal_used=journal is not None,
        hidden=summary.hidden,
        encoding=done.encoding,
    )


def _problem_lines(message: str, headers: Sequence[str]) -> tuple[str, ...]:
    """An invalid row's message, as the preview sheet has it, a problem a line.

    The message joins the row's problems with "; ", each `<column>: <what to do>` (the
    column as the sheet spells it); a problem's own text may hold "; " too, so a new line
    starts only where the next part names a column of the sheet. For display: every
    character of the message is shown whatever the split.
    """
    starts = tuple(f"{header}: " for header in headers if header)
    lines: list[str] = []
    for part in message.split("; "):
        if lines and not part.startswith(starts):
            lines[-1] += "; " + part
        else:
            lines.append(part)
    return tuple(lines)


def shown_body(body: Any) -> str:
    """A PATCH body as indented JSON, file contents summed up, cut past 1,500 characters."""
    text = json.dumps(files_summarised(body), ensure_ascii=False, indent=2)
    return text if len(text) <= _BODY_CHARS else text[:_BODY_CHARS] + "\n…"


def format_duration(seconds: float) -> str:
    """`about 3 min 20 s`, `about 1 h 05 min`; `a few seconds` under 5 s."""
    if seconds < 5:
        return "a few seconds"
    hours, minutes, secs = duration_parts(seconds)
    if hours:
        return f"about {hours} h {minutes:02d} min"
    if minutes:
        return f"about {minutes} min {secs:02d} s" if secs else f"about {minutes} min"
    return f"about {secs} s"
