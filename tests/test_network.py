"""Corporate networks: a forward proxy (HTTP_PROXY / NO_PROXY / `[api] proxy`) and a
company CA (`[api] ca_bundle`, SSL_CERT_FILE), each run of the command line in a subprocess
against the sandbox on 127.0.0.1, seen from the proxy's and the sandbox's side.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import os
import ssl
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
import trustme
from aiohttp import web

import bulk_update as bu
from bulk_update.config import Settings, parse_config
from bulk_update.errors import ConfigError
from bulk_update.network import redact_url
from bulk_update.sandbox import DEMO_API_KEY, DEMO_SECRET, SandboxServer, SandboxState

from .conftest import ROOT
from .test_messages import check

UIDS = [f"AE.{n}" for n in range(17931, 17937)]
PASSWORD = "s3cr3t-Pr0xy-pw"


@dataclass
class Forwarder:
    """A forward proxy on 127.0.0.1: takes absolute-form requests and passes them on.

    With `upstream` it is instead a front that sends every request there (a TLS front for
    the sandbox). `auth` is the `Proxy-Authorization` it requires (407 without it).
    """

    upstream: str | None = None
    auth: str | None = None
    seen: list[str] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        if self.auth is not None and request.headers.get("Proxy-Authorization") != self.auth:
            return web.Response(status=407, headers={"Proxy-Authenticate": "Basic"})
        target = f"{self.upstream}{request.raw_path}" if self.upstream else request.raw_path
        self.seen.append(f"{request.method} {target}")
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() not in ("host", "proxy-authorization", "proxy-connection")
        }
        async with (
            aiohttp.ClientSession(auto_decompress=False) as session,
            session.request(
                request.method,
                target,
                headers=headers,
                data=await request.read(),
                allow_redirects=False,
            ) as answer,
        ):
            body = await answer.read()
            kept = {k: answer.headers[k] for k in ("Content-Type", "Date") if k in answer.headers}
            return web.Response(status=answer.status, body=body, headers=kept)


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxServer]:
    state = SandboxState()
    for uid in UIDS:
        state.candidates[uid] = {"uid": uid, "first_name": "Old", "last_name": "Name"}
    async with SandboxServer(state) as server:
        yield server


async def serve(forwarder: Forwarder, context: ssl.SSLContext | None = None) -> web.ServerRunner:
    runner = web.ServerRunner(web.Server(forwarder.handle), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context).start()
    scheme = "https" if context else "http"
    forwarder.url = f"{scheme}://127.0.0.1:{runner.addresses[0][1]}"
    return runner


@pytest.fixture
async def proxy() -> AsyncIterator[Forwarder]:
    forwarder = Forwarder()
    runner = await serve(forwarder)
    try:
        yield forwarder
    finally:
        await runner.cleanup()


@dataclass
class Ran:
    code: int
    out: str
    err: str


def sheet(tmp_path: Path) -> Path:
    path = tmp_path / "people.csv"
    lines = ["uid,first_name", *(f"{uid},New{n}" for n, uid in enumerate(UIDS))]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


async def run(tmp_path: Path, *args: str, env: Mapping[str, str] = {}) -> Ran:
    """`bulk-update run <sheet> ARGS` in a subprocess, the sandbox's credentials set."""
    full = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "COMEET_API_KEY": DEMO_API_KEY,
        "COMEET_SECRET": DEMO_SECRET,
        **env,
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bulk_update",
        "run",
        str(sheet(tmp_path)),
        "--state-dir",
        str(tmp_path / "state"),
        "--report",
        str(tmp_path / "report.csv"),
        *args,
        env=full,
        cwd=tmp_path,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return Ran(proc.returncode, out.decode(), err.decode())


def patched(server: SandboxServer) -> list[str]:
    return sorted(r.uid for r in server.state.requests)


async def test_http_proxy_carries_every_request_of_the_run(
    tmp_path: Path, sandbox: SandboxServer, proxy: Forwarder
) -> None:
    ran = await run(tmp_path, "--base-url", sandbox.base_url, env={"HTTP_PROXY": proxy.url})
    assert ran.code == 0, ran.err
    assert patched(sandbox) == UIDS
    assert sorted(proxy.seen) == sorted(
        f"PATCH {sandbox.base_url}/candidates/{uid}" for uid in UIDS
    )


async def test_no_proxy_covering_the_host_goes_direct(
    tmp_path: Path, sandbox: SandboxServer, proxy: Forwarder
) -> None:
    env = {"HTTP_PROXY": proxy.url, "NO_PROXY": "127.0.0.1"}
    ran = await run(tmp_path, "--base-url", sandbox.base_url, env=env)
    assert ran.code == 0, ran.err
    assert patched(sandbox) == UIDS
    assert proxy.seen == []


async def test_the_in_process_sandbox_is_reached_directly_whatever_the_proxy(
    tmp_path: Path, proxy: Forwarder
) -> None:
    (tmp_path / "bulk_update.toml").write_text(f'[api]\nproxy = "{proxy.url}"\n')
    env = {"HTTP_PROXY": proxy.url, "HTTPS_PROXY": proxy.url}
    ran = await run(tmp_path, "--sandbox", env=env)
    # The seed knows one of the sheet's uids: every row had the stand-in's own answer.
    assert ran.code == 1, ran.err
    assert "1 updated" in ran.out and "5 not_found" in ran.out and " 0 failed" in ran.out
    assert proxy.seen == []


async def test_api_proxy_overrides_the_environment_and_its_password_is_never_shown(
    tmp_path: Path, sandbox: SandboxServer, proxy: Forwarder
) -> None:
    proxy.auth = "Basic " + base64.b64encode(f"ops@corp:{PASSWORD}".encode()).decode()
    address = proxy.url.removeprefix("http://")
    (tmp_path / "bulk_update.toml").write_text(
        f'[api]\nproxy = "http://ops%40corp:{PASSWORD}@{address}"\n', encoding="utf-8"
    )
    # The environment's proxy is a port nobody listens on: the config's must win.
    env = {"HTTP_PROXY": "http://127.0.0.1:9", "NO_PROXY": ""}
    ran = await run(tmp_path, "--base-url", sandbox.base_url, env=env)
    assert ran.code == 0, ran.err
    assert len(proxy.seen) == len(UIDS) and patched(sandbox) == UIDS
    assert f"proxy: http://***@{address}" in ran.err
    json_run = await run(
        tmp_path, "--base-url", sandbox.base_url, "--full", "--log-format", "json", env=env
    )
    assert json_run.code == 0, json_run.err
    # Every file the runs wrote (reports, journal, logs, kept copies), the config aside.
    written = [
        p.read_bytes().decode("utf-8", "replace")
        for p in tmp_path.rglob("*")
        if p.is_file() and p.name != "bulk_update.toml"
    ]
    assert len(written) > 2
    for text in [ran.out, ran.err, json_run.out, json_run.err, *written]:
        assert PASSWORD not in text


async def test_a_proxy_refusing_the_password_fails_the_rows_without_showing_it(
    tmp_path: Path, sandbox: SandboxServer, proxy: Forwarder
) -> None:
    proxy.auth = "Basic something-else"
    address = proxy.url.removeprefix("http://")
    (tmp_path / "bulk_update.toml").write_text(
        f'[api]\nproxy = "http://ops:{PASSWORD}@{address}"\n\n[limits]\nmax_attempts = 1\n',
        encoding="utf-8",
    )
    ran = await run(tmp_path, "--base-url", sandbox.base_url)
    assert ran.code == 1, ran.err
    assert patched(sandbox) == []
    report = (tmp_path / "report.csv").read_text(encoding="utf-8")
    assert "407" in report
    assert PASSWORD not in ran.out + ran.err + report


async def test_the_library_run_the_page_uses_honours_the_proxy_too(
    tmp_path: Path, sandbox: SandboxServer, proxy: Forwarder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The web page's runs are the library's `run_async` without a session of their own."""
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    settings = Settings(base_url=sandbox.base_url, state_dir=tmp_path / "state")
    the_plan = bu.plan(bu.load(sheet(tmp_path), settings), settings)
    summary = await bu.run_async(
        the_plan, settings, bu.Credentials(DEMO_API_KEY, DEMO_SECRET), report_path=False
    )
    assert summary.exit_code == 0
    assert len(proxy.seen) == len(UIDS) and patched(sandbox) == UIDS


# --- the settings ---------------------------------------------------------------------------


def test_redact_url_hides_user_and_password() -> None:
    assert redact_url("http://u:p@proxy.corp:3128") == "http://***@proxy.corp:3128"
    assert redact_url("http://u@proxy.corp:3128/") == "http://***@proxy.corp:3128/"
    assert redact_url("http://proxy.corp:3128") == "http://proxy.corp:3128"


@pytest.mark.parametrize(
    "value", ["proxy.corp:3128", "socks5://u:pw1@proxy:1080", "http://", "http://h:99999"]
)
def test_a_proxy_that_is_not_an_http_url_is_a_config_error_without_its_password(
    value: str,
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"api": {"proxy": value}})
    assert "api.proxy" in caught.value.message and "pw1" not in caught.value.message
    check(caught.value.message.split("\n", 1)[1])  # the line under "has problems:"


def test_settings_never_show_the_proxy() -> None:
    settings = Settings(proxy=f"http://u:{PASSWORD}@proxy.corp:3128")
    assert PASSWORD not in repr(settings)


def test_a_missing_or_unusable_ca_bundle_is_a_config_error_naming_the_key(
    tmp_path: Path,
) -> None:
    missing = parse_config({"api": {"ca_bundle": "corp-ca.pem"}}, folder=tmp_path)
    assert missing.ca_bundle == tmp_path / "corp-ca.pem"  # from the config file's folder
    with pytest.raises(ConfigError, match=r"api\.ca_bundle .*corp-ca\.pem' does not exist") as no:
        missing.with_overrides()
    (tmp_path / "corp-ca.pem").write_text("not a certificate\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"api\.ca_bundle .* cannot be used") as bad:
        missing.with_overrides()
    check(no.value.message, bad.value.message)


# --- a company CA ---------------------------------------------------------------------------


@pytest.fixture
async def tls_sandbox(
    tmp_path: Path, sandbox: SandboxServer
) -> AsyncIterator[tuple[str, Path, SandboxServer]]:
    """The sandbox behind https on 127.0.0.1, its certificate signed by a CA of the test's
    own (as a company's network does it): the base URL and the CA's PEM file."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    ca_file = tmp_path / "corp-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    front = Forwarder(upstream=sandbox.base_url)
    runner = await serve(front, context)
    try:
        yield front.url, ca_file, sandbox
    finally:
        await runner.cleanup()


async def test_a_company_ca_is_needed_and_enough_for_its_https(
    tmp_path: Path, tls_sandbox: tuple[str, Path, SandboxServer]
) -> None:
    base_url, ca_file, sandbox = tls_sandbox
    config = tmp_path / "bulk_update.toml"
    config.write_text("[limits]\nmax_attempts = 1\n", encoding="utf-8")
    refused = await run(tmp_path, "--base-url", base_url)
    assert refused.code == 1, refused.err
    assert patched(sandbox) == []
    report = (tmp_path / "report.csv").read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(report.lstrip("\ufeff"))))
    assert {(r["outcome"], r["error"]) for r in rows} == {("failed", "tls_untrusted")}
    check(rows[0]["message"])
    assert "127.0.0.1" in rows[0]["message"] and "ca_bundle" in rows[0]["message"]
    assert "Traceback" not in refused.err

    with_env = await run(tmp_path, "--base-url", base_url, env={"SSL_CERT_FILE": str(ca_file)})
    assert with_env.code == 0, with_env.err
    assert patched(sandbox) == UIDS

    config.write_text(f'[api]\nca_bundle = "{ca_file.name}"\n', encoding="utf-8")
    with_config = await run(tmp_path, "--base-url", base_url, "--full")
    assert with_config.code == 0, with_config.err
    assert patched(sandbox) == sorted(UIDS * 2)
