"""The web page's safety rules: where it may listen, the password, sessions, CSRF tokens.

- It listens on 127.0.0.1 by default. On any other address it refuses to start unless a
  password is set in the environment (`BULK_UPDATE_WEB_PASSWORD`); with a password set,
  every page asks for it first (a login form and a session cookie).
- Every session, with or without a password, carries a random CSRF token; every request
  that changes something must send it back (a form field or the `X-CSRF-Token` header).
- Bound to a loopback address, only loopback `Host` headers are answered: a web site that
  points its own name at 127.0.0.1 (DNS rebinding) cannot reach the page through it.
- Behind a reverse proxy (`--public-url`), that public address is answered too: its `Host`,
  and its `Origin` on forms (a proxy that keeps the Host still passes the browser's Origin).

Everything here is pure or takes its clock as an argument, so the tests need no sleeping.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ..errors import ConfigError

__all__ = [
    "CSRF_FIELD",
    "CSRF_HEADER",
    "PASSWORD_VAR",
    "SESSION_COOKIE",
    "LoginThrottle",
    "Session",
    "Sessions",
    "check_bind",
    "host_allowed",
    "is_loopback",
    "is_public_origin",
    "public_url_warning",
]

PASSWORD_VAR = "BULK_UPDATE_WEB_PASSWORD"
SESSION_COOKIE = "bulk_update_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"

_LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost"})


def is_loopback(host: str) -> bool:
    """True for `localhost` and every loopback address (127.0.0.0/8, ::1)."""
    name = host.strip().strip("[]").lower()
    if name in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_bind(host: str, password: str | None) -> None:
    """Refuse (ConfigError, exit 2) to listen beyond this machine without a password."""
    if is_loopback(host) or password:
        return
    raise ConfigError(
        f"refusing to serve on {host} without a password: anyone who can reach this machine "
        "could read the sheets and send changes to Comeet",
        fix=f"set {PASSWORD_VAR} in the environment (the page then asks for it), or keep "
        "the default --host 127.0.0.1 and reach it through an SSH tunnel",
    )


_DEFAULT_PORTS = {"http": ":80", "https": ":443"}


def _authority(scheme: str, netloc: str) -> str:
    """`host[:port]` in lower case, the scheme's default port left out (as browsers send it)."""
    netloc = netloc.strip().lower()
    default = _DEFAULT_PORTS.get(scheme.lower())
    return netloc.removesuffix(default) if default else netloc


def is_public_origin(origin: str | None, public_url: str | None) -> bool:
    """Whether a request's `Origin` is the page's public address (`--public-url`)."""
    if not origin or not public_url:
        return False
    given, public = urlsplit(origin), urlsplit(public_url)
    return given.scheme.lower() == public.scheme and _authority(
        given.scheme, given.netloc
    ) == _authority(public.scheme, public.netloc)


def host_allowed(host_header: str | None, bound_host: str, public_url: str | None = None) -> bool:
    """Whether a request's `Host` header may be answered by a server bound to `bound_host`.

    Bound to loopback, only loopback names are answered (DNS rebinding defence), and the
    public address of `--public-url` (the name a reverse proxy passes on); bound to another
    address the password protects the page and any name is answered.
    """
    if not is_loopback(bound_host):
        return True
    if not host_header:
        return False
    if public_url:
        public = urlsplit(public_url)
        if _authority(public.scheme, host_header) == _authority(public.scheme, public.netloc):
            return True
    name = host_header.strip()
    if name.startswith("["):  # [::1]:8080
        name = name[1 : name.find("]")] if "]" in name else name
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    return is_loopback(name)


def public_url_warning(public_url: str | None, password: str | None) -> str | None:
    """What `serve` says when the proxy opens the page, without a password, to whoever it lets in.

    Not refused: the proxy may ask who people are itself (single sign-on, basic auth).
    """
    if not public_url or password:
        return None
    return (
        f"Warning: {public_url} reaches this page without a password: anyone the proxy lets in "
        f"can send changes to Comeet. Set {PASSWORD_VAR}, or make the proxy ask who they are."
    )


@dataclass(slots=True)
class Session:
    """One browser's session: its CSRF token and whether it gave the password."""

    token: str
    csrf: str
    authenticated: bool
    seen: float
    uploads: set[str] = field(default_factory=set)

    def csrf_ok(self, given: str | None) -> bool:
        """Constant-time check of a CSRF token sent back with a request."""
        return bool(given) and hmac.compare_digest(
            self.csrf.encode("utf-8"), str(given).encode("utf-8")
        )


class Sessions:
    """Sessions kept in memory (a restart logs everyone out, which is fine for this tool).

    `password` None: no login, every new session is authenticated. Sessions unused for
    `ttl_s` are forgotten; past `limit`, the least recently seen goes first.
    """

    def __init__(
        self,
        password: str | None,
        *,
        ttl_s: float = 12 * 3600,
        limit: int = 1000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._password = password.encode("utf-8") if password else None
        self._ttl_s = ttl_s
        self._limit = limit
        self._clock = clock
        self._by_token: dict[str, Session] = {}

    def __repr__(self) -> str:  # never the password
        return (
            f"Sessions(count={len(self._by_token)}, password={'set' if self._password else 'none'})"
        )

    @property
    def password_required(self) -> bool:
        """True when the pages ask for a password."""
        return self._password is not None

    def get(self, token: str | None) -> Session | None:
        """The live session of a cookie value, or None."""
        if not token:
            return None
        session = self._by_token.get(token)
        now = self._clock()
        if session is None or now - session.seen > self._ttl_s:
            self._by_token.pop(token, None)
            return None
        session.seen = now
        return session

    def new(self, *, authenticated: bool | None = None) -> Session:
        """A fresh session with its own random token and CSRF token."""
        if len(self._by_token) >= self._limit:
            oldest = min(self._by_token.values(), key=lambda s: s.seen)
            del self._by_token[oldest.token]
        session = Session(
            token=secrets.token_urlsafe(32),
            csrf=secrets.token_urlsafe(32),
            authenticated=self._password is None if authenticated is None else authenticated,
            seen=self._clock(),
        )
        self._by_token[session.token] = session
        return session

    def password_ok(self, given: str) -> bool:
        """Constant-time comparison with the password of the environment."""
        if self._password is None:
            return True
        return hmac.compare_digest(self._password, given.encode("utf-8"))

    def login(self, old: Session | None) -> Session:
        """A new authenticated session replacing `old` (a new token defeats session fixation)."""
        if old is not None:
            self._by_token.pop(old.token, None)
        return self.new(authenticated=True)

    def logout(self, session: Session) -> None:
        """Forget a session."""
        self._by_token.pop(session.token, None)


class LoginThrottle:
    """At most `attempts` wrong passwords per client address in any `window_s` seconds."""

    def __init__(
        self,
        attempts: int = 5,
        window_s: float = 60.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._attempts = attempts
        self._window_s = window_s
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, client: str) -> deque[float]:
        now = self._clock()
        failures = self._failures.setdefault(client, deque())
        while failures and now - failures[0] >= self._window_s:
            failures.popleft()
        return failures

    def blocked_for(self, client: str) -> float:
        """Seconds until `client` may try again (0: now)."""
        failures = self._recent(client)
        if len(failures) < self._attempts:
            return 0.0
        return max(0.0, failures[0] + self._window_s - self._clock())

    def failed(self, client: str) -> None:
        """Count one wrong password."""
        self._recent(client).append(self._clock())
        if len(self._failures) > 10_000:  # many addresses: forget the quiet ones
            self._failures = {k: v for k, v in self._failures.items() if v}

    def succeeded(self, client: str) -> None:
        """A right password clears the address's count."""
        self._failures.pop(client, None)
