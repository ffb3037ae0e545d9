"""The dry run of a large CSV a column at a time (pyarrow), for sheets it can do exactly.

The general dry run (reader -> RowValidator -> build_patch -> report) handles each cell of
the sheet in Python: a million rows of twelve cells take half a minute. `dry_run_csv` does
the same dry run with pyarrow's CSV parser and compute kernels, a block of rows at a time,
with the rules of the general path in their column-at-a-time forms (none written twice):

1. a first pass reads the uid column alone, for the uids typed on more than one row
   (`schema.duplicate_uids_of_column`);
2. each block's cells are stripped as the reader strips them (reader.cells.STRIPPED), and
   each column is checked with its cell rule's column form (`schema.column_check`), which
   only ever accepts what RowValidator accepts: statuses and countries as people type
   them (any case, padded) included, each distinct value asked of the row validator;
3. a row some check does not accept goes to the real RowValidator and build_patch (which
   alone write messages); an accepted row's `fields` follow from which data columns it
   fills in, worked out by build_patch once per such shape;
4. the report is written a block at a time with report.py's and xlsx.py's column forms
   (line order, defusing, CSV quoting, XML escaping, widths): the same file, byte for byte
   (an XLSX report's sheet too; only its Summary's time and duration differ).

It returns None, having written nothing, for a sheet it cannot do exactly, and the caller
takes the general path (which also gives every error message): a file that is not UTF-8,
a header that is not the first line, data in a column without a header, a re-uploaded
results sheet or an undo sheet (their cells are read back as first typed), a row with
fewer or more cells than headers, a row near the reader's size limits, a quote that may be
open at the end of the file, more than 62 data columns, [defaults.updated_by] settings
that leave a row without updated_by invalid. The report is
CSV or XLSX, as asked (XLSX rows rendered by arrow too, laid out by report.write_xlsx_report).
tests/test_columnar.py holds both paths to the same reports.

Modules: `arrow` (reading the CSV with pyarrow), `checks` (the rows' outcomes), `writers`
(the report, a block at a time).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from contextlib import suppress
from dataclasses import dataclass, replace
from functools import reduce
from pathlib import Path

from ..config import Settings
from ..errors import BulkUpdateError
from ..limiter import estimate_duration
from ..models import Outcome, Patch, RunSummary, SheetRow, reads_back_as_typed
from ..reader import CSV_EXTENSIONS, MAX_LINE_CHARS, sniff_csv
from ..reader.cells import PY_SPACE, STRIPPED
from ..report import (
    check_report_path,
    create_temp,
    fits_in_excel,
    fitting_report,
    put_in_place,
)
from ..schema import InvalidRow, RowValidator, duplicate_uids_of_column, resolve_columns
from .arrow import (
    Unsupported,
    batches,
    may_end_in_open_quote,
    read_layout,
    stripped_column,
)
from .checks import MAX_DATA_COLUMNS, Checker, Outcomes
from .writers import CsvReport, XlsxReport

__all__ = ["PY_SPACE", "CsvDryRun", "dry_run_csv"]

log = logging.getLogger("bulk_update")


@dataclass(frozen=True, slots=True)
class CsvDryRun:
    """What a dry run of a CSV found: the summary (its `results` hold only the rows with a
    problem), the sheet's data rows, the rows to send and the first few PATCH bodies."""

    summary: RunSummary
    rows: int
    sends: int
    patches: tuple[Patch, ...]
    #: The CSV's encoding as the dry run shows it (`utf-8 (detected)`).
    encoding: str | None = None


def dry_run_csv(
    path: str | Path,
    settings: Settings | None = None,
    *,
    report_path: Path,
    bodies: int = 5,
    started: float | None = None,
) -> CsvDryRun | None:
    """The dry run of the CSV at `path` with its report at `report_path`, or None.

    Gives what `run_async(plan(load(path)), dry_run=True)` gives, the report byte for byte,
    without a journal (a dry run without COMEET_API_KEY). None, having written nothing,
    when the sheet or the report needs the general path (the module's docstring says
    which). `bodies`: how many of the first PATCH bodies to keep for a preview. `started`
    (a time.monotonic() reading) lets the summary's duration include what came before.
    """
    started = time.monotonic() if started is None else started
    path = Path(path)
    if path.suffix.lower() not in CSV_EXTENSIONS or not path.is_file():
        return None
    import pyarrow as pa  # here, not at the top: a command that needs none starts faster

    try:
        return _dry_run(path, settings or Settings(), report_path, bodies, started)
    except (Unsupported, BulkUpdateError, OSError, pa.ArrowException) as exc:
        log.debug("the column-at-a-time dry run does not take %s: %s", path.name, exc)
        return None


def _dry_run(
    path: Path, settings: Settings, report_path: Path, bodies: int, started: float
) -> CsvDryRun:
    import pyarrow.compute as pc

    fmt = sniff_csv(path, settings.encoding)
    if fmt.encoding not in ("utf-8", "utf-8-sig"):
        raise Unsupported(f"{fmt.encoding} text")
    raw_names, layout = read_layout(path, fmt.delimiter)
    headers = layout.headers
    if reads_back_as_typed(headers):
        # The report leaves a results sheet's own columns out; the reader restores the cells
        # of a results sheet or an undo sheet (loading.load).
        raise Unsupported("a sheet the tool wrote (a results sheet or an undo sheet)")
    columns = resolve_columns(headers, mapping=settings.columns, ignore=settings.ignore_columns)
    data_cols = [c for c in columns if c.field is not None and c.field != "uid"]
    if len(data_cols) > MAX_DATA_COLUMNS:
        raise Unsupported(f"{len(data_cols)} data columns")
    uid = next(c for c in columns if c.field == "uid")
    check_report_path(report_path, source=path)
    uids = stripped_column(path, fmt.delimiter, raw_names, raw_names[layout.keep[uid.index]])
    duplicates = duplicate_uids_of_column(uids)
    # An XLSX report too long for Excel is written as CSV, as the general path does.
    as_xlsx = report_path.suffix.lower() == ".xlsx" and fits_in_excel(len(uids))
    base_dir = path.resolve().parent
    bare = RowValidator(columns, base_dir=base_dir, default_updated_by=settings.updated_by)
    if settings.updated_by:
        row = tuple("A.1" if i == uid.index else "" for i in range(len(headers)))
        if isinstance(bare(SheetRow(0, row)), InvalidRow):
            raise Unsupported("[defaults.updated_by] leaves rows invalid")
    validate = RowValidator(
        columns,
        base_dir=base_dir,
        duplicate_uids=duplicates,
        default_updated_by=settings.updated_by,
    )
    outcomes = Outcomes(validate, data_cols, settings)
    check = Checker(columns, outcomes, duplicates, bare)
    counts: Counter[str] = Counter()
    patches: list[Patch] = []
    rows = 0
    next_row = 2  # the header is row 1
    last_cell: str | None = None
    # Columns without a header, and past the last one: the reader wants them empty.
    unnamed = [i for i in range(len(raw_names)) if i not in set(layout.keep)]
    tmp = create_temp(report_path)
    spool = create_temp(report_path) if as_xlsx else None  # the XLSX rows, until laid out
    out: CsvReport | XlsxReport | None = None
    try:
        with tmp.open("wb") as fh:
            out = (
                XlsxReport(spool, headers, uid.index)
                if spool is not None
                else CsvReport(fh, headers, uid.index)
            )
            for batch in batches(path, fmt.delimiter, raw_names):
                if not batch.num_rows:
                    continue
                raw = batch.columns
                last_cell = raw[-1][-1].as_py()
                # The general path refuses a cell over 1 MB or a line over 2 MB; a line is
                # at most twice its cells plus a quote pair and a delimiter each.
                longest = pc.max(reduce(pc.add, map(pc.binary_length, raw))).as_py()
                if 2 * longest + 3 * len(raw) >= MAX_LINE_CHARS:
                    raise Unsupported("a row near the reader's size limits")
                for i in unnamed:
                    if pc.max(pc.binary_length(pc.utf8_trim(raw[i], characters=STRIPPED))).as_py():
                        raise Unsupported("data in a column without a header")
                block = check([raw[i] for i in layout.keep], next_row)
                next_row += batch.num_rows
                if not len(block.numbers):
                    continue
                rows += len(block.numbers)
                counted = pc.value_counts(block.outcome)
                for value, count in zip(
                    counted.field("values").to_pylist(),
                    counted.field("counts").to_pylist(),
                    strict=True,
                ):
                    counts[value] += count
                if len(patches) < bodies:
                    to_send = pc.equal(block.outcome, str(Outcome.WOULD_UPDATE))
                    first = pc.indices_nonzero(to_send).slice(0, bodies - len(patches))
                    patches += [outcomes.patch(n, v) for n, v in block.rows(first)]
                out.add(block)
        if last_cell is not None and may_end_in_open_quote(path, last_cell, fmt.delimiter):
            raise Unsupported("a quote may be open at the end of the file")
        final = fitting_report(report_path, rows)
        if (final.suffix.lower() == ".xlsx") != as_xlsx:
            raise Unsupported("blank rows make the sheet fit in Excel after all")
        check_report_path(final, rows, source=path)
        sends = counts.get(str(Outcome.WOULD_UPDATE), 0)
        summary = RunSummary(
            counts={o: counts.get(str(o), 0) for o in Outcome},
            duration_s=time.monotonic() - started,
            report_path=final,
            dry_run=True,
            estimate_s=estimate_duration(sends * (1 + settings.backup), settings.rate),
            results=tuple(outcomes.problems),
            config_path=settings.config_path,
        )
        if isinstance(out, XlsxReport):
            out.finish(tmp, summary, path)
        written = put_in_place(tmp, final)
        if written != final:
            summary = replace(summary, report_path=written, report_asked=final)
    finally:
        if isinstance(out, XlsxReport):
            out.fh.close()
        for leftover in (tmp, spool):
            if leftover is not None:
                with suppress(FileNotFoundError):
                    leftover.unlink()
    # As the general path's: the time shown includes writing the report.
    summary = replace(summary, duration_s=time.monotonic() - started)
    return CsvDryRun(
        summary=summary, rows=rows, sends=sends, patches=tuple(patches), encoding=fmt.label
    )
