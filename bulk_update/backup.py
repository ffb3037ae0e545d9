"""--backup: what each patch replaces, on disk before the patch leaves (contract section 11).

Right before a row's PATCH the candidate is read (through the run's `Retrier`, like every
request) and `Backup.keep` appends what Comeet held for each field the patch sends to the
run's backup file, `<state dir>/runs/<n>/backup/backup.jsonl` (beside the kept results
sheet, records.py), and fsyncs it; the folders that hold it are fsynced once, when it is
created (records.sync_folder). A run killed at any instant, SIGKILL or a power cut, has
the before-values of every row whose PATCH may have left. A resume Comeet returns as a
link (it expires about 15 minutes after the read) is downloaded at once into a folder
beside the undo sheet. undo.py turns the file into the undo sheet, at the end of the run
or later (`bulk-update undo-sheet --run N`).

Why a file per run and not a journal table: the journal holds no candidate data, only keyed
fingerprints (journal/__init__.py); before-values are candidate data, owned by one run, and
go where that run's results sheet is kept. Every file and folder is created owner-only
(0600/0700), as the state dir's are.

The file is JSON lines: a first line naming the undo sheet and the resumes' folder; then per
row, before its PATCH, `{"row", "uid", "before": {field: value}, "lost": {field: reason}}`
(a resume's value is `{"file", "name"}`); after its answer, `{"row", "outcome"}`. A line cut
short by a kill is the last one and is ignored on reading.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from .models import Outcome, Patch
from .readmodel import CandidateRead, NotReadable, ResumeLink
from .records import private_folder, sync_folder

__all__ = [
    "BACKUP_FILE",
    "EMPTY_BEFORE",
    "BackedUpRow",
    "Backup",
    "BackupError",
    "BackupRecord",
    "default_undo_path",
    "private_file",
    "private_folder",
    "read_backup",
    "resumes_folder",
]

BACKUP_FILE = "backup.jsonl"
#: Why a field empty before the run cannot be put back.
EMPTY_BEFORE = "it was empty before, and an empty cell is never sent, so nothing can clear it"
_UNSAFE = re.compile(r"[^\w.\- ]+")


class BackupError(Exception):
    """A resume could not be downloaded: the row is not patched."""


def default_undo_path(input_path: Path) -> Path:
    """`<input stem>.undo.xlsx` beside the input."""
    return input_path.with_name(f"{input_path.stem}.undo.xlsx")


def resumes_folder(undo_sheet: Path) -> Path:
    """The folder beside the undo sheet holding the resumes it puts back."""
    return undo_sheet.with_name(f"{undo_sheet.stem} resumes")


def private_file(path: Path, *, append: bool = False) -> int:
    """A file descriptor of `path` opened for writing, the file owner-only (0600)."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    fd = os.open(path, flags | getattr(os, "O_BINARY", 0), 0o600)
    try:
        os.chmod(path, 0o600)  # a file left by an earlier attempt may have had other bits
    except BaseException:
        os.close(fd)
        raise
    return fd


@dataclass
class BackedUpRow:
    """One row as its backup file holds it; `outcome` None when no answer was recorded."""

    row: int
    uid: str
    before: dict[str, Any]
    lost: dict[str, str]
    outcome: str | None = None


@dataclass
class BackupRecord:
    """A run's backup file read back: where its undo sheet goes, and its rows."""

    undo_sheet: Path
    resumes: Path
    #: The run's folder among the resumes ("" for a run without a number).
    label: str = ""
    rows: list[BackedUpRow] = field(default_factory=list)
    #: Where the undo sheet was last written (None: never).
    written: Path | None = None
    #: The run's input sheet (None: a backup written before it was recorded).
    source: Path | None = None


class Backup:
    """The backup file of one run: `keep` before each PATCH, `sent` after its answer."""

    def __init__(
        self,
        path: Path,
        *,
        undo_sheet: Path,
        session: aiohttp.ClientSession | None,
        label: str = "",
        source: Path | None = None,
    ) -> None:
        self.path = path
        self.undo_sheet = undo_sheet
        #: The run's own folder among the resumes (`run <n>`): a later run of the same
        #: sheet downloads beside it, never over a file an earlier undo sheet points to.
        self.resumes = resumes_folder(undo_sheet) / label if label else resumes_folder(undo_sheet)
        self.label = label
        self._session = session
        private_folder(path.parent)
        self._fd = private_file(path, append=True)
        header = {"undo_sheet": str(undo_sheet), "resumes": str(self.resumes), "label": label}
        if source is not None:
            header["sheet"] = str(source)
        try:
            sync_folder(path.parent)  # the file itself, not only its lines, outlives a power cut
            self._write(header, sync=True)
        except BaseException:
            # No Backup is returned, so nobody else could close it: a long-lived web server
            # would keep one descriptor more for each run refused here.
            self.close()
            raise

    def close(self) -> None:
        """Close the file (idempotent)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _write(self, line: Mapping[str, Any], *, sync: bool) -> None:
        os.write(self._fd, (json.dumps(line, ensure_ascii=False) + "\n").encode())
        if sync:
            os.fsync(self._fd)

    async def keep(self, patch: Patch, candidate: CandidateRead) -> None:
        """Put on disk, durably, what the patch will replace. BackupError when a resume
        cannot be downloaded (the row must not be sent); OSError when the disk refuses."""
        before: dict[str, Any] = {}
        lost: dict[str, str] = {}
        for path, held in candidate.holds(patch.fields).items():
            if isinstance(held, NotReadable):
                lost[path] = held.reason
            elif held is None:
                lost[path] = EMPTY_BEFORE
            elif isinstance(held, ResumeLink):
                before[path] = {"file": str(await self._download(patch, held)), "name": held.name}
            else:
                before[path] = held
        self._write({"row": patch.row, "uid": patch.uid, "before": before, "lost": lost}, sync=True)

    def sent(self, patch: Patch, outcome: Outcome) -> None:
        """Say how the row's PATCH ended (no fsync: a lost line only widens the undo sheet)."""
        self._write({"row": patch.row, "outcome": outcome.value}, sync=False)

    async def _download(self, patch: Patch, link: ResumeLink) -> Path:
        if self._session is None:
            raise BackupError("the resume could not be downloaded: no session to download with")
        name = _UNSAFE.sub("_", Path(link.name.replace("\\", "/")).name).strip(" .") or "resume"
        # A folder per row keeps the file's own name: the undo sheet sends it back under it.
        target = private_folder(self.resumes / f"row {patch.row}") / name
        try:
            async with self._session.get(link.url) as answer:  # a public link: no token
                if answer.status != 200:
                    raise BackupError(
                        f"the resume could not be downloaded (HTTP {answer.status}); "
                        "the row was not sent"
                    )
                data = await answer.read()
        except aiohttp.ClientError as exc:
            raise BackupError(f"the resume could not be downloaded ({exc}); not sent") from None
        fd = private_file(target)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        sync_folder(target.parent)
        return target

    def written(self, undo_sheet: Path) -> None:
        """Record where the undo sheet was written (`history` shows it)."""
        self._write({"written": str(undo_sheet)}, sync=True)


def read_backup(path: Path) -> BackupRecord:
    """Read a run's backup file (OSError when it cannot be read)."""
    record: BackupRecord | None = None
    by_row: dict[int, BackedUpRow] = {}
    for line in _lines(path):
        if "undo_sheet" in line:
            record = BackupRecord(
                Path(line["undo_sheet"]), Path(line["resumes"]), line.get("label", "")
            )
            if "sheet" in line:
                record.source = Path(line["sheet"])
        elif "written" in line and record is not None:
            record.written = Path(line["written"])
        elif "before" in line:
            by_row[line["row"]] = BackedUpRow(
                line["row"], line["uid"], dict(line["before"]), dict(line["lost"])
            )
        elif "outcome" in line and line["row"] in by_row:
            by_row[line["row"]].outcome = line["outcome"]
    if record is None:
        raise OSError(f"{path} is not a backup file")
    record.rows = sorted(by_row.values(), key=lambda r: r.row)
    return record


def _lines(path: Path) -> Iterator[dict[str, Any]]:
    with path.open("rb") as fh:
        for raw in fh:
            try:
                line = json.loads(raw)
            except ValueError:
                return  # cut short by a kill: the last line
            if isinstance(line, dict):
                yield line
