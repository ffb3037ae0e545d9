"""The page's handlers: upload -> (mapping) -> preview -> run -> progress -> results; runs.

Heavy steps (reading the sheet, planning, writing the preview sheet) run in worker threads
so that other pages, and the progress of a run, stay quick meanwhile.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from urllib.parse import quote

from aiohttp import BodyPartReader, web

from ..errors import BulkUpdateError, CannotStartError, InputError, UnknownColumnError
from ..hidden import describe_hidden
from ..journal import Journal, RunRecord, read_runs
from ..models import HIDDEN_CHOICES
from ..pipeline import Sheet
from ..reader import list_worksheets
from ..schema import names_uid
from .app import STATE, csrf_refused, outcome_css, render, session_of, set_session
from .preview import FIELD_CHOICES, Preview, find_unknown_columns, load_upload, make_preview
from .preview import mapped_settings as _mapped
from .security import CSRF_FIELD, CSRF_HEADER
from .uploads import Upload, UploadTooLarge

__all__ = ["add_routes"]

IGNORE = "__ignore__"
SHOWN_PROBLEMS = 200
_REPORT_SUFFIXES = (".xlsx", ".csv")
_SHEET_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def _upload_of(request: web.Request) -> Upload:
    state = request.app[STATE]
    upload = state.uploads.get(request.match_info["upload"], session_of(request).token)
    if upload is None:
        raise web.HTTPNotFound()
    return upload


def _download(path: Path, name: str) -> web.FileResponse:
    content_type = _SHEET_TYPE if path.suffix == ".xlsx" else "text/csv"
    return web.FileResponse(
        path,
        headers={
            "Content-Type": content_type,
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}",
        },
    )


# --- upload ---------------------------------------------------------------------------------


async def index(request: web.Request) -> web.Response:
    """The upload form."""
    return _upload_page(request)


def _upload_page(
    request: web.Request, error: BulkUpdateError | None = None, status: int = 200
) -> web.Response:
    state = request.app[STATE]
    return render(
        request,
        "upload.html",
        status=status,
        nav="upload",
        step=1,
        error=error,
        max_bytes=state.uploads.max_bytes,
        max_mb=f"{state.uploads.max_bytes / (1 << 20):g}",
        files_dir=state.config.files_dir,
        can_send=state.runs.can_send,
    )


async def upload(request: web.Request) -> web.StreamResponse:
    """Receive a sheet (multipart, streamed, size-capped), then read it."""
    state = request.app[STATE]
    session = session_of(request)
    cap = state.uploads.max_bytes
    if request.content_length is not None and request.content_length > cap + (64 << 10):
        return _upload_page(request, state.uploads.too_large(), 413)
    if request.content_type != "multipart/form-data":
        if not session.csrf_ok(request.headers.get(CSRF_HEADER)):
            return csrf_refused(request)
        error = InputError("the upload was not understood", fix="choose the file again")
        return _upload_page(request, error, 400)
    try:
        reader = await request.multipart()
        part = await reader.next()
        # The token comes first in the form, so the file is not read before it is checked.
        if not isinstance(part, BodyPartReader) or part.name != CSRF_FIELD:
            return csrf_refused(request)
        if not session.csrf_ok(await part.text()):
            return csrf_refused(request)
        part = await reader.next()
        if not isinstance(part, BodyPartReader) or part.name != "sheet" or not part.filename:
            error = InputError("no file was chosen", fix="choose a .xlsx or .csv sheet")
            return _upload_page(request, error, 400)
        try:
            the_upload = await state.uploads.receive(session.token, part.filename, part)
        except InputError as exc:
            return _upload_page(request, exc, 413 if isinstance(exc, UploadTooLarge) else 400)
    except (ValueError, AssertionError, KeyError):  # not a multipart form at all
        error = InputError("the upload was not understood", fix="choose the file again")
        return _upload_page(request, error, 400)
    return await _read(request, the_upload)


async def _read(request: web.Request, the_upload: Upload) -> web.Response:
    """Read the uploaded file with the choices so far; on to a worksheet, mapping or preview."""
    state = request.app[STATE]
    if the_upload.worksheet is None and not state.settings.sheet:
        # A workbook of several worksheets: the recruiter says which one (the config's
        # [input] sheet, when set, says it for every upload).
        try:
            found = await asyncio.to_thread(list_worksheets, the_upload.path)
        except BulkUpdateError as exc:
            return _refuse_upload(request, the_upload, exc)
        if len(found) > 1:
            the_upload.worksheets = found
            return _redirect(f"/uploads/{the_upload.id}/worksheet")
    settings = _mapped(state.settings, the_upload.mapping, the_upload.ignored)
    if the_upload.worksheet is not None:
        settings = settings.with_overrides(sheet=the_upload.worksheet)
    try:
        sheet = await asyncio.to_thread(
            load_upload, the_upload.path, settings, state.config.files_dir
        )
    except UnknownColumnError:
        try:
            the_upload.unknown = await asyncio.to_thread(
                find_unknown_columns, the_upload.path, settings
            )
        except BulkUpdateError as exc:
            return _refuse_upload(request, the_upload, exc)
        return _redirect(f"/uploads/{the_upload.id}/mapping")
    except BulkUpdateError as exc:
        if the_upload.unknown:  # the mapping chosen does not work: choose again
            return _mapping_page(request, the_upload, exc, 400)
        return _refuse_upload(request, the_upload, exc)
    the_upload.sheet = sheet
    the_upload.forget_file()  # the rows are in memory now
    try:
        the_upload.preview = await _preview(request, the_upload, sheet)
    except BulkUpdateError as exc:
        return _refuse_upload(request, the_upload, exc)
    return _redirect(f"/uploads/{the_upload.id}/preview")


def _refuse_upload(request: web.Request, the_upload: Upload, exc: BulkUpdateError) -> web.Response:
    request.app[STATE].uploads.discard(the_upload.id)
    return _upload_page(request, exc, 400)


async def _preview(request: web.Request, the_upload: Upload, sheet: Sheet) -> Preview:
    state = request.app[STATE]
    settings = state.settings.with_overrides(hidden=the_upload.hidden)
    credentials = state.config.credentials
    report = the_upload.folder / f"{Path(the_upload.name).stem}.preview.xlsx"

    def work() -> Preview:
        # As `run --dry-run` with COMEET_API_KEY set: fields already applied are left out.
        if state.config.use_journal and credentials is not None:
            with Journal.open(
                settings.state_dir,
                base_url=settings.base_url,
                journal_scope=settings.journal_scope,
            ) as journal:
                return make_preview(sheet, settings, journal=journal, report_path=report)
        return make_preview(sheet, settings, journal=None, report_path=report)

    return await asyncio.to_thread(work)


# --- worksheet ------------------------------------------------------------------------------


def _worksheet_page(
    request: web.Request,
    the_upload: Upload,
    error: BulkUpdateError | None = None,
    status: int = 200,
) -> web.Response:
    settings = request.app[STATE].settings
    worksheets = the_upload.worksheets
    # A hidden worksheet is never chosen for the recruiter: it is shown, marked hidden.
    visible = [w for w in worksheets if not w.hidden] or list(worksheets)
    chosen = the_upload.worksheet or next(
        (w.name for w in visible if names_uid(w.headers, settings.columns)), visible[0].name
    )
    return render(
        request,
        "worksheet.html",
        status=status,
        nav="upload",
        step=1,
        upload=the_upload,
        worksheets=worksheets,
        chosen=chosen,
        error=error,
    )


async def worksheet(request: web.Request) -> web.Response:
    """The worksheet step: which worksheet of the workbook holds the candidates."""
    the_upload = _upload_of(request)
    if the_upload.sheet is not None or len(the_upload.worksheets) < 2:
        return _redirect(f"/uploads/{the_upload.id}/preview")
    return _worksheet_page(request, the_upload)


async def save_worksheet(request: web.Request) -> web.Response:
    """Keep the worksheet chosen and read it."""
    the_upload = _upload_of(request)
    if the_upload.sheet is not None or len(the_upload.worksheets) < 2:
        return _redirect(f"/uploads/{the_upload.id}/preview")
    form = await request.post()
    name = str(form.get("worksheet", ""))
    if name not in {w.name for w in the_upload.worksheets}:
        error = InputError(
            "choose one of the workbook's worksheets", fix="pick the one with the candidates"
        )
        return _worksheet_page(request, the_upload, error, 400)
    the_upload.worksheet = name
    # Another worksheet has other columns: what was chosen for the last one does not apply.
    the_upload.mapping, the_upload.ignored, the_upload.unknown = {}, [], []
    return await _read(request, the_upload)


# --- mapping --------------------------------------------------------------------------------


def _mapping_page(
    request: web.Request,
    the_upload: Upload,
    error: BulkUpdateError | None = None,
    status: int = 200,
) -> web.Response:
    return render(
        request,
        "mapping.html",
        status=status,
        nav="upload",
        step=2,
        upload=the_upload,
        fields=FIELD_CHOICES,
        ignore=IGNORE,
        error=error,
    )


async def mapping(request: web.Request) -> web.Response:
    """The mapping step: each unknown column to a field, or ignored."""
    the_upload = _upload_of(request)
    if not the_upload.unknown or the_upload.sheet is not None:
        return _redirect(f"/uploads/{the_upload.id}/preview")
    return _mapping_page(request, the_upload)


async def save_mapping(request: web.Request) -> web.Response:
    """Keep the choices and read the sheet again with them."""
    the_upload = _upload_of(request)
    if the_upload.sheet is not None:
        return _redirect(f"/uploads/{the_upload.id}/preview")
    form = await request.post()
    chosen: dict[str, str] = {}
    ignored: list[str] = []
    for index, column in enumerate(the_upload.unknown):
        value = str(form.get(f"column-{index}", ""))
        if value == IGNORE:
            ignored.append(column.header)
        elif value in FIELD_CHOICES or value == column.custom_field:
            chosen[column.header] = value
        else:
            error = InputError(
                f"choose what column '{column.header}' is", fix="pick a field, or Ignore"
            )
            return _mapping_page(request, the_upload, error, 400)
    the_upload.mapping, the_upload.ignored = chosen, ignored
    return await _read(request, the_upload)


# --- preview and confirm ----------------------------------------------------------------------


async def preview(request: web.Request) -> web.Response:
    """The dry run: counts, invalid rows, the first patches, the time it will take."""
    the_upload = _upload_of(request)
    return _preview_page(request, the_upload)


def _preview_page(
    request: web.Request,
    the_upload: Upload,
    error: BulkUpdateError | None = None,
    status: int = 200,
) -> web.Response:
    state = request.app[STATE]
    if the_upload.preview is None:
        return _redirect(f"/uploads/{the_upload.id}/mapping")
    return render(
        request,
        "preview.html",
        status=status,
        nav="upload",
        step=3,
        upload=the_upload,
        preview=the_upload.preview,
        hidden_text=describe_hidden(the_upload.preview.hidden),
        can_send=state.runs.can_send,
        error=error,
    )


async def preview_sheet(request: web.Request) -> web.StreamResponse:
    """The dry run's results sheet."""
    the_upload = _upload_of(request)
    report = the_upload.preview.report if the_upload.preview else None
    if report is None or not report.is_file():
        raise web.HTTPNotFound()
    return _download(report, f"{Path(the_upload.name).stem}.preview.xlsx")


async def confirm(request: web.Request) -> web.Response:
    """Start sending (the lock is taken here, so a refusal shows on the preview)."""
    state = request.app[STATE]
    the_upload = _upload_of(request)
    if the_upload.sheet is None:
        return _redirect(f"/uploads/{the_upload.id}/mapping")
    shown = the_upload.preview
    if shown is not None and shown.hidden and not shown.hidden.choice:
        # The library refuses too (runs.start), in the command line's words.
        error = InputError(
            "say first whether to send or skip the hidden rows and columns",
            fix="choose Send them or Skip them in the box above",
        )
        return _preview_page(request, the_upload, error, 409)
    try:
        run = state.runs.start(the_upload.sheet, the_upload.name, hidden=the_upload.hidden)
    except CannotStartError as exc:
        return _preview_page(request, the_upload, exc, 409)
    state.uploads.discard(the_upload.id)
    return _redirect(f"/runs/{run.id}")


async def save_hidden(request: web.Request) -> web.Response:
    """The preview's question: send the hidden rows and columns, or skip them; preview again."""
    the_upload = _upload_of(request)
    if the_upload.sheet is None:
        return _redirect(f"/uploads/{the_upload.id}/mapping")
    form = await request.post()
    choice = str(form.get("hidden", ""))
    if choice not in HIDDEN_CHOICES:
        error = InputError(
            "say what to do with the hidden rows and columns",
            fix="choose Send them or Skip them",
        )
        return _preview_page(request, the_upload, error, 400)
    the_upload.hidden = choice
    try:
        the_upload.preview = await _preview(request, the_upload, the_upload.sheet)
    except BulkUpdateError as exc:
        return _preview_page(request, the_upload, exc, 400)
    return _redirect(f"/uploads/{the_upload.id}/preview")


async def discard(request: web.Request) -> web.Response:
    """Forget an upload (its folder is deleted) and go back to the upload form."""
    request.app[STATE].uploads.discard(_upload_of(request).id)
    return _redirect("/")


# --- runs -----------------------------------------------------------------------------------


async def run_page(request: web.Request) -> web.Response:
    """A run's live progress; once it has ended, its results."""
    run = request.app[STATE].runs.get(request.match_info["run"])
    if run is None:
        raise web.HTTPNotFound()
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
    run = state.runs.get(request.match_info["run"])
    if run is None:
        raise web.HTTPNotFound()
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
    run = request.app[STATE].runs.get(request.match_info["run"])
    if run is None or not run.report_file.is_file():
        raise web.HTTPNotFound()
    return _download(run.report_file, f"{Path(run.name).stem}.results{run.report_file.suffix}")


async def stop_run(request: web.Request) -> web.Response:
    """Stop a run gracefully: rows not sent yet are `not_sent` in its results sheet."""
    run = request.app[STATE].runs.get(request.match_info["run"])
    if run is None:
        raise web.HTTPNotFound()
    run.request_stop()
    return _redirect(f"/runs/{run.id}")


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
    return render(
        request,
        "runs.html",
        nav="runs",
        mine=[(r, r.progress()) for r in mine],
        records=records,
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
            return _download(report, report.name)
    raise web.HTTPNotFound()


# --- sign in ----------------------------------------------------------------------------------


async def login_form(request: web.Request) -> web.Response:
    """The password form (only when a password is set)."""
    state = request.app[STATE]
    if not state.sessions.password_required or session_of(request).authenticated:
        return _redirect("/")
    return render(request, "login.html", title="Sign in", error=None)


async def login(request: web.Request) -> web.Response:
    """Check the password; a new session on success (constant-time compare, throttled)."""
    state = request.app[STATE]
    if not state.sessions.password_required:
        return _redirect("/")
    client = request.remote or "?"
    wait = state.throttle.blocked_for(client)
    if wait:
        error = f"Too many wrong passwords. Try again in {int(wait) + 1} seconds."
        return render(request, "login.html", status=429, title="Sign in", error=error)
    form = await request.post()
    if not state.sessions.password_ok(str(form.get("password", ""))):
        state.throttle.failed(client)
        error = "That is not the password."
        return render(request, "login.html", status=401, title="Sign in", error=error)
    state.throttle.succeeded(client)
    set_session(request, state.sessions.login(session_of(request)))
    return _redirect("/")


async def logout(request: web.Request) -> web.Response:
    """Forget this session."""
    request.app[STATE].sessions.logout(session_of(request))
    return _redirect("/login")


async def outcomes_css(request: web.Request) -> web.Response:
    """The report's outcome colours as CSS (one source for the XLSX and the page)."""
    return web.Response(text=outcome_css(), content_type="text/css")


def add_routes(app: web.Application) -> None:
    """Register every page of the application."""
    app.router.add_get("/", index, name="index")
    app.router.add_post("/upload", upload, name="upload")
    app.router.add_get("/uploads/{upload}/worksheet", worksheet)
    app.router.add_post("/uploads/{upload}/worksheet", save_worksheet)
    app.router.add_get("/uploads/{upload}/mapping", mapping)
    app.router.add_post("/uploads/{upload}/mapping", save_mapping)
    app.router.add_get("/uploads/{upload}/preview", preview)
    app.router.add_get("/uploads/{upload}/preview.xlsx", preview_sheet)
    app.router.add_post("/uploads/{upload}/hidden", save_hidden)
    app.router.add_post("/uploads/{upload}/run", confirm)
    app.router.add_post("/uploads/{upload}/discard", discard)
    app.router.add_get("/runs", runs, name="runs")
    app.router.add_get("/runs/{run}", run_page)
    app.router.add_get("/runs/{run}/events", run_events)
    app.router.add_get("/runs/{run}/report", run_report)
    app.router.add_post("/runs/{run}/stop", stop_run)
    app.router.add_get(r"/journal/{number:\d+}/report", journal_report)
    app.router.add_get("/login", login_form)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_get("/outcomes.css", outcomes_css)
