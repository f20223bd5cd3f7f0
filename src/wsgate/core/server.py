"""``ctx.server`` and ``app.server``: what an application may do to connections beyond its own."""

from __future__ import annotations

from typing import Any

from wsgate.codes import CloseReason
from wsgate.core.fanout import Fanout


class Server:
    """Emit to a namespace, a room or one connection, on every transport (and node).

    Bound to a namespace: ``ctx.server`` is bound to the gateway's own, so
    ``ctx.server.emit("news", data)`` from the ``/board`` gateway reaches
    ``/board``; ``app.server`` is bound to ``/``. Pass ``namespace=`` to
    reach another one, or take :meth:`of`.
    """

    __slots__ = ("_fanout", "namespace")

    def __init__(self, fanout: Fanout, namespace: str = "/") -> None:
        self._fanout = fanout
        self.namespace = namespace

    def of(self, namespace: str) -> Server:
        """The same server, bound to ``namespace``."""
        return Server(self._fanout, namespace)

    async def emit(
        self,
        event: str,
        data: Any = None,
        *,
        room: str | None = None,
        namespace: str | None = None,
        skip: str | None = None,
    ) -> None:
        """Send ``event`` to every connection of the namespace (or of ``room`` in it).

        ``skip`` is a connection id that does not get it (usually the
        sender's). With a bus (``redis_url``) other nodes' members get it too;
        when the bus cannot take it, :class:`~wsgate.Unavailable` is raised
        and this node's members did not get it either, so a handler's ack says
        503.
        """
        await self._fanout.emit(
            namespace if namespace is not None else self.namespace,
            event,
            data,
            room=room,
            skip=skip,
        )

    async def send_to(self, conn_id: str, event: str, data: Any = None) -> bool:
        """Send ``event`` to the live connection ``conn_id`` of this node; False if none."""
        connection = self._fanout.connections.get(conn_id)
        if connection is None:
            return False
        await self._fanout.send_to(connection, event, data)
        return True

    async def disconnect(self, conn_id: str, reason: str = CloseReason.SERVER_DISCONNECT) -> bool:
        """Close the connection ``conn_id`` on this node; False if there is none."""
        connection = self._fanout.connections.get(conn_id)
        if connection is None:
            return False
        await self._fanout.close(connection, reason)
        return True

    def connections_of(self, sub: str) -> list[str]:
        """Ids of the live connections of user ``sub`` on this node."""
        return [connection.id for connection in self._fanout.connections_of(sub)]

    def connection_count(self) -> int:
        """Live connections on this node, every namespace and transport."""
        return len(self._fanout.connections)
