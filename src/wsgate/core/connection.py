"""A live connection as the core sees it: its explicit state, its tasks, its transport link."""

from __future__ import annotations

import asyncio
import enum
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from wsgate.core.handshake import Handshake
from wsgate.principal import Principal

if TYPE_CHECKING:
    from wsgate.core.resolution import ConnectionScope

MAX_IN_FLIGHT = 32
"""Events of one connection handled at once; a transport's reader waits beyond it.

Waiting (rather than refusing) pushes back on the client through TCP flow
control, so one client cannot fill the server with tasks, and its events are
never dropped silently.
"""


class TransportLink(Protocol):
    """What the core may ask of a transport; each transport implements it once.

    Rooms are passed already qualified (see :func:`room_key`), so a transport
    never has to know which names a user may address.
    """

    name: str

    async def send(self, conn_id: str, namespace: str, event: str, data: Any) -> None: ...

    async def broadcast(
        self,
        namespace: str,
        event: str,
        data: Any,
        *,
        room: str | None,
        skip: str | None,
        offset: str | None = None,
    ) -> None:
        """``offset``: the broadcast's place in the recovery log (None: recovery is off)."""
        ...

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


@dataclass(slots=True)
class Flood:
    """Limit hits of one connection since the last audit line about them (monotonic times)."""

    limit: str
    started: float
    last: float
    count: int = 0


class ConnectionState(enum.Enum):
    """Where a connection is in its life; it only ever moves down this list.

    ``OPEN`` -> ``EXPIRED`` (a grace window: only ``auth:refresh`` runs) and
    back to ``OPEN`` on a refresh are the only moves up.
    """

    OPEN = "open"
    """Admitted: events run."""
    EXPIRED = "expired"
    """The token expired and an ``expiry_grace`` window runs: only ``auth:refresh`` is handled."""
    CLOSING = "closing"
    """The server decided to close (``close_reason`` says why); nothing new runs."""
    CLOSED = "closed"
    """Released: its tasks are done, ``on_disconnect`` ran, it holds no slot."""


@dataclass(eq=False, slots=True)
class Connection:
    """One connection to one namespace, for as long as it lives.

    ``state`` is the lifecycle (:class:`ConnectionState`); ``user_state`` is
    the application's per-connection storage (``ctx.state``).
    ``principal`` changes when the client refreshes its token in band.
    ``tasks`` holds the events in flight (at most :data:`MAX_IN_FLIGHT`), so
    that ending the connection cancels them before ``on_disconnect`` runs.
    ``expiry_timer`` is the one timer that ends the session at the token's
    expiry. ``flood`` counts the limit hits of the current flood, so that a
    flood is audited once with a count, not once per refused message.
    ``dependencies`` holds its connection-scoped dependencies, made on first
    use and torn down at release.
    """

    id: str
    namespace: str
    principal: Principal
    handshake: Handshake
    transport: TransportLink
    connected_at: float = field(default_factory=time.time)
    rooms: set[str] = field(default_factory=set)
    user_state: dict[str, Any] = field(default_factory=dict)
    state: ConnectionState = ConnectionState.OPEN
    close_reason: str | None = None
    expiry_timer: asyncio.TimerHandle | None = None
    flood: Flood | None = None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(MAX_IN_FLIGHT))
    dependencies: ConnectionScope | None = None
    recovery_pid: str | None = field(default=None, repr=False)
    """The private session id this connection can be recovered by (a secret: never logged)."""

    @property
    def live(self) -> bool:
        """True while events may run (open, or expired within a grace window)."""
        return self.state is ConnectionState.OPEN or self.state is ConnectionState.EXPIRED

    @property
    def closed(self) -> bool:
        return self.state is ConnectionState.CLOSED
