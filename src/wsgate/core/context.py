"""What a handler, guard, filter or hook gets to know about and do with its connection."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wsgate.codes import CloseReason
from wsgate.core.connection import Connection
from wsgate.core.fanout import Fanout
from wsgate.core.handshake import Handshake
from wsgate.core.server import Server
from wsgate.principal import Principal


class Context:
    """The execution context of one event (or of a connect/disconnect hook).

    ``event`` is ``None`` in lifecycle hooks and connect-time guards.
    ``body`` is the validated body once validation ran: guards run after
    validation, so a guard can judge the message itself ("the ``boards``
    claim holds this message's board id"); it is ``None`` for events that
    take no body and at connect.
    """

    __slots__ = ("_connection", "_fanout", "body", "event")

    def __init__(
        self,
        connection: Connection,
        fanout: Fanout,
        event: str | None = None,
        body: Any = None,
    ) -> None:
        self._connection = connection
        self._fanout = fanout
        self.event = event
        self.body = body

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
        return self._connection.user_state

    @property
    def rooms(self) -> frozenset[str]:
        return frozenset(self._connection.rooms)

    @property
    def transport(self) -> str:
        return self._connection.transport.name

    @property
    def server(self) -> Server:
        """Broadcasts, bound to this connection's namespace (``namespace=`` reaches others)."""
        return Server(self._fanout, self._connection.namespace)

    async def emit(self, event: str, data: Any = None) -> None:
        """Send ``event`` to this connection only."""
        await self._fanout.send_to(self._connection, event, data)

    async def join(self, room: str) -> None:
        """Enter ``room``; 429 past ``max_rooms_per_connection`` (each room costs memory)."""
        await self._fanout.join(self._connection, room)

    async def leave(self, room: str) -> None:
        await self._fanout.leave(self._connection, room)

    async def emit_to_room(
        self, room: str, event: str, data: Any = None, *, skip_self: bool = False
    ) -> None:
        """Send ``event`` to every member of ``room`` in this namespace, on every transport."""
        await self._fanout.emit(
            self.namespace, event, data, room=room, skip=self.id if skip_self else None
        )

    async def disconnect(self, reason: str = CloseReason.SERVER_DISCONNECT) -> None:
        """Close this connection; ``on_disconnect`` runs with ``reason``."""
        await self._fanout.close(self._connection, reason)


def connection_of(ctx: Context) -> Connection:
    """The core's connection behind ``ctx`` (for the core only; applications use ``ctx``)."""
    return ctx._connection


def connection_context(ctx: Context) -> Context:
    """A context of ``ctx``'s connection without its event or body (for connection scope)."""
    if ctx.event is None and ctx.body is None:
        return ctx
    return Context(ctx._connection, ctx._fanout)
