"""Real servers on 127.0.0.1 for the tests, and the tokens to talk to them."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import jwt
import socketio
import uvicorn

from wsgate import App, Settings
from wsgate.transports.deadline import uvicorn_http_protocol

SECRET = "test-secret-that-is-long-enough-for-hs256-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def settings_for(port: int, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"jwt_secret": SECRET, "port": port, "host": "127.0.0.1"}
    values.update(overrides)
    return Settings(**values)


def make_token(
    sub: str = "alice",
    *,
    roles: Sequence[str] | None = (),
    ttl: float = 300,
    secret: str = SECRET,
    algorithm: str = "HS256",
    headers: dict[str, Any] | None = None,
    **claims: Any,
) -> str:
    """An access token as the demo issues them, with any claim overridable (None removes it)."""
    now = int(time.time())
    body: dict[str, Any] = {
        "sub": sub,
        "iat": now,
        "exp": now + int(ttl),
        "jti": uuid.uuid4().hex,
        "token_use": "access",
    }
    if roles is not None:
        body["roles"] = list(roles)
    body.update(claims)
    body = {key: value for key, value in body.items() if value is not None}
    return jwt.encode(
        body, secret, algorithm=algorithm, headers={"typ": "at+jwt", **(headers or {})}
    )


@contextlib.asynccontextmanager
async def serve(app: Any, port: int) -> AsyncIterator[str]:
    """Run ``app`` under uvicorn in this event loop; yields its base URL."""
    timeout = app.settings.connect_timeout if isinstance(app, App) else 10.0
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
        http=uvicorn_http_protocol(timeout),
        proxy_headers=False,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(500):
            if server.started:
                break
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        else:
            raise RuntimeError("uvicorn did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(task, 10)


class Refused(Exception):
    def __init__(self, message: str, data: Any) -> None:
        super().__init__(message)
        self.message = message
        self.data = data


@contextlib.asynccontextmanager
async def sio_client(
    url: str,
    *,
    token: str | None = None,
    auth: Any = None,
    headers: dict[str, str] | None = None,
    namespaces: Sequence[str] = ("/",),
    transports: Sequence[str] = ("websocket",),
) -> AsyncIterator[socketio.AsyncClient]:
    """A connected python-socketio client, or :class:`Refused` with the server's reason."""
    client = socketio.AsyncClient(reconnection=False)
    refusals: list[Any] = []
    for namespace in namespaces:
        client.on("connect_error", refusals.append, namespace=namespace)
    if token is not None and auth is None:
        auth = {"token": token}
    try:
        await client.connect(
            url,
            auth=auth,
            headers=headers or {},
            namespaces=list(namespaces),
            transports=list(transports),
            wait_timeout=5,
        )
    except socketio.exceptions.ConnectionError as exc:
        await client.disconnect()
        data = refusals[0] if refusals else None
        raise Refused(str(exc), data) from None
    try:
        yield client
    finally:
        await client.disconnect()
