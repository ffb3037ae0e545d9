"""The page's handlers for undoing a run: its undo sheet to download, and "Undo this run",
which takes the undo sheet through the same preview and confirm steps as any sheet.

A run of this page has an undo sheet of its own (a name no other run shares, beside its
results sheet). A run in the journal (from the command line, or from the page before a
restart) is undone from its own backup, never from the file its run wrote beside its input:
every run of one sheet writes that same file, so it holds the last one's. Its undo sheet is
written from the backup into the run's folder of the state dir (`runs/<n>/undo/`), again
only when the backup changed since. Only runs sent to the page's own account (base URL and
`[journal] scope`) that have ended are offered: an undo goes where its run went, and a run
still sending has more to back up.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from aiohttp import web

from ..backup import read_backup
from ..errors import BulkUpdateError
from ..journal import RunRecord
from ..records import kept_folder, private_folder
from ..undo import UNDO_WORKSHEET, backup_path, undo_bundle, write_undo_sheet
from .app import download, error_page
from .runs import WebRun
from .state import STATE, session_of
from .views import read_upload

__all__ = ["add_routes", "journal_undoable"]

#: Undo sheets and their zips are written by worker threads: one at a time, so that two
#: requests for the same run never write the same file at once.
_WRITING = threading.Lock()


def _page_run_undo(request: web.Request) -> tuple[WebRun, Path]:
    """The page's run of the URL and its undo sheet (the run's own, never a path from the
    URL); 404 when it kept none."""
    run = request.app[STATE].runs.get(request.match_info["run"])
    undo = run.undo_sheet if run is not None else None
    if run is None or undo is None:
        raise web.HTTPNotFound()
    return run, undo


def journal_undoable(request: web.Request, records: list[RunRecord]) -> set[int]:
    """The numbers of the journal's runs the page offers to undo (blocking): real runs that
    ended, sent to the page's own account, that kept a backup."""
    settings = request.app[STATE].settings
    return {
        r.id
        for r in records
        if not r.dry_run
        and r.status != "running"
        and r.of_account(settings.base_url, settings.journal_scope)
        and backup_path(settings.state_dir, r.id).is_file()
    }


def _journal_undo_sheet(state_dir: Path, record: RunRecord) -> Path:
    """Run `record`'s undo sheet, written from its own backup into its folder of the state
    dir (blocking); the one written before when the backup has not changed since."""
    backup = backup_path(state_dir, record.id)
    target = kept_folder(state_dir, record.id) / "undo" / f"{record.sheet.stem}.undo.xlsx"
    with _WRITING:
        if target.is_file() and target.stat().st_mtime_ns >= backup.stat().st_mtime_ns:
            return target
        private_folder(target.parent)
        return write_undo_sheet(read_backup(backup), target)


async def _journal_run_undo(request: web.Request) -> tuple[RunRecord, Path]:
    """The journal's run of the URL (by its number) and its undo sheet; 404 when the Runs
    list would not offer it."""
    state = request.app[STATE]
    wanted = int(request.match_info["number"])
    records, _ = await asyncio.to_thread(state.journal_runs)
    records = [r for r in records if r.id == wanted]
    if wanted not in await asyncio.to_thread(journal_undoable, request, records):
        raise web.HTTPNotFound()
    undo = await asyncio.to_thread(_journal_undo_sheet, state.settings.state_dir, records[0])
    return records[0], undo


def _bundled(undo: Path, name: str) -> Path:
    with _WRITING:
        return undo_bundle(undo, name)


async def _download(undo: Path, run_name: str) -> web.StreamResponse:
    """An undo sheet as `<stem>.undo.xlsx`; a .zip of it and its resumes' folder when it
    puts resumes back (undo.undo_bundle)."""
    name = f"{Path(run_name).stem}.undo{undo.suffix}"
    bundle = await asyncio.to_thread(_bundled, undo, name)
    return download(bundle, name if bundle == undo else f"{Path(name).stem}.zip")


async def _preview(request: web.Request, undo: Path, run_name: str) -> web.Response:
    """The undo sheet taken as a new upload, on to its preview: the same steps as any sheet
    (nothing is sent before its confirm), its resumes found beside it."""
    state = request.app[STATE]
    name = f"{Path(run_name).stem}.undo{undo.suffix}"
    # On the event loop, as every change to the uploads (the copy is of a sheet, not files).
    the_upload = state.uploads.adopt(session_of(request).token, undo, name, undo_of=run_name)
    if undo.suffix.lower() == ".xlsx":  # its second worksheet lists what it cannot put back
        the_upload.worksheet = UNDO_WORKSHEET
    return await read_upload(request, the_upload)


def _cannot(request: web.Request, exc: BulkUpdateError | OSError) -> web.Response:
    """The page's answer when an undo sheet cannot be written or read."""
    if isinstance(exc, BulkUpdateError):
        message = exc.message
    else:
        message = f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
    return error_page(
        request,
        500,
        "The undo sheet could not be made",
        message,
        "check that the state dir (and the folder of the run's results) can be written to, "
        "then try again; `bulk-update undo-sheet --run N --undo-sheet FILE` writes it from "
        "the command line",
    )


async def page_run_undo_sheet(request: web.Request) -> web.StreamResponse:
    """The undo sheet of a run of this page that kept one."""
    run, undo = _page_run_undo(request)
    try:
        return await _download(undo, run.name)
    except (BulkUpdateError, OSError) as exc:
        return _cannot(request, exc)


async def undo_page_run(request: web.Request) -> web.Response:
    """Undo a run of this page: its undo sheet's preview."""
    run, undo = _page_run_undo(request)
    try:
        return await _preview(request, undo, run.name)
    except OSError as exc:
        return _cannot(request, exc)


async def journal_run_undo_sheet(request: web.Request) -> web.StreamResponse:
    """The undo sheet of a run in the journal (from this page or the command line)."""
    try:
        record, undo = await _journal_run_undo(request)
        return await _download(undo, record.sheet.name)
    except (BulkUpdateError, OSError) as exc:
        return _cannot(request, exc)


async def undo_journal_run(request: web.Request) -> web.Response:
    """Undo a run in the journal: its undo sheet's preview."""
    try:
        record, undo = await _journal_run_undo(request)
        return await _preview(request, undo, record.sheet.name)
    except (BulkUpdateError, OSError) as exc:
        return _cannot(request, exc)


def add_routes(app: web.Application) -> None:
    """Register the pages of undoing a run."""
    app.router.add_get("/runs/{run}/undo", page_run_undo_sheet)
    app.router.add_post("/runs/{run}/undo", undo_page_run)
    app.router.add_get(r"/journal/{number:\d+}/undo", journal_run_undo_sheet)
    app.router.add_post(r"/journal/{number:\d+}/undo", undo_journal_run)
