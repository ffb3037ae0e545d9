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
    """A column header is neither an API field, nor mapped in [columns], nor ignored."""

    def __init__(self, header: str, suggestion: str | None) -> None:
        self.header = header
        self.suggestion = suggestion
        hint = f" Did you mean '{suggestion}'?" if suggestion else ""
        super().__init__(
            f"Column '{header}' is not a Comeet field.{hint}",
            fix=(
                "rename the column to an API field name, map it under [columns] in the config "
                "file, or list it in [input] ignore_columns"
            ),
        )


class LockError(CannotStartError):
    """Another run holds the lock of this state dir and API key."""


class AbortedError(BulkUpdateError):
    """The run stopped part way (exit status 3); the report lists the rows not sent."""

    exit_code = 3


class RunInterrupted(AbortedError):
    """The run was stopped at once; `summary` (a RunSummary) is what the report holds."""

    summary: Any = None
