"""Standard output and error that a reader may close early (`bulk-update run ... | head`).

Also: a console that cannot show a character (a Windows console in cp1252 printing a Hebrew
name) gets its escape instead, and the run goes on.

A closed pipe says the reader has seen enough, not that anything went wrong: the run goes
on to the end (the report written, the journal recorded) and exits with its own status.
What it prints after the reader left goes nowhere.

Python's documented recipe (the note on SIGPIPE in the `signal` module's documentation) is
followed: the closed stream's file descriptor is pointed at `os.devnull`, so that neither
later writes nor the interpreter's own flush at exit fail ("Exception ignored ...
BrokenPipeError"). It relies on no signal: Windows has no SIGPIPE, and Python ignores it
elsewhere, so a write to a closed pipe raises an error everywhere.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from collections.abc import Iterable, Iterator
from typing import Any, TextIO, cast


def is_closed_pipe(exc: OSError) -> bool:
    """Whether a write failed because the reading end of the pipe is gone.

    Windows reports it as EINVAL (the C runtime's errno for ERROR_NO_DATA, "the pipe is
    being closed") rather than EPIPE.
    """
    if isinstance(exc, BrokenPipeError):
        return True
    return sys.platform == "win32" and exc.errno == errno.EINVAL


def shown_in(text: str, stream: TextIO) -> str:
    """`text` with what `stream`'s encoding cannot hold spelled as escapes (`\\u05e2`)."""
    encoding = getattr(stream, "encoding", None) or "ascii"
    return text.encode(encoding, "backslashreplace").decode(encoding)


class ClosablePipe:
    """A text stream standing in for sys.stdout or sys.stderr; quiet once its reader left.

    Everything but writing and flushing (fileno, isatty, encoding, ...) is the wrapped
    stream's own, so a progress bar or a logging handler sees the real stream.
    """

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.closed_early = False

    def write(self, text: str) -> int:
        """Write `text`, or drop it once the reader is gone (counted as written).

        A character the console's encoding cannot show (a Hebrew name on a Windows console
        in cp1252) is written as its escape (`\\u05e2`): output degrades, the run goes on.
        """
        if not self.closed_early:
            try:
                try:
                    return self.stream.write(text)
                except UnicodeEncodeError:
                    return self.stream.write(shown_in(text, self.stream))
            except OSError as exc:
                if not is_closed_pipe(exc):
                    raise
                self._to_devnull()
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        """Write each of `lines` (no newlines added)."""
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        """Flush the wrapped stream, unless its reader is gone."""
        if self.closed_early:
            return
        try:
            self.stream.flush()
        except OSError as exc:
            if not is_closed_pipe(exc):
                raise
            self._to_devnull()

    def _to_devnull(self) -> None:
        self.closed_early = True
        try:
            fd = self.stream.fileno()
        except (OSError, ValueError):  # no descriptor (a test's capture): nothing to flush
            return
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, fd)
        finally:
            os.close(devnull)
        # What the failed write left in the stream's buffer now goes to devnull, not at exit.
        with contextlib.suppress(OSError, ValueError):
            self.stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


@contextlib.contextmanager
def closable_standard_streams() -> Iterator[None]:
    """sys.stdout and sys.stderr as `ClosablePipe`s for the duration; as they were after.

    Both are flushed on the way out: what is still buffered must meet a closed pipe here,
    not in the interpreter's own flush at exit.
    """
    stdout, stderr = sys.stdout, sys.stderr
    for stream in (stdout, stderr):
        # A console that cannot show a character never stops a run (writes that bypass the
        # wrapper, such as the interpreter's own, degrade the same way).
        with contextlib.suppress(AttributeError, ValueError, OSError):
            stream.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]
    pipes = [ClosablePipe(s) for s in (stdout, stderr) if s is not None]  # None: pythonw
    if stdout is not None:
        sys.stdout = cast(TextIO, pipes[0])
    if stderr is not None:
        sys.stderr = cast(TextIO, pipes[-1])
    try:
        yield
    finally:
        for pipe in pipes:
            with contextlib.suppress(OSError, ValueError):  # a stream closed: nothing to do
                pipe.flush()
        sys.stdout, sys.stderr = stdout, stderr
