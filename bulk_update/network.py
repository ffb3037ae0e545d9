"""The HTTP session a run talks to Comeet over, on a company's network (contract section 3).

A corporate network puts a proxy between the machine and the internet and often a CA of its
own in front of every https site. By default the session follows the environment, as curl
and pip do: `HTTPS_PROXY` / `HTTP_PROXY` / `NO_PROXY`, and the system's CAs (`SSL_CERT_FILE`).
`[api] proxy` overrides the variables; `[api] ca_bundle` adds a CA file to the system's.
A proxy URL may carry a user and password: they go to the proxy in its
`Proxy-Authorization` header and nowhere else (`redact_url` is how a proxy is shown).
"""

from __future__ import annotations

import ssl
import warnings
from pathlib import Path
from urllib.parse import unquote, urlsplit

import aiohttp

from .errors import ConfigError

__all__ = ["ca_bundle_problem", "client_session", "proxy_problem", "redact_url", "ssl_context"]


def redact_url(url: str) -> str:
    """`url` with any `user:password@` replaced by `***@`, fit to print or log."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"***@{host}").geturl()


def proxy_problem(url: str) -> str | None:
    """Why `url` cannot be an `[api] proxy` (shown without its credentials), or None."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        return (
            f"api.proxy '{redact_url(url)}' is not an http(s) URL (such as http://proxy.corp:3128)"
        )
    return None


def ssl_context(ca_bundle: Path) -> ssl.SSLContext:
    """The system's CAs plus those of `ca_bundle` (PEM); ConfigError naming the key if unusable."""
    problem = ca_bundle_problem(ca_bundle)
    if problem:
        raise ConfigError(problem, fix="point api.ca_bundle at your company's CA file (PEM)")
    context = ssl.create_default_context()
    context.load_verify_locations(cafile=str(ca_bundle))
    return context


def ca_bundle_problem(ca_bundle: Path) -> str | None:
    """Why `ca_bundle` cannot be used as a CA file, or None."""
    try:
        ssl.create_default_context(cafile=str(ca_bundle))
    except FileNotFoundError:
        return f"api.ca_bundle '{ca_bundle}' does not exist"
    except (OSError, ssl.SSLError) as exc:
        # OSError: unreadable; SSLError: not a PEM file of certificates.
        reason = getattr(exc, "strerror", None) or "it holds no PEM certificate"
        return f"api.ca_bundle '{ca_bundle}' cannot be used: {reason}"
    return None


def client_session(
    proxy: str | None = None, ca_bundle: Path | None = None, *, direct: bool = False
) -> aiohttp.ClientSession:
    """A session that reaches the API through the company's proxy and trusts its CA.

    `proxy` (`[api] proxy`) is used for every request; without it the environment's
    `HTTPS_PROXY` / `HTTP_PROXY` / `NO_PROXY` apply. `direct` ignores every proxy: the
    in-process sandbox is in this very process, no proxy could reach it.
    """
    connector = aiohttp.TCPConnector(ssl=ssl_context(ca_bundle)) if ca_bundle else None
    if direct:
        return aiohttp.ClientSession(connector=connector)
    if proxy is None:
        return aiohttp.ClientSession(connector=connector, trust_env=True)
    parts = urlsplit(proxy)
    with warnings.catch_warnings():
        # aiohttp 3.14 deprecates BasicAuth for 4.0, whose replacement older versions lack.
        warnings.simplefilter("ignore", DeprecationWarning)
        auth = None
        if parts.username is not None:
            # Given apart from the URL, so a URL aiohttp may quote in an error holds none.
            auth = aiohttp.BasicAuth(unquote(parts.username), unquote(parts.password or ""))
            proxy = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
        return aiohttp.ClientSession(connector=connector, proxy=proxy, proxy_auth=auth)
