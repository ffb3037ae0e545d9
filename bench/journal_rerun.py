"""Benchmark: the journal's cost on a re-run of a large sheet with nothing changed.

A nightly cron run of the same sheet must send no request and finish quickly. This script
builds an N-row sheet, fills a journal as a first run would have (every row confirmed by the
API), then runs the real command line against the sandbox and measures it, next to two
baselines measured in the same run (a shared machine's speed varies from hour to hour):

- the same command with --dry-run and no COMEET_API_KEY (no journal: read, validate, plan,
  report), and
- a plain `csv.reader` pass over the same file, in this process.

Run from the repository root::

    /work/venv/bin/python bench/journal_rerun.py [--rows 100000] [--repeat 3]

Exits 1 when the re-run sent any request, reported a row other than `unchanged`, or did not
exit 0.
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
sys.path.insert(0, str(ROOT))

from bulk_update.journal import JOURNAL_FILE, Journal  # noqa: E402
from bulk_update.models import Outcome, RowResult  # noqa: E402
from bulk_update.pipeline import _journal_results, load, plan  # noqa: E402
from bulk_update.sandbox import (  # noqa: E402
    DEMO_API_KEY,
    DEMO_SECRET,
    SandboxState,
    ThreadedSandbox,
)

HEADERS = (
    "UID",
    "First Name",
    "Last Name",
    "Email",
    "Phone",
    "Address.City",
    "custom_fields.Team",
    "Note",
)
FIRST = (
    "Dana", "Noa", "Yossi", "Maya", "Avi", "Tamar", "Omer", "Shira", "Eitan", "Yael", "Lior",
    "Roni", "Gal", "Itai", "Michal",
)  # fmt: skip
LAST = (
    "Cohen", "Levi", "Mizrahi", "Peretz", "Biton", "Friedman", "Avraham", "Katz", "Azulay",
    "Dahan", "Shapiro",
)  # fmt: skip
CITIES = ("Tel Aviv", "Haifa", "Jerusalem", "Beer Sheva", "London", "Berlin", "New York")
TEAMS = ("R&D", "Marketing", "Sales", "Support", "Finance", "Product")
NOTES = (
    "Met at the spring job fair; strong system design, follow up next week",
    "Referred by a team lead, available from next quarter",
    "Second interview scheduled; asked about remote work",
    "Imported from the 2023 campus recruiting list",
)


def write_sheet(path: Path, rows: int, seed: int = 7) -> None:
    """An N-row CSV of valid, realistic-looking candidate updates (uids BN.1 ... BN.N)."""
    rng = random.Random(seed)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(HEADERS)
        for n in range(1, rows + 1):
            first, last = rng.choice(FIRST), rng.choice(LAST)
            writer.writerow(
                (
                    f"BN.{n}",
                    first,
                    last,
                    f"{first.lower()}.{last.lower()}.{n}@example.com",
                    f"+972-5{rng.randrange(10)}-{rng.randrange(1000000, 9999999)}",
                    rng.choice(CITIES),
                    rng.choice(TEAMS),
                    f"{rng.choice(NOTES)} (batch {n % 97})",
                )
            )


@dataclass
class Fill:
    plan_s: float
    record_s: float
    recorded: int


def fill_journal(sheet_path: Path, state_dir: Path, base_url: str) -> Fill:
    """Record every row as applied, exactly as a first run does on each UPDATED result."""
    with Journal.open(state_dir, base_url=base_url, api_key=DEMO_API_KEY) as journal:
        started = time.perf_counter()
        the_plan = plan(load(sheet_path), journal=journal)
        planned = time.perf_counter()
        patches = the_plan.patches
        run_id = journal.start_run(sheet=sheet_path, report=None, dry_run=False, full=False)
        notes = {p.uid: journal.fingerprint(p.body["note"]) for p in patches if "note" in p.body}
        for patch in patches:
            # One row, one transaction: a run whose answers come one at a time.
            result = RowResult(patch.row, patch.uid, Outcome.UPDATED, 200, attempts=1)
            _journal_results(
                journal, run_id, [result], {patch.row: patch}, notes, planned_with=journal
            )
        recorded = time.perf_counter()
        journal.finish_run(
            run_id,
            counts={"updated": len(patches)},
            status="finished",
            duration_s=recorded - started,
        )
    return Fill(planned - started, recorded - planned, len(patches))


@dataclass
class Child:
    code: int
    wall_s: float
    cpu_s: float
    max_rss_kib: int
    stderr: str


def run_child(args: list[str], env: dict[str, str], cwd: Path) -> Child:
    """Run `python -m bulk_update ARGS`; wall time and this child's own rusage (wait4)."""
    out, err = cwd / "child.out", cwd / "child.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "bulk_update", *args],
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
        )
        # wait4 gives this child's own peak RSS (RUSAGE_CHILDREN would be the largest of all
        # the children so far, mixing the re-run with the dry run).
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Child(
        proc.returncode,
        wall,
        usage.ru_utime + usage.ru_stime,
        usage.ru_maxrss,  # KiB on Linux
        err.read_text(encoding="utf-8", errors="replace"),
    )


def csv_read_s(path: Path) -> float:
    started = time.perf_counter()
    with path.open(newline="", encoding="utf-8") as fh:
        for _ in csv.reader(fh):
            pass
    return time.perf_counter() - started


def outcomes(report: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    with report.open(newline="", encoding="utf-8") as fh:
        for line in csv.DictReader(fh):
            counts[line["outcome"]] = counts.get(line["outcome"], 0) + 1
    return counts


def journal_bytes(state_dir: Path) -> int:
    return sum(
        p.stat().st_size
        for p in state_dir.glob(JOURNAL_FILE + "*")  # the file and any -wal/-shm left
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=100_000, help="sheet rows (default 100000)")
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of each command; the best counts (default 3)"
    )
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-journal-") as tmp_name:
        tmp = Path(tmp_name)
        sheet, state_dir = tmp / "sheet.csv", tmp / "state" / "bulk-update"
        write_sheet(sheet, args.rows)
        print(f"sheet: {args.rows} rows x {len(HEADERS)} columns, {sheet.stat().st_size:,} bytes")

        state = SandboxState(
            candidates={f"BN.{n}": {"uid": f"BN.{n}"} for n in range(1, args.rows + 1)},
            custom_fields={"Team"},
        )
        with ThreadedSandbox(state, rate=None) as sandbox:
            fill = fill_journal(sheet, state_dir, sandbox.base_url)
            print(
                f"journal filled: plan {fill.plan_s:.2f} s, {fill.recorded} confirmations "
                f"recorded in {fill.record_s:.2f} s"
            )
            base_env = {k: v for k, v in os.environ.items() if not k.startswith("COMEET_")}
            base_env["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
            )
            # The same journal either way: --state-dir, and XDG_STATE_HOME pointing at it too.
            base_env["XDG_STATE_HOME"] = str(state_dir.parent)
            rerun_env = {**base_env, "COMEET_API_KEY": DEMO_API_KEY, "COMEET_SECRET": DEMO_SECRET}
            rerun_args = ["run", str(sheet), "--base-url", sandbox.base_url]
            rerun_args += ["--state-dir", str(state_dir), "--report", str(tmp / "out.csv")]
            dry_args = ["run", str(sheet), "--dry-run", "--base-url", sandbox.base_url]
            dry_args += ["--report", str(tmp / "dry.csv")]

            reruns: list[Child] = []
            drys: list[Child] = []
            reads: list[float] = []
            failures: list[str] = []
            # Interleaved, so that a slow spell of the machine hits both commands alike.
            for _ in range(args.repeat):
                reruns.append(run_child(rerun_args, rerun_env, tmp))
                counts = outcomes(tmp / "out.csv")
                if reruns[-1].code != 0:
                    failures.append(f"re-run exited {reruns[-1].code}: {reruns[-1].stderr[-2000:]}")
                if counts != {Outcome.UNCHANGED.value: args.rows}:
                    failures.append(f"re-run outcomes {counts}, expected only 'unchanged'")
                drys.append(run_child(dry_args, base_env, tmp))
                if drys[-1].code != 0:
                    failures.append(f"dry run exited {drys[-1].code}: {drys[-1].stderr[-2000:]}")
                reads.append(csv_read_s(sheet))
            seen = sandbox.snapshot()
        requests = max(len(seen.requests), seen.arrived)
        if requests:
            failures.append(f"the re-run sent {requests} request(s); expected none")
        size = journal_bytes(state_dir)

    rerun = min(reruns, key=lambda c: c.wall_s)
    dry = min(drys, key=lambda c: c.wall_s)
    table = [
        ("rows", f"{args.rows:,}"),
        ("requests sent", f"{requests}"),
        ("re-run wall time (best)", f"{rerun.wall_s:.2f} s"),
        ("re-run wall times (all)", ", ".join(f"{c.wall_s:.2f}" for c in reruns) + " s"),
        ("re-run CPU time (best run)", f"{rerun.cpu_s:.2f} s"),
        ("dry run without journal (best)", f"{dry.wall_s:.2f} s"),
        ("dry run wall times (all)", ", ".join(f"{c.wall_s:.2f}" for c in drys) + " s"),
        ("ratio re-run / dry run", f"{rerun.wall_s / dry.wall_s:.2f}"),
        ("csv.reader pass (best)", f"{min(reads) * 1000:.0f} ms"),
        ("re-run peak RSS", f"{max(c.max_rss_kib for c in reruns) / 1024:.0f} MiB"),
        ("dry run peak RSS", f"{max(c.max_rss_kib for c in drys) / 1024:.0f} MiB"),
        ("journal file size", f"{size / 1024 / 1024:.1f} MiB ({size / args.rows:.0f} B/row)"),
        ("recording a confirmation", f"{fill.record_s / max(fill.recorded, 1) * 1e6:.0f} µs/row"),
        ("plan of the first run (in-process)", f"{fill.plan_s:.2f} s"),
    ]
    width = max(len(label) for label, _ in table)
    print()
    for label, value in table:
        print(f"{label:<{width}}  {value}")
    for failure in failures:
        print(f"FAIL: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
