"""Remote operations: emit to, disconnect and list a user's connections on every node.

On one node (no Redis: the local half is the whole answer) with in-process
Apps, and on three real ``wsgate demo`` processes sharing one Redis, with
real Socket.IO and ``/ws`` clients. Attacks: a non-admin asking, a request
forged on the control channel, an operation reaching past its namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import orjson
import pytest
import redis.asyncio as aioredis

from clients import connect
from support import SECRET, free_port, make_token, serve, settings_for, wsgate_process
from wsgate import App, StoreUnavailable, Unavailable
from wsgate.core import remote
from wsgate.core.remote import BadRequest, parse_request
from wsgate.demo.gateways import Admin, Chat
from wsgate.stores import redis_control
from wsgate.stores.redis_control import RedisControl
from wsgate.stores.redis_keys import RedisKeys

ADMIN = {"roles": ["admin"]}

pytestmark = pytest.mark.timeout(180)  # three demo processes start on a loaded machine


# -- one node, no Redis -----------------------------------------------------------------


@contextlib.asynccontextmanager
async def one_node() -> AsyncIterator[tuple[App, str]]:
    port = free_port()
    app = App([Chat(), Admin()], settings_for(port))
    async with serve(app, port) as url:
        yield app, url


async def test_one_node_emit_list_and_kick_a_user_over_both_transports() -> None:
    async with (
        one_node() as (app, url),
        connect("socketio", url, token=make_token(sub="root", **ADMIN), namespace="/admin") as root,
        connect("socketio", url, token=make_token(sub="bob")) as bob_sio,
        connect("websocket", url, token=make_token(sub="bob")) as bob_ws,
        connect("websocket", url, token=make_token(sub="eve")) as eve,
    ):
        listed = await root.call("admin:connections", {"sub": "bob"})
        assert listed["missing"] == []
        assert sorted(c["transport"] for c in listed["connections"]) == ["socketio", "websocket"]
        assert {c["namespace"] for c in listed["connections"]} == {"/"}

        reach = await root.call("admin:notify", {"sub": "bob", "text": "hello"})
        assert reach == {"count": 2, "missing": []}
        assert await bob_sio.next_event("notice") == {"from": "root", "text": "hello"}
        assert await bob_ws.next_event("notice") == {"from": "root", "text": "hello"}

        ws_id = next(c["id"] for c in listed["connections"] if c["transport"] == "websocket")
        reach = await root.call("admin:notify", {"conn": ws_id, "text": "just you"})
        assert reach == {"count": 1, "missing": []}
        assert await bob_ws.next_event("notice") == {"from": "root", "text": "just you"}

        reach = await root.call("admin:kick", {"sub": "bob"})
        assert reach == {"count": 2, "missing": []}
        await bob_sio.wait_closed(timeout=5)
        await bob_ws.wait_closed(timeout=5)
        assert eve.connected
        with pytest.raises(asyncio.TimeoutError):  # nothing was meant for eve
            await eve.next_event("notice", timeout=0.3)
        assert (await app.server.find_connections("bob")).count == 0


async def test_only_admins_may_use_remote_operations(transport: str) -> None:
    """The demo's remote operations live on /admin: the role is checked at connect."""
    async with (
        one_node() as (_, url),
        connect(transport, url, token=make_token(sub="mallory")) as mallory,
        connect("websocket", url, token=make_token(sub="bob")) as bob,
    ):
        answer = await mallory.call("admin:kick", {"sub": "bob"})
        assert answer["error"]["status"] == 404  # not an event of "/"
        with pytest.raises(Exception, match="forbidden"):
            async with connect(transport, url, token=make_token(sub="mallory"), namespace="/admin"):
                pass
        assert bob.connected


async def test_an_emit_to_a_user_stays_in_its_namespace() -> None:
    """``of("/")`` reaches a user's ``/`` sockets only, as a local emit to a namespace would."""
    async with (
        one_node() as (app, url),
        connect("socketio", url, token=make_token(sub="root", **ADMIN), namespace="/admin") as adm,
        connect("websocket", url, token=make_token(sub="root", **ADMIN)) as chat,
    ):
        answer = await app.server.of("/").emit_to_user("root", "notice", {"text": "x"})
        assert answer.count == 1 and answer.complete
        assert await chat.next_event("notice") == {"text": "x"}
        with pytest.raises(asyncio.TimeoutError):
            await adm.next_event("notice", timeout=0.3)
        everywhere = await app.server.find_connections("root")
        assert sorted(c.namespace for c in everywhere.connections) == ["/", "/admin"]
        only_admin = await app.server.find_connections("root", namespace="/admin")
        assert [c.namespace for c in only_admin.connections] == ["/admin"]


async def test_disconnect_token_everywhere_tells_the_client_it_was_revoked() -> None:
    token = make_token(sub="carl")
    jti = jwt.decode(token, SECRET, algorithms=["HS256"])["jti"]
    async with (
        one_node() as (app, url),
        connect("websocket", url, token=token) as same,
        connect("websocket", url, token=make_token(sub="carl")) as other_token,
    ):
        answer = await app.server.disconnect_token(jti)
        assert answer.count == 1 and answer.complete
        assert await same.next_event("auth:revoked") == {"reason": "token_revoked"}
        assert await same.wait_closed() == "4401"
        assert other_token.connected


@pytest.mark.parametrize(
    "request_",
    [
        {"op": "eval", "sub": "bob"},
        {"op": "disconnect_user", "sub": "bob", "reason": "because"},
        {"op": "disconnect_user", "sub": ["bob"], "reason": "server_disconnect"},
        {"op": "disconnect_user", "sub": "", "reason": "server_disconnect"},
        {"op": "emit_user", "sub": "bob", "event": "x"},  # no namespace
        {"op": "list_user", "sub": "b" * 5000},
        {"op": "emit_connection", "conn": 7, "event": "x"},
    ],
)
def test_malformed_requests_are_refused(request_: dict[str, Any]) -> None:
    with pytest.raises(BadRequest):
        parse_request(request_)


def test_a_bad_timeout_is_refused_before_anything_is_done() -> None:
    async def go() -> None:
        port = free_port()
        app = App([Chat()], settings_for(port))
        with pytest.raises(ValueError, match="timeout"):
            await app.server.find_connections("bob", timeout=0)
        with pytest.raises(ValueError, match="timeout"):
            await app.server.find_connections("bob", timeout=3600)

    asyncio.run(go())


# -- three real demo nodes on one Redis -------------------------------------------------


@contextlib.asynccontextmanager
async def demo_nodes(
    redis_url: str, tmp_path: Path, count: int = 3
) -> AsyncIterator[tuple[list[str], list[list[str]], str]]:
    prefix = f"wsgate-test-{uuid.uuid4().hex[:12]}"
    env = {
        "WSGATE_JWT_SECRET": SECRET,
        "WSGATE_REDIS_URL": redis_url,
        "WSGATE_REDIS_PREFIX": prefix,
        "WSGATE_LOG_LEVEL": "warning",
    }
    async with contextlib.AsyncExitStack() as stack:
        urls, outputs = [], []
        for index in range(count):
            url, output = await stack.enter_async_context(
                wsgate_process("demo", "--database", str(tmp_path / f"node{index}.db"), env=env)
            )
            urls.append(url)
            outputs.append(output)
        yield urls, outputs, prefix


async def wait_for_nodes(client: Any, sub: str, nodes: int) -> dict[str, Any]:
    """Poll ``admin:connections`` until ``sub`` has sockets on ``nodes`` nodes (bounded)."""
    listed: dict[str, Any] = {}
    for _ in range(100):
        listed = await client.call("admin:connections", {"sub": sub})
        if len({c["node"] for c in listed["connections"]}) >= nodes and not listed["missing"]:
            return listed
        await asyncio.sleep(0.1)
    raise AssertionError(f"never saw {sub} on {nodes} nodes: {listed}")


async def test_three_demo_nodes_emit_list_and_kick_across_nodes(
    redis_url: str, tmp_path: Path
) -> None:
    async with demo_nodes(redis_url, tmp_path) as (urls, _, _):
        node1, node2, node3 = urls
        async with (
            connect(
                "socketio", node1, token=make_token(sub="root", **ADMIN), namespace="/admin"
            ) as root,
            connect("socketio", node2, token=make_token(sub="bob")) as bob_sio,
            connect("websocket", node3, token=make_token(sub="bob")) as bob_ws,
            connect("websocket", node1, token=make_token(sub="eve")) as eve,
        ):
            listed = await wait_for_nodes(root, "bob", 2)
            assert len(listed["connections"]) == 2
            by_transport = {c["transport"]: c for c in listed["connections"]}
            assert by_transport["socketio"]["node"] != by_transport["websocket"]["node"]

            # To a user, on every node and both transports, each message once.
            for index in range(20):
                reach = await root.call("admin:notify", {"sub": "bob", "text": f"n{index}"})
                assert reach == {"count": 2, "missing": []}
            for client in (bob_sio, bob_ws):
                got = [(await client.next_event("notice"))["text"] for _ in range(20)]
                assert got == [f"n{index}" for index in range(20)]  # none lost, none doubled
                with pytest.raises(asyncio.TimeoutError):
                    await client.next_event("notice", timeout=0.3)

            # To one connection on another node.
            ws_id = by_transport["websocket"]["id"]
            assert await root.call("admin:notify", {"conn": ws_id, "text": "only ws"}) == {
                "count": 1,
                "missing": [],
            }
            assert await bob_ws.next_event("notice") == {"from": "root", "text": "only ws"}
            with pytest.raises(asyncio.TimeoutError):
                await bob_sio.next_event("notice", timeout=0.3)
            unknown = await root.call("admin:notify", {"conn": "no-such-id", "text": "x"})
            assert unknown == {"count": 0, "missing": []}

            # Disconnect the user everywhere; eve stays.
            assert await root.call("admin:kick", {"sub": "bob"}) == {"count": 2, "missing": []}
            await bob_sio.wait_closed(timeout=5)
            await bob_ws.wait_closed(timeout=5)
            assert eve.connected
            assert await root.call("admin:connections", {"sub": "bob"}) == {
                "connections": [],
                "missing": [],
            }


async def test_a_node_that_does_not_answer_is_named(redis_url: str, tmp_path: Path) -> None:
    """A hung node (SIGSTOP) makes the answer partial, and the answer says so."""
    async with demo_nodes(redis_url, tmp_path) as (urls, _, _):
        node1, node2, node3 = urls
        async with (
            connect(
                "socketio", node1, token=make_token(sub="root", **ADMIN), namespace="/admin"
            ) as root,
            connect("websocket", node2, token=make_token(sub="bob")) as on2,
            connect("socketio", node3, token=make_token(sub="bob")),
        ):
            listed = await wait_for_nodes(root, "bob", 2)
            node_of = {c["transport"]: c["node"] for c in listed["connections"]}
            pid3 = await pid_listening(int(node3.rsplit(":", 1)[1]))
            os.kill(pid3, signal.SIGSTOP)
            try:
                partial = await root.call("admin:connections", {"sub": "bob"}, timeout=10)
                assert partial["missing"] == [node_of["socketio"]]
                assert [c["node"] for c in partial["connections"]] == [node_of["websocket"]]
                reach = await root.call("admin:notify", {"sub": "bob", "text": "hi"}, timeout=10)
                assert reach == {"count": 1, "missing": [node_of["socketio"]]}
                assert await on2.next_event("notice") == {"from": "root", "text": "hi"}
            finally:
                os.kill(pid3, signal.SIGCONT)
            await wait_for_nodes(root, "bob", 2)


async def pid_listening(port: int) -> int:
    """The pid of the ``wsgate demo`` process serving ``port`` (one we started)."""
    proc = await asyncio.create_subprocess_exec(
        "pgrep", "-f", "--", f"wsgate demo .*--port {port}$", stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    pids = [int(line) for line in out.split()]
    assert len(pids) == 1, pids
    return pids[0]


async def test_a_forged_control_message_does_nothing(redis_url: str, tmp_path: Path) -> None:
    """Garbage and malformed requests on the control channel are refused; nodes carry on."""
    async with demo_nodes(redis_url, tmp_path, count=2) as (urls, outputs, prefix):
        async with (
            connect(
                "socketio", urls[0], token=make_token(sub="root", **ADMIN), namespace="/admin"
            ) as root,
            connect("websocket", urls[1], token=make_token(sub="bob")) as bob,
        ):
            await wait_for_nodes(root, "bob", 1)
            channel = RedisKeys(prefix).name("control")
            forged = [
                b"\xff not json",
                b"[1, 2]",
                orjson.dumps({"op": "disconnect_user", "sub": "bob", "reason": "x", "id": "1"}),
                orjson.dumps({"op": "shutdown", "id": "2", "from": "evil"}),
                orjson.dumps(
                    {"op": "disconnect_user", "sub": ["bob"], "reason": "server_disconnect",
                     "id": "3", "from": "evil"}
                ),
            ]  # fmt: skip
            async with aioredis.Redis.from_url(redis_url) as raw:
                for message in forged:
                    await raw.publish(channel, message)
            await asyncio.sleep(0.5)
            assert bob.connected
            assert await bob.call("ping") == "pong"
            assert (await root.call("admin:connections", {"sub": "bob"}))["missing"] == []
            for output in outputs:  # the two well-framed but malformed requests, on each node
                assert sum("refused a remote request" in line for line in output) == 2, output


async def test_remote_operations_refuse_when_redis_is_unreachable() -> None:
    """The local half runs; the answer is 503 ``unavailable``, never a silent partial."""
    dead = free_port()  # nothing listens there
    port = free_port()
    app = App([Chat(), Admin()], settings_for(port, redis_url=f"redis://127.0.0.1:{dead}/0"))
    app.runtime.remote.control.timeout = 0.2
    async with serve(app, port):
        with pytest.raises(Unavailable):
            await app.server.find_connections("bob", timeout=0.5)


# -- bounds, tried past them --------------------------------------------------------------


async def test_waiting_requests_are_bounded(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past MAX_PENDING requests waiting for answers, the next is refused at once."""
    monkeypatch.setattr(redis_control, "MAX_PENDING", 2)
    prefix = f"wsgate-test-{uuid.uuid4().hex[:12]}"
    plane = RedisControl(redis_url, prefix=prefix, timeout=2)

    async def handler(request: Any) -> dict[str, Any]:
        return {"count": 0}

    plane.start(handler)
    try:
        assert await plane.wait_ready(10)
        # A node that is alive on paper and never answers: every request waits for it.
        async with aioredis.Redis.from_url(redis_url) as raw:
            await raw.zadd(plane.nodes_key, {"silent-node": 2**52})
        asks = [
            asyncio.create_task(plane.ask({"op": "list_user", "sub": "x"}, 1.0)) for _ in range(5)
        ]
        results = await asyncio.gather(*asks, return_exceptions=True)
        refused = [r for r in results if isinstance(r, StoreUnavailable)]
        waited = [r for r in results if isinstance(r, tuple)]
        assert (len(refused), len(waited)) == (3, 2)
        assert all(missing == ("silent-node",) for _, missing in waited)
        assert plane._pending == {}
    finally:
        await plane.aclose()


async def test_requests_handled_at_once_are_bounded(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past MAX_HANDLING requests of other nodes in progress, more are dropped (not queued)."""
    monkeypatch.setattr(redis_control, "MAX_HANDLING", 3)
    prefix = f"wsgate-test-{uuid.uuid4().hex[:12]}"
    plane = RedisControl(redis_url, prefix=prefix, timeout=2)
    release = asyncio.Event()
    started = 0

    async def slow(request: Any) -> dict[str, Any]:
        nonlocal started
        started += 1
        await release.wait()
        return {"count": 0}

    plane.start(slow)
    try:
        assert await plane.wait_ready(10)
        async with aioredis.Redis.from_url(redis_url) as raw:
            for index in range(10):
                request = {"op": "list_user", "sub": "x", "id": str(index), "from": "other"}
                await raw.publish(plane.requests_channel, orjson.dumps(request))
            for _ in range(100):
                if started >= 3:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)  # the other seven have arrived by now
        assert started == 3 and len(plane._handling) == 3
        release.set()
        for _ in range(100):
            if not plane._handling:
                break
            await asyncio.sleep(0.05)
        assert not plane._handling
    finally:
        await plane.aclose()


async def test_a_listing_is_bounded_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(remote, "MAX_LISTED", 2)
    async with (
        one_node() as (app, url),
        connect("websocket", url, token=make_token(sub="bob")),
        connect("websocket", url, token=make_token(sub="bob")),
        connect("socketio", url, token=make_token(sub="bob")),
    ):
        answer = await app.server.find_connections("bob")
        assert answer.count == 3 and len(answer.connections) == 2 and answer.truncated
