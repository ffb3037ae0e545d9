"""A reader that closes standard output or error early (`| head -c 100`): the run goes on.

The real console script in a subprocess, its stdout or stderr a pipe whose reader has gone:
the report is written in full, the journal records the run, the exit status is the run's
own, and nothing is said about a broken pipe (no "system refused", no traceback, no
"Exception ignored" from the interpreter at exit).
"""

from __future__ import annotations

import csv
import errno
import io
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from bulk_update.journal import read_runs
from bulk_update.sandbox import DEMO_API_KEY, DEMO_SECRET, SandboxState, ThreadedSandbox
from bulk_update.streams import ClosablePipe, closable_standard_streams, is_closed_pipe

from .conftest import ROOT, SAMPLE, without_backoff

CREDS = {"COMEET_API_KEY": DEMO_API_KEY, "COMEET_SECRET": DEMO_SECRET}
NOISE = ("Broken pipe", "BrokenPipeError", "Traceback", "Exception ignored", "refused")


def _console_script() -> list[str]:
    """The installed `bulk-update` beside this interpreter, else `python -m bulk_update`."""
    name = "bulk-update.exe" if sys.platform == "win32" else "bulk-update"
    script = Path(sys.executable).parent / name
    return [str(script)] if script.exists() else [sys.executable, "-m", "bulk_update"]


def _env(extra: Mapping[str, str], tmp_path: Path) -> dict[str, str]:
    """The environment of a user: standard output buffered unless `extra` says otherwise."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("COMEET_") and k != "PYTHONUNBUFFERED"
    }
    env.update(extra, PYTHONPATH=str(ROOT), XDG_STATE_HOME=str(tmp_path / "xdg"))
    return env


def _run(
    args: list[str], tmp_path: Path, *, closed: str = "", env: Mapping[str, str] = {}
) -> tuple[int, str, str]:
    """Run the console script; `closed` ("stdout" or "stderr") is a pipe nobody reads.

    The reading end is closed before the child starts, so its first write to that stream
    fails for certain (a reader that closes after 100 bytes only makes it likely).
    """
    streams: dict[str, int] = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    write_end = -1
    if closed:
        read_end, write_end = os.pipe()
        os.close(read_end)
        streams[closed] = write_end
    try:
        proc = subprocess.run(
            [*_console_script(), *args],
            env=_env(env, tmp_path),
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            timeout=120,
            **streams,  # type: ignore[arg-type]
        )
    finally:
        if closed:
            os.close(write_end)
    out = proc.stdout.decode("utf-8", "replace") if proc.stdout else ""
    err = proc.stderr.decode("utf-8", "replace") if proc.stderr else ""
    return proc.returncode, out, err


def _rows(report: Path) -> list[dict[str, str]]:
    with report.open(newline="", encoding="utf-8-sig") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def whole_report(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The sample's dry-run report, written with both streams read (once for the module)."""
    folder = tmp_path_factory.mktemp("whole")
    whole = folder / "whole.csv"
    args = ["run", str(SAMPLE / "candidates.csv"), "--dry-run", "--report", str(whole)]
    assert _run(args, folder)[0] == 1
    return whole.read_bytes()


@pytest.mark.parametrize("unbuffered", ["", "1"])
@pytest.mark.parametrize("closed", ["stdout", "stderr"])
def test_a_dry_run_writes_its_report_and_exits_with_its_own_status(
    tmp_path: Path, closed: str, unbuffered: str, whole_report: bytes
) -> None:
    """Buffered, the output meets the closed pipe at a flush; unbuffered, at each write."""
    sheet = SAMPLE / "candidates.csv"
    report = tmp_path / "r.csv"
    code, out, err = _run(
        ["run", str(sheet), "--dry-run", "--report", str(report)],
        tmp_path,
        closed=closed,
        env={"PYTHONUNBUFFERED": unbuffered} if unbuffered else {},
    )
    assert code == 1  # the sample has invalid rows: the run's own status, not 3 (nor 0)
    assert report.read_bytes() == whole_report
    said = out + err
    assert not [word for word in NOISE if word in said], said
    if closed == "stderr":  # the other stream still gets its share
        assert "Would send 31 request(s)" in out and "Dry run in" in out


def test_an_all_valid_dry_run_exits_0_with_stdout_closed(tmp_path: Path) -> None:
    sheet = tmp_path / "s.csv"
    sheet.write_text("uid,email\nAE.1,a@example.com\nAE.2,b@example.com\n")
    report = tmp_path / "r.csv"
    code, _, err = _run(
        ["run", str(sheet), "--dry-run", "--report", str(report)], tmp_path, closed="stdout"
    )
    assert code == 0 and err.count("INFO") == 3  # config, no COMEET_API_KEY, read: no more
    assert [r["outcome"] for r in _rows(report)] == ["would_update", "would_update"]


@pytest.mark.parametrize("closed", ["stdout", "stderr"])
def test_a_sandbox_run_sends_every_row_and_writes_its_report(tmp_path: Path, closed: str) -> None:
    report = tmp_path / "r.csv"
    without_backoff(tmp_path)  # the seed's failing row: its retries go at once
    args = ["run", str(SAMPLE / "candidates.csv"), "--sandbox", "--report", str(report)]
    code, out, err = _run(args, tmp_path, closed=closed)
    assert code == 1
    rows = _rows(report)
    assert len(rows) == 40 and all(r["outcome"] for r in rows)
    assert sum(r["outcome"] == "updated" for r in rows) == 27
    said = out + err
    assert not [word for word in NOISE if word in said], said
    if closed == "stdout":
        assert "row 30 (uid 61459710): invalid" in err
    else:
        assert out.startswith("Done in") and "27 updated" in out


def test_a_real_run_records_its_journal_with_stdout_and_stderr_closed(tmp_path: Path) -> None:
    """Both streams gone (`2>&1 | head`): every row sent, the run closed in the journal."""
    sheet = tmp_path / "s.csv"
    sheet.write_text("uid,email\nAE.1,a@example.com\nAE.2,b@example.com\nAE.3,c@x.io\n")
    state = SandboxState(candidates={"AE.1": {}, "AE.2": {}, "AE.3": {}})
    read_end, write_end = os.pipe()
    os.close(read_end)
    with ThreadedSandbox(state) as sb:
        argv = [*_console_script(), "run", str(sheet), "--base-url", sb.base_url]
        argv += ["--state-dir", str(tmp_path / "state"), "--report", str(tmp_path / "r.csv")]
        try:
            proc = subprocess.run(
                argv, env=_env(CREDS, tmp_path), cwd=tmp_path, stdin=subprocess.DEVNULL,
                stdout=write_end, stderr=write_end, timeout=120,
            )  # fmt: skip
        finally:
            os.close(write_end)
    assert proc.returncode == 0  # every row updated
    assert len(state.requests) == 3
    (run,) = read_runs(tmp_path / "state")
    assert run.status == "finished" and run.counts.get("updated") == 3
    assert [r["outcome"] for r in _rows(tmp_path / "r.csv")] == ["updated"] * 3


def test_output_still_buffered_at_the_end_goes_nowhere(tmp_path: Path) -> None:
    """`history` prints without flushing: the interpreter's flush at exit must not fail."""
    code, _, err = _run(
        ["history", "--state-dir", str(tmp_path / "none")], tmp_path, closed="stdout"
    )
    assert code == 0 and err == ""


def test_a_reader_that_stops_after_100_bytes(tmp_path: Path) -> None:
    """As `| head -c 100` does, on a run that logs far more than a pipe holds."""
    sheet = tmp_path / "s.csv"
    lines = ["uid,email", *(f"AE.{n},not-an-email-{n}" for n in range(3000))]
    sheet.write_text("\n".join(lines) + "\n")
    report = tmp_path / "r.csv"
    argv = [*_console_script(), "run", str(sheet), "--dry-run", "--log-format", "json"]
    proc = subprocess.Popen(
        [*argv, "--report", str(report)], env=_env({}, tmp_path), cwd=tmp_path,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None and proc.stdout is not None
    # Each invalid row is a JSON line on stderr (about 300 KB): the child blocks on a full
    # pipe until this reader goes away, so its next write finds the pipe closed.
    head = proc.stderr.read(100)
    proc.stderr.close()
    out = proc.stdout.read().decode()
    assert proc.wait(120) == 1
    assert len(head) == 100 and b"Traceback" not in head
    assert '"exit_code": 1' in out and "Traceback" not in out
    outcomes = [r["outcome"] for r in _rows(report)]
    assert outcomes == ["invalid"] * 3000


def test_a_closable_pipe_passes_other_errors_on_and_is_quiet_after_a_closed_pipe() -> None:
    class Failing(io.StringIO):
        def __init__(self, exc: OSError) -> None:
            super().__init__()
            self.exc = exc

        def write(self, text: str) -> int:
            raise self.exc

    full = ClosablePipe(Failing(OSError(errno.ENOSPC, "No space left on device")))
    with pytest.raises(OSError, match="No space"):
        full.write("x")
    gone = ClosablePipe(Failing(BrokenPipeError(errno.EPIPE, "Broken pipe")))
    assert gone.write("abc") == 3 and gone.closed_early
    gone.write("more")  # not tried again
    gone.flush()
    assert gone.getvalue() == ""  # anything else is the wrapped stream's own
    assert is_closed_pipe(BrokenPipeError())
    assert is_closed_pipe(OSError(errno.EINVAL, "x")) == (sys.platform == "win32")


def test_the_standard_streams_are_as_they_were_afterwards() -> None:
    before = sys.stdout, sys.stderr
    with closable_standard_streams():
        assert isinstance(sys.stdout, ClosablePipe) and isinstance(sys.stderr, ClosablePipe)
        assert sys.stdout.stream is before[0]
    assert (sys.stdout, sys.stderr) == before


# --- a console that cannot show a character (issue 14) ---------------------------------------


@pytest.mark.parametrize("dry_run", [True, False])
def test_a_console_that_cannot_show_a_name_never_stops_a_run(tmp_path: Path, dry_run: bool) -> None:
    """A Windows console in cp1252 and names in Hebrew and Vietnamese: escapes, no error."""
    sheet = tmp_path / "names.csv"
    sheet.write_text(
        "uid,first_name,email\nAE.17934,עדי,bad@\nB4.B5F21,Tiếng Việt,ok@example.com\n",
        encoding="utf-8",
    )
    args = ["run", str(sheet), "--report", str(tmp_path / "out.csv")]
    args += ["--dry-run"] if dry_run else ["--sandbox", "--state-dir", str(tmp_path / "s")]
    code, out, err = _run(args, tmp_path, env={"PYTHONIOENCODING": "cp1252"})
    assert code == 1, err  # the invalid email: the run's own status
    assert "unexpected error" not in err and "Traceback" not in err
    if dry_run:
        assert '"first_name": "Ti\\u1ebfng Vi\\u1ec7t"' in out
    assert "1 invalid" in out
    with (tmp_path / "out.csv").open(encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["first_name"] for r in rows] == ["עדי", "Tiếng Việt"]  # the report keeps them


def test_a_stream_without_reconfigure_degrades_too() -> None:
    raw = io.BytesIO()
    console = io.TextIOWrapper(raw, encoding="cp1252")
    pipe = ClosablePipe(console)
    assert pipe.write("עדי ok\n") == len("\\u05e2\\u05d3\\u05d9 ok\n")
    console.flush()
    assert raw.getvalue() == b"\\u05e2\\u05d3\\u05d9 ok\n"
