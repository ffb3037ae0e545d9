"""What the benchmarks share: the sheets' building blocks and the measuring of child processes.

Sheets: name pools, `email` and `mobile` cells, and `write_csv` (a header and rows, written
as `csv.writer` writes them: `\\r\\n` line ends, quotes only where needed). Each benchmark
keeps its own generator of rows (its seed and its columns), so that its sheet stays the
same file from one version of this module to the next.

Processes: `run_child` runs a command and measures it from outside (wall time including
interpreter start, and the child's own CPU time and peak RSS, from `wait4`); `alternate`
runs several measurements per round, the order reversed every other round, so that no
command always runs first on a cold cache or last on a warm one; `best` picks the fastest
run (a shared machine only ever slows a run down). `outcomes` counts a results sheet's
outcomes.
"""

from __future__ import annotations

import csv
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parents[1]
GIB = 1 << 30

FIRST_NAMES = (
    "Dana", "Noa", "Yossi", "Maya", "Avi", "Tamar", "Omer", "Shira", "Eitan", "Yael", "Lior",
    "Roni", "Gal", "Itai", "Michal",
)  # fmt: skip
LAST_NAMES = (
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


def email(first: str, last: str, n: int, domain: str = "example.com") -> str:
    """`dana.cohen.17@example.com`: unique per row number."""
    return f"{first.lower()}.{last.lower()}.{n}@{domain}"


def mobile(rng: random.Random) -> str:
    """An Israeli mobile number as people write it: `+972-54-1234567`."""
    return f"+972-5{rng.randrange(10)}-{rng.randrange(1000000, 9999999)}"


def write_csv(path: Path, headers: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """A UTF-8 CSV of `headers` then `rows`, as `csv.writer`'s default dialect writes it."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(headers)
        writer.writerows(rows)


def child_env(**extra: str) -> dict[str, str]:
    """This environment without COMEET_* (no key: no journal), the repository first on
    PYTHONPATH (the children import this checkout's bulk_update), and `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMEET_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return {**env, **extra}


def tool_argv(*args: str) -> list[str]:
    """`python -m bulk_update ARGS` with this interpreter."""
    return [sys.executable, "-m", "bulk_update", *args]


@dataclass
class Child:
    """One child process, measured from outside."""

    code: int
    wall_s: float  # interpreter start included
    cpu_s: float  # user + system
    max_rss_kib: int  # KiB on Linux
    stdout: str
    stderr: str

    @property
    def max_rss_mib(self) -> float:
        return self.max_rss_kib / 1024


def run_child(
    argv: Sequence[str],
    env: Mapping[str, str],
    cwd: Path,
    *,
    preexec_fn: Callable[[], object] | None = None,
) -> Child:
    """Run `argv` in `cwd` (its output goes to files there, read back when it ends).

    `wait4` gives this child's own rusage: RUSAGE_CHILDREN would be the largest peak RSS of
    all the children so far, mixing one command with another.
    """
    out, err = cwd / "child.out", cwd / "child.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        started = time.perf_counter()
        proc = subprocess.Popen(
            list(argv), cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL, stdout=stdout,
            stderr=stderr, preexec_fn=preexec_fn,
        )  # fmt: skip
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Child(
        proc.returncode,
        wall,
        usage.ru_utime + usage.ru_stime,
        usage.ru_maxrss,
        out.read_text(encoding="utf-8", errors="replace"),
        err.read_text(encoding="utf-8", errors="replace"),
    )


K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


def in_turn(round_: int, names: Sequence[K]) -> list[K]:
    """`names` in their order on even rounds (0, 2, ...), reversed on odd ones."""
    return list(names) if round_ % 2 == 0 else list(reversed(names))


def alternate(repeat: int, measures: Mapping[K, Callable[[], T]]) -> dict[K, list[T]]:
    """`repeat` rounds of every measure, in the given order then reversed, round by round."""
    results: dict[K, list[T]] = {name: [] for name in measures}
    for round_ in range(repeat):
        for name in in_turn(round_, list(measures)):
            results[name].append(measures[name]())
    return results


def best(children: Iterable[Child]) -> Child:
    """The fastest run."""
    return min(children, key=lambda c: c.wall_s)


def walls(children: Iterable[Child]) -> str:
    """Every run's wall time, in the order they ran: `4.23, 4.27, 4.61`."""
    return ", ".join(f"{c.wall_s:.2f}" for c in children)


def outcomes(report: Path) -> dict[str, int]:
    """How many rows of a results sheet (CSV or XLSX) have each outcome."""
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
