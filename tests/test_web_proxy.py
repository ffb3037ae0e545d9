"""The page behind a team's reverse proxy (`serve --public-url`, `[web] public_url`).

A small reverse proxy written here (aiohttp, on 127.0.0.1) forwards to the page, either
passing the public `Host` on (as the README's nginx block does) or keeping its own
(`127.0.0.1:<port>`, nginx's default). The "browser" talks to the proxy with the public
`Origin`, as a browser on https://bulk.example.com would. Cookies are handled by hand so that
their `Secure` flag can be read (the proxy itself is plain http here: the flag is the check).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import FormData, web
from aiohttp.test_utils import TestServer

from bulk_update.config import Settings, parse_config, public_url
from bulk_update.errors import ConfigError
from bulk_update.web import WebConfig, create_app
from bulk_update.web.security import host_allowed, is_public_origin, public_url_warning

from .conftest import SAMPLE

PUBLIC = "https://bulk.example.com"
CANDIDATES = (SAMPLE / "candidates.csv").read_bytes()
#: Headers that belong to one connection, not to the request (RFC 9110 7.6.1).
_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "upgrade"}
)


@asynccontextmanager
async def reverse_proxy(upstream: str, *, pass_host: bool) -> AsyncIterator[str]:
    """A reverse proxy on 127.0.0.1 forwarding everything to `upstream`; yields its URL."""

    async def forward(request: web.Request) -> web.Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        headers["Host"] = "bulk.example.com" if pass_host else upstream.split("//", 1)[1]
        headers["X-Forwarded-Proto"] = "https"
        headers["X-Forwarded-For"] = request.remote or ""
        async with session.request(
            request.method,
            upstream + request.path_qs,
            headers=headers,
            data=await request.read(),
            allow_redirects=False,
        ) as resp:
            body = await resp.read()
            answer = web.Response(status=resp.status, body=body)
            for name, value in resp.headers.items():
                if name.lower() not in _HOP | {"content-encoding"}:
                    answer.headers.add(name, value)
            return answer

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            yield f"http://127.0.0.1:{runner.addresses[0][1]}"
        finally:
            await runner.cleanup()


@dataclass
class Browser:
    """A browser on the public address: the public Origin on forms, cookies kept by hand."""

    session: aiohttp.ClientSession
    base: str
    cookie: str = ""
    csrf: str = ""
    set_cookies: list[str] = field(default_factory=list)

    async def request(self, method: str, path: str, **kwargs: Any) -> tuple[int, str, str]:
        headers = dict(kwargs.pop("headers", {}))
        if self.cookie:
            headers["Cookie"] = self.cookie
        if method == "POST":
            headers.setdefault("Origin", PUBLIC)
            headers.setdefault("Sec-Fetch-Site", "same-origin")
        async with self.session.request(
            method, self.base + path, headers=headers, allow_redirects=False, **kwargs
        ) as resp:
            text = await resp.text()
            for value in resp.headers.getall("Set-Cookie", []):
                self.set_cookies.append(value)
                self.cookie = value.split(";", 1)[0]
            found = re.search(r'name="csrf_token" value="([^"]+)"', text)
            if found:
                self.csrf = found.group(1)
            return resp.status, resp.headers.get("Location", ""), text

    async def upload(self, **headers: str) -> tuple[int, str, str]:
        form = FormData()
        form.add_field("csrf_token", self.csrf)
        form.add_field("sheet", CANDIDATES, filename="candidates.csv")
        return await self.request("POST", "/upload", data=form, headers=headers)


@asynccontextmanager
async def behind_proxy(
    tmp_path: Path, *, public: str | None, pass_host: bool, password: str | None = None
) -> AsyncIterator[Browser]:
    """The page (with `public` as its public URL) behind the proxy, and a browser on it."""
    config = WebConfig(
        settings=Settings(
            base_url="http://127.0.0.1:1", state_dir=tmp_path / "state"
        ).with_overrides(public_url=public),
        password=password,
        files_dir=SAMPLE,
        upload_parent=tmp_path / "uploads",
        reports_dir=tmp_path / "reports",
    )
    async with TestServer(create_app(config), host="127.0.0.1") as page:
        upstream = f"http://127.0.0.1:{page.port}"
        async with (
            reverse_proxy(upstream, pass_host=pass_host) as proxy,
            aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session,
        ):
            yield Browser(session, proxy)


@pytest.mark.parametrize("pass_host", [True, False], ids=["public-host", "kept-host"])
async def test_the_page_works_behind_the_proxy_with_public_url(
    tmp_path: Path, pass_host: bool
) -> None:
    async with behind_proxy(tmp_path, public=PUBLIC, pass_host=pass_host) as browser:
        status, _, html = await browser.request("GET", "/")
        assert status == 200 and browser.csrf and "Upload" in html
        assert browser.set_cookies and all(c.endswith("; Secure") for c in browser.set_cookies)
        status, where, _ = await browser.upload()
        assert status == 303 and where.endswith("/preview"), where
        status, _, html = await browser.request("GET", where)
        assert status == 200 and "Preview" in html
        # Another site's form is still refused, and so is another Host name.
        status, _, html = await browser.upload(Origin="https://evil.example")
        assert status == 403 and "another site" in html
        for origin in ("http://bulk.example.com", "https://bulk.example.com:8443"):
            status, _, _ = await browser.upload(Origin=origin)  # https and its port exactly
            assert status == 403, origin


@pytest.mark.parametrize("pass_host", [True, False], ids=["public-host", "kept-host"])
async def test_sign_in_through_the_proxy_with_public_url(tmp_path: Path, pass_host: bool) -> None:
    async with behind_proxy(
        tmp_path, public=PUBLIC, pass_host=pass_host, password="correct horse"
    ) as browser:
        status, where, _ = await browser.request("GET", "/")
        assert status == 303 and where == "/login"
        await browser.request("GET", "/login")
        before = browser.cookie
        status, where, _ = await browser.request(
            "POST", "/login", data={"csrf_token": browser.csrf, "password": "correct horse"}
        )
        assert status == 303 and where == "/", where
        assert browser.cookie != before and browser.set_cookies[-1].endswith("; Secure")
        status, _, html = await browser.request("GET", "/")
        assert status == 200 and "Sign out" in html
        status, where, _ = await browser.upload()
        assert status == 303 and where.endswith("/preview")


async def test_without_public_url_the_proxy_gets_421_or_403(tmp_path: Path) -> None:
    # The proxy passes the public Host: the page does not answer it (DNS rebinding defence).
    async with behind_proxy(tmp_path, public=None, pass_host=True) as browser:
        status, _, text = await browser.request("GET", "/")
        assert status == 421 and "answers only on 127.0.0.1" in text
    # The proxy keeps its own Host: the pages show, but the browser's Origin is refused.
    async with behind_proxy(tmp_path, public=None, pass_host=False, password="pw") as browser:
        status, _, _ = await browser.request("GET", "/login")
        assert status == 200 and browser.csrf
        assert not any("Secure" in c for c in browser.set_cookies)
        status, _, html = await browser.request(
            "POST", "/login", data={"csrf_token": browser.csrf, "password": "pw"}
        )
        assert status == 403 and "another site" in html


async def test_an_http_public_url_leaves_cookies_without_secure(tmp_path: Path) -> None:
    async with behind_proxy(tmp_path, public="http://bulk.example.com", pass_host=True) as browser:
        status, _, _ = await browser.request("GET", "/")
        assert status == 200
        assert browser.set_cookies and not any("Secure" in c for c in browser.set_cookies)
        status, _, _ = await browser.upload(Origin="http://bulk.example.com")
        assert status == 303


def test_public_url_is_an_address_alone() -> None:
    assert public_url("https://Bulk.Example.com/", "--public-url") == PUBLIC
    assert public_url("http://bulk.example.com:8443", "x") == "http://bulk.example.com:8443"
    settings = parse_config({"web": {"public_url": "https://bulk.example.com"}})
    assert settings.public_url == PUBLIC
    assert Settings().public_url is None
    for bad in ("bulk.example.com", "ftp://bulk.example.com", "https://", "https://h:x"):
        with pytest.raises(ConfigError, match="is not an http"):
            public_url(bad, "--public-url")
    for bad in ("https://h/bulk", "https://h/?a=1", "https://u@h", "https://h/#x"):
        with pytest.raises(ConfigError, match="without a path, query or user"):
            public_url(bad, "--public-url")
    with pytest.raises(ConfigError, match=r"web\.public_url 'https://h/bulk' must be"):
        parse_config({"web": {"public_url": "https://h/bulk"}})
    with pytest.raises(ConfigError, match=r"--public-url 'ftp://h' is not"):
        Settings().with_overrides(public_url="ftp://h")


def test_host_and_origin_of_the_public_address() -> None:
    assert host_allowed("bulk.example.com", "127.0.0.1", PUBLIC)
    assert host_allowed("Bulk.Example.com:443", "127.0.0.1", PUBLIC)
    assert host_allowed("127.0.0.1:8080", "127.0.0.1", PUBLIC)
    assert not host_allowed("bulk.example.com", "127.0.0.1")
    assert not host_allowed("bulk.example.com:8443", "127.0.0.1", PUBLIC)
    assert not host_allowed("evil.example", "127.0.0.1", PUBLIC)
    assert is_public_origin("https://bulk.example.com", PUBLIC)
    assert is_public_origin("https://bulk.example.com:443", PUBLIC)
    assert not is_public_origin("http://bulk.example.com", PUBLIC)
    assert not is_public_origin("https://bulk.example.com.evil.example", PUBLIC)
    assert not is_public_origin("https://bulk.example.com", None)
    assert not is_public_origin(None, PUBLIC)
    assert "without a password" in str(public_url_warning(PUBLIC, None))
    assert public_url_warning(PUBLIC, "pw") is None and public_url_warning(None, None) is None
