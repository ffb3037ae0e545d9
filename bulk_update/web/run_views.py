"""The page's handlers for runs: live progress, stopping, results sheets, the runs list.

A run is started from the preview (views.confirm); from then on it is `state.runs`' (runs.py).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from aiohttp import web

from .app import download, redirect, render
from .runs import WebRun
from .state import STATE
from .undo_views import journal_undoable

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


async def stop_run(request: web.Request) -> web.Response:
    """Stop a run gracefully: rows not sent yet are `not_sent` in its results sheet."""
    run = _run_of(request)
    run.request_stop()
    return redirect(f"/runs/{run.id}")


async def runs(request: web.Request) -> web.Response:
    """This page's runs, then the journal's recent runs with their reports."""
    state = request.app[STATE]
    mine = state.runs.recent()
    records, problem = await asyncio.to_thread(request.app[STATE].journal_runs)
    shown = {str(r.report_path.resolve()) for r in mine} | {
        str(s.report_path.resolve()) for r in mine if (s := r.summary) and s.report_path
    }
    records = [r for r in records if r.report is None or str(r.report) not in shown]
    undoable = await asyncio.to_thread(journal_undoable, request, records)
    return render(
        request,
        "runs.html",
        nav="runs",
        mine=[(r, r.progress()) for r in mine],
        records=records,
        undoable=undoable,
        journal_problem=problem,
        use_journal=state.config.use_journal,
        state_dir=state.settings.state_dir,
    )


async def journal_report(request: web.Request) -> web.StreamResponse:
    """The results sheet of a run in the journal (by its id, never by a path from the URL):
    the copy kept in the state dir when there is one, the record of what was sent."""
    wanted = int(request.match_info["number"])
    records, _ = await asyncio.to_thread(request.app[STATE].journal_runs)
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


def add_routes(app: web.Application) -> None:
    """Register the pages of runs."""
    app.router.add_get("/runs", runs, name="runs")
    app.router.add_get("/runs/{run}", run_page)
    app.router.add_get("/runs/{run}/events", run_events)
    app.router.add_get("/runs/{run}/report", run_report)
    app.router.add_post("/runs/{run}/stop", stop_run)
    app.router.add_get(r"/journal/{number:\d+}/report", journal_report)
