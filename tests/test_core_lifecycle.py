"""The connection lifecycle through real clients: concurrency, cancellation, shutdown, outages."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any, Literal

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from clients import Refused, connect, ws_url
from support import free_port, make_token, serve, settings_for
from wsgate import (
    App,
    Context,
    Gateway,
    MemoryRevocationStore,
    Principal,
    StoreUnavailable,
    public,
    subscribe,
)


class Lifecycle(Gateway, namespace="/"):
    """Records what happened to its connections, in order."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.released = asyncio.Event()

    @public
    @subscribe("ping")
    async def ping(self, ctx: Context) -> str:
        return "pong"

    @subscribe("slow")
    async def slow(self, ctx: Context) -> str:
        await asyncio.sleep(1.5)
        return "slow done"

    @subscribe("hang")
    async def hang(self, ctx: Context) -> None:
        self.log.append("started")
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            self.log.append("cancelled")
            raise
        await ctx.join("too-late")  # never reached: the connection ended first
        self.log.append("joined")

    async def on_disconnect(self, ctx: Context, reason: str) -> None:
        self.log.append(f"disconnect:{reason}")
        self.released.set()


@pytest.fixture
async def lifecycle() -> AsyncIterator[tuple[str, Lifecycle]]:
    gateway = Lifecycle()
    port = free_port()
    async with serve(App([gateway], settings_for(port)), port) as url:
        yield url, gateway


async def test_a_slow_handler_does_not_delay_the_same_clients_other_events(
    transport: str, lifecycle: tuple[str, Lifecycle]
) -> None:
    url, _ = lifecycle
    async with connect(transport, url, token=make_token()) as client:
        slow = asyncio.create_task(client.call("slow", timeout=5))
        await asyncio.sleep(0.1)  # the slow event is in the server's hands
        assert await client.call("ping") == "pong"
        assert not slow.done(), "ping was answered while the slow handler still ran"
        assert await slow == "slow done"


async def test_events_in_flight_are_cancelled_before_on_disconnect(
    transport: str, lifecycle: tuple[str, Lifecycle]
) -> None:
    url, gateway = lifecycle
    async with connect(transport, url, token=make_token()) as client:
        await client.send("hang")
        for _ in range(100):
            if gateway.log:
                break
            await asyncio.sleep(0.02)
    await asyncio.wait_for(gateway.released.wait(), 5)
    await asyncio.sleep(0.1)
    assert gateway.log[:2] == ["started", "cancelled"]
    assert gateway.log[2].startswith("disconnect:")
    assert "joined" not in gateway.log


async def test_shutdown_closes_live_sockets_with_server_shutdown() -> None:
    gateway = Lifecycle()
    port = free_port()
    app = App([gateway], settings_for(port))
    reasons: list[str] = []
    original = gateway.on_disconnect

    async def record(ctx: Context, reason: str) -> None:
        reasons.append(reason)
        await original(ctx, reason)

    gateway.on_disconnect = record  # type: ignore[method-assign]
    server = serve(app, port)
    url = await server.__aenter__()
    async with contextlib.AsyncExitStack() as clients:
        sio = await clients.enter_async_context(connect("socketio", url, token=make_token("s")))
        ws = await clients.enter_async_context(connect("websocket", url, token=make_token("w")))
        await server.__aexit__(None, None, None)  # stops the server under both clients
        await ws.wait_closed(timeout=5)
        await sio.wait_closed(timeout=5)
    assert (ws.close_code, ws.close_reason) == (1001, "server_shutdown")
    assert sio.close_reason in {"server disconnect", "io server disconnect"}  # a DISCONNECT packet
    assert sorted(reasons) == ["server_shutdown", "server_shutdown"]
    assert app.runtime.fanout.connections == {}
    assert app.runtime.sessions._tasks == set()


class _DownStore(MemoryRevocationStore):
    """A revocation store whose server is unreachable."""

    async def is_revoked(self, *, sub: str, jti: str | None, issued_at: float | None) -> bool:
        raise StoreUnavailable("connection refused")


async def test_a_store_outage_refuses_with_unavailable_on_both_transports(
    transport: str,
) -> None:
    port = free_port()
    app = App([Lifecycle()], settings_for(port), revocations=_DownStore())
    async with serve(app, port) as url:
        with pytest.raises(Refused) as refused:
            async with connect(transport, url, token=make_token()):
                pass
        async with httpx.AsyncClient() as http:
            metrics = (await http.get(f"{url}/metrics")).text
    # "Retry later", never "unauthorized": the token may well be fine.
    assert refused.value.code == "unavailable"
    if transport == "websocket":
        assert refused.value.detail == (1013, "unavailable")
    assert 'wsgate_auth_failures_total{reason="store_unavailable"} 1.0' in metrics


class _BrokenVerifier:
    """A custom verifier with a bug."""

    async def verify(
        self, token: str, *, use: Literal["access", "refresh"] = "access"
    ) -> Principal:
        raise RuntimeError("bug in a custom verifier: secret detail")


async def test_an_unexpected_error_while_admitting_is_unavailable_on_both_transports(
    transport: str, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    app = App([Lifecycle()], settings_for(port), verifier=_BrokenVerifier())
    caplog.set_level(logging.INFO, logger="wsgate")
    async with serve(app, port) as url:
        with pytest.raises(Refused) as refused:
            async with connect(transport, url, token=make_token()):
                pass
    assert refused.value.code == "unavailable"
    assert "secret detail" not in str(refused.value.detail)
    audited = [getattr(r, "wsgate", {}) for r in caplog.records if r.name == "wsgate.audit"]
    assert any(
        line.get("action") == "refused" and line.get("reason") == "internal_error"
        for line in audited
    ), "recorded on both transports alike"


async def test_the_refused_origin_line_names_the_origin_and_the_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()
    caplog.set_level(logging.INFO, logger="wsgate.audit")
    async with serve(App([Lifecycle()], settings_for(port)), port) as url:
        with pytest.raises(Refused):
            async with connect(
                "websocket", url, token=make_token(), headers={"Origin": "https://evil.example"}
            ):
                pass
    lines = [getattr(r, "wsgate", {}) for r in caplog.records if r.name == "wsgate.audit"]
    refused = [line for line in lines if line.get("action") == "refused"]
    assert refused[-1]["origin"] == "https://evil.example"
    assert refused[-1]["reason"] == "origin_not_allowed"
    assert f"http://127.0.0.1:{port}" in refused[-1]["allowed"]


async def _idle_ws(url: str, local: str) -> Any:
    """A /ws socket from ``local`` that never authenticates."""
    return await websockets.connect(ws_url(url), open_timeout=5, local_addr=(local, 0))


async def test_one_address_cannot_hold_every_pending_handshake() -> None:
    """Idle sockets from one address hit their own cap; another address still connects."""
    port = free_port()
    app = App(
        [Lifecycle()],
        settings_for(port, max_pending_handshakes=50, max_pending_handshakes_per_address=5),
    )
    async with serve(app, port) as url, contextlib.AsyncExitStack() as stack:
        idle = []
        for _ in range(5):
            sock = await _idle_ws(url, "127.0.0.1")
            stack.push_async_callback(sock.close)
            idle.append(sock)
        over = await _idle_ws(url, "127.0.0.1")
        stack.push_async_callback(over.close)
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(over.recv(), 5)
        assert (over.close_code, over.close_reason) == (4429, "too_many_connections")
        # A real user on another address is not locked out by them.
        other = await websockets.connect(
            ws_url(url),
            open_timeout=5,
            local_addr=("127.0.0.2", 0),
            additional_headers={"Authorization": f"Bearer {make_token('real')}"},
        )
        stack.push_async_callback(other.close)
        assert '"ready"' in str(await asyncio.wait_for(other.recv(), 5))
        assert app.runtime.handshakes.from_address("127.0.0.1") == 5
