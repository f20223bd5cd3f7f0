"""Connection-state recovery across nodes: saved sessions in Redis, replay from the fan-out stream.

A client dropped by node 1 may come back through node 2. So, with Redis:

- a saved session is one hash, ``{P}:recovery:<pid>``, expiring with the
  recovery window; it is taken back by a script that checks the ``sub`` and
  namespace and deletes it in one step, so a ``pid`` recovers once, and
  never for another user (whose attempt leaves it in place);
- the offsets clients hold are ids of the fan-out stream
  (:class:`~wsgate.stores.redis_bus.RedisStreamBus`), and what a client
  missed is read back with ``XRANGE`` from its offset. The offset itself must
  still be in the stream: when retention trimmed it, what followed may be
  gone too, and the client is not recovered.

The core decides what a session may get (:mod:`wsgate.core.recovery`); this
module only stores and reads. The ``pid`` is part of a key name: it never
appears in a log line here.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from redis.exceptions import RedisError

from wsgate.stores.redis_bus import _field as field_of
from wsgate.stores.redis_bus import _late as entry_late
from wsgate.stores.redis_bus import _loads, _text
from wsgate.stores.redis_connector import RedisConnector

__all__ = ["RedisRecoveryStore", "StreamEntry"]

StreamEntry = tuple[str, str, str, Any, "str | None", "str | None"]
"""(offset, namespace, event, data, room, skip) of one broadcast on the stream."""

_OFFSET = re.compile(r"^\d{1,20}-\d{1,20}$")

# KEYS[1] the session; ARGV: sub, namespace. The session's body, deleted, when
# it is this user's on this namespace; nothing (and nothing deleted) otherwise.
_TAKE_LUA = """
local v = redis.call('HMGET', KEYS[1], 'sub', 'ns', 'body')
if v[1] ~= ARGV[1] or v[2] ~= ARGV[2] or not v[3] then
    return false
end
redis.call('DEL', KEYS[1])
return v[3]
"""


class RedisRecoveryStore:
    """Saved sessions and the stream read-back, for :class:`wsgate.core.recovery.Recovery`."""

    def __init__(self, connector: RedisConnector) -> None:
        self.connector = connector.retain()
        self.stream = connector.keys.fanout_stream
        self._client = connector.client
        self._take = self._client.register_script(_TAKE_LUA)

    def _key(self, pid: str) -> str:
        return self.connector.keys.name("recovery", pid)

    async def save(self, pid: str, sub: str, namespace: str, body: str, ttl: float) -> None:
        """Keep a session for ``ttl`` seconds (``StoreUnavailable`` when Redis cannot)."""
        self.connector.check("recovery")
        key = self._key(pid)
        try:
            async with asyncio.timeout(self.connector.timeout):
                async with self._client.pipeline(transaction=True) as pipe:
                    pipe.hset(key, mapping={"sub": sub, "ns": namespace, "body": body})
                    pipe.pexpire(key, max(1, int(ttl * 1000)))
                    await pipe.execute()
        except (RedisError, OSError, TimeoutError) as exc:
            raise self.connector.health.failed("recovery", exc) from None

    async def take(self, pid: str, sub: str, namespace: str) -> str | None:
        """The session's body, removed, when it is ``sub``'s on ``namespace``; else None."""
        self.connector.check("recovery")
        try:
            async with asyncio.timeout(self.connector.timeout):
                body = await self._take(keys=[self._key(pid)], args=[sub, namespace])
        except (RedisError, OSError, TimeoutError) as exc:
            raise self.connector.health.failed("recovery", exc) from None
        if not body:
            return None
        return body.decode() if isinstance(body, bytes) else str(body)

    async def since(self, offset: str, limit: int, max_bytes: int) -> list[StreamEntry] | None:
        """The broadcasts after ``offset``, or None when they cannot all be had.

        None when ``offset`` is not an entry still in the stream (trimmed, or
        never one), or more than ``limit`` entries or ``max_bytes`` bytes
        followed it: past a bound the client is not recovered.
        """
        if not _OFFSET.match(offset):
            return None
        self.connector.check("recovery")
        try:
            async with asyncio.timeout(self.connector.timeout):
                entries: Any = await self._client.xrange(
                    self.stream, min=offset, max="+", count=limit + 2
                )
        except (RedisError, OSError, TimeoutError) as exc:
            raise self.connector.health.failed("recovery", exc) from None
        if not entries or _text(entries[0][0]) != offset:
            return None
        rest = entries[1:]
        if len(rest) > limit:
            return None
        out: list[StreamEntry] = []
        seen: set[tuple[str, int]] = set()
        size = 0
        for raw_id, fields in rest:
            entry_id = _text(raw_id)
            raw = field_of(fields, "m")
            if not isinstance(raw, bytes):
                continue
            size += len(raw)
            if size > max_bytes:
                return None
            try:
                message = _loads(raw)
                sender = (str(message["n"]), int(message["q"]))
                sent_ms, patience_ms = int(field_of(fields, "t")), int(field_of(fields, "l"))
                entry = (entry_id, message["ns"], message["e"], message["d"])
                room, skip = message["r"], message["s"]
            except (ValueError, KeyError, TypeError):
                continue  # a malformed entry was delivered to nobody either
            # The bus's own rules: what no node delivered is not replayed either.
            if entry_late(entry_id, sent_ms, patience_ms) or sender in seen:
                continue  # its sender was told 503, or a retried command's duplicate
            seen.add(sender)
            out.append((*entry, room, skip))
        return out

    async def aclose(self) -> None:
        await self.connector.aclose()
