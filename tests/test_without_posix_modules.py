"""The package with no POSIX-only module, as on Windows, simulated on this machine (issue 14).

Windows has no `fcntl` (nor `termios`, `pwd`, `grp`, `resource`): nothing in the package may
import one at import time, and the run lock and the confirmation log's lock (`filelock`)
must keep their promises without them. The command line runs in a subprocess where those
modules cannot be imported and whose event loops refuse signal handlers, as Windows' do.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

from bulk_update.sandbox import Faults, ThreadedSandbox

from .conftest import ROOT, SAMPLE, without_backoff
from .test_as_on_windows import start_cli, wait_for_applied
from .test_e2e import make_state, outcomes, report_rows, write_csv

POSIX_ONLY = ("fcntl", "termios", "pwd", "grp", "resource")

#: Python code that makes the POSIX-only modules unimportable (a None entry in sys.modules
#: makes `import fcntl` raise ImportError), then runs what follows.
WITHOUT_POSIX = f"import sys\nsys.modules.update(dict.fromkeys({POSIX_ONLY!r}))\n"

IMPORT_EVERYTHING = """
import importlib, pkgutil
import bulk_update

modules = pkgutil.walk_packages(bulk_update.__path__, "bulk_update.")
names = [m.name for m in modules if not m.name.endswith("__main__")]  # that one would run
for name in names:
    importlib.import_module(name)
print(len(names), "modules")
"""


#: Options of a re-run that finishes what the slow first run left (later options win).
FAST = ["--rate", "1000/1", "--concurrency", "16"]


def _start(args: list[str], tmp_path: Path) -> subprocess.Popen[str]:
    return start_cli(args, tmp_path, prelude=WITHOUT_POSIX)


def test_every_module_imports_without_posix_only_modules(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", WITHOUT_POSIX + IMPORT_EVERYTHING],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout.split()[0]) > 30  # the walk found the package's modules


def test_the_sandbox_demo_runs_without_posix_only_modules(tmp_path: Path) -> None:
    report = tmp_path / "r.xlsx"
    without_backoff(tmp_path)  # the seed's failing row: its retries go at once
    args = ["run", str(SAMPLE / "candidates.csv"), "--sandbox", "--report", str(report)]
    proc = _start([*args, "--state-dir", str(tmp_path / "state")], tmp_path)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err  # the sample sheet has rows to refuse
    assert "Traceback" not in err
    assert "27 updated" in out
    assert len(report_rows(report)) == 40  # every row has its line


def test_the_run_lock_and_a_resume_without_posix_only_modules(tmp_path: Path) -> None:
    uids = [f"WL.{i}" for i in range(30)]
    sheet = write_csv(tmp_path / "s.csv", [["uid", "first_name"]] + [[u, "W"] for u in uids])
    state = make_state(uids)
    with ThreadedSandbox(state, faults=Faults(slow=1.0, slow_s=0.5)) as sb:
        args = ["run", str(sheet), "--base-url", sb.base_url, "--rate", "5/1"]
        args += ["--state-dir", str(tmp_path / "state")]
        first = _start([*args, "--report", str(tmp_path / "first.xlsx")], tmp_path)
        wait_for_applied(state, 3)
        # A second run at once against the same state dir (and API key) is refused.
        second = _start([*args, "--report", str(tmp_path / "second.xlsx")], tmp_path)
        _, second_err = second.communicate(timeout=60)
        assert second.returncode == 2, second_err
        assert f"another run (process {first.pid})" in second_err
        assert "Traceback" not in second_err
        # Ctrl-C part way: a graceful stop, the report says what was not sent.
        first.send_signal(signal.SIGINT)
        out, err = first.communicate(timeout=60)
        assert first.returncode == 3, err
        assert "Traceback" not in err and "KeyboardInterrupt" not in err
        report = outcomes(tmp_path / "first.xlsx")
        assert set(report.values()) == {"updated", "not_sent"}
        done = {u for u, o in report.items() if o == "updated"}
        assert done == {uid for uid, _ in state.applied}
        assert "not_sent" in out.strip().splitlines()[-1]
        # The re-run finishes the job and sends nothing twice (at a rate that keeps no one
        # waiting: the rate is not what this test is about).
        again = _start([*args, *FAST, "--report", str(tmp_path / "again.xlsx")], tmp_path)
        _, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    assert "took over" not in err  # the first run let go of the lock
    assert Counter(uid for uid, _ in state.applied) == Counter(uids)


def test_a_lock_left_by_a_killed_run_is_taken_over_without_posix_only_modules(
    tmp_path: Path,
) -> None:
    uids = [f"WK.{i}" for i in range(20)]
    sheet = write_csv(tmp_path / "s.csv", [["uid", "first_name"]] + [[u, "W"] for u in uids])
    state = make_state(uids)
    with ThreadedSandbox(state, faults=Faults(slow=1.0, slow_s=0.5)) as sb:
        args = ["run", str(sheet), "--base-url", sb.base_url, "--rate", "5/1"]
        args += ["--state-dir", str(tmp_path / "state")]
        first = _start([*args, "--report", str(tmp_path / "first.xlsx")], tmp_path)
        wait_for_applied(state, 2)
        first.kill()  # no chance to let go of the lock
        first.communicate(timeout=30)
        again = _start([*args, *FAST, "--report", str(tmp_path / "again.xlsx")], tmp_path)
        _, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    assert f"took over the lock left by process {first.pid}, which is no longer running" in err
    assert set(uids) <= {uid for uid, _ in state.applied}
