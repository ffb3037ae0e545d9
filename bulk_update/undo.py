"""The undo sheet: a run's backup file (backup.py) as an input sheet that puts it back.

Its first worksheet (or the CSV) is an input sheet like any other: `uid`, then one column
per field the run changed whose earlier value can be written back, holding that value (a
resume as the path of its downloaded file, in the folder beside the sheet), then the column
`Not restorable`, which the column rules always ignore (models.NOT_RESTORABLE), saying per
field why it cannot be put back. An XLSX has the same, one line per row and field, in a
second worksheet, `Not restorable`, which a run does not read (it reads the first).

Its values are often what candidates typed themselves, so the sheet is formula-safe as a
report is: a CSV's cells are defused (`defuse_csv_cell`), an XLSX's are text (`xlsx_text`);
the loader knows an undo sheet by its headers (models.is_undo_sheet) and reads its cells
back as first typed, so running it sends each value exactly as Comeet held it.

A row whose PATCH was surely refused (`not_found`, `rejected`) changed nothing and is left
out; every other row that was backed up is in, including the rows of a killed run whose
answer never came: writing back a value a candidate still holds changes nothing.
The sheet and the resumes' folder are created owner-only (0600/0700).

A value Comeet held that the sheet's own run would refuse (undocheck.py), or that an XLSX
cell cannot hold as it is, stays out of its cell and is said in `Not restorable`
(`restorable`): one such value must not keep the rest of its row from coming back.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import aiohttp

from . import records, undocheck, xlsx
from .backup import (
    BACKUP_FILE,
    BackedUpRow,
    Backup,
    BackupRecord,
    default_undo_path,
    private_file,
    private_folder,
    read_backup,
    resumes_folder,
)
from .errors import CannotStartError, ConfigError
from .models import Outcome, undo_headers
from .reader import read_sheet
from .records import kept_folder, private_temp
from .report import defuse_csv_cell, put_in_place, xlsx_text
from .reportfile import OutputSheet, check_report_path

__all__ = [
    "NOT_RESTORABLE_SHEET",
    "UNDO_SHEET",
    "UNDO_WORKSHEET",
    "backup_path",
    "check_undo_sheet",
    "finish_backup",
    "restorable",
    "run_undo_sheet",
    "start_backup",
    "undo_bundle",
    "undo_sheet_of_run",
    "undo_table",
    "write_undo_sheet",
]

log = logging.getLogger("bulk_update")

NOT_RESTORABLE_SHEET = "Not restorable"
#: The worksheet of an XLSX undo sheet that a run reads (the first).
UNDO_WORKSHEET = "Undo"
_UNAPPLIED = frozenset({Outcome.NOT_FOUND.value, Outcome.REJECTED.value})
#: The undo sheet, as the checks of a sheet's path name it (reportfile.check_report_path).
UNDO_SHEET = OutputSheet("undo sheet", "--undo-sheet", default_undo_path)


def check_undo_sheet(
    undo_sheet: Path | None,
    *,
    backup: bool,
    source: Path,
    report: Path | None,
    dry_run: bool = False,
) -> Path | None:
    """The undo sheet a run with `backup` writes (`undo_sheet`, default `<input
    stem>.undo.xlsx` beside `source`), checked before anything is sent as the report is
    (ConfigError): a .xlsx or .csv, in a folder that takes files, neither the input sheet
    nor the results sheet (`report`). None without `backup`; given without it, ConfigError:
    whoever asked for an undo sheet must not get a run that keeps none. None for a
    `dry_run`, which writes none: where it would go is not its concern (the web page's
    preview reads an upload from a folder its run never writes to); the argument mistake
    is refused all the same."""
    if not backup:
        if undo_sheet is not None:
            raise ConfigError(
                f"--undo-sheet '{undo_sheet}' was given without --backup: the run would "
                "keep no undo sheet",
                fix="add --backup (or `backup = true` under [run] in the config file), or "
                "leave out --undo-sheet",
            )
        return None
    if dry_run:
        return None
    path = Path(undo_sheet or default_undo_path(source))
    taken = [("the results sheet", report)] if report is not None else []
    check_report_path(path, source=source, kind=UNDO_SHEET, others=taken)
    return path


def _applied(rows: Sequence[BackedUpRow]) -> list[BackedUpRow]:
    return [row for row in rows if row.outcome not in _UNAPPLIED]


def undo_table(record: BackupRecord, undo_sheet: Path) -> list[list[str]]:
    """The undo sheet's first worksheet as text, header first; copies each resume into the
    folder beside `undo_sheet` when it is not there already."""
    rows = _applied(record.rows)
    fields = list(dict.fromkeys(path for row in rows for path in row.before))
    table = [undo_headers(fields)]
    for row in rows:
        cells = [row.uid]
        for path in fields:
            value = row.before.get(path)
            if isinstance(value, dict):  # a resume: its file, beside the sheet
                value = _resume_cell(Path(value["file"]), row.row, undo_sheet, record.label)
            cells.append(value or "")
        cells.append("; ".join(f"{path}: {why}" for path, why in row.lost.items()))
        table.append(cells)
    return table


def restorable(record: BackupRecord, undo_sheet: Path) -> BackupRecord:
    """`record` as the undo sheet at `undo_sheet` can put it back: each before-value the
    sheet's run would refuse (undocheck.refused), or an XLSX cell cannot hold as it is,
    moved to its row's `lost`, with why, so that its cell stays empty and the rest of the
    row is put back; each resume in the folder beside the sheet (copied there by
    `undo_table` when it was not)."""
    rows = _applied(record.rows)
    if undo_sheet.suffix.lower() != ".csv":  # an XLSX, as write_undo_sheet writes it
        lost = undocheck.not_in_xlsx(record.label)
        rows = [
            _moved(row, {path: lost for path in undocheck.xlsx_loses(row.before)}) for row in rows
        ]
    record = replace(record, rows=rows)
    table = undo_table(record, undo_sheet)
    checked = []
    for row, line, why in zip(
        rows, table[1:], undocheck.refused(table, undo_sheet.parent), strict=True
    ):
        kept = _moved(row, why)
        for path, value in kept.before.items():
            if isinstance(value, dict):  # its copy beside the sheet, found again as it is
                cell = line[table[0].index(path)]
                kept.before[path] = {**value, "file": str(undo_sheet.parent / cell)}
        checked.append(kept)
    return replace(record, rows=checked)


def _moved(row: BackedUpRow, why: dict[str, str]) -> BackedUpRow:
    """`row` (a copy) with the before-values of `why`'s fields moved to `lost`, with why."""
    before = {path: value for path, value in row.before.items() if path not in why}
    return replace(row, before=before, lost={**row.lost, **why})


def _resume_cell(file: Path, row: int, undo_sheet: Path, label: str) -> str:
    resumes = resumes_folder(undo_sheet)
    if not file.resolve().is_relative_to(resumes.resolve()):
        folder = private_folder((resumes / label if label else resumes) / f"row {row}")
        shutil.copyfile(file, folder / file.name)
        os.chmod(folder / file.name, 0o600)
        file = folder / file.name
    return Path(os.path.relpath(file, undo_sheet.parent)).as_posix()


def _lost_lines(record: BackupRecord) -> Iterator[list[xlsx.Cell]]:
    yield [(h, xlsx.BOLD) for h in ("row", "uid", "field", "why it cannot be put back")]
    for row in _applied(record.rows):
        for path, why in row.lost.items():
            # A field's name is the input's header (a CSV's may hold a control character),
            # a reason may quote what Comeet held: each as an XLSX cell can hold it.
            yield [row.row, *map(xlsx_text, (row.uid, path, why))]


def write_undo_sheet(record: BackupRecord, undo_sheet: Path) -> Path:
    """Write the undo sheet of `record` at `undo_sheet` (.xlsx or .csv, owner-only) and
    return where it went (the next free name when the file is open in Excel)."""
    undo_sheet = Path(undo_sheet)
    record = restorable(record, undo_sheet)
    table = undo_table(record, undo_sheet)
    tmp = private_temp(undo_sheet)
    try:
        if undo_sheet.suffix.lower() == ".csv":
            buffer = io.StringIO()
            # Defused as a CSV report is (a name `=HYPERLINK(...)` is no formula in Excel);
            # the loader takes the apostrophe off again, so a phone's leading + is sent.
            csv.writer(buffer).writerows([map(defuse_csv_cell, line) for line in table])
            with tmp.open("w", encoding="utf-8-sig", newline="") as fh:
                fh.write(buffer.getvalue())
        else:
            first = [[(h, xlsx.BOLD) for h in table[0]]] + [
                [xlsx_text(cell) for cell in line] for line in table[1:]
            ]
            xlsx.write_workbook(
                tmp,
                [
                    xlsx.SheetSpec(UNDO_WORKSHEET, first, freeze_header=True),
                    xlsx.SheetSpec(NOT_RESTORABLE_SHEET, _lost_lines(record), freeze_header=True),
                ],
            )
        os.chmod(tmp, 0o600)
        return put_in_place(tmp, undo_sheet)
    finally:
        tmp.unlink(missing_ok=True)


def backup_path(state_dir: Path, run_id: int) -> Path:
    """Where run `run_id` keeps its backup file (in its folder of the state dir)."""
    return kept_folder(state_dir, run_id) / "backup" / BACKUP_FILE


def start_backup(
    state_dir: Path | None,
    run_id: int | None,
    undo_sheet: Path,
    session: aiohttp.ClientSession | None,
    stack: contextlib.ExitStack,
    *,
    source: Path | None = None,
) -> Backup:
    """Open a run's backup file: in its folder of the state dir; without a journal (the
    in-process sandbox) in a private temporary folder, gone when `stack` closes. `source`:
    the run's input sheet, recorded so that its undo sheet is never written over it."""
    if state_dir is not None and run_id is not None:
        path = records.run_folder(state_dir, run_id) / "backup" / BACKUP_FILE
    else:
        path = Path(stack.enter_context(tempfile.TemporaryDirectory())) / BACKUP_FILE
    label = f"run {run_id}" if run_id is not None else ""
    backup = Backup(path, undo_sheet=undo_sheet, session=session, label=label, source=source)
    stack.callback(backup.close)
    return backup


def finish_backup(backup: Backup, run_id: int | None) -> Path | None:
    """Write the undo sheet of a run's backup from what is on disk; where it went, or None
    when it could not be written (the log says why, and how to write it later)."""
    try:
        written = write_undo_sheet(read_backup(backup.path), backup.undo_sheet)
        backup.written(written)
    except (OSError, ValueError) as exc:
        later = f"; `bulk-update undo-sheet --run {run_id}` writes it" if run_id else ""
        log.error("the undo sheet could not be written (%s)%s", exc, later)
        return None
    return written


def undo_sheet_of_run(state_dir: Path, run_id: int, undo_sheet: Path | None = None) -> Path:
    """Write run `run_id`'s undo sheet from its backup file (a killed run's too): at
    `undo_sheet`, else where the run meant to. CannotStartError when the run kept none."""
    path = backup_path(state_dir, run_id)
    if not path.is_file():
        raise CannotStartError(
            f"run #{run_id} kept no backup in {state_dir}",
            fix="only a run with --backup has an undo sheet; `bulk-update history` lists "
            "the runs (give the same --state-dir as the run's)",
        )
    record = read_backup(path)
    target = Path(undo_sheet or record.undo_sheet)
    check_report_path(target, source=record.source, kind=UNDO_SHEET)
    written = write_undo_sheet(record, target)
    fd = private_file(path, append=True)
    try:
        os.write(fd, (json.dumps({"written": str(written)}) + "\n").encode())
    finally:
        os.close(fd)
    return written


def run_undo_sheet(state_dir: Path, run_id: int) -> Path | None:
    """Where run `run_id`'s undo sheet was last written; None without one."""
    path = backup_path(state_dir, run_id)
    try:
        return read_backup(path).written if path.is_file() else None
    except OSError:
        return None


def undo_bundle(undo_sheet: Path, name: str) -> Path:
    """The undo sheet as one download: itself when it puts back no resume; otherwise a
    .zip beside it (owner-only, made again only when the sheet changed) holding the sheet,
    called `name`, and the resume files its `resume` cells name, at those paths relative
    to the sheet, so that they still lead to the files once the zip is unpacked anywhere.
    Two callers at once each write a temporary of their own; the web page holds a lock so
    that the zip is made once."""
    files = _resume_files(undo_sheet)
    if not files:
        return undo_sheet
    bundle = undo_sheet.with_suffix(".zip")
    if bundle.is_file() and bundle.stat().st_mtime_ns >= undo_sheet.stat().st_mtime_ns:
        return bundle
    tmp = private_temp(bundle)
    try:
        with zipfile.ZipFile(tmp, "w") as zf:
            zf.write(undo_sheet, name)
            for cell, file in files:  # PDF, DOCX: compressed already, stored as they are
                zf.write(file, cell)
        os.replace(tmp, bundle)
    finally:
        tmp.unlink(missing_ok=True)
    return bundle


def _resume_files(undo_sheet: Path) -> list[tuple[str, Path]]:
    """The resume files an undo sheet's `resume` cells name (cell text, file), in the
    folder beside it; none for a sheet without that column."""
    contents = read_sheet(undo_sheet, sheet=UNDO_WORKSHEET)
    if "resume" not in contents.headers:
        return []
    column = contents.headers.index("resume")
    found: dict[str, Path] = {}
    for row in contents.rows:
        cell = row.values[column] if column < len(row.values) else ""
        file = (undo_sheet.parent / cell).resolve() if cell else None
        if file and file.is_relative_to(resumes_folder(undo_sheet).resolve()) and file.is_file():
            found[cell] = file
    return sorted(found.items())
