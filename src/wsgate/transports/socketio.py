"""Socket.IO for gateways: wsgate's own engine bound to the core's port.

:mod:`wsgate.transports.engineio` speaks Engine.IO, :mod:`wsgate.transports.sio`
speaks Socket.IO; this module is the one place where that protocol stack
meets the core, through :mod:`wsgate.core.port` only (as ``/ws`` does):

- a new Engine.IO session takes a pending-handshake slot
  (``max_pending_handshakes`` in total and per address) and holds it until
  its first CONNECT is decided, so sessions that never connect are bounded
  by those caps, not only by the connect deadline. Past the caps the session
  still opens, but its CONNECT is answered at once with CONNECT_ERROR
  ``too_many_connections`` and the session closed; such sessions wait at
  most :data:`REFUSED_SESSION_SECONDS` for their CONNECT, and at most
  :data:`MAX_REFUSED_SESSIONS` of them (:data:`MAX_REFUSED_SESSIONS_PER_ADDRESS`
  per address) at once; beyond that the handshake itself gets HTTP 503 with
  the error object;
- a session whose first CONNECT is refused, and that has no other
  namespace, is closed after the CONNECT_ERROR went out;
- each event runs in a task of its own through ``port.submit`` (the
  per-connection in-flight cap, tasks cancelled when the connection ends),
  so a slow handler never delays the same client's ``ping``;
- replies go through the session's bounded outbox, acks included;
- broadcasts encode a packet once and queue the same frames for every
  recipient.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from starlette.types import Receive, Scope, Send

from wsgate.core.port import (
    CloseReason,
    Connection,
    ConnectionRefused,
    Handshake,
    HandshakeSlot,
    InternalError,
    Port,
    Reply,
)
from wsgate.transports.engineio import EngineConfig, EngineServer, OpenRefused, Transport
from wsgate.transports.engineio.packet import CLOSE
from wsgate.transports.rooms import Rooms
from wsgate.transports.sio import Client, Socket, SocketConfig, SocketServer
from wsgate.transports.sio.packet import PacketType, encode
from wsgate.transports.sio.server import MAX_HELD_FRAMES

__all__ = [
    "MAX_REFUSED_SESSIONS",
    "MAX_REFUSED_SESSIONS_PER_ADDRESS",
    "REFUSED_SESSION_SECONDS",
    "SocketIOTransport",
]

log = logging.getLogger("wsgate.socketio")

MAX_REFUSED_SESSIONS: Final = 256
"""Sessions refused a handshake slot that may wait to be told so in a CONNECT_ERROR."""

MAX_REFUSED_SESSIONS_PER_ADDRESS: Final = 8
"""The same, from one client address: one address cannot use up the total."""

REFUSED_SESSION_SECONDS: Final = 2.0
"""How long a refused session waits for the CONNECT it is to refuse."""

HARD_CAP_FACTOR: Final = 2
"""Engine.IO's ``maxPayload`` is this many times ``max_message_bytes``: a message between
the two is answered with a 413 error object; beyond it, it is not read at all."""

_REASONS: Final = {
    # Only a Socket.IO DISCONNECT is the client leaving on purpose. The Engine.IO
    # session ending (its CLOSE packet, or the websocket closing, whatever the close
    # code) is a transport close, as Socket.IO counts it: such a client may come
    # back and be recovered (socket.io-client closes its engine that way when it
    # loses the network or the page goes away).
    "client_namespace_disconnect": CloseReason.CLIENT_DISCONNECT,
    "slow_consumer": CloseReason.SLOW_CONSUMER,
    "payload_too_large": CloseReason.PAYLOAD_TOO_LARGE,
}


@dataclass(slots=True)
class _Session:
    """What the binding keeps per Engine.IO session: its handshake, and until the first
    CONNECT is decided, its pending-handshake slot (or the refusal of one)."""

    handshake: Handshake
    slot: HandshakeSlot | None
    refusal: ConnectionRefused | None = None
    undecided: bool = True


@dataclass(slots=True, eq=False)
class _Peer:
    """A connected socket as the core knows it."""

    connection: Connection | None = None
    replayed: frozenset[str] = frozenset()
    """Offsets replayed to this socket on recovery: the same broadcast is not sent twice."""
    live: list[tuple[str, list[Any]]] | None = dataclasses.field(default_factory=list)
    """Broadcasts (offset, frames) for this socket while its CONNECT is decided (None
    once it was): they go out after it, merged with what recovery replays."""


class SocketIOTransport:
    """The core's :class:`~wsgate.core.port.TransportLink` for Socket.IO; ``asgi`` serves it."""

    name = "socketio"

    def __init__(
        self,
        port: Port,
        *,
        origin_allowed: Callable[[str, Scope], bool],
        ping_interval: float = 25.0,
        ping_timeout: float = 20.0,
    ) -> None:
        self.port = port
        self.max_message_bytes = port.max_message_bytes
        self.sockets = SocketServer(
            self,
            SocketConfig(
                connect_timeout=port.connect_timeout, max_message_bytes=port.max_message_bytes
            ),
        )
        self.engine = EngineServer(
            self.sockets,
            EngineConfig(
                ping_interval=ping_interval,
                ping_timeout=ping_timeout,
                max_payload=HARD_CAP_FACTOR * port.max_message_bytes,
                upgrade_timeout=port.connect_timeout,
                cors=origin_allowed,
            ),
        )
        self.sockets.on_malformed = self.engine.on_malformed = self._malformed
        self._peers: Rooms[Socket] = Rooms()
        self._refused_waiting = 0
        self._refused_by_address: dict[str, int] = {}
        self._releasing: set[asyncio.Task[None]] = set()
        port.attach(self)

    def _malformed(self) -> None:
        self.port.malformed(self.name)

    async def asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.engine(scope, receive, send)

    # -- SocketHandler: calls from the protocol stack --------------------------------

    def open(self, client: Client, scope: Scope) -> None:
        handshake = Handshake.from_asgi_scope(scope, transport=self.name)
        try:
            # No conn_id yet: the Engine.IO sid is a session credential (a polling
            # client is its sid) and must not reach the refusal's audit line.
            slot = self.port.take_handshake_slot(handshake, conn_id="-", transport=self.name)
        except ConnectionRefused as refusal:
            address = handshake.remote_addr or "-"
            from_address = self._refused_by_address.get(address, 0)
            if (
                self._refused_waiting >= MAX_REFUSED_SESSIONS
                or from_address >= MAX_REFUSED_SESSIONS_PER_ADDRESS
            ):
                raise OpenRefused(
                    503, {"status": 503, "code": str(refusal.code), "message": refusal.message}
                ) from None
            self._refused_waiting += 1
            self._refused_by_address[address] = from_address + 1
            client.context = _Session(handshake, None, refusal)
            # A client sends its CONNECT right after the handshake: a refused session
            # that does not is not kept for the whole connect deadline.
            asyncio.get_running_loop().call_later(
                REFUSED_SESSION_SECONDS, client.close, "connect_refused"
            )
            return
        client.context = _Session(handshake, slot)

    def closed(self, client: Client, reason: str) -> None:
        slot = self._decided(client.context)
        if slot is not None:
            slot.release()

    def _decided(self, state: _Session) -> HandshakeSlot | None:
        """The first CONNECT is decided (or the session is gone); returns the slot it held."""
        if not state.undecided:
            return None
        state.undecided = False
        slot, state.slot = state.slot, None
        if state.refusal is not None:
            self._refused_waiting -= 1
            address = state.handshake.remote_addr or "-"
            left = self._refused_by_address.pop(address, 1) - 1
            if left:
                self._refused_by_address[address] = left
        return slot

    async def connect(self, socket: Socket, auth: Any) -> dict[str, Any] | None:
        client = socket.client
        state: _Session = client.context
        # The first CONNECT of a session uses (and gives back) the session's slot;
        # a later one holds a slot of its own while it is checked.
        first = state.undecided
        slot = self._decided(state)
        if first and state.refusal is not None:
            return self._refused(client, socket, state.refusal)
        handshake = dataclasses.replace(state.handshake, auth=auth)
        peer = _Peer()
        socket.context = peer
        # Registered before admit, so that on_connect can join rooms and emit; what
        # it sends waits behind the CONNECT answer (Socket.send_frames).
        self._peers.add(socket.sid, socket)
        try:
            peer.connection = await self.port.admit(
                socket.namespace, handshake, socket.sid, self, slot=slot
            )
        except ConnectionRefused as refusal:
            self._peers.discard(socket.sid, socket)
            return self._refused(client, socket, refusal)
        # Only now, with the token and everything else checked as for any
        # connection, may an earlier session be taken back and replayed.
        resumption = await self.port.resume(peer.connection, auth)
        socket.pid = resumption.pid
        live, peer.live = peer.live or [], None
        if not resumption.missed:
            for _offset, frames in live:
                socket.send_frames(frames)
            return None
        # What was missed, in stream order, then what arrived live and is not in it
        # (newer): a broadcast both read back and received live goes out once, in
        # its place.
        replayed = frozenset(one.offset for one in resumption.missed)
        out: list[Any] = []
        for one in resumption.missed:
            args = [*_args(one.event, one.data), one.offset]
            out.extend(encode(PacketType.EVENT, socket.namespace, args))
        for offset, frames in live:
            if offset not in replayed:
                out.extend(frames)
        peer.replayed = replayed
        socket.send_first(out)
        return None

    def _refused(
        self, client: Client, socket: Socket, refusal: ConnectionRefused
    ) -> dict[str, Any]:
        if not any(other is not socket for other in client.sockets.values()):
            # Nothing else on this session: it ends once the CONNECT_ERROR is out.
            asyncio.get_running_loop().call_soon(client.close, "connect_refused")
        return {"message": refusal.message, "data": {"code": str(refusal.code)}}

    async def event(self, socket: Socket, event: str, args: list[Any], ack_id: int | None) -> None:
        peer: _Peer | None = socket.context
        connection = peer.connection if peer is not None else None
        if connection is None or connection.closed:
            return
        payload = args[0] if args else None
        await self.port.submit(connection, event, payload, _responder(socket, ack_id))

    async def oversize(self, socket: Socket, ack_id: int | None, size: int) -> None:
        peer: _Peer | None = socket.context
        connection = peer.connection if peer is not None else None
        if connection is None or connection.closed:
            return
        reply = self.port.oversize(connection, size)
        await _responder(socket, ack_id)(Reply(reply, failed=True))

    def disconnected(self, socket: Socket, reason: str) -> None:
        self._peers.discard(socket.sid, socket)
        peer: _Peer | None = socket.context
        connection = peer.connection if peer is not None else None
        if connection is None:
            return
        task = asyncio.get_running_loop().create_task(
            self.port.release(connection, _REASONS.get(reason, CloseReason.TRANSPORT_CLOSE))
        )
        self._releasing.add(task)
        task.add_done_callback(self._released)

    def _released(self, task: asyncio.Task[None]) -> None:
        self._releasing.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("releasing a Socket.IO connection failed", exc_info=task.exception())

    # -- TransportLink: calls from the core -------------------------------------------

    async def send(self, conn_id: str, namespace: str, event: str, data: Any) -> None:
        socket = self._peers.get(conn_id)
        if socket is not None and socket.namespace == namespace:
            socket.send_frames(encode(PacketType.EVENT, namespace, _args(event, data)))

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
        members = self._peers.members(namespace, room)
        if not members:
            return
        args = _args(event, data)
        if offset is not None:
            args.append(offset)  # connection-state recovery: the client's last offset
        frames = encode(PacketType.EVENT, namespace, args)  # once, for everyone
        for socket in list(members):
            if socket.sid != skip:
                if offset is not None:
                    peer: _Peer = socket.context
                    if offset in peer.replayed:
                        continue
                    if peer.live is not None:
                        # Its CONNECT is being decided: kept (at most MAX_HELD_FRAMES)
                        # until recovery has said what it replays.
                        if len(peer.live) < MAX_HELD_FRAMES:
                            peer.live.append((offset, frames))
                        continue
                socket.send_frames(frames)

    async def enter_room(self, conn_id: str, namespace: str, room: str) -> None:
        self._peers.enter(conn_id, namespace, room)

    async def leave_room(self, conn_id: str, namespace: str, room: str) -> None:
        self._peers.leave(conn_id, namespace, room)

    async def close(self, conn_id: str, namespace: str, reason: str) -> None:
        """Disconnect the namespace; the Engine.IO session goes too once no namespace is left.

        A well-behaved client closes its transport after its last namespace
        was disconnected; one that does not would otherwise keep an idle
        session open for as long as it answers pings.
        """
        socket = self._peers.get(conn_id)
        if socket is None or socket.namespace != namespace:
            return
        client = socket.client
        if reason == CloseReason.SERVER_SHUTDOWN:
            # No DISCONNECT packet: a client told "io server disconnect" would not
            # come back, where a server going away is exactly when it should. The
            # Engine.IO CLOSE packet says the server ended it (python-socketio's
            # "server disconnect"; socket.io-client reconnects), then close 1001.
            if client.session.transport is Transport.WEBSOCKET:
                client.session.send(CLOSE)
            client.close(reason)
            return
        self.sockets.disconnect(socket, reason)
        if not client.sockets:
            client.close(reason)


def _args(event: str, data: Any) -> list[Any]:
    if isinstance(data, tuple):
        return [event, *data]
    if data is not None:
        return [event, data]
    return [event]


def _responder(socket: Socket, ack_id: int | None) -> Callable[[Reply], Any]:
    """How a reply goes out: through the ack, or as an ``exception`` event when it failed."""

    async def respond(reply: Reply) -> None:
        if ack_id is None and not reply.failed:
            return
        try:
            if ack_id is not None:
                socket.ack(ack_id, [reply.data])
            else:
                socket.emit("exception", reply.data)
        except TypeError:
            log.error("a reply is not JSON; sending a 500 instead")
            error = InternalError().to_payload()
            if ack_id is not None:
                socket.ack(ack_id, [error])
            else:
                socket.emit("exception", error)

    return respond
