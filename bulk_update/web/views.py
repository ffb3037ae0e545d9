"""The page's handlers for a sheet's steps, upload -> (worksheet) -> (mapping) -> preview ->
confirm, and for signing in. The runs' pages are in run_views.py.

Heavy steps (reading the sheet, the dry run of the preview) run in worker threads so that
other pages, and the progress of a run, stay quick meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

from aiohttp import BodyPartReader, web

from ..config import Settings
from ..errors import BulkUpdateError, CannotStartError, InputError, UnknownColumnError
from ..hidden import check_hidden, describe_hidden
from ..journal import Journal
from ..models import HIDDEN_CHOICES
from ..pipeline import Sheet
from ..reader import list_worksheets
from ..schema import names_uid
from ..wiring import open_journal
from .app import csrf_refused, download, outcome_css, redirect, render
from .preview import FIELD_CHOICES, Preview, find_unknown_columns, load_upload, make_preview
from .preview import mapped_settings as _mapped
from .security import CSRF_FIELD, CSRF_HEADER
from .state import STATE, session_of, set_session
from .uploads import Upload, UploadTooLarge

__all__ = ["add_routes", "read_upload"]

IGNORE = "__ignore__"


def _upload_of(request: web.Request) -> Upload:
    state = request.app[STATE]
    upload = state.uploads.get(request.match_info["upload"], session_of(request).token)
    if upload is None:
        raise web.HTTPNotFound()
    return upload


def _upload_settings(request: web.Request, the_upload: Upload) -> Settings:
    """The page's settings with the upload's choices: its mapping, worksheet, hidden rows."""
    settings = _mapped(request.app[STATE].settings, the_upload.mapping, the_upload.ignored)
    return settings.with_overrides(
        sheet=the_upload.worksheet, hidden=the_upload.hidden, compare=the_upload.compare or None
    )


def _step_page(
    request: web.Request,
    template: str,
    step: int,
    the_upload: Upload,
    error: BulkUpdateError | None,
    status: int,
    **context: Any,
) -> web.Response:
    """A page of the upload's steps, with the error that sent it back, if any."""
    return render(
        request,
        template,
        status=status,
        nav="upload",
        step=step,
        upload=the_upload,
        error=error,
        **context,
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
    return await read_upload(request, the_upload)


async def read_upload(request: web.Request, the_upload: Upload) -> web.Response:
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
            return redirect(f"/uploads/{the_upload.id}/worksheet")
    settings = _upload_settings(request, the_upload)
    try:
        files_dir = the_upload.files_dir or state.config.files_dir
        sheet = await asyncio.to_thread(load_upload, the_upload.path, settings, files_dir)
    except UnknownColumnError:
        try:
            the_upload.unknown = await asyncio.to_thread(
                find_unknown_columns, the_upload.path, settings
            )
        except BulkUpdateError as exc:
            return _refuse_upload(request, the_upload, exc)
        return redirect(f"/uploads/{the_upload.id}/mapping")
    except BulkUpdateError as exc:
        if the_upload.unknown:  # the mapping chosen does not work: choose again
            return _mapping_page(request, the_upload, exc, 400)
        return _refuse_upload(request, the_upload, exc)
    the_upload.sheet = sheet
    try:  # while the file is there: the dry run of a CSV may read it a column at a time
        the_upload.preview = await _preview(request, the_upload, sheet)
    except BulkUpdateError as exc:
        return _refuse_upload(request, the_upload, exc)
    finally:
        the_upload.forget_file()  # the rows are in memory now
    return redirect(f"/uploads/{the_upload.id}/preview")


def _refuse_upload(request: web.Request, the_upload: Upload, exc: BulkUpdateError) -> web.Response:
    request.app[STATE].uploads.discard(the_upload.id)
    return _upload_page(request, exc, 400)


async def _preview(request: web.Request, the_upload: Upload, sheet: Sheet) -> Preview:
    state = request.app[STATE]
    settings = _upload_settings(request, the_upload)
    report = the_upload.folder / f"{Path(the_upload.name).stem}.preview.xlsx"
    # As `run --dry-run` with COMEET_API_KEY set: fields already applied are left out.
    use_journal = state.config.use_journal and state.config.credentials is not None

    def work() -> Preview:
        with contextlib.ExitStack() as stack:
            journal: Journal | None = None
            if use_journal:
                journal = stack.enter_context(open_journal(settings))
            return make_preview(
                sheet,
                settings,
                path=the_upload.path,
                journal=journal,
                report_path=report,
                credentials=state.config.credentials,
            )

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
    return _step_page(
        request,
        "worksheet.html",
        1,
        the_upload,
        error,
        status,
        worksheets=worksheets,
        chosen=chosen,
    )


async def worksheet(request: web.Request) -> web.Response:
    """The worksheet step: which worksheet of the workbook holds the candidates."""
    the_upload = _upload_of(request)
    if the_upload.sheet is not None or len(the_upload.worksheets) < 2:
        return redirect(f"/uploads/{the_upload.id}/preview")
    return _worksheet_page(request, the_upload)


async def save_worksheet(request: web.Request) -> web.Response:
    """Keep the worksheet chosen and read it."""
    the_upload = _upload_of(request)
    if the_upload.sheet is not None or len(the_upload.worksheets) < 2:
        return redirect(f"/uploads/{the_upload.id}/preview")
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
    return await read_upload(request, the_upload)


# --- mapping --------------------------------------------------------------------------------


def _mapping_page(
    request: web.Request,
    the_upload: Upload,
    error: BulkUpdateError | None = None,
    status: int = 200,
) -> web.Response:
    return _step_page(
        request, "mapping.html", 2, the_upload, error, status, fields=FIELD_CHOICES, ignore=IGNORE
    )


async def mapping(request: web.Request) -> web.Response:
    """The mapping step: each unknown column to a field, or ignored."""
    the_upload = _upload_of(request)
    if not the_upload.unknown or the_upload.sheet is not None:
        return redirect(f"/uploads/{the_upload.id}/preview")
    return _mapping_page(request, the_upload)


async def save_mapping(request: web.Request) -> web.Response:
    """Keep the choices and read the sheet again with them."""
    the_upload = _upload_of(request)
    if the_upload.sheet is not None:
        return redirect(f"/uploads/{the_upload.id}/preview")
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
    return await read_upload(request, the_upload)


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
        return redirect(f"/uploads/{the_upload.id}/mapping")
    return _step_page(
        request,
        "preview.html",
        3,
        the_upload,
        error,
        status,
        preview=the_upload.preview,
        hidden_text=describe_hidden(the_upload.preview.hidden),
        can_send=state.runs.can_send,
    )


async def preview_sheet(request: web.Request) -> web.StreamResponse:
    """The dry run's results sheet."""
    the_upload = _upload_of(request)
    report = the_upload.preview.report if the_upload.preview else None
    if report is None or not report.is_file():
        raise web.HTTPNotFound()
    return download(report, f"{Path(the_upload.name).stem}.preview.xlsx")


async def confirm(request: web.Request) -> web.Response:
    """Start sending (the lock is taken here, so a refusal shows on the preview)."""
    state = request.app[STATE]
    the_upload = _upload_of(request)
    if the_upload.sheet is None:
        return redirect(f"/uploads/{the_upload.id}/mapping")
    try:  # the library's rule (runs.start applies it too), in the page's words
        check_hidden(the_upload.sheet, _upload_settings(request, the_upload))
    except InputError:
        error = InputError(
            "say first whether to send or skip the hidden rows and columns",
            fix="choose Send them or Skip them in the box above",
        )
        return _preview_page(request, the_upload, error, 409)
    backup = (await request.post()).get("backup") == "on"
    try:
        run = state.runs.start(
            the_upload.sheet,
            the_upload.name,
            hidden=the_upload.hidden,
            backup=backup,
            compare=the_upload.compare,
        )
    except CannotStartError as exc:
        return _preview_page(request, the_upload, exc, 409)
    state.uploads.discard(the_upload.id)
    return redirect(f"/runs/{run.id}")


async def save_hidden(request: web.Request) -> web.Response:
    """The preview's question: send the hidden rows and columns, or skip them; preview again."""
    the_upload = _upload_of(request)
    if the_upload.sheet is None:
        return redirect(f"/uploads/{the_upload.id}/mapping")
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
    return redirect(f"/uploads/{the_upload.id}/preview")


async def compare(request: web.Request) -> web.Response:
    """The preview's "Compare with Comeet": preview again reading each row to send (reads
    only, no PATCH); the run then leaves out what Comeet already holds, as the preview did."""
    the_upload = _upload_of(request)
    if the_upload.sheet is None:
        return redirect(f"/uploads/{the_upload.id}/mapping")
    if request.app[STATE].config.credentials is None:
        raise web.HTTPNotFound()  # the page cannot read Comeet: the button is not shown
    the_upload.compare = True
    try:
        the_upload.preview = await _preview(request, the_upload, the_upload.sheet)
    except BulkUpdateError as exc:
        the_upload.compare = False
        return _preview_page(request, the_upload, exc, 400)
    return redirect(f"/uploads/{the_upload.id}/preview")


async def discard(request: web.Request) -> web.Response:
    """Forget an upload (its folder is deleted) and go back to the upload form."""
    request.app[STATE].uploads.discard(_upload_of(request).id)
    return redirect("/")


# --- sign in ----------------------------------------------------------------------------------


async def login_form(request: web.Request) -> web.Response:
    """The password form (only when a password is set)."""
    state = request.app[STATE]
    if not state.sessions.password_required or session_of(request).authenticated:
        return redirect("/")
    return render(request, "login.html", title="Sign in", error=None)


async def login(request: web.Request) -> web.Response:
    """Check the password; a new session on success (constant-time compare, throttled)."""
    state = request.app[STATE]
    if not state.sessions.password_required:
        return redirect("/")
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
    set_session(request, state.sessions.login(session_of(request)))  # its cookie too
    return redirect("/")


async def logout(request: web.Request) -> web.Response:
    """Forget this session."""
    request.app[STATE].sessions.logout(session_of(request))
    return redirect("/login")


async def outcomes_css(request: web.Request) -> web.Response:
    """The report's outcome colours as CSS (one source for the XLSX and the page)."""
    return web.Response(text=outcome_css(), content_type="text/css")


def add_routes(app: web.Application) -> None:
    """Register the pages of a sheet's steps and of signing in."""
    app.router.add_get("/", index, name="index")
    app.router.add_post("/upload", upload, name="upload")
    app.router.add_get("/uploads/{upload}/worksheet", worksheet)
    app.router.add_post("/uploads/{upload}/worksheet", save_worksheet)
    app.router.add_get("/uploads/{upload}/mapping", mapping)
    app.router.add_post("/uploads/{upload}/mapping", save_mapping)
    app.router.add_get("/uploads/{upload}/preview", preview)
    app.router.add_get("/uploads/{upload}/preview.xlsx", preview_sheet)
    app.router.add_post("/uploads/{upload}/hidden", save_hidden)
    app.router.add_post("/uploads/{upload}/compare", compare)
    app.router.add_post("/uploads/{upload}/run", confirm)
    app.router.add_post("/uploads/{upload}/discard", discard)
    app.router.add_get("/login", login_form)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_get("/outcomes.css", outcomes_css)
