"""Connection-state recovery against a real ``wsgate demo``, with socket.io-client from npm.

The client is dropped the way a network drops it (its websocket closes with no
Socket.IO or Engine.IO goodbye), messages are said in its room meanwhile by
another user over ``/ws``, and it reconnects with the ``pid`` and offset it
kept, as socket.io-client >= 4.6 does by itself. Also every way recovery must
NOT happen: a revoked or expired token (refused as any connection, nothing
replayed), another user's token presenting the pid, past the window, past the
packet bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

import node_tools
from clients import connect
from support import SECRET, make_token, wsgate_process

SCRIPT = Path(__file__).parent / "node" / "recovery.cjs"
ENV = {"WSGATE_JWT_SECRET": SECRET}


class NodeClient:
    """One socket.io-client in a Node process, driven one JSON command at a time."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def ask(self, cmd: str, **fields: Any) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write((json.dumps({"cmd": cmd, **fields}) + "\n").encode())
        await self.process.stdin.drain()
        line = await asyncio.wait_for(self.process.stdout.readline(), 30)
        assert line, "the Node client exited"
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def texts(self) -> list[str]:
        messages = (await self.ask("messages"))["messages"]
        return [args[0]["text"] for args in messages]

    async def wait_for_text(self, text: str) -> list[str]:
        """Poll (bounded: 20 s) until ``text`` arrived; every text received so far."""
        for _ in range(400):
            texts = await self.texts()
            if text in texts:
                return texts
            await asyncio.sleep(0.05)
        raise AssertionError(f"{text!r} never arrived; got {await self.texts()}")


@contextlib.asynccontextmanager
async def node_client(url: str) -> AsyncIterator[NodeClient]:
    modules = node_tools.install()
    process = await asyncio.create_subprocess_exec(
        "node",
        str(SCRIPT),
        url,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "NODE_PATH": str(modules)},
    )
    try:
        yield NodeClient(process)
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


@contextlib.asynccontextmanager
async def demo(tmp_path: Path, *flags: str) -> AsyncIterator[tuple[str, Path]]:
    database = tmp_path / "demo.db"
    args = ("demo", "--database", str(database), *flags)
    async with wsgate_process(*args, env=ENV) as (url, _):
        yield url, database


@contextlib.asynccontextmanager
async def redis_demos(tmp_path: Path, redis_url: str, *flags: str) -> AsyncIterator[list[str]]:
    """Two demo nodes on one Redis (a prefix of their own), recovery on."""
    prefix = f"wsgate-test-{uuid.uuid4().hex}"
    async with contextlib.AsyncExitStack() as stack:
        urls = []
        for i in range(2):
            args = (
                "demo",
                "--database",
                str(tmp_path / f"node{i}.db"),
                "--redis-url",
                redis_url,
                "--redis-prefix",
                prefix,
                *flags,
            )
            url, _ = await stack.enter_async_context(wsgate_process(*args, env=ENV))
            urls.append(url)
        yield urls


async def metrics(url: str) -> str:
    async with httpx.AsyncClient() as http:
        return (await http.get(f"{url}/metrics")).text


async def say_all(url: str, room: str, texts: list[str]) -> None:
    """``bob`` says each text in ``room`` over /ws, each acked as delivered."""
    async with connect("websocket", url, token=make_token("bob")) as bob:
        assert await bob.call("join", {"room": room}) == {"room": room}
        for text in texts:
            assert await bob.call("say", {"room": room, "text": text}) == {"delivered": True}


async def marked(client: NodeClient, url: str) -> list[str]:
    """Every text received once a marker, said after everything else, has arrived.

    Frames to one socket keep their order, and replayed ones go right after the
    CONNECT answer: whatever was replayed, or said in a room the socket is in,
    arrived before the marker.
    """
    assert (await client.ask("join", room="marker"))["ack"] == {"room": "marker"}
    await say_all(url, "marker", ["marker"])
    texts = await client.wait_for_text("marker")
    assert texts[-1] == "marker"
    return texts[:-1]


async def dropped_in_lobby(client: NodeClient, url: str, token: str) -> None:
    """Connected, in ``lobby``, one message received (so the client holds an offset), dropped."""
    answer = await client.ask("connect", token=token)
    assert answer["connected"] and not answer["recovered"]
    assert (await client.ask("join", room="lobby"))["ack"] == {"room": "lobby"}
    await say_all(url, "lobby", ["before"])
    assert await client.wait_for_text("before") == ["before"]
    await drop(client)


async def drop(client: NodeClient) -> None:
    """The client's transport closes under it (the server sees the websocket go, nothing more)."""
    assert (await client.ask("drop"))["disconnected"] == "forced close"


async def test_a_dropped_client_gets_exactly_what_it_missed_in_order_once(
    tmp_path: Path,
) -> None:
    async with (
        demo(tmp_path, "--recovery-window", "120") as (url, _),
        node_client(url) as alice,
    ):
        await dropped_in_lobby(alice, url, make_token("alice"))
        missed = [f"missed {i}" for i in range(10)]
        await say_all(url, "lobby", missed)
        # A fresh token of the same user, as a client that refreshed would send.
        answer = await alice.ask("reconnect", token=make_token("alice"))
        assert answer["connected"] and answer["recovered"] is True
        await say_all(url, "lobby", ["after"])  # the room was given back
        assert await alice.wait_for_text("after") == ["before", *missed, "after"]
        messages = (await alice.ask("messages"))["messages"]
        offsets = [args[1] for args in messages]
        assert all(isinstance(offset, str) for offset in offsets)
        assert len(set(offsets)) == len(offsets)
        assert 'wsgate_recoveries_total{outcome="recovered"} 1.0' in await metrics(url)


async def test_recovered_twice_in_a_row(tmp_path: Path) -> None:
    async with (
        demo(tmp_path, "--recovery-window", "120") as (url, _),
        node_client(url) as alice,
    ):
        await dropped_in_lobby(alice, url, make_token("alice"))
        await say_all(url, "lobby", ["one"])
        assert (await alice.ask("reconnect", token=make_token("alice")))["recovered"] is True
        await alice.wait_for_text("one")
        await drop(alice)
        await say_all(url, "lobby", ["two"])
        assert (await alice.ask("reconnect", token=make_token("alice")))["recovered"] is True
        await say_all(url, "lobby", ["three"])
        assert await alice.wait_for_text("three") == ["before", "one", "two", "three"]


def revoke(database: Path, jti: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "wsgate", "revoke", "--jti", jti, "--database", str(database)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **ENV},
        check=False,
    )
    assert result.returncode == 0, result.stderr


async def test_a_revoked_token_is_refused_and_nothing_is_replayed(tmp_path: Path) -> None:
    async with (
        demo(tmp_path, "--recovery-window", "120") as (url, database),
        node_client(url) as alice,
    ):
        token = make_token("alice")
        await dropped_in_lobby(alice, url, token)
        await say_all(url, "lobby", ["secret 1", "secret 2"])
        revoke(database, jwt.decode(token, options={"verify_signature": False})["jti"])
        answer = await alice.ask("reconnect", token=token)
        assert answer.get("code") == "token_revoked", answer
        assert await alice.texts() == ["before"]


async def test_an_expired_token_is_refused_and_nothing_is_replayed(tmp_path: Path) -> None:
    async with (
        demo(tmp_path, "--recovery-window", "120") as (url, _),
        node_client(url) as alice,
    ):
        await dropped_in_lobby(alice, url, make_token("alice"))
        await say_all(url, "lobby", ["secret"])
        answer = await alice.ask("reconnect", token=make_token("alice", ttl=-30))
        assert answer.get("code") == "token_expired", answer
        assert await alice.texts() == ["before"]


async def test_another_users_token_with_the_pid_recovers_nothing(tmp_path: Path) -> None:
    async with (
        demo(tmp_path, "--recovery-window", "120") as (url, _),
        node_client(url) as client,
    ):
        await dropped_in_lobby(client, url, make_token("alice"))
        await say_all(url, "lobby", ["for alice only"])
        # Mallory got hold of alice's pid and offset (the client kept them) and
        # presents them with her own valid token.
        answer = await client.ask("reconnect", token=make_token("mallory"))
        assert answer["connected"] and answer["recovered"] is False
        await say_all(url, "lobby", ["still for alice only"])
        assert await marked(client, url) == ["before"]
        assert 'wsgate_recoveries_total{outcome="new"} 1.0' in await metrics(url)


async def test_past_the_window_the_client_is_a_new_one(tmp_path: Path) -> None:
    async with (
        demo(tmp_path, "--recovery-window", "1") as (url, _),
        node_client(url) as alice,
    ):
        await dropped_in_lobby(alice, url, make_token("alice"))
        await say_all(url, "lobby", ["too late"])
        await asyncio.sleep(1.5)  # the window passes (not a timed assertion)
        answer = await alice.ask("reconnect", token=make_token("alice"))
        assert answer["connected"] and answer["recovered"] is False
        await say_all(url, "lobby", ["not in the room any more"])
        assert await marked(alice, url) == ["before"]


async def test_past_the_packet_bound_the_client_is_a_new_one(tmp_path: Path) -> None:
    async with (
        demo(tmp_path, "--recovery-window", "120", "--recovery-max-packets", "5") as (url, _),
        node_client(url) as alice,
    ):
        await dropped_in_lobby(alice, url, make_token("alice"))
        await say_all(url, "lobby", [f"m{i}" for i in range(6)])  # one more than is kept
        answer = await alice.ask("reconnect", token=make_token("alice"))
        assert answer["connected"] and answer["recovered"] is False
        assert await marked(alice, url) == ["before"]


@pytest.mark.parametrize("window", ["0"])
async def test_recovery_off_sends_no_pid_and_no_offset(tmp_path: Path, window: str) -> None:
    async with (
        demo(tmp_path, "--recovery-window", window) as (url, _),
        node_client(url) as alice,
    ):
        await dropped_in_lobby(alice, url, make_token("alice"))
        messages = (await alice.ask("messages"))["messages"]
        assert messages == [[{"room": "lobby", "from": "bob", "text": "before"}]]
        answer = await alice.ask("reconnect", token=make_token("alice"))
        assert answer["connected"] and answer["recovered"] is False


async def test_recovered_through_another_node_on_redis(tmp_path: Path, redis_url: str) -> None:
    async with (
        redis_demos(tmp_path, redis_url, "--recovery-window", "120") as (node1, node2),
        node_client(node1) as alice,
    ):
        await dropped_in_lobby(alice, node1, make_token("alice"))
        # Said on both nodes while alice is away: the stream orders them.
        await say_all(node1, "lobby", ["m1", "m2"])
        await say_all(node2, "lobby", ["m3", "m4"])
        answer = await alice.ask("reconnect", token=make_token("alice"), url=node2)
        assert answer["connected"] and answer["recovered"] is True
        await say_all(node1, "lobby", ["after"])  # reaches alice on node 2: her room is back
        assert await alice.wait_for_text("after") == ["before", "m1", "m2", "m3", "m4", "after"]
        offsets = [args[1] for args in (await alice.ask("messages"))["messages"]]
        assert len(set(offsets)) == len(offsets)


async def test_on_redis_another_users_token_with_the_pid_recovers_nothing(
    tmp_path: Path, redis_url: str
) -> None:
    async with (
        redis_demos(tmp_path, redis_url, "--recovery-window", "120") as (node1, node2),
        node_client(node1) as alice,
    ):
        await dropped_in_lobby(alice, node1, make_token("alice"))
        await say_all(node1, "lobby", ["for alice only"])
        answer = await alice.ask("reconnect", token=make_token("mallory"), url=node2)
        assert answer["connected"] and answer["recovered"] is False
        assert await marked(alice, node2) == ["before"]


async def test_on_redis_past_the_packet_bound_the_client_is_a_new_one(
    tmp_path: Path, redis_url: str
) -> None:
    flags = ("--recovery-window", "120", "--recovery-max-packets", "3")
    async with redis_demos(tmp_path, redis_url, *flags) as (node1, node2), node_client(node1) as c:
        await dropped_in_lobby(c, node1, make_token("alice"))
        await say_all(node2, "lobby", ["m1", "m2", "m3", "m4"])
        answer = await c.ask("reconnect", token=make_token("alice"), url=node2)
        assert answer["connected"] and answer["recovered"] is False
        assert await marked(c, node2) == ["before"]


async def test_a_token_that_lost_the_namespace_role_is_refused_and_the_session_kept(
    tmp_path: Path,
) -> None:
    async with (
        demo(tmp_path, "--recovery-window", "120") as (url, _),
        node_client(url) as root,
        connect(
            "websocket", url, token=make_token("boss", roles=["admin"]), namespace="/admin"
        ) as boss,
    ):
        admin = make_token("root", roles=["admin"])
        answer = await root.ask("connect", token=admin, namespace="/admin")
        assert answer["connected"] and not answer["recovered"]
        await boss.call("admin:broadcast", {"text": "before"})
        await root.wait_for_text("before")
        await drop(root)
        await boss.call("admin:broadcast", {"text": "for admins"})
        # The same user, but the role was taken away while the client was away.
        refused = await root.ask("reconnect", token=make_token("root", roles=[]))
        assert refused.get("code") == "forbidden", refused
        assert await root.texts() == ["before"]
        # The refused attempt consumed nothing: with the role, the session is recovered.
        answer = await root.ask("reconnect", token=make_token("root", roles=["admin"]))
        assert answer["connected"] and answer["recovered"] is True
        await boss.call("admin:broadcast", {"text": "after"})
        assert await root.wait_for_text("after") == ["before", "for admins", "after"]


async def test_no_log_line_holds_the_pid(tmp_path: Path) -> None:
    database = tmp_path / "demo.db"
    args = ("demo", "--database", str(database), "--recovery-window", "120")
    async with wsgate_process(*args, env=ENV) as (url, lines), node_client(url) as alice:
        answer = await alice.ask("connect", token=make_token("alice"))
        pid = answer["pid"]
        assert isinstance(pid, str) and len(pid) >= 22
        await alice.ask("join", room="lobby")
        await say_all(url, "lobby", ["before"])
        await alice.wait_for_text("before")
        await drop(alice)
        await say_all(url, "lobby", ["missed"])
        answer = await alice.ask("reconnect", token=make_token("alice"))
        assert answer["recovered"] is True and answer["pid"] == pid
        await alice.wait_for_text("missed")
        await drop(alice)
        await alice.ask("reconnect", token=make_token("mallory"))
        for _ in range(100):  # the audit lines of the last connect are out
            if sum("recovered" in line for line in lines) >= 1 and any(
                "mallory" in line for line in lines
            ):
                break
            await asyncio.sleep(0.05)
    assert any("recovered" in line for line in lines)
    assert not [line for line in lines if pid in line]
