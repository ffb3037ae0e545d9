"""Compare two folders of results sheets: CSVs byte for byte, XLSX files cell for cell.

Used to show a refactor changed no output (issue 15): write the demo's and the benchmark
sheets' results sheets with the old and the new code into two folders, same file names,
then run from the repository root::

    .venv/bin/python bench/compare_reports.py OLD_FOLDER NEW_FOLDER

Every worksheet's cells are compared (value and number format); the Summary's
`generated at` and `duration (s)` lines are the run's own clock and are left out. Prints
`same` or `DIFF` per file and exits 1 on any difference.
"""

from __future__ import annotations

import sys
from pathlib import Path

from openpyxl import load_workbook

_CLOCK = {"generated at", "duration (s)"}


def _cells(path: Path) -> dict[str, list[list[tuple[object, str]]]]:
    book = load_workbook(path)
    sheets = {}
    for name in book.sheetnames:
        rows = [[(c.value, c.number_format) for c in r] for r in book[name].iter_rows()]
        if name == "Summary":
            rows = [r for r in rows if not r or r[0][0] not in _CLOCK]
        sheets[name] = rows
    return sheets


def same(old: Path, new: Path) -> bool:
    if old.suffix == ".csv":
        return old.read_bytes() == new.read_bytes()
    return _cells(old) == _cells(new)


def main(argv: list[str]) -> int:
    old, new = Path(argv[0]), Path(argv[1])
    bad = 0
    for path in sorted(old.iterdir()):
        ok = same(path, new / path.name)
        print(("same " if ok else "DIFF ") + path.name)
        bad += not ok
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
