"""Cross-node fan-out: what the core needs from a bus to other nodes.

python-socketio's AsyncRedisManager would carry Socket.IO broadcasts only;
wsgate's rooms span Socket.IO and plain WebSocket clients, so broadcasts go
through a bus of our own and each node delivers them to all of its
transports. The implementation on a Redis Stream lives with the stores
(:class:`wsgate.stores.redis_bus.RedisStreamBus`): the core imports no
redis-py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

Deliver = Callable[[str, str, Any, "str | None", "str | None", "str | None"], Awaitable[None]]
"""(namespace, event, data, room, skip, offset) -> deliver to this node's transports.

``offset`` is the broadcast's place in the bus (a stream id), which
connection-state recovery hands to clients and replays from; None when the
bus has no such thing."""


class Bus(Protocol):
    """What the core's fan-out needs from a cross-node bus."""

    def start(self, deliver: Deliver) -> None:
        """Follow other nodes' broadcasts into ``deliver`` (idempotent, from a running loop)."""
        ...

    async def publish(
        self, namespace: str, event: str, data: Any, room: str | None, skip: str | None
    ) -> str | None:
        """Hand one broadcast to the other nodes, in call order; its offset in the bus, if any.

        Raises :class:`~wsgate.stores.revocation.StoreUnavailable` when the
        broadcast was not taken (and will reach no other node).
        """
        ...

    async def aclose(self) -> None: ...
