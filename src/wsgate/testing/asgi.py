"""An ASGI WebSocket driven in memory: the App runs in this event loop, no port, no network.

Like Starlette's ``TestClient`` and Django Channels' ``WebsocketCommunicator``,
the App is called with a scope and two queues; what it sends comes back as
the messages a real ASGI server would turn into frames. Everything above
the socket (origin policy, tokens, limits, the transports' own code) runs
exactly as it does under uvicorn; what is below it (TCP, the HTTP parser,
uvicorn's connect deadline) does not run at all.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

from starlette.types import ASGIApp, Message

__all__ = ["AsgiWebSocket", "Closed", "Lifespan", "Rejected"]

TIMEOUT = 5.0
"""Seconds any single wait on the App may take before the test fails."""


class Rejected(Exception):
    """The App closed the socket before accepting it (an HTTP 403 under a real server)."""

    def __init__(self, code: int) -> None:
        super().__init__(f"websocket rejected before accept (close {code})")
        self.code = code


class Closed(Exception):
    """The App closed an accepted socket; ``code`` and ``reason`` are the close frame's."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"websocket closed: {code} {reason}")
        self.code = code
        self.reason = reason


class AsgiWebSocket:
    """One WebSocket to an ASGI app, in memory."""

    def __init__(
        self,
        app: ASGIApp,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        headers: Sequence[tuple[str, str]] = (),
        client: tuple[str, int] = ("127.0.0.1", 50000),
        server: tuple[str, int] = ("127.0.0.1", 8000),
    ) -> None:
        self.scope: dict[str, Any] = {
            "type": "websocket",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "scheme": "ws",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": urlencode(dict(query or {})).encode(),
            "headers": [
                (k.lower().encode("latin-1"), v.encode("latin-1"))
                for k, v in (
                    ("host", f"{server[0]}:{server[1]}"),
                    ("connection", "Upgrade"),
                    ("upgrade", "websocket"),
                    ("sec-websocket-version", "13"),
                    *headers,
                )
            ],
            "client": client,
            "server": server,
            "subprotocols": [],
            "extensions": {},
        }
        self._app = app
        self._to_app: asyncio.Queue[Message] = asyncio.Queue()
        self._from_app: asyncio.Queue[Message] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.close_code: int | None = None
        self.close_reason: str = ""

    async def connect(self) -> None:
        """Open the socket; raises :class:`Rejected` when the App refuses before accepting."""
        self._task = asyncio.get_running_loop().create_task(self._run())
        await self._to_app.put({"type": "websocket.connect"})
        message = await self._next()
        if message["type"] == "websocket.close":
            raise Rejected(int(message.get("code", 1000)))
        if message["type"] != "websocket.accept":
            raise RuntimeError(f"unexpected first message {message['type']!r}")

    async def send(self, data: str | bytes) -> None:
        if isinstance(data, str):
            await self._to_app.put({"type": "websocket.receive", "text": data})
        else:
            await self._to_app.put({"type": "websocket.receive", "bytes": data})

    async def receive(self, timeout: float = TIMEOUT) -> str | bytes:
        """The next frame from the App; raises :class:`Closed` when it closed the socket."""
        message = await self._next(timeout)
        if message["type"] == "websocket.close":
            self.close_code = int(message.get("code", 1000))
            self.close_reason = str(message.get("reason") or "")
            raise Closed(self.close_code, self.close_reason)
        if message.get("text") is not None:
            text: str = message["text"]
            return text
        data: bytes = message.get("bytes") or b""
        return data

    async def close(self, code: int = 1000) -> None:
        """The client goes away; the App sees ``websocket.disconnect`` and finishes."""
        await self._to_app.put({"type": "websocket.disconnect", "code": code})
        if self._task is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._task), TIMEOUT)
            if not self._task.done():
                self._task.cancel()

    async def _run(self) -> None:
        try:
            await self._app(self.scope, self._to_app.get, self._from_app.put)
        finally:
            await self._from_app.put({"type": "websocket.close", "code": 1006})

    async def _next(self, timeout: float = TIMEOUT) -> Message:
        return await asyncio.wait_for(self._from_app.get(), timeout)


class Lifespan:
    """Runs an ASGI app's lifespan: ``startup`` on enter, ``shutdown`` on exit."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self._to_app: asyncio.Queue[Message] = asyncio.Queue()
        self._from_app: asyncio.Queue[Message] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Lifespan:
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        self._task = asyncio.get_running_loop().create_task(self._run(scope))
        await self._to_app.put({"type": "lifespan.startup"})
        answer = await asyncio.wait_for(self._from_app.get(), TIMEOUT)
        if answer["type"] != "lifespan.startup.complete":
            # Starlette answers startup.failed and then re-raises in the
            # lifespan task: collect that error here (it is the cause), so it
            # is never left to asyncio's "exception was never retrieved".
            cause: BaseException | None = None
            try:
                await asyncio.wait_for(self._task, TIMEOUT)
            except Exception as exc:
                cause = exc
            message = answer.get("message", answer["type"])
            raise RuntimeError(f"App start-up failed: {message}") from cause
        return self

    async def _run(self, scope: dict[str, Any]) -> None:
        await self._app(scope, self._to_app.get, self._from_app.put)

    async def __aexit__(self, *exc_info: object) -> None:
        await self._to_app.put({"type": "lifespan.shutdown"})
        answer = await asyncio.wait_for(self._from_app.get(), 3 * TIMEOUT)
        if self._task is not None:
            await asyncio.wait_for(self._task, TIMEOUT)
        if answer["type"] != "lifespan.shutdown.complete":
            raise RuntimeError(f"App shutdown failed: {answer.get('message', answer['type'])}")
