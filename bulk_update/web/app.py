"""The aiohttp application: safety middleware, page rendering, the routes.

The page's state is in `state.py`; the handlers in `views.py` (a sheet's steps, signing
in) and `run_views.py` (runs and their results sheets). Every response passes through
`_on_prepare`, which adds the security headers (a strict Content-Security-Policy: no inline
script or style, nothing from elsewhere) and the session cookie.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from aiohttp import web

from ..report import OUTCOME_COLOURS
from ..version import __version__
from .security import (
    CSRF_FIELD,
    CSRF_HEADER,
    SESSION_COOKIE,
    host_allowed,
    is_public_origin,
)
from .state import HERE, STATE, WebConfig, WebState, new_cookie, session_of, set_session

__all__ = [
    "STATE",  # re-exported from state.py, where they live now
    "WebConfig",
    "WebState",
    "create_app",
    "csrf_refused",
    "download",
    "error_page",
    "redirect",
    "render",
]

_SHEET_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
_SECURITY_HEADERS = {
    "Content-Security-Policy": _CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
#: Paths open without the password (the login form and what it needs to look right).
_PUBLIC = ("/login", "/outcomes.css", "/static/")
#: The upload's form is read as a stream: its handler checks the CSRF token itself.
_OWN_CSRF_ROUTES = frozenset({"upload"})


def render(
    request: web.Request, template: str, *, status: int = 200, **context: Any
) -> web.Response:
    """A page from `templates/`, with what every page needs (the CSRF token, the nav)."""
    state = request.app[STATE]
    session = session_of(request)
    page = state.templates.get_template(template).render(
        csrf=session.csrf,
        csrf_field=CSRF_FIELD,
        authenticated=session.authenticated,
        password_required=state.sessions.password_required,
        sandbox=state.config.sandbox,
        target=state.settings.base_url,
        version=__version__,
        active_run=state.runs.active() if session.authenticated else None,
        nav=context.pop("nav", ""),
        step=context.pop("step", 0),
        **context,
    )
    return web.Response(text=page, status=status, content_type="text/html", charset="utf-8")


def error_page(
    request: web.Request, status: int, title: str, message: str, fix: str | None = None
) -> web.Response:
    """A page that says what went wrong and what to do."""
    return render(request, "error.html", status=status, title=title, message=message, fix=fix)


def _same_origin(request: web.Request) -> bool:
    # Browsers send Origin with every POST; a form posted from another site names that site.
    # ("null" comes from privacy settings and sandboxed frames: the CSRF token decides then.)
    # Behind a proxy that keeps the Host (127.0.0.1:8080), the Origin is the public address;
    # an Origin naming the public host must be that address exactly (https, not http).
    origin = request.headers.get("Origin")
    if origin not in (None, "null"):
        public_url = request.app[STATE].settings.public_url
        if public_url and urlsplit(origin).hostname == urlsplit(public_url).hostname:
            if not is_public_origin(origin, public_url):
                return False
        elif urlsplit(origin).netloc != request.host:
            return False
    return request.headers.get("Sec-Fetch-Site", "same-origin") in ("same-origin", "none")


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Host check, session, password, CSRF: in that order, before any handler runs."""
    state = request.app[STATE]
    if not host_allowed(request.headers.get("Host"), state.config.host, state.settings.public_url):
        return web.Response(status=421, text="This page answers only on 127.0.0.1.\n")
    known = state.sessions.get(request.cookies.get(SESSION_COOKIE))
    session = known if known is not None else state.sessions.new()
    set_session(request, session, new=known is None)
    public = request.path.startswith(_PUBLIC)
    if not session.authenticated and not public:
        if request.method in ("GET", "HEAD") and not request.path.endswith("/events"):
            return redirect("/login")
        return error_page(request, 403, "Sign in first", "This page needs the password.")
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        if not _same_origin(request):
            return error_page(
                request, 403, "Refused", "This form was sent from another site.",
                "open the page itself and send the form from there",
            )  # fmt: skip
        route = request.match_info.route.name
        if route not in _OWN_CSRF_ROUTES:
            token = request.headers.get(CSRF_HEADER)
            if token is None and request.content_type == "application/x-www-form-urlencoded":
                token = str((await request.post()).get(CSRF_FIELD, ""))
            if not session.csrf_ok(token):
                return csrf_refused(request)
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return error_page(request, 404, "Not found", "There is nothing at this address.")
    except web.HTTPMethodNotAllowed:
        return error_page(request, 405, "Not allowed", "This address does not take that.")


def redirect(location: str) -> web.Response:
    """See Other: the page at `location` (after a form, so that reloading sends nothing)."""
    return web.Response(status=303, headers={"Location": location})


def download(path: Path, name: str) -> web.FileResponse:
    """A sheet (.xlsx or .csv), or a .zip of one with its files, as a download named `name`."""
    content_type = {".xlsx": _SHEET_TYPE, ".zip": "application/zip"}.get(path.suffix, "text/csv")
    return web.FileResponse(
        path,
        headers={
            "Content-Type": content_type,
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}",
        },
    )


def csrf_refused(request: web.Request) -> web.Response:
    """The answer to a request that changes something without the page's CSRF token."""
    return error_page(
        request,
        403,
        "Refused",
        "This request did not carry the page's security token (CSRF), so nothing was done.",
        "reload the page and try again from there",
    )


async def _on_prepare(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in _SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if not request.path.startswith("/static/"):
        response.headers.setdefault("Cache-Control", "no-store")
    session = new_cookie(request)
    if session is not None:
        # Written as a header: aiohttp has already turned `response.cookies` into headers
        # by the time this hook runs. The token is URL-safe base64: nothing to quote.
        # Behind an https proxy the page sees plain http: the public address says it is https.
        public_url = request.app[STATE].settings.public_url or ""
        secure = "; Secure" if request.secure or public_url.startswith("https:") else ""
        response.headers.add(
            "Set-Cookie",
            f"{SESSION_COOKIE}={session.token}; HttpOnly; Path=/; SameSite=Strict{secure}",
        )


def outcome_css() -> str:
    """The outcome colours of the XLSX report (report.OUTCOME_COLOURS) as CSS classes."""
    lines = [
        f".outcome-{o.value} {{ --outcome: #{colour}; }}" for o, colour in OUTCOME_COLOURS.items()
    ]
    return "\n".join(lines) + "\n"


async def _on_cleanup(app: web.Application) -> None:
    state = app[STATE]
    state.closing = True
    state.uploads.close()


def create_app(config: WebConfig) -> web.Application:
    """The page as an aiohttp application (serve it with `serve`, or a test client)."""
    from . import run_views, undo_views, views  # the handlers need render and the rest

    # The upload is streamed with its own cap; every other body is a small form.
    app = web.Application(middlewares=[_guard], client_max_size=1 << 20)
    state = WebState(config)
    app[STATE] = state
    views.add_routes(app)
    run_views.add_routes(app)
    undo_views.add_routes(app)
    app.router.add_static("/static/", HERE / "static", name="static")
    app.on_response_prepare.append(_on_prepare)
    app.on_cleanup.append(_on_cleanup)
    return app
