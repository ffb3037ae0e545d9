"""The one exception root of bulk-update, grouped by what the caller should do.

::

    BulkUpdateError                 anything this package raises on purpose
    ├── CannotStartError            exit 2: the run could not start; nothing was sent
    │   ├── ConfigError             the TOML file or a flag is wrong (names the key)
    │   ├── CredentialsError        COMEET_API_KEY / COMEET_SECRET missing or unusable
    │   ├── InputError              the sheet cannot be read (names the row / column)
    │   │   └── UnknownColumnError  a header is neither a field, nor mapped, nor ignored
    │   └── LockError               another run holds the state dir's lock
    └── AbortedError                exit 3: stopped part way; the report says what was not sent
        └── RunInterrupted          stopped at once (a second Ctrl-C): in-flight requests cut

A run that stops gracefully (the first Ctrl-C or SIGTERM, or credentials refused twice)
raises nothing: its RunSummary says `aborted`, with the reason, and its exit code is 3.

Row-level problems (an invalid cell, a 404, a 5xx that never cleared) are not exceptions:
they are outcomes in the results sheet. Every message says how to fix the problem and never
carries a secret or a token.
"""

from __future__ import annotations

from typing import Any


class BulkUpdateError(Exception):
    """Root of every error bulk-update raises on purpose."""

    exit_code: int = 2

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        self.message = message
        self.fix = fix
        super().__init__(message if fix is None else f"{message}\n  Fix: {fix}")

    def with_fix(self, fix: str) -> BulkUpdateError:
        """This error with `fix` as its fix (for a caller that knows a better one)."""
        self.fix = fix
        self.args = (f"{self.message}\n  Fix: {fix}",)
        return self


class CannotStartError(BulkUpdateError):
    """The run could not start; nothing was sent (exit status 2)."""

    exit_code = 2


class ConfigError(CannotStartError):
    """The configuration file or a command-line option is wrong."""


class CredentialsError(CannotStartError):
    """Credentials are missing or unusable."""


class InputError(CannotStartError):
    """The input sheet cannot be read or has a problem that stops the whole run."""


class UnknownColumnError(InputError):
    """The header row cannot be used: every problem of it, at once.

    `unknown`: each header that is neither an API field, nor mapped in [columns], nor
    ignored, with the closest field (or None). `others`: the row's other problems, as
    messages (a missing uid column, a [columns] entry that matches no header...).
    `header` and `suggestion` are the first unknown column's.
    """

    def __init__(
        self,
        header: str,
        suggestion: str | None,
        *,
        more: tuple[tuple[str, str | None], ...] = (),
        others: tuple[str, ...] = (),
        fixes: tuple[str, ...] = (),
    ) -> None:
        self.header = header
        self.suggestion = suggestion
        self.unknown = ((header, suggestion), *more)
        self.others = others
        lines = [unknown_column_message(h, s) for h, s in self.unknown] + list(others)
        fix = (
            "rename each such column to an API field name, map it under [columns] in the "
            "config file, or list it in [input] ignore_columns"
        )
        super().__init__("\n".join(lines), fix="; ".join((fix, *fixes)))


def unknown_column_message(header: str, suggestion: str | None) -> str:
    """What is said of one header that is no field: `Column 'X' is not a Comeet field.`"""
    hint = f" Did you mean '{suggestion}'?" if suggestion else ""
    return f"Column '{header}' is not a Comeet field.{hint}"


class LockError(CannotStartError):
    """Another run holds the lock of this state dir and API key."""


class AbortedError(BulkUpdateError):
    """The run stopped part way (exit status 3); the report lists the rows not sent."""

    exit_code = 3


class RunInterrupted(AbortedError):
    """The run was stopped at once; `summary` (a RunSummary) is what the report holds."""

    summary: Any = None
