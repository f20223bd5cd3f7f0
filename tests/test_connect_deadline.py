"""The TCP-level connect deadline, against a real uvicorn server and raw sockets."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio
import uvicorn
import websockets
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from support import running
from wsgate.transports.deadline import (
    H11DeadlineProtocol,
    HttpToolsDeadlineProtocol,
    deadline_protocol,
    uvicorn_http_protocol,
)

TIMEOUT = 0.5
# uvicorn's own keep-alive timeout, set far above the deadline so that every
# close seen in these tests is the deadline's doing.
KEEP_ALIVE = 30
REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """``/`` answers "ok", ``/slow`` answers after 1.5 deadlines, websockets echo."""
    if scope["type"] == "http":
        if scope["path"] == "/slow":
            await asyncio.sleep(1.5 * TIMEOUT)
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
        )
        await send({"type": "http.response.body", "body": b"ok"})
    elif scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        while (message := await receive())["type"] == "websocket.receive":
            await send({"type": "websocket.send", "text": message.get("text")})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# One server per implementation for the whole module (the deadline is per
# connection, so tests on their own connections do not disturb each other);
# the tests that use it run in the module's event loop with it.
module_loop = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["h11", "httptools"])
async def port(request: pytest.FixtureRequest) -> AsyncIterator[int]:
    """A real uvicorn server with the deadline protocol; yields its port."""
    free = _free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=free,
        http=uvicorn_http_protocol(TIMEOUT, request.param),
        lifespan="off",
        log_level="warning",
        timeout_keep_alive=KEEP_ALIVE,
    )
    async with running(uvicorn.Server(config)):
        yield free


async def _read_until_closed(reader: asyncio.StreamReader, limit: float) -> bytes:
    """Everything the server sends until it closes; fails when it stays open past ``limit``."""
    data = b""
    async with asyncio.timeout(limit):
        with contextlib.suppress(ConnectionResetError):
            while chunk := await reader.read(4096):
                data += chunk
    return data


async def _assert_closed_by_deadline(
    reader: asyncio.StreamReader, started: float, *, expected: bytes = b""
) -> None:
    received = await _read_until_closed(reader, 4 * TIMEOUT)
    elapsed = time.monotonic() - started
    assert received == expected
    assert TIMEOUT * 0.8 <= elapsed < TIMEOUT * 3, elapsed


async def _response(reader: asyncio.StreamReader) -> bytes:
    async with asyncio.timeout(5):
        head = await reader.readuntil(b"\r\n\r\n")
        return head + await reader.readexactly(2)


INCOMPLETE_HEADS = {
    "idle": b"",
    "half request line": b"GET / HT",
    "no blank line": b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n",
    "half upgrade": b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upg",
}


@module_loop
async def test_incomplete_request_heads_are_closed(port: int) -> None:
    """Every case on its own connection, all at once: each must be closed by the deadline."""

    async def one(payload: bytes) -> tuple[bytes, float]:
        started = time.monotonic()
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
        writer.write(payload)
        try:
            return await _read_until_closed(reader, 4 * TIMEOUT), time.monotonic() - started
        finally:
            writer.close()

    results = await asyncio.gather(*(one(payload) for payload in INCOMPLETE_HEADS.values()))
    for name, (received, elapsed) in zip(INCOMPLETE_HEADS, results, strict=True):
        assert received == b"", name
        assert TIMEOUT * 0.8 <= elapsed < TIMEOUT * 3, (name, elapsed)


@module_loop
async def test_dribbled_request_is_closed(port: int) -> None:
    """Each byte arrives in time for a per-read timeout, the whole head never does."""
    started = time.monotonic()
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
    closed = asyncio.create_task(_read_until_closed(reader, 4 * TIMEOUT))
    sent = 0
    with contextlib.suppress(ConnectionError):
        for byte in REQUEST:
            if closed.done():
                break
            writer.write(bytes([byte]))
            await writer.drain()
            sent += 1
            await asyncio.sleep(TIMEOUT / 10)
    assert await closed == b""
    assert sent < len(REQUEST)
    assert TIMEOUT * 0.8 <= time.monotonic() - started < TIMEOUT * 3
    writer.close()


@module_loop
async def test_normal_request_is_answered(port: int) -> None:
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
    writer.write(REQUEST)
    response = await _response(reader)
    assert response.startswith(b"HTTP/1.1 200 ")
    assert response.endswith(b"\r\n\r\nok")
    writer.close()


@module_loop
async def test_slow_application_is_not_cut(port: int) -> None:
    """The deadline is for the client's request head, not for the server's work."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
    started = time.monotonic()
    writer.write(b"GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    response = await _response(reader)
    assert response.startswith(b"HTTP/1.1 200 ")
    assert time.monotonic() - started >= 1.5 * TIMEOUT
    writer.close()


@module_loop
async def test_keep_alive_is_timed_again_from_the_end_of_the_response(port: int) -> None:
    """A second request is answered; half of a third is closed (uvicorn keeps it forever)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
    writer.write(REQUEST)
    assert (await _response(reader)).startswith(b"HTTP/1.1 200 ")
    writer.write(REQUEST)
    assert (await _response(reader)).startswith(b"HTTP/1.1 200 ")
    started = time.monotonic()
    writer.write(b"GET / HTTP/1.1\r\nHost: 127.0")
    await _assert_closed_by_deadline(reader, started)
    writer.close()


@module_loop
async def test_pipelined_requests_are_all_answered(port: int) -> None:
    """A pipelined head parsed while the first request ran must not be timed out."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
    writer.write(REQUEST + b"GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    for _ in range(2):
        assert (await _response(reader)).startswith(b"HTTP/1.1 200 ")
    writer.close()


@module_loop
async def test_websocket_upgrade_outlives_the_deadline(port: int) -> None:
    async with asyncio.timeout(5):
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws") as ws:
            await asyncio.sleep(1.5 * TIMEOUT)
            await ws.send("still here")
            assert await ws.recv() == "still here"


# -- the factory ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("http", "expected"),
    [
        ("auto", HttpToolsDeadlineProtocol),
        ("httptools", HttpToolsDeadlineProtocol),
        ("h11", H11DeadlineProtocol),
    ],
)
def test_uvicorn_http_protocol_picks_the_implementation(
    http: Any, expected: type[H11DeadlineProtocol | HttpToolsDeadlineProtocol]
) -> None:
    cls = uvicorn_http_protocol(2.5, http)
    assert issubclass(cls, expected)
    assert cls.connect_timeout == 2.5
    assert expected.connect_timeout == 10.0  # the shared classes are left alone


def test_a_subclass_of_uvicorns_protocol_keeps_its_overrides() -> None:
    class Custom(H11Protocol):
        marker = True

    cls = deadline_protocol(Custom, 1)
    assert issubclass(cls, H11DeadlineProtocol)
    assert issubclass(cls, Custom)
    assert cls.__mro__.index(H11DeadlineProtocol) < cls.__mro__.index(Custom)
    assert deadline_protocol(cls, 2).connect_timeout == 2.0  # type: ignore[attr-defined]
    assert issubclass(deadline_protocol(HttpToolsProtocol, 1), HttpToolsDeadlineProtocol)


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), float("inf"), "5"])
def test_bad_timeouts_are_refused(timeout: Any) -> None:
    with pytest.raises(ValueError, match="positive number"):
        uvicorn_http_protocol(timeout)


def test_unknown_protocols_are_refused() -> None:
    with pytest.raises(TypeError, match="no connect deadline"):
        deadline_protocol(asyncio.Protocol, 1)
    with pytest.raises(ValueError, match="http must be"):
        uvicorn_http_protocol(1, "zttp")  # type: ignore[arg-type]
