"""What the sandbox knows and what it was sent: its state, its faults, and the seed file.

`SandboxState` is what tests read to check, from the server's side, what arrived and what
was applied; `load_seed` makes a fresh one from a candidates JSON file.
"""

from __future__ import annotations

import copy
import importlib.resources
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError

__all__ = [
    "DEMO_API_KEY",
    "DEMO_SECRET",
    "SEED_NAME",
    "Faults",
    "ReceivedRequest",
    "SandboxState",
    "load_seed",
]

#: Credentials the sandbox accepts by default. Public on purpose: they open nothing else.
DEMO_API_KEY = "sandbox-api-key"
DEMO_SECRET = "sandbox-secret-not-for-production"
SEED_NAME = "sandbox_candidates.json"


@dataclass
class Faults:
    """Per-request probabilities (0..1) of each injected fault; deterministic per seed."""

    error_5xx: float = 0.0
    rate_429: float = 0.0
    retry_after: float | None = None  # the Retry-After header of injected 429s, if any
    drop: float = 0.0
    slow: float = 0.0
    slow_s: float = 0.0
    #: Every PATCH applied the moment it arrives and answered this many seconds later (reads
    #: answered at once): a client stopped meanwhile, killed say, has changed the candidate
    #: without hearing so.
    hold_patch_s: float = 0.0
    seed: int = 0
    #: The server's clock this many seconds ahead of this machine's (negative: behind): its
    #: `Date` header and its token checks, so 900 makes every 10-minute token expired.
    clock_ahead_s: float = 0.0

    def __post_init__(self) -> None:
        for name in ("error_5xx", "rate_429", "drop", "slow"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"Faults.{name} is a probability between 0 and 1")


@dataclass(frozen=True)
class ReceivedRequest:
    """One request to `/candidates/{uid}` as the server saw it, a read (`GET`) or a `PATCH`.

    `uid` is the path segment as sent (a web-page number under `IDENTIFIER_TYPE: REAL_ID`);
    `status` 0 means the connection was dropped.
    """

    time: float
    uid: str
    body: Any
    status: int
    token_ok: bool
    method: str = "PATCH"


@dataclass
class SandboxState:
    """Everything the sandbox knows; tests inspect it from the server's side.

    The server changes it only while holding `lock`, so another thread can take a
    consistent copy with `snapshot()` while the server runs.
    """

    candidates: dict[str, dict[str, Any]] = field(default_factory=dict)
    merged: set[str] = field(default_factory=set)
    custom_fields: set[str] = field(default_factory=set)
    always_failing: set[str] = field(default_factory=set)
    requests: list[ReceivedRequest] = field(default_factory=list)  # GETs and PATCHes, by arrival
    applied: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    notes: dict[str, list[str]] = field(default_factory=dict)
    over_limit: int = 0  # requests refused by the sandbox's own rate window
    arrived: int = 0  # requests whose handling has begun, answered or not (in flight: - requests)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def snapshot(self) -> SandboxState:
        """A deep copy taken under the lock, safe to read from any thread."""
        with self.lock:
            return SandboxState(
                candidates=copy.deepcopy(self.candidates),
                merged=set(self.merged),
                custom_fields=set(self.custom_fields),
                always_failing=set(self.always_failing),
                requests=list(self.requests),
                applied=copy.deepcopy(self.applied),
                notes={uid: list(texts) for uid, texts in self.notes.items()},
                over_limit=self.over_limit,
                arrived=self.arrived,
            )


def _seed_text(path: Path | None) -> tuple[str, str]:
    if path is not None:
        return path.read_text(encoding="utf-8"), str(path)
    packaged = importlib.resources.files("bulk_update") / SEED_NAME
    if packaged.is_file():  # an installed wheel carries the seed inside the package
        return packaged.read_text(encoding="utf-8"), str(packaged)
    # a source checkout or an editable install
    source = Path(__file__).resolve().parents[2] / "sample_data" / SEED_NAME
    return source.read_text(encoding="utf-8"), str(source)


def load_seed(path: Path | None = None) -> SandboxState:
    """A fresh state from a seed JSON file (default: the packaged sample candidates).

    The file holds `custom_fields` (names), `candidates` (objects with a `uid`), `merged`
    (uids merged away: 401 duplicate_candidate) and `always_failing` (uids that get 503).
    """
    try:
        text, where = _seed_text(path)
    except OSError as exc:
        raise ConfigError(
            f"the sandbox seed {path or SEED_NAME} cannot be read ({exc.strerror})",
            fix="give the path of a candidates JSON file, like sample_data/sandbox_candidates.json",
        ) from None
    try:
        data = json.loads(text)
        candidates = {str(c["uid"]): dict(c) for c in data.get("candidates", [])}
        return SandboxState(
            candidates=candidates,
            merged={str(u) for u in data.get("merged", [])},
            custom_fields={str(n) for n in data.get("custom_fields", [])},
            always_failing={str(u) for u in data.get("always_failing", [])},
        )
    except (ValueError, TypeError, KeyError, AttributeError):
        raise ConfigError(
            f"the sandbox seed {where} is not a candidates file",
            fix='write {"custom_fields": [...], "candidates": [{"uid": ...}, ...], '
            '"merged": [...], "always_failing": [...]}',
        ) from None
