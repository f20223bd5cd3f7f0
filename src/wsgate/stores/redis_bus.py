"""Cross-node fan-out on a Redis Stream: ordered, resumable, deduplicated, bounded.

The design and the alternatives weighed are in ``docs/decisions/redis-fanout.md``.
In short, as socket.io's redis-streams-adapter does:

- every broadcast is one entry of one stream, ``{P}:fanout``, trimmed to
  about ``maxlen`` entries (``XADD MAXLEN ~``: bounded retention);
- each node reads the stream from the last id it handled (``XREAD BLOCK``
  on a dedicated connection without a read timeout); after a lost
  connection it resumes from that id, so an outage shorter than the
  retention loses nothing;
- one writer task per node adds entries in the order ``publish`` was
  called, pipelined over one connection: a sender's messages keep their
  order on every node (several pooled connections would reorder them);
- every entry carries ``(node_id, seq)``; a reader drops a ``seq`` it has
  seen from that node, so a command redis-py retried after a dropped
  connection is delivered once;
- an entry carries a deadline in Redis' own clock, and the script adding it
  does nothing once that deadline has passed: a command that reaches Redis
  late (Redis hung, then resumed) cannot deliver a message whose sender was
  already told 503. So :class:`StoreUnavailable` from :meth:`publish` means
  "not delivered to any other node", and the core answers 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import re
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from wsgate.stores.redis_connector import RedisConnector
from wsgate.stores.revocation import StoreUnavailable

log = logging.getLogger("wsgate.bus")

Deliver = Callable[[str, str, Any, "str | None", "str | None", "str | None"], Awaitable[None]]
"""(namespace, event, data, room, skip, offset) -> deliver to this node's transports (the
core's); ``offset`` is the entry's stream id (connection-state recovery replays from it)."""

_LONG_DIGITS = re.compile(rb"\d{19}")

DEFAULT_MAXLEN = 10_000
"""Entries the stream keeps (about): what a node can catch up on after an outage."""
MAX_PENDING = 10_000
"""Broadcasts of one node waiting for Redis; past this, publish fails at once (503)."""
BATCH = 256
"""Entries per pipelined round trip, and per XREAD."""
BLOCK_MS = 1000
"""How long one XREAD waits on the server for new entries."""
MAX_NODES_REMEMBERED = 4096
"""Sender nodes whose last seq is kept for duplicate suppression (least recent dropped)."""
RECONNECT_CAP = 1.0
"""Longest pause between reconnect attempts of the reader (with jitter)."""

# KEYS[1] the stream; ARGV: deadline (ms, Redis clock), maxlen, entry.
# Returns the new id, or 0 when the deadline passed (the sender gave up).
_XADD_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if now > tonumber(ARGV[1]) then
    return 0
end
return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'm', ARGV[3])
"""


@dataclass(slots=True)
class _Pending:
    data: bytes
    done: asyncio.Future[str] = field(repr=False)


class RedisStreamBus:
    """The node's :class:`~wsgate.core.bus.Bus` on a Redis Stream."""

    def __init__(
        self,
        url: str | RedisConnector,
        *,
        prefix: str | None = None,
        maxlen: int = DEFAULT_MAXLEN,
        max_pending: int = MAX_PENDING,
    ) -> None:
        if isinstance(url, RedisConnector):
            self.connector = url.retain()
        else:
            self.connector = RedisConnector(url, prefix=prefix).retain()
        self.stream = self.connector.keys.fanout_stream
        self.node_id = uuid.uuid4().hex
        self.maxlen = maxlen
        self.max_pending = max_pending
        self._client: Redis = self.connector.client
        self._xadd = self._client.register_script(_XADD_LUA)
        self._seq = 0
        self._pending: deque[_Pending] = deque()
        self._has_pending = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._deliver: Deliver | None = None
        self._ready = asyncio.Event()
        self._seen: OrderedDict[str, int] = OrderedDict()
        self.last_id: str | None = None
        """Id of the last entry this node read (where it resumes)."""
        self.delivered = 0
        self.duplicates = 0
        self._closed = False

    # -- the Bus protocol ------------------------------------------------------

    def start(self, deliver: Deliver) -> None:
        """Follow the stream into ``deliver`` (idempotent); call from a running loop."""
        if self._closed:
            return
        self._deliver = deliver
        self.connector.start()
        loop = asyncio.get_running_loop()
        if self._reader is None or self._reader.done() or self._reader.get_loop() is not loop:
            self._ready = asyncio.Event()
            self._reader = loop.create_task(self._follow(), name="wsgate-redis-bus-reader")

    async def wait_ready(self) -> None:
        """Wait until the reader has a position in the stream (tests, start-up)."""
        await self._ready.wait()

    async def publish(
        self, namespace: str, event: str, data: Any, room: str | None, skip: str | None
    ) -> str:
        """Hand one broadcast to Redis: its stream id; :class:`StoreUnavailable` when not taken."""
        if self._closed:
            raise StoreUnavailable("the bus is closed")
        self.connector.start()
        self.connector.check("publish")
        if len(self._pending) >= self.max_pending:
            self.connector.health.failed("publish", OverflowError("publish queue full"))
            raise StoreUnavailable("too many broadcasts are waiting for Redis")
        self._seq += 1
        envelope = {
            "n": self.node_id,
            "q": self._seq,
            "ns": namespace,
            "e": event,
            "d": data,
            "r": room,
            "s": skip,
        }
        try:
            raw = orjson.dumps(envelope)
        except TypeError:  # e.g. an integer beyond 64 bits, which the transports do send
            raw = json.dumps(envelope).encode()
        item = _Pending(raw, asyncio.get_running_loop().create_future())
        self._pending.append(item)
        self._has_pending.set()
        self._ensure_writer()
        return await item.done

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._has_pending.set()
        tasks = [t for t in (self._writer, self._reader) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            if task.get_loop() is asyncio.get_running_loop():
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._fail_pending(self._pending, StoreUnavailable("the bus is closed"))
        await self.connector.aclose()

    # -- writing ----------------------------------------------------------------

    def _ensure_writer(self) -> None:
        loop = asyncio.get_running_loop()
        if self._writer is None or self._writer.done() or self._writer.get_loop() is not loop:
            self._writer = loop.create_task(self._write_forever(), name="wsgate-redis-bus-writer")

    async def _write_forever(self) -> None:
        while not self._closed:
            await self._has_pending.wait()
            batch = [self._pending.popleft() for _ in range(min(BATCH, len(self._pending)))]
            if not self._pending:
                self._has_pending.clear()
            batch = [item for item in batch if not item.done.done()]  # caller gone
            if batch:
                await self._write(batch)

    async def _write(self, batch: list[_Pending]) -> None:
        try:
            self.connector.check("publish")
            # Redis adds the entries only within one timeout from now (in its
            # own clock); we wait twice that for the answer, so a reply to an
            # entry added just before the deadline still reaches us (unless
            # this event loop stalls for a whole timeout).
            timeout = self.connector.timeout
            offset = self.connector.health.clock_offset
            deadline_ms = int((time.time() + offset + timeout) * 1000)
            async with asyncio.timeout(2 * timeout):
                async with self._client.pipeline(transaction=False) as pipe:
                    for item in batch:
                        await self._xadd(
                            keys=[self.stream],
                            args=[deadline_ms, self.maxlen, item.data],
                            client=pipe,
                        )
                    results = await pipe.execute(raise_on_error=False)
        except StoreUnavailable as exc:
            self._fail_pending(batch, exc)
            return
        except (RedisError, OSError, TimeoutError) as exc:
            self._fail_pending(batch, self.connector.health.failed("publish", exc))
            return
        for item, result in zip(batch, results, strict=True):
            if item.done.done():
                continue
            if isinstance(result, Exception) or not result:
                if isinstance(result, Exception):
                    self.connector.health.failed("publish", result)
                item.done.set_exception(StoreUnavailable("Redis did not take the broadcast"))
            else:
                item.done.set_result(_text(result))

    @staticmethod
    def _fail_pending(items: Any, exc: StoreUnavailable) -> None:
        for item in list(items):
            if not item.done.done():
                item.done.set_exception(StoreUnavailable(str(exc)))
        if isinstance(items, deque):
            items.clear()

    # -- reading ----------------------------------------------------------------

    async def _follow(self) -> None:
        failures = 0
        while not self._closed:
            client = self.connector.dedicated("bus")
            try:
                self.connector.check("bus-read")
                if self.last_id is None:
                    self.last_id = await self._tail(client)
                self._ready.set()
                if failures:
                    log.debug("broadcast reader resumed after id %s", self.last_id)
                failures = 0
                await self._read_forever(client)
            except asyncio.CancelledError:
                raise
            except StoreUnavailable:
                pass
            except (RedisError, OSError, TimeoutError) as exc:
                self.connector.health.failed("bus-read", exc)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await client.aclose()
            failures += 1
            delay = min(RECONNECT_CAP, 0.05 * 2**failures)
            await asyncio.sleep(delay * (0.5 + random.random() / 2))  # noqa: S311

    async def _tail(self, client: Redis) -> str:
        """The id of the newest entry now (``0-0`` for an empty stream): where to start."""
        async with asyncio.timeout(self.connector.timeout):
            newest = await client.xrevrange(self.stream, count=1)
        if not newest:
            return "0-0"
        return _text(newest[0][0])

    async def _read_forever(self, client: Redis) -> None:
        # The read has no socket timeout (an idle stream is not a dead one);
        # this deadline, past the server-side BLOCK, catches a hung Redis.
        limit = BLOCK_MS / 1000 + self.connector.timeout
        while True:
            assert self.last_id is not None
            async with asyncio.timeout(limit):
                reply: Any = await client.xread(
                    {self.stream: self.last_id}, count=BATCH, block=BLOCK_MS
                )
            for _stream, entries in reply or ():
                for entry_id, fields in entries:
                    self.last_id = _text(entry_id)
                    await self._handle(self.last_id, fields)

    async def _handle(self, entry_id: str, fields: dict[Any, Any]) -> None:
        raw = fields.get(b"m", fields.get("m"))
        try:
            if not isinstance(raw, bytes):
                raise TypeError("no entry")
            message = _loads(raw)
            node, seq = message["n"], int(message["q"])
        except Exception:
            log.warning("ignored a malformed entry on the broadcast stream")
            return
        if node == self.node_id or self._deliver is None:
            return
        last = self._seen.get(node, 0)
        if seq <= last:
            self.duplicates += 1
            return
        self._seen[node] = seq
        self._seen.move_to_end(node)
        if len(self._seen) > MAX_NODES_REMEMBERED:
            self._seen.popitem(last=False)
        try:
            await self._deliver(
                message["ns"], message["e"], message["d"], message["r"], message["s"], entry_id
            )
            self.delivered += 1
        except Exception:
            log.exception("delivering a broadcast from another node failed")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _loads(raw: bytes) -> Any:
    """orjson, or the standard library when an integer may exceed 64 bits (orjson floats it)."""
    if _LONG_DIGITS.search(raw):
        return json.loads(raw)
    return orjson.loads(raw)
