"""Shared helpers: drive the command line as a user or cron would, and keep every test's
state and network private."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import io
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Mapping
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


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto`: one worker more than the cores. A good part of the suite waits on real
    time (a sandbox's rate window, a child process starting, a browser): measured on two
    cores, three workers take 80 s where two take 90-94 s, with every test as strict."""
    return (os.cpu_count() or 1) + 1


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


#: Settings under which a retry waits nothing. For runs whose rows are retried (the demo's
#: seed has a uid that answers 503 to every attempt: six attempts, about 8 s of backoff)
#: where how long a retry waits is not what the test is about: test_pool holds the backoff
#: to a fake sleep, and test_e2e's faults run retries through the real clock.
NO_BACKOFF = "[limits]\nretry_base_s = 0\n"


def without_backoff(folder: Path) -> Path:
    """Write `folder/bulk_update.toml` (NO_BACKOFF), which a run started in `folder` reads
    as its own (`./bulk_update.toml`): the command line stays the one a user types."""
    path = folder / "bulk_update.toml"
    path.write_text(NO_BACKOFF, encoding="utf-8")
    return path


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
    """Run the command line, `bulk-update ARGS`, as a child `python -m bulk_update` would run:
    a clean environment (no COMEET_*) plus `env`, `cwd` (else the project) as the current
    folder, standard input empty, standard output and error captured.

    It runs in this process (`bulk_update.cli.main`), which spares the suite an interpreter
    and its imports per call (most of the CPU time of a command-line test). The environment,
    current folder, standard streams, the package's logger and the signal handlers are as
    before afterwards, what a real run froze for the garbage collector is let go again, and
    an exception that escapes `main` is printed as the interpreter would, exit status 1.
    What needs a process of its own (signals, two runs at once, pipes, the interpreter's
    exit) starts one itself (`run_cli_process`, or `subprocess` directly). From a thread
    other than the main one, or while an event loop runs (an async test), the run goes to a
    child process (`timeout` only applies there): `main` runs its own loop and takes the
    signal handlers.
    """
    if threading.current_thread() is not threading.main_thread() or _loop_running():
        return run_cli_process(*args, env=env, cwd=cwd, timeout=timeout)
    environ = _child_environment(env, cwd)
    with _stdio_captured() as (out, err), _process_state(environ, cwd or ROOT):
        code = _main_exit_status([str(a) for a in args])
    return CliResult(code, out(), err())


def run_cli_process(
    *args: str | Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 120,
) -> CliResult:
    """Run `python -m bulk_update ARGS` in a child process, environment as for `run_cli`."""
    proc = subprocess.run(
        [sys.executable, "-m", "bulk_update", *map(str, args)],
        capture_output=True,
        text=True,
        env=_child_environment(env, cwd),
        cwd=cwd or ROOT,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def _child_environment(env: Mapping[str, str] | None, cwd: Path | None) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("COMEET_")}
    base["PYTHONPATH"] = str(ROOT)
    base.setdefault("XDG_STATE_HOME", str(cwd or ROOT))
    if env:
        base.update(env)
    return base


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _main_exit_status(argv: list[str]) -> int:
    """`main(argv)`'s exit status as the interpreter would give it (`raise SystemExit(...)`)."""
    from bulk_update.cli import main

    try:
        return main(argv)
    except SystemExit as exc:  # argparse: --help, --version, a usage error
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)
        return 1
    except Exception:
        traceback.print_exc()
        return 1


@contextlib.contextmanager
def _stdio_captured() -> Iterator[tuple[Callable[[], str], Callable[[], str]]]:
    """sys.stdin empty, sys.stdout and sys.stderr into memory, as UTF-8 text read back with
    universal newlines (as `subprocess.run(text=True)` reads a child's)."""
    saved = sys.stdin, sys.stdout, sys.stderr
    buffers = io.BytesIO(), io.BytesIO()
    out, err = (io.TextIOWrapper(b, encoding="utf-8", newline="\n") for b in buffers)

    def text(wrapper: io.TextIOWrapper, buffer: io.BytesIO) -> Callable[[], str]:
        def read() -> str:
            if not wrapper.closed:
                wrapper.flush()
            data = buffer.getvalue().decode("utf-8", "replace")
            return data.replace("\r\n", "\n").replace("\r", "\n")

        return read

    with open(os.devnull, encoding="utf-8") as stdin:
        sys.stdin, sys.stdout, sys.stderr = stdin, out, err
        try:
            yield text(out, buffers[0]), text(err, buffers[1])
        finally:
            sys.stdin, sys.stdout, sys.stderr = saved


@contextlib.contextmanager
def _process_state(environ: Mapping[str, str], cwd: Path) -> Iterator[None]:
    """`environ` and `cwd` for the duration; what a run may change in its process put back."""
    saved_environ = dict(os.environ)
    saved_cwd = os.getcwd()
    logger = logging.getLogger("bulk_update")
    saved_logger = logger.handlers[:], logger.level, logger.propagate
    saved_signals = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    os.environ.clear()
    os.environ.update(environ)
    os.chdir(cwd)
    try:
        yield
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_environ)
        logger.handlers[:] = saved_logger[0]
        logger.setLevel(saved_logger[1])
        logger.propagate = saved_logger[2]
        for sig, handler in saved_signals.items():
            signal.signal(sig, handler)
        gc.unfreeze()  # a real run freezes what it holds (cli._send); let it go again
