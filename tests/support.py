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
import uvicorn

from wsgate import App, Settings
from wsgate.transports.deadline import uvicorn_http_protocol

SECRET = "test-secret-long-enough-for-hs512-0123456789abcdefghijklmnopqrstuvwxyz"


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
        body["roles"] = roles if isinstance(roles, str) else list(roles)
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
