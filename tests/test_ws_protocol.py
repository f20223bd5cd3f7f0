"""wsgate's websocket protocol for uvicorn (writes coalesced per loop turn), on a real server.

What must hold: every frame arrives, in order, whether sent in a burst within
one loop turn or one by one; a close sent after a burst comes after the
burst; a client that stops reading makes ``send`` wait (bounded), as with
uvicorn's own protocol; and on a uvicorn without websockets-sansio the
choice falls back to uvicorn's own.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio
import uvicorn
import websockets

from support import running
from wsgate.transports.ws_protocol import websocket_protocol

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

BURST = 500
SIZES = ["x" * 125, "é" * 100, "y" * 65535, "z" * 70000, ""]
FLOOD_FRAME = "x" * 65536
FLOOD_FRAMES = 2000  # 128 MiB if nothing ever waited
blocked: asyncio.Event | None = None


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """``/burst``: BURST frames in one turn, then 5 more one turn each, binary, then close 4000.
    ``/flood``: 64 KiB frames until ``send`` has to wait (then ``blocked`` is set)."""
    if scope["type"] != "websocket":
        return
    await receive()
    await send({"type": "websocket.accept"})
    if scope["path"] == "/burst":
        for i in range(BURST):
            await send({"type": "websocket.send", "text": f"b{i}"})
        for text in SIZES:  # each header length, and a text whose bytes outnumber its characters
            await send({"type": "websocket.send", "text": text})
            await send({"type": "websocket.send", "text": text})  # the same object again
        for i in range(5):
            await asyncio.sleep(0)
            await send({"type": "websocket.send", "text": f"s{i}"})
        await send({"type": "websocket.send", "bytes": b"\x00\x01"})
        await send({"type": "websocket.close", "code": 4000})
        return
    assert blocked is not None
    for _ in range(FLOOD_FRAMES):
        try:
            await asyncio.wait_for(send({"type": "websocket.send", "text": FLOOD_FRAME}), 2)
        except TimeoutError:
            blocked.set()
            return
        await asyncio.sleep(0)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


module_loop = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def port() -> AsyncIterator[int]:
    """A real uvicorn server with wsgate's websocket protocol; yields its port."""
    free = _free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=free,
        # The class the import name gives (below uvicorn 0.35, uvicorn's own protocol:
        # there the command-line name is only looked up among uvicorn's built-ins).
        ws=websocket_protocol(),
        lifespan="off",
        log_level="warning",
        ws_per_message_deflate=False,
    )
    async with running(uvicorn.Server(config)):
        yield free


def test_the_coalescing_protocol_is_chosen_where_uvicorn_has_websockets_sansio() -> None:
    try:
        import uvicorn.protocols.websockets.websockets_sansio_impl as sansio
    except ImportError:
        assert websocket_protocol() == "auto"
        return
    chosen = websocket_protocol()
    assert isinstance(chosen, type)
    assert issubclass(chosen, sansio.WebSocketsSansIOProtocol)


def test_uvicorns_command_line_can_name_the_protocol() -> None:
    """``--ws wsgate.serving:WebSocketProtocol``: wsgate's protocol, else uvicorn's own."""
    from uvicorn.importer import import_from_string
    from uvicorn.protocols.websockets.auto import AutoWebSocketsProtocol

    named = import_from_string("wsgate.serving:WebSocketProtocol")
    chosen = websocket_protocol()
    assert named is (chosen if isinstance(chosen, type) else AutoWebSocketsProtocol)
    assert named is not None


@module_loop
async def test_a_burst_arrives_whole_and_in_order_before_the_close(port: int) -> None:
    got: list[str | bytes] = []
    async with websockets.connect(
        f"ws://127.0.0.1:{port}/burst", open_timeout=10, close_timeout=5
    ) as ws:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            async with asyncio.timeout(20):
                while True:
                    got.append(await ws.recv())
    expected: list[str | bytes] = [f"b{i}" for i in range(BURST)]
    expected += [text for text in SIZES for _ in range(2)]
    expected += [f"s{i}" for i in range(5)] + [b"\x00\x01"]
    assert got == expected
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4000


@module_loop
async def test_a_client_that_stops_reading_makes_send_wait(port: int) -> None:
    global blocked
    blocked = asyncio.Event()
    # The client reads nothing: the server's sends must start waiting long
    # before all FLOOD_FRAMES (128 MiB) are buffered.
    _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.transport.pause_reading()  # nothing read from here on (kernel buffers fill)
    writer.write(
        b"GET /flood HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"
    )
    try:
        async with asyncio.timeout(30):
            await blocked.wait()
    finally:
        writer.close()
    assert blocked.is_set()
