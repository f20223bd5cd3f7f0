"""Socket.IO v5 on wsgate's Engine.IO server: namespaces, connect, events, acks, binary.

The protocol is the ``socketio/socket.io-protocol`` README; its official
test suite passes against ``python -m wsgate.conformance socketio``. What
runs above is a :class:`SocketHandler` (wsgate's binding to the core's port,
or the conformance fixture); this module decides nothing about security.

Bounds that are the protocol layer's own:

- an Engine.IO session must connect a namespace within ``connect_timeout``,
  or it is closed;
- a message over ``max_message_bytes`` is never decoded: an EVENT gets
  :meth:`SocketHandler.oversize` (a 413 through its ack), a CONNECT gets
  CONNECT_ERROR ``payload_too_large`` at once and the session is closed;
- a binary packet announces at most ``max_attachments`` attachments, and its
  attachments together stay within ``max_message_bytes``, or the session is
  closed;
- a malformed packet closes its session and counts in :attr:`SocketServer.malformed`.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from starlette.types import Scope

from wsgate.transports.engineio import EngineHandler, Session
from wsgate.transports.sio.packet import (
    Packet,
    PacketError,
    PacketType,
    decode,
    decode_header,
    dumps,
    encode,
    reconstruct,
)

__all__ = ["Client", "ClientState", "Socket", "SocketConfig", "SocketHandler", "SocketServer"]

log = logging.getLogger("wsgate.socketio")

MAX_HELD_FRAMES = 64
"""Frames a socket may queue before its CONNECT is answered."""


@dataclass(frozen=True, slots=True)
class SocketConfig:
    connect_timeout: float = 45.0
    """Seconds an Engine.IO session has to connect its first namespace."""
    max_message_bytes: int = 1_000_000
    """Largest packet decoded (its attachments included); larger ones are answered, not read."""
    max_attachments: int = 16
    """Binary attachments one packet may announce."""


class SocketHandler(Protocol):
    """What the Socket.IO layer asks of the application above it."""

    def open(self, client: Client, scope: Scope) -> None:
        """An Engine.IO session opened (may raise ``OpenRefused``)."""

    async def connect(self, socket: Socket, auth: Any) -> dict[str, Any] | None:
        """Admit ``socket``; None, or the CONNECT_ERROR data that refuses it."""

    async def event(self, socket: Socket, event: str, args: list[Any], ack_id: int | None) -> None:
        """One event of a connected socket."""

    async def oversize(self, socket: Socket, ack_id: int | None, size: int) -> None:
        """An event over ``max_message_bytes``, never decoded."""

    def disconnected(self, socket: Socket, reason: str) -> None:
        """``socket`` is gone (once): the client left it, the server closed it, or its session."""

    def closed(self, client: Client, reason: str) -> None:
        """The Engine.IO session of ``client`` is gone (after its sockets' ``disconnected``)."""


class ClientState(enum.Enum):
    HANDSHAKING = "handshaking"
    """No namespace connected yet; the connect deadline runs."""
    CONNECTED = "connected"
    """At least one namespace was connected."""
    CLOSED = "closed"


class Socket:
    """One namespace of one client: ``sid`` is its Socket.IO id, ``context`` the handler's."""

    __slots__ = ("_held", "client", "connected", "context", "namespace", "pid", "sid")

    def __init__(self, client: Client, namespace: str) -> None:
        self.client = client
        self.namespace = namespace
        self.sid = secrets.token_urlsafe(15)
        self.connected = False
        self.context: Any = None
        self.pid: str | None = None
        """The private session id for connection-state recovery, sent in the CONNECT answer."""
        self._held: list[Any] | None = []

    def emit(self, event: str, *args: Any) -> None:
        """Send an event; raises TypeError for data JSON cannot hold."""
        self.send_frames(encode(PacketType.EVENT, self.namespace, [event, *args]))

    def ack(self, ack_id: int, args: list[Any]) -> None:
        """Answer the client's ack ``ack_id``; raises TypeError for data JSON cannot hold."""
        self.send_frames(encode(PacketType.ACK, self.namespace, args, ack_id))

    def send_frames(self, frames: list[Any]) -> None:
        """Queue encoded frames; before the CONNECT answer went out they wait behind it.

        What a handler sends while its connect is being decided (a welcome
        event from ``on_connect``) would otherwise reach the client before
        the namespace is connected, and be dropped by it. At most
        :data:`MAX_HELD_FRAMES` wait; the connection is refused or answered
        within the connect deadline anyway.
        """
        held = self._held
        if held is None:
            self.client.send_frames(frames)
        elif len(held) + len(frames) <= MAX_HELD_FRAMES:
            held.extend(frames)

    def send_first(self, frames: list[Any]) -> None:
        """Queue ``frames`` right behind the CONNECT answer, ahead of what already waits.

        Replayed broadcasts of a recovered session: the handler bounds how
        many there are, so :data:`MAX_HELD_FRAMES` does not apply.
        """
        held = self._held
        if held is None:
            self.client.send_frames(frames)
        else:
            self._held = frames + held

    def release_held(self) -> None:
        """The CONNECT answer is out: what waited goes now, and later frames directly."""
        held, self._held = self._held, None
        if held:
            self.client.send_frames(held)


@dataclass(slots=True)
class _Pending:
    """A binary packet waiting for its attachments."""

    packet: Packet | None  # None: an oversize one, whose attachments are dropped
    buffers: list[bytes]
    size: int


class Client:
    """One Engine.IO session as Socket.IO sees it: its sockets, one per namespace."""

    __slots__ = ("context", "deadline", "pending", "session", "sockets", "state")

    def __init__(self, session: Session) -> None:
        self.session = session
        self.sockets: dict[str, Socket] = {}
        self.state = ClientState.HANDSHAKING
        self.pending: _Pending | None = None
        self.deadline: asyncio.TimerHandle | None = None
        self.context: Any = None

    def send_frames(self, frames: list[Any]) -> None:
        send = self.session.send
        for frame in frames:
            send(frame)

    def close(self, reason: str) -> None:
        """End the Engine.IO session (what was queued goes out first)."""
        self.session.close(reason)


class SocketServer(EngineHandler):
    """The Engine.IO handler that speaks Socket.IO to a :class:`SocketHandler`."""

    def __init__(self, handler: SocketHandler, config: SocketConfig) -> None:
        self.handler = handler
        self.config = config
        self.malformed = 0
        """Malformed Socket.IO packets received (each closed its session)."""
        self.on_malformed: Callable[[], None] = lambda: None
        """Called for each malformed packet: the binding counts it in the App's metrics."""

    # -- EngineHandler ------------------------------------------------------------------

    def open(self, session: Session, scope: Scope) -> None:
        client = Client(session)
        self.handler.open(client, scope)
        session.context = client
        client.deadline = asyncio.get_running_loop().call_later(
            self.config.connect_timeout, self._deadline_passed, client
        )

    def closing(self, session: Session, reason: str) -> None:
        client: Client | None = session.context
        if client is None or client.state is ClientState.CLOSED:
            return
        client.state = ClientState.CLOSED
        client.pending = None
        if client.deadline is not None:
            client.deadline.cancel()
            client.deadline = None
        sockets = list(client.sockets.values())
        client.sockets.clear()
        for socket in sockets:
            if socket.connected:
                socket.connected = False
                self.handler.disconnected(socket, reason)
        self.handler.closed(client, reason)
        # The session and its client refer to each other; with the client closed
        # nothing reads it through the session again (``message`` treats None as
        # closed), so the cycle is broken here rather than left to the garbage
        # collector (~20 objects per connection, see bench/README.md, run 8).
        session.context = None

    async def message(self, session: Session, data: str | bytes) -> None:
        client: Client | None = session.context
        if client is None or client.state is ClientState.CLOSED:
            return
        if isinstance(data, bytes):
            await self._attachment(client, data)
            return
        if client.pending is not None:
            self._malformed(client, "a text packet while attachments were due")
            return
        limit = self.config.max_message_bytes
        if len(data) > limit // 4 and len(data.encode("utf-8", "surrogatepass")) > limit:
            await self._oversize(client, data)
            return
        try:
            packet = decode(data, self.config.max_attachments)
        except PacketError as error:
            self._malformed(client, str(error))
            return
        if packet.attachments:
            client.pending = _Pending(packet, [], len(data))
            return
        await self._dispatch(client, packet)

    # -- packets ------------------------------------------------------------------------

    async def _dispatch(self, client: Client, packet: Packet) -> None:
        kind = packet.type
        if kind is PacketType.EVENT or kind is PacketType.BINARY_EVENT:
            socket = client.sockets.get(packet.namespace)
            if socket is None or not socket.connected:
                return  # not connected to that namespace: ignored, as Socket.IO does
            args: list[Any] = packet.data
            await self.handler.event(socket, args[0], args[1:], packet.id)
        elif kind is PacketType.CONNECT:
            await self._connect(client, packet.namespace, packet.data)
        elif kind is PacketType.DISCONNECT:
            socket = client.sockets.pop(packet.namespace, None)
            if socket is not None and socket.connected:
                socket.connected = False
                self.handler.disconnected(socket, "client_namespace_disconnect")
        # ACK / BINARY_ACK: the server never asks a client for an ack; ignored.

    async def _connect(self, client: Client, namespace: str, auth: Any) -> None:
        if namespace in client.sockets:
            return  # already connected (or connecting): a repeat is ignored
        socket = Socket(client, namespace)
        client.sockets[namespace] = socket
        refusal = await self.handler.connect(socket, auth)
        if client.state is ClientState.CLOSED or client.sockets.get(namespace) is not socket:
            return
        if refusal is not None:
            del client.sockets[namespace]
            self.connect_error(client, namespace, refusal)
            return
        socket.connected = True
        if client.state is ClientState.HANDSHAKING:
            client.state = ClientState.CONNECTED
            if client.deadline is not None:
                client.deadline.cancel()
                client.deadline = None
        prefix = "" if namespace == "/" else namespace + ","
        answer = {"sid": socket.sid}
        if socket.pid is not None:  # connection-state recovery is on
            answer["pid"] = socket.pid
        client.session.send("40" + prefix + dumps(answer))
        socket.release_held()

    @staticmethod
    def connect_error(client: Client, namespace: str, data: dict[str, Any]) -> None:
        prefix = "" if namespace == "/" else namespace + ","
        client.session.send("44" + prefix + dumps(data))

    async def _attachment(self, client: Client, data: bytes) -> None:
        pending = client.pending
        if pending is None:
            self._malformed(client, "an unexpected binary message")
            return
        pending.size += len(data)
        if pending.size > self.config.max_message_bytes:
            client.pending = None
            log.info("closing a Socket.IO session: binary attachments over the limit")
            client.close("payload_too_large")
            return
        pending.buffers.append(data)
        packet = pending.packet
        if packet is None or len(pending.buffers) < packet.attachments:
            return
        client.pending = None
        try:
            packet.data = reconstruct(packet.data, pending.buffers)
        except (PacketError, RecursionError):
            self._malformed(client, "bad attachment placeholder")
            return
        await self._dispatch(client, packet)

    async def _oversize(self, client: Client, data: str) -> None:
        size = len(data.encode("utf-8", "surrogatepass"))
        try:
            head = decode_header(data[:64], self.config.max_attachments)
        except PacketError:
            self._malformed(client, "an oversize message that is not a packet")
            return
        if head.type is PacketType.CONNECT:
            self.connect_error(
                client,
                head.namespace,
                {
                    "message": "The CONNECT packet is too large",
                    "data": {"code": "payload_too_large"},
                },
            )
            client.close("payload_too_large")
            return
        if head.type is PacketType.EVENT or head.type is PacketType.BINARY_EVENT:
            socket = client.sockets.get(head.namespace)
            if socket is not None and socket.connected:
                await self.handler.oversize(socket, head.id, size)
            if head.attachments:
                client.close("payload_too_large")
            return
        log.info("closing a Socket.IO session: an oversize packet of type %s", head.type.name)
        client.close("payload_too_large")

    def _malformed(self, client: Client, what: str) -> None:
        self.malformed += 1
        self.on_malformed()
        log.debug("closing a Socket.IO session: malformed packet (%s)", what)
        client.session.close("parse_error", flush=False)

    def _deadline_passed(self, client: Client) -> None:
        client.deadline = None
        if client.state is ClientState.HANDSHAKING:
            log.info("closing an Engine.IO session: no namespace connected in time")
            client.close("connect_timeout")

    # -- from the server side -------------------------------------------------------------

    def disconnect(self, socket: Socket, reason: str) -> None:
        """Disconnect ``socket`` (DISCONNECT to the client); ``disconnected`` runs once."""
        client = socket.client
        if client.sockets.get(socket.namespace) is not socket:
            return
        del client.sockets[socket.namespace]
        prefix = "" if socket.namespace == "/" else socket.namespace + ","
        client.session.send("41" + prefix)
        if socket.connected:
            socket.connected = False
            self.handler.disconnected(socket, reason)
