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

Deliver = Callable[[str, str, Any, "str | None", "str | None"], Awaitable[None]]
"""(namespace, event, data, room, skip) -> deliver to this node's transports."""


class Bus(Protocol):
    """What the core's fan-out needs from a cross-node bus."""

    def start(self, deliver: Deliver) -> None:
        """Follow other nodes' broadcasts into ``deliver`` (idempotent, from a running loop)."""
        ...

    async def publish(
        self, namespace: str, event: str, data: Any, room: str | None, skip: str | None
    ) -> None:
        """Hand one broadcast to the other nodes, in call order.

        Raises :class:`~wsgate.stores.revocation.StoreUnavailable` when the
        broadcast was not taken (and will reach no other node).
        """
        ...

    async def aclose(self) -> None: ...
