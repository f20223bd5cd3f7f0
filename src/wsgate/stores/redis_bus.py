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
  called, in batches over one connection of its own: a sender's messages
  keep their order on every node (several pooled connections would
  reorder them);
- every entry carries ``(node_id, seq)``; a reader delivers each at most
  once whatever the stream holds (an entry written twice, a re-read after
  resuming at an older id);
- an entry carries ``t``, when its sender wrote it (in Redis' clock,
  as the node's health prober measures it), and ``l``, the sender's
  patience. Redis stamps the entry id with the time it actually added it.
  An entry added more than ``l`` after ``t`` (a command buffered by a hung
  Redis and run when it resumed) is *late*: its sender answers 503 (it
  either saw the late id or gave up waiting), and every reader drops it by
  the same rule on the same two numbers. So :class:`StoreUnavailable` from
  :meth:`publish` means "not confirmed", and the core answers 503: Redis
  refused it, or took it late and nobody delivers it. The one exception no
  design can close: Redis ran the write and its connection died before the
  reply came back (Redis stopped at that instant); then the message may
  still be delivered, once.
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
from redis.exceptions import RedisError, ResponseError

from wsgate.stores.redis_connector import RedisConnector
from wsgate.stores.redis_health import HealthState
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
"""Entries per write round trip, and per XREAD."""
BLOCK_MS = 1000
"""How long one XREAD waits on the server for new entries."""
MAX_NODES_REMEMBERED = 4096
"""Sender nodes whose last seq is kept for duplicate suppression (least recent dropped)."""
RECONNECT_CAP = 1.0
"""Longest pause between reconnect attempts of the reader (with jitter)."""


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
        self.connector = RedisConnector.shared(url, prefix=prefix)
        self.stream = self.connector.keys.fanout_stream
        self.node_id = uuid.uuid4().hex
        self.maxlen = maxlen
        self.max_pending = max_pending
        # The writer's own connection (see _send), made on first use.
        self._writer_client: Redis = self.connector.dedicated("bus-writer")
        self._conn: Any = None
        self._seq = 0
        self._pending: deque[_Pending] = deque()
        self._inflight: list[_Pending] = []
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
        self.late = 0
        """Entries added too late (this node's refused writes, or dropped reads)."""
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
        self._fail_pending(self._inflight, StoreUnavailable("the bus is closed"))
        self._fail_pending(self._pending, StoreUnavailable("the bus is closed"))
        await self._drop_connection()
        with contextlib.suppress(RedisError, OSError):
            await self._writer_client.aclose()
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
            if not batch:
                continue
            self._inflight = batch
            try:
                await self._write(batch)
            except Exception:
                log.exception("the broadcast writer failed")
                self._fail_pending(batch, StoreUnavailable("the broadcast writer failed"))
            finally:
                self._inflight = []

    async def _write(self, batch: list[_Pending]) -> None:
        timeout = self.connector.timeout
        patience_ms = int(timeout * 1000)
        try:
            self.connector.check("publish")
            health = self.connector.health
            if health.state is HealthState.UNKNOWN:
                await health.probe()  # learn Redis' clock before stamping with it
                self.connector.check("publish")
            async with asyncio.timeout(2 * timeout):
                sent_ms, results = await self._send(batch, patience_ms)
        except StoreUnavailable as exc:
            self._fail_pending(batch, exc)
            return
        except (RedisError, OSError, TimeoutError) as exc:
            await self._drop_connection()
            self._fail_pending(batch, self.connector.health.failed("publish", exc))
            return
        self.connector.health.ok()
        for item, result in zip(batch, results, strict=True):
            if item.done.done():
                continue
            if isinstance(result, Exception):
                self.connector.health.failed("publish", result)
                item.done.set_exception(StoreUnavailable("Redis did not take the broadcast"))
            elif _late(_text(result), sent_ms, patience_ms):
                self.late += 1
                item.done.set_exception(StoreUnavailable("Redis took the broadcast too late"))
            else:
                item.done.set_result(_text(result))

    async def _send(self, batch: list[_Pending], patience_ms: int) -> tuple[int, list[Any]]:
        """XADD every entry on the writer's own connection; (stamp, replies in order).

        Why a connection of its own, driven through redis-py's public
        ``Connection`` methods rather than a pipeline: one connection keeps
        the order of writes, and with no read timeout on it
        ``send_packed_command`` writes to the socket before its first
        ``await``, so the stamp taken just before is the time the bytes
        left. A pipeline may yield to the event loop between stamping and
        writing (a pool lock, a connection check), and a busy loop then
        makes healthy writes late.
        """
        conn = self._conn
        if conn is None:
            pool: Any = self._writer_client.connection_pool
            conn = self._conn = pool.make_connection()
        if not conn.is_connected:
            await conn.connect()
        sent_ms = int((time.time() + self.connector.health.clock_offset) * 1000)
        head = ("XADD", self.stream, "MAXLEN", "~", self.maxlen, "*")
        tail = ("t", sent_ms, "l", patience_ms)
        commands = [(*head, "m", item.data, *tail) for item in batch]
        await conn.send_packed_command(conn.pack_commands(commands), check_health=False)
        results: list[Any] = []
        for _ in commands:
            try:
                results.append(await conn.read_response())
            except ResponseError as exc:
                results.append(exc)
        return sent_ms, results

    async def _drop_connection(self) -> None:
        """Forget the writer's connection (its state is unknown after an error)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.disconnect(nowait=True)

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
            self.connector.health.ok()
            for _stream, entries in reply or ():
                for entry_id, fields in entries:
                    self.last_id = _text(entry_id)
                    await self._handle(self.last_id, fields)

    async def _handle(self, entry_id: str, fields: dict[Any, Any]) -> None:
        raw = _field(fields, "m")
        try:
            if not isinstance(raw, bytes):
                raise TypeError("no entry")
            message = _loads(raw)
            node, seq = message["n"], int(message["q"])
            sent_ms, patience_ms = int(_field(fields, "t")), int(_field(fields, "l"))
        except Exception:
            log.warning("ignored a malformed entry on the broadcast stream")
            return
        if node == self.node_id or self._deliver is None:
            return
        if _late(entry_id, sent_ms, patience_ms):
            self.late += 1  # its sender answered 503: nobody delivers it
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


def _late(entry_id: str, sent_ms: int, patience_ms: int) -> bool:
    """Whether Redis added the entry (its id's time) more than ``patience_ms`` after it was sent."""
    added_ms = int(entry_id.split("-", 1)[0])
    return added_ms - sent_ms > patience_ms


def _field(fields: dict[Any, Any], name: str) -> Any:
    return fields.get(name.encode(), fields.get(name))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _loads(raw: bytes) -> Any:
    """orjson, or the standard library when an integer may exceed 64 bits (orjson floats it)."""
    if _LONG_DIGITS.search(raw):
        return json.loads(raw)
    return orjson.loads(raw)
