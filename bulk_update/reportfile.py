"""Where a results sheet goes and how it gets there: its default name, the checks that it
can be written (before anything is sent), the temp file beside it and the atomic move into
place (the next free name when the file is locked). report.py offers these names too.
"""

from __future__ import annotations

import itertools
import logging
import os
import uuid
from pathlib import Path

from .errors import ConfigError

__all__ = [
    "XLSX_MAX_ROWS",
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


def check_report_path(path: Path, rows: int | None = None, *, source: Path | None = None) -> None:
    """Raise ConfigError if a report of `rows` result lines could not be written at `path`.

    Cheap and side-effect free, so a caller can check before sending anything: a run should
    not apply ten thousand rows and then find it cannot say what it did. With `source`
    (the input sheet), a report that would replace it is refused too.
    """
    suffix = path.suffix.lower()
    if suffix not in _FORMATS:
        raise ConfigError(
            f"the report '{path}' must end in .xlsx or .csv",
            fix="use a .xlsx or .csv report path",
        )
    if source is not None and _same_file(path, source):
        raise ConfigError(
            f"the report '{path}' would replace the input sheet",
            fix="choose another file for the report (--report), e.g. "
            f"{default_report_path(source)}",
        )
    folder = path.parent
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise ConfigError(
            f"the report's folder '{folder}' {what}",
            fix="create the folder or choose another report path (--report)",
        )
    if path.is_dir():
        raise ConfigError(
            f"the report path '{path}' is a folder",
            fix="give a file name ending in .xlsx or .csv (--report)",
        )
    # The report is made beside its path and moved into place: the folder must take files
    # (read-only file systems included: access() says so too).
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(
            f"the report's folder '{folder}' is not writable",
            fix="choose a folder you can write to (--report), or change its permissions",
        )
    if suffix == ".xlsx" and rows is not None and rows > XLSX_MAX_ROWS:
        raise ConfigError(
            f"{rows:,} rows do not fit in an Excel sheet (at most {XLSX_MAX_ROWS:,})",
            fix="use a .csv report (--report results.csv)",
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
