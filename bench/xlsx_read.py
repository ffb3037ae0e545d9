"""Benchmark: reading a 100,000-row XLSX, openpyxl read-only against python-calamine.

Writes an N-row x 12-column workbook with openpyxl's write-only mode (uid, names, email,
a phone stored as a number, city, team, a note, a score, a date, a date and time, a
boolean), then reads it in child processes, alternating, `--repeat` rounds:

- openpyxl: `load_workbook(read_only=True, data_only=True)`, `iter_rows(values_only=True)`,
  every cell through `reader.cell_text` (the reader's own way);
- calamine: python-calamine, every cell through `cell_text`: the baseline, a faster reader
  the tool does not use (bench/RESULTS.md, "reading a 100,000-row XLSX", says why);
- read_sheet: `reader.read_sheet` on the file (the whole XLSX path: the zip and XML
  checks, openpyxl, header and rows).

Each child times its read alone (after imports); its peak RSS comes from `wait4`; the best
time of each counts. The texts and numeric flags of the two readers are hashed and must be
equal. With `--libreoffice`, the workbook is also saved by LibreOffice (shared strings and
a style on every cell, as Excel writes them) and read the same way.

Run from the repository root::

    .venv/bin/python bench/xlsx_read.py [--rows N] [--repeat N] [--libreoffice]

Exits 1 if the two readers disagree.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from harness import CITIES, FIRST_NAMES, NOTES, ROOT, TEAMS, alternate, child_env, run_child

sys.path.insert(0, str(ROOT))

HEADERS = (
    "uid", "first_name", "last_name", "email", "phone", "address.city",
    "custom_fields.Team", "note", "custom_fields.Score", "custom_fields.Applied",
    "custom_fields.Interview", "custom_fields.Active",
)  # fmt: skip
FIRST = FIRST_NAMES[:10]
LAST = ("Cohen", "Levi", "Mizrahi", "Peretz", "Biton", "Friedman", "Katz", "Shapiro")
MODES = ("openpyxl", "calamine", "read_sheet")


def write_workbook(path: Path, rows: int, seed: int = 7) -> None:
    """An N-row workbook of realistic candidate rows, written by openpyxl (write-only)."""
    from openpyxl import Workbook

    rng = random.Random(seed)
    book = Workbook(write_only=True)
    sheet = book.create_sheet("Candidates")
    sheet.append(HEADERS)
    start = dt.datetime(2024, 3, 1, 9, 0)
    for n in range(1, rows + 1):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        sheet.append(
            (
                f"BN.{n}",
                first,
                last,
                f"{first.lower()}.{last.lower()}.{n}@example.com",
                972500000000 + rng.randrange(10_000_000),
                rng.choice(CITIES),
                rng.choice(TEAMS),
                f"{rng.choice(NOTES)} (batch {n % 97})",
                round(rng.uniform(0, 100), 2),
                (start + dt.timedelta(days=n % 400)).date(),
                start + dt.timedelta(minutes=15 * n),
                n % 3 == 0,
            )
        )
    book.save(path)


def libreoffice_copy(source: Path, folder: Path) -> Path | None:
    """The workbook saved again by LibreOffice (shared strings, styles), or None."""
    exe = shutil.which("soffice")
    if exe is None:
        return None
    out = folder / "lo"
    with tempfile.TemporaryDirectory(prefix="lo-profile-") as profile:
        subprocess.run(
            [
                exe,
                f"-env:UserInstallation={Path(profile).as_uri()}",
                "--headless",
                "--norestore",
                "--convert-to",
                "xlsx",
                "--outdir",
                str(out),
                str(source),
            ],
            check=True,
            capture_output=True,
            timeout=900,
            stdin=subprocess.DEVNULL,
        )
    made = out / source.name
    return made if made.exists() else None


# --------------------------------------------------------------------------- the child


def _digest(rows: Iterable[Iterable[object]]) -> tuple[int, str]:
    """Rows, and a hash of every cell's text and numeric flag (trailing empties dropped)."""
    from bulk_update.reader import cell_text

    digest = hashlib.blake2b(digest_size=16)
    count = 0
    for row in rows:
        texts = [cell_text(v) for v in row]
        while texts and texts[-1] == ("", False):
            texts.pop()
        count += 1
        if texts:  # blank rows (openpyxl gives them for styled rows) are not compared
            digest.update(repr((count, texts)).encode())
    return count, digest.hexdigest()


def child(mode: str, path: Path) -> dict[str, object]:
    """Read `path` one way: the seconds it took, rows, digest, and the RSS after imports."""
    import openpyxl
    from python_calamine import CalamineWorkbook

    from bulk_update.reader import read_sheet

    imported_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    rows, digest = 0, ""
    if mode == "openpyxl":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            book = openpyxl.load_workbook(path, read_only=True, data_only=True)
        sheet = book.worksheets[0]
        sheet.reset_dimensions()  # type: ignore[union-attr]
        rows, digest = _digest(sheet.iter_rows(min_row=1, min_col=1, values_only=True))
        book.close()
    elif mode == "calamine":
        # The sheet starts at A1, so calamine's rows line up with openpyxl's as they come.
        with CalamineWorkbook.from_path(path) as calamine_book:
            rows, digest = _digest(calamine_book.get_sheet_by_index(0).iter_rows())
    elif mode == "read_sheet":
        rows = len(read_sheet(path).rows)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "rows": rows, "digest": digest, "imported_mib": imported_rss / 1024}


# --------------------------------------------------------------------------- the parent


@dataclass
class Runs:
    mode: str
    seconds: list[float]
    rows: int = 0
    digest: str = ""
    peak_mib: float = 0.0
    imported_mib: float = 0.0

    @property
    def best(self) -> float:
        return min(self.seconds)


def measure(path: Path, repeat: int) -> dict[str, Runs]:
    runs = {mode: Runs(mode, []) for mode in MODES}
    env = child_env(PYTHONHASHSEED="0")

    def reading(mode: str) -> Callable[[], None]:
        def read() -> None:
            done = run_child(
                [sys.executable, __file__, "--child", mode, str(path)], env, path.parent
            )
            if done.code != 0:
                raise SystemExit(f"reading with {mode} failed:\n{done.stderr[-2000:]}")
            result = json.loads(done.stdout.strip().splitlines()[-1])
            got = runs[mode]
            got.seconds.append(float(result["seconds"]))
            got.rows = int(result["rows"])
            got.digest = str(result["digest"])
            got.peak_mib = max(got.peak_mib, done.max_rss_mib)
            got.imported_mib = float(result["imported_mib"])
            print(f"  round {len(got.seconds)}: {mode:<10} {got.seconds[-1]:7.2f} s", flush=True)

        return read

    # Alternating the order each round, so that no reader always runs on a warm or cold cache.
    alternate(repeat, {mode: reading(mode) for mode in MODES})
    return runs


def table(runs: dict[str, Runs], data_rows: int) -> list[str]:
    base = runs["openpyxl"].best
    lines = [
        "| reader | best of runs (s) | runs (s) | data rows/s | openpyxl / this | peak RSS (MiB) |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for mode in MODES:
        got = runs[mode]
        speed = f"{data_rows / got.best:,.0f}"
        listed = ", ".join(f"{s:.2f}" for s in got.seconds)
        lines.append(
            f"| {mode} | {got.best:.2f} | {listed} | {speed} | {base / got.best:.1f}x "
            f"| {got.peak_mib:.0f} |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=100_000, help="data rows (default 100000)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; the best counts (3)")
    parser.add_argument(
        "--libreoffice", action="store_true", help="also read the workbook as LibreOffice saves it"
    )
    parser.add_argument("--child", nargs=2, metavar=("MODE", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child[0], Path(args.child[1]))))
        return 0

    status = 0
    with tempfile.TemporaryDirectory(prefix="bench-xlsx-") as folder_name:
        folder = Path(folder_name)
        book = folder / "candidates.xlsx"
        started = time.perf_counter()
        write_workbook(book, args.rows)
        print(
            f"workbook: {args.rows:,} rows x {len(HEADERS)} columns, "
            f"{book.stat().st_size:,} bytes, written in {time.perf_counter() - started:.0f} s"
        )
        books = [("openpyxl write-only", book)]
        if args.libreoffice:
            copy = libreoffice_copy(book, folder)
            if copy is None:
                print("soffice not found: no LibreOffice copy")
            else:
                books.append(("saved by LibreOffice", copy))
        for label, path in books:
            print(f"\n{label}: {path.stat().st_size:,} bytes")
            runs = measure(path, args.repeat)
            print()
            print("\n".join(table(runs, args.rows)))
            # The digest holds every non-blank row with its number: blank rows at the end
            # (openpyxl gives them for styled rows) are all that the counts may differ by.
            same = runs["openpyxl"].digest == runs["calamine"].digest
            print(
                f"\ntexts and numeric flags alike: {same} "
                f"({runs['openpyxl'].rows:,} rows from openpyxl, {runs['calamine'].rows:,} "
                f"from calamine); interpreter and imports: "
                f"{runs['openpyxl'].imported_mib:.0f} MiB"
            )
            if not same:
                status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
