"""Credentials and the bearer tokens Comeet expects (contract section 7).

Each token is a JWT signed HS256 with the partner secret, with exactly two claims: `iss`, the
customer's API key, and `exp`, when it stops being valid. Tokens are cached and minted again
shortly before they expire, or at once after the API refused one (a 401).

Neither the key, the secret nor a token ever appears in a repr, a message or a log line.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import jwt

from .errors import ConfigError, CredentialsError

__all__ = ["API_KEY_VAR", "SECRET_VAR", "Credentials", "TokenMinter"]

API_KEY_VAR = "COMEET_API_KEY"
SECRET_VAR = "COMEET_SECRET"

try:  # PyJWT >= 2.10 warns about HMAC keys under 32 bytes.
    from jwt.warnings import InsecureKeyLengthWarning as _ShortKeyWarning
except ImportError:  # pragma: no cover - older PyJWT has no such warning
    _ShortKeyWarning = Warning  # type: ignore[assignment,misc]


@dataclass(frozen=True, repr=False)
class Credentials:
    """The customer's API key and the partner secret that signs tokens.

    Its repr shows at most the first two characters of the key and never the secret, so a
    stray `print` or a traceback with locals cannot leak them.
    """

    api_key: str
    secret: str

    def __repr__(self) -> str:
        # Two characters help tell two accounts apart; a short key shows nothing at all.
        shown = self.api_key[:2] if len(self.api_key) > 6 else ""
        return f"Credentials(api_key='{shown}…', secret=<hidden>)"

    __str__ = __repr__

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Credentials:
        """Read `COMEET_API_KEY` and `COMEET_SECRET`; raise CredentialsError if one is unset.

        Values are stripped of surrounding white space (a newline pasted along with a key is
        never part of it); an empty value counts as missing.
        """
        api_key = env.get(API_KEY_VAR, "").strip()
        secret = env.get(SECRET_VAR, "").strip()
        missing = [
            name for name, value in ((API_KEY_VAR, api_key), (SECRET_VAR, secret)) if not value
        ]
        if missing:
            names = " and ".join(missing)
            verb = "is" if len(missing) == 1 else "are"
            raise CredentialsError(
                f"{names} {verb} not set; they are needed to send changes to Comeet",
                fix=(
                    f"export {API_KEY_VAR}=<your company's API key> and "
                    f"{SECRET_VAR}=<your partner secret> in the environment, "
                    "or use --dry-run / --sandbox, which need no credentials"
                ),
            )
        return cls(api_key, secret)


class TokenMinter:
    """Mint and cache bearer tokens for one set of credentials.

    A cached token is reused until less than min(60 s, ttl_s / 4) of its life remains, so a
    request never leaves with a token about to lapse, even with a short ttl.
    """

    def __init__(
        self,
        credentials: Credentials,
        *,
        ttl_s: float = 600,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not ttl_s > 0:
            raise ConfigError(
                f"token_ttl_s must be a positive number of seconds, not {ttl_s}",
                fix="set [api] token_ttl_s to e.g. 600",
            )
        self._credentials = credentials
        self._ttl_s = float(ttl_s)
        self._margin_s = min(60.0, self._ttl_s / 4)
        self._clock = clock
        self._token: str | None = None
        self._expires_at = -math.inf

    def __repr__(self) -> str:
        return f"TokenMinter({self._credentials!r}, ttl_s={self._ttl_s:g})"

    @property
    def expires_at(self) -> float:
        """The `exp` claim (Unix seconds) of the cached token; -inf before the first one."""
        return self._expires_at

    def token(self) -> str:
        """The current token, minted again when it is missing or close to expiry."""
        if self._token is None or self._expires_at - self._clock() < self._margin_s:
            return self.refresh()
        return self._token

    def refresh(self) -> str:
        """Mint a new token now, whatever the cached one's age (after a 401)."""
        # `exp` is whole seconds; rounding up keeps the token valid for at least ttl_s
        # (rounding down would leave a 2 s token as little as 1 s).
        expires_at = math.ceil(self._clock() + self._ttl_s)
        with warnings.catch_warnings():
            # Comeet issues the secret; a user told it is "short" can do nothing about it.
            warnings.simplefilter("ignore", _ShortKeyWarning)
            token = jwt.encode(
                {"iss": self._credentials.api_key, "exp": expires_at},
                self._credentials.secret,
                algorithm="HS256",
            )
        self._token = token
        self._expires_at = float(expires_at)
        return token
