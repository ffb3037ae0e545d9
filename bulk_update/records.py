"""Every real run's results sheet, kept in the state dir under the run's number.

The report beside the input is the recruiter's to open, edit, move or overwrite; the record
of what was sent must outlive all that. So, once a run with a journal has written its
report, a copy is kept at `<state dir>/runs/<n>/<report name>`, where `n` is the run's
number in the journal (`bulk-update history`), readable by the owner only like every other
state file (folders 0700, file 0600). `history` and the web page's Runs list point at it.

A journal moved away starts numbering again at 1: a folder left by the old one is renamed
`<n>.earlier`, `<n>.earlier-2`... before the new run's copy goes in, so no record is lost
and none is shown under another run's number.
"""

from __future__ import annotations

import errno
import itertools
import os
import shutil
import sys
import tempfile
from contextlib import suppress
from pathlib import Path

__all__ = [
    "RUNS_FOLDER",
    "keep_report",
    "kept_folder",
    "kept_report",
    "private_folder",
    "private_temp",
    "run_folder",
    "sync_folder",
]

#: The state dir's folder of kept results sheets, one subfolder per run number.
RUNS_FOLDER = "runs"


def kept_folder(state_dir: Path, run_id: int) -> Path:
    """Where run `run_id`'s results sheet is kept (whether or not it exists)."""
    return Path(state_dir) / RUNS_FOLDER / str(run_id)


def kept_report(state_dir: Path, run_id: int) -> Path | None:
    """The kept copy of run `run_id`'s results sheet, or None (a dry run, an older run)."""
    folder = kept_folder(state_dir, run_id)
    with suppress(OSError):
        for entry in sorted(folder.iterdir()):
            if entry.is_file() and not entry.name.startswith("."):
                return entry
    return None


def keep_report(report: Path, state_dir: Path, run_id: int) -> Path:
    """Copy `report` to run `run_id`'s folder (made private) and return the copy's path.

    The copy is written under a temporary name and renamed, so `history` never points at
    half a file. Raises OSError when the state dir refuses.
    """
    folder = _fresh_folder(state_dir, run_id)
    kept = folder / report.name
    tmp = folder / f".{report.name}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as out, report.open("rb") as source:
            shutil.copyfileobj(source, out, 1 << 20)
        os.chmod(tmp, 0o600)  # a file left by an earlier attempt may have had other bits
        os.replace(tmp, kept)
    finally:
        with suppress(FileNotFoundError):
            tmp.unlink()
    return kept


def run_folder(state_dir: Path, run_id: int) -> Path:
    """Run `run_id`'s folder, made private, for a report or a backup written there directly."""
    return _fresh_folder(state_dir, run_id)


def _fresh_folder(state_dir: Path, run_id: int) -> Path:
    runs = Path(state_dir) / RUNS_FOLDER
    private_folder(runs)  # the state dir too, unless the journal made it already
    folder = kept_folder(state_dir, run_id)
    if kept_report(state_dir, run_id) is not None:
        # Left by a journal that was moved away (its numbers start again at 1).
        for n in itertools.count(1):
            earlier = runs / (f"{run_id}.earlier" if n == 1 else f"{run_id}.earlier-{n}")
            if not earlier.exists():
                folder.rename(earlier)
                break
    return private_folder(folder)


def private_temp(path: Path) -> Path:
    """A new, empty, owner-only (0600) file beside `path`, under a name of its own, to be
    written and then moved onto `path`: two writers of one path never share a temporary."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(tmp)


def private_folder(folder: Path) -> Path:
    """`folder` (and each missing parent), created owner-only (0700), its name synced to
    disk (a run's backup goes in such folders: their names must last too)."""
    if not folder.is_dir():
        if not folder.parent.is_dir():
            private_folder(folder.parent)
        folder.mkdir(mode=0o700)
        os.chmod(folder, 0o700)  # mkdir's mode is filtered by the umask
        sync_folder(folder.parent)
    return folder


#: What a file system that cannot sync a folder answers (it syncs files only).
_NO_FOLDER_SYNC = frozenset(
    e for e in (errno.EINVAL, errno.ENOTSUP, getattr(errno, "EOPNOTSUPP", None)) if e is not None
)


def sync_folder(folder: Path) -> None:
    """Make the names just created in `folder` (a file, a folder) survive a power cut.

    A file's own fsync makes its bytes durable, not its name: on POSIX the folder holding
    it is fsynced as well. Windows cannot open a folder (os.open fails) and NTFS journals
    its names itself: nothing to do there.
    """
    if sys.platform == "win32":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        # Some network and FUSE file systems cannot sync a folder (EINVAL, ENOTSUP): the
        # file's own fsync is what they offer; a backup is not refused for it.
        if exc.errno not in _NO_FOLDER_SYNC:
            raise
    finally:
        os.close(fd)
