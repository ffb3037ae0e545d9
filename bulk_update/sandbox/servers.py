"""Serving the sandbox on 127.0.0.1: in the caller's event loop, in a thread, or until Ctrl-C."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypedDict, Unpack

from aiohttp import web

from ..errors import CannotStartError
from ..models import Rate
from .app import make_app
from .state import DEMO_API_KEY, DEMO_SECRET, Faults, SandboxState, load_seed

__all__ = ["COMEET_RATE", "AppOptions", "SandboxServer", "ThreadedSandbox", "serve"]

COMEET_RATE = Rate(100, 60.0)  # Comeet's documented limit: what `serve` enforces by default


class AppOptions(TypedDict, total=False):
    """The options of `make_app`, passed through by both servers (its defaults apply)."""

    api_key: str
    secret: str
    rate: Rate | None
    faults: Faults | None
    clock: Callable[[], float]


class SandboxServer:
    """`async with SandboxServer(state) as server:` serves on 127.0.0.1 (`server.base_url`).

    `port=0` picks a free port. The other options are those of `make_app`.
    """

    def __init__(
        self, state: SandboxState | None = None, *, port: int = 0, **options: Unpack[AppOptions]
    ) -> None:
        self.state = state if state is not None else load_seed()
        self.port = port
        self.base_url = ""
        self._app_options = options
        self._runner: web.AppRunner | None = None

    def __repr__(self) -> str:  # never the secret
        return f"SandboxServer(base_url={self.base_url!r})"

    async def start(self) -> str:
        """Bind and serve; returns the base URL."""
        app = make_app(self.state, **self._app_options)
        # A short shutdown: a slow answer still in flight must not hold stop() for a minute.
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", self.port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        return self.base_url

    async def stop(self) -> None:
        """Stop serving (idempotent)."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> SandboxServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


class ThreadedSandbox:
    """The sandbox in a background thread with its own event loop (options: `SandboxServer`'s).

    For synchronous tests and for driving the command line in a subprocess::

        with ThreadedSandbox(state, rate=Rate(100, 5)) as sb:
            ... sb.base_url ...
        sb.state  # safe to read once stopped; while running use sb.snapshot()
    """

    def __init__(
        self, state: SandboxState | None = None, *, port: int = 0, **options: Unpack[AppOptions]
    ) -> None:
        self.server = SandboxServer(state, port=port, **options)
        self.state = self.server.state
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def __repr__(self) -> str:
        return f"ThreadedSandbox(base_url={self.base_url!r})"

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:<port>` once started."""
        return self.server.base_url

    def snapshot(self) -> SandboxState:
        """A consistent copy of the state, safe to take while the server runs."""
        return self.state.snapshot()

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self.server.start())
        except BaseException as exc:  # handed to start() in the caller's thread
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self.server.stop())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def start(self, timeout: float = 10.0) -> str:
        """Start the server thread; returns the base URL once it accepts connections."""
        if self._thread is not None:
            return self.base_url
        self._ready.clear()
        self._error = None
        self._thread = threading.Thread(target=self._main, name="bulk-update-sandbox", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError(f"the sandbox did not start within {timeout:g} s")
        if self._error is not None:
            self._thread.join()
            self._thread = None
            raise self._error
        return self.base_url

    def stop(self) -> None:
        """Stop the server and join its thread (idempotent)."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(15)
        self._thread = None

    def __enter__(self) -> ThreadedSandbox:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(port: int = 8765, seed: Path | None = None, rate: Rate | None = COMEET_RATE) -> None:
    """Serve the sandbox on 127.0.0.1 until Ctrl-C, printing its URL and demo credentials."""
    state = load_seed(seed)

    async def main() -> None:
        server = SandboxServer(state, port=port, rate=rate)
        try:
            await server.start()
        except OSError as exc:
            raise CannotStartError(
                f"the sandbox cannot listen on 127.0.0.1:{port} ({exc.strerror})",
                fix="choose another port with --port N (or stop what is using this one)",
            ) from None
        try:
            print(f"Sandbox Comeet API at {server.base_url}")
            limit = f"{rate.limit} requests per {rate.period:g} s" if rate else "none"
            print(f"{len(state.candidates)} candidates; rate limit: {limit}")
            print("Demo credentials (they open this sandbox only):")
            print(f"  export COMEET_API_KEY={DEMO_API_KEY}")
            print(f"  export COMEET_SECRET={DEMO_SECRET}")
            print(f"Then: bulk-update run sample_data/candidates.csv --base-url {server.base_url}")
            print("Press Ctrl-C to stop.", flush=True)
            await asyncio.Event().wait()
        finally:
            await server.stop()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        print("Sandbox stopped.")
