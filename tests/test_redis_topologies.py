"""Sentinel and Cluster URLs: parsed, turned into working clients, and carrying the control plane.

Each Redis set-up is started here (``tests/redis_topologies.py``: a master,
a replica and a sentinel; three cluster masters) on free ports, and stopped
by PID. Skipped locally without ``redis-server``; required in CI.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import jwt
import pytest
import redis.asyncio as aioredis
from redis.exceptions import RedisClusterException, RedisError

from clients import Refused, connect
from redis_topologies import cluster_setup, sentinel_setup, slot_owner, wait_until
from support import SECRET, free_port, make_token, serve, settings_for, wsgate_process
from wsgate import App, RedisRevocationStore
from wsgate.demo.gateways import Admin, Chat
from wsgate.stores.redis_clients import command_client, dedicated_client
from wsgate.stores.redis_control import RedisControl
from wsgate.stores.redis_keys import RedisKeys
from wsgate.stores.redis_urls import Topology, parse_url

# Starting a sentinel or a cluster, and waiting out a failover, on a loaded CI machine.
pytestmark = pytest.mark.timeout(240)

# -- parsing ------------------------------------------------------------------------------


def test_a_plain_url_is_left_to_redis_py() -> None:
    for url in ("redis://h:6379/2", "rediss://u:p@h/0", "unix:///tmp/redis.sock"):
        assert parse_url(url).topology is Topology.SERVER


def test_a_sentinel_url_names_sentinels_service_and_database() -> None:
    target = parse_url("redis+sentinel://user:s%40cret@s1:26380,s2,[::1]:5000/mymaster/3")
    assert target.topology is Topology.SENTINEL
    assert target.nodes == (("s1", 26380), ("s2", 26379), ("::1", 5000))
    assert (target.service, target.db) == ("mymaster", 3)
    assert (target.username, target.password) == ("user", "s@cret")
    assert "cret" not in repr(target)
    tls = parse_url("rediss+sentinel://s1/m?sentinel_password=sp")
    assert tls.tls and tls.sentinel_password == "sp" and tls.password is None


def test_a_cluster_url_names_startup_nodes() -> None:
    target = parse_url("redis+cluster://:pw@n1:7000,n2:7001")
    assert target.topology is Topology.CLUSTER
    assert target.nodes == (("n1", 7000), ("n2", 7001))
    assert target.password == "pw" and target.db == 0


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://h", "must start with"),
        ("redis+sentinel://s1:26379", "service name"),
        ("redis+sentinel:///mymaster", "at least one host"),
        ("redis+sentinel://s1:port/m", "port"),
        ("redis+cluster://n1/2", "no path"),
        ("redis+cluster://n1?db=1", "database 0"),
    ],
)
def test_malformed_urls_are_refused_without_their_password(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as refused:
        parse_url(url.replace("://", "://u:hunter2@", 1))
    assert "hunter2" not in str(refused.value)


# -- real set-ups -------------------------------------------------------------------------


async def handler(request: Mapping[str, Any]) -> dict[str, Any]:
    return {"count": 1, "sub": request.get("sub")}


async def exercise(url: str) -> None:
    """Multi-key commands, scripts in a pipeline, a stream read, the control plane."""
    keys = RedisKeys("wsgate-topology")
    client = command_client(url, timeout=2, pool_size=4, route_key=keys.base)
    try:
        await client.set(keys.revoked("sub", "ann"), "1")
        await client.set(keys.revoked("jti", "j1"), "2")
        # MGET of two keys: one slot thanks to the hash tag, on a cluster too.
        assert await client.mget([keys.revoked("sub", "ann"), keys.revoked("jti", "j1")]) == [
            b"1",
            b"2",
        ]
        script = client.register_script("return redis.call('GET', KEYS[1])")
        assert await script(keys=[keys.revoked("sub", "ann")]) == b"1"
        async with client.pipeline(transaction=False) as pipe:  # as the fan-out writer does
            await script(keys=[keys.revoked("jti", "j1")], client=pipe)
            await script(keys=[keys.revoked("sub", "ann")], client=pipe)
            assert await pipe.execute() == [b"2", b"1"]
        # A stream read on a connection without a read deadline, routed to the key's node.
        stream = keys.fanout_stream
        await client.xadd(stream, {"m": "x"})
        reader = dedicated_client(url, connect_timeout=2, name="t", route_key=keys.base)
        try:
            entries = await reader.xread({stream: "0"}, block=100)
            assert entries[0][1][0][1] == {b"m": b"x"}
        finally:
            await reader.aclose()
    finally:
        await client.aclose()
    # Three nodes' control planes: everyone answers everyone.
    planes = [RedisControl(url, prefix=keys.prefix, timeout=2) for _ in range(3)]
    try:
        for plane in planes:
            plane.start(handler)
        assert all([await plane.wait_ready(10) for plane in planes])
        for _ in range(50):  # presence is renewed at subscription: all three are listed
            replies, missing = await planes[0].ask({"op": "list_user", "sub": "ann"}, 2)
            if len(replies) == 2:
                break
            await asyncio.sleep(0.1)
        assert set(replies) == {planes[1].node_id, planes[2].node_id}
        assert missing == ()
        assert all(reply == {"count": 1, "sub": "ann"} for reply in replies.values())
    finally:
        for plane in planes:
            await plane.aclose()


async def test_sentinel_url_works_end_to_end(tmp_path: Path) -> None:
    async with sentinel_setup(tmp_path) as (url, _):
        await exercise(url)


async def test_cluster_url_works_end_to_end(tmp_path: Path) -> None:
    async with cluster_setup(tmp_path) as (url, _):
        await exercise(url)


async def test_on_a_cluster_keys_without_one_hash_tag_fail(tmp_path: Path) -> None:
    """Why the key names carry a hash tag: the same MGET without it is refused."""
    async with cluster_setup(tmp_path) as (url, _):
        client = command_client(url, timeout=2, pool_size=4, route_key="{x}")
        try:
            names = [f"wsgate:revoked:{kind}:{n}" for n in range(8) for kind in ("sub", "jti")]
            with pytest.raises((RedisError, RedisClusterException)):
                await client.mget(names)
        finally:
            await client.aclose()


# -- wsgate nodes on each set-up -----------------------------------------------------------


async def two_nodes_work(url: str, tmp_path: Path) -> None:
    """A ``wsgate demo`` process and an in-process App on ``url``: connect, rooms, revocation.

    Also the per-user cap (the lease script) and a remote operation (the
    control plane), so every Redis store of a node has run on the set-up.
    """
    prefix = f"wsgate-test-{uuid.uuid4().hex[:12]}"
    env = {
        "WSGATE_JWT_SECRET": SECRET,
        "WSGATE_REDIS_URL": url,
        "WSGATE_REDIS_PREFIX": prefix,
        "WSGATE_MAX_CONNECTIONS_PER_USER": "2",
        "WSGATE_LOG_LEVEL": "warning",
    }
    port = free_port()
    app = App(
        [Chat(), Admin()],
        settings_for(port, redis_url=url, redis_prefix=prefix, max_connections_per_user=2),
    )
    async with (
        wsgate_process("demo", "--database", str(tmp_path / "demo.db"), env=env) as (demo, _),
        serve(app, port) as local,
    ):
        token = make_token(sub="carl")
        async with (
            connect("socketio", demo, token=make_token(sub="ann")) as ann,
            connect("websocket", local, token=make_token(sub="ben")) as ben,
            connect("websocket", local, token=token) as carl,
            connect("socketio", demo, token=make_token(sub="carl")) as carl_too,
            connect("socketio", demo, token=make_token(sub="root", roles=["admin"]),
                    namespace="/admin") as root,
        ):  # fmt: skip
            # Room fan-out both ways, across transports and nodes, in order.
            assert await ann.call("join", {"room": "lobby"}) == {"room": "lobby"}
            assert await ben.call("join", {"room": "lobby"}) == {"room": "lobby"}
            for index in range(10):
                assert await ann.call("say", {"room": "lobby", "text": f"a{index}"}) == {
                    "delivered": True
                }
            got = [(await ben.next_event("message"))["text"] for _ in range(10)]
            assert got == [f"a{index}" for index in range(10)]
            assert await ben.call("say", {"room": "lobby", "text": "from ben"}) == {
                "delivered": True
            }
            texts = [(await ann.next_event("message"))["text"] for _ in range(11)]
            assert texts[-1] == "from ben"

            # The per-user cap holds across the two nodes (carl holds 2 of 2).
            with pytest.raises(Refused) as refused:
                async with connect("websocket", demo, token=make_token(sub="carl")):
                    pass
            assert refused.value.code == "too_many_connections"

            # A remote operation sees both nodes.
            listed = await root.call("admin:connections", {"sub": "carl"})
            assert listed["missing"] == []
            assert len({c["node"] for c in listed["connections"]}) == 2

            # Revocation made through the set-up cuts the socket on the other node.
            store = RedisRevocationStore(url, prefix=prefix)
            try:
                jti = jwt.decode(token, SECRET, algorithms=["HS256"])["jti"]
                await store.revoke_jti(jti, expires_at=time.time() + 600)
                assert await carl.next_event("auth:revoked") == {"reason": "token_revoked"}
                await carl.wait_closed(timeout=5)
                assert carl_too.connected
                with pytest.raises(Refused) as again:
                    async with connect("socketio", demo, token=token):
                        pass
                assert again.value.code == "token_revoked"
            finally:
                await store.aclose()


async def test_wsgate_nodes_on_sentinel(tmp_path: Path) -> None:
    async with sentinel_setup(tmp_path / "redis") as (url, _):
        await two_nodes_work(url, tmp_path)


async def test_wsgate_nodes_on_cluster(tmp_path: Path) -> None:
    async with cluster_setup(tmp_path / "redis") as (url, _):
        await two_nodes_work(url, tmp_path)


# -- failover ---------------------------------------------------------------------------


async def say_until_heard(speaker: Any, listener: Any, text: str, attempts: int = 120) -> None:
    """``say`` until one is acked delivered and heard (bounded); 503 meanwhile, never a lie."""
    for attempt in range(attempts):
        answer = await speaker.call("say", {"room": "lobby", "text": f"{text}{attempt}"})
        if answer == {"delivered": True}:
            heard = await listener.next_event("message", timeout=10)
            assert heard["text"] == f"{text}{attempt}"
            return
        assert answer["error"]["code"] == "unavailable", answer  # honest while Redis moves
        await asyncio.sleep(0.5)
    raise AssertionError(f"{text!r} was never delivered")


@contextlib.asynccontextmanager
async def one_node_on(url: str, prefix: str) -> AsyncIterator[str]:
    port = free_port()
    app = App([Chat(), Admin()], settings_for(port, redis_url=url, redis_prefix=prefix))
    async with serve(app, port) as base:
        yield base


async def test_a_sentinel_failover_is_followed(tmp_path: Path) -> None:
    """The master is stopped; once the sentinel promotes the replica, the node works again."""
    prefix = f"wsgate-test-{uuid.uuid4().hex[:12]}"
    async with (
        sentinel_setup(tmp_path) as (url, servers),
        one_node_on(url, prefix) as node,
        connect("websocket", node, token=make_token(sub="ann")) as ann,
        connect("socketio", node, token=make_token(sub="ben")) as ben,
    ):
        for client in (ann, ben):
            assert await client.call("join", {"room": "lobby"}) == {"room": "lobby"}
        await say_until_heard(ann, ben, "before")
        master = servers.procs[0]  # ours: stopped by its PID
        master.terminate()
        await master.wait()
        await say_until_heard(ann, ben, "after", attempts=120)
        async with connect("websocket", node, token=make_token(sub="cid")) as late:
            assert await late.call("ping") == "pong"


async def test_a_cluster_failover_is_followed(tmp_path: Path) -> None:
    """The slot's master hands over to its replica (CLUSTER FAILOVER): MOVED is followed."""
    prefix = f"wsgate-test-{uuid.uuid4().hex[:12]}"
    tag = RedisKeys(prefix).base
    async with (
        cluster_setup(tmp_path, replica_for=tag) as (url, servers),
        one_node_on(url, prefix) as node,
        connect("websocket", node, token=make_token(sub="ann")) as ann,
        connect("socketio", node, token=make_token(sub="ben")) as ben,
    ):
        for client in (ann, ben):
            assert await client.call("join", {"room": "lobby"}) == {"room": "lobby"}
        await say_until_heard(ann, ben, "before")
        replica = servers.ports["replica"]
        async with aioredis.Redis(port=replica) as client:
            await client.execute_command("CLUSTER", "FAILOVER")

            async def promoted() -> bool:
                info = await client.info("replication")
                return bool(info.get("role") == "master")

            await wait_until(promoted, "the replica to take over")
        assert await slot_owner(replica, tag) == ("127.0.0.1", replica)
        await say_until_heard(ann, ben, "after", attempts=120)
        await connect_when_ready(node)


async def connect_when_ready(node: str, attempts: int = 40) -> None:
    """A new connection succeeds once the node's pooled connections moved (bounded).

    Each pooled connection still on the old master fails once (MOVED), and
    the connect it served is refused ``unavailable`` (honest, retryable).
    """
    for _ in range(attempts):
        try:
            async with connect("websocket", node, token=make_token(sub="cid")) as late:
                assert await late.call("ping") == "pong"
                return
        except Refused as refused:
            assert refused.code == "unavailable"
            await asyncio.sleep(0.5)
    raise AssertionError("new connections never came back")
