"""Socket.IO transport: python-socketio speaks the protocol, the core decides everything else.

python-socketio has no hook that tells a handler whether the client asked for
an ack, and none for a connect deadline, so two of its (stable, long-lived)
private methods are overridden here; the dependency is pinned to <6 for it.
Events go to the core's port, which runs each in a task of its own (with the
per-connection in-flight cap): python-socketio hands messages over one at a
time (it turns Engine.IO's ``async_handlers`` off), so without that a slow
handler held up its client's next events. This bridge is being replaced by
wsgate's own Engine.IO/Socket.IO engine (issue 9).

Message size: every Engine.IO message is measured before python-socketio
decodes it; an event over ``max_message_bytes`` is answered with a 413 error
object (through its ack, or as an ``exception`` event) and never decoded.
Engine.IO's own ``max_http_buffer_size`` is set to twice that as the hard
cap: a message beyond it is not even read, and Engine.IO closes the
connection (a polling POST gets HTTP 413).

Performance (issue 5, measured in bench/README.md): Socket.IO packets are
JSON-encoded with orjson (the standard library stays the fallback for what
orjson refuses), and a broadcast is encoded once and put straight on each
recipient's Engine.IO send queue, where python-socketio would start one task
per recipient.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import engineio
import orjson
import socketio
from engineio import packet as eio_packet
from socketio import packet

from wsgate.core.port import (
    Connection,
    ConnectionRefused,
    Handshake,
    Port,
    Reply,
    has_long_integer,
    message_too_large,
)
from wsgate.transports.engineio_session import (
    drop_session,
    install_fast_poll,
    release_pending_poll,
)

log = logging.getLogger("wsgate.socketio")

MAX_QUEUED_PACKETS = 1024
"""Packets waiting for one Socket.IO client before it counts as not reading (as on /ws)."""

HARD_CAP_FACTOR = 2
"""Engine.IO closes on messages over this many times ``max_message_bytes``."""

_HEADER_SCAN = 256
"""How far into an oversize packet to look for the start of its JSON data."""


class FastJson:
    """The ``json`` module python-socketio calls, backed by orjson.

    Every answer is the standard library's, which python-socketio used
    before: orjson refuses integers beyond 64 bits, strings holding lone
    surrogates, non-string keys, and (on input) ``NaN``/``Infinity``, and for
    those the standard library answers instead. One difference would be
    silent: orjson reads an integer beyond 64 bits as a float, so input with
    a run of 19 or more digits (rare: ids and timestamps are shorter) is left
    to the standard library. orjson writes non-ASCII characters as UTF-8
    rather than ``\\u`` escapes: the same JSON value in fewer bytes, as the
    /ws transport already sends.
    """

    @staticmethod
    def dumps(obj: Any, **kwargs: Any) -> str:
        try:
            return orjson.dumps(obj).decode()
        except TypeError:  # orjson.JSONEncodeError is a TypeError
            return json.dumps(obj, **kwargs)

    @staticmethod
    def loads(text: str | bytes, **kwargs: Any) -> Any:
        if has_long_integer(text):
            return json.loads(text, **kwargs)
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            return json.loads(text, **kwargs)


class GatewayPacket(packet.Packet):  # type: ignore[misc]
    """python-socketio's packet with orjson and a cheaper binary check.

    Passed as the server's ``serializer`` (its documented way to swap the
    packet class), so the JSON choice stays on this server and does not leak
    into other python-socketio servers in the process.
    """

    json = FastJson

    @classmethod
    def data_is_binary(cls, data: Any) -> bool:
        """Same answer as python-socketio's, without building a list per level.

        The stock version walks the whole structure through
        ``functools.reduce`` over a list it allocates for every container;
        replies and broadcasts are checked on every packet.
        """
        kind = type(data)
        if kind is str or kind is int or kind is float or kind is bool or data is None:
            return False
        if isinstance(data, bytes | bytearray):
            return True
        if isinstance(data, list):
            return any(cls.data_is_binary(item) for item in data)
        if isinstance(data, dict):
            return any(cls.data_is_binary(item) for item in data.values())
        return False


class SocketIOTransport:
    """Bridges a python-socketio AsyncServer to the core :class:`Runtime`."""

    name = "socketio"

    def __init__(
        self,
        port: Port,
        *,
        origin_allowed: Callable[[str], bool],
        client_manager: socketio.AsyncManager | None = None,
        path: str = "socket.io",
    ) -> None:
        self.port = port
        self.connect_timeout = port.connect_timeout
        self.max_message_bytes = max_message_bytes = port.max_message_bytes
        self._close_reasons: dict[str, str] = {}
        self.sio = _GatewaySocketIOServer(
            self,
            async_mode="asgi",
            # Every namespace reaches the core, which refuses unknown ones with
            # the contract's code (python-socketio's own answer carries none).
            namespaces="*",
            cors_allowed_origins=origin_allowed,
            cors_credentials=True,
            max_http_buffer_size=HARD_CAP_FACTOR * max_message_bytes,
            client_manager=client_manager,
            serializer=GatewayPacket,
            logger=False,
            engineio_logger=False,
        )
        for namespace in [*port.namespaces(), "*"]:
            self.sio.register_namespace(_LifecycleBridge(self, namespace))
        self.asgi = socketio.ASGIApp(self.sio, socketio_path=path)
        port.attach(self)

    # -- calls from python-socketio -------------------------------------------------

    async def on_connect(
        self, sid: str, namespace: str, environ: dict[str, Any], auth: Any
    ) -> None:
        scope = environ.get("asgi.scope", {})
        handshake = Handshake.from_asgi_scope(scope, auth=auth, transport=self.name)
        try:
            await self.port.admit(namespace, handshake, sid, self)
        except ConnectionRefused as refusal:
            raise socketio.exceptions.ConnectionRefusedError(
                refusal.message, {"code": str(refusal.code)}
            ) from None

    async def on_disconnect(self, sid: str, reason: str) -> None:
        connection = self.port.connection(sid)
        if connection is not None:
            await self.port.release(connection, self._close_reasons.pop(sid, str(reason)))
        else:
            self._close_reasons.pop(sid, None)

    async def on_event(self, eio_sid: str, namespace: str, ack_id: int | None, data: Any) -> None:
        sid = self.sio.manager.sid_from_eio_sid(eio_sid, namespace)
        connection = self.port.connection(sid) if sid else None
        if connection is None or connection.closed:
            return
        if not isinstance(data, list) or not data or not isinstance(data[0], str):
            return

        async def respond(reply: Reply) -> None:
            await self._reply(eio_sid, sid, namespace, ack_id, reply.data, reply.failed)

        await self.port.submit(connection, data[0], data[1] if len(data) > 1 else None, respond)

    async def on_oversize(
        self, eio_sid: str, namespace: str, ack_id: int | None, size: int
    ) -> None:
        """A message over ``max_message_bytes``: a 413 answer, the message never decoded."""
        sid = self.sio.manager.sid_from_eio_sid(eio_sid, namespace)
        connection = self.port.connection(sid) if sid else None
        if connection is None or connection.closed:
            return
        reply = self.port.oversize(connection, size)
        await self._reply(eio_sid, sid, namespace, ack_id, reply, True)

    async def _reply(
        self,
        eio_sid: str,
        sid: str,
        namespace: str,
        ack_id: int | None,
        reply: Any,
        failed: bool,
    ) -> None:
        if ack_id is not None:
            await self.sio.send_ack(eio_sid, namespace, ack_id, reply)
        elif failed:
            await self.send(sid, namespace, "exception", reply)

    # -- TransportLink: calls from the core -------------------------------------------

    async def send(self, conn_id: str, namespace: str, event: str, data: Any) -> None:
        # A Socket.IO sid is also the name of its own room: the broadcast path
        # reaches exactly that connection, without emit's task per recipient.
        await self.sio.broadcast(event, data, namespace=namespace, room=conn_id, skip=None)

    async def broadcast(
        self, namespace: str, event: str, data: Any, *, room: str | None, skip: str | None
    ) -> None:
        await self.sio.broadcast(event, data, namespace=namespace, room=room, skip=skip)

    async def enter_room(self, conn_id: str, namespace: str, room: str) -> None:
        await self.sio.enter_room(conn_id, room, namespace=namespace)

    async def leave_room(self, conn_id: str, namespace: str, room: str) -> None:
        await self.sio.leave_room(conn_id, room, namespace=namespace)

    async def close(self, conn_id: str, namespace: str, reason: str) -> None:
        """Disconnect the namespace; the transport goes too once no namespace is left.

        A well-behaved client closes its transport after its last namespace
        was disconnected; one that does not would otherwise keep an idle
        Engine.IO session open for as long as it answers pings.
        """
        self._close_reasons[conn_id] = reason
        eio_sid = self.sio.manager.eio_sid_from_sid(conn_id, namespace)
        await self.sio.disconnect(conn_id, namespace=namespace)
        if eio_sid is not None and not self.sio.has_namespace(eio_sid):
            await drop_session(self.sio.eio, eio_sid, "server_disconnect")

    def connection(self, conn_id: str) -> Connection | None:
        return self.port.connection(conn_id)


class _LifecycleBridge(socketio.AsyncNamespace):  # type: ignore[misc]
    """Routes connect/disconnect of one namespace to the transport."""

    def __init__(self, transport: SocketIOTransport, namespace: str) -> None:
        super().__init__(namespace)
        self.transport = transport

    async def trigger_event(self, event: str, *args: Any) -> Any:
        namespace = self.namespace
        if namespace == "*":  # the catch-all gets the namespace as its first argument
            namespace, *rest = args
            args = tuple(rest)
        if event == "connect":
            sid, environ = args[0], args[1]
            auth = args[2] if len(args) > 2 else None
            await self.transport.on_connect(sid, namespace, environ, auth)
            return True
        if event == "disconnect":
            await self.transport.on_disconnect(args[0], args[1] if len(args) > 1 else "unknown")
            return None
        return None


class _GatewaySocketIOServer(socketio.AsyncServer):  # type: ignore[misc]
    """python-socketio with an ack-aware event path and a namespace-connect deadline."""

    def __init__(self, transport: SocketIOTransport, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._transport = transport
        self._deadlines: dict[str, asyncio.TimerHandle] = {}
        self._closing: set[asyncio.Task[None]] = set()

    async def _handle_event(
        self, eio_sid: str, namespace: str | None, id: int | None, data: Any
    ) -> None:
        await self._transport.on_event(eio_sid, namespace or "/", id, data)

    async def _handle_eio_message(self, eio_sid: str, data: str | bytes) -> None:
        limit = self._transport.max_message_bytes
        if not message_too_large(data, limit):
            await super()._handle_eio_message(eio_sid, data)
            return
        size = len(data) if isinstance(data, bytes) else len(data.encode("utf-8", "replace"))
        pending = self._binary_packet.pop(eio_sid, None)
        if pending is not None:
            # An oversize attachment: the whole binary event is dropped.
            namespace, ack_id = pending.namespace, pending.id
        elif isinstance(data, str):
            header = self._oversize_header(data)
            if header is None:
                log.info("dropped an oversize message that is not an event (%d bytes)", size)
                return
            namespace, ack_id = header
        else:
            log.info("dropped an unexpected oversize binary message (%d bytes)", size)
            return
        await self._transport.on_oversize(eio_sid, namespace or "/", ack_id, size)

    def _oversize_header(self, data: str) -> tuple[str | None, int | None] | None:
        """Namespace and ack id of an oversize EVENT packet, read without decoding its JSON.

        The packet is ``2[/<namespace>,][<id>]<json>``; its JSON data is an
        array, so the header ends at the first ``[``.
        """
        if data[:1] != str(packet.EVENT):
            return None
        start = data.find("[", 1, _HEADER_SCAN)
        if start < 0:
            return None
        try:
            head = self.packet_class(encoded_packet=data[:start])
        except ValueError:
            return None
        return head.namespace, head.id

    async def broadcast(
        self, event: str, data: Any, *, namespace: str, room: str | None, skip: str | None
    ) -> None:
        """``emit`` to a room or a namespace: one encode, then a queue put per recipient.

        python-socketio's ``AsyncManager.emit`` already encodes once, but
        then starts one task per recipient (``_send_eio_packet``) and waits
        for them all; at 1,000 members that is 1,000 tasks per message and a
        third of the CPU in the garbage collector (bench/profile_baseline.md).
        Here the already-encoded Engine.IO packet goes straight onto each
        recipient's send queue, which is all ``AsyncSocket.send`` does on its
        normal path: the socket's own writer (websocket) or its next poll
        (long-polling) delivers it, in order with everything else queued for
        that socket. Recipients come from python-socketio's manager, so room
        membership stays its business.

        Falls back to ``emit`` whenever this shortcut would not be exactly
        what ``emit`` does: another client manager (e.g. a pub/sub manager,
        which also publishes to other servers) or a packet with binary
        attachments (several Engine.IO packets per message).
        """
        manager = self.manager
        if type(manager) is not socketio.AsyncManager:
            await self.emit(event, data, to=room, namespace=namespace, skip_sid=skip)
            return
        if namespace not in manager.rooms:
            return
        if isinstance(data, tuple):
            args = [event, *data]
        elif data is not None:
            args = [event, data]
        else:
            args = [event]
        encoded = self.packet_class(packet.EVENT, namespace=namespace, data=args).encode()
        if not isinstance(encoded, str):
            await self.emit(event, data, to=room, namespace=namespace, skip_sid=skip)
            return
        message = eio_packet.Packet(eio_packet.MESSAGE, encoded)
        sockets = self.eio.sockets
        ping_timeout = self.eio.ping_timeout
        now = time.time()
        late: list[Any] = []
        slow: list[str] = []
        for sid, eio_sid in manager.get_participants(namespace, room):
            if sid == skip:
                continue
            socket = sockets.get(eio_sid)
            if socket is None or socket.closed:
                continue  # send_packet drops these too ("Session not found")
            last_ping = socket.last_ping
            if last_ping and now - last_ping > ping_timeout:
                # The client missed its ping: AsyncSocket.send closes it; let it.
                late.append(socket)
                continue
            if socket.queue.qsize() >= MAX_QUEUED_PACKETS:
                # A client that stopped reading (while still answering pings)
                # would make its unbounded queue grow with every broadcast.
                slow.append(eio_sid)
                continue
            socket.queue.put_nowait(message)
        for socket in late:
            with contextlib.suppress(engineio.exceptions.SocketIsClosedError):
                await socket.send(message)
        for eio_sid in slow:
            log.warning("closing an Engine.IO session: it stopped reading")  # no sid: a credential
            await drop_session(self.eio, eio_sid, "slow_consumer")

    async def send_ack(self, eio_sid: str, namespace: str, ack_id: int, reply: Any) -> None:
        await self._send_packet(
            eio_sid, self.packet_class(packet.ACK, namespace=namespace, id=ack_id, data=[reply])
        )

    async def _handle_eio_connect(self, eio_sid: str, environ: dict[str, Any]) -> None:
        await super()._handle_eio_connect(eio_sid, environ)
        socket = self.eio.sockets.get(eio_sid)
        if socket is not None:
            install_fast_poll(socket)
        loop = asyncio.get_running_loop()
        self._deadlines[eio_sid] = loop.call_later(
            self._transport.connect_timeout, self._deadline_passed, eio_sid
        )

    async def _handle_eio_disconnect(self, eio_sid: str, reason: Any = None) -> None:
        handle = self._deadlines.pop(eio_sid, None)
        if handle is not None:
            handle.cancel()
        await super()._handle_eio_disconnect(eio_sid, reason)
        release_pending_poll(self.eio, eio_sid)

    def has_namespace(self, eio_sid: str) -> bool:
        """Whether the Engine.IO session still has a connected namespace."""
        for namespace in self._transport.port.namespaces():
            sid = self.manager.sid_from_eio_sid(eio_sid, namespace)
            if sid is not None and self.manager.is_connected(sid, namespace):
                return True
        return False

    def _deadline_passed(self, eio_sid: str) -> None:
        """A transport that has not connected any namespace by the deadline is closed."""
        self._deadlines.pop(eio_sid, None)
        if eio_sid not in self.environ or self.has_namespace(eio_sid):
            return
        log.info("closing an Engine.IO session: no namespace connected in time")  # no sid
        task = asyncio.get_running_loop().create_task(
            drop_session(self.eio, eio_sid, "connect_timeout")
        )
        self._closing.add(task)  # held until done, so it is not collected mid-run
        task.add_done_callback(self._closed_late)

    def _closed_late(self, task: asyncio.Task[None]) -> None:
        self._closing.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("closing a late Engine.IO session failed: %r", task.exception())
