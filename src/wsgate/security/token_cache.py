"""The verified-token cache, so a reconnect storm costs no signature checks.

Split out of :mod:`wsgate.security.jwt`: a reconnect storm (a deploy, a
network blip) sends the same tokens again, and RS256/ES256 verification is
the expensive part of a connect. The cache holds digests, never tokens, and
hands out copies so that callers cannot alter a cached Principal.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
from collections import OrderedDict
from typing import Any

from wsgate.principal import Principal


class VerifiedCache:
    """sha256(token) + use -> Principal, until the token expires.

    Why: a reconnect storm (a deploy, a network blip) re-presents the same
    tokens, and RS256/ES256 verification is the expensive part of a connect.
    The key is a digest so the cache holds no tokens. An entry leaves at
    ``exp + leeway`` (the moment PyJWT would call it expired) and the
    least recently used entry goes when the cache is full. Revocation is the
    caller's job and still runs on every connect.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[bytes, tuple[Principal, float]] = OrderedDict()

    @staticmethod
    def key(token: str, use: str) -> bytes:
        return hashlib.sha256(f"{use}\x00{token}".encode()).digest()

    def get(self, key: bytes, now: float) -> Principal | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        principal, valid_until = entry
        if now >= valid_until:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return principal

    def put(self, key: bytes, principal: Principal, valid_until: float) -> None:
        self._entries[key] = (principal, valid_until)
        self._entries.move_to_end(key)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


def private_copy(principal: Principal) -> Principal:
    """A Principal whose claims the caller may mutate without touching the cache."""
    return dataclasses.replace(principal, claims=_copy_json(dict(principal.claims)))


def _copy_json(value: Any) -> Any:
    """A deep copy of decoded JSON (dicts, lists and immutable scalars).

    Claims come from ``json.loads``, so only dicts and lists need copying;
    ``copy.deepcopy`` walks the same tree with its memo and dispatch, ~5x
    slower, and ran on every connect. Anything else (a custom verifier's
    object) still goes through ``copy.deepcopy``.
    """
    if isinstance(value, dict):
        return {key: _copy_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy_json(item) for item in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return copy.deepcopy(value)
