"""Engine.IO sessions that never connect a namespace are dropped at the connect deadline."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time

import httpx
import websockets

from support import free_port, make_token, serve, settings_for
from wsgate import App
from wsgate.demo.gateways import Admin, Chat


async def test_websocket_that_never_sends_connect_is_closed() -> None:
    port = free_port()
    async with serve(App([Chat()], settings_for(port, connect_timeout=0.5)), port) as url:
        ws_url = url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"
        async with websockets.connect(ws_url) as ws:
            opened = await asyncio.wait_for(ws.recv(), 2)
            assert str(opened).startswith("0")  # Engine.IO OPEN, then silence from the client
            started = time.monotonic()
            await asyncio.wait_for(ws.wait_closed(), 3)
            assert 0.3 < time.monotonic() - started < 2.5


async def test_polling_session_that_never_connects_is_closed() -> None:
    port = free_port()
    async with serve(App([Chat()], settings_for(port, connect_timeout=0.5)), port) as url:
        endpoint = f"{url}/socket.io/?EIO=4&transport=polling"
        async with httpx.AsyncClient(timeout=5) as http:
            sid = json.loads((await http.get(endpoint)).text[1:])["sid"]
            await asyncio.sleep(1.0)
            late = await http.post(f"{endpoint}&sid={sid}", content="40")
        assert late.status_code == 400  # the session is gone


async def test_a_refused_namespace_does_not_keep_the_transport_open() -> None:
    """A client refused on /admin that never connects another namespace is dropped too."""
    port = free_port()
    app = App([Chat(), Admin()], settings_for(port, connect_timeout=0.5))
    async with serve(app, port) as url:
        ws_url = url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"
        async with websockets.connect(ws_url) as ws:
            await asyncio.wait_for(ws.recv(), 2)
            await ws.send("40/admin," + json.dumps({"token": make_token()}))
            refused = await asyncio.wait_for(ws.recv(), 2)
            assert str(refused).startswith("44/admin,")
            await asyncio.wait_for(ws.wait_closed(), 3)


async def test_a_connected_client_outlives_the_deadline() -> None:
    port = free_port()
    async with serve(App([Chat()], settings_for(port, connect_timeout=0.5)), port) as url:
        ws_url = url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"
        async with websockets.connect(ws_url) as ws:
            await asyncio.wait_for(ws.recv(), 2)
            await ws.send("40" + json.dumps({"token": make_token()}))
            assert str(await asyncio.wait_for(ws.recv(), 2)).startswith("40")
            await asyncio.sleep(1.0)
            await ws.send('421["ping"]')
            assert await asyncio.wait_for(ws.recv(), 2) == '431["pong"]'


async def test_a_session_the_server_ends_closes_the_transport_too() -> None:
    """A raw client that ignores the DISCONNECT packet of its expired session is cut anyway."""
    port = free_port()
    async with serve(App([Chat()], settings_for(port)), port) as url:
        ws_url = url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"
        async with websockets.connect(ws_url) as ws:
            await asyncio.wait_for(ws.recv(), 2)
            await ws.send("40" + json.dumps({"token": make_token(ttl=1)}))
            assert str(await asyncio.wait_for(ws.recv(), 2)).startswith("40")
            frames = []
            with contextlib.suppress(websockets.ConnectionClosed):
                while True:
                    frames.append(str(await asyncio.wait_for(ws.recv(), 4)))
            assert '42["auth:expired"' in "".join(frames)
            assert ws.close_code is not None


async def test_a_client_that_stops_answering_pings_is_closed_and_released() -> None:
    """Without a per-poll timer, dead clients are still found: by Engine.IO's ping check."""
    port = free_port()
    app = App([Chat()], settings_for(port))
    engine = app.parts.socketio.engine
    engine.configure(dataclasses.replace(engine.config, ping_interval=0.3, ping_timeout=0.3))
    async with serve(app, port) as url:
        ws_url = url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"
        async with websockets.connect(ws_url, ping_interval=None) as ws:
            await asyncio.wait_for(ws.recv(), 2)
            await ws.send("40" + json.dumps({"token": make_token()}))
            assert str(await asyncio.wait_for(ws.recv(), 2)).startswith("40")
            assert len(app.runtime.fanout.connections) == 1
            with contextlib.suppress(websockets.ConnectionClosed):
                for _ in range(20):  # read the server's pings, never answer them
                    await asyncio.wait_for(ws.recv(), 3)
            assert ws.close_code is not None
        for _ in range(50):
            if not app.runtime.fanout.connections:
                break
            await asyncio.sleep(0.05)
        assert app.runtime.fanout.connections == {}
