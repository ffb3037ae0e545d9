"""The run lock: one run at a time per state dir and API key (contract section 6).

A second run sharing them exits 2, saying which process holds the lock; a lock whose holder
died is taken over, and the run says so.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import time
from pathlib import Path
from typing import Self

import filelock

from ..errors import LockError
from .statedir import private_dir, unusable

__all__ = ["RunLock", "process_alive"]


def process_alive(pid: int) -> bool:
    """True when a process with this pid exists (possibly owned by another user)."""
    if pid <= 0:
        return False  # os.kill(0, ...) would signal our own process group
    if sys.platform == "win32":
        return _windows_process_alive(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists; we may just not signal it
    return True


if sys.platform == "win32":

    def _windows_process_alive(pid: int) -> bool:
        # On Windows os.kill(pid, 0) would end the process (TerminateProcess): ask the system.
        import ctypes

        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
        handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return ctypes.get_last_error() == 5  # ERROR_ACCESS_DENIED: it exists, not ours
        try:
            code = ctypes.c_ulong()
            if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
                return True
            return code.value == 259  # STILL_ACTIVE
        finally:
            kernel32.CloseHandle(handle)


class RunLock:
    """One run at a time per state dir and API key.

    A `filelock.FileLock` on `state_dir/run-<sha256(key)[:16]>.lock` (an advisory `flock` on
    Linux and macOS, `LockFileEx` on Windows: the OS drops it when the holder dies, however it
    dies). The holder's pid goes into `run-<…>.pid` beside it, since Windows lets no other
    process read a locked file; a stale lock is only a pid file naming a dead process.
    """

    def __init__(self, state_dir: Path, *, api_key: str) -> None:
        self.state_dir = Path(state_dir)
        name = f"run-{hashlib.sha256(api_key.encode('utf-8')).hexdigest()[:16]}"
        self.path = self.state_dir / f"{name}.lock"
        self.pid_path = self.state_dir / f"{name}.pid"
        self.took_over: str | None = None
        # Not thread-local: the web page may take the lock in one thread and drop it in another.
        self._lock = filelock.FileLock(self.path, timeout=0, mode=0o600, thread_local=False)
        self._held = False

    def acquire(self) -> str | None:
        """Take the lock, or raise LockError naming the process that holds it.

        Returns a message when the lock was left behind by a process no longer running.
        """
        if self._held:
            raise RuntimeError("this RunLock is already held")
        private_dir(self.state_dir)
        try:
            self._lock.acquire()
        except filelock.Timeout:
            raise _lock_error(_holder_pid(self.pid_path, patient=True)) from None
        except OSError as exc:
            raise unusable(self.state_dir, exc) from None
        try:
            previous = _holder_pid(self.pid_path)
            _write_pid(self.pid_path, f"{os.getpid()}\n")
        except OSError as exc:
            self._lock.release()
            raise unusable(self.state_dir, exc) from None
        except BaseException:
            self._lock.release()
            raise
        self._held = True
        if previous is not None and previous != os.getpid() and not process_alive(previous):
            return f"took over the lock left by process {previous}, which is no longer running"
        return None

    def release(self) -> None:
        """Let the next run in (empties the pid file, so it names no one)."""
        if not self._held:
            return
        self._held = False
        try:
            with contextlib.suppress(OSError):
                _write_pid(self.pid_path, "")  # while still locked: nobody reads it half-cleared
        finally:
            self._lock.release()

    def __enter__(self) -> Self:
        self.took_over = self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def _write_pid(path: Path, text: str) -> None:
    # O_BINARY: Windows would otherwise open in text mode; a no-op elsewhere.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0), 0o600)
    try:
        os.write(fd, text.encode("ascii"))  # a few bytes: written whole
    finally:
        os.close(fd)


def _holder_pid(path: Path, *, patient: bool = False) -> int | None:
    # The holder writes its pid just after locking: a reader may catch the file empty for
    # an instant, so when asked, look again a few times before giving up.
    for attempt in range(5 if patient else 1):
        try:
            text = path.read_bytes()[:32].decode("ascii", "replace").strip()
        except OSError:  # not there (yet), or being rewritten on Windows
            text = ""
        if text.isdigit():
            return int(text)
        if attempt < 4 and patient:
            time.sleep(0.01)
    return None


def _lock_error(pid: int | None) -> LockError:
    if pid is None:
        return LockError(
            "another run is using this state dir and API key",
            fix="wait for it to finish; use another --state-dir to run in parallel",
        )
    return LockError(
        f"another run (process {pid}) is using this state dir and API key",
        fix=f"wait for it to finish, or stop it (kill {pid}); "
        "use another --state-dir to run in parallel",
    )
