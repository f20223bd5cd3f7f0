"""A live connection as the core sees it, and the link back to its transport."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from wsgate.core.handshake import Handshake
from wsgate.principal import Principal


class TransportLink(Protocol):
    """What the core may ask of a transport; each transport implements it once.

    Rooms are passed already qualified (see :func:`room_key`), so a transport
    never has to know which names a user may address.
    """

    name: str

    async def send(self, conn_id: str, namespace: str, event: str, data: Any) -> None: ...

    async def broadcast(
        self, namespace: str, event: str, data: Any, *, room: str | None, skip: str | None
    ) -> None: ...

    async def enter_room(self, conn_id: str, namespace: str, room: str) -> None: ...

    async def leave_room(self, conn_id: str, namespace: str, room: str) -> None: ...

    async def close(self, conn_id: str, namespace: str, reason: str) -> None: ...


def room_key(room: str) -> str:
    """The transport-level name of a user-visible room.

    Socket.IO puts every connection in a private room named by its id; a
    client that could join a room of any name could read another
    connection's private messages. User rooms live under their own prefix.
    """
    return "room:" + room


@dataclass(eq=False, slots=True)
class Connection:
    """One connection to one namespace, for as long as it lives."""

    id: str
    namespace: str
    principal: Principal
    handshake: Handshake
    transport: TransportLink
    connected_at: float = field(default_factory=time.time)
    rooms: set[str] = field(default_factory=set)
    state: dict[str, Any] = field(default_factory=dict)
    closed: bool = False
