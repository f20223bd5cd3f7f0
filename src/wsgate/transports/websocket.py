"""Plain WebSocket transport: the same gateways over a bare RFC 6455 socket (``/ws``).

It speaks raw ASGI rather than through Starlette's ``WebSocket`` class: the
hot path (receive, decode, dispatch, send) then carries no per-message
wrapper or state check, and the handful of ASGI messages involved is stable.

The handshake, in order (the origin was already judged by :class:`~wsgate.App`,
which refuses a disallowed ``Origin`` with HTTP 403 before anything here runs):

0. The socket takes a pending-handshake slot from the core (refused with
   4429 past ``max_pending_handshakes``, in total or from its address) and
   holds it until it is admitted or gone.
1. A token in the ``Authorization`` header or the ``access_token`` cookie (or
   the query string, when the App enabled it) is judged at once, before the
   socket is accepted. Accepting is still needed to deliver a close code the
   client can read, so a refusal is ``accept`` then ``close(4401/4403/4429)``.
2. Otherwise the socket is accepted and the first message must be
   ``{"type": "auth", "token": ...}`` within what is left of
   ``connect_timeout`` (close 4408 when it does not come, 4401 when it is
   something else).
3. The first frame of an admitted connection is always
   ``{"event": "ready", "data": {"sub", "expires_at"}}``; anything the
   gateway's ``on_connect`` sent is queued behind it.

Namespaces other than ``/`` are chosen with the query string:
``/ws?namespace=/admin``. Close reasons carry the contract's code word
(``token_expired``, ``forbidden``...), so a client can tell an expired token
from a bad one although both close with 4401.

Each connection has one reader (the ASGI task) and one writer task. The
reader hands every event to the core's port, which runs it in a task of its
own (at most ``MAX_IN_FLIGHT`` per connection, cancelled when the connection
ends): a slow handler never holds up the next event, and replies are matched
by ``id``. The writer drains a bounded outbox, so a broadcast only appends
an already encoded frame and never waits on a slow client; a client that
stops reading until its outbox is full is closed (1008) rather than
buffered without bound. A client that sends faster than it reads its replies
is not closed: the reader waits for the writer to catch up
(:mod:`wsgate.transports.backpressure`).

Only :mod:`wsgate.core.port` of the core is used here.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import secrets
from collections.abc import Mapping
from typing import Any, Final, NamedTuple

from starlette.responses import PlainTextResponse
from starlette.types import Message, Receive, Scope, Send

from wsgate.core.port import (
    BadRequest,
    CloseReason,
    Code,
    Connection,
    ConnectionRefused,
    Handshake,
    HandshakeSlot,
    InternalError,
    Port,
    Reply,
    message_too_large,
)
from wsgate.transports.backpressure import ReadGate
from wsgate.transports.frames import (
    FrameError,
    Request,
    auth_payload,
    decode_frame,
    encode,
    recover_id,
)
from wsgate.transports.rooms import Rooms

__all__ = ["CLOSE_CODES", "WebSocketTransport", "close_code"]

log = logging.getLogger("wsgate.websocket")

CLOSE_CODES: Final[Mapping[str, int]] = {
    Code.UNAUTHORIZED: 4401,
    Code.TOKEN_EXPIRED: 4401,
    Code.TOKEN_REVOKED: 4401,
    Code.FORBIDDEN: 4403,
    CloseReason.TIMEOUT: 4408,
    Code.PAYLOAD_TOO_LARGE: 1009,
    Code.TOO_MANY_CONNECTIONS: 4429,
    Code.RATE_LIMITED: 4429,
    Code.UNAVAILABLE: 1013,
    CloseReason.SLOW_CONSUMER: 1008,
    CloseReason.SERVER_SHUTDOWN: 1001,
    CloseReason.SERVER_DISCONNECT: 1000,
    Code.INTERNAL_ERROR: 1011,
}
"""Close code for each code or reason the core or this transport closes a connection with.

One code per failure on both transports: Socket.IO carries the code word,
``/ws`` this close code and the word as the close reason.
"""

MAX_QUEUED_FRAMES = 1024
"""Frames waiting for one client to read them before it counts as not reading at all."""

CLOSE_SEND_TIMEOUT = 5.0
"""How long a close frame may wait for a client's socket to drain; then the ASGI server's
keepalive is left to drop it."""


def close_code(reason: str) -> int:
    """The close code for ``reason``: the contract's codes, else 1000 (normal closure)."""
    return CLOSE_CODES.get(reason, 1000)


class _Close(NamedTuple):
    code: int
    reason: str


_GONE: Final = _Close(1006, "client_disconnect")


def _refusal_close(refusal: ConnectionRefused) -> _Close:
    return _Close(close_code(refusal.code), str(refusal.code))


_ACCEPT: Final[Message] = {"type": "websocket.accept"}


class _Peer:
    """One socket's outgoing side and its in-flight event budget."""

    __slots__ = (
        "_outbox",
        "_read_gate",
        "_send",
        "_wakeup",
        "_writer",
        "close_reason",
        "closing",
        "id",
        "namespace",
    )

    def __init__(self, conn_id: str, namespace: str, send: Send) -> None:
        self.id = conn_id
        self.namespace = namespace
        self.closing = False
        self.close_reason: str | None = None
        self._send = send
        self._outbox: collections.deque[str | _Close] = collections.deque()
        self._wakeup = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._read_gate = ReadGate(MAX_QUEUED_FRAMES)

    @property
    def backed_up(self) -> bool:
        """Whether the reader should let the writer catch up before taking a request."""
        return self._read_gate.backed_up(len(self._outbox))

    async def caught_up(self) -> bool:
        """Wait for the writer to drain the outbox (or for the connection to end).

        False when the client has read nothing for ``backpressure.MAX_READ_PAUSE``
        seconds: it is then closed as a slow consumer (as when its outbox
        reaches the cap), and this returns once the close frame is out or the
        writer gave up on it.
        """
        if self.closing or await self._read_gate.wait():
            return True
        log.warning("closing connection %s: the client is not reading its replies", self.id)
        self.abort(close_code(CloseReason.SLOW_CONSUMER), CloseReason.SLOW_CONSUMER)
        if self._writer is not None:
            await asyncio.wait([self._writer])
        return False

    def push(self, text: str) -> None:
        """Queue one encoded frame; never waits."""
        if self.closing:
            return
        if len(self._outbox) >= MAX_QUEUED_FRAMES:
            log.warning("closing connection %s: the client is not reading its messages", self.id)
            self.abort(close_code(CloseReason.SLOW_CONSUMER), CloseReason.SLOW_CONSUMER)
            return
        self._outbox.append(text)
        self._wakeup.set()

    def close(self, code: int, reason: str) -> None:
        """Close after the frames already queued (``auth:expired`` goes out before the close)."""
        if self.closing:
            return
        self.closing = True
        self.close_reason = reason
        self._outbox.append(_Close(code, reason))
        self._wakeup.set()
        self._read_gate.release()

    def abort(self, code: int, reason: str) -> None:
        """Close now, dropping queued frames: the writer may be stuck on a full socket."""
        self.closing = True
        self.close_reason = reason
        self._outbox.clear()
        self._outbox.append(_Close(code, reason))
        if self._writer is not None:
            self._writer.cancel()
            self._writer = asyncio.get_running_loop().create_task(self._write())
        self._wakeup.set()
        self._read_gate.release()

    def start(self, first_frame: str) -> None:
        """Admitted: ``first_frame`` (the ready frame) goes out before anything queued so far."""
        self._outbox.appendleft(first_frame)
        self._writer = asyncio.get_running_loop().create_task(self._write())

    def stop(self) -> None:
        self.closing = True
        self._read_gate.release()
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()

    async def _write(self) -> None:
        outbox, send, wakeup, gate = self._outbox, self._send, self._wakeup, self._read_gate
        try:
            while True:
                while outbox:
                    item = outbox.popleft()
                    if isinstance(item, str):
                        await send({"type": "websocket.send", "text": item})
                        gate.sent(len(outbox))
                        continue
                    message = {"type": "websocket.close", "code": item.code, "reason": item.reason}
                    await asyncio.wait_for(send(message), CLOSE_SEND_TIMEOUT)
                    return
                wakeup.clear()
                await wakeup.wait()
        except (OSError, RuntimeError, TimeoutError) as exc:
            # The socket is gone (or was never writable again); the reader sees
            # the disconnect and releases the connection.
            log.debug("writer of connection %s stopped: %r", self.id, exc)
            self.closing = True
            outbox.clear()
        finally:
            gate.release()


class WebSocketTransport:
    """An ASGI app serving gateways over plain WebSocket; the core's :class:`TransportLink`.

    Keeps its own registry of connections per namespace and per room
    (:class:`~wsgate.transports.rooms.Rooms`), so ``ctx.server.emit`` reaches
    /ws clients and Socket.IO clients alike (the core calls every transport's
    ``broadcast``).
    """

    name = "websocket"

    def __init__(self, port: Port) -> None:
        self.port = port
        self.connect_timeout = port.connect_timeout
        self.max_message_bytes = port.max_message_bytes
        self._peers: Rooms[_Peer] = Rooms()
        port.attach(self)

    # -- ASGI ------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            response = PlainTextResponse(
                "Upgrade Required", status_code=426, headers={"Upgrade": "websocket"}
            )
            await response(scope, receive, send)
            return
        if (await receive())["type"] != "websocket.connect":
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.connect_timeout
        handshake = Handshake.from_asgi_scope(scope, transport=self.name)
        peer = _Peer(secrets.token_urlsafe(15), handshake.query.get("namespace", "/"), send)
        try:
            slot = self.port.take_handshake_slot(
                handshake, conn_id=peer.id, transport=self.name, namespace=peer.namespace
            )
        except ConnectionRefused as refusal:
            # Accepting is needed to deliver a close code the client can read.
            await send(_ACCEPT)
            await send({"type": "websocket.close", **_refusal_close(refusal)._asdict()})
            return
        connection: Connection | None = None
        reason: str = CloseReason.TRANSPORT_CLOSE
        try:
            with slot:
                accepted = False
                if not self.port.token_in_handshake(handshake):
                    await send(_ACCEPT)
                    accepted = True
                    first = await self._first_message(peer, handshake, receive, deadline)
                    if isinstance(first, _Close):
                        if first is not _GONE:
                            await send({"type": "websocket.close", **first._asdict()})
                        return
                    handshake = dataclasses.replace(handshake, auth=first)
                outcome = await self._admit(peer, handshake, slot)
            if isinstance(outcome, Connection):
                connection = outcome
            if not accepted:
                await send(_ACCEPT)
            if isinstance(outcome, _Close):
                await send({"type": "websocket.close", **outcome._asdict()})
                return
            peer.start(encode(_ready_frame(outcome)))
            reason = await self._read(peer, outcome, receive)
        except OSError:
            pass  # the client went away mid-handshake; uvicorn's ClientDisconnected
        finally:
            self._peers.discard(peer.id, peer)
            peer.stop()
            if connection is not None:
                await self.port.release(connection, peer.close_reason or reason)

    async def _first_message(
        self, peer: _Peer, handshake: Handshake, receive: Receive, deadline: float
    ) -> dict[str, Any] | _Close | None:
        """The first message's ``auth`` object, a close to send, or None (not an auth message).

        The socket holds its pending-handshake slot while it waits: a flood
        of sockets that never authenticate is bounded by the handshake caps,
        not only by the connect timeout.
        """
        remaining = max(deadline - asyncio.get_running_loop().time(), 0.0)
        try:
            message = await asyncio.wait_for(receive(), remaining)
        except TimeoutError:
            return self._refused(peer, handshake, Code.UNAUTHORIZED, CloseReason.TIMEOUT, 4408)
        if message["type"] != "websocket.receive":
            return _GONE
        raw: str | bytes | None = message.get("text")
        if raw is None:
            raw = message.get("bytes") or b""
        if message_too_large(raw, self.max_message_bytes):
            return self._refused(peer, handshake, Code.PAYLOAD_TOO_LARGE, "message_size")
        # Frames are JSON text; a binary first message is not an auth message.
        auth = auth_payload(raw) if isinstance(raw, str) else None
        if auth is None:
            self.port.malformed(self.name)
        return auth

    def _refused(
        self,
        peer: _Peer,
        handshake: Handshake,
        code: Code,
        reason: str,
        close: int | None = None,
    ) -> _Close:
        """Count and log a refusal the core never saw (it happened before a token arrived)."""
        self.port.refuse(peer.id, peer.namespace, self.name, handshake, code, reason)
        word = reason if close is not None else str(code)
        return _Close(close if close is not None else close_code(code), word)

    async def _admit(
        self, peer: _Peer, handshake: Handshake, slot: HandshakeSlot
    ) -> Connection | _Close:
        # Registered before admit so that on_connect can join rooms and emit;
        # what it sends waits in the outbox until the ready frame is out.
        self._peers.add(peer.id, peer)
        try:
            return await self.port.admit(peer.namespace, handshake, peer.id, self, slot=slot)
        except ConnectionRefused as refusal:
            self._peers.discard(peer.id, peer)
            return _refusal_close(refusal)

    async def _read(self, peer: _Peer, connection: Connection, receive: Receive) -> str:
        """Decode and dispatch frames until the socket closes; returns the disconnect reason."""
        limit = self.max_message_bytes
        port = self.port
        while True:
            if peer.backed_up and not await peer.caught_up():
                return CloseReason.SLOW_CONSUMER  # not waiting for the client's close as well
            message = await receive()
            kind = message["type"]
            if kind == "websocket.disconnect":
                return _disconnect_reason(message)
            if kind != "websocket.receive" or peer.closing:
                continue
            text: str | None = message.get("text")
            request: Request | FrameError
            if text is not None:
                if message_too_large(text, limit):
                    self._too_large(peer, connection, len(text.encode("utf-8", "surrogatepass")))
                    continue
                request = decode_frame(text)
            else:
                raw = message.get("bytes") or b""
                if len(raw) > limit:
                    self._too_large(peer, connection, len(raw))
                    continue
                request = FrameError(
                    recover_id(raw), "Binary frames are not supported: send JSON text"
                )
            if isinstance(request, FrameError):
                port.malformed(self.name)
                error = BadRequest(request.message).to_payload()
                peer.push(encode(_error_frame(request.id, error)))
                continue
            await port.submit(connection, request.event, request.data, _responder(peer, request))

    def _too_large(self, peer: _Peer, connection: Connection, size: int) -> None:
        """Counted and audited by the core like on Socket.IO; on /ws the answer is close 1009."""
        self.port.oversize(connection, size)
        peer.close(close_code(Code.PAYLOAD_TOO_LARGE), CloseReason.PAYLOAD_TOO_LARGE)

    # -- TransportLink: calls from the core -------------------------------------------

    async def send(self, conn_id: str, namespace: str, event: str, data: Any) -> None:
        peer = self._peers.get(conn_id)
        if peer is not None and peer.namespace == namespace:
            peer.push(encode({"event": event, "data": data}))

    async def broadcast(
        self,
        namespace: str,
        event: str,
        data: Any,
        *,
        room: str | None,
        skip: str | None,
        offset: str | None = None,  # recovery is Socket.IO's; /ws frames carry no offset
    ) -> None:
        members = self._peers.members(namespace, room)
        if not members:
            return
        text = encode({"event": event, "data": data})  # once, whatever the audience
        for peer in members:
            if peer.id != skip:
                peer.push(text)

    async def enter_room(self, conn_id: str, namespace: str, room: str) -> None:
        self._peers.enter(conn_id, namespace, room)

    async def leave_room(self, conn_id: str, namespace: str, room: str) -> None:
        self._peers.leave(conn_id, namespace, room)

    async def close(self, conn_id: str, namespace: str, reason: str) -> None:
        peer = self._peers.get(conn_id)
        if peer is not None:
            peer.close(close_code(reason), reason)


def _responder(peer: _Peer, request: Request) -> Any:
    """How the reply to ``request`` goes out: by ``id``, or pushed as ``exception`` on failure."""

    async def respond(reply: Reply) -> None:
        if reply.failed:
            frame = _error_frame(request.id, reply.data)
        elif request.id is not None:
            frame = {"id": request.id, "data": reply.data}
        else:
            return
        try:
            text = encode(frame)
        except (TypeError, ValueError):
            log.error("reply to %r is not JSON; sending a 500 instead", request.event)
            text = encode(_error_frame(request.id, InternalError().to_payload()))
        peer.push(text)

    return respond


def _ready_frame(connection: Connection) -> dict[str, Any]:
    principal = connection.principal
    return {"event": "ready", "data": {"sub": principal.sub, "expires_at": principal.expires_at}}


def _error_frame(request_id: int | None, reply: Any) -> dict[str, Any]:
    """A failed request: a reply by id, or an ``exception`` push when there is no id.

    The pipeline's error object is ``{"error": {...}}``; by id it becomes
    ``{"id": n, "error": {...}}``, pushed it is sent whole, as on Socket.IO.
    """
    if request_id is None:
        return {"event": "exception", "data": reply}
    if isinstance(reply, dict) and set(reply) == {"error"}:
        return {"id": request_id, "error": reply["error"]}
    return {"id": request_id, "error": reply}


def _disconnect_reason(message: Message) -> str:
    code = message.get("code", 1005)
    if code == 1012:
        return CloseReason.SERVER_SHUTDOWN
    if code in (1000, 1001, 1005):
        return CloseReason.CLIENT_DISCONNECT
    return CloseReason.TRANSPORT_CLOSE
