"""Broadcasts and server-side actions that reach every transport at once."""

from __future__ import annotations

from typing import Any

from pydantic_core import to_jsonable_python

from wsgate.core.bus import RedisBus
from wsgate.core.connection import Connection, TransportLink, room_key


def to_wire(data: Any) -> Any:
    """Pydantic models, dataclasses and the like as plain JSON data, converted once per emit."""
    if data is None or isinstance(data, str | int | float | bool):
        return data
    return to_jsonable_python(data)


class Server:
    """``ctx.server``: emit to everyone, a room, or one connection, on every transport.

    A message to a room reaches Socket.IO and plain WebSocket members alike,
    so the application never has to know how a client connected.
    """

    def __init__(self) -> None:
        self._transports: list[TransportLink] = []
        self.connections: dict[str, Connection] = {}
        self.bus: RedisBus | None = None
        self.max_rooms_per_connection = 100

    def add_transport(self, transport: TransportLink) -> None:
        self._transports.append(transport)

    def use_bus(self, bus: RedisBus) -> None:
        """Share broadcasts with other nodes through ``bus`` (started on first use)."""
        self.bus = bus

    async def emit(
        self,
        event: str,
        data: Any = None,
        *,
        room: str | None = None,
        namespace: str = "/",
        skip: str | None = None,
    ) -> None:
        """Send ``event`` to every connection of ``namespace`` (or of ``room`` in it)."""
        payload = to_wire(data)
        target = room_key(room) if room is not None else None
        await self.deliver_locally(namespace, event, payload, target, skip)
        if self.bus is not None:
            self.bus.start(self.deliver_locally)
            await self.bus.publish(namespace, event, payload, target, skip)

    async def deliver_locally(
        self, namespace: str, event: str, payload: Any, room: str | None, skip: str | None
    ) -> None:
        """Hand an already-encoded broadcast to every transport of this node."""
        for transport in self._transports:
            await transport.broadcast(namespace, event, payload, room=room, skip=skip)

    async def send_to(self, connection: Connection, event: str, data: Any = None) -> None:
        """Send ``event`` to one connection."""
        if connection.closed:
            return
        await connection.transport.send(connection.id, connection.namespace, event, to_wire(data))

    async def disconnect(self, connection: Connection, reason: str = "server_disconnect") -> None:
        """Close one connection; its ``on_disconnect`` hook runs with ``reason``."""
        if connection.closed:
            return
        await connection.transport.close(connection.id, connection.namespace, reason)

    def connections_of(self, sub: str) -> list[Connection]:
        """Live connections of one user on this node."""
        return [conn for conn in self.connections.values() if conn.principal.sub == sub]
