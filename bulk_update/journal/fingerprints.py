"""Fingerprints: what the journal keeps instead of values (keyed BLAKE2b, 64 hex digits).

A plain hash of a phone number or an email could be reversed by trying every candidate
value; a hash keyed with a random salt of the account cannot, and the salt also defeats
tables computed in advance (`Journal.fingerprint` keys it).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from ..confirmlog import is_fingerprint

__all__ = ["check_fields", "fingerprint_bytes", "hashed"]

#: Canonical JSON: json.dumps(value, sort_keys=True, separators=(",", ":"),
#: ensure_ascii=False), with the encoder built once rather than per call.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
#: Any number of fingerprints (64 lowercase hex digits), end to end.
_HEX64S = re.compile(r"(?:[0-9a-f]{64})*")


def hashed(value: Any) -> bytes:
    """What is hashed for a value: text (nearly every cell) as its UTF-8 bytes behind a 0
    byte, anything else as canonical JSON behind a 1 byte, so the two forms never collide."""
    if isinstance(value, str):
        return b"\x00" + value.encode("utf-8")
    return b"\x01" + _CANONICAL.encode(value).encode("utf-8")


def fingerprint_bytes(fingerprint: str) -> bytes:
    """The fingerprint's 32 bytes; ValueError when it is not one."""
    if not is_fingerprint(fingerprint):
        raise ValueError("a fingerprint is 64 lowercase hex digits (Journal.fingerprint)")
    return bytes.fromhex(fingerprint)


def check_fields(fields: Mapping[str, str]) -> None:
    """ValueError unless every value is a fingerprint."""
    fps = fields.values()
    # Checked together (lengths, then one regex); one by one only to say which is wrong.
    if not (set(map(len, fps)) == {64} and _HEX64S.fullmatch("".join(fps))):
        for fp in fps:
            fingerprint_bytes(fp)
