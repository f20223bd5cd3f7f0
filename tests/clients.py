"""One client interface over every transport, so each security test runs on all of them.

Tests take the ``transport`` fixture (parametrized in conftest) and call
:func:`connect`; a refusal raises :class:`Refused` with the contract's code
whatever the wire looked like (Socket.IO ``connect_error`` data or a
WebSocket close code).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Protocol

import socketio

TRANSPORTS: list[str] = ["socketio"]
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
            headers=headers or {},
            namespaces=[namespace],
            transports=list(transports),
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


Connector = Callable[..., contextlib.AbstractAsyncContextManager[Any]]
CONNECTORS: dict[str, Connector] = {"socketio": connect_socketio}


def connect(
    transport: str, base_url: str, **kwargs: Any
) -> contextlib.AbstractAsyncContextManager[Any]:
    """Connect with ``transport``: token=, auth=, headers= (e.g. Origin, Cookie), namespace=."""
    return CONNECTORS[transport](base_url, **kwargs)
