"""`bulk-update serve`: start the page (and, with --sandbox, the sandbox API beside it)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import TextIO

from aiohttp import web

from ..auth import Credentials
from ..config import Settings
from ..errors import CannotStartError, CredentialsError
from ..signals import on_stop_signals
from ..warnlog import warnings_logged
from .app import create_app
from .security import PASSWORD_VAR, check_bind, is_loopback, public_url_warning
from .state import STATE, WebConfig, WebState

__all__ = ["sample_folder", "serve"]

log = logging.getLogger("bulk_update.web")


def sample_folder() -> Path | None:
    """`sample_data/` of a source checkout (the sandbox's demo sheets), if there is one."""
    folder = Path(__file__).resolve().parents[2] / "sample_data"
    return folder if folder.is_dir() else None


def serve(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    sandbox: bool = False,
    files_dir: Path | None = None,
    max_upload_mb: float = 20.0,
    env: dict[str, str] | None = None,
    out: TextIO = sys.stdout,
) -> None:
    """Serve the page until Ctrl-C or SIGTERM; raises CannotStartError (exit 2) before that.

    Beyond loopback it needs `BULK_UPDATE_WEB_PASSWORD`. Without --sandbox, credentials come
    from the environment; without them the page previews sheets but cannot send them.
    """
    environ = dict(os.environ if env is None else env)
    password = environ.get(PASSWORD_VAR) or None
    check_bind(host, password)
    if max_upload_mb <= 0:
        raise CannotStartError(
            "--max-upload-mb must be more than 0", fix="give a size in MB, e.g. 20"
        )
    credentials: Credentials | None
    if sandbox:
        from ..sandbox import DEMO_API_KEY, DEMO_SECRET

        credentials = Credentials(DEMO_API_KEY, DEMO_SECRET)
        files_dir = files_dir or sample_folder() or Path.cwd()
    else:
        try:
            credentials = Credentials.from_env(environ)
        except CredentialsError:
            credentials = None
            print(
                "No COMEET_API_KEY / COMEET_SECRET: the page previews sheets but cannot send "
                "them. Export both and start it again to send.",
                file=out,
            )
    files_dir = (files_dir or Path.cwd()).resolve()
    if not files_dir.is_dir():
        raise CannotStartError(
            f"--files-dir {files_dir} is not a folder",
            fix="give the folder where the sheets' Resume, Picture and Files paths start",
        )
    config = WebConfig(
        settings=settings,
        credentials=credentials,
        host=host,
        password=password,
        use_journal=not sandbox,  # as `run --sandbox`: the sandbox forgets, so no journal
        sandbox=sandbox,
        files_dir=files_dir,
        max_upload_bytes=int(max_upload_mb * (1 << 20)),
    )
    with contextlib.suppress(KeyboardInterrupt), warnings_logged():
        asyncio.run(_serve(config, port, out))


async def _serve(config: WebConfig, port: int, out: TextIO) -> None:
    async with contextlib.AsyncExitStack() as stack:
        if config.sandbox:
            from ..sandbox import SandboxServer, load_seed

            server = await stack.enter_async_context(
                SandboxServer(load_seed(), rate=config.settings.rate)
            )
            config = _with_base_url(config, server.base_url)  # reached directly, never by proxy
        app = create_app(config)
        state = app[STATE]
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        try:
            await web.TCPSite(runner, config.host, port).start()
        except OSError as exc:
            raise CannotStartError(
                f"the page cannot listen on {config.host}:{port} ({exc.strerror})",
                fix="choose another port with --port N (or stop what is using this one)",
            ) from None
        bound = runner.addresses[0][1] if runner.addresses else port
        shown = config.host if is_loopback(config.host) else f"{config.host} (every address)"
        url_host = f"[{config.host}]" if ":" in config.host else config.host
        print(f"Bulk update page at http://{url_host}:{bound}/  (on {shown})", file=out)
        public_url = config.settings.public_url
        if public_url:
            secure = " (cookies Secure)" if public_url.startswith("https:") else ""
            print(f"Also answers as {public_url}/ behind the reverse proxy{secure}", file=out)
        warning = public_url_warning(public_url, config.password)
        if warning:
            print(warning, file=out)
        if config.sandbox:
            print(
                f"Sandbox mode: runs go to the stand-in API at {config.settings.base_url}", file=out
            )
        if config.password:
            print(f"The page asks for the password in {PASSWORD_VAR}.", file=out)
        print(f"Sheets' file paths are looked up in {config.files_dir}", file=out)
        print("Press Ctrl-C to stop (runs in progress are stopped gracefully).", file=out)
        out.flush()
        await _wait_for_signal()
        print("Stopping: finishing the runs in progress...", file=out, flush=True)
        # A second Ctrl-C while waiting stops the runs at once (their reports are written).
        on_stop_signals(asyncio.get_running_loop(), lambda _: _interrupt_all(state))
        await asyncio.to_thread(state.runs.shutdown)


def _interrupt_all(state: WebState) -> None:
    for run in state.runs.recent():
        run.interrupt()


async def _wait_for_signal() -> None:
    stop = asyncio.Event()
    remove = on_stop_signals(asyncio.get_running_loop(), lambda _: stop.set())
    try:
        await stop.wait()
    finally:
        remove()


def _with_base_url(config: WebConfig, base_url: str) -> WebConfig:
    return replace(config, settings=config.settings.with_overrides(base_url=base_url, direct=True))
