"""A Redis that vanishes without closing the connection is seen coming back, and followed.

The health prober's TIME runs on a connection without a read timeout (a
slow answer is not an outage). When the peer vanishes without a FIN or RST
(a partition, a failover to another address), that TIME is never answered,
and before ``ABANDON_PROBE_AFTER`` the prober waited on it for ever: Redis'
return was never seen and the node refused connections until restarted.
Here a TCP relay on 127.0.0.1 stands between the prober and a real Redis;
"vanishing" makes the relay swallow everything on the connections it has,
"coming back" makes it relay new connections again (old ones stay dead).
The revocation and control subscriptions had the same flaw: a live socket
must still be cut by a revocation made after such an outage, and the node
must still answer other nodes' remote operations.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import pytest

from clients import connect
from support import free_port, make_token, serve, settings_for
from wsgate import App
from wsgate.demo.gateways import Chat
from wsgate.stores import redis_health
from wsgate.stores.redis import RedisRevocationStore
from wsgate.stores.redis_control import RedisControl
from wsgate.stores.redis_health import HealthState, RedisHealth

pytestmark = pytest.mark.timeout(120)

TIMEOUT = 0.5
"""Redis timeouts of the node behind the relay (small, so that a test is short)."""
ABANDON_AFTER = 4
"""ABANDON_PROBE_AFTER for these tests: a dead probe is dropped after 2 s."""
WAIT = 20.0
"""How long a change of state may take on a loaded machine (polled, not a speed claim)."""


class Relay:
    """127.0.0.1:<port> -> Redis; ``vanish()`` black-holes every connection, old and new.

    ``come_back()`` relays new connections again; those made before the
    vanishing stay black-holed, as a connection to a host that went away.
    """

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.generation = 0
        self.relaying = True
        self.tasks: set[asyncio.Task[None]] = set()
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> str:
        """Listen; the Redis URL (db 15) through this relay."""
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        return f"redis://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/15"

    def vanish(self) -> None:
        self.generation += 1
        self.relaying = False

    def come_back(self) -> None:
        self.relaying = True

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        born = self.generation if self.relaying else -1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", 6379)
        self.writers += [writer, up_writer]

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            while data := await source.read(65536):
                if self.generation == born:  # else swallowed: the peer "vanished"
                    sink.write(data)

        for task in (pump(reader, up_writer), pump(up_reader, writer)):
            running = asyncio.create_task(task)
            self.tasks.add(running)
            running.add_done_callback(self.tasks.discard)

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        for writer in self.writers:
            writer.transport.abort()
        if self.server is not None:
            self.server.close()


@pytest.fixture
async def relay(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Relay]:
    """A relay to the test Redis, with dead probes dropped after ABANDON_AFTER timeouts."""
    monkeypatch.setattr(redis_health, "ABANDON_PROBE_AFTER", ABANDON_AFTER)
    relay = Relay()
    yield relay
    await relay.close()


async def _until(health: RedisHealth, state: HealthState, seconds: float) -> bool:
    for _ in range(int(seconds / 0.05)):
        if health.state is state:
            return True
        await asyncio.sleep(0.05)
    return health.state is state


async def _outage(
    relay: Relay, health: RedisHealth, meanwhile: Callable[[], Awaitable[object]] | None = None
) -> None:
    """The peer vanishes until the prober has seen it, then comes back and must be seen."""
    assert await _until(health, HealthState.UP, WAIT)
    relay.vanish()  # no FIN, no RST: what was sent is never answered
    assert await _until(health, HealthState.DOWN, WAIT)
    if meanwhile is not None:
        await meanwhile()
    relay.come_back()
    assert await _until(health, HealthState.UP, WAIT), "Redis' return was never seen"


async def test_prober_sees_redis_again_after_the_peer_vanished(relay: Relay) -> None:
    health = RedisHealth(await relay.start(), timeout=TIMEOUT)
    health.start()
    try:
        await _outage(relay, health)
    finally:
        await health.aclose()


async def test_a_revocation_after_the_peer_vanished_still_cuts_live_sockets(
    relay: Relay, redis_url: str
) -> None:
    prefix = f"wsgate-test-{uuid.uuid4().hex}"
    relayed = await relay.start()
    port = free_port()
    settings = settings_for(port, redis_url=relayed, redis_prefix=prefix, redis_timeout=TIMEOUT)
    app = App([Chat()], settings)
    admin = RedisRevocationStore(redis_url, prefix=prefix)  # straight to Redis
    try:
        async with (
            serve(app, port) as url,
            connect("websocket", url, token=make_token("eve")) as eve,
        ):
            assert app.parts.redis is not None
            await _outage(relay, app.parts.redis.health)
            assert eve.connected
            await admin.revoke_sub("eve", expires_at=time.time() + 300)
            assert await eve.wait_closed(timeout=WAIT) == "4401"  # token_revoked
    finally:
        await admin.aclose()


async def test_remote_operations_reach_a_node_whose_peer_vanished(
    relay: Relay, redis_url: str
) -> None:
    prefix = f"wsgate-test-{uuid.uuid4().hex}"
    relayed = await relay.start()
    far = RedisControl(relayed, prefix=prefix, timeout=TIMEOUT, node_id="far")
    near = RedisControl(redis_url, prefix=prefix, timeout=2, node_id="near")

    async def answer(request: Mapping[str, Any]) -> dict[str, Any]:
        return {"count": 1}

    far.start(answer)
    near.start(answer)
    try:
        assert await far.wait_ready(10) and await near.wait_ready(10)
        answers, missing = await near.ask({"op": "list_user", "sub": "x"}, 2.0)
        assert "far" in answers and missing == ()

        async def other_traffic_fails() -> None:
            # So the node's pool drops its dead connections: after the outage its
            # presence renews on fresh ones, and only the subscription is left on
            # a dead socket.
            with contextlib.suppress(Exception):
                await far.connector.client.ping()

        await _outage(relay, far.connector.health, other_traffic_fails)
        # Presence renews (every PRESENCE_EVERY) meanwhile: "far" is listed as live.
        for _ in range(20):
            answers, missing = await near.ask({"op": "list_user", "sub": "x"}, 1.0)
            if "far" in answers:
                break
        assert "far" in answers, missing
    finally:
        await far.aclose()
        await near.aclose()
