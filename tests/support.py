"""Real servers on 127.0.0.1 for the tests, and the tokens to talk to them."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import jwt
import uvicorn

import leakcheck
from wsgate import App, Settings
from wsgate.demo.settings import DemoSettings
from wsgate.serving import UvicornServer
from wsgate.transports.deadline import uvicorn_http_protocol
from wsgate.transports.ws_protocol import websocket_protocol

SECRET = "test-secret-long-enough-for-hs512-0123456789abcdefghijklmnopqrstuvwxyz"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def settings_for(port: int, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"jwt_secret": SECRET, "port": port, "host": "127.0.0.1"}
    values.update(overrides)
    return Settings(**values)


def demo_settings_for(port: int, **overrides: Any) -> DemoSettings:
    """Settings for the demo App (``database``, cookies and token lifetimes are the demo's)."""
    values: dict[str, Any] = {"jwt_secret": SECRET, "port": port, "host": "127.0.0.1"}
    values.update(overrides)
    return DemoSettings(**values)


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
    now = time.time()
    body: dict[str, Any] = {
        "sub": sub,
        "iat": math.floor(now * 1000) / 1000,  # as wsgate's issuer: ms, never in the future
        "exp": math.ceil(now + ttl),
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
async def running(server: uvicorn.Server) -> AsyncIterator[uvicorn.Server]:
    """``server`` serving in this event loop for the block (start bounded: 10 s; then stopped)."""
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    task.result()  # the reason it did not start
                    raise RuntimeError("uvicorn did not start")
                await asyncio.sleep(0.01)
        yield server
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(task, 10)


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
        ws=websocket_protocol(),  # as `wsgate serve`: frames coalesced per loop turn
        proxy_headers=False,
    )
    # As `wsgate serve`: live sockets are closed first.
    async with running(UvicornServer(config)):
        yield f"http://127.0.0.1:{port}"


async def wait_healthy(url: str, proc: asyncio.subprocess.Process | None = None) -> None:
    """Poll ``/healthz`` until it answers (bounded: 30 s), failing early if ``proc`` died.

    30 s, not less: a demo process took 12 s to start on a loaded 2-core machine.
    """
    async with httpx.AsyncClient() as http:
        for _ in range(600):
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(f"{url}/healthz")).status_code == 200:
                    return
            if proc is not None and proc.returncode is not None:
                raise RuntimeError(f"server exited with {proc.returncode}")
            await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} did not become healthy")


async def stop_process(proc: asyncio.subprocess.Process) -> None:
    """Terminate ``proc``, and kill it if it has not exited within 10 s."""
    if proc.returncode is None:
        proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), 10)
    except TimeoutError:
        proc.kill()
        await proc.wait()


@contextlib.asynccontextmanager
async def wsgate_process(
    *args: str,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    port: int | None = None,
    host: str = "127.0.0.1",
) -> AsyncIterator[tuple[str, list[str]]]:
    """``python -m wsgate ARGS --host HOST --port P`` in a subprocess (HOST: 127.0.0.1).

    Yields the base URL and the list of lines the process prints, read as
    they come (so a chatty server never blocks on a full pipe). ``WSGATE_*``
    variables of the test run are not inherited: each test says what it sets.
    """
    port = port or free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("WSGATE_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wsgate",
        *args,
        "--host",
        host,
        "--port",
        str(port),
        env={**clean, **(env or {})},
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output: list[str] = []

    async def collect() -> None:
        assert proc.stdout is not None
        async for line in proc.stdout:
            text = line.decode(errors="replace").rstrip("\n")
            leakcheck.observe(text, f"wsgate {args[0] if args else ''} output")
            output.append(text)

    reader = asyncio.create_task(collect())
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '127.0.0.1') else host}:{port}"
    try:
        try:
            await wait_healthy(url, proc)
        except RuntimeError as exc:
            await stop_process(proc)
            await asyncio.wait_for(reader, 5)
            raise RuntimeError(f"{exc}:\n" + "\n".join(output)) from None
        yield url, output
    finally:
        await stop_process(proc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(reader, 5)
