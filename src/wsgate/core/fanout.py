"""The node's hub: live connections, the transports that carry them, and the bus to other nodes.

Internal to the core. Applications see it through :class:`wsgate.Server`
(``ctx.server``, ``app.server``), which has no wiring methods.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic_core import to_jsonable_python

from wsgate.core.bus import Bus
from wsgate.core.connection import Connection, TransportLink, room_key
from wsgate.core.tracing import Tracing, set_outcome
from wsgate.errors import TooManyRequests, Unavailable
from wsgate.stores.revocation import StoreUnavailable

if TYPE_CHECKING:
    from wsgate.core.recovery import Recovery
    from wsgate.core.remote import RemoteOps


def to_wire(data: Any) -> Any:
    """Pydantic models, dataclasses and the like as plain JSON data, converted once per emit."""
    if data is None or isinstance(data, str | int | float | bool):
        return data
    return to_jsonable_python(data)


class Fanout:
    """Delivers to one connection, a room or a namespace, on every transport and node.

    A message to a room reaches Socket.IO and plain WebSocket members alike,
    so the application never has to know how a client connected.
    """

    def __init__(
        self, *, max_rooms_per_connection: int = 100, tracing: Tracing | None = None
    ) -> None:
        self.tracing = tracing
        self.transports: list[TransportLink] = []
        self.connections: dict[str, Connection] = {}
        self.bus: Bus | None = None
        self.remote: RemoteOps | None = None
        """Operations on every node (set by the runtime; see :mod:`wsgate.core.remote`)."""
        self.max_rooms_per_connection = max_rooms_per_connection
        self.recovery: Recovery | None = None
        """The recovery log every local delivery is recorded in (set by the runtime when on)."""

    def attach(self, transport: TransportLink) -> None:
        self.transports.append(transport)

    def use_bus(self, bus: Bus) -> None:
        """Share broadcasts with other nodes through ``bus`` (started on first use)."""
        self.bus = bus

    async def emit(
        self, namespace: str, event: str, data: Any, *, room: str | None, skip: str | None
    ) -> None:
        """``event`` to every connection of ``namespace`` (or of ``room`` in it), on every node."""
        tracing = self.tracing
        if tracing is not None and tracing.tracer is not None:
            with tracing.start(tracing.tracer, "wsgate.broadcast", producer=True) as span:
                if span.is_recording():
                    span.set_attribute("wsgate.namespace", namespace)
                    span.set_attribute("wsgate.event", event)
                    span.set_attribute("wsgate.room", room is not None)
                try:
                    await self._emit(namespace, event, data, room=room, skip=skip)
                except Exception as exc:
                    set_outcome(span, f"error:{type(exc).__name__}", error=True)
                    raise
                set_outcome(span, "ok", error=False)
            return
        await self._emit(namespace, event, data, room=room, skip=skip)

    async def _emit(
        self, namespace: str, event: str, data: Any, *, room: str | None, skip: str | None
    ) -> None:
        payload = to_wire(data)
        target = room_key(room) if room is not None else None
        if self.bus is not None:
            # Other nodes first: when the bus cannot take the message, this
            # node's members do not get it either, and the sender's 503 means
            # "not delivered" (but for a write whose reply Redis could not
            # send back, see RedisStreamBus). The bus keeps call order, so a
            # sender's messages arrive in order on every node.
            self.bus.start(self.deliver_locally)
            try:
                offset = await self.bus.publish(namespace, event, payload, target, skip)
            except StoreUnavailable:
                raise Unavailable(
                    "The message could not be handed to the other nodes; try again later"
                ) from None
            await self.deliver_locally(namespace, event, payload, target, skip, offset)
            return
        await self.deliver_locally(namespace, event, payload, target, skip)

    async def deliver_locally(
        self,
        namespace: str,
        event: str,
        payload: Any,
        room: str | None,
        skip: str | None,
        offset: str | None = None,
    ) -> None:
        """Hand an already-converted broadcast to every transport of this node.

        With recovery on, the broadcast goes with its offset (Socket.IO
        clients get it as the event's last argument): the bus's (a stream
        id), or, on one node, its place in the recovery log it is added to.
        """
        recovery = self.recovery
        if recovery is None:
            for transport in self.transports:
                await transport.broadcast(namespace, event, payload, room=room, skip=skip)
            return
        if offset is None:
            offset = recovery.record(namespace, event, payload, room, skip)
        for transport in self.transports:
            await transport.broadcast(
                namespace, event, payload, room=room, skip=skip, offset=offset
            )

    async def send_to(
        self, connection: Connection, event: str, data: Any = None, *, force: bool = False
    ) -> None:
        """``event`` to one connection; dropped once it is closing unless ``force`` (notices)."""
        if connection.closed or not (force or connection.live):
            return
        await connection.transport.send(connection.id, connection.namespace, event, to_wire(data))

    async def close(self, connection: Connection, reason: str) -> None:
        """Ask the connection's transport to close it; it releases the connection when done."""
        if connection.closed:
            return
        await connection.transport.close(connection.id, connection.namespace, reason)

    async def join(self, connection: Connection, room: str) -> None:
        """Enter ``room``; 429 past ``max_rooms_per_connection`` (each room costs memory)."""
        if room in connection.rooms:
            return
        if len(connection.rooms) >= self.max_rooms_per_connection:
            raise TooManyRequests(f"At most {self.max_rooms_per_connection} rooms per connection")
        await connection.transport.enter_room(connection.id, connection.namespace, room_key(room))
        connection.rooms.add(room)

    async def leave(self, connection: Connection, room: str) -> None:
        await connection.transport.leave_room(connection.id, connection.namespace, room_key(room))
        connection.rooms.discard(room)

    def connections_of(self, sub: str) -> list[Connection]:
        """Live connections of one user on this node."""
        return [conn for conn in self.connections.values() if conn.principal.sub == sub]
