"""The revocation interface: one small protocol, three implementations.

A verified JWT stays valid until it expires, so "log out" and "ban this user
now" need a second source of truth that the live-session layer consults at
connect (:meth:`RevocationStore.is_revoked`) and follows while connections are
open (:meth:`RevocationStore.watch`). Two kinds of entry are enough:

- ``jti``: one token is revoked (logout);
- ``sub``: every token of a user issued before ``revoked_at`` is revoked
  ("log out everywhere", a banned account).

Every entry carries ``expires_at``: past it, no token it could concern is
still valid, so it may be purged and is ignored by lookups.
"""

from __future__ import annotations

import json
import math
import time
from abc import abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Protocol, Self, runtime_checkable

from wsgate.errors import WsgateError

RevocationKind = Literal["jti", "sub"]


class StoreUnavailable(WsgateError):
    """The store cannot answer (closed, unreachable, corrupt).

    Callers must treat this as "no": a connection whose revocation status is
    unknown is refused, never let through.
    """


def revocation_time() -> float:
    """Now, truncated to the millisecond: the boundary of a revocation by ``sub``.

    Truncated like the ``iat`` of wsgate's tokens (never in the future), so
    the two compare at the same precision.
    """
    return math.floor(time.time() * 1000) / 1000


@dataclass(frozen=True, slots=True)
class Revocation:
    """One revocation, as stored and as announced to watchers.

    For ``kind == "sub"``, tokens of ``value`` with ``iat < revoked_at`` are
    revoked, and so are tokens without ``iat`` (their age cannot be proven).
    The boundary is the millisecond: ``revoked_at`` is the revocation's time
    truncated to the millisecond (:func:`revocation_time`), and wsgate's
    issuer writes ``iat`` truncated the same way, so a token issued in a
    later millisecond than the revocation (a user logging in again right
    after being cut off) is not revoked, whatever second it falls in. A
    token whose ``iat`` has whole seconds only (some identity providers)
    issued in the same second after the revocation counts as older and stays
    revoked: the comparison errs towards revoking.
    """

    kind: RevocationKind
    value: str
    revoked_at: float
    expires_at: float

    def concerns(self, *, sub: str, jti: str | None, issued_at: float | None) -> bool:
        """True when a token with these claims is revoked by this entry (expiry aside).

        The live-session layer calls this for every revocation a watch
        yields, to find the connections it must close.
        """
        if self.kind == "jti":
            return jti is not None and jti == self.value
        return sub == self.value and (issued_at is None or issued_at < self.revoked_at)

    @classmethod
    def of_jti(cls, jti: str, *, expires_at: float) -> Revocation:
        """A validated revocation of one token, made now."""
        return cls(
            "jti", check_value(jti, "jti"), revocation_time(), check_time(expires_at, "expires_at")
        )

    @classmethod
    def of_sub(cls, sub: str, *, expires_at: float, at: float | None = None) -> Revocation:
        """A validated revocation of every token of ``sub`` issued before ``at`` (default now)."""
        return cls(
            "sub",
            check_value(sub, "sub"),
            revocation_time() if at is None else check_time(at, "at"),
            check_time(expires_at, "expires_at"),
        )

    def is_expired(self, now: float) -> bool:
        """True once no token this entry could concern can still be valid."""
        return self.expires_at < now

    def to_json(self) -> str:
        """The wire form used by stores that announce revocations to other processes."""
        return json.dumps(
            {
                "kind": self.kind,
                "value": self.value,
                "revoked_at": self.revoked_at,
                "expires_at": self.expires_at,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, data: str | bytes) -> Revocation:
        """Parse :meth:`to_json` output; raises :class:`ValueError` on anything else.

        Messages come from a shared channel other programs can write to, so
        every field is checked rather than trusted.
        """
        try:
            raw: Any = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError("revocation message is not JSON") from exc
        if not isinstance(raw, dict):
            raise ValueError("revocation message is not an object")
        kind, value = raw.get("kind"), raw.get("value")
        if kind == "jti":
            checked_kind: RevocationKind = "jti"
        elif kind == "sub":
            checked_kind = "sub"
        else:
            raise ValueError("revocation message has an unknown kind")
        return cls(
            kind=checked_kind,
            value=check_value(value, kind),
            revoked_at=check_time(raw.get("revoked_at"), "revoked_at"),
            expires_at=check_time(raw.get("expires_at"), "expires_at"),
        )


def check_value(value: object, what: str) -> str:
    """A ``jti`` or ``sub`` must be a non-empty string: an empty one would match too much."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string")
    return value


def check_time(value: object, what: str) -> float:
    """Epoch seconds as a finite float; NaN would make every comparison false (fail open)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what} must be a number of epoch seconds")
    result = float(value)
    if not math.isfinite(result):
        raise ValueError(f"{what} must be finite")
    return result


class RevocationWatch(AsyncIterator[Revocation]):
    """An async iterator over revocations made after it started, by any process.

    It starts (subscribes) on entering ``async with`` or on the first
    ``__anext__``, whichever comes first; use ``async with`` when nothing made
    between creating the watch and iterating it may be missed. Iteration ends
    when the watch or its store is closed. ``__anext__`` raises
    :class:`StoreUnavailable` when the store can no longer deliver: revocations
    may then have been missed, so a consumer should re-check its live sessions
    with :meth:`RevocationStore.is_revoked` after starting a new watch.
    """

    _started = False
    _closed = False

    async def start(self) -> Self:
        """Begin watching now; idempotent."""
        if self._closed:
            raise StoreUnavailable("the revocation watch is closed")
        if not self._started:
            try:
                await self._start()
            except BaseException:
                # A watch that could not subscribe is dead: free what it holds.
                await self.aclose()
                raise
            self._started = True
        return self

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Revocation:
        if self._closed:
            raise StopAsyncIteration
        await self.start()
        revocation = await self._next()
        if revocation is None:
            await self.aclose()
            raise StopAsyncIteration
        return revocation

    async def aclose(self) -> None:
        """Stop watching and free the watch's resources; idempotent."""
        if not self._closed:
            self._closed = True
            await self._close()

    @abstractmethod
    async def _start(self) -> None:
        """Subscribe; after this returns, no new revocation may be missed."""

    @abstractmethod
    async def _next(self) -> Revocation | None:
        """Wait for the next revocation; ``None`` when the store was closed."""

    @abstractmethod
    async def _close(self) -> None:
        """Release what :meth:`_start` acquired (it may not have run)."""


@runtime_checkable
class RevocationStore(Protocol):
    """Where revocations live; every method fails closed with :class:`StoreUnavailable`."""

    async def revoke_jti(self, jti: str, *, expires_at: float) -> Revocation:
        """Revoke the token whose ``jti`` claim is ``jti``, until ``expires_at``."""
        ...

    async def revoke_sub(
        self, sub: str, *, expires_at: float, at: float | None = None
    ) -> Revocation:
        """Revoke every token of ``sub`` issued before ``at`` (default: now)."""
        ...

    async def is_revoked(self, *, sub: str, jti: str | None, issued_at: float | None) -> bool:
        """Whether a token with these claims is revoked; raises :class:`StoreUnavailable`."""
        ...

    async def purge_expired(self, now: float | None = None) -> int:
        """Delete entries with ``expires_at < now``; returns how many were deleted."""
        ...

    def watch(self) -> RevocationWatch:
        """Revocations made from now on, by this or any other process using the store."""
        ...

    async def aclose(self) -> None:
        """Close connections and end every watch; the store is unusable afterwards."""
        ...
