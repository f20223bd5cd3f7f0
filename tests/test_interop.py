"""Real Socket.IO clients against wsgate's own engine: socket.io-client (npm) and python-socketio.

Polling only, websocket only, polling upgraded to websocket, binary events,
acks, reconnects and several namespaces on one connection, for both clients.
The Node client is the one the demo page bundles; it runs from the npm
packages tests/node_tools.py installs (skips without Node.js locally, fails
in CI).
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest
import socketio

import node_tools
from support import free_port, make_token, serve, settings_for
from wsgate import App, Context, Gateway, subscribe
from wsgate.demo.gateways import Admin, Chat

SCRIPT = Path(__file__).parent / "node" / "interop.cjs"


class Binary(Gateway, namespace="/binary"):
    @subscribe("bin")
    async def bin(self, ctx: Context, body: bytes) -> dict[str, Any]:
        return {"size": len(body), "hex": body.hex()}


def _app(port: int) -> App:
    return App([Chat(), Admin(), Binary()], settings_for(port))


async def test_socket_io_client_from_npm_interoperates() -> None:
    modules = node_tools.install()
    port = free_port()
    async with serve(_app(port), port) as url:
        process = await asyncio.create_subprocess_exec(
            "node",
            str(SCRIPT),
            url,
            make_token("alice"),
            make_token("root", roles=["admin"]),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "NODE_PATH": str(modules)},
        )
        out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()[-3000:]
    results = json.loads(out)
    for name, transport in [("polling", "polling"), ("websocket", "websocket")]:
        assert results[name]["transport"] == transport
    assert results["upgrade"]["transport"] == "websocket"
    for name in ("polling", "websocket", "upgrade"):
        assert results[name]["pong"] == "pong"
        assert results[name]["echo"] == {"text": "héllo"}
        assert results[name]["binary"] == {"size": 3, "hex": "0001ff"}
    assert results["namespaces"] == {
        "shared": True,
        "root": "pong",
        "admin": {"sub": "root", "roles": ["admin"]},
    }
    assert results["reconnect"] == {"pong": "pong"}


@pytest.mark.parametrize(
    "transports", [["polling"], ["websocket"], ["polling", "websocket"]], ids="+".join
)
async def test_python_socketio_client_interoperates(transports: list[str]) -> None:
    port = free_port()
    app = _app(port)
    async with serve(app, port) as url:
        client = socketio.AsyncClient(reconnection=True, reconnection_delay=0.1)
        pushed: asyncio.Queue[Any] = asyncio.Queue()
        client.on("blob", pushed.put_nowait, namespace="/binary")
        try:
            await client.connect(
                url,
                auth={"token": make_token("root", roles=["admin"])},
                namespaces=["/", "/admin", "/binary"],
                transports=transports,
                wait_timeout=10,
            )
            assert await client.call("ping", timeout=10) == "pong"
            assert await client.call("whoami", namespace="/admin", timeout=10) == {
                "sub": "root",
                "roles": ["admin"],
            }
            reply = await client.call("bin", b"\x00\x01\xff", namespace="/binary", timeout=10)
            assert reply == {"size": 3, "hex": "0001ff"}
            await app.parts.socketio.broadcast(
                "/binary", "blob", {"data": b"\xfe\x00"}, room=None, skip=None
            )
            assert await asyncio.wait_for(pushed.get(), 10) == {"data": b"\xfe\x00"}
            # A burst bigger than one long-polling response (python-engineio's client
            # refuses payloads of more than 16 packets) arrives whole and in order.
            for i in range(40):
                await app.parts.socketio.broadcast("/binary", "blob", i, room=None, skip=None)
            assert [await asyncio.wait_for(pushed.get(), 10) for _ in range(40)] == list(range(40))
            if "websocket" in transports and "polling" in transports:
                for _ in range(100):
                    if client.transport() == "websocket":
                        break
                    await asyncio.sleep(0.05)
                assert client.transport() == "websocket"
            # Reconnect: the transport vanishes (no CLOSE packet, which would be a
            # deliberate disconnect), and the client comes back by itself.
            sessions = list(app.parts.socketio.engine.sessions.values())
            assert len(sessions) == 1
            sessions[0].finish()
            for _ in range(200):
                await asyncio.sleep(0.05)
                if app.parts.socketio.engine.sessions and client.connected:
                    new = list(app.parts.socketio.engine.sessions.values())
                    if new[0] is not sessions[0] and len(client.namespaces) == 3:
                        break
            assert await client.call("ping", timeout=10) == "pong"
        finally:
            await client.disconnect()
