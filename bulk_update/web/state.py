"""The page's state: its configuration, what the handlers share, the request's session.

One `WebState` per application (`request.app[STATE]`): the sessions, the uploads on their
way to a run, the runs, the templates. The request's session is set on the request by the
application's guard (app.py) before any handler runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
from aiohttp import web

from ..auth import Credentials
from ..config import Settings
from ..errors import CannotStartError
from ..journal import RunRecord, read_runs
from .preview import format_duration
from .runs import RunManager
from .security import LoginThrottle, Session, Sessions
from .uploads import UploadStore

__all__ = [
    "DEFAULT_MAX_UPLOAD_MB",
    "STATE",
    "WebConfig",
    "WebState",
    "new_cookie",
    "session_of",
    "set_session",
]

HERE = Path(__file__).resolve().parent
DEFAULT_MAX_UPLOAD_MB = 20.0


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

    def journal_runs(self, limit: int = 30) -> tuple[list[RunRecord], str | None]:
        """The journal's recent runs (blocking), and what stops them being read, if anything;
        none without a journal (sandbox mode)."""
        if not self.config.use_journal:
            return [], None
        try:
            return read_runs(self.settings.state_dir, limit=limit), None
        except CannotStartError as exc:
            return [], str(exc)

    @property
    def settings(self) -> Settings:
        """The settings runs use (with the in-process sandbox's URL in sandbox mode)."""
        return self.runs.settings


STATE = web.AppKey("bulk_update_state", WebState)
#: The request's session, and the one whose cookie its response must set (if any).
_SESSION = web.RequestKey("bulk_update_session", Session)
_NEW_COOKIE = web.RequestKey("bulk_update_new_cookie", Session)


def session_of(request: web.Request) -> Session:
    """The request's session (the application's guard sets one on every request)."""
    return request[_SESSION]


def set_session(request: web.Request, session: Session, *, new: bool = True) -> None:
    """Make `session` the request's; `new`: its response carries the session's cookie (a
    session just made, or one just signed in)."""
    request[_SESSION] = session
    if new:
        request[_NEW_COOKIE] = session


def new_cookie(request: web.Request) -> Session | None:
    """The session whose cookie the response must set, if any."""
    return request.get(_NEW_COOKIE)
