"""Refresh-token families: rotation that is atomic, and reuse that is detected.

OAuth 2.0 Security BCP (RFC 9700 §4.14.2): a refresh token is good for one
use; using it yields a new one, and presenting a token that was already
used means two parties hold it (the user and a thief), so the whole chain
of tokens descended from the same login (its *family*) is revoked.

A family remembers only its *current* refresh token (its ``jti``). Every
token of a family was issued by consuming its predecessor, so a token that
carries the family's id and verifies but is not the current one can only be
a used one: no list of used tokens is kept. Consuming is one atomic
compare-and-set (:meth:`RefreshFamilyStore.rotate`): of twenty concurrent
requests with the same token exactly one sees it current and moves the
family on; the other nineteen see a used token, which revokes the family.
That is deliberate, as the BCP says: a server cannot tell a thief's replay
from a race, so concurrent uses of one refresh token end the session (the
demo page serialises its own refreshes).

Three implementations behind one protocol, as for revocations: memory
(:class:`MemoryRefreshFamilies`), SQLite (:mod:`wsgate.stores.refresh_sqlite`)
and Redis (:mod:`wsgate.stores.refresh_redis`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum, unique
from typing import Protocol, runtime_checkable

from wsgate.stores.revocation import StoreUnavailable, check_time, check_value

DEFAULT_MAX_FAMILIES = 100_000
"""Families a :class:`MemoryRefreshFamilies` holds before it evicts the soonest to expire."""


@unique
class Rotation(StrEnum):
    """What :meth:`RefreshFamilyStore.rotate` did with the presented token."""

    ROTATED = "rotated"
    """The token was the family's current one: it is used up, ``successor`` is current now."""
    REUSED = "reused"
    """The token was already used: the family is revoked from now on (RFC 9700 §4.14.2)."""
    REVOKED = "revoked"
    """The family was revoked before (a reuse, or a logout): nothing changed."""
    UNKNOWN = "unknown"
    """No such family (never started, expired, or evicted): refuse the token."""


@unique
class FamilyState(StrEnum):
    """A stored family is either live or revoked; an expired one is simply gone."""

    ACTIVE = "active"
    REVOKED = "revoked"


@runtime_checkable
class RefreshFamilyStore(Protocol):
    """Where refresh-token families live; every method fails closed with StoreUnavailable."""

    async def start(self, family: str, *, sub: str, jti: str, expires_at: float) -> None:
        """Begin ``family`` (a login) with ``jti`` as its current refresh token."""
        ...

    async def rotate(
        self, family: str, *, presented: str, successor: str, expires_at: float
    ) -> Rotation:
        """Consume ``presented`` atomically: make ``successor`` current, or detect reuse.

        ``expires_at`` is the successor's expiry: the family is kept at
        least until then (a revoked one too, so its newest token stays
        refused for as long as it could verify).
        """
        ...

    async def revoke(self, family: str) -> None:
        """Revoke ``family`` (a logout); unknown families are ignored."""
        ...

    async def aclose(self) -> None:
        """Release connections; the store is unusable afterwards."""
        ...


@dataclass(slots=True)
class _Family:
    sub: str
    current: str
    state: FamilyState
    expires_at: float


def check_family_args(family: str, jti: str, expires_at: float) -> None:
    """Ids must be non-empty strings and the expiry a finite time (never fail open on NaN)."""
    check_value(family, "family")
    check_value(jti, "jti")
    check_time(expires_at, "expires_at")


class MemoryRefreshFamilies:
    """Families in a dict, for tests and single-process apps.

    Bounded: past ``max_families`` the expired ones are purged, then the one
    that expires soonest is evicted (its user signs in again: an unknown
    family is refused, never accepted). The event loop is single-threaded
    and no method awaits between reading and writing, so each call is atomic.
    """

    def __init__(self, *, max_families: int = DEFAULT_MAX_FAMILIES) -> None:
        if max_families < 1:
            raise ValueError("max_families must be at least 1")
        self.max_families = max_families
        self._families: dict[str, _Family] = {}
        self._closed = False

    def __len__(self) -> int:
        return len(self._families)

    async def start(self, family: str, *, sub: str, jti: str, expires_at: float) -> None:
        self._check_open()
        check_family_args(family, jti, expires_at)
        check_value(sub, "sub")
        if family not in self._families and len(self._families) >= self.max_families:
            self._make_room()
        self._families[family] = _Family(sub, jti, FamilyState.ACTIVE, expires_at)

    async def rotate(
        self, family: str, *, presented: str, successor: str, expires_at: float
    ) -> Rotation:
        self._check_open()
        check_family_args(family, successor, expires_at)
        entry = self._families.get(family)
        if entry is None:
            return Rotation.UNKNOWN
        if entry.expires_at < time.time():
            del self._families[family]
            return Rotation.UNKNOWN
        if entry.state is FamilyState.REVOKED:
            return Rotation.REVOKED
        entry.expires_at = max(entry.expires_at, expires_at)
        if entry.current == presented:
            entry.current = successor
            return Rotation.ROTATED
        entry.state = FamilyState.REVOKED
        return Rotation.REUSED

    async def revoke(self, family: str) -> None:
        self._check_open()
        entry = self._families.get(family)
        if entry is not None:
            entry.state = FamilyState.REVOKED

    async def aclose(self) -> None:
        self._closed = True
        self._families.clear()

    def _make_room(self) -> None:
        now = time.time()
        for name in [n for n, f in self._families.items() if f.expires_at < now]:
            del self._families[name]
        if len(self._families) >= self.max_families:
            soonest = min(self._families, key=lambda n: self._families[n].expires_at)
            del self._families[soonest]

    def _check_open(self) -> None:
        if self._closed:
            raise StoreUnavailable("the refresh family store is closed")
