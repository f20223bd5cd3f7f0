"""Recovery while broadcasts keep coming: nothing lost, nothing twice, stream order kept.

A reconnecting socket is in its namespace (and receives namespace-wide
broadcasts) from the moment its CONNECT is being checked, but back in its
rooms only once the check passed. A broadcast in between is both live and in
the log; this test holds the check open (``on_connect`` waits) and
broadcasts through that gap, with python-socketio sending ``pid`` and
``offset`` by hand.
"""

from __future__ import annotations

import asyncio
from typing import Any

import socketio

from support import free_port, make_token, serve, settings_for
from wsgate import App, Context, Gateway, subscribe
from wsgate.demo.gateways import RoomBody


class Held(Gateway, namespace="/"):
    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.checking = asyncio.Event()

    async def on_connect(self, ctx: Context) -> None:
        auth = ctx.handshake.auth
        if isinstance(auth, dict) and auth.get("hold"):
            self.checking.set()
            await self.gate.wait()

    @subscribe("join")
    async def join(self, ctx: Context, body: RoomBody) -> dict[str, str]:
        await ctx.join(body.room)
        return {"room": body.room}


async def _client(
    url: str, auth: dict[str, Any], got: list[tuple[Any, ...]]
) -> socketio.AsyncClient:
    client = socketio.AsyncClient(reconnection=False)

    async def on_any(event: str, *args: Any) -> None:
        got.append((event, *args))

    client.on("*", on_any)
    await client.connect(url, auth=auth, transports=["websocket"], wait_timeout=10)
    return client


async def _until(predicate: Any) -> None:
    for _ in range(400):
        if predicate():
            return
        await asyncio.sleep(0.025)
    raise AssertionError("condition not reached in 10 s")


async def test_broadcasts_during_the_check_arrive_once_in_stream_order() -> None:
    port = free_port()
    gateway = Held()
    app = App([gateway], settings_for(port, recovery_window=60))
    async with serve(app, port) as url:
        first: list[tuple[Any, ...]] = []
        client = await _client(url, {"token": make_token("alice")}, first)
        try:
            assert await client.call("join", {"room": "lobby"}, timeout=10) == {"room": "lobby"}
            await app.server.emit("message", {"text": "before"}, room="lobby")
            await _until(lambda: len(first) == 1)
            (conn,) = app.runtime.fanout.connections.values()
            pid, offset = conn.recovery_pid, first[0][-1]
            assert isinstance(pid, str) and isinstance(offset, str)
            # The transport vanishes (no DISCONNECT): a recoverable close.
            for session in list(app.parts.socketio.engine.sessions.values()):
                session.finish()
            await _until(lambda: not app.runtime.fanout.connections)
        finally:
            await client.disconnect()
        await app.server.emit("message", {"text": "m1"}, room="lobby")
        second: list[tuple[Any, ...]] = []
        auth = {"token": make_token("alice"), "pid": pid, "offset": offset, "hold": True}
        connecting = asyncio.create_task(_client(url, auth, second))
        await asyncio.wait_for(gateway.checking.wait(), 10)
        # In the gap: one namespace-wide (live to the socket already) and one to
        # the room (the socket is not back in it yet).
        await app.server.emit("message", {"text": "n1"})
        await app.server.emit("message", {"text": "m2"}, room="lobby")
        gateway.gate.set()
        again = await asyncio.wait_for(connecting, 10)
        try:
            await app.server.emit("message", {"text": "after"}, room="lobby")
            await _until(lambda: any(args[1]["text"] == "after" for args in second))
            texts = [args[1]["text"] for args in second]
            assert texts == ["m1", "n1", "m2", "after"]
            offsets = [args[-1] for args in second]
            assert len(set(offsets)) == 4
            assert app.runtime.recovery.recovered == 1
        finally:
            await again.disconnect()
