"""The page's handlers for runs: live progress, stopping, results sheets, the runs list.

A run is started from the preview (views.confirm); from then on it is `state.runs`' (runs.py).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from aiohttp import web

from ..errors import CannotStartError
from ..journal import RunRecord, read_runs
from ..undo import UNDO_WORKSHEET, backup_path, undo_bundle, undo_sheet_of_run
from ..undo import run_undo_sheet as stored_undo_sheet
from .app import download, redirect, render
from .runs import WebRun
from .state import STATE, session_of
from .views import read_upload

__all__ = ["add_routes"]

SHOWN_PROBLEMS = 200
_REPORT_SUFFIXES = (".xlsx", ".csv")


def _run_of(request: web.Request) -> WebRun:
    run = request.app[STATE].runs.get(request.match_info["run"])
    if run is None:
        raise web.HTTPNotFound()
    return run


async def run_page(request: web.Request) -> web.Response:
    """A run's live progress; once it has ended, its results."""
    run = _run_of(request)
    progress = run.progress()
    summary = run.summary
    problems = [r for r in summary.results if r.outcome.is_problem] if summary else []
    return render(
        request,
        "run.html",
        nav="runs",
        step=5 if progress.over else 4,
        run=run,
        p=progress,
        problems=problems[:SHOWN_PROBLEMS],
        problems_total=len(problems),
        interval_ms=int(request.app[STATE].config.sse_interval_s * 1000),
    )


async def run_events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: a `progress` event at each change, `end` when the run is over."""
    state = request.app[STATE]
    run = _run_of(request)
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no"}
    )
    await response.prepare(request)
    last, quiet = -1, 0.0
    try:
        while not state.closing:
            progress = run.progress()
            if progress.version != last:
                last, quiet = progress.version, 0.0
                data = json.dumps(progress.as_event())
                await response.write(f"event: progress\ndata: {data}\n\n".encode())
            if progress.over:
                await response.write(b"event: end\ndata: {}\n\n")
                break
            if quiet >= 15:  # a comment now and then keeps proxies from closing the stream
                await response.write(b": still sending\n\n")
                quiet = 0.0
            await asyncio.sleep(state.config.sse_interval_s)
            quiet += state.config.sse_interval_s
    except (ConnectionResetError, ConnectionError):
        pass  # the page was closed: the run goes on
    return response


async def run_report(request: web.Request) -> web.StreamResponse:
    """The results sheet of a run of this page."""
    run = _run_of(request)
    if not run.report_file.is_file():
        raise web.HTTPNotFound()
    return download(run.report_file, f"{Path(run.name).stem}.results{run.report_file.suffix}")


def _undo_sheet_of(request: web.Request) -> tuple[WebRun, Path]:
    """The run of the URL and its undo sheet (the run's own path, never one from the URL);
    404 when it kept none."""
    run = _run_of(request)
    undo = run.summary.undo_sheet if run.summary else None
    if undo is None or not undo.is_file():
        raise web.HTTPNotFound()
    return run, undo


async def _download_undo(undo: Path, stem: str) -> web.StreamResponse:
    """An undo sheet as `<stem>.undo.xlsx`; a .zip of it and its resumes' folder when it
    puts resumes back (undo.undo_bundle)."""
    name = f"{stem}.undo{undo.suffix}"
    bundle = await asyncio.to_thread(undo_bundle, undo, name)
    return download(bundle, name if bundle == undo else f"{Path(name).stem}.zip")


async def _undo_upload(request: web.Request, undo: Path, run_name: str) -> web.Response:
    """ "Undo this run": the undo sheet taken as a new upload, on to its preview: the same
    steps as any sheet (nothing is sent before its confirm), its resumes found beside it."""
    state = request.app[STATE]
    name = f"{Path(run_name).stem}.undo{undo.suffix}"
    token = session_of(request).token
    the_upload = await asyncio.to_thread(state.uploads.adopt, token, undo, name, undo_of=run_name)
    if undo.suffix.lower() == ".xlsx":  # its second worksheet lists what it cannot put back
        the_upload.worksheet = UNDO_WORKSHEET
    return await read_upload(request, the_upload)


async def run_undo_sheet(request: web.Request) -> web.StreamResponse:
    """The undo sheet of a run of this page that kept one."""
    run, undo = _undo_sheet_of(request)
    return await _download_undo(undo, Path(run.name).stem)


async def undo_this_run(request: web.Request) -> web.Response:
    """Undo a run of this page: its undo sheet's preview (`_undo_upload`)."""
    run, undo = _undo_sheet_of(request)
    return await _undo_upload(request, undo, run.name)


async def stop_run(request: web.Request) -> web.Response:
    """Stop a run gracefully: rows not sent yet are `not_sent` in its results sheet."""
    run = _run_of(request)
    run.request_stop()
    return redirect(f"/runs/{run.id}")


def _journal_runs(request: web.Request) -> tuple[list[RunRecord], str | None]:
    state = request.app[STATE]
    if not state.config.use_journal:
        return [], None
    try:
        return read_runs(state.settings.state_dir, limit=30), None
    except CannotStartError as exc:
        return [], str(exc)


async def runs(request: web.Request) -> web.Response:
    """This page's runs, then the journal's recent runs with their reports."""
    state = request.app[STATE]
    mine = state.runs.recent()
    records, problem = await asyncio.to_thread(_journal_runs, request)
    shown = {str(r.report_path.resolve()) for r in mine} | {
        str(s.report_path.resolve()) for r in mine if (s := r.summary) and s.report_path
    }
    records = [r for r in records if r.report is None or str(r.report) not in shown]
    undo_sheets = await asyncio.to_thread(_journal_undo_sheets, request, records)
    return render(
        request,
        "runs.html",
        nav="runs",
        mine=[(r, r.progress()) for r in mine],
        records=records,
        undo_sheets=undo_sheets,
        journal_problem=problem,
        use_journal=state.config.use_journal,
        state_dir=state.settings.state_dir,
    )


async def journal_report(request: web.Request) -> web.StreamResponse:
    """The results sheet of a run in the journal (by its id, never by a path from the URL):
    the copy kept in the state dir when there is one, the record of what was sent."""
    wanted = int(request.match_info["number"])
    records, _ = await asyncio.to_thread(_journal_runs, request)
    for record in records:
        report = record.kept_report or record.report
        if (
            record.id == wanted
            and report is not None
            and report.suffix.lower() in _REPORT_SUFFIXES
            and report.is_file()
        ):
            return download(report, report.name)
    raise web.HTTPNotFound()


def _journal_undo_sheets(request: web.Request, records: list[RunRecord]) -> dict[int, Path | None]:
    """The undo sheets of the journal's real runs that kept a backup, by run number (None:
    not written yet, a run killed before its end, or the sheet deleted since: written from
    the backup when asked for). Runs sent to the page's own Comeet (base URL) only, so that
    an undo goes where its run went."""
    settings = request.app[STATE].settings
    found: dict[int, Path | None] = {}
    for record in records:
        if record.dry_run or record.base_url != settings.base_url:
            continue
        undo = stored_undo_sheet(settings.state_dir, record.id)
        if undo is not None and undo.is_file():
            found[record.id] = undo
        elif backup_path(settings.state_dir, record.id).is_file():
            found[record.id] = None
    return found


async def _journal_undo_of(request: web.Request) -> tuple[RunRecord, Path]:
    """The journal's run of the URL and its undo sheet (by its number, never a path from the
    URL), written from its backup if need be; 404 when the Runs list would not offer it."""
    state = request.app[STATE]
    wanted = int(request.match_info["number"])
    records, _ = await asyncio.to_thread(_journal_runs, request)
    records = [r for r in records if r.id == wanted]
    sheets = await asyncio.to_thread(_journal_undo_sheets, request, records)
    if wanted not in sheets:
        raise web.HTTPNotFound()
    undo = sheets[wanted]
    if undo is None:  # as `bulk-update undo-sheet --run N`: where the run meant to write it
        undo = await asyncio.to_thread(undo_sheet_of_run, state.settings.state_dir, wanted)
    return records[0], undo


async def journal_undo_sheet(request: web.Request) -> web.StreamResponse:
    """The undo sheet of a run in the journal (from this page or the command line)."""
    record, undo = await _journal_undo_of(request)
    return await _download_undo(undo, record.sheet.stem)


async def undo_journal_run(request: web.Request) -> web.Response:
    """Undo a run in the journal: its undo sheet's preview (`_undo_upload`)."""
    record, undo = await _journal_undo_of(request)
    return await _undo_upload(request, undo, record.sheet.name)


def add_routes(app: web.Application) -> None:
    """Register the pages of runs."""
    app.router.add_get("/runs", runs, name="runs")
    app.router.add_get("/runs/{run}", run_page)
    app.router.add_get("/runs/{run}/events", run_events)
    app.router.add_get("/runs/{run}/report", run_report)
    app.router.add_post("/runs/{run}/stop", stop_run)
    app.router.add_get("/runs/{run}/undo", run_undo_sheet)
    app.router.add_post("/runs/{run}/undo", undo_this_run)
    app.router.add_get(r"/journal/{number:\d+}/report", journal_report)
    app.router.add_get(r"/journal/{number:\d+}/undo", journal_undo_sheet)
    app.router.add_post(r"/journal/{number:\d+}/undo", undo_journal_run)
