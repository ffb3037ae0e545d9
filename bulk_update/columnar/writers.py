"""The report written a block at a time, in the report's own forms (report.py, xlsx.py):
its line order, defusing, quoting, escaping and widths a column at a time."""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from pathlib import Path

from .. import xlsx
from ..models import REPORT_COLUMNS, RunSummary
from ..report import (
    MIN_WIDTH,
    OUTCOME_STYLES,
    bounded_widths,
    csv_header,
    csv_lines,
    defuse_csv_column,
    header_cells,
    report_line,
    report_table,
    widen_column,
    write_xlsx_report,
    xlsx_text_column,
)
from .arrow import joined
from .checks import Block

_OUTCOME = REPORT_COLUMNS.index("outcome")


def report_header(headers: Sequence[str]) -> list[str]:
    """The report's header line for a sheet's `headers` (report.report_table's first)."""
    return [str(h) for h in next(report_table(headers, (), ()))]


class CsvReport:
    """The report as CSV, written a block at a time: report._write_csv's bytes."""

    def __init__(self, fh: io.BufferedWriter, headers: Sequence[str], uid: int) -> None:
        self.fh = fh
        self.uid = uid
        fh.write(csv_header(report_header(headers)))

    def add(self, block: Block) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        n = len(block.numbers)
        empty = pa.array([""] * n, pa.string())
        line = report_line(
            row=pc.cast(block.numbers, pa.string()),
            uid=block.cells[self.uid],
            outcome=block.outcome,
            http_status=empty,  # none in a dry run
            error=empty,
            message=block.message,
            attempts=pa.array(["0"] * n, pa.string()),
            fields=block.fields,
            cells=block.cells,
        )
        self.fh.write(joined(csv_lines([defuse_csv_column(c) for c in line])))


class XlsxReport:
    """The report as XLSX: its rows rendered by arrow a block at a time into a spool file,
    then laid out in the workbook (report.write_xlsx_report) once the widths are known.
    The XML is the bytes `xlsx.write_workbook` writes for the general path's rows."""

    def __init__(self, spool: Path, headers: Sequence[str], uid: int) -> None:
        import pyarrow as pa

        self.spool = spool
        self.fh = spool.open("wb")
        self.uid = uid
        self.header = report_header(headers)
        self.widths = [MIN_WIDTH] * len(self.header)
        for i, text in enumerate(self.header):
            widen_column(self.widths, i, pa.array([text], pa.string()))
        self.chunks: list[tuple[int, int]] = []  # (bytes, rows) per block
        self.written = 1  # the header is the sheet's row 1

    def add(self, block: Block) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        n = len(block.numbers)
        at = pc.cast(
            pa.array(range(self.written + 1, self.written + n + 1), pa.int64()), pa.string()
        )
        self.written += n
        # Each column of the line: (its cells, a number?), or None where a dry run has none.
        line = report_line(
            row=(pc.cast(block.numbers, pa.string()), True),
            uid=(block.cells[self.uid], False),
            outcome=(block.outcome, False),
            http_status=None,
            error=None,
            message=(block.message, False),
            attempts=(pa.array(["0"] * n, pa.string()), True),
            fields=(block.fields, False),
            cells=[(c, False) for c in block.cells],
        )
        # The outcome cell's style (its colour) follows its value.
        names = list(OUTCOME_STYLES)
        middles = [xlsx.cell_parts(_OUTCOME, OUTCOME_STYLES[o], text=True)[1] for o in names]
        styled = pc.take(pa.array(middles), pc.index_in(block.outcome, value_set=pa.array(names)))
        rendered = []
        for index, part in enumerate(line):
            if part is None:
                continue
            col, number = part
            widen_column(self.widths, index, col)
            if number:
                a, b, c = xlsx.cell_parts(index, xlsx.NORMAL, text=False)
                rendered.append(pc.binary_join_element_wise(a, at, b, col, c, ""))
                continue
            shown = xlsx_text_column(col)
            a, b, c = xlsx.cell_parts(index, xlsx.NORMAL, text=True)
            xml = pc.binary_join_element_wise(
                a, at, styled if index == _OUTCOME else b, xlsx.escape_column(shown), c, ""
            )
            rendered.append(pc.if_else(pc.greater(pc.binary_length(shown), 0), xml, ""))
        rows = pc.binary_join_element_wise(
            xlsx.ROW_OPEN, at, xlsx.ROW_MIDDLE, *rendered, xlsx.ROW_CLOSE, ""
        )
        xml = joined(rows)
        self.fh.write(xml)
        self.chunks.append((len(xml), n))

    def finish(self, path: Path, summary: RunSummary, source: Path) -> None:
        self.fh.close()
        width = len(self.header)

        def results() -> Iterator[Sequence[xlsx.Cell] | xlsx.Rendered]:
            yield header_cells(self.header)
            with self.spool.open("rb") as fh:
                for size, count in self.chunks:
                    yield xlsx.Rendered(fh.read(size), count, width)

        write_xlsx_report(path, results(), bounded_widths(self.widths), summary, source)
