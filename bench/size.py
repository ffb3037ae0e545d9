"""Benchmark: a dry run of a very large CSV, against pandas reading the same file.

Builds N-row x 12-column CSVs (default 1,000,000 rows) of candidate updates, two sheets:

- exact (`write_sheet`): every value spelled as the API spells it;
- as-typed (`write_as_typed`): as people type a sheet and ATS export it: one prospect
  status in three in lower case (`contacted`), most cells of most columns empty;

then, in the same run and alternating, measures in child processes, for each sheet:

- the real command line: `python -m bulk_update run sheet.csv --dry-run --report out.csv`
  (no COMEET_API_KEY, so no journal: read, validate, plan, write the CSV report), which
  takes the column-at-a-time path (bulk_update/columnar.py) for such a sheet;
- the baseline: `pandas.read_csv(sheet, dtype=str, keep_default_na=False)`, nothing else;
- with `--general`, also the general path the columnar one stands in for (load, plan,
  run_async(dry_run=True), with the command line's garbage-collector setting), and a
  byte-for-byte comparison of the two reports;
- with `--xlsx`, the command line's dry run to an XLSX report (`run`'s default format)
  instead (the columnar path renders the rows; bulk_update/xlsx.py lays out the workbook);
- with `--invalid`, sheets whose every row is invalid: each uid a web-page number (`10000`,
  `10001`, ...), so every row of the report carries a message (issue 12: rows that say the
  same share their message);
- with `--journal`, COMEET_API_KEY set for the dry run, which then consults a journal (in a
  temporary state dir) and so takes the general path (load, plan, run_async): the path of
  an XLSX sheet, a CSV not in UTF-8, or a real run.

Each child's wall time (interpreter start included, for all) and its own peak RSS (wait4).
Prints the best of `--repeat` runs of each and, per sheet, the ratio to pandas; goals:
ratio <= 3, peak RSS of the dry run <= 1 GiB. `--sheet exact|as-typed` measures one sheet
only; `--write-to DIR` writes the sheets and measures nothing. Run from the repository
root::

    .venv/bin/python bench/size.py [--rows 1000000] [--repeat 3] [--sheet both]
        [--general | --xlsx] [--invalid] [--journal] [--write-to DIR]

Exits 1 when a dry run did not exit 0 (1 with `--invalid`), reported other than every row
`would_update` (`invalid`), the RSS goal was missed or (with --general) the two reports
differ (the time ratio is printed, not enforced: a shared machine's load moves it).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from harness import (
    GIB,
    Child,
    alternate,
    best,
    child_env,
    email,
    mobile,
    outcomes,
    run_child,
    tool_argv,
    walls,
    write_csv,
)

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
# The exact sheet's own pools: the baseline sheets (/work/baseline/sheets) were made from them.
FIRST = ("Dana", "Noa", "Yossi", "Maya", "Avi", "Tamar", "Omer", "Shira", "Eitan", "Yael")
LAST = ("Cohen", "Levi", "Mizrahi", "Peretz", "Biton", "Friedman", "Katz", "Dahan")
STATUSES = ("Sourced", "Contacted", "Responded", "Interested", "Not interested")
PLACES = (("IL", "Tel Aviv"), ("IL", "Haifa"), ("US", "New York"), ("GB", "London"))
TEAMS = ("R&D", "Marketing", "Sales", "Support", "")
NOTES = ("Called, follow up next week", "Referred by a team lead", "", "", "")

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


def _uid(n: int, invalid: bool) -> str:
    return str(9999 + n) if invalid else f"SZ.{n}"


def write_sheet(path: Path, rows: int, seed: int = 11, *, invalid: bool = False) -> None:
    """The exact sheet: N rows of valid updates, every value spelled as the API spells it.

    Some cells empty, as in a real sheet. `invalid`: each uid the number of a Comeet web
    page (10000, 10001, ...) instead, which makes every row invalid with the same message.
    The same seed gives the same bytes (the before/after comparisons rely on it).
    """
    rng = random.Random(seed)

    def lines() -> Iterator[tuple[str, ...]]:
        for n in range(1, rows + 1):
            first, last = rng.choice(FIRST), rng.choice(LAST)
            country, city = rng.choice(PLACES)
            yield (
                _uid(n, invalid),
                first,
                last if n % 3 else "",
                email(first, last, n) if n % 4 else "",
                mobile(rng),
                f"+1 555 {rng.randrange(1000, 9999)}" if n % 5 == 0 else "",
                f"https://www.linkedin.com/in/{first.lower()}-{n}" if n % 7 == 0 else "",
                rng.choice(STATUSES),
                country,
                city,
                rng.choice(TEAMS),
                rng.choice(NOTES),
            )

    write_csv(path, HEADERS, lines())


# The as-typed sheet: a larger pool of people and places, and how often each column is filled
# in (an ATS export has every column, most of them empty on most rows).
TYPED_FIRST = (*FIRST, "Lior", "Roni", "Gal", "Itai", "Michal", "Sarah", "David", "Anna", "Omri")
TYPED_LAST = (*LAST, "Avraham", "Azulay", "Shapiro", "Smith", "Goldberg", "Ben-David", "Weiss")
TYPED_PLACES = (
    ("IL", "Tel Aviv"), ("IL", "Tel Aviv-Yafo"), ("IL", "Haifa"), ("IL", "Jerusalem"),
    ("IL", "Be'er Sheva"), ("IL", "Herzliya"), ("US", "New York"), ("US", "San Francisco"),
    ("GB", "London"), ("DE", "Berlin"), ("FR", "Paris"), ("IN", "Bengaluru"),
)  # fmt: skip
TYPED_TEAMS = ("R&D", "Marketing", "Sales", "Support", "Finance", "Product", "Data, Analytics")
TYPED_NOTES = (
    "Called, follow up next week",
    "Referred by a team lead",
    'Asked for a "hybrid" role; 3 days in the office',
    "Not looking right now.\nTry again in Q3",
    "Met at the job fair",
)
DOMAINS = ("example.com", "mail.example.org", "example.net", "corp.example.co.il")
FILLED = {  # share of rows with the cell filled in
    "first": 0.95,
    "last": 0.9,
    "email": 0.45,
    "phone": 0.35,
    "mobile": 0.12,
    "linkedin": 0.2,
    "place": 0.3,
    "city only": 0.1,
    "team": 0.2,
    "note": 0.08,
}


def write_as_typed(path: Path, rows: int, seed: int = 13, *, invalid: bool = False) -> None:
    """The as-typed sheet: N rows of valid updates, as people type them and ATS export them.

    Every row has a prospect status (so every row is an update), and on one row in three it
    is written in lower case (`contacted`, `not interested`): the row validator accepts it and
    sends the canonical spelling. Most cells of most columns are empty (`FILLED`); the values
    otherwise are realistic: phones in several national formats, emails on several domains,
    LinkedIn addresses on `www.` and country hosts, cities with and without a country, notes
    with commas, quotes and line breaks. `invalid`: uids as in `write_sheet`.
    """
    rng = random.Random(seed)
    chance = rng.random

    def phone(n: int) -> str:
        if n % 3 == 0:
            return mobile(rng)
        if n % 3 == 1:
            return f"05{rng.randrange(10)}-{rng.randrange(1000000, 9999999)}"
        return f"+1 (555) {rng.randrange(100, 999)}-{rng.randrange(1000, 9999)}"

    def lines() -> Iterator[tuple[str, ...]]:
        for n in range(1, rows + 1):
            first, last = rng.choice(TYPED_FIRST), rng.choice(TYPED_LAST)
            status = rng.choice(STATUSES)
            country, city = rng.choice(TYPED_PLACES)
            where = chance()
            if where >= FILLED["place"]:
                country = ""
                city = city if where < FILLED["place"] + FILLED["city only"] else ""
            host = "www" if n % 4 else "il"
            yield (
                _uid(n, invalid),
                first if chance() < FILLED["first"] else "",
                last if chance() < FILLED["last"] else "",
                email(first, last, n, rng.choice(DOMAINS)) if chance() < FILLED["email"] else "",
                phone(n) if chance() < FILLED["phone"] else "",
                mobile(rng) if chance() < FILLED["mobile"] else "",
                f"https://{host}.linkedin.com/in/{first.lower()}-{last.lower()}-{n}"
                if chance() < FILLED["linkedin"]
                else "",
                status.lower() if n % 3 == 0 else status,
                country,
                city,
                rng.choice(TYPED_TEAMS) if chance() < FILLED["team"] else "",
                rng.choice(TYPED_NOTES) if chance() < FILLED["note"] else "",
            )

    write_csv(path, HEADERS, lines())


#: The sheets `--sheet` chooses from, by name: the generator and its file name.
SHEETS: dict[str, Callable[..., None]] = {"exact": write_sheet, "as-typed": write_as_typed}


def _timed(label: str, argv: list[str], env: dict[str, str], cwd: Path) -> Callable[[], Child]:
    def measure() -> Child:
        child = run_child(argv, env, cwd)
        print(f"  {label}: {child.wall_s:.2f} s, {child.max_rss_mib:.0f} MiB", flush=True)
        return child

    return measure


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows (default 1000000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; the best counts")
    parser.add_argument(
        "--sheet",
        choices=[*SHEETS, "both"],
        default="both",
        help="the exact sheet, the sheet as people type it, or both in one run (default)",
    )
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
    parser.add_argument(
        "--write-to",
        type=Path,
        metavar="DIR",
        help="only write the sheet(s) into DIR (exact.csv, as-typed.csv) and stop",
    )
    args = parser.parse_args(argv)
    if args.xlsx and args.general:
        parser.error("--general compares CSV reports: leave out --xlsx")
    names = list(SHEETS) if args.sheet == "both" else [args.sheet]

    if args.write_to is not None:
        args.write_to.mkdir(parents=True, exist_ok=True)
        for name in names:
            sheet = args.write_to / f"{name}.csv"
            SHEETS[name](sheet, args.rows, invalid=args.invalid)
            print(f"{sheet}: {args.rows:,} rows x {len(HEADERS)} columns, {_size(sheet)}")
        return 0

    env = child_env()
    tool_env = {**env, "COMEET_API_KEY": "bench"} if args.journal else env
    expected = "invalid" if args.invalid else "would_update"
    suffix = ".xlsx" if args.xlsx else ".csv"
    with tempfile.TemporaryDirectory(prefix="bench-size-") as tmp_name:
        tmp = Path(tmp_name)
        measures: dict[tuple[str, str], Callable[[], Child]] = {}
        for name in names:
            sheet, report, general_report = (
                tmp / f"{name}.csv", tmp / f"{name}.out{suffix}", tmp / f"{name}.general.csv"
            )  # fmt: skip
            SHEETS[name](sheet, args.rows, invalid=args.invalid)
            print(f"sheet {name}: {args.rows:,} rows x {len(HEADERS)} columns, {_size(sheet)}")
            pandas_argv = [sys.executable, "-c", PANDAS, str(sheet), str(args.rows)]
            dry_argv = tool_argv(
                "run", str(sheet), "--dry-run", "--report", str(report), "--quiet",
                "--state-dir", str(tmp / "state"),
            )  # fmt: skip
            general_argv = [sys.executable, "-c", GENERAL, str(sheet), str(general_report)]
            measures[name, "pandas"] = _timed(f"{name} pandas", pandas_argv, env, tmp)
            measures[name, "dry run"] = _timed(f"{name} dry run", dry_argv, tool_env, tmp)
            if args.general:
                measures[name, "general"] = _timed(f"{name} general", general_argv, env, tmp)
        # Every command of every sheet in one run, alternating: a slow spell of a shared
        # machine hits them alike.
        runs = alternate(args.repeat, measures)
        failed = [c for (_, what), cs in runs.items() if what != "dry run" for c in cs if c.code]
        failed += [
            c for c in _of(runs, "dry run") if c.code != (1 if args.invalid else 0)
        ]  # the scripts exit 0; the command line 1 when it reports invalid rows
        if failed:
            print(f"a child failed (exit {failed[0].code}):\n{failed[0].stderr[-2000:]}")
            return 1
        return _report(args, names, runs, tmp, suffix, expected)


def _of(runs: dict[tuple[str, str], list[Child]], what: str) -> list[Child]:
    return [c for (_, kind), children in runs.items() if kind == what for c in children]


def _size(path: Path) -> str:
    return f"{path.stat().st_size:,} B"


def _report(
    args: argparse.Namespace,
    names: list[str],
    runs: dict[tuple[str, str], list[Child]],
    tmp: Path,
    suffix: str,
    expected: str,
) -> int:
    """The table, the ratios per sheet and the checks; 0 when every check holds."""
    kinds = {
        "pandas": "pandas.read_csv (baseline)",
        "dry run": f"bulk-update run --dry-run ({suffix[1:].upper()} report"
        f"{', journal' if args.journal else ''})",
        "general": "general path (load, plan, run_async)",
    }
    print(f"\n{'':55} {'best wall s':>12} {'all runs':>24} {'peak RSS':>10}")
    for (name, kind), children in runs.items():
        peak = max(c.max_rss_mib for c in children)
        label = f"{name}: {kinds[kind]}"
        print(f"{label:55} {best(children).wall_s:12.2f} {walls(children):>24} {peak:6.0f} MiB")
    ok = True
    lines: dict[str, list[str]] = {}
    for name in names:
        tool, base = best(runs[name, "dry run"]), best(runs[name, "pandas"])
        rss = max(c.max_rss_kib for c in runs[name, "dry run"]) * 1024
        counts = outcomes(tmp / f"{name}.out{suffix}")
        ok = ok and counts == {expected: args.rows} and rss <= GIB
        found = {
            "ratio dry run / pandas (goal <= 3)": f"{tool.wall_s / base.wall_s:.2f}",
            "dry run peak RSS (goal <= 1024 MiB)": f"{rss / 2**20:.0f} MiB",
            "rows per second (dry run)": f"{args.rows / tool.wall_s:,.0f}",
            "report outcomes": f"{counts}",
        }
        if args.general:
            same = (tmp / f"{name}.out.csv").read_bytes() == (
                tmp / f"{name}.general.csv"
            ).read_bytes()
            general = best(runs[name, "general"]).wall_s
            found["general path / dry run"] = f"{general / tool.wall_s:.1f}x"
            found["reports byte for byte"] = "identical" if same else "DIFFERENT"
            ok = ok and same
        for what, value in found.items():
            lines.setdefault(what, []).append(f"{name} {value}")
    print()
    for what, values in lines.items():
        print(f"{what}: {'; '.join(values)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
