"""The package as it runs on Windows, simulated on this machine (issue 14).

Windows' asyncio event loops take no signal handlers (`loop.add_signal_handler` raises
NotImplementedError): Ctrl-C must still be a graceful stop there, through a plain
`signal.signal` handler (bulk_update/signals.py). The command line runs in a subprocess
whose event loops refuse signal handlers as Windows' do.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from bulk_update.sandbox import Faults, SandboxState, ThreadedSandbox
from bulk_update.signals import on_stop_signals

from .conftest import ROOT
from .test_e2e import CREDS, make_state, outcomes, write_csv

#: Python code that runs the command line with event loops like Windows' (no signal handlers).
AS_ON_WINDOWS = """
import asyncio.unix_events, sys

def refuse(self, *args, **kwargs):
    raise NotImplementedError  # what Windows' event loops do

asyncio.unix_events._UnixSelectorEventLoop.add_signal_handler = refuse
from bulk_update.cli import main
sys.exit(main(sys.argv[1:]))
"""


def start_cli(args: list[str], tmp_path: Path, *, prelude: str = "") -> subprocess.Popen[str]:
    """The command line with Windows-like event loops, `prelude` (Python code) run first."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMEET_")}
    env.update(CREDS, PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, "-c", prelude + AS_ON_WINDOWS, *args],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_applied(state: SandboxState, count: int, timeout: float = 20) -> None:
    """Until the sandbox has applied `count` rows (or `timeout` seconds have passed)."""
    deadline = time.monotonic() + timeout
    while len(state.applied) < count and time.monotonic() < deadline:
        time.sleep(0.05)


@pytest.mark.parametrize("presses", [1, 2])
def test_ctrl_c_is_a_graceful_stop_where_the_loop_takes_no_signal_handlers(
    tmp_path: Path, presses: int
) -> None:
    uids = [f"WN.{i}" for i in range(40)]
    sheet = write_csv(tmp_path / "s.csv", [["uid", "first_name"]] + [[u, "W"] for u in uids])
    state = make_state(uids)
    # Each answer takes a second: the second Ctrl-C comes while the first one waits for the
    # requests in flight.
    with ThreadedSandbox(state, faults=Faults(slow=1.0, slow_s=1.0)) as sb:
        args = ["run", str(sheet), "--base-url", sb.base_url, "--rate", "5/1"]
        proc = start_cli([*args, "--report", str(tmp_path / "out.xlsx")], tmp_path)
        wait_for_applied(state, 5)
        for _ in range(presses):
            proc.send_signal(signal.SIGINT)
            time.sleep(0.2)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 3, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    report = outcomes(tmp_path / "out.xlsx")
    assert set(report.values()) == {"updated", "not_sent"}
    done = {u for u, o in report.items() if o == "updated"}
    assert 5 <= len(done) < 40
    if presses == 1:  # graceful: every request in flight finished and was recorded
        assert done == {uid for uid, _ in state.applied}
        assert Counter(uid for uid, _ in state.applied) == Counter(done)
    assert "not_sent" in out.strip().splitlines()[-1]


def test_the_fallback_hands_the_signal_to_the_loop_and_is_taken_away() -> None:
    class WindowsLoop(asyncio.SelectorEventLoop):
        def add_signal_handler(self, *args: Any, **kwargs: Any) -> None:
            raise NotImplementedError

    loop = WindowsLoop()
    try:
        before = signal.getsignal(signal.SIGINT)
        seen: list[str] = []

        async def main() -> None:
            remove = on_stop_signals(loop, seen.append)
            assert signal.getsignal(signal.SIGINT) is not before
            signal.raise_signal(signal.SIGINT)
            await asyncio.sleep(0.05)
            remove()

        loop.run_until_complete(main())
        assert seen == ["SIGINT"]
        assert signal.getsignal(signal.SIGINT) is before
    finally:
        loop.close()
