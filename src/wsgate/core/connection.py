"""A live connection as the core sees it, and the link back to its transport."""

from __future__ import annotations

import asyncio
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
    """One connection to one namespace, for as long as it lives.

    ``principal`` changes when the client refreshes its token in band.
    ``expiry_timer`` is the one timer that ends the session at the token's
    expiry (re-armed on refresh, cancelled on close); ``expired`` is set
    while a grace window runs; ``ending`` holds the reason once the server
    decided to close, so a second reason (a revocation racing an expiry)
    does not close it twice. ``limited`` names the limit the connection last
    ran into, so a flood is audited once, not once per refused message.
    """

    id: str
    namespace: str
    principal: Principal
    handshake: Handshake
    transport: TransportLink
    connected_at: float = field(default_factory=time.time)
    rooms: set[str] = field(default_factory=set)
    state: dict[str, Any] = field(default_factory=dict)
    closed: bool = False
    expiry_timer: asyncio.TimerHandle | None = None
    expired: bool = False
    ending: str | None = None
    limited: str | None = None
