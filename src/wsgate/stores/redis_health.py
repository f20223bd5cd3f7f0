"""Whether Redis answers now: one prober per node, the outage log, and recovery hooks.

Why a prober rather than judging by the failures of ordinary commands:

- ``/readyz`` must say "Redis unreachable" even when no traffic runs;
- an outage must log **one** line when it starts and one when it ends
  (with how many operations failed meanwhile), at any traffic, instead of a
  line per failed command;
- while Redis is known to be down, callers fail at once
  (:meth:`RedisHealth.check`) rather than each waiting out a timeout: a hung
  Redis no longer holds every handshake for seconds;
- when Redis returns, whoever must repair shared state (lease renewal, a
  revocation re-check, a stream reader) is told at once through
  :meth:`RedisHealth.on_recover`, so recovery takes one probe interval, not
  the next periodic tick. A restart of Redis between two probes is seen
  too: it closes the prober's connection, and the prober never reconnects
  silently. A peer that vanished without closing (a partition, a failover
  to another address, a host gone) leaves the probe's TIME unanswered
  forever on a connection without a read timeout: after
  :data:`ABANDON_PROBE_AFTER` probe timeouts it is cancelled, which drops
  that connection, and the next probe connects anew.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from wsgate.stores.redis_clients import dedicated_client
from wsgate.stores.revocation import StoreUnavailable

log = logging.getLogger("wsgate.stores")

PROBE_EVERY_UP = 0.5
"""Seconds between probes while Redis answers."""
SLOW_PROBES_FOR_OUTAGE = 2
"""Probes in a row that time out (with no other command answered) before a hang is an outage."""
PROBE_EVERY_DOWN = 0.15
"""Seconds between probes during an outage (plus jitter): recovery is seen well within 1 s."""
ABANDON_PROBE_AFTER = 10
"""Probe timeouts a TIME may stay unanswered during an outage before its connection is
dropped: long enough for a slow Redis to answer late, short enough that a vanished peer
does not hide Redis' return for ever."""


class HealthState(enum.Enum):
    """What the prober last saw."""

    UNKNOWN = "unknown"
    """Not probed yet: callers try Redis themselves."""
    UP = "up"
    DOWN = "down"


Recover = Callable[[], Awaitable[None]]


class RedisHealth:
    """Probes Redis with TIME on its own connection and keeps the outage books."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float,
        name: str = "wsgate-health",
        route_key: str | None = None,
    ) -> None:
        self.timeout = timeout
        self.state = HealthState.UNKNOWN
        self._request: asyncio.Future[float] | None = None
        self._request_sent = 0.0
        # No read timeout, no silent reconnect: a restart between two probes
        # closes this connection, and the next probe sees it.
        self._client: Redis = dedicated_client(
            url, connect_timeout=timeout, name=name, route_key=route_key
        )
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._hooks: list[Recover] = []
        self._failures: Counter[str] = Counter()
        self._down_since = 0.0
        self._last_ok = 0.0
        self._slow_probes = 0
        self._closed = False
        self.outages = 0
        """Outages seen since start (tests, metrics)."""
        self.clock_offset = 0.0
        """Redis' clock minus this host's, in seconds, as of the last probe."""

    @property
    def outage_began(self) -> float:
        """When the last outage began (``time.monotonic()``; 0 before any)."""
        return self._down_since

    @property
    def up(self) -> bool:
        """False only while an outage is known."""
        return self.state is not HealthState.DOWN

    def failures(self) -> dict[str, int]:
        """Operations failed since the last outage ended, by name (tests, diagnostics)."""
        return dict(self._failures)

    def on_recover(self, hook: Recover) -> None:
        """Call ``hook`` each time Redis answers again after an outage."""
        self._hooks.append(hook)

    def start(self) -> None:
        """Start probing (idempotent); call from a running event loop."""
        if self._closed:
            return
        loop = asyncio.get_running_loop()
        if self._task is not None and not self._task.done() and self._task.get_loop() is loop:
            return
        self._wake = asyncio.Event()
        self._task = loop.create_task(self._probe_forever(), name="wsgate-redis-health")

    def check(self, operation: str) -> None:
        """Raise :class:`StoreUnavailable` at once while an outage is known."""
        if self.state is HealthState.DOWN:
            self._failures[operation] += 1
            raise StoreUnavailable("Redis is unreachable")

    def ok(self) -> None:
        """A command just succeeded: Redis answers (cheap; called on every success).

        A probe that times out while other commands succeed is a busy event
        loop, not a hung Redis, and declares no outage.
        """
        self._last_ok = time.monotonic()

    def failed(self, operation: str, exc: BaseException) -> StoreUnavailable:
        """Count a failed operation, have the prober look now; the error to raise.

        Logged at debug level only: the prober logs the outage once.
        """
        self._failures[operation] += 1
        log.debug("Redis %s failed: %s", operation, type(exc).__name__)
        self._wake.set()
        return StoreUnavailable("Redis cannot answer now")

    async def probe(self) -> bool:
        """One TIME; updates the state (and logs a change). True when Redis answered.

        TIME rather than PING: the answer also gives :attr:`clock_offset`.
        The request is never cancelled for being slow (its connection has no
        read timeout): a reply that arrives late, because this event loop
        was busy rather than Redis hung, still counts, and a slow probe is
        judged by whether it answered, not by a timer racing the reply.
        """
        started = time.monotonic()
        task = self._request
        if (
            task is not None
            and not task.done()
            and self.state is HealthState.DOWN
            and started - self._request_sent > ABANDON_PROBE_AFTER * self.timeout
        ):
            await self._abandon(task)
            task = None
        if task is None or task.done():
            task = self._request = asyncio.ensure_future(self._time())
            self._request_sent = started
        await asyncio.wait({task}, timeout=self.timeout)
        if task.done():
            if not isinstance(task.exception(), RedisTimeoutError | TimeoutError):
                return await self._answered(task)
            self._request = None  # a connect that timed out: slow, like no answer yet
        # A slow answer is not yet an outage: others got answers meanwhile (a
        # busy event loop), or this is the first slow probe in a row.
        self._slow_probes = 0 if self._last_ok >= started else self._slow_probes + 1
        if self._slow_probes < SLOW_PROBES_FOR_OUTAGE:
            return self.state is not HealthState.DOWN
        self._went_down(TimeoutError())
        return False

    async def _abandon(self, task: asyncio.Future[float]) -> None:
        """Give up on a TIME that never came back; redis-py drops its connection on cancel."""
        log.debug(
            "Redis probe unanswered for %.1f s: reconnecting", time.monotonic() - self._request_sent
        )
        self._request = None
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        with contextlib.suppress(RedisError, OSError):
            await self._client.connection_pool.disconnect()

    async def _answered(self, task: asyncio.Future[float]) -> bool:
        self._request = None
        exc = task.exception()
        if exc is not None:
            # A refused or reset connection is an outage at once.
            self._went_down(exc)
            return False
        self.clock_offset = task.result()
        self._last_ok = time.monotonic()
        self._slow_probes = 0
        await self._came_up()
        return True

    async def _time(self) -> float:
        """Redis' clock minus ours, from one TIME."""
        before = time.time()
        seconds, micros = await self._client.time()
        after = time.time()
        return float(seconds + micros / 1e6 - (before + after) / 2)

    def _went_down(self, exc: BaseException) -> None:
        if self.state is HealthState.DOWN:
            return
        self.state = HealthState.DOWN
        self.outages += 1
        self._down_since = time.monotonic()
        log.error(
            "Redis unreachable (%s): new connections are refused and cross-node messages "
            "answered 503 until it returns",
            type(exc).__name__,
        )

    async def _came_up(self) -> None:
        previous, self.state = self.state, HealthState.UP
        if previous is not HealthState.DOWN:
            self._failures.clear()  # failures outside a known outage were transient
            return
        failures, self._failures = self._failures, Counter()
        detail = ", ".join(f"{op}={n}" for op, n in sorted(failures.items())) or "none"
        log.warning(
            "Redis reachable again after %.1f s; operations failed during the outage: %d (%s)",
            time.monotonic() - self._down_since,
            sum(failures.values()),
            detail,
        )
        for hook in list(self._hooks):
            try:
                await hook()
            except StoreUnavailable:
                self._wake.set()
            except Exception:
                log.exception("a Redis recovery hook failed")

    async def _probe_forever(self) -> None:
        # Checks _closed too: Python 3.11 can lose a cancellation that races
        # with the wake-up below, and the task must end all the same.
        while not self._closed:
            await self.probe()
            if self.state is HealthState.DOWN:
                delay = PROBE_EVERY_DOWN * (0.5 + random.random())  # noqa: S311
            else:
                delay = PROBE_EVERY_UP
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            self._wake.clear()

    async def aclose(self) -> None:
        self._closed = True
        self._wake.set()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            if task.get_loop() is asyncio.get_running_loop():
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        request, self._request = self._request, None
        if request is not None:
            request.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await request
        with contextlib.suppress(RedisError, OSError):
            await self._client.aclose()
