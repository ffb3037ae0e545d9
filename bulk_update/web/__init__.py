"""The web page for recruiters: upload a sheet, preview it, run it, download the results.

`bulk-update serve` starts it (see `server.serve`); `create_app` gives the aiohttp
application for tests. It does the whole job with the library underneath: no rule is
written here a second time.
"""

from __future__ import annotations

from .app import create_app
from .security import PASSWORD_VAR, check_bind
from .server import serve
from .state import WebConfig

__all__ = ["PASSWORD_VAR", "WebConfig", "check_bind", "create_app", "serve"]
