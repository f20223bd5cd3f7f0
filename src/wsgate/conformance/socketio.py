"""The Socket.IO fixture the official socket.io-protocol suite expects, at ``/socket.io/``.

On a connection to ``/`` or ``/custom`` it emits ``auth`` with the
handshake's auth payload (``{}`` when none); ``message`` emits
``message-back`` with the same arguments; ``message-with-ack`` acks with its
arguments; any other namespace gets ``{"message": "Invalid namespace"}``.
"""

from __future__ import annotations

from typing import Any

from starlette.types import Receive, Scope, Send

from wsgate.conformance.engineio import REFERENCE
from wsgate.transports.engineio import EngineServer
from wsgate.transports.sio import Client, Socket, SocketConfig, SocketServer

NAMESPACES = ("/", "/custom")


class Fixture:
    """The fixture's :class:`~wsgate.transports.sio.SocketHandler`."""

    def open(self, client: Client, scope: Scope) -> None:
        return None

    async def connect(self, socket: Socket, auth: Any) -> dict[str, Any] | None:
        if socket.namespace not in NAMESPACES:
            return {"message": "Invalid namespace"}
        socket.emit("auth", {} if auth is None else auth)  # goes out after the CONNECT answer
        return None

    async def event(self, socket: Socket, event: str, args: list[Any], ack_id: int | None) -> None:
        if event == "message":
            socket.emit("message-back", *args)
        elif event == "message-with-ack" and ack_id is not None:
            socket.ack(ack_id, args)

    async def oversize(self, socket: Socket, ack_id: int | None, size: int) -> None:
        return None

    def disconnected(self, socket: Socket, reason: str) -> None:
        return None

    def closed(self, client: Client, reason: str) -> None:
        return None


class SocketIOFixture:
    """ASGI app: ``/socket.io/`` is the Socket.IO server, anything else 404."""

    def __init__(self) -> None:
        self.sockets = SocketServer(
            Fixture(), SocketConfig(connect_timeout=1.0, max_message_bytes=1_000_000)
        )
        self.engine = EngineServer(self.sockets, REFERENCE)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and scope["path"].startswith("/socket.io"):
            await self.engine(scope, receive, send)
            return
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})
