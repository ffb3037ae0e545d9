"""Warnings from libraries as the tool's own log lines, never raw on stderr.

A raw `UserWarning` line names a file inside the installed library (a venv path) and breaks
`--log-format json`, whose every stderr line must be JSON. The reader turns the warnings it
expects (openpyxl's, about cells) into log lines naming the file and worksheet; this is the
net for any other: the command line and the web server run inside `warnings_logged()`.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from typing import TextIO

__all__ = ["warnings_logged"]

log = logging.getLogger("bulk_update")


def _show(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    # The library's file and line mean nothing to the person running the tool: left out.
    log.warning(
        "a library warns: %s (%s)",
        message,
        category.__name__,
        extra={"event": "warning", "fields": {"category": category.__name__}},
    )


@contextlib.contextmanager
def warnings_logged() -> Iterator[None]:
    """Within the block, every warning shown becomes a log line of the `bulk_update` logger."""
    previous = warnings.showwarning
    warnings.showwarning = _show
    try:
        yield
    finally:
        warnings.showwarning = previous
