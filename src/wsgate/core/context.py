"""What a handler, guard or hook gets to know about and do with its connection."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from wsgate.core.connection import Connection, room_key
from wsgate.core.handshake import Handshake
from wsgate.errors import TooManyRequests
from wsgate.principal import Principal

if TYPE_CHECKING:
    from wsgate.core.server import Server


class Context:
    """The execution context of one event (or of a connect/disconnect hook).

    ``event`` is ``None`` in lifecycle hooks and connect-time guards.
    """

    __slots__ = ("_connection", "event", "server")

    def __init__(self, connection: Connection, server: Server, event: str | None = None) -> None:
        self._connection = connection
        self.server = server
        self.event = event

    @property
    def id(self) -> str:
        """The connection id (Socket.IO ``sid`` or the /ws connection's id)."""
        return self._connection.id

    @property
    def namespace(self) -> str:
        return self._connection.namespace

    @property
    def principal(self) -> Principal:
        return self._connection.principal

    @property
    def sub(self) -> str:
        return self._connection.principal.sub

    @property
    def roles(self) -> frozenset[str]:
        return self._connection.principal.roles

    @property
    def claims(self) -> Mapping[str, Any]:
        return self._connection.principal.claims

    @property
    def handshake(self) -> Handshake:
        return self._connection.handshake

    @property
    def state(self) -> dict[str, Any]:
        """Per-connection storage for the application."""
        return self._connection.state

    @property
    def rooms(self) -> frozenset[str]:
        return frozenset(self._connection.rooms)

    @property
    def transport(self) -> str:
        return self._connection.transport.name

    async def emit(self, event: str, data: Any = None) -> None:
        """Send ``event`` to this connection only."""
        await self.server.send_to(self._connection, event, data)

    async def join(self, room: str) -> None:
        """Enter ``room``; 429 past ``max_rooms_per_connection`` (each room costs memory)."""
        conn = self._connection
        if room not in conn.rooms and len(conn.rooms) >= self.server.max_rooms_per_connection:
            raise TooManyRequests(
                f"At most {self.server.max_rooms_per_connection} rooms per connection"
            )
        await conn.transport.enter_room(conn.id, conn.namespace, room_key(room))
        conn.rooms.add(room)

    async def leave(self, room: str) -> None:
        conn = self._connection
        await conn.transport.leave_room(conn.id, conn.namespace, room_key(room))
        conn.rooms.discard(room)

    async def emit_to_room(
        self, room: str, event: str, data: Any = None, *, skip_self: bool = False
    ) -> None:
        """Send ``event`` to every member of ``room`` in this namespace, on every transport."""
        await self.server.emit(
            event, data, room=room, namespace=self.namespace, skip=self.id if skip_self else None
        )

    async def disconnect(self, reason: str = "server_disconnect") -> None:
        await self.server.disconnect(self._connection, reason)
