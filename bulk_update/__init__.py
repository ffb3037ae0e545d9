"""bulk-update: apply a spreadsheet of candidate changes to the Comeet recruiting API.

The library is the product; the command line is a thin layer over it::

    import bulk_update as bu

    settings = bu.load_config(None)                  # ./bulk_update.toml or defaults
    sheet = bu.load("candidates.xlsx", settings)     # read + match columns (InputError)
    plan = bu.plan(sheet, settings)                  # validate + minimal patches
    summary = bu.run(plan, settings, bu.Credentials.from_env())
    print(summary.counts, summary.exit_code)

Re-runs that send only what changed, as the command line and the web page do: `open_run`
takes the run lock, opens the journal and plans against it; `dry_run` previews, by the
fastest engine that fits (see the README's "Python API").
"""

from .auth import Credentials
from .config import Settings, load_config
from .errors import (
    AbortedError,
    BulkUpdateError,
    CannotStartError,
    ConfigError,
    CredentialsError,
    InputError,
    LockError,
    RunInterrupted,
    UnknownColumnError,
)
from .journal import Journal, RunLock
from .models import (
    Outcome,
    Patch,
    PlannedRow,
    Problem,
    Rate,
    RowResult,
    RunSummary,
    SheetRow,
)
from .pipeline import LoadedSheet, Plan, Sheet, load, plan, run, run_async
from .version import __version__
from .wiring import DryRun, OpenRun, dry_run, dry_run_async, open_run

__all__ = [
    "AbortedError",
    "BulkUpdateError",
    "CannotStartError",
    "ConfigError",
    "Credentials",
    "CredentialsError",
    "DryRun",
    "InputError",
    "Journal",
    "LoadedSheet",
    "LockError",
    "OpenRun",
    "Outcome",
    "Patch",
    "Plan",
    "PlannedRow",
    "Problem",
    "Rate",
    "RowResult",
    "RunInterrupted",
    "RunLock",
    "RunSummary",
    "Settings",
    "Sheet",
    "SheetRow",
    "UnknownColumnError",
    "__version__",
    "dry_run",
    "dry_run_async",
    "load",
    "load_config",
    "open_run",
    "plan",
    "run",
    "run_async",
]
