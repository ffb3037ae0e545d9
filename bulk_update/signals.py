"""Ctrl-C and SIGTERM as a graceful stop, on every system.

asyncio's `loop.add_signal_handler` exists only on Unix event loops; Windows' raise
NotImplementedError (and have no SIGTERM). There a plain `signal.signal` handler hands the
call to the loop thread-safely instead, so the first Ctrl-C still finishes the requests in
flight and the second still stops at once.
"""

from __future__ import annotations

import asyncio
import functools
import signal
from collections.abc import Callable
from typing import Any

__all__ = ["on_stop_signals"]

#: The signals that ask for a stop, where they exist (Windows has no SIGTERM to catch).
STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM") if hasattr(signal, name)
)


def on_stop_signals(
    loop: asyncio.AbstractEventLoop, callback: Callable[[str], object]
) -> Callable[[], None]:
    """Call `callback(signal name)` on `loop`'s thread at every SIGINT and SIGTERM.

    Returns the function that takes the handlers away again (the previous ones back).
    """
    undo: list[Callable[[], Any]] = []
    for sig in STOP_SIGNALS:
        try:
            loop.add_signal_handler(sig, callback, sig.name)
            undo.append(functools.partial(loop.remove_signal_handler, sig))
        except (NotImplementedError, RuntimeError):
            # Windows' event loops; the handler runs in the main thread between bytecodes,
            # so it only schedules the call (the loop's own self-pipe wakes it up).
            def handler(signum: int, frame: object, name: str = sig.name) -> None:
                loop.call_soon_threadsafe(callback, name)

            previous = signal.signal(sig, handler)
            undo.append(functools.partial(signal.signal, sig, previous))

    def remove() -> None:
        for step in undo:
            step()

    return remove
