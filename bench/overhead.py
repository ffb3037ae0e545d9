"""Benchmark: the tool's own overhead, against a bare aiohttp loop sending the same bodies.

With no rate limit (the sandbox with none, `--rate 1000000/1`), the tool should send about
as fast as the simplest client one could write. In the same run and against the same kind
of server, each in its own process:

- the tool: the real command line in a subprocess,
  `python -m bulk_update run sheet.csv --base-url <sandbox> --rate 1000000/1
  --concurrency N --report out.csv --state-dir <fresh dir>` (journal, limiter, retries and
  report included);
- the baseline: a bare aiohttp loop in another subprocess, N tasks over one
  `ClientSession`, each sending `PATCH` with the same JSON bodies and one bearer token
  minted once; no limiter, no retries, no journal.

Each measurement gets a fresh sandbox process (no rate limit) seeded with the sheet's uids.
Requests per second are measured from the server's side: requests over the span from the
first arrival to the last. The server's process is pinned to one core and the client's to
the other (`--no-pin` to leave the scheduler alone). Tool and baseline alternate, in the
other order on each repeat, and the best of the repeats counts (a shared machine slows
down, it never speeds up). The server also hashes every body it received, to check that
both clients sent the same bodies.

Run from the repository root::

    .venv/bin/python bench/overhead.py [--quick] [--rows 20000] [--repeat 2]
    .venv/bin/python bench/overhead.py --quick --profile /tmp/prof   # pyinstrument

`--quick` is 5,000 rows and one repeat. `--profile DIR` runs the tool once more per
concurrency under pyinstrument and writes DIR/tool-cN.txt (call tree) and .pstats. Exits 1
when the tool's rate is under 0.8x the baseline's at some concurrency, when the command did
not exit 0, or when some row was not applied.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import (
    FIRST_NAMES,
    LAST_NAMES,
    NOTES,
    ROOT,
    TEAMS,
    child_env,
    email,
    in_turn,
    mobile,
    run_child,
    tool_argv,
    write_csv,
)

sys.path.insert(0, str(ROOT))

from bulk_update.sandbox import DEMO_API_KEY, DEMO_SECRET

GOAL = 0.8
RATE = "1000000/1"  # no limit worth the name: the limiter still runs, as it always does
HEADERS = (
    "UID",
    "First Name",
    "Last Name",
    "Email",
    "Phone",
    "Prospect Status",
    "Address.Country",
    "Address.City",
    "custom_fields.Team",
    "Note",
)
STATUSES = ("Sourced", "Contacted", "Responded", "Interested", "not interested")
PLACES = (("IL", "Tel Aviv"), ("IL", "Haifa"), ("GB", "London"), ("de", "Berlin"), ("US", ""))


def uid_of(n: int) -> str:
    return f"OV.{n}"


def write_sheet(path: Path, rows: int, seed: int = 11) -> None:
    """An N-row CSV of valid candidate updates (uids OV.1 ... OV.N); a note on 1 row in 10."""
    rng = random.Random(seed)

    def lines() -> Iterator[tuple[str, ...]]:
        for n in range(1, rows + 1):
            first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            country, city = rng.choice(PLACES)
            yield (
                uid_of(n),
                first,
                last,
                email(first, last, n),
                mobile(rng),
                rng.choice(STATUSES),
                country,
                city,
                rng.choice(TEAMS),
                f"{rng.choice(NOTES[:2])} ({n})" if n % 10 == 0 else "",
            )

    write_csv(path, HEADERS, lines())


def write_seed(path: Path, rows: int) -> None:
    """The sandbox's candidates file (sandbox.load_seed): the sheet's uids and its field."""
    candidates = [{"uid": uid_of(n)} for n in range(1, rows + 1)]
    path.write_text(json.dumps({"custom_fields": ["Team"], "candidates": candidates}))


def bodies_digest(items: list[tuple[str, Any]]) -> str:
    """One hash of (uid, body) pairs, whatever their order."""
    lines = sorted(json.dumps([uid, body], sort_keys=True) for uid, body in items)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


# --- the child processes -------------------------------------------------------------------


def serve(seed: Path, out: Path) -> None:
    """`_serve`: the sandbox with no limit until SIGTERM; then its arrivals into `out`."""
    from bulk_update.sandbox import SandboxServer, load_seed

    state = load_seed(seed)

    async def main() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        async with SandboxServer(state, rate=None) as server:
            print(server.base_url, flush=True)
            await stop.wait()

    asyncio.run(main())
    requests = state.requests
    out.write_text(
        json.dumps(
            {
                "times": [r.time for r in requests],
                "statuses": dict(Counter(str(r.status) for r in requests)),
                "applied": len(state.applied),
                "digest": bodies_digest([(r.uid, r.body) for r in requests if r.status == 200]),
            }
        )
    )


def bare(base_url: str, bodies: Path, concurrency: int) -> None:
    """`_bare`: N tasks over one ClientSession, one token minted once; nothing else."""
    import aiohttp
    import jwt

    items = json.loads(bodies.read_text())
    token = jwt.encode(
        {"iss": DEMO_API_KEY, "exp": int(time.time()) + 3600}, DEMO_SECRET, algorithm="HS256"
    )
    headers = {"Authorization": f"Bearer {token}"}

    async def main() -> None:
        pending = iter(items)
        async with aiohttp.ClientSession() as session:

            async def worker() -> None:
                for uid, body in pending:  # one iterator shared by every task
                    url = f"{base_url}/candidates/{uid}"
                    async with session.patch(url, json=body, headers=headers) as response:
                        await response.read()

            await asyncio.gather(*(worker() for _ in range(concurrency)))

    started = time.process_time()
    asyncio.run(main())
    print(json.dumps({"send_cpu_s": time.process_time() - started}))


# --- the parent ------------------------------------------------------------------------------


def _pin(cpu: int | None) -> Any:
    if cpu is None:
        return None
    return lambda: os.sched_setaffinity(0, {cpu})


@dataclass
class Measure:
    who: str  # "tool" | "bare"
    concurrency: int
    code: int
    wall_s: float
    cpu_s: float  # the client process's user + system time, start-up included
    requests: int
    span_s: float
    statuses: dict[str, int]
    applied: int
    digest: str
    stderr: str = ""
    send_cpu_s: float | None = None  # the bare loop's CPU around its sending only

    @property
    def rate(self) -> float:
        return (self.requests - 1) / self.span_s if self.span_s > 0 else 0.0


@dataclass
class Bench:
    tmp: Path
    rows: int
    pin: bool
    env: dict[str, str] = field(default_factory=dict)
    runs: int = 0

    def cpu(self, which: int) -> int | None:
        return which if self.pin else None

    def measure(self, who: str, concurrency: int, profile: Path | None = None) -> Measure:
        """One client run against a fresh sandbox process; figures from the server's side."""
        self.runs += 1
        work = self.tmp / f"{self.runs}-{who}-c{concurrency}"
        work.mkdir()
        arrivals = work / "arrivals.json"
        server = subprocess.Popen(
            [sys.executable, __file__, "_serve", str(self.tmp / "seed.json"), str(arrivals)],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=_pin(self.cpu(0)),
        )
        try:
            assert server.stdout is not None
            base_url = server.stdout.readline().strip()
            if not base_url.startswith("http://"):
                raise RuntimeError(f"the sandbox did not start: {base_url!r}")
            if who in ("tool", "dry"):
                args = ["run", str(self.tmp / "sheet.csv"), "--base-url", base_url]
                args += ["--rate", RATE, "--concurrency", str(concurrency)]
                args += ["--dry-run"] if who == "dry" else []
                args += ["--report", str(work / "out.csv"), "--state-dir", str(work / "state")]
                command = tool_argv(*args)
                if profile is not None:
                    out = profile / f"tool-c{concurrency}"
                    pyinstrument = [sys.executable, "-m", "pyinstrument", "-r", "pstats"]
                    pyinstrument += ["-o", f"{out}.pstats", "-m", "bulk_update", *args]
                    command = pyinstrument
                env = {**self.env, "COMEET_API_KEY": DEMO_API_KEY, "COMEET_SECRET": DEMO_SECRET}
            else:
                command = [sys.executable, __file__, "_bare", base_url]
                command += [str(self.tmp / "bodies.json"), str(concurrency)]
                env = self.env
            # The child's own CPU time (wait4), a steadier figure than wall times here.
            client = run_child(command, env, work, preexec_fn=_pin(self.cpu(1)))
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(60)
        seen = json.loads(arrivals.read_text())
        times = seen["times"]
        send_cpu = None
        if who == "bare":
            send_cpu = json.loads(client.stdout)["send_cpu_s"]
        return Measure(
            who,
            concurrency,
            client.code,
            client.wall_s,
            client.cpu_s,
            len(times),
            max(times) - min(times) if times else 0.0,
            seen["statuses"],
            seen["applied"],
            seen["digest"],
            client.stderr[-2000:],
            send_cpu,
        )


def prepare(tmp: Path, rows: int) -> str:
    """The sheet, the sandbox seed, and the tool's own bodies for the baseline; their digest."""
    from bulk_update.pipeline import load, plan

    write_sheet(tmp / "sheet.csv", rows)
    write_seed(tmp / "seed.json", rows)
    patches = plan(load(tmp / "sheet.csv")).patches
    if len(patches) != rows:
        raise RuntimeError(f"{len(patches)} of {rows} rows planned: the generated sheet is wrong")
    items = [(p.uid, dict(p.body)) for p in patches]
    (tmp / "bodies.json").write_text(json.dumps(items))
    return bodies_digest(items)


def render_profile(profile: Path, concurrency: int) -> None:
    """The .pstats written by pyinstrument, as the functions with the most self time."""
    import pstats

    path = profile / f"tool-c{concurrency}.pstats"
    with (profile / f"tool-c{concurrency}.txt").open("w") as fh:
        stats = pstats.Stats(str(path), stream=fh)
        stats.sort_stats("tottime").print_stats(40)
        stats.sort_stats("cumulative").print_stats(60)
    print(f"profile: {path} and {path.with_suffix('.txt')}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=None, help="sheet rows (default 20000)")
    parser.add_argument("--repeat", type=int, default=None, help="repeats (default 2)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--quick", action="store_true", help="5,000 rows, one repeat")
    parser.add_argument("--no-pin", action="store_true", help="do not pin server and client")
    parser.add_argument("--profile", type=Path, help="also profile the tool into this folder")
    args = parser.parse_args(argv)
    rows = args.rows or (5_000 if args.quick else 20_000)
    repeat = args.repeat or (1 if args.quick else 2)
    pin = not args.no_pin and len(os.sched_getaffinity(0)) >= 2

    env = child_env()
    failures: list[str] = []
    measures: list[Measure] = []
    drys: list[Measure] = []
    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp_name:
        tmp = Path(tmp_name)
        env["XDG_STATE_HOME"] = str(tmp / "xdg")
        digest = prepare(tmp, rows)
        bench = Bench(tmp, rows, pin, env)
        print(
            f"{rows:,} rows x {len(HEADERS)} columns; concurrency {args.concurrency}; "
            f"{repeat} repeat(s); pinned: {'server cpu 0, client cpu 1' if pin else 'no'}; "
            f"load average {os.getloadavg()[0]:.2f}",
            flush=True,
        )
        for n in range(repeat):
            dry = bench.measure("dry", args.concurrency[0])
            drys.append(dry)
            print(f"  dry run: wall {dry.wall_s:.2f} s, CPU {dry.cpu_s:.2f} s", flush=True)
            if dry.code != 0:
                failures.append(f"the dry run exited {dry.code}: {dry.stderr}")
            for concurrency in args.concurrency:
                for who in in_turn(n, ("tool", "bare")):
                    m = bench.measure(who, concurrency)
                    measures.append(m)
                    print(
                        f"  {who} c={concurrency}: {m.rate:,.0f} req/s over {m.span_s:.2f} s, "
                        f"wall {m.wall_s:.2f} s, client CPU {m.cpu_s:.2f} s",
                        flush=True,
                    )
                    if m.code != 0:
                        failures.append(f"{who} c={concurrency} exited {m.code}: {m.stderr}")
                    if m.applied != rows or m.statuses != {"200": rows}:
                        failures.append(
                            f"{who} c={concurrency}: {m.applied} of {rows} applied, "
                            f"statuses {m.statuses}"
                        )
                    if m.digest != digest:
                        failures.append(f"{who} c={concurrency}: the bodies differ from the plan's")
        if args.profile is not None:
            args.profile.mkdir(parents=True, exist_ok=True)
            for concurrency in args.concurrency:
                m = bench.measure("tool", concurrency, profile=args.profile)
                print(f"  profiled tool c={concurrency}: {m.rate:,.0f} req/s (under pyinstrument)")
                render_profile(args.profile, concurrency)

    table: list[tuple[str, str]] = [("load average after", f"{os.getloadavg()[0]:.2f}")]
    for concurrency in args.concurrency:
        tool = [m for m in measures if m.who == "tool" and m.concurrency == concurrency]
        base = [m for m in measures if m.who == "bare" and m.concurrency == concurrency]
        best_tool = max(tool, key=lambda m: m.rate)
        best_bare = max(base, key=lambda m: m.rate)
        ratio = best_tool.rate / best_bare.rate if best_bare.rate else 0.0
        if ratio < GOAL:
            failures.append(f"c={concurrency}: tool/bare {ratio:.2f} < {GOAL}")
        verdict = "ok" if ratio >= GOAL else "MISSED"
        table += [
            (f"--- concurrency {concurrency}", ""),
            ("tool req/s (best; all)", _best_all(tool)),
            ("bare aiohttp req/s (best; all)", _best_all(base)),
            (f"ratio tool / bare (goal >= {GOAL})", f"{ratio:.2f} {verdict}"),
            ("ratio within each pair run back to back", _pairs(tool, base)),
            ("tool wall time of the command (best)", f"{min(m.wall_s for m in tool):.2f} s"),
            ("bare wall time of its process (best)", f"{min(m.wall_s for m in base):.2f} s"),
            ("client CPU, tool / bare (least)", _cpu(tool, base)),
            ("CPU per request: tool beyond a dry run / bare", _per_request(tool, base, drys, rows)),
        ]
    width = max(len(label) for label, _ in table)
    print()
    for label, value in table:
        print(f"{label:<{width}}  {value}")
    for failure in failures:
        print(f"FAIL: {failure}", file=sys.stderr)
    return 1 if failures else 0


def _pairs(tool: list[Measure], base: list[Measure]) -> str:
    """tool/bare of each repeat (the two ran one after the other against fresh servers)."""
    return ", ".join(f"{t.rate / b.rate:.2f}" for t, b in zip(tool, base, strict=True))


def _cpu(tool: list[Measure], base: list[Measure]) -> str:
    """Least CPU time of each client, whole process (interpreter start, reading, report)."""
    t, b = min(m.cpu_s for m in tool), min(m.cpu_s for m in base)
    return f"{t:.2f} s / {b:.2f} s"


def _per_request(tool: list[Measure], base: list[Measure], drys: list[Measure], rows: int) -> str:
    """Client CPU per request while sending (least of the repeats).

    The tool's: its CPU minus a dry run's of the same sheet (start-up, reading, planning
    and the report are in both). The bare loop's: measured around its sending.
    """
    dry = min(m.cpu_s for m in drys)
    t = (min(m.cpu_s for m in tool) - dry) / rows * 1e6
    b = min(m.send_cpu_s or 0.0 for m in base) / rows * 1e6
    return f"{t:.0f} µs / {b:.0f} µs (the dry run: {dry:.2f} s)"


def _best_all(measures: list[Measure]) -> str:
    rates = [m.rate for m in measures]
    return f"{max(rates):,.0f}; " + ", ".join(f"{r:,.0f}" for r in rates)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_serve":
        serve(Path(sys.argv[2]), Path(sys.argv[3]))
    elif len(sys.argv) > 1 and sys.argv[1] == "_bare":
        bare(sys.argv[2], Path(sys.argv[3]), int(sys.argv[4]))
    else:
        raise SystemExit(main())
