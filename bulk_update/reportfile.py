"""Where a results sheet goes and how it gets there: its default name, the checks that it
can be written (before anything is sent), the temp file beside it and the atomic move into
place (the next free name when the file is locked). report.py offers these names too.
"""

from __future__ import annotations

import itertools
import logging
import os
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError

__all__ = [
    "REPORT",
    "XLSX_MAX_ROWS",
    "OutputSheet",
    "check_report_path",
    "create_temp",
    "default_report_path",
    "fits_in_excel",
    "fitting_report",
    "put_in_place",
]

log = logging.getLogger("bulk_update")

#: Excel's last row is 1,048,576; one is the header.
XLSX_MAX_ROWS = 1_048_575

_FORMATS = (".xlsx", ".csv")


def _same_file(one: Path, other: Path) -> bool:
    try:
        return os.path.samefile(one, other)
    except OSError:  # one of them does not exist (yet): compare where they would be
        return one.resolve() == other.resolve()


def default_report_path(input_path: Path, *, dry_run: bool = False) -> Path:
    """`<input stem>.results.xlsx` beside the input; a dry run's `<input stem>.preview.xlsx`,
    so that a preview never replaces the record of a real run."""
    kind = "preview" if dry_run else "results"
    return input_path.with_name(f"{input_path.stem}.{kind}.xlsx")


@dataclass(frozen=True)
class OutputSheet:
    """A sheet a run writes, as `check_report_path`'s messages name it: the results sheet
    (`REPORT`) or the undo sheet (undo.UNDO_SHEET), with its option and default path."""

    noun: str
    option: str
    #: Its default path beside an input sheet (suggested when the path asked cannot be).
    default: Callable[[Path], Path]


REPORT = OutputSheet("report", "--report", default_report_path)


def check_report_path(
    path: Path,
    rows: int | None = None,
    *,
    source: Path | None = None,
    kind: OutputSheet = REPORT,
    others: Sequence[tuple[str, Path]] = (),
) -> None:
    """Raise ConfigError if a report of `rows` result lines could not be written at `path`.

    Cheap and side-effect free, so a caller can check before sending anything: a run should
    not apply ten thousand rows and then find it cannot say what it did. With `source`
    (the input sheet), a report that would replace it is refused too, and so is one that
    would replace a file of `others` (what it is, its path). `kind` (default: the report)
    names the sheet checked in the messages.
    """
    noun, option = kind.noun, kind.option
    suffix = path.suffix.lower()
    if suffix not in _FORMATS:
        raise ConfigError(
            f"the {noun} '{path}' must end in .xlsx or .csv",
            fix=f"use a .xlsx or .csv {noun} path",
        )
    taken = [("the input sheet", source)] if source is not None else []
    for what, other in [*taken, *others]:
        if _same_file(path, other):
            instead = kind.default(source) if source is not None else None
            example = "" if instead is None or _same_file(instead, other) else f", e.g. {instead}"
            raise ConfigError(
                f"the {noun} '{path}' would replace {what}",
                fix=f"choose another file for the {noun} ({option}){example}",
            )
    folder = path.parent
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise ConfigError(
            f"the {noun}'s folder '{folder}' {what}",
            fix=f"create the folder or choose another {noun} path ({option})",
        )
    if path.is_dir():
        raise ConfigError(
            f"the {noun} path '{path}' is a folder",
            fix=f"give a file name ending in .xlsx or .csv ({option})",
        )
    # The sheet is made beside its path and moved into place: the folder must take files
    # (read-only file systems included: access() says so too).
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(
            f"the {noun}'s folder '{folder}' is not writable",
            fix=f"choose a folder you can write to ({option}), or change its permissions",
        )
    if suffix == ".xlsx" and rows is not None and rows > XLSX_MAX_ROWS:
        raise ConfigError(
            f"{rows:,} rows do not fit in an Excel sheet (at most {XLSX_MAX_ROWS:,})",
            fix=f"use a .csv {noun} ({option} {path.with_suffix('.csv').name})",
        )


def fits_in_excel(rows: int) -> bool:
    """True when a report of `rows` result lines fits in one Excel sheet."""
    return rows <= XLSX_MAX_ROWS


def fitting_report(path: Path, rows: int) -> Path:
    """`path`, or a CSV beside it when the rows do not fit in an Excel sheet (with a warning)."""
    if path.suffix.lower() != ".xlsx" or fits_in_excel(rows):
        return path
    csv_path = path.with_suffix(".csv")
    log.warning(
        "%s rows do not fit in an Excel sheet (at most %s): the report is written as CSV, %s",
        f"{rows:,}",
        f"{XLSX_MAX_ROWS:,}",
        csv_path,
        extra={"event": "report_as_csv"},
    )
    return csv_path


def put_in_place(tmp: Path, path: Path) -> Path:
    """Move the finished report `tmp` to `path` and return where it went.

    When `path` cannot be replaced (PermissionError: on Windows, a file open in Excel is
    locked), the report goes to the next free name beside it, `<stem> (2).xlsx`, `(3)`...,
    with a warning: results are never dropped for a file someone is reading. When the
    folder takes no new name either, the first error is raised.
    """
    try:
        os.replace(tmp, path)
        return path
    except PermissionError as exc:
        refused = exc
    for number in itertools.count(2):
        other = path.with_name(f"{path.stem} ({number}){path.suffix}")
        if other.exists() or other.is_symlink():
            continue
        try:
            os.replace(tmp, other)
        except PermissionError:
            raise refused from None
        log.warning(
            "%s cannot be replaced (%s; is it open in Excel?): the report was written to %s",
            path,
            refused.strerror or refused,
            other,
            extra={"event": "report_elsewhere", "fields": {"asked": str(path)}},
        )
        return other
    raise AssertionError("unreachable")  # pragma: no cover - itertools.count never ends


def create_temp(path: Path) -> Path:
    """An empty, new file beside `path`, for the atomic replace.

    Made with os.open rather than tempfile.mkstemp: mkstemp's 0600 mode would carry over
    to the report, while 0666 lets the kernel apply the user's umask (no global umask dance).
    """
    while True:
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:  # pragma: no cover - a 48-bit random name collided
            continue
        os.close(fd)
        return tmp
