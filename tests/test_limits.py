"""Limits on a real server: event rate, connections per user, message size, handshakes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import httpx
import pytest

from clients import Refused, connect
from support import free_port, make_token, serve, settings_for
from wsgate import App, ConnectionRefused
from wsgate.core.handshakes import HandshakeSlots, address_key
from wsgate.demo.gateways import Chat
from wsgate.metrics import Metrics
from wsgate.security.limits import (
    ConnectionCounter,
    EventRateLimiter,
    utf8_size_over,
)


async def scrape(url: str) -> str:
    async with httpx.AsyncClient() as http:
        return (await http.get(f"{url}/metrics")).text


def audit_actions(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [
        getattr(record, "wsgate", {}) for record in caplog.records if record.name == "wsgate.audit"
    ]


async def test_a_flood_gets_429s_while_others_are_answered(
    transport: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="wsgate.audit")
    port = free_port()
    app = App([Chat()], settings_for(port, rate_limit=20))
    async with serve(app, port) as url:
        async with (
            connect(transport, url, token=make_token("flooder")) as flooder,
            connect(transport, url, token=make_token("bystander")) as bystander,
        ):

            async def pings() -> list[float]:
                waits = []
                for _ in range(20):
                    started = time.perf_counter()
                    assert await bystander.call("ping", timeout=2) == "pong"
                    waits.append(time.perf_counter() - started)
                    await asyncio.sleep(0.02)
                return waits

            flood = asyncio.gather(
                *(flooder.call("echo", {"text": f"m{i}"}, timeout=10) for i in range(500))
            )
            started = time.monotonic()
            replies, waits = await asyncio.gather(flood, pings())
            elapsed = time.monotonic() - started
            limited = [r for r in replies if isinstance(r, dict) and "error" in r]
            assert all(r["error"]["status"] == 429 for r in limited)
            assert all(r["error"]["code"] == "rate_limited" for r in limited)
            # Burst = 2 x rate = 40, then 20 more per second while the flood lasts.
            assert 460 - 20 * elapsed - 1 <= len(limited) <= 460, (len(limited), elapsed)
            assert max(waits) < 1.0
            # Refused events never disconnect.
            assert flooder.connected

        metrics = await scrape(url)
    assert 'wsgate_limit_hits_total{limit="rate"}' in metrics
    assert 'wsgate_events_total{event="echo",outcome="rate_limited"}' in metrics
    limited_lines = [a for a in audit_actions(caplog) if a.get("action") == "limited"]
    # One line per run of refusals, not one per refused event.
    assert len(limited_lines) == 1
    assert limited_lines[0]["sub"] == "flooder" and limited_lines[0]["limit"] == "rate"
    assert limited_lines[0]["remote"] == "127.0.0.1"


async def test_the_21st_connection_of_a_user_is_refused(
    transport: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="wsgate.audit")
    port = free_port()
    app = App([Chat()], settings_for(port))
    async with serve(app, port) as url, contextlib.AsyncExitStack() as stack:
        token = make_token("busy")
        clients = [
            await stack.enter_async_context(connect(transport, url, token=token)) for _ in range(20)
        ]
        with pytest.raises(Refused) as refused:
            async with connect(transport, url, token=token):
                pass
        assert refused.value.code == "too_many_connections"
        # Another user is not affected, and a closed connection frees its slot.
        async with connect(transport, url, token=make_token("other")) as other:
            assert await other.call("ping") == "pong"
        await stack.aclose()
        assert clients
        await asyncio.sleep(0.2)
        async with connect(transport, url, token=token) as again:
            assert await again.call("ping") == "pong"
        metrics = await scrape(url)
    assert 'wsgate_auth_failures_total{reason="max_connections_per_user"} 1.0' in metrics
    refusals = [a for a in audit_actions(caplog) if a.get("action") == "refused"]
    assert refusals[-1]["code"] == "too_many_connections"
    assert refusals[-1]["remote"] == "127.0.0.1"


async def test_an_oversize_message_is_refused_and_the_server_keeps_serving(
    transport: str,
) -> None:
    port = free_port()
    app = App([Chat()], settings_for(port, max_message_bytes=1024))
    async with serve(app, port) as url:
        async with connect(transport, url, token=make_token()) as client:
            try:
                reply = await client.call("echo", {"text": "x" * 1500}, timeout=3)
            except (ConnectionError, TimeoutError):
                reply = None
            if reply is None:
                # The contract's alternative: the connection is closed (1009 on /ws).
                await client.wait_closed(timeout=3)
            else:
                assert reply["error"]["status"] == 413
                assert reply["error"]["code"] == "payload_too_large"
                assert await client.call("echo", {"text": "small"}) == {"text": "small"}
        async with connect(transport, url, token=make_token("next")) as other:
            assert await other.call("ping") == "pong"
        metrics = await scrape(url)
    if reply is not None:
        assert 'wsgate_limit_hits_total{limit="message_size"} 1.0' in metrics


async def test_socketio_far_oversize_message_closes_only_that_connection() -> None:
    """Beyond twice the limit Engine.IO does not even read it: the connection is closed."""
    port = free_port()
    app = App([Chat()], settings_for(port, max_message_bytes=1024))
    async with serve(app, port) as url:
        async with connect("socketio", url, token=make_token()) as client:
            await client.send("echo", {"text": "x" * 5000})
            await client.wait_closed(timeout=3)
        async with connect("socketio", url, token=make_token()) as other:
            assert await other.call("ping") == "pong"


async def test_pending_handshakes_are_capped(transport: str) -> None:
    """With one handshake allowed in flight, a second one arriving meanwhile is refused."""
    port = free_port()
    app = App([Chat()], settings_for(port, max_pending_handshakes=1))
    slots = app.runtime.handshakes
    stuck = slots.take("192.0.2.1")  # a handshake stuck in verification
    try:
        async with serve(app, port) as url:
            with pytest.raises(Refused) as refused:
                async with connect(transport, url, token=make_token()):
                    pass
            assert refused.value.code == "too_many_connections"
            stuck.release()
            async with connect(transport, url, token=make_token()) as client:
                assert await client.call("ping") == "pong"
            assert slots.pending == 0
            metrics = await scrape(url)
    finally:
        stuck.release()
    assert 'wsgate_limit_hits_total{limit="handshakes"} 1.0' in metrics
    assert "wsgate_pending_handshakes 0.0" in metrics


# -- the limit objects themselves -----------------------------------------------------------


def test_rate_limiter_allows_a_burst_of_twice_the_rate_then_refuses() -> None:
    limiter = EventRateLimiter(5)
    assert all(limiter.allow_at("c1", 0) for _ in range(10))
    assert not limiter.allow_at("c1", 0)
    assert limiter.allow_at("c2", 0), "connections are limited independently"
    limiter.forget("c1")
    assert limiter.allow_at("c1", 0)
    for bad in (float("nan"), float("inf"), 0.0, -1.0):
        with pytest.raises(ValueError):
            EventRateLimiter(bad)


def test_connection_counter_and_handshake_gate_give_back_what_they_took() -> None:
    counter = ConnectionCounter(2)
    assert counter.acquire("a") and counter.acquire("a")
    assert not counter.acquire("a")
    assert counter.acquire("b")
    counter.release("a")
    assert counter.count("a") == 1 and counter.acquire("a")
    counter.release("a")
    counter.release("a")
    assert counter.count("a") == 0


def test_handshake_slots_cap_the_total_and_each_address() -> None:
    slots = HandshakeSlots(3, 2, Metrics())
    a1, a2 = slots.take("10.0.0.1"), slots.take("10.0.0.1")
    with pytest.raises(ConnectionRefused) as per_address:
        slots.take("10.0.0.1")
    assert per_address.value.code == "too_many_connections"
    assert per_address.value.reason == "max_pending_handshakes_per_address"
    b1 = slots.take("10.0.0.2")
    with pytest.raises(ConnectionRefused) as total:
        slots.take("10.0.0.3")
    assert total.value.reason == "max_pending_handshakes"
    a1.release()
    a1.release()  # idempotent: a slot is given back once
    assert slots.pending == 2 and slots.from_address("10.0.0.1") == 1
    with a2, b1:
        pass
    assert slots.pending == 0 and slots.from_address("10.0.0.1") == 0


def test_ipv6_clients_are_counted_per_64() -> None:
    assert address_key("2001:db8:1:2::5") == address_key("2001:db8:1:2:ffff::9")
    assert address_key("2001:db8:1:3::5") != address_key("2001:db8:1:2::5")
    assert address_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert address_key(None) == "?"


def test_size_check_counts_utf8_bytes() -> None:
    assert not utf8_size_over("a" * 100, 100)
    assert utf8_size_over("a" * 101, 100)
    assert utf8_size_over("é" * 60, 100)  # 120 bytes in 60 code points
    assert not utf8_size_over("é" * 50, 100)
    assert utf8_size_over(b"x" * 101, 100)
