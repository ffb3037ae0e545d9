"""A local stand-in for the Comeet API, for the demo, the tests and the benchmarks.

It answers `PATCH /candidates/{uid}` and `GET` (with Comeet's read model) as the API
documents: it checks the bearer token (HS256, `iss`, `exp`), validates the body field by
field, answers 404 for unknown uids, 401 `duplicate_candidate` for merged ones, 429
`too_many_requests` past its own sliding window (reads count in it), and can inject faults
(5xx, 429, dropped connections, slow answers, PATCHes applied and answered late, a clock
set wrong). It binds 127.0.0.1 only and keeps everything in memory.

- `state`: what it knows and was sent (`SandboxState`, `Faults`), and the seed file;
- `rules`: the API's rules for a PATCH body, and how a valid one is applied;
- `read`: what a GET answers (the read model, web-page numbers, expiring resume links);
- `app`: the aiohttp application (tokens, the rate window, faults);
- `servers`: serving it in an event loop, in a thread, or until Ctrl-C.
"""

from .app import make_app
from .servers import SandboxServer, ThreadedSandbox, serve
from .state import (
    DEMO_API_KEY,
    DEMO_SECRET,
    Faults,
    ReceivedRequest,
    SandboxState,
    load_seed,
)

__all__ = [
    "DEMO_API_KEY",
    "DEMO_SECRET",
    "Faults",
    "ReceivedRequest",
    "SandboxServer",
    "SandboxState",
    "ThreadedSandbox",
    "load_seed",
    "make_app",
    "serve",
]
