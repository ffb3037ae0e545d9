"""A block's rows checked a column at a time: each cell rule's column form (schema.cells),
the row validator for the rows those do not settle, and each row's outcome."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import reduce
from typing import Any

from ..config import Settings
from ..models import Column, Outcome, Patch, RowResult, SheetRow
from ..patch import PatchShapes, build_patch
from ..reader.cells import STRIPPED
from ..report import may_hold
from ..rowstore import Shared
from ..schema import ColumnCheck, InvalidRow, RowValidator, column_check, uid_check
from .arrow import re2

#: A row's shape (which data columns it fills in) is a bit mask in an int64.
MAX_DATA_COLUMNS = 62


@dataclass(frozen=True, slots=True)
class Block:
    """A block's rows with a report line (blank rows left out): arrays of equal length."""

    numbers: Any
    cells: list[Any]
    outcome: Any
    fields: Any
    message: Any

    def rows(self, picked: Any) -> Iterator[tuple[int, list[str]]]:
        """(row number, stripped cells) of the rows at the indices `picked`."""
        import pyarrow.compute as pc

        columns = [pc.take(c, picked).to_pylist() for c in (self.numbers, *self.cells)]
        for number, *values in zip(*columns, strict=True):
            yield number, values


class Outcomes:
    """The rows' outcomes, fields and messages: from their shapes, or from RowValidator."""

    def __init__(
        self, validate: RowValidator, data_cols: Sequence[Column], settings: Settings
    ) -> None:
        self.validate = validate
        self.fields = [c.field for c in data_cols if c.field is not None]
        self.updated_by = settings.updated_by
        self.problems: list[RowResult] = []
        # Rows that say the same (a million web-page numbers as uids) share one message.
        self.message = Shared[str]()
        # The rows the column checks hand over share one memory of patch shapes.
        self.shapes = PatchShapes()

    def of_shape(self, mask: int) -> tuple[str, str]:
        """(outcome, fields) of a valid row filling in the data columns of the bit `mask`.

        A row's fields follow from which columns it fills in alone, so build_patch is
        asked about a row of that shape (`shapes` remembers the shapes it has seen).
        """
        values = {field: "x" for i, field in enumerate(self.fields) if mask >> i & 1}
        built = build_patch(0, "x", values, default_updated_by=self.updated_by, shapes=self.shapes)
        if isinstance(built, Outcome):
            return str(Outcome.SKIPPED), ""
        return str(Outcome.WOULD_UPDATE), ",".join(built.fields)

    def of_row(self, number: int, values: Sequence[str]) -> tuple[str, str, str]:
        check = self.validate(SheetRow(number, tuple(values)))
        if isinstance(check, InvalidRow):
            message = self.message("; ".join(str(p) for p in check.problems))
            self.problems.append(RowResult(number, check.uid, Outcome.INVALID, message=message))
            return str(Outcome.INVALID), "", message
        built = build_patch(
            number, check.uid, check.values, default_updated_by=self.updated_by, shapes=self.shapes
        )
        if isinstance(built, Outcome):
            return str(built), "", ""
        return str(Outcome.WOULD_UPDATE), ",".join(built.fields), ""

    def patch(self, number: int, values: Sequence[str]) -> Patch:
        check = self.validate(SheetRow(number, tuple(values)))
        assert not isinstance(check, InvalidRow)
        built = build_patch(
            number, check.uid, check.values, default_updated_by=self.updated_by, shapes=self.shapes
        )
        assert isinstance(built, Patch)
        return built


class _Each:
    """An `each` column's distinct values, each asked of the row validator (which remembers
    its conversions, so a status typed a million times is converted once).

    `alone` is a row holding a well-formed uid and nothing else: a value is accepted when
    that row with the value in its column is valid, which is the cell rule itself (the
    dry run makes sure such a bare row is valid, [defaults.updated_by] included).
    """

    def __init__(self, validate: RowValidator, width: int, uid: int, index: int) -> None:
        self.validate = validate
        self.alone = ["A.1" if i == uid else "" for i in range(width)]
        self.index = index

    def valid(self, value: str) -> bool:
        row = self.alone.copy()
        row[self.index] = value
        return not isinstance(self.validate(SheetRow(0, tuple(row))), InvalidRow)

    def __call__(self, col: Any) -> Any:
        import pyarrow as pa
        import pyarrow.compute as pc

        good = [v for v in pc.unique(col).to_pylist() if self.valid(v)]
        return pc.is_in(col, value_set=pa.array(good, pa.string()))


def _accepted(
    cells: list[Any], filled: list[Any], checks: Sequence[tuple[int, ColumnCheck, _Each | None]]
) -> Any:
    """Per row: True when every check accepts the row's cells (empty cells always pass)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    ok = pa.array([True] * len(cells[0]), pa.bool_())
    for index, check, each in checks:
        col, empty = cells[index], pc.invert(filled[index])
        if check.kind == "any":
            good = filled[index] if check.required else None
        elif check.kind == "row":
            good = empty  # a filled cell: the row's other cells matter
        else:
            if each is not None:
                good = each(col)
            else:
                good = pc.match_substring_regex(col, re2(check.pattern))
            if not check.required:
                good = pc.or_(empty, good)
        if check.refuse and check.kind != "row" and may_hold(col, check.refuse_marks):
            # An empty cell never matches a refusal (each needs a character).
            kept = pc.invert(pc.match_substring_regex(col, re2(check.refuse)))
            good = kept if good is None else pc.and_(good, kept)
        if good is not None:
            ok = pc.and_(ok, good)
    return ok


class Checker:
    """Checks the blocks of one sheet: the per-sheet set-up done once."""

    def __init__(
        self,
        columns: Sequence[Column],
        outcomes: Outcomes,
        duplicates: frozenset[str],
        bare: RowValidator,
    ) -> None:
        import pyarrow as pa

        self.uid = next(c.index for c in columns if c.field == "uid")
        self.checks: list[tuple[int, ColumnCheck, _Each | None]] = []
        for c in columns:
            if c.field is None:
                continue
            check = uid_check if c.field == "uid" else column_check(c.field)
            each = _Each(bare, len(columns), self.uid, c.index) if check.kind == "each" else None
            self.checks.append((c.index, check, each))
        self.data = [c.index for c in columns if c.field is not None and c.field != "uid"]
        self.outcomes = outcomes
        self.duplicates = pa.array(sorted(duplicates), pa.string())

    def __call__(self, raw: list[Any], first_row: int) -> Block:
        import pyarrow as pa
        import pyarrow.compute as pc

        n = len(raw[0])
        numbers = pa.array(range(first_row, first_row + n), pa.int64())
        cells = [pc.utf8_trim(c, characters=STRIPPED) for c in raw]
        filled = [pc.greater(pc.binary_length(c), 0) for c in cells]
        ok = pc.and_(
            _accepted(cells, filled, self.checks),
            pc.invert(pc.is_in(cells[self.uid], value_set=self.duplicates)),
        )
        # A row's shape: which data columns it fills in, one bit each.
        shape = pa.array([0] * n, pa.int64())
        for bit, index in enumerate(self.data):
            as_int = pc.cast(filled[index], pa.int64())
            shape = pc.bit_wise_or(shape, pc.shift_left(as_int, bit))
        # A row with no cell at all is no row of the sheet: no report line.
        kept = reduce(pc.or_, filled)
        if not pc.all(kept).as_py():
            cells = [pc.filter(c, kept) for c in cells]
            numbers, shape, ok = (pc.filter(x, kept) for x in (numbers, shape, ok))
        shapes = pc.unique(shape)
        known = [self.outcomes.of_shape(m) for m in shapes.to_pylist()]
        where = pc.index_in(shape, value_set=shapes)
        block = Block(
            numbers,
            cells,
            outcome=pc.take(pa.array([k[0] for k in known], pa.string()), where),
            fields=pc.take(pa.array([k[1] for k in known], pa.string()), where),
            message=pa.array([""] * len(numbers), pa.string()),
        )
        rejected = pc.invert(ok)
        if not pc.any(rejected).as_py():
            return block
        # The rows a check did not accept: the row validator has the last word.
        picked = pc.indices_nonzero(rejected)
        looked = [self.outcomes.of_row(number, values) for number, values in block.rows(picked)]
        outcome, fields, message = (
            pc.replace_with_mask(column, rejected, pa.array([x[i] for x in looked], pa.string()))
            for i, column in enumerate((block.outcome, block.fields, block.message))
        )
        return Block(numbers, cells, outcome, fields, message)
