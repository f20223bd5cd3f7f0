"""Attacks on wsgate's own Engine.IO/Socket.IO server, each tried as an attacker would.

Every one of these took the python-socketio layer down on 127.0.0.1 (issue
9); each now runs against a real server, with bounded loops and generous
deadlines (the machine may be loaded): what is asserted is that the bound
holds, never how fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from typing import Any

import httpx
import pytest
import websockets

from clients import Refused, connect_socketio
from rawws import masked_text_frame, open_raw_websocket
from support import free_port, make_token, serve, settings_for
from wsgate import App, Context, Gateway, public, subscribe
from wsgate.demo.gateways import Chat
from wsgate.transports import backpressure
from wsgate.transports import socketio as binding

pytestmark = pytest.mark.timeout(120)


def _ws(url: str, sid: str | None = None) -> str:
    query = "EIO=4&transport=websocket" + (f"&sid={sid}" if sid else "")
    return url.replace("http", "ws") + "/socket.io/?" + query


async def _open_polling(http: httpx.AsyncClient, url: str) -> str:
    opened = await http.get(f"{url}/socket.io/?EIO=4&transport=polling")
    assert opened.status_code == 200
    return str(json.loads(opened.text[1:])["sid"])


async def _connected_ws(url: str, **kwargs: Any) -> Any:
    ws = await websockets.connect(_ws(url), max_size=None, **kwargs)
    assert str(await asyncio.wait_for(ws.recv(), 5)).startswith("0")
    await ws.send("40" + json.dumps({"token": make_token()}))
    assert str(await asyncio.wait_for(ws.recv(), 5)).startswith("40")
    return ws


async def _settled(condition: Any, seconds: float = 15.0) -> bool:
    """Poll ``condition`` until it holds (bounded in count and time)."""
    for _ in range(int(seconds / 0.05)):
        if condition():
            return True
        await asyncio.sleep(0.05)
    return condition()


async def test_pre_connect_sessions_are_bounded_per_address_and_in_total(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Sessions that never CONNECT hold a handshake slot; past the caps they are refused."""
    monkeypatch.setattr(binding, "MAX_REFUSED_SESSIONS", 20)
    monkeypatch.setattr(binding, "MAX_REFUSED_SESSIONS_PER_ADDRESS", 5)
    port = free_port()
    app = App(
        [Chat()],
        settings_for(port, max_pending_handshakes=50, max_pending_handshakes_per_address=10),
    )
    async with serve(app, port) as url, httpx.AsyncClient(timeout=10) as http:
        for _ in range(10):
            await _open_polling(http, url)
        assert app.runtime.handshakes.from_address("127.0.0.1") == 10
        # Past the per-address cap: the session opens, its CONNECT is refused with the code.
        over = await _open_polling(http, url)
        endpoint = f"{url}/socket.io/?EIO=4&transport=polling&sid={over}"
        assert (await http.post(endpoint, content="40")).text == "ok"
        refused = (await http.get(endpoint)).text
        assert refused.startswith("44") and "too_many_connections" in refused
        # Refused sessions waiting for their CONNECT are bounded too (per address, in
        # total): then HTTP 503.
        for _ in range(5):
            await _open_polling(http, url)
        flood = await http.get(f"{url}/socket.io/?EIO=4&transport=polling")
        assert flood.status_code == 503
        assert flood.json()["code"] == "too_many_connections"
        assert len(app.parts.socketio.engine.sessions) <= 10 + 5
        # ... and they do not wait for the whole connect deadline.
        assert await _settled(lambda: len(app.parts.socketio.engine.sessions) == 10)
        # Another address still gets in.
        other = httpx.AsyncClient(
            timeout=10, transport=httpx.AsyncHTTPTransport(local_address="127.0.0.2")
        )
        async with other:
            assert (await other.get(f"{url}/socket.io/?EIO=4&transport=polling")).status_code == 200


async def test_a_thousand_parked_gets_on_one_sid_all_end() -> None:
    """At most one GET is parked per session; the rest are answered, none is kept."""
    port = free_port()
    app = App([Chat()], settings_for(port))
    async with serve(app, port) as url:
        async with httpx.AsyncClient(timeout=10) as http:
            sid = await _open_polling(http, url)
        request = (
            f"GET /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
        ).encode()

        async def poll() -> int:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                writer.write(request)
                await writer.drain()
                status_line = await asyncio.wait_for(reader.readline(), 30)
                return int(status_line.split()[1])
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()

        statuses = await asyncio.gather(*(poll() for _ in range(1000)))
        assert statuses.count(200) <= 1
        assert set(statuses) <= {200, 400}
        assert await _settled(lambda: not app.parts.socketio.engine.sessions)
        assert app.runtime.handshakes.pending == 0


async def test_upgrades_that_never_probe_are_closed_at_the_deadline() -> None:
    port = free_port()
    app = App([Chat()], settings_for(port, connect_timeout=1.0))
    async with serve(app, port) as url:
        async with httpx.AsyncClient(timeout=10) as http:
            sid = await _open_polling(http, url)
        sockets = []
        for target in [sid] * 20 + ["dropped-sid"] * 20:
            sockets.append(await websockets.connect(_ws(url, target), open_timeout=10))

        async def closed(ws: Any) -> bool:
            with contextlib.suppress(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 15)
                return False
            return True

        assert all(await asyncio.gather(*(closed(ws) for ws in sockets)))


async def test_binary_attachments_are_bounded_in_count() -> None:
    port = free_port()
    app = App([Chat()], settings_for(port))
    async with serve(app, port) as url:
        ws = await _connected_ws(url)
        await ws.send('459999999999-["echo",{"_placeholder":true,"num":0}]')
        with pytest.raises(websockets.ConnectionClosed):
            for _ in range(100):
                await asyncio.wait_for(ws.recv(), 10)
        assert app.parts.socketio.sockets.malformed == 1


async def test_binary_attachments_are_bounded_in_bytes() -> None:
    port = free_port()
    app = App([Chat()], settings_for(port, max_message_bytes=4096))
    async with serve(app, port) as url:
        ws = await _connected_ws(url)
        await ws.send('452-["echo",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]')
        with pytest.raises(websockets.ConnectionClosed):
            for _ in range(100):  # each under the limit, together over it
                await ws.send(b"\x00" * 3000)
                await asyncio.sleep(0.01)
        assert await _settled(lambda: not app.runtime.fanout.connections)


async def test_a_slow_readers_ack_queue_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Acks go through the same bounded outbox as events: a client that never reads is closed.

    The client is a bare TCP socket with a tiny receive buffer that reads
    nothing after the handshake, so the server's socket buffers fill and its
    outbox is the only place left for acks to pile up. The server stops
    reading this client's requests while the outbox is backed up, then,
    the client still reading nothing after ``MAX_READ_PAUSE``, closes it.
    """
    monkeypatch.setattr(backpressure, "MAX_READ_PAUSE", 1.0)
    port = free_port()
    app = App([Chat()], settings_for(port, rate_limit=1_000_000))
    engine = app.parts.socketio.engine
    engine.configure(dataclasses.replace(engine.config, max_queued_frames=64))
    async with serve(app, port):
        _, writer = await open_raw_websocket(port, "/socket.io/?EIO=4&transport=websocket")
        await asyncio.sleep(0.2)  # the Engine.IO OPEN packet arrives; it is never read
        writer.write(masked_text_frame("40" + json.dumps({"token": make_token()})))
        event = '["echo",{"text":"' + "x" * 1000 + '"}]'
        try:
            for i in range(20_000):  # ~20 MB of acks asked for, far past any socket buffer
                writer.write(masked_text_frame(f"42{i}{event}"))
                await asyncio.wait_for(writer.drain(), 30)
                if i % 100 == 0 and not app.runtime.fanout.connections:
                    break
            assert await _settled(lambda: not app.runtime.fanout.connections, 30)
        finally:
            writer.transport.abort()


async def test_malformed_packets_are_counted_not_logged_as_tracebacks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()
    app = App([Chat()], settings_for(port))
    caplog.set_level(logging.DEBUG)
    async with serve(app, port) as url:
        for frame in ["abc", "4abc", '42{"not":"array"}']:  # Engine.IO, then Socket.IO
            ws = await _connected_ws(url)
            await ws.send(frame)
            with pytest.raises(websockets.ConnectionClosed):
                for _ in range(100):
                    await asyncio.wait_for(ws.recv(), 10)
        assert app.parts.socketio.engine.malformed == 1
        assert app.parts.socketio.sockets.malformed == 2
    assert not [record for record in caplog.records if record.exc_info]


@pytest.mark.parametrize("transports", [("websocket",), ("polling",)])
async def test_an_oversized_connect_is_answered_at_once(transports: tuple[str, ...]) -> None:
    port = free_port()
    app = App([Chat()], settings_for(port, connect_timeout=30))
    async with serve(app, port) as url:
        with pytest.raises(Refused) as refused:
            async with connect_socketio(url, auth={"token": "x" * 100_000}, transports=transports):
                pass
        assert refused.value.code == "payload_too_large"
        assert await _settled(lambda: not app.parts.socketio.engine.sessions)


class Slow(Gateway, namespace="/"):
    @public
    @subscribe("ping")
    async def ping(self, ctx: Context) -> str:
        return "pong"

    @public
    @subscribe("slow")
    async def slow(self, ctx: Context) -> str:
        await asyncio.sleep(1.0)
        return "done"


@pytest.mark.parametrize("transports", [("websocket",), ("polling",)])
async def test_a_slow_handler_does_not_delay_the_same_clients_ping(
    transports: tuple[str, ...],
) -> None:
    port = free_port()
    app = App([Slow()], settings_for(port))
    async with serve(app, port) as url:
        async with connect_socketio(url, token=make_token(), transports=transports) as client:
            slow = asyncio.create_task(client.call("slow", timeout=10))
            await asyncio.sleep(0.05)  # the slow event is in flight first
            assert await client.call("ping", timeout=10) == "pong"
            assert not slow.done(), "ping was answered only after the slow handler finished"
            assert await slow == "done"
