"""Socket.IO and ``/ws`` clients over an in-memory socket, with acks as values.

The Socket.IO client speaks Engine.IO v4 / Socket.IO v5 over the websocket
transport (text packets; binary attachments are not supported here): open,
CONNECT with the ``auth`` object, EVENT/ACK, ping/pong, DISCONNECT. The
``/ws`` client speaks wsgate's JSON frames. Both collect every push by event
name, so a test can ``await client.next_event("message")``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from typing import Any

from wsgate.testing.asgi import AsgiWebSocket, Closed

__all__ = ["Refused", "SocketIOTestClient", "WebSocketTestClient"]

TIMEOUT = 5.0


class Refused(Exception):
    """The App refused the connection; ``code`` is the contract's code (``unauthorized``...).

    ``close_code`` is the ``/ws`` close code (or None on Socket.IO, or an
    HTTP-level refusal such as a disallowed origin, where ``code`` is
    ``forbidden`` and ``close_code`` 403).
    """

    def __init__(self, code: str | None, message: str = "", close_code: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.close_code = close_code


class _Pushes:
    """Pushes by event name, each a queue, so order per event is kept."""

    def __init__(self) -> None:
        self._queues: dict[str, asyncio.Queue[Any]] = {}

    def put(self, event: str, data: Any) -> None:
        self._queue(event).put_nowait(data)

    async def next(self, event: str, timeout: float) -> Any:
        return await asyncio.wait_for(self._queue(event).get(), timeout)

    def pending(self, event: str) -> int:
        return self._queue(event).qsize()

    def _queue(self, event: str) -> asyncio.Queue[Any]:
        return self._queues.setdefault(event, asyncio.Queue())


class _Client:
    """What both clients share: a reader task, pushes, acks by id, the close."""

    def __init__(self, socket: AsgiWebSocket) -> None:
        self.socket = socket
        self.pushes = _Pushes()
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._closed = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self.close_code: int | None = None
        self.close_reason: str = ""

    def _start(self) -> None:
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        try:
            while True:
                await self._on_frame(await self.socket.receive(timeout=3600))
        except Closed as closed:
            self.close_code, self.close_reason = closed.code, closed.reason
        except (TimeoutError, asyncio.CancelledError):
            pass
        finally:
            self._closed.set()
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ConnectionError(f"closed: {self.close_code}"))

    async def _on_frame(self, frame: str | bytes) -> None:
        raise NotImplementedError

    async def _await_reply(self, frame_id: int, timeout: float) -> Any:
        future = self._pending[frame_id]
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self._pending.pop(frame_id, None)

    async def next_event(self, event: str, *, timeout: float = TIMEOUT) -> Any:
        """The next push of ``event`` (its data), waiting up to ``timeout`` seconds."""
        return await self.pushes.next(event, timeout)

    async def wait_closed(self, *, timeout: float = TIMEOUT) -> None:
        """Wait until the server closed the connection."""
        await asyncio.wait_for(self._closed.wait(), timeout)

    @property
    def connected(self) -> bool:
        return not self._closed.is_set()

    async def close(self) -> None:
        """Close from the client's side and let the server release the connection."""
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self.socket.close()


class SocketIOTestClient(_Client):
    """A Socket.IO v5 client on one namespace."""

    def __init__(self, socket: AsgiWebSocket, namespace: str) -> None:
        super().__init__(socket)
        self.namespace = namespace
        self.sid: str | None = None
        self._prefix = "" if namespace == "/" else namespace + ","

    async def open(self, auth: Any) -> None:
        """Engine.IO open, then CONNECT with ``auth``; raises :class:`Refused` on CONNECT_ERROR."""
        opening = await self.socket.receive()
        if not isinstance(opening, str) or not opening.startswith("0"):
            raise RuntimeError(f"expected the Engine.IO open packet, got {opening!r}")
        body = "" if auth is None else json.dumps(auth)
        await self.socket.send("40" + self._prefix + body)
        while True:
            packet = await self.socket.receive()
            if packet == "2":
                await self.socket.send("3")
                continue
            if not isinstance(packet, str):
                continue
            kind, payload = packet[:2], self._strip(packet[2:])
            if kind == "40":
                self.sid = json.loads(payload or "{}").get("sid")
                break
            if kind == "44":
                error = json.loads(payload or "{}")
                data = error.get("data") if isinstance(error, dict) else None
                code = data.get("code") if isinstance(data, dict) else None
                raise Refused(code, str(error.get("message", "")))
        self._start()

    def _strip(self, rest: str) -> str:
        if self._prefix and rest.startswith(self._prefix):
            return rest[len(self._prefix) :]
        return rest

    async def _on_frame(self, frame: str | bytes) -> None:
        if not isinstance(frame, str):
            return
        if frame == "2":
            await self.socket.send("3")
            return
        if frame[:1] != "4":
            return
        kind, rest = frame[1:2], self._strip(frame[2:])
        if kind == "1":  # DISCONNECT from the server
            self.close_reason = "io server disconnect"
            self._closed.set()
            return
        start = rest.find("[")
        if start < 0:
            return
        head, args = rest[:start], json.loads(rest[start:])
        if kind == "2" and args:
            self.pushes.put(args[0], args[1] if len(args) > 1 else None)
        elif kind == "3" and head.isdigit():
            future = self._pending.get(int(head))
            if future is not None and not future.done():
                future.set_result(args[0] if args else None)

    async def call(self, event: str, data: Any = None, *, timeout: float = TIMEOUT) -> Any:
        """Emit ``event`` with an ack and return the ack's value (an error object on failure)."""
        frame_id = next(self._ids)
        self._pending[frame_id] = asyncio.get_running_loop().create_future()
        await self.socket.send(f"42{self._prefix}{frame_id}{json.dumps([event, data])}")
        return await self._await_reply(frame_id, timeout)

    async def emit(self, event: str, data: Any = None) -> None:
        """Emit ``event`` without an ack (a failure comes back as an ``exception`` push)."""
        await self.socket.send(f"42{self._prefix}{json.dumps([event, data])}")


class WebSocketTestClient(_Client):
    """A client of wsgate's ``/ws`` JSON protocol."""

    def __init__(self, socket: AsgiWebSocket) -> None:
        super().__init__(socket)
        self.ready: Any = None

    async def open(self, token: str | None, header_auth: bool) -> None:
        """Authenticate (first message unless the token went in a header) and wait for ``ready``."""
        if not header_auth:
            first: dict[str, Any] = {"type": "auth"}
            if token is not None:
                first["token"] = token
            await self.socket.send(json.dumps(first))
        try:
            frame = json.loads(await self.socket.receive())
        except Closed as closed:
            raise Refused(closed.reason or None, closed.reason, closed.code) from None
        if frame.get("event") != "ready":
            raise RuntimeError(f"expected the ready frame, got {frame!r}")
        self.ready = frame.get("data")
        self._start()

    async def _on_frame(self, frame: str | bytes) -> None:
        message = json.loads(frame)
        if not isinstance(message, dict):
            return
        if "id" in message:
            future = self._pending.get(message["id"])
            if future is not None and not future.done():
                if "error" in message:
                    future.set_result({"error": message["error"]})
                else:
                    future.set_result(message.get("data"))
        elif "event" in message:
            self.pushes.put(message["event"], message.get("data"))

    async def call(self, event: str, data: Any = None, *, timeout: float = TIMEOUT) -> Any:
        """Send a request with an id and return its reply (an error object on failure)."""
        frame_id = next(self._ids)
        self._pending[frame_id] = asyncio.get_running_loop().create_future()
        await self.socket.send(json.dumps({"id": frame_id, "event": event, "data": data}))
        return await self._await_reply(frame_id, timeout)

    async def emit(self, event: str, data: Any = None) -> None:
        """Send without an id (no reply; a failure comes back as an ``exception`` push)."""
        await self.socket.send(json.dumps({"event": event, "data": data}))
