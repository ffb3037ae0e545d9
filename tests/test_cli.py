"""The command line: help, exit statuses, output formats, the sandbox command."""

from __future__ import annotations

import argparse
import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bulk_update import __version__
from bulk_update.cli import build_parser, summary_line
from bulk_update.models import Outcome, RowResult, RunSummary
from bulk_update.output import ProgressDisplay
from bulk_update.sandbox import DEMO_API_KEY, DEMO_SECRET, SandboxState, ThreadedSandbox

from .conftest import ROOT, run_cli

CREDS = {"COMEET_API_KEY": DEMO_API_KEY, "COMEET_SECRET": DEMO_SECRET}


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_every_command_and_option_has_help_and_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    commands = _subparsers(build_parser())
    assert set(commands) == {"run", "history", "sandbox", "serve", "undo-sheet"}
    for name, sub in commands.items():
        assert sub.description, name
        assert f"bulk-update {name}" in readme
        for action in sub._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, (name, action.option_strings)
                long = max(action.option_strings, key=len)
                assert long in readme, f"{long} is not documented in the README"


def test_version_and_help() -> None:
    res = run_cli("--version")
    assert res.code == 0 and res.out.strip() == f"bulk-update {__version__}"
    res = run_cli("run", "--help")
    assert res.code == 0
    for status in ("0  every row", "1  the run finished", "2  the run could not", "3  the run"):
        assert status in res.out
    assert "COMEET_API_KEY" in res.out
    res = run_cli()
    assert res.code == 2 and "run" in res.out


def test_usage_errors_exit_2() -> None:
    assert run_cli("run").code == 2
    assert run_cli("run", "x.csv", "--log-format", "xml").code == 2


def test_summary_line_counts_every_outcome(tmp_path: Path) -> None:
    summary = RunSummary(
        counts={Outcome.UPDATED: 3, Outcome.INVALID: 1},
        duration_s=2.04,
        report_path=tmp_path / "r.xlsx",
    )
    line = summary_line(summary)
    assert line.startswith("Done in 2.0s: 3 updated, 0 unchanged, 0 skipped")
    for outcome in Outcome:
        assert re.search(rf"\d+ {outcome.value}\b", line)
    assert line.endswith(f"report: {tmp_path / 'r.xlsx'}")


def test_progress_logs_every_tenth_without_a_terminal(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    progress = ProgressDisplay(100, bar=False, clock=lambda: now[0])
    with caplog.at_level("INFO", logger="bulk_update"):
        for i in range(100):
            now[0] = i * 0.1
            progress.update(RowResult(i + 2, f"AE.{i}", Outcome.UPDATED))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 10
    assert lines[0].startswith("10/100 rows done (10%)")
    assert lines[-1].startswith("100/100 rows done (100%)")


def test_progress_logs_every_minute_on_a_slow_run(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    progress = ProgressDisplay(1000, bar=False, clock=lambda: now[0])
    with caplog.at_level("INFO", logger="bulk_update"):
        for i in range(30):
            now[0] = i * 30.0  # one row every 30 s: under 10% in 15 minutes
            progress.update(RowResult(i + 2, f"AE.{i}", Outcome.UPDATED))
    assert 13 <= len(caplog.records) <= 15


def _sheet(tmp_path: Path) -> Path:
    path = tmp_path / "s.csv"
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerows(
            [["uid", "email"], ["AE.1", "a@example.com"], ["AE.2", "bad"], ["AE.3", "c@x.io"]]
        )
    return path


def test_a_run_tunes_the_garbage_collector_and_freezes_the_plan_before_sending(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gc

    from bulk_update import cli

    state = SandboxState(candidates={"AE.1": {}, "AE.3": {}})
    sent_before_freeze: list[int] = []
    monkeypatch.setattr(gc, "freeze", lambda: sent_before_freeze.append(len(state.requests)))
    thresholds: list[tuple[int, ...]] = []
    monkeypatch.setattr(gc, "set_threshold", lambda *t: thresholds.append(t))
    unfrozen: list[bool] = []
    monkeypatch.setattr(gc, "unfreeze", lambda: unfrozen.append(True))
    for name, value in CREDS.items():
        monkeypatch.setenv(name, value)
    with ThreadedSandbox(state) as sb:
        args = ["run", str(_sheet(tmp_path)), "--base-url", sb.base_url, "--quiet"]
        args += ["--state-dir", str(tmp_path / "state"), "--report", str(tmp_path / "r.csv")]
        assert cli.main(args) == 1  # AE.2's e-mail is invalid
    assert sent_before_freeze == [0]
    # The young generation collected less often during the run, as it was afterwards.
    assert thresholds == [(200_000, 30, 30), gc.get_threshold()] and unfrozen == [True]
    assert len(state.requests) == 2


def test_json_log_format(tmp_path: Path) -> None:
    state = SandboxState(candidates={"AE.1": {}, "AE.3": {}})
    with ThreadedSandbox(state) as sb:
        res = run_cli(
            "run",
            _sheet(tmp_path),
            "--base-url",
            sb.base_url,
            "--log-format",
            "json",
            env=CREDS,
            cwd=tmp_path,
        )
    assert res.code == 1
    summary = json.loads(res.out.strip().splitlines()[-1])
    assert summary["event"] == "summary"
    assert summary["counts"]["updated"] == 2 and summary["counts"]["invalid"] == 1
    assert summary["exit_code"] == 1
    events = [json.loads(line) for line in res.err.strip().splitlines()]
    assert {"planned", "progress", "row_problem"} <= {e["event"] for e in events}
    problem = next(e for e in events if e["event"] == "row_problem")
    assert problem["row"] == 3 and problem["outcome"] == "invalid"


def test_quiet_prints_only_problems_and_the_summary(tmp_path: Path) -> None:
    state = SandboxState(candidates={"AE.1": {}, "AE.3": {}})
    with ThreadedSandbox(state) as sb:
        res = run_cli(
            "run",
            _sheet(tmp_path),
            "--base-url",
            sb.base_url,
            "--quiet",
            env=CREDS,
            cwd=tmp_path,
        )
    assert res.code == 1
    assert "INFO" not in res.err
    assert "row 3 (uid AE.2): invalid" in res.err
    assert res.out.strip().startswith("Done in")


def test_configuration_problems_exit_2_naming_the_key(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[limits]\nconcurency = 3\n")
    res = run_cli("run", _sheet(tmp_path), "--config", cfg, "--dry-run", cwd=tmp_path)
    assert res.code == 2 and "limits.concurency: unknown key" in res.err
    res = run_cli("run", _sheet(tmp_path), "--rate", "fast", "--dry-run", cwd=tmp_path)
    assert res.code == 2 and "N/SECONDS" in res.err
    res = run_cli(
        "run",
        _sheet(tmp_path),
        "--base-url",
        "http://api.example.com",
        "--dry-run",
        cwd=tmp_path,
    )
    assert res.code == 2 and "https" in res.err


def test_unreadable_input_exits_2_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "s.xlsx"
    bad.write_bytes(b"not a workbook at all")
    res = run_cli("run", bad, "--dry-run", cwd=tmp_path)
    assert res.code == 2 and "Traceback" not in res.err and "s.xlsx" in res.err
    res = run_cli("run", tmp_path / "missing.csv", "--dry-run", cwd=tmp_path)
    assert res.code == 2 and "missing.csv" in res.err


def test_sandbox_command_serves_and_prints_credentials() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "bulk_update", "sandbox", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}" in first
        lines = [proc.stdout.readline() for _ in range(3)]
        assert any(DEMO_API_KEY in line for line in lines)
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_sandbox/stats") as answer:
            assert json.load(answer)["requests"] == 0
    finally:
        proc.terminate()
        proc.wait(10)


def test_dry_run_preview_sums_up_file_contents() -> None:
    import base64

    from bulk_update.patch import files_summarised

    blob = base64.b64encode(b"x" * 1000).decode()
    body = {"resume": {"name": "cv.pdf", "file": blob}, "files": [{"name": "a", "file": blob}]}
    assert files_summarised(body) == {
        "resume": {"name": "cv.pdf", "file": "<1,000 bytes, base64>"},
        "files": [{"name": "a", "file": "<1,000 bytes, base64>"}],
    }
    assert body["resume"]["file"] == blob  # the body itself is untouched


def test_progress_bar_on_a_terminal(tmp_path: Path) -> None:
    """With standard error on a terminal, a progress bar shows rows done, rate, time left."""
    import os
    import pty

    main, secondary = pty.openpty()
    state = SandboxState(candidates={"AE.1": {}, "AE.3": {}})
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMEET_")}
    # A state dir of its own: never the user's (~/.local/state), which may hold anything.
    env.update(CREDS, PYTHONPATH=str(ROOT), COLUMNS="120", TERM="xterm")
    env["XDG_STATE_HOME"] = str(tmp_path)  # not the journal of the home folder
    with ThreadedSandbox(state) as sb:
        proc = subprocess.run(
            [sys.executable, "-m", "bulk_update", "run", str(_sheet(tmp_path)),
             "--base-url", sb.base_url],
            stderr=secondary, stdout=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
            timeout=60,
        )  # fmt: skip
    os.close(secondary)
    screen = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:
            break
        if not chunk:
            break
        screen += chunk
    os.close(main)
    text = screen.decode("utf-8", "replace")
    assert proc.returncode == 1
    assert "sending" in text and "2/2" in text and "rows/min" in text  # the invalid row is not sent
    assert proc.stdout.strip().startswith("Done in")


def test_a_report_that_cannot_be_written_stops_before_sending(tmp_path: Path) -> None:
    state = SandboxState(candidates={"AE.1": {}, "AE.3": {}})
    with ThreadedSandbox(state) as sb:
        res = run_cli(
            "run", _sheet(tmp_path), "--base-url", sb.base_url,
            "--report", tmp_path / "no-such-folder" / "r.xlsx", env=CREDS, cwd=tmp_path,
        )  # fmt: skip
        assert res.code == 2 and "no-such-folder" in res.err
        res = run_cli(
            "run", _sheet(tmp_path), "--base-url", sb.base_url, "--report", tmp_path / "r.txt",
            env=CREDS, cwd=tmp_path,
        )  # fmt: skip
        assert res.code == 2 and ".csv" in res.err
    assert state.requests == []


# --- which config file a run read -----------------------------------------------------------


def _summary_sheet(path: Path) -> dict[str, object]:
    from openpyxl import load_workbook

    rows = load_workbook(path, read_only=True)["Summary"].iter_rows(values_only=True)
    return {str(row[0]): row[1] for row in rows if row and row[0] is not None}


@pytest.mark.parametrize("with_journal", [False, True], ids=["columnar", "journal"])
def test_every_dry_run_says_which_config_it_read(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    with_journal: bool,
) -> None:
    from bulk_update import cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("COMEET_SECRET", raising=False)
    if with_journal:  # the general path: a dry run that consults the journal
        monkeypatch.setenv("COMEET_API_KEY", DEMO_API_KEY)
    else:  # a CSV's dry run a column at a time
        monkeypatch.delenv("COMEET_API_KEY", raising=False)
    report = tmp_path / "preview.xlsx"
    args = ["run", str(_sheet(tmp_path)), "--dry-run", "--report", str(report)]
    args += ["--state-dir", str(tmp_path / "state")]
    local = tmp_path / "bulk_update.toml"
    elsewhere = tmp_path / "etc" / "night.toml"
    elsewhere.parent.mkdir()
    elsewhere.write_text('[limits]\nrate = "50/60"\n')
    for config, extra in [(None, []), (local, []), (elsewhere, ["--config", "etc/night.toml"])]:
        if config is local:
            local.write_text('[limits]\nrate = "50/60"\n')
        said = f"config: {config.resolve() if config else 'none (defaults)'}"
        assert cli.main([*args, *extra]) == 1  # AE.2's e-mail is invalid
        out, err = capsys.readouterr()
        assert said in out.splitlines(), out
        assert f"INFO {said}" in err
        assert said == f"config: {_summary_sheet(report)['config']}"
        assert cli.main([*args, *extra, "--log-format", "json"]) == 1
        out, err = capsys.readouterr()
        (event,) = [e for e in map(json.loads, err.splitlines()) if e["event"] == "config"]
        assert event["message"] == said
        assert event["config"] == (str(config.resolve()) if config else None)
        assert json.loads(out.splitlines()[-1])["config"] == event["config"]


def test_history_says_which_config_each_run_read(tmp_path: Path) -> None:
    state = SandboxState(candidates={"AE.1": {}, "AE.3": {}})
    config = tmp_path / "night.toml"
    config.write_text('[limits]\nrate = "100/1"\n')
    store = ["--state-dir", tmp_path / "state"]
    with ThreadedSandbox(state) as sb:
        for extra in (["--config", config], []):
            res = run_cli(
                "run", _sheet(tmp_path), "--base-url", sb.base_url, *store, *extra,
                env=CREDS, cwd=tmp_path,
            )  # fmt: skip
            assert res.code == 1, res.err
            said = f"config: {config.resolve() if extra else 'none (defaults)'}"
            assert f" INFO {said}\n" in res.err  # a real run's log says it too
    said = run_cli("history", *store, cwd=tmp_path)
    assert said.code == 0
    configs = [ln.strip() for ln in said.out.splitlines() if ln.strip().startswith("config:")]
    assert configs == ["config: none (defaults)", f"config: {config.resolve()}"]  # newest first
    as_json = run_cli("history", *store, "--log-format", "json", cwd=tmp_path)
    assert [json.loads(line)["config"] for line in as_json.out.splitlines()] == [
        "",
        str(config.resolve()),
    ]
