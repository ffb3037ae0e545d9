"""The aiohttp application: configuration, shared state, safety middleware, page rendering.

The handlers themselves are in `views.py`. Every response passes through `_on_prepare`,
which adds the security headers (a strict Content-Security-Policy: no inline script or
style, nothing from elsewhere) and the session cookie.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2
from aiohttp import web

from ..auth import Credentials
from ..config import Settings
from ..report import OUTCOME_COLOURS
from ..version import __version__
from .preview import format_duration
from .runs import RunManager
from .security import (
    CSRF_FIELD,
    CSRF_HEADER,
    SESSION_COOKIE,
    LoginThrottle,
    Session,
    Sessions,
    host_allowed,
    is_public_origin,
)
from .uploads import UploadStore

__all__ = ["STATE", "WebConfig", "WebState", "create_app", "render"]

HERE = Path(__file__).resolve().parent
DEFAULT_MAX_UPLOAD_MB = 20.0

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


@dataclass(frozen=True)
class WebConfig:
    """Everything the page needs to know. Its repr shows no credentials or password."""

    settings: Settings
    credentials: Credentials | None = field(default=None, repr=False)
    host: str = "127.0.0.1"
    password: str | None = field(default=None, repr=False)
    use_journal: bool = True
    sandbox: bool = False
    files_dir: Path = field(default_factory=Path.cwd)
    max_upload_bytes: int = int(DEFAULT_MAX_UPLOAD_MB * (1 << 20))
    upload_parent: Path | None = None
    reports_dir: Path | None = None
    sse_interval_s: float = 0.25
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)


class WebState:
    """What the handlers share: sessions, uploads, runs, the templates."""

    def __init__(self, config: WebConfig) -> None:
        self.config = config
        self.sessions = Sessions(config.password, clock=config.clock)
        self.throttle = LoginThrottle(clock=config.clock)
        self.uploads = UploadStore(
            max_bytes=config.max_upload_bytes, parent=config.upload_parent, clock=config.clock
        )
        # Results sheets stay for the runs list: in the state dir beside the journal; in
        # sandbox mode (no journal) with the uploads, removed when the server stops.
        reports = config.reports_dir or (
            self.uploads.root / "reports"
            if config.sandbox
            else config.settings.state_dir / "web-reports"
        )
        self.runs = RunManager(
            settings=config.settings,
            credentials=config.credentials,
            use_journal=config.use_journal,
            reports_dir=reports,
            clock=config.clock,
        )
        self.closing = False
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.filters["duration"] = format_duration

    def __repr__(self) -> str:
        return f"WebState(uploads={len(self.uploads)}, runs={self.runs!r})"

    @property
    def settings(self) -> Settings:
        """The settings runs use (with the in-process sandbox's URL in sandbox mode)."""
        return self.runs.settings


STATE = web.AppKey("bulk_update_state", WebState)
# The request's session, and the one whose cookie the response must set. aiohttp handles a
# request (middleware, handler, response) within one task: context variables follow it,
# and the middleware sets both afresh for every request.
_SESSION: ContextVar[Session] = ContextVar("bulk_update_session")
_SET_COOKIE: ContextVar[Session | None] = ContextVar("bulk_update_set_cookie", default=None)


def session_of(request: web.Request) -> Session:
    """The request's session (the middleware always sets one)."""
    return _SESSION.get()


def set_session(request: web.Request, session: Session) -> None:
    """Make the response carry `session`'s cookie (after a login)."""
    _SESSION.set(session)
    _SET_COOKIE.set(session)


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
    session = state.sessions.get(request.cookies.get(SESSION_COOKIE))
    _SET_COOKIE.set(None)
    if session is None:
        session = state.sessions.new()
        _SET_COOKIE.set(session)
    _SESSION.set(session)
    public = request.path.startswith(_PUBLIC)
    if not session.authenticated and not public:
        if request.method in ("GET", "HEAD") and not request.path.endswith("/events"):
            return web.Response(status=303, headers={"Location": "/login"})
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
    session = _SET_COOKIE.get()
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
    from . import views  # the handlers need STATE and render from here

    # The upload is streamed with its own cap; every other body is a small form.
    app = web.Application(middlewares=[_guard], client_max_size=1 << 20)
    state = WebState(config)
    app[STATE] = state
    views.add_routes(app)
    app.router.add_static("/static/", HERE / "static", name="static")
    app.on_response_prepare.append(_on_prepare)
    app.on_cleanup.append(_on_cleanup)
    return app
