"""Races between a session's end and work still in flight for it."""

from __future__ import annotations

import asyncio
import json
import time

import jwt
import pytest
import websockets

from clients import Refused, connect
from support import SECRET, free_port, make_token, serve, settings_for
from wsgate import App, Context, Gateway, subscribe, use_guards
from wsgate.stores import MemoryRevocationStore


async def slow_guard(ctx: Context) -> bool:
    await asyncio.sleep(0.4)
    return True


@use_guards(slow_guard)
class Slow(Gateway, namespace="/"):
    """Its connect guard takes a while: a revocation can land meanwhile."""

    @subscribe("ping")
    async def ping(self, ctx: Context) -> str:
        return "pong"


async def test_a_revocation_during_admission_refuses_the_connection(transport: str) -> None:
    store = MemoryRevocationStore()
    port = free_port()
    token = make_token()
    jti = jwt.decode(token, SECRET, algorithms=["HS256"])["jti"]
    async with serve(App([Slow()], settings_for(port), revocations=store), port) as url:

        async def revoke_soon() -> None:
            await asyncio.sleep(0.15)  # the handshake is now inside the slow guard
            await store.revoke_jti(jti, expires_at=time.time() + 600)

        revoker = asyncio.create_task(revoke_soon())
        with pytest.raises(Refused) as refused:
            async with connect(transport, url, token=token):
                pass
        await revoker
        assert refused.value.code == "token_revoked"
    await store.aclose()


class Recorder(Gateway, namespace="/"):
    def __init__(self) -> None:
        self.after_disconnect: list[str] = []
        self.gone: set[str] = set()

    async def on_disconnect(self, ctx: Context, reason: str) -> None:
        self.gone.add(ctx.id)

    @subscribe("work")
    async def work(self, ctx: Context) -> str:
        if ctx.id in self.gone:
            self.after_disconnect.append(ctx.id)
        return "done"


async def test_events_read_before_a_close_do_not_run_or_leak_state() -> None:
    """/ws: an event and the close frame right behind it; the event must not outlive the session."""
    gateway = Recorder()
    port = free_port()
    app = App([gateway], settings_for(port))
    async with serve(app, port) as url:
        ws_url = url.replace("http", "ws") + "/ws"
        for _ in range(40):
            headers = {"Authorization": f"Bearer {make_token()}"}
            async with websockets.connect(ws_url, additional_headers=headers) as ws:
                await asyncio.wait_for(ws.recv(), 2)  # ready
                await ws.send(json.dumps({"id": 1, "event": "work"}))
        for _ in range(100):
            if not app.runtime.fanout.connections:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)
    assert gateway.after_disconnect == []
    assert app.runtime.rate.tracked() == 0
