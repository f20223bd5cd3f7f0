"""One client interface over every transport, so each security test runs on all of them.

Tests take the ``transport`` fixture (parametrized in conftest) and call
:func:`connect`; a refusal raises :class:`Refused` with the contract's code
whatever the wire looked like (Socket.IO ``connect_error`` data or a
WebSocket close code).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit, urlunsplit

import socketio
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus

TRANSPORTS: list[str] = ["socketio", "websocket"]
"""Transports the suite is parametrized over; each registers a connector below."""


class Refused(Exception):
    """The server refused the connection; ``code`` is the contract's refusal code."""

    def __init__(self, code: str | None, message: str = "", *, detail: Any = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.detail = detail


class GatewayClient(Protocol):
    async def call(self, event: str, data: Any = None, *, timeout: float = 5) -> Any: ...

    async def send(self, event: str, data: Any = None) -> None: ...

    async def next_event(self, event: str, *, timeout: float = 5) -> Any: ...

    async def wait_closed(self, *, timeout: float = 5) -> str | None: ...

    @property
    def connected(self) -> bool: ...


class SocketIOClient:
    """python-socketio's AsyncClient behind the common interface."""

    def __init__(self, client: socketio.AsyncClient, namespace: str) -> None:
        self.client = client
        self.namespace = namespace
        self._events: dict[str, asyncio.Queue[Any]] = {}
        self._closed = asyncio.Event()
        self.close_reason: str | None = None

        def on_disconnect(reason: Any = None) -> None:
            self.close_reason = str(reason)
            self._closed.set()

        client.on("disconnect", on_disconnect, namespace=namespace)
        client.on("*", self._on_any, namespace=namespace)

    async def _on_any(self, event: str, *args: Any) -> None:
        self._queue(event).put_nowait(args[0] if args else None)

    def _queue(self, event: str) -> asyncio.Queue[Any]:
        return self._events.setdefault(event, asyncio.Queue())

    async def call(self, event: str, data: Any = None, *, timeout: float = 5) -> Any:
        return await self.client.call(event, data, namespace=self.namespace, timeout=timeout)

    async def send(self, event: str, data: Any = None) -> None:
        await self.client.emit(event, data, namespace=self.namespace)

    async def next_event(self, event: str, *, timeout: float = 5) -> Any:
        return await asyncio.wait_for(self._queue(event).get(), timeout)

    async def wait_closed(self, *, timeout: float = 5) -> str | None:
        await asyncio.wait_for(self._closed.wait(), timeout)
        return self.close_reason

    @property
    def connected(self) -> bool:
        return not self._closed.is_set() and self.namespace in self.client.namespaces


@contextlib.asynccontextmanager
async def connect_socketio(
    base_url: str,
    *,
    token: str | None = None,
    auth: Any = None,
    headers: dict[str, str] | None = None,
    namespace: str = "/",
    transports: Sequence[str] = ("websocket",),
    socketio_path: str = "socket.io",
) -> AsyncIterator[SocketIOClient]:
    client = socketio.AsyncClient(reconnection=False)
    refusals: list[Any] = []
    client.on("connect_error", refusals.append, namespace=namespace)
    wrapper = SocketIOClient(client, namespace)
    if token is not None and auth is None:
        auth = {"token": token}
    try:
        await client.connect(
            base_url,
            auth=auth,
            headers=dict(headers or {}),  # engineio pops Cookie from the dict it is given
            namespaces=[namespace],
            transports=list(transports),
            socketio_path=socketio_path,
            wait_timeout=5,
        )
    except socketio.exceptions.ConnectionError as exc:
        await client.disconnect()
        data = refusals[0] if refusals else None
        code = data.get("data", {}).get("code") if isinstance(data, dict) else None
        message = data.get("message", "") if isinstance(data, dict) else str(exc)
        raise Refused(code, message, detail=data if data is not None else str(exc)) from None
    try:
        yield wrapper
    finally:
        await client.disconnect()


CLOSE_CODE_NAMES = {
    4401: "unauthorized",
    4403: "forbidden",
    4408: "timeout",
    4429: "too_many_connections",
    1009: "payload_too_large",
    1013: "unavailable",
    1001: "server_shutdown",
}
REFUSAL_CODES = frozenset(
    {
        "unauthorized",
        "token_expired",
        "token_revoked",
        "forbidden",
        "too_many_connections",
        "unavailable",
        "payload_too_large",
    }
)


def refusal_code(code: int | None, reason: str) -> str | None:
    """The contract's code for a close: the reason word when it is one, else from the code."""
    if reason in REFUSAL_CODES:
        return reason
    return CLOSE_CODE_NAMES.get(code or 0)


class WebSocketClient:
    """A ``websockets`` client speaking wsgate's /ws frame protocol behind the common interface.

    ``wait_closed`` returns the close code as a string ("4401"); ``close_code``
    and ``close_reason`` hold the details.
    """

    def __init__(self, ws: ClientConnection, ready: Any) -> None:
        self.ws = ws
        self.ready = ready
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._events: dict[str, asyncio.Queue[Any]] = {}
        self._closed = asyncio.Event()
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.frames: list[Any] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                frame = json.loads(raw)
                self.frames.append(frame)
                if isinstance(frame, dict) and "id" in frame:
                    future = self._pending.pop(frame["id"], None)
                    if future is not None and not future.done():
                        future.set_result(frame)
                elif isinstance(frame, dict):
                    self._queue(frame["event"]).put_nowait(frame.get("data"))
        except ConnectionClosed:
            pass
        finally:
            self.close_code = self.ws.close_code
            self.close_reason = self.ws.close_reason
            self._closed.set()
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ConnectionError(f"closed: {self.close_code}"))

    def _queue(self, event: str) -> asyncio.Queue[Any]:
        return self._events.setdefault(event, asyncio.Queue())

    async def call(self, event: str, data: Any = None, *, timeout: float = 5) -> Any:
        frame_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[frame_id] = future
        await self.ws.send(json.dumps({"id": frame_id, "event": event, "data": data}))
        try:
            reply = await asyncio.wait_for(future, timeout)
        finally:
            self._pending.pop(frame_id, None)
        return {"error": reply["error"]} if "error" in reply else reply.get("data")

    async def send(self, event: str, data: Any = None) -> None:
        await self.ws.send(json.dumps({"event": event, "data": data}))

    async def send_raw(self, message: str | bytes) -> None:
        await self.ws.send(message)

    async def next_event(self, event: str, *, timeout: float = 5) -> Any:
        return await asyncio.wait_for(self._queue(event).get(), timeout)

    async def wait_closed(self, *, timeout: float = 5) -> str | None:
        await asyncio.wait_for(self._closed.wait(), timeout)
        return str(self.close_code)

    @property
    def connected(self) -> bool:
        return not self._closed.is_set()

    async def aclose(self) -> None:
        await self.ws.close()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._reader, 5)


def ws_url(base_url: str, path: str = "/ws", namespace: str = "/") -> str:
    """``http://host:port[?query]`` -> ``ws://host:port/ws?query[&namespace=...]``."""
    parts = urlsplit(base_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    query = parts.query
    if namespace != "/":
        query = "&".join(filter(None, [query, urlencode({"namespace": namespace})]))
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + path, query, ""))


def _header_token_present(headers: Mapping[str, str]) -> bool:
    names = {name.lower(): value for name, value in headers.items()}
    return "authorization" in names or "access_token=" in names.get("cookie", "")


@contextlib.asynccontextmanager
async def connect_websocket(
    base_url: str,
    *,
    token: str | None = None,
    auth: Any = None,
    headers: dict[str, str] | None = None,
    namespace: str = "/",
    path: str = "/ws",
) -> AsyncIterator[WebSocketClient]:
    """Open /ws the way a client of the contract does.

    ``token``/``auth`` travel as the first message ``{"type": "auth", ...}``
    (the /ws counterpart of the Socket.IO ``auth`` object). With neither and no
    token in the headers, an auth message without a token is sent, as a client
    with no credentials would, so the refusal comes at once instead of after
    the connect timeout.
    """
    headers = dict(headers or {})
    first: dict[str, Any] | None = None
    if token is not None and auth is None:
        first = {"type": "auth", "token": token}
    elif isinstance(auth, Mapping):
        if "token" in auth or not _header_token_present(headers):
            first = {"type": "auth", **auth}
    elif auth is not None:
        first = {"type": "auth", "token": auth}
    elif not _header_token_present(headers):
        first = {"type": "auth"}
    try:
        ws = await websockets.connect(
            ws_url(base_url, path, namespace),
            additional_headers=headers,
            open_timeout=5,
            close_timeout=2,
            max_size=None,
        )
    except InvalidStatus as exc:
        status = exc.response.status_code
        code = "forbidden" if status == 403 else f"http_{status}"
        raise Refused(code, f"HTTP {status}", detail=status) from None
    try:
        try:
            if first is not None:
                await ws.send(json.dumps(first))
            frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
        except ConnectionClosed:  # refused before or after the auth message went out
            code, reason = ws.close_code, ws.close_reason or ""
            raise Refused(refusal_code(code, reason), reason, detail=(code, reason)) from None
        assert frame.get("event") == "ready", frame
        client = WebSocketClient(ws, frame.get("data"))
    except BaseException:
        await ws.close()
        raise
    try:
        yield client
    finally:
        await client.aclose()


Connector = Callable[..., contextlib.AbstractAsyncContextManager[Any]]
CONNECTORS: dict[str, Connector] = {"socketio": connect_socketio, "websocket": connect_websocket}


def connect(
    transport: str, base_url: str, **kwargs: Any
) -> contextlib.AbstractAsyncContextManager[Any]:
    """Connect with ``transport``: token=, auth=, headers= (e.g. Origin, Cookie), namespace=."""
    return CONNECTORS[transport](base_url, **kwargs)
