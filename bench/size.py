"""Benchmark: a dry run of a very large CSV, against pandas reading the same file.

Builds an N-row x 12-column CSV (default 1,000,000 rows) of realistic candidate updates,
then, in the same run and alternating, measures in child processes:

- the real command line: `python -m bulk_update run sheet.csv --dry-run --report out.csv`
  (no COMEET_API_KEY, so no journal: read, validate, plan, write the CSV report), which
  takes the column-at-a-time path (bulk_update/columnar.py) for such a sheet;
- the baseline: `pandas.read_csv(sheet, dtype=str, keep_default_na=False)`, nothing else;
- with `--general`, also the general path the columnar one stands in for (load, plan,
  run_async(dry_run=True), with the command line's garbage-collector setting), and a
  byte-for-byte comparison of the two reports;
- with `--xlsx`, the command line's dry run to an XLSX report (`run`'s default format)
  instead (the columnar path renders the rows; bulk_update/xlsx.py lays out the workbook);
- with `--invalid`, a sheet whose every row is invalid: each uid a web-page number (`10000`,
  `10001`, ...), so every row of the report carries a message (issue 12: rows that say the
  same share their message);
- with `--journal`, COMEET_API_KEY set for the dry run, which then consults a journal (in a
  temporary state dir) and so takes the general path (load, plan, run_async): the path of
  an XLSX sheet, a CSV not in UTF-8, or a real run.

Each child's wall time (interpreter start included, for all) and its own peak RSS (wait4).
Prints the best of `--repeat` runs of each and the ratio; goals: ratio <= 3, peak RSS of
the dry run <= 1 GiB. Run from the repository root::

    /work/venv/bin/python bench/size.py [--rows 1000000] [--repeat 3] [--general | --xlsx]
        [--invalid] [--journal]

Exits 1 when the dry run did not exit 0 (1 with `--invalid`), reported other than every row
`would_update` (`invalid`), the RSS goal was missed or (with --general) the two reports
differ (the time ratio is printed, not enforced: a shared machine's load moves it).
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

HEADERS = (
    "UID",
    "First Name",
    "Last Name",
    "Email",
    "Phone",
    "Mobile Phone",
    "LinkedIn URL",
    "Prospect Status",
    "Address.Country",
    "Address.City",
    "custom_fields.Team",
    "Note",
)
FIRST = ("Dana", "Noa", "Yossi", "Maya", "Avi", "Tamar", "Omer", "Shira", "Eitan", "Yael")
LAST = ("Cohen", "Levi", "Mizrahi", "Peretz", "Biton", "Friedman", "Katz", "Dahan")
STATUSES = ("Sourced", "Contacted", "Responded", "Interested", "Not interested")
PLACES = (("IL", "Tel Aviv"), ("IL", "Haifa"), ("US", "New York"), ("GB", "London"))
TEAMS = ("R&D", "Marketing", "Sales", "Support", "")
NOTES = ("Called, follow up next week", "Referred by a team lead", "", "", "")
GIB = 1 << 30

PANDAS = """
import sys, pandas
frame = pandas.read_csv(sys.argv[1], dtype=str, keep_default_na=False)
assert len(frame) == int(sys.argv[2]), len(frame)
"""

GENERAL = """
import asyncio, gc, sys
from pathlib import Path
import bulk_update as bu
gc.set_threshold(200_000, 30, 30)  # as the command line sets it
the_plan = bu.plan(bu.load(sys.argv[1]), bodies=5)
asyncio.run(bu.run_async(the_plan, dry_run=True, report_path=Path(sys.argv[2])))
"""


def write_sheet(path: Path, rows: int, seed: int = 11, *, invalid: bool = False) -> None:
    """An N-row CSV of valid updates; some cells empty, as in a real sheet.

    `invalid`: each uid the number of a Comeet web page (10000, 10001, ...) instead, which
    makes every row invalid with the same message.
    """
    rng = random.Random(seed)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(HEADERS)
        for n in range(1, rows + 1):
            first, last = rng.choice(FIRST), rng.choice(LAST)
            country, city = rng.choice(PLACES)
            writer.writerow(
                (
                    str(9999 + n) if invalid else f"SZ.{n}",
                    first,
                    last if n % 3 else "",
                    f"{first.lower()}.{last.lower()}.{n}@example.com" if n % 4 else "",
                    f"+972-5{rng.randrange(10)}-{rng.randrange(1000000, 9999999)}",
                    f"+1 555 {rng.randrange(1000, 9999)}" if n % 5 == 0 else "",
                    f"https://www.linkedin.com/in/{first.lower()}-{n}" if n % 7 == 0 else "",
                    rng.choice(STATUSES),
                    country,
                    city,
                    rng.choice(TEAMS),
                    rng.choice(NOTES),
                )
            )


@dataclass
class Child:
    code: int
    wall_s: float
    max_rss_kib: int
    stderr: str


def run_child(argv: list[str], cwd: Path, env: dict[str, str]) -> Child:
    err = cwd / "child.err"
    with err.open("wb") as stderr:
        started = time.perf_counter()
        proc = subprocess.Popen(
            argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=stderr,
        )  # fmt: skip
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak RSS
        wall = time.perf_counter() - started
    return Child(
        os.waitstatus_to_exitcode(status),
        wall,
        usage.ru_maxrss,
        err.read_text(encoding="utf-8", errors="replace"),
    )


def outcomes(report: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    if report.suffix == ".xlsx":
        from openpyxl import load_workbook

        sheet = load_workbook(report, read_only=True)["Results"]
        for (outcome,) in sheet.iter_rows(min_row=2, min_col=3, max_col=3, values_only=True):
            counts[str(outcome)] = counts.get(str(outcome), 0) + 1
        return counts
    with report.open(newline="", encoding="utf-8-sig") as fh:
        for line in csv.DictReader(fh):
            counts[line["outcome"]] = counts.get(line["outcome"], 0) + 1
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows (default 1000000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; the best counts")
    parser.add_argument(
        "--general", action="store_true", help="also time the general path; compare reports"
    )
    parser.add_argument(
        "--xlsx", action="store_true", help="an XLSX report (the default of `run`) instead"
    )
    parser.add_argument(
        "--invalid", action="store_true", help="every row invalid (uids as web-page numbers)"
    )
    parser.add_argument(
        "--journal", action="store_true", help="a dry run with a journal: the general path"
    )
    args = parser.parse_args(argv)
    if args.xlsx and args.general:
        parser.error("--general compares CSV reports: leave out --xlsx")

    env = {k: v for k, v in os.environ.items() if not k.startswith("COMEET_")}
    env["PYTHONPATH"] = str(ROOT)
    tool_env = {**env, "COMEET_API_KEY": "bench"} if args.journal else env
    expected = "invalid" if args.invalid else "would_update"
    with tempfile.TemporaryDirectory(prefix="bench-size-") as tmp_name:
        tmp = Path(tmp_name)
        sheet, report = tmp / "sheet.csv", tmp / ("out.xlsx" if args.xlsx else "out.csv")
        write_sheet(sheet, args.rows, invalid=args.invalid)
        print(f"sheet: {args.rows:,} rows x {len(HEADERS)} columns, {sheet.stat().st_size:,} B")
        tool_argv = [
            sys.executable, "-m", "bulk_update", "run", str(sheet), "--dry-run",
            "--report", str(report), "--quiet", "--state-dir", str(tmp / "state"),
        ]  # fmt: skip
        pandas_argv = [sys.executable, "-c", PANDAS, str(sheet), str(args.rows)]
        general_report = tmp / "general.csv"
        general_argv = [sys.executable, "-c", GENERAL, str(sheet), str(general_report)]
        tools: list[Child] = []
        bases: list[Child] = []
        generals: list[Child] = []
        for _ in range(args.repeat):
            bases.append(run_child(pandas_argv, tmp, env))
            tools.append(run_child(tool_argv, tmp, tool_env))
            if args.general:
                generals.append(run_child(general_argv, tmp, env))
        failed = [c for c in [*bases, *generals] if c.code != 0]  # scripts, not the CLI
        failed += [c for c in tools if c.code != (1 if args.invalid else 0)]
        if failed:
            print(f"a child failed (exit {failed[0].code}):\n{failed[0].stderr[-2000:]}")
            return 1
        counts = outcomes(report)
        tool = min(tools, key=lambda c: c.wall_s)
        base = min(bases, key=lambda c: c.wall_s)
        rss = max(c.max_rss_kib for c in tools) * 1024
        ratio = tool.wall_s / base.wall_s
        print(f"{'':50} {'best wall s':>12} {'all runs':>24} {'peak RSS':>10}")
        rows = [
            ("pandas.read_csv (baseline)", bases),
            (
                f"bulk-update run --dry-run ({report.suffix[1:].upper()} report"
                f"{', journal' if args.journal else ''})",
                tools,
            ),
        ]
        if generals:
            rows.append(("general path (load, plan, run_async)", generals))
        for name, runs in rows:
            walls = " ".join(f"{c.wall_s:.2f}" for c in runs)
            peak = max(c.max_rss_kib for c in runs) / 1024
            best = min(c.wall_s for c in runs)
            print(f"{name:50} {best:12.2f} {walls:>24} {peak:8.0f} MiB")
        print(f"ratio dry run / pandas: {ratio:.2f} (goal <= 3)")
        print(f"dry run peak RSS: {rss / 2**20:.0f} MiB (goal <= 1024 MiB)")
        print(f"rows per second (dry run): {args.rows / tool.wall_s:,.0f}")
        print(f"report outcomes: {counts}")
        ok = counts == {expected: args.rows} and rss <= GIB
        if generals:
            same = report.read_bytes() == general_report.read_bytes()
            general = min(c.wall_s for c in generals)
            print(f"general path / dry run: {general / tool.wall_s:.1f}x")
            print(f"reports byte for byte: {'identical' if same else 'DIFFERENT'}")
            ok = ok and same
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
