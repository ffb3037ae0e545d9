"""Benchmark: the journal's cost on a re-run of a large sheet with nothing changed.

A nightly cron run of the same sheet must send no request and finish quickly. This script
builds an N-row sheet, fills a journal as a first run would have (every row confirmed by the
API), then runs the real command line against the sandbox and measures it, next to two
baselines measured in the same run (a shared machine's speed varies from hour to hour):

- the same command with --dry-run and no COMEET_API_KEY (no journal: read, validate, plan,
  report), and
- a plain `csv.reader` pass over the same file, in this process.

Run from the repository root::

    .venv/bin/python bench/journal_rerun.py [--rows 100000] [--repeat 3]

Exits 1 when the re-run sent any request, reported a row other than `unchanged`, or did not
exit 0.
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from harness import (
    CITIES,
    FIRST_NAMES,
    LAST_NAMES,
    NOTES,
    ROOT,
    TEAMS,
    Child,
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

sys.path.insert(0, str(ROOT))

from bulk_update.journal import JOURNAL_FILE, Journal
from bulk_update.models import Outcome, RowResult
from bulk_update.pipeline import _journal_results, load, plan
from bulk_update.sandbox import (
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


def write_sheet(path: Path, rows: int, seed: int = 7) -> None:
    """An N-row CSV of valid, realistic-looking candidate updates (uids BN.1 ... BN.N)."""
    rng = random.Random(seed)

    def lines() -> Iterator[tuple[str, ...]]:
        for n in range(1, rows + 1):
            first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            yield (
                f"BN.{n}",
                first,
                last,
                email(first, last, n),
                mobile(rng),
                rng.choice(CITIES),
                rng.choice(TEAMS),
                f"{rng.choice(NOTES)} (batch {n % 97})",
            )

    write_csv(path, HEADERS, lines())


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


def csv_read_s(path: Path) -> float:
    started = time.perf_counter()
    with path.open(newline="", encoding="utf-8") as fh:
        for _ in csv.reader(fh):
            pass
    return time.perf_counter() - started


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
            # The same journal either way: --state-dir, and XDG_STATE_HOME pointing at it too.
            base_env = child_env(XDG_STATE_HOME=str(state_dir.parent))
            rerun_env = {**base_env, "COMEET_API_KEY": DEMO_API_KEY, "COMEET_SECRET": DEMO_SECRET}
            rerun_args = ["run", str(sheet), "--base-url", sandbox.base_url]
            rerun_args += ["--state-dir", str(state_dir), "--report", str(tmp / "out.csv")]
            dry_args = ["run", str(sheet), "--dry-run", "--base-url", sandbox.base_url]
            dry_args += ["--report", str(tmp / "dry.csv")]
            rerun_argv, dry_argv = tool_argv(*rerun_args), tool_argv(*dry_args)

            reruns: list[Child] = []
            drys: list[Child] = []
            reads: list[float] = []
            failures: list[str] = []
            # Interleaved, so that a slow spell of the machine hits both commands alike.
            for _ in range(args.repeat):
                reruns.append(run_child(rerun_argv, rerun_env, tmp))
                counts = outcomes(tmp / "out.csv")
                if reruns[-1].code != 0:
                    failures.append(f"re-run exited {reruns[-1].code}: {reruns[-1].stderr[-2000:]}")
                if counts != {Outcome.UNCHANGED.value: args.rows}:
                    failures.append(f"re-run outcomes {counts}, expected only 'unchanged'")
                drys.append(run_child(dry_argv, base_env, tmp))
                if drys[-1].code != 0:
                    failures.append(f"dry run exited {drys[-1].code}: {drys[-1].stderr[-2000:]}")
                reads.append(csv_read_s(sheet))
            seen = sandbox.snapshot()
        requests = max(len(seen.requests), seen.arrived)
        if requests:
            failures.append(f"the re-run sent {requests} request(s); expected none")
        size = journal_bytes(state_dir)

    rerun, dry = best(reruns), best(drys)
    table = [
        ("rows", f"{args.rows:,}"),
        ("requests sent", f"{requests}"),
        ("re-run wall time (best)", f"{rerun.wall_s:.2f} s"),
        ("re-run wall times (all)", walls(reruns) + " s"),
        ("re-run CPU time (best run)", f"{rerun.cpu_s:.2f} s"),
        ("dry run without journal (best)", f"{dry.wall_s:.2f} s"),
        ("dry run wall times (all)", walls(drys) + " s"),
        ("ratio re-run / dry run", f"{rerun.wall_s / dry.wall_s:.2f}"),
        ("csv.reader pass (best)", f"{min(reads) * 1000:.0f} ms"),
        ("re-run peak RSS", f"{max(c.max_rss_mib for c in reruns):.0f} MiB"),
        ("dry run peak RSS", f"{max(c.max_rss_mib for c in drys):.0f} MiB"),
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
