"""Shared helpers: drive the command line in a subprocess, as a user or cron would."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# Shared 2-core machines run slow at times: time limits on data generation would make the
# property tests flaky without making them any stricter.
settings.register_profile(
    "bulk-update", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("bulk-update")

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data"


@pytest.fixture(autouse=True, scope="session")
def private_state_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """No test writes into the user's own state dir (`~/.local/state/bulk-update`): the
    default state dir of every run a test starts, in process or not, is a temporary one."""
    before = os.environ.get("XDG_STATE_HOME")
    home = tmp_path_factory.mktemp("xdg-state")
    os.environ["XDG_STATE_HOME"] = str(home)
    try:
        yield home
    finally:
        if before is None:
            os.environ.pop("XDG_STATE_HOME", None)
        else:
            os.environ["XDG_STATE_HOME"] = before


#: The variables that send a run through a proxy (aiohttp reads them, `trust_env`).
PROXY_VARIABLES = tuple(
    name
    for base in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
    for name in (base, base.upper())
)


@pytest.fixture(autouse=True, scope="session")
def no_proxy_of_the_machine() -> Iterator[None]:
    """A machine behind a proxy must not send the tests' 127.0.0.1 requests through it: every
    run a test starts, in process or not, goes direct unless the test sets a proxy."""
    before = {name: os.environ.pop(name) for name in PROXY_VARIABLES if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(before)


def require_program(program: str, install: str) -> None:
    """Skip the test when `program` (a name on PATH, or a path) is missing, saying how to get
    it; in CI (`CI` set) fail instead: there every test runs (.ci/run installs them)."""
    if shutil.which(program) or Path(program).is_file():
        return
    missing = f"{program} is not installed ({install})"
    if os.environ.get("CI"):
        pytest.fail(f"{missing}; CI runs every test", pytrace=False)
    pytest.skip(missing)


@dataclass
class CliResult:
    code: int
    out: str
    err: str


def run_cli(
    *args: str | Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 120,
) -> CliResult:
    """Run `python -m bulk_update ARGS` with a clean environment plus `env`."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("COMEET_")}
    base["PYTHONPATH"] = str(ROOT)
    base.setdefault("XDG_STATE_HOME", str(cwd or ROOT))
    if env:
        base.update(env)
    proc = subprocess.run(
        [sys.executable, "-m", "bulk_update", *map(str, args)],
        capture_output=True,
        text=True,
        env=base,
        cwd=cwd or ROOT,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)
