"""Login throttling per client address and per user name, on the ``limits`` library.

The attack it answers: fifty concurrent guessers made ~10 guesses a second,
all answered 401 after a full argon2 verification each, and a real login
waited 5.5 s behind them in the hashing queue. Two sets of windows now stand
in front of the password check, each one or more limits in the
``limits`` notation (``5/minute;30/hour``):

- per client address (IPv6 counted per /64, the block one subscriber gets):
  one machine guessing fast is stopped after a few attempts;
- per user name: many machines guessing one account are stopped too. Its
  budget is larger than one address's in every window, so a single guesser
  never locks the real user out; guessing from many addresses can, for one
  window, which is the price of stopping it (docs/deployment.md says so).

Every attempt is counted *before* the password is checked, so a throttled
request costs a counter increment and no hashing, and concurrent attempts
cannot all slip through before the first failure is recorded. The address
window is consulted first: a throttled address does not spend the user
name's budget.

Why ``limits``: its window strategies, memory storage and Redis storage
(through redis-py, already a dependency) are exactly this and well kept;
only the choice of keys and the ``Retry-After`` arithmetic are ours. The
sliding-window counter keeps two counters per key (the moving window keeps
a timestamp per attempt, and its memory storage sweeps every key in a
thread per key): cheap under a flood of names.
"""

from __future__ import annotations

import ipaddress
import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.errors import StorageError
from redis.asyncio import ConnectionPool

from wsgate.stores.redis_clients import command_client
from wsgate.stores.redis_keys import RedisKeys
from wsgate.stores.revocation import StoreUnavailable

__all__ = ["LoginThrottle", "Throttled", "address_key", "check_limit"]

IPV6_PREFIX = 64
MAX_KEY_CHARS = 128
DEFAULT_MAX_ENTRIES = 100_000
"""Counters the in-process storage may hold (about 25 MB) before every attempt is refused."""


def check_limit(text: str) -> str:
    """Limits in the ``limits`` notation (``5/minute;30/hour``, ``30 per 10 minutes``), checked."""
    parse_limits(text)
    return text


def parse_limits(text: str) -> tuple[RateLimitItem, ...]:
    try:
        items = tuple(parse_many(text))
    except ValueError:
        raise ValueError(f"not a rate limit: {text!r} (try '5/minute;30/hour')") from None
    if not items or any(item.amount < 1 for item in items):
        raise ValueError("a rate limit must allow at least one attempt")
    return items


def address_key(remote: str | None) -> str:
    """The key one client address is counted under: itself, or its /64 for IPv6."""
    if not remote:
        return "unknown"
    try:
        address = ipaddress.ip_address(remote)
    except ValueError:
        return remote[:MAX_KEY_CHARS]  # a unix socket path or a name: as it is, bounded
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, IPV6_PREFIX), strict=False))
    return str(address)


THROTTLE_POOL_SIZE = 16
"""Redis connections of one node's throttle (a bounded pool that callers wait on)."""


@dataclass(frozen=True, slots=True)
class Throttled:
    """An attempt refused; ``retry_after`` whole seconds (at least 1), ``scope`` what hit."""

    retry_after: int
    scope: str  # "address" or "user"


class LoginThrottle:
    """Counts login attempts per address and per user name; refuses past either budget.

    ``redis_url`` shares the counters between nodes (a guesser spreading
    over them is counted once); without it they live in this process, at
    most ``max_entries`` of them (a few per address and per name, each
    dropped when its window ends): while the table is full, every attempt
    is refused with scope ``"capacity"``, the price of bounded memory under
    a spray of addresses and names.
    Storage is created on first use, inside the running event loop (the
    ``limits`` memory storage starts its expiry task there).
    """

    def __init__(
        self,
        per_address: str,
        per_user: str,
        *,
        redis_url: str | None = None,
        prefix: str = "",
        max_entries: int = DEFAULT_MAX_ENTRIES,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._per_address = parse_limits(per_address)
        self._per_user = parse_limits(per_user)
        self._redis_url = redis_url
        self._redis_prefix = prefix or None
        self._prefix = "login"
        self._limiter: SlidingWindowCounterRateLimiter | None = None
        self._storage: Storage | None = None
        self._pool: ConnectionPool | None = None  # ours, so that aclose can close it

    async def attempt(self, remote: str | None, username: str) -> Throttled | None:
        """Count one attempt; ``None`` when it may go on, else how long to wait.

        Raises :class:`~wsgate.StoreUnavailable` when the shared counters
        cannot be reached: the login then fails closed (503), since an
        unthrottled password check is what this exists to prevent.
        """
        limiter = self._ensure()
        if self._full():
            # Fail closed: a spray of addresses and names must not grow memory without end.
            return Throttled(min(item.get_expiry() for item in self._per_address), "capacity")
        address = address_key(remote)
        user = username[:MAX_KEY_CHARS]
        try:
            for item in self._per_address:
                if not await limiter.hit(item, self._prefix, "address", address):
                    return await self._refusal(item, "address", address)
            for item in self._per_user:
                if not await limiter.hit(item, self._prefix, "user", user):
                    return await self._refusal(item, "user", user)
        except StorageError as exc:
            raise StoreUnavailable("the login throttle's storage cannot answer") from exc
        return None

    async def aclose(self) -> None:
        """Forget the counters this process holds (Redis keys expire on their own)."""
        storage, self._storage, self._limiter = self._storage, None, None
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.disconnect()
        if isinstance(storage, MemoryStorage):
            await storage.reset()
            timer = storage.timer
            if timer is not None and not timer.done():
                timer.cancel()

    @property
    def entries(self) -> int:
        """Counters held in this process (0 with Redis, whose keys expire on their own)."""
        storage = self._storage
        # limits' MemoryStorage keeps its counters in the public dict ``storage``.
        return len(storage.storage) if isinstance(storage, MemoryStorage) else 0

    def _full(self) -> bool:
        return self.entries >= self.max_entries

    async def _refusal(self, item: RateLimitItem, scope: str, key: str) -> Throttled:
        assert self._limiter is not None
        stats = await self._limiter.get_window_stats(item, self._prefix, scope, key)
        wait = max(1, math.ceil(stats.reset_time - time.time()))
        return Throttled(min(wait, item.get_expiry()), scope)

    def _ensure(self) -> SlidingWindowCounterRateLimiter:
        if self._limiter is None:
            if self._redis_url:
                # The stores' client builder: Sentinel and Cluster URLs work as for
                # every other store.
                keys = RedisKeys.for_url(self._redis_url, self._redis_prefix)
                client = command_client(
                    self._redis_url,
                    pool_size=THROTTLE_POOL_SIZE,
                    timeout=2.0,
                    name=f"{keys.prefix}-login",
                    route_key=keys.base,
                )
                self._pool = client.connection_pool
                # limits names its keys LIMITS:LIMITER/<identifiers>/...: the first
                # identifier carries the deployment's {prefix} hash tag (one Cluster
                # slot); limits 5.0 has no key_prefix option of its own.
                self._prefix = keys.name("login")
                self._storage = RedisStorage(
                    "async+redis://",  # the pool below is what connects
                    implementation="redispy",
                    wrap_exceptions=True,
                    connection_pool=self._pool,  # type: ignore[arg-type]  # documented; typed too narrowly
                )
            else:
                self._storage = MemoryStorage()
            self._limiter = SlidingWindowCounterRateLimiter(self._storage)
        return self._limiter
